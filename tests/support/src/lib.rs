//! Real Kubernetes control planes on loopback: etcd + kube-apiserver, built
//! from source by `tools/` (see tools/README.md), for dualmesh's integration
//! tests, benchmarks and `make dev-up`.
//!
//! Each [`ControlPlane`] is independent: its own etcd, its own certificates
//! (generated here with rcgen), its own free loopback ports and an admin
//! kubeconfig. Dropping it stops both processes (the API server first, see
//! [`stop`]) and removes its files, also when a test panics; a panicking test gets the tail of the apiserver log on
//! stderr, and the whole log is kept for reading afterwards.
//!
//! A default plane has no kubelet, scheduler or controller-manager: tests
//! create Nodes and Pods through the API with the fields a kubelet would set
//! ([`kubelet`]). Because no controller creates the `default`
//! ServiceAccount, the `ServiceAccount` admission plugin is disabled there
//! (it would refuse every Pod).
//!
//! A plane started with [`PlaneOptions::cluster`] also runs
//! kube-controller-manager, kube-scheduler and kwok ([`cluster`]): it
//! behaves like a cluster whose Nodes are fake ([`fake_nodes`]), Deployments
//! are scheduled and their Pods become Running and Ready, and the
//! `ServiceAccount` admission plugin is on.
#![forbid(unsafe_code)]

mod audit;
mod certs;
pub mod cluster;
mod error;
pub mod fake_nodes;
pub mod istiod;
pub mod kubelet;
pub mod operator;
pub mod retry;
pub mod stop;
pub mod wait;
pub mod workload;

pub use audit::Write;
pub(crate) use error::io;
pub use error::{Error, Result};
pub use stop::stop_pids;

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::net::TcpListener;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kube::config::{KubeConfigOptions, Kubeconfig};

use audit::AUDIT_POLICY;
use certs::Certs;

/// The IPv4 and IPv6 Service ranges every plane serves: dual-stack, like the
/// clusters dualmesh is for. The IPv6 /112 is within kube-apiserver's /108 limit.
pub const SERVICE_CIDRS: &str = "10.96.0.0/16,fd00:10:96::/112";

/// The user of the admin kubeconfig (client certificate CN, in
/// `system:masters`), as the audit log names it.
pub const ADMIN_USER: &str = "testplane-admin";

/// How long to wait for `/readyz` before giving up on a start.
const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// Lines of apiserver (or component) log printed when a test fails.
pub(crate) const LOG_TAIL_LINES: usize = 40;

/// How long kube-apiserver may take to exit after SIGTERM (with its etcd
/// still up: a few seconds at most) before it is killed.
pub const APISERVER_GRACE: Duration = Duration::from_secs(20);

/// How long etcd may take to exit after SIGTERM before it is killed.
pub const ETCD_GRACE: Duration = Duration::from_secs(10);

/// Per-plane settings beyond the defaults.
#[derive(Clone, Debug, Default)]
pub struct PlaneOptions {
    /// A name for logs and file names (`alpha`, `beta`, ...).
    pub name: String,
    /// Admission plugins to enable on top of the defaults, e.g. `DenyServiceExternalIPs`.
    pub admission_plugins: Vec<String>,
    /// Feature gates, each `Name=true|false`.
    pub feature_gates: Vec<String>,
    /// Any further kube-apiserver flags, each `--flag=value`.
    pub extra_args: Vec<String>,
    /// Keep files in this folder instead of a temporary one (for `make dev-up`).
    pub dir: Option<PathBuf>,
    /// Also run kube-controller-manager, kube-scheduler and kwok, with the
    /// `ServiceAccount` admission plugin on (see [`cluster`]).
    pub cluster: bool,
}

impl PlaneOptions {
    pub fn named(name: &str) -> Self {
        Self {
            name: name.to_string(),
            ..Self::default()
        }
    }

    pub fn admission_plugin(mut self, plugin: &str) -> Self {
        self.admission_plugins.push(plugin.to_string());
        self
    }

    pub fn feature_gate(mut self, gate: &str) -> Self {
        self.feature_gates.push(gate.to_string());
        self
    }

    pub fn arg(mut self, arg: &str) -> Self {
        self.extra_args.push(arg.to_string());
        self
    }

    /// A plane that behaves like a cluster (see [`cluster`]).
    pub fn cluster(mut self) -> Self {
        self.cluster = true;
        self
    }
}

/// Where the built binaries are: `$DUALMESH_TOOLS_BIN` (set by the Makefile),
/// else what `make -s tools-path` prints in the repository.
pub fn tools_bin() -> Result<PathBuf> {
    let dir = match std::env::var_os("DUALMESH_TOOLS_BIN") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
            let out = Command::new("make")
                .args(["-s", "--no-print-directory", "tools-path"])
                .current_dir(&repo)
                .output()
                .map_err(io("run `make -s tools-path`"))?;
            PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
        }
    };
    for tool in ["etcd", "kube-apiserver"] {
        if !dir.join(tool).is_file() {
            return Err(Error::Tools(format!(
                "{} is missing in {}; run `make tools` (or `make test`, which builds them)",
                tool,
                dir.display()
            )));
        }
    }
    Ok(dir)
}

/// A free TCP port on 127.0.0.1. Another process may take it before we bind
/// it again; [`ControlPlane::start`] retries on a fresh set of ports then.
fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(io("bind a free port"))?;
    Ok(listener
        .local_addr()
        .map_err(io("read a bound port"))?
        .port())
}

/// Files of one plane: a temporary folder removed on drop, or a kept one.
enum PlaneDir {
    Temp(tempfile::TempDir),
    Kept(PathBuf),
}

impl PlaneDir {
    fn path(&self) -> &Path {
        match self {
            PlaneDir::Temp(t) => t.path(),
            PlaneDir::Kept(p) => p,
        }
    }
}

/// One running control plane.
pub struct ControlPlane {
    name: String,
    dir: PlaneDir,
    bin: PathBuf,
    etcd: Option<Child>,
    apiserver: Option<Child>,
    apiserver_args: Vec<String>,
    /// kube-controller-manager, kube-scheduler and kwok on a cluster plane,
    /// in start order; empty otherwise.
    components: Vec<cluster::Component>,
    /// Whether its processes run in a process group of their own.
    own_group: bool,
    port: u16,
    kubeconfig: Kubeconfig,
    detached: bool,
}

impl ControlPlane {
    /// Starts a plane with default options under `name`.
    pub async fn start_named(name: &str) -> Result<Self> {
        Self::start(PlaneOptions::named(name)).await
    }

    /// Starts etcd and kube-apiserver and waits until `/readyz` answers ok
    /// and the `default` namespace exists.
    pub async fn start(opts: PlaneOptions) -> Result<Self> {
        let mut last = None;
        for _ in 0..3 {
            match Self::start_once(&opts).await {
                Ok(plane) => return Ok(plane),
                // A port taken between our probe and the server's bind shows up
                // as a start failure: try again on new ports.
                Err(e @ Error::NotReady { .. }) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.expect("at least one attempt"))
    }

    async fn start_once(opts: &PlaneOptions) -> Result<Self> {
        let bin = tools_bin()?;
        let name = if opts.name.is_empty() {
            "plane".to_string()
        } else {
            opts.name.clone()
        };
        let dir = match &opts.dir {
            Some(d) => {
                let _ = fs::remove_dir_all(d);
                fs::create_dir_all(d).map_err(io(format!("create {}", d.display())))?;
                PlaneDir::Kept(d.clone())
            }
            None => PlaneDir::Temp(
                tempfile::Builder::new()
                    .prefix(&format!("testplane-{name}-"))
                    .tempdir()
                    .map_err(io("create a temporary folder"))?,
            ),
        };
        let root = dir.path().to_path_buf();
        let (etcd_client, etcd_peer, port) = (free_port()?, free_port()?, free_port()?);

        let certs = Certs::generate()?;
        let pki = root.join("pki");
        fs::create_dir_all(&pki).map_err(io("create pki folder"))?;
        for (file, pem) in [
            ("ca.crt", &certs.ca_pem),
            ("ca.key", &certs.ca_key_pem),
            ("apiserver.crt", &certs.server_pem),
            ("apiserver.key", &certs.server_key_pem),
            ("sa.key", &certs.sa_key_pem),
            ("sa.pub", &certs.sa_pub_pem),
        ] {
            fs::write(pki.join(file), pem).map_err(io(format!("write {file}")))?;
        }

        fs::write(root.join("audit-policy.yaml"), AUDIT_POLICY)
            .map_err(io("write audit-policy.yaml"))?;
        let etcd_log = fs::File::create(root.join("etcd.log")).map_err(io("create etcd.log"))?;
        // Planes kept for `make dev-up` get their own process group: a Ctrl-C
        // in the terminal that started them must not reach etcd and the API
        // server together (the API server's shutdown then hangs); `testplane
        // down` stops them in order.
        let own_group = opts.dir.is_some();
        let mut etcd = Command::new(bin.join("etcd"));
        if own_group {
            etcd.process_group(0);
        }
        let etcd = etcd
            .args([
                format!("--name={name}"),
                format!("--data-dir={}", root.join("etcd").display()),
                format!("--listen-client-urls=http://127.0.0.1:{etcd_client}"),
                format!("--advertise-client-urls=http://127.0.0.1:{etcd_client}"),
                format!("--listen-peer-urls=http://127.0.0.1:{etcd_peer}"),
                format!("--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}"),
                format!("--initial-cluster={name}=http://127.0.0.1:{etcd_peer}"),
                // Test data: durability across machine crashes is not needed.
                "--unsafe-no-fsync".to_string(),
                "--log-level=warn".to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(etcd_log.try_clone().map_err(io("clone etcd log"))?)
            .stderr(etcd_log)
            .spawn()
            .map_err(io("start etcd"))?;

        let p = |f: &str| pki.join(f).display().to_string();
        let admission = &opts.admission_plugins;
        let mut args = vec![
            format!("--etcd-servers=http://127.0.0.1:{etcd_client}"),
            format!("--secure-port={port}"),
            "--bind-address=127.0.0.1".to_string(),
            // There is no default route here, so the apiserver cannot pick one.
            "--advertise-address=127.0.0.1".to_string(),
            format!("--cert-dir={}", p("")),
            format!("--tls-cert-file={}", p("apiserver.crt")),
            format!("--tls-private-key-file={}", p("apiserver.key")),
            format!("--client-ca-file={}", p("ca.crt")),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".to_string(),
            format!("--service-account-key-file={}", p("sa.pub")),
            format!("--service-account-signing-key-file={}", p("sa.key")),
            format!("--service-cluster-ip-range={SERVICE_CIDRS}"),
            "--authorization-mode=RBAC".to_string(),
            // Endpoints may not point at loopback, and there are no nodes to
            // reach the apiserver through anyway.
            "--endpoint-reconciler-type=none".to_string(),
            "--profiling=false".to_string(),
            // Every write, with who made it: tests count a client's writes at
            // the API server (see `ControlPlane::writes_by`).
            format!(
                "--audit-policy-file={}",
                root.join("audit-policy.yaml").display()
            ),
            format!("--audit-log-path={}", root.join("audit.log").display()),
            "--audit-log-format=json".to_string(),
            "--audit-log-mode=blocking".to_string(),
            "--v=1".to_string(),
        ];
        // Without a controller-manager no `default` ServiceAccount appears,
        // and the plugin would refuse every Pod.
        if !opts.cluster {
            args.push("--disable-admission-plugins=ServiceAccount".to_string());
        }
        if !admission.is_empty() {
            args.push(format!(
                "--enable-admission-plugins={}",
                admission.join(",")
            ));
        }
        if !opts.feature_gates.is_empty() {
            args.push(format!("--feature-gates={}", opts.feature_gates.join(",")));
        }
        args.extend(opts.extra_args.iter().cloned());

        let kubeconfig = certs.kubeconfig(&name, port);
        let yaml = serde_saphyr::to_string(&kubeconfig).expect("a kubeconfig serializes");
        fs::write(root.join("admin.kubeconfig"), yaml).map_err(io("write admin.kubeconfig"))?;

        let mut plane = ControlPlane {
            name,
            dir,
            bin,
            etcd: Some(etcd),
            apiserver: None,
            apiserver_args: args,
            components: Vec::new(),
            own_group,
            port,
            kubeconfig,
            detached: false,
        };
        plane.spawn_apiserver()?;
        plane.wait_ready().await?;
        if opts.cluster {
            plane.components = cluster::start(&plane, own_group).await?;
        }
        Ok(plane)
    }

    fn spawn_apiserver(&mut self) -> Result<()> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.apiserver_log())
            .map_err(io("open apiserver.log"))?;
        let mut cmd = Command::new(self.bin.join("kube-apiserver"));
        if self.own_group {
            cmd.process_group(0);
        }
        let child = cmd
            .args(&self.apiserver_args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(io("clone apiserver log"))?)
            .stderr(log)
            .spawn()
            .map_err(io("start kube-apiserver"))?;
        self.apiserver = Some(child);
        Ok(())
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let client = self.client().await?;
        let started = Instant::now();
        let mut last_err = String::from("no answer yet");
        loop {
            if let Some(child) = self.apiserver.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(self.not_ready(format!("kube-apiserver exited with {status}")));
            }
            if let Some(child) = self.etcd.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(self.not_ready(format!("etcd exited with {status}")));
            }
            if started.elapsed() > READY_TIMEOUT {
                return Err(self.not_ready(format!(
                    "no ready answer within {READY_TIMEOUT:?}: {last_err}"
                )));
            }
            let req = http::Request::get("/readyz")
                .body(Vec::new())
                .expect("valid request");
            match client.request_text(req).await {
                Ok(body) if body.trim() == "ok" => {
                    let ns: kube::Api<k8s_openapi::api::core::v1::Namespace> =
                        kube::Api::all(client.clone());
                    match ns.get_opt("default").await {
                        Ok(Some(_)) => return Ok(()),
                        Ok(None) => last_err = "namespace default not created yet".into(),
                        Err(e) => last_err = e.to_string(),
                    }
                }
                Ok(body) => last_err = body,
                Err(e) => last_err = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn not_ready(&mut self, reason: String) -> Error {
        let tail = self.log_tail(LOG_TAIL_LINES);
        for line in self.stop_all() {
            eprintln!("{line}");
        }
        Error::NotReady {
            name: self.name.clone(),
            reason,
            tail,
        }
    }

    /// The plane's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `https://127.0.0.1:<port>`.
    pub fn server_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// The admin kubeconfig (client certificate in group `system:masters`).
    pub fn kubeconfig(&self) -> &Kubeconfig {
        &self.kubeconfig
    }

    /// Path of the admin kubeconfig file.
    pub fn kubeconfig_path(&self) -> PathBuf {
        self.dir.path().join("admin.kubeconfig")
    }

    /// The plane's own folder.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Path of the apiserver log.
    pub fn apiserver_log(&self) -> PathBuf {
        self.dir.path().join("apiserver.log")
    }

    /// The folder with the built tools (kubectl, helm, istioctl, ...).
    pub fn tools_bin(&self) -> &Path {
        &self.bin
    }

    /// A kubeconfig for `user` (client certificate CN) in `groups`, signed by
    /// this plane's CA, written to `<dir>/<file>` and returned with its path.
    /// A user named `system:serviceaccount:<ns>:<name>` is that
    /// ServiceAccount to RBAC, so charts' bindings can be tested as is.
    pub fn user_kubeconfig(&self, user: &str, groups: &[&str], file: &str) -> Result<PathBuf> {
        let pki = self.dir.path().join("pki");
        let yaml = certs::user_kubeconfig(&pki, &self.name, &self.server_url(), user, groups)?;
        let path = self.dir.path().join(file);
        fs::write(&path, yaml).map_err(io(format!("write {file}")))?;
        Ok(path)
    }

    /// Path of the API server's audit log.
    pub fn audit_log(&self) -> PathBuf {
        self.dir.path().join("audit.log")
    }

    /// The audit log's text. A missing or unreadable log is an error, never
    /// "no requests": the API server writes it (blocking) before it answers
    /// its first request, so a plane that answered has one.
    pub fn audit_text(&self) -> Result<String> {
        let path = self.audit_log();
        fs::read_to_string(&path).map_err(io(format!("read the audit log {}", path.display())))
    }

    /// Every write request `user` made so far, from the API server's audit
    /// log (complete responses only). Fails when the log cannot be read.
    pub fn writes_by(&self, user: &str) -> Result<Vec<Write>> {
        Ok(audit::writes_by(&self.audit_text()?, user))
    }

    /// A `kube::Config` for the admin user.
    pub async fn config(&self) -> Result<kube::Config> {
        kube::Config::from_custom_kubeconfig(self.kubeconfig.clone(), &KubeConfigOptions::default())
            .await
            .map_err(|e| Error::Client(e.to_string()))
    }

    /// A new admin client.
    pub async fn client(&self) -> Result<kube::Client> {
        kube::Client::try_from(self.config().await?).map_err(|e| Error::Client(e.to_string()))
    }

    /// A `kubectl` command (the built one) pointed at this plane.
    pub fn kubectl(&self) -> Command {
        let mut cmd = Command::new(self.bin.join("kubectl"));
        cmd.env("KUBECONFIG", self.kubeconfig_path());
        cmd
    }

    /// A `helm` command (the built one) pointed at this plane, with its
    /// caches inside the plane's folder.
    pub fn helm(&self) -> Command {
        let mut cmd = Command::new(self.bin.join("helm"));
        let home = self.dir.path().join("helm");
        cmd.env("KUBECONFIG", self.kubeconfig_path())
            .env("HELM_CACHE_HOME", home.join("cache"))
            .env("HELM_CONFIG_HOME", home.join("config"))
            .env("HELM_DATA_HOME", home.join("data"));
        cmd
    }

    /// Kills kube-apiserver (SIGKILL), leaving etcd and the data in place.
    pub fn kill_apiserver(&mut self) {
        if let Some(mut child) = self.apiserver.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts kube-apiserver again on the same port and data, and waits for it.
    pub async fn restart_apiserver(&mut self) -> Result<()> {
        self.kill_apiserver();
        self.spawn_apiserver()?;
        self.wait_ready().await
    }

    /// Process ids of (etcd, kube-apiserver).
    pub fn pids(&self) -> (Option<u32>, Option<u32>) {
        (
            self.etcd.as_ref().map(Child::id),
            self.apiserver.as_ref().map(Child::id),
        )
    }

    /// Process ids of the cluster components (kwok, kube-scheduler,
    /// kube-controller-manager: stop order), empty on a default plane.
    pub fn cluster_pids(&self) -> Vec<u32> {
        self.components.iter().rev().map(|c| c.child.id()).collect()
    }

    /// Whether this plane runs the cluster components.
    pub fn is_cluster(&self) -> bool {
        !self.components.is_empty()
    }

    /// Leaves the processes running after this value is gone (for `make
    /// dev-up`): the caller is now responsible for stopping them.
    pub fn detach(mut self) {
        self.detached = true;
    }

    /// The last `lines` lines of the apiserver log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.apiserver_log(), lines)
    }

    /// Stops the cluster components (newest first), kube-apiserver, then
    /// etcd (see [`stop`]); returns a line for each process that had to be
    /// killed or still runs.
    fn stop_all(&mut self) -> Vec<String> {
        let mut complaints = cluster::stop_components(&self.name, &mut self.components);
        for (what, child, grace) in [
            ("kube-apiserver", self.apiserver.take(), APISERVER_GRACE),
            ("etcd", self.etcd.take(), ETCD_GRACE),
        ] {
            let Some(mut child) = child else { continue };
            let stopped = stop::stop(&mut child, grace);
            complaints.extend(stop::complaint(&self.name, what, child.id(), stopped));
        }
        complaints
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        if self.detached {
            return;
        }
        if std::thread::panicking() {
            // Keep the log where a person can read it, and show its end now.
            let kept = std::env::temp_dir().join(format!(
                "testplane-{}-{}-apiserver.log",
                self.name,
                std::process::id()
            ));
            let _ = fs::copy(self.apiserver_log(), &kept);
            eprintln!(
                "--- control plane {}: last {} lines of the apiserver log (whole log: {}) ---\n{}",
                self.name,
                LOG_TAIL_LINES,
                kept.display(),
                self.log_tail(LOG_TAIL_LINES)
            );
            for c in &self.components {
                let kept = std::env::temp_dir().join(format!(
                    "testplane-{}-{}-{}.log",
                    self.name,
                    std::process::id(),
                    c.what
                ));
                let _ = fs::copy(&c.log, &kept);
                eprintln!(
                    "--- control plane {}: last {} lines of the {} log (whole log: {}) ---\n{}",
                    self.name,
                    COMPONENT_TAIL_LINES,
                    c.what,
                    kept.display(),
                    tail(&c.log, COMPONENT_TAIL_LINES)
                );
            }
        }
        for line in self.stop_all() {
            eprintln!("{line}");
        }
    }
}

/// Lines of each cluster component's log printed when a test fails.
const COMPONENT_TAIL_LINES: usize = 15;

pub(crate) fn tail(path: &Path, lines: usize) -> String {
    let Ok(mut f) = fs::File::open(path) else {
        return String::from("(no log)");
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)));
    let mut buf = String::new();
    let _ = f.read_to_string(&mut buf);
    let all: Vec<&str> = buf.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

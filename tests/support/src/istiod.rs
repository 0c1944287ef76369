//! istiod (`pilot-discovery discovery`) as a plain process against a test
//! plane: the judge of what dualmesh writes for Istio. It runs with the
//! plane's kubeconfig, `POD_NAMESPACE=istio-system`, every listener on a
//! free loopback port, in a working directory of its own (where a test may
//! put plug-in CA files under `etc/cacerts`, as the kubelet would mount the
//! `cacerts` Secret), its output kept in `istiod.log` there. Its debug
//! endpoints on the HTTP port (`/debug/networkz`, `/debug/clusterz`, ...)
//! show what it understood. Stopped (SIGTERM, then SIGKILL) on drop.
//!
//! Istio's CRDs come from Istio's own `base` chart ([`install_istio_crds`]).

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{ControlPlane, Error, Result, io};

/// How long istiod may take to answer `/ready`.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long it may take to exit on SIGTERM.
const GRACE: Duration = Duration::from_secs(10);

/// A running istiod.
pub struct Istiod {
    child: Option<Child>,
    http: SocketAddr,
    dir: tempfile::TempDir,
    cluster_id: String,
}

fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(io("bind a free port"))?;
    Ok(l.local_addr().map_err(io("read a bound port"))?.port())
}

/// `manifests/charts` of the pinned istio.io/istio module (in the Go
/// module cache once `make tools` built istioctl and pilot-discovery).
pub fn istio_charts() -> Result<PathBuf> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let gomod = fs::read_to_string(repo.join("tools/istioctl/go.mod"))
        .map_err(io("read tools/istioctl/go.mod"))?;
    let version = gomod
        .lines()
        .find_map(|l| l.trim().strip_prefix("istio.io/istio "))
        .and_then(|rest| rest.split_whitespace().next())
        .ok_or_else(|| Error::Tools("tools/istioctl/go.mod requires no istio.io/istio".into()))?
        .to_string();
    let out = Command::new("go")
        .args(["env", "GOMODCACHE"])
        .output()
        .map_err(io("run go env GOMODCACHE"))?;
    let cache = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let dir = cache.join(format!("istio.io/istio@{version}/manifests/charts"));
    if !dir.join("base/Chart.yaml").exists() {
        return Err(Error::Tools(format!(
            "{} is missing: run make tools",
            dir.display()
        )));
    }
    Ok(dir)
}

/// Installs Istio's CRDs with Istio's own `base` chart (the built helm).
pub fn install_istio_crds(plane: &ControlPlane) -> Result<()> {
    let out = plane
        .helm()
        .args(["install", "istio-base"])
        .arg(istio_charts()?.join("base"))
        .args(["-n", "istio-system", "--create-namespace", "--wait"])
        // No default-revision validating webhook: it would point at a
        // Service no istiod serves here (failurePolicy Fail) and refuse
        // every Istio object.
        .args(["--set", "defaultRevision="])
        .output()
        .map_err(io("run helm install istio-base"))?;
    if !out.status.success() {
        return Err(Error::Client(format!(
            "helm install of Istio's base chart: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(())
}

impl Istiod {
    /// Starts istiod for `plane` as cluster `cluster_id`, with plug-in CA
    /// files `cacerts` (file name -> PEM; empty: istiod's self-signed CA),
    /// and waits until it answers `/ready`.
    pub fn start(
        plane: &ControlPlane,
        cluster_id: &str,
        cacerts: &BTreeMap<String, String>,
    ) -> Result<Self> {
        Self::start_env(plane, cluster_id, cacerts, &[])
    }

    /// [`Istiod::start`] with extra environment variables (e.g. the
    /// `pilot.env` entries of the Istio config dualmesh rendered).
    pub fn start_env(
        plane: &ControlPlane,
        cluster_id: &str,
        cacerts: &BTreeMap<String, String>,
        env: &[(&str, &str)],
    ) -> Result<Self> {
        let bin = crate::tools_bin()?.join("pilot-discovery");
        let dir = tempfile::Builder::new()
            .prefix(&format!("istiod-{cluster_id}-"))
            .tempdir()
            .map_err(io("make istiod's working directory"))?;
        if !cacerts.is_empty() {
            let ca = dir.path().join("etc/cacerts");
            fs::create_dir_all(&ca).map_err(io("make etc/cacerts"))?;
            for (name, pem) in cacerts {
                fs::write(ca.join(name), pem).map_err(io("write a cacerts file"))?;
            }
        }
        let log =
            fs::File::create(dir.path().join("istiod.log")).map_err(io("create istiod.log"))?;
        let err = log.try_clone().map_err(io("clone istiod.log"))?;
        let http: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse().unwrap();
        let addr = |port: u16| format!("127.0.0.1:{port}");
        let child = Command::new(&bin)
            .arg("discovery")
            .arg(format!(
                "--kubeconfig={}",
                plane.kubeconfig_path().display()
            ))
            .arg(format!("--clusterID={cluster_id}"))
            .arg(format!("--httpAddr={http}"))
            .arg(format!("--grpcAddr={}", addr(free_port()?)))
            .arg(format!("--secureGRPCAddr={}", addr(free_port()?)))
            .arg(format!("--httpsAddr={}", addr(free_port()?)))
            .arg(format!("--monitoringAddr={}", addr(free_port()?)))
            .arg("--log_output_level=default:info")
            .current_dir(dir.path())
            .env("POD_NAMESPACE", "istio-system")
            .env("POD_NAME", format!("istiod-{cluster_id}"))
            .env("REVISION", "default")
            .env("PILOT_CERT_PROVIDER", "istiod")
            // No webhooks to patch: nothing here would call them.
            .env("INJECTION_WEBHOOK_CONFIG_NAME", "")
            .env("VALIDATION_WEBHOOK_CONFIG_NAME", "")
            .env("PILOT_ENABLE_CROSS_CLUSTER_WORKLOAD_ENTRY", "true")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err))
            .spawn()
            .map_err(io(format!("start {}", bin.display())))?;
        let mut istiod = Istiod {
            child: Some(child),
            http,
            dir,
            cluster_id: cluster_id.to_string(),
        };
        istiod.wait_ready()?;
        Ok(istiod)
    }

    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                return Err(self.not_ready(format!("exited ({status})")));
            }
            if let Ok((200, _)) = self.get("/ready") {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(self.not_ready(format!("no 200 on /ready within {READY_TIMEOUT:?}")));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn not_ready(&self, reason: String) -> Error {
        Error::NotReady {
            name: format!("istiod {}", self.cluster_id),
            reason,
            tail: self.log_tail(40),
        }
    }

    /// GET `path` on the HTTP port: (status code, body).
    pub fn get(&self, path: &str) -> Result<(u16, String)> {
        let mut stream = TcpStream::connect_timeout(&self.http, Duration::from_secs(2))
            .map_err(io(format!("connect to istiod {}", self.http)))?;
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(io("set a read timeout"))?;
        write!(stream, "GET {path} HTTP/1.0\r\nHost: {}\r\n\r\n", self.http)
            .map_err(io(format!("send GET {path}")))?;
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .map_err(io(format!("read GET {path}")))?;
        let code = response
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        Ok((code, body))
    }

    /// GET a debug endpoint as JSON, e.g. `/debug/networkz`.
    pub fn debug_json(&self, path: &str) -> Result<serde_json::Value> {
        let (code, body) = self.get(path)?;
        if code != 200 {
            return Err(Error::Client(format!("GET {path}: HTTP {code}: {body}")));
        }
        serde_json::from_str(&body)
            .map_err(|e| Error::Client(format!("GET {path}: not JSON ({e}): {body}")))
    }

    /// `/debug/clusterz` as (cluster id, sync status) pairs, sorted.
    pub fn clusters(&self) -> Result<Vec<(String, String)>> {
        let z = self.debug_json("/debug/clusterz")?;
        let list = z
            .as_array()
            .ok_or_else(|| Error::Client(format!("/debug/clusterz is not a list: {z}")))?;
        let mut ids: Vec<(String, String)> = list
            .iter()
            .map(|c| {
                (
                    c["id"].as_str().unwrap_or_default().to_string(),
                    c["syncStatus"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// `/debug/networkz` as the (network, address, port) of each gateway,
    /// sorted.
    pub fn network_gateways(&self) -> Result<Vec<(String, String, u64)>> {
        let z = self.debug_json("/debug/networkz")?;
        let mut out: Vec<_> = z
            .as_array()
            .into_iter()
            .flatten()
            .map(|g| {
                (
                    g["Network"].as_str().unwrap_or_default().to_string(),
                    g["Addr"].as_str().unwrap_or_default().to_string(),
                    g["Port"].as_u64().unwrap_or_default(),
                )
            })
            .collect();
        out.sort();
        Ok(out)
    }

    /// Its working directory (`etc/cacerts` lives there).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Its whole log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("istiod.log")).unwrap_or_default()
    }

    /// The last `lines` lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Istiod {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let stopped = crate::stop::stop(&mut child, GRACE);
            let _ = child.wait();
            if let Some(line) =
                crate::stop::complaint(&self.cluster_id, "istiod", child.id(), stopped)
            {
                eprintln!("{line}");
            }
        }
        if std::thread::panicking() {
            eprintln!(
                "--- istiod {} log tail ---\n{}",
                self.cluster_id,
                self.log_tail(40)
            );
        }
    }
}

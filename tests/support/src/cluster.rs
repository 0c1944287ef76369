//! The rest of a cluster on a plane ([`PlaneOptions::cluster`]):
//! kube-controller-manager, kube-scheduler and kwok, so that Deployments are
//! scheduled onto fake Nodes and their Pods become Running and Ready with
//! dual-stack Pod IPs from the nodes' podCIDRs.
//!
//! - kube-controller-manager allocates each Node a podCIDR of both families
//!   from [`CLUSTER_CIDRS`], runs the ReplicaSet, Deployment, disruption,
//!   garbage collector, node lifecycle, namespace and ServiceAccount (token)
//!   controllers, and publishes `kube-root-ca.crt`: the `ServiceAccount`
//!   admission plugin stays on for these planes.
//! - kube-scheduler binds Pods to Nodes.
//! - kwok plays the kubelet of every Node annotated `kwok.x-k8s.io/node:
//!   fake` (see [`crate::fake_nodes`]), with kwok's own "fast" stages (copied
//!   by `make tools` into `<tools>/kwok-stages/`) and a node Lease, so the
//!   node lifecycle controller keeps them Ready.
//!
//! None of them serves HTTP (`--secure-port=0`, no kwok server): no port to
//! race for. Each runs with its own identity (client certificate CN
//! `system:kube-controller-manager`, `system:kube-scheduler`, and `kwok` in
//! `system:masters`), so the audit log tells their writes apart.
//!
//! [`PlaneOptions::cluster`]: crate::PlaneOptions::cluster

use std::fs;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ServiceAccount;

use crate::{ControlPlane, Error, Result, SERVICE_CIDRS, io, stop};

/// The Pod ranges node podCIDRs come from: a /24 of IPv4 and a /64 of IPv6
/// per node (kube-controller-manager's default mask sizes).
pub const CLUSTER_CIDRS: &str = "10.244.0.0/16,fd00:10:244::/56";

/// The annotation kwok selects the Nodes it plays the kubelet for by.
pub const KWOK_ANNOTATION: (&str, &str) = ("kwok.x-k8s.io/node", "fake");

/// How long the components may take to show they work.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// How long each component may take to exit after SIGTERM.
pub const GRACE: Duration = Duration::from_secs(10);

/// The kwok Lease duration: the node lifecycle controller marks a Node whose
/// Lease is older than its grace period (50 s) NotReady.
const NODE_LEASE_SECONDS: u32 = 40;

/// The command names (`/proc/<pid>/comm`, 15 characters at most) of the
/// components, in stop order: kwok first, kube-controller-manager last.
pub const COMMS: [&str; 3] = ["kwok", "kube-scheduler", "kube-controller"];

/// One running component: what it is, its log, its process.
pub(crate) struct Component {
    pub(crate) what: &'static str,
    pub(crate) log: PathBuf,
    pub(crate) child: Child,
}

/// Starts kube-controller-manager, kube-scheduler and kwok against `plane`
/// (in that order) and waits until the controller-manager has created the
/// `default` ServiceAccount. Returns them in start order; on failure the
/// ones already started are stopped and the error carries the failing
/// one's log tail.
pub(crate) async fn start(plane: &ControlPlane, own_group: bool) -> Result<Vec<Component>> {
    let bin = plane.tools_bin().to_path_buf();
    let stages = bin.join("kwok-stages");
    let dir = plane.dir().to_path_buf();
    let pki = |f: &str| dir.join("pki").join(f).display().to_string();
    let kcm = plane.user_kubeconfig(
        "system:kube-controller-manager",
        &[],
        "kube-controller-manager.kubeconfig",
    )?;
    let scheduler =
        plane.user_kubeconfig("system:kube-scheduler", &[], "kube-scheduler.kubeconfig")?;
    let kwok = plane.user_kubeconfig("kwok", &["system:masters"], "kwok.kubeconfig")?;
    let stage_files = stage_files(&stages)?;

    let specs: [(&'static str, PathBuf, Vec<String>); 3] = [
        (
            "kube-controller-manager",
            bin.join("kube-controller-manager"),
            vec![
                format!("--kubeconfig={}", kcm.display()),
                "--secure-port=0".into(),
                "--leader-elect=false".into(),
                // One ServiceAccount per controller, as kubeadm runs it: RBAC
                // then judges each controller by its own bootstrap role.
                "--use-service-account-credentials=true".into(),
                format!("--service-account-private-key-file={}", pki("sa.key")),
                format!("--root-ca-file={}", pki("ca.crt")),
                format!("--cluster-signing-cert-file={}", pki("ca.crt")),
                format!("--cluster-signing-key-file={}", pki("ca.key")),
                "--allocate-node-cidrs=true".into(),
                format!("--cluster-cidr={CLUSTER_CIDRS}"),
                format!("--service-cluster-ip-range={SERVICE_CIDRS}"),
                // No volumes and no cloud here.
                "--controllers=*,-persistentvolume-binder-controller,-persistentvolume-attach-detach-controller,-persistentvolume-expander-controller,-ephemeral-volume-controller,-persistentvolumeclaim-protection-controller,-persistentvolume-protection-controller".into(),
                "--kube-api-qps=100".into(),
                "--kube-api-burst=200".into(),
                "--v=1".into(),
            ],
        ),
        (
            "kube-scheduler",
            bin.join("kube-scheduler"),
            vec![
                format!("--kubeconfig={}", scheduler.display()),
                format!("--authentication-kubeconfig={}", scheduler.display()),
                format!("--authorization-kubeconfig={}", scheduler.display()),
                "--secure-port=0".into(),
                "--leader-elect=false".into(),
                "--kube-api-qps=100".into(),
                "--kube-api-burst=200".into(),
                "--v=1".into(),
            ],
        ),
        (
            "kwok",
            bin.join("kwok"),
            vec![
                format!("--kubeconfig={}", kwok.display()),
                format!(
                    "--manage-nodes-with-annotation-selector={}={}",
                    KWOK_ANNOTATION.0, KWOK_ANNOTATION.1
                ),
                format!("--config={}", stage_files.join(",")),
                format!("--node-lease-duration-seconds={NODE_LEASE_SECONDS}"),
            ],
        ),
    ];

    let mut started: Vec<Component> = Vec::new();
    for (what, program, args) in specs {
        match spawn(what, &program, &args, &dir, own_group) {
            Ok(c) => started.push(c),
            Err(e) => {
                stop_components(plane.name(), &mut started);
                return Err(e);
            }
        }
    }
    match wait_working(plane, &mut started).await {
        Ok(()) => Ok(started),
        Err(e) => {
            for line in stop_components(plane.name(), &mut started) {
                eprintln!("{line}");
            }
            Err(e)
        }
    }
}

/// The stage files `make tools` copied, as kwok's `--config` list.
fn stage_files(stages: &Path) -> Result<Vec<String>> {
    let missing = || {
        Error::Tools(format!(
            "kwok's stages are missing in {}; run `make tools`",
            stages.display()
        ))
    };
    let mut files: Vec<String> = fs::read_dir(stages)
        .map_err(|_| missing())?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|p| p.display().to_string())
        .collect();
    if files.is_empty() {
        return Err(missing());
    }
    files.sort();
    Ok(files)
}

fn spawn(
    what: &'static str,
    program: &Path,
    args: &[String],
    dir: &Path,
    own_group: bool,
) -> Result<Component> {
    if !program.exists() {
        return Err(Error::Tools(format!(
            "{} is missing; run `make tools`",
            program.display()
        )));
    }
    let log = dir.join(format!("{what}.log"));
    let file = fs::File::create(&log).map_err(io(format!("create {what}.log")))?;
    let mut cmd = Command::new(program);
    if own_group {
        cmd.process_group(0);
    }
    let child = cmd
        .args(args)
        .stdin(Stdio::null())
        .stdout(file.try_clone().map_err(io(format!("clone {what} log")))?)
        .stderr(file)
        .spawn()
        .map_err(io(format!("start {what}")))?;
    Ok(Component { what, log, child })
}

/// Waits for the `default` ServiceAccount of namespace `default` (the
/// controller-manager's ServiceAccount controller, running under its own
/// ServiceAccount credentials, made it); fails as soon as a component exits.
async fn wait_working(plane: &ControlPlane, components: &mut [Component]) -> Result<()> {
    let client = plane.client().await?;
    let sas: kube::Api<ServiceAccount> = kube::Api::namespaced(client, "default");
    let started = Instant::now();
    loop {
        for c in components.iter_mut() {
            if let Ok(Some(status)) = c.child.try_wait() {
                return Err(failed(plane, c, format!("exited with {status}")));
            }
        }
        let last = match sas.get_opt("default").await {
            Ok(Some(_)) => return Ok(()),
            Ok(None) => "ServiceAccount default/default not created yet".to_string(),
            Err(e) => e.to_string(),
        };
        if started.elapsed() > READY_TIMEOUT {
            let kcm = &components[0];
            return Err(failed(
                plane,
                kcm,
                format!("not working within {READY_TIMEOUT:?}: {last}"),
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn failed(plane: &ControlPlane, c: &Component, reason: String) -> Error {
    Error::ComponentFailed {
        plane: plane.name().to_string(),
        component: c.what.to_string(),
        reason,
        tail: crate::tail(&c.log, crate::LOG_TAIL_LINES),
    }
}

/// Stops `components` in reverse start order (see [`stop`]); returns a line
/// for each one that had to be killed or still runs.
pub(crate) fn stop_components(plane: &str, components: &mut Vec<Component>) -> Vec<String> {
    let mut complaints = Vec::new();
    while let Some(mut c) = components.pop() {
        let stopped = stop::stop(&mut c.child, GRACE);
        complaints.extend(stop::complaint(plane, c.what, c.child.id(), stopped));
    }
    complaints
}

//! Stopping a plane's processes so that none is ever left behind.
//!
//! kube-apiserver goes first: its graceful shutdown needs etcd, and given
//! SIGTERM together with its etcd it has been seen to hang for good. Each
//! process gets SIGTERM, then SIGKILL when it has not exited within its grace
//! period; the caller learns which had to be killed, and which (in
//! uninterruptible sleep, say) are still running and must not be forgotten.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a process may take to die after SIGKILL before it counts as stuck.
const KILL_WAIT: Duration = Duration::from_secs(10);

/// How often a stopping process is looked at.
const POLL: Duration = Duration::from_millis(50);

/// A process to stop: a child of ours, or a PID read from a file.
pub(crate) trait Process {
    fn pid(&self) -> u32;
    /// Whether it still runs (a zombie does not).
    fn running(&mut self) -> bool;
}

impl Process for Child {
    fn pid(&self) -> u32 {
        self.id()
    }

    fn running(&mut self) -> bool {
        matches!(self.try_wait(), Ok(None))
    }
}

/// A process known only by its PID, e.g. from `make dev-up`'s PID files,
/// owned by someone else (init reaps it).
pub(crate) struct Pid(pub u32);

impl Process for Pid {
    fn pid(&self) -> u32 {
        self.0
    }

    fn running(&mut self) -> bool {
        proc_state(self.0).is_some_and(|state| state != 'Z')
    }
}

/// The state letter of `/proc/<pid>/stat` (R, S, D, Z, ...), None when the
/// process does not exist.
fn proc_state(pid: u32) -> Option<char> {
    let stat =
        std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("stat")).ok()?;
    // `pid (comm) state ...`; comm may hold spaces and parentheses.
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// The command name of a running process (`/proc/<pid>/comm`).
pub(crate) fn comm(pid: u32) -> Option<String> {
    let path = Path::new("/proc").join(pid.to_string()).join("comm");
    Some(std::fs::read_to_string(path).ok()?.trim().to_string())
}

/// How a stop ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stopped {
    /// It was not running (any more).
    NotRunning,
    /// It exited after SIGTERM within its grace period.
    Exited,
    /// It ignored SIGTERM for `grace` and was killed with SIGKILL.
    Killed { grace: Duration },
    /// It still runs even after SIGKILL (uninterruptible sleep, say).
    StillRunning,
}

fn signal(pid: u32, signal: &str) {
    // `kill` failing means the process is already gone: `running` says so.
    let _ = Command::new("kill")
        .args([signal, &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

fn wait_gone(process: &mut impl Process, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if !process.running() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(POLL);
    }
}

/// SIGTERM, up to `grace` to exit, then SIGKILL.
pub(crate) fn stop(process: &mut impl Process, grace: Duration) -> Stopped {
    if !process.running() {
        return Stopped::NotRunning;
    }
    signal(process.pid(), "-TERM");
    if wait_gone(process, grace) {
        return Stopped::Exited;
    }
    signal(process.pid(), "-KILL");
    if wait_gone(process, KILL_WAIT) {
        Stopped::Killed { grace }
    } else {
        Stopped::StillRunning
    }
}

/// A line for a person when a stop did not go as it should, None when it did.
pub fn complaint(plane: &str, what: &str, pid: u32, stopped: Stopped) -> Option<String> {
    match stopped {
        Stopped::NotRunning | Stopped::Exited => None,
        Stopped::Killed { grace } => Some(format!(
            "{plane}: {what} (pid {pid}) did not exit within {grace:?} of SIGTERM: killed it (SIGKILL)"
        )),
        Stopped::StillRunning => Some(format!(
            "{plane}: {what} (pid {pid}) still runs after SIGTERM and SIGKILL"
        )),
    }
}

/// Stops the processes of a plane known only by their PIDs (`testplane
/// down`): the cluster components (kwok, kube-scheduler,
/// kube-controller-manager), then kube-apiserver, then etcd, each SIGTERM
/// then SIGKILL after its grace period. A PID whose process is none of these
/// (the PID file outlived a reboot) is left alone. Returns, for each PID,
/// how it was stopped and what it was.
pub fn stop_pids(pids: &[u32]) -> Vec<(u32, String, Stopped)> {
    let mut known: Vec<(u32, String)> = pids
        .iter()
        .map(|&pid| (pid, comm(pid).unwrap_or_default()))
        .collect();
    // Whatever the file's order: the components, the API server, its etcd.
    let order = |comm: &str| {
        crate::cluster::COMMS
            .iter()
            .chain(&["kube-apiserver", "etcd"])
            .position(|c| *c == comm)
            .unwrap_or(usize::MAX)
    };
    known.sort_by_key(|(_, comm)| order(comm));
    known
        .into_iter()
        .map(|(pid, comm)| {
            let stopped = match comm.as_str() {
                "kube-apiserver" => stop(&mut Pid(pid), crate::APISERVER_GRACE),
                "etcd" => stop(&mut Pid(pid), crate::ETCD_GRACE),
                c if crate::cluster::COMMS.contains(&c) => {
                    stop(&mut Pid(pid), crate::cluster::GRACE)
                }
                _ => Stopped::NotRunning,
            };
            (pid, comm, stopped)
        })
        .collect()
}

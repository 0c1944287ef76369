//! The operator under test as a real process: started with a kubeconfig,
//! its whole output kept in a file (tests read it, e.g. to prove no secret
//! leaks into logs), killed on drop.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::{Result, io};

/// A running operator process.
pub struct Operator {
    child: Option<Child>,
    bin: PathBuf,
    args: Vec<String>,
    envs: Vec<(String, String)>,
    log: PathBuf,
}

impl Operator {
    /// Starts `bin run <args>` with `KUBECONFIG=kubeconfig`, appending its
    /// stdout and stderr to `log`.
    pub fn start(bin: &Path, kubeconfig: &Path, args: &[&str], log: &Path) -> Result<Self> {
        Self::start_with_env(bin, kubeconfig, args, &[], log)
    }

    /// [`Operator::start`] with environment variables too, e.g. those a
    /// chart's Deployment sets (`DUALMESH_NAMESPACE`, `POD_NAME`, ...).
    pub fn start_with_env(
        bin: &Path,
        kubeconfig: &Path,
        args: &[&str],
        envs: &[(&str, &str)],
        log: &Path,
    ) -> Result<Self> {
        let mut all = vec![("KUBECONFIG".to_string(), kubeconfig.display().to_string())];
        all.extend(envs.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let mut op = Operator {
            child: None,
            bin: bin.to_path_buf(),
            args: args.iter().map(|s| s.to_string()).collect(),
            envs: all,
            log: log.to_path_buf(),
        };
        op.spawn()?;
        Ok(op)
    }

    fn spawn(&mut self) -> Result<()> {
        let out = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(io("open the operator log"))?;
        let child = Command::new(&self.bin)
            .arg("run")
            .args(&self.args)
            .envs(self.envs.iter().cloned())
            .env_remove("RUST_LOG")
            .env_remove("RUST_BACKTRACE")
            .stdin(Stdio::null())
            .stdout(out.try_clone().map_err(io("clone the operator log"))?)
            .stderr(out)
            .spawn()
            .map_err(io(format!("start {}", self.bin.display())))?;
        self.child = Some(child);
        Ok(())
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Everything the operator printed so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Whether it exited, and how.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    /// SIGKILL, as a crashed node or OOM kill would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then wait up to `grace` for it to exit (SIGKILL after).
    pub fn terminate(&mut self, grace: Duration) -> Option<ExitStatus> {
        let mut c = self.child.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = c.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        c.wait().ok();
        None
    }

    /// Starts it again with the same arguments (after `kill` or `terminate`).
    pub fn restart(&mut self) -> Result<()> {
        self.kill();
        self.spawn()
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
    }
}

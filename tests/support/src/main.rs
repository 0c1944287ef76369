//! `testplane`: start named control planes that outlive this command (for
//! `make dev-up`), and stop them again (`make dev-down`).
//!
//! ```text
//! testplane up   --dir .dev alpha beta   # writes .dev/<name>.kubeconfig and .dev/<name>.pids
//! testplane down --dir .dev              # stops every plane with a PID file in .dev
//! ```
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use testplane::{ControlPlane, PlaneOptions};

fn usage() -> ExitCode {
    eprintln!("usage: testplane up --dir DIR NAME...\n       testplane down --dir DIR");
    ExitCode::from(2)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (cmd, rest) = match args.split_first() {
        Some((c, r)) => (c.as_str(), r),
        None => return usage(),
    };
    let (dir, names) = match rest {
        [flag, dir, names @ ..] if flag == "--dir" => (PathBuf::from(dir), names),
        _ => return usage(),
    };
    match cmd {
        "up" if !names.is_empty() => up(&dir, names).await,
        "down" if names.is_empty() => down(&dir),
        _ => usage(),
    }
}

async fn up(dir: &Path, names: &[String]) -> ExitCode {
    if let Err(e) = std::fs::create_dir_all(dir) {
        eprintln!("failed to create {}: {e}", dir.display());
        return ExitCode::FAILURE;
    }
    for name in names {
        if dir.join(format!("{name}.pids")).exists() {
            eprintln!("{name}: already up (run `make dev-down` first)");
            return ExitCode::FAILURE;
        }
        let started = std::time::Instant::now();
        let opts = PlaneOptions {
            dir: Some(dir.join(name)),
            ..PlaneOptions::named(name)
        };
        let plane = match ControlPlane::start(opts).await {
            Ok(p) => p,
            Err(e) => {
                eprintln!("{name}: {e}");
                return ExitCode::FAILURE;
            }
        };
        let kubeconfig = dir.join(format!("{name}.kubeconfig"));
        let (etcd, apiserver) = plane.pids();
        let pids = [apiserver, etcd]
            .iter()
            .flatten()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join("\n");
        if let Err(e) = std::fs::copy(plane.kubeconfig_path(), &kubeconfig)
            .and_then(|_| std::fs::write(dir.join(format!("{name}.pids")), pids + "\n"))
        {
            eprintln!("{name}: failed to write its files: {e}");
            return ExitCode::FAILURE;
        }
        println!(
            "{name}: up at {} in {:.1}s; kubeconfig {}",
            plane.server_url(),
            started.elapsed().as_secs_f64(),
            kubeconfig.display()
        );
        plane.detach();
    }
    ExitCode::SUCCESS
}

fn down(dir: &Path) -> ExitCode {
    let Ok(entries) = std::fs::read_dir(dir) else {
        println!("nothing to stop in {}", dir.display());
        return ExitCode::SUCCESS;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "pids") {
            continue;
        }
        let name = path
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        let pids = std::fs::read_to_string(&path).unwrap_or_default();
        for pid in pids.split_whitespace() {
            // The PID file may be stale (a reboot): `kill` failing is fine.
            let _ = Command::new("kill").arg(pid).status();
        }
        // kube-apiserver shuts down gracefully, which takes a few seconds:
        // return only once both processes are gone.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while pids
            .split_whitespace()
            .any(|p| Path::new("/proc").join(p).exists())
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        let _ = std::fs::remove_file(&path);
        let _ = std::fs::remove_file(dir.join(format!("{name}.kubeconfig")));
        println!("{name}: stopped");
    }
    ExitCode::SUCCESS
}

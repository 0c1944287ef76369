//! `testplane`: start named control planes that outlive this command (for
//! `make dev-up`), and stop them again (`make dev-down`).
//!
//! ```text
//! testplane up   --dir .dev alpha beta             # writes .dev/<name>.kubeconfig and .dev/<name>.pids
//! testplane up   --dir .dev --cluster alpha beta   # planes that behave like clusters (testplane::cluster)
//! testplane up   --dir .dev --cluster --nodes 2 alpha beta   # ... each with 2 Ready fake Nodes
//! testplane down --dir .dev                        # stops every plane with a PID file in .dev
//! ```
//!
//! `down` stops each plane's kwok, kube-scheduler and kube-controller-manager
//! (when it runs them), then its kube-apiserver, then its etcd, kills what does
//! not exit in time (and says so), and keeps the PID file of a plane whose
//! processes still run, so a second `down` can try again.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use testplane::stop::{Stopped, complaint};
use testplane::{ControlPlane, PlaneOptions, stop_pids};
use tokio::signal::unix::{SignalKind, signal};

fn usage() -> ExitCode {
    eprintln!(
        "usage: testplane up --dir DIR [--cluster [--nodes N]] NAME...\n       testplane down --dir DIR"
    );
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
    let (cluster, names) = match names {
        [flag, names @ ..] if cmd == "up" && flag == "--cluster" => (true, names),
        _ => (false, names),
    };
    let (nodes, names) = match names {
        [flag, n, names @ ..] if cluster && flag == "--nodes" => match n.parse::<u8>() {
            Ok(n) => (n, names),
            Err(_) => return usage(),
        },
        _ => (0, names),
    };
    match cmd {
        "up" if !names.is_empty() => up(&dir, names, cluster, nodes).await,
        "down" if names.is_empty() => down(&dir),
        _ => usage(),
    }
}

/// Registers `n` Ready fake Nodes `<plane>-node-<i>` on the `k`-th plane,
/// node `i` with InternalIPs `2001:db8:<k>::<i>` and `10.<k>.0.<i>`.
async fn fake_nodes(plane: &ControlPlane, k: usize, n: u8) -> Result<(), String> {
    let client = plane.client().await.map_err(|e| e.to_string())?;
    let prefix = format!("{}-node", plane.name());
    testplane::fake_nodes::create_n_fake_nodes(&client, &prefix, n, |i| {
        vec![
            ("InternalIP", format!("2001:db8:{k:x}::{i:x}")),
            ("InternalIP", format!("10.{k}.0.{i}")),
        ]
    })
    .await
    .map(|_| ())
    .map_err(|e| e.to_string())
}

async fn up(dir: &Path, names: &[String], cluster: bool, nodes: u8) -> ExitCode {
    if let Err(e) = std::fs::create_dir_all(dir) {
        eprintln!("failed to create {}: {e}", dir.display());
        return ExitCode::FAILURE;
    }
    for (k, name) in names.iter().enumerate() {
        if dir.join(format!("{name}.pids")).exists() {
            eprintln!("{name}: already up (run `make dev-down` first)");
            return ExitCode::FAILURE;
        }
        let started = std::time::Instant::now();
        let opts = PlaneOptions {
            dir: Some(dir.join(name)),
            cluster,
            ..PlaneOptions::named(name)
        };
        // Interrupted while starting: dropping the start stops what it began
        // (the planes already up have their PID files for `down`).
        let Ok(mut term) = signal(SignalKind::terminate()) else {
            eprintln!("failed to listen for SIGTERM");
            return ExitCode::FAILURE;
        };
        let started_plane = tokio::select! {
            started = ControlPlane::start(opts) => started,
            _ = tokio::signal::ctrl_c() => {
                eprintln!("{name}: interrupted while starting; stopped it");
                return ExitCode::from(130);
            }
            _ = term.recv() => {
                eprintln!("{name}: terminated while starting; stopped it");
                return ExitCode::from(143);
            }
        };
        let plane = match started_plane {
            Ok(p) => p,
            Err(e) => {
                eprintln!("{name}: {e}");
                return ExitCode::FAILURE;
            }
        };
        if nodes > 0
            && let Err(e) = fake_nodes(&plane, k + 1, nodes).await
        {
            eprintln!("{name}: failed to register its fake Nodes: {e}");
            return ExitCode::FAILURE;
        }
        let kubeconfig = dir.join(format!("{name}.kubeconfig"));
        let (etcd, apiserver) = plane.pids();
        // In stop order (`down` sorts them again anyway).
        let pids = plane
            .cluster_pids()
            .into_iter()
            .chain([apiserver, etcd].into_iter().flatten())
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
            "{name}: up at {}{} in {:.1}s; kubeconfig {}",
            plane.server_url(),
            match (cluster, nodes) {
                (false, _) => String::new(),
                (true, 0) => " with kube-controller-manager, kube-scheduler and kwok".to_string(),
                (true, n) => format!(
                    " with kube-controller-manager, kube-scheduler, kwok and {n} Ready fake Nodes"
                ),
            },
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
    let mut code = ExitCode::SUCCESS;
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "pids"))
        .collect();
    files.sort();
    for path in files {
        let name = path
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) => {
                eprintln!("{name}: failed to read {}: {e}", path.display());
                code = ExitCode::FAILURE;
                continue;
            }
        };
        let pids: Vec<u32> = text
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect();
        let mut still_running = Vec::new();
        for (pid, comm, stopped) in stop_pids(&pids) {
            if let Some(line) = complaint(&name, &comm, pid, stopped) {
                eprintln!("{line}");
            }
            if stopped == Stopped::StillRunning {
                still_running.push(pid.to_string());
            }
        }
        if !still_running.is_empty() {
            // Never forget a process that still runs: keep only its PIDs.
            let _ = std::fs::write(&path, still_running.join("\n") + "\n");
            eprintln!(
                "{name}: NOT stopped; kept {} (run `testplane down` again)",
                path.display()
            );
            code = ExitCode::FAILURE;
            continue;
        }
        let _ = std::fs::remove_file(&path);
        let _ = std::fs::remove_file(dir.join(format!("{name}.kubeconfig")));
        println!("{name}: stopped");
    }
    code
}

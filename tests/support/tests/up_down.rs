//! `testplane up` and `testplane down` as `make dev-up` and `make dev-down`
//! run them, cycle after cycle: no etcd or kube-apiserver may outlive `down`,
//! and neither may a `--cluster` plane's kube-controller-manager,
//! kube-scheduler or kwok.

use std::path::Path;
use std::process::{Command, Output};

/// As many cycles as an afternoon of `make dev-up` / `make dev-down` that
/// left five API servers behind.
const CYCLES: usize = 20;
const PLANES: [&str; 2] = ["alpha", "beta"];

fn testplane(args: &[&str], dir: &Path) -> Output {
    testplane_with(args, dir, if args == ["up"] { &PLANES[..] } else { &[] })
}

fn testplane_with(args: &[&str], dir: &Path, rest: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_testplane"))
        .args(args)
        .arg("--dir")
        .arg(dir)
        .args(rest)
        .output()
        .expect("run testplane");
    assert!(
        out.status.success(),
        "testplane {args:?} failed with {}:\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The state letter of `/proc/<pid>/stat`; None when there is no such process.
fn state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// Processes (not zombies) whose command line names `dir`: every etcd and
/// kube-apiserver of these planes has its data folder inside it.
fn processes_using(dir: &Path) -> Vec<String> {
    let needle = dir.display().to_string();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(&needle) && state(pid).is_some_and(|s| s != 'Z') {
            found.push(format!("{pid} {cmdline}"));
        }
    }
    found
}

#[test]
fn twenty_up_down_cycles_leave_no_process_behind() {
    let dir = tempfile::Builder::new()
        .prefix("testplane-cycles-")
        .tempdir()
        .expect("temporary folder");
    let dir = dir.path();
    let mut killed = Vec::new();
    for cycle in 1..=CYCLES {
        testplane(&["up"], dir);
        let mut pids = Vec::new();
        for name in PLANES {
            let file = dir.join(format!("{name}.pids"));
            let text = std::fs::read_to_string(&file).expect("a PID file per plane");
            let mine: Vec<u32> = text
                .split_whitespace()
                .map(|p| p.parse().unwrap())
                .collect();
            assert_eq!(mine.len(), 2, "cycle {cycle}: {name}.pids holds {text:?}");
            for pid in &mine {
                let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                assert!(
                    ["kube-apiserver", "etcd"].contains(&comm.trim()),
                    "cycle {cycle}: {name}'s pid {pid} runs {comm:?}"
                );
            }
            pids.extend(mine);
        }

        let out = testplane(&["down"], dir);
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        killed.extend(stderr.lines().map(|l| format!("cycle {cycle}: {l}")));

        let left: Vec<u32> = pids
            .iter()
            .copied()
            .filter(|&pid| state(pid).is_some_and(|s| s != 'Z'))
            .collect();
        assert!(
            left.is_empty(),
            "cycle {cycle}: still running after `testplane down`: {left:?}\n{stderr}"
        );
        assert_eq!(
            processes_using(dir),
            Vec::<String>::new(),
            "cycle {cycle}: processes using {}",
            dir.display()
        );
        for name in PLANES {
            assert!(
                !dir.join(format!("{name}.pids")).exists(),
                "cycle {cycle}: {name}.pids outlived its processes"
            );
        }
    }
    // Killing is allowed (and said), but should be rare: show it.
    if !killed.is_empty() {
        eprintln!("what `down` had to kill:\n{}", killed.join("\n"));
    }
}

/// Fewer cycles: a cluster plane is five processes, and what this adds to
/// the test above is the three components' place in the PID file and in
/// `down`'s stop order.
const CLUSTER_CYCLES: usize = 3;

#[test]
fn cluster_planes_up_down_leave_no_process_behind() {
    let dir = tempfile::Builder::new()
        .prefix("testplane-cluster-cycles-")
        .tempdir()
        .expect("temporary folder");
    let dir = dir.path();
    for cycle in 1..=CLUSTER_CYCLES {
        testplane_with(&["up"], dir, &["--cluster", "alpha"]);
        let text = std::fs::read_to_string(dir.join("alpha.pids")).expect("a PID file");
        let pids: Vec<u32> = text
            .split_whitespace()
            .map(|p| p.parse().unwrap())
            .collect();
        let comms: Vec<String> = pids
            .iter()
            .map(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .unwrap_or_default()
                    .trim()
                    .to_string()
            })
            .collect();
        assert_eq!(
            comms,
            [
                "kwok",
                "kube-scheduler",
                "kube-controller",
                "kube-apiserver",
                "etcd"
            ],
            "cycle {cycle}: alpha.pids holds {text:?}"
        );

        let out = testplane(&["down"], dir);
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        let left: Vec<u32> = pids
            .iter()
            .copied()
            .filter(|&pid| state(pid).is_some_and(|s| s != 'Z'))
            .collect();
        assert!(
            left.is_empty(),
            "cycle {cycle}: still running after `testplane down`: {left:?}\n{stderr}"
        );
        assert_eq!(
            processes_using(dir),
            Vec::<String>::new(),
            "cycle {cycle}: processes using {}",
            dir.display()
        );
        assert!(
            !dir.join("alpha.pids").exists(),
            "cycle {cycle}: alpha.pids outlived its processes"
        );
    }
}

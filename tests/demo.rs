//! `make demo` is documentation that runs: this runs it (tools/demo.sh) on
//! its own two planes and fails when any step of the flow breaks.

use std::path::Path;
use std::process::Command;

#[test]
fn the_demo_runs_end_to_end() {
    let dualmesh = Path::new(env!("CARGO_BIN_EXE_dualmesh"));
    let testplane = dualmesh.with_file_name("testplane");
    if !testplane.exists() {
        let built = Command::new(env!("CARGO"))
            .args(["build", "-p", "testplane", "--bin", "testplane"])
            .status()
            .expect("cargo build testplane");
        assert!(built.success());
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("bash")
        .arg(repo.join("tools/demo.sh"))
        .arg("--stop-after")
        .env("DEMO_DIR", dir.path())
        .env("DUALMESH_BIN", dualmesh)
        .env("TESTPLANE_BIN", &testplane)
        .env("DUALMESH_TOOLS_BIN", testplane::tools_bin().expect("tools"))
        .output()
        .expect("run tools/demo.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("demo: OK"),
        "demo failed ({}):\n{stdout}\n{stderr}\ndualmesh log:\n{}",
        out.status,
        std::fs::read_to_string(dir.path().join("dualmesh.log")).unwrap_or_default()
    );
    // What a reader of the demo is shown.
    for line in [
        "alpha: [\"2001:db8:a::11\"]",
        "beta:  [\"2001:db8:b::21\"]",
        "alpha: [\"2001:db8:a::12\"]",
        "beta's token: demo-token-2",
        "SecretsSynced=True",
        "dualmesh_member_reachable{namespace=\"dualmesh-system\",meshcluster=\"beta\"} 1",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in:\n{stdout}");
    }
}

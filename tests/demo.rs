//! `make demo` is documentation that runs: this runs it (tools/demo.sh) on
//! two planes of its own and fails when any step of the flow breaks.

use std::process::Command;

use testplane::{ControlPlane, PlaneOptions};

#[tokio::test]
async fn the_demo_runs_end_to_end() {
    // The planes come from the harness (the script's `testplane up` would
    // need a separate build of the testplane binary).
    let dir = tempfile::tempdir().expect("temp dir");
    // Clusters, as `testplane up --cluster` starts them for `make demo`.
    let alpha = ControlPlane::start(PlaneOptions::named("demo-alpha").cluster())
        .await
        .expect("alpha");
    let beta = ControlPlane::start(PlaneOptions::named("demo-beta").cluster())
        .await
        .expect("beta");
    for (name, plane) in [("alpha", &alpha), ("beta", &beta)] {
        std::fs::copy(
            plane.kubeconfig_path(),
            dir.path().join(format!("{name}.kubeconfig")),
        )
        .expect("kubeconfig");
    }
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("bash")
        .arg(repo.join("tools/demo.sh"))
        .arg("--stop-after")
        .env("DEMO_DIR", dir.path())
        .env("DEMO_EXTERNAL_PLANES", "1")
        .env("DUALMESH_BIN", env!("CARGO_BIN_EXE_dualmesh"))
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

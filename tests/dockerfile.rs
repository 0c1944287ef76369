//! The Dockerfile, checked without a container engine (none runs here): the
//! runtime stage is distroless static, non-root (65532) and holds only the
//! binary, and the files the build stage copies form a workspace cargo can
//! load with the lock file as it is (a missing crate, target or lock entry in
//! the build context fails here instead of in someone's `docker build`).

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The instructions of each stage, as (instruction, arguments) pairs.
fn stages() -> Vec<Vec<(String, String)>> {
    let text = std::fs::read_to_string(repo().join("Dockerfile")).expect("Dockerfile");
    let mut stages: Vec<Vec<(String, String)>> = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (instr, args) = line.split_once(' ').unwrap_or((line, ""));
        let instr = instr.to_ascii_uppercase();
        if instr == "FROM" {
            stages.push(Vec::new());
        }
        stages
            .last_mut()
            .expect("FROM comes first")
            .push((instr, args.trim().to_string()));
    }
    stages
}

#[test]
fn the_runtime_stage_is_distroless_non_root_and_holds_only_the_binary() {
    let stages = stages();
    assert_eq!(stages.len(), 2, "a build stage and a runtime stage");
    let runtime = &stages[1];
    let get = |i: &str| -> Vec<&str> {
        runtime
            .iter()
            .filter(|(x, _)| x == i)
            .map(|(_, a)| a.as_str())
            .collect()
    };
    assert_eq!(
        get("FROM"),
        ["gcr.io/distroless/static-debian12:nonroot"],
        "a static distroless base: no shell, no package manager"
    );
    assert_eq!(get("USER"), ["65532:65532"]);
    assert_eq!(get("ENTRYPOINT"), [r#"["/dualmesh"]"#]);
    let copies = get("COPY");
    assert_eq!(copies.len(), 1, "only the binary: {copies:?}");
    assert!(
        copies[0].starts_with("--from=build ") && copies[0].ends_with(" /dualmesh"),
        "{}",
        copies[0]
    );
    assert!(
        copies[0].contains("x86_64-unknown-linux-musl/release/dualmesh"),
        "the static (musl) release binary: {}",
        copies[0]
    );
    let build = &stages[0];
    assert!(
        build.iter().any(|(i, a)| i == "RUN"
            && a.contains("cargo build --release --locked --target x86_64-unknown-linux-musl")),
        "the build stage builds the musl release binary with the lock file"
    );
}

/// Copies `src` (file or folder, relative to the repo) to `dst`.
fn copy(src: &Path, dst: &Path) {
    if src.is_dir() {
        std::fs::create_dir_all(dst).expect("mkdir");
        for entry in std::fs::read_dir(src).expect("read_dir") {
            let entry = entry.expect("entry");
            copy(&entry.path(), &dst.join(entry.file_name()));
        }
    } else {
        std::fs::create_dir_all(dst.parent().expect("parent")).expect("mkdir");
        std::fs::copy(src, dst).expect("copy");
    }
}

#[test]
fn the_build_stage_copies_a_workspace_cargo_can_load_with_its_lock_file() {
    let context = tempfile::tempdir().expect("tempdir");
    let build = &stages()[0];
    let workdir = build
        .iter()
        .rev()
        .find(|(i, _)| i == "WORKDIR")
        .map(|(_, a)| a.clone())
        .expect("WORKDIR");
    let mut copied = 0;
    for (_, args) in build.iter().filter(|(i, _)| i == "COPY") {
        let parts: Vec<&str> = args.split_whitespace().collect();
        let (dest, sources) = parts.split_last().expect("COPY src... dest");
        let dest = dest.trim_start_matches(&format!("{workdir}/")).to_string();
        for src in sources {
            let from = repo().join(src);
            assert!(
                from.exists(),
                "the Dockerfile copies {src}, which is missing"
            );
            let to = if dest.ends_with('/') {
                context
                    .path()
                    .join(&dest)
                    .join(Path::new(src).file_name().expect("name"))
            } else {
                context.path().join(&dest)
            };
            copy(&from, &to);
            copied += 1;
        }
    }
    assert!(copied >= 3, "the manifest, the lock file and the sources");
    // `cargo fetch` loads every manifest and target of the workspace and
    // resolves against Cargo.lock without changing it; --offline uses the
    // crates this test run already downloaded.
    let out = Command::new(env!("CARGO"))
        .args([
            "fetch",
            "--locked",
            "--offline",
            "--target",
            "x86_64-unknown-linux-musl",
        ])
        .current_dir(context.path())
        .output()
        .expect("run cargo fetch");
    assert!(
        out.status.success(),
        "the Docker build context does not load:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

//! What the chart tests (tests/chart_*.rs) share: the charts and their
//! fixtures, a helm without a plane, running commands, and reading rendered
//! manifests.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use super::repo;
use serde_json::Value;

pub const WAIT: Duration = Duration::from_secs(30);

/// The operator's ServiceAccount as the chart creates it for release
/// `dualmesh` in `dualmesh-system`, and the member chart's.
pub const OPERATOR_SA: &str = "system:serviceaccount:dualmesh-system:dualmesh";
pub const MEMBER_SA: &str = "system:serviceaccount:dualmesh-system:dualmesh-member";
/// The groups the API server gives every ServiceAccount token of `dualmesh-system`.
pub const SA_GROUPS: [&str; 3] = [
    "system:serviceaccounts",
    "system:serviceaccounts:dualmesh-system",
    "system:authenticated",
];

pub fn chart(name: &str) -> PathBuf {
    repo().join("charts").join(name)
}

pub fn fixture(name: &str) -> PathBuf {
    repo().join("tests/fixtures/chart").join(name)
}

pub fn read(path: impl AsRef<Path>) -> String {
    let path = path.as_ref();
    std::fs::read_to_string(repo().join(path))
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The built helm with its caches in `home` (for tests without a plane).
pub fn helm_in(home: &Path) -> Command {
    let bin = testplane::tools_bin().expect("tools").join("helm");
    let mut cmd = Command::new(bin);
    cmd.env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .env_remove("KUBECONFIG");
    cmd
}

/// Runs `cmd` (with `stdin` when given) and returns its stdout; panics with
/// both streams when it fails.
pub fn run(cmd: &mut Command, stdin: Option<&str>) -> String {
    let out = output(cmd, stdin);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

pub fn output(cmd: &mut Command, stdin: Option<&str>) -> Output {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("start {cmd:?}: {e}"));
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("piped stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
    }
    child.wait_with_output().expect("wait for the command")
}

/// `helm template RELEASE CHART --namespace NS [-f VALUES] [ARGS]`.
pub fn template(
    mut helm: Command,
    release: &str,
    chart_name: &str,
    ns: &str,
    values: Option<&Path>,
    args: &[&str],
) -> String {
    helm.arg("template")
        .arg(release)
        .arg(chart(chart_name))
        .args(["--namespace", ns]);
    if let Some(v) = values {
        helm.arg("-f").arg(v);
    }
    helm.args(args);
    run(&mut helm, None)
}

/// The documents of the operator chart rendered with its defaults (release
/// `dualmesh` in `dualmesh-system`).
pub fn default_render() -> Vec<Value> {
    let home = tempfile::tempdir().unwrap();
    documents(&template(
        helm_in(home.path()),
        "dualmesh",
        "dualmesh",
        "dualmesh-system",
        None,
        &[],
    ))
}

/// The YAML documents of a multi-document stream, empty ones skipped.
pub fn documents(yaml: &str) -> Vec<Value> {
    serde_saphyr::from_multiple(yaml).unwrap_or_else(|e| panic!("a document does not parse: {e}"))
}

pub fn kinds(docs: &[Value]) -> Vec<String> {
    docs.iter()
        .map(|d| {
            format!(
                "{}/{}",
                d["kind"].as_str().unwrap_or("?"),
                d["metadata"]["name"].as_str().unwrap_or("?")
            )
        })
        .collect()
}

pub fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind}/{name} in {:?}", kinds(docs)))
}

/// The names of dualmesh's CRDs.
pub fn crd_names() -> [&'static str; 2] {
    use kube::CustomResourceExt as _;
    [
        dualmesh::api::DualStackPolicy::crd_name(),
        dualmesh::api::MeshCluster::crd_name(),
    ]
}

// ---------------------------------------------------------------------------
// The Argo CD health checks (docs/argocd/) in a real Lua 5.1.
// ---------------------------------------------------------------------------

pub const MESHCLUSTER_HEALTH: &str = "docs/argocd/meshcluster-health.lua";
pub const POLICY_HEALTH: &str = "docs/argocd/dualstackpolicy-health.lua";

/// Converts JSON to Lua the way Argo CD hands objects to health scripts:
/// objects and arrays to tables (arrays 1-based), null to nil, numbers to
/// Lua numbers.
pub fn to_lua(lua: &mlua::Lua, v: &Value) -> mlua::Value {
    match v {
        Value::Null => mlua::Value::Nil,
        Value::Bool(b) => mlua::Value::Boolean(*b),
        Value::Number(n) => mlua::Value::Number(n.as_f64().unwrap()),
        Value::String(s) => mlua::Value::String(lua.create_string(s).unwrap()),
        Value::Array(items) => {
            let t = lua.create_table().unwrap();
            for (i, item) in items.iter().enumerate() {
                t.set(i + 1, to_lua(lua, item)).unwrap();
            }
            mlua::Value::Table(t)
        }
        Value::Object(map) => {
            let t = lua.create_table().unwrap();
            for (k, item) in map {
                t.set(k.as_str(), to_lua(lua, item)).unwrap();
            }
            mlua::Value::Table(t)
        }
    }
}

/// Runs an Argo CD health script on `obj`: (hs.status, hs.message).
pub fn run_health(script: &str, obj: &Value) -> (String, String) {
    let lua = mlua::Lua::new();
    lua.globals().set("obj", to_lua(&lua, obj)).unwrap();
    let hs: mlua::Table = lua
        .load(script)
        .eval()
        .unwrap_or_else(|e| panic!("the health script failed on {obj}: {e}"));
    let status: String = hs.get("status").expect("hs.status is a string");
    let message: String = hs.get("message").expect("hs.message is a string");
    (status, message)
}

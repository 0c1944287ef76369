//! The Helm charts (charts/dualmesh, charts/dualmesh-member), the plain
//! manifests rendered from them (deploy/) and the Argo CD health checks
//! (docs/argocd/): `helm lint --strict`, drift against what `make generate`
//! renders, acceptance by real API servers (server-side dry run, `helm
//! install`/`uninstall`, `kubectl apply`), the restricted Pod Security
//! Standard enforced by the API server's own PodSecurity admission, and the
//! charts' RBAC running the real operator across two planes with nothing more
//! than it grants: every request it makes is in the audit log, none is
//! refused, and every rule granted is used. The Lua health checks run in a
//! real Lua 5.1.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::*;
use dualmesh::api::{DualStackPolicy, MeshCluster};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::api::{ApiResource, DeleteParams, DynamicObject, GroupVersionKind};
use kube::{Api, Client};
use serde::Deserialize as _;
use serde_json::{Value, json};
use testplane::operator::Operator;
use testplane::{ControlPlane, PlaneOptions};

const WAIT: Duration = Duration::from_secs(30);

/// The operator's ServiceAccount as the chart creates it for release
/// `dualmesh` in `dualmesh-system`, and the member chart's.
const OPERATOR_SA: &str = "system:serviceaccount:dualmesh-system:dualmesh";
const MEMBER_SA: &str = "system:serviceaccount:dualmesh-system:dualmesh-member";
/// The groups the API server gives every ServiceAccount token of `dualmesh-system`.
const SA_GROUPS: [&str; 3] = [
    "system:serviceaccounts",
    "system:serviceaccounts:dualmesh-system",
    "system:authenticated",
];

const MESHCLUSTER_HEALTH: &str = "docs/argocd/meshcluster-health.lua";
const POLICY_HEALTH: &str = "docs/argocd/dualstackpolicy-health.lua";

fn chart(name: &str) -> PathBuf {
    repo().join("charts").join(name)
}

fn fixture(name: &str) -> PathBuf {
    repo().join("tests/fixtures/chart").join(name)
}

fn read(path: impl AsRef<Path>) -> String {
    let path = path.as_ref();
    std::fs::read_to_string(repo().join(path))
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The built helm with its caches in `home` (for tests without a plane).
fn helm_in(home: &Path) -> Command {
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
fn run(cmd: &mut Command, stdin: Option<&str>) -> String {
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

fn output(cmd: &mut Command, stdin: Option<&str>) -> Output {
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
fn template(
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

/// The YAML documents of a multi-document stream, empty ones skipped.
fn documents(yaml: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(Value::deserialize)
        .filter_map(|d| match d {
            Ok(Value::Null) => None,
            Ok(v) => Some(v),
            Err(e) => panic!("a document does not parse: {e}"),
        })
        .collect()
}

fn kinds(docs: &[Value]) -> Vec<String> {
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

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind}/{name} in {:?}", kinds(docs)))
}

// ---------------------------------------------------------------------------
// Lint and drift: no plane needed.
// ---------------------------------------------------------------------------

#[test]
fn the_charts_pass_helm_lint_strict_with_defaults_and_with_every_toggle_on() {
    let home = tempfile::tempdir().unwrap();
    for (chart_name, values) in [
        ("dualmesh", None),
        ("dualmesh", Some("every-toggle.yaml")),
        ("dualmesh-member", None),
        ("dualmesh-member", Some("member-every-toggle.yaml")),
    ] {
        let mut helm = helm_in(home.path());
        helm.args(["lint", "--strict"]).arg(chart(chart_name));
        if let Some(v) = values {
            helm.arg("-f").arg(fixture(v));
        }
        let out = run(&mut helm, None);
        assert!(
            out.contains("1 chart(s) linted, 0 chart(s) failed") && !out.contains("[WARNING]"),
            "{chart_name} {values:?}:\n{out}"
        );
    }
}

#[test]
fn the_values_schema_refuses_wrong_values_and_the_templates_refuse_unsafe_combinations() {
    let home = tempfile::tempdir().unwrap();
    for (set, expect) in [
        ("logFormat=xml", "value must be one of 'json', 'text'"),
        ("replicaCount=-1", "minimum"),
        ("rbac.secretNamespaces={Bad_NS}", "secretNamespaces"),
        (
            "unknownKey=1",
            "additional properties 'unknownKey' not allowed",
        ),
        ("image.digest=latest", "digest"),
        (
            "leaderElection.enabled=false",
            "replicaCount > 1 needs leaderElection.enabled",
        ),
        (
            "rbac.secretNamespaces={dualmesh-system}",
            "already grants Secret reads",
        ),
        (
            "metrics.service.enabled=false,metrics.serviceMonitor.enabled=true",
            "needs metrics.service.enabled",
        ),
    ] {
        let mut helm = helm_in(home.path());
        helm.args(["template", "dualmesh"])
            .arg(chart("dualmesh"))
            .args(["--namespace", "dualmesh-system", "--set", set]);
        let out = output(&mut helm, None);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains(expect),
            "--set {set}: expected a refusal containing {expect:?}, got {}:\n{stderr}",
            out.status
        );
    }
    // One replica may run without leader election.
    let mut helm = helm_in(home.path());
    helm.args(["template", "dualmesh"])
        .arg(chart("dualmesh"))
        .args(["--set", "replicaCount=1,leaderElection.enabled=false"]);
    let docs = documents(&run(&mut helm, None));
    let args =
        &find(&docs, "Deployment", "dualmesh")["spec"]["template"]["spec"]["containers"][0]["args"];
    assert_eq!(args, &json!(["run"]));
}

/// What `make generate` runs after `dualmesh crd --dir crds`: the Makefile's
/// recipe is read here, so that the test and the target cannot part ways.
#[test]
fn deploy_and_the_chart_crds_are_what_make_generate_renders() {
    let makefile = read("Makefile");
    let recipe: Vec<&str> = makefile
        .lines()
        .skip_while(|l| !l.starts_with("generate:"))
        .skip(1)
        .take_while(|l| l.starts_with('\t'))
        .map(str::trim)
        .collect();
    assert_eq!(
        recipe,
        vec![
            "cargo run -q -- crd --dir crds",
            "rm -f charts/dualmesh/crds/*.yaml",
            "cp crds/*.yaml charts/dualmesh/crds/",
            "charts/render-manifests.sh $(TOOLS_BIN)/helm deploy",
        ],
        "the generate target changed: update this test with it"
    );

    // The chart's CRDs are exact copies of crds/.
    let list = |dir: &str| -> BTreeMap<String, String> {
        std::fs::read_dir(repo().join(dir))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .map(|f| (f.clone(), read(format!("{dir}/{f}"))))
            .collect()
    };
    let crds = list("crds");
    assert_eq!(crds.len(), 2);
    let chart_crds = list("charts/dualmesh/crds");
    assert_eq!(
        crds.keys().collect::<Vec<_>>(),
        chart_crds.keys().collect::<Vec<_>>()
    );
    for (file, text) in &crds {
        assert!(
            chart_crds[file] == *text,
            "charts/dualmesh/crds/{file} differs from crds/{file}: run `make generate`"
        );
    }

    // deploy/ as the script renders it now.
    let out = tempfile::tempdir().unwrap();
    let helm = testplane::tools_bin().unwrap().join("helm");
    let home = tempfile::tempdir().unwrap();
    run(
        Command::new("bash")
            .arg(repo().join("charts/render-manifests.sh"))
            .arg(&helm)
            .arg(out.path())
            .env("HELM_CACHE_HOME", home.path().join("cache"))
            .env("HELM_CONFIG_HOME", home.path().join("config"))
            .env("HELM_DATA_HOME", home.path().join("data")),
        None,
    );
    for file in ["dualmesh.yaml", "member/dualmesh-member.yaml"] {
        let want = std::fs::read_to_string(out.path().join(file)).unwrap();
        let have = read(format!("deploy/{file}"));
        if want != have {
            let first = want
                .lines()
                .zip(have.lines())
                .position(|(a, b)| a != b)
                .unwrap_or(want.lines().count().min(have.lines().count()));
            panic!(
                "deploy/{file} differs from the charts at line {}: run `make generate`",
                first + 1
            );
        }
    }

    // What deploy/dualmesh.yaml holds: the namespace first, then the CRDs.
    let docs = documents(&read("deploy/dualmesh.yaml"));
    let k = kinds(&docs);
    assert_eq!(
        &k[..3],
        &[
            "Namespace/dualmesh-system",
            "CustomResourceDefinition/dualstackpolicies.dualmesh.io",
            "CustomResourceDefinition/meshclusters.dualmesh.io",
        ]
    );
    assert_eq!(
        docs[0]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "restricted"
    );
    for want in [
        "ServiceAccount/dualmesh",
        "ClusterRole/dualmesh",
        "ClusterRoleBinding/dualmesh",
        "Role/dualmesh",
        "RoleBinding/dualmesh",
        "Role/dualmesh-leader-election",
        "RoleBinding/dualmesh-leader-election",
        "Deployment/dualmesh",
        "Service/dualmesh-metrics",
        "PodDisruptionBudget/dualmesh",
    ] {
        assert!(k.contains(&want.to_string()), "{want} missing in {k:?}");
    }
    assert_eq!(k.len(), 13, "{k:?}");
}

#[test]
fn the_deployment_runs_the_contract_of_dualmesh_run() {
    let home = tempfile::tempdir().unwrap();
    let docs = documents(&template(
        helm_in(home.path()),
        "dualmesh",
        "dualmesh",
        "dualmesh-system",
        None,
        &[],
    ));
    let deploy = find(&docs, "Deployment", "dualmesh");
    assert_eq!(deploy["spec"]["replicas"], 2);
    let pod = &deploy["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "dualmesh");
    assert_eq!(pod["automountServiceAccountToken"], true);
    assert_eq!(pod["terminationGracePeriodSeconds"], 30);
    assert_eq!(
        pod["securityContext"],
        json!({"runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532,
               "seccompProfile": {"type": "RuntimeDefault"}})
    );
    let c = &pod["containers"][0];
    assert_eq!(c["image"], "ghcr.io/dualmesh/dualmesh:0.1.0");
    assert_eq!(
        c["args"],
        json!([
            "run",
            "--leader-elect",
            "--lease-name=dualmesh",
            "--lease-duration-seconds=15"
        ])
    );
    assert_eq!(
        c["securityContext"],
        json!({"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
               "runAsNonRoot": true, "capabilities": {"drop": ["ALL"]}})
    );
    let env: BTreeMap<String, Value> = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let v = e
                .get("value")
                .cloned()
                .unwrap_or_else(|| e["valueFrom"]["fieldRef"]["fieldPath"].clone());
            (e["name"].as_str().unwrap().to_string(), v)
        })
        .collect();
    assert_eq!(
        env,
        BTreeMap::from([
            ("POD_NAME".into(), json!("metadata.name")),
            ("POD_NAMESPACE".into(), json!("metadata.namespace")),
            ("DUALMESH_NAMESPACE".into(), json!("metadata.namespace")),
            (
                "DUALMESH_LEASE_NAMESPACE".into(),
                json!("metadata.namespace")
            ),
            ("DUALMESH_LISTEN".into(), json!("[::]:8080")),
            ("DUALMESH_LOG_FORMAT".into(), json!("json")),
            ("DUALMESH_LOG".into(), json!("info")),
        ])
    );
    assert_eq!(
        c["ports"],
        json!([{"name": "http", "containerPort": 8080, "protocol": "TCP"}])
    );
    assert_eq!(
        c["livenessProbe"]["httpGet"],
        json!({"path": "/healthz", "port": "http"})
    );
    assert_eq!(
        c["readinessProbe"]["httpGet"],
        json!({"path": "/readyz", "port": "http"})
    );
    let anti =
        &pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0];
    assert_eq!(
        anti["podAffinityTerm"]["topologyKey"],
        "kubernetes.io/hostname"
    );
    assert_eq!(
        anti["podAffinityTerm"]["labelSelector"]["matchLabels"],
        deploy["spec"]["selector"]["matchLabels"]
    );

    // watchNamespace: the MeshCluster Role moves there, the Lease stays home.
    let docs = documents(&template(
        helm_in(home.path()),
        "dualmesh",
        "dualmesh",
        "ops",
        None,
        &["--set", "watchNamespace=meshes"],
    ));
    let role = find(&docs, "Role", "dualmesh");
    assert_eq!(role["metadata"]["namespace"], "meshes");
    let lease = find(&docs, "Role", "dualmesh-leader-election");
    assert_eq!(lease["metadata"]["namespace"], "ops");
    let env =
        &find(&docs, "Deployment", "dualmesh")["spec"]["template"]["spec"]["containers"][0]["env"];
    assert!(
        env.as_array()
            .unwrap()
            .contains(&json!({"name": "DUALMESH_NAMESPACE", "value": "meshes"})),
        "{env}"
    );
}

// ---------------------------------------------------------------------------
// Real API servers.
// ---------------------------------------------------------------------------

/// A stand-in for the Prometheus Operator's ServiceMonitor CRD (open schema:
/// this checks that the object is routed and stored, not its fields).
const SERVICE_MONITOR_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: servicemonitors.monitoring.coreos.com
spec:
  group: monitoring.coreos.com
  names: {kind: ServiceMonitor, listKind: ServiceMonitorList, plural: servicemonitors, singular: servicemonitor}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
"#;

#[tokio::test]
async fn the_api_server_accepts_the_rendered_charts_in_a_server_side_dry_run() {
    let plane = ControlPlane::start_named("chart-dry-run")
        .await
        .expect("plane");
    let client = plane.client().await.unwrap();
    install_dualmesh_crds(&client).await;
    install_crd(&client, SERVICE_MONITOR_CRD).await;
    for ns in ["dualmesh-system", "meshes", "gloo-mesh", "trust"] {
        create_namespace(&client, ns).await;
    }
    for (chart_name, release, values) in [
        ("dualmesh", "dualmesh", None),
        ("dualmesh", "dualmesh", Some(fixture("every-toggle.yaml"))),
        ("dualmesh-member", "dualmesh-member", None),
        (
            "dualmesh-member",
            "dualmesh-member",
            Some(fixture("member-every-toggle.yaml")),
        ),
    ] {
        let rendered = template(
            plane.helm(),
            release,
            chart_name,
            "dualmesh-system",
            values.as_deref(),
            &[],
        );
        let n = documents(&rendered).len();
        let out = run(
            plane
                .kubectl()
                .args(["apply", "--dry-run=server", "-f", "-"]),
            Some(&rendered),
        );
        let accepted = out
            .lines()
            .filter(|l| l.ends_with("(server dry run)"))
            .count();
        assert_eq!(accepted, n, "{chart_name} {values:?}:\n{out}");
    }
}

/// The Kubernetes objects of `kind` (kubectl's resource name) called `name`.
fn exists(plane: &ControlPlane, kind: &str, name: &str, ns: Option<&str>) -> bool {
    let mut cmd = plane.kubectl();
    cmd.args(["get", kind, name, "-o", "name"]);
    if let Some(ns) = ns {
        cmd.args(["-n", ns]);
    }
    output(&mut cmd, None).status.success()
}

const OPERATOR_OBJECTS: [(&str, &str, Option<&str>); 11] = [
    ("serviceaccount", "dualmesh", Some("dualmesh-system")),
    ("deployment", "dualmesh", Some("dualmesh-system")),
    ("service", "dualmesh-metrics", Some("dualmesh-system")),
    ("poddisruptionbudget", "dualmesh", Some("dualmesh-system")),
    ("role", "dualmesh", Some("dualmesh-system")),
    ("rolebinding", "dualmesh", Some("dualmesh-system")),
    ("role", "dualmesh-leader-election", Some("dualmesh-system")),
    (
        "rolebinding",
        "dualmesh-leader-election",
        Some("dualmesh-system"),
    ),
    ("clusterrole", "dualmesh", None),
    ("clusterrolebinding", "dualmesh", None),
    ("namespace", "dualmesh-system", None),
];

const CRDS: [&str; 2] = ["dualstackpolicies.dualmesh.io", "meshclusters.dualmesh.io"];

#[tokio::test]
async fn helm_install_creates_the_operator_and_its_rbac_and_uninstall_keeps_the_crds() {
    let plane = ControlPlane::start_named("chart-install")
        .await
        .expect("plane");
    let out = run(
        plane
            .helm()
            .args(["install", "dualmesh"])
            .arg(chart("dualmesh"))
            .args(["--namespace", "dualmesh-system", "--create-namespace"]),
        None,
    );
    assert!(out.contains("STATUS: deployed"), "{out}");
    assert!(
        out.contains("kubectl -n dualmesh-system get meshclusters"),
        "NOTES: {out}"
    );
    for (kind, name, ns) in OPERATOR_OBJECTS {
        assert!(exists(&plane, kind, name, ns), "{kind} {name} missing");
    }
    for crd in CRDS {
        assert!(exists(&plane, "crd", crd, None), "CRD {crd} missing");
    }
    let image = run(
        plane.kubectl().args([
            "-n",
            "dualmesh-system",
            "get",
            "deployment",
            "dualmesh",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}",
        ]),
        None,
    );
    assert_eq!(image, "ghcr.io/dualmesh/dualmesh:0.1.0");

    run(
        plane
            .helm()
            .args(["uninstall", "dualmesh", "--namespace", "dualmesh-system"]),
        None,
    );
    for (kind, name, ns) in OPERATOR_OBJECTS {
        if kind != "namespace" {
            assert!(!exists(&plane, kind, name, ns), "{kind} {name} left behind");
        }
    }
    // Helm never deletes what a chart's crds/ installed: MeshClusters survive.
    for crd in CRDS {
        assert!(exists(&plane, "crd", crd, None), "CRD {crd} was deleted");
    }

    // The member chart: its objects, and the Secret namespaces are kept.
    let out = run(
        plane
            .helm()
            .args(["install", "dualmesh-member"])
            .arg(chart("dualmesh-member"))
            .args(["--namespace", "dualmesh-system"]),
        None,
    );
    assert!(out.contains("member.kubeconfig"), "NOTES: {out}");
    let member = [
        ("serviceaccount", "dualmesh-member", Some("dualmesh-system")),
        ("secret", "dualmesh-member-token", Some("dualmesh-system")),
        ("clusterrole", "dualmesh-member", None),
        ("clusterrolebinding", "dualmesh-member", None),
        ("namespace", "gloo-mesh", None),
        ("role", "dualmesh-member-secrets", Some("gloo-mesh")),
        ("rolebinding", "dualmesh-member-secrets", Some("gloo-mesh")),
    ];
    for (kind, name, ns) in member {
        assert!(exists(&plane, kind, name, ns), "{kind} {name} missing");
    }
    run(
        plane.helm().args([
            "uninstall",
            "dualmesh-member",
            "--namespace",
            "dualmesh-system",
        ]),
        None,
    );
    assert!(!exists(&plane, "clusterrole", "dualmesh-member", None));
    assert!(exists(&plane, "namespace", "gloo-mesh", None));
}

#[tokio::test]
async fn the_plain_manifests_install_with_kubectl_apply() {
    let (documented, single) = tokio::join!(
        ControlPlane::start_named("deploy-apply"),
        ControlPlane::start_named("deploy-single")
    );
    let (documented, single) = (documented.expect("plane"), single.expect("plane"));
    let repo = repo();

    // The README's way: CRDs server-side, then the folder (not recursive:
    // deploy/member/ is for member clusters).
    run(
        documented
            .kubectl()
            .args(["apply", "--server-side", "-f"])
            .arg(repo.join("crds")),
        None,
    );
    run(
        documented
            .kubectl()
            .args(["apply", "-f"])
            .arg(repo.join("deploy")),
        None,
    );
    // One file, as the README installs it.
    run(
        single
            .kubectl()
            .args(["apply", "--server-side", "-f"])
            .arg(repo.join("deploy/dualmesh.yaml")),
        None,
    );
    for plane in [&documented, &single] {
        for (kind, name, ns) in OPERATOR_OBJECTS {
            assert!(exists(plane, kind, name, ns), "{kind} {name} missing");
        }
        for crd in CRDS {
            assert!(exists(plane, "crd", crd, None), "CRD {crd} missing");
        }
    }
    assert!(!exists(&documented, "clusterrole", "dualmesh-member", None));
    // A member's file, on its own plane.
    run(
        single
            .kubectl()
            .args(["apply", "-f"])
            .arg(repo.join("deploy/member/dualmesh-member.yaml")),
        None,
    );
    assert!(exists(&single, "clusterrole", "dualmesh-member", None));
    assert!(exists(
        &single,
        "role",
        "dualmesh-member-secrets",
        Some("gloo-mesh")
    ));
}

/// The operator Pod as the Deployment would create it, bound to a node (no
/// scheduler runs here).
fn operator_pod(name: &str) -> Value {
    let home = tempfile::tempdir().unwrap();
    let docs = documents(&template(
        helm_in(home.path()),
        "dualmesh",
        "dualmesh",
        "dualmesh-system",
        None,
        &[],
    ));
    let template = &find(&docs, "Deployment", "dualmesh")["spec"]["template"];
    let mut spec = template["spec"].clone();
    spec["nodeName"] = json!("node-a");
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "dualmesh-system", "labels": template["metadata"]["labels"]},
        "spec": spec,
    })
}

#[tokio::test]
async fn the_operator_pod_is_admitted_under_the_restricted_pod_security_standard() {
    let plane = ControlPlane::start_named("chart-pss").await.expect("plane");
    let client = plane.client().await.unwrap();
    // The namespace exactly as deploy/dualmesh.yaml ships it.
    let docs = documents(&read("deploy/dualmesh.yaml"));
    let namespace = find(&docs, "Namespace", "dualmesh-system");
    run(
        plane.kubectl().args(["apply", "-f", "-"]),
        Some(&serde_json::to_string(namespace).unwrap()),
    );
    let pods: Api<Pod> = Api::namespaced(client.clone(), "dualmesh-system");

    let pod: Pod = serde_json::from_value(operator_pod("dualmesh-restricted")).unwrap();
    pods.create(&Default::default(), &pod)
        .await
        .expect("the restricted profile admits the operator Pod");

    // The check can fail: the same Pod without its securityContexts is refused.
    let mut weak = operator_pod("dualmesh-weak");
    weak["spec"]
        .as_object_mut()
        .unwrap()
        .remove("securityContext");
    weak["spec"]["containers"][0]
        .as_object_mut()
        .unwrap()
        .remove("securityContext");
    let weak: Pod = serde_json::from_value(weak).unwrap();
    match pods.create(&Default::default(), &weak).await {
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 403, "{s:?}");
            for needle in [
                "violates PodSecurity \"restricted:latest\"",
                "allowPrivilegeEscalation",
                "unrestricted capabilities",
                "runAsNonRoot",
                "seccompProfile",
            ] {
                assert!(
                    s.message.contains(needle),
                    "{needle:?} not in {}",
                    s.message
                );
            }
        }
        other => panic!("a Pod without securityContext was not refused: {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// Least privilege: the real operator on the charts' RBAC, two planes.
// ---------------------------------------------------------------------------

/// Audit every request (reads too) of the two dualmesh identities; writes of
/// everyone else as the harness does by default.
const AUDIT_EVERYTHING_OF_DUALMESH: &str = r#"apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: Metadata
  users:
  - system:serviceaccount:dualmesh-system:dualmesh
  - system:serviceaccount:dualmesh-system:dualmesh-member
- level: Metadata
  verbs: ["create", "update", "patch", "delete", "deletecollection"]
- level: None
"#;

/// One request as the audit log recorded it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Request {
    verb: String,
    group: String,
    /// `resource` or `resource/subresource`.
    resource: String,
    namespace: Option<String>,
    name: Option<String>,
    code: Option<i64>,
}

/// Every request `user` made, once each (a watch is logged when its
/// response starts, and again when it ends).
fn requests_by(plane: &ControlPlane, user: &str) -> Vec<Request> {
    let log = std::fs::read_to_string(plane.dir().join("audit.log")).unwrap_or_default();
    let mut by_id: BTreeMap<String, Request> = BTreeMap::new();
    for line in log.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if v["user"]["username"] != user || v["objectRef"].is_null() {
            continue;
        }
        let s = |x: &Value| x.as_str().map(str::to_string);
        let r = &v["objectRef"];
        let resource = match s(&r["subresource"]) {
            Some(sub) => format!("{}/{sub}", s(&r["resource"]).unwrap_or_default()),
            None => s(&r["resource"]).unwrap_or_default(),
        };
        by_id.insert(
            s(&v["auditID"]).unwrap_or_default(),
            Request {
                verb: s(&v["verb"]).unwrap_or_default(),
                group: s(&r["apiGroup"]).unwrap_or_default(),
                resource,
                namespace: s(&r["namespace"]),
                name: s(&r["name"]),
                code: v["responseStatus"]["code"].as_i64(),
            },
        );
    }
    by_id.into_values().collect()
}

/// One permission: a verb on a resource, cluster-wide (`namespace` None) or
/// in one namespace.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Permission {
    namespace: Option<String>,
    group: String,
    resource: String,
    verb: String,
}

impl std::fmt::Display for Permission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let group = if self.group.is_empty() {
            "core"
        } else {
            &self.group
        };
        match &self.namespace {
            Some(ns) => write!(f, "{} {group}/{} in {ns}", self.verb, self.resource),
            None => write!(f, "{} {group}/{} cluster-wide", self.verb, self.resource),
        }
    }
}

/// Every permission the Roles and ClusterRoles of a rendered chart grant.
/// Fails on wildcards: the charts must name everything.
fn permissions(manifest: &str) -> BTreeSet<Permission> {
    let mut out = BTreeSet::new();
    for doc in documents(manifest) {
        let namespace = match doc["kind"].as_str() {
            Some("ClusterRole") => None,
            Some("Role") => Some(doc["metadata"]["namespace"].as_str().unwrap().to_string()),
            _ => continue,
        };
        for rule in doc["rules"].as_array().unwrap() {
            let list = |k: &str| -> Vec<String> {
                rule[k]
                    .as_array()
                    .map(|a| a.iter().map(|x| x.as_str().unwrap().to_string()).collect())
                    .unwrap_or_default()
            };
            for group in list("apiGroups") {
                for resource in list("resources") {
                    for verb in list("verbs") {
                        assert!(
                            ![&group, &resource, &verb].iter().any(|x| x.contains('*')),
                            "wildcard in {rule}"
                        );
                        out.insert(Permission {
                            namespace: namespace.clone(),
                            group: group.clone(),
                            resource: resource.clone(),
                            verb,
                        });
                    }
                }
            }
        }
    }
    out
}

fn used(requests: &[Request], p: &Permission) -> bool {
    requests.iter().any(|r| {
        // A server-side apply that creates the object is logged as a patch
        // answered 201, and the API server authorizes it as create too.
        let verb_matches =
            r.verb == p.verb || (p.verb == "create" && r.verb == "patch" && r.code == Some(201));
        verb_matches
            && r.group == p.group
            && r.resource == p.resource
            && (p.namespace.is_none() || r.namespace == p.namespace)
    })
}

/// Asserts that `user` was refused nothing, and that every permission
/// `manifest` grants was used, except those in `may_be_unused` (with why).
fn assert_least_privilege(
    plane: &ControlPlane,
    user: &str,
    manifest: &str,
    may_be_unused: &[(&str, &str)],
) {
    let requests = requests_by(plane, user);
    assert!(
        requests.len() > 20,
        "the audit log holds only {} requests of {user}: is the audit policy in effect?",
        requests.len()
    );
    let refused: Vec<&Request> = requests.iter().filter(|r| r.code == Some(403)).collect();
    assert!(
        refused.is_empty(),
        "{user} was refused (the chart's RBAC is missing a rule):\n{refused:#?}"
    );
    let unused: Vec<String> = permissions(manifest)
        .iter()
        .filter(|p| !used(&requests, p))
        .map(|p| p.to_string())
        .filter(|p| !may_be_unused.iter().any(|(u, _)| u == p))
        .collect();
    assert!(
        unused.is_empty(),
        "{user} was granted but never used (drop the rule, or exercise it here):\n{}",
        unused.join("\n")
    );
}

/// The Pod name the operator runs under in the least-privilege test.
const POD_NAME: &str = "dualmesh-5c9d8f7b6-x2x4q";

/// The operator's arguments (after `run`) and environment as the chart's
/// Deployment in `manifest` sets them, field references resolved as the
/// kubelet would for Pod [`POD_NAME`] in `dualmesh-system`; the one change is
/// a free loopback port instead of 8080 (tests run side by side).
fn deployment_contract(manifest: &str, pod_name: &str) -> (Vec<String>, Vec<(String, String)>) {
    let docs = documents(manifest);
    let container =
        &find(&docs, "Deployment", "dualmesh")["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<String> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    assert_eq!(args.first().map(String::as_str), Some("run"));
    let env = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let name = e["name"].as_str().unwrap().to_string();
            let value = match (
                e["value"].as_str(),
                e["valueFrom"]["fieldRef"]["fieldPath"].as_str(),
            ) {
                _ if name == "DUALMESH_LISTEN" => "[::1]:0".to_string(),
                (Some(v), _) => v.to_string(),
                (None, Some("metadata.name")) => pod_name.to_string(),
                (None, Some("metadata.namespace")) => NS.to_string(),
                other => panic!("{name}: no value for {other:?}"),
            };
            (name, value)
        })
        .collect();
    (args[1..].to_vec(), env)
}

/// The address of /healthz, /readyz and /metrics, from the operator's JSON log.
async fn json_log_addr(operator: &Operator) -> std::net::SocketAddr {
    wait_for("the HTTP address in the JSON log", WAIT, || async {
        operator
            .log()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["fields"]["message"] == "serving /healthz /readyz /metrics")
            .and_then(|v| v["fields"]["addr"].as_str()?.parse().ok())
            .ok_or_else(|| operator.log_tail(5))
    })
    .await
}

/// On a panic, prints the end of the operator's log (the file at this path).
struct ReportLog(PathBuf);

impl Drop for ReportLog {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.0).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(40)..].join("\n");
            eprintln!("--- operator log tail ---\n{tail}");
        }
    }
}

/// On a panic (a wait timing out, say), prints what `user` was refused, so
/// that a missing rule is named rather than guessed from a timeout.
struct ReportRefusals<'a>(&'a ControlPlane, &'a str);

impl Drop for ReportRefusals<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let refused: Vec<Request> = requests_by(self.0, self.1)
                .into_iter()
                .filter(|r| r.code == Some(403))
                .collect();
            eprintln!(
                "--- requests of {} refused on {}: {refused:#?}",
                self.1,
                self.0.name()
            );
        }
    }
}

/// `kubectl auth can-i` as the identity in `kubeconfig`.
fn can_i(plane: &ControlPlane, kubeconfig: &Path, args: &[&str]) -> bool {
    let out = output(
        Command::new(plane.tools_bin().join("kubectl"))
            .env("KUBECONFIG", kubeconfig)
            .args(["auth", "can-i"])
            .args(args),
        None,
    );
    let answer = String::from_utf8_lossy(&out.stdout).trim().to_string();
    match answer.as_str() {
        "yes" => true,
        "no" => false,
        _ => panic!(
            "kubectl auth can-i {args:?}: {answer} {}",
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

async fn get_json<K>(api: &Api<K>, name: &str) -> Option<Value>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    api.get_opt(name)
        .await
        .expect("get")
        .map(|o| serde_json::to_value(o).unwrap())
}

async fn wait_gone<K>(api: &Api<K>, what: &str)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let (api, name) = (api.clone(), what.to_string());
    wait_for(&format!("{what} deleted"), WAIT, || {
        let (api, name) = (api.clone(), name.clone());
        async move {
            match get_json(&api, &name).await {
                None => Ok(()),
                Some(_) => Err("still there".into()),
            }
        }
    })
    .await;
}

fn istio_operators(client: &Client) -> Api<DynamicObject> {
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("install.istio.io", "v1alpha1", "IstioOperator"),
        "istiooperators",
    );
    Api::namespaced_with(client.clone(), GW_NS, &resource)
}

/// Waits for the ConfigMap dualmesh publishes for `mc` (so that dualmesh,
/// not the test, created the Istio namespace).
async fn wait_config_map(client: &Client, mc: &str) {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), GW_NS);
    let name = format!("{mc}-istiooperator");
    wait_for(&format!("ConfigMap {name}"), WAIT, || async {
        get_json(&api, &name)
            .await
            .map(|_| ())
            .ok_or("absent".into())
    })
    .await;
}

#[tokio::test]
async fn the_charts_rbac_runs_the_operator_across_two_clusters_and_grants_nothing_unused() {
    let audit = tempfile::tempdir().unwrap();
    let policy = audit.path().join("audit-policy.yaml");
    std::fs::write(&policy, AUDIT_EVERYTHING_OF_DUALMESH).unwrap();
    // A later --audit-policy-file wins over the harness's own.
    let with_audit = |name: &str| {
        PlaneOptions::named(name).arg(&format!("--audit-policy-file={}", policy.display()))
    };
    let (alpha, beta) = tokio::join!(
        ControlPlane::start(with_audit("rbac-alpha")),
        ControlPlane::start(with_audit("rbac-beta"))
    );
    let (alpha, beta) = (alpha.expect("alpha"), beta.expect("beta"));
    let a = alpha.client().await.unwrap();
    let b = beta.client().await.unwrap();
    let _report_alpha = ReportRefusals(&alpha, OPERATOR_SA);
    let _report_beta = ReportRefusals(&beta, MEMBER_SA);

    // Management cluster: the chart (its CRDs, RBAC and a Deployment no
    // kubelet runs), with Secret reads in gloo-mesh for the relay sources.
    create_namespace(&a, "gloo-mesh").await;
    let install = |plane: &ControlPlane, release: &str, chart_name: &str, set: &[&str]| {
        let mut helm = plane.helm();
        helm.args(["install", release])
            .arg(chart(chart_name))
            .args(["--namespace", "dualmesh-system", "--create-namespace"]);
        for s in set {
            helm.args(["--set", s]);
        }
        run(&mut helm, None);
        run(
            plane
                .helm()
                .args(["get", "manifest", release, "-n", "dualmesh-system"]),
            None,
        )
    };
    let operator_manifest = install(
        &alpha,
        "dualmesh",
        "dualmesh",
        &["rbac.secretNamespaces={gloo-mesh}"],
    );
    let member_manifest = install(&beta, "dualmesh-member", "dualmesh-member", &[]);
    for crd in CRDS {
        wait_for(&format!("CRD {crd}"), WAIT, || async {
            let out = output(
                alpha.kubectl().args([
                    "get",
                    "crd",
                    crd,
                    "-o",
                    "jsonpath={.status.conditions[?(@.type==\"Established\")].status}",
                ]),
                None,
            );
            match String::from_utf8_lossy(&out.stdout).as_ref() {
                "True" => Ok(()),
                other => Err(other.to_string()),
            }
        })
        .await;
    }

    put_secret(
        &a,
        "gloo-mesh",
        "relay-root-tls-secret",
        &[("ca.crt", "root-ca"), ("tls.key", "server-key")],
    )
    .await;
    put_secret(
        &a,
        "gloo-mesh",
        "relay-identity-token-secret",
        &[("token", "relay-token")],
    )
    .await;
    // beta's kubeconfig: the member chart's ServiceAccount.
    let member_kubeconfig = beta
        .user_kubeconfig(MEMBER_SA, &SA_GROUPS, "member.kubeconfig")
        .unwrap();
    put_secret(
        &a,
        NS,
        "beta-kubeconfig",
        &[(
            "kubeconfig",
            &std::fs::read_to_string(&member_kubeconfig).unwrap(),
        )],
    )
    .await;

    // The operator as the chart's ServiceAccount (RBAC decides everything),
    // with the Deployment's arguments and environment.
    let operator_kubeconfig = alpha
        .user_kubeconfig(OPERATOR_SA, &SA_GROUPS, "sa.kubeconfig")
        .unwrap();
    let (args, env) = deployment_contract(&operator_manifest, POD_NAME);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut operator = Operator::start_with_env(
        Path::new(env!("CARGO_BIN_EXE_dualmesh")),
        &operator_kubeconfig,
        &args,
        &env,
        &alpha.dir().join("operator.log"),
    )
    .expect("start dualmesh");
    let _report_log = ReportLog(alpha.dir().join("operator.log"));
    // It leads, under the Pod's name, and says so on /readyz.
    let addr = json_log_addr(&operator).await;
    wait_for("/readyz leading", WAIT, || async {
        match http_get(addr, "/readyz").await {
            (200, body) if body.trim() == "leading" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let holder = run(
        alpha.kubectl().args([
            "-n",
            NS,
            "get",
            "lease",
            "dualmesh",
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ]),
        None,
    );
    assert_eq!(holder, POD_NAME);

    create_policy(&a, &example::<DualStackPolicy>("policy-ipv6-only.yaml")).await;
    create_meshcluster(&a, &example::<MeshCluster>("meshcluster-alpha.yaml")).await;
    let mut beta_mc: MeshCluster = example("meshcluster-beta.yaml");
    // So that removing it deletes the copies (the Role's delete is used).
    beta_mc
        .spec
        .federation
        .as_mut()
        .expect("beta's example has spec.federation")
        .delete_on_removal = true;
    create_meshcluster(&a, &beta_mc).await;

    // dualmesh creates each Istio namespace; then the gateways appear.
    wait_config_map(&a, "alpha").await;
    wait_config_map(&b, "beta").await;
    create_gateway(&a, "node-a", &["2001:db8:a::1", "192.0.2.10"]).await;
    create_gateway(&b, "node-b", &["2001:db8:b::1"]).await;

    let (alpha_mc, _) = wait_mc(&a, "alpha", "Ready", "True", "Ready", WAIT).await;
    let (beta_ready, _) = wait_mc(&a, "beta", "Ready", "True", "Ready", WAIT).await;
    assert_eq!(
        condition(&alpha_mc, "IstioConfigApplied").map(|c| c.1),
        Some("ConfigMapApplied".to_string())
    );
    assert_eq!(
        condition(&beta_ready, "SecretsSynced").map(|c| c.1),
        Some("Synced".to_string())
    );
    assert_eq!(
        external_ips(&a).await,
        Some(vec!["2001:db8:a::1".to_string()])
    );
    assert_eq!(
        external_ips(&b).await,
        Some(vec!["2001:db8:b::1".to_string()])
    );

    // The health check Argo CD would run reads the real object as Healthy.
    let health = read(MESHCLUSTER_HEALTH);
    let (status, message) = run_health(&health, &serde_json::to_value(&alpha_mc).unwrap());
    assert_eq!(
        (status.as_str(), message.as_str()),
        ("Healthy", "all conditions are True")
    );

    // Istio's CRD arrives in both: the IstioOperator objects are published.
    for client in [&a, &b] {
        install_crd(client, ISTIO_OPERATOR_CRD).await;
    }
    for mc in ["alpha", "beta"] {
        wait_mc(
            &a,
            mc,
            "IstioConfigApplied",
            "True",
            "ConfigMapAndIstioOperatorApplied",
            WAIT,
        )
        .await;
    }

    // What the identities may do, and (the point) may not.
    for (answer, question) in [
        ("yes", "get secrets -n dualmesh-system"),
        ("yes", "watch secrets -n gloo-mesh"),
        ("yes", "patch services -n istio-system"),
        (
            "yes",
            "create leases.coordination.k8s.io -n dualmesh-system",
        ),
        ("no", "get secrets -n kube-system"),
        ("no", "get secrets -n default"),
        ("no", "list secrets --all-namespaces"),
        // The content-hash key is created once; nothing may overwrite it.
        ("yes", "create secrets -n dualmesh-system"),
        ("no", "patch secrets -n dualmesh-system"),
        ("no", "delete services -n istio-system"),
        ("no", "update services -n istio-system"),
        ("no", "delete nodes"),
        ("no", "patch meshclusters.dualmesh.io -n default"),
        ("no", "delete meshclusters.dualmesh.io -n dualmesh-system"),
        ("no", "patch dualstackpolicies.dualmesh.io"),
        (
            "no",
            "get customresourcedefinitions/meshclusters.dualmesh.io",
        ),
        (
            "no",
            "patch leases.coordination.k8s.io/kube-scheduler -n dualmesh-system",
        ),
        ("no", "create clusterrolebindings"),
        ("no", "impersonate serviceaccounts"),
        ("no", "* *"),
    ] {
        let args: Vec<&str> = question.split_whitespace().collect();
        let yes = can_i(&alpha, &operator_kubeconfig, &args);
        assert_eq!(yes, answer == "yes", "operator: can-i {question}");
    }
    for (answer, question) in [
        ("yes", "patch secrets -n gloo-mesh"),
        ("yes", "patch services -n istio-system"),
        ("no", "get secrets -n kube-system"),
        ("no", "get secrets -n dualmesh-system"),
        ("no", "list secrets --all-namespaces"),
        ("no", "list configmaps --all-namespaces"),
        ("no", "delete services -n istio-system"),
        ("no", "delete nodes"),
        (
            "no",
            "get customresourcedefinitions/meshclusters.dualmesh.io",
        ),
        ("no", "* *"),
    ] {
        let args: Vec<&str> = question.split_whitespace().collect();
        let yes = can_i(&beta, &member_kubeconfig, &args);
        assert_eq!(yes, answer == "yes", "member: can-i {question}");
    }

    // Removal: dualmesh deletes what it published, and the synced copies.
    let meshclusters: Api<MeshCluster> = Api::namespaced(a.clone(), NS);
    for mc in ["alpha", "beta"] {
        meshclusters
            .delete(mc, &DeleteParams::default())
            .await
            .expect("delete MeshCluster");
    }
    for mc in ["alpha", "beta"] {
        wait_gone(&meshclusters, mc).await;
    }
    for (client, mc) in [(&a, "alpha"), (&b, "beta")] {
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), GW_NS);
        wait_gone(&cms, &format!("{mc}-istiooperator")).await;
        wait_gone(&istio_operators(client), "istio").await;
    }
    let copies: Api<Secret> = Api::namespaced(b.clone(), "gloo-mesh");
    wait_gone(&copies, "relay-root-tls-secret").await;

    // SIGTERM, as at a rollout: it stops and releases the Lease.
    let status = operator.terminate(Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| s.success()),
        "dualmesh did not stop cleanly on SIGTERM: {status:?}\n{}",
        operator.log_tail(20)
    );
    let log = operator.log();
    assert!(
        log.lines()
            .all(|l| serde_json::from_str::<Value>(l).is_ok()),
        "DUALMESH_LOG_FORMAT=json: every log line is a JSON object"
    );
    assert!(log.contains("released the leader Lease"), "{log}");
    assert_least_privilege(
        &alpha,
        OPERATOR_SA,
        &operator_manifest,
        &[(
            "patch events.k8s.io/events cluster-wide",
            "sent only when the same Event repeats within kube's series window",
        )],
    );
    assert_least_privilege(&beta, MEMBER_SA, &member_manifest, &[]);
}

// ---------------------------------------------------------------------------
// Argo CD health checks in a real Lua 5.1.
// ---------------------------------------------------------------------------

/// Converts JSON to Lua the way Argo CD hands objects to health scripts:
/// objects and arrays to tables (arrays 1-based), null to nil, numbers to
/// Lua numbers.
fn to_lua(lua: &mlua::Lua, v: &Value) -> mlua::Value {
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
fn run_health(script: &str, obj: &Value) -> (String, String) {
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

fn ready(status: &str, generation: i64, message: &str) -> Value {
    json!({"type": "Ready", "status": status, "reason": if status == "True" { "Ready" } else { "NotReady" },
           "message": message, "observedGeneration": generation,
           "lastTransitionTime": "2026-01-01T00:00:00Z"})
}

fn object(kind: &str, generation: Option<i64>, status: Option<Value>) -> Value {
    let mut obj = json!({"apiVersion": "dualmesh.io/v1alpha1", "kind": kind,
                         "metadata": {"name": "alpha", "namespace": "dualmesh-system"},
                         "spec": {}});
    if let Some(g) = generation {
        obj["metadata"]["generation"] = json!(g);
    }
    if let Some(s) = status {
        obj["status"] = s;
    }
    obj
}

/// A case for the health checks: what it is, `metadata.generation`, the
/// status, and the health and message Argo CD must show.
type HealthCase = (
    &'static str,
    Option<i64>,
    Option<Value>,
    &'static str,
    &'static str,
);

#[test]
fn the_argo_cd_health_checks_read_ready_and_the_observed_generation() {
    let valid = json!({"type": "Valid", "status": "True", "reason": "Valid", "message": "ok",
                       "observedGeneration": 3, "lastTransitionTime": "2026-01-01T00:00:00Z"});
    let failing = "not True: GatewayAddressesReady (NoAddressOfFamily: no eligible IPv6 address)";
    let cases: Vec<HealthCase> = vec![
        (
            "Ready=True, current",
            Some(3),
            Some(
                json!({"observedGeneration": 3, "conditions": [valid, ready("True", 3, "all conditions are True")]}),
            ),
            "Healthy",
            "all conditions are True",
        ),
        (
            "Ready=False",
            Some(3),
            Some(json!({"observedGeneration": 3, "conditions": [ready("False", 3, failing)]})),
            "Degraded",
            failing,
        ),
        (
            "Ready=Unknown",
            Some(3),
            Some(json!({"observedGeneration": 3, "conditions": [ready("Unknown", 3, "checking")]})),
            "Progressing",
            "checking",
        ),
        (
            "no status",
            Some(1),
            None,
            "Progressing",
            "Waiting for dualmesh to report status",
        ),
        (
            "status without conditions",
            Some(1),
            Some(json!({})),
            "Progressing",
            "Waiting for dualmesh to report status",
        ),
        (
            "no Ready condition",
            Some(3),
            Some(json!({"observedGeneration": 3, "conditions": [valid]})),
            "Progressing",
            "Waiting for the Ready condition",
        ),
        (
            "stale observedGeneration",
            Some(4),
            Some(
                json!({"observedGeneration": 3, "conditions": [ready("True", 3, "all conditions are True")]}),
            ),
            "Progressing",
            "Waiting for dualmesh to reconcile generation 4",
        ),
        (
            "no observedGeneration yet",
            Some(1),
            Some(json!({"conditions": [ready("True", 1, "all conditions are True")]})),
            "Progressing",
            "Waiting for dualmesh to reconcile generation 1",
        ),
        (
            "stale Ready condition",
            Some(4),
            Some(
                json!({"observedGeneration": 4, "conditions": [ready("True", 3, "all conditions are True")]}),
            ),
            "Progressing",
            "Waiting for Ready of generation 4",
        ),
        (
            "no generation (Ready decides)",
            None,
            Some(json!({"conditions": [ready("False", 2, failing)]})),
            "Degraded",
            failing,
        ),
    ];
    for (file, kind) in [
        (MESHCLUSTER_HEALTH, "MeshCluster"),
        (POLICY_HEALTH, "DualStackPolicy"),
    ] {
        let script = read(file);
        for (case, generation, status, want_status, want_message) in &cases {
            let obj = object(kind, *generation, status.clone());
            let (status, message) = run_health(&script, &obj);
            assert_eq!(
                (status.as_str(), message.as_str()),
                (*want_status, *want_message),
                "{file}: {case}"
            );
        }
    }
}

/// The fenced blocks of `lang` in a Markdown text.
fn fenced<'a>(markdown: &'a str, lang: &str) -> Vec<&'a str> {
    let open = format!("```{lang}\n");
    let mut out = Vec::new();
    let mut rest = markdown;
    while let Some(start) = rest.find(&open) {
        let body = &rest[start + open.len()..];
        let end = body.find("```").expect("a closed code block");
        out.push(&body[..end]);
        rest = &body[end + 3..];
    }
    out
}

/// Every string value under `key`, anywhere in `v`.
fn values_of(v: &serde_yaml::Value, key: &str, out: &mut Vec<String>) {
    match v {
        serde_yaml::Value::Mapping(m) => {
            for (k, item) in m {
                if k.as_str() == Some(key)
                    && let Some(s) = item.as_str()
                {
                    out.push(s.to_string());
                }
                values_of(item, key, out);
            }
        }
        serde_yaml::Value::Sequence(items) => items.iter().for_each(|i| values_of(i, key, out)),
        _ => {}
    }
}

#[test]
fn docs_argocd_md_holds_each_health_check_verbatim() {
    let doc = read("docs/argocd.md");
    let lua_blocks = fenced(&doc, "lua");
    let yaml_blocks: Vec<serde_yaml::Value> = fenced(&doc, "yaml")
        .iter()
        .map(|b| {
            serde_yaml::from_str(b).unwrap_or_else(|e| {
                panic!("a YAML block in docs/argocd.md does not parse: {e}\n{b}")
            })
        })
        .collect();
    for (file, kind) in [
        (MESHCLUSTER_HEALTH, "MeshCluster"),
        (POLICY_HEALTH, "DualStackPolicy"),
    ] {
        let script = read(file);
        assert!(
            lua_blocks.contains(&script.as_str()),
            "docs/argocd.md has no lua block equal to {file}"
        );
        // argocd-cm and the argo-cd chart's values both carry it unchanged.
        let mut found = Vec::new();
        for block in &yaml_blocks {
            values_of(
                block,
                &format!("resource.customizations.health.dualmesh.io_{kind}"),
                &mut found,
            );
        }
        assert_eq!(found.len(), 2, "{kind}: {found:?}");
        for f in found {
            assert!(
                f == script,
                "a YAML snippet's {kind} health check differs from {file}"
            );
        }
    }
    // The ignoreDifferences entry names dualmesh's field manager and the field.
    let mut managers = Vec::new();
    let mut pointers = Vec::new();
    for block in &yaml_blocks {
        if let Some(entries) = block["spec"]["ignoreDifferences"].as_sequence() {
            for e in entries {
                managers.push(serde_json::to_value(&e["managedFieldsManagers"]).unwrap());
                pointers.push(serde_json::to_value(&e["jsonPointers"]).unwrap());
            }
        }
    }
    assert_eq!(managers, vec![json!([dualmesh::controller::FIELD_MANAGER])]);
    assert_eq!(pointers, vec![json!(["/spec/externalIPs"])]);
    assert!(doc.contains("RespectIgnoreDifferences=true"));
}

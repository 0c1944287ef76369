//! `dualmesh check`, the built binary, against real control planes started
//! with different Service ranges (IPv6-only, dual-stack IPv6-primary,
//! IPv4-only) and node sets, under every example policy: the rows and exit
//! code of each run are golden files (text and JSON) under
//! tests/golden/check/. A DenyServiceExternalIPs plane shows the
//! externalIPs row FAIL with its fix.
//!
//! Regenerate the goldens after an intended change with
//! `UPDATE_GOLDEN=1 cargo test --test check` and review the diff.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{create_namespace, create_policy, example, install_dualmesh_crds, repo};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Node;
use kube::api::PostParams;
use kube::{Api, Client};
use serde_json::json;
use testplane::{ControlPlane, PlaneOptions};

const POLICIES: [&str; 3] = [
    "policy-dual-stack-ipv4-primary.yaml",
    "policy-dual-stack-ipv6-primary.yaml",
    "policy-ipv6-only.yaml",
];

/// The planes with golden files, and their Service ranges.
const PLANES: [(&str, &str); 3] = [
    ("ipv6-only", "2001:db8:1234:5678:8:3::/112"),
    ("dual-stack-ipv6-primary", "fd00:10:96::/112,10.96.0.0/16"),
    ("ipv4-only", "10.96.0.0/16"),
];

fn golden_dir() -> PathBuf {
    repo().join("tests/golden/check")
}

/// Every golden file the tests write: per plane, each policy and no policy,
/// text and JSON; and the DenyServiceExternalIPs plane's.
fn golden_names() -> Vec<String> {
    let mut names = Vec::new();
    for (plane, _) in PLANES {
        for policy in POLICIES.iter().map(|p| policy_stem(p)).chain(["no-policy"]) {
            for ext in ["txt", "json"] {
                names.push(format!("{plane}--{policy}.{ext}"));
            }
        }
    }
    for ext in ["txt", "json"] {
        names.push(format!("deny-external-ips--dual-stack-ipv6-primary.{ext}"));
    }
    names.sort();
    names
}

fn policy_stem(file: &str) -> &str {
    file.trim_start_matches("policy-").trim_end_matches(".yaml")
}

fn check_golden(name: &str, actual: &str) {
    let path = golden_dir().join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(golden_dir()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "{} is missing: run UPDATE_GOLDEN=1 cargo test --test check",
            path.display()
        )
    });
    assert!(
        expected == actual,
        "{} differs from the output:\n--- golden\n{expected}\n--- output\n{actual}",
        path.display()
    );
}

/// Runs `dualmesh check` with `args` against `plane`: exit code and stdout.
fn run(plane: &ControlPlane, args: &[&str]) -> (i32, String) {
    run_as(&plane.kubeconfig_path(), args)
}

/// Runs `dualmesh check` with `args` and `kubeconfig`.
fn run_as(kubeconfig: &std::path::Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_dualmesh"))
        .arg("check")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .current_dir(repo())
        .output()
        .expect("run dualmesh check");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let code = out.status.code().expect("exited");
    assert!(code != 2, "dualmesh check {args:?} exited 2: {stderr}");
    (code, String::from_utf8(out.stdout).unwrap())
}

/// The text golden: the command, its output and its exit code.
fn text_golden(args: &str, code: i32, stdout: &str) -> String {
    format!("$ dualmesh check{args}\n{stdout}(exit {code})\n")
}

/// Checks `plane` under every example policy and none; returns the JSON
/// documents by golden stem, for the tests' own assertions.
fn check_all(plane: &ControlPlane, stem: &str) -> Vec<(String, serde_json::Value)> {
    let mut docs = Vec::new();
    let runs = POLICIES
        .iter()
        .map(|p| {
            (
                policy_stem(p).to_string(),
                vec!["-f".to_string(), format!("examples/{p}")],
            )
        })
        .chain([("no-policy".to_string(), vec![])]);
    for (policy, args) in runs {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let shown: String = args.iter().map(|a| format!(" {a}")).collect();
        let (code, text) = run(plane, &args);
        check_golden(
            &format!("{stem}--{policy}.txt"),
            &text_golden(&shown, code, &text),
        );
        let mut json_args = args.clone();
        json_args.extend(["-o", "json"]);
        let (json_code, json) = run(plane, &json_args);
        assert_eq!(code, json_code, "text and JSON runs exit alike");
        check_golden(&format!("{stem}--{policy}.json"), &json);
        let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(
            code,
            i32::from(doc["result"] == "FAIL"),
            "exit 1 exactly when a row FAILs"
        );
        docs.push((policy, doc));
    }
    docs
}

/// The level and text of one row of a JSON document.
fn row<'a>(
    docs: &'a [(String, serde_json::Value)],
    policy: &str,
    family: &str,
    check: &str,
) -> (&'a str, &'a str) {
    let doc = &docs.iter().find(|(p, _)| p == policy).unwrap().1;
    let r = doc["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["family"] == family && r["check"] == check)
        .unwrap_or_else(|| panic!("no {family} {check} row in {doc}"));
    (r["level"].as_str().unwrap(), r["saw"].as_str().unwrap())
}

async fn plane(name: &str, range: &str, deny: bool) -> (ControlPlane, Client) {
    let mut opts = PlaneOptions::named(name).arg(&format!("--service-cluster-ip-range={range}"));
    if deny {
        opts = opts.admission_plugin("DenyServiceExternalIPs");
    }
    let plane = ControlPlane::start(opts).await.expect("plane starts");
    let client = plane.client().await.unwrap();
    (plane, client)
}

/// A Node with `spec.podCIDRs` (as kube-controller-manager allocates them)
/// and `status.addresses` (as the kubelet reports them).
async fn node(client: &Client, name: &str, pod_cidrs: &[&str], addresses: &[(&str, &str)]) {
    let node: Node = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"podCIDRs": pod_cidrs, "podCIDR": pod_cidrs.first()},
    }))
    .unwrap();
    Api::<Node>::all(client.clone())
        .create(&PostParams::default(), &node)
        .await
        .expect("create node");
    testplane::kubelet::set_node_addresses(client, name, addresses)
        .await
        .expect("node status");
}

/// A ready gateway Pod on `node`, with the labels `dualmesh check` looks for.
async fn gateway_pod(client: &Client, name: &str, node: &str) {
    let labels = [("app".to_string(), "istio-ingressgateway".to_string())].into();
    testplane::kubelet::create_running_pod(client, "istio-system", name, &labels, node, &[])
        .await
        .expect("gateway pod");
}

/// An istiod Deployment (nothing runs it: the check reads its spec).
async fn istiod(client: &Client, tag: &str, dual_stack: Option<&str>) {
    let env: Vec<_> = dual_stack
        .map(|v| json!({"name": "ISTIO_DUAL_STACK", "value": v}))
        .into_iter()
        .collect();
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "istiod", "labels": {"app": "istiod"}},
        "spec": {
            "selector": {"matchLabels": {"app": "istiod"}},
            "template": {
                "metadata": {"labels": {"app": "istiod"}},
                "spec": {"containers": [{
                    "name": "discovery",
                    "image": format!("docker.io/istio/pilot:{tag}"),
                    "env": env,
                }]},
            },
        },
    }))
    .unwrap();
    Api::<Deployment>::namespaced(client.clone(), "istio-system")
        .create(&PostParams::default(), &d)
        .await
        .expect("create istiod");
}

#[tokio::test]
async fn an_ipv6_only_cluster_matches_the_ipv6_only_policy_and_fails_the_dual_stack_ones() {
    let (p, client) = plane("check-v6", PLANES[0].1, false).await;
    create_namespace(&client, "istio-system").await;
    node(
        &client,
        "n1",
        &["2001:db8:1234:5678:8:2:0:100/120"],
        &[("InternalIP", "2001:db8:1::11")],
    )
    .await;
    node(
        &client,
        "n2",
        &["2001:db8:1234:5678:8:2:0:200/120"],
        &[("InternalIP", "fd00::12")],
    )
    .await;
    gateway_pod(&client, "gw-1", "n1").await;
    istiod(&client, "1.28.2", None).await;

    let docs = check_all(&p, PLANES[0].0);
    assert_eq!(row(&docs, "ipv6-only", "IPv6", "service-cidr").0, "OK");
    assert_eq!(row(&docs, "ipv6-only", "IPv6", "pod-cidr").0, "OK");
    assert_eq!(row(&docs, "ipv6-only", "IPv6", "gateway-nodes").0, "OK");
    assert_eq!(
        row(&docs, "dual-stack-ipv6-primary", "IPv4", "service-cidr").0,
        "FAIL"
    );
    assert_eq!(
        row(
            &docs,
            "dual-stack-ipv6-primary",
            "cluster-wide",
            "istio-dual-stack"
        )
        .0,
        "FAIL"
    );
}

#[tokio::test]
async fn a_dual_stack_ipv6_primary_cluster_is_checked_family_by_family() {
    let (p, client) = plane("check-ds6", PLANES[1].1, false).await;
    create_namespace(&client, "istio-system").await;
    node(
        &client,
        "n1",
        &["fd00:10:244:1::/64", "10.244.1.0/24"],
        &[
            ("InternalIP", "2001:db8:1::21"),
            ("InternalIP", "10.0.0.21"),
            ("ExternalIP", "192.0.2.21"),
        ],
    )
    .await;
    node(
        &client,
        "n2",
        &["fd00:10:244:2::/64", "10.244.2.0/24"],
        &[
            ("InternalIP", "2001:db8:1::22"),
            ("InternalIP", "10.0.0.22"),
        ],
    )
    .await;
    node(&client, "n3", &[], &[("InternalIP", "2001:db8:1::23")]).await;
    gateway_pod(&client, "gw-1", "n1").await;
    gateway_pod(&client, "gw-2", "n2").await;
    istiod(&client, "1.30.0", Some("true")).await;

    let docs = check_all(&p, PLANES[1].0);
    assert_eq!(
        row(&docs, "dual-stack-ipv6-primary", "IPv6", "service-cidr").0,
        "OK"
    );
    assert_eq!(
        row(&docs, "dual-stack-ipv6-primary", "IPv4", "service-cidr").0,
        "OK"
    );
    let (level, saw) = row(&docs, "dual-stack-ipv6-primary", "IPv4", "gateway-nodes");
    assert_eq!((level, saw.contains("n2")), ("FAIL", true), "{saw}");
    assert_eq!(row(&docs, "ipv6-only", "IPv6", "service-cidr").0, "FAIL");

    // --policy NAME reads the same policy from the cluster: the same rows.
    install_dualmesh_crds(&client).await;
    let policy: dualmesh::api::DualStackPolicy = example("policy-dual-stack-ipv6-primary.yaml");
    create_policy(&client, &policy).await;
    let by_name = run(&p, &["--policy", "dual-stack-ipv6-primary", "-o", "json"]);
    let by_file = run(
        &p,
        &[
            "-f",
            "examples/policy-dual-stack-ipv6-primary.yaml",
            "-o",
            "json",
        ],
    );
    assert_eq!(by_name, by_file);
}

#[tokio::test]
async fn an_ipv4_only_cluster_has_no_ipv6_service_range() {
    let (p, client) = plane("check-v4", PLANES[2].1, false).await;
    create_namespace(&client, "istio-system").await;
    node(
        &client,
        "n1",
        &["10.244.1.0/24"],
        &[("InternalIP", "10.0.0.31")],
    )
    .await;
    gateway_pod(&client, "gw-1", "n1").await;

    let docs = check_all(&p, PLANES[2].0);
    let (level, saw) = row(&docs, "ipv6-only", "IPv6", "service-cidr");
    assert_eq!(level, "FAIL");
    assert_eq!(saw, "no IPv6 range in ServiceCIDRs kubernetes");
    assert_eq!(
        row(&docs, "dual-stack-ipv4-primary", "IPv4", "gateway-nodes").0,
        "OK"
    );
}

#[tokio::test]
async fn deny_service_external_ips_fails_the_external_ips_row_with_the_fix() {
    let (p, _client) = plane("check-deny", "fd00:10:96::/112,10.96.0.0/16", true).await;
    let args = ["-f", "examples/policy-dual-stack-ipv6-primary.yaml"];
    let (code, text) = run(&p, &args);
    assert_eq!(code, 1);
    check_golden(
        "deny-external-ips--dual-stack-ipv6-primary.txt",
        &text_golden(&format!(" {}", args.join(" ")), code, &text),
    );
    let (_, json) = run(&p, &[args[0], args[1], "-o", "json"]);
    check_golden("deny-external-ips--dual-stack-ipv6-primary.json", &json);
    let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
    let docs = vec![("p".to_string(), doc.clone())];
    assert_eq!(
        row(&docs, "p", "cluster-wide", "external-ips"),
        (
            "FAIL",
            "a Service with spec.externalIPs is refused (403 Forbidden) by the DenyServiceExternalIPs admission plugin"
        )
    );
    let fix = doc["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["check"] == "external-ips")
        .unwrap()["fix"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        fix.contains("DenyServiceExternalIPs") && fix.contains("manageExternalIPs: false"),
        "{fix}"
    );
}

#[test]
fn the_golden_folder_holds_exactly_the_files_the_tests_write() {
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        return; // the other tests are writing them right now
    }
    let mut found: Vec<String> = std::fs::read_dir(golden_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    found.sort();
    assert_eq!(
        found,
        golden_names(),
        "stale or missing goldens in {}",
        golden_dir().display()
    );
}

#[test]
fn bad_input_and_unreachable_clusters_exit_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_dualmesh"))
        .args(["check", "-f", "no/such/policy.yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("failed to read no/such/policy.yaml"));

    // Two policies in one file: which one is meant is unclear.
    let dir = tempfile::tempdir().unwrap();
    let two = dir.path().join("two.yaml");
    let one = std::fs::read_to_string(repo().join("examples/policy-ipv6-only.yaml")).unwrap();
    std::fs::write(&two, format!("{one}---\n{one}")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_dualmesh"))
        .arg("check")
        .arg("-f")
        .arg(&two)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("holds 2 DualStackPolicies"));

    // Nothing listens on port 1.
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:1\n    insecure-skip-tls-verify: true\nusers:\n- name: u\n  user:\n    token: t\ncontexts:\n- name: x\n  context: {cluster: c, user: u}\ncurrent-context: x\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_dualmesh"))
        .arg("check")
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("failed to connect to the API server"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // `-f` and `--policy` together are a usage error.
    let out = Command::new(env!("CARGO_BIN_EXE_dualmesh"))
        .args(["check", "-f", "a.yaml", "--policy", "b"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

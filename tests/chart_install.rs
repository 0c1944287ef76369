//! The charts and the plain manifests accepted by real API servers:
//! server-side dry run, `helm install`/`uninstall`, `kubectl apply`, and the
//! restricted Pod Security Standard enforced by the API server's own
//! PodSecurity admission.

mod common;

use common::charts::*;
use common::*;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use serde_json::{Value, json};
use testplane::ControlPlane;

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
    for crd in crd_names() {
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
    for crd in crd_names() {
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
        for crd in crd_names() {
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
    let docs = default_render();
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

//! A member's API server chooses the text of its error answers; none of it
//! may reach the management cluster's status or Events. Beta refuses every
//! write dualmesh makes there through an admission policy whose message
//! carries a marker; each job's condition says code and reason only, and
//! neither the MeshCluster's status nor its Events hold the marker.

mod common;

use std::time::Duration;

use common::*;
use dualmesh::api::{DualStackPolicy, MeshCluster};
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};
use testplane::ControlPlane;

const WAIT: Duration = Duration::from_secs(30);

/// Planted in a member's admission denials: it must not reach the
/// management cluster's status or Events.
const MARKER: &str = "MARKER-member-text-5e1f0c";

/// A ValidatingAdmissionPolicy in the member refusing every create and
/// update of Secrets, ConfigMaps and Services in `gloo-mesh` and
/// `istio-system` with a message carrying [`MARKER`].
async fn deny_writes_with_marker(client: &Client) {
    use k8s_openapi::api::admissionregistration::v1::{
        ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
    };
    use kube::api::PostParams;
    let policy: ValidatingAdmissionPolicy = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "deny-with-marker"},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "resourceRules": [{
                    "apiGroups": [""], "apiVersions": ["v1"],
                    "operations": ["CREATE", "UPDATE"],
                    "resources": ["secrets", "configmaps", "services"],
                }],
                "namespaceSelector": {"matchExpressions": [{
                    "key": "kubernetes.io/metadata.name", "operator": "In",
                    "values": ["gloo-mesh", "istio-system"],
                }]},
            },
            "validations": [{
                "expression": "false",
                "message": format!("{MARKER} see https://member.example/why"),
            }],
        },
    }))
    .unwrap();
    let binding: ValidatingAdmissionPolicyBinding = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "deny-with-marker"},
        "spec": {"policyName": "deny-with-marker", "validationActions": ["Deny"]},
    }))
    .unwrap();
    Api::<ValidatingAdmissionPolicy>::all(client.clone())
        .create(&PostParams::default(), &policy)
        .await
        .expect("create policy");
    Api::<ValidatingAdmissionPolicyBinding>::all(client.clone())
        .create(&PostParams::default(), &binding)
        .await
        .expect("create binding");
    // The policy is in force once a dry-run create is refused with it.
    wait_for("the member's admission policy in force", WAIT, || async {
        let probe: Secret = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "probe", "namespace": "gloo-mesh"},
        }))
        .unwrap();
        let dry_run = PostParams {
            dry_run: true,
            ..PostParams::default()
        };
        match Api::<Secret>::namespaced(client.clone(), "gloo-mesh")
            .create(&dry_run, &probe)
            .await
        {
            Err(kube::Error::Api(s)) if s.message.contains(MARKER) => Ok(()),
            other => Err(format!("{:?}", other.map(|_| "accepted"))),
        }
    })
    .await;
}

#[tokio::test]
async fn a_member_s_error_text_never_reaches_status_or_events() {
    let alpha = ControlPlane::start_named("fedx-alpha")
        .await
        .expect("alpha");
    let beta = ControlPlane::start_named("fedx-beta").await.expect("beta");
    let a = alpha.client().await.unwrap();
    let b = beta.client().await.unwrap();
    install_dualmesh_crds(&a).await;
    federation_sources(&a, TOKEN_1).await;
    let kc = std::fs::read_to_string(beta.kubeconfig_path()).unwrap();
    put_secret(&a, NS, "beta-kubeconfig", &[("kubeconfig", &kc)]).await;
    // Beta's gateway exists; then beta refuses every write dualmesh makes
    // there, each refusal carrying the marker.
    create_gateway(&b, "node-1", &["2001:db8:b::1"]).await;
    create_namespace(&b, "gloo-mesh").await;
    deny_writes_with_marker(&b).await;

    let _operator = start_operator(&alpha, "operator.log", LOG, &[]);
    create_policy(&a, &example::<DualStackPolicy>("policy-ipv6-only.yaml")).await;
    create_meshcluster(&a, &example::<MeshCluster>("meshcluster-beta.yaml")).await;

    // Each job reports the refusal by code and reason only.
    for (type_, reason) in [
        ("SecretsSynced", "SyncFailed"),
        ("IstioConfigApplied", "ApplyFailed"),
        ("GatewayAddressesReady", "ExternalIPsDenied"),
    ] {
        let (_, message) = wait_mc(&a, "beta", type_, "False", reason, WAIT).await;
        assert!(
            message.contains("the API server answered 4"),
            "{type_}: {message}"
        );
        assert!(!message.contains(MARKER), "{type_}: {message}");
    }
    // Nothing of the marker anywhere in the status or in the Events about it.
    let mc = Api::<MeshCluster>::namespaced(a.clone(), NS)
        .get("beta")
        .await
        .unwrap();
    let status = serde_json::to_string(&mc.status).unwrap();
    assert!(!status.contains(MARKER), "{status}");
    assert!(!status.contains("member.example"), "{status}");
    let events = wait_for("the Events of the refusals", WAIT, || async {
        let list = Api::<k8s_openapi::api::events::v1::Event>::namespaced(a.clone(), NS)
            .list(&Default::default())
            .await
            .map_err(|e| e.to_string())?;
        let reasons: Vec<String> = list.items.iter().filter_map(|e| e.reason.clone()).collect();
        let all = ["SyncFailed", "ApplyFailed", "ExternalIPsDenied"]
            .iter()
            .all(|r| reasons.iter().any(|x| x == r));
        if all {
            Ok(list.items)
        } else {
            Err(format!("{reasons:?}"))
        }
    })
    .await;
    for e in &events {
        let text = serde_json::to_string(e).unwrap();
        assert!(!text.contains(MARKER), "{text}");
    }
}

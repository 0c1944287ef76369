//! `installWith: Helm` under the real operator on a real control plane: the
//! ConfigMap `<meshcluster>-helm-values` holds exactly the rendered values
//! files (one key per Istio chart), the condition names it, reconciles
//! with nothing changed write nothing to it (audit log), a policy change
//! re-renders it in place, and moving the MeshCluster back to
//! `IstioOperator` removes it while the IstioOperator ConfigMap stays.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use dualmesh::api::{DualStackPolicy, InstallWith, MeshCluster};
use dualmesh::desired::install::{helm, publish};
use dualmesh::desired::validate::{validate_mesh_cluster, validate_policy};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use testplane::ControlPlane;

const WAIT: Duration = Duration::from_secs(20);
const CM: &str = "alpha-helm-values";

fn desired(mc: &MeshCluster, policy: &DualStackPolicy) -> BTreeMap<String, String> {
    let valid = validate_mesh_cluster(&mc.spec).unwrap();
    publish::data(&helm::build(
        &valid,
        &validate_policy(&policy.spec).unwrap(),
    ))
}

async fn helm_values(client: &Client) -> Option<ConfigMap> {
    Api::<ConfigMap>::namespaced(client.clone(), ISTIO_NS)
        .get_opt(CM)
        .await
        .expect("get ConfigMap")
}

async fn wait_values(client: &Client, want: &BTreeMap<String, String>) -> ConfigMap {
    wait_for(
        &format!("ConfigMap {CM} to hold the values"),
        WAIT,
        || async {
            match helm_values(client).await {
                Some(cm) if cm.data.as_ref() == Some(want) => Ok(cm),
                Some(cm) => Err(format!(
                    "stale: {:?}",
                    cm.data.map(|d| d.into_keys().collect::<Vec<_>>())
                )),
                None => Err("absent".into()),
            }
        },
    )
    .await
}

async fn patch_mc(client: &Client, patch: serde_json::Value) {
    Api::<MeshCluster>::namespaced(client.clone(), NS)
        .patch("alpha", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patch MeshCluster");
}

#[tokio::test]
async fn helm_values_are_published_kept_without_writes_re_rendered_and_removed_on_a_switch() {
    let plane = ControlPlane::start_named("install-helm")
        .await
        .expect("plane");
    let client = plane.client().await.expect("client");
    install_dualmesh_crds(&client).await;
    let _operator = start_operator(&plane, "operator.log", LOG, &[]);

    let ipv6_only: DualStackPolicy = example("policy-ipv6-only.yaml");
    let dual: DualStackPolicy = example("policy-dual-stack-ipv6-primary.yaml");
    create_policy(&client, &ipv6_only).await;
    let mut alpha: MeshCluster = example("meshcluster-alpha.yaml");
    alpha.spec.istio.install_with = InstallWith::Helm;
    create_meshcluster(&client, &alpha).await;

    let cm = wait_values(&client, &desired(&alpha, &ipv6_only)).await;
    let keys: Vec<&String> = cm.data.as_ref().unwrap().keys().collect();
    assert_eq!(
        keys,
        ["base.yaml", "cni.yaml", "gateway.yaml", "istiod.yaml"]
    );
    let labels = cm.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        labels.get(MANAGED_BY.0).map(String::as_str),
        Some(MANAGED_BY.1)
    );
    assert_eq!(
        cm.metadata
            .annotations
            .clone()
            .unwrap_or_default()
            .get(OWNER_ANNOTATION)
            .map(String::as_str),
        Some("dualmesh-system/alpha")
    );
    let (mc, _) = wait_mc(
        &client,
        "alpha",
        "IstioConfigApplied",
        "True",
        "ConfigMapApplied",
        WAIT,
    )
    .await;
    let (_, _, message) = condition(&mc, "IstioConfigApplied").unwrap();
    assert!(
        message.contains("Helm values ConfigMap istio-system/alpha-helm-values is up to date"),
        "{message}"
    );

    // However many reconciles ran until now (status writes, Events), the
    // values ConfigMap was written once: its create.
    let writes = wait_writes_settled(&plane, WAIT).await;
    let to_cm: Vec<&String> = writes
        .iter()
        .filter(|w| w.ends_with(&format!("configmaps {ISTIO_NS}/{CM}")))
        .collect();
    assert_eq!(
        to_cm,
        [&format!("create configmaps {ISTIO_NS}/{CM}")],
        "{writes:?}"
    );

    // The policy changes: re-rendered in place (dual-stack switches on).
    create_policy(&client, &dual).await;
    patch_mc(
        &client,
        serde_json::json!({"spec": {"dualStackPolicyRef": {"name": "dual-stack-ipv6-primary"}}}),
    )
    .await;
    let cm2 = wait_values(&client, &desired(&alpha, &dual)).await;
    assert_eq!(cm2.metadata.uid, cm.metadata.uid, "updated in place");
    assert!(cm2.data.unwrap()["istiod.yaml"].contains("ISTIO_DUAL_STACK"));

    // Back to IstioOperator: the values ConfigMap goes, the other stays.
    patch_mc(
        &client,
        serde_json::json!({"spec": {"istio": {"installWith": "IstioOperator"}}}),
    )
    .await;
    wait_for(&format!("ConfigMap {CM} to be removed"), WAIT, || async {
        match helm_values(&client).await {
            None => Ok(()),
            Some(_) => Err("still there".to_string()),
        }
    })
    .await;
    assert!(
        Api::<ConfigMap>::namespaced(client.clone(), ISTIO_NS)
            .get_opt("alpha-istiooperator")
            .await
            .unwrap()
            .is_some()
    );
}

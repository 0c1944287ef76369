//! What the tests that turn on Istio-native trust (`spec.trust`) share.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use dualmesh::api::{DualStackPolicy, MeshCluster};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};

use testplane::ControlPlane;
use testplane::operator::Operator;

use super::{
    ISTIO_NS, NS, create_meshcluster, create_policy, example, install_dualmesh_crds, put_secret,
    start_operator, wait_for, wait_mc,
};

const WAIT: Duration = Duration::from_secs(30);

/// Sets `spec.trust: {}` on MeshCluster `mc` of `management`; waits for
/// `TrustDistributed=True`.
pub async fn enable_trust(management: &Client, mc: &str) {
    patch_trust(management, mc, serde_json::json!({})).await;
    wait_mc(
        management,
        mc,
        "TrustDistributed",
        "True",
        "Distributed",
        WAIT,
    )
    .await;
}

async fn patch_trust(management: &Client, mc: &str, trust: serde_json::Value) {
    Api::<MeshCluster>::namespaced(management.clone(), NS)
        .patch(
            mc,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"trust": trust}})),
        )
        .await
        .unwrap();
}

/// Removes `ca-key.pem` from the `cacerts` dualmesh wrote in `target` for
/// `mc`, makes `mc` reconcile (a validity change: the operator reconciles
/// on spec changes; cacerts is not watched), and waits for the re-issue.
pub async fn reissue_unreadable_cacerts(management: &Client, target: &Client, mc: &str) {
    let secrets: Api<Secret> = Api::namespaced(target.clone(), ISTIO_NS);
    let held = secrets.get("cacerts").await.expect("cacerts written");
    assert_eq!(held.data.unwrap_or_default().len(), 4, "{mc}");
    secrets
        .patch(
            "cacerts",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"data": {"ca-key.pem": null}})),
        )
        .await
        .unwrap();
    patch_trust(
        management,
        mc,
        serde_json::json!({"intermediateValidityDays": 400}),
    )
    .await;
    wait_for(&format!("{mc}'s cacerts re-issued"), WAIT, || async {
        let keys = secrets
            .get("cacerts")
            .await
            .map_err(|e| e.to_string())?
            .data
            .unwrap_or_default()
            .len();
        if keys == 4 {
            Ok(())
        } else {
            Err(format!("{keys} keys"))
        }
    })
    .await;
}

/// Secret `beta-kubeconfig` in the management cluster, holding `member`'s
/// admin kubeconfig (what the examples' beta names).
pub async fn put_member_kubeconfig(management: &Client, member: &ControlPlane) {
    let kubeconfig = std::fs::read_to_string(member.kubeconfig_path()).unwrap();
    put_secret(
        management,
        NS,
        "beta-kubeconfig",
        &[("kubeconfig", &kubeconfig)],
    )
    .await;
}

/// Istio's ConfigMap `istio` as its istiod chart writes it (another field
/// manager than dualmesh's), with the `meshNetworks` key holding no network.
pub async fn install_istio_config_map(client: &Client) {
    let cm: ConfigMap = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "istio", "namespace": ISTIO_NS},
        "data": {"mesh": "defaultConfig:\n  discoveryAddress: istiod.istio-system.svc:15012\n", "meshNetworks": "networks: {}"},
    }))
    .unwrap();
    Api::<ConfigMap>::namespaced(client.clone(), ISTIO_NS)
        .create(&PostParams::default(), &cm)
        .await
        .expect("Istio's ConfigMap");
}

/// Starts dualmesh in `alpha` (the management cluster) with beta as a
/// member (its kubeconfig Secret), the ipv6-only policy and the
/// examples/istio-native MeshClusters, and waits for
/// `TrustDistributed=True` on both. The operator logs at `log`.
pub async fn start_istio_native_mesh(
    alpha: &ControlPlane,
    beta: &ControlPlane,
    log: &str,
) -> Operator {
    let a = alpha.client().await.unwrap();
    install_dualmesh_crds(&a).await;
    put_member_kubeconfig(&a, beta).await;
    let operator = start_operator(alpha, "operator.log", log, &[]);
    create_policy(&a, &example::<DualStackPolicy>("policy-ipv6-only.yaml")).await;
    for file in [
        "istio-native/meshcluster-alpha.yaml",
        "istio-native/meshcluster-beta.yaml",
    ] {
        create_meshcluster(&a, &example::<MeshCluster>(file)).await;
    }
    for name in ["alpha", "beta"] {
        wait_mc(&a, name, "TrustDistributed", "True", "Distributed", WAIT).await;
    }
    operator
}

/// The `cacerts` Secret in `client`'s Istio namespace, its keys as text.
pub async fn cacerts(client: &Client) -> BTreeMap<String, String> {
    let s = Api::<Secret>::namespaced(client.clone(), ISTIO_NS)
        .get("cacerts")
        .await
        .expect("cacerts");
    s.data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8(v.0).unwrap()))
        .collect()
}

/// `openssl verify -CAfile root-cert.pem ca-cert.pem` (Debian's openssl) on
/// `data`'s keys, written into `dir`: its success and its output.
pub fn openssl_verify(dir: &Path, data: &BTreeMap<String, String>) -> (bool, String) {
    for key in ["root-cert.pem", "ca-cert.pem"] {
        std::fs::write(dir.join(key), &data[key]).unwrap();
    }
    let out = std::process::Command::new("openssl")
        .current_dir(dir)
        .args(["verify", "-CAfile", "root-cert.pem", "ca-cert.pem"])
        .output()
        .expect("run openssl");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The root istiod publishes (ConfigMap `istio-ca-root-cert`) into a
/// namespace `namespace` created now.
pub async fn published_root(client: &Client, namespace: &str) -> String {
    let ns: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": namespace}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("create namespace");
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    wait_for(
        &format!("istio-ca-root-cert in {namespace}"),
        Duration::from_secs(60),
        || async {
            cms.get_opt("istio-ca-root-cert")
                .await
                .map_err(|e| e.to_string())?
                .and_then(|cm| cm.data?.get("root-cert.pem").cloned())
                .ok_or_else(|| "absent".to_string())
        },
    )
    .await
}

//! A real istiod (`pilot-discovery`, built by `make tools`, run as a plain
//! process by tests/support/src/istiod.rs) judges what dualmesh writes.
//!
//! - Trust: dualmesh in alpha gives alpha and beta a `cacerts` from one
//!   mesh root; istiod started on each with those files (as the kubelet
//!   would mount the Secret) writes `istio-ca-root-cert` into a new
//!   namespace holding that root, the same in both clusters.
//! - Gateway addresses: on a plane where dualmesh publishes the gateway
//!   node's IPv6 address as the Service's externalIPs, istiod's
//!   `/debug/networkz` lists the gateway of that network at that address.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use dualmesh::api::{DualStackPolicy, MeshCluster};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use testplane::ControlPlane;
use testplane::istiod::{Istiod, install_istio_crds};

const WAIT: Duration = Duration::from_secs(60);

async fn cacerts(client: &Client) -> BTreeMap<String, String> {
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

/// The root istiod publishes into a namespace created now.
async fn published_root(client: &Client, namespace: &str) -> String {
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": namespace}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("create namespace");
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    wait_for(
        &format!("istio-ca-root-cert in {namespace}"),
        WAIT,
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

#[tokio::test]
async fn istiod_on_alpha_and_beta_publishes_dualmeshs_mesh_root() {
    let (alpha, beta) = tokio::join!(
        ControlPlane::start_named("istiod-alpha"),
        ControlPlane::start_named("istiod-beta")
    );
    let (alpha, beta) = (alpha.expect("alpha"), beta.expect("beta"));
    let a = alpha.client().await.unwrap();
    let b = beta.client().await.unwrap();
    install_dualmesh_crds(&a).await;
    let beta_kubeconfig = std::fs::read_to_string(beta.kubeconfig_path()).unwrap();
    put_secret(
        &a,
        NS,
        "beta-kubeconfig",
        &[("kubeconfig", &beta_kubeconfig)],
    )
    .await;
    let _operator = start_operator(&alpha, "operator.log", LOG, &[]);
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
    let root = secret_value(&a, NS, "dualmesh-root-ca-mesh1", "ca-cert.pem")
        .await
        .expect("the mesh root");

    for (plane, client, cluster) in [(&alpha, &a, "cluster-alpha"), (&beta, &b, "cluster-beta")] {
        install_istio_crds(plane).expect("Istio's CRDs from its base chart");
        let files = cacerts(client).await;
        let istiod = Istiod::start(plane, cluster, &files).expect("istiod");
        // Plug-in CA files in istiod's own format (ca-cert.pem, ...), not
        // its self-signed CA.
        assert!(
            istiod
                .log()
                .contains("Using istiod file format for signing ca files"),
            "{cluster}: istiod did not take the plug-in CA:\n{}",
            istiod.log_tail(30)
        );
        let published = published_root(client, "judge").await;
        assert_eq!(
            published.trim(),
            root.trim(),
            "{cluster}: istiod publishes dualmesh's mesh root"
        );
    }
}

#[tokio::test]
async fn istiods_networkz_lists_the_gateway_at_the_address_dualmesh_published() {
    let plane = ControlPlane::start_named("istiod-networkz")
        .await
        .expect("plane");
    let client = plane.client().await.unwrap();
    install_dualmesh_crds(&client).await;
    install_istio_crds(&plane).expect("Istio's CRDs");
    create_gateway_service(&client).await;
    // The network label Istio's gateway carries: istiod takes a Service so
    // labelled, listening on 15443, as that network's gateway.
    let alpha: MeshCluster = example("meshcluster-alpha.yaml");
    let network = alpha.spec.network.clone();
    Api::<Service>::namespaced(client.clone(), GW_NS)
        .patch(
            GW,
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"labels": {"topology.istio.io/network": network}}})),
        )
        .await
        .expect("label the gateway Service");
    testplane::kubelet::create_node(&client, "node-a", &[("InternalIP", "2001:db8::a")])
        .await
        .expect("node");
    testplane::kubelet::create_running_pod(
        &client,
        GW_NS,
        "gw-0",
        &gateway_labels(),
        "node-a",
        &["fd00:10:244::5"],
    )
    .await
    .expect("gateway Pod");
    let _operator = start_operator(&plane, "operator.log", LOG, &[]);
    create_policy(
        &client,
        &example::<DualStackPolicy>("policy-ipv6-only.yaml"),
    )
    .await;
    create_meshcluster(&client, &alpha).await;
    wait_mc(
        &client,
        "alpha",
        "GatewayAddressesReady",
        "True",
        "AddressesPublished",
        WAIT,
    )
    .await;

    let istiod = Istiod::start(&plane, &alpha.spec.cluster_name, &BTreeMap::new()).expect("istiod");
    let gateways = wait_for("istiod's networkz to list the gateway", WAIT, || async {
        let z = istiod
            .debug_json("/debug/networkz")
            .map_err(|e| e.to_string())?;
        let found: Vec<(String, String, u64)> = z
            .as_array()
            .into_iter()
            .flatten()
            .map(|g| {
                (
                    g["Network"].as_str().unwrap_or_default().to_string(),
                    g["Addr"].as_str().unwrap_or_default().to_string(),
                    g["Port"].as_u64().unwrap_or_default(),
                )
            })
            .collect();
        if found.is_empty() {
            Err(format!("networkz {z}"))
        } else {
            Ok(found)
        }
    })
    .await;
    assert_eq!(gateways, [(network, "2001:db8::a".to_string(), 15443)]);
}

//! A real istiod (`pilot-discovery`, built by `make tools`, run as a plain
//! process by tests/support/src/istiod.rs) judges what dualmesh writes.
//!
//! - Trust: dualmesh in alpha gives alpha and beta a `cacerts` from one
//!   mesh root; istiod started on each with those files (as the kubelet
//!   would mount the Secret) writes `istio-ca-root-cert` into a new
//!   namespace holding that root, the same in both clusters.
//! - The judge itself: istiod lists its own cluster in `/debug/clusterz`,
//!   synced, and reads the `meshNetworks` key dualmesh's builder
//!   (`desired::mesh_networks`, not yet wired into the reconcile) writes
//!   into ConfigMap `istio` live: `/debug/networkz` lists both families.
//! - Gateway addresses: on a plane where dualmesh publishes the gateway
//!   node's IPv6 address as the Service's externalIPs, istiod's
//!   `/debug/networkz` lists the gateway of that network at that address.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::trust::start_istio_native_mesh;
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
    let _operator = start_istio_native_mesh(&alpha, &beta, LOG).await;
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
    // No network label on the Service: dualmesh sets it (istiod takes a
    // Service so labelled, listening on 15443, as that network's gateway).
    let alpha: MeshCluster = example("meshcluster-alpha.yaml");
    let network = alpha.spec.network.clone();
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

    // Istio's network labels, set by dualmesh: the gateway Service and the
    // Istio namespace.
    let label = |labels: Option<BTreeMap<String, String>>| {
        labels
            .unwrap_or_default()
            .get("topology.istio.io/network")
            .cloned()
    };
    let svc = Api::<Service>::namespaced(client.clone(), GW_NS)
        .get(GW)
        .await
        .unwrap();
    assert_eq!(label(svc.metadata.labels), Some(network.clone()));
    let ns = Api::<Namespace>::all(client.clone())
        .get(ISTIO_NS)
        .await
        .unwrap();
    assert_eq!(label(ns.metadata.labels), Some(network.clone()));
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

/// The (network, address, port) of each gateway `/debug/networkz` lists, sorted.
fn gateways(networkz: &serde_json::Value) -> Vec<(String, String, u64)> {
    let mut out: Vec<_> = networkz
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
    out.sort();
    out
}

#[tokio::test]
async fn istiod_lists_its_own_cluster_and_reads_mesh_networks_live() {
    use dualmesh::desired::mesh_networks::{self, Peer};
    let plane = ControlPlane::start_named("istiod-judge").await.unwrap();
    install_istio_crds(&plane).unwrap();
    let istiod = Istiod::start(&plane, "cluster-judge", &BTreeMap::new()).unwrap();
    let clusters = wait_for("/debug/clusterz to list cluster-judge", WAIT, || async {
        let clusters = istiod
            .debug_json("/debug/clusterz")
            .map_err(|e| e.to_string())?;
        let ids: Vec<&str> = clusters
            .as_array()
            .ok_or_else(|| format!("not a list: {clusters}"))?
            .iter()
            .filter_map(|c| c["id"].as_str())
            .collect();
        if ids == ["cluster-judge"] {
            Ok(clusters.clone())
        } else {
            Err(format!("cluster ids {ids:?} in {clusters}"))
        }
    })
    .await;
    assert_eq!(clusters[0]["syncStatus"], "synced", "{clusters}");

    // Written after istiod started: it must pick the key up live.
    let peers = [
        Peer {
            cluster_name: "cluster-judge".into(),
            network: "net-judge".into(),
            port: 15443,
            addresses: Some(vec![]),
        },
        Peer {
            cluster_name: "cluster-beta".into(),
            network: "net-beta".into(),
            port: 15443,
            addresses: Some(vec!["2001:db8::2".into(), "192.0.2.2".into()]),
        },
    ];
    let body = mesh_networks::config_map(
        &mesh_networks::config_map_name(None),
        ISTIO_NS,
        &mesh_networks::networks(&peers, &serde_json::Value::Null),
    );
    let cms: Api<ConfigMap> = Api::namespaced(plane.client().await.unwrap(), ISTIO_NS);
    cms.patch(
        "istio",
        &PatchParams::apply("dualmesh"),
        &Patch::Apply(&body),
    )
    .await
    .unwrap();
    let want = vec![
        ("net-beta".to_string(), "192.0.2.2".to_string(), 15443),
        ("net-beta".to_string(), "2001:db8::2".to_string(), 15443),
    ];
    wait_for("/debug/networkz to list beta's gateways", WAIT, || async {
        let networkz = istiod
            .debug_json("/debug/networkz")
            .map_err(|e| e.to_string())?;
        if gateways(&networkz) == want {
            Ok(())
        } else {
            Err(networkz.to_string())
        }
    })
    .await;
}

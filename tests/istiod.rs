//! A real istiod (`pilot-discovery`, built by `make tools`, run as a plain
//! process by tests/support/src/istiod.rs) judges what dualmesh writes.
//!
//! - Trust: dualmesh in alpha gives alpha and beta a `cacerts` from one
//!   mesh root; istiod started on each with those files (as the kubelet
//!   would mount the Secret) writes `istio-ca-root-cert` into a new
//!   namespace holding that root, the same in both clusters.
//! - meshNetworks: with `publishAddressesTo: MeshNetworks` dualmesh writes
//!   the key of Istio's ConfigMap in both clusters (no externalIPs); alpha's
//!   istiod, started after, lists both gateways in `/debug/networkz`, and
//!   follows beta's when it moves (read live), lists both families on a
//!   dual-stack IPv6-primary policy (IPv6 first in the key); back on
//!   externalIPs, the key
//!   is released and istiod finds the gateway on its Service again;
//!   `/debug/clusterz` lists its own cluster, synced.
//! - Gateway addresses: on a plane where dualmesh publishes the gateway
//!   node's IPv6 address as the Service's externalIPs, istiod's
//!   `/debug/networkz` lists the gateway of that network at that address.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::trust::{cacerts, install_istio_config_map, published_root, start_istio_native_mesh};
use common::*;
use dualmesh::api::{DualStackPolicy, MeshCluster};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service};
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;
use testplane::ControlPlane;
use testplane::istiod::{Istiod, install_istio_crds};

const WAIT: Duration = Duration::from_secs(60);

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
        let found = istiod.network_gateways().map_err(|e| e.to_string())?;
        if found.is_empty() {
            Err("networkz lists no gateway".to_string())
        } else {
            Ok(found)
        }
    })
    .await;
    assert_eq!(gateways, [(network, "2001:db8::a".to_string(), 15443)]);
}

/// Waits until istiod's `/debug/networkz` lists exactly `want`.
async fn wait_networkz(istiod: &Istiod, what: &str, want: &[(&str, &str, u64)]) {
    let want: Vec<(String, String, u64)> = want
        .iter()
        .map(|(n, a, p)| (n.to_string(), a.to_string(), *p))
        .collect();
    wait_for(what, WAIT, || async {
        let found = istiod.network_gateways().map_err(|e| e.to_string())?;
        if found == want {
            Ok(())
        } else {
            Err(format!("{found:?}"))
        }
    })
    .await;
}

/// The mesh forms from the two resources alone, without the deprecated
/// externalIPs: alpha and beta (examples/istio-native) publish their
/// gateways to meshNetworks, dualmesh writes that key into Istio's
/// ConfigMap of both clusters, and alpha's istiod lists its own gateway and
/// beta's at their nodes' IPv6 addresses and the tls nodePort. When beta's
/// gateway moves to another node, alpha's istiod follows. The gateway Pods
/// are written as a kubelet would (this test needs exact states, not
/// scheduling: tests/gateway.rs moves real Deployments).
#[tokio::test]
async fn alphas_istiod_finds_betas_gateway_through_mesh_networks_without_external_ips() {
    let (alpha, beta) = tokio::join!(
        ControlPlane::start_named("meshnet-alpha"),
        ControlPlane::start_named("meshnet-beta")
    );
    let (alpha, beta) = (alpha.expect("alpha"), beta.expect("beta"));
    let a = alpha.client().await.unwrap();
    let b = beta.client().await.unwrap();
    // Each node has a global IPv6 and IPv4 address (documentation ranges);
    // the ipv6-only policy publishes only the IPv6 one.
    for (client, node, v6, v4) in [
        (&a, "node-a1", "2001:db8:a::1", "192.0.2.1"),
        (&b, "node-b1", "2001:db8:b::1", "192.0.2.11"),
    ] {
        create_gateway_service(client).await;
        testplane::kubelet::create_node(client, node, &[("InternalIP", v6), ("InternalIP", v4)])
            .await
            .expect("node");
        testplane::kubelet::create_running_pod(
            client,
            GW_NS,
            "gw-0",
            &gateway_labels(),
            node,
            &["fd00:10:244::5"],
        )
        .await
        .expect("gateway Pod");
    }
    let _operator = start_istio_native_mesh(&alpha, &beta, LOG).await;
    // Istio is not installed yet: dualmesh never creates Istio's ConfigMap.
    let (_, message) = wait_mc(
        &a,
        "beta",
        "MeshNetworksPublished",
        "False",
        "IstioConfigMapMissing",
        WAIT,
    )
    .await;
    assert!(
        message.starts_with("ConfigMap istio-system/istio not found"),
        "{message}"
    );
    for client in [&a, &b] {
        install_istio_config_map(client).await;
    }
    // A first write may come before the peer's address is known (then
    // "1 gateway address"); the peer's reconcile wakes it: wait for both.
    let both = "ConfigMap istio-system/istio key meshNetworks lists 2 networks (cluster-alpha-network, cluster-beta-network) with 2 gateway addresses";
    for name in ["alpha", "beta"] {
        wait_for(&format!("{name}: {both}"), WAIT, || async {
            let mc = Api::<MeshCluster>::namespaced(a.clone(), NS)
                .get(name)
                .await
                .map_err(|e| e.to_string())?;
            match condition(&mc, "MeshNetworksPublished") {
                Some((s, r, m)) if s == "True" && r == "MeshNetworksWritten" && m == both => Ok(()),
                c => Err(format!("{c:?}")),
            }
        })
        .await;
        wait_mc(
            &a,
            name,
            "GatewayAddressesReady",
            "True",
            "AddressesPublished",
            WAIT,
        )
        .await;
    }

    // No externalIPs anywhere; the rest of Istio's ConfigMap is untouched.
    for client in [&a, &b] {
        let svc = Api::<Service>::namespaced(client.clone(), GW_NS)
            .get(GW)
            .await
            .unwrap();
        let ips = svc.spec.and_then(|s| s.external_ips).unwrap_or_default();
        assert!(ips.is_empty(), "externalIPs {ips:?}");
        let cm = Api::<ConfigMap>::namespaced(client.clone(), ISTIO_NS)
            .get("istio")
            .await
            .unwrap();
        assert!(cm.data.unwrap_or_default()["mesh"].contains("discoveryAddress"));
    }

    install_istio_crds(&alpha).expect("Istio's CRDs");
    let istiod = Istiod::start(&alpha, "cluster-alpha", &BTreeMap::new()).expect("istiod");
    wait_networkz(
        &istiod,
        "alpha's istiod to list both gateways",
        &[
            ("cluster-alpha-network", "2001:db8:a::1", 32443),
            ("cluster-beta-network", "2001:db8:b::1", 32443),
        ],
    )
    .await;

    // beta's gateway moves: a new Pod on another node, the old one gone.
    testplane::kubelet::create_node(
        &b,
        "node-b2",
        &[
            ("InternalIP", "2001:db8:b::2"),
            ("InternalIP", "192.0.2.12"),
        ],
    )
    .await
    .expect("node");
    testplane::kubelet::create_running_pod(
        &b,
        GW_NS,
        "gw-1",
        &gateway_labels(),
        "node-b2",
        &["fd00:10:244::6"],
    )
    .await
    .expect("gateway Pod");
    Api::<k8s_openapi::api::core::v1::Pod>::namespaced(b.clone(), GW_NS)
        .delete("gw-0", &kube::api::DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    wait_networkz(
        &istiod,
        "alpha's istiod to follow beta's gateway to node-b2",
        &[
            ("cluster-alpha-network", "2001:db8:a::1", 32443),
            ("cluster-beta-network", "2001:db8:b::2", 32443),
        ],
    )
    .await;

    // Dual-stack, IPv6 primary: both families, IPv6 first in the key.
    create_policy(
        &a,
        &example::<DualStackPolicy>("policy-dual-stack-ipv6-primary.yaml"),
    )
    .await;
    for name in ["alpha", "beta"] {
        Api::<MeshCluster>::namespaced(a.clone(), NS)
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(
                    json!({"spec": {"dualStackPolicyRef": {"name": "dual-stack-ipv6-primary"}}}),
                ),
            )
            .await
            .unwrap();
    }
    wait_networkz(
        &istiod,
        "alpha's istiod to list both families of both gateways",
        &[
            ("cluster-alpha-network", "192.0.2.1", 32443),
            ("cluster-alpha-network", "2001:db8:a::1", 32443),
            ("cluster-beta-network", "192.0.2.12", 32443),
            ("cluster-beta-network", "2001:db8:b::2", 32443),
        ],
    )
    .await;
    let cm = Api::<ConfigMap>::namespaced(a.clone(), ISTIO_NS)
        .get("istio")
        .await
        .unwrap();
    let key: serde_json::Value =
        serde_json::from_str(&cm.data.unwrap_or_default()["meshNetworks"]).unwrap();
    assert_eq!(
        key["networks"]["cluster-beta-network"]["gateways"],
        json!([
            {"address": "2001:db8:b::2", "port": 32443},
            {"address": "192.0.2.12", "port": 32443},
        ])
    );

    // Back to externalIPs: dualmesh releases the key (the condition goes)
    // and istiod finds alpha's gateway on its Service again.
    for name in ["alpha", "beta"] {
        Api::<MeshCluster>::namespaced(a.clone(), NS)
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(
                    json!({"spec": {"ingressGateway": {"publishAddressesTo": "ExternalIPs"}}}),
                ),
            )
            .await
            .unwrap();
    }
    for (name, client) in [("alpha", &a), ("beta", &b)] {
        wait_for(&format!("{name}'s meshNetworks released"), WAIT, || async {
            let mc = Api::<MeshCluster>::namespaced(a.clone(), NS)
                .get(name)
                .await
                .map_err(|e| e.to_string())?;
            let cm = Api::<ConfigMap>::namespaced(client.clone(), ISTIO_NS)
                .get("istio")
                .await
                .map_err(|e| e.to_string())?;
            let held = cm.data.unwrap_or_default().contains_key("meshNetworks");
            match condition(&mc, "MeshNetworksPublished") {
                None if !held => Ok(()),
                c => Err(format!("condition {c:?}, key held: {held}")),
            }
        })
        .await;
    }
    wait_networkz(
        &istiod,
        "alpha's istiod to find alpha's gateway on its Service",
        &[
            ("cluster-alpha-network", "192.0.2.1", 15443),
            ("cluster-alpha-network", "2001:db8:a::1", 15443),
        ],
    )
    .await;

    let clusters = istiod.debug_json("/debug/clusterz").expect("clusterz");
    assert_eq!(clusters[0]["id"], "cluster-alpha", "{clusters}");
    assert_eq!(clusters[0]["syncStatus"], "synced", "{clusters}");
}

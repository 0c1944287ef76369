//! The mesh forms by itself across three clusters, judged by a real istiod
//! in each (issue 14's "third plane in one test").
//!
//! alpha (dualmesh runs there), beta and gamma (members, reached through
//! their kubeconfig Secrets) are cluster planes (kube-controller-manager's
//! token controller fills the reader tokens). Istio is installed in each as
//! its charts would: the base chart's CRDs and reader ServiceAccount, the
//! istiod chart's reader RBAC and its `istio` ConfigMap. Each has one
//! gateway Pod on a node with a global IPv6 and IPv4 address; the policy is
//! dual-stack, IPv6 primary. From the MeshClusters alone:
//!
//! - trust: each istiod, started with the `cacerts` dualmesh wrote (as the
//!   kubelet would mount it), publishes dualmesh's mesh root into a new
//!   namespace, the same in all three; openssl accepts each intermediate;
//! - discovery: each istiod lists the other two clusters in
//!   `/debug/clusterz`, synced, through dualmesh's remote secrets only:
//!   beta's and gamma's through the Secrets dualmesh wrote member to member;
//! - network topology: each istiod lists all three networks' gateways, both
//!   families, in `/debug/networkz` (meshNetworks, no externalIPs);
//! - gamma leaves: its remote secrets go from alpha and beta, both istiods
//!   drop it from clusterz and its network from networkz.

mod common;

use std::time::Duration;

use common::istio_charts::install_istio_reader_rbac;
use common::trust::{
    cacerts, install_istio_config_map, openssl_verify, published_root, put_member_kubeconfig,
};
use common::*;
use dualmesh::api::{DualStackPolicy, KubeconfigSecretReference, MeshCluster};
use k8s_openapi::api::core::v1::{Secret, Service};
use kube::api::DeleteParams;
use kube::{Api, Client};
use testplane::istiod::{Istiod, install_istio_crds};
use testplane::{ControlPlane, PlaneOptions};

const WAIT: Duration = Duration::from_secs(90);

/// Each cluster: MeshCluster name, clusterName, network, its gateway
/// node's name and its IPv6 and IPv4 InternalIPs (documentation ranges).
const CLUSTERS: [(&str, &str, &str, &str, &str, &str); 3] = [
    (
        "alpha",
        "cluster-alpha",
        "cluster-alpha-network",
        "node-a",
        "2001:db8:a::1",
        "192.0.2.1",
    ),
    (
        "beta",
        "cluster-beta",
        "cluster-beta-network",
        "node-b",
        "2001:db8:b::1",
        "192.0.2.11",
    ),
    (
        "gamma",
        "cluster-gamma",
        "cluster-gamma-network",
        "node-g",
        "2001:db8:c::1",
        "192.0.2.21",
    ),
];

/// The tls nodePort of the examples' gateway, where a node answers.
const TLS_NODE_PORT: u64 = 32443;

/// The MeshClusters: alpha and beta from examples/istio-native, gamma a
/// second member shaped as beta; all on the dual-stack IPv6-primary policy.
fn meshclusters(alpha_url: String) -> Vec<MeshCluster> {
    let mut alpha: MeshCluster = example("istio-native/meshcluster-alpha.yaml");
    alpha
        .spec
        .remote_secrets
        .as_mut()
        .expect("the example sets remoteSecrets")
        .api_server_url = Some(alpha_url);
    let beta: MeshCluster = example("istio-native/meshcluster-beta.yaml");
    let mut gamma = beta.clone();
    gamma.metadata.name = Some("gamma".into());
    gamma.spec.cluster_name = "cluster-gamma".into();
    gamma.spec.network = "cluster-gamma-network".into();
    gamma.spec.kubeconfig_secret_ref = Some(KubeconfigSecretReference {
        name: "gamma-kubeconfig".into(),
        key: "kubeconfig".into(),
    });
    let mut all = vec![alpha, beta, gamma];
    for mc in &mut all {
        mc.spec.dual_stack_policy_ref.name = "dual-stack-ipv6-primary".into();
    }
    all
}

/// What each istiod's networkz should list for the clusters `of`: both
/// families of each gateway node at the tls nodePort, sorted as
/// [`Istiod::network_gateways`] sorts.
fn gateways_of(of: &[&str]) -> Vec<(String, String, u64)> {
    let mut want: Vec<(String, String, u64)> = CLUSTERS
        .iter()
        .filter(|c| of.contains(&c.0))
        .flat_map(|&(_, _, network, _, v6, v4)| {
            [v6, v4].map(|a| (network.to_string(), a.to_string(), TLS_NODE_PORT))
        })
        .collect();
    want.sort();
    want
}

/// The (cluster, "synced") pairs clusterz should list for `of`.
fn synced(of: &[&str]) -> Vec<(String, String)> {
    CLUSTERS
        .iter()
        .filter(|c| of.contains(&c.0))
        .map(|c| (c.1.to_string(), "synced".to_string()))
        .collect()
}

/// Waits until MeshCluster `name`'s condition `kind` is True with `reason`
/// and exactly `message` (an earlier pass may have said True with another).
async fn wait_message(management: &Client, name: &str, kind: &str, reason: &str, message: &str) {
    wait_for(&format!("{name}: {kind} {message}"), WAIT, || async {
        let mc = Api::<MeshCluster>::namespaced(management.clone(), NS)
            .get(name)
            .await
            .map_err(|e| e.to_string())?;
        match condition(&mc, kind) {
            Some((s, r, m)) if s == "True" && r == reason && m == message => Ok(()),
            c => Err(format!("{c:?}")),
        }
    })
    .await;
}

/// Waits until `istiod` lists exactly `clusters` and `gateways`.
async fn wait_istiod(
    istiod: &Istiod,
    who: &str,
    clusters: &[(String, String)],
    gateways: &[(String, String, u64)],
) {
    wait_for(
        &format!("{who}'s istiod: clusterz {clusters:?}, networkz {gateways:?}"),
        WAIT,
        || async {
            let c = istiod.clusters().map_err(|e| e.to_string())?;
            let g = istiod.network_gateways().map_err(|e| e.to_string())?;
            if c == clusters && g == gateways {
                Ok(())
            } else {
                Err(format!("clusterz {c:?}, networkz {g:?}"))
            }
        },
    )
    .await;
}

async fn secret_exists(client: &Client, name: &str) -> Result<bool, String> {
    Api::<Secret>::namespaced(client.clone(), ISTIO_NS)
        .get_opt(name)
        .await
        .map(|s| s.is_some())
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn three_clusters_form_one_mesh_judged_by_an_istiod_in_each() {
    let (alpha, beta, gamma) = tokio::join!(
        ControlPlane::start(PlaneOptions::named("three-alpha").cluster()),
        ControlPlane::start(PlaneOptions::named("three-beta").cluster()),
        ControlPlane::start(PlaneOptions::named("three-gamma").cluster())
    );
    let planes = [
        alpha.expect("alpha"),
        beta.expect("beta"),
        gamma.expect("gamma"),
    ];
    let mut clients = Vec::new();
    for plane in &planes {
        clients.push(plane.client().await.unwrap());
    }
    let a = clients[0].clone();
    for ((plane, client), &(_, _, _, node, v6, v4)) in planes.iter().zip(&clients).zip(&CLUSTERS) {
        install_istio_crds(plane).expect("Istio's base chart");
        install_istio_reader_rbac(plane);
        install_istio_config_map(client).await;
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
            &["fd00:10:244::5", "10.244.0.5"],
        )
        .await
        .expect("gateway Pod");
    }

    install_dualmesh_crds(&a).await;
    put_member_kubeconfig(&a, &planes[1]).await;
    let gamma_kubeconfig = std::fs::read_to_string(planes[2].kubeconfig_path()).unwrap();
    put_secret(
        &a,
        NS,
        "gamma-kubeconfig",
        &[("kubeconfig", &gamma_kubeconfig)],
    )
    .await;
    let _operator = start_operator(&planes[0], "operator.log", LOG, &[]);
    create_policy(
        &a,
        &example::<DualStackPolicy>("policy-dual-stack-ipv6-primary.yaml"),
    )
    .await;
    for mc in meshclusters(planes[0].server_url()) {
        create_meshcluster(&a, &mc).await;
    }

    // Converged, as each MeshCluster says.
    let networks = "ConfigMap istio-system/istio key meshNetworks lists 3 networks (cluster-alpha-network, cluster-beta-network, cluster-gamma-network) with 6 gateway addresses";
    for &(name, cluster, ..) in &CLUSTERS {
        wait_mc(&a, name, "TrustDistributed", "True", "Distributed", WAIT).await;
        let peers: Vec<&str> = CLUSTERS
            .iter()
            .map(|c| c.1)
            .filter(|c| *c != cluster)
            .collect();
        wait_message(
            &a,
            name,
            "RemoteSecretsSynced",
            "Synced",
            &format!(
                "istio-system holds the remote secrets of {}; this cluster's are offered to them",
                peers.join(", ")
            ),
        )
        .await;
        wait_message(
            &a,
            name,
            "MeshNetworksPublished",
            "MeshNetworksWritten",
            networks,
        )
        .await;
    }

    // One mesh root; each cluster's intermediate is signed by it.
    let root = secret_value(&a, NS, "dualmesh-root-ca-mesh1", "ca-cert.pem")
        .await
        .expect("the mesh root");
    let mut istiods = Vec::new();
    for ((plane, client), &(_, cluster, ..)) in planes.iter().zip(&clients).zip(&CLUSTERS) {
        let files = cacerts(client).await;
        assert_eq!(files["root-cert.pem"].trim(), root.trim(), "{cluster}");
        let dir = tempfile::tempdir().unwrap();
        let (verified, output) = openssl_verify(dir.path(), &files);
        assert!(verified, "{cluster}: {output}");
        // No externalIPs anywhere: the addresses are in meshNetworks.
        let svc = Api::<Service>::namespaced(client.clone(), GW_NS)
            .get(GW)
            .await
            .unwrap();
        let ips = svc.spec.and_then(|s| s.external_ips).unwrap_or_default();
        assert!(ips.is_empty(), "{cluster}: externalIPs {ips:?}");
        let istiod = Istiod::start(plane, cluster, &files).expect("istiod");
        assert!(
            istiod
                .log()
                .contains("Using istiod file format for signing ca files"),
            "{cluster}: istiod did not take the plug-in CA:\n{}",
            istiod.log_tail(30)
        );
        istiods.push(istiod);
    }
    for ((client, istiod), &(_, cluster, ..)) in clients.iter().zip(&istiods).zip(&CLUSTERS) {
        let published = published_root(client, "judge").await;
        assert_eq!(published.trim(), root.trim(), "{cluster}");
        wait_istiod(
            istiod,
            cluster,
            &synced(&["alpha", "beta", "gamma"]),
            &gateways_of(&["alpha", "beta", "gamma"]),
        )
        .await;
    }

    // gamma leaves the mesh: its remote secrets go from alpha and beta, and
    // their istiods forget it; gamma no longer holds theirs.
    Api::<MeshCluster>::namespaced(a.clone(), NS)
        .delete("gamma", &DeleteParams::default())
        .await
        .unwrap();
    for (client, cluster) in [
        (&clients[0], "cluster-alpha"),
        (&clients[1], "cluster-beta"),
    ] {
        wait_for(
            &format!("istio-remote-secret-cluster-gamma removed from {cluster}"),
            WAIT,
            || async {
                match secret_exists(client, "istio-remote-secret-cluster-gamma").await? {
                    false => Ok(()),
                    true => Err("still there".to_string()),
                }
            },
        )
        .await;
    }
    for name in [
        "istio-remote-secret-cluster-alpha",
        "istio-remote-secret-cluster-beta",
    ] {
        wait_for(&format!("{name} removed from gamma"), WAIT, || async {
            match secret_exists(&clients[2], name).await? {
                false => Ok(()),
                true => Err("still there".to_string()),
            }
        })
        .await;
    }
    for (istiod, cluster) in istiods.iter().zip(["cluster-alpha", "cluster-beta"]) {
        wait_istiod(
            istiod,
            cluster,
            &synced(&["alpha", "beta"]),
            &gateways_of(&["alpha", "beta"]),
        )
        .await;
    }
}

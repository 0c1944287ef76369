//! The gateway Service's externalIPs follow the nodes of the gateway Pods.
//!
//! On cluster planes (kube-scheduler, kube-controller-manager, kwok) the
//! gateway is a real Deployment on fake Nodes: moved by `kubectl cordon` +
//! Pod deletion and by `kubectl drain`, scaled 1 -> 3 -> 1, and a Node
//! deleted under it (the Pod GC and the ReplicaSet bring it back elsewhere);
//! IPv4-primary ordering and an API server that refuses externalIPs run on
//! a Deployment too.
//!
//! Where a test needs an exact state (a given Pod on a given node, a
//! Terminating Pod still listed, a Pod on a node that is gone), the Nodes and
//! Pods are written as a kubelet and the scheduler would, on a default plane:
//! IPv6-only and dual-stack IPv6-primary, mixed node address sets, a
//! rescheduled Pod, two replicas, a deleted node, a recreated Service and
//! another manager's address.

mod common;

use std::time::Duration;

use common::*;
use dualmesh::api::{DualStackPolicy, MeshCluster};
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Client};
use testplane::fake_nodes::create_fake_nodes;
use testplane::kubelet::{create_node, create_running_pod, set_node_addresses};
use testplane::wait::wait_for as wait_until;
use testplane::workload::{self, kubectl, node_of};
use testplane::{ControlPlane, PlaneOptions};

const WAIT: Duration = Duration::from_secs(20);
async fn wait_ips(client: &Client, want: &[&str]) {
    wait_external_ips(client, want, WAIT).await;
}

async fn wait_gateway_condition(client: &Client, status: &str, reason: &str) -> String {
    wait_mc(
        client,
        "alpha",
        "GatewayAddressesReady",
        status,
        reason,
        WAIT,
    )
    .await
    .1
}

/// A plane with dualmesh running, the given policy (from examples/) renamed
/// to what alpha uses, and MeshCluster alpha.
async fn setup(plane: &ControlPlane, policy_file: &str) -> (Client, testplane::operator::Operator) {
    let client = plane.client().await.expect("client");
    install_dualmesh_crds(&client).await;
    // The gateway Pods are created by the test (as a Deployment would);
    // their namespace must not depend on dualmesh having published first.
    create_namespace(&client, GW_NS).await;
    let operator = start_operator(plane, "operator.log", LOG, &[]);
    let mut policy: DualStackPolicy = example(policy_file);
    policy.metadata.name = Some("ipv6-only".into());
    create_policy(&client, &policy).await;
    create_meshcluster(&client, &example::<MeshCluster>("meshcluster-alpha.yaml")).await;
    (client, operator)
}

async fn pod(client: &Client, name: &str, node: &str) {
    create_running_pod(
        client,
        GW_NS,
        name,
        &gateway_labels(),
        node,
        &["fd00:10:244::5"],
    )
    .await
    .expect("create pod");
}

/// The gateway as a Deployment of one replica, once its Pod is Ready.
async fn deploy_gateway(client: &Client) -> Vec<Pod> {
    let gateway = workload::deployment(GW_NS, GW, &gateway_labels(), "istio-proxy", 1);
    workload::apply(client, &gateway)
        .await
        .expect("apply the gateway");
    rolled_out(client, 1).await
}

async fn force_delete_pod(client: &Client, name: &str) {
    Api::<Pod>::namespaced(client.clone(), GW_NS)
        .delete(name, &DeleteParams::default().grace_period(0))
        .await
        .expect("delete pod");
}

#[tokio::test]
async fn ipv6_only_follows_pods_nodes_and_the_service() {
    let plane = ControlPlane::start_named("gw-ipv6").await.expect("plane");
    let (client, operator) = setup(&plane, "policy-ipv6-only.yaml").await;

    // Mixed address sets: only the global IPv6 InternalIP inside the
    // policy's allowedCIDRs (2001:db8::/32) may be published.
    let mixed = [
        ("InternalIP", "192.0.2.10"),
        ("InternalIP", "fe80::a"),
        ("InternalIP", "fd00:10::a"),
        ("InternalIP", "2001:db8:0:0::a"),
        ("InternalIP", "2a00:1450::a"),
        ("ExternalIP", "2001:db8:ff::a"),
        ("Hostname", "node-a"),
    ];
    create_node(&client, "node-a", &mixed).await.unwrap();
    create_node(
        &client,
        "node-b",
        &[("InternalIP", "2001:db8::b"), ("InternalIP", "10.0.0.2")],
    )
    .await
    .unwrap();
    create_node(&client, "node-c", &[("InternalIP", "10.0.0.3")])
        .await
        .unwrap();

    // No Service yet -> ServiceMissing; then the Service appears.
    pod(&client, "gw-1", "node-a").await;
    let message = wait_gateway_condition(&client, "False", "ServiceMissing").await;
    assert!(
        message.contains("istio-system/istio-ingressgateway"),
        "{message}"
    );
    create_gateway_service(&client).await;
    wait_ips(&client, &["2001:db8::a"]).await;
    let message = wait_gateway_condition(&client, "True", "AddressesPublished").await;
    // Kubernetes 1.36 answers every externalIPs write with a deprecation
    // warning: the condition passes it on, in dualmesh's words.
    assert_eq!(
        message,
        format!(
            "1 address from 1 node: 2001:db8::a; {}",
            dualmesh::desired::gateway_service::DEPRECATION_NOTE
        )
    );
    let mc = Api::<MeshCluster>::namespaced(client.clone(), NS)
        .get("alpha")
        .await
        .unwrap();
    let addrs = mc.status.unwrap().gateway_addresses.unwrap();
    assert_eq!(addrs.ipv6, vec!["2001:db8::a".to_string()]);
    assert!(addrs.ipv4.is_empty());
    assert_eq!(addrs.all, "2001:db8::a");

    // Only spec.externalIPs, our annotation and Istio's network label
    // belong to dualmesh.
    let svc = Api::<Service>::namespaced(client.clone(), GW_NS)
        .get(GW)
        .await
        .unwrap();
    let ours: Vec<String> = svc
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter(|m| m.manager.as_deref() == Some("dualmesh"))
        .map(|m| serde_json::to_string(&m.fields_v1.unwrap().0).unwrap())
        .collect();
    assert_eq!(
        ours,
        vec![r#"{"f:metadata":{"f:annotations":{"f:dualmesh.io/external-ips":{}},"f:labels":{"f:topology.istio.io/network":{}}},"f:spec":{"f:externalIPs":{}}}"#.to_string()]
    );

    // The Pod is rescheduled to node-b.
    force_delete_pod(&client, "gw-1").await;
    pod(&client, "gw-2", "node-b").await;
    wait_ips(&client, &["2001:db8::b"]).await;

    // node-b's address changes.
    set_node_addresses(&client, "node-b", &[("InternalIP", "2001:db8::bb")])
        .await
        .unwrap();
    wait_ips(&client, &["2001:db8::bb"]).await;

    // Someone else adds an address: it is kept, after ours.
    Api::<Service>::namespaced(client.clone(), GW_NS)
        .patch(
            GW,
            &PatchParams::default(),
            &Patch::Merge(
                serde_json::json!({"spec": {"externalIPs": ["2001:db8::bb", "2001:db8::99"]}}),
            ),
        )
        .await
        .unwrap();
    set_node_addresses(&client, "node-b", &[("InternalIP", "2001:db8::b2")])
        .await
        .unwrap();
    wait_ips(&client, &["2001:db8::b2", "2001:db8::99"]).await;

    // The Pod moves to a node with no eligible address: NoAddressOfFamily,
    // and nothing of ours stays published.
    force_delete_pod(&client, "gw-2").await;
    pod(&client, "gw-3", "node-c").await;
    let message = wait_gateway_condition(&client, "False", "NoAddressOfFamily").await;
    assert!(message.contains("no eligible IPv6 address"), "{message}");
    wait_ips(&client, &["2001:db8::99"]).await;

    // Back on node-a; then the Service is deleted and recreated.
    force_delete_pod(&client, "gw-3").await;
    pod(&client, "gw-4", "node-a").await;
    wait_ips(&client, &["2001:db8::a", "2001:db8::99"]).await;
    Api::<Service>::namespaced(client.clone(), GW_NS)
        .delete(GW, &DeleteParams::default())
        .await
        .unwrap();
    wait_gateway_condition(&client, "False", "ServiceMissing").await;
    create_gateway_service(&client).await;
    wait_ips(&client, &["2001:db8::a"]).await;
    wait_gateway_condition(&client, "True", "AddressesPublished").await;

    // All gateway Pods gone: the last addresses stay (a rollout gap must not
    // blank a working gateway) and the condition says why.
    force_delete_pod(&client, "gw-4").await;
    wait_gateway_condition(&client, "False", "NoGatewayPods").await;
    assert_eq!(
        external_ips(&client).await.unwrap(),
        vec!["2001:db8::a".to_string()]
    );

    assert!(!operator.log().contains("panicked"), "{}", operator.log());
}

#[tokio::test]
async fn dual_stack_two_replicas_and_a_deleted_node() {
    let plane = ControlPlane::start_named("gw-dual").await.expect("plane");
    let (client, _operator) = setup(&plane, "policy-dual-stack-ipv6-primary.yaml").await;
    create_gateway_service(&client).await;
    create_node(
        &client,
        "node-a",
        &[
            ("InternalIP", "192.0.2.1"),
            ("InternalIP", "2001:db8::a"),
            ("InternalIP", "fe80::1"),
        ],
    )
    .await
    .unwrap();
    // node-b reports its IPv4 only as ExternalIP (the policy prefers
    // InternalIP and falls back to ExternalIP).
    create_node(
        &client,
        "node-b",
        &[
            ("InternalIP", "10.1.0.2"),
            ("ExternalIP", "198.51.100.2"),
            ("InternalIP", "2001:db8::b"),
        ],
    )
    .await
    .unwrap();
    pod(&client, "gw-1", "node-a").await;
    pod(&client, "gw-2", "node-b").await;
    wait_ips(
        &client,
        &["2001:db8::a", "2001:db8::b", "192.0.2.1", "198.51.100.2"],
    )
    .await;
    // The status is written after the Service, at the end of the reconcile:
    // the condition may still count one node when the addresses are there.
    wait_for(
        "GatewayAddressesReady counting both nodes",
        WAIT,
        || async {
            let message = wait_gateway_condition(&client, "True", "AddressesPublished").await;
            if message.starts_with("4 addresses from 2 nodes") {
                Ok(())
            } else {
                Err(message)
            }
        },
    )
    .await;

    // node-b is deleted (its Pod still names it): only node-a's addresses.
    Api::<Node>::all(client.clone())
        .delete("node-b", &DeleteParams::default())
        .await
        .unwrap();
    wait_ips(&client, &["2001:db8::a", "192.0.2.1"]).await;

    // A Pod being deleted (Terminating) no longer counts; the one left runs
    // on a node that is gone.
    Api::<Pod>::namespaced(client.clone(), GW_NS)
        .delete("gw-1", &DeleteParams::default())
        .await
        .unwrap();
    let message = wait_gateway_condition(&client, "False", "NoAddressOfFamily").await;
    assert!(message.contains("node node-b not found"), "{message}");
    force_delete_pod(&client, "gw-2").await;
    wait_gateway_condition(&client, "False", "NoGatewayPods").await;
}

#[tokio::test]
async fn ipv4_primary_orders_ipv4_first() {
    let plane = ControlPlane::start(PlaneOptions::named("gw-ipv4").cluster())
        .await
        .expect("plane");
    let (client, _operator) = setup(&plane, "policy-dual-stack-ipv4-primary.yaml").await;
    create_gateway_service(&client).await;
    create_fake_nodes(
        &client,
        &[(
            "node-a",
            &[
                ("InternalIP", "2001:db8::a"),
                ("InternalIP", "203.0.113.7"),
                ("Hostname", "a"),
            ],
        )],
    )
    .await
    .unwrap();
    deploy_gateway(&client).await;
    wait_ips(&client, &["203.0.113.7", "2001:db8::a"]).await;
    // The status is written after the Service, at the end of the reconcile.
    wait_for(
        "status.gatewayAddresses",
        Duration::from_secs(10),
        || async {
            let mc = Api::<MeshCluster>::namespaced(client.clone(), NS)
                .get("alpha")
                .await
                .map_err(|e| e.to_string())?;
            match mc.status.and_then(|s| s.gateway_addresses).map(|a| a.all) {
                Some(all) if all == "203.0.113.7,2001:db8::a" => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
}

#[tokio::test]
async fn refused_external_ips_are_reported_and_not_retried_hot() {
    let plane = ControlPlane::start(
        PlaneOptions::named("gw-denied")
            .cluster()
            .admission_plugin("DenyServiceExternalIPs"),
    )
    .await
    .expect("plane");
    let (client, operator) = setup(&plane, "policy-ipv6-only.yaml").await;
    create_gateway_service(&client).await;
    create_fake_nodes(&client, &[("node-a", &[("InternalIP", "2001:db8::a")])])
        .await
        .unwrap();
    deploy_gateway(&client).await;
    let message = wait_gateway_condition(&client, "False", "ExternalIPsDenied").await;
    assert!(message.contains("2001:db8::a"), "{message}");
    assert!(message.to_lowercase().contains("externalips"), "{message}");
    assert_eq!(external_ips(&client).await.unwrap(), Vec::<String>::new());

    // Backoff: over 12 s, a hot loop would send hundreds of patches; with
    // 1, 2, 4, 8 s waits it is at most a handful.
    let count = || {
        operator_writes(&plane)
            .iter()
            .filter(|w| w.starts_with("patch services "))
            .count()
    };
    let before = count();
    tokio::time::sleep(Duration::from_secs(12)).await;
    let attempts = count() - before;
    assert!(attempts <= 5, "{attempts} patch attempts in 12 s");
    assert!(!operator.log().contains("panicked"));
}

/// The fake Nodes of the Deployment test: node-i has a global IPv6 and a
/// public IPv4 InternalIP (both published by the dual-stack policy) and a
/// private IPv4 ExternalIP (not: InternalIP comes first).
fn fake_node_addresses(i: u8) -> Vec<(&'static str, String)> {
    vec![
        ("InternalIP", format!("2001:db8::{i}")),
        ("InternalIP", format!("192.0.2.{i}")),
        ("ExternalIP", format!("10.0.0.{i}")),
    ]
}

async fn fake_nodes(client: &Client, numbers: &[u8]) {
    let names: Vec<String> = numbers.iter().map(|i| format!("node-{i}")).collect();
    let owned: Vec<Vec<(&'static str, String)>> =
        numbers.iter().map(|i| fake_node_addresses(*i)).collect();
    let sets: Vec<Vec<(&str, &str)>> = owned
        .iter()
        .map(|set| set.iter().map(|(t, a)| (*t, a.as_str())).collect())
        .collect();
    let nodes: Vec<(&str, &[(&str, &str)])> = names
        .iter()
        .zip(&sets)
        .map(|(n, s)| (n.as_str(), s.as_slice()))
        .collect();
    create_fake_nodes(client, &nodes).await.expect("fake nodes");
}

/// What dualmesh must publish for gateway Pods on `nodes` (node-i):
/// IPv6 first, each family sorted.
fn published(nodes: &[&str]) -> Vec<String> {
    let mut numbers: Vec<u8> = nodes
        .iter()
        .map(|n| n.trim_start_matches("node-").parse().expect("node-<i>"))
        .collect();
    numbers.sort();
    let v6 = numbers.iter().map(|i| format!("2001:db8::{i}"));
    let v4 = numbers.iter().map(|i| format!("192.0.2.{i}"));
    v6.chain(v4).collect()
}

const SELECTOR: &str = "app=istio-ingressgateway";

async fn rolled_out(client: &Client, replicas: usize) -> Vec<Pod> {
    workload::wait_rolled_out(client, GW_NS, GW, SELECTOR, replicas).await
}

fn nodes_of(pods: &[Pod]) -> Vec<String> {
    pods.iter()
        .map(|p| node_of(p).expect("bound").to_string())
        .collect()
}

async fn wait_published(client: &Client, pods: &[Pod]) {
    let nodes = nodes_of(pods);
    let refs: Vec<&str> = nodes.iter().map(String::as_str).collect();
    let want = published(&refs);
    let want: Vec<&str> = want.iter().map(String::as_str).collect();
    wait_ips(client, &want).await;
}

#[tokio::test]
async fn a_gateway_deployment_is_followed_through_cordon_drain_scale_and_a_deleted_node() {
    let plane = ControlPlane::start(PlaneOptions::named("gw-deploy").cluster())
        .await
        .expect("plane");
    let (client, operator) = setup(&plane, "policy-dual-stack-ipv6-primary.yaml").await;
    create_gateway_service(&client).await;
    fake_nodes(&client, &[1]).await;
    let mut gateway = workload::deployment(GW_NS, GW, &gateway_labels(), "istio-proxy", 1);
    // One replica per node, so that three replicas cover the three nodes.
    workload::one_per_node(&mut gateway);
    workload::apply(&client, &gateway).await.unwrap();
    let pods = rolled_out(&client, 1).await;
    assert_eq!(nodes_of(&pods), ["node-1"]);
    wait_published(&client, &pods).await;
    fake_nodes(&client, &[2, 3]).await;

    // Cordon the gateway's node and delete its Pod: the replacement runs
    // elsewhere, and the addresses follow.
    let from = nodes_of(&pods).remove(0);
    kubectl(&plane, &["cordon", &from]);
    Api::<Pod>::namespaced(client.clone(), GW_NS)
        .delete(
            pods[0].metadata.name.as_deref().unwrap(),
            &DeleteParams::default(),
        )
        .await
        .unwrap();
    let pods = rolled_out(&client, 1).await;
    assert!(
        !nodes_of(&pods).contains(&from),
        "{:?} on {from}",
        nodes_of(&pods)
    );
    wait_published(&client, &pods).await;
    kubectl(&plane, &["uncordon", &from]);

    // Drain the node it moved to: it moves again.
    let from = nodes_of(&pods).remove(0);
    kubectl(
        &plane,
        &["drain", &from, "--ignore-daemonsets", "--timeout=60s"],
    );
    let pods = rolled_out(&client, 1).await;
    assert!(
        !nodes_of(&pods).contains(&from),
        "{:?} on {from}",
        nodes_of(&pods)
    );
    wait_published(&client, &pods).await;
    kubectl(&plane, &["uncordon", &from]);

    // Scale 1 -> 3 -> 1: three nodes' addresses, then one node's.
    workload::scale(&client, GW_NS, GW, 3).await.unwrap();
    let pods = rolled_out(&client, 3).await;
    let mut nodes = nodes_of(&pods);
    nodes.sort();
    assert_eq!(nodes, ["node-1", "node-2", "node-3"]);
    wait_published(&client, &pods).await;
    wait_gateway_condition(&client, "True", "AddressesPublished").await;
    workload::scale(&client, GW_NS, GW, 1).await.unwrap();
    let pods = rolled_out(&client, 1).await;
    wait_published(&client, &pods).await;

    // Two replicas, and the Node under one of them is deleted: its addresses
    // go at once; the Pod GC then deletes the orphaned Pod and its
    // replacement runs on the third node.
    workload::scale(&client, GW_NS, GW, 2).await.unwrap();
    let pods = rolled_out(&client, 2).await;
    wait_published(&client, &pods).await;
    let gone = nodes_of(&pods).remove(1);
    let survivor = pods[0].clone();
    Api::<Node>::all(client.clone())
        .delete(&gone, &DeleteParams::default())
        .await
        .unwrap();
    wait_published(&client, std::slice::from_ref(&survivor)).await;
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), GW_NS);
    // The Pod GC waits 40 s before it deletes the Pods of a deleted Node.
    let pods = wait_until(
        "a replacement for the Pod on the deleted node",
        Duration::from_secs(150),
        || async {
            let list = pod_api
                .list(&kube::api::ListParams::default().labels(SELECTOR))
                .await
                .map_err(|e| e.to_string())?
                .items;
            let ready: Vec<Pod> = list
                .into_iter()
                .filter(|p| workload::is_ready(p) && node_of(p) != Some(gone.as_str()))
                .collect();
            if ready.len() == 2 {
                Ok(ready)
            } else {
                Err(format!("Ready elsewhere: {:?}", nodes_of(&ready)))
            }
        },
    )
    .await;
    assert!(!nodes_of(&pods).contains(&gone), "{:?}", nodes_of(&pods));
    wait_published(&client, &pods).await;
    wait_gateway_condition(&client, "True", "AddressesPublished").await;
    assert!(!operator.log().contains("panicked"), "{}", operator.log());
}

//! The gateway Service's externalIPs follow the nodes of the gateway Pods,
//! on a real control plane with Nodes and Pods written as a kubelet and the
//! scheduler would: IPv6-only, dual-stack IPv6- and IPv4-primary, mixed node
//! address sets, a rescheduled Pod, two replicas, a deleted node, a
//! recreated Service, another manager's address, and an API server that
//! refuses externalIPs.

mod common;

use std::time::Duration;

use common::*;
use dualmesh::api::{DualStackPolicy, MeshCluster};
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Client};
use testplane::kubelet::{create_node, create_running_pod, set_node_addresses};
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
    assert_eq!(message, "1 address from 1 node: 2001:db8::a");
    let mc = Api::<MeshCluster>::namespaced(client.clone(), NS)
        .get("alpha")
        .await
        .unwrap();
    let addrs = mc.status.unwrap().gateway_addresses.unwrap();
    assert_eq!(addrs.ipv6, vec!["2001:db8::a".to_string()]);
    assert!(addrs.ipv4.is_empty());
    assert_eq!(addrs.all, "2001:db8::a");

    // Only spec.externalIPs (and our annotation) belong to dualmesh.
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
        vec![r#"{"f:metadata":{"f:annotations":{"f:dualmesh.io/external-ips":{}}},"f:spec":{"f:externalIPs":{}}}"#.to_string()]
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
    let message = wait_gateway_condition(&client, "True", "AddressesPublished").await;
    assert!(message.starts_with("4 addresses from 2 nodes"), "{message}");

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
    let plane = ControlPlane::start_named("gw-ipv4").await.expect("plane");
    let (client, _operator) = setup(&plane, "policy-dual-stack-ipv4-primary.yaml").await;
    create_gateway_service(&client).await;
    create_node(
        &client,
        "node-a",
        &[
            ("InternalIP", "2001:db8::a"),
            ("InternalIP", "203.0.113.7"),
            ("Hostname", "a"),
        ],
    )
    .await
    .unwrap();
    pod(&client, "gw-1", "node-a").await;
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
        PlaneOptions::named("gw-denied").admission_plugin("DenyServiceExternalIPs"),
    )
    .await
    .expect("plane");
    let (client, operator) = setup(&plane, "policy-ipv6-only.yaml").await;
    create_gateway_service(&client).await;
    create_node(&client, "node-a", &[("InternalIP", "2001:db8::a")])
        .await
        .unwrap();
    pod(&client, "gw-1", "node-a").await;
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

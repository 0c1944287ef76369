//! The live `ClusterMatchesPolicy` condition on a running operator: False
//! naming both ranges when the policy's Service CIDR is none of the
//! cluster's, True once a ServiceCIDR with it is added, False again when the
//! policy changes; publishing goes on throughout, and a wakeup that changes
//! nothing costs no write.

mod common;

use std::time::Duration;

use common::*;
use dualmesh::api::conditions::{self as types, reason};
use dualmesh::api::{DualStackPolicy, MeshCluster};
use k8s_openapi::api::networking::v1::ServiceCIDR;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use testplane::ControlPlane;

const WAIT: Duration = Duration::from_secs(30);

/// The MeshCluster reconciles the operator counted so far, whatever their result.
async fn reconciles(addr: std::net::SocketAddr) -> f64 {
    let text = http_get(addr, "/metrics").await.1;
    text.lines()
        .filter(|l| l.starts_with(r#"dualmesh_reconciles_total{controller="meshcluster""#))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn the_condition_follows_servicecidrs_and_the_policy_without_blocking_publishing() {
    // The plane serves 10.96.0.0/16 and fd00:10:96::/112 (testplane's default).
    let plane = ControlPlane::start_named("matches").await.expect("plane");
    let client = plane.client().await.unwrap();
    install_dualmesh_crds(&client).await;
    create_namespace(&client, GW_NS).await;
    let operator = start_operator(&plane, "operator.log", LOG, &[]);
    let addr = http_addr(&operator).await;
    create_policy(
        &client,
        &example::<DualStackPolicy>("policy-ipv6-only.yaml"),
    )
    .await;
    create_meshcluster(&client, &example::<MeshCluster>("meshcluster-alpha.yaml")).await;

    let (mc, message) = wait_mc(
        &client,
        "alpha",
        types::CLUSTER_MATCHES_POLICY,
        "False",
        reason::SERVICE_CIDR_MISMATCH,
        WAIT,
    )
    .await;
    assert_eq!(
        message,
        "IPv6 service-cidr: addressPlan.ipv6.serviceCIDR 2001:db8:1234:5678:8:3::/112 is not a Service range of the cluster: ServiceCIDR kubernetes fd00:10:96::/112; fix: set addressPlan.ipv6.serviceCIDR to fd00:10:96::/112, or create a ServiceCIDR with 2001:db8:1234:5678:8:3::/112"
    );
    // It informs: the config is published all the same.
    assert_eq!(
        condition(&mc, types::ISTIO_CONFIG_APPLIED).map(|c| c.0),
        Some("True".to_string())
    );

    // A ServiceCIDR with the policy's range: True.
    let extra: ServiceCIDR = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "mesh-v6"},
        "spec": {"cidrs": ["2001:db8:1234:5678:8:3::/112"]},
    }))
    .unwrap();
    Api::<ServiceCIDR>::all(client.clone())
        .create(&PostParams::default(), &extra)
        .await
        .expect("create ServiceCIDR");
    let (_, message) = wait_mc(
        &client,
        "alpha",
        types::CLUSTER_MATCHES_POLICY,
        "True",
        reason::CLUSTER_MATCHES,
        WAIT,
    )
    .await;
    assert_eq!(
        message,
        "the cluster's ServiceCIDRs and node podCIDRs match DualStackPolicy ipv6-only"
    );

    // A Node without podCIDRs wakes the check (a warning only): a reconcile
    // runs, and it writes nothing.
    let before = wait_writes_settled(&plane, WAIT).await;
    let count = reconciles(addr).await;
    testplane::kubelet::create_node(&client, "n1", &[("InternalIP", "2001:db8:1::1")])
        .await
        .expect("node");
    wait_for("a reconcile after the Node appeared", WAIT, || async {
        let now = reconciles(addr).await;
        if now > count {
            Ok(())
        } else {
            Err(format!("{now} reconciles"))
        }
    })
    .await;
    let after = wait_writes_settled(&plane, WAIT).await;
    assert_eq!(after, before, "writes after a wakeup that changed nothing");

    // The policy moves its Service CIDR: False, naming the new one.
    Api::<DualStackPolicy>::all(client.clone())
        .patch(
            "ipv6-only",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({
                "spec": {"addressPlan": {"ipv6": {"serviceCIDR": "fd00:10:97::/112"}}}
            })),
        )
        .await
        .expect("patch policy");
    let (_, message) = wait_mc(
        &client,
        "alpha",
        types::CLUSTER_MATCHES_POLICY,
        "False",
        reason::SERVICE_CIDR_MISMATCH,
        WAIT,
    )
    .await;
    assert!(
        message.starts_with("IPv6 service-cidr: addressPlan.ipv6.serviceCIDR fd00:10:97::/112 is not a Service range of the cluster: ServiceCIDR kubernetes fd00:10:96::/112, mesh-v6 2001:db8:1234:5678:8:3::/112;"),
        "{message}"
    );
    drop(operator);
}

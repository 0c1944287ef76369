//! Fake Nodes for a cluster plane: registered through the API with the
//! address sets a test chooses, then played by kwok (Ready, a Lease, Pods
//! Running and Ready) and given podCIDRs of both families by
//! kube-controller-manager.
//!
//! The addresses are set once kwok has initialized the Node (Ready), with a
//! merge patch of `status.addresses` alone, as a kubelet updates them: kwok's
//! node-initialize stage, given a Node without both an InternalIP and a
//! Hostname address, patches `addresses: null` and so deletes them all (its
//! `--node-ip` / `--node-name` defaults are empty). Its heartbeat stage keeps
//! whatever addresses a Node has. [`create_fake_nodes`] returns only when
//! every Node is Ready, has both podCIDRs and shows exactly its addresses.
//!
//! No taint: every Pod may be scheduled onto any fake Node unless the test
//! says otherwise (cordon, drain, affinity).

use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;

use crate::cluster::KWOK_ANNOTATION;
use crate::kubelet::NodeAddress;
use crate::wait::wait_for;

/// How long a fake Node may take to be Ready with both podCIDRs.
pub const NODE_READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The field manager the addresses are written with.
pub const MANAGER: &str = "testplane-fake-nodes";

/// The Node a kubelet on a fake machine would register, addresses aside.
fn node(name: &str) -> Node {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": { KWOK_ANNOTATION.0: KWOK_ANNOTATION.1 },
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
            },
        },
    }))
    .expect("a valid Node")
}

/// Registers fake Nodes (name, addresses) and waits until each is Ready
/// with a podCIDR of each family; returns them as they are then.
pub async fn create_fake_nodes(
    client: &kube::Client,
    nodes: &[(&str, &[NodeAddress<'_>])],
) -> kube::Result<Vec<Node>> {
    let api: Api<Node> = Api::all(client.clone());
    for (name, _) in nodes {
        api.create(&PostParams::default(), &node(name)).await?;
    }
    let params = PatchParams {
        field_manager: Some(MANAGER.to_string()),
        ..PatchParams::default()
    };
    let mut ready = Vec::new();
    for (name, addrs) in nodes {
        wait_node_ready(client, name).await;
        let addrs: Vec<_> = addrs
            .iter()
            .map(|(t, a)| json!({ "type": t, "address": a }))
            .collect();
        let patch = json!({ "status": { "addresses": addrs } });
        let node = api
            .patch_status(name, &params, &Patch::Merge(patch))
            .await?;
        ready.push(node);
    }
    Ok(ready)
}

/// Registers `n` fake Nodes `<prefix>-1` .. `<prefix>-<n>`, node `i` with
/// the address set `addresses(i)` (type, address), and waits until all are
/// Ready.
pub async fn create_n_fake_nodes(
    client: &kube::Client,
    prefix: &str,
    n: u8,
    addresses: impl Fn(u8) -> Vec<(&'static str, String)>,
) -> kube::Result<Vec<Node>> {
    let names: Vec<String> = (1..=n).map(|i| format!("{prefix}-{i}")).collect();
    let owned: Vec<Vec<(&'static str, String)>> = (1..=n).map(addresses).collect();
    let sets: Vec<Vec<NodeAddress<'_>>> = owned
        .iter()
        .map(|set| set.iter().map(|(t, a)| (*t, a.as_str())).collect())
        .collect();
    let nodes: Vec<(&str, &[NodeAddress<'_>])> = names
        .iter()
        .zip(&sets)
        .map(|(name, set)| (name.as_str(), set.as_slice()))
        .collect();
    create_fake_nodes(client, &nodes).await
}

/// Waits until Node `name` is Ready (kwok) and has a podCIDR of each family
/// (kube-controller-manager); panics after [`NODE_READY_TIMEOUT`].
pub async fn wait_node_ready(client: &kube::Client, name: &str) -> Node {
    let api: Api<Node> = Api::all(client.clone());
    wait_for(
        &format!("node {name} Ready with two podCIDRs"),
        NODE_READY_TIMEOUT,
        || async {
            let node = api.get(name).await.map_err(|e| e.to_string())?;
            let cidrs = pod_cidrs(&node);
            if is_ready(&node) && cidrs.len() == 2 {
                Ok(node)
            } else {
                Err(format!("ready: {}, podCIDRs: {cidrs:?}", is_ready(&node)))
            }
        },
    )
    .await
}

/// Whether a Node's Ready condition is True.
pub fn is_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// A Node's `spec.podCIDRs`.
pub fn pod_cidrs(node: &Node) -> Vec<String> {
    node.spec
        .as_ref()
        .and_then(|s| s.pod_cidrs.clone())
        .unwrap_or_default()
}

//! Fake Nodes for a cluster plane: registered through the API with the
//! address sets a test chooses, then played by kwok (Ready, a Lease, Pods
//! Running and Ready) and given podCIDRs of both families by
//! kube-controller-manager.
//!
//! A Node is created as a kubelet registers it: annotation, labels and the
//! whole status (the chosen addresses, a Ready condition, capacity, node
//! info) in one request. kwok's node-initialize stage selects only Nodes
//! that are not Ready, so it never runs on these: it would have deleted the
//! addresses of a Node lacking either an InternalIP or a Hostname address
//! (it then patches `addresses: null`, its `--node-ip` / `--node-name`
//! defaults being empty), and setting them after it ran races with its
//! informer's stale copy. kwok keeps each Node's Lease (so the node
//! lifecycle controller keeps it Ready) and runs its Pods;
//! kube-controller-manager gives it a podCIDR of each family.
//! [`create_fake_nodes`] returns when every Node has both.
//!
//! No taint: every Pod may be scheduled onto any fake Node unless the test
//! says otherwise (cordon, drain, affinity).

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::api::PostParams;
use serde_json::json;

use crate::cluster::KWOK_ANNOTATION;
use crate::kubelet::NodeAddress;
use crate::wait::wait_for;

/// How long a fake Node may take to be Ready with both podCIDRs.
pub const NODE_READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The Node a kubelet on a fake machine registers: its capacity and node
/// info are what kwok's node-initialize stage would write.
fn node(name: &str, addrs: &[NodeAddress<'_>]) -> Node {
    let addrs: Vec<_> = addrs
        .iter()
        .map(|(t, a)| json!({ "type": t, "address": a }))
        .collect();
    let now = k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let condition = |type_: &str, status: &str, reason: &str, message: &str| {
        json!({
            "type": type_, "status": status, "reason": reason, "message": message,
            "lastHeartbeatTime": now, "lastTransitionTime": now,
        })
    };
    let resources = json!({ "cpu": "1k", "memory": "1Ti", "pods": "1M" });
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
        "status": {
            "addresses": addrs,
            "conditions": [
                condition("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
                condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
            ],
            "capacity": resources,
            "allocatable": resources,
            "nodeInfo": {
                "architecture": "amd64", "operatingSystem": "linux",
                "kubeletVersion": "kwok", "kubeProxyVersion": "kwok",
                "containerRuntimeVersion": "kwok", "kernelVersion": "kwok",
                "bootID": "", "machineID": "", "osImage": "", "systemUUID": "",
            },
            "phase": "Running",
        },
    }))
    .expect("a valid Node")
}

/// Registers fake Nodes (name, addresses) and waits until kwok holds each
/// one's Lease and each has a podCIDR of each family; returns them as they
/// are then.
pub async fn create_fake_nodes(
    client: &kube::Client,
    nodes: &[(&str, &[NodeAddress<'_>])],
) -> kube::Result<Vec<Node>> {
    let api: Api<Node> = Api::all(client.clone());
    for (name, addrs) in nodes {
        api.create(&PostParams::default(), &node(name, addrs))
            .await?;
    }
    let mut ready = Vec::new();
    for (name, _) in nodes {
        ready.push(wait_node_ready(client, name).await);
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

/// Waits until Node `name` is Ready, kwok holds its Lease (in
/// `kube-node-lease`) and it has a podCIDR of each family
/// (kube-controller-manager); panics after [`NODE_READY_TIMEOUT`].
pub async fn wait_node_ready(client: &kube::Client, name: &str) -> Node {
    let api: Api<Node> = Api::all(client.clone());
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    wait_for(
        &format!("node {name} Ready, with its Lease and two podCIDRs"),
        NODE_READY_TIMEOUT,
        || async {
            let node = api.get(name).await.map_err(|e| e.to_string())?;
            let lease = leases.get_opt(name).await.map_err(|e| e.to_string())?;
            let cidrs = pod_cidrs(&node);
            if is_ready(&node) && lease.is_some() && cidrs.len() == 2 {
                Ok(node)
            } else {
                Err(format!(
                    "ready: {}, lease: {}, podCIDRs: {cidrs:?}",
                    is_ready(&node),
                    lease.is_some()
                ))
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

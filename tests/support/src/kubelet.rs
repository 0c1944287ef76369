//! What a kubelet and the scheduler would do, done through the API: Nodes
//! with `status.addresses` and a Ready condition, Pods bound to a node with
//! `spec.nodeName` and a Running/Ready status. The planes run no kubelet, so
//! every controller test builds its world with these.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;

/// The field manager these helpers write with (not dualmesh's).
pub const MANAGER: &str = "testplane-kubelet";

/// One entry of `status.addresses`: `("InternalIP", "2001:db8::10")`.
pub type NodeAddress<'a> = (&'a str, &'a str);

/// Creates a Node and sets its status (addresses, Ready) through the status
/// subresource, as a kubelet does when it registers.
pub async fn create_node(
    client: &kube::Client,
    name: &str,
    addresses: &[NodeAddress<'_>],
) -> kube::Result<Node> {
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": { "kubernetes.io/hostname": name, "kubernetes.io/os": "linux" }
        },
    }))
    .expect("a valid Node");
    nodes.create(&PostParams::default(), &node).await?;
    set_node_addresses(client, name, addresses).await
}

/// Replaces a Node's `status.addresses` (and marks it Ready).
pub async fn set_node_addresses(
    client: &kube::Client,
    name: &str,
    addresses: &[NodeAddress<'_>],
) -> kube::Result<Node> {
    let nodes: Api<Node> = Api::all(client.clone());
    let addrs: Vec<_> = addresses
        .iter()
        .map(|(t, a)| json!({ "type": t, "address": a }))
        .collect();
    let status = json!({
        "status": {
            "addresses": addrs,
            "conditions": [{
                "type": "Ready", "status": "True", "reason": "KubeletReady",
                "message": "kubelet is posting ready status",
                "lastHeartbeatTime": now(), "lastTransitionTime": now(),
            }],
        }
    });
    // A merge patch replaces the whole list, as the kubelet's own update does.
    nodes
        .patch_status(name, &PatchParams::default(), &Patch::Merge(status))
        .await
}

/// Creates a Pod already bound to `node` (as the scheduler would) and sets it
/// Running and Ready with the given pod IPs (as the kubelet would).
pub async fn create_running_pod(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    labels: &BTreeMap<String, String>,
    node: &str,
    pod_ips: &[&str],
) -> kube::Result<Pod> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": name, "namespace": namespace, "labels": labels },
        "spec": {
            "nodeName": node,
            "containers": [{ "name": "istio-proxy", "image": "docker.io/istio/proxyv2:test" }],
        },
    }))
    .expect("a valid Pod");
    pods.create(&PostParams::default(), &pod).await?;
    set_pod_ready(client, namespace, name, pod_ips, true).await
}

/// Sets a Pod's phase Running and its Ready condition to `ready`.
pub async fn set_pod_ready(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    pod_ips: &[&str],
    ready: bool,
) -> kube::Result<Pod> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let flag = if ready { "True" } else { "False" };
    let ips: Vec<_> = pod_ips.iter().map(|ip| json!({ "ip": ip })).collect();
    let status = json!({
        "status": {
            "phase": "Running",
            "podIP": pod_ips.first(),
            "podIPs": ips,
            "startTime": now(),
            "conditions": [
                { "type": "PodScheduled", "status": "True", "lastTransitionTime": now() },
                { "type": "Initialized", "status": "True", "lastTransitionTime": now() },
                { "type": "ContainersReady", "status": flag, "lastTransitionTime": now() },
                { "type": "Ready", "status": flag, "lastTransitionTime": now() },
            ],
        }
    });
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(status))
        .await
}

fn now() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

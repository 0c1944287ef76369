//! The kinds of change churn makes, and making one.

use super::*;

/// The kinds of change churn makes, with their weights (out of 40): about a
/// third touch a gateway, the rest is the background noise of a big cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Change {
    MoveGatewayPod,
    GatewayNodeAddresses,
    NodeAddresses,
    NodeHeartbeat,
    CreatePod,
    DeletePod,
    CreateNode,
    DeleteNode,
}

impl Change {
    pub(crate) const ALL: [(Change, u64); 8] = [
        (Change::MoveGatewayPod, 8),
        (Change::GatewayNodeAddresses, 6),
        (Change::NodeAddresses, 6),
        (Change::NodeHeartbeat, 8),
        (Change::CreatePod, 4),
        (Change::DeletePod, 4),
        (Change::CreateNode, 2),
        (Change::DeleteNode, 2),
    ];

    pub(crate) fn pick(rng: &mut Rng) -> Change {
        let total: u64 = Self::ALL.iter().map(|(_, w)| w).sum();
        let mut r = rng.next() % total;
        for (c, w) in Self::ALL {
            if r < w {
                return c;
            }
            r -= w;
        }
        unreachable!("weights sum to total")
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Change::MoveGatewayPod => "gateway Pod moved to another node",
            Change::GatewayNodeAddresses => "gateway node's addresses changed",
            Change::NodeAddresses => "other node's addresses changed",
            Change::NodeHeartbeat => "Node status heartbeat (no change)",
            Change::CreatePod => "non-gateway Pod created",
            Change::DeletePod => "non-gateway Pod deleted",
            Change::CreateNode => "Node created",
            Change::DeleteNode => "Node deleted (with its Pods)",
        }
    }
}

/// Makes one change of kind `c` in the cluster and in `world`.
pub(crate) async fn change(client: &Client, world: &mut World, c: Change) {
    match c {
        Change::MoveGatewayPod => {
            let k = world.rng.below(world.gateways.len());
            let j = world.rng.below(world.gateways[k].pods.len());
            let (old, from) = world.gateways[k].pods[j].clone();
            let to = loop {
                let n = world.random_node();
                if n != from {
                    break n;
                }
            };
            let seq = world.pod_number();
            let name = format!("gw-{k:03}-{seq}");
            let ns = world.gateways[k].namespace.clone();
            // Surge first, as a rolling update does: never a gap without a
            // ready gateway Pod.
            kubelet_pod(client, &ns, &name, &app_labels(GATEWAY), &to, &pod_ip(seq)).await;
            world.gateways[k].pods[j] = (name, to);
            delete_pod(client, &ns, &old, true).await;
        }
        Change::GatewayNodeAddresses => {
            let k = world.rng.below(world.gateways.len());
            let j = world.rng.below(world.gateways[k].pods.len());
            let node = world.gateways[k].pods[j].1.clone();
            let seq = world.address_number();
            kubelet_addresses(client, &node, seq).await;
            world.nodes.insert(node, seq);
        }
        Change::NodeAddresses => {
            let node = world.random_plain_node();
            let seq = world.address_number();
            kubelet_addresses(client, &node, seq).await;
            world.nodes.insert(node, seq);
        }
        Change::NodeHeartbeat => {
            // The kubelet's periodic status update: same addresses, a new
            // heartbeat time. The most common Node event in a real cluster.
            let node = world.random_node();
            let seq = world.nodes[&node];
            kubelet_addresses(client, &node, seq).await;
        }
        Change::CreatePod => {
            let seq = world.pod_number();
            let ns = app_namespace(seq as usize);
            let node = world.random_node();
            let name = format!("churn-{seq}");
            kubelet_pod(client, &ns, &name, &app_labels("web"), &node, &pod_ip(seq)).await;
            world.other_pods.push(PodRef {
                namespace: ns,
                name,
                node,
            });
        }
        Change::DeletePod => {
            if world.other_pods.is_empty() {
                return;
            }
            let i = world.rng.below(world.other_pods.len());
            let pod = world.other_pods.swap_remove(i);
            delete_pod(client, &pod.namespace, &pod.name, false).await;
        }
        Change::CreateNode => {
            world.next_node += 1;
            let name = format!("node-c{:05}", world.next_node);
            let seq = world.address_number();
            kubelet_node(client, &name, seq, world.node_images).await;
            world.nodes.insert(name.clone(), seq);
            world.node_names.push(name);
        }
        Change::DeleteNode => {
            let node = world.random_plain_node();
            delete_node(client, &node).await;
            world.nodes.remove(&node);
            world.node_names.retain(|n| *n != node);
            // What the Pod garbage collector does for Pods of a gone node.
            let (gone, kept): (Vec<PodRef>, Vec<PodRef>) = std::mem::take(&mut world.other_pods)
                .into_iter()
                .partition(|p| p.node == node);
            world.other_pods = kept;
            for p in gone {
                delete_pod(client, &p.namespace, &p.name, false).await;
            }
        }
    }
}

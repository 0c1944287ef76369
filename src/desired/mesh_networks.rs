//! The `meshNetworks` key of ConfigMap `istio` (or `istio-<revision>`):
//! for each network of a mesh, the clusters whose endpoints are in it
//! (`fromRegistry: <clusterName>`) and its gateways (`{address, port}` per
//! published address, in the order given: IPv6 first on IPv6-primary).
//! istiod reads this key live (`/debug/networkz` shows what it made of it).
//! Pure: the caller passes every MeshCluster of the mesh as a [`Peer`] and
//! the key's current value; a peer whose addresses are not known (its
//! cluster unreachable, its gateway not observed yet) keeps the gateways
//! the current value gives its network, so a bad input never blanks a
//! working entry.

use std::collections::BTreeMap;

use serde_json::{Value, json};

/// The ConfigMap key istiod reads mesh networks from.
pub const MESH_NETWORKS_KEY: &str = "meshNetworks";

/// One MeshCluster of the mesh, as meshNetworks needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    pub cluster_name: String,
    pub network: String,
    /// The gateway port other networks reach (spec.ingressGateway.networkGatewayPort).
    pub port: i32,
    /// The published gateway addresses in order; None when not known.
    pub addresses: Option<Vec<String>>,
}

/// The ConfigMap's name for a revision (Istio's `getMeshConfigMapName`).
pub fn config_map_name(revision: Option<&str>) -> String {
    match revision {
        None | Some("") | Some("default") => "istio".to_string(),
        Some(r) => format!("istio-{r}"),
    }
}

/// The `networks` object: networks sorted by name, endpoints by cluster
/// name, gateways by cluster name then in each peer's address order.
/// `current` is the key's current value parsed (JSON or `null`).
pub fn networks(peers: &[Peer], current: &Value) -> Value {
    let mut sorted: Vec<&Peer> = peers.iter().collect();
    sorted.sort_by(|a, b| a.cluster_name.cmp(&b.cluster_name));
    let mut out: BTreeMap<&str, (Vec<Value>, Vec<Value>)> = BTreeMap::new();
    for peer in sorted {
        let (endpoints, gateways) = out.entry(&peer.network).or_default();
        endpoints.push(json!({ "fromRegistry": peer.cluster_name }));
        match &peer.addresses {
            Some(addrs) => gateways.extend(
                addrs
                    .iter()
                    .map(|a| json!({ "address": a, "port": peer.port })),
            ),
            None => {
                let kept = current["networks"][&peer.network]["gateways"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                for g in kept {
                    if !gateways.contains(&g) {
                        gateways.push(g);
                    }
                }
            }
        }
    }
    let networks: serde_json::Map<String, Value> = out
        .into_iter()
        .map(|(name, (endpoints, gateways))| {
            (
                name.to_string(),
                json!({ "endpoints": endpoints, "gateways": gateways }),
            )
        })
        .collect();
    json!({ "networks": networks })
}

/// The server-side apply body of the ConfigMap holding only the
/// `meshNetworks` key (JSON text, which is YAML too).
pub fn config_map(name: &str, namespace: &str, networks: &Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": { "name": name, "namespace": namespace },
        "data": { MESH_NETWORKS_KEY: networks.to_string() },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(cluster: &str, network: &str, addrs: Option<&[&str]>) -> Peer {
        Peer {
            cluster_name: cluster.into(),
            network: network.into(),
            port: 15443,
            addresses: addrs.map(|a| a.iter().map(|s| s.to_string()).collect()),
        }
    }

    #[test]
    fn each_network_lists_its_clusters_and_their_gateway_addresses_in_order() {
        let peers = [
            peer(
                "cluster-beta",
                "net-beta",
                Some(&["2001:db8::2", "192.0.2.2"]),
            ),
            peer("cluster-alpha", "net-alpha", Some(&["2001:db8::1"])),
        ];
        assert_eq!(
            networks(&peers, &Value::Null),
            json!({"networks": {
                "net-alpha": {
                    "endpoints": [{"fromRegistry": "cluster-alpha"}],
                    "gateways": [{"address": "2001:db8::1", "port": 15443}],
                },
                "net-beta": {
                    "endpoints": [{"fromRegistry": "cluster-beta"}],
                    "gateways": [
                        {"address": "2001:db8::2", "port": 15443},
                        {"address": "192.0.2.2", "port": 15443},
                    ],
                },
            }})
        );
    }

    #[test]
    fn a_peer_whose_addresses_are_unknown_keeps_its_networks_current_gateways() {
        let current = json!({"networks": {"net-beta": {
            "endpoints": [{"fromRegistry": "cluster-beta"}],
            "gateways": [{"address": "2001:db8::2", "port": 15443}],
        }}});
        let peers = [
            peer("cluster-alpha", "net-alpha", Some(&[])),
            peer("cluster-beta", "net-beta", None),
        ];
        assert_eq!(
            networks(&peers, &current),
            json!({"networks": {
                "net-alpha": {"endpoints": [{"fromRegistry": "cluster-alpha"}], "gateways": []},
                "net-beta": {
                    "endpoints": [{"fromRegistry": "cluster-beta"}],
                    "gateways": [{"address": "2001:db8::2", "port": 15443}],
                },
            }})
        );
    }

    #[test]
    fn the_config_map_holds_only_the_mesh_networks_key_under_the_revisions_name() {
        assert_eq!(config_map_name(None), "istio");
        assert_eq!(config_map_name(Some("default")), "istio");
        assert_eq!(config_map_name(Some("canary")), "istio-canary");
        let n = json!({"networks": {}});
        assert_eq!(
            config_map("istio-canary", "istio-system", &n),
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "istio-canary", "namespace": "istio-system"},
                "data": {"meshNetworks": "{\"networks\":{}}"}})
        );
    }
}

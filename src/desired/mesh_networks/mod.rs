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

use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use serde_json::{Value, json};

use super::conditions::Found;
use super::publish::Write;
use crate::api::conditions::{self as types, reason};
use crate::api::{MeshCluster, ServiceType};

/// The ConfigMap key istiod reads mesh networks from.
pub const MESH_NETWORKS_KEY: &str = "meshNetworks";

/// The nodePort of the gateway's `tls` port when none is set (as rendered).
const DEFAULT_TLS_NODE_PORT: i32 = 32443;

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

/// The port other networks reach a gateway at through one of its nodes'
/// addresses: `networkGatewayPort` where those addresses are also the
/// Service's externalIPs (kube-proxy answers on the Service's ports there);
/// otherwise the `tls` nodePort of a NodePort or LoadBalancer Service.
pub fn gateway_port(mc: &MeshCluster) -> i32 {
    let gw = &mc.spec.ingress_gateway;
    if gw.writes_external_ips() || gw.service_type == ServiceType::ClusterIP {
        gw.network_gateway_port
    } else {
        gw.tls_node_port.unwrap_or(DEFAULT_TLS_NODE_PORT)
    }
}

/// The MeshClusters of `mc`'s mesh (same namespace and meshID, not being
/// deleted), `mc` included, by name.
pub fn same_mesh<'a>(
    mc: &MeshCluster,
    all: &'a [std::sync::Arc<MeshCluster>],
) -> Vec<&'a MeshCluster> {
    let mut out: Vec<&MeshCluster> = all
        .iter()
        .map(|p| p.as_ref())
        .filter(|p| {
            p.namespace() == mc.namespace()
                && p.spec.mesh_id == mc.spec.mesh_id
                && p.metadata.deletion_timestamp.is_none()
        })
        .collect();
    out.sort_by_key(|p| p.name_any());
    out
}

/// Whether `mc`'s cluster carries a `meshNetworks` key of dualmesh's: some
/// MeshCluster of its mesh publishes its addresses there.
pub fn requested(mesh: &[&MeshCluster]) -> bool {
    mesh.iter()
        .any(|p| p.spec.ingress_gateway.publish_addresses_to.mesh_networks())
}

/// The peers of a mesh. `addresses_of(p)` gives what is known of a
/// MeshCluster that publishes to meshNetworks (None: unknown, keep what the
/// key holds); the others publish no gateway entries (istiod finds theirs
/// on the labelled Service).
pub fn peers(
    mesh: &[&MeshCluster],
    addresses_of: impl Fn(&MeshCluster) -> Option<Vec<String>>,
) -> Vec<Peer> {
    mesh.iter()
        .map(|p| Peer {
            cluster_name: p.spec.cluster_name.clone(),
            network: p.spec.network.clone(),
            port: gateway_port(p),
            addresses: if p.spec.ingress_gateway.publish_addresses_to.mesh_networks() {
                addresses_of(p)
            } else {
                Some(Vec::new())
            },
        })
        .collect()
}

/// The key's value as read: JSON or YAML text (Istio's charts write YAML),
/// `null` when absent or unreadable.
pub fn parse(config_map: &ConfigMap) -> Value {
    config_map
        .data
        .as_ref()
        .and_then(|d| d.get(MESH_NETWORKS_KEY))
        .and_then(|text| serde_saphyr::from_str::<Value>(text).ok())
        .unwrap_or(Value::Null)
}

/// What to do with the ConfigMap.
#[derive(Clone, Debug, PartialEq)]
pub enum Plan {
    /// Istio's ConfigMap is not there (yet): dualmesh never creates it
    /// (Istio's install would then refuse to take it over).
    Missing,
    /// The write (Keep when the key already says it), and the networks.
    Write { write: Write, networks: Value },
}

/// Plans the key for `peers` over the ConfigMap as read: an apply of only
/// that key (with the resourceVersion read) when its value differs.
pub fn plan(name: &str, namespace: &str, read: Option<&ConfigMap>, peers: &[Peer]) -> Plan {
    let Some(cm) = read else {
        return Plan::Missing;
    };
    let current = parse(cm);
    let wanted = networks(peers, &current);
    let write = if current == wanted {
        Write::Keep
    } else {
        let mut body = config_map(name, namespace, &wanted);
        body["metadata"]["resourceVersion"] = json!(cm.resource_version());
        Write::Apply(body)
    };
    Plan::Write {
        write,
        networks: wanted,
    }
}

/// The apply body releasing the key (dualmesh's field manager then holds
/// nothing of the ConfigMap; the key goes unless another manager set it too).
pub fn release(name: &str, namespace: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": { "name": name, "namespace": namespace },
    })
}

/// The `MeshNetworksPublished` condition for the plan's outcome.
pub fn report(cm_ref: &str, plan: &Plan) -> Found {
    match plan {
        Plan::Missing => Found::fail(
            types::MESH_NETWORKS_PUBLISHED,
            reason::ISTIO_CONFIG_MAP_MISSING,
            format!(
                "ConfigMap {cm_ref} not found: it appears when Istio is installed (spec.istio.revision names it); dualmesh then writes its meshNetworks key"
            ),
        ),
        Plan::Write { networks, .. } => {
            let nets = networks["networks"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            let gateways: usize = nets
                .values()
                .map(|n| n["gateways"].as_array().map_or(0, Vec::len))
                .sum();
            Found::ok(
                types::MESH_NETWORKS_PUBLISHED,
                reason::MESH_NETWORKS_WRITTEN,
                format!(
                    "ConfigMap {cm_ref} key meshNetworks lists {} ({}) with {gateways} gateway {}",
                    if nets.len() == 1 {
                        "1 network".to_string()
                    } else {
                        format!("{} networks", nets.len())
                    },
                    nets.keys().cloned().collect::<Vec<_>>().join(", "),
                    if gateways == 1 {
                        "address"
                    } else {
                        "addresses"
                    },
                ),
            )
        }
    }
}

#[cfg(test)]
mod tests;

//! The `cross-network-gateway` Gateway (networking.istio.io) for the
//! cluster's gateway, with `spec.remoteSecrets`: Istio's
//! `expose-services.yaml`, planned by [`crate::desired::network`]. Where
//! Istio's CRDs are not installed the write is refused with 404 and the
//! condition says so (no cluster-wide read of CRDs is needed for it).

use std::collections::BTreeMap;

use kube::Api;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};

use super::meshcluster::owner;
use super::{Error, ssa};
use crate::api::MeshCluster;
use crate::desired::conditions::Found;
use crate::desired::network::{self, CROSS_NETWORK_GATEWAY};
use crate::desired::publish::Current;

fn gateways(client: &kube::Client, namespace: &str) -> Api<DynamicObject> {
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("networking.istio.io", "v1", "Gateway"),
        "gateways",
    );
    Api::namespaced_with(client.clone(), namespace, &resource)
}

/// Applies the Gateway in `namespace` for the Pods `selector` picks.
pub(super) async fn apply(
    client: &kube::Client,
    mc: &MeshCluster,
    namespace: &str,
    selector: &BTreeMap<String, String>,
) -> Result<Found, Error> {
    let api = gateways(client, namespace);
    let read = match api.get_opt(CROSS_NETWORK_GATEWAY).await {
        Ok(read) => read,
        Err(e) if ssa::is_not_found(&e) => return Ok(network::cross_network_no_crds()),
        Err(e) => return Err(e.into()),
    };
    let current = read.as_ref().map(|g| Current {
        meta: &g.metadata,
        content: g.data.get("spec"),
    });
    let write = network::cross_network_gateway(&owner(mc), namespace, selector, current)?;
    match ssa::execute(&api, CROSS_NETWORK_GATEWAY, &write, None).await {
        Ok(sent) => {
            if sent {
                tracing::info!(meshcluster = %owner(mc).key, namespace, "applied Gateway {CROSS_NETWORK_GATEWAY}");
            }
            Ok(network::cross_network_applied(namespace))
        }
        // get_opt reads any 404 as "absent"; a create answered 404 means
        // the resource itself is not served.
        Err(e) if ssa::is_not_found(&e) => Ok(network::cross_network_no_crds()),
        Err(e) => Err(e.into()),
    }
}

/// Deletes the Gateway if it is ours (tolerates it, or its CRD, gone).
pub(super) async fn remove(
    client: &kube::Client,
    mc: &MeshCluster,
    namespace: &str,
) -> Result<bool, kube::Error> {
    let api = gateways(client, namespace);
    let read = match api.get_opt(CROSS_NETWORK_GATEWAY).await {
        Ok(Some(g)) => g,
        Ok(None) => return Ok(false),
        Err(e) if ssa::is_not_found(&e) => return Ok(false),
        Err(e) => return Err(e),
    };
    if !owner(mc).owns(&read.metadata) {
        return Ok(false);
    }
    ssa::delete_read(&api, &read.metadata).await
}

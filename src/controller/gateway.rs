//! Keeping the gateway Service's `spec.externalIPs` equal to the addresses of
//! the nodes its Pods run on: the fetch step reads the cluster's watch
//! caches, [`crate::desired::gateway_service`] plans, the apply step writes
//! the Service with its resourceVersion as read.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use kube::Api;
use kube::runtime::reflector::ObjectRef;

use super::cache::synced;
use super::cluster::{Cluster, GatewayKey};
use super::{Error, ssa};
use crate::api::MeshCluster;
use crate::desired::gateway_service::{Observed, Plan, gateway_pod, node_addresses};
use crate::desired::validate::ValidMeshCluster;

pub use crate::api::labels::EXTERNAL_IPS_ANNOTATION;

/// How long a reconcile waits for a gateway watch's first list.
const CACHE_WAIT: Duration = Duration::from_secs(10);

/// The gateway's namespace, selector and Service name for `mc`.
pub fn key(mc: &ValidMeshCluster<'_>) -> GatewayKey {
    GatewayKey {
        namespace: mc.gateway_namespace.clone(),
        selector: mc.gateway_selector.clone(),
        service: mc.spec.ingress_gateway.name.clone(),
    }
}

/// The fetch step: the gateway's Pods, their nodes' addresses and its
/// Service, from the watch caches (started on first use). None when
/// dualmesh does not manage the addresses (its watches are stopped).
pub async fn fetch(
    cluster: &Cluster,
    mc_ref: &ObjectRef<MeshCluster>,
    mc: &ValidMeshCluster<'_>,
) -> Result<Option<Observed>, Error> {
    if !mc.spec.ingress_gateway.manage_external_ips {
        cluster.forget(mc_ref);
        return Ok(None);
    }
    let key = key(mc);
    let watch = cluster.gateway(mc_ref, &key);
    let nodes = cluster.nodes();
    synced(&watch.pods, "gateway Pod", CACHE_WAIT).await?;
    synced(&watch.services, "gateway Service", CACHE_WAIT).await?;
    synced(&nodes, "Node", CACHE_WAIT).await?;
    let pods: Vec<_> = watch.pods.state().iter().map(|p| gateway_pod(p)).collect();
    let mut addresses = BTreeMap::new();
    for name in pods.iter().filter_map(|p| p.node_name.as_ref()) {
        if let Some(node) = nodes.get(&ObjectRef::new(name)) {
            addresses.insert(name.clone(), node_addresses(&node));
        }
    }
    let service = watch
        .services
        .get(&ObjectRef::new(&key.service).within(&key.namespace));
    Ok(Some(Observed {
        pods,
        nodes: addresses,
        service,
    }))
}

/// How the apply step ended.
pub enum Applied {
    /// Requests sent (0: nothing differed, or no Service to write).
    Sent(u32),
    /// The API server refused the externalIPs (admission): HTTP code and
    /// the API's reason word.
    Refused { code: u16, reason: String },
}

/// The apply step: writes the Service when the plan says so.
pub async fn apply(cluster: &Cluster, namespace: &str, plan: &Plan) -> Result<Applied, Error> {
    let Some(service) = &plan.service else {
        return Ok(Applied::Sent(0));
    };
    let services: Api<Service> = Api::namespaced(cluster.client.clone(), namespace);
    match ssa::execute(&services, &service.name, &service.write, None).await {
        Ok(sent) => Ok(Applied::Sent(u32::from(sent))),
        Err(kube::Error::Api(s)) if matches!(s.code, 400 | 403 | 422) => Ok(Applied::Refused {
            code: s.code,
            // The API's reason word (Forbidden, Invalid ...), never free text.
            reason: if !s.reason.is_empty()
                && s.reason.len() <= 32
                && s.reason.chars().all(|c| c.is_ascii_alphanumeric())
            {
                s.reason
            } else {
                "Refused".into()
            },
        }),
        Err(e) => Err(e.into()),
    }
}

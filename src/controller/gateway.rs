//! Keeping the gateway Service's `spec.externalIPs` equal to the addresses of
//! the nodes its Pods run on: the fetch step reads the cluster's watch
//! caches, [`crate::desired::gateway_service`] plans, the apply step writes
//! the Service with its resourceVersion as read.

use std::collections::BTreeMap;
use std::time::Duration;

use kube::api::Patch;
use kube::runtime::reflector::ObjectRef;

use super::cache::synced;
use super::cluster::{Cluster, GatewayKey};
use super::{Error, ssa};
use crate::api::MeshCluster;
use crate::desired::gateway_service::{Observed, Plan, gateway_pod, node_addresses};
use crate::desired::publish::Write;
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
    if !mc.spec.ingress_gateway.follows_addresses() {
        cluster.forget(mc_ref);
        return Ok(None);
    }
    let key = key(mc);
    let watch = cluster.gateway(mc_ref, &key);
    let nodes = cluster.nodes();
    synced(watch.pod_store(), "gateway Pod", CACHE_WAIT).await?;
    synced(watch.service_store(), "gateway Service", CACHE_WAIT).await?;
    synced(&nodes, "Node", CACHE_WAIT).await?;
    let pods: Vec<_> = watch.pods().iter().map(|p| gateway_pod(p)).collect();
    let mut addresses = BTreeMap::new();
    for name in pods.iter().filter_map(|p| p.node_name.as_ref()) {
        if let Some(node) = nodes.get(&ObjectRef::new(name)) {
            addresses.insert(name.clone(), node_addresses(&node));
        }
    }
    let service = watch.service();
    Ok(Some(Observed {
        pods,
        nodes: addresses,
        service,
    }))
}

/// How the apply step ended.
pub enum Applied {
    /// Requests sent (0: nothing differed, or no Service to write), and
    /// whether the API server warned that externalIPs are deprecated.
    Sent { writes: u32, deprecated: bool },
    /// The API server refused the externalIPs (admission): HTTP code and
    /// the API's reason word.
    Refused { code: u16, reason: String },
}

/// The apply step: writes the Service when the plan says so.
pub async fn apply(cluster: &Cluster, namespace: &str, plan: &Plan) -> Result<Applied, Error> {
    let Some(service) = &plan.service else {
        return Ok(Applied::Sent {
            writes: 0,
            deprecated: false,
        });
    };
    let Write::Apply(body) = &service.write else {
        return Ok(Applied::Sent {
            writes: 0,
            deprecated: false,
        });
    };
    match apply_with_warnings(&cluster.client, namespace, &service.name, body).await {
        Ok(warnings) => Ok(Applied::Sent {
            writes: 1,
            deprecated: warnings.iter().any(|w| is_external_ips_deprecation(w)),
        }),
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

/// Whether a `Warning` header's text is Kubernetes' deprecation of
/// `spec.externalIPs` (1.36+: "spec.externalIPs is deprecated ...").
pub fn is_external_ips_deprecation(warning: &str) -> bool {
    let w = warning.to_ascii_lowercase();
    w.contains("externalips") && w.contains("deprecated")
}

/// A server-side apply of the Service (dualmesh's manager, forced, with
/// the resourceVersion the body carries), returning the `Warning` headers
/// of the answer, which kube's typed `Api` does not expose.
async fn apply_with_warnings(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    body: &serde_json::Value,
) -> Result<Vec<String>, kube::Error> {
    let url = format!("/api/v1/namespaces/{namespace}/services");
    let request = kube::core::Request::new(url)
        .patch(name, &ssa::params(), &Patch::Apply(body))
        .map_err(kube::Error::BuildRequest)?;
    let response = client.send(request.map(kube::client::Body::from)).await?;
    let warnings = response
        .headers()
        .get_all(http::header::WARNING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(crate::desired::check::parse_warning)
        .collect();
    let code = response.status();
    if code.is_success() {
        return Ok(warnings);
    }
    let bytes = response.into_body().collect_bytes().await?;
    Err(match serde_json::from_slice::<kube::core::Status>(&bytes) {
        Ok(status) => kube::Error::Api(status.boxed()),
        Err(e) => kube::Error::SerdeError(e),
    })
}

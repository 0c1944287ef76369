//! Keeping the gateway Service's `spec.externalIPs` equal to the addresses of
//! the nodes its Pods run on (pure selection in
//! [`crate::desired::gateway_addresses`]).
//!
//! `spec.externalIPs` is an atomic list, so server-side apply owns it whole.
//! To leave addresses another manager set alone, the Service carries an
//! annotation with the addresses dualmesh set; each apply writes dualmesh's
//! addresses first, then the others', and drops only dualmesh's stale ones.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Service};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};
use serde_json::json;

use super::cluster::{Cluster, GatewayKey, synced};
use super::ssa;
use crate::api::conditions::{self as types, reason};
use crate::api::{GatewayAddressesStatus, MeshCluster};
use crate::desired::conditions::Found;
use crate::desired::gateway_addresses::{self, GatewayPod, NodeAddress};
use crate::desired::validate::{ValidMeshCluster, ValidPolicy};

/// The annotation on the gateway Service listing the externalIPs dualmesh set.
pub const EXTERNAL_IPS_ANNOTATION: &str = "dualmesh.io/external-ips";

/// What the gateway step found.
pub struct Outcome {
    pub condition: Found,
    pub status: Option<GatewayAddressesStatus>,
    /// Write requests sent.
    pub writes: u32,
    /// The API server refused the write (back off before trying again).
    pub denied: bool,
}

fn gateway_pod(pod: &Pod) -> GatewayPod {
    let status = pod.status.as_ref();
    GatewayPod {
        name: pod.name_any(),
        node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
        running: status.and_then(|s| s.phase.as_deref()) == Some("Running"),
        ready: status
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True")),
        deleting: pod.metadata.deletion_timestamp.is_some(),
    }
}

fn split(value: Option<&String>) -> Vec<String> {
    value
        .map(|v| {
            v.split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// The status of a list of addresses, split by family, order kept.
fn status_from(addrs: &[String]) -> GatewayAddressesStatus {
    let of = |v6: bool| {
        addrs
            .iter()
            .filter(|a| {
                a.parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_ipv6() == v6)
            })
            .cloned()
            .collect()
    };
    GatewayAddressesStatus {
        ipv6: of(true),
        ipv4: of(false),
        all: addrs.join(","),
    }
}

/// Runs the gateway job for `mc` in `cluster`.
pub async fn reconcile(
    cluster: &Cluster,
    mc_ref: &ObjectRef<MeshCluster>,
    mc: &ValidMeshCluster<'_>,
    policy: &ValidPolicy,
) -> Result<Outcome, kube::Error> {
    let gw = &mc.spec.ingress_gateway;
    if !gw.manage_external_ips {
        cluster.forget(mc_ref);
        return Ok(Outcome {
            condition: Found::ok(
                types::GATEWAY_ADDRESSES_READY,
                reason::NOT_MANAGED,
                "spec.ingressGateway.manageExternalIPs is false: externalIPs are left as they are",
            ),
            status: None,
            writes: 0,
            denied: false,
        });
    }
    let key = GatewayKey {
        namespace: mc.gateway_namespace.clone(),
        selector: mc.gateway_selector.clone(),
        service: gw.name.clone(),
    };
    let watch = cluster.gateway(mc_ref, &key);
    let nodes = cluster.nodes();
    let wait = Duration::from_secs(10);
    if !(synced(&watch.pods, wait).await
        && synced(&watch.services, wait).await
        && synced(&nodes, wait).await)
    {
        return Err(kube::Error::Service(
            "the gateway watches did not sync within 10 s".into(),
        ));
    }

    // Observe.
    let pods: Vec<GatewayPod> = watch.pods.state().iter().map(|p| gateway_pod(p)).collect();
    let mut node_addresses: BTreeMap<String, Vec<NodeAddress>> = BTreeMap::new();
    for pod in &pods {
        let Some(name) = &pod.node_name else { continue };
        if let Some(node) = nodes.get(&ObjectRef::new(name)) {
            let addrs = node
                .status
                .as_ref()
                .and_then(|s| s.addresses.as_ref())
                .map(|a| {
                    a.iter()
                        .map(|x| NodeAddress {
                            kind: x.type_.clone(),
                            address: x.address.clone(),
                        })
                        .collect()
                })
                .unwrap_or_default();
            node_addresses.insert(name.clone(), addrs);
        }
    }

    // Decide.
    let selection = gateway_addresses::select(&pods, &node_addresses, policy);
    let verdict = gateway_addresses::verdict(&selection, policy);
    let service_ref = format!("{}/{}", key.namespace, key.service);
    let Some(service) = watch
        .services
        .get(&ObjectRef::new(&key.service).within(&key.namespace))
    else {
        return Ok(Outcome {
            condition: Found::fail(
                types::GATEWAY_ADDRESSES_READY,
                reason::SERVICE_MISSING,
                format!(
                    "Service {service_ref} not found; it appears when Istio installs the gateway (spec.ingressGateway.name)"
                ),
            ),
            status: Some(status_from(&selection.external_ips)),
            writes: 0,
            denied: false,
        });
    };
    let previous = split(service.annotations().get(EXTERNAL_IPS_ANNOTATION));
    // With no ready gateway Pod, keep what is published (a rollout gap must
    // not blank a working gateway); report it.
    let ours = if selection.ready_pods == 0 {
        previous.clone()
    } else {
        selection.external_ips.clone()
    };
    let current = service
        .spec
        .as_ref()
        .and_then(|s| s.external_ips.clone())
        .unwrap_or_default();
    let merged = gateway_addresses::merge_external_ips(&current, &previous, &ours);
    let annotation = ours.join(",");

    // Apply, only when something differs.
    let mut writes = 0;
    let annotated = service.annotations().get(EXTERNAL_IPS_ANNOTATION) == Some(&annotation);
    if merged != current || !annotated {
        let services: Api<Service> = Api::namespaced(cluster.client.clone(), &key.namespace);
        let patch = json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": key.service,
                "namespace": key.namespace,
                "annotations": {EXTERNAL_IPS_ANNOTATION: annotation},
            },
            "spec": {"externalIPs": merged},
        });
        match ssa::apply(&services, &key.service, &patch).await {
            Ok(_) => writes += 1,
            Err(kube::Error::Api(s)) if matches!(s.code, 400 | 403 | 422) => {
                return Ok(Outcome {
                    condition: Found::fail(
                        types::GATEWAY_ADDRESSES_READY,
                        reason::EXTERNAL_IPS_DENIED,
                        format!(
                            "the API server refused externalIPs [{}] on Service {service_ref}: {}",
                            merged.join(", "),
                            crate::desired::redact::api_error(s.code, &s.reason)
                        ),
                    ),
                    status: Some(status_from(&selection.external_ips)),
                    writes,
                    denied: true,
                });
            }
            Err(e) => return Err(e),
        }
    }
    let condition = if verdict.ready {
        Found::ok(
            types::GATEWAY_ADDRESSES_READY,
            verdict.reason,
            verdict.message,
        )
    } else {
        Found::fail(
            types::GATEWAY_ADDRESSES_READY,
            verdict.reason,
            verdict.message,
        )
    };
    Ok(Outcome {
        condition,
        status: Some(status_from(&ours)),
        writes,
        denied: false,
    })
}

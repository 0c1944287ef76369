//! The `meshNetworks` job: keeps the key of the cluster's Istio ConfigMap
//! listing every network of the mesh and the gateway addresses published
//! there ([`crate::desired::mesh_networks`] plans). It runs after the
//! gateway job, which gives this cluster's own addresses; the peers'
//! come from what this replica saw of them last, or from their status.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};

use super::cluster::Cluster;
use super::jobs::Job;
use super::{Context, FIELD_MANAGER, ssa};
use crate::api::MeshCluster;
use crate::api::conditions as types;
use crate::desired::keys::object_key;
use crate::desired::mesh_networks::{self as plan, Plan};
use crate::desired::selection::{has_condition, meshcluster_key};

/// Per MeshCluster (`namespace/name`): the addresses its gateway job last
/// gave for meshNetworks, as this replica saw them.
#[derive(Default)]
pub struct Addresses(Mutex<HashMap<String, Vec<String>>>);

impl Addresses {
    /// Records `addresses` for `key`; true when they differ from before.
    fn note(&self, key: &str, addresses: &[String]) -> bool {
        let mut map = self.0.lock().expect("addresses lock");
        if map.get(key).is_some_and(|a| a == addresses) {
            return false;
        }
        map.insert(key.to_string(), addresses.to_vec());
        true
    }

    fn get(&self, key: &str) -> Option<Vec<String>> {
        self.0.lock().expect("addresses lock").get(key).cloned()
    }

    /// Forgets `key` (its MeshCluster is being deleted).
    pub fn forget(&self, key: &str) {
        self.0.lock().expect("addresses lock").remove(key);
    }
}

/// The MeshClusters of `mc`'s mesh from the cache, with `mc` as this
/// reconcile read it in place of the cached copy.
pub(super) fn mesh_of(ctx: &Context, mc: &MeshCluster) -> Vec<Arc<MeshCluster>> {
    let mut all: Vec<Arc<MeshCluster>> = ctx
        .meshclusters
        .get()
        .map(|store| store.state())
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.namespace() != mc.namespace() || p.name_any() != mc.name_any())
        .collect();
    all.push(Arc::new(mc.clone()));
    all
}

/// Asks the other MeshClusters of the mesh to reconcile.
pub(super) fn wake_peers(ctx: &Context, mc: &MeshCluster, mesh: &[&MeshCluster]) {
    for p in mesh.iter().filter(|p| p.name_any() != mc.name_any()) {
        let _ = ctx.trigger.unbounded_send(ObjectRef::from_obj(*p));
    }
}

/// What a peer's status says its gateway publishes (after a restart,
/// before its own reconcile ran on this replica).
fn from_status(mc: &MeshCluster) -> Option<Vec<String>> {
    let all = &mc.status.as_ref()?.gateway_addresses.as_ref()?.all;
    let addrs: Vec<String> = all
        .split(',')
        .filter(|a| !a.is_empty())
        .map(str::to_string)
        .collect();
    (!addrs.is_empty()).then_some(addrs)
}

/// The job. None when no MeshCluster of the mesh publishes to meshNetworks
/// (the key dualmesh wrote before, if any, is released). The part is true
/// while Istio's ConfigMap is missing: dualmesh does not watch Istio's
/// ConfigMap, so it looks again soon.
pub(super) async fn job(
    ctx: &Context,
    cluster: &Cluster,
    mc: &MeshCluster,
    own: Option<Vec<String>>,
) -> Option<Job<bool>> {
    let all = mesh_of(ctx, mc);
    let mesh = plan::same_mesh(mc, &all);
    let publishes = mc.spec.ingress_gateway.publish_addresses_to.mesh_networks();
    let mut wake = false;
    if publishes && let Some(own) = &own {
        wake |= ctx.mesh_addresses.note(&meshcluster_key(mc), own);
    }
    // A new spec (network, clusterName, where addresses go) changes every
    // peer's key: once per generation, so peers never ping-pong.
    let seen = mc.status.as_ref().and_then(|s| s.observed_generation);
    wake |= seen != mc.metadata.generation
        && (plan::requested(&mesh) || has_condition(mc, types::MESH_NETWORKS_PUBLISHED));
    if wake {
        wake_peers(ctx, mc, &mesh);
    }
    let namespace = mc.spec.istio.namespace.clone();
    let name = plan::config_map_name(mc.spec.istio.revision.as_deref());
    let api: Api<ConfigMap> = Api::namespaced(cluster.client.clone(), &namespace);
    if !plan::requested(&mesh) {
        if has_condition(mc, types::MESH_NETWORKS_PUBLISHED)
            && let Err(e) = release(&api, &name, &namespace).await
        {
            return Some(Job::failed(types::MESH_NETWORKS_PUBLISHED, e.into()));
        }
        return None;
    }
    let result = async {
        let read = api.get_opt(&name).await?;
        let peers = plan::peers(&mesh, |p| {
            if p.name_any() == mc.name_any() && own.is_some() {
                return own.clone();
            }
            ctx.mesh_addresses
                .get(&meshcluster_key(p))
                .or_else(|| from_status(p))
        });
        let planned = plan::plan(&name, &namespace, read.as_ref(), &peers);
        if let Plan::Write { write, .. } = &planned
            && ssa::execute(&api, &name, write, None).await?
        {
            tracing::info!(meshcluster = %meshcluster_key(mc), config_map = %object_key(&namespace, &name), "updated meshNetworks");
        }
        Ok::<_, kube::Error>(planned)
    };
    Some(match result.await {
        Ok(planned) => Job::done(
            plan::report(&object_key(&namespace, &name), &planned),
            planned == Plan::Missing,
        ),
        Err(e) => Job::failed(types::MESH_NETWORKS_PUBLISHED, e.into()),
    })
}

/// Releases the key if dualmesh holds it (tolerates the ConfigMap gone).
pub(super) async fn release(
    api: &Api<ConfigMap>,
    name: &str,
    namespace: &str,
) -> Result<bool, kube::Error> {
    let Some(cm) = api.get_opt(name).await? else {
        return Ok(false);
    };
    let ours = cm
        .managed_fields()
        .iter()
        .any(|m| m.manager.as_deref() == Some(FIELD_MANAGER));
    if !ours {
        return Ok(false);
    }
    let mut body = plan::release(name, namespace);
    body["metadata"]["resourceVersion"] = serde_json::json!(cm.resource_version());
    match ssa::execute(
        api,
        name,
        &crate::desired::publish::Write::Apply(body),
        None,
    )
    .await
    {
        Ok(sent) => Ok(sent),
        Err(e) if ssa::is_not_found(&e) => Ok(false),
        Err(e) => Err(e),
    }
}

/// At deletion, whether its cluster answers or not: forgets `mc`'s
/// addresses and wakes its peers (their key drops its network).
pub(super) fn forget(ctx: &Context, mc: &MeshCluster) {
    ctx.mesh_addresses.forget(&meshcluster_key(mc));
    let all = mesh_of(ctx, mc);
    wake_peers(ctx, mc, &plan::same_mesh(mc, &all));
}

/// At deletion: releases `mc`'s own key.
pub(super) async fn cleanup(target: &kube::Client, mc: &MeshCluster) -> Result<(), kube::Error> {
    if has_condition(mc, types::MESH_NETWORKS_PUBLISHED) {
        let namespace = &mc.spec.istio.namespace;
        let name = plan::config_map_name(mc.spec.istio.revision.as_deref());
        let api: Api<ConfigMap> = Api::namespaced(target.clone(), namespace);
        if release(&api, &name, namespace).await? {
            tracing::info!(meshcluster = %meshcluster_key(mc), "released meshNetworks");
        }
    }
    Ok(())
}

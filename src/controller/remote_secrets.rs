//! The remote-secrets job (`spec.remoteSecrets`): this cluster offers a
//! kubeconfig for Istio's `istio-reader-service-account` (kept in memory,
//! never logged) and holds the offers of the mesh's other MeshClusters as
//! Istio remote secrets in its Istio namespace
//! ([`crate::desired::remote_secret`] plans). An offer that changes (a new
//! token, a new server) wakes the peers, which rewrite theirs at once.

use std::collections::HashMap;
use std::sync::Mutex;

use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use secrecy::{ExposeSecret, SecretString};

use super::cluster::Cluster;
use super::cross_network;
use super::jobs::Job;
use super::mesh_networks::{mesh_of, wake_peers};
use super::meshcluster::owner;
use super::{Context, ssa};
use crate::api::MeshCluster;
use crate::api::conditions as types;
use crate::desired::mesh_networks::same_mesh;
use crate::desired::publish::Write;
use crate::desired::remote_secret::{self as plan, Own, Peer, Token};
use crate::desired::selection::{has_condition, meshcluster_key};
use crate::desired::validate::ValidMeshCluster;

/// Per MeshCluster (`namespace/name`): the kubeconfig its cluster offers.
#[derive(Default)]
pub struct Offers(Mutex<HashMap<String, SecretString>>);

impl Offers {
    /// Records `mc`'s offer; true when it differs from before.
    fn note(&self, key: &str, kubeconfig: SecretString) -> bool {
        let mut map = self.0.lock().expect("offers lock");
        if map
            .get(key)
            .is_some_and(|k| k.expose_secret() == kubeconfig.expose_secret())
        {
            return false;
        }
        map.insert(key.to_string(), kubeconfig);
        true
    }

    fn get(&self, key: &str) -> Option<SecretString> {
        self.0.lock().expect("offers lock").get(key).cloned()
    }

    fn forget(&self, key: &str) -> bool {
        self.0.lock().expect("offers lock").remove(key).is_some()
    }
}

/// This cluster's offer: the reader's kubeconfig, its token Secret
/// created where missing (once Istio's ServiceAccount is there).
async fn offer(
    cluster: &Cluster,
    mc: &MeshCluster,
    namespace: &str,
) -> Result<(Own, Option<SecretString>), kube::Error> {
    let owner = owner(mc);
    let accounts: Api<ServiceAccount> = Api::namespaced(cluster.client.clone(), namespace);
    if accounts
        .get_opt(plan::READER_SERVICE_ACCOUNT)
        .await?
        .is_none()
    {
        return Ok((Own::NoServiceAccount, None));
    }
    let secrets: Api<Secret> = Api::namespaced(cluster.client.clone(), namespace);
    let Some(token_secret) = secrets.get_opt(plan::TOKEN_SECRET).await? else {
        let body = plan::token_secret(&owner, namespace);
        ssa::execute(&secrets, plan::TOKEN_SECRET, &Write::Create(body), None).await?;
        tracing::info!(meshcluster = %owner.key, "created the reader's token Secret {}", plan::TOKEN_SECRET);
        return Ok((Own::TokenPending, None));
    };
    let Token::Ready { ca, token } = plan::token(&token_secret) else {
        return Ok((Own::TokenPending, None));
    };
    let server = mc
        .spec
        .remote_secrets
        .as_ref()
        .and_then(|r| r.api_server_url.clone())
        .or_else(|| cluster.server.clone());
    // CEL makes apiServerURL required for the local cluster.
    Ok(match server {
        Some(s) => (
            Own::Offered,
            Some(plan::kubeconfig(&mc.spec.cluster_name, &s, &ca, &token)),
        ),
        None => (Own::TokenPending, None),
    })
}

/// Deletes `deletes` (name, resourceVersion read), tolerating them gone.
async fn sweep(
    api: &Api<Secret>,
    deletes: &[(String, Option<String>)],
) -> Result<u32, kube::Error> {
    let mut n = 0;
    for (name, rv) in deletes {
        let read = kube::api::ObjectMeta {
            name: Some(name.clone()),
            resource_version: rv.clone(),
            ..Default::default()
        };
        n += u32::from(ssa::delete_read(api, &read).await?);
    }
    Ok(n)
}

fn held_params() -> ListParams {
    ListParams::default().labels(&format!("{}=true", plan::MULTICLUSTER_LABEL))
}

/// The job. None without `spec.remoteSecrets` (what dualmesh held is
/// removed the first time). The part is true while a token or a peer's
/// offer is pending: nothing watches the token Secret, so look again soon.
/// The `cross-network-gateway` Gateway goes with it, for the gateway
/// `valid_mc` names.
pub(super) async fn job(
    ctx: &Context,
    cluster: &Cluster,
    mc: &MeshCluster,
    valid_mc: &ValidMeshCluster<'_>,
) -> Option<Job<bool>> {
    let key = meshcluster_key(mc);
    let namespace = mc.spec.istio.namespace.clone();
    let secrets: Api<Secret> = Api::namespaced(cluster.client.clone(), &namespace);
    let all = mesh_of(ctx, mc);
    let mesh = same_mesh(mc, &all);
    let seen = mc.status.as_ref().and_then(|s| s.observed_generation);
    if mc.spec.remote_secrets.is_none() {
        if has_condition(mc, types::REMOTE_SECRETS_SYNCED) {
            if ctx.remote_offers.forget(&key) || seen != mc.metadata.generation {
                wake_peers(ctx, mc, &mesh);
            }
            if let Err(e) = remove_held(&secrets, mc).await {
                return Some(Job::failed(types::REMOTE_SECRETS_SYNCED, e.into()));
            }
        }
        if has_condition(mc, types::CROSS_NETWORK_GATEWAY_APPLIED)
            && let Err(e) =
                cross_network::remove(&cluster.client, mc, &valid_mc.gateway_namespace).await
        {
            return Some(Job::failed(types::CROSS_NETWORK_GATEWAY_APPLIED, e.into()));
        }
        return None;
    }
    let result = async {
        let (own, offered) = offer(cluster, mc, &namespace).await?;
        let mut wake = seen != mc.metadata.generation;
        if let Some(kubeconfig) = offered {
            wake |= ctx.remote_offers.note(&key, kubeconfig);
        }
        if wake {
            wake_peers(ctx, mc, &mesh);
        }
        let offers: Vec<(String, Option<SecretString>)> = mesh
            .iter()
            .filter(|p| p.spec.remote_secrets.is_some() && p.name_any() != mc.name_any())
            .map(|p| {
                (
                    p.spec.cluster_name.clone(),
                    ctx.remote_offers.get(&meshcluster_key(p)),
                )
            })
            .collect();
        let peers: Vec<Peer<'_>> = offers
            .iter()
            .map(|(c, k)| Peer {
                cluster_name: c,
                kubeconfig: k.as_ref(),
            })
            .collect();
        let read = secrets.list(&held_params()).await?.items;
        let planned = plan::plan(&owner(mc), &namespace, &peers, &read);
        let mut writes = 0;
        for (name, write) in &planned.writes {
            if ssa::execute(&secrets, name, write, None).await? {
                writes += 1;
            }
        }
        let deleted = sweep(&secrets, &planned.deletes).await?;
        if writes + deleted > 0 {
            tracing::info!(meshcluster = %key, writes, deleted, "updated remote secrets");
        }
        let soon = own != Own::Offered || !planned.pending.is_empty();
        Ok::<_, kube::Error>((plan::report(&namespace, &planned, &peers, own), soon))
    };
    let mut job = match result.await {
        Ok((found, soon)) => Job::done(found, soon),
        Err(e) => Job::failed(types::REMOTE_SECRETS_SYNCED, e.into()),
    };
    let gateway = cross_network::apply(
        &cluster.client,
        mc,
        &valid_mc.gateway_namespace,
        &valid_mc.gateway_selector,
    )
    .await;
    match gateway {
        Ok(found) => job.found.push(found),
        Err(e) => {
            let failed = Job::<bool>::failed(types::CROSS_NETWORK_GATEWAY_APPLIED, e);
            job.found.extend(failed.found);
            job.error = job.error.or(failed.error);
        }
    }
    Some(job)
}

/// Removes every remote secret dualmesh holds for `mc` in its cluster.
async fn remove_held(secrets: &Api<Secret>, mc: &MeshCluster) -> Result<u32, kube::Error> {
    let owner = owner(mc);
    let read = secrets.list(&held_params()).await?.items;
    let deletes: Vec<(String, Option<String>)> = read
        .iter()
        .filter(|s| owner.owns(&s.metadata))
        .map(|s| (s.name_any(), s.resource_version()))
        .collect();
    sweep(secrets, &deletes).await
}

/// At deletion, whether its cluster answers or not: forgets `mc`'s offer
/// and wakes its peers (they delete the remote secret of this cluster).
pub(super) fn forget(ctx: &Context, mc: &MeshCluster) {
    ctx.remote_offers.forget(&meshcluster_key(mc));
    let all = mesh_of(ctx, mc);
    wake_peers(ctx, mc, &same_mesh(mc, &all));
}

/// At deletion: removes what `mc` held in its cluster, and its Gateway.
pub(super) async fn cleanup(target: &kube::Client, mc: &MeshCluster) -> Result<(), kube::Error> {
    if has_condition(mc, types::CROSS_NETWORK_GATEWAY_APPLIED) {
        let gw = &mc.spec.ingress_gateway;
        let namespace = gw.namespace.as_ref().unwrap_or(&mc.spec.istio.namespace);
        cross_network::remove(target, mc, namespace).await?;
    }
    if has_condition(mc, types::REMOTE_SECRETS_SYNCED) {
        let secrets: Api<Secret> = Api::namespaced(target.clone(), &mc.spec.istio.namespace);
        let removed = remove_held(&secrets, mc).await?;
        if removed > 0 {
            tracing::info!(meshcluster = %meshcluster_key(mc), removed, "removed remote secrets");
        }
    }
    Ok(())
}

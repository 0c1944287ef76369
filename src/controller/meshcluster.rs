//! The reconcile of one MeshCluster, one pipeline:
//!
//! ```text
//! validate  the MeshCluster (pure); problems -> Valid=False, nothing applied
//! fetch     its DualStackPolicy; validate it (pure); connect the target cluster
//! fetch     what the Istio, gateway and policy-check jobs need, side by side
//! build     the IstioOperator, the publish plan, the gateway plan (pure)
//! apply     the three jobs' writes side by side, each preconditioned on its read
//! status    the new status (pure), written only if changed, Events
//! ```
//!
//! The jobs are in [`super::jobs`]; the secrets job fetches, plans and applies inside
//! [`super::federation::sync_secrets`] (its reads are per member Secret).
//! An invalid MeshCluster or policy never removes or changes what was
//! published before: the last good config stays in the cluster and the
//! conditions of the jobs that did not run keep describing it.

use std::sync::Arc;
use std::time::Duration;

use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};

use super::cache::synced;
use super::cluster::Cluster;
use super::context::requeue_after_error;
use super::metrics::{self, MeshClusterFigures};
use super::publish::{self, Location, Owner};
use super::{
    Context, Error, FINALIZER, RESYNC, federation, jobs, mesh_networks, remote_secrets, status,
};
use crate::api::conditions::{self as types, reason};
use crate::api::{DualStackPolicy, MeshCluster, MeshClusterStatus};
use crate::desired::conditions::Found;
use crate::desired::finalizer::{self, Step};
use crate::desired::keys::istio_operator_config_map;
use crate::desired::selection::meshcluster_key;
use crate::desired::status::Parts;
use crate::desired::validate::{self, summarize};

/// How long the jobs of one reconcile may take together.
const JOBS_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a reconcile waits for the DualStackPolicy cache's first list.
const POLICY_CACHE_WAIT: Duration = Duration::from_secs(30);

/// Where this MeshCluster's config goes under its current spec.
pub fn location(mc: &MeshCluster) -> Location {
    Location {
        namespace: mc.spec.istio.namespace.clone(),
        config_map: istio_operator_config_map(&mc.name_any()),
        operator: mc.spec.istio.operator_name.clone(),
    }
}

pub(super) fn owner(mc: &MeshCluster) -> Owner {
    Owner {
        key: meshcluster_key(mc),
        name: mc.name_any(),
    }
}

/// Entry point for the controller.
pub async fn reconcile(mc: Arc<MeshCluster>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = std::time::Instant::now();
    let result = reconcile_inner(mc, &ctx).await;
    let categories = result
        .as_ref()
        .err()
        .map(Error::categories)
        .unwrap_or_default();
    ctx.metrics
        .reconciled(metrics::MESHCLUSTER, started.elapsed(), &categories);
    result
}

async fn reconcile_inner(mc: Arc<MeshCluster>, ctx: &Context) -> Result<Action, Error> {
    let object = meshcluster_key(&mc);
    let ns = mc.namespace().ok_or_else(|| Error::Unnamespaced {
        kind: "MeshCluster",
        name: mc.name_any(),
    })?;
    let api: Api<MeshCluster> = Api::namespaced(ctx.client.clone(), &ns);
    let finalizer_error = |e: kube::Error, removing: bool| Error::Finalizer {
        object: object.clone(),
        source: Box::new(if removing {
            kube::runtime::finalizer::Error::RemoveFinalizer(e)
        } else {
            kube::runtime::finalizer::Error::AddFinalizer(e)
        }),
    };
    let deleting = mc.metadata.deletion_timestamp.is_some();
    match finalizer::step(mc.finalizers(), deleting, FINALIZER) {
        Step::Apply => apply(&mc, &api, ctx).await,
        // Added, then on with the object the patch returned (its
        // resourceVersion is what the status write is preconditioned on).
        Step::AddThenApply(patch) => {
            let patched = api
                .patch(&mc.name_any(), &PatchParams::default(), &json_patch(patch))
                .await
                .map_err(|e| finalizer_error(e, false))?;
            apply(&patched, &api, ctx).await
        }
        // The finalizer stays until the cleanup succeeded.
        Step::CleanupThenRemove(patch) => {
            let action = cleanup(&mc, ctx).await?;
            api.patch(&mc.name_any(), &PatchParams::default(), &json_patch(patch))
                .await
                .map_err(|e| finalizer_error(e, true))?;
            Ok(action)
        }
        Step::Nothing => Ok(Action::await_change()),
    }
}

/// A JSON patch from the operations [`finalizer::step`] planned.
fn json_patch(ops: serde_json::Value) -> Patch<()> {
    Patch::Json(
        serde_json::from_value(ops).expect("finalizer::step plans valid JSON patch operations"),
    )
}

/// Called by the controller when `reconcile` fails.
pub fn error_policy(mc: Arc<MeshCluster>, error: &Error, ctx: Arc<Context>) -> Action {
    requeue_after_error(&ctx, &meshcluster_key(&mc), error)
}

/// What the steps found: conditions, the status parts they produced, and
/// the failures to retry.
#[derive(Default)]
struct Findings {
    found: Vec<Found>,
    parts: Parts,
    errors: Vec<Error>,
}

async fn apply(mc: &MeshCluster, api: &Api<MeshCluster>, ctx: &Context) -> Result<Action, Error> {
    let old = mc.status.clone().unwrap_or_default();
    let mut findings = Findings::default();
    let action = steps(mc, ctx, &mut findings).await;

    // Status: conditions the steps did not reach keep describing what is
    // still in the cluster; Ready summarizes the lot.
    let Findings {
        found,
        parts,
        mut errors,
    } = findings;
    let now = status::now();
    let new =
        crate::desired::status::meshcluster(&old, mc.metadata.generation, &found, parts, &now);
    ctx.metrics.meshcluster(
        &mc.namespace().unwrap_or_default(),
        &mc.name_any(),
        &figures(&new, &found),
    );
    if let Err(e) = status::write(
        ctx,
        api,
        mc,
        mc.status.as_ref(),
        &new,
        &old.conditions,
        &new.conditions,
    )
    .await
    {
        errors.push(e.into());
    }
    match Error::from_jobs(errors) {
        Some(e) => Err(e),
        None => {
            ctx.succeeded(&meshcluster_key(mc));
            Ok(action)
        }
    }
}

/// The per-MeshCluster metric values of this pass.
fn figures(status: &MeshClusterStatus, found: &[Found]) -> MeshClusterFigures {
    let addresses = status.gateway_addresses.as_ref();
    MeshClusterFigures {
        ipv4_addresses: addresses.map_or(0, |a| a.ipv4.len()),
        ipv6_addresses: addresses.map_or(0, |a| a.ipv6.len()),
        secrets_synced: status.synced_secrets.len(),
        trust_expiry: status
            .trust
            .as_ref()
            .map(|t| t.intermediate_not_after.0.as_second()),
        remote_secrets_synced: status
            .conditions
            .iter()
            .find(|c| c.type_ == types::REMOTE_SECRETS_SYNCED)
            .map(|c| c.status == "True"),
        reachable: found
            .iter()
            .rev()
            .find(|f| f.type_ == types::CLUSTER_REACHABLE)
            .map(|f| f.status),
        ready: status
            .conditions
            .iter()
            .any(|c| c.type_ == types::READY && c.status == "True"),
    }
}

/// How soon to look at Sail's status again while it has still to act
/// (Sail's objects are not watched).
const SAIL_POLL: Duration = Duration::from_secs(5);
/// How soon to look again during a root rotation: the next step waits for
/// the peers' status and a grace period, neither of which wakes this one.
const ROTATION_POLL: Duration = Duration::from_secs(5);
/// How often a reconcile looks again while Istio's ConfigMap is missing
/// (`MeshNetworksPublished=False IstioConfigMapMissing`) or a reader token
/// or a peer's offer is pending (`RemoteSecretsSynced=False`).
const LOOK_AGAIN_SOON: Duration = Duration::from_secs(10);

/// Validate, fetch, build, apply; what happened goes into `out`. Returns
/// when to look again.
async fn steps(mc: &MeshCluster, ctx: &Context, out: &mut Findings) -> Action {
    // Validate the MeshCluster (pure).
    let valid_mc = match validate::validate_mesh_cluster(&mc.spec) {
        Ok(v) => v,
        Err(problems) => {
            out.found.push(Found::fail(
                types::VALID,
                reason::INVALID_SPEC,
                summarize(&problems),
            ));
            return Action::await_change();
        }
    };

    // Fetch its policy; validate it (pure).
    let policy_name = &mc.spec.dual_stack_policy_ref.name;
    let policy = match cached_policy(ctx, policy_name).await {
        Ok(Some(p)) => p,
        Ok(None) => {
            out.found.push(Found::fail(
                types::VALID,
                reason::POLICY_NOT_FOUND,
                format!("spec.dualStackPolicyRef.name: DualStackPolicy {policy_name:?} not found; create it or name an existing one"),
            ));
            return Action::await_change();
        }
        Err(e) => {
            out.errors.push(e);
            return Action::await_change();
        }
    };
    let valid_policy = match validate::validate_policy(&policy.spec) {
        Ok(v) => v,
        Err(problems) => {
            out.found.push(Found::fail(
                types::VALID,
                reason::POLICY_INVALID,
                format!("DualStackPolicy {policy_name}: {}", summarize(&problems)),
            ));
            return Action::await_change();
        }
    };
    out.found.push(Found::ok(
        types::VALID,
        reason::VALID,
        format!("spec and DualStackPolicy {policy_name} are valid"),
    ));
    out.parts.ip_families = Some(valid_policy.families_label());

    // Connect the target cluster: this one, or a member by its kubeconfig.
    let member = mc.spec.kubeconfig_secret_ref.is_some();
    let (cluster, requeue) = if member {
        match connect_member(mc, ctx, out).await {
            Some(cluster) => (cluster, federation::MEMBER_RESYNC),
            None => return Action::requeue(federation::MEMBER_RESYNC),
        }
    } else {
        out.found.push(Found::ok(
            types::CLUSTER_REACHABLE,
            reason::REACHABLE,
            "the cluster dualmesh runs in",
        ));
        (ctx.local.clone(), RESYNC)
    };

    let claimed = same_target_networks(ctx, mc);
    // The jobs, side by side: one failing does not stop the others, a change
    // waits for one job's round trips rather than all three's, and a member
    // that stops answering mid-way cannot hold this worker long.
    let jobs = async {
        tokio::join!(
            jobs::istio(mc, &cluster, &valid_mc, &valid_policy, &claimed),
            async {
                let (gateway, own) = jobs::gateway(mc, &cluster, &valid_mc, &valid_policy).await;
                let networks = mesh_networks::job(ctx, &cluster, mc, own).await;
                (gateway, networks)
            },
            jobs::secrets(ctx, &cluster.client, mc),
            jobs::trust(ctx, &cluster.client, mc),
            jobs::cluster_check(mc, &cluster, policy_name, &valid_policy),
            jobs::sail(mc, &cluster, &valid_mc, &valid_policy),
            remote_secrets::job(ctx, &cluster, mc, &valid_mc),
        )
    };
    let mut requeue = requeue;
    match tokio::time::timeout(JOBS_TIMEOUT, jobs).await {
        Ok((istio, (gateway, networks), secrets, trust, check, sail, remote)) => {
            // What each job found, in a fixed order.
            for job in [istio.found, gateway.found, secrets.found, trust.found] {
                out.found.extend(job);
            }
            // Informs only: never an error, never a reason to retry.
            out.found.extend(check);
            out.errors.extend(
                [istio.error, gateway.error, secrets.error, trust.error]
                    .into_iter()
                    .flatten(),
            );
            out.parts.istio = istio.part;
            out.parts.gateway = gateway.part;
            out.parts.secrets = secrets.part;
            if matches!(&trust.part, Some(Some(t)) if t.rotation.is_some()) {
                requeue = requeue.min(ROTATION_POLL);
            }
            out.parts.trust = trust.part;
            match sail {
                Some(sail) => {
                    out.found.extend(sail.found);
                    out.errors.extend(sail.error);
                    if sail.part == Some(true) {
                        requeue = requeue.min(SAIL_POLL);
                    }
                }
                None => out.parts.dropped.push(types::SAIL_READY),
            }
            match networks {
                Some(networks) => {
                    out.found.extend(networks.found);
                    out.errors.extend(networks.error);
                    if networks.part == Some(true) {
                        requeue = requeue.min(LOOK_AGAIN_SOON);
                    }
                }
                None => out.parts.dropped.push(types::MESH_NETWORKS_PUBLISHED),
            }
            match remote {
                Some(remote) => {
                    out.found.extend(remote.found);
                    out.errors.extend(remote.error);
                    if remote.part == Some(true) {
                        requeue = requeue.min(LOOK_AGAIN_SOON);
                    }
                }
                None => out.parts.dropped.extend([
                    types::REMOTE_SECRETS_SYNCED,
                    types::CROSS_NETWORK_GATEWAY_APPLIED,
                ]),
            }
        }
        Err(_) => {
            out.found.retain(|f| f.type_ != types::CLUSTER_REACHABLE);
            out.found.push(Found::fail(
                types::CLUSTER_REACHABLE,
                reason::UNREACHABLE,
                "the target cluster did not finish answering within 30 s",
            ));
        }
    }
    Action::requeue(requeue)
}

/// DualStackPolicy `name`, from the cache. Not found only once the cache
/// has listed the policies: a policy created later wakes the MeshClusters
/// naming it after the cache holds it. A cache still empty after 30 s (the
/// list keeps failing) is an error, retried, not "not found".
async fn cached_policy(ctx: &Context, name: &str) -> Result<Option<DualStackPolicy>, Error> {
    synced(&ctx.policies, "DualStackPolicy", POLICY_CACHE_WAIT).await?;
    Ok(ctx
        .policies
        .get(&ObjectRef::new(name))
        .map(|policy| policy.as_ref().clone()))
}

/// The networks of the other MeshClusters (not being deleted) that target
/// the same cluster (the same kubeconfig Secret, or both the local one) and
/// Istio namespace as `mc`.
fn same_target_networks(ctx: &Context, mc: &MeshCluster) -> Vec<String> {
    let target = |m: &MeshCluster| {
        (
            m.namespace(),
            m.spec
                .kubeconfig_secret_ref
                .as_ref()
                .map(|r| r.name.clone()),
            m.spec.istio.namespace.clone(),
        )
    };
    let own = target(mc);
    ctx.meshclusters
        .get()
        .map(|store| store.state())
        .unwrap_or_default()
        .iter()
        .filter(|m| m.name_any() != mc.name_any() && m.metadata.deletion_timestamp.is_none())
        .filter(|m| target(m) == own)
        .map(|m| m.spec.network.clone())
        .collect()
}

/// The member's connection, once its API server answered.
async fn connect_member(
    mc: &MeshCluster,
    ctx: &Context,
    out: &mut Findings,
) -> Option<Arc<Cluster>> {
    ctx.watch_secrets(&mc.namespace().unwrap_or_default());
    let cluster = match ctx.members.connect(&ctx.client, &ctx.trigger, mc).await {
        Ok(c) => c,
        Err(federation::Unusable(found)) => {
            out.found.push(found);
            return None;
        }
    };
    match federation::probe(&cluster.client).await {
        Ok(version) => {
            out.found.push(Found::ok(
                types::CLUSTER_REACHABLE,
                reason::REACHABLE,
                format!("the member's API server answers ({version})"),
            ));
            Some(cluster)
        }
        Err(e) => {
            out.found.push(Found::fail(
                types::CLUSTER_REACHABLE,
                reason::UNREACHABLE,
                format!("the member's API server does not answer: {e}"),
            ));
            None
        }
    }
}

async fn cleanup(mc: &MeshCluster, ctx: &Context) -> Result<Action, Error> {
    let mc_ref = ObjectRef::from_obj(mc);
    let key = meshcluster_key(mc);
    ctx.local.forget_all(&mc_ref);
    ctx.forget(&key, &status::written_key(mc));
    mesh_networks::forget(ctx, mc);
    remote_secrets::forget(ctx, mc);
    ctx.metrics
        .forget_meshcluster(&mc.namespace().unwrap_or_default(), &mc.name_any());
    let target = if mc.spec.kubeconfig_secret_ref.is_some() {
        let reachable = match ctx.members.connect(&ctx.client, &ctx.trigger, mc).await {
            Ok(c) => federation::probe(&c.client).await.map(|_| c).ok(),
            Err(_) => None,
        };
        ctx.members.drop_member(&mc_ref);
        match reachable {
            Some(c) => c.client.clone(),
            None => {
                // Never block a deletion on a member that is gone for good.
                tracing::warn!(meshcluster = %key, "member unreachable at deletion: what was published there stays");
                return Ok(Action::await_change());
            }
        }
    } else {
        ctx.client.clone()
    };
    let owner = owner(mc);
    let mut places = vec![location(mc)];
    if let Some(prev) = jobs::previous_location(mc)
        && !places.contains(&prev)
    {
        places.push(prev);
    }
    for place in places {
        let mut deleted = publish::unpublish(&target, &owner, &place).await?;
        let helm = crate::desired::keys::helm_values_config_map(&mc.name_any());
        deleted += u32::from(
            super::publish_helm::unpublish(&target, &owner, &place.namespace, &helm).await?,
        );
        tracing::info!(meshcluster = %key, deleted, "removed published IstioOperator config");
    }
    // Sail's objects, whatever installWith says now (an earlier choice's
    // stay until here): Sail then uninstalls that control plane.
    let sail = super::publish_sail::remove(&target, &owner, &[]).await?;
    if sail > 0 {
        tracing::info!(meshcluster = %key, deleted = sail, "removed Sail objects");
    }
    mesh_networks::cleanup(&target, mc).await?;
    remote_secrets::cleanup(&target, mc).await?;
    let removed = federation::remove_copies(&target, mc).await?;
    if removed > 0 {
        tracing::info!(meshcluster = %key, removed, "removed synced Secrets (deleteOnRemoval)");
    }
    Ok(Action::await_change())
}

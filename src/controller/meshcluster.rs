//! The reconcile of one MeshCluster, one pipeline:
//!
//! ```text
//! validate  the MeshCluster (pure); problems -> Valid=False, nothing applied
//! fetch     its DualStackPolicy; validate it (pure); connect the target cluster
//! fetch     what the Istio and gateway jobs need, side by side
//! build     the IstioOperator, the publish plan, the gateway plan (pure)
//! apply     the three jobs' writes side by side, each preconditioned on its read
//! status    the new status (pure), written only if changed, Events
//! ```
//!
//! The secrets job fetches, plans and applies inside
//! [`super::federation::sync_secrets`] (its reads are per member Secret).
//! An invalid MeshCluster or policy never removes or changes what was
//! published before: the last good config stays in the cluster and the
//! conditions of the jobs that did not run keep describing it.

use std::sync::Arc;
use std::time::Duration;

use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};

use super::cluster::Cluster;
use super::context::requeue_after_error;
use super::gateway::{self, Applied};
use super::metrics::{self, MeshClusterFigures};
use super::publish::{self, Location, Owner};
use super::{Context, Error, FINALIZER, RESYNC, federation, status};
use crate::api::conditions::{self as types, reason};
use crate::api::{DualStackPolicy, MeshCluster, MeshClusterStatus, PublishedConfig};
use crate::desired::conditions::Found;
use crate::desired::keys::{istio_operator_config_map, object_key, parse_key};
use crate::desired::selection::meshcluster_key;
use crate::desired::status::Parts;
use crate::desired::validate::{self, ValidMeshCluster, ValidPolicy, summarize};
use crate::desired::{gateway_service, istio_operator, publish as publish_plan};

/// How long the jobs of one reconcile may take together.
const JOBS_TIMEOUT: Duration = Duration::from_secs(30);

/// Where this MeshCluster's config goes under its current spec.
pub fn location(mc: &MeshCluster) -> Location {
    Location {
        namespace: mc.spec.istio.namespace.clone(),
        config_map: istio_operator_config_map(&mc.name_any()),
        operator: mc.spec.istio.operator_name.clone(),
    }
}

fn owner(mc: &MeshCluster) -> Owner {
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
    finalizer(&api, FINALIZER, mc, |event| async {
        match event {
            Finalizer::Apply(mc) => apply(&mc, &api, ctx).await,
            Finalizer::Cleanup(mc) => cleanup(&mc, ctx).await,
        }
    })
    .await
    .map_err(|e| match e {
        kube::runtime::finalizer::Error::ApplyFailed(e)
        | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
        e => Error::Finalizer {
            object,
            source: Box::new(e),
        },
    })
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
    let policies: Api<DualStackPolicy> = Api::all(ctx.client.clone());
    let policy = match policies.get_opt(policy_name).await {
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
            out.errors.push(e.into());
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

    // The jobs, side by side: one failing does not stop the others, a change
    // waits for one job's round trips rather than all three's, and a member
    // that stops answering mid-way cannot hold this worker long.
    let jobs = async {
        tokio::join!(
            istio_job(mc, &cluster, &valid_mc, &valid_policy),
            gateway_job(mc, &cluster, &valid_mc, &valid_policy),
            secrets_job(ctx, &cluster.client, mc),
        )
    };
    match tokio::time::timeout(JOBS_TIMEOUT, jobs).await {
        Ok((istio, gateway, secrets)) => {
            // What each job found, in a fixed order.
            for job in [istio.found, gateway.found, secrets.found] {
                out.found.extend(job);
            }
            out.errors.extend(
                [istio.error, gateway.error, secrets.error]
                    .into_iter()
                    .flatten(),
            );
            out.parts.istio = istio.part;
            out.parts.gateway = gateway.part;
            out.parts.secrets = secrets.part;
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

/// What one job produced.
struct Job<P> {
    found: Vec<Found>,
    /// Its status part; None: not reached (the old one stays).
    part: Option<P>,
    error: Option<Error>,
}

impl<P> Job<P> {
    fn done(found: Found, part: P) -> Self {
        Job {
            found: vec![found],
            part: Some(part),
            error: None,
        }
    }

    fn failed(condition: &'static str, e: Error) -> Self {
        Job {
            found: vec![Found::fail(condition, reason::APPLY_FAILED, e.to_string())],
            part: None,
            error: Some(e),
        }
    }
}

/// Builds the IstioOperator, fetches what the target holds, plans and
/// applies the ConfigMap (+ IstioOperator).
async fn istio_job(
    mc: &MeshCluster,
    cluster: &Cluster,
    valid_mc: &ValidMeshCluster<'_>,
    valid_policy: &ValidPolicy,
) -> Job<(String, PublishedConfig)> {
    let rendered = istio_operator::build(valid_mc, valid_policy);
    let owner = owner(mc);
    let here = location(mc);
    let client = &cluster.client;
    let result = async {
        let observed = publish::fetch(client, &here).await?;
        let plan = publish_plan::plan(&owner, &here, &rendered, &observed)?;
        let outcome = publish::apply(client, &here, &plan, &observed).await?;
        // A moved location: remove what the old one holds.
        if let Some(prev) = previous_location(mc)
            && prev != here
        {
            publish::unpublish(client, &owner, &prev).await?;
        }
        Ok::<_, Error>(outcome)
    }
    .await;
    let outcome = match result {
        Ok(o) => o,
        Err(e) => return Job::failed(types::ISTIO_CONFIG_APPLIED, e),
    };
    let (why, mut message) = if outcome.operator_published {
        (
            reason::CONFIG_MAP_AND_ISTIO_OPERATOR,
            format!(
                "ConfigMap {} and IstioOperator {} are up to date",
                here.config_map_ref(),
                here.operator_ref()
            ),
        )
    } else {
        (
            reason::CONFIG_MAP_ONLY,
            format!(
                "ConfigMap {} is up to date; IstioOperator not written: CRD {} is not installed",
                here.config_map_ref(),
                publish::ISTIO_OPERATOR_CRD
            ),
        )
    };
    if !rendered.overridden_keys.is_empty() {
        message.push_str(&format!(
            "; dualmesh's values replaced spec.istio entries {}",
            rendered.overridden_keys.join(", ")
        ));
    }
    if outcome.writes > 0 {
        tracing::info!(meshcluster = %owner.key, hash = %rendered.hash, writes = outcome.writes, "published IstioOperator");
    }
    let published = PublishedConfig {
        config_map: here.config_map_ref(),
        istio_operator: outcome.operator_published.then(|| here.operator_ref()),
    };
    Job::done(
        Found::ok(types::ISTIO_CONFIG_APPLIED, why, message),
        (rendered.hash.clone(), published),
    )
}

/// Fetches the gateway from the caches, plans and applies its Service.
async fn gateway_job(
    mc: &MeshCluster,
    cluster: &Cluster,
    valid_mc: &ValidMeshCluster<'_>,
    valid_policy: &ValidPolicy,
) -> Job<Option<crate::api::GatewayAddressesStatus>> {
    let mc_ref = ObjectRef::from_obj(mc);
    let observed = match gateway::fetch(cluster, &mc_ref, valid_mc).await {
        Ok(Some(o)) => o,
        Ok(None) => return Job::done(gateway_service::not_managed(), None),
        Err(e) => return Job::failed(types::GATEWAY_ADDRESSES_READY, e),
    };
    let key = gateway::key(valid_mc);
    let plan = gateway_service::plan(&observed, valid_policy);
    let service_ref = object_key(&key.namespace, &key.service);
    match gateway::apply(cluster, &key.namespace, &plan).await {
        Ok(Applied::Sent(writes)) => {
            let (found, addresses) = gateway_service::report(&plan, &service_ref, None);
            if writes > 0 {
                tracing::info!(meshcluster = %meshcluster_key(mc), addresses = %addresses.all, "updated gateway externalIPs");
            }
            Job::done(found, Some(addresses))
        }
        Ok(Applied::Refused { code, reason }) => {
            let (found, addresses) =
                gateway_service::report(&plan, &service_ref, Some((code, &reason)));
            Job {
                found: vec![found],
                part: Some(Some(addresses)),
                error: Some(Error::ExternalIpsRefused { code }),
            }
        }
        Err(e) => Job::failed(types::GATEWAY_ADDRESSES_READY, e),
    }
}

/// Copies the trust Secrets into the target.
async fn secrets_job(
    ctx: &Context,
    target: &kube::Client,
    mc: &MeshCluster,
) -> Job<Vec<crate::api::SyncedSecret>> {
    for s in crate::desired::secret_sync::effective_syncs(&mc.spec) {
        ctx.watch_secrets(&s.source.namespace);
    }
    let previous = mc
        .status
        .as_ref()
        .map(|s| s.synced_secrets.clone())
        .unwrap_or_default();
    match federation::sync_secrets(&ctx.client, target, mc, &previous).await {
        Ok(outcome) => Job::done(outcome.condition, outcome.synced),
        Err(e) => Job {
            found: vec![Found::fail(
                types::SECRETS_SYNCED,
                reason::SYNC_FAILED,
                e.to_string(),
            )],
            part: None,
            error: Some(e.into()),
        },
    }
}

/// Where the status says the config was published last.
fn previous_location(mc: &MeshCluster) -> Option<Location> {
    let published = mc.status.as_ref()?.published.as_ref()?;
    let (namespace, config_map) = parse_key(&published.config_map)?;
    let operator = match &published.istio_operator {
        Some(o) => parse_key(o)?.1.to_string(),
        None => mc.spec.istio.operator_name.clone(),
    };
    Some(Location {
        namespace: namespace.to_string(),
        config_map: config_map.to_string(),
        operator,
    })
}

async fn cleanup(mc: &MeshCluster, ctx: &Context) -> Result<Action, Error> {
    let mc_ref = ObjectRef::from_obj(mc);
    let key = meshcluster_key(mc);
    ctx.local.forget(&mc_ref);
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
    if let Some(prev) = previous_location(mc)
        && !places.contains(&prev)
    {
        places.push(prev);
    }
    for place in places {
        let deleted = publish::unpublish(&target, &owner, &place).await?;
        tracing::info!(meshcluster = %key, deleted, "removed published IstioOperator config");
    }
    let removed = federation::remove_copies(&target, mc).await?;
    if removed > 0 {
        tracing::info!(meshcluster = %key, removed, "removed synced Secrets (deleteOnRemoval)");
    }
    Ok(Action::await_change())
}

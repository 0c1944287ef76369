//! The reconcile of one MeshCluster:
//!
//! ```text
//! fetch     the MeshCluster (from the watch), its DualStackPolicy
//! validate  both (pure); problems -> Valid=False, nothing applied
//! build     the IstioOperator (pure)
//! apply     ConfigMap (+ IstioOperator) in the target cluster, only if changed
//! status    conditions (pure merge), written only if changed, Events
//! ```
//!
//! An invalid MeshCluster or policy never removes or changes what was
//! published before: the last good config stays in the cluster and the
//! `IstioConfigApplied` condition keeps describing it.

use std::sync::Arc;
use std::time::Duration;

use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};

use super::cluster::Cluster;
use super::metrics::{self, MeshClusterFigures};
use super::publish::{self, Location, Owner};
use super::{Context, Error, FINALIZER, RESYNC, federation, gateway, status};
use crate::api::conditions::{self as types, reason};
use crate::api::{DualStackPolicy, MeshCluster, MeshClusterStatus, PublishedConfig};
use crate::desired::conditions::{self, Found};
use crate::desired::istio_operator;
use crate::desired::validate::{self, ValidMeshCluster, ValidPolicy, summarize};

fn key(mc: &MeshCluster) -> String {
    format!("{}/{}", mc.namespace().unwrap_or_default(), mc.name_any())
}

/// Where this MeshCluster's config goes under its current spec.
pub fn location(mc: &MeshCluster) -> Location {
    Location {
        namespace: mc.spec.istio.namespace.clone(),
        config_map: format!("{}-istiooperator", mc.name_any()),
        operator: mc.spec.istio.operator_name.clone(),
    }
}

fn owner(mc: &MeshCluster) -> Owner {
    Owner {
        key: key(mc),
        name: mc.name_any(),
    }
}

/// Entry point for the controller.
pub async fn reconcile(mc: Arc<MeshCluster>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = std::time::Instant::now();
    let result = reconcile_inner(mc, &ctx).await;
    ctx.metrics.reconciled(
        metrics::MESHCLUSTER,
        started.elapsed(),
        result.as_ref().err().map(Error::category),
    );
    result
}

async fn reconcile_inner(mc: Arc<MeshCluster>, ctx: &Context) -> Result<Action, Error> {
    let ns = mc
        .namespace()
        .ok_or_else(|| Error::Message("a MeshCluster is namespaced".into()))?;
    let api: Api<MeshCluster> = Api::namespaced(ctx.client.clone(), &ns);
    let object = key(&mc);
    let result = finalizer(&api, FINALIZER, mc, |event| async {
        match event {
            Finalizer::Apply(mc) => apply(&mc, &api, ctx).await,
            Finalizer::Cleanup(mc) => cleanup(&mc, ctx).await,
        }
    })
    .await;
    match result {
        Ok(action) => Ok(action),
        Err(kube::runtime::finalizer::Error::ApplyFailed(e))
        | Err(kube::runtime::finalizer::Error::CleanupFailed(e)) => Err(e),
        Err(e) => Err(Error::Finalizer(format!("{object}: {e}"))),
    }
}

/// Called by the controller when `reconcile` fails.
pub fn error_policy(mc: Arc<MeshCluster>, error: &Error, ctx: Arc<Context>) -> Action {
    super::requeue_after_error(&ctx, &key(&mc), error)
}

/// What the steps found: conditions plus the status fields they fill.
struct Findings {
    found: Vec<Found>,
    status: MeshClusterStatus,
}

impl Findings {
    /// Empty findings for one job, starting from the status so far (a job
    /// that does not reach a field leaves it as it was).
    fn part(&self) -> Findings {
        Findings {
            found: Vec::new(),
            status: self.status.clone(),
        }
    }
}

async fn apply(mc: &MeshCluster, api: &Api<MeshCluster>, ctx: &Context) -> Result<Action, Error> {
    let old = mc.status.clone().unwrap_or_default();
    let mut findings = Findings {
        found: Vec::new(),
        status: MeshClusterStatus {
            observed_generation: mc.metadata.generation,
            ..old.clone()
        },
    };
    let result = steps(mc, ctx, &mut findings).await;

    // Conditions this pass did not reach keep describing what is still in the
    // cluster; Ready summarizes the lot.
    let now = status::now();
    let generation = mc.metadata.generation;
    findings.status.conditions =
        conditions::merge_with_ready(&old.conditions, &findings.found, generation, &now);
    ctx.metrics.meshcluster(
        &mc.namespace().unwrap_or_default(),
        &mc.name_any(),
        &figures(&findings),
    );
    status::write(
        ctx,
        api,
        mc,
        mc.status.as_ref(),
        &findings.status,
        &old.conditions,
        &findings.status.conditions,
    )
    .await?;
    if result.is_ok() {
        ctx.succeeded(&key(mc));
    }
    result
}

/// The per-MeshCluster metric values of this pass.
fn figures(findings: &Findings) -> MeshClusterFigures {
    let addresses = findings.status.gateway_addresses.as_ref();
    MeshClusterFigures {
        ipv4_addresses: addresses.map_or(0, |a| a.ipv4.len()),
        ipv6_addresses: addresses.map_or(0, |a| a.ipv6.len()),
        secrets_synced: findings.status.synced_secrets.len(),
        reachable: findings
            .found
            .iter()
            .rev()
            .find(|f| f.type_ == types::CLUSTER_REACHABLE)
            .map(|f| f.status),
        ready: findings
            .status
            .conditions
            .iter()
            .any(|c| c.type_ == types::READY && c.status == "True"),
    }
}

async fn steps(mc: &MeshCluster, ctx: &Context, out: &mut Findings) -> Result<Action, Error> {
    // Validate the MeshCluster.
    let valid_mc = match validate::validate_mesh_cluster(&mc.spec) {
        Ok(v) => v,
        Err(problems) => {
            out.found.push(Found::fail(
                types::VALID,
                reason::INVALID_SPEC,
                summarize(&problems),
            ));
            return Ok(Action::await_change());
        }
    };

    // Fetch and validate its policy.
    let policy_name = &mc.spec.dual_stack_policy_ref.name;
    let policies: Api<DualStackPolicy> = Api::all(ctx.client.clone());
    let Some(policy) = policies.get_opt(policy_name).await? else {
        out.found.push(Found::fail(
            types::VALID,
            reason::POLICY_NOT_FOUND,
            format!("spec.dualStackPolicyRef.name: DualStackPolicy {policy_name:?} not found; create it or name an existing one"),
        ));
        return Ok(Action::await_change());
    };
    let valid_policy = match validate::validate_policy(&policy.spec) {
        Ok(v) => v,
        Err(problems) => {
            out.found.push(Found::fail(
                types::VALID,
                reason::POLICY_INVALID,
                format!("DualStackPolicy {policy_name}: {}", summarize(&problems)),
            ));
            return Ok(Action::await_change());
        }
    };
    out.found.push(Found::ok(
        types::VALID,
        reason::VALID,
        format!("spec and DualStackPolicy {policy_name} are valid"),
    ));
    out.status.ip_families = Some(valid_policy.families_label());

    // The target cluster: this one, or a member through its kubeconfig.
    let member = mc.spec.kubeconfig_secret_ref.is_some();
    let cluster = if member {
        ctx.watch_secrets(&mc.namespace().unwrap_or_default());
        let cluster = match ctx.members.connect(&ctx.client, &ctx.trigger, mc).await {
            Ok(c) => c,
            Err(federation::Unusable(found)) => {
                out.found.push(found);
                return Ok(Action::requeue(federation::MEMBER_RESYNC));
            }
        };
        match federation::probe(&cluster.client).await {
            Ok(version) => out.found.push(Found::ok(
                types::CLUSTER_REACHABLE,
                reason::REACHABLE,
                format!("the member's API server answers ({version})"),
            )),
            Err(e) => {
                out.found.push(Found::fail(
                    types::CLUSTER_REACHABLE,
                    reason::UNREACHABLE,
                    format!("the member's API server does not answer: {e}"),
                ));
                return Ok(Action::requeue(federation::MEMBER_RESYNC));
            }
        }
        cluster
    } else {
        out.found.push(Found::ok(
            types::CLUSTER_REACHABLE,
            reason::REACHABLE,
            "the cluster dualmesh runs in",
        ));
        ctx.local.clone()
    };
    let requeue = if member {
        federation::MEMBER_RESYNC
    } else {
        RESYNC
    };

    // The jobs run side by side, each filling its own findings: one failing
    // does not stop the others, a change waits for one job's round trips
    // rather than all three's, and a member that stops answering mid-way
    // cannot hold this worker long.
    let mut istio_out = out.part();
    let mut gateway_out = out.part();
    let mut secrets_out = out.part();
    let jobs = async {
        let (istio, addresses, secrets) = tokio::join!(
            publish_istio(
                mc,
                &cluster.client,
                &valid_mc,
                &valid_policy,
                &mut istio_out
            ),
            gateway_job(&cluster, mc, &valid_mc, &valid_policy, &mut gateway_out),
            secrets_job(ctx, &cluster.client, mc, &mut secrets_out),
        );
        istio.and(addresses).and(secrets)
    };
    let finished = tokio::time::timeout(Duration::from_secs(30), jobs).await;
    // What each job found, in a fixed order, also from jobs that finished
    // before a timeout.
    out.status.istio_config_hash = istio_out.status.istio_config_hash;
    out.status.published = istio_out.status.published;
    out.status.gateway_addresses = gateway_out.status.gateway_addresses;
    out.status.synced_secrets = secrets_out.status.synced_secrets;
    for part in [istio_out.found, gateway_out.found, secrets_out.found] {
        out.found.extend(part);
    }
    match finished {
        Ok(result) => result?,
        Err(_) => {
            out.found.retain(|f| f.type_ != types::CLUSTER_REACHABLE);
            out.found.push(Found::fail(
                types::CLUSTER_REACHABLE,
                reason::UNREACHABLE,
                "the target cluster did not finish answering within 30 s",
            ));
            return Ok(Action::requeue(requeue));
        }
    }
    Ok(Action::requeue(requeue))
}

async fn gateway_job(
    cluster: &Cluster,
    mc: &MeshCluster,
    valid_mc: &ValidMeshCluster<'_>,
    valid_policy: &ValidPolicy,
    out: &mut Findings,
) -> Result<(), Error> {
    let mc_ref = ObjectRef::from_obj(mc);
    match gateway::reconcile(cluster, &mc_ref, valid_mc, valid_policy).await {
        Ok(outcome) => {
            if outcome.writes > 0 {
                tracing::info!(meshcluster = %key(mc), addresses = ?outcome.status.as_ref().map(|s| &s.all), "updated gateway externalIPs");
            }
            out.status.gateway_addresses = outcome.status;
            let denied = outcome.denied;
            let message = outcome.condition.message.clone();
            out.found.push(outcome.condition);
            if denied {
                Err(Error::Message(format!(
                    "gateway externalIPs refused: {message}"
                )))
            } else {
                Ok(())
            }
        }
        Err(e) => {
            out.found.push(Found::fail(
                types::GATEWAY_ADDRESSES_READY,
                reason::APPLY_FAILED,
                super::ssa::describe(&e),
            ));
            Err(Error::Kube(e))
        }
    }
}

async fn secrets_job(
    ctx: &Context,
    target: &kube::Client,
    mc: &MeshCluster,
    out: &mut Findings,
) -> Result<(), Error> {
    for s in crate::desired::secret_sync::effective_syncs(&mc.spec) {
        ctx.watch_secrets(&s.source.namespace);
    }
    let previous = mc
        .status
        .as_ref()
        .map(|s| s.synced_secrets.clone())
        .unwrap_or_default();
    match federation::sync_secrets(&ctx.client, target, mc, &previous).await {
        Ok(outcome) => {
            out.status.synced_secrets = outcome.synced;
            out.found.push(outcome.condition);
            Ok(())
        }
        Err(e) => {
            out.found.push(Found::fail(
                types::SECRETS_SYNCED,
                reason::SYNC_FAILED,
                super::ssa::describe(&e),
            ));
            Err(Error::Kube(e))
        }
    }
}

/// Builds the IstioOperator and publishes it; the condition and status
/// fields go into `out`.
async fn publish_istio(
    mc: &MeshCluster,
    client: &kube::Client,
    valid_mc: &ValidMeshCluster<'_>,
    valid_policy: &ValidPolicy,
    out: &mut Findings,
) -> Result<(), Error> {
    let rendered = istio_operator::build(valid_mc, valid_policy);
    let owner = owner(mc);
    let here = location(mc);
    match publish::publish(client, &owner, &here, &rendered).await {
        Ok(outcome) => {
            // A moved location: remove what the old one holds.
            if let Some(prev) = previous_location(mc)
                && prev != here
            {
                publish::unpublish(client, &owner, &prev).await?;
            }
            let (why, what) = if outcome.operator_published {
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
            let mut message = what;
            if !rendered.overridden_keys.is_empty() {
                message.push_str(&format!(
                    "; dualmesh's values replaced spec.istio entries {}",
                    rendered.overridden_keys.join(", ")
                ));
            }
            out.found
                .push(Found::ok(types::ISTIO_CONFIG_APPLIED, why, message));
            out.status.istio_config_hash = Some(rendered.hash.clone());
            out.status.published = Some(PublishedConfig {
                config_map: here.config_map_ref(),
                istio_operator: outcome.operator_published.then(|| here.operator_ref()),
            });
            if outcome.writes > 0 {
                tracing::info!(meshcluster = %key(mc), hash = %rendered.hash, writes = outcome.writes, "published IstioOperator");
            }
            Ok(())
        }
        Err(e) => {
            out.found.push(Found::fail(
                types::ISTIO_CONFIG_APPLIED,
                reason::APPLY_FAILED,
                e.describe(),
            ));
            Err(Error::Message(format!("publishing the IstioOperator: {e}")))
        }
    }
}

/// Where the status says the config was published last.
fn previous_location(mc: &MeshCluster) -> Option<Location> {
    let published = mc.status.as_ref()?.published.as_ref()?;
    let (namespace, config_map) = published.config_map.split_once('/')?;
    let operator = match &published.istio_operator {
        Some(o) => o.split_once('/')?.1.to_string(),
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
                tracing::warn!(meshcluster = %key(mc), "member unreachable at deletion: what was published there stays");
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
        tracing::info!(meshcluster = %key(mc), deleted, "removed published IstioOperator config");
    }
    let removed = federation::remove_copies(&target, mc).await?;
    if removed > 0 {
        tracing::info!(meshcluster = %key(mc), removed, "removed synced Secrets (deleteOnRemoval)");
    }
    Ok(Action::await_change())
}

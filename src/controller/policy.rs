//! DualStackPolicy status: `Valid` (the checks CEL cannot do), `Ready`, and
//! which MeshClusters use the policy. The policy itself is applied through
//! the MeshClusters that name it.

use std::sync::Arc;

use kube::runtime::controller::Action;
use kube::runtime::reflector::Store;
use kube::{Api, ResourceExt};

use super::{Context, Error, RESYNC, status};
use crate::api::conditions::{self as types, reason};
use crate::api::{DualStackPolicy, DualStackPolicyStatus, MeshCluster};
use crate::desired::conditions::{self, Found};
use crate::desired::selection;
use crate::desired::validate::{self, summarize};

/// The policy controller's context: the shared one plus the MeshCluster cache.
pub struct PolicyContext {
    pub base: Arc<Context>,
    pub meshclusters: Store<MeshCluster>,
}

/// Entry point for the controller.
pub async fn reconcile(
    policy: Arc<DualStackPolicy>,
    ctx: Arc<PolicyContext>,
) -> Result<Action, Error> {
    let started = std::time::Instant::now();
    let result = reconcile_inner(policy, &ctx).await;
    let categories = result
        .as_ref()
        .err()
        .map(Error::categories)
        .unwrap_or_default();
    ctx.base
        .metrics
        .reconciled(super::metrics::POLICY, started.elapsed(), &categories);
    result
}

async fn reconcile_inner(
    policy: Arc<DualStackPolicy>,
    ctx: &PolicyContext,
) -> Result<Action, Error> {
    // Until the MeshCluster cache is filled, usedBy would read as empty.
    super::cache::filled(&ctx.meshclusters, "MeshCluster").await?;
    let name = policy.name_any();
    let valid = match validate::validate_policy(&policy.spec) {
        Ok(_) => Found::ok(types::VALID, reason::VALID, "the policy is valid"),
        Err(problems) => Found::fail(types::VALID, reason::INVALID_SPEC, summarize(&problems)),
    };
    let old = policy.status.clone().unwrap_or_default();
    let now = status::now();
    let generation = policy.metadata.generation;
    let used_by = selection::policy_users(&ctx.meshclusters.state(), &name);
    let new = DualStackPolicyStatus {
        observed_generation: generation,
        conditions: conditions::merge_with_ready(&old.conditions, &[valid], generation, &now),
        in_use: i32::try_from(used_by.len()).unwrap_or(i32::MAX),
        used_by,
    };
    let api: Api<DualStackPolicy> = Api::all(ctx.base.client.clone());
    status::write(
        &ctx.base,
        &api,
        policy.as_ref(),
        policy.status.as_ref(),
        &new,
        &old.conditions,
        &new.conditions,
    )
    .await?;
    ctx.base.succeeded(&name);
    Ok(Action::requeue(RESYNC))
}

/// Called by the controller when `reconcile` fails.
pub fn error_policy(
    policy: Arc<DualStackPolicy>,
    error: &Error,
    ctx: Arc<PolicyContext>,
) -> Action {
    super::context::requeue_after_error(&ctx.base, &format!("policy/{}", policy.name_any()), error)
}

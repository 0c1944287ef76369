//! Applying a MeshCluster's Sail Operator objects (`installWith: Sail`):
//! the fetch and apply steps around the pure plan of
//! [`crate::desired::install::sail_plan`], the read-back of Sail's status,
//! and the removal of objects dualmesh no longer renders.
//!
//! Nothing is written where Sail's CRDs are not installed. An object that
//! exists and is not dualmesh's is left alone and reported. Every write is
//! preconditioned on the read (see [`super::ssa`]).

use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ListParams};
use kube::{Api, Client};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

use super::{Error, ssa};
use crate::desired::install::sail::{Rendered, SailObject};
use crate::desired::install::sail_plan::{self as plan, KINDS, Readback};
use crate::desired::publish::Owner;

/// What applying did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Outcome {
    /// The CRDs of rendered kinds that are not installed (then nothing
    /// was applied).
    pub missing: Vec<String>,
    /// Each object applied, as read before the write.
    pub read: Vec<Readback>,
    /// Write requests sent (0 in a steady state).
    pub writes: u32,
}

fn resource(kind: &str) -> ApiResource {
    let plural = KINDS
        .iter()
        .find(|(k, _)| *k == kind)
        .map_or("", |(_, p)| *p);
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("sailoperator.io", "v1", kind),
        plural,
    )
}

fn api(client: &Client, kind: &str) -> Api<DynamicObject> {
    Api::all_with(client.clone(), &resource(kind))
}

async fn crd_installed(client: &Client, kind: &str) -> Result<bool, kube::Error> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    Ok(crds
        .get_metadata_opt(&plan::crd_name(kind))
        .await?
        .is_some())
}

async fn apply_one(
    client: &Client,
    owner: &Owner,
    object: &SailObject,
) -> Result<(Readback, bool), Error> {
    let api = api(client, object.kind);
    let current = api.get_opt(&object.name).await?;
    let write = plan::write(
        owner,
        object,
        current.as_ref().map(|o| (&o.metadata, o.data.get("spec"))),
    )?;
    let sent = ssa::execute(
        &api,
        &object.name,
        &write,
        current.as_ref().map(|o| &o.metadata),
    )
    .await?;
    let read = Readback {
        kind: object.kind,
        name: object.name.clone(),
        // A write makes a new generation Sail has still to report on.
        generation: current
            .as_ref()
            .and_then(|o| o.metadata.generation)
            .map(|g| g + i64::from(sent)),
        status: current.as_ref().and_then(|o| o.data.get("status").cloned()),
    };
    Ok((read, sent))
}

/// Applies `rendered` for `owner` where Sail's CRDs are installed, then
/// removes the Sail objects of `owner` it no longer holds (CNI turned off,
/// ambient left, a new revision name).
pub async fn publish(
    client: &Client,
    owner: &Owner,
    rendered: &Rendered,
) -> Result<Outcome, Error> {
    let mut outcome = Outcome::default();
    for object in &rendered.objects {
        if !crd_installed(client, object.kind).await? {
            outcome.missing.push(plan::crd_name(object.kind));
        }
    }
    if !outcome.missing.is_empty() {
        return Ok(outcome);
    }
    for object in &rendered.objects {
        let (read, sent) = apply_one(client, owner, object).await?;
        outcome.read.push(read);
        outcome.writes += u32::from(sent);
    }
    let keep: Vec<(&str, &str)> = rendered
        .objects
        .iter()
        .map(|o| (o.kind, o.name.as_str()))
        .collect();
    outcome.writes += remove(client, owner, &keep).await?;
    Ok(outcome)
}

/// Deletes the Sail objects dualmesh applied for `owner`, except those in
/// `keep` (kind, name); kinds whose CRD is gone and objects already gone
/// are fine. Returns how many were deleted. Deleting Sail's `Istio` makes
/// Sail uninstall that control plane.
pub async fn remove(client: &Client, owner: &Owner, keep: &[(&str, &str)]) -> Result<u32, Error> {
    let selector = owner
        .labels()
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut deleted = 0;
    for (kind, _) in KINDS {
        let api = api(client, kind);
        let list = match api
            .list_metadata(&ListParams::default().labels(&selector))
            .await
        {
            Ok(l) => l,
            // No Sail CRD here: nothing of that kind can exist.
            Err(e) if ssa::is_not_found(&e) => continue,
            // Not allowed to list them (a member chart from before Sail's
            // rules): dualmesh could not have created any with that
            // identity either; a deletion must not hang on it.
            Err(kube::Error::Api(s)) if s.code == 403 => {
                tracing::warn!(meshcluster = %owner.key, kind, "listing Sail objects is forbidden: none removed (the chart's RBAC predates installWith Sail)");
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        for item in list.items {
            let name = item.metadata.name.clone().unwrap_or_default();
            if keep.contains(&(kind, name.as_str())) || !owner.owns(&item.metadata) {
                continue;
            }
            if ssa::delete_read(&api, &item.metadata).await? {
                tracing::info!(meshcluster = %owner.key, kind, name, "deleted a Sail object dualmesh no longer renders");
                deleted += 1;
            }
        }
    }
    Ok(deleted)
}

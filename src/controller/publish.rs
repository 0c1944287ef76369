//! Publishing a rendered IstioOperator into a target cluster: the fetch and
//! apply steps around the pure plan of [`crate::desired::publish`] (always a
//! ConfigMap `<meshcluster>-istiooperator` in the Istio namespace, and an
//! `IstioOperator` object when that CRD is installed).
//!
//! Each object is read first and written only when what dualmesh owns in
//! it differs, so a steady state makes no write requests; every write is
//! preconditioned on the read (see [`super::ssa`]).

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ObjectMeta};
use kube::{Api, Client};

use super::{Error, ssa};
pub use crate::api::labels::{HASH_ANNOTATION, OWNER_ANNOTATION};
use crate::desired::istio_operator::Rendered;
use crate::desired::publish::{self as plan, Foreign, Observed, Plan};
pub use crate::desired::publish::{CONFIG_MAP_KEY, Location, Owner};

/// The CRD whose presence decides whether an IstioOperator object is written.
pub const ISTIO_OPERATOR_CRD: &str = "istiooperators.install.istio.io";

/// What publishing did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The IstioOperator CRD is installed, and the object was published too.
    pub operator_published: bool,
    /// Write requests sent (0 in a steady state).
    pub writes: u32,
}

impl From<Foreign> for Error {
    fn from(f: Foreign) -> Self {
        Error::NotOurs {
            kind: f.kind,
            object: f.object,
            owner: f.owner,
            label: crate::api::labels::MANAGED_BY.0,
            annotation: OWNER_ANNOTATION,
        }
    }
}

fn istio_operator_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("install.istio.io", "v1alpha1", "IstioOperator"),
        "istiooperators",
    )
}

fn operators(client: &Client, namespace: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), namespace, &istio_operator_resource())
}

/// Whether the IstioOperator CRD is installed in the cluster (metadata only:
/// the CRD itself is large).
pub async fn istio_operator_crd_installed(client: &Client) -> Result<bool, kube::Error> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    Ok(crds.get_metadata_opt(ISTIO_OPERATOR_CRD).await?.is_some())
}

/// The fetch step: what `location` holds in the target cluster.
pub async fn fetch(client: &Client, location: &Location) -> Result<Observed, kube::Error> {
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &location.namespace);
    let namespaces: Api<Namespace> = Api::all(client.clone());
    // Independent reads, one round trip: the IstioOperator object is read
    // only where its CRD is installed.
    let (config_map, namespace, operator_crd) = futures::try_join!(
        config_maps.get_opt(&location.config_map),
        namespaces.get_metadata_opt(&location.namespace),
        istio_operator_crd_installed(client),
    )?;
    let operator = if operator_crd {
        operators(client, &location.namespace)
            .get_opt(&location.operator)
            .await?
    } else {
        None
    };
    Ok(Observed {
        config_map,
        namespace: namespace.map(|ns| ns.metadata),
        operator_crd,
        operator,
    })
}

/// The apply step: sends what `plan` decided over `observed`.
pub async fn apply(
    client: &Client,
    location: &Location,
    plan: &Plan,
    observed: &Observed,
) -> Result<Outcome, Error> {
    let mut writes = 0;
    if let Some(ns) = &plan.namespace {
        let namespaces: Api<Namespace> = Api::all(client.clone());
        match ssa::create(&namespaces, ns).await {
            Ok(_) => writes += 1,
            // Created since it was read: what the plan wanted.
            Err(e) if ssa::is_conflict(&e) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &location.namespace);
    let current = observed.config_map.as_ref().map(|cm| &cm.metadata);
    if ssa::execute(
        &config_maps,
        &location.config_map,
        &plan.config_map,
        current,
    )
    .await?
    {
        writes += 1;
    }
    if let Some(write) = &plan.operator {
        let current = observed.operator.as_ref().map(|io| &io.metadata);
        let api = operators(client, &location.namespace);
        if ssa::execute(&api, &location.operator, write, current).await? {
            writes += 1;
        }
    }
    Ok(Outcome {
        operator_published: plan.operator.is_some(),
        writes,
    })
}

/// Labels the Istio namespace with the cluster's network (only that
/// label, server-side applied) over `observed`, its metadata as fetched;
/// read now when it was absent then (publishing has made it since).
/// Returns whether a write was sent.
pub async fn label_namespace(
    client: &Client,
    namespace: &str,
    observed: Option<&ObjectMeta>,
    network: &str,
    claimed: &[String],
) -> Result<bool, kube::Error> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    // Absent when fetched: created since, read it now.
    let read;
    let current = match observed {
        Some(meta) => meta,
        None => match namespaces.get_metadata_opt(namespace).await? {
            Some(ns) => {
                read = ns.metadata;
                &read
            }
            None => return Ok(false),
        },
    };
    let write = crate::desired::network::namespace_label(current, network, claimed);
    ssa::execute(&namespaces, namespace, &write, Some(current)).await
}

/// Fetches, plans and applies `rendered` at `location` for `owner`.
pub async fn publish(
    client: &Client,
    owner: &Owner,
    location: &Location,
    rendered: &Rendered,
) -> Result<Outcome, Error> {
    let observed = fetch(client, location).await?;
    let plan = plan::plan(owner, location, rendered, &observed)?;
    apply(client, location, &plan, &observed).await
}

/// Removes what was published at `location` for `owner`: only objects that
/// still carry dualmesh's label and name this owner, each deleted as read;
/// objects already gone are fine. Returns how many objects were deleted.
pub async fn unpublish(
    client: &Client,
    owner: &Owner,
    location: &Location,
) -> Result<u32, kube::Error> {
    let mut deleted = 0;
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &location.namespace);
    if let Some(cm) = config_maps.get_opt(&location.config_map).await?
        && owner.owns(&cm.metadata)
        && ssa::delete_read(&config_maps, &cm.metadata).await?
    {
        deleted += 1;
    }
    if istio_operator_crd_installed(client).await? {
        let api = operators(client, &location.namespace);
        if let Some(io) = api.get_opt(&location.operator).await?
            && owner.owns(&io.metadata)
            && ssa::delete_read(&api, &io.metadata).await?
        {
            deleted += 1;
        }
    }
    Ok(deleted)
}

//! Publishing a rendered IstioOperator into a target cluster: always as a
//! ConfigMap `<meshcluster>-istiooperator` in the Istio namespace, and as an
//! `IstioOperator` object when that CRD is installed there.
//!
//! Each object is read first and applied only when what dualmesh owns in it
//! differs, so a steady state makes no write requests. Objects of the same
//! name that dualmesh did not create are left alone and reported.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use super::ssa;
use crate::desired::istio_operator::{MANAGED_BY, MESH_CLUSTER_LABEL, Rendered};

/// The CRD whose presence decides whether an IstioOperator object is written.
pub const ISTIO_OPERATOR_CRD: &str = "istiooperators.install.istio.io";
/// The ConfigMap key holding the rendered YAML.
pub const CONFIG_MAP_KEY: &str = "istiooperator.yaml";
/// Annotation naming the MeshCluster (`namespace/name`) an object belongs to.
pub const OWNER_ANNOTATION: &str = "dualmesh.io/owner";
/// Annotation holding the SHA-256 of the rendered YAML.
pub const HASH_ANNOTATION: &str = "dualmesh.io/config-hash";

/// Who an object is published for.
#[derive(Clone, Debug)]
pub struct Owner {
    /// `namespace/name` of the MeshCluster.
    pub key: String,
    /// Its name (the label value, when it fits in one).
    pub name: String,
}

impl Owner {
    fn labels(&self) -> BTreeMap<String, String> {
        let mut labels = BTreeMap::from([(MANAGED_BY.0.to_string(), MANAGED_BY.1.to_string())]);
        if self.name.len() <= 63 {
            labels.insert(MESH_CLUSTER_LABEL.to_string(), self.name.clone());
        }
        labels
    }

    /// The object carries our managed-by label and names this owner.
    fn owns(&self, meta: &kube::api::ObjectMeta) -> bool {
        let managed = meta
            .labels
            .as_ref()
            .and_then(|l| l.get(MANAGED_BY.0))
            .is_some_and(|v| v == MANAGED_BY.1);
        let mine = meta
            .annotations
            .as_ref()
            .and_then(|a| a.get(OWNER_ANNOTATION))
            .is_some_and(|v| *v == self.key);
        managed && mine
    }
}

/// Where a rendered config goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    pub namespace: String,
    pub config_map: String,
    pub operator: String,
}

impl Location {
    pub fn config_map_ref(&self) -> String {
        format!("{}/{}", self.namespace, self.config_map)
    }
    pub fn operator_ref(&self) -> String {
        format!("{}/{}", self.namespace, self.operator)
    }
}

/// What publishing did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The IstioOperator CRD is installed, and the object was published too.
    pub operator_published: bool,
    /// Write requests sent (0 in a steady state).
    pub writes: u32,
}

/// Why publishing failed, in words for a condition.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(
        "{kind} {object} exists and is not managed by dualmesh for {owner}; delete it, or label it {label}=dualmesh and annotate it {annotation}={owner} to hand it over"
    )]
    NotOurs {
        kind: &'static str,
        object: String,
        owner: String,
        label: &'static str,
        annotation: &'static str,
    },
    #[error("{0}")]
    Api(#[from] kube::Error),
}

impl PublishError {
    /// The text for a condition: dualmesh's own words for an object that is
    /// not ours, never an API server's message ([`ssa::describe`]).
    pub fn describe(&self) -> String {
        match self {
            PublishError::NotOurs { .. } => self.to_string(),
            PublishError::Api(e) => ssa::describe(e),
        }
    }
}

fn istio_operator_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("install.istio.io", "v1alpha1", "IstioOperator"),
        "istiooperators",
    )
}

/// Whether the IstioOperator CRD is installed in the cluster.
pub async fn istio_operator_crd_installed(client: &Client) -> Result<bool, kube::Error> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    Ok(crds.get_opt(ISTIO_OPERATOR_CRD).await?.is_some())
}

async fn ensure_namespace(
    client: &Client,
    name: &str,
    writes: &mut u32,
) -> Result<(), kube::Error> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    if namespaces.get_opt(name).await?.is_some() {
        return Ok(());
    }
    let ns = json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": {MANAGED_BY.0: MANAGED_BY.1}},
    });
    ssa::apply(&namespaces, name, &ns).await?;
    *writes += 1;
    Ok(())
}

fn contains_all(have: Option<&BTreeMap<String, String>>, want: &BTreeMap<String, String>) -> bool {
    want.iter()
        .all(|(k, v)| have.and_then(|h| h.get(k)).is_some_and(|x| x == v))
}

/// Publishes `rendered` at `location` for `owner`.
pub async fn publish(
    client: &Client,
    owner: &Owner,
    location: &Location,
    rendered: &Rendered,
) -> Result<Outcome, PublishError> {
    let mut writes = 0;

    let labels = owner.labels();
    let annotations = BTreeMap::from([
        (OWNER_ANNOTATION.to_string(), owner.key.clone()),
        (HASH_ANNOTATION.to_string(), rendered.hash.clone()),
    ]);

    // The ConfigMap.
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &location.namespace);
    let current = config_maps.get_opt(&location.config_map).await?;
    let up_to_date = match &current {
        Some(cm) if !owner.owns(&cm.metadata) => {
            return Err(PublishError::NotOurs {
                kind: "ConfigMap",
                object: location.config_map_ref(),
                owner: owner.key.clone(),
                label: MANAGED_BY.0,
                annotation: OWNER_ANNOTATION,
            });
        }
        Some(cm) => {
            contains_all(cm.metadata.labels.as_ref(), &labels)
                && contains_all(cm.metadata.annotations.as_ref(), &annotations)
                && cm
                    .data
                    .as_ref()
                    .and_then(|d| d.get(CONFIG_MAP_KEY))
                    .is_some_and(|y| *y == rendered.yaml)
        }
        None => false,
    };
    if current.is_none() {
        // The ConfigMap's namespace is only in doubt when the ConfigMap is
        // absent: a steady state reads one object, not two.
        ensure_namespace(client, &location.namespace, &mut writes).await?;
    }
    if !up_to_date {
        let cm = json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": location.config_map,
                "namespace": location.namespace,
                "labels": labels,
                "annotations": annotations,
            },
            "data": {CONFIG_MAP_KEY: rendered.yaml},
        });
        ssa::apply(&config_maps, &location.config_map, &cm).await?;
        writes += 1;
    }

    // The IstioOperator, where its CRD is installed.
    if !istio_operator_crd_installed(client).await? {
        return Ok(Outcome {
            operator_published: false,
            writes,
        });
    }
    let resource = istio_operator_resource();
    let operators: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &location.namespace, &resource);
    let spec = serde_json::to_value(&rendered.operator.spec)
        .map_err(|e| PublishError::Api(kube::Error::SerdeError(e)))?;
    let mut operator_labels = labels.clone();
    operator_labels.extend(rendered.operator.metadata.labels.clone());
    let current = operators.get_opt(&location.operator).await?;
    let up_to_date = match &current {
        Some(io) if !owner.owns(&io.metadata) => {
            return Err(PublishError::NotOurs {
                kind: "IstioOperator",
                object: location.operator_ref(),
                owner: owner.key.clone(),
                label: MANAGED_BY.0,
                annotation: OWNER_ANNOTATION,
            });
        }
        Some(io) => {
            contains_all(io.metadata.labels.as_ref(), &operator_labels)
                && contains_all(io.metadata.annotations.as_ref(), &annotations)
                && io.data.get("spec") == Some(&spec)
        }
        None => false,
    };
    if !up_to_date {
        let io = json!({
            "apiVersion": crate::istio::API_VERSION,
            "kind": crate::istio::KIND,
            "metadata": {
                "name": location.operator,
                "namespace": location.namespace,
                "labels": operator_labels,
                "annotations": annotations,
            },
            "spec": spec,
        });
        ssa::apply(&operators, &location.operator, &io).await?;
        writes += 1;
    }
    Ok(Outcome {
        operator_published: true,
        writes,
    })
}

/// Removes what was published at `location` for `owner`: only objects that
/// still carry dualmesh's label and name this owner; objects already gone are
/// fine. Returns how many objects were deleted.
pub async fn unpublish(
    client: &Client,
    owner: &Owner,
    location: &Location,
) -> Result<u32, kube::Error> {
    let mut deleted = 0;
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &location.namespace);
    if let Some(cm) = config_maps.get_opt(&location.config_map).await?
        && owner.owns(&cm.metadata)
        && ssa::delete_tolerant(&config_maps, &cm.name_any()).await?
    {
        deleted += 1;
    }
    if istio_operator_crd_installed(client).await? {
        let resource = istio_operator_resource();
        let operators: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), &location.namespace, &resource);
        if let Some(io) = operators.get_opt(&location.operator).await?
            && owner.owns(&io.metadata)
            && ssa::delete_tolerant(&operators, &io.name_any()).await?
        {
            deleted += 1;
        }
    }
    Ok(deleted)
}

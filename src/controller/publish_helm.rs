//! Publishing a MeshCluster's Helm values (`installWith: Helm`): the fetch
//! and apply steps around the pure plan of
//! [`crate::desired::install::publish`], and the removal when the choice
//! moves away from Helm or the MeshCluster goes. The Istio namespace exists
//! by then: the IstioOperator ConfigMap's publish made it.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::{Api, Client};

use super::{Error, ssa};
use crate::desired::install::helm::Rendered;
use crate::desired::install::publish as plan;
use crate::desired::publish::{Current, Owner};

/// Fetches, plans and applies the ConfigMap `name` in `namespace`.
/// Returns whether a write was sent (none in a steady state).
pub async fn publish(
    client: &Client,
    owner: &Owner,
    namespace: &str,
    name: &str,
    rendered: &Rendered,
) -> Result<bool, Error> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let cm = api.get_opt(name).await?;
    let content = cm.as_ref().map(plan::content);
    let current = cm.as_ref().map(|cm| Current {
        meta: &cm.metadata,
        content: content.as_ref(),
    });
    let write = plan::config_map(owner, namespace, name, rendered, current)?;
    Ok(ssa::execute(&api, name, &write, cm.as_ref().map(|c| &c.metadata)).await?)
}

/// Deletes the ConfigMap if it is still dualmesh's for `owner` (as read);
/// absent or someone else's is fine. Returns whether it was deleted.
pub async fn unpublish(
    client: &Client,
    owner: &Owner,
    namespace: &str,
    name: &str,
) -> Result<bool, kube::Error> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    match api.get_opt(name).await? {
        Some(cm) if owner.owns(&cm.metadata) => ssa::delete_read(&api, &cm.metadata).await,
        _ => Ok(false),
    }
}

//! Server-side apply helpers: one field manager, forced (dualmesh owns the
//! fields it sets), and small predicates on API errors.

use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::FIELD_MANAGER;

/// `PatchParams` for every apply dualmesh makes.
pub fn params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

/// Applies `obj` (an apply configuration: apiVersion, kind, metadata.name and
/// only the fields dualmesh owns).
pub async fn apply<K, P>(api: &Api<K>, name: &str, obj: &P) -> Result<K, kube::Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
    P: Serialize + std::fmt::Debug,
{
    api.patch(name, &params(), &Patch::Apply(obj)).await
}

/// Applies the status subresource.
pub async fn apply_status<K, P>(api: &Api<K>, name: &str, obj: &P) -> Result<K, kube::Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
    P: Serialize + std::fmt::Debug,
{
    api.patch_status(name, &params(), &Patch::Apply(obj)).await
}

/// The API server answered 404.
pub fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// Deletes `name`; an object already gone is success. Returns whether a
/// delete was sent and accepted.
pub async fn delete_tolerant<K>(api: &Api<K>, name: &str) -> Result<bool, kube::Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(true),
        Err(e) if is_not_found(&e) => Ok(false),
        Err(e) => Err(e),
    }
}

//! Writing what a plan decided, always with a precondition on what the
//! reconcile read: create (POST) for an object that was absent, server-side
//! apply carrying the `resourceVersion` read for one that was present,
//! delete with that `resourceVersion` as precondition. A write built from a
//! view older than the object is answered 409 and retried after a fresh
//! read; a replica that lost its leadership while a write was in flight
//! cannot overwrite what the new leader wrote (see [`super::fence`]).
//!
//! One field manager, forced: dualmesh owns the fields it sets.

use kube::api::{DeleteParams, ObjectMeta, Patch, PatchParams, PostParams, Preconditions};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::FIELD_MANAGER;
use crate::desired::ownership::adopt_created;
use crate::desired::publish::Write;

/// `PatchParams` for every apply dualmesh makes.
pub fn params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

fn post_params() -> PostParams {
    PostParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..Default::default()
    }
}

/// Sends `write` for object `name` whose metadata, as read, is `current`.
/// Returns whether a request was sent.
pub async fn execute<K>(
    api: &Api<K>,
    name: &str,
    write: &Write,
    current: Option<&ObjectMeta>,
) -> Result<bool, kube::Error>
where
    K: Resource + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    match write {
        Write::Keep => Ok(false),
        Write::Create(body) => {
            create(api, body).await?;
            Ok(true)
        }
        Write::Apply(body) => {
            let mut body = body.clone();
            if let Some(meta) = current
                && let Some(rv) = adopt(api, name, meta).await?
            {
                body["metadata"]["resourceVersion"] = json!(rv);
            }
            api.patch(name, &params(), &Patch::Apply(Opaque(&body)))
                .await?;
            Ok(true)
        }
    }
}

/// Creates `body`; fails with 409 when the object exists.
pub async fn create<K>(api: &Api<K>, body: &Value) -> Result<K, kube::Error>
where
    K: Resource + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    let obj: K = serde_json::from_value(body.clone()).map_err(kube::Error::SerdeError)?;
    api.create(&post_params(), &obj).await
}

/// Creates the object `body` serializes to, in `namespace` of `client`;
/// fails with 409 when it exists. For bodies with no readable copy (Secret
/// data): serialized straight into the request, never into a `K` or a
/// `Value`.
pub async fn create_serialized<K, P>(
    client: &kube::Client,
    namespace: &str,
    body: &P,
) -> Result<K, kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    P: Serialize,
{
    let bytes = serde_json::to_vec(body).map_err(kube::Error::SerdeError)?;
    let request = kube::core::Request::new(K::url_path(&(), Some(namespace)))
        .create(&post_params(), bytes)
        .map_err(kube::Error::BuildRequest)?;
    client.request::<K>(request).await
}

/// Folds the `Update` entry a create left into dualmesh's `Apply` entry
/// (see [`crate::desired::ownership`]), preconditioned on the
/// resourceVersion read. Returns the new resourceVersion when it patched.
pub async fn adopt<K>(
    api: &Api<K>,
    name: &str,
    meta: &ObjectMeta,
) -> Result<Option<String>, kube::Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let Some(entries) = meta.managed_fields.as_deref().and_then(adopt_created) else {
        return Ok(None);
    };
    // A merge patch carrying a resourceVersion is preconditioned on it; it
    // replaces the managedFields list whole.
    let patch = json!({
        "metadata": {"resourceVersion": meta.resource_version, "managedFields": entries},
    });
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..Default::default()
    };
    let updated = api.patch(name, &params, &Patch::Merge(&patch)).await?;
    Ok(updated.resource_version())
}

/// Applies the status subresource of `obj` (as read): `status` plus the
/// resourceVersion read.
pub async fn apply_status<K, S>(api: &Api<K>, obj: &K, status: &S) -> Result<K, kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    S: Serialize,
{
    let patch = json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "metadata": {"resourceVersion": obj.resource_version()},
        "status": status,
    });
    api.patch_status(&obj.name_any(), &params(), &Patch::Apply(&patch))
        .await
}

/// Applies `obj`, whose body carries its own precondition (the secret
/// sync's copies, whose bodies are never a `Value`).
pub async fn apply<K, P>(api: &Api<K>, name: &str, obj: &P) -> Result<K, kube::Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
    P: Serialize,
{
    api.patch(name, &params(), &Patch::Apply(Opaque(obj))).await
}

/// A body kube's API wants `Debug` of, serialized as itself but never
/// printed (it may hold Secret data).
struct Opaque<T>(T);

impl<T: Serialize> Serialize for Opaque<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<T> std::fmt::Debug for Opaque<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<body not shown>")
    }
}

/// The API server answered 404.
pub fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// The API server answered 409 (a precondition or an existing object).
pub fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

/// Deletes the object whose metadata was read as `meta` (its uid and resourceVersion as preconditions);
/// an object already gone is success. Returns whether it was deleted.
pub async fn delete_read<K>(api: &Api<K>, meta: &ObjectMeta) -> Result<bool, kube::Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            resource_version: meta.resource_version.clone(),
            uid: meta.uid.clone(),
        }),
        ..Default::default()
    };
    match api
        .delete(meta.name.as_deref().unwrap_or_default(), &params)
        .await
    {
        Ok(_) => Ok(true),
        Err(e) if is_not_found(&e) => Ok(false),
        Err(e) => Err(e),
    }
}
/// What a failed request may say in status and Events
/// ([`crate::desired::redact`]): never the API server's own message, which a
/// member cluster chooses.
pub fn describe(e: &kube::Error) -> String {
    use crate::desired::redact::{self, Failure};
    use kube::Error as E;
    let failure = match e {
        E::Api(s) => Failure::Status {
            code: s.code,
            reason: &s.reason,
        },
        E::Service(inner) if inner.is::<super::fence::Fenced>() => Failure::Fenced,
        E::HyperError(_) | E::Service(_) | E::RustlsTls(_) | E::ReadEvents(_) => Failure::NoAnswer,
        E::SerdeError(_) | E::FromUtf8(_) | E::LinesCodecMaxLineLengthExceeded => {
            Failure::BadAnswer
        }
        _ => Failure::NotSent,
    };
    redact::failure(failure)
}

//! Server-side apply helpers: one field manager, forced (dualmesh owns the
//! fields it sets), and small predicates on API errors.
//!
//! Bodies only need `Serialize`: kube's `patch` wants `Debug` too, and gets
//! [`Body`], whose `Debug` shows nothing, so a body holding Secret data
//! cannot be formatted on the way.

use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::FIELD_MANAGER;

/// An apply body as kube sees it: serialized as the body, `Debug` as a
/// placeholder.
struct Body<'a, P>(&'a P);

impl<P: Serialize> Serialize for Body<'_, P> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<P> std::fmt::Debug for Body<'_, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<apply body>")
    }
}

/// `PatchParams` for every apply dualmesh makes.
pub fn params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

/// Applies `obj` (an apply configuration: apiVersion, kind, metadata.name and
/// only the fields dualmesh owns).
pub async fn apply<K, P>(api: &Api<K>, name: &str, obj: &P) -> Result<K, kube::Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
    P: Serialize,
{
    api.patch(name, &params(), &Patch::Apply(Body(obj))).await
}

/// Applies the status subresource.
pub async fn apply_status<K, P>(api: &Api<K>, name: &str, obj: &P) -> Result<K, kube::Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
    P: Serialize,
{
    api.patch_status(name, &params(), &Patch::Apply(Body(obj)))
        .await
}

/// The API server answered 404.
pub fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
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

//! Writing status: only when it differs from what the object already says,
//! by server-side apply of the status subresource preconditioned on the
//! resourceVersion the reconcile read (a status computed from an older view
//! is refused with 409), with an Event for every condition that changed
//! (queued: see [`super::EventQueue`]).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::runtime::events::{Event, EventType};
use kube::{Api, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Context, ssa};
use crate::desired::conditions;

/// The key of `obj` in [`Context`]'s record of status writes.
pub fn written_key<K: Resource<DynamicType = ()>>(obj: &K) -> String {
    format!(
        "{}/{}/{}",
        K::kind(&()),
        obj.meta().namespace.clone().unwrap_or_default(),
        obj.meta().name.clone().unwrap_or_default()
    )
}

/// The current time, for condition transitions.
pub fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

/// Applies `new` as the status of `obj` when it differs from `old`, then
/// publishes one Event per changed condition. Returns whether it wrote.
pub async fn write<K, S>(
    ctx: &Context,
    api: &Api<K>,
    obj: &K,
    old: Option<&S>,
    new: &S,
    old_conditions: &[Condition],
    new_conditions: &[Condition],
) -> Result<bool, kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    S: Serialize + PartialEq + std::fmt::Debug,
{
    if old == Some(new) {
        return Ok(false);
    }
    let key = written_key(obj);
    let hash = {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        serde_json::to_string(new).unwrap_or_default().hash(&mut h);
        h.finish()
    };
    let read = obj.meta().resource_version.clone();
    if ctx.already_written(&key, &read, hash) {
        return Ok(false);
    }
    ssa::apply_status(api, obj, new).await?;
    ctx.wrote(&key, read, hash);
    let reference = obj.object_ref(&());
    for c in conditions::changed(old_conditions, new_conditions) {
        let event = Event {
            type_: if c.status == "True" {
                EventType::Normal
            } else {
                EventType::Warning
            },
            reason: c.reason.clone(),
            note: Some(format!("{} is {}: {}", c.type_, c.status, c.message)),
            action: format!("Set{}", c.type_),
            secondary: None,
        };
        ctx.events.publish(event, reference.clone());
    }
    Ok(true)
}

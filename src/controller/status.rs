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
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
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
    match ssa::apply_status(api, obj, new).await {
        Ok(_) => {}
        // The object changed since the cache's copy was read. When only its
        // status or metadata did (same generation: most often this replica's
        // own previous status write, which the cache had not seen yet), the
        // status computed now is from a view at least as new: apply it over
        // a fresh read, once, instead of waiting for the cache (under load
        // that wait doubled into seconds). A new request, so it passes the
        // fence again: a replica that lost its Lease sends nothing.
        Err(e) if ssa::is_conflict(&e) => {
            let fresh = api
                .get(&obj.meta().name.clone().unwrap_or_default())
                .await?;
            if fresh.meta().generation != obj.meta().generation {
                return Err(e);
            }
            let current = serde_json::to_value(&fresh).ok();
            let wanted = serde_json::to_value(new).ok();
            if current.as_ref().map(|c| &c["status"]) == wanted.as_ref() {
                // Already there (and its Events already sent).
                ctx.wrote(&key, read, hash);
                return Ok(false);
            }
            ssa::apply_status(api, &fresh, new).await?;
        }
        Err(e) => return Err(e),
    }
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

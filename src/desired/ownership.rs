//! Field ownership of objects dualmesh created.
//!
//! dualmesh creates an object with a plain create (POST), the only request
//! that fails when the object appeared since it was read; the API server
//! records those fields as owned by `dualmesh` with operation `Update`.
//! Server-side apply removes a field dualmesh stops setting only if no
//! other entry owns it, so that `Update` entry would keep every field of
//! the first version forever. Before its first apply, dualmesh folds the
//! entry into its `Apply` entry (as kubectl's client-side-apply upgrade
//! does), so apply owns exactly what dualmesh sets.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry};
use serde_json::Value;

use crate::api::labels::FIELD_MANAGER;

fn ours(e: &ManagedFieldsEntry, operation: &str) -> bool {
    e.manager.as_deref() == Some(FIELD_MANAGER) && e.operation.as_deref() == Some(operation)
}

/// Deep union of two FieldsV1 sets (JSON objects whose keys are field paths).
fn union(a: &mut Value, b: &Value) {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                match a.get_mut(k) {
                    Some(existing) => union(existing, v),
                    None => {
                        a.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (a, b) if a.is_null() => *a = b.clone(),
        _ => {}
    }
}

/// The managed fields with dualmesh's `Update` entries folded into its
/// `Apply` entry (one per apiVersion), or None when there is none to fold.
pub fn adopt_created(entries: &[ManagedFieldsEntry]) -> Option<Vec<ManagedFieldsEntry>> {
    if !entries.iter().any(|e| ours(e, "Update")) {
        return None;
    }
    let mut kept: Vec<ManagedFieldsEntry> = Vec::new();
    let mut folded: Vec<ManagedFieldsEntry> = Vec::new();
    for e in entries {
        if !ours(e, "Update") && !ours(e, "Apply") {
            kept.push(e.clone());
            continue;
        }
        let fields = e.fields_v1.as_ref().map_or(Value::Null, |f| f.0.clone());
        match folded.iter_mut().find(|f| f.api_version == e.api_version) {
            Some(f) => {
                let mut merged = f.fields_v1.take().map_or(Value::Null, |f| f.0);
                union(&mut merged, &fields);
                f.fields_v1 = Some(FieldsV1(merged));
            }
            None => folded.push(ManagedFieldsEntry {
                manager: Some(FIELD_MANAGER.to_string()),
                operation: Some("Apply".to_string()),
                api_version: e.api_version.clone(),
                fields_type: Some("FieldsV1".to_string()),
                fields_v1: Some(FieldsV1(fields)),
                subresource: e.subresource.clone(),
                time: e.time.clone(),
            }),
        }
    }
    kept.extend(folded);
    Some(kept)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(manager: &str, operation: &str, fields: Value) -> ManagedFieldsEntry {
        ManagedFieldsEntry {
            manager: Some(manager.into()),
            operation: Some(operation.into()),
            api_version: Some("v1".into()),
            fields_type: Some("FieldsV1".into()),
            fields_v1: Some(FieldsV1(fields)),
            ..Default::default()
        }
    }

    #[test]
    fn the_create_entry_is_folded_into_the_apply_entry_and_others_are_kept() {
        let entries = vec![
            entry("kubectl", "Update", json!({"f:data": {"f:x": {}}})),
            entry(
                "dualmesh",
                "Update",
                json!({"f:data": {".": {}, "f:a": {}}}),
            ),
            entry(
                "dualmesh",
                "Apply",
                json!({"f:data": {"f:b": {}}, "f:metadata": {}}),
            ),
        ];
        let adopted = adopt_created(&entries).expect("an Update entry to fold");
        assert_eq!(
            adopted,
            vec![
                entry("kubectl", "Update", json!({"f:data": {"f:x": {}}})),
                entry(
                    "dualmesh",
                    "Apply",
                    json!({"f:data": {".": {}, "f:a": {}, "f:b": {}}, "f:metadata": {}})
                ),
            ]
        );
    }

    #[test]
    fn a_lone_create_entry_becomes_the_apply_entry_and_nothing_to_fold_is_none() {
        let created = vec![entry("dualmesh", "Update", json!({"f:data": {"f:a": {}}}))];
        assert_eq!(
            adopt_created(&created),
            Some(vec![entry(
                "dualmesh",
                "Apply",
                json!({"f:data": {"f:a": {}}})
            )])
        );
        let applied = vec![entry("dualmesh", "Apply", json!({"f:data": {"f:a": {}}}))];
        assert_eq!(adopt_created(&applied), None);
        assert_eq!(adopt_created(&[]), None);
    }
}

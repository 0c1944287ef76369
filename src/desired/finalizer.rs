//! dualmesh's finalizer on a MeshCluster: what a reconcile does about it,
//! and the JSON patches that add and remove it (each with a `test`
//! operation, so a list another controller changed since the read makes
//! the patch fail instead of dropping or duplicating an entry).
//!
//! Unlike kube-runtime's `finalizer()` helper, which adds the finalizer and
//! ends the reconcile (the next one comes from the watch event of that
//! write), the reconcile goes on with the object the patch returned: one
//! watch round trip less before a new MeshCluster is published.

use serde_json::{Value, json};

/// What a reconcile does with the finalizer `name`, from what it read.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Add it (this patch), then apply with the object the patch returns.
    AddThenApply(Value),
    /// It is there: apply.
    Apply,
    /// Being deleted with it there: clean up, then this patch removes it.
    CleanupThenRemove(Value),
    /// Being deleted without it: nothing is ours to do.
    Nothing,
}

/// The step for an object holding `finalizers`, deleting or not.
pub fn step(finalizers: &[String], deleting: bool, name: &str) -> Step {
    let index = finalizers.iter().position(|f| f == name);
    match (index, deleting) {
        (Some(_), false) => Step::Apply,
        (Some(i), true) => Step::CleanupThenRemove(json!([
            {"op": "test", "path": format!("/metadata/finalizers/{i}"), "value": name},
            {"op": "remove", "path": format!("/metadata/finalizers/{i}")},
        ])),
        (None, false) if finalizers.is_empty() => Step::AddThenApply(json!([
            {"op": "test", "path": "/metadata/finalizers", "value": null},
            {"op": "add", "path": "/metadata/finalizers", "value": [name]},
        ])),
        (None, false) => Step::AddThenApply(json!([
            {"op": "test", "path": "/metadata/finalizers", "value": finalizers},
            {"op": "add", "path": "/metadata/finalizers/-", "value": name},
        ])),
        (None, true) => Step::Nothing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const F: &str = "dualmesh.io/cleanup";

    #[test]
    fn a_new_object_gets_the_finalizer_tested_against_an_absent_list() {
        assert_eq!(
            step(&[], false, F),
            Step::AddThenApply(json!([
                {"op": "test", "path": "/metadata/finalizers", "value": null},
                {"op": "add", "path": "/metadata/finalizers", "value": ["dualmesh.io/cleanup"]},
            ]))
        );
    }

    #[test]
    fn another_controllers_finalizer_is_kept_and_the_whole_list_tested() {
        assert_eq!(
            step(&["other.io/x".into()], false, F),
            Step::AddThenApply(json!([
                {"op": "test", "path": "/metadata/finalizers", "value": ["other.io/x"]},
                {"op": "add", "path": "/metadata/finalizers/-", "value": "dualmesh.io/cleanup"},
            ]))
        );
    }

    #[test]
    fn with_the_finalizer_the_reconcile_applies() {
        assert_eq!(step(&["a".into(), F.into()], false, F), Step::Apply);
    }

    #[test]
    fn a_deletion_removes_exactly_its_entry_by_index_after_a_test() {
        assert_eq!(
            step(&["a".into(), F.into(), "b".into()], true, F),
            Step::CleanupThenRemove(json!([
                {"op": "test", "path": "/metadata/finalizers/1", "value": "dualmesh.io/cleanup"},
                {"op": "remove", "path": "/metadata/finalizers/1"},
            ]))
        );
    }

    #[test]
    fn a_deletion_without_the_finalizer_does_nothing() {
        assert_eq!(step(&["a".into()], true, F), Step::Nothing);
        assert_eq!(step(&[], true, F), Step::Nothing);
    }
}

//! What applying a MeshCluster's Sail objects should write, and what Sail's
//! status read back means, for `installWith: Sail`. Pure: the controller
//! reads, this decides, the controller writes.
//!
//! Sail's CRDs default fields dualmesh does not set (and Sail itself may
//! add to `spec`), so an object is up to date when every field dualmesh
//! renders holds dualmesh's value ([`contains`]) and the config-hash
//! annotation names the current render (a field dualmesh stopped setting
//! changes the hash, and the apply then drops it from dualmesh's set).

use std::collections::BTreeMap;

use kube::api::ObjectMeta;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::sail::SailObject;
use crate::api::conditions::{SAIL_READY, reason};
use crate::api::labels::{HASH_ANNOTATION, OWNER_ANNOTATION};
use crate::desired::conditions::Found;
use crate::desired::publish::{Current, Foreign, Owner, Write, decide};

/// Sail's kinds dualmesh writes: kind and plural (group sailoperator.io).
pub const KINDS: [(&str, &str); 3] = [
    ("Istio", "istios"),
    ("IstioCNI", "istiocnis"),
    ("ZTunnel", "ztunnels"),
];

/// The CRD of Sail kind `kind`, e.g. `istios.sailoperator.io`.
pub fn crd_name(kind: &str) -> String {
    let plural = KINDS
        .iter()
        .find(|(k, _)| *k == kind)
        .map_or("", |(_, p)| *p);
    format!("{plural}.sailoperator.io")
}

/// Every field of `want` holds the same value in `have` (objects compared
/// key by key, everything else as a whole).
pub fn contains(have: &Value, want: &Value) -> bool {
    match (have, want) {
        (Value::Object(h), Value::Object(w)) => w
            .iter()
            .all(|(k, v)| h.get(k).is_some_and(|x| contains(x, v))),
        _ => have == want,
    }
}

/// The config-hash of one rendered object: SHA-256 of its body, hex.
pub fn hash(object: &SailObject) -> String {
    let mut hasher = Sha256::new();
    hasher.update(crate::yaml::to_string(&object.body).as_bytes());
    format!("{:x}", hasher.finalize())
}

/// The write of one Sail object (cluster-scoped) for `owner`, over what
/// the cluster holds (`current`: its metadata and `spec`, as read).
pub fn write(
    owner: &Owner,
    object: &SailObject,
    current: Option<(&ObjectMeta, Option<&Value>)>,
) -> Result<Write, Foreign> {
    let mut labels = owner.labels();
    if let Some(rendered) = object.body["metadata"]["labels"].as_object() {
        for (k, v) in rendered {
            labels.insert(k.clone(), v.as_str().unwrap_or_default().to_string());
        }
    }
    let annotations = BTreeMap::from([
        (OWNER_ANNOTATION.to_string(), owner.key.clone()),
        (HASH_ANNOTATION.to_string(), hash(object)),
    ]);
    let mut body = object.body.clone();
    body["metadata"]["labels"] = json!(labels);
    body["metadata"]["annotations"] = json!(annotations);
    let spec = &object.body["spec"];
    // decide() compares the content as a whole; Sail's defaults in the
    // held spec would make that a write every pass. What it compares here
    // is whether the held spec contains dualmesh's.
    let (contained, not_contained) = (json!(true), json!(false));
    let current = current.map(|(meta, held)| Current {
        meta,
        content: Some(if held.is_some_and(|h| contains(h, spec)) {
            &contained
        } else {
            &not_contained
        }),
    });
    decide(
        object.kind,
        object.name.clone(),
        owner,
        current,
        body,
        &labels,
        &annotations,
        &contained,
    )
}

/// One Sail object as read back: its generation and status.
#[derive(Clone, Debug, PartialEq)]
pub struct Readback {
    pub kind: &'static str,
    pub name: String,
    pub generation: Option<i64>,
    /// `status`, absent before Sail wrote one.
    pub status: Option<Value>,
}

/// The reasons Sail's v1 API defines for its `Ready` conditions (Istio,
/// IstioCNI, ZTunnel). Only these are repeated in a condition: any other
/// text the target cluster holds stays there.
const SAIL_REASONS: [&str; 12] = [
    "Healthy",
    "ReconcileError",
    "ActiveRevisionNotFound",
    "FailedToGetActiveRevision",
    "IstiodNotReady",
    "RemoteIstiodNotReady",
    "ReadinessCheckFailed",
    "IstioCNINotFound",
    "IstioCNINotHealthy",
    "DependencyCheckFailed",
    "DaemonSetNotReady",
    "ReconcileSuccess",
];

fn known(reason: Option<&str>) -> &str {
    match reason {
        Some(r) if SAIL_REASONS.contains(&r) => r,
        _ => "a reason dualmesh does not know",
    }
}

/// How one object stands.
enum Standing {
    Ready(String),
    Pending(String),
    NotReady(String),
}

fn standing(r: &Readback) -> Standing {
    let what = format!("{} {}", r.kind, r.name);
    let Some(status) = &r.status else {
        return Standing::Pending(format!("{what}: no status from Sail yet"));
    };
    let observed = status["observedGeneration"].as_i64();
    if r.generation.is_some() && observed != r.generation {
        return Standing::Pending(format!(
            "{what}: Sail has not reported on generation {} yet",
            r.generation.unwrap_or_default()
        ));
    }
    let ready = status["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"));
    let Some(ready) = ready else {
        return Standing::Pending(format!("{what}: no Ready condition from Sail yet"));
    };
    match ready["status"].as_str() {
        Some("True") => {
            let revision = match status["activeRevisionName"].as_str() {
                Some(rev) if rev == r.name => format!(" (active revision {})", r.name),
                Some(_) => " (active revision: another than its name)".to_string(),
                None => String::new(),
            };
            Standing::Ready(format!("{what} is Ready{revision}"))
        }
        other => Standing::NotReady(format!(
            "{what} is Ready={}: {}",
            if other == Some("False") {
                "False"
            } else {
                "Unknown"
            },
            known(ready["reason"].as_str())
        )),
    }
}

/// The `SailReady` condition: Sail's CRDs missing (`missing`, CRD names),
/// else what Sail says of each object dualmesh applied. The second value
/// is true while Sail has still to act (look again soon).
pub fn report(cluster: &str, missing: &[String], read: &[Readback]) -> (Found, bool) {
    if !missing.is_empty() {
        return (
            Found::fail(
                SAIL_READY,
                reason::SAIL_NOT_INSTALLED,
                format!(
                    "spec.istio.installWith is Sail, but {cluster} has no CRD {}: install Sail Operator there (its Helm chart installs the sailoperator.io CRDs); nothing is applied until then, and the IstioOperator ConfigMap is published meanwhile",
                    missing.join(", ")
                ),
            ),
            false,
        );
    }
    let (mut ready, mut pending, mut not_ready) = (vec![], vec![], vec![]);
    for r in read {
        match standing(r) {
            Standing::Ready(m) => ready.push(m),
            Standing::Pending(m) => pending.push(m),
            Standing::NotReady(m) => not_ready.push(m),
        }
    }
    if !not_ready.is_empty() {
        let all = [not_ready, pending].concat();
        return (
            Found::fail(SAIL_READY, reason::SAIL_NOT_READY, all.join("; ")),
            true,
        );
    }
    if !pending.is_empty() {
        return (
            Found::fail(SAIL_READY, reason::SAIL_PENDING, pending.join("; ")),
            true,
        );
    }
    (
        Found::ok(SAIL_READY, reason::SAIL_OBJECTS_READY, ready.join("; ")),
        false,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner() -> Owner {
        Owner {
            key: "dualmesh-system/alpha".into(),
            name: "alpha".into(),
        }
    }

    fn istio() -> SailObject {
        SailObject {
            kind: "Istio",
            name: "default".into(),
            body: json!({
                "apiVersion": "sailoperator.io/v1",
                "kind": "Istio",
                "metadata": {"name": "default", "labels": {"app.kubernetes.io/managed-by": "dualmesh"}},
                "spec": {"version": "v1.28.0", "namespace": "istio-system",
                         "values": {"pilot": {"env": {"ISTIO_DUAL_STACK": "true"}}}},
            }),
        }
    }

    fn meta(owned: bool, hash: &str) -> ObjectMeta {
        let mut labels = BTreeMap::from([(
            "app.kubernetes.io/managed-by".to_string(),
            "dualmesh".to_string(),
        )]);
        labels.insert("dualmesh.io/meshcluster".into(), "alpha".into());
        let owner = if owned {
            "dualmesh-system/alpha"
        } else {
            "other/beta"
        };
        ObjectMeta {
            name: Some("default".into()),
            resource_version: Some("42".into()),
            labels: Some(labels),
            annotations: Some(BTreeMap::from([
                (OWNER_ANNOTATION.to_string(), owner.to_string()),
                (HASH_ANNOTATION.to_string(), hash.to_string()),
            ])),
            ..Default::default()
        }
    }

    #[test]
    fn contains_compares_objects_key_by_key_and_everything_else_whole() {
        let have = json!({"a": {"b": 1, "default": 2}, "list": [1, 2], "x": "y"});
        assert!(contains(&have, &json!({"a": {"b": 1}})));
        assert!(contains(&have, &json!({"list": [1, 2], "x": "y"})));
        assert!(!contains(&have, &json!({"a": {"b": 2}})));
        assert!(!contains(&have, &json!({"missing": 1})));
        assert!(!contains(&have, &json!({"list": [1]})));
        assert!(contains(&have, &json!({})));
    }

    #[test]
    fn an_absent_object_is_created_with_owner_labels_and_the_render_hash() {
        let object = istio();
        let Ok(Write::Create(body)) = write(&owner(), &object, None) else {
            panic!("a create");
        };
        assert_eq!(
            body["metadata"],
            json!({
                "name": "default",
                "labels": {"app.kubernetes.io/managed-by": "dualmesh", "dualmesh.io/meshcluster": "alpha"},
                "annotations": {"dualmesh.io/owner": "dualmesh-system/alpha", "dualmesh.io/config-hash": hash(&object)},
            })
        );
        assert_eq!(body["spec"], object.body["spec"]);
    }

    #[test]
    fn sails_defaults_beside_dualmeshs_fields_need_no_write_a_changed_field_or_render_does() {
        let object = istio();
        let h = hash(&object);
        let mut held = object.body["spec"].clone();
        held["updateStrategy"] =
            json!({"type": "InPlace", "inactiveRevisionDeletionGracePeriodSeconds": 30});
        held["values"]["global"] = json!({"istioNamespace": "istio-system"});
        let m = meta(true, &h);
        assert_eq!(
            write(&owner(), &object, Some((&m, Some(&held)))),
            Ok(Write::Keep)
        );
        // Someone changed a field dualmesh sets: applied again, on what was read.
        let mut edited = held.clone();
        edited["version"] = json!("v1.27.0");
        let Ok(Write::Apply(body)) = write(&owner(), &object, Some((&m, Some(&edited)))) else {
            panic!("an apply");
        };
        assert_eq!(body["metadata"]["resourceVersion"], "42");
        assert_eq!(body["spec"]["version"], "v1.28.0");
        // A new render (a field dropped, say): the hash differs, applied.
        let old = meta(true, "an-older-render");
        assert!(matches!(
            write(&owner(), &object, Some((&old, Some(&held)))),
            Ok(Write::Apply(_))
        ));
    }

    #[test]
    fn an_object_dualmesh_did_not_create_is_left_alone() {
        let m = meta(false, "x");
        assert_eq!(
            write(&owner(), &istio(), Some((&m, None))),
            Err(Foreign {
                kind: "Istio",
                object: "default".into(),
                owner: "dualmesh-system/alpha".into(),
            })
        );
    }

    fn read(status: Option<Value>) -> Readback {
        Readback {
            kind: "Istio",
            name: "default".into(),
            generation: Some(3),
            status,
        }
    }

    #[test]
    fn missing_crds_say_what_to_install() {
        let (found, soon) = report(
            "cluster beta",
            &[
                "istios.sailoperator.io".into(),
                "istiocnis.sailoperator.io".into(),
            ],
            &[],
        );
        assert_eq!(
            found,
            Found::fail(
                SAIL_READY,
                reason::SAIL_NOT_INSTALLED,
                "spec.istio.installWith is Sail, but cluster beta has no CRD istios.sailoperator.io, istiocnis.sailoperator.io: install Sail Operator there (its Helm chart installs the sailoperator.io CRDs); nothing is applied until then, and the IstioOperator ConfigMap is published meanwhile"
            )
        );
        assert!(!soon, "a CRD's arrival is watched, not polled");
    }

    #[test]
    fn sails_status_is_pending_until_it_reports_on_the_current_generation() {
        let (found, soon) = report("c", &[], &[read(None)]);
        assert_eq!(
            found,
            Found::fail(
                SAIL_READY,
                reason::SAIL_PENDING,
                "Istio default: no status from Sail yet"
            )
        );
        assert!(soon);
        let older =
            json!({"observedGeneration": 2, "conditions": [{"type": "Ready", "status": "True"}]});
        assert_eq!(
            report("c", &[], &[read(Some(older))]).0.message,
            "Istio default: Sail has not reported on generation 3 yet"
        );
    }

    #[test]
    fn ready_names_the_active_revision_and_not_ready_repeats_only_sails_own_reasons() {
        let ready = json!({"observedGeneration": 3, "activeRevisionName": "default",
            "conditions": [{"type": "Reconciled", "status": "True"}, {"type": "Ready", "status": "True", "reason": "Healthy"}]});
        assert_eq!(
            report("c", &[], &[read(Some(ready))]),
            (
                Found::ok(
                    SAIL_READY,
                    reason::SAIL_OBJECTS_READY,
                    "Istio default is Ready (active revision default)"
                ),
                false
            )
        );
        let known = json!({"observedGeneration": 3,
            "conditions": [{"type": "Ready", "status": "False", "reason": "IstiodNotReady", "message": "istiod: 0/1 ready"}]});
        let unknown = json!({"observedGeneration": 3,
            "conditions": [{"type": "Ready", "status": "False", "reason": "token=abc", "message": "secret stuff"}]});
        let (found, soon) = report("c", &[], &[read(Some(known)), read(Some(unknown))]);
        assert_eq!(
            found,
            Found::fail(
                SAIL_READY,
                reason::SAIL_NOT_READY,
                "Istio default is Ready=False: IstiodNotReady; Istio default is Ready=False: a reason dualmesh does not know"
            )
        );
        assert!(soon);
    }
}

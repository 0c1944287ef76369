//! What publishing a rendered IstioOperator should write, given what the
//! target cluster holds: always a ConfigMap `<meshcluster>-istiooperator` in
//! the Istio namespace, and an `IstioOperator` object where its CRD is
//! installed. Pure: the controller reads, this decides, the controller writes.
//!
//! Every write carries a precondition on what was read: an object that
//! exists is applied with its `resourceVersion` (a change since the read
//! makes the API server answer 409), an object that did not is created
//! (an object created since makes it answer 409). Objects of the same name
//! that dualmesh did not create are left alone and reported.

use std::collections::BTreeMap;

use kube::api::ObjectMeta;
use serde_json::{Value, json};

use super::istio_operator::Rendered;
use super::keys::object_key;
use crate::api::labels::{HASH_ANNOTATION, MANAGED_BY, MESH_CLUSTER_LABEL, OWNER_ANNOTATION};

/// The ConfigMap key holding the rendered YAML.
pub const CONFIG_MAP_KEY: &str = "istiooperator.yaml";

/// Who an object is published for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    /// `namespace/name` of the MeshCluster.
    pub key: String,
    /// Its name (the label value, when it fits in one).
    pub name: String,
}

impl Owner {
    /// The labels of everything published for this owner.
    pub fn labels(&self) -> BTreeMap<String, String> {
        let mut labels = BTreeMap::from([(MANAGED_BY.0.to_string(), MANAGED_BY.1.to_string())]);
        if self.name.len() <= 63 {
            labels.insert(MESH_CLUSTER_LABEL.to_string(), self.name.clone());
        }
        labels
    }

    /// The object carries our managed-by label and names this owner.
    pub fn owns(&self, meta: &ObjectMeta) -> bool {
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
        object_key(&self.namespace, &self.config_map)
    }
    pub fn operator_ref(&self) -> String {
        object_key(&self.namespace, &self.operator)
    }
}

/// One object's write.
#[derive(Clone, Debug, PartialEq)]
pub enum Write {
    /// What the cluster holds is what dualmesh owns: nothing to send.
    Keep,
    /// Absent when read: create (refused with 409 if it appeared since).
    Create(Value),
    /// Present when read: server-side apply carrying the resourceVersion
    /// read (refused with 409 if it changed since).
    Apply(Value),
}

/// An object of the name dualmesh wants exists and is someone else's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Foreign {
    pub kind: &'static str,
    /// `namespace/name`.
    pub object: String,
    /// The key of the MeshCluster it was to be published for.
    pub owner: String,
}

/// What the target cluster holds of one object (as read).
#[derive(Clone, Copy, Debug)]
pub struct Current<'a> {
    pub meta: &'a ObjectMeta,
    /// The content dualmesh owns in it (ConfigMap: its YAML key; IstioOperator: `spec`).
    pub content: Option<&'a Value>,
}

fn contains_all(have: Option<&BTreeMap<String, String>>, want: &BTreeMap<String, String>) -> bool {
    want.iter()
        .all(|(k, v)| have.and_then(|h| h.get(k)).is_some_and(|x| x == v))
}

fn annotations(owner: &Owner, rendered: &Rendered) -> BTreeMap<String, String> {
    BTreeMap::from([
        (OWNER_ANNOTATION.to_string(), owner.key.clone()),
        (HASH_ANNOTATION.to_string(), rendered.hash.clone()),
    ])
}

/// Decides one object's write from its desired body (`metadata` with
/// name, namespace, labels and annotations, plus `field` = `content`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn decide(
    kind: &'static str,
    object: String,
    owner: &Owner,
    current: Option<Current<'_>>,
    mut body: Value,
    labels: &BTreeMap<String, String>,
    annotations: &BTreeMap<String, String>,
    content: &Value,
) -> Result<Write, Foreign> {
    let Some(current) = current else {
        return Ok(Write::Create(body));
    };
    if !owner.owns(current.meta) {
        return Err(Foreign {
            kind,
            object,
            owner: owner.key.clone(),
        });
    }
    let up_to_date = contains_all(current.meta.labels.as_ref(), labels)
        && contains_all(current.meta.annotations.as_ref(), annotations)
        && current.content == Some(content);
    if up_to_date {
        return Ok(Write::Keep);
    }
    body["metadata"]["resourceVersion"] = json!(current.meta.resource_version);
    Ok(Write::Apply(body))
}

/// The ConfigMap's write.
pub fn config_map(
    owner: &Owner,
    location: &Location,
    rendered: &Rendered,
    current: Option<Current<'_>>,
) -> Result<Write, Foreign> {
    let labels = owner.labels();
    let annotations = annotations(owner, rendered);
    let content = json!(rendered.yaml);
    let body = json!({
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
    decide(
        "ConfigMap",
        location.config_map_ref(),
        owner,
        current,
        body,
        &labels,
        &annotations,
        &content,
    )
}

/// The IstioOperator object's write (where its CRD is installed).
pub fn istio_operator(
    owner: &Owner,
    location: &Location,
    rendered: &Rendered,
    current: Option<Current<'_>>,
) -> Result<Write, Foreign> {
    let mut labels = owner.labels();
    labels.extend(rendered.operator.metadata.labels.clone());
    let annotations = annotations(owner, rendered);
    let spec = serde_json::to_value(&rendered.operator.spec).expect("the typed spec serializes");
    let body = json!({
        "apiVersion": crate::istio::API_VERSION,
        "kind": crate::istio::KIND,
        "metadata": {
            "name": location.operator,
            "namespace": location.namespace,
            "labels": labels,
            "annotations": annotations,
        },
        "spec": spec,
    });
    decide(
        "IstioOperator",
        location.operator_ref(),
        owner,
        current,
        body,
        &labels,
        &annotations,
        &spec,
    )
}

/// What the target cluster holds at a location, as the fetch step read it.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    /// The ConfigMap, if present.
    pub config_map: Option<k8s_openapi::api::core::v1::ConfigMap>,
    /// The namespace's metadata, if it exists (read beside the ConfigMap,
    /// in the same round trip; its network label is applied over it).
    pub namespace: Option<ObjectMeta>,
    /// Whether the IstioOperator CRD is installed.
    pub operator_crd: bool,
    /// The IstioOperator object, if present (and the CRD installed).
    pub operator: Option<kube::api::DynamicObject>,
}

/// Everything publishing one rendered config should write.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// The namespace to create first (it was absent).
    pub namespace: Option<Value>,
    pub config_map: Write,
    /// None: the IstioOperator CRD is not installed, no object is written.
    pub operator: Option<Write>,
}

/// Plans publishing `rendered` at `location` for `owner` over `observed`.
pub fn plan(
    owner: &Owner,
    location: &Location,
    rendered: &Rendered,
    observed: &Observed,
) -> Result<Plan, Foreign> {
    let namespace = observed.namespace.is_none().then(|| {
        json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": location.namespace, "labels": {MANAGED_BY.0: MANAGED_BY.1}},
        })
    });
    let yaml = observed
        .config_map
        .as_ref()
        .and_then(|cm| cm.data.as_ref()?.get(CONFIG_MAP_KEY))
        .map(|y| json!(y));
    let config_map = config_map(
        owner,
        location,
        rendered,
        observed.config_map.as_ref().map(|cm| Current {
            meta: &cm.metadata,
            content: yaml.as_ref(),
        }),
    )?;
    let operator = if observed.operator_crd {
        Some(istio_operator(
            owner,
            location,
            rendered,
            observed.operator.as_ref().map(|io| Current {
                meta: &io.metadata,
                content: io.data.get("spec"),
            }),
        )?)
    } else {
        None
    };
    Ok(Plan {
        namespace,
        config_map,
        operator,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::istio_operator::build;
    use crate::desired::validate::{validate_mesh_cluster, validate_policy};

    fn rendered() -> Rendered {
        let mc: crate::api::MeshCluster =
            serde_saphyr::from_str(include_str!("../../examples/meshcluster-alpha.yaml")).unwrap();
        let policy: crate::api::DualStackPolicy =
            serde_saphyr::from_str(include_str!("../../examples/policy-ipv6-only.yaml")).unwrap();
        build(
            &validate_mesh_cluster(&mc.spec).unwrap(),
            &validate_policy(&policy.spec).unwrap(),
        )
    }

    fn owner() -> Owner {
        Owner {
            key: "dualmesh-system/alpha".into(),
            name: "alpha".into(),
        }
    }

    fn location() -> Location {
        Location {
            namespace: "istio-system".into(),
            config_map: "alpha-istiooperator".into(),
            operator: "dualmesh".into(),
        }
    }

    fn meta(labels: &[(&str, &str)], annotations: &[(&str, &str)]) -> ObjectMeta {
        let map = |kv: &[(&str, &str)]| {
            Some(
                kv.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            )
        };
        ObjectMeta {
            name: Some("alpha-istiooperator".into()),
            namespace: Some("istio-system".into()),
            resource_version: Some("41".into()),
            labels: map(labels),
            annotations: map(annotations),
            ..Default::default()
        }
    }

    #[test]
    fn an_absent_config_map_is_created_with_exactly_the_fields_dualmesh_owns() {
        let r = rendered();
        let write = config_map(&owner(), &location(), &r, None).unwrap();
        assert_eq!(
            write,
            Write::Create(json!({
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": "alpha-istiooperator",
                    "namespace": "istio-system",
                    "labels": {
                        "app.kubernetes.io/managed-by": "dualmesh",
                        "dualmesh.io/meshcluster": "alpha",
                    },
                    "annotations": {
                        "dualmesh.io/config-hash": r.hash,
                        "dualmesh.io/owner": "dualmesh-system/alpha",
                    },
                },
                "data": {"istiooperator.yaml": r.yaml},
            }))
        );
    }

    #[test]
    fn a_stale_config_map_is_applied_with_the_resource_version_read() {
        let r = rendered();
        let m = meta(
            &[("app.kubernetes.io/managed-by", "dualmesh")],
            &[
                ("dualmesh.io/owner", "dualmesh-system/alpha"),
                ("dualmesh.io/config-hash", "old"),
            ],
        );
        let old = json!("old yaml");
        let current = Current {
            meta: &m,
            content: Some(&old),
        };
        let Write::Apply(body) = config_map(&owner(), &location(), &r, Some(current)).unwrap()
        else {
            panic!("expected an apply");
        };
        assert_eq!(body["metadata"]["resourceVersion"], json!("41"));
        assert_eq!(body["data"]["istiooperator.yaml"], json!(r.yaml));
    }

    #[test]
    fn an_up_to_date_config_map_costs_no_write_and_a_foreign_one_is_refused() {
        let r = rendered();
        let m = meta(
            &[
                ("app.kubernetes.io/managed-by", "dualmesh"),
                ("dualmesh.io/meshcluster", "alpha"),
                ("someone", "else"),
            ],
            &[
                ("dualmesh.io/owner", "dualmesh-system/alpha"),
                ("dualmesh.io/config-hash", &r.hash),
            ],
        );
        let yaml = json!(r.yaml);
        let current = Current {
            meta: &m,
            content: Some(&yaml),
        };
        assert_eq!(
            config_map(&owner(), &location(), &r, Some(current)),
            Ok(Write::Keep)
        );
        let foreign = meta(&[], &[]);
        let current = Current {
            meta: &foreign,
            content: Some(&yaml),
        };
        assert_eq!(
            config_map(&owner(), &location(), &r, Some(current)),
            Err(Foreign {
                kind: "ConfigMap",
                object: "istio-system/alpha-istiooperator".into(),
                owner: "dualmesh-system/alpha".into(),
            })
        );
    }

    #[test]
    fn a_first_publish_creates_the_namespace_and_the_config_map_and_no_operator_without_its_crd() {
        let r = rendered();
        let observed = Observed::default();
        let plan = plan(&owner(), &location(), &r, &observed).unwrap();
        assert_eq!(
            plan.namespace,
            Some(json!({
                "apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": "istio-system", "labels": {"app.kubernetes.io/managed-by": "dualmesh"}},
            }))
        );
        assert!(matches!(plan.config_map, Write::Create(_)), "{plan:?}");
        assert_eq!(plan.operator, None);
    }

    #[test]
    fn the_istio_operator_carries_the_rendered_labels_and_spec() {
        let r = rendered();
        let Write::Create(body) = istio_operator(&owner(), &location(), &r, None).unwrap() else {
            panic!("expected a create");
        };
        assert_eq!(body["kind"], json!("IstioOperator"));
        assert_eq!(body["metadata"]["name"], json!("dualmesh"));
        assert_eq!(
            body["spec"],
            serde_json::to_value(&r.operator.spec).unwrap()
        );
        assert_eq!(
            body["metadata"]["labels"]["app.kubernetes.io/managed-by"],
            json!("dualmesh")
        );
        assert!(body["metadata"].get("resourceVersion").is_none());
    }
}

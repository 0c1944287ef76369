//! What publishing a MeshCluster's Helm values should write: the ConfigMap
//! `<meshcluster>-helm-values` in the Istio namespace, one key per chart
//! (`base.yaml`, `istiod.yaml`, ...), with the same ownership (label +
//! owner annotation) and preconditions as the IstioOperator ConfigMap
//! ([`crate::desired::publish`]). Pure.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::helm::Rendered;
use crate::api::labels::{HASH_ANNOTATION, OWNER_ANNOTATION};
use crate::desired::keys::object_key;
use crate::desired::publish::{Current, Foreign, Owner, Write, decide};

/// The ConfigMap's `data`: chart key -> values YAML.
pub fn data(rendered: &Rendered) -> BTreeMap<String, String> {
    rendered
        .files
        .iter()
        .map(|f| (f.key(), f.yaml.clone()))
        .collect()
}

/// The Helm values ConfigMap's write. `current.content` is the ConfigMap's
/// whole `data` as read.
pub fn config_map(
    owner: &Owner,
    namespace: &str,
    name: &str,
    rendered: &Rendered,
    current: Option<Current<'_>>,
) -> Result<Write, Foreign> {
    let labels = owner.labels();
    let annotations = BTreeMap::from([
        (OWNER_ANNOTATION.to_string(), owner.key.clone()),
        (HASH_ANNOTATION.to_string(), rendered.hash.clone()),
    ]);
    let content = json!(data(rendered));
    let body = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels,
            "annotations": annotations,
        },
        "data": content,
    });
    decide(
        "ConfigMap",
        object_key(namespace, name),
        owner,
        current,
        body,
        &labels,
        &annotations,
        &content,
    )
}

/// What the cluster's ConfigMap holds, as [`config_map`] compares it.
pub fn content(cm: &k8s_openapi::api::core::v1::ConfigMap) -> Value {
    json!(cm.data.clone().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::install::helm;
    use crate::desired::validate::{validate_mesh_cluster, validate_policy};
    use kube::api::ObjectMeta;

    fn rendered() -> Rendered {
        let mc: crate::api::MeshCluster =
            serde_saphyr::from_str(include_str!("../../../examples/meshcluster-gamma.yaml"))
                .unwrap();
        let policy: crate::api::DualStackPolicy = serde_saphyr::from_str(include_str!(
            "../../../examples/policy-dual-stack-ipv6-primary.yaml"
        ))
        .unwrap();
        helm::build(
            &validate_mesh_cluster(&mc.spec).unwrap(),
            &validate_policy(&policy.spec).unwrap(),
        )
    }

    fn owner() -> Owner {
        Owner {
            key: "dualmesh-system/gamma".into(),
            name: "gamma".into(),
        }
    }

    #[test]
    fn an_absent_helm_values_config_map_is_created_with_one_key_per_chart() {
        let r = rendered();
        let write = config_map(&owner(), "istio-system", "gamma-helm-values", &r, None).unwrap();
        let Write::Create(body) = write else {
            panic!("expected a create");
        };
        let keys: Vec<&String> = body["data"].as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            [
                "base.yaml",
                "cni.yaml",
                "gateway.yaml",
                "istiod.yaml",
                "ztunnel.yaml"
            ]
        );
        assert_eq!(body["data"]["istiod.yaml"], json!(r.files[1].yaml));
        assert_eq!(
            body["metadata"],
            json!({
                "name": "gamma-helm-values",
                "namespace": "istio-system",
                "labels": {
                    "app.kubernetes.io/managed-by": "dualmesh",
                    "dualmesh.io/meshcluster": "gamma",
                },
                "annotations": {
                    "dualmesh.io/config-hash": r.hash,
                    "dualmesh.io/owner": "dualmesh-system/gamma",
                },
            })
        );
    }

    #[test]
    fn an_up_to_date_one_costs_no_write_a_stale_one_is_applied_as_read_and_a_foreign_one_is_refused()
     {
        let r = rendered();
        let map = |kv: &[(&str, &str)]| {
            Some(
                kv.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            )
        };
        let ours = ObjectMeta {
            resource_version: Some("7".into()),
            labels: map(&[
                ("app.kubernetes.io/managed-by", "dualmesh"),
                ("dualmesh.io/meshcluster", "gamma"),
            ]),
            annotations: map(&[
                ("dualmesh.io/owner", "dualmesh-system/gamma"),
                ("dualmesh.io/config-hash", &r.hash),
            ]),
            ..Default::default()
        };
        let same = json!(data(&r));
        let current = Current {
            meta: &ours,
            content: Some(&same),
        };
        let write = config_map(
            &owner(),
            "istio-system",
            "gamma-helm-values",
            &r,
            Some(current),
        );
        assert_eq!(write, Ok(Write::Keep));

        let old = json!({"istiod.yaml": "old"});
        let current = Current {
            meta: &ours,
            content: Some(&old),
        };
        let Ok(Write::Apply(body)) = config_map(
            &owner(),
            "istio-system",
            "gamma-helm-values",
            &r,
            Some(current),
        ) else {
            panic!("expected an apply");
        };
        assert_eq!(body["metadata"]["resourceVersion"], json!("7"));

        let foreign = ObjectMeta::default();
        let current = Current {
            meta: &foreign,
            content: Some(&same),
        };
        assert_eq!(
            config_map(
                &owner(),
                "istio-system",
                "gamma-helm-values",
                &r,
                Some(current)
            ),
            Err(Foreign {
                kind: "ConfigMap",
                object: "istio-system/gamma-helm-values".into(),
                owner: "dualmesh-system/gamma".into(),
            })
        );
    }
}

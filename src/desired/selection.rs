//! Which objects a change concerns: the selection logic behind the
//! controllers' watch mappers, pure so it is tested without a cluster.

use std::sync::Arc;

use kube::ResourceExt;

use super::keys::{object_key, parse_key};
use super::secret_sync::effective_syncs;
use crate::api::labels::OWNER_ANNOTATION;
use crate::api::{DualStackPolicy, MeshCluster};

/// The key of a MeshCluster (`namespace/name`).
pub fn meshcluster_key(mc: &MeshCluster) -> String {
    object_key(&mc.namespace().unwrap_or_default(), &mc.name_any())
}

/// Whether `mc`'s status has a condition of `type_` (what a job wrote
/// before, and may have to undo once its spec field is gone).
pub fn has_condition(mc: &MeshCluster, type_: &str) -> bool {
    mc.status
        .as_ref()
        .is_some_and(|s| s.conditions.iter().any(|c| c.type_ == type_))
}

/// Whether `mc` reads Secret `namespace/name`: its kubeconfig (always in
/// its own namespace) or a source of a Secret it syncs.
pub fn uses_secret(mc: &MeshCluster, namespace: &str, name: &str) -> bool {
    let kubeconfig = mc
        .spec
        .kubeconfig_secret_ref
        .as_ref()
        .is_some_and(|r| r.name == name && mc.namespace().as_deref() == Some(namespace));
    let root = mc.spec.trust.as_ref().is_some_and(|t| {
        crate::desired::trust::plan::root_secret_name(&mc.spec.mesh_id, t) == name
            && mc.namespace().as_deref() == Some(namespace)
    });
    kubeconfig
        || root
        || effective_syncs(&mc.spec)
            .iter()
            .any(|s| s.source.namespace == namespace && s.source.name == name)
}

/// The MeshCluster (namespace, name) a published object names in its owner
/// annotation.
pub fn owner_of<K: ResourceExt>(obj: &K) -> Option<(&str, &str)> {
    parse_key(obj.annotations().get(OWNER_ANNOTATION)?)
}

/// Every MeshCluster naming policy `policy`, deleting ones included (their
/// cleanup reads it too).
pub fn naming_policy<'a>(
    meshclusters: &'a [Arc<MeshCluster>],
    policy: &'a str,
) -> impl Iterator<Item = &'a Arc<MeshCluster>> + 'a {
    meshclusters
        .iter()
        .filter(move |mc| mc.spec.dual_stack_policy_ref.name == policy)
}

/// The keys of the MeshClusters using `policy` (not being deleted), sorted:
/// its `status.usedBy`.
pub fn policy_users(meshclusters: &[Arc<MeshCluster>], policy: &str) -> Vec<String> {
    let mut users: Vec<String> = naming_policy(meshclusters, policy)
        .filter(|mc| mc.metadata.deletion_timestamp.is_none())
        .map(|mc| meshcluster_key(mc))
        .collect();
    users.sort();
    users
}

/// The policies whose status a change of `mc` may change: the one it names,
/// and every other that still lists it as a user (so switching policies
/// updates both).
pub fn policies_touching(mc: &MeshCluster, policies: &[Arc<DualStackPolicy>]) -> Vec<String> {
    let me = meshcluster_key(mc);
    let named = &mc.spec.dual_stack_policy_ref.name;
    let mut names = vec![named.clone()];
    for p in policies {
        let listed = p.status.as_ref().is_some_and(|s| s.used_by.contains(&me));
        if listed && p.name_any() != *named {
            names.push(p.name_any());
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::DualStackPolicyStatus;

    fn example(name: &str) -> Arc<MeshCluster> {
        let yaml = match name {
            "alpha" => include_str!("../../examples/meshcluster-alpha.yaml"),
            _ => include_str!("../../examples/meshcluster-beta.yaml"),
        };
        Arc::new(serde_saphyr::from_str(yaml).unwrap())
    }

    fn policy(name: &str, used_by: &[&str]) -> Arc<DualStackPolicy> {
        let mut p: DualStackPolicy =
            serde_saphyr::from_str(include_str!("../../examples/policy-ipv6-only.yaml")).unwrap();
        p.metadata.name = Some(name.into());
        p.status = Some(DualStackPolicyStatus {
            used_by: used_by.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        });
        Arc::new(p)
    }

    #[test]
    fn a_secret_concerns_the_meshclusters_reading_it_as_kubeconfig_or_source() {
        let (alpha, beta) = (example("alpha"), example("beta"));
        let cases = [
            ("dualmesh-system", "beta-kubeconfig"),
            ("default", "beta-kubeconfig"),
            ("gloo-mesh", "relay-root-tls-secret"),
            ("gloo-mesh", "relay-identity-token-secret"),
            ("gloo-mesh", "unrelated"),
        ];
        let seen: Vec<(bool, bool)> = cases
            .iter()
            .map(|(ns, name)| (uses_secret(&alpha, ns, name), uses_secret(&beta, ns, name)))
            .collect();
        assert_eq!(
            seen,
            vec![
                (false, true),
                (false, false),
                (false, true),
                (false, true),
                (false, false)
            ]
        );
    }

    #[test]
    fn a_root_ca_secret_concerns_the_meshclusters_trusting_it() {
        let mut generated = (*example("alpha")).clone();
        generated.spec.mesh_id = "mesh1".into();
        generated.spec.trust = Some(crate::api::TrustSpec::default());
        let mut named = generated.clone();
        named.spec.trust = Some(crate::api::TrustSpec {
            root_ca_secret_ref: Some(crate::api::RootCaSecretReference {
                name: "corp-root".into(),
            }),
            ..Default::default()
        });
        let mut untrusting = generated.clone();
        untrusting.spec.trust = None;
        let cases = [
            ("dualmesh-system", "dualmesh-root-ca-mesh1"),
            ("dualmesh-system", "corp-root"),
            ("istio-system", "corp-root"),
        ];
        let seen: Vec<[bool; 3]> = cases
            .iter()
            .map(|(ns, name)| [&generated, &named, &untrusting].map(|mc| uses_secret(mc, ns, name)))
            .collect();
        assert_eq!(
            seen,
            vec![
                [true, false, false],
                [false, true, false],
                [false, false, false]
            ]
        );
    }

    #[test]
    fn policy_users_are_sorted_keys_without_deleting_ones_and_both_policies_hear_a_switch() {
        let mut deleting = (*example("alpha")).clone();
        deleting.metadata.name = Some("gone".into());
        deleting.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                "2026-12-03T10:00:00Z".parse().unwrap(),
            ));
        let all = vec![example("beta"), example("alpha"), Arc::new(deleting)];
        assert_eq!(
            policy_users(&all, "ipv6-only"),
            vec!["dualmesh-system/alpha", "dualmesh-system/beta"]
        );
        assert_eq!(naming_policy(&all, "ipv6-only").count(), 3);
        assert!(policy_users(&all, "other").is_empty());
        let policies = vec![
            policy("ipv6-only", &[]),
            policy("old", &["dualmesh-system/alpha"]),
            policy("unrelated", &["dualmesh-system/beta"]),
        ];
        assert_eq!(
            policies_touching(&example("alpha"), &policies),
            vec!["ipv6-only", "old"]
        );
    }

    #[test]
    fn the_owner_annotation_names_a_meshcluster_only_when_well_formed() {
        let mut cm = k8s_openapi::api::core::v1::ConfigMap::default();
        assert_eq!(owner_of(&cm), None);
        cm.metadata.annotations = Some(
            [(
                OWNER_ANNOTATION.to_string(),
                "dualmesh-system/alpha".to_string(),
            )]
            .into(),
        );
        assert_eq!(owner_of(&cm), Some(("dualmesh-system", "alpha")));
        cm.metadata.annotations =
            Some([(OWNER_ANNOTATION.to_string(), "alpha".to_string())].into());
        assert_eq!(owner_of(&cm), None);
    }
}

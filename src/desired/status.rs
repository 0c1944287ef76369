//! A MeshCluster's new status from the old one and what this reconcile
//! found. Pure (the time is passed in). Every field of the old status is
//! named here (destructured without `..`), so a field added to the status
//! cannot be dropped silently: a job that did not run this pass (`None`)
//! leaves its fields describing what is still in the cluster.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::conditions::{Found, merge_with_ready};
use crate::api::{
    GatewayAddressesStatus, MeshClusterStatus, PublishedConfig, SyncedSecret, TrustStatus,
};

/// What the reconcile's steps produced, field by field; None: not reached.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Parts {
    /// The policy's families (from validation).
    pub ip_families: Option<String>,
    /// The Istio job: the hash and where it was published.
    pub istio: Option<(String, PublishedConfig)>,
    /// The gateway job: the addresses (None inside: not managed).
    pub gateway: Option<Option<GatewayAddressesStatus>>,
    /// The secrets job.
    pub secrets: Option<Vec<SyncedSecret>>,
    /// Condition types that no longer apply to this MeshCluster (e.g.
    /// `SailReady` once `installWith` is not Sail): removed.
    pub dropped: Vec<&'static str>,
    /// The trust job (None inside: trust not configured).
    pub trust: Option<Option<TrustStatus>>,
}

/// The status to write for generation `generation`.
pub fn meshcluster(
    old: &MeshClusterStatus,
    generation: Option<i64>,
    found: &[Found],
    parts: Parts,
    now: &Time,
) -> MeshClusterStatus {
    let MeshClusterStatus {
        observed_generation: _,
        conditions,
        ip_families,
        istio_config_hash,
        published,
        gateway_addresses,
        synced_secrets,
        trust: old_trust,
    } = old;
    let Parts {
        ip_families: new_families,
        istio,
        gateway,
        secrets,
        dropped,
        trust,
    } = parts;
    let conditions: Vec<_> = conditions
        .iter()
        .filter(|c| !dropped.contains(&c.type_.as_str()))
        .cloned()
        .collect();
    let (istio_config_hash, published) = match istio {
        Some((hash, at)) => (Some(hash), Some(at)),
        None => (istio_config_hash.clone(), published.clone()),
    };
    MeshClusterStatus {
        observed_generation: generation,
        conditions: merge_with_ready(&conditions, found, generation, now),
        ip_families: new_families.or_else(|| ip_families.clone()),
        istio_config_hash,
        published,
        gateway_addresses: gateway.unwrap_or_else(|| gateway_addresses.clone()),
        synced_secrets: secrets.unwrap_or_else(|| synced_secrets.clone()),
        trust: trust.unwrap_or_else(|| old_trust.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::conditions as types;

    fn now() -> Time {
        Time("2026-12-03T10:00:00Z".parse().unwrap())
    }

    fn old() -> MeshClusterStatus {
        MeshClusterStatus {
            observed_generation: Some(1),
            conditions: Vec::new(),
            ip_families: Some("IPv6".into()),
            istio_config_hash: Some("h1".into()),
            published: Some(PublishedConfig {
                config_map: "istio-system/a-istiooperator".into(),
                istio_operator: None,
            }),
            gateway_addresses: Some(GatewayAddressesStatus {
                ipv6: vec!["2001:db8::1".into()],
                ipv4: Vec::new(),
                all: "2001:db8::1".into(),
            }),
            synced_secrets: Vec::new(),
            trust: Some(TrustStatus {
                root_secret: "dualmesh/dualmesh-root-ca-mesh1".into(),
                cacerts: "istio-system/cacerts".into(),
                intermediate_not_after: now(),
                renew_after: now(),
                root_serial: Some("0A".into()),
                rotation: None,
            }),
        }
    }

    #[test]
    fn jobs_that_did_not_run_keep_their_fields() {
        let invalid = [Found::fail(
            types::VALID,
            "InvalidSpec",
            "spec.network: empty",
        )];
        let new = meshcluster(&old(), Some(2), &invalid, Parts::default(), &now());
        let MeshClusterStatus {
            observed_generation,
            conditions,
            ip_families,
            istio_config_hash,
            published,
            gateway_addresses,
            synced_secrets,
            trust,
        } = new;
        assert_eq!(observed_generation, Some(2));
        assert_eq!(
            conditions
                .iter()
                .map(|c| (c.type_.as_str(), c.status.as_str()))
                .collect::<Vec<_>>(),
            vec![("Ready", "False"), ("Valid", "False")]
        );
        let o = old();
        assert_eq!(ip_families, o.ip_families);
        assert_eq!(istio_config_hash, o.istio_config_hash);
        assert_eq!(published, o.published);
        assert_eq!(gateway_addresses, o.gateway_addresses);
        assert_eq!(synced_secrets, o.synced_secrets);
        assert_eq!(trust, o.trust);
    }

    #[test]
    fn jobs_that_ran_replace_their_fields_and_an_unmanaged_gateway_clears_its_own() {
        let parts = Parts {
            ip_families: Some("IPv6,IPv4".into()),
            istio: Some((
                "h2".into(),
                PublishedConfig {
                    config_map: "istio-system/a-istiooperator".into(),
                    istio_operator: Some("istio-system/dualmesh".into()),
                },
            )),
            gateway: Some(None),
            secrets: Some(Vec::new()),
            dropped: Vec::new(),
            trust: Some(None),
        };
        let new = meshcluster(&old(), Some(3), &[], parts, &now());
        assert_eq!(new.ip_families.as_deref(), Some("IPv6,IPv4"));
        assert_eq!(new.istio_config_hash.as_deref(), Some("h2"));
        assert_eq!(
            new.published.unwrap().istio_operator.as_deref(),
            Some("istio-system/dualmesh")
        );
        assert_eq!(new.gateway_addresses, None);
        assert_eq!(new.trust, None);
    }

    #[test]
    fn a_dropped_condition_type_is_removed_and_no_longer_counts_for_ready() {
        let mut old = old();
        let t = Time("2026-12-03T09:00:00Z".parse().unwrap());
        old.conditions = vec![k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
            type_: types::SAIL_READY.into(),
            status: "False".into(),
            reason: "SailPending".into(),
            message: "Istio default: no status from Sail yet".into(),
            observed_generation: Some(1),
            last_transition_time: t,
        }];
        let parts = Parts {
            dropped: vec![types::SAIL_READY],
            ..Parts::default()
        };
        let new = meshcluster(&old, Some(2), &[], parts, &now());
        let left: Vec<&str> = new.conditions.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(left, [types::READY]);
    }
}

//! What the secret sync writes and says, from its [`Plan`]: each copy's
//! apply body (with the precondition the fetch read), the status list of
//! copies, and the `SecretsSynced` condition.

use serde::Serialize;
use serde::ser::SerializeMap;
use serde_json::json;

use super::{DesiredSecret, Plan, SecretData, location};
use crate::api::conditions::{self as types, reason};
use crate::api::{SecretSync, SyncedSecret};
use crate::desired::conditions::Found;
use crate::desired::validate::summarize;

/// A Secret's data as a request body wants it (base64 by key), written
/// straight from the [`SecretData`] with no readable copy in between.
pub struct Encoded<'a>(pub &'a SecretData);

impl Serialize for Encoded<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use base64::Engine as _;
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            map.serialize_entry(
                k,
                &base64::engine::general_purpose::STANDARD.encode(v.expose()),
            )?;
        }
        map.end()
    }
}

/// The body of one copy: a create's when `resource_version` is None (the
/// copy was absent), an apply's carrying it otherwise. `Serialize` only, no
/// `Debug`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CopyBody<'a> {
    api_version: &'static str,
    kind: &'static str,
    metadata: serde_json::Value,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    type_: Option<&'static str>,
    data: Encoded<'a>,
}

/// The body that writes `desired`; `resource_version` is what the fetch
/// read of the copy (None: it was absent, and the body is a create's, which
/// also sets the type).
pub fn copy_body<'a>(desired: &'a DesiredSecret, resource_version: Option<&str>) -> CopyBody<'a> {
    let mut metadata = json!({
        "name": desired.target.name,
        "namespace": desired.target.namespace,
        "labels": desired.labels,
        "annotations": desired.annotations,
    });
    if let Some(rv) = resource_version {
        metadata["resourceVersion"] = json!(rv);
    }
    CopyBody {
        api_version: "v1",
        kind: "Secret",
        metadata,
        type_: resource_version.is_none().then_some("Opaque"),
        data: Encoded(&desired.data),
    }
}

/// `SecretsSynced` when the MeshCluster lists no Secrets.
pub fn nothing_to_sync() -> Found {
    Found::ok(
        types::SECRETS_SYNCED,
        reason::NOTHING_TO_SYNC,
        "spec.federation lists no Secrets",
    )
}

/// The status list and condition after `plan` was carried out: every copy
/// planned, plus the copies the previous status listed for a sync whose
/// source is now missing (kept in the member, so still listed), sorted by
/// target. `federation_absent`: the syncs are the default relay pair.
pub fn report(
    plan: &Plan,
    syncs: &[SecretSync],
    previous: &[SyncedSecret],
    federation_absent: bool,
) -> (Found, Vec<SyncedSecret>) {
    let mut synced: Vec<SyncedSecret> = plan.desired.iter().map(DesiredSecret::status).collect();
    for p in previous {
        if !synced.iter().any(|s| s.target == p.target)
            && syncs.iter().any(|s| location(&s.target) == p.target)
        {
            synced.push(p.clone());
        }
    }
    synced.sort_by(|a, b| a.target.cmp(&b.target));
    let condition = if plan.problems.is_empty() {
        Found::ok(
            types::SECRETS_SYNCED,
            reason::SYNCED,
            format!(
                "{} Secret(s) up to date: {}",
                plan.desired.len(),
                plan.desired
                    .iter()
                    .map(|d| location(&d.target))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    } else {
        let defaults = if federation_absent {
            " (spec.federation is absent: the default Gloo Mesh relay pair)"
        } else {
            ""
        };
        Found::fail(
            types::SECRETS_SYNCED,
            reason::SOURCE_MISSING,
            format!(
                "{}{defaults}; existing copies are kept",
                summarize(&plan.problems)
            ),
        )
    };
    (condition, synced)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::api::SecretLocation;
    use crate::desired::secret_sync::{
        HashKey, SecretValue, SourceSecret, default_relay_syncs, plan,
    };

    fn key() -> HashKey {
        HashKey::new(vec![7u8; 32]).unwrap()
    }

    fn relay(name: &str) -> SecretLocation {
        SecretLocation {
            namespace: "gloo-mesh".into(),
            name: name.into(),
        }
    }

    fn source(key: &str, value: &str) -> Option<SourceSecret> {
        Some(SourceSecret {
            data: BTreeMap::from([(
                key.to_string(),
                SecretValue::from(value.as_bytes().to_vec()),
            )]),
        })
    }

    /// The default relay pair, both sources present.
    fn both_sources() -> (Vec<SecretSync>, Plan) {
        let syncs = default_relay_syncs();
        let sources = BTreeMap::from([
            (relay("relay-root-tls-secret"), source("ca.crt", "CA")),
            (relay("relay-identity-token-secret"), source("token", "T")),
        ]);
        let p = plan(&key(), "beta", &syncs, &sources);
        (syncs, p)
    }

    #[test]
    fn a_copy_is_created_with_its_type_and_applied_with_the_resource_version_read() {
        let (_, p) = both_sources();
        let token = &p.desired[1];
        let hash = token.hash.clone();
        let labels =
            json!({"app.kubernetes.io/managed-by": "dualmesh", "dualmesh.io/meshcluster": "beta"});
        assert_eq!(
            serde_json::to_value(copy_body(token, None)).unwrap(),
            json!({
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {
                    "name": "relay-identity-token-secret",
                    "namespace": "gloo-mesh",
                    "labels": labels,
                    "annotations": {"dualmesh.io/content-hash": hash},
                },
                "type": "Opaque",
                "data": {"token": "VA=="},
            })
        );
        assert_eq!(
            serde_json::to_value(copy_body(token, Some("41"))).unwrap(),
            json!({
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {
                    "name": "relay-identity-token-secret",
                    "namespace": "gloo-mesh",
                    "labels": labels,
                    "annotations": {"dualmesh.io/content-hash": hash},
                    "resourceVersion": "41",
                },
                "data": {"token": "VA=="},
            })
        );
    }

    #[test]
    fn a_missing_source_keeps_the_copy_listed_and_names_the_default_pair() {
        let syncs = default_relay_syncs();
        let sources = BTreeMap::from([(relay("relay-root-tls-secret"), source("ca.crt", "CA"))]);
        let p = plan(&key(), "beta", &syncs, &sources);
        let kept = SyncedSecret {
            target: "gloo-mesh/relay-identity-token-secret".into(),
            source: "gloo-mesh/relay-identity-token-secret".into(),
            hash: "h-before".into(),
        };
        let gone = SyncedSecret {
            target: "other/no-longer-synced".into(),
            source: "other/no-longer-synced".into(),
            hash: "h-old".into(),
        };
        let (found, synced) = report(&p, &syncs, &[gone, kept.clone()], true);
        assert_eq!(
            synced,
            vec![kept, p.desired[0].status()],
            "sorted by target; a target no sync names is dropped"
        );
        assert_eq!(found.type_, types::SECRETS_SYNCED);
        assert_eq!(found.reason, reason::SOURCE_MISSING);
        assert_eq!(
            found.message,
            format!(
                "{} (spec.federation is absent: the default Gloo Mesh relay pair); existing copies are kept",
                summarize(&p.problems)
            )
        );
        assert!(
            found
                .message
                .contains("gloo-mesh/relay-identity-token-secret")
        );
    }

    #[test]
    fn all_copies_planned_read_as_synced_with_their_targets() {
        let (syncs, p) = both_sources();
        let (found, synced) = report(&p, &syncs, &[], false);
        assert_eq!(found.reason, reason::SYNCED);
        assert_eq!(
            found.message,
            "2 Secret(s) up to date: gloo-mesh/relay-root-tls-secret, gloo-mesh/relay-identity-token-secret"
        );
        assert_eq!(synced.len(), 2);
    }
}

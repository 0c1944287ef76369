//! Whether a cluster's `cacerts` still fits the mesh root and the cluster,
//! who owns it, and the `TrustDistributed` condition. Pure.
//!
//! A `cacerts` dualmesh did not write (no `app.kubernetes.io/managed-by:
//! dualmesh` and `dualmesh.io/meshcluster: <name>` labels) is never
//! overwritten: istiod signs with it today, and replacing it under a
//! running mesh would split trust.

use std::collections::BTreeMap;

use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use super::rotation::{self, Mesh, Step};
use super::{CA_CERT, CA_KEY, CACERTS, ROOT_CERT, Root, Subject, first_certificate, rfc3339};
use crate::api::conditions::{self as types, reason};
use crate::desired::conditions::Found;
use crate::desired::istio_operator::{MANAGED_BY, MESH_CLUSTER_LABEL};
use crate::desired::secret_sync::{Encoded, SecretData};

/// The `cacerts` the target cluster holds.
#[derive(Debug)]
pub enum Observed<'a> {
    Absent,
    /// Present, without dualmesh's labels for this MeshCluster.
    Foreign,
    /// Present and dualmesh's: its data.
    Ours(&'a SecretData),
}

/// Why an intermediate is (re-)issued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Issue {
    /// No `cacerts` yet.
    Absent,
    /// Ours, but a key is missing or does not parse, or the key is not the certificate's.
    Unreadable,
    /// Issued by another root (or `root-cert.pem` differs).
    RootChanged,
    /// Issued for another cluster name or Istio namespace.
    SubjectChanged,
    /// Two thirds of its validity have passed.
    RenewalDue,
}

/// What to do with `cacerts`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// It fits: the intermediate's validity.
    Keep {
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    },
    /// Write a new intermediate.
    Issue(Issue),
    /// Not ours: leave it.
    Foreign,
    /// A root rotation's next step (or its wait).
    Rotate(Step),
}

/// What a rotation decision needs besides `cacerts`: the other clusters of
/// the mesh, and when the held `cacerts`' phase began (its annotation).
#[derive(Clone, Debug)]
pub struct RotationView {
    pub mesh: Mesh,
    pub since: Option<OffsetDateTime>,
}

/// The labels marking `cacerts` as dualmesh's for MeshCluster `meshcluster`.
pub fn labels(meshcluster: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED_BY.0.to_string(), MANAGED_BY.1.to_string()),
        (MESH_CLUSTER_LABEL.to_string(), meshcluster.to_string()),
    ])
}

/// Whether `labels` (of a `cacerts` read) mark it as dualmesh's for `meshcluster`.
pub fn is_ours(labels: &BTreeMap<String, String>, meshcluster: &str) -> bool {
    labels.get(MANAGED_BY.0).map(String::as_str) == Some(MANAGED_BY.1)
        && labels.get(MESH_CLUSTER_LABEL).map(String::as_str) == Some(meshcluster)
}

/// When an intermediate valid from `not_before` to `not_after` is renewed:
/// two thirds in.
pub fn renew_at(not_before: OffsetDateTime, not_after: OffsetDateTime) -> OffsetDateTime {
    not_before + (not_after - not_before) * 2 / 3
}

/// Whether the intermediate in `observed` still fits `root` and `subject`
/// at `now`; a valid intermediate of an old root the cluster trusts moves
/// to `root` by the rotation sequence ([`rotation`]), anything else is
/// issued anew.
pub fn decide(
    observed: &Observed<'_>,
    root: &Root,
    subject: &Subject<'_>,
    view: &RotationView,
    now: OffsetDateTime,
) -> Decision {
    let data = match observed {
        Observed::Absent => return Decision::Issue(Issue::Absent),
        Observed::Foreign => return Decision::Foreign,
        Observed::Ours(data) => data,
    };
    let held = rotation::assess(data, root, now);
    if let Some(step) = rotation::step(data, &held, view.since, root, &view.mesh, now) {
        return Decision::Rotate(step);
    }
    match judge(data, root, subject, now) {
        Ok((not_before, not_after)) => Decision::Keep {
            not_before,
            not_after,
        },
        Err(why) => Decision::Issue(why),
    }
}

fn judge(
    data: &SecretData,
    root: &Root,
    subject: &Subject<'_>,
    now: OffsetDateTime,
) -> Result<(OffsetDateTime, OffsetDateTime), Issue> {
    let der = data
        .get(CA_CERT)
        .and_then(|v| first_certificate(v.expose()))
        .ok_or(Issue::Unreadable)?;
    let (_, cert) = X509Certificate::from_der(&der).map_err(|_| Issue::Unreadable)?;
    let root_held = data.get(ROOT_CERT).map(|v| v.expose());
    let (_, root_cert) = X509Certificate::from_der(root.der()).map_err(|_| Issue::Unreadable)?;
    if root_held != Some(root.cert_pem.as_bytes())
        || cert.verify_signature(Some(root_cert.public_key())).is_err()
    {
        return Err(Issue::RootChanged);
    }
    let key = data
        .get(CA_KEY)
        .and_then(|v| std::str::from_utf8(v.expose()).ok())
        .and_then(|pem| rcgen::KeyPair::from_pem(pem).ok())
        .ok_or(Issue::Unreadable)?;
    if key.public_key_raw() != cert.public_key().subject_public_key.data.as_ref() {
        return Err(Issue::Unreadable);
    }
    let locality = cert
        .subject()
        .iter_locality()
        .next()
        .and_then(|l| l.as_str().ok());
    let san = subject.san();
    let has_san = matches!(cert.subject_alternative_name(), Ok(Some(ext))
        if ext.value.general_names.iter().any(|n| matches!(n, GeneralName::DNSName(d) if *d == san)));
    if locality != Some(subject.cluster_name) || !has_san {
        return Err(Issue::SubjectChanged);
    }
    let not_before = cert.validity().not_before.to_datetime();
    let not_after = cert.validity().not_after.to_datetime();
    if now >= renew_at(not_before, not_after) {
        return Err(Issue::RenewalDue);
    }
    Ok((not_before, not_after))
}

/// `TrustDistributed` True: `cacerts` in `namespace` holds an intermediate
/// valid until `not_after`.
pub fn distributed(
    namespace: &str,
    root_source: &str,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Found {
    Found::ok(
        types::TRUST_DISTRIBUTED,
        reason::DISTRIBUTED,
        format!(
            "Secret {namespace}/{CACERTS} holds an intermediate CA from root {root_source}, valid until {}, renewed from {}",
            rfc3339(not_after),
            rfc3339(renew_at(not_before, not_after)),
        ),
    )
}

/// `TrustDistributed` True during a rotation: `cacerts` in `namespace` is
/// in `waiting`'s phase towards root `root_source`.
pub fn rotating(namespace: &str, root_source: &str, waiting: &rotation::Waiting) -> Found {
    use rotation::Phase;
    let (why, state) = match waiting.phase {
        Phase::BothRootsTrusted => (
            reason::ROTATION_BOTH_ROOTS_TRUSTED,
            "trusts the old and the new root; the old intermediate still signs",
        ),
        Phase::IntermediateReissued => (
            reason::ROTATION_INTERMEDIATE_REISSUED,
            "holds an intermediate of the new root and still trusts the old one",
        ),
    };
    let next = match waiting.phase {
        Phase::BothRootsTrusted => "re-issues the intermediate from the new root",
        Phase::IntermediateReissued => "drops the old root",
    };
    let when = if waiting.waiting_for.is_empty() {
        format!("from {}", rfc3339(waiting.until))
    } else {
        format!(
            "once {} reached this step, and the grace period after",
            waiting.waiting_for.join(", ")
        )
    };
    Found::ok(
        types::TRUST_DISTRIBUTED,
        why,
        format!(
            "root rotation to {root_source}: Secret {namespace}/{CACERTS} {state} (since {}); dualmesh {next} {when}",
            rfc3339(waiting.since)
        ),
    )
}

/// `TrustDistributed` False: dualmesh's own `cacerts` holds no readable
/// intermediate after it was written.
pub fn unreadable(namespace: &str) -> Found {
    Found::fail(
        types::TRUST_DISTRIBUTED,
        reason::CACERTS_UNREADABLE,
        format!(
            "Secret {namespace}/{CACERTS} holds no readable intermediate CA; delete it to have dualmesh issue a new one"
        ),
    )
}

/// `TrustDistributed` False: a `cacerts` dualmesh did not write.
pub fn foreign(namespace: &str, meshcluster: &str) -> Found {
    Found::fail(
        types::TRUST_DISTRIBUTED,
        reason::CACERTS_NOT_MANAGED,
        format!(
            "Secret {namespace}/{CACERTS} exists and was not written by dualmesh, so it is left as it is; to hand it over, label it {}={} and {MESH_CLUSTER_LABEL}={meshcluster} (dualmesh then replaces it with an intermediate of the mesh root; restart istiod to load it), or remove spec.trust",
            MANAGED_BY.0, MANAGED_BY.1,
        ),
    )
}

/// `TrustDistributed` False: the named root Secret is absent.
pub fn root_missing(secret_ref: &str) -> Found {
    Found::fail(
        types::TRUST_DISTRIBUTED,
        reason::ROOT_CA_MISSING,
        format!(
            "root CA Secret {secret_ref} not found; create it (keys {CA_CERT} and {CA_KEY}) or remove spec.trust.rootCASecretRef to have dualmesh generate one"
        ),
    )
}

/// `TrustDistributed` False: the root Secret fails a check.
pub fn root_invalid(secret_ref: &str, problem: &super::RootProblem) -> Found {
    Found::fail(
        types::TRUST_DISTRIBUTED,
        reason::ROOT_CA_INVALID,
        format!(
            "{}; what was distributed before stays",
            problem.message(secret_ref)
        ),
    )
}

/// The root Secret a MeshCluster with `trust` uses (in its own namespace).
pub fn root_secret_name(mesh_id: &str, trust: &crate::api::TrustSpec) -> String {
    match &trust.root_ca_secret_ref {
        Some(r) => r.name.clone(),
        None if trust.root_generation > 0 => format!(
            "{}-gen{}",
            super::generated_root_secret(mesh_id),
            trust.root_generation
        ),
        None => super::generated_root_secret(mesh_id),
    }
}

/// `TrustDistributed` False when other MeshClusters of the mesh use
/// another root: `peers` are (MeshCluster key, root Secret) of every other
/// MeshCluster with `spec.trust` in the same meshID and namespace. Two
/// roots in one mesh would split trust, so nothing is written.
pub fn root_conflict(mesh_id: &str, own_root: &str, peers: &[(String, String)]) -> Option<Found> {
    let mut other: Vec<String> = peers
        .iter()
        .filter(|(_, root)| root != own_root)
        .map(|(key, root)| format!("{key} uses {root}"))
        .collect();
    if other.is_empty() {
        return None;
    }
    other.sort();
    Some(Found::fail(
        types::TRUST_DISTRIBUTED,
        reason::ROOT_CA_CONFLICT,
        format!(
            "meshID {mesh_id} has one root: this MeshCluster uses {own_root}, but {}; name the same spec.trust.rootCASecretRef in every MeshCluster of the mesh (or none, for the generated one); nothing is written meanwhile",
            other.join(", ")
        ),
    ))
}

/// `TrustDistributed` when `spec.trust` is absent: None unless the old
/// status still carries the condition (then it says trust is off).
pub fn not_requested(had_condition: bool) -> Option<Found> {
    had_condition.then(|| {
        Found::ok(
            types::TRUST_DISTRIBUTED,
            reason::TRUST_NOT_REQUESTED,
            "spec.trust is absent: dualmesh writes no cacerts (what it wrote before stays)",
        )
    })
}

/// The body writing a trust Secret (`cacerts`, or a generated root in the
/// management cluster): a create's when `resource_version` is None (also
/// setting the type), an apply's carrying it otherwise. `Serialize` only,
/// no `Debug`.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretBody<'a> {
    api_version: &'static str,
    kind: &'static str,
    metadata: serde_json::Value,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    type_: Option<&'static str>,
    data: Encoded<'a>,
}

/// See [`SecretBody`].
pub fn secret_body<'a>(
    namespace: &str,
    name: &str,
    labels: &BTreeMap<String, String>,
    data: &'a SecretData,
    resource_version: Option<&str>,
) -> SecretBody<'a> {
    secret_body_annotated(
        namespace,
        name,
        labels,
        &BTreeMap::new(),
        data,
        resource_version,
    )
}

/// [`secret_body`] with `annotations` (none: the key is absent, so a
/// server-side apply removes annotations dualmesh set before).
pub fn secret_body_annotated<'a>(
    namespace: &str,
    name: &str,
    labels: &BTreeMap<String, String>,
    annotations: &BTreeMap<String, String>,
    data: &'a SecretData,
    resource_version: Option<&str>,
) -> SecretBody<'a> {
    let mut metadata = serde_json::json!({"name": name, "namespace": namespace, "labels": labels});
    if !annotations.is_empty() {
        metadata["annotations"] = serde_json::json!(annotations);
    }
    if let Some(rv) = resource_version {
        metadata["resourceVersion"] = serde_json::json!(rv);
    }
    SecretBody {
        api_version: "v1",
        kind: "Secret",
        metadata,
        type_: resource_version.is_none().then_some("Opaque"),
        data: Encoded(data),
    }
}

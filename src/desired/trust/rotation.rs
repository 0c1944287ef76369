//! Root rotation, driven: the multi-root sequence of Istio's "Plug in CA
//! certificates" (with `ISTIO_MULTIROOT_MESH=true`, which the rendered
//! Istio config sets whenever `spec.trust` is). When the mesh root changes
//! while a cluster's intermediate still chains to an old root its
//! `root-cert.pem` trusts, that cluster goes through
//!
//! 1. [`Phase::BothRootsTrusted`]: `root-cert.pem` holds the old roots and
//!    the new one; the old intermediate keeps signing;
//! 2. [`Phase::IntermediateReissued`]: an intermediate from the new root;
//!    `root-cert.pem` still holds both;
//! 3. done: `root-cert.pem` holds the new root alone.
//!
//! A cluster takes the next step only when every other cluster of the mesh
//! is in its phase or past it, and the grace period has passed since the
//! last of those in it entered it: every workload of the mesh trusts the
//! new root before any certificate from it exists, and every workload
//! certificate from an old root is renewed before that root stops being
//! trusted.
//!
//! Pure. The state lives where it survives a restart of the operator: in
//! `cacerts` itself (its content, and [`SINCE_ANNOTATION`] for when its
//! phase began) and in the peers' status.

use std::collections::BTreeMap;

use time::{Duration, OffsetDateTime};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::{CA_CERT, ROOT_CERT, Root, first_certificate, pem_of, rfc3339};
pub use crate::api::RootRotationPhase as Phase;
use crate::api::TrustStatus;
use crate::desired::secret_sync::{SecretData, SecretValue};

/// On `cacerts` during a rotation: when its phase began (RFC 3339).
pub const SINCE_ANNOTATION: &str = "dualmesh.io/root-rotation-since";

/// Where another cluster of the mesh is, from its MeshCluster's status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Progress {
    /// It has not acted on this root yet.
    NotStarted,
    /// In a phase, since then.
    In(Phase, OffsetDateTime),
    /// It trusts the new root alone.
    Done,
}

impl Progress {
    /// From a peer's `status.trust`, for the root with serial `root_serial`.
    pub fn of(status: Option<&TrustStatus>, root_serial: &str) -> Progress {
        match status {
            Some(s) if s.root_serial.as_deref() == Some(root_serial) => match &s.rotation {
                None => Progress::Done,
                Some(r) => match OffsetDateTime::from_unix_timestamp(r.since.0.as_second()) {
                    Ok(since) => Progress::In(r.phase, since),
                    Err(_) => Progress::NotStarted,
                },
            },
            _ => Progress::NotStarted,
        }
    }

    fn reached(&self, phase: Phase) -> bool {
        match self {
            Progress::NotStarted => false,
            Progress::In(p, _) => *p >= phase,
            Progress::Done => true,
        }
    }
}

/// The other clusters of the mesh (MeshCluster key and progress) and the grace period.
#[derive(Clone, Debug)]
pub struct Mesh {
    pub peers: Vec<(String, Progress)>,
    pub grace: Duration,
}

/// What a cluster's `cacerts` says about a rotation to `root`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Held {
    /// No rotation: the intermediate is from `root`, which alone is trusted,
    /// or it chains to nothing `cacerts` trusts (then it is issued anew).
    NotRotating,
    /// The intermediate chains to an old root `root-cert.pem` trusts and is
    /// valid; `root` is not trusted yet: the rotation starts.
    Start,
    /// In a phase.
    In(Phase),
}

/// The certificates (DER) of a PEM bundle.
fn certificates(pem: &[u8]) -> Vec<Vec<u8>> {
    pem::parse_many(pem)
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.tag() == "CERTIFICATE")
        .map(|p| p.into_contents())
        .collect()
}

/// Whether `cert` is signed by the certificate `issuer_der`.
fn signed_by(cert: &X509Certificate<'_>, issuer_der: &[u8]) -> bool {
    X509Certificate::from_der(issuer_der)
        .is_ok_and(|(_, issuer)| cert.verify_signature(Some(issuer.public_key())).is_ok())
}

/// Where `data` (a `cacerts` of dualmesh's) stands towards `root` at `now`.
pub fn assess(data: &SecretData, root: &Root, now: OffsetDateTime) -> Held {
    let Some(der) = data
        .get(CA_CERT)
        .and_then(|v| first_certificate(v.expose()))
    else {
        return Held::NotRotating;
    };
    let Ok((_, cert)) = X509Certificate::from_der(&der) else {
        return Held::NotRotating;
    };
    let trusted = data
        .get(ROOT_CERT)
        .map(|v| certificates(v.expose()))
        .unwrap_or_default();
    let new_trusted = trusted.iter().any(|t| t == root.der());
    let old: Vec<&Vec<u8>> = trusted.iter().filter(|t| *t != root.der()).collect();
    if signed_by(&cert, root.der()) {
        return match (new_trusted, old.is_empty()) {
            (true, false) => Held::In(Phase::IntermediateReissued),
            _ => Held::NotRotating,
        };
    }
    let valid = now < cert.validity().not_after.to_datetime();
    if !valid || !old.iter().any(|o| signed_by(&cert, o)) {
        return Held::NotRotating;
    }
    if new_trusted {
        Held::In(Phase::BothRootsTrusted)
    } else {
        Held::Start
    }
}

/// Waiting in a phase.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Waiting {
    pub phase: Phase,
    pub since: OffsetDateTime,
    /// Peers not in this phase yet, sorted.
    pub waiting_for: Vec<String>,
    /// The earliest next step once nobody is waited for.
    pub until: OffsetDateTime,
}

/// The next step of a rotation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Write `cacerts` with `data`, entering `phase` now (None: the
    /// rotation ends and the annotation goes).
    Write {
        data: SecretData,
        phase: Option<Phase>,
    },
    /// Issue an intermediate from the new root with `root-cert.pem` =
    /// `trusted`; phase [`Phase::IntermediateReissued`] from now.
    Reissue { trusted: String },
    /// Not yet.
    Wait(Waiting),
}

/// The bundle of `held` (PEM) with `root` appended.
fn with_root(held: &[u8], root: &Root) -> String {
    let mut bundle: String = certificates(held).iter().map(|d| pem_of(d)).collect();
    bundle.push_str(&root.cert_pem);
    bundle
}

fn replace(data: &SecretData, key: &str, value: String) -> SecretData {
    let mut out: SecretData = data.clone();
    out.insert(key.to_string(), SecretValue::from(value.into_bytes()));
    out
}

/// Where the wait of a cluster `since` `phase` ends, given the peers.
fn wait(phase: Phase, since: OffsetDateTime, mesh: &Mesh) -> Waiting {
    let mut waiting_for: Vec<String> = mesh
        .peers
        .iter()
        .filter(|(_, p)| !p.reached(phase))
        .map(|(k, _)| k.clone())
        .collect();
    waiting_for.sort();
    let last = mesh
        .peers
        .iter()
        .filter_map(|(_, p)| match p {
            Progress::In(q, s) if *q == phase => Some(*s),
            _ => None,
        })
        .fold(since, OffsetDateTime::max);
    Waiting {
        phase,
        since,
        waiting_for,
        until: last + mesh.grace,
    }
}

/// The next step for `data` (ours, in state `held` towards `root`, its
/// phase begun at `since`) at `now`. None when not rotating.
pub fn step(
    data: &SecretData,
    held: &Held,
    since: Option<OffsetDateTime>,
    root: &Root,
    mesh: &Mesh,
    now: OffsetDateTime,
) -> Option<Step> {
    let trusted = data
        .get(ROOT_CERT)
        .map(|v| v.expose().to_vec())
        .unwrap_or_default();
    let phase = match held {
        Held::NotRotating => return None,
        Held::Start => {
            return Some(Step::Write {
                data: replace(data, ROOT_CERT, with_root(&trusted, root)),
                phase: Some(Phase::BothRootsTrusted),
            });
        }
        Held::In(phase) => *phase,
    };
    // A phase without its start time (a person removed the annotation):
    // stamp it now, which only lengthens the wait.
    let Some(since) = since else {
        return Some(Step::Write {
            data: data.clone(),
            phase: Some(phase),
        });
    };
    let waiting = wait(phase, since, mesh);
    if !waiting.waiting_for.is_empty() || now < waiting.until {
        return Some(Step::Wait(waiting));
    }
    Some(match phase {
        Phase::BothRootsTrusted => Step::Reissue {
            trusted: String::from_utf8_lossy(&trusted).into_owned(),
        },
        Phase::IntermediateReissued => Step::Write {
            data: replace(data, ROOT_CERT, root.cert_pem.clone()),
            phase: None,
        },
    })
}

/// The annotations of a `cacerts` entering `phase` at `now`.
pub fn annotations(phase: Option<Phase>, now: OffsetDateTime) -> BTreeMap<String, String> {
    phase
        .map(|_| (SINCE_ANNOTATION.to_string(), rfc3339(now)))
        .into_iter()
        .collect()
}

/// [`SINCE_ANNOTATION`] of a `cacerts` read.
pub fn since(annotations: Option<&BTreeMap<String, String>>) -> Option<OffsetDateTime> {
    let value = annotations?.get(SINCE_ANNOTATION)?;
    OffsetDateTime::parse(value, &time::format_description::well_known::Rfc3339).ok()
}

/// The validity of the intermediate in `data`.
pub fn validity(data: &SecretData) -> Option<(OffsetDateTime, OffsetDateTime)> {
    let der = first_certificate(data.get(CA_CERT)?.expose())?;
    let (_, cert) = X509Certificate::from_der(&der).ok()?;
    Some((
        cert.validity().not_before.to_datetime(),
        cert.validity().not_after.to_datetime(),
    ))
}

/// The number of certificates `root-cert.pem` of `data` holds.
pub fn trusted_roots(data: &SecretData) -> usize {
    data.get(ROOT_CERT)
        .map(|v| certificates(v.expose()).len())
        .unwrap_or(0)
}

#[cfg(test)]
#[path = "rotation_tests.rs"]
mod tests;

//! Istio-native trust, the certificates: the mesh's root CA (read from the
//! user's Secret and vetted, or generated) and the intermediate CA each
//! cluster's istiod signs workload certificates with, plus the decision
//! whether the `cacerts` a cluster holds still fits ([`plan`]). Pure: the
//! time is passed in; key generation draws from ring's random source.
//!
//! Security rules encoded here:
//! - the root's private key goes into no output but the root's own Secret
//!   in the management cluster: [`Cacerts`] carries the root certificate
//!   only;
//! - problems ([`RootProblem`]) name the Secret and its keys, never a
//!   value, and `Debug` of every type holding a key shows lengths only;
//! - a root that fails a check yields a problem and no plan: nothing
//!   already distributed is replaced.
//!
//! Key type: ECDSA P-256 for the generated root and every intermediate.
//! ring (the crypto dualmesh already links through rustls) cannot generate
//! RSA keys; P-256 keys are made in microseconds, their certificates are a
//! fraction of RSA-4096's size (every `cert-chain.pem` travels to every
//! workload), and istiod, Envoy, Go's and OpenSSL's verifiers all accept
//! them. A user root may be RSA (PKCS#8) or ECDSA; intermediates stay P-256.

use std::fmt;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::secret_sync::{SecretData, SecretValue};

pub mod plan;
pub mod rotation;

/// The Secret istiod reads its plug-in CA from.
pub const CACERTS: &str = "cacerts";
/// `cacerts` keys, as Istio's "Plug in CA certificates" names them.
pub const CA_CERT: &str = "ca-cert.pem";
pub const CA_KEY: &str = "ca-key.pem";
pub const ROOT_CERT: &str = "root-cert.pem";
pub const CERT_CHAIN: &str = "cert-chain.pem";
/// The other spelling a user root Secret may use (a `kubernetes.io/tls` Secret).
pub const TLS_CERT: &str = "tls.crt";
pub const TLS_KEY: &str = "tls.key";

/// A generated root is valid this long (Istio's tools/certs `ROOTCA_DAYS`).
pub const ROOT_VALIDITY_DAYS: i64 = 3650;
/// Certificates start this long before `now`, for clocks that lag.
pub const BACKDATE: Duration = Duration::minutes(5);

/// The Secret, in the operator's namespace, holding a generated root for
/// `mesh_id` (a meshID is a label value: lowercased, '_' and '.' as '-').
pub fn generated_root_secret(mesh_id: &str) -> String {
    let id: String = mesh_id
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '-') => c,
            _ => '-',
        })
        .collect();
    format!("dualmesh-root-ca-{id}")
}

/// A root CA that passed every check (or was just generated).
pub struct Root {
    /// The root certificate, re-encoded from its DER (first certificate only).
    pub cert_pem: String,
    der: Vec<u8>,
    key: KeyPair,
    /// The root's `notAfter`.
    pub not_after: OffsetDateTime,
}

impl fmt::Debug for Root {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Root")
            .field("cert_pem", &format_args!("<{} bytes>", self.cert_pem.len()))
            .field("key", &"<not shown>")
            .field("not_after", &self.not_after)
            .finish()
    }
}

/// Why a user's root Secret cannot be used. `Display` names the Secret and
/// the keys, never a value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RootProblem {
    /// Neither `ca-cert.pem` nor `tls.crt`.
    NoCertificate,
    /// The certificate key is there, its private key is not.
    MissingKey {
        cert: &'static str,
        key: &'static str,
    },
    /// The certificate key does not hold a PEM X.509 certificate.
    NotACertificate { cert: &'static str },
    /// The certificate is not a CA (basicConstraints CA:true), or may not sign certificates.
    NotCa { cert: &'static str },
    /// The certificate's validity ended.
    Expired {
        cert: &'static str,
        not_after: String,
    },
    /// The certificate's validity has not begun.
    NotYetValid {
        cert: &'static str,
        not_before: String,
    },
    /// The key is not a PEM private key dualmesh can sign with.
    UnusableKey { key: &'static str },
    /// The key is not the certificate's.
    KeyMismatch {
        cert: &'static str,
        key: &'static str,
    },
}

impl RootProblem {
    /// The message for Secret `secret_ref` (`namespace/name`).
    pub fn message(&self, secret_ref: &str) -> String {
        format!("root CA Secret {secret_ref}: {self}")
    }
}

impl fmt::Display for RootProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RootProblem::NoCertificate => write!(
                f,
                "holds neither {CA_CERT} nor {TLS_CERT}; put the root certificate and its key under {CA_CERT} and {CA_KEY} (or {TLS_CERT} and {TLS_KEY})"
            ),
            RootProblem::MissingKey { cert, key } => {
                write!(
                    f,
                    "holds {cert} but no {key}; add the root's private key as {key}"
                )
            }
            RootProblem::NotACertificate { cert } => {
                write!(f, "{cert} is not a PEM X.509 certificate")
            }
            RootProblem::NotCa { cert } => write!(
                f,
                "the certificate in {cert} is not a CA (needs basicConstraints CA:true and, when keyUsage is set, keyCertSign)"
            ),
            RootProblem::Expired { cert, not_after } => {
                write!(
                    f,
                    "the certificate in {cert} expired at {not_after}; name a valid root"
                )
            }
            RootProblem::NotYetValid { cert, not_before } => write!(
                f,
                "the certificate in {cert} is not valid before {not_before}; check the clocks or name another root"
            ),
            RootProblem::UnusableKey { key } => write!(
                f,
                "{key} is not a PEM private key dualmesh can sign with (ECDSA P-256/P-384, Ed25519, or RSA in PKCS#8)"
            ),
            RootProblem::KeyMismatch { cert, key } => {
                write!(
                    f,
                    "{key} is not the private key of the certificate in {cert}"
                )
            }
        }
    }
}

/// RFC 3339, for messages.
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

/// The DER of the first PEM certificate in `pem`.
fn first_certificate(pem: &[u8]) -> Option<Vec<u8>> {
    pem::parse_many(pem)
        .ok()?
        .into_iter()
        .find(|p| p.tag() == "CERTIFICATE")
        .map(|p| p.into_contents())
}

fn pem_of(der: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new("CERTIFICATE", der.to_vec()),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

/// Whether `cert` is a CA that may sign certificates.
fn is_signing_ca(cert: &X509Certificate<'_>) -> bool {
    let ca = matches!(cert.basic_constraints(), Ok(Some(bc)) if bc.value.ca);
    let may_sign = match cert.key_usage() {
        Ok(Some(ku)) => ku.value.key_cert_sign(),
        Ok(None) => true,
        Err(_) => false,
    };
    ca && may_sign
}

/// Vets the user's root Secret `data` at `now`.
pub fn read_root(data: &SecretData, now: OffsetDateTime) -> Result<Root, RootProblem> {
    let (cert_key, key_key) = if data.contains_key(CA_CERT) {
        (CA_CERT, CA_KEY)
    } else if data.contains_key(TLS_CERT) {
        (TLS_CERT, TLS_KEY)
    } else {
        return Err(RootProblem::NoCertificate);
    };
    let key_pem = data.get(key_key).ok_or(RootProblem::MissingKey {
        cert: cert_key,
        key: key_key,
    })?;
    let not_a_cert = RootProblem::NotACertificate { cert: cert_key };
    let der = first_certificate(data[cert_key].expose()).ok_or(not_a_cert.clone())?;
    let (_, cert) = X509Certificate::from_der(&der).map_err(|_| not_a_cert)?;
    if !is_signing_ca(&cert) {
        return Err(RootProblem::NotCa { cert: cert_key });
    }
    let not_before = cert.validity().not_before.to_datetime();
    let not_after = cert.validity().not_after.to_datetime();
    if now > not_after {
        return Err(RootProblem::Expired {
            cert: cert_key,
            not_after: rfc3339(not_after),
        });
    }
    if now < not_before {
        return Err(RootProblem::NotYetValid {
            cert: cert_key,
            not_before: rfc3339(not_before),
        });
    }
    let key = std::str::from_utf8(key_pem.expose())
        .ok()
        .and_then(|pem| KeyPair::from_pem(pem).ok())
        .ok_or(RootProblem::UnusableKey { key: key_key })?;
    if key.public_key_raw() != cert.public_key().subject_public_key.data.as_ref() {
        return Err(RootProblem::KeyMismatch {
            cert: cert_key,
            key: key_key,
        });
    }
    Ok(Root {
        cert_pem: pem_of(&der),
        der,
        key,
        not_after,
    })
}

/// `t` without its fraction: certificates hold whole seconds, and what is
/// reported must equal what a later read of the certificate says.
fn whole_seconds(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_nanosecond(0).unwrap_or(t)
}

/// The distinguished name Istio's tools/certs gives its certificates.
fn istio_name(common_name: &str, locality: Option<&str>) -> rcgen::DistinguishedName {
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Istio");
    dn.push(DnType::CommonName, common_name);
    if let Some(l) = locality {
        dn.push(DnType::LocalityName, l);
    }
    dn
}

fn new_key() -> KeyPair {
    // Fails only without the operating system's random source, where no
    // TLS connection could be made either.
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("ring generates P-256 keys")
}

/// A new root CA: O=Istio, CN=Root CA, CA:true (critical), keyCertSign,
/// valid [`ROOT_VALIDITY_DAYS`] from `now` (less [`BACKDATE`]).
pub fn generate_root(now: OffsetDateTime) -> Root {
    let now = whole_seconds(now);
    let mut params = CertificateParams::default();
    params.distinguished_name = istio_name("Root CA", None);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = now - BACKDATE;
    params.not_after = now + Duration::days(ROOT_VALIDITY_DAYS);
    let key = new_key();
    let cert = params
        .self_signed(&key)
        .expect("a P-256 root from fixed parameters");
    Root {
        cert_pem: pem_of(cert.der()),
        der: cert.der().to_vec(),
        key,
        not_after: params.not_after,
    }
}

impl Root {
    /// The data of the root's own Secret (management cluster only).
    pub fn secret_data(&self) -> SecretData {
        SecretData::from([
            (
                CA_CERT.to_string(),
                SecretValue::from(self.cert_pem.as_bytes()),
            ),
            (
                CA_KEY.to_string(),
                SecretValue::from(self.key.serialize_pem().into_bytes()),
            ),
        ])
    }

    /// The root's DER.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The root certificate's serial number, as `openssl x509 -serial`
    /// prints it (hex, upper case, no separators). Public: the
    /// certificate is in every `istio-ca-root-cert` of the mesh.
    pub fn serial(&self) -> String {
        X509Certificate::from_der(&self.der)
            .map(|(_, c)| c.raw_serial().iter().map(|b| format!("{b:02X}")).collect())
            .unwrap_or_default()
    }
}

/// What a cluster's intermediate is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subject<'a> {
    /// `L=` of the intermediate.
    pub cluster_name: &'a str,
    /// The Istio namespace: the DNS SAN is `istiod.<namespace>.svc`.
    pub istio_namespace: &'a str,
}

impl Subject<'_> {
    /// The intermediate's DNS SAN.
    pub fn san(&self) -> String {
        format!("istiod.{}.svc", self.istio_namespace)
    }
}

/// The four keys of `cacerts`. The root's private key is not among them.
pub struct Cacerts {
    pub data: SecretData,
    /// The intermediate's `notBefore` and `notAfter`.
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

impl fmt::Debug for Cacerts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cacerts")
            .field("data", &self.data)
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .finish()
    }
}

/// An intermediate CA for `subject` from `root`: O=Istio, CN=Intermediate
/// CA, L=<cluster name>, CA:true pathlen:0, keyCertSign, DNS SAN
/// `istiod.<ns>.svc`; valid `validity_days` from `now` (less
/// [`BACKDATE`]), never past the root's end.
pub fn issue_intermediate(
    root: &Root,
    subject: &Subject<'_>,
    validity_days: i32,
    now: OffsetDateTime,
) -> Cacerts {
    issue_intermediate_trusting(root, subject, validity_days, now, &root.cert_pem)
}

/// [`issue_intermediate`] with `root-cert.pem` = `trusted` (PEM; during a
/// root rotation, the old roots and the new one).
pub fn issue_intermediate_trusting(
    root: &Root,
    subject: &Subject<'_>,
    validity_days: i32,
    now: OffsetDateTime,
    trusted: &str,
) -> Cacerts {
    let now = whole_seconds(now);
    let mut params = CertificateParams::default();
    params.distinguished_name = istio_name("Intermediate CA", Some(subject.cluster_name));
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.subject_alt_names = vec![SanType::DnsName(
        subject
            .san()
            .try_into()
            .expect("a DNS-1123 namespace makes an IA5 name"),
    )];
    params.use_authority_key_identifier_extension = true;
    params.not_before = now - BACKDATE;
    params.not_after = (now + Duration::days(i64::from(validity_days))).min(root.not_after);
    let issuer = Issuer::from_ca_cert_der(&root.der.as_slice().into(), &root.key)
        .expect("the root parsed before");
    let key = new_key();
    let cert = params
        .signed_by(&key, &issuer)
        .expect("an intermediate from fixed parameters");
    let chain = format!("{}{}", cert.pem(), root.cert_pem);
    Cacerts {
        data: SecretData::from([
            (
                CA_CERT.to_string(),
                SecretValue::from(cert.pem().into_bytes()),
            ),
            (
                CA_KEY.to_string(),
                SecretValue::from(key.serialize_pem().into_bytes()),
            ),
            (ROOT_CERT.to_string(), SecretValue::from(trusted.as_bytes())),
            (
                CERT_CHAIN.to_string(),
                SecretValue::from(chain.into_bytes()),
            ),
        ]),
        not_before: params.not_before,
        not_after: params.not_after,
    }
}

#[cfg(test)]
mod tests;

//! A plane's certificates (its CA, the apiserver's serving certificate, the
//! admin's client certificate, the service-account signing key) and the
//! kubeconfigs made from them, generated with rcgen.

use std::fs;
use std::path::Path;

use base64::Engine as _;
use kube::config::Kubeconfig;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

use crate::{ADMIN_USER, Result, io};

/// A kubeconfig for `user` (client certificate CN) in `groups`, signed by
/// the CA in `pki`, for the plane `plane` at `server`.
pub(crate) fn user_kubeconfig(
    pki: &Path,
    plane: &str,
    server: &str,
    user: &str,
    groups: &[&str],
) -> Result<String> {
    let read = |f: &str| fs::read_to_string(pki.join(f)).map_err(io(format!("read {f}")));
    let ca_key = KeyPair::from_pem(&read("ca.key")?)?;
    let issuer = Issuer::from_ca_cert_pem(&read("ca.crt")?, ca_key)?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, user);
    for g in groups {
        params.distinguished_name.push(DnType::OrganizationName, *g);
    }
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, &issuer)?;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    Ok(format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: {n}\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\nusers:\n- name: {u}\n  user:\n    client-certificate-data: {cert}\n    client-key-data: {key}\ncontexts:\n- name: {n}\n  context:\n    cluster: {n}\n    user: {u}\ncurrent-context: {n}\n",
        n = plane,
        ca = b64(&read("ca.crt")?),
        u = user.replace(':', "-"),
        cert = b64(&cert.pem()),
        key = b64(&key.serialize_pem()),
    ))
}

/// The certificates of one plane: a CA, the apiserver's serving certificate
/// (valid for 127.0.0.1, ::1 and localhost), an admin client certificate in
/// `system:masters`, and the service-account signing key.
pub(crate) struct Certs {
    pub(crate) ca_pem: String,
    pub(crate) ca_key_pem: String,
    pub(crate) server_pem: String,
    pub(crate) server_key_pem: String,
    pub(crate) admin_pem: String,
    pub(crate) admin_key_pem: String,
    pub(crate) sa_key_pem: String,
    pub(crate) sa_pub_pem: String,
}

impl Certs {
    pub(crate) fn generate() -> Result<Self> {
        let ca_key = KeyPair::generate()?;
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.distinguished_name
            .push(DnType::CommonName, "testplane-ca");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca.self_signed(&ca_key)?;
        let ca_key_pem = ca_key.serialize_pem();
        let issuer = Issuer::new(ca, ca_key);

        let server_key = KeyPair::generate()?;
        let mut server = CertificateParams::new(vec![
            "localhost".to_string(),
            "kubernetes".to_string(),
            "kubernetes.default.svc".to_string(),
        ])?;
        server
            .distinguished_name
            .push(DnType::CommonName, "kube-apiserver");
        for ip in ["127.0.0.1", "::1", "10.96.0.1", "fd00:10:96::1"] {
            server
                .subject_alt_names
                .push(SanType::IpAddress(ip.parse().expect("valid IP")));
        }
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_cert = server.signed_by(&server_key, &issuer)?;

        let admin_key = KeyPair::generate()?;
        let mut admin = CertificateParams::new(Vec::<String>::new())?;
        admin
            .distinguished_name
            .push(DnType::CommonName, ADMIN_USER);
        admin
            .distinguished_name
            .push(DnType::OrganizationName, "system:masters");
        admin.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let admin_cert = admin.signed_by(&admin_key, &issuer)?;

        let sa_key = KeyPair::generate()?;
        Ok(Certs {
            ca_pem: ca_cert.pem(),
            ca_key_pem,
            server_pem: server_cert.pem(),
            server_key_pem: server_key.serialize_pem(),
            admin_pem: admin_cert.pem(),
            admin_key_pem: admin_key.serialize_pem(),
            sa_key_pem: sa_key.serialize_pem(),
            sa_pub_pem: sa_key.public_key_pem(),
        })
    }

    pub(crate) fn kubeconfig(&self, name: &str, port: u16) -> Kubeconfig {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let yaml = format!(
            r#"apiVersion: v1
kind: Config
clusters:
- name: {name}
  cluster:
    server: https://127.0.0.1:{port}
    certificate-authority-data: {ca}
users:
- name: {name}-admin
  user:
    client-certificate-data: {cert}
    client-key-data: {key}
contexts:
- name: {name}
  context:
    cluster: {name}
    user: {name}-admin
current-context: {name}
"#,
            ca = b64(&self.ca_pem),
            cert = b64(&self.admin_pem),
            key = b64(&self.admin_key_pem),
        );
        Kubeconfig::from_yaml(&yaml).expect("the generated kubeconfig parses")
    }
}

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use time::{Duration, OffsetDateTime};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use super::plan::{self, Decision, Issue, Observed, RotationView};
use super::rotation::{Mesh, Phase, Step};
use super::*;

fn now() -> OffsetDateTime {
    // 2026-12-03T10:00:00Z
    OffsetDateTime::from_unix_timestamp(1_796_292_000).unwrap()
}

/// A mesh of one cluster, no rotation under way.
fn alone() -> RotationView {
    RotationView {
        mesh: Mesh {
            peers: Vec::new(),
            grace: Duration::ZERO,
        },
        since: None,
    }
}

fn alpha() -> Subject<'static> {
    Subject {
        cluster_name: "cluster-alpha",
        istio_namespace: "istio-system",
    }
}

fn data(entries: &[(&str, &[u8])]) -> SecretData {
    entries
        .iter()
        .map(|(k, v)| (k.to_string(), SecretValue::from(*v)))
        .collect()
}

fn text(d: &SecretData, key: &str) -> String {
    String::from_utf8(d[key].expose().to_vec()).unwrap()
}

/// Facts of a certificate, in one comparable struct.
#[derive(Debug, PartialEq)]
struct Facts {
    subject: String,
    issuer: String,
    ca: bool,
    path_len: Option<u32>,
    basic_constraints_critical: bool,
    key_cert_sign: bool,
    key_usage_critical: bool,
    dns_sans: Vec<String>,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    ecdsa_p256: bool,
}

fn facts(pem: &[u8]) -> Facts {
    let der = first_certificate(pem).unwrap();
    let (_, c) = X509Certificate::from_der(&der).unwrap();
    let bc = c.basic_constraints().unwrap().unwrap();
    let ku = c.key_usage().unwrap().unwrap();
    let dns_sans = match c.subject_alternative_name().unwrap() {
        Some(san) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::DNSName(d) => Some(d.to_string()),
                _ => None,
            })
            .collect(),
        None => Vec::new(),
    };
    Facts {
        subject: c.subject().to_string(),
        issuer: c.issuer().to_string(),
        ca: bc.value.ca,
        path_len: bc.value.path_len_constraint,
        basic_constraints_critical: bc.critical,
        key_cert_sign: ku.value.key_cert_sign(),
        key_usage_critical: ku.critical,
        dns_sans,
        not_before: c.validity().not_before.to_datetime(),
        not_after: c.validity().not_after.to_datetime(),
        ecdsa_p256: c.public_key().algorithm.algorithm.to_id_string() == "1.2.840.10045.2.1",
    }
}

#[test]
fn a_generated_root_has_the_profile_of_istios_tools_certs_root() {
    let root = generate_root(now());
    assert_eq!(
        facts(root.cert_pem.as_bytes()),
        Facts {
            subject: "O=Istio, CN=Root CA".into(),
            issuer: "O=Istio, CN=Root CA".into(),
            ca: true,
            path_len: None,
            basic_constraints_critical: true,
            key_cert_sign: true,
            key_usage_critical: true,
            dns_sans: vec![],
            not_before: now() - Duration::minutes(5),
            not_after: now() + Duration::days(3650),
            ecdsa_p256: true,
        }
    );
    // Its own Secret holds the certificate and a key that reads back as
    // the same root.
    let again = read_root(&root.secret_data(), now()).unwrap();
    assert_eq!(again.cert_pem, root.cert_pem);
    assert_eq!(again.not_after, root.not_after);
}

#[test]
fn an_intermediate_is_a_pathlen_0_ca_for_istiod_of_its_cluster_chained_to_the_root() {
    let root = generate_root(now());
    let cacerts = issue_intermediate(&root, &alpha(), 365, now());
    let d = &cacerts.data;
    assert_eq!(
        d.keys().collect::<Vec<_>>(),
        [CA_CERT, CA_KEY, CERT_CHAIN, ROOT_CERT]
    );
    assert_eq!(
        facts(d[CA_CERT].expose()),
        Facts {
            subject: "O=Istio, CN=Intermediate CA, L=cluster-alpha".into(),
            issuer: "O=Istio, CN=Root CA".into(),
            ca: true,
            path_len: Some(0),
            basic_constraints_critical: true,
            key_cert_sign: true,
            key_usage_critical: true,
            dns_sans: vec!["istiod.istio-system.svc".into()],
            not_before: now() - Duration::minutes(5),
            not_after: now() + Duration::days(365),
            ecdsa_p256: true,
        }
    );
    assert_eq!(
        (cacerts.not_before, cacerts.not_after),
        (now() - Duration::minutes(5), now() + Duration::days(365))
    );
    assert_eq!(text(d, ROOT_CERT), root.cert_pem);
    assert_eq!(
        text(d, CERT_CHAIN),
        format!("{}{}", text(d, CA_CERT), root.cert_pem)
    );
    // The key in cacerts is the intermediate's, never the root's.
    let root_key = text(&root.secret_data(), CA_KEY);
    assert_ne!(text(d, CA_KEY), root_key);
    assert!(!d.values().any(|v| v.expose() == root_key.as_bytes()));
    // Signed by the root.
    let inter_der = first_certificate(d[CA_CERT].expose()).unwrap();
    let (_, inter) = X509Certificate::from_der(&inter_der).unwrap();
    let (_, r) = X509Certificate::from_der(root.der()).unwrap();
    inter.verify_signature(Some(r.public_key())).unwrap();
}

#[test]
fn an_intermediate_never_outlives_its_root() {
    let root = generate_root(now());
    let late = root.not_after - Duration::days(10);
    let cacerts = issue_intermediate(&root, &alpha(), 365, late);
    assert_eq!(cacerts.not_after, root.not_after);
}

fn cert_with(params: CertificateParams) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn ca_params() -> CertificateParams {
    let mut p = CertificateParams::default();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.not_before = now() - Duration::days(1);
    p.not_after = now() + Duration::days(1);
    p
}

#[test]
fn a_user_root_that_fails_a_check_is_refused_with_a_message_naming_the_secret_and_problem() {
    let (ca, ca_key) = cert_with(ca_params());
    let (_, other_key) = cert_with(ca_params());
    let mut leaf = ca_params();
    leaf.is_ca = IsCa::NoCa;
    let (leaf, leaf_key) = cert_with(leaf);
    let mut old = ca_params();
    old.not_before = now() - Duration::days(30);
    old.not_after = now() - Duration::days(1);
    let (old, old_key) = cert_with(old);
    let mut future = ca_params();
    future.not_before = now() + Duration::days(1);
    future.not_after = now() + Duration::days(2);
    let (future, future_key) = cert_with(future);
    let (ca, ca_key) = (ca.as_bytes(), ca_key.as_bytes());
    let cases: Vec<(SecretData, &str)> = vec![
        (
            data(&[("token", b"x")]),
            "holds neither ca-cert.pem nor tls.crt; put the root certificate and its key under ca-cert.pem and ca-key.pem (or tls.crt and tls.key)",
        ),
        (
            data(&[(CA_CERT, ca)]),
            "holds ca-cert.pem but no ca-key.pem; add the root's private key as ca-key.pem",
        ),
        (
            data(&[(TLS_CERT, ca)]),
            "holds tls.crt but no tls.key; add the root's private key as tls.key",
        ),
        (
            data(&[(CA_CERT, b"not pem"), (CA_KEY, ca_key)]),
            "ca-cert.pem is not a PEM X.509 certificate",
        ),
        (
            data(&[(CA_CERT, leaf.as_bytes()), (CA_KEY, leaf_key.as_bytes())]),
            "the certificate in ca-cert.pem is not a CA (needs basicConstraints CA:true and, when keyUsage is set, keyCertSign)",
        ),
        (
            data(&[(CA_CERT, old.as_bytes()), (CA_KEY, old_key.as_bytes())]),
            "the certificate in ca-cert.pem expired at 2026-12-02T10:00:00Z; name a valid root",
        ),
        (
            data(&[
                (CA_CERT, future.as_bytes()),
                (CA_KEY, future_key.as_bytes()),
            ]),
            "the certificate in ca-cert.pem is not valid before 2026-12-04T10:00:00Z; check the clocks or name another root",
        ),
        (
            data(&[
                (CA_CERT, ca),
                (
                    CA_KEY,
                    b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
                ),
            ]),
            "ca-key.pem is not a PEM private key dualmesh can sign with (ECDSA P-256/P-384, Ed25519, or RSA in PKCS#8)",
        ),
        (
            data(&[(CA_CERT, ca), (CA_KEY, other_key.as_bytes())]),
            "ca-key.pem is not the private key of the certificate in ca-cert.pem",
        ),
        (
            data(&[(TLS_CERT, ca), (TLS_KEY, other_key.as_bytes())]),
            "tls.key is not the private key of the certificate in tls.crt",
        ),
    ];
    for (d, want) in cases {
        let problem = read_root(&d, now()).unwrap_err();
        assert_eq!(
            problem.message("dualmesh/mesh-root"),
            format!("root CA Secret dualmesh/mesh-root: {want}")
        );
    }
    // The good pair, under either spelling.
    for (c, k) in [(CA_CERT, CA_KEY), (TLS_CERT, TLS_KEY)] {
        read_root(&data(&[(c, ca), (k, ca_key)]), now()).unwrap();
    }
}

#[test]
fn no_key_byte_shows_in_debug_or_in_a_message() {
    let root = generate_root(now());
    let cacerts = issue_intermediate(&root, &alpha(), 365, now());
    let keys = [
        text(&root.secret_data(), CA_KEY),
        text(&cacerts.data, CA_KEY),
    ];
    let shown = format!("{root:?} {cacerts:?}");
    for key in &keys {
        // Every base64 line of the PEM body.
        for line in key.lines().filter(|l| !l.starts_with("-----")) {
            assert!(!shown.contains(line), "a key line shows in {shown}");
        }
    }
    assert!(!shown.contains("PRIVATE KEY"));
    let wrong = data(&[
        (CA_CERT, root.cert_pem.as_bytes()),
        (CA_KEY, keys[1].as_bytes()),
    ]);
    let message = read_root(&wrong, now()).unwrap_err().message("ns/r");
    assert!(
        keys.iter()
            .all(|k| k.lines().skip(1).all(|l| !message.contains(l)))
    );
}

#[test]
fn a_fitting_intermediate_is_kept_until_two_thirds_of_its_validity() {
    let root = generate_root(now());
    let cacerts = issue_intermediate(&root, &alpha(), 365, now());
    let ours = Observed::Ours(&cacerts.data);
    let start = now() - Duration::minutes(5);
    let end = now() + Duration::days(365);
    let renew = plan::renew_at(start, end);
    assert_eq!(renew, start + Duration::seconds(365 * 86_400 * 2 / 3 + 200));
    let keep = Decision::Keep {
        not_before: start,
        not_after: end,
    };
    assert_eq!(plan::decide(&ours, &root, &alpha(), &alone(), now()), keep);
    assert_eq!(
        plan::decide(
            &ours,
            &root,
            &alpha(),
            &alone(),
            renew - Duration::seconds(1)
        ),
        keep
    );
    assert_eq!(
        plan::decide(&ours, &root, &alpha(), &alone(), renew),
        Decision::Issue(Issue::RenewalDue)
    );
}

#[test]
fn cacerts_is_reissued_when_absent_broken_from_another_root_or_for_another_cluster() {
    let root = generate_root(now());
    let other_root = generate_root(now());
    let cacerts = issue_intermediate(&root, &alpha(), 365, now());
    let decide =
        |o: &Observed<'_>, r: &Root, s: &Subject<'_>| plan::decide(o, r, s, &alone(), now());
    assert_eq!(
        decide(&Observed::Absent, &root, &alpha()),
        Decision::Issue(Issue::Absent)
    );
    assert_eq!(
        decide(&Observed::Foreign, &root, &alpha()),
        Decision::Foreign
    );
    let ours = Observed::Ours(&cacerts.data);
    // A valid intermediate of a root the cluster trusts moves to a new
    // root by the rotation (rotation_tests.rs), starting with the bundle.
    let mut both = text(&cacerts.data, ROOT_CERT);
    both.push_str(&other_root.cert_pem);
    let mut extended = cacerts.data.clone();
    extended.insert(ROOT_CERT.into(), SecretValue::from(both.into_bytes()));
    assert_eq!(
        decide(&ours, &other_root, &alpha()),
        Decision::Rotate(Step::Write {
            data: extended,
            phase: Some(Phase::BothRootsTrusted)
        })
    );
    // One whose issuer is not trusted by its own root-cert.pem is issued anew.
    let mut untrusted = cacerts.data.clone();
    untrusted.insert(
        ROOT_CERT.into(),
        SecretValue::from(other_root.cert_pem.as_bytes()),
    );
    assert_eq!(
        decide(&Observed::Ours(&untrusted), &root, &alpha()),
        Decision::Issue(Issue::RootChanged)
    );
    let beta = Subject {
        cluster_name: "cluster-beta",
        istio_namespace: "istio-system",
    };
    assert_eq!(
        decide(&ours, &root, &beta),
        Decision::Issue(Issue::SubjectChanged)
    );
    let moved = Subject {
        cluster_name: "cluster-alpha",
        istio_namespace: "istio-prod",
    };
    assert_eq!(
        decide(&ours, &root, &moved),
        Decision::Issue(Issue::SubjectChanged)
    );
    let mut swapped = cacerts.data.clone();
    let foreign_key = issue_intermediate(&root, &alpha(), 365, now()).data[CA_KEY].clone();
    swapped.insert(CA_KEY.into(), foreign_key);
    assert_eq!(
        decide(&Observed::Ours(&swapped), &root, &alpha()),
        Decision::Issue(Issue::Unreadable)
    );
    let mut gone = cacerts.data.clone();
    gone.remove(CA_CERT);
    assert_eq!(
        decide(&Observed::Ours(&gone), &root, &alpha()),
        Decision::Issue(Issue::Unreadable)
    );
}

#[test]
fn cacerts_is_ours_only_with_both_labels_for_this_meshcluster() {
    let ours = plan::labels("alpha");
    assert!(plan::is_ours(&ours, "alpha"));
    assert!(!plan::is_ours(&ours, "beta"));
    let mut no_manager = ours.clone();
    no_manager.remove("app.kubernetes.io/managed-by");
    assert!(!plan::is_ours(&no_manager, "alpha"));
    assert!(!plan::is_ours(&Default::default(), "alpha"));
}

#[test]
fn a_generated_roots_secret_name_is_a_dns_name_per_mesh_id() {
    assert_eq!(generated_root_secret("mesh1"), "dualmesh-root-ca-mesh1");
    assert_eq!(
        generated_root_secret("Mesh_1.a"),
        "dualmesh-root-ca-mesh-1-a"
    );
}

#[test]
fn the_conditions_say_what_to_do() {
    let start = now();
    let end = now() + Duration::days(3);
    assert_eq!(
        plan::distributed(
            "istio-system",
            "dualmesh/dualmesh-root-ca-mesh1",
            start,
            end
        )
        .message,
        "Secret istio-system/cacerts holds an intermediate CA from root dualmesh/dualmesh-root-ca-mesh1, valid until 2026-12-06T10:00:00Z, renewed from 2026-12-05T10:00:00Z"
    );
    assert_eq!(
        plan::foreign("istio-system", "alpha").message,
        "Secret istio-system/cacerts exists and was not written by dualmesh, so it is left as it is; to hand it over, label it app.kubernetes.io/managed-by=dualmesh and dualmesh.io/meshcluster=alpha (dualmesh then replaces it with an intermediate of the mesh root; restart istiod to load it), or remove spec.trust"
    );
    assert_eq!(plan::not_requested(false), None);
    assert!(plan::not_requested(true).unwrap().status);
}

#[test]
fn meshclusters_of_one_mesh_naming_different_roots_are_refused() {
    let peers = vec![
        ("ns/gamma".to_string(), "corp-root".to_string()),
        ("ns/beta".to_string(), "dualmesh-root-ca-mesh1".to_string()),
        ("ns/delta".to_string(), "old-root".to_string()),
    ];
    assert_eq!(plan::root_conflict("mesh1", "corp-root", &peers[..1]), None);
    let found = plan::root_conflict("mesh1", "corp-root", &peers).unwrap();
    assert_eq!(
        (found.status, found.reason, found.message.as_str()),
        (
            false,
            "RootCAConflict",
            "meshID mesh1 has one root: this MeshCluster uses corp-root, but ns/beta uses dualmesh-root-ca-mesh1, ns/delta uses old-root; name the same spec.trust.rootCASecretRef in every MeshCluster of the mesh (or none, for the generated one); nothing is written meanwhile"
        )
    );
}

//! Istio-native trust across real control planes: dualmesh in alpha gives
//! alpha (local) and beta (member) a `cacerts` from one generated mesh root;
//! Debian's openssl accepts each intermediate against the root; the root's
//! key reaches no member, and no key appears in the log, Events or status.
//! A named root Secret that is missing, lacks a key, holds a non-CA
//! certificate, a key that does not match or an expired certificate is
//! reported by name and replaces nothing, as are two roots in one meshID; a
//! `cacerts` dualmesh did not write is left alone until it is handed over.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use common::trust::{openssl_verify, start_istio_native_mesh};
use common::*;
use dualmesh::api::{DualStackPolicy, MeshCluster, RootCaSecretReference, TrustSpec};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use testplane::ControlPlane;

const WAIT: Duration = Duration::from_secs(30);

async fn cacerts(client: &Client, ns: &str) -> Option<(BTreeMap<String, String>, String)> {
    let s = Api::<Secret>::namespaced(client.clone(), ns)
        .get_opt("cacerts")
        .await
        .ok()??;
    let data = s
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8(v.0).unwrap()))
        .collect();
    Some((data, s.metadata.resource_version.unwrap()))
}

fn openssl_subject(dir: &Path, pem: &str) -> String {
    std::fs::write(dir.join("cert.pem"), pem).unwrap();
    let out = std::process::Command::new("openssl")
        .current_dir(dir)
        .args(["x509", "-noout", "-subject", "-in", "cert.pem"])
        .output()
        .expect("run openssl");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Makes the operator reconcile MeshCluster `name` (a new generation: it
/// reconciles on spec changes), by a validity change, which applies to the
/// next intermediate and re-issues none.
async fn poke(client: &Client, name: &str) {
    Api::<MeshCluster>::namespaced(client.clone(), NS)
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(
                serde_json::json!({"spec": {"trust": {"intermediateValidityDays": 400}}}),
            ),
        )
        .await
        .unwrap();
}

fn with_trust(file: &str, trust: TrustSpec) -> MeshCluster {
    let mut mc: MeshCluster = example(file);
    mc.spec.trust = Some(trust);
    mc
}

/// The base64 body lines of a PEM private key (what a leak would show).
fn key_lines(pem: &str) -> Vec<String> {
    pem.lines()
        .filter(|l| !l.starts_with("-----") && l.len() > 16)
        .map(String::from)
        .collect()
}

#[tokio::test]
async fn one_generated_root_gives_alpha_and_beta_intermediates_that_openssl_accepts() {
    let alpha = ControlPlane::start_named("trust-alpha")
        .await
        .expect("alpha");
    let beta = ControlPlane::start_named("trust-beta").await.expect("beta");
    let a = alpha.client().await.unwrap();
    let b = beta.client().await.unwrap();
    let operator = start_istio_native_mesh(&alpha, &beta, "debug").await;

    // One root, generated once, in the operator's namespace of alpha.
    let root = secret_value(&a, NS, "dualmesh-root-ca-mesh1", "ca-cert.pem")
        .await
        .expect("the generated root");
    let root_key = secret_value(&a, NS, "dualmesh-root-ca-mesh1", "ca-key.pem")
        .await
        .expect("the generated root's key");
    let (in_alpha, _) = cacerts(&a, ISTIO_NS).await.expect("alpha's cacerts");
    let (in_beta, beta_rv) = cacerts(&b, ISTIO_NS).await.expect("beta's cacerts");
    let dir = tempfile::tempdir().unwrap();
    for (cluster, data) in [("cluster-alpha", &in_alpha), ("cluster-beta", &in_beta)] {
        assert_eq!(
            data.keys().collect::<Vec<_>>(),
            [
                "ca-cert.pem",
                "ca-key.pem",
                "cert-chain.pem",
                "root-cert.pem"
            ]
        );
        assert_eq!(data["root-cert.pem"], root, "{cluster}: the mesh root");
        assert_eq!(
            data["cert-chain.pem"],
            format!("{}{root}", data["ca-cert.pem"]),
            "{cluster}: intermediate then root"
        );
        assert_eq!(openssl_verify(dir.path(), data).1, "ca-cert.pem: OK\n");
        assert_eq!(
            openssl_subject(dir.path(), &data["ca-cert.pem"]),
            format!("subject=O = Istio, CN = Intermediate CA, L = {cluster}")
        );
        // The root's private key stays in the management cluster.
        assert_ne!(data["ca-key.pem"], root_key);
        for line in key_lines(&root_key) {
            assert!(data.values().all(|v| !v.contains(&line)), "{cluster}");
        }
    }
    assert_eq!(
        openssl_subject(dir.path(), &root),
        "subject=O = Istio, CN = Root CA"
    );
    assert_ne!(in_alpha["ca-cert.pem"], in_beta["ca-cert.pem"]);

    // The expiry metric, per MeshCluster.
    let (_, metrics) = http_get(http_addr(&operator).await, "/metrics").await;
    for name in ["alpha", "beta"] {
        let series = format!(
            "dualmesh_trust_intermediate_expiry_timestamp_seconds{{namespace=\"{NS}\",meshcluster=\"{name}\"}}"
        );
        let expiry = metric(&metrics, &series).unwrap_or_else(|| panic!("{series} in {metrics}"));
        let in_a_year = (std::time::SystemTime::now() + Duration::from_secs(365 * 86_400))
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!((expiry - in_a_year).abs() < 600.0, "{series} = {expiry}");
    }

    // Another reconcile of beta keeps its intermediate (no re-issue).
    poke(&a, "beta").await;
    wait_writes_settled(&alpha, WAIT).await;
    assert_eq!(cacerts(&b, ISTIO_NS).await.unwrap().1, beta_rv);

    // No private key line in the log, the Events or the status.
    let log = operator.log();
    assert!(log.contains("wrote cacerts"), "the operator's log");
    let mut needles = key_lines(&root_key);
    needles.extend(key_lines(&in_alpha["ca-key.pem"]));
    needles.extend(key_lines(&in_beta["ca-key.pem"]));
    let events = serde_json::to_string(
        &Api::<k8s_openapi::api::core::v1::Event>::all(a.clone())
            .list(&Default::default())
            .await
            .unwrap()
            .items,
    )
    .unwrap();
    let statuses = all_statuses(&a).await;
    assert!(statuses.contains("intermediateNotAfter"));
    for (what, haystack) in [("log", &log), ("Events", &events), ("status", &statuses)] {
        for needle in &needles {
            assert!(
                !haystack.contains(needle.as_str()),
                "a key line in the {what}"
            );
        }
    }
}

fn ca(not_before: i64, not_after: i64, is_ca: bool) -> (String, String) {
    let now = time::OffsetDateTime::now_utc();
    let mut p = CertificateParams::default();
    p.is_ca = if is_ca {
        IsCa::Ca(BasicConstraints::Unconstrained)
    } else {
        IsCa::NoCa
    };
    p.not_before = now + time::Duration::days(not_before);
    p.not_after = now + time::Duration::days(not_after);
    let key = KeyPair::generate().unwrap();
    (p.self_signed(&key).unwrap().pem(), key.serialize_pem())
}

#[tokio::test]
async fn a_bad_root_is_reported_by_name_and_a_foreign_cacerts_is_left_alone() {
    let alpha = ControlPlane::start_named("trust-bad").await.expect("alpha");
    let a = alpha.client().await.unwrap();
    install_dualmesh_crds(&a).await;
    let _operator = start_operator(&alpha, "operator.log", LOG, &[]);
    create_policy(&a, &example::<DualStackPolicy>("policy-ipv6-only.yaml")).await;
    let named = TrustSpec {
        root_ca_secret_ref: Some(RootCaSecretReference {
            name: "corp-root".into(),
        }),
        ..TrustSpec::default()
    };
    create_meshcluster(&a, &with_trust("meshcluster-alpha.yaml", named.clone())).await;
    let (_, message) = wait_mc(
        &a,
        "alpha",
        "TrustDistributed",
        "False",
        "RootCAMissing",
        WAIT,
    )
    .await;
    assert_eq!(
        message,
        "root CA Secret dualmesh-system/corp-root not found; create it (keys ca-cert.pem and ca-key.pem) or remove spec.trust.rootCASecretRef to have dualmesh generate one"
    );

    let (good, good_key) = ca(-1, 3650, true);
    put_secret(
        &a,
        NS,
        "corp-root",
        &[("tls.crt", &good), ("tls.key", &good_key)],
    )
    .await;
    wait_mc(&a, "alpha", "TrustDistributed", "True", "Distributed", WAIT).await;
    let (distributed, rv) = cacerts(&a, ISTIO_NS).await.unwrap();
    assert_eq!(distributed["root-cert.pem"], good);

    let (leaf, leaf_key) = ca(-1, 30, false);
    let (old, old_key) = ca(-30, -1, true);
    let (_, other_key) = ca(-1, 30, true);
    let prefix = "root CA Secret dualmesh-system/corp-root: ";
    let cases: [(Vec<(&str, &str)>, &str); 4] = [
        (
            vec![("ca-cert.pem", &good)],
            "holds ca-cert.pem but no ca-key.pem; add the root's private key as ca-key.pem",
        ),
        (
            vec![("ca-cert.pem", &leaf), ("ca-key.pem", &leaf_key)],
            "the certificate in ca-cert.pem is not a CA (needs basicConstraints CA:true and, when keyUsage is set, keyCertSign)",
        ),
        (
            vec![("tls.crt", &good), ("tls.key", &other_key)],
            "tls.key is not the private key of the certificate in tls.crt",
        ),
        (
            vec![("ca-cert.pem", &old), ("ca-key.pem", &old_key)],
            "expired at ",
        ),
    ];
    for (data, want) in cases {
        put_secret(&a, NS, "corp-root", &data).await;
        let (_, message) = wait_mc(
            &a,
            "alpha",
            "TrustDistributed",
            "False",
            "RootCAInvalid",
            WAIT,
        )
        .await;
        assert!(
            message.starts_with(prefix) && message.contains(want),
            "{message}"
        );
        assert!(
            message.ends_with("; what was distributed before stays"),
            "{message}"
        );
        // Nothing distributed is removed or replaced.
        assert_eq!(
            cacerts(&a, ISTIO_NS).await.unwrap(),
            (distributed.clone(), rv.clone())
        );
        // Back to good between cases, so each case is a new condition message.
        put_secret(
            &a,
            NS,
            "corp-root",
            &[("tls.crt", &good), ("tls.key", &good_key)],
        )
        .await;
        wait_mc(&a, "alpha", "TrustDistributed", "True", "Distributed", WAIT).await;
    }

    // A cacerts someone else wrote, in a second Istio namespace.
    put_secret(&a, "istio-other", "cacerts", &[("ca-cert.pem", "theirs")]).await;
    let mut other = with_trust("meshcluster-alpha.yaml", named);
    other.metadata.name = Some("other".into());
    other.spec.cluster_name = "cluster-other".into();
    other.spec.istio.namespace = "istio-other".into();
    create_meshcluster(&a, &other).await;
    let (_, message) = wait_mc(
        &a,
        "other",
        "TrustDistributed",
        "False",
        "CacertsNotManaged",
        WAIT,
    )
    .await;
    assert!(message.starts_with("Secret istio-other/cacerts exists and was not written by dualmesh, so it is left as it is; to hand it over, label it app.kubernetes.io/managed-by=dualmesh and dualmesh.io/meshcluster=other"), "{message}");
    let theirs = cacerts(&a, "istio-other").await.unwrap();
    assert_eq!(
        theirs.0,
        BTreeMap::from([("ca-cert.pem".into(), "theirs".into())])
    );
    // Handed over: dualmesh replaces it.
    Api::<Secret>::namespaced(a.clone(), "istio-other")
        .patch(
            "cacerts",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"labels": {
                "app.kubernetes.io/managed-by": "dualmesh",
                "dualmesh.io/meshcluster": "other",
            }}})),
        )
        .await
        .unwrap();
    // cacerts is not watched: the next reconcile (the 5-minute resync, or
    // at once on a change of the MeshCluster's spec, as here) takes it over.
    poke(&a, "other").await;
    wait_mc(&a, "other", "TrustDistributed", "True", "Distributed", WAIT).await;
    let (taken, _) = cacerts(&a, "istio-other").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(openssl_verify(dir.path(), &taken).1, "ca-cert.pem: OK\n");

    // One root per meshID: other switching to the generated root conflicts
    // with alpha's corp-root; both say so and nothing is rewritten. Back to
    // corp-root, both recover (alpha is looked at again when other changes).
    let before = (
        cacerts(&a, ISTIO_NS).await.unwrap(),
        cacerts(&a, "istio-other").await.unwrap(),
    );
    Api::<MeshCluster>::namespaced(a.clone(), NS)
        .patch(
            "other",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"trust": {"rootCASecretRef": null}}})),
        )
        .await
        .unwrap();
    let (_, message) = wait_mc(
        &a,
        "alpha",
        "TrustDistributed",
        "False",
        "RootCAConflict",
        WAIT,
    )
    .await;
    assert!(
        message.starts_with("meshID mesh1 has one root: this MeshCluster uses corp-root, but dualmesh-system/other uses dualmesh-root-ca-mesh1;"),
        "{message}"
    );
    wait_mc(
        &a,
        "other",
        "TrustDistributed",
        "False",
        "RootCAConflict",
        WAIT,
    )
    .await;
    wait_writes_settled(&alpha, WAIT).await;
    let after = (
        cacerts(&a, ISTIO_NS).await.unwrap(),
        cacerts(&a, "istio-other").await.unwrap(),
    );
    assert_eq!(after, before);
    Api::<MeshCluster>::namespaced(a.clone(), NS)
        .patch(
            "other",
            &PatchParams::default(),
            &Patch::Merge(
                serde_json::json!({"spec": {"trust": {"rootCASecretRef": {"name": "corp-root"}}}}),
            ),
        )
        .await
        .unwrap();
    for mc in ["alpha", "other"] {
        wait_mc(&a, mc, "TrustDistributed", "True", "Distributed", WAIT).await;
    }
}

//! Root rotation end to end, judged by a real istiod on each of two planes.
//!
//! alpha (management) and beta (member) share the generated mesh root;
//! istiod runs on each with dualmesh's `cacerts`, and a stand-in kubelet
//! (this test) copies the Secret's keys into istiod's `etc/cacerts`
//! whenever dualmesh changes them, as the kubelet refreshes a mounted
//! Secret. Raising `spec.trust.rootGeneration` on both MeshClusters must
//! then, with the operator restarted mid-way:
//!
//! - show each phase in the condition and in `status.trust.rotation`;
//! - make istiod's `istio-ca-root-cert` hold both roots during the overlap
//!   and only the new one afterwards, in both clusters;
//! - leave `cacerts` with an intermediate of the new root that
//!   `openssl verify` accepts against the new root alone.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use common::trust::{cacerts, openssl_verify, start_istio_native_mesh};
use common::*;
use dualmesh::api::MeshCluster;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use testplane::ControlPlane;
use testplane::istiod::{Istiod, install_istio_crds};

const WAIT: Duration = Duration::from_secs(90);

/// The stand-in kubelet: copies `cacerts` into `dir/etc/cacerts` every
/// 200 ms when it changed (each file replaced by a rename, as the kubelet
/// swaps its `..data` link), until dropped.
fn mount_cacerts(client: Client, dir: PathBuf) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut held = BTreeMap::new();
        loop {
            let now = cacerts(&client).await;
            if now != held {
                let ca = dir.join("etc/cacerts");
                for (key, value) in &now {
                    let tmp = ca.join(format!(".{key}.tmp"));
                    fs::write(&tmp, value).expect("write a cacerts file");
                    fs::rename(&tmp, ca.join(key)).expect("swap a cacerts file");
                }
                held = now;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
}

/// The certificates (PEM blocks) of `pem`, trimmed.
fn blocks(pem: &str) -> Vec<String> {
    pem.split_inclusive("-----END CERTIFICATE-----")
        .map(str::trim)
        .filter(|b| b.contains("BEGIN CERTIFICATE"))
        .map(String::from)
        .collect()
}

/// Waits until istiod's `istio-ca-root-cert` in `namespace` holds exactly `want`.
async fn wait_published(client: &Client, namespace: &str, want: &[&str], what: &str) {
    let want: Vec<String> = want.iter().map(|p| p.trim().to_string()).collect();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    wait_for(what, WAIT, || async {
        let held = cms
            .get_opt("istio-ca-root-cert")
            .await
            .map_err(|e| e.to_string())?
            .and_then(|cm| cm.data?.get("root-cert.pem").cloned())
            .ok_or("absent")?;
        let mut got = blocks(&held);
        got.sort();
        let mut want = want.clone();
        want.sort();
        if got == want {
            Ok(())
        } else {
            Err(format!("{} certificates", got.len()))
        }
    })
    .await
}

async fn patch_trust(client: &Client, mc: &str, trust: serde_json::Value) {
    Api::<MeshCluster>::namespaced(client.clone(), NS)
        .patch(
            mc,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"trust": trust}})),
        )
        .await
        .expect("patch spec.trust");
}

#[tokio::test]
async fn a_root_rotation_keeps_both_roots_trusted_during_the_overlap_and_survives_a_restart() {
    let (alpha, beta) = tokio::join!(
        ControlPlane::start_named("rotation-alpha"),
        ControlPlane::start_named("rotation-beta")
    );
    let (alpha, beta) = (alpha.expect("alpha"), beta.expect("beta"));
    let a = alpha.client().await.unwrap();
    let b = beta.client().await.unwrap();
    let operator = start_istio_native_mesh(&alpha, &beta, LOG).await;
    let old = secret_value(&a, NS, "dualmesh-root-ca-mesh1", "ca-cert.pem")
        .await
        .expect("the first mesh root");

    // The Istio config dualmesh rendered turns Istio's multi-root support
    // on; istiod runs with that env.
    let published = Api::<ConfigMap>::namespaced(a.clone(), ISTIO_NS)
        .get("alpha-istiooperator")
        .await
        .expect("alpha's rendered Istio config");
    let yaml = published_yaml(&published);
    assert!(
        yaml.contains("ISTIO_MULTIROOT_MESH: \"true\""),
        "pilot env and proxyMetadata carry ISTIO_MULTIROOT_MESH:\n{yaml}"
    );
    let env = [("ISTIO_MULTIROOT_MESH", "true")];

    // istiod on each plane, its plug-in CA files kept current.
    let mut istiods = Vec::new();
    let mut kubelets = Vec::new();
    for (plane, client, cluster) in [(&alpha, &a, "cluster-alpha"), (&beta, &b, "cluster-beta")] {
        install_istio_crds(plane).expect("Istio's CRDs from its base chart");
        let istiod =
            Istiod::start_env(plane, cluster, &cacerts(client).await, &env).expect("istiod");
        kubelets.push(mount_cacerts(client.clone(), istiod.dir().to_path_buf()));
        let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "judge"}})).unwrap();
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .expect("namespace judge");
        wait_published(
            client,
            "judge",
            &[&old],
            &format!("{cluster}: the first root"),
        )
        .await;
        istiods.push(istiod);
    }

    // Rotate, with a grace short for a test and long enough to see both
    // clusters in the first step.
    for mc in ["alpha", "beta"] {
        patch_trust(
            &a,
            mc,
            json!({"rootGeneration": 1, "rotationGracePeriodSeconds": 10}),
        )
        .await;
    }
    wait_mc(
        &a,
        "beta",
        "TrustDistributed",
        "True",
        "RotationBothRootsTrusted",
        WAIT,
    )
    .await;
    let (mc, message) = wait_mc(
        &a,
        "alpha",
        "TrustDistributed",
        "True",
        "RotationBothRootsTrusted",
        WAIT,
    )
    .await;
    assert!(
        message.contains("dualmesh-system/dualmesh-root-ca-mesh1-gen1"),
        "{message}"
    );
    let rotation = mc
        .status
        .unwrap()
        .trust
        .unwrap()
        .rotation
        .expect("status.trust.rotation");
    assert_eq!(
        serde_json::to_value(rotation.phase).unwrap(),
        json!("BothRootsTrusted")
    );
    let new = secret_value(&a, NS, "dualmesh-root-ca-mesh1-gen1", "ca-cert.pem")
        .await
        .expect("the new mesh root");
    assert_ne!(old.trim(), new.trim());

    // The operator stops mid-way; a new one takes over where it was.
    drop(operator);
    for (client, cluster) in [(&a, "cluster-alpha"), (&b, "cluster-beta")] {
        wait_published(
            client,
            "judge",
            &[&old, &new],
            &format!("{cluster}: both roots during the overlap"),
        )
        .await;
    }
    let _operator = start_operator(&alpha, "operator-2.log", LOG, &[]);
    wait_mc(
        &a,
        "beta",
        "TrustDistributed",
        "True",
        "RotationIntermediateReissued",
        WAIT,
    )
    .await;
    for name in ["alpha", "beta"] {
        wait_mc(&a, name, "TrustDistributed", "True", "Distributed", WAIT).await;
    }
    for (client, cluster) in [(&a, "cluster-alpha"), (&b, "cluster-beta")] {
        wait_published(
            client,
            "judge",
            &[&new],
            &format!("{cluster}: the new root alone"),
        )
        .await;
        let files = cacerts(client).await;
        assert_eq!(files["root-cert.pem"].trim(), new.trim(), "{cluster}");
        let dir = tempfile::tempdir().unwrap();
        let (verified, output) = openssl_verify(dir.path(), &files);
        assert!(verified, "{cluster}: {output}");
    }
    let mcs = Api::<MeshCluster>::namespaced(a.clone(), NS);
    for name in ["alpha", "beta"] {
        let trust = mcs.get(name).await.unwrap().status.unwrap().trust.unwrap();
        assert_eq!(trust.rotation, None, "{name}: the rotation ended");
        assert_eq!(
            trust.root_secret, "dualmesh-system/dualmesh-root-ca-mesh1-gen1",
            "{name}"
        );
    }
    for k in kubelets {
        k.abort();
    }
    // istiod took the new bundle live (both steps: adding, then dropping).
    for istiod in &istiods {
        let log = istiod.log();
        assert!(
            log.matches("Updating new ROOT-CA").count() >= 2 && !log.contains("panic"),
            "istiod:\n{}",
            istiod.log_tail(30)
        );
    }
}

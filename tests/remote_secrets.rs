//! Remote secrets (`spec.remoteSecrets`), judged by a real istiod and by
//! the built `istioctl create-remote-secret`, on two planes that behave like
//! clusters (kube-controller-manager's token controller fills the reader's
//! token Secret).
//!
//! alpha (dualmesh runs there) and beta (a member) set `remoteSecrets`;
//! Istio's own reader RBAC (the istiod chart's `istio-reader-clusterrole`)
//! is installed in both, with Istio's base chart (which creates the reader
//! ServiceAccount). dualmesh creates the reader's token Secret, and writes `istio-remote-secret-cluster-beta` into
//! alpha and `istio-remote-secret-cluster-alpha` into beta. The Secret in
//! alpha has the keys, labels, annotation and kubeconfig istioctl makes
//! against beta; alpha's istiod lists cluster-beta in `/debug/clusterz`,
//! synced, through that Secret only, and holds the `cross-network-gateway`
//! Gateway dualmesh applied; deleting beta's MeshCluster removes the
//! Secret, and istiod drops the cluster.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use dualmesh::api::{DualStackPolicy, MeshCluster};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::{Value, json};
use testplane::istiod::{Istiod, install_istio_crds};
use testplane::workload::kubectl;
use testplane::{ControlPlane, PlaneOptions};

const WAIT: Duration = Duration::from_secs(90);

/// The remote secret `name` in `client`'s Istio namespace, once it exists
/// and its kubeconfig names `server`.
async fn wait_remote_secret(client: &Client, name: &str, cluster: &str, server: &str) -> Secret {
    wait_for(&format!("{name} reaching {server}"), WAIT, || async {
        let secret = Api::<Secret>::namespaced(client.clone(), ISTIO_NS)
            .get_opt(name)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("absent")?;
        let kc = kubeconfig_of(&secret, cluster).ok_or("no kubeconfig key")?;
        if kc["clusters"][0]["cluster"]["server"] == server {
            Ok(secret)
        } else {
            Err(format!("server {}", kc["clusters"][0]["cluster"]["server"]))
        }
    })
    .await
}

/// The kubeconfig under key `cluster`, parsed (YAML or JSON).
fn kubeconfig_of(secret: &Secret, cluster: &str) -> Option<Value> {
    let raw = secret.data.as_ref()?.get(cluster)?;
    serde_saphyr::from_str::<Value>(std::str::from_utf8(&raw.0).ok()?).ok()
}

/// Waits until MeshCluster `name` says `RemoteSecretsSynced=True (Synced)`
/// with `message` (an earlier pass may have said True with another).
async fn wait_synced(management: &Client, name: &str, message: &str) {
    wait_for(&format!("{name}: {message}"), WAIT, || async {
        let mc = Api::<MeshCluster>::namespaced(management.clone(), NS)
            .get(name)
            .await
            .map_err(|e| e.to_string())?;
        match condition(&mc, "RemoteSecretsSynced") {
            Some((s, r, m)) if s == "True" && r == "Synced" && m == message => Ok(()),
            c => Err(format!("{c:?}")),
        }
    })
    .await;
}

#[tokio::test]
async fn istiod_discovers_the_other_cluster_through_dualmeshs_remote_secret_only() {
    let (alpha, beta) = tokio::join!(
        ControlPlane::start(PlaneOptions::named("remote-alpha").cluster()),
        ControlPlane::start(PlaneOptions::named("remote-beta").cluster())
    );
    let (alpha, beta) = (alpha.expect("alpha"), beta.expect("beta"));
    let a = alpha.client().await.unwrap();
    let b = beta.client().await.unwrap();
    // Istio installed as its charts do: the base chart (CRDs and the
    // reader ServiceAccount), the istiod chart's reader RBAC.
    for plane in [&alpha, &beta] {
        install_istio_crds(plane).expect("Istio's base chart");
        istio_charts::install_istio_reader_rbac(plane);
    }
    install_dualmesh_crds(&a).await;
    common::trust::put_member_kubeconfig(&a, &beta).await;
    let operator = start_operator(&alpha, "operator.log", LOG, &[]);
    create_policy(&a, &example::<DualStackPolicy>("policy-ipv6-only.yaml")).await;
    let mut alpha_mc: MeshCluster = example("istio-native/meshcluster-alpha.yaml");
    alpha_mc
        .spec
        .remote_secrets
        .as_mut()
        .expect("the example sets remoteSecrets")
        .api_server_url = Some(alpha.server_url());
    create_meshcluster(&a, &alpha_mc).await;
    create_meshcluster(
        &a,
        &example::<MeshCluster>("istio-native/meshcluster-beta.yaml"),
    )
    .await;
    // alpha's first reconcile may come before beta exists ("no other
    // MeshCluster ..."): wait for the message naming the peer.
    for (name, peer) in [("alpha", "cluster-beta"), ("beta", "cluster-alpha")] {
        wait_synced(
            &a,
            name,
            &format!("istio-system holds the remote secrets of {peer}; this cluster's are offered to them"),
        )
        .await;
    }
    let addr = http_addr(&operator).await;
    for name in ["alpha", "beta"] {
        let series =
            format!(r#"dualmesh_remote_secrets_synced{{namespace="{NS}",meshcluster="{name}"}}"#);
        wait_for(&format!("{series} 1"), WAIT, || async {
            match metric(&http_get(addr, "/metrics").await.1, &series) {
                Some(1.0) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
    }
    for name in ["alpha", "beta"] {
        let (_, message) = wait_mc(
            &a,
            name,
            "CrossNetworkGatewayApplied",
            "True",
            "GatewayApplied",
            WAIT,
        )
        .await;
        assert_eq!(
            message,
            "Gateway istio-system/cross-network-gateway passes port 15443 through (AUTO_PASSTHROUGH, *.local)"
        );
    }
    let in_alpha = wait_remote_secret(
        &a,
        "istio-remote-secret-cluster-beta",
        "cluster-beta",
        &beta.server_url(),
    )
    .await;
    wait_remote_secret(
        &b,
        "istio-remote-secret-cluster-alpha",
        "cluster-alpha",
        &alpha.server_url(),
    )
    .await;

    // The same Secret istioctl makes against beta (it finds the token
    // Secret dualmesh created, so even the token is the same).
    let out = std::process::Command::new(beta.tools_bin().join("istioctl"))
        .arg("create-remote-secret")
        .arg(format!("--kubeconfig={}", beta.kubeconfig_path().display()))
        .args(["--name", "cluster-beta", "--server", &beta.server_url()])
        .output()
        .expect("run istioctl");
    assert!(
        out.status.success(),
        "istioctl create-remote-secret: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let doc = text
        .split("\n---")
        .find(|d| d.contains("kind: Secret"))
        .expect("a Secret in istioctl's output");
    let theirs: Secret = serde_saphyr::from_str(doc).expect("istioctl's Secret");
    assert_eq!(in_alpha.metadata.name, theirs.metadata.name);
    let labels = in_alpha.metadata.labels.clone().unwrap_or_default();
    for (k, v) in theirs.metadata.labels.clone().unwrap_or_default() {
        assert_eq!(labels.get(&k), Some(&v), "label {k}");
    }
    let annotations = in_alpha.metadata.annotations.clone().unwrap_or_default();
    for (k, v) in theirs.metadata.annotations.clone().unwrap_or_default() {
        assert_eq!(annotations.get(&k), Some(&v), "annotation {k}");
    }
    let keys = |s: &Secret| -> Vec<String> {
        let mut k: Vec<String> = s.data.clone().unwrap_or_default().into_keys().collect();
        k.extend(s.string_data.clone().unwrap_or_default().into_keys());
        k
    };
    assert_eq!(keys(&in_alpha), keys(&theirs));
    let their_kubeconfig = theirs
        .string_data
        .as_ref()
        .and_then(|d| d.get("cluster-beta"))
        .map(|t| serde_saphyr::from_str::<Value>(t).unwrap())
        .or_else(|| kubeconfig_of(&theirs, "cluster-beta"))
        .expect("istioctl's kubeconfig");
    assert_eq!(
        kubeconfig_of(&in_alpha, "cluster-beta").unwrap(),
        their_kubeconfig
    );

    // The reader tokens stay secret: not in the operator's log, the
    // MeshClusters' status or the Events.
    let mut tokens = Vec::new();
    for client in [&a, &b] {
        let held = Api::<Secret>::namespaced(client.clone(), ISTIO_NS)
            .get("istio-reader-service-account-istio-remote-secret-token")
            .await
            .unwrap();
        let token = held.data.unwrap_or_default()["token"].0.clone();
        tokens.push(String::from_utf8(token).unwrap());
    }
    let statuses = serde_json::to_string(
        &Api::<MeshCluster>::namespaced(a.clone(), NS)
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .iter()
            .map(|m| m.status.clone())
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let events = serde_json::to_string(
        &Api::<k8s_openapi::api::core::v1::Event>::namespaced(a.clone(), NS)
            .list(&Default::default())
            .await
            .unwrap()
            .items,
    )
    .unwrap();
    let log = operator.log();
    for (i, token) in tokens.iter().enumerate() {
        assert!(token.len() > 100, "token {i} is a JWT");
        assert!(
            !log.contains(token.as_str()),
            "token {i} in the operator's log"
        );
        assert!(!statuses.contains(token.as_str()), "token {i} in a status");
        assert!(!events.contains(token.as_str()), "token {i} in an Event");
    }

    // alpha's istiod discovers beta through that Secret alone.
    let istiod = Istiod::start(&alpha, "cluster-alpha", &BTreeMap::new()).expect("istiod");
    wait_for(
        "alpha's istiod to list cluster-beta, synced",
        WAIT,
        || async {
            let ids = istiod.clusters().map_err(|e| e.to_string())?;
            if ids
                == [
                    ("cluster-alpha".to_string(), "synced".to_string()),
                    ("cluster-beta".to_string(), "synced".to_string()),
                ]
            {
                Ok(())
            } else {
                Err(format!("{ids:?}"))
            }
        },
    )
    .await;

    // istiod takes the cross-network Gateway dualmesh applied.
    wait_for(
        "alpha's istiod to hold cross-network-gateway",
        WAIT,
        || async {
            let configs = istiod
                .debug_json("/debug/configz")
                .map_err(|e| e.to_string())?;
            let gateway = configs.as_array().into_iter().flatten().find(|c| {
                c["kind"] == "Gateway" && c["metadata"]["name"] == "cross-network-gateway"
            });
            match gateway {
                Some(g) if g["spec"]["servers"][0]["tls"]["mode"] == "AUTO_PASSTHROUGH" => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;

    // beta leaves the mesh: its remote secret goes, istiod drops it.
    Api::<MeshCluster>::namespaced(a.clone(), NS)
        .delete("beta", &DeleteParams::default())
        .await
        .unwrap();
    wait_for("istio-remote-secret-cluster-beta removed", WAIT, || async {
        match Api::<Secret>::namespaced(a.clone(), ISTIO_NS)
            .get_opt("istio-remote-secret-cluster-beta")
            .await
        {
            Ok(None) => Ok(()),
            other => Err(format!("{:?}", other.map(|s| s.is_some()))),
        }
    })
    .await;
    wait_for("alpha's istiod to drop cluster-beta", WAIT, || async {
        let ids = istiod.clusters().map_err(|e| e.to_string())?;
        if ids == [("cluster-alpha".to_string(), "synced".to_string())] {
            Ok(())
        } else {
            Err(format!("{ids:?}"))
        }
    })
    .await;
    // The status write follows the delete in the same reconcile: wait for it.
    let alone = "no other MeshCluster of the mesh sets spec.remoteSecrets; this cluster's reader credentials are ready for them";
    wait_synced(&a, "alpha", alone).await;

    // Turning remoteSecrets off removes what alpha holds and the condition.
    Api::<MeshCluster>::namespaced(a.clone(), NS)
        .patch(
            "alpha",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"remoteSecrets": null}})),
        )
        .await
        .unwrap();
    wait_for(
        "RemoteSecretsSynced and the Gateway removed",
        WAIT,
        || async {
            let mc = Api::<MeshCluster>::namespaced(a.clone(), NS)
                .get("alpha")
                .await
                .map_err(|e| e.to_string())?;
            let gateway = kubectl(
                &alpha,
                &[
                    "get",
                    "gateways.networking.istio.io",
                    "-n",
                    ISTIO_NS,
                    "-o",
                    "name",
                ],
            );
            match (
                condition(&mc, "RemoteSecretsSynced"),
                condition(&mc, "CrossNetworkGatewayApplied"),
            ) {
                (None, None) if gateway.trim().is_empty() => Ok(()),
                c => Err(format!("{c:?}, gateways {gateway:?}")),
            }
        },
    )
    .await;
}

//! Federation across real control planes: dualmesh runs in alpha with
//! MeshClusters for alpha (local) and beta (member, through a kubeconfig
//! Secret). Trust Secrets appear in beta, follow rotations, are repaired
//! after edits and kept when their source vanishes; beta's IstioOperator
//! ConfigMap and gateway externalIPs come from beta's own Nodes and Pods;
//! stopping beta's API server sets ClusterReachable=False while alpha keeps
//! being reconciled, and beta recovers without a restart. Kubeconfigs that
//! could run commands or read files are refused. The operator's whole debug
//! log never contains a secret value.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;
use dualmesh::api::{DualStackPolicy, MeshCluster};
use dualmesh::desired::secret_sync::{
    HASH_KEY_DATA, HASH_KEY_SECRET, HashKey, SecretData, SecretValue, content_hash,
};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::DeleteParams;
use kube::{Api, Client, ResourceExt};
use testplane::ControlPlane;
use testplane::kubelet::set_node_addresses;

const WAIT: Duration = Duration::from_secs(30);
const TLS_KEY: &str =
    "-----BEGIN PRIVATE KEY-----\nrelaySERVERprivateKEYdata\n-----END PRIVATE KEY-----\n";

async fn secret_data(client: &Client, ns: &str, name: &str) -> Option<BTreeMap<String, String>> {
    let s = Api::<Secret>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .ok()??;
    Some(
        s.data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
            .collect(),
    )
}

async fn wait_secret(client: &Client, name: &str, want: &[(&str, &str)]) {
    let want: BTreeMap<String, String> = want
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    wait_for(
        &format!("beta gloo-mesh/{name} = {:?}", want.keys()),
        WAIT,
        || async {
            match secret_data(client, "gloo-mesh", name).await {
                Some(d) if d == want => Ok(()),
                Some(d) => Err(format!("keys {:?}", d.keys())),
                None => Err("absent".into()),
            }
        },
    )
    .await;
}

#[tokio::test]
async fn member_clusters_get_config_addresses_and_trust_secrets() {
    let alpha = ControlPlane::start_named("fed-alpha").await.expect("alpha");
    let mut beta = ControlPlane::start_named("fed-beta").await.expect("beta");
    let a = alpha.client().await.unwrap();
    let b = beta.client().await.unwrap();
    install_dualmesh_crds(&a).await;

    // Management cluster: sources, beta's kubeconfig, policy, MeshClusters.
    put_secret(
        &a,
        "gloo-mesh",
        "relay-root-tls-secret",
        &[("ca.crt", CA), ("tls.key", TLS_KEY)],
    )
    .await;
    put_secret(
        &a,
        "gloo-mesh",
        "relay-identity-token-secret",
        &[("token", TOKEN_1)],
    )
    .await;
    let beta_kubeconfig = std::fs::read_to_string(beta.kubeconfig_path()).unwrap();
    put_secret(
        &a,
        NS,
        "beta-kubeconfig",
        &[("kubeconfig", &beta_kubeconfig)],
    )
    .await;
    // A kubeconfig that would make the operator run a command, which would
    // leave a file in this test's own folder.
    let canary = tempfile::tempdir().unwrap();
    let pwned = canary.path().join("pwned");
    let exec_command = format!("touch {}", pwned.display());
    let exec_kubeconfig = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: g\n  cluster:\n    server: {}\ncontexts:\n- name: g\n  context: {{cluster: g, user: g}}\ncurrent-context: g\nusers:\n- name: g\n  user:\n    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: /bin/sh\n      args: [\"-c\", \"{exec_command}\"]\n",
        beta.server_url()
    );
    put_secret(
        &a,
        NS,
        "gamma-kubeconfig",
        &[("kubeconfig", &exec_kubeconfig)],
    )
    .await;
    create_gateway(&a, "node-1", &["2001:db8:a::1"]).await;
    create_gateway(&b, "node-1", &["2001:db8:b::1"]).await;

    // Everything at debug level, as JSON: the leak check reads all of it.
    let operator = start_operator(&alpha, "operator.log", "debug", &["--log-format", "json"]);
    create_policy(&a, &example::<DualStackPolicy>("policy-ipv6-only.yaml")).await;
    create_meshcluster(&a, &example::<MeshCluster>("meshcluster-alpha.yaml")).await;
    create_meshcluster(&a, &example::<MeshCluster>("meshcluster-beta.yaml")).await;
    let mut gamma: MeshCluster = example("meshcluster-beta.yaml");
    gamma.metadata.name = Some("gamma".into());
    gamma.spec.cluster_name = "cluster-gamma".into();
    gamma.spec.kubeconfig_secret_ref.as_mut().unwrap().name = "gamma-kubeconfig".into();
    create_meshcluster(&a, &gamma).await;

    // Beta: trust Secrets (only the mapped keys), config, addresses.
    wait_secret(&b, "relay-root-tls-secret", &[("ca.crt", CA)]).await;
    wait_secret(&b, "relay-identity-token-secret", &[("token", TOKEN_1)]).await;
    let copy = Api::<Secret>::namespaced(b.clone(), "gloo-mesh")
        .get("relay-identity-token-secret")
        .await
        .unwrap();
    assert_eq!(
        copy.metadata
            .labels
            .unwrap_or_default()
            .get("app.kubernetes.io/managed-by")
            .map(String::as_str),
        Some("dualmesh")
    );
    assert!(
        copy.metadata
            .annotations
            .unwrap_or_default()
            .contains_key("dualmesh.io/content-hash")
    );
    wait_for("beta's IstioOperator ConfigMap", WAIT, || async {
        match Api::<ConfigMap>::namespaced(b.clone(), "istio-system")
            .get_opt("beta-istiooperator")
            .await
        {
            Ok(Some(cm))
                if cm
                    .data
                    .as_ref()
                    .and_then(|d| d.get("istiooperator.yaml"))
                    .is_some_and(|y| y.contains("clusterName: cluster-beta")) =>
            {
                Ok(())
            }
            other => Err(format!("{:?}", other.map(|o| o.is_some()))),
        }
    })
    .await;
    // beta's externalIPs come from beta's node, alpha's from alpha's.
    wait_external_ips(&b, &["2001:db8:b::1"], WAIT).await;
    wait_external_ips(&a, &["2001:db8:a::1"], WAIT).await;
    wait_mc(&a, "beta", "Ready", "True", "Ready", WAIT).await;
    let mc = Api::<MeshCluster>::namespaced(a.clone(), NS)
        .get("beta")
        .await
        .unwrap();
    let synced = mc.status.unwrap().synced_secrets;
    let targets: Vec<&str> = synced.iter().map(|s| s.target.as_str()).collect();
    assert_eq!(
        targets,
        vec![
            "gloo-mesh/relay-identity-token-secret",
            "gloo-mesh/relay-root-tls-secret"
        ]
    );
    // The hashes are keyed with the installation's key (made on first use),
    // equal on the copy, and not the plain SHA-256 of the data.
    let key_secret = || async {
        let data = secret_data(&a, NS, HASH_KEY_SECRET)
            .await
            .expect("the key Secret");
        assert_eq!(data.keys().collect::<Vec<_>>(), [HASH_KEY_DATA]);
        Api::<Secret>::namespaced(a.clone(), NS)
            .get(HASH_KEY_SECRET)
            .await
            .unwrap()
            .data
            .unwrap()
            .remove(HASH_KEY_DATA)
            .unwrap()
            .0
    };
    let key = key_secret().await;
    assert_eq!(key.len(), 32);
    let token = synced
        .iter()
        .find(|s| s.target == "gloo-mesh/relay-identity-token-secret")
        .unwrap();
    let token_data =
        SecretData::from([("token".to_string(), SecretValue::from(TOKEN_1.as_bytes()))]);
    assert_eq!(
        token.hash,
        content_hash(&HashKey::new(key.clone()).unwrap(), &token_data)
    );
    // The documented encoding, unkeyed: what a reader could recompute.
    let plain = {
        use sha2::{Digest, Sha256};
        let encoding = format!("5\0token{}\0{TOKEN_1}", TOKEN_1.len());
        format!("{:x}", Sha256::digest(encoding.as_bytes()))
    };
    assert_ne!(token.hash, plain);
    let annotation = |name: &str| {
        let b = b.clone();
        let name = name.to_string();
        async move {
            Api::<Secret>::namespaced(b, "gloo-mesh")
                .get(&name)
                .await
                .unwrap()
                .annotations()
                .get("dualmesh.io/content-hash")
                .cloned()
        }
    };
    assert_eq!(
        annotation("relay-identity-token-secret").await.as_deref(),
        Some(token.hash.as_str())
    );
    // Deleting the key rotates it: a new key, every copy rewritten under it.
    Api::<Secret>::namespaced(a.clone(), NS)
        .delete(HASH_KEY_SECRET, &DeleteParams::default())
        .await
        .unwrap();
    for s in &synced {
        let name = s.target.strip_prefix("gloo-mesh/").unwrap();
        let old = s.hash.clone();
        wait_for(
            &format!("{name} rewritten under a new key"),
            WAIT,
            || async {
                match annotation(name).await {
                    Some(h) if h != old => Ok(()),
                    other => Err(format!("{other:?}")),
                }
            },
        )
        .await;
    }
    let rotated = key_secret().await;
    assert_ne!(rotated, key);
    assert_eq!(
        annotation("relay-identity-token-secret").await,
        Some(content_hash(&HashKey::new(rotated).unwrap(), &token_data))
    );

    // The exec kubeconfig is refused, and nothing ran.
    let (_, message) = wait_mc(
        &a,
        "gamma",
        "ClusterReachable",
        "False",
        "KubeconfigRefused",
        WAIT,
    )
    .await;
    assert!(message.contains("exec"), "{message}");
    assert!(!pwned.exists(), "the exec kubeconfig ran its command");

    // Rotation reaches beta.
    put_secret(
        &a,
        "gloo-mesh",
        "relay-identity-token-secret",
        &[("token", TOKEN_2)],
    )
    .await;
    wait_secret(&b, "relay-identity-token-secret", &[("token", TOKEN_2)]).await;

    // An edit in beta is repaired.
    put_secret(
        &b,
        "gloo-mesh",
        "relay-identity-token-secret",
        &[("token", "tampered")],
    )
    .await;
    wait_secret(&b, "relay-identity-token-secret", &[("token", TOKEN_2)]).await;

    // The source vanishes: SecretsSynced=False naming it, beta keeps its copy.
    Api::<Secret>::namespaced(a.clone(), "gloo-mesh")
        .delete("relay-root-tls-secret", &DeleteParams::default())
        .await
        .unwrap();
    let (_, message) = wait_mc(&a, "beta", "SecretsSynced", "False", "SourceMissing", WAIT).await;
    assert!(
        message.contains("gloo-mesh/relay-root-tls-secret"),
        "{message}"
    );
    // The reconcile that reported it would have deleted the copy before
    // writing that status: beta's API server saw no delete of it, and holds
    // it unchanged.
    let deletes: Vec<_> = beta
        .writes_by(testplane::ADMIN_USER)
        .expect("beta's audit log")
        .into_iter()
        .filter(|w| w.verb == "delete" && w.resource == "secrets")
        .collect();
    assert_eq!(deletes, Vec::new(), "beta's copy was deleted");
    assert_eq!(
        secret_data(&b, "gloo-mesh", "relay-root-tls-secret").await,
        Some(BTreeMap::from([("ca.crt".to_string(), CA.to_string())]))
    );
    put_secret(
        &a,
        "gloo-mesh",
        "relay-root-tls-secret",
        &[("ca.crt", CA), ("tls.key", TLS_KEY)],
    )
    .await;
    wait_mc(&a, "beta", "SecretsSynced", "True", "Synced", WAIT).await;

    // Beta's API server stops: ClusterReachable=False within 30 s, while
    // alpha's own MeshCluster keeps being reconciled.
    beta.kill_apiserver();
    let stopped = Instant::now();
    let (_, message) = wait_mc(&a, "beta", "ClusterReachable", "False", "Unreachable", WAIT).await;
    assert!(stopped.elapsed() <= Duration::from_secs(30));
    assert!(message.contains("does not answer"), "{message}");
    set_node_addresses(&a, "node-1", &[("InternalIP", "2001:db8:a::2")])
        .await
        .unwrap();
    // alpha's externalIPs follow its node while beta is down.
    wait_external_ips(&a, &["2001:db8:a::2"], Duration::from_secs(10)).await;

    // Beta returns: reachable again, no operator restart.
    beta.restart_apiserver().await.unwrap();
    wait_mc(&a, "beta", "ClusterReachable", "True", "Reachable", WAIT).await;
    put_secret(
        &a,
        "gloo-mesh",
        "relay-identity-token-secret",
        &[("token", TOKEN_1)],
    )
    .await;
    wait_secret(&b, "relay-identity-token-secret", &[("token", TOKEN_1)]).await;
    assert!(operator.pid().is_some());

    // No secret value, token or kubeconfig credential, whole, anywhere a
    // reader of the clusters or of the log could see it: the operator's log,
    // the Events of both clusters, and the MeshClusters' and policies'
    // status.
    let log = operator.log();
    assert!(
        log.contains("synced Secret"),
        "the log is the operator's debug log"
    );
    let kc: serde_json::Value = serde_saphyr::from_str(&beta_kubeconfig).unwrap();
    let user = &kc["users"][0]["user"];
    let secrets: Vec<String> = vec![
        TOKEN_1.to_string(),
        TOKEN_2.to_string(),
        CA.to_string(),
        TLS_KEY.to_string(),
        "tampered".to_string(),
        beta_kubeconfig.clone(),
        exec_kubeconfig.clone(),
        user["client-key-data"].as_str().unwrap().to_string(),
        user["client-certificate-data"]
            .as_str()
            .unwrap()
            .to_string(),
        exec_command.clone(),
    ];
    // Each as it is, as JSON escapes it (logs and objects are JSON here), and
    // base64-encoded as it travels in a Secret's data.
    use base64::Engine as _;
    let mut needles = Vec::new();
    for secret in &secrets {
        let json = serde_json::to_string(secret).unwrap();
        needles.push(secret.clone());
        needles.push(json[1..json.len() - 1].to_string());
        needles.push(base64::engine::general_purpose::STANDARD.encode(secret));
    }
    // And the distinctive middles of the PEM values, in case a part leaks.
    needles.extend(["relayROOTcaDATA", "relaySERVERprivateKEY"].map(String::from));
    let events = |client: Client| async move {
        let list = Api::<k8s_openapi::api::core::v1::Event>::all(client)
            .list(&Default::default())
            .await
            .expect("list Events");
        serde_json::to_string(&list.items).unwrap()
    };
    let alpha_events = events(a.clone()).await;
    let beta_events = events(b.clone()).await;
    let statuses = all_statuses(&a).await;
    assert!(
        alpha_events.contains("KubeconfigRefused") && statuses.contains("KubeconfigRefused"),
        "the Events and status searched are the ones this test caused"
    );
    for (what, haystack) in [
        ("the operator log", &log),
        ("alpha's Events", &alpha_events),
        ("beta's Events", &beta_events),
        ("the MeshClusters' and policies' status", &statuses),
    ] {
        for needle in &needles {
            assert!(
                !haystack.contains(needle.as_str()),
                "{what} contains secret material ({} characters, starting {:?})",
                needle.len(),
                needle.chars().take(8).collect::<String>()
            );
        }
    }
}

#[tokio::test]
async fn three_planes_one_member_down_does_not_hold_up_the_other() {
    let alpha = ControlPlane::start_named("fed3-alpha")
        .await
        .expect("alpha");
    let beta = ControlPlane::start_named("fed3-beta").await.expect("beta");
    let mut gamma = ControlPlane::start_named("fed3-gamma")
        .await
        .expect("gamma");
    let a = alpha.client().await.unwrap();
    let b = beta.client().await.unwrap();
    let g = gamma.client().await.unwrap();
    install_dualmesh_crds(&a).await;
    federation_sources(&a, TOKEN_1).await;
    for (plane, name) in [(&beta, "beta"), (&gamma, "gamma")] {
        let kc = std::fs::read_to_string(plane.kubeconfig_path()).unwrap();
        put_secret(
            &a,
            NS,
            &format!("{name}-kubeconfig"),
            &[("kubeconfig", &kc)],
        )
        .await;
    }
    let _operator = start_operator(&alpha, "operator.log", LOG, &[]);
    create_policy(&a, &example::<DualStackPolicy>("policy-ipv6-only.yaml")).await;
    for name in ["beta", "gamma"] {
        let mut mc: MeshCluster = example("meshcluster-beta.yaml");
        mc.metadata.name = Some(name.into());
        mc.spec.cluster_name = format!("cluster-{name}");
        mc.spec.network = format!("cluster-{name}-network");
        mc.spec.kubeconfig_secret_ref.as_mut().unwrap().name = format!("{name}-kubeconfig");
        // No gateways on these planes: the test is about the Secrets.
        mc.spec.ingress_gateway.manage_external_ips = false;
        create_meshcluster(&a, &mc).await;
    }
    wait_secret(&b, "relay-identity-token-secret", &[("token", TOKEN_1)]).await;
    wait_secret(&g, "relay-identity-token-secret", &[("token", TOKEN_1)]).await;
    wait_mc(&a, "gamma", "Ready", "True", "Ready", WAIT).await;

    // gamma goes away; a rotation still reaches beta, and gamma is reported.
    gamma.kill_apiserver();
    wait_mc(
        &a,
        "gamma",
        "ClusterReachable",
        "False",
        "Unreachable",
        WAIT,
    )
    .await;
    put_secret(
        &a,
        "gloo-mesh",
        "relay-identity-token-secret",
        &[("token", TOKEN_2)],
    )
    .await;
    wait_for(
        "beta rotated while gamma is down",
        Duration::from_secs(10),
        || async {
            match secret_data(&b, "gloo-mesh", "relay-identity-token-secret").await {
                Some(d) if d.get("token").map(String::as_str) == Some(TOKEN_2) => Ok(()),
                other => Err(format!("{:?}", other.map(|d| d.len()))),
            }
        },
    )
    .await;

    // gamma returns and catches up.
    gamma.restart_apiserver().await.unwrap();
    wait_secret(&g, "relay-identity-token-secret", &[("token", TOKEN_2)]).await;
    wait_mc(&a, "gamma", "ClusterReachable", "True", "Reachable", WAIT).await;
}

//! Tests of the remote-secret plan.

use super::*;
use k8s_openapi::ByteString;

fn owner() -> Owner {
    Owner {
        key: "dualmesh-system/alpha".into(),
        name: "alpha".into(),
    }
}

fn token_secret_with(data: &[(&str, &[u8])]) -> Secret {
    Secret {
        data: Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.to_vec())))
                .collect(),
        ),
        ..Default::default()
    }
}

/// A Secret as the API server returns what `body` created.
fn as_read(body: &Value, resource_version: &str) -> Secret {
    let mut s: Secret = serde_json::from_value(body.clone()).unwrap();
    s.metadata.resource_version = Some(resource_version.into());
    s
}

#[test]
fn the_token_is_ready_once_the_token_controller_filled_ca_and_token() {
    assert!(matches!(token(&Secret::default()), Token::Pending));
    assert!(matches!(
        token(&token_secret_with(&[("ca.crt", b"PEM")])),
        Token::Pending
    ));
    let Token::Ready { ca, token } =
        token(&token_secret_with(&[("ca.crt", b"PEM"), ("token", b"t0k")]))
    else {
        panic!("both keys are there");
    };
    assert_eq!(ca, b"PEM");
    assert_eq!(token.expose_secret(), "t0k");
}

#[test]
fn the_kubeconfig_has_istioctls_shape() {
    let kc = kubeconfig(
        "cluster-beta",
        "https://[2001:db8::1]:6443",
        b"PEM",
        &"t0k".to_string().into(),
    );
    let v: Value = serde_json::from_str(kc.expose_secret()).unwrap();
    assert_eq!(
        v,
        json!({
            "apiVersion": "v1",
            "clusters": [{"cluster": {"certificate-authority-data": "UEVN", "server": "https://[2001:db8::1]:6443"}, "name": "cluster-beta"}],
            "contexts": [{"context": {"cluster": "cluster-beta", "user": "cluster-beta"}, "name": "cluster-beta"}],
            "current-context": "cluster-beta",
            "kind": "Config",
            "users": [{"name": "cluster-beta", "user": {"token": "t0k"}}],
        })
    );
}

#[test]
fn the_remote_secret_is_labelled_and_annotated_as_istioctl_writes_it() {
    let body = remote_secret(
        &owner(),
        "istio-system",
        "cluster-beta",
        &"KC".to_string().into(),
    );
    assert_eq!(
        body,
        json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {
                "name": "istio-remote-secret-cluster-beta",
                "namespace": "istio-system",
                "labels": {
                    "istio/multiCluster": "true",
                    "app.kubernetes.io/managed-by": "dualmesh",
                    "dualmesh.io/meshcluster": "alpha",
                },
                "annotations": {
                    "networking.istio.io/cluster": "cluster-beta",
                    "dualmesh.io/owner": "dualmesh-system/alpha",
                },
            },
            "data": {"cluster-beta": "S0M="},
        })
    );
}

#[test]
fn peers_are_created_kept_or_updated_and_former_peers_deleted() {
    let o = owner();
    let kc_beta: SecretString = "KC-beta".to_string().into();
    let kc_gamma: SecretString = "KC-gamma-new".to_string().into();
    let held_gamma = as_read(
        &remote_secret(
            &o,
            "istio-system",
            "cluster-gamma",
            &"KC-gamma-old".to_string().into(),
        ),
        "5",
    );
    let held_delta = as_read(
        &remote_secret(
            &o,
            "istio-system",
            "cluster-delta",
            &"KC".to_string().into(),
        ),
        "6",
    );
    let held_beta = as_read(
        &remote_secret(&o, "istio-system", "cluster-beta", &kc_beta),
        "7",
    );

    // beta unchanged, gamma's token rotated, delta left the mesh, epsilon unknown.
    let peers = [
        Peer {
            cluster_name: "cluster-beta",
            kubeconfig: Some(&kc_beta),
        },
        Peer {
            cluster_name: "cluster-gamma",
            kubeconfig: Some(&kc_gamma),
        },
        Peer {
            cluster_name: "cluster-epsilon",
            kubeconfig: None,
        },
    ];
    let p = plan(
        &o,
        "istio-system",
        &peers,
        &[held_beta, held_gamma, held_delta],
    );
    let mut gamma = remote_secret(&o, "istio-system", "cluster-gamma", &kc_gamma);
    gamma["metadata"]["resourceVersion"] = json!("5");
    assert_eq!(
        p.writes,
        [
            ("istio-remote-secret-cluster-beta".to_string(), Write::Keep),
            (
                "istio-remote-secret-cluster-gamma".to_string(),
                Write::Apply(gamma)
            ),
        ]
    );
    assert_eq!(
        p.deletes,
        [(
            "istio-remote-secret-cluster-delta".to_string(),
            Some("6".to_string())
        )]
    );
    assert_eq!(p.pending, ["cluster-epsilon"]);
    assert!(p.foreign.is_empty());
    // Names only: no token in a debug print.
    assert!(!format!("{p:?}").contains("KC-gamma"), "{p:?}");

    let f = report("istio-system", &p, &peers, Own::Offered);
    assert_eq!(f.reason, reason::PEER_CREDENTIALS_PENDING);
    assert_eq!(
        f.message,
        "no reader credentials from cluster-epsilon yet (its MeshCluster has not offered them: unreachable, or its token is pending)"
    );
}

#[test]
fn an_unknown_peer_keeps_what_is_held_and_a_foreign_secret_is_left_alone() {
    let o = owner();
    let held = as_read(
        &remote_secret(&o, "istio-system", "cluster-beta", &"KC".to_string().into()),
        "7",
    );
    let mut foreign = as_read(
        &remote_secret(&o, "istio-system", "cluster-gamma", &"X".to_string().into()),
        "8",
    );
    foreign.metadata.annotations = None;
    foreign.metadata.labels = Some([("istio/multiCluster".to_string(), "true".to_string())].into());
    let kc: SecretString = "KC2".to_string().into();
    let peers = [
        Peer {
            cluster_name: "cluster-beta",
            kubeconfig: None,
        },
        Peer {
            cluster_name: "cluster-gamma",
            kubeconfig: Some(&kc),
        },
    ];
    let p = plan(&o, "istio-system", &peers, &[held, foreign]);
    assert!(p.writes.is_empty());
    assert!(p.deletes.is_empty());
    assert!(p.pending.is_empty());
    assert_eq!(p.foreign, ["istio-remote-secret-cluster-gamma"]);
    let f = report("istio-system", &p, &peers, Own::Offered);
    assert!(!f.status);
    assert_eq!(f.reason, reason::REMOTE_SECRET_NOT_MANAGED);
    assert_eq!(
        f.message,
        "Secret istio-system/istio-remote-secret-cluster-gamma was not written by dualmesh (istioctl create-remote-secret?) and is left as it is: delete it to have dualmesh keep it"
    );
}

#[test]
fn the_condition_says_whose_secrets_are_held_or_what_is_pending() {
    let kc: SecretString = "KC".to_string().into();
    let peers = [Peer {
        cluster_name: "cluster-beta",
        kubeconfig: Some(&kc),
    }];
    let p = plan(&owner(), "istio-system", &peers, &[]);
    assert!(matches!(p.writes[0].1, Write::Create(_)));
    let ok = report("istio-system", &p, &peers, Own::Offered);
    assert!(ok.status);
    assert_eq!(ok.reason, reason::SYNCED);
    assert_eq!(
        ok.message,
        "istio-system holds the remote secrets of cluster-beta; this cluster's are offered to them"
    );
    let pending = report("istio-system", &p, &peers, Own::TokenPending);
    assert_eq!(pending.reason, reason::READER_TOKEN_PENDING);
    assert_eq!(
        pending.message,
        "Secret istio-system/istio-reader-service-account-istio-remote-secret-token holds no token yet: the service-account token controller (kube-controller-manager) fills it for ServiceAccount istio-reader-service-account"
    );
    let no_sa = report("istio-system", &p, &peers, Own::NoServiceAccount);
    assert_eq!(no_sa.reason, reason::READER_SERVICE_ACCOUNT_MISSING);
    assert_eq!(
        no_sa.message,
        "ServiceAccount istio-system/istio-reader-service-account not found: Istio's base chart creates it (dualmesh does not, so Istio's install can take it); install Istio"
    );
    let alone = report("istio-system", &Plan::default(), &[], Own::Offered);
    assert!(alone.status);
}

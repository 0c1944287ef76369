//! Remote secrets (`spec.remoteSecrets`), in the format `istioctl
//! create-remote-secret` writes: Secret `istio-remote-secret-<clusterName>`
//! labelled `istio/multiCluster: "true"`, annotated
//! `networking.istio.io/cluster: <clusterName>`, its one key the cluster
//! name holding a kubeconfig with the bearer token of that cluster's
//! `istio-reader-service-account` (from the token Secret istioctl names).
//!
//! Each cluster offers its kubeconfig ([`kubeconfig`]) and holds its peers'
//! ([`plan`]). Pure: the caller reads the Secrets. Tokens stay in
//! [`SecretString`]s and the bodies built from them are never printed.

use std::collections::BTreeMap;

use base64::Engine;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use super::conditions::Found;
use super::publish::{Owner, Write};
use crate::api::conditions::{self as types, reason};
use crate::api::labels::OWNER_ANNOTATION;

/// The ServiceAccount whose token the remote secret carries (Istio's).
pub const READER_SERVICE_ACCOUNT: &str = "istio-reader-service-account";
/// The token Secret of that ServiceAccount, named as istioctl names it.
pub const TOKEN_SECRET: &str = "istio-reader-service-account-istio-remote-secret-token";
/// The label istiod selects remote secrets by.
pub const MULTICLUSTER_LABEL: &str = "istio/multiCluster";
/// The annotation naming the cluster a remote secret reaches.
pub const CLUSTER_ANNOTATION: &str = "networking.istio.io/cluster";

/// The remote secret's name for a cluster (istioctl's).
pub fn secret_name(cluster_name: &str) -> String {
    format!("istio-remote-secret-{cluster_name}")
}

/// The token Secret of the reader (kube-controller-manager's token
/// controller fills `token` and `ca.crt`), created where there is none.
/// The ServiceAccount itself is Istio's: its base chart creates it, and
/// Helm refuses to install over one another manager created.
pub fn token_secret(owner: &Owner, namespace: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/service-account-token",
        "metadata": {
            "name": TOKEN_SECRET,
            "namespace": namespace,
            "labels": owner.labels(),
            "annotations": {
                "kubernetes.io/service-account.name": READER_SERVICE_ACCOUNT,
                OWNER_ANNOTATION: owner.key,
            },
        },
    })
}

/// What the token Secret holds.
pub enum Token {
    /// `token` or `ca.crt` not filled in (yet).
    Pending,
    /// The CA bundle (PEM) and the token.
    Ready { ca: Vec<u8>, token: SecretString },
}

/// Reads the token Secret (istioctl's `tokenDataFromSecret`).
pub fn token(secret: &Secret) -> Token {
    let data = secret.data.as_ref();
    let get = |k: &str| data.and_then(|d| d.get(k)).filter(|v| !v.0.is_empty());
    match (get("ca.crt"), get("token")) {
        (Some(ca), Some(token)) => match String::from_utf8(token.0.clone()) {
            Ok(t) => Token::Ready {
                ca: ca.0.clone(),
                token: t.into(),
            },
            Err(_) => Token::Pending,
        },
        _ => Token::Pending,
    }
}

/// The kubeconfig reaching `server` as the reader, in the shape istioctl
/// encodes it (one cluster, context and user, all named after the cluster;
/// no `preferences`, which istioctl's encoder omits when empty).
pub fn kubeconfig(
    cluster_name: &str,
    server: &str,
    ca: &[u8],
    token: &SecretString,
) -> SecretString {
    let ca = base64::engine::general_purpose::STANDARD.encode(ca);
    let doc = json!({
        "apiVersion": "v1",
        "clusters": [{
            "cluster": { "certificate-authority-data": ca, "server": server },
            "name": cluster_name,
        }],
        "contexts": [{
            "context": { "cluster": cluster_name, "user": cluster_name },
            "name": cluster_name,
        }],
        "current-context": cluster_name,
        "kind": "Config",
        "users": [{ "name": cluster_name, "user": { "token": token.expose_secret() } }],
    });
    // JSON is YAML; istiod and kubectl read either.
    doc.to_string().into()
}

/// The remote secret for `cluster_name`, held for `owner`.
pub fn remote_secret(
    owner: &Owner,
    namespace: &str,
    cluster_name: &str,
    kubeconfig: &SecretString,
) -> Value {
    let mut labels = owner.labels();
    labels.insert(MULTICLUSTER_LABEL.into(), "true".into());
    let data = base64::engine::general_purpose::STANDARD.encode(kubeconfig.expose_secret());
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": secret_name(cluster_name),
            "namespace": namespace,
            "labels": labels,
            "annotations": { CLUSTER_ANNOTATION: cluster_name, OWNER_ANNOTATION: owner.key },
        },
        "data": { cluster_name: data },
    })
}

/// A peer of the mesh: its cluster name and the kubeconfig it offers
/// (None: not known yet).
pub struct Peer<'a> {
    pub cluster_name: &'a str,
    pub kubeconfig: Option<&'a SecretString>,
}

/// What to do in the holding cluster's Istio namespace.
#[derive(Default)]
pub struct Plan {
    /// Per Secret name, the write (Create, Apply with the resourceVersion
    /// read, or Keep).
    pub writes: Vec<(String, Write)>,
    /// dualmesh's remote secrets of clusters no longer peers: name and
    /// the resourceVersion read (the delete's precondition).
    pub deletes: Vec<(String, Option<String>)>,
    /// Peers whose kubeconfig is not known yet (nothing held for them).
    pub pending: Vec<String>,
    /// Remote secrets of a peer's name that are not dualmesh's (left alone).
    pub foreign: Vec<String>,
}

impl std::fmt::Debug for Plan {
    // The bodies carry tokens: only names.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plan")
            .field(
                "writes",
                &self.writes.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .field("deletes", &self.deletes)
            .field("pending", &self.pending)
            .field("foreign", &self.foreign)
            .finish()
    }
}

/// Plans the remote secrets `owner`'s cluster holds for `peers`, over the
/// Secrets labelled `istio/multiCluster=true` read in `namespace`.
pub fn plan(owner: &Owner, namespace: &str, peers: &[Peer<'_>], read: &[Secret]) -> Plan {
    let by_name: BTreeMap<String, &Secret> = read.iter().map(|s| (s.name_any(), s)).collect();
    let mut out = Plan::default();
    for peer in peers {
        let name = secret_name(peer.cluster_name);
        let held = by_name.get(&name);
        if let Some(s) = held
            && !owner.owns(&s.metadata)
        {
            out.foreign.push(name);
            continue;
        }
        let Some(kubeconfig) = peer.kubeconfig else {
            if held.is_none() {
                out.pending.push(peer.cluster_name.to_string());
            }
            continue;
        };
        let mut body = remote_secret(owner, namespace, peer.cluster_name, kubeconfig);
        let write = match held {
            None => Write::Create(body),
            Some(s) if same(s, &body) => Write::Keep,
            Some(s) => {
                body["metadata"]["resourceVersion"] = json!(s.resource_version());
                Write::Apply(body)
            }
        };
        out.writes.push((name, write));
    }
    let wanted: Vec<String> = peers.iter().map(|p| secret_name(p.cluster_name)).collect();
    for s in read {
        if owner.owns(&s.metadata) && !wanted.contains(&s.name_any()) {
            out.deletes.push((s.name_any(), s.resource_version()));
        }
    }
    out
}

/// Whether the Secret read holds what `body` sets (data, labels, annotations).
fn same(read: &Secret, body: &Value) -> bool {
    let data_same = body["data"].as_object().is_some_and(|want| {
        let have = read.data.clone().unwrap_or_default();
        have.len() == want.len()
            && want.iter().all(|(k, v)| {
                have.get(k).is_some_and(|h| {
                    base64::engine::general_purpose::STANDARD.encode(&h.0)
                        == v.as_str().unwrap_or_default()
                })
            })
    });
    let subset = |have: Option<&BTreeMap<String, String>>, want: &Value| {
        want.as_object().is_some_and(|w| {
            w.iter()
                .all(|(k, v)| have.and_then(|h| h.get(k)).map(String::as_str) == v.as_str())
        })
    };
    data_same
        && subset(read.metadata.labels.as_ref(), &body["metadata"]["labels"])
        && subset(
            read.metadata.annotations.as_ref(),
            &body["metadata"]["annotations"],
        )
}

/// Where this cluster's own offer stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Own {
    /// Its kubeconfig is offered.
    Offered,
    /// Istio's reader ServiceAccount is not there (Istio not installed).
    NoServiceAccount,
    /// The token Secret is not filled in yet.
    TokenPending,
}

/// The `RemoteSecretsSynced` condition; `namespace`: the Istio namespace.
pub fn report(namespace: &str, plan: &Plan, peers: &[Peer<'_>], own: Own) -> Found {
    if let Some(name) = plan.foreign.first() {
        return Found::fail(
            types::REMOTE_SECRETS_SYNCED,
            reason::REMOTE_SECRET_NOT_MANAGED,
            format!(
                "Secret {namespace}/{name} was not written by dualmesh (istioctl create-remote-secret?) and is left as it is: delete it to have dualmesh keep it"
            ),
        );
    }
    if own == Own::NoServiceAccount {
        return Found::fail(
            types::REMOTE_SECRETS_SYNCED,
            reason::READER_SERVICE_ACCOUNT_MISSING,
            format!(
                "ServiceAccount {namespace}/{READER_SERVICE_ACCOUNT} not found: Istio's base chart creates it (dualmesh does not, so Istio's install can take it); install Istio"
            ),
        );
    }
    if own == Own::TokenPending {
        return Found::fail(
            types::REMOTE_SECRETS_SYNCED,
            reason::READER_TOKEN_PENDING,
            format!(
                "Secret {namespace}/{TOKEN_SECRET} holds no token yet: the service-account token controller (kube-controller-manager) fills it for ServiceAccount {READER_SERVICE_ACCOUNT}"
            ),
        );
    }
    if !plan.pending.is_empty() {
        return Found::fail(
            types::REMOTE_SECRETS_SYNCED,
            reason::PEER_CREDENTIALS_PENDING,
            format!(
                "no reader credentials from {} yet (its MeshCluster has not offered them: unreachable, or its token is pending)",
                plan.pending.join(", ")
            ),
        );
    }
    let names: Vec<&str> = peers.iter().map(|p| p.cluster_name).collect();
    Found::ok(
        types::REMOTE_SECRETS_SYNCED,
        reason::SYNCED,
        if names.is_empty() {
            "no other MeshCluster of the mesh sets spec.remoteSecrets; this cluster's reader credentials are ready for them".to_string()
        } else {
            format!(
                "{namespace} holds the remote secrets of {}; this cluster's are offered to them",
                names.join(", ")
            )
        },
    )
}

#[cfg(test)]
mod tests;

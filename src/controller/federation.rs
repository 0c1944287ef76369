//! Member clusters: connections built from kubeconfig Secrets (vetted first:
//! inline token or client-certificate credentials only), reachability, and
//! the sync of trust Secrets from the management cluster into members.
//!
//! Secret data never leaves this module except into the API request that
//! writes the copy: errors and conditions name Secrets and keys only.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::config::KubeConfigOptions;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::cluster::{Cluster, Trigger};
use super::ssa;
use crate::api::conditions::{self as types, reason};
use crate::api::{MeshCluster, SecretLocation, SyncedSecret};
use crate::desired::conditions::Found;
use crate::desired::istio_operator::MANAGED_BY;
use crate::desired::kubeconfig;
use crate::desired::secret_sync::{self, SourceSecret, TargetAction};
use crate::desired::validate::summarize;

/// How long one call to a member may take before it counts as unreachable.
pub const MEMBER_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a member is looked at (reads only), so an outage shows within
/// 30 s and a recovery is picked up without a restart.
pub const MEMBER_RESYNC: Duration = Duration::from_secs(10);

/// A member connection and the SHA-256 of the kubeconfig it was made from.
type Connection = (String, Arc<Cluster>);

/// The member connections, one per MeshCluster with a kubeconfigSecretRef.
#[derive(Default)]
pub struct Members {
    inner: Mutex<HashMap<ObjectRef<MeshCluster>, Connection>>,
}

/// Why there is no usable connection.
pub struct Unusable(pub Found);

impl Members {
    /// The connection for `mc`, made (or remade when the kubeconfig changed)
    /// from its Secret in the management cluster.
    pub async fn connect(
        &self,
        management: &Client,
        trigger: &Trigger,
        mc: &MeshCluster,
    ) -> Result<Arc<Cluster>, Unusable> {
        let reference = mc
            .spec
            .kubeconfig_secret_ref
            .as_ref()
            .expect("connect is called for members only");
        let ns = mc.namespace().unwrap_or_default();
        let secret_ref = format!("{ns}/{}", reference.name);
        let missing = |message: String| {
            Unusable(Found::fail(
                types::CLUSTER_REACHABLE,
                reason::KUBECONFIG_MISSING,
                message,
            ))
        };
        let secrets: Api<Secret> = Api::namespaced(management.clone(), &ns);
        let secret = match secrets.get_opt(&reference.name).await {
            Ok(Some(s)) => s,
            Ok(None) => {
                return Err(missing(format!(
                    "spec.kubeconfigSecretRef: Secret {secret_ref} not found"
                )));
            }
            Err(e) => {
                return Err(missing(format!(
                    "spec.kubeconfigSecretRef: reading Secret {secret_ref}: {e}"
                )));
            }
        };
        let Some(raw) = secret.data.as_ref().and_then(|d| d.get(&reference.key)) else {
            return Err(missing(format!(
                "spec.kubeconfigSecretRef.key: Secret {secret_ref} has no key {:?}",
                reference.key
            )));
        };
        let fingerprint = format!("{:x}", Sha256::digest(&raw.0));
        let key = ObjectRef::from_obj(mc);
        if let Some((seen, cluster)) = self.inner.lock().expect("members lock").get(&key)
            && *seen == fingerprint
        {
            return Ok(cluster.clone());
        }
        let refused = |message: String| {
            Unusable(Found::fail(
                types::CLUSTER_REACHABLE,
                reason::KUBECONFIG_REFUSED,
                message,
            ))
        };
        let vetted = kubeconfig::vet(&raw.0).map_err(|e| {
            refused(format!(
                "kubeconfig in Secret {secret_ref} key {:?} refused: {e}",
                reference.key
            ))
        })?;
        let mut config =
            kube::Config::from_custom_kubeconfig(vetted, &KubeConfigOptions::default())
                .await
                .map_err(|e| {
                    refused(format!(
                        "kubeconfig in Secret {secret_ref}: {}",
                        redact_config_error(&e)
                    ))
                })?;
        config.connect_timeout = Some(Duration::from_secs(5));
        let client = super::fence::client(config).map_err(|e| {
            refused(format!(
                "kubeconfig in Secret {secret_ref}: cannot build a client: {}",
                redact_client_error(&e)
            ))
        })?;
        let cluster = Cluster::new(client, trigger.clone());
        self.inner
            .lock()
            .expect("members lock")
            .insert(key, (fingerprint, cluster.clone()));
        tracing::info!(meshcluster = %format!("{ns}/{}", mc.name_any()), "connected to member cluster");
        Ok(cluster)
    }

    /// Drops the connection of `mc` (its watches stop).
    pub fn drop_member(&self, mc: &ObjectRef<MeshCluster>) {
        self.inner.lock().expect("members lock").remove(mc);
    }
}

/// kube's kubeconfig errors can quote file content (e.g. a bad PEM): keep
/// only the category.
fn redact_config_error(e: &kube::config::KubeconfigError) -> String {
    use kube::config::KubeconfigError as E;
    match e {
        E::CurrentContextNotSet => "no current-context".into(),
        E::FindPath => "no kubeconfig path".into(),
        E::LoadContext(name) => format!("context {name:?} not found"),
        E::LoadClusterOfContext(name) => format!("cluster {name:?} not found"),
        E::ParseClusterUrl(_) => "the cluster server URL does not parse".into(),
        _ => "the certificate, key or CA data is not usable".into(),
    }
}

fn redact_client_error(_e: &kube::Error) -> String {
    "the TLS configuration (certificate, key or CA) is not usable".into()
}

/// Asks the member for its version: the reachability probe.
pub async fn probe(client: &Client) -> Result<String, String> {
    match tokio::time::timeout(MEMBER_TIMEOUT, client.apiserver_version()).await {
        Ok(Ok(v)) => Ok(v.git_version),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {MEMBER_TIMEOUT:?}")),
    }
}

/// What the secret sync found.
pub struct SyncOutcome {
    pub condition: Found,
    pub synced: Vec<SyncedSecret>,
    pub writes: u32,
}

fn loc(l: &SecretLocation) -> String {
    format!("{}/{}", l.namespace, l.name)
}

/// Copies the trust Secrets of `mc` from `management` into `target`.
pub async fn sync_secrets(
    management: &Client,
    target: &Client,
    mc: &MeshCluster,
    previous: &[SyncedSecret],
) -> Result<SyncOutcome, kube::Error> {
    let syncs = secret_sync::effective_syncs(&mc.spec);
    if syncs.is_empty() {
        return Ok(SyncOutcome {
            condition: Found::ok(
                types::SECRETS_SYNCED,
                reason::NOTHING_TO_SYNC,
                "spec.federation lists no Secrets",
            ),
            synced: Vec::new(),
            writes: 0,
        });
    }
    // Fetch the sources (by name: no Secret list, no Secret cache).
    let mut sources = BTreeMap::new();
    for s in &syncs {
        if sources.contains_key(&s.source) {
            continue;
        }
        let api: Api<Secret> = Api::namespaced(management.clone(), &s.source.namespace);
        let found = api
            .get_opt(&s.source.name)
            .await?
            .map(|secret| SourceSecret {
                data: secret
                    .data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.0))
                    .collect(),
            });
        sources.insert(s.source.clone(), found);
    }
    let plan = secret_sync::plan(&mc.name_any(), &syncs, &sources);

    let mut writes = 0;
    let mut synced = Vec::new();
    let namespaces: Api<Namespace> = Api::all(target.clone());
    for desired in &plan.desired {
        let ns = &desired.target.namespace;
        if namespaces.get_opt(ns).await?.is_none() {
            let body = json!({
                "apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": ns, "labels": {MANAGED_BY.0: MANAGED_BY.1}},
            });
            // A plain create: it fails only if the namespace appeared since.
            match ssa::create(&namespaces, &body).await {
                Ok(_) => writes += 1,
                Err(e) if ssa::is_conflict(&e) => {}
                Err(e) => return Err(e),
            }
        }
        let api: Api<Secret> = Api::namespaced(target.clone(), ns);
        let observed = api.get_opt(&desired.target.name).await?;
        let observed_data: Option<(secret_sync::SecretData, BTreeMap<String, String>)> =
            observed.as_ref().map(|s| {
                // Only our keys count: keys someone else added are theirs.
                let data = s
                    .data
                    .clone()
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|(k, _)| desired.data.contains_key(k))
                    .map(|(k, v)| (k, v.0))
                    .collect();
                (data, s.annotations().clone())
            });
        let action =
            secret_sync::target_action(desired, observed_data.as_ref().map(|(d, a)| (d, a)));
        if action != TargetAction::Unchanged {
            let data: BTreeMap<String, ByteString> = desired
                .data
                .iter()
                .map(|(k, v)| (k.clone(), ByteString(v.clone())))
                .collect();
            let body = json!({
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {
                    "name": desired.target.name,
                    "namespace": ns,
                    "labels": desired.labels,
                    "annotations": desired.annotations,
                },
                "data": data,
            });
            ssa::apply(&api, &desired.target.name, &body).await?;
            writes += 1;
            tracing::info!(
                meshcluster = %mc.name_any(),
                target = %loc(&desired.target),
                action = ?action,
                hash = %desired.hash,
                "synced Secret"
            );
        }
        synced.push(desired.status());
    }
    // Targets whose source is missing keep their copy: list them as before.
    for p in previous {
        if !synced.iter().any(|s| s.target == p.target)
            && syncs.iter().any(|s| loc(&s.target) == p.target)
        {
            synced.push(p.clone());
        }
    }
    synced.sort_by(|a, b| a.target.cmp(&b.target));
    let condition = if plan.problems.is_empty() {
        Found::ok(
            types::SECRETS_SYNCED,
            reason::SYNCED,
            format!(
                "{} Secret(s) up to date: {}",
                plan.desired.len(),
                plan.desired
                    .iter()
                    .map(|d| loc(&d.target))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    } else {
        let defaults = if mc.spec.federation.is_none() {
            " (spec.federation is absent: the default Gloo Mesh relay pair)"
        } else {
            ""
        };
        Found::fail(
            types::SECRETS_SYNCED,
            reason::SOURCE_MISSING,
            format!(
                "{}{defaults}; existing copies are kept",
                summarize(&plan.problems)
            ),
        )
    };
    Ok(SyncOutcome {
        condition,
        synced,
        writes,
    })
}

/// On MeshCluster deletion: removes the copies still managed for it, when
/// `spec.federation.deleteOnRemoval` asks for it.
pub async fn remove_copies(target: &Client, mc: &MeshCluster) -> Result<u32, kube::Error> {
    let delete = mc
        .spec
        .federation
        .as_ref()
        .is_some_and(|f| f.delete_on_removal);
    if !delete {
        return Ok(0);
    }
    let mut deleted = 0;
    for s in secret_sync::effective_syncs(&mc.spec) {
        let api: Api<Secret> = Api::namespaced(target.clone(), &s.target.namespace);
        let Some(secret) = api.get_opt(&s.target.name).await? else {
            continue;
        };
        if secret_sync::may_delete_on_removal(&mc.name_any(), true, secret.labels())
            && ssa::delete_tolerant(&api, &s.target.name).await?
        {
            deleted += 1;
        }
    }
    Ok(deleted)
}

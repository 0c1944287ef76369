//! Member connections: one client per MeshCluster with a
//! `kubeconfigSecretRef`, built from its kubeconfig Secret once
//! [`crate::desired::kubeconfig::vet`] accepted it (inline token or
//! client-certificate credentials over verified https only), and the
//! reachability probe.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::config::{
    AuthInfo, Cluster as ClusterEntry, Context as ContextEntry, KubeConfigOptions, Kubeconfig,
    NamedAuthInfo, NamedCluster, NamedContext,
};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Client, ResourceExt};
use secrecy::{ExposeSecret, SecretSlice};
use sha2::{Digest, Sha256};

use crate::api::MeshCluster;
use crate::api::conditions::{self as types, reason};
use crate::controller::cluster::{Cluster, Trigger};
use crate::controller::ssa;
use crate::desired::conditions::Found;
use crate::desired::kubeconfig::{self, Vetted};
use crate::desired::redact;

/// How long one call to a member may take before it counts as unreachable.
pub const MEMBER_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a member is looked at (reads only), so an outage shows within
/// 30 s and a recovery is picked up without a restart.
pub const MEMBER_RESYNC: Duration = Duration::from_secs(10);

/// A member connection and the SHA-256 of the kubeconfig it was made from
/// (kept in memory only, to notice a changed kubeconfig).
type Connection = (String, Arc<Cluster>);

/// The member connections, one per MeshCluster with a kubeconfigSecretRef.
#[derive(Default)]
pub struct Members {
    inner: Mutex<HashMap<ObjectRef<MeshCluster>, Connection>>,
}

/// Why there is no usable connection.
pub struct Unusable(pub Found);

/// What the kubeconfig Secret held under the key the MeshCluster names.
enum Read {
    NotFound,
    NoKey,
    Kubeconfig(SecretSlice<u8>),
}

/// Reads the kubeconfig Secret and keeps only the named key, wrapped, so
/// the Secret object itself goes no further.
async fn read_kubeconfig(api: &Api<Secret>, name: &str, key: &str) -> Result<Read, kube::Error> {
    Ok(match api.get_opt(name).await? {
        None => Read::NotFound,
        Some(secret) => match secret.data.and_then(|mut d| d.remove(key)) {
            None => Read::NoKey,
            Some(raw) => Read::Kubeconfig(raw.0.into()),
        },
    })
}

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
        let raw = match read_kubeconfig(&secrets, &reference.name, &reference.key).await {
            Ok(Read::Kubeconfig(raw)) => raw,
            Ok(Read::NotFound) => {
                return Err(missing(format!(
                    "spec.kubeconfigSecretRef: Secret {secret_ref} not found"
                )));
            }
            Ok(Read::NoKey) => {
                return Err(missing(format!(
                    "spec.kubeconfigSecretRef.key: Secret {secret_ref} has no key {:?}",
                    reference.key
                )));
            }
            Err(e) => {
                return Err(missing(format!(
                    "spec.kubeconfigSecretRef: reading Secret {secret_ref}: {}",
                    ssa::describe(&e)
                )));
            }
        };
        let fingerprint = format!("{:x}", Sha256::digest(raw.expose_secret()));
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
        let vetted = kubeconfig::vet(raw.expose_secret()).map_err(|e| {
            refused(format!(
                "kubeconfig in Secret {secret_ref} key {:?} refused: {e}",
                reference.key
            ))
        })?;
        let server = vetted.server.clone();
        let mut config = kube::Config::from_custom_kubeconfig(
            kube_config(vetted),
            &KubeConfigOptions::default(),
        )
        .await
        .map_err(|e| {
            refused(format!(
                "kubeconfig in Secret {secret_ref}: {}",
                redact_config_error(&e)
            ))
        })?;
        config.connect_timeout = Some(Duration::from_secs(5));
        let client = crate::controller::fence::client(config).map_err(|_| {
            refused(format!(
                "kubeconfig in Secret {secret_ref}: cannot build a client: the TLS configuration (certificate, key or CA) is not usable"
            ))
        })?;
        let cluster = Cluster::new(client, trigger.clone(), Some(server));
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

/// The kubeconfig a client is built from: the vetted context alone, under
/// fixed names, so kube reads nothing that was not checked.
fn kube_config(v: Vetted) -> Kubeconfig {
    const NAME: &str = "member";
    let Vetted {
        context: _,
        server,
        certificate_authority_data,
        tls_server_name,
        proxy_url,
        disable_compression,
        namespace,
        credentials,
        impersonate,
        impersonate_uid,
        impersonate_groups,
    } = v;
    let (client_certificate_data, client_key_data) = credentials.client_certificate.unzip();
    Kubeconfig {
        clusters: vec![NamedCluster {
            name: NAME.into(),
            cluster: Some(ClusterEntry {
                server: Some(server),
                certificate_authority_data,
                tls_server_name,
                proxy_url,
                disable_compression,
                ..ClusterEntry::default()
            }),
            ..NamedCluster::default()
        }],
        auth_infos: vec![NamedAuthInfo {
            name: NAME.into(),
            auth_info: Some(AuthInfo {
                token: credentials.token,
                client_certificate_data,
                client_key_data,
                impersonate,
                impersonate_uid,
                impersonate_groups,
                ..AuthInfo::default()
            }),
            ..NamedAuthInfo::default()
        }],
        contexts: vec![NamedContext {
            name: NAME.into(),
            context: Some(ContextEntry {
                cluster: NAME.into(),
                user: Some(NAME.into()),
                namespace,
                ..ContextEntry::default()
            }),
            ..NamedContext::default()
        }],
        current_context: Some(NAME.into()),
        ..Kubeconfig::default()
    }
}

/// kube's kubeconfig errors can quote file content (e.g. a bad PEM): keep
/// only the category.
fn redact_config_error(e: &kube::config::KubeconfigError) -> String {
    use kube::config::KubeconfigError as E;
    match e {
        E::ParseClusterUrl(_) => "the cluster server URL does not parse".into(),
        E::ParseProxyUrl(_) => "the proxy URL does not parse".into(),
        _ => "the certificate, key or CA data is not usable".into(),
    }
}

/// Asks the member for its version: the reachability probe. Both the
/// version and the failure are reduced to what may be shown
/// ([`redact`]).
pub async fn probe(client: &Client) -> Result<String, String> {
    match tokio::time::timeout(MEMBER_TIMEOUT, client.apiserver_version()).await {
        Ok(Ok(v)) => Ok(redact::server_version(&v.git_version)),
        Ok(Err(e)) => Err(ssa::describe(&e)),
        Err(_) => Err(format!("no answer within {MEMBER_TIMEOUT:?}")),
    }
}

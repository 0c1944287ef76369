//! The plan for copying trust Secrets from the management cluster into a
//! member (what seed 000 does by hand with `kubectl get secret | base64 -d`
//! and `kubectl create secret generic`). Pure: the controller reads the
//! sources and the targets, and this says what each target should hold and
//! whether to write it.
//!
//! Safety rules the plan encodes:
//! - a sync whose source Secret or one of whose keys is missing (or whose
//!   source holds no data) yields a [`Problem`] and no [`DesiredSecret`]:
//!   the existing copy in the member is left as it is, never deleted or
//!   blanked because its source vanished;
//! - problems and `Debug` output name Secrets and keys, never data: values
//!   are [`SecretValue`]s, which show their length only;
//! - the content hash in the status and on the copy is keyed
//!   ([`content_hash`], HMAC-SHA256 with the installation's [`HashKey`]): a
//!   plain hash of a short token could be reversed by trying candidates, and
//!   would tell whoever reads a MeshCluster or a member's copy whether two
//!   Secrets anywhere hold the same value;
//! - a copy is deleted on MeshCluster removal only when the spec asks for it
//!   and the copy still carries dualmesh's labels for that MeshCluster.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use super::istio_operator::{MANAGED_BY, MESH_CLUSTER_LABEL};
use super::validate::Problem;
use crate::api::{KeyMapping, MeshClusterSpec, SecretLocation, SecretSync, SyncedSecret};

mod hash;
mod report;
pub use hash::{
    CONTENT_HASH_ANNOTATION, HASH_KEY_DATA, HASH_KEY_LEN, HASH_KEY_SECRET, HashKey, SecretData,
    SecretValue, content_hash,
};
pub use report::{CopyBody, Encoded, copy_body, nothing_to_sync, report};

/// The namespace of the Gloo Mesh relay Secrets copied by default.
pub const RELAY_NAMESPACE: &str = "gloo-mesh";

/// The Gloo Mesh relay pair a member gets when `spec.federation` is absent:
/// `relay-root-tls-secret` key `ca.crt` (only the CA certificate, never the
/// relay server's `tls.key`) and `relay-identity-token-secret` key `token`,
/// both from and to namespace `gloo-mesh`.
pub fn default_relay_syncs() -> Vec<SecretSync> {
    [
        ("relay-root-tls-secret", "ca.crt"),
        ("relay-identity-token-secret", "token"),
    ]
    .into_iter()
    .map(|(name, key)| {
        let loc = SecretLocation {
            namespace: RELAY_NAMESPACE.to_string(),
            name: name.to_string(),
        };
        SecretSync {
            source: loc.clone(),
            keys: vec![KeyMapping {
                from: key.to_string(),
                to: None,
            }],
            target: loc,
        }
    })
    .collect()
}

/// The Secrets to copy for a MeshCluster: `spec.federation.secrets` when
/// federation is set (possibly empty); otherwise the relay pair
/// ([`default_relay_syncs`]) for a member (`kubeconfigSecretRef` set) and
/// nothing for the cluster dualmesh runs in.
pub fn effective_syncs(spec: &MeshClusterSpec) -> Vec<SecretSync> {
    match (&spec.federation, &spec.kubeconfig_secret_ref) {
        (Some(fed), _) => fed.secrets.clone(),
        (None, Some(_)) => default_relay_syncs(),
        (None, None) => Vec::new(),
    }
}

/// A source Secret as the controller read it from the management cluster.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SourceSecret {
    /// The Secret's data (decoded bytes), by key.
    pub data: SecretData,
}

impl fmt::Debug for SourceSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SourceSecret")
            .field("data", &self.data)
            .finish()
    }
}

/// What one target Secret in the member should be.
#[derive(Clone, PartialEq, Eq)]
pub struct DesiredSecret {
    /// Where the copy goes in the member.
    pub target: SecretLocation,
    /// Where it comes from in the management cluster.
    pub source: SecretLocation,
    /// The copy's data, keys renamed as the sync says.
    pub data: SecretData,
    /// [`content_hash`] of `data`.
    pub hash: String,
    /// `app.kubernetes.io/managed-by: dualmesh` and
    /// `dualmesh.io/meshcluster: <MeshCluster name>`.
    pub labels: BTreeMap<String, String>,
    /// `dualmesh.io/content-hash: <hash>`.
    pub annotations: BTreeMap<String, String>,
}

impl DesiredSecret {
    /// The status entry for this copy (locations and hash, never data).
    pub fn status(&self) -> SyncedSecret {
        SyncedSecret {
            target: location(&self.target),
            source: location(&self.source),
            hash: self.hash.clone(),
        }
    }
}

impl fmt::Debug for DesiredSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DesiredSecret")
            .field("target", &self.target)
            .field("source", &self.source)
            .field("data", &self.data)
            .field("hash", &self.hash)
            .field("labels", &self.labels)
            .field("annotations", &self.annotations)
            .finish()
    }
}

/// The outcome of [`plan`]: the copies to make, and why others were skipped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// One entry per sync that can be carried out, in the syncs' order.
    pub desired: Vec<DesiredSecret>,
    /// One entry per missing source, missing key, empty source or repeated
    /// target, in the syncs' order. Names Secrets and keys, never data.
    pub problems: Vec<Problem>,
}

/// Plans the copies of `syncs` (usually [`effective_syncs`]) for the
/// MeshCluster `mesh_cluster_name`, from the source Secrets the controller
/// read (`None`, or no entry at all: not found), hashing with `key`.
/// Problem fields are `spec.federation.secrets[i]…`, `i` being the index in
/// `syncs`.
pub fn plan(
    key: &HashKey,
    mesh_cluster_name: &str,
    syncs: &[SecretSync],
    sources: &BTreeMap<SecretLocation, Option<SourceSecret>>,
) -> Plan {
    let mut out = Plan::default();
    let mut targets = BTreeSet::new();
    for (i, sync) in syncs.iter().enumerate() {
        let base = format!("spec.federation.secrets[{i}]");
        let problem = |field: String, message: String| Problem { field, message };
        if !targets.insert(&sync.target) {
            out.problems.push(problem(
                format!("{base}.target"),
                format!(
                    "{} is already the target of an earlier entry",
                    location(&sync.target)
                ),
            ));
            continue;
        }
        let Some(Some(source)) = sources.get(&sync.source) else {
            out.problems.push(problem(
                format!("{base}.source"),
                format!(
                    "Secret {} not found in the management cluster",
                    location(&sync.source)
                ),
            ));
            continue;
        };
        let mut data = BTreeMap::new();
        let mut complete = true;
        if sync.keys.is_empty() {
            if source.data.is_empty() {
                out.problems.push(problem(
                    format!("{base}.source"),
                    format!(
                        "Secret {} in the management cluster has no data to copy",
                        location(&sync.source)
                    ),
                ));
                continue;
            }
            data = source.data.clone();
        }
        for (j, key) in sync.keys.iter().enumerate() {
            let to = key.to.as_ref().unwrap_or(&key.from);
            let Some(value) = source.data.get(&key.from) else {
                out.problems.push(problem(
                    format!("{base}.keys[{j}].from"),
                    format!(
                        "key {} missing from Secret {} in the management cluster",
                        key.from,
                        location(&sync.source)
                    ),
                ));
                complete = false;
                continue;
            };
            if data.insert(to.clone(), value.clone()).is_some() {
                out.problems.push(problem(
                    format!("{base}.keys[{j}]"),
                    format!("two keys are copied to {to}"),
                ));
                complete = false;
            }
        }
        if !complete {
            continue;
        }
        let hash = content_hash(key, &data);
        out.desired.push(DesiredSecret {
            target: sync.target.clone(),
            source: sync.source.clone(),
            labels: BTreeMap::from([
                (MANAGED_BY.0.to_string(), MANAGED_BY.1.to_string()),
                (
                    MESH_CLUSTER_LABEL.to_string(),
                    mesh_cluster_name.to_string(),
                ),
            ]),
            annotations: BTreeMap::from([(CONTENT_HASH_ANNOTATION.to_string(), hash.clone())]),
            data,
            hash,
        });
    }
    out
}

/// What to do with one target Secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetAction {
    /// The target does not exist: create it.
    Create,
    /// The target exists but is not (or no longer) the copy dualmesh would
    /// write: its content-hash annotation is missing or differs (the source
    /// changed, the hash key was rotated, or the Secret was made by hand).
    /// Write it.
    Update,
    /// The target matches: nothing to do.
    Unchanged,
    /// The annotation says the target is current but its data was edited
    /// since: write it back.
    Repair,
}

/// Compares a desired copy with the target as observed in the member
/// (`None`: not found; otherwise its data, only the keys dualmesh copies,
/// and its annotations).
pub fn target_action(
    desired: &DesiredSecret,
    observed: Option<(&SecretData, &BTreeMap<String, String>)>,
) -> TargetAction {
    let Some((data, annotations)) = observed else {
        return TargetAction::Create;
    };
    let annotated = annotations.get(CONTENT_HASH_ANNOTATION) == Some(&desired.hash);
    match (annotated, *data == desired.data) {
        (true, true) => TargetAction::Unchanged,
        (true, false) => TargetAction::Repair,
        (false, _) => TargetAction::Update,
    }
}

/// Whether a copy may be deleted when its MeshCluster goes away: only when
/// `spec.federation.deleteOnRemoval` is true and the copy still carries
/// `app.kubernetes.io/managed-by: dualmesh` and
/// `dualmesh.io/meshcluster: <mesh_cluster_name>`.
pub fn may_delete_on_removal(
    mesh_cluster_name: &str,
    delete_on_removal: bool,
    observed_labels: &BTreeMap<String, String>,
) -> bool {
    delete_on_removal
        && observed_labels.get(MANAGED_BY.0).map(String::as_str) == Some(MANAGED_BY.1)
        && observed_labels.get(MESH_CLUSTER_LABEL).map(String::as_str) == Some(mesh_cluster_name)
}

/// `namespace/name`.
fn location(loc: &SecretLocation) -> String {
    format!("{}/{}", loc.namespace, loc.name)
}

#[cfg(test)]
mod tests;

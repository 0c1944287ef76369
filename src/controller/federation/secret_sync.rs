//! The sync of trust Secrets from the management cluster into a member
//! (plan in [`crate::desired::secret_sync`]), and the removal of the copies
//! when a MeshCluster goes.
//!
//! Every Secret read becomes a [`SecretData`] (values that `Debug` shows as
//! lengths) at once; the raw object goes no further. Apply bodies are
//! `Serialize` only.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use crate::api::conditions::{self as types, reason};
use crate::api::{MeshCluster, SecretLocation, SyncedSecret};
use crate::controller::{FIELD_MANAGER, ssa};
use crate::desired::conditions::Found;
use crate::desired::istio_operator::MANAGED_BY;
use crate::desired::secret_sync::{
    self, HASH_KEY_DATA, HASH_KEY_LEN, HASH_KEY_SECRET, HashKey, SecretData, SecretValue,
    SourceSecret, TargetAction,
};

/// What the secret sync found.
pub struct SyncOutcome {
    pub condition: Found,
    pub synced: Vec<SyncedSecret>,
    pub writes: u32,
}

static NO_ANNOTATIONS: BTreeMap<String, String> = BTreeMap::new();

fn loc(l: &SecretLocation) -> String {
    format!("{}/{}", l.namespace, l.name)
}

/// A Secret's data (all keys, or only `keep`), and its metadata; the
/// object itself is dropped here.
pub(super) async fn read_secret(
    api: &Api<Secret>,
    name: &str,
    keep: Option<&SecretData>,
) -> Result<Option<(SecretData, ObjectMeta)>, kube::Error> {
    Ok(api.get_opt(name).await?.map(|secret| {
        let data = secret
            .data
            .unwrap_or_default()
            .into_iter()
            .filter(|(k, _)| keep.is_none_or(|want| want.contains_key(k)))
            .map(|(k, v)| (k, SecretValue::from(v.0)))
            .collect();
        (data, secret.metadata)
    }))
}

/// The installation's content-hash key, from Secret [`HASH_KEY_SECRET`] in
/// `namespace` of the management cluster; made when absent by a create (so
/// two replicas or reconciles racing keep one key: the second create is
/// answered 409 and reads the first's). `Ok(Err(why))`: the Secret exists
/// but holds no usable key; it is never overwritten.
async fn hash_key(
    management: &Client,
    namespace: &str,
) -> Result<Result<HashKey, String>, kube::Error> {
    let api: Api<Secret> = Api::namespaced(management.clone(), namespace);
    let secret_ref = format!("{namespace}/{HASH_KEY_SECRET}");
    if let Some((data, _)) = read_secret(&api, HASH_KEY_SECRET, None).await? {
        return Ok(HashKey::from_secret(&secret_ref, &data));
    }
    let mut bytes = vec![0u8; HASH_KEY_LEN];
    // Fails only without the kernel's random source, where no TLS
    // connection (rustls draws from the same) could be made either.
    getrandom::fill(&mut bytes).expect("the operating system's random source");
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(HASH_KEY_SECRET.into()),
            namespace: Some(namespace.into()),
            labels: Some(BTreeMap::from([(
                MANAGED_BY.0.to_string(),
                MANAGED_BY.1.to_string(),
            )])),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([(
            HASH_KEY_DATA.to_string(),
            ByteString(bytes.clone()),
        )])),
        ..Secret::default()
    };
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PostParams::default()
    };
    match api.create(&params, &secret).await {
        Ok(_) => {
            tracing::info!(secret = %secret_ref, "created the content-hash key");
            Ok(Ok(HashKey::new(bytes).expect("generated at full length")))
        }
        Err(kube::Error::Api(s)) if s.code == 409 => {
            match read_secret(&api, HASH_KEY_SECRET, None).await? {
                Some((data, _)) => Ok(HashKey::from_secret(&secret_ref, &data)),
                None => Err(kube::Error::Api(s)),
            }
        }
        Err(e) => Err(e),
    }
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
            condition: secret_sync::nothing_to_sync(),
            synced: Vec::new(),
            writes: 0,
        });
    }
    let key = match hash_key(management, &mc.namespace().unwrap_or_default()).await? {
        Ok(key) => key,
        Err(why) => {
            return Ok(SyncOutcome {
                condition: Found::fail(types::SECRETS_SYNCED, reason::HASH_KEY_UNUSABLE, why),
                synced: previous.to_vec(),
                writes: 0,
            });
        }
    };
    // Fetch the sources (by name: no Secret list, no Secret cache).
    let mut sources = BTreeMap::new();
    for s in &syncs {
        if sources.contains_key(&s.source) {
            continue;
        }
        let api: Api<Secret> = Api::namespaced(management.clone(), &s.source.namespace);
        let found = read_secret(&api, &s.source.name, None)
            .await?
            .map(|(data, _)| SourceSecret { data });
        sources.insert(s.source.clone(), found);
    }
    let plan = secret_sync::plan(&key, &mc.name_any(), &syncs, &sources);

    let mut writes = 0;
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
        // Only our keys count: keys someone else added are theirs.
        let observed = read_secret(&api, &desired.target.name, Some(&desired.data)).await?;
        let action = secret_sync::target_action(
            desired,
            observed
                .as_ref()
                .map(|(d, m)| (d, m.annotations.as_ref().unwrap_or(&NO_ANNOTATIONS))),
        );
        match (&action, &observed) {
            (TargetAction::Unchanged, _) => continue,
            // Absent when read: a create, refused (409) if it appeared since.
            (_, None) => {
                ssa::create_serialized::<Secret, _>(
                    target,
                    ns,
                    &secret_sync::copy_body(desired, None),
                )
                .await?;
            }
            // Present: an apply carrying the resourceVersion read (after
            // folding a create's field ownership into dualmesh's apply).
            (_, Some((_, meta))) => {
                let rv = ssa::adopt(&api, &desired.target.name, meta)
                    .await?
                    .or_else(|| meta.resource_version.clone());
                let body = secret_sync::copy_body(desired, rv.as_deref());
                ssa::apply(&api, &desired.target.name, &body).await?;
            }
        }
        writes += 1;
        tracing::info!(
            meshcluster = %mc.name_any(),
            target = %loc(&desired.target),
            action = ?action,
            hash = %desired.hash,
            "synced Secret"
        );
    }
    let (condition, synced) =
        secret_sync::report(&plan, &syncs, previous, mc.spec.federation.is_none());
    Ok(SyncOutcome {
        condition,
        synced,
        writes,
    })
}

/// On MeshCluster deletion: removes the copies still managed for it, when
/// `spec.federation.deleteOnRemoval` asks for it. Reads the copies'
/// metadata only.
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
        let Some(meta) = api.get_metadata_opt(&s.target.name).await? else {
            continue;
        };
        if secret_sync::may_delete_on_removal(&mc.name_any(), true, meta.labels())
            && ssa::delete_read(&api, &meta.metadata).await?
        {
            deleted += 1;
        }
    }
    Ok(deleted)
}

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
//! - problems and `Debug` output name Secrets and keys, never data;
//! - a copy is deleted on MeshCluster removal only when the spec asks for it
//!   and the copy still carries dualmesh's labels for that MeshCluster.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use sha2::{Digest, Sha256};

use super::istio_operator::{MANAGED_BY, MESH_CLUSTER_LABEL};
use super::validate::Problem;
use crate::api::{KeyMapping, MeshClusterSpec, SecretLocation, SecretSync, SyncedSecret};

/// A Secret's data: decoded bytes by key.
pub type SecretData = BTreeMap<String, Vec<u8>>;

/// The annotation holding [`content_hash`] of the data dualmesh wrote.
pub const CONTENT_HASH_ANNOTATION: &str = "dualmesh.io/content-hash";

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
            .field("data", &Redacted(&self.data))
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
            .field("data", &Redacted(&self.data))
            .field("hash", &self.hash)
            .field("labels", &self.labels)
            .field("annotations", &self.annotations)
            .finish()
    }
}

/// Shows keys and value lengths, never values.
struct Redacted<'a>(&'a SecretData);

impl fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(k, v)| (k, Bytes(v.len()))))
            .finish()
    }
}

/// A value's length, as `<n bytes>`.
struct Bytes(usize);

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{} bytes>", self.0)
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
/// read (`None`, or no entry at all: not found). Problem fields are
/// `spec.federation.secrets[i]…`, `i` being the index in `syncs`.
pub fn plan(
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
        let hash = content_hash(&data);
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

/// SHA-256, lowercase hex, of a Secret's data: for each entry in key order,
/// the key's byte length in decimal, NUL, the key, the value's byte length
/// in decimal, NUL, the value. Length-prefixed, so no two different maps
/// encode the same.
pub fn content_hash(data: &SecretData) -> String {
    let mut h = Sha256::new();
    for (k, v) in data {
        h.update(k.len().to_string());
        h.update([0]);
        h.update(k);
        h.update(v.len().to_string());
        h.update([0]);
        h.update(v);
    }
    format!("{:x}", h.finalize())
}

/// What to do with one target Secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetAction {
    /// The target does not exist: create it.
    Create,
    /// The target exists but is not (or no longer) the copy dualmesh would
    /// write: its content-hash annotation is missing or differs (the source
    /// changed, or the Secret was made by hand). Write it.
    Update,
    /// The target matches: nothing to do.
    Unchanged,
    /// The annotation says the target is current but its data was edited
    /// since: write it back.
    Repair,
}

/// Compares a desired copy with the target as observed in the member
/// (`None`: not found; otherwise its data and annotations).
pub fn target_action(
    desired: &DesiredSecret,
    observed: Option<(&SecretData, &BTreeMap<String, String>)>,
) -> TargetAction {
    let Some((data, annotations)) = observed else {
        return TargetAction::Create;
    };
    let annotated = annotations.get(CONTENT_HASH_ANNOTATION) == Some(&desired.hash);
    match (annotated, content_hash(data) == desired.hash) {
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
mod tests {
    use super::*;
    use crate::api::{FederationSpec, KubeconfigSecretReference, MeshCluster};
    use proptest::prelude::*;

    const CA_PEM: &[u8] = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    const TLS_KEY: &[u8] =
        b"-----BEGIN PRIVATE KEY-----\nrelay-server-key\n-----END PRIVATE KEY-----\n";
    const TOKEN: &[u8] = b"relay-bootstrap-token";
    /// `content_hash` of `{ca.crt: CA_PEM, token: TOKEN}`, computed
    /// independently (Python hashlib over the documented encoding).
    const GOLDEN: &str = "c9f70735904f56ee4c6ef148c7e8c46fcc8779b5bbcc772ca17d022a86c6305c";
    /// `content_hash` of `{token: TOKEN}`, likewise.
    const TOKEN_HASH: &str = "663b7c574e714226198ea974e8979b7753c482e88208814e87cf2dda1d777f8b";

    fn loc(namespace: &str, name: &str) -> SecretLocation {
        SecretLocation {
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }

    fn data(entries: &[(&str, &[u8])]) -> BTreeMap<String, Vec<u8>> {
        entries
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_vec()))
            .collect()
    }

    fn key(from: &str, to: Option<&str>) -> KeyMapping {
        KeyMapping {
            from: from.to_string(),
            to: to.map(str::to_string),
        }
    }

    fn example(name: &str) -> MeshClusterSpec {
        let yaml = match name {
            "alpha" => include_str!("../../examples/meshcluster-alpha.yaml"),
            _ => include_str!("../../examples/meshcluster-beta.yaml"),
        };
        serde_saphyr::from_str::<MeshCluster>(yaml).unwrap().spec
    }

    fn labels(mesh_cluster: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            (
                "app.kubernetes.io/managed-by".to_string(),
                "dualmesh".to_string(),
            ),
            (
                "dualmesh.io/meshcluster".to_string(),
                mesh_cluster.to_string(),
            ),
        ])
    }

    fn annotations(hash: &str) -> BTreeMap<String, String> {
        BTreeMap::from([("dualmesh.io/content-hash".to_string(), hash.to_string())])
    }

    /// The management cluster's relay Secrets, as Gloo Mesh makes them.
    fn relay_sources() -> BTreeMap<SecretLocation, Option<SourceSecret>> {
        BTreeMap::from([
            (
                loc("gloo-mesh", "relay-root-tls-secret"),
                Some(SourceSecret {
                    data: data(&[
                        ("ca.crt", CA_PEM),
                        ("tls.crt", CA_PEM),
                        ("tls.key", TLS_KEY),
                    ]),
                }),
            ),
            (
                loc("gloo-mesh", "relay-identity-token-secret"),
                Some(SourceSecret {
                    data: data(&[("token", TOKEN)]),
                }),
            ),
        ])
    }

    fn desired(
        target: SecretLocation,
        source: SecretLocation,
        entries: &[(&str, &[u8])],
    ) -> DesiredSecret {
        let data = data(entries);
        let hash = content_hash(&data);
        DesiredSecret {
            target,
            source,
            labels: labels("beta"),
            annotations: annotations(&hash),
            data,
            hash,
        }
    }

    fn problem(field: &str, message: &str) -> Problem {
        Problem {
            field: field.to_string(),
            message: message.to_string(),
        }
    }

    #[test]
    fn member_without_federation_gets_the_relay_pair() {
        let mut spec = example("beta");
        spec.federation = None;
        assert_eq!(
            effective_syncs(&spec),
            vec![
                SecretSync {
                    source: loc("gloo-mesh", "relay-root-tls-secret"),
                    keys: vec![key("ca.crt", None)],
                    target: loc("gloo-mesh", "relay-root-tls-secret"),
                },
                SecretSync {
                    source: loc("gloo-mesh", "relay-identity-token-secret"),
                    keys: vec![key("token", None)],
                    target: loc("gloo-mesh", "relay-identity-token-secret"),
                },
            ]
        );
        // The beta example spells out the same pair.
        assert_eq!(effective_syncs(&example("beta")), effective_syncs(&spec));
    }

    #[test]
    fn local_cluster_without_federation_copies_nothing() {
        let spec = example("alpha");
        assert_eq!(spec.kubeconfig_secret_ref, None);
        assert_eq!(spec.federation, None);
        assert_eq!(effective_syncs(&spec), vec![]);
    }

    #[test]
    fn federation_present_is_taken_as_written() {
        let mut spec = example("beta");
        spec.federation = Some(FederationSpec::default());
        assert_eq!(effective_syncs(&spec), vec![]);

        let custom = SecretSync {
            source: loc("certs", "root"),
            keys: vec![],
            target: loc("istio-system", "cacerts"),
        };
        spec.kubeconfig_secret_ref = None;
        spec.federation = Some(FederationSpec {
            secrets: vec![custom.clone()],
            delete_on_removal: true,
        });
        assert_eq!(effective_syncs(&spec), vec![custom]);
        spec.kubeconfig_secret_ref = Some(KubeconfigSecretReference {
            name: "beta-kubeconfig".to_string(),
            key: "kubeconfig".to_string(),
        });
        assert_eq!(effective_syncs(&spec).len(), 1);
    }

    #[test]
    fn relay_pair_copies_only_the_listed_keys() {
        let p = plan("beta", &default_relay_syncs(), &relay_sources());
        assert_eq!(
            p,
            Plan {
                desired: vec![
                    desired(
                        loc("gloo-mesh", "relay-root-tls-secret"),
                        loc("gloo-mesh", "relay-root-tls-secret"),
                        &[("ca.crt", CA_PEM)],
                    ),
                    DesiredSecret {
                        target: loc("gloo-mesh", "relay-identity-token-secret"),
                        source: loc("gloo-mesh", "relay-identity-token-secret"),
                        data: data(&[("token", TOKEN)]),
                        hash: TOKEN_HASH.to_string(),
                        labels: labels("beta"),
                        annotations: annotations(TOKEN_HASH),
                    },
                ],
                problems: vec![],
            }
        );
        assert!(!p.desired[0].data.contains_key("tls.key"));
    }

    #[test]
    fn keys_are_renamed_with_to() {
        let syncs = [SecretSync {
            source: loc("gloo-mesh", "relay-root-tls-secret"),
            keys: vec![key("ca.crt", Some("root-cert.pem")), key("tls.crt", None)],
            target: loc("istio-system", "relay-ca"),
        }];
        assert_eq!(
            plan("beta", &syncs, &relay_sources()),
            Plan {
                desired: vec![desired(
                    loc("istio-system", "relay-ca"),
                    loc("gloo-mesh", "relay-root-tls-secret"),
                    &[("root-cert.pem", CA_PEM), ("tls.crt", CA_PEM)],
                )],
                problems: vec![],
            }
        );
    }

    #[test]
    fn no_keys_copies_every_key() {
        let syncs = [SecretSync {
            source: loc("gloo-mesh", "relay-root-tls-secret"),
            keys: vec![],
            target: loc("gloo-mesh", "relay-root-tls-secret"),
        }];
        assert_eq!(
            plan("beta", &syncs, &relay_sources()).desired,
            vec![desired(
                loc("gloo-mesh", "relay-root-tls-secret"),
                loc("gloo-mesh", "relay-root-tls-secret"),
                &[
                    ("ca.crt", CA_PEM),
                    ("tls.crt", CA_PEM),
                    ("tls.key", TLS_KEY)
                ],
            )]
        );
    }

    #[test]
    fn missing_source_is_a_problem_and_plans_nothing_for_that_target() {
        let mut sources = relay_sources();
        sources.insert(loc("gloo-mesh", "relay-root-tls-secret"), None);
        let p = plan("beta", &default_relay_syncs(), &sources);
        assert_eq!(
            p,
            Plan {
                desired: vec![desired(
                    loc("gloo-mesh", "relay-identity-token-secret"),
                    loc("gloo-mesh", "relay-identity-token-secret"),
                    &[("token", TOKEN)],
                )],
                problems: vec![problem(
                    "spec.federation.secrets[0].source",
                    "Secret gloo-mesh/relay-root-tls-secret not found in the management cluster",
                )],
            }
        );
        // A source the controller did not report at all counts as missing.
        sources.remove(&loc("gloo-mesh", "relay-root-tls-secret"));
        assert_eq!(plan("beta", &default_relay_syncs(), &sources), p);
    }

    #[test]
    fn missing_key_is_a_problem_and_plans_nothing_for_that_target() {
        let syncs = [SecretSync {
            source: loc("gloo-mesh", "relay-identity-token-secret"),
            keys: vec![key("token", None), key("ca.crt", None)],
            target: loc("gloo-mesh", "relay-identity-token-secret"),
        }];
        assert_eq!(
            plan("beta", &syncs, &relay_sources()),
            Plan {
                desired: vec![],
                problems: vec![problem(
                    "spec.federation.secrets[0].keys[1].from",
                    "key ca.crt missing from Secret gloo-mesh/relay-identity-token-secret in the management cluster",
                )],
            }
        );
    }

    #[test]
    fn empty_source_copied_whole_is_a_problem() {
        let sources = BTreeMap::from([(loc("certs", "root"), Some(SourceSecret::default()))]);
        let syncs = [SecretSync {
            source: loc("certs", "root"),
            keys: vec![],
            target: loc("istio-system", "cacerts"),
        }];
        assert_eq!(
            plan("beta", &syncs, &sources),
            Plan {
                desired: vec![],
                problems: vec![problem(
                    "spec.federation.secrets[0].source",
                    "Secret certs/root in the management cluster has no data to copy",
                )],
            }
        );
    }

    #[test]
    fn repeated_targets_and_keys_are_problems() {
        let mut syncs = default_relay_syncs();
        syncs.push(SecretSync {
            source: loc("gloo-mesh", "relay-root-tls-secret"),
            keys: vec![],
            target: loc("gloo-mesh", "relay-identity-token-secret"),
        });
        syncs.push(SecretSync {
            source: loc("gloo-mesh", "relay-root-tls-secret"),
            keys: vec![key("ca.crt", None), key("tls.crt", Some("ca.crt"))],
            target: loc("gloo-mesh", "other"),
        });
        let p = plan("beta", &syncs, &relay_sources());
        assert_eq!(p.desired.len(), 2);
        assert_eq!(
            p.problems,
            vec![
                problem(
                    "spec.federation.secrets[2].target",
                    "gloo-mesh/relay-identity-token-secret is already the target of an earlier entry",
                ),
                problem(
                    "spec.federation.secrets[3].keys[1]",
                    "two keys are copied to ca.crt"
                ),
            ]
        );
    }

    #[test]
    fn problems_and_debug_output_never_carry_data() {
        let mut sources = relay_sources();
        sources.insert(loc("gloo-mesh", "relay-identity-token-secret"), None);
        let mut syncs = default_relay_syncs();
        syncs[0].keys.push(key("ca.pem", None));
        syncs.push(SecretSync {
            source: loc("gloo-mesh", "relay-root-tls-secret"),
            keys: vec![],
            target: loc("gloo-mesh", "copy"),
        });
        let p = plan("beta", &syncs, &sources);
        assert_eq!(p.problems.len(), 2);
        assert_eq!(p.desired.len(), 1);
        let debug = format!("{p:?} {:?}", sources);
        assert!(debug.contains("\"tls.key\": <71 bytes>"), "{debug}");
        for planted in ["relay-server-key", "relay-bootstrap-token", "MIIB"] {
            assert!(!debug.contains(planted), "{debug}");
            for pr in &p.problems {
                assert!(!pr.to_string().contains(planted));
            }
        }
    }

    #[test]
    fn status_names_locations_and_hash() {
        let p = plan("beta", &default_relay_syncs(), &relay_sources());
        assert_eq!(
            p.desired[1].status(),
            SyncedSecret {
                target: "gloo-mesh/relay-identity-token-secret".to_string(),
                source: "gloo-mesh/relay-identity-token-secret".to_string(),
                hash: TOKEN_HASH.to_string(),
            }
        );
    }

    #[test]
    fn content_hash_is_stable() {
        assert_eq!(
            content_hash(&data(&[("token", TOKEN), ("ca.crt", CA_PEM)])),
            GOLDEN
        );
        assert_eq!(
            content_hash(&BTreeMap::new()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn content_hash_tells_apart_moved_boundaries() {
        type Entries<'a> = &'a [(&'a str, &'a [u8])];
        let pairs: [(Entries, Entries); 3] = [
            (&[("a", b"bc")], &[("ab", b"c")]),
            (&[("a", b""), ("b", b"")], &[("a", b"1\x00b0\x00")]),
            (&[("k", b"")], &[("k", b"\x00")]),
        ];
        for (x, y) in pairs {
            assert_ne!(content_hash(&data(x)), content_hash(&data(y)));
        }
    }

    #[test]
    fn target_action_covers_every_case() {
        let want = plan("beta", &default_relay_syncs(), &relay_sources()).desired[1].clone();
        let same = data(&[("token", TOKEN)]);
        let edited = data(&[("token", b"edited-by-hand")]);
        let current = annotations(TOKEN_HASH);
        let stale = annotations(GOLDEN);
        let none = BTreeMap::new();
        let cases = [
            (None, TargetAction::Create),
            (Some((&same, &current)), TargetAction::Unchanged),
            (Some((&edited, &current)), TargetAction::Repair),
            (Some((&edited, &stale)), TargetAction::Update),
            (Some((&same, &stale)), TargetAction::Update),
            (Some((&same, &none)), TargetAction::Update),
            (Some((&edited, &none)), TargetAction::Update),
        ];
        for (observed, action) in cases {
            assert_eq!(target_action(&want, observed), action, "{observed:?}");
        }
    }

    #[test]
    fn deletion_needs_the_spec_flag_and_our_labels() {
        let ours = labels("beta");
        let cases = [
            (true, ours.clone(), true),
            (false, ours.clone(), false),
            (true, labels("gamma"), false),
            (true, BTreeMap::new(), false),
            (
                true,
                BTreeMap::from([(
                    "app.kubernetes.io/managed-by".to_string(),
                    "helm".to_string(),
                )]),
                false,
            ),
            (
                true,
                BTreeMap::from([("dualmesh.io/meshcluster".to_string(), "beta".to_string())]),
                false,
            ),
        ];
        for (flag, observed, want) in cases {
            assert_eq!(
                may_delete_on_removal("beta", flag, &observed),
                want,
                "{flag} {observed:?}"
            );
        }
    }

    /// Secret keys, short so that maps collide often.
    const KEY: &str = "[-._a-zA-Z0-9]{1,6}";
    /// Values, short for the same reason.
    fn value() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(any::<u8>(), 0..8)
    }

    proptest! {
        #[test]
        fn different_data_gives_different_hashes(
            a in prop::collection::btree_map(KEY, value(), 0..4),
            b in prop::collection::btree_map(KEY, value(), 0..4),
        ) {
            prop_assume!(a != b);
            prop_assert_ne!(content_hash(&a), content_hash(&b));
        }

        #[test]
        fn near_misses_give_different_hashes(
            a in prop::collection::btree_map(KEY, value(), 1..4),
            pick in any::<prop::sample::Index>(),
            how in 0..4u8,
        ) {
            // One small edit of one entry: a byte more, a byte less, the key's
            // last character moved into the value, or the entry dropped.
            let (k, v) = a.iter().nth(pick.index(a.len())).map(|(k, v)| (k.clone(), v.clone())).unwrap();
            let mut b = a.clone();
            match how {
                0 => { b.get_mut(&k).unwrap().push(0); }
                1 => { b.get_mut(&k).unwrap().pop(); }
                2 if k.len() > 1 => {
                    b.remove(&k);
                    let mut moved = vec![*k.as_bytes().last().unwrap()];
                    moved.extend(&v);
                    b.insert(k[..k.len() - 1].to_string(), moved);
                }
                _ => { b.remove(&k); }
            }
            prop_assume!(a != b);
            prop_assert_ne!(content_hash(&a), content_hash(&b));
        }
    }
}

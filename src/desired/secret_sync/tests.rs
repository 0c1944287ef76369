//! Tests of the sync plan.

use super::hash::testing::*;
use super::*;
use crate::api::{FederationSpec, KubeconfigSecretReference, MeshCluster};

fn loc(namespace: &str, name: &str) -> SecretLocation {
    SecretLocation {
        namespace: namespace.to_string(),
        name: name.to_string(),
    }
}

fn key(from: &str, to: Option<&str>) -> KeyMapping {
    KeyMapping {
        from: from.to_string(),
        to: to.map(str::to_string),
    }
}

fn example(name: &str) -> MeshClusterSpec {
    let yaml = match name {
        "alpha" => include_str!("../../../examples/meshcluster-alpha.yaml"),
        _ => include_str!("../../../examples/meshcluster-beta.yaml"),
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
    let hash = content_hash(&test_key(), &data);
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
    let p = plan(
        &test_key(),
        "beta",
        &default_relay_syncs(),
        &relay_sources(),
    );
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
        plan(&test_key(), "beta", &syncs, &relay_sources()),
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
        plan(&test_key(), "beta", &syncs, &relay_sources()).desired,
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
    let p = plan(&test_key(), "beta", &default_relay_syncs(), &sources);
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
    assert_eq!(
        plan(&test_key(), "beta", &default_relay_syncs(), &sources),
        p
    );
}

#[test]
fn missing_key_is_a_problem_and_plans_nothing_for_that_target() {
    let syncs = [SecretSync {
        source: loc("gloo-mesh", "relay-identity-token-secret"),
        keys: vec![key("token", None), key("ca.crt", None)],
        target: loc("gloo-mesh", "relay-identity-token-secret"),
    }];
    assert_eq!(
        plan(&test_key(), "beta", &syncs, &relay_sources()),
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
        plan(&test_key(), "beta", &syncs, &sources),
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
    let p = plan(&test_key(), "beta", &syncs, &relay_sources());
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
    let p = plan(&test_key(), "beta", &syncs, &sources);
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
    let p = plan(
        &test_key(),
        "beta",
        &default_relay_syncs(),
        &relay_sources(),
    );
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
fn target_action_covers_every_case() {
    let want = plan(
        &test_key(),
        "beta",
        &default_relay_syncs(),
        &relay_sources(),
    )
    .desired[1]
        .clone();
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

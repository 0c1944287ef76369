//! Tests of address selection: whole results, refusals and a property test of the invariants.

use super::*;
use crate::api::DualStackPolicySpec;
use crate::desired::validate::validate_policy;
use proptest::prelude::*;

const V6_ONLY: &str = "{ipFamilies: [IPv6], ipFamilyPolicy: SingleStack}";
const V4_ONLY: &str = "{ipFamilies: [IPv4], ipFamilyPolicy: SingleStack}";
const V6_PRIMARY: &str = "{ipFamilies: [IPv6, IPv4], ipFamilyPolicy: RequireDualStack}";
const V4_PRIMARY: &str = "{ipFamilies: [IPv4, IPv6], ipFamilyPolicy: PreferDualStack}";

/// A policy from YAML: `base` (families) plus its `gatewayAddresses`.
fn policy(base: &str, gateway_addresses: &str) -> ValidPolicy {
    let mut spec: DualStackPolicySpec = serde_saphyr::from_str(base).unwrap();
    if !gateway_addresses.is_empty() {
        spec.gateway_addresses = serde_saphyr::from_str(gateway_addresses).unwrap();
    }
    validate_policy(&spec).unwrap()
}

fn pod(name: &str, node: &str) -> GatewayPod {
    GatewayPod {
        name: name.into(),
        node_name: Some(node.into()),
        running: true,
        ready: true,
        deleting: false,
    }
}

fn node_map(nodes: &[(&str, &[(&str, &str)])]) -> BTreeMap<String, Vec<NodeAddress>> {
    nodes
        .iter()
        .map(|(name, addresses)| {
            let addresses = addresses
                .iter()
                .map(|(kind, address)| NodeAddress {
                    kind: kind.to_string(),
                    address: address.to_string(),
                })
                .collect();
            (name.to_string(), addresses)
        })
        .collect()
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn rejected(node: &str, address: &str, reason: RejectReason) -> Rejected {
    Rejected {
        node: node.into(),
        address: address.into(),
        reason,
    }
}

const MIXED: &[(&str, &str)] = &[
    ("InternalIP", "192.0.2.10"),
    ("InternalIP", "10.0.0.5"),
    ("InternalIP", "2001:db8::10"),
    ("InternalIP", "fd00::10"),
    ("InternalIP", "fe80::1"),
    ("Hostname", "node-a"),
    ("InternalIP", "not-an-ip"),
];

fn mixed_node(p: &ValidPolicy) -> Selection {
    select(&[pod("gw-1", "node-a")], &node_map(&[("node-a", MIXED)]), p)
}

#[test]
fn ipv6_only_takes_the_global_ipv6_address_of_a_mixed_node() {
    use RejectReason::*;
    assert_eq!(
        mixed_node(&policy(V6_ONLY, "")),
        Selection {
            external_ips: strings(&["2001:db8::10"]),
            by_family: vec![(IpFamily::IPv6, strings(&["2001:db8::10"]))],
            ready_pods: 1,
            nodes: strings(&["node-a"]),
            missing_nodes: vec![],
            rejected: vec![
                rejected("node-a", "192.0.2.10", FamilyNotInPolicy),
                rejected("node-a", "10.0.0.5", FamilyNotInPolicy),
                rejected("node-a", "fd00::10", UniqueLocal),
                rejected("node-a", "fe80::1", LinkLocal),
                rejected("node-a", "not-an-ip", Unparseable),
            ],
        }
    );
}

#[test]
fn dual_stack_ipv6_primary_lists_ipv6_first() {
    use RejectReason::*;
    assert_eq!(
        mixed_node(&policy(V6_PRIMARY, "")),
        Selection {
            external_ips: strings(&["2001:db8::10", "192.0.2.10"]),
            by_family: vec![
                (IpFamily::IPv6, strings(&["2001:db8::10"])),
                (IpFamily::IPv4, strings(&["192.0.2.10"])),
            ],
            ready_pods: 1,
            nodes: strings(&["node-a"]),
            missing_nodes: vec![],
            rejected: vec![
                rejected("node-a", "10.0.0.5", PrivateIpv4),
                rejected("node-a", "fd00::10", UniqueLocal),
                rejected("node-a", "fe80::1", LinkLocal),
                rejected("node-a", "not-an-ip", Unparseable),
            ],
        }
    );
}

#[test]
fn dual_stack_ipv4_primary_lists_ipv4_first() {
    let sel = mixed_node(&policy(V4_PRIMARY, ""));
    assert_eq!(sel.external_ips, strings(&["192.0.2.10", "2001:db8::10"]));
    assert_eq!(
        sel.by_family,
        vec![
            (IpFamily::IPv4, strings(&["192.0.2.10"])),
            (IpFamily::IPv6, strings(&["2001:db8::10"])),
        ]
    );
}

#[test]
fn unique_local_only_when_allowed() {
    let sel = mixed_node(&policy(V6_ONLY, "{allowUniqueLocal: true}"));
    assert_eq!(sel.external_ips, strings(&["2001:db8::10", "fd00::10"]));
    assert_eq!(
        sel.rejected
            .iter()
            .map(|r| (r.address.as_str(), r.reason))
            .collect::<Vec<_>>(),
        vec![
            ("192.0.2.10", RejectReason::FamilyNotInPolicy),
            ("10.0.0.5", RejectReason::FamilyNotInPolicy),
            ("fe80::1", RejectReason::LinkLocal),
            ("not-an-ip", RejectReason::Unparseable),
        ]
    );
}

#[test]
fn private_ipv4_only_when_allowed() {
    let sel = mixed_node(&policy(V4_ONLY, "{allowPrivateIPv4: true}"));
    assert_eq!(sel.external_ips, strings(&["10.0.0.5", "192.0.2.10"]));
    let sel = mixed_node(&policy(V4_ONLY, ""));
    assert_eq!(sel.external_ips, strings(&["192.0.2.10"]));
}

#[test]
fn address_classes() {
    use RejectReason::*;
    let cases: &[(&str, Option<RejectReason>)] = &[
        ("2001:db8::1", None),
        ("2a00:1450::1", None),
        ("::1", Some(NotGlobal)),
        ("::", Some(NotGlobal)),
        ("ff02::1", Some(NotGlobal)),
        ("::ffff:192.0.2.1", Some(NotGlobal)),
        ("64:ff9b::192.0.2.1", Some(NotGlobal)),
        ("fe80::1", Some(LinkLocal)),
        ("febf::1", Some(LinkLocal)),
        ("fc00::1", Some(UniqueLocal)),
        ("fe80::1%eth0", Some(Unparseable)),
        ("192.0.2.1", None),
        ("198.51.100.1", None),
        ("203.0.113.1", None),
        ("100.128.0.1", None),
        ("172.32.0.1", None),
        ("127.0.0.1", Some(NotGlobal)),
        ("0.1.2.3", Some(NotGlobal)),
        ("224.0.0.1", Some(NotGlobal)),
        ("240.0.0.1", Some(NotGlobal)),
        ("255.255.255.255", Some(NotGlobal)),
        ("169.254.1.1", Some(LinkLocal)),
        ("10.1.1.1", Some(PrivateIpv4)),
        ("172.31.0.1", Some(PrivateIpv4)),
        ("192.168.1.1", Some(PrivateIpv4)),
        ("100.64.0.1", Some(PrivateIpv4)),
        ("100.127.255.255", Some(PrivateIpv4)),
        ("010.0.0.1", Some(Unparseable)),
    ];
    let addresses: Vec<(&str, &str)> = cases.iter().map(|(a, _)| ("InternalIP", *a)).collect();
    let sel = select(
        &[pod("gw", "n")],
        &node_map(&[("n", &addresses)]),
        &policy(V6_PRIMARY, ""),
    );
    let want_rejected: Vec<Rejected> = cases
        .iter()
        .filter_map(|(a, r)| r.map(|r| rejected("n", a, r)))
        .collect();
    assert_eq!(sel.rejected, want_rejected);
    assert_eq!(
        sel.external_ips,
        strings(&[
            "2001:db8::1",
            "2a00:1450::1",
            "100.128.0.1",
            "172.32.0.1",
            "192.0.2.1",
            "198.51.100.1",
            "203.0.113.1",
        ])
    );
}

#[test]
fn allowed_cidrs_apply_on_top_of_the_class_rules() {
    use RejectReason::*;
    let p = policy(
        V6_PRIMARY,
        "{allowUniqueLocal: true, allowedCIDRs: [2001:db8:1::/48, 192.0.2.0/24, 10.0.0.0/8]}",
    );
    let nodes = node_map(&[(
        "node-a",
        &[
            ("InternalIP", "2001:db8:1::5"),
            ("InternalIP", "2001:db8:2::5"),
            ("InternalIP", "fd00::1"),
            ("InternalIP", "192.0.2.7"),
            ("InternalIP", "198.51.100.7"),
            ("InternalIP", "10.0.0.7"),
        ],
    )]);
    let sel = select(&[pod("gw", "node-a")], &nodes, &p);
    assert_eq!(sel.external_ips, strings(&["2001:db8:1::5", "192.0.2.7"]));
    assert_eq!(
        sel.rejected,
        vec![
            rejected("node-a", "2001:db8:2::5", OutsideAllowedCidrs),
            rejected("node-a", "fd00::1", OutsideAllowedCidrs),
            rejected("node-a", "198.51.100.7", OutsideAllowedCidrs),
            rejected("node-a", "10.0.0.7", PrivateIpv4),
        ]
    );
}

#[test]
fn preferred_type_per_node_and_family_with_fallback() {
    use RejectReason::*;
    let p = policy(V6_PRIMARY, "{addressTypes: [ExternalIP, InternalIP]}");
    let nodes = node_map(&[
        (
            "node-a",
            &[
                ("InternalIP", "2001:db8::a"),
                ("ExternalIP", "2001:db8::e"),
                ("InternalIP", "192.0.2.1"),
                ("InternalIP", "2001:db8::e"),
            ],
        ),
        (
            "node-b",
            &[("ExternalIP", "fe80::1"), ("InternalIP", "2001:db8::b")],
        ),
    ]);
    let sel = select(&[pod("gw-1", "node-a"), pod("gw-2", "node-b")], &nodes, &p);
    assert_eq!(
        sel.by_family,
        vec![
            (IpFamily::IPv6, strings(&["2001:db8::b", "2001:db8::e"])),
            (IpFamily::IPv4, strings(&["192.0.2.1"])),
        ]
    );
    assert_eq!(
        sel.rejected,
        vec![
            rejected("node-a", "2001:db8::a", LessPreferredType),
            rejected("node-b", "fe80::1", LinkLocal),
        ]
    );

    // The default [InternalIP] never takes ExternalIP.
    let sel = select(
        &[pod("gw-1", "node-a")],
        &nodes,
        &policy(V6_PRIMARY, "{addressTypes: [InternalIP]}"),
    );
    assert_eq!(
        sel.external_ips,
        strings(&["2001:db8::a", "2001:db8::e", "192.0.2.1"])
    );
    assert_eq!(
        sel.rejected,
        vec![rejected(
            "node-a",
            "2001:db8::e",
            AddressTypeNotWanted(NodeAddressType::ExternalIP)
        )]
    );
}

#[test]
fn two_replicas_on_two_nodes_are_sorted_and_deduplicated() {
    let nodes = node_map(&[
        (
            "node-b",
            &[("InternalIP", "2001:db8::1"), ("InternalIP", "192.0.2.2")],
        ),
        (
            "node-a",
            &[
                ("InternalIP", "2001:DB8:0::1"),
                ("InternalIP", "2001:db8::2"),
                ("InternalIP", "192.0.2.1"),
            ],
        ),
    ]);
    let pods = [pod("gw-2", "node-b"), pod("gw-1", "node-a")];
    let sel = select(&pods, &nodes, &policy(V6_PRIMARY, ""));
    assert_eq!(
        sel,
        Selection {
            external_ips: strings(&["2001:db8::1", "2001:db8::2", "192.0.2.1", "192.0.2.2"]),
            by_family: vec![
                (IpFamily::IPv6, strings(&["2001:db8::1", "2001:db8::2"])),
                (IpFamily::IPv4, strings(&["192.0.2.1", "192.0.2.2"])),
            ],
            ready_pods: 2,
            nodes: strings(&["node-a", "node-b"]),
            missing_nodes: vec![],
            rejected: vec![],
        }
    );
}

#[test]
fn two_pods_on_one_node_count_the_node_once() {
    let nodes = node_map(&[("node-a", &[("InternalIP", "2001:db8::1")])]);
    let pods = [pod("gw-1", "node-a"), pod("gw-2", "node-a")];
    let sel = select(&pods, &nodes, &policy(V6_ONLY, ""));
    assert_eq!(
        sel,
        Selection {
            external_ips: strings(&["2001:db8::1"]),
            by_family: vec![(IpFamily::IPv6, strings(&["2001:db8::1"]))],
            ready_pods: 2,
            nodes: strings(&["node-a"]),
            missing_nodes: vec![],
            rejected: vec![],
        }
    );
}

#[test]
fn pods_that_do_not_serve_are_ignored() {
    let nodes = node_map(&[("node-a", &[("InternalIP", "2001:db8::1")])]);
    let pods = [
        GatewayPod {
            ready: false,
            ..pod("not-ready", "node-a")
        },
        GatewayPod {
            running: false,
            ..pod("pending", "node-a")
        },
        GatewayPod {
            node_name: None,
            ..pod("unscheduled", "")
        },
        pod("empty-node-name", ""),
        GatewayPod {
            deleting: true,
            ..pod("terminating", "node-a")
        },
    ];
    let p = policy(V6_ONLY, "");
    let sel = select(&pods, &nodes, &p);
    assert_eq!(
        sel,
        Selection {
            by_family: vec![(IpFamily::IPv6, vec![])],
            ..Selection::default()
        }
    );
    assert_eq!(
        verdict(&sel, &p),
        Verdict {
            ready: false,
            reason: reason::NO_GATEWAY_PODS,
            message: "no gateway Pod is running and ready on a node".into(),
        }
    );
}

#[test]
fn a_node_missing_from_the_map_contributes_nothing() {
    let nodes = node_map(&[("node-a", &[("InternalIP", "2001:db8::1")])]);
    let pods = [pod("gw-1", "node-z"), pod("gw-2", "node-a")];
    let sel = select(&pods, &nodes, &policy(V6_ONLY, ""));
    assert_eq!(
        sel,
        Selection {
            external_ips: strings(&["2001:db8::1"]),
            by_family: vec![(IpFamily::IPv6, strings(&["2001:db8::1"]))],
            ready_pods: 2,
            nodes: strings(&["node-a"]),
            missing_nodes: strings(&["node-z"]),
            rejected: vec![],
        }
    );
}

#[test]
fn merge_puts_ours_first_and_keeps_foreign_entries() {
    let current = strings(&["198.51.100.7", "2001:db8::10", "203.0.113.9"]);
    assert_eq!(
        merge_external_ips(&current, &[], &strings(&["2001:db8::10", "192.0.2.10"])),
        strings(&["2001:db8::10", "192.0.2.10", "198.51.100.7", "203.0.113.9"])
    );
}

#[test]
fn merge_drops_what_was_ours_and_is_no_longer() {
    let current = strings(&["2001:db8::10", "2001:db8::11", "198.51.100.7"]);
    let before = strings(&["2001:db8::10", "2001:db8::11"]);
    assert_eq!(
        merge_external_ips(&current, &before, &strings(&["2001:db8::12"])),
        strings(&["2001:db8::12", "198.51.100.7"])
    );
    assert_eq!(
        merge_external_ips(&current, &current, &[]),
        Vec::<String>::new()
    );
}

#[test]
fn merge_deduplicates_by_canonical_form() {
    let current = strings(&[
        "2001:DB8:0::10",
        "2001:db8:0:0::99",
        "2001:db8::99",
        "not-an-ip",
        "not-an-ip",
    ]);
    let before = strings(&["2001:0db8::11"]);
    let ours = strings(&["2001:db8::10", "2001:DB8::10", "2001:db8::11"]);
    assert_eq!(
        merge_external_ips(&current, &before, &ours),
        strings(&["2001:db8::10", "2001:db8::11", "2001:db8::99", "not-an-ip"])
    );
}

#[test]
fn verdict_published_names_the_addresses() {
    let nodes = node_map(&[
        ("node-a", &[("InternalIP", "2001:db8::10")]),
        ("node-b", &[("InternalIP", "192.0.2.10")]),
    ]);
    let p = policy(V6_PRIMARY, "");
    let sel = select(&[pod("a", "node-a"), pod("b", "node-b")], &nodes, &p);
    assert_eq!(
        verdict(&sel, &p),
        Verdict {
            ready: true,
            reason: reason::ADDRESSES_PUBLISHED,
            message: "2 addresses from 2 nodes: 2001:db8::10, 192.0.2.10".into(),
        }
    );

    let p = policy(V6_ONLY, "");
    let sel = select(&[pod("a", "node-a")], &nodes, &p);
    assert_eq!(
        verdict(&sel, &p).message,
        "1 address from 1 node: 2001:db8::10"
    );

    let many: Vec<String> = (1..=8).map(|i| format!("2001:db8::{i}")).collect();
    let addresses: Vec<(&str, &str)> = many.iter().map(|a| ("InternalIP", a.as_str())).collect();
    let sel = select(&[pod("a", "n")], &node_map(&[("n", &addresses)]), &p);
    assert_eq!(
        verdict(&sel, &p).message,
        "8 addresses from 1 node: 2001:db8::1, 2001:db8::2, 2001:db8::3, 2001:db8::4, 2001:db8::5, 2001:db8::6, and 2 more"
    );
}

#[test]
fn verdict_names_the_missing_family_and_why() {
    let nodes = node_map(&[
        (
            "node-a",
            &[("InternalIP", "fe80::1"), ("InternalIP", "192.0.2.10")],
        ),
        (
            "node-b",
            &[("InternalIP", "192.0.2.11"), ("InternalIP", "fd00::1")],
        ),
    ]);
    let p = policy(V6_PRIMARY, "");
    let sel = select(&[pod("a", "node-a"), pod("b", "node-b")], &nodes, &p);
    assert_eq!(sel.missing_families(), vec![IpFamily::IPv6]);
    assert_eq!(
            verdict(&sel, &p),
            Verdict {
                ready: false,
                reason: reason::NO_ADDRESS_OF_FAMILY,
                message: "no eligible IPv6 address on nodes node-a, node-b (fe80::1 on node-a: link-local; fd00::1 on node-b: unique local, needs spec.gatewayAddresses.allowUniqueLocal)".into(),
            }
        );
}

#[test]
fn verdict_caps_rejections_and_nodes() {
    let nodes = node_map(&[
        (
            "n1",
            &[("InternalIP", "fe80::1"), ("InternalIP", "garbage")],
        ),
        ("n2", &[("ExternalIP", "2001:db8::2")]),
        ("n3", &[("InternalIP", "2001:db8:9::3")]),
        ("n4", &[("InternalIP", "::1")]),
    ]);
    let p = policy(V6_ONLY, "{allowedCIDRs: [2001:db8:1::/48]}");
    let pods: Vec<GatewayPod> = ["n1", "n2", "n3", "n4", "n5"]
        .iter()
        .map(|n| pod(n, n))
        .collect();
    let sel = select(&pods, &nodes, &p);
    assert_eq!(
        verdict(&sel, &p).message,
        "no eligible IPv6 address on nodes n1, n2, n3, and 1 more (fe80::1 on n1: link-local; garbage on n1: not an IP address; 2001:db8::2 on n2: ExternalIP, not in spec.gatewayAddresses.addressTypes; and 2 more); node n5 not found"
    );
}

#[test]
fn verdict_without_any_address_of_the_family() {
    let nodes = node_map(&[("node-a", &[("InternalIP", "192.0.2.10")])]);
    let p = policy(V6_PRIMARY, "{addressTypes: [ExternalIP, InternalIP]}");
    let sel = select(&[pod("a", "node-a")], &nodes, &p);
    assert_eq!(
        verdict(&sel, &p).message,
        "no eligible IPv6 address on node node-a (no IPv6 ExternalIP or InternalIP address reported)"
    );

    let sel = select(&[pod("a", "node-z")], &nodes, &p);
    assert_eq!(
        verdict(&sel, &p),
        Verdict {
            ready: false,
            reason: reason::NO_ADDRESS_OF_FAMILY,
            message: "no eligible IPv6 or IPv4 address; node node-z not found".into(),
        }
    );
}

#[test]
fn verdict_with_both_families_missing() {
    let nodes = node_map(&[(
        "node-a",
        &[("InternalIP", "fe80::1"), ("InternalIP", "169.254.0.1")],
    )]);
    let p = policy(V4_PRIMARY, "");
    let sel = select(&[pod("a", "node-a")], &nodes, &p);
    assert_eq!(
        verdict(&sel, &p).message,
        "no eligible IPv4 or IPv6 address on node node-a (fe80::1 on node-a: link-local; 169.254.0.1 on node-a: link-local)"
    );
}

fn any_address() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[0-9a-fA-F:.%]{0,24}",
        any::<[u8; 4]>().prop_map(|b| Ipv4Addr::from(b).to_string()),
        any::<[u8; 16]>().prop_map(|b| Ipv6Addr::from(b).to_string().to_uppercase()),
        prop::sample::select(vec![
            "2001:db8::1",
            "2001:DB8:0::1",
            "fe80::1",
            "fd00::1",
            "10.0.0.1",
            "192.0.2.1",
            "192.0.2.01",
        ])
        .prop_map(String::from),
    ]
}

fn any_node_address() -> impl Strategy<Value = NodeAddress> {
    let kind = prop_oneof![
        prop::sample::select(vec!["InternalIP", "ExternalIP", "Hostname", "InternalDNS"])
            .prop_map(String::from),
        any::<String>(),
    ];
    (kind, any_address()).prop_map(|(kind, address)| NodeAddress { kind, address })
}

fn any_pod() -> impl Strategy<Value = GatewayPod> {
    (
        prop::option::of("node-[a-e]?"),
        any::<[bool; 3]>(),
        "gw-[0-9]",
    )
        .prop_map(|(node_name, [running, ready, deleting], name)| GatewayPod {
            name,
            node_name,
            running,
            ready,
            deleting,
        })
}

fn any_policy() -> impl Strategy<Value = ValidPolicy> {
    (
            prop::sample::select(vec![V6_ONLY, V4_ONLY, V6_PRIMARY, V4_PRIMARY]),
            prop::sample::select(vec![
                "[InternalIP]",
                "[ExternalIP]",
                "[ExternalIP, InternalIP]",
            ]),
            prop::sample::select(vec!["[]", "[2001:db8::/32, 192.0.2.0/24]", r#"["::/0"]"#]),
            any::<[bool; 2]>(),
        )
            .prop_map(|(base, types, cidrs, [ula, private])| {
                policy(
                    base,
                    &format!(
                        "{{addressTypes: {types}, allowedCIDRs: {cidrs}, allowUniqueLocal: {ula}, allowPrivateIPv4: {private}}}"
                    ),
                )
            })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]
    #[test]
    fn random_input_never_panics_and_is_sorted_and_deterministic(
        pods in prop::collection::vec(any_pod(), 0..6),
        nodes in prop::collection::btree_map("node-[a-d]", prop::collection::vec(any_node_address(), 0..8), 0..4),
        p in any_policy(),
        current in prop::collection::vec(any_address(), 0..5),
        before in prop::collection::vec(any_address(), 0..3),
    ) {
        let sel = select(&pods, &nodes, &p);
        let reversed: Vec<GatewayPod> = pods.iter().rev().cloned().collect();
        prop_assert_eq!(&sel, &select(&reversed, &nodes, &p));

        prop_assert_eq!(sel.by_family.iter().map(|(f, _)| *f).collect::<Vec<_>>(), p.families.clone());
        let flat: Vec<String> = sel.by_family.iter().flat_map(|(_, ips)| ips.clone()).collect();
        prop_assert_eq!(&sel.external_ips, &flat);
        for (family, ips) in &sel.by_family {
            let parsed: Vec<IpAddr> = ips.iter().map(|s| s.parse().unwrap()).collect();
            prop_assert!(parsed.windows(2).all(|w| w[0] < w[1]), "not sorted/deduped: {:?}", ips);
            for (ip, s) in parsed.iter().zip(ips) {
                prop_assert_eq!(family_of(ip), *family);
                prop_assert_eq!(&ip.to_string(), s);
            }
        }
        prop_assert!(sel.nodes.windows(2).all(|w| w[0] < w[1]));
        prop_assert!(sel.missing_nodes.windows(2).all(|w| w[0] < w[1]));
        prop_assert!(sel.nodes.iter().all(|n| !sel.missing_nodes.contains(n)));

        let v = verdict(&sel, &p);
        prop_assert_eq!(v.ready, sel.ready_pods > 0 && sel.missing_families().is_empty());

        let merged = merge_external_ips(&current, &before, &sel.external_ips);
        prop_assert_eq!(&merged[..sel.external_ips.len()], &sel.external_ips[..]);
        let canon: BTreeSet<String> = merged.iter().map(|s| canonical(s)).collect();
        prop_assert_eq!(canon.len(), merged.len());
    }
}

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

mod verdict;

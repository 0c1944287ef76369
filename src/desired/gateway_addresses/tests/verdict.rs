//! Tests of the verdict (the condition a selection yields) and a property test of the invariants.

use super::*;

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

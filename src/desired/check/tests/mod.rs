//! Exact outputs of the checks, one subject at a time, then the text and
//! JSON renderings of a whole report.

use super::*;
use crate::api::DualStackPolicy;

fn policy(yaml: &str) -> ValidPolicy {
    let p: DualStackPolicy = serde_saphyr::from_str(yaml).unwrap();
    validate_policy(&p.spec).unwrap()
}

fn ipv6_only() -> ValidPolicy {
    policy(include_str!("../../../../examples/policy-ipv6-only.yaml"))
}

fn ipv6_primary() -> ValidPolicy {
    policy(include_str!(
        "../../../../examples/policy-dual-stack-ipv6-primary.yaml"
    ))
}

fn cidrs(name: &str, cidrs: &[&str]) -> ServiceCidr {
    ServiceCidr {
        name: name.into(),
        cidrs: cidrs.iter().map(|c| c.to_string()).collect(),
    }
}

#[test]
fn service_cidr_objects_are_read_sorted_by_name_and_an_absent_spec_reads_as_no_cidrs() {
    use k8s_openapi::api::networking::v1::{ServiceCIDR, ServiceCIDRSpec};
    let object = |name: &str, spec: Option<&[&str]>| ServiceCIDR {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        spec: spec.map(|c| ServiceCIDRSpec {
            cidrs: Some(c.iter().map(|s| s.to_string()).collect()),
        }),
        status: None,
    };
    let objects = [
        object("z-extra", Some(&["fd00:20::/108"])),
        object("kubernetes", Some(&["10.96.0.0/16", "fd00:10::/108"])),
        object("empty", None),
    ];
    assert_eq!(
        ServiceCidr::list(objects.iter()),
        vec![
            cidrs("empty", &[]),
            cidrs("kubernetes", &["10.96.0.0/16", "fd00:10::/108"]),
            cidrs("z-extra", &["fd00:20::/108"]),
        ]
    );
}

fn node(name: &str, pod_cidrs: &[&str], addresses: &[(&str, &str)]) -> NodeFacts {
    NodeFacts {
        name: name.into(),
        pod_cidrs: pod_cidrs.iter().map(|c| c.to_string()).collect(),
        addresses: addresses
            .iter()
            .map(|(k, a)| NodeAddress {
                kind: k.to_string(),
                address: a.to_string(),
            })
            .collect(),
    }
}

fn with_service_cidrs(list: Vec<ServiceCidr>) -> Observed {
    Observed {
        service_cidrs: Some(list),
        ..Default::default()
    }
}

fn one(rows: Vec<Row>) -> (Level, String, Option<String>) {
    assert_eq!(rows.len(), 1, "{rows:?}");
    let r = rows.into_iter().next().unwrap();
    (r.level, r.saw, r.fix)
}

#[test]
fn a_service_cidr_other_than_the_policys_fails_naming_both() {
    let o = with_service_cidrs(vec![cidrs(
        "kubernetes",
        &["10.96.0.0/16", "fd00:10:96::/112"],
    )]);
    assert_eq!(
        one(service_cidr_rows(&o, IpFamily::IPv6, &ipv6_only())),
        (
            Level::Fail,
            "addressPlan.ipv6.serviceCIDR 2001:db8:1234:5678:8:3::/112 is not a Service range of the cluster: ServiceCIDR kubernetes fd00:10:96::/112".into(),
            Some("set addressPlan.ipv6.serviceCIDR to fd00:10:96::/112, or create a ServiceCIDR with 2001:db8:1234:5678:8:3::/112".into()),
        )
    );
}

#[test]
fn the_policys_service_cidr_in_any_servicecidr_object_is_ok() {
    let o = with_service_cidrs(vec![
        cidrs("kubernetes", &["10.96.0.0/16"]),
        cidrs("more-v6", &["fd00:10:96::/112"]),
    ]);
    assert_eq!(
        one(service_cidr_rows(&o, IpFamily::IPv6, &ipv6_primary())),
        (
            Level::Ok,
            "addressPlan.ipv6.serviceCIDR fd00:10:96::/112 is ServiceCIDR more-v6 fd00:10:96::/112"
                .into(),
            None
        )
    );
}

#[test]
fn a_policy_range_inside_or_around_the_clusters_warns() {
    let p = policy(include_str!(
        "../../../../examples/policy-dual-stack-ipv4-primary.yaml"
    ));
    let o = with_service_cidrs(vec![cidrs(
        "kubernetes",
        &["10.96.0.0/16", "fd00:10:96::/112"],
    )]);
    assert_eq!(
        one(service_cidr_rows(&o, IpFamily::IPv4, &p)),
        (
            Level::Warn,
            "addressPlan.ipv4.serviceCIDR 10.96.0.0/12 is larger than ServiceCIDR kubernetes 10.96.0.0/16".into(),
            Some("set addressPlan.ipv4.serviceCIDR to 10.96.0.0/16, or create a ServiceCIDR for the rest of 10.96.0.0/12".into()),
        )
    );
    let o = with_service_cidrs(vec![cidrs("kubernetes", &["fd00:10:96::/108"])]);
    assert_eq!(
        one(service_cidr_rows(&o, IpFamily::IPv6, &ipv6_primary())),
        (
            Level::Warn,
            "addressPlan.ipv6.serviceCIDR fd00:10:96::/112 is smaller than ServiceCIDR kubernetes fd00:10:96::/108".into(),
            Some("set addressPlan.ipv6.serviceCIDR to fd00:10:96::/108: Services may get addresses outside fd00:10:96::/112".into()),
        )
    );
}

#[test]
fn a_family_without_any_service_range_fails() {
    let o = with_service_cidrs(vec![cidrs("kubernetes", &["10.96.0.0/16"])]);
    assert_eq!(
        one(service_cidr_rows(&o, IpFamily::IPv6, &ipv6_primary())),
        (
            Level::Fail,
            "no IPv6 range in ServiceCIDRs kubernetes".into(),
            Some("add fd00:10:96::/112 to kube-apiserver --service-cluster-ip-range, or create a ServiceCIDR with it".into()),
        )
    );
    assert_eq!(
        one(service_cidr_rows(&o, IpFamily::IPv6, &default_policy())).2,
        Some("add an IPv6 range to kube-apiserver --service-cluster-ip-range, or create a ServiceCIDR with one".into()),
    );
}

#[test]
fn without_the_servicecidr_api_the_row_warns_and_without_a_fetch_there_is_none() {
    let o = Observed {
        service_cidr_api_missing: true,
        ..Default::default()
    };
    assert_eq!(
        one(service_cidr_rows(&o, IpFamily::IPv6, &ipv6_only())),
        (
            Level::Warn,
            "networking.k8s.io/v1 ServiceCIDR is not served (Kubernetes before 1.33)".into(),
            Some("compare addressPlan.ipv6.serviceCIDR with kube-apiserver --service-cluster-ip-range by hand".into()),
        )
    );
    assert_eq!(
        service_cidr_rows(&Observed::default(), IpFamily::IPv6, &ipv6_only()),
        vec![]
    );
}

#[test]
fn node_pod_cidrs_are_judged_against_the_plan() {
    let p = ipv6_primary();
    let nodes = |list| Observed {
        nodes: Some(list),
        ..Default::default()
    };
    let o = nodes(vec![
        node("n1", &["10.244.1.0/24", "fd00:10:244:1::/64"], &[]),
        node("n2", &["10.244.2.0/24", "fd00:10:244:2::/64"], &[]),
    ]);
    assert_eq!(
        one(pod_cidr_rows(&o, IpFamily::IPv6, &p)),
        (
            Level::Ok,
            "2 of 2 nodes have an IPv6 podCIDR, each a /64 inside fd00:10:244::/56".into(),
            None
        )
    );
    let o = nodes(vec![
        node("n1", &["10.244.1.0/24", "fd00:99::/64"], &[]),
        node("n2", &["10.244.2.0/25"], &[]),
    ]);
    assert_eq!(
        one(pod_cidr_rows(&o, IpFamily::IPv6, &p)),
        (
            Level::Fail,
            "podCIDRs outside addressPlan.ipv6.podCIDR fd00:10:244::/56: n1 fd00:99::/64".into(),
            Some(
                "set addressPlan.ipv6.podCIDR to kube-controller-manager's IPv6 --cluster-cidr"
                    .into()
            ),
        )
    );
    assert_eq!(
        one(pod_cidr_rows(&o, IpFamily::IPv4, &p)),
        (
            Level::Fail,
            "podCIDRs not /24 (addressPlan.ipv4.nodeCIDRMaskSize): n2 10.244.2.0/25".into(),
            Some("set addressPlan.ipv4.nodeCIDRMaskSize to kube-controller-manager's --node-cidr-mask-size-ipv4".into()),
        )
    );
    let o = nodes(vec![
        node("n1", &["10.244.1.0/24", "fd00:10:244:1::/64"], &[]),
        node("n2", &["10.244.2.0/24"], &[]),
    ]);
    let (level, saw, _) = one(pod_cidr_rows(&o, IpFamily::IPv6, &p));
    assert_eq!(
        (level, saw.as_str()),
        (Level::Warn, "1 of 2 nodes lack an IPv6 podCIDR: n2")
    );
    let o = nodes(vec![node("n1", &[], &[])]);
    assert_eq!(
        one(pod_cidr_rows(&o, IpFamily::IPv6, &p)),
        (
            Level::Warn,
            "none of 1 nodes has an IPv6 podCIDR".into(),
            Some("expected when the CNI allocates Pod addresses itself (e.g. Calico IPAM); otherwise run kube-controller-manager with --allocate-node-cidrs and an IPv6 range in --cluster-cidr".into()),
        )
    );
    assert_eq!(
        one(pod_cidr_rows(&nodes(vec![]), IpFamily::IPv6, &p)),
        (
            Level::Warn,
            "no Nodes".into(),
            Some("join nodes, then check again".into())
        )
    );
}

#[test]
fn node_addresses_follow_the_gateway_address_rules() {
    let o = Observed {
        nodes: Some(vec![
            node("n1", &[], &[("InternalIP", "2001:db8:1::1")]),
            node("n2", &[], &[("InternalIP", "fd00::2"), ("Hostname", "n2")]),
            node("n3", &[], &[("InternalIP", "2001:db9::3")]),
        ]),
        gateway: Some((
            "app=gw in istio-system".into(),
            vec!["n1".into(), "n2".into(), "n9".into()],
        )),
        ..Default::default()
    };
    let rows = nodes::rows(&o, IpFamily::IPv6, &ipv6_only());
    assert_eq!(
        rows,
        vec![
            Row::new(
                Scope::Family(IpFamily::IPv6),
                id::NODE_ADDRESSES,
                Level::Ok,
                "1 of 3 nodes have an eligible IPv6 address".into()
            ),
            Row::new(
                Scope::Family(IpFamily::IPv6),
                id::GATEWAY_NODES,
                Level::Fail,
                "gateway nodes without an eligible IPv6 address: n2 (unique local, needs spec.gatewayAddresses.allowUniqueLocal), n9 (Node not found)".into()
            )
            .fix("give the nodes global IPv6 addresses, or widen spec.gatewayAddresses (addressTypes, allowedCIDRs, allowUniqueLocal)"),
        ]
    );
    let none = Observed {
        nodes: Some(vec![node("n1", &[], &[("InternalIP", "10.0.0.1")])]),
        gateway: Some(("app=gw in istio-system".into(), vec![])),
        ..Default::default()
    };
    let rows = nodes::rows(&none, IpFamily::IPv4, &default_policy());
    assert_eq!(
        rows.iter()
            .map(|r| (r.level, r.saw.as_str()))
            .collect::<Vec<_>>(),
        vec![
            (
                Level::Fail,
                "no node has an eligible IPv4 address (10.0.0.1 on n1: private, needs spec.gatewayAddresses.allowPrivateIPv4)"
            ),
            (
                Level::Warn,
                "no ready gateway Pods (app=gw in istio-system)"
            ),
        ]
    );
}

mod report;

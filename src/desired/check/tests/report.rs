//! Tests of the platform rows (versions, externalIPs), the text and JSON
//! output, and the live condition.

use super::*;

fn platform_rows(o: &Observed, p: &ValidPolicy) -> Vec<(Level, String)> {
    platform::rows(o, p)
        .into_iter()
        .map(|r| (r.level, format!("{} {}", r.check, r.saw)))
        .collect()
}

#[test]
fn versions_are_read_from_tags_and_judged_against_the_thresholds() {
    assert_eq!(
        version_of_image("registry:5000/istio/pilot:1.28.1-distroless"),
        Some(Version::new(1, 28))
    );
    assert_eq!(version_of_image("istio/pilot@sha256:abc"), None);
    assert_eq!(Version::parse("v1.36.3"), Some(Version::new(1, 36)));
    assert_eq!(Version::parse("1.30+"), Some(Version::new(1, 30)));

    let istiod = |tag: &str, env: Option<&str>| Observed {
        api_server_version: Some("v1.30.4".into()),
        istiod: Some(Some(Istiod {
            deployment: "istio-system/istiod".into(),
            image: format!("docker.io/istio/pilot:{tag}"),
            dual_stack_env: env.map(String::from),
        })),
        ..Default::default()
    };
    let p = ipv6_primary();
    assert_eq!(
        platform_rows(&istiod("1.23.0", None), &p),
        vec![
            (Level::Fail, "api-server-version Kubernetes v1.30.4: the CRDs' CEL rules (isCIDR, cidr()) need 1.31 or later".into()),
            (Level::Fail, "istio-version Istio 1.23 (istiod istio-system/istiod image docker.io/istio/pilot:1.23.0): dual-stack needs 1.24 or later".into()),
            (Level::Fail, "istio-dual-stack istiod istio-system/istiod runs without ISTIO_DUAL_STACK=true (unset)".into()),
        ]
    );
    let levels = |tag| {
        platform_rows(&istiod(tag, Some("true")), &p)
            .into_iter()
            .map(|(l, _)| l)
            .collect::<Vec<_>>()
    };
    assert_eq!(levels("1.24.2"), [Level::Fail, Level::Warn, Level::Ok]);
    assert_eq!(levels("1.29.0"), [Level::Fail, Level::Warn, Level::Ok]);
    assert_eq!(levels("1.30.0"), [Level::Fail, Level::Ok, Level::Ok]);
    assert_eq!(
        platform_rows(&istiod("1.22.0", None), &ipv6_only())[1..],
        [
            (Level::Ok, "istio-version Istio 1.22 (istiod istio-system/istiod image docker.io/istio/pilot:1.22.0); an IPv6 mesh needs no dual-stack support".into()),
            (Level::Ok, "istio-dual-stack an IPv6 mesh needs no ISTIO_DUAL_STACK (istiod istio-system/istiod: unset)".into()),
        ]
    );
    let sail = Observed {
        istiod: Some(None),
        sail_istio: vec![("default".into(), "v1.28.0".into())],
        ..Default::default()
    };
    assert_eq!(
        platform_rows(&sail, &p),
        vec![(Level::Warn, "istio-version Istio 1.28 (Sail Istio default version v1.28.0): dual-stack is beta, gateway EDS is not filtered by family before 1.30".into())]
    );
}

#[test]
fn external_ips_refused_accepted_or_warned() {
    let probe = |p: ExternalIpsProbe| Observed {
        external_ips: Some(p),
        ..Default::default()
    };
    let refused = probe(ExternalIpsProbe {
        accepted: false,
        refused: Some((
            403,
            "Forbidden".into(),
            "services \"x\" is forbidden: Use of external IPs is denied by admission control"
                .into(),
        )),
        warning: None,
    });
    let rows = platform::rows(&refused, &ipv6_only());
    assert_eq!(
        rows,
        vec![Row::new(
            Scope::Cluster,
            id::EXTERNAL_IPS,
            Level::Fail,
            "a Service with spec.externalIPs is refused (403 Forbidden) by the DenyServiceExternalIPs admission plugin".into()
        )
        .fix("allow externalIPs on the gateway Service (remove DenyServiceExternalIPs from --enable-admission-plugins, or exempt it in the webhook), or set spec.ingressGateway.manageExternalIPs: false and publish the addresses another way")]
    );
    let warned = probe(ExternalIpsProbe {
        accepted: true,
        refused: None,
        warning: Some(parse_warning(
            r#"299 - "spec.externalIPs: deprecated since v1.36""#,
        )),
    });
    assert_eq!(
        platform_rows(&warned, &ipv6_only()),
        vec![(
            Level::Warn,
            "external-ips a Service with spec.externalIPs is accepted, with a warning: spec.externalIPs: deprecated since v1.36".into()
        )]
    );
    let ok = probe(ExternalIpsProbe {
        accepted: true,
        ..Default::default()
    });
    assert_eq!(platform_rows(&ok, &ipv6_only())[0].0, Level::Ok);
}

fn sample() -> Report {
    let o = Observed {
        api_server_version: Some("v1.36.3".into()),
        service_cidrs: Some(vec![cidrs(
            "kubernetes",
            &["10.96.0.0/16", "fd00:10:96::/112"],
        )]),
        nodes: Some(vec![node(
            "n1",
            &["fd00:10:244:1::/64"],
            &[("InternalIP", "2001:db8::1")],
        )]),
        ..Default::default()
    };
    check(&o, Some(("ipv6-only", &ipv6_only())))
}

#[test]
fn the_text_table_is_aligned_with_fixes_below_their_rows() {
    let report = sample();
    assert_eq!(report.exit_code(), 1);
    assert_eq!(
        text(&report),
        "\
dualmesh check: DualStackPolicy ipv6-only (IPv6)

FAMILY        CHECK               LEVEL  SAW
IPv6          service-cidr        FAIL   addressPlan.ipv6.serviceCIDR 2001:db8:1234:5678:8:3::/112 is not a Service range of the cluster: ServiceCIDR kubernetes fd00:10:96::/112
                                         fix: set addressPlan.ipv6.serviceCIDR to fd00:10:96::/112, or create a ServiceCIDR with 2001:db8:1234:5678:8:3::/112
IPv6          pod-cidr            FAIL   podCIDRs outside addressPlan.ipv6.podCIDR 2001:db8:1234:5678:8:2::/104: n1 fd00:10:244:1::/64
                                         fix: set addressPlan.ipv6.podCIDR to kube-controller-manager's IPv6 --cluster-cidr
IPv6          node-addresses      OK     1 of 1 nodes have an eligible IPv6 address
cluster-wide  api-server-version  OK     Kubernetes v1.36.3 (the CRDs' CEL IP/CIDR libraries need 1.31+)

FAIL: 2 OK, 0 WARN, 2 FAIL
"
    );
}

#[test]
fn the_json_document_has_the_documented_schema() {
    let mut report = sample();
    report.rows.truncate(1);
    report.rows.push(Row::new(
        Scope::Cluster,
        id::API_SERVER_VERSION,
        Level::Ok,
        "Kubernetes v1.36.3".into(),
    ));
    assert_eq!(
        json(&report),
        r#"{
  "schema": "dualmesh.io/check/v1",
  "policy": "ipv6-only",
  "families": [
    "IPv6"
  ],
  "result": "FAIL",
  "summary": {
    "OK": 1,
    "WARN": 0,
    "FAIL": 1
  },
  "rows": [
    {
      "family": "IPv6",
      "check": "service-cidr",
      "level": "FAIL",
      "saw": "addressPlan.ipv6.serviceCIDR 2001:db8:1234:5678:8:3::/112 is not a Service range of the cluster: ServiceCIDR kubernetes fd00:10:96::/112",
      "fix": "set addressPlan.ipv6.serviceCIDR to fd00:10:96::/112, or create a ServiceCIDR with 2001:db8:1234:5678:8:3::/112"
    },
    {
      "family": "cluster-wide",
      "check": "api-server-version",
      "level": "OK",
      "saw": "Kubernetes v1.36.3",
      "fix": null
    }
  ]
}
"#
    );
}

#[test]
fn without_a_policy_both_families_are_checked_ipv6_first() {
    let report = check(
        &with_service_cidrs(vec![cidrs("kubernetes", &["10.96.0.0/16"])]),
        None,
    );
    assert_eq!(report.policy, None);
    assert_eq!(
        report
            .rows
            .iter()
            .map(|r| (r.scope.as_str(), r.level))
            .collect::<Vec<_>>(),
        vec![("IPv6", Level::Fail), ("IPv4", Level::Ok)]
    );
}

#[test]
fn the_live_condition_is_false_with_the_first_failure_and_its_fix() {
    let o = Observed {
        service_cidrs: Some(vec![cidrs(
            "kubernetes",
            &["10.96.0.0/16", "fd00:10:96::/112"],
        )]),
        nodes: Some(vec![node("n1", &["10.244.1.0/24"], &[])]),
        ..Default::default()
    };
    assert_eq!(
        cluster_matches(&o, "ipv6-only", &ipv6_only()),
        crate::desired::conditions::Found::fail(
            "ClusterMatchesPolicy",
            "ServiceCIDRMismatch",
            "IPv6 service-cidr: addressPlan.ipv6.serviceCIDR 2001:db8:1234:5678:8:3::/112 is not a Service range of the cluster: ServiceCIDR kubernetes fd00:10:96::/112; fix: set addressPlan.ipv6.serviceCIDR to fd00:10:96::/112, or create a ServiceCIDR with 2001:db8:1234:5678:8:3::/112"
        )
    );
    // A node without an IPv6 podCIDR only warns: the condition stays True.
    assert_eq!(
        cluster_matches(&o, "dual-stack-ipv6-primary", &ipv6_primary()),
        crate::desired::conditions::Found::ok(
            "ClusterMatchesPolicy",
            "ClusterMatches",
            "the cluster's ServiceCIDRs and node podCIDRs match DualStackPolicy dual-stack-ipv6-primary"
        )
    );
    let o = Observed {
        nodes: Some(vec![node("n1", &["10.244.1.0/25"], &[])]),
        ..o
    };
    assert_eq!(
        cluster_matches(&o, "dual-stack-ipv6-primary", &ipv6_primary()).reason,
        "PodCIDRMismatch"
    );
}

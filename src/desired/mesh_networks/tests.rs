//! Tests of the meshNetworks builder and plan.

use super::*;

fn peer(cluster: &str, network: &str, addrs: Option<&[&str]>) -> Peer {
    Peer {
        cluster_name: cluster.into(),
        network: network.into(),
        port: 15443,
        addresses: addrs.map(|a| a.iter().map(|s| s.to_string()).collect()),
    }
}

#[test]
fn each_network_lists_its_clusters_and_their_gateway_addresses_in_order() {
    let peers = [
        peer(
            "cluster-beta",
            "net-beta",
            Some(&["2001:db8::2", "192.0.2.2"]),
        ),
        peer("cluster-alpha", "net-alpha", Some(&["2001:db8::1"])),
    ];
    assert_eq!(
        networks(&peers, &Value::Null),
        json!({"networks": {
            "net-alpha": {
                "endpoints": [{"fromRegistry": "cluster-alpha"}],
                "gateways": [{"address": "2001:db8::1", "port": 15443}],
            },
            "net-beta": {
                "endpoints": [{"fromRegistry": "cluster-beta"}],
                "gateways": [
                    {"address": "2001:db8::2", "port": 15443},
                    {"address": "192.0.2.2", "port": 15443},
                ],
            },
        }})
    );
}

#[test]
fn a_peer_whose_addresses_are_unknown_keeps_its_networks_current_gateways() {
    let current = json!({"networks": {"net-beta": {
        "endpoints": [{"fromRegistry": "cluster-beta"}],
        "gateways": [{"address": "2001:db8::2", "port": 15443}],
    }}});
    let peers = [
        peer("cluster-alpha", "net-alpha", Some(&[])),
        peer("cluster-beta", "net-beta", None),
    ];
    assert_eq!(
        networks(&peers, &current),
        json!({"networks": {
            "net-alpha": {"endpoints": [{"fromRegistry": "cluster-alpha"}], "gateways": []},
            "net-beta": {
                "endpoints": [{"fromRegistry": "cluster-beta"}],
                "gateways": [{"address": "2001:db8::2", "port": 15443}],
            },
        }})
    );
}

#[test]
fn the_config_map_holds_only_the_mesh_networks_key_under_the_revisions_name() {
    assert_eq!(config_map_name(None), "istio");
    assert_eq!(config_map_name(Some("default")), "istio");
    assert_eq!(config_map_name(Some("canary")), "istio-canary");
    let n = json!({"networks": {}});
    assert_eq!(
        config_map("istio-canary", "istio-system", &n),
        json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "istio-canary", "namespace": "istio-system"},
            "data": {"meshNetworks": "{\"networks\":{}}"}})
    );
}

fn mc(name: &str, yaml_gateway: &str) -> std::sync::Arc<MeshCluster> {
    let yaml = format!(
        "apiVersion: dualmesh.io/v1alpha1
kind: MeshCluster
metadata: {{name: {name}, namespace: dualmesh-system}}
spec:
  clusterName: cluster-{name}
  network: net-{name}
  meshID: mesh1
  dualStackPolicyRef: {{name: ipv6-only}}
  istio: {{hub: docker.io/istio, tag: 1.28.0}}
  ingressGateway: {yaml_gateway}
"
    );
    std::sync::Arc::new(serde_saphyr::from_str::<MeshCluster>(&yaml).unwrap())
}

#[test]
fn the_advertised_port_is_the_services_own_where_externalips_carry_the_addresses() {
    // externalIPs written: kube-proxy answers networkGatewayPort there.
    assert_eq!(gateway_port(&mc("a", "{networkGatewayPort: 15443}")), 15443);
    // Only meshNetworks: the node address answers on the tls nodePort.
    assert_eq!(
        gateway_port(&mc(
            "a",
            "{publishAddressesTo: MeshNetworks, tlsNodePort: 31443}"
        )),
        31443
    );
    assert_eq!(
        gateway_port(&mc("a", "{publishAddressesTo: MeshNetworks}")),
        DEFAULT_TLS_NODE_PORT
    );
    assert_eq!(
        gateway_port(&mc(
            "a",
            "{publishAddressesTo: MeshNetworks, serviceType: ClusterIP}"
        )),
        443
    );
}

#[test]
fn the_mesh_is_the_namespaces_meshclusters_of_one_mesh_id_not_being_deleted() {
    let alpha = mc("alpha", "{}");
    let beta = mc("beta", "{publishAddressesTo: MeshNetworks}");
    let mut other_mesh = (*mc("gamma", "{}")).clone();
    other_mesh.spec.mesh_id = "mesh2".into();
    let mut other_ns = (*mc("delta", "{}")).clone();
    other_ns.metadata.namespace = Some("elsewhere".into());
    let mut leaving = (*mc("epsilon", "{}")).clone();
    leaving.metadata.deletion_timestamp = Some(
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Default::default()),
    );
    let all = vec![
        beta.clone(),
        std::sync::Arc::new(other_mesh),
        std::sync::Arc::new(other_ns),
        std::sync::Arc::new(leaving),
        alpha.clone(),
    ];
    let mesh = same_mesh(&alpha, &all);
    let names: Vec<String> = mesh.iter().map(|p| p.name_any()).collect();
    assert_eq!(names, ["alpha", "beta"]);
    assert!(requested(&mesh));
    assert!(!requested(&mesh[..1]));
}

#[test]
fn peers_publishing_elsewhere_add_no_gateways_and_unknown_ones_stay_unknown() {
    let alpha = mc("alpha", "{}");
    let beta = mc("beta", "{publishAddressesTo: MeshNetworks}");
    let gamma = mc("gamma", "{publishAddressesTo: Both}");
    let mesh = [alpha.as_ref(), beta.as_ref(), gamma.as_ref()];
    let got = peers(&mesh, |p| {
        (p.name_any() == "beta").then(|| vec!["2001:db8::2".to_string()])
    });
    assert_eq!(
        got,
        [
            Peer {
                cluster_name: "cluster-alpha".into(),
                network: "net-alpha".into(),
                port: 443,
                addresses: Some(vec![]),
            },
            Peer {
                cluster_name: "cluster-beta".into(),
                network: "net-beta".into(),
                port: DEFAULT_TLS_NODE_PORT,
                addresses: Some(vec!["2001:db8::2".into()]),
            },
            Peer {
                cluster_name: "cluster-gamma".into(),
                network: "net-gamma".into(),
                port: 443,
                addresses: None,
            },
        ]
    );
}

fn istio_cm(mesh_networks: Option<&str>) -> ConfigMap {
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some("istio".into());
    cm.metadata.namespace = Some("istio-system".into());
    cm.metadata.resource_version = Some("42".into());
    cm.data = mesh_networks.map(|v| [(MESH_NETWORKS_KEY.to_string(), v.to_string())].into());
    cm
}

#[test]
fn the_key_is_read_as_the_yaml_istios_charts_write_or_as_json() {
    let yaml =
        "networks:\n  net-a:\n    endpoints:\n    - fromRegistry: cluster-a\n    gateways: []\n";
    assert_eq!(
        parse(&istio_cm(Some(yaml))),
        json!({"networks": {"net-a": {"endpoints": [{"fromRegistry": "cluster-a"}], "gateways": []}}})
    );
    assert_eq!(
        parse(&istio_cm(Some("{\"networks\":{}}"))),
        json!({"networks": {}})
    );
    assert_eq!(parse(&istio_cm(None)), Value::Null);
    assert_eq!(parse(&istio_cm(Some("networks: [unclosed"))), Value::Null);
}

#[test]
fn the_plan_writes_only_a_differing_key_preconditioned_on_what_was_read() {
    let peers = [peer("cluster-a", "net-a", Some(&["2001:db8::1"]))];
    assert_eq!(plan("istio", "istio-system", None, &peers), Plan::Missing);

    let wanted = networks(&peers, &Value::Null);
    let Plan::Write { write, networks: n } = plan(
        "istio",
        "istio-system",
        Some(&istio_cm(Some("networks: {}"))),
        &peers,
    ) else {
        panic!("the ConfigMap is there");
    };
    assert_eq!(n, wanted);
    let mut body = config_map("istio", "istio-system", &wanted);
    body["metadata"]["resourceVersion"] = json!("42");
    assert_eq!(write, Write::Apply(body));

    let same = istio_cm(Some(&wanted.to_string()));
    assert_eq!(
        plan("istio", "istio-system", Some(&same), &peers),
        Plan::Write {
            write: Write::Keep,
            networks: wanted
        }
    );
}

#[test]
fn the_condition_names_the_config_map_and_counts_networks_and_addresses() {
    let missing = report("istio-system/istio", &Plan::Missing);
    assert_eq!(missing.type_, types::MESH_NETWORKS_PUBLISHED);
    assert_eq!(missing.reason, reason::ISTIO_CONFIG_MAP_MISSING);
    assert!(!missing.status);
    assert_eq!(
        missing.message,
        "ConfigMap istio-system/istio not found: it appears when Istio is installed (spec.istio.revision names it); dualmesh then writes its meshNetworks key"
    );
    let peers = [
        peer("cluster-a", "net-a", Some(&[])),
        peer("cluster-b", "net-b", Some(&["2001:db8::2", "192.0.2.2"])),
    ];
    let written = report(
        "istio-system/istio",
        &Plan::Write {
            write: Write::Keep,
            networks: networks(&peers, &Value::Null),
        },
    );
    assert!(written.status);
    assert_eq!(written.reason, reason::MESH_NETWORKS_WRITTEN);
    assert_eq!(
        written.message,
        "ConfigMap istio-system/istio key meshNetworks lists 2 networks (net-a, net-b) with 2 gateway addresses"
    );
}

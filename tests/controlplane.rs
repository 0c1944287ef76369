//! The control-plane harness itself: real kube-apiserver + etcd planes give
//! dual-stack Services, stay independent of each other, and accept Nodes and
//! Pods written the way a kubelet would. Every controller test stands on this.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod, Service};
use kube::Api;
use kube::api::PostParams;
use serde_json::json;
use testplane::{ControlPlane, kubelet};

fn service(name: &str, policy: &str, families: &[&str]) -> Service {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": { "name": name },
        "spec": {
            "ipFamilyPolicy": policy,
            "ipFamilies": families,
            "ports": [{ "name": "https", "port": 443 }],
        }
    }))
    .unwrap()
}

#[tokio::test]
async fn services_get_cluster_ips_of_the_families_they_ask_for() {
    let plane = ControlPlane::start_named("dualstack").await.unwrap();
    let services: Api<Service> = Api::default_namespaced(plane.client().await.unwrap());

    let dual = services
        .create(
            &PostParams::default(),
            &service("dual", "RequireDualStack", &["IPv4", "IPv6"]),
        )
        .await
        .unwrap();
    let ips = dual.spec.unwrap().cluster_ips.unwrap();
    assert_eq!(ips.len(), 2, "{ips:?}");
    assert!(ips[0].parse::<std::net::Ipv4Addr>().is_ok(), "{ips:?}");
    assert!(ips[1].parse::<std::net::Ipv6Addr>().is_ok(), "{ips:?}");
    assert!(ips[1].starts_with("fd00:10:96::"), "{ips:?}");

    let v6 = services
        .create(
            &PostParams::default(),
            &service("v6", "SingleStack", &["IPv6"]),
        )
        .await
        .unwrap();
    let ips = v6.spec.unwrap().cluster_ips.unwrap();
    assert_eq!(ips.len(), 1, "{ips:?}");
    assert!(ips[0].parse::<std::net::Ipv6Addr>().is_ok(), "{ips:?}");
}

#[tokio::test]
async fn two_planes_are_independent() {
    let (alpha, beta) = tokio::try_join!(
        ControlPlane::start_named("alpha"),
        ControlPlane::start_named("beta")
    )
    .unwrap();
    assert_ne!(alpha.server_url(), beta.server_url());
    let in_alpha: Api<ConfigMap> = Api::default_namespaced(alpha.client().await.unwrap());
    let in_beta: Api<ConfigMap> = Api::default_namespaced(beta.client().await.unwrap());
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": { "name": "only-in-alpha" }, "data": { "k": "v" }
    }))
    .unwrap();
    in_alpha.create(&PostParams::default(), &cm).await.unwrap();

    assert!(in_alpha.get_opt("only-in-alpha").await.unwrap().is_some());
    assert!(in_beta.get_opt("only-in-alpha").await.unwrap().is_none());
}

#[tokio::test]
async fn nodes_and_pods_are_written_as_a_kubelet_would() {
    let plane = ControlPlane::start_named("kubelet").await.unwrap();
    let client = plane.client().await.unwrap();

    kubelet::create_node(
        &client,
        "worker-1",
        &[
            ("InternalIP", "192.0.2.10"),
            ("InternalIP", "2001:db8::10"),
            ("Hostname", "worker-1"),
        ],
    )
    .await
    .unwrap();
    let node = Api::<Node>::all(client.clone())
        .get("worker-1")
        .await
        .unwrap();
    let addrs: Vec<(String, String)> = node
        .status
        .unwrap()
        .addresses
        .unwrap()
        .into_iter()
        .map(|a| (a.type_, a.address))
        .collect();
    assert_eq!(
        addrs,
        [
            ("InternalIP".to_string(), "192.0.2.10".to_string()),
            ("InternalIP".to_string(), "2001:db8::10".to_string()),
            ("Hostname".to_string(), "worker-1".to_string()),
        ]
    );

    let labels = BTreeMap::from([("app".to_string(), "istio-ingressgateway".to_string())]);
    kubelet::create_running_pod(
        &client,
        "default",
        "gw-0",
        &labels,
        "worker-1",
        &["fd00::5"],
    )
    .await
    .unwrap();
    let pod = Api::<Pod>::default_namespaced(client)
        .get("gw-0")
        .await
        .unwrap();
    assert_eq!(pod.spec.unwrap().node_name.as_deref(), Some("worker-1"));
    let status = pod.status.unwrap();
    assert_eq!(status.phase.as_deref(), Some("Running"));
    let ready = status
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready.status, "True");
}

#[tokio::test]
async fn the_built_kubectl_and_helm_reach_a_plane() {
    let plane = ControlPlane::start_named("cli").await.unwrap();

    let out = plane
        .kubectl()
        .args(["get", "ns", "-o", "name"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.lines().any(|l| l == "namespace/default"), "{stdout}");

    let out = plane
        .kubectl()
        .args(["version", "-o", "json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let server = v["serverVersion"]["gitVersion"].as_str().unwrap();
    assert!(server.starts_with("v1."), "apiserver reports {server}");
    assert_eq!(v["serverVersion"]["major"], "1");

    let out = plane.helm().args(["version", "--short"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("v3."));

    let out = plane.helm().args(["list", "-A"]).output().unwrap();
    assert!(
        out.status.success(),
        "helm cannot reach the plane: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn a_plane_starts_with_extra_admission_plugins() {
    let plane = ControlPlane::start(
        testplane::PlaneOptions::named("deny-externalips")
            .admission_plugin("DenyServiceExternalIPs"),
    )
    .await
    .unwrap();
    let services: Api<Service> = Api::default_namespaced(plane.client().await.unwrap());
    let mut svc = service("gw", "SingleStack", &["IPv6"]);
    svc.spec.as_mut().unwrap().external_ips = Some(vec!["2001:db8::10".to_string()]);
    let err = services
        .create(&PostParams::default(), &svc)
        .await
        .unwrap_err();
    match err {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 403, "{s:?}");
            assert!(s.message.contains("external IPs"), "{s:?}");
        }
        other => panic!("expected a refusal by admission, got {other}"),
    }
}

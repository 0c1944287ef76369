//! A `--cluster` plane behaves like a cluster, with the real components:
//! kube-controller-manager gives fake Nodes podCIDRs of both families and
//! ServiceAccounts their tokens, kube-scheduler places a Deployment's Pods,
//! kwok runs them (Running, Ready, an IPv4 and an IPv6 Pod IP from the
//! node's podCIDRs), and `kubectl cordon`, `kubectl drain` (respecting a
//! PodDisruptionBudget) and scaling move and resize the workload.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Secret, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use testplane::fake_nodes::{create_fake_nodes, create_n_fake_nodes, pod_cidrs};
use testplane::wait::wait_for;
use testplane::workload::{self, kubectl, node_of, pod_ips, wait_rolled_out};
use testplane::{ControlPlane, PlaneOptions};

const NS: &str = "web";
const APP: &str = "web";
const SELECTOR: &str = "app=web";

/// Whether `ip` lies inside `cidr` (same family, same leading bits).
fn in_cidr(ip: &str, cidr: &str) -> bool {
    let (net, len) = cidr.split_once('/').expect("a CIDR");
    let len: u32 = len.parse().expect("a prefix length");
    match (ip.parse::<IpAddr>(), net.parse::<IpAddr>()) {
        (Ok(IpAddr::V4(a)), Ok(IpAddr::V4(n))) => {
            let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (Ok(IpAddr::V6(a)), Ok(IpAddr::V6(n))) => {
            let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

fn family(ip: &str) -> &'static str {
    match ip.parse::<IpAddr>() {
        Ok(IpAddr::V4(_)) => "IPv4",
        Ok(IpAddr::V6(_)) => "IPv6",
        Err(_) => "neither",
    }
}

async fn plane(name: &str) -> (ControlPlane, Client) {
    let plane = ControlPlane::start(PlaneOptions::named(name).cluster())
        .await
        .expect("cluster plane");
    let client = plane.client().await.expect("client");
    (plane, client)
}

async fn namespace(client: &Client, name: &str) {
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("create namespace");
}

fn labels() -> BTreeMap<String, String> {
    BTreeMap::from([("app".to_string(), APP.to_string())])
}

fn addresses(node: &Node) -> Vec<(String, String)> {
    node.status
        .as_ref()
        .and_then(|s| s.addresses.as_ref())
        .map(|a| {
            a.iter()
                .map(|a| (a.type_.clone(), a.address.clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// Every Pod is Running and Ready on a fake node, with one IPv4 and one
/// IPv6 Pod IP, each inside that node's podCIDR of its family.
async fn assert_ips_from_node_cidrs(client: &Client, pods: &[Pod]) {
    let nodes: Api<Node> = Api::all(client.clone());
    for pod in pods {
        let name = pod.metadata.name.as_deref().unwrap();
        let node = nodes.get(node_of(pod).expect("bound")).await.unwrap();
        let cidrs = pod_cidrs(&node);
        let ips = pod_ips(pod);
        let families: Vec<&str> = ips.iter().map(|ip| family(ip)).collect();
        assert_eq!(families.len(), 2, "{name}: {ips:?}");
        assert!(
            families.contains(&"IPv4") && families.contains(&"IPv6"),
            "{name}: {ips:?}"
        );
        for ip in &ips {
            assert!(
                cidrs.iter().any(|c| in_cidr(ip, c)),
                "{name}: {ip} is in none of {cidrs:?}"
            );
        }
    }
}

fn nodes_of(pods: &[Pod]) -> Vec<String> {
    pods.iter()
        .map(|p| node_of(p).expect("bound").to_string())
        .collect()
}

#[tokio::test]
async fn fake_nodes_keep_their_addresses_get_two_pod_cidrs_and_service_accounts_get_tokens() {
    let (_plane, client) = plane("cl-nodes").await;

    // Address sets a test may choose: GUA, ULA, link-local, IPv4 private
    // and public, InternalIP and ExternalIP, with and without Hostname.
    let a: &[(&str, &str)] = &[
        ("InternalIP", "2001:db8::a"),
        ("InternalIP", "fd00:10::a"),
        ("InternalIP", "fe80::a"),
        ("InternalIP", "10.0.0.10"),
        ("ExternalIP", "203.0.113.10"),
        ("Hostname", "node-a"),
    ];
    let b: &[(&str, &str)] = &[("InternalIP", "10.0.0.11")];
    let c: &[(&str, &str)] = &[("ExternalIP", "2001:db8:ff::c")];
    let nodes = create_fake_nodes(&client, &[("node-a", a), ("node-b", b), ("node-c", c)])
        .await
        .unwrap();
    let mut all_cidrs = Vec::new();
    for (node, want) in nodes.iter().zip([a, b, c]) {
        let name = node.metadata.name.clone().unwrap();
        let cidrs = pod_cidrs(node);
        assert_eq!(
            cidrs
                .iter()
                .map(|c| family(c.split('/').next().unwrap()))
                .collect::<Vec<_>>(),
            vec!["IPv4", "IPv6"],
            "{name}: {cidrs:?}"
        );
        assert!(
            in_cidr(cidrs[0].split('/').next().unwrap(), "10.244.0.0/16"),
            "{cidrs:?}"
        );
        assert!(cidrs[0].ends_with("/24"), "{cidrs:?}");
        assert!(
            in_cidr(cidrs[1].split('/').next().unwrap(), "fd00:10:244::/56"),
            "{cidrs:?}"
        );
        assert!(cidrs[1].ends_with("/64"), "{cidrs:?}");
        all_cidrs.extend(cidrs);
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(t, a)| (t.to_string(), a.to_string()))
            .collect();
        assert_eq!(addresses(node), want, "{name}");
    }
    all_cidrs.sort();
    all_cidrs.dedup();
    assert_eq!(all_cidrs.len(), 6, "every node its own ranges");

    // Once more Nodes have been registered and initialized, the first ones
    // still show exactly the addresses they were given.
    let more = create_n_fake_nodes(&client, "extra", 2, |i| {
        vec![("InternalIP", format!("2001:db8:e::{i}"))]
    })
    .await
    .unwrap();
    assert_eq!(more.len(), 2);
    let api: Api<Node> = Api::all(client.clone());
    for (name, want) in [("node-b", b), ("node-c", c)] {
        let node = api.get(name).await.unwrap();
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(t, a)| (t.to_string(), a.to_string()))
            .collect();
        assert_eq!(addresses(&node), want, "{name}");
    }

    // The token controller fills a ServiceAccount token Secret, and the
    // ServiceAccount admission plugin mounts a token into each Pod.
    namespace(&client, NS).await;
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), NS);
    wait_for(
        "ServiceAccount web/default",
        Duration::from_secs(20),
        || async {
            sas.get_opt("default")
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| "absent".to_string())
        },
    )
    .await;
    let sa: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": "reader"}})).unwrap();
    sas.create(&PostParams::default(), &sa).await.unwrap();
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {
            "name": "reader-token",
            "annotations": {"kubernetes.io/service-account.name": "reader"},
        },
        "type": "kubernetes.io/service-account-token",
    }))
    .unwrap();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NS);
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let keys = wait_for("the reader token", Duration::from_secs(20), || async {
        let s = secrets
            .get("reader-token")
            .await
            .map_err(|e| e.to_string())?;
        let data = s.data.unwrap_or_default();
        match data.get("token") {
            Some(t) if t.0.split(|b| *b == b'.').count() == 3 => {
                Ok(data.keys().cloned().collect::<Vec<_>>())
            }
            _ => Err(format!("keys {:?}", data.keys().collect::<Vec<_>>())),
        }
    })
    .await;
    assert_eq!(keys, vec!["ca.crt", "namespace", "token"]);

    let d = workload::deployment(NS, APP, &labels(), "app", 1);
    workload::apply(&client, &d).await.unwrap();
    let pods = wait_rolled_out(&client, NS, APP, SELECTOR, 1).await;
    let spec = pods[0].spec.clone().unwrap();
    assert_eq!(spec.service_account_name.as_deref(), Some("default"));
    let volumes: Vec<String> = spec
        .volumes
        .unwrap_or_default()
        .into_iter()
        .map(|v| v.name)
        .collect();
    assert!(
        volumes.iter().any(|v| v.starts_with("kube-api-access-")),
        "{volumes:?}"
    );
}

#[tokio::test]
async fn a_deployment_runs_on_fake_nodes_and_moves_on_cordon_drain_and_scale() {
    let (plane, client) = plane("cl-deploy").await;
    create_n_fake_nodes(&client, "node", 3, |i| {
        vec![
            ("InternalIP", format!("2001:db8::{i}")),
            ("InternalIP", format!("10.0.0.{i}")),
        ]
    })
    .await
    .unwrap();
    namespace(&client, NS).await;

    // Two replicas become Available, on fake nodes, with dual-stack IPs.
    workload::apply(&client, &workload::deployment(NS, APP, &labels(), "app", 2))
        .await
        .unwrap();
    let pods = wait_rolled_out(&client, NS, APP, SELECTOR, 2).await;
    assert_ips_from_node_cidrs(&client, &pods).await;

    // Cordon the first Pod's node and delete the Pod: its replacement
    // lands on another node.
    let victim = pods[0].metadata.name.clone().unwrap();
    let before: Vec<String> = pods
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    let from = node_of(&pods[0]).unwrap().to_string();
    kubectl(&plane, &["cordon", &from]);
    Api::<Pod>::namespaced(client.clone(), NS)
        .delete(&victim, &DeleteParams::default())
        .await
        .unwrap();
    // The victim is Terminating from now on, so a rollout of two Ready Pods
    // no longer counts it.
    let pods = wait_rolled_out(&client, NS, APP, SELECTOR, 2).await;
    let names: Vec<_> = pods
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    assert!(!names.contains(&victim), "{names:?}");
    // The replacement (the other replica may share the cordoned node: the
    // scheduler's spreading is a preference) is not on the cordoned node.
    let replacements: Vec<&Pod> = pods
        .iter()
        .filter(|p| !p.metadata.name.as_ref().is_some_and(|n| before.contains(n)))
        .collect();
    assert_eq!(replacements.len(), 1, "{names:?} after {before:?}");
    assert_ne!(
        node_of(replacements[0]),
        Some(from.as_str()),
        "the replacement of {victim} is on the cordoned {from}"
    );
    assert_ips_from_node_cidrs(&client, &pods).await;
    kubectl(&plane, &["uncordon", &from]);

    // A PodDisruptionBudget that allows no disruption stops a drain; one
    // that allows one lets it through, and the Pod moves.
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), NS);
    let pdb = |min: i32| {
        json!({
            "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": APP, "namespace": NS},
            "spec": {"minAvailable": min, "selector": {"matchLabels": labels()}},
        })
    };
    pdbs.patch(
        APP,
        &PatchParams::apply("test").force(),
        &Patch::Apply(pdb(2)),
    )
    .await
    .unwrap();
    wait_for("the PDB observed", Duration::from_secs(20), || async {
        let p = pdbs.get(APP).await.map_err(|e| e.to_string())?;
        match p.status {
            Some(s) if s.current_healthy == 2 && s.disruptions_allowed == 0 => Ok(()),
            s => Err(format!("{s:?}")),
        }
    })
    .await;
    let target = node_of(&pods[0]).unwrap().to_string();
    let out = plane
        .kubectl()
        .args(["drain", &target, "--ignore-daemonsets", "--timeout=8s"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "drain went through a PDB: {stderr}");
    assert!(stderr.contains("disruption budget"), "{stderr}");
    let still = wait_rolled_out(&client, NS, APP, SELECTOR, 2).await;
    assert!(nodes_of(&still).contains(&target), "{:?}", nodes_of(&still));

    pdbs.patch(
        APP,
        &PatchParams::apply("test").force(),
        &Patch::Apply(pdb(1)),
    )
    .await
    .unwrap();
    kubectl(
        &plane,
        &["drain", &target, "--ignore-daemonsets", "--timeout=60s"],
    );
    let pods = wait_rolled_out(&client, NS, APP, SELECTOR, 2).await;
    assert!(
        !nodes_of(&pods).contains(&target),
        "{:?} on {target}",
        nodes_of(&pods)
    );
    assert_ips_from_node_cidrs(&client, &pods).await;
    kubectl(&plane, &["uncordon", &target]);

    // Scale 2 -> 1 -> 3 -> 1.
    for replicas in [1, 3, 1] {
        workload::scale(&client, NS, APP, replicas).await.unwrap();
        let pods = wait_rolled_out(&client, NS, APP, SELECTOR, replicas as usize).await;
        assert_ips_from_node_cidrs(&client, &pods).await;
    }
}

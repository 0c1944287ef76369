//! Scenario (b2): the gateway, a real Deployment on a cluster plane
//! (kube-scheduler, kube-controller-manager, kwok), moved by an eviction ->
//! the Service's externalIPs updated. The same outcome as (b), with the
//! clock started one step earlier: at the eviction request, so the
//! ReplicaSet controller's new Pod, the scheduler's binding and kwok's
//! Ready status are inside the figure.

use super::*;
use k8s_openapi::api::core::v1::Node;
use kube::api::EvictParams;
use testplane::workload;

/// Cordons (or uncordons) Node `name`, as `kubectl cordon` does.
async fn set_unschedulable(client: &Client, name: &str, unschedulable: bool) {
    Api::<Node>::all(client.clone())
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "unschedulable": unschedulable } })),
        )
        .await
        .expect("cordon / uncordon a Node");
}

/// The gateway Pod that is Ready and not being deleted: its name and node.
async fn ready_gateway_pod(pods: &Api<Pod>) -> Option<(String, String)> {
    let list = pods
        .list(&kube::api::ListParams::default().labels(&format!("app={GW}")))
        .await
        .expect("list gateway Pods");
    list.items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none() && workload::is_ready(p))
        .find_map(|p| Some((p.name_any(), workload::node_of(p)?.to_string())))
}

pub(crate) async fn scenario_evict(s: &Settings) -> Report {
    let plane = ControlPlane::start(plane_options("lat-evict").cluster())
        .await
        .expect("plane lat-evict (cluster)");
    let client = plane.client().await.expect("client");
    install_dualmesh_crds(&client).await;
    create_gateway_service(&client).await;
    let nodes: Vec<(&str, [testplane::kubelet::NodeAddress; 1])> = NODES
        .iter()
        .map(|(name, addr)| (*name, [("InternalIP", *addr)]))
        .collect();
    let nodes: Vec<(&str, &[testplane::kubelet::NodeAddress])> =
        nodes.iter().map(|(n, a)| (*n, a.as_slice())).collect();
    testplane::fake_nodes::create_fake_nodes(&client, &nodes)
        .await
        .expect("fake Nodes");
    let address_of = |node: &str| {
        NODES
            .iter()
            .find(|(n, _)| *n == node)
            .map(|(_, a)| *a)
            .expect("a bench node")
    };
    let gateway = workload::deployment(GW_NS, GW, &gateway_labels(), "istio-proxy", 1);
    workload::apply(&client, &gateway)
        .await
        .expect("gateway Deployment");
    let rolled = workload::wait_rolled_out(&client, GW_NS, GW, &format!("app={GW}"), 1).await;
    let first_node = workload::node_of(&rolled[0])
        .expect("a scheduled gateway Pod")
        .to_string();
    let pods: Api<Pod> = Api::namespaced(client.clone(), GW_NS);
    let policy: DualStackPolicy = example("policy-ipv6-only.yaml");
    create_policy(&client, &policy).await;
    let mut services = Watch::<Service>::start(
        Api::namespaced(client.clone(), GW_NS),
        watcher::Config::default().fields(&format!("metadata.name={GW}")),
        "lat-evict gateway Service",
    )
    .await;
    let operator = operator(&plane, s).await;
    let started = Instant::now();
    create_meshcluster(&client, &example::<MeshCluster>("meshcluster-alpha.yaml")).await;
    let first = address_of(&first_node);
    services
        .until(started, "the first externalIPs", |e| {
            e.applied(GW)
                .is_some_and(|svc| external_ips_of(svc) == [first])
        })
        .await
        .unwrap_or_else(|e| fail(&operator, e));

    let mut floor = Floor::new(&client, "lat-evict").await;
    let mut from_eviction = vec![];
    let mut usage = None;
    for i in 0..s.total() {
        let record = i >= s.warmup;
        if i == s.warmup {
            usage = Some(Usage::start(&operator));
        }
        // The Pod of the previous event is Ready by now (its address is
        // published, which needs a Ready Pod), so this finds it.
        let (pod, node) = ready_gateway_pod(&pods)
            .await
            .unwrap_or_else(|| fail(&operator, "no Ready gateway Pod".into()));
        let other = NODES
            .iter()
            .map(|(n, _)| *n)
            .find(|n| *n != node)
            .expect("two nodes");
        // Only the other node takes the replacement: not timed.
        set_unschedulable(&client, other, false).await;
        set_unschedulable(&client, &node, true).await;
        floor.sample(record).await;
        settle(s).await;

        let addr = address_of(other);
        let evicting = Instant::now();
        pods.evict(&pod, &EvictParams::default())
            .await
            .expect("evict the gateway Pod");
        let at = services
            .until(evicting, &format!("externalIPs [{addr}]"), |e| {
                e.applied(GW)
                    .is_some_and(|svc| external_ips_of(svc) == [addr])
            })
            .await
            .unwrap_or_else(|e| fail(&operator, e));
        if record {
            from_eviction.push(at - evicting);
        }
    }
    let usage = usage.expect("at least one measured event");
    let report = Report {
        id: "b2",
        title: "gateway Deployment's Pod evicted (scheduler + kwok) -> Service externalIPs updated"
            .into(),
        series: vec![
            Series {
                name: "(b2) eviction sent -> externalIPs = new node".into(),
                samples: from_eviction,
            },
            Series {
                name: "floor: raw SSA PATCH (same plane)".into(),
                samples: floor.patch,
            },
            Series {
                name: "floor: raw SSA PATCH -> seen by a watch".into(),
                samples: floor.seen,
            },
        ],
        // No target: most of this clock is the ReplicaSet controller, the
        // scheduler and kwok, not dualmesh; (b) holds dualmesh's share.
        verdicts: vec![],
        notes: vec![
            "the clock starts at the eviction request: it includes kube-controller-manager creating the replacement Pod, kube-scheduler binding it to the only schedulable node and kwok setting it Ready; (b) times dualmesh's part alone".into(),
            usage.note(s.events),
        ],
    };
    drop(operator);
    drop(plane);
    report
}

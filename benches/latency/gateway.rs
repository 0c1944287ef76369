//! Scenario (b): the gateway Pod moved to another node -> the Service's externalIPs updated.

use super::*;

/// The nodes the gateway Pod moves between: name and IPv6 address (inside
/// the policy's allowedCIDRs, so eligible).
pub(crate) const NODES: [(&str, &str); 2] = [("node-a", "2001:db8::a"), ("node-b", "2001:db8::b")];
/// The Pod IP the kubelet stand-in reports (any; dualmesh reads node addresses).
pub(crate) const POD_IP: &str = "fd00:10:244::5";

/// Creates gateway Pod `name` bound to `node`, as the scheduler would (not
/// Ready yet: that is the kubelet's status write, done separately).
pub(crate) async fn create_bound_pod(client: &Client, name: &str, node: &str) {
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": GW_NS, "labels": gateway_labels()},
        "spec": {
            "nodeName": node,
            "containers": [{"name": "istio-proxy", "image": "docker.io/istio/proxyv2:test"}],
        },
    }))
    .expect("a valid Pod");
    Api::<Pod>::namespaced(client.clone(), GW_NS)
        .create(&PostParams::default(), &pod)
        .await
        .expect("create gateway Pod");
}

pub(crate) fn external_ips_of(svc: &Service) -> Vec<String> {
    svc.spec
        .as_ref()
        .and_then(|s| s.external_ips.clone())
        .unwrap_or_default()
}

pub(crate) async fn scenario_gateway(s: &Settings) -> Report {
    let plane = ControlPlane::start(plane_options("lat-gateway"))
        .await
        .expect("plane lat-gateway");
    let client = plane.client().await.expect("client");
    install_dualmesh_crds(&client).await;
    create_gateway_service(&client).await;
    for (node, addr) in NODES {
        testplane::kubelet::create_node(&client, node, &[("InternalIP", addr)])
            .await
            .expect("create node");
    }
    testplane::kubelet::create_running_pod(
        &client,
        GW_NS,
        "gw-0",
        &gateway_labels(),
        NODES[0].0,
        &[POD_IP],
    )
    .await
    .expect("create gateway Pod");
    let policy: DualStackPolicy = example("policy-ipv6-only.yaml");
    create_policy(&client, &policy).await;
    let mut services = Watch::<Service>::start(
        Api::namespaced(client.clone(), GW_NS),
        watcher::Config::default().fields(&format!("metadata.name={GW}")),
        "lat-gateway gateway Service",
    )
    .await;
    let operator = operator(&plane, s).await;
    let started = Instant::now();
    create_meshcluster(&client, &example::<MeshCluster>("meshcluster-alpha.yaml")).await;
    services
        .until(started, "the first externalIPs", |e| {
            e.applied(GW)
                .is_some_and(|svc| external_ips_of(svc) == [NODES[0].1])
        })
        .await
        .unwrap_or_else(|e| fail(&operator, e));

    let mut floor = Floor::new(&client, "lat-gateway").await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), GW_NS);
    let (mut from_ready, mut whole) = (vec![], vec![]);
    let mut usage = None;
    for i in 0..s.total() {
        let record = i >= s.warmup;
        if i == s.warmup {
            usage = Some(Usage::start(&operator));
        }
        floor.sample(record).await;
        settle(s).await;

        let (node, addr) = NODES[(i + 1) % NODES.len()];
        let (old, new) = (format!("gw-{i}"), format!("gw-{}", i + 1));
        let moving = Instant::now();
        // No kubelet here: a grace period of 0 removes the Pod at once,
        // as a node's kubelet confirming the kill would.
        pods.delete(&old, &DeleteParams::default().grace_period(0))
            .await
            .expect("delete gateway Pod");
        create_bound_pod(&client, &new, node).await;
        let ready = Instant::now();
        testplane::kubelet::set_pod_ready(&client, GW_NS, &new, &[POD_IP], true)
            .await
            .expect("set gateway Pod Ready");
        let at = services
            .until(ready, &format!("externalIPs [{addr}]"), |e| {
                e.applied(GW)
                    .is_some_and(|svc| external_ips_of(svc) == [addr])
            })
            .await
            .unwrap_or_else(|e| fail(&operator, e));
        if record {
            from_ready.push(at - ready);
            whole.push(at - moving);
        }
    }
    let usage = usage.expect("at least one measured event");
    let verdicts = reactive_verdicts("b", &from_ready, &floor.patch);
    let report = Report {
        id: "b",
        title: "gateway Pod moved to another node -> Service externalIPs updated".into(),
        series: vec![
            Series {
                name: "(b) new Pod Ready -> externalIPs = its node".into(),
                samples: from_ready,
            },
            Series {
                name: "    whole move: delete old Pod -> externalIPs".into(),
                samples: whole,
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
        verdicts,
        notes: vec![
            "the clock starts when the new Pod's Ready status is sent: before that, dualmesh keeps the old address by design; 'whole move' adds the test's own three writes (delete, create, status)".into(),
            usage.note(s.events),
        ],
    };
    drop(operator);
    drop(plane);
    report
}

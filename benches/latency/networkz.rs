//! Scenario (d): beta's gateway Pod moved to another node -> alpha's
//! `meshNetworks` key lists the new node's address (watched) -> alpha's
//! istiod lists it in `/debug/networkz` (polled every 5 ms: istiod has no
//! watch). The meshNetworks path (`publishAddressesTo: MeshNetworks`, no
//! externalIPs), across two planes, with a real istiod on alpha.

use super::*;
use common::trust::{install_istio_config_map, put_member_kubeconfig};
use testplane::istiod::{Istiod, install_istio_crds};

/// How often istiod's networkz is asked.
const POLL: Duration = Duration::from_millis(5);

/// Whether the meshNetworks key lists `addr` as a gateway.
fn key_lists(cm: &ConfigMap, addr: &str) -> bool {
    cm.data
        .as_ref()
        .and_then(|d| d.get("meshNetworks"))
        .is_some_and(|k| k.contains(&format!("\"address\":\"{addr}\"")))
}

/// Polls alpha's istiod until networkz lists `addr`; the instant it did.
async fn networkz_lists(istiod: &Istiod, addr: &str, since: Instant) -> Result<Instant, String> {
    loop {
        let listed = tokio::task::block_in_place(|| istiod.debug_json("/debug/networkz"))
            .map(|z| z.to_string().contains(&format!("\"Addr\":\"{addr}\"")))
            .unwrap_or(false);
        if listed {
            return Ok(Instant::now());
        }
        if since.elapsed() > WAIT {
            return Err(format!(
                "istiod's networkz did not list {addr} within {WAIT:?}"
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}

pub(crate) async fn scenario_networkz(s: &Settings) -> Report {
    let (alpha, beta) = tokio::join!(
        ControlPlane::start(plane_options("lat-nz-alpha")),
        ControlPlane::start(plane_options("lat-nz-beta"))
    );
    let (alpha, beta) = (alpha.expect("plane alpha"), beta.expect("plane beta"));
    let a = alpha.client().await.expect("client");
    let b = beta.client().await.expect("client");
    for (client, nodes) in [(&a, &[("node-a1", "2001:db8:a::1")][..]), (&b, &NODES[..])] {
        create_gateway_service(client).await;
        for (node, addr) in nodes {
            testplane::kubelet::create_node(client, node, &[("InternalIP", addr)])
                .await
                .expect("create node");
        }
        testplane::kubelet::create_running_pod(
            client,
            GW_NS,
            "gw-0",
            &gateway_labels(),
            nodes[0].0,
            &[POD_IP],
        )
        .await
        .expect("create gateway Pod");
        install_istio_config_map(client).await;
    }
    install_dualmesh_crds(&a).await;
    put_member_kubeconfig(&a, &beta).await;
    create_policy(&a, &example::<DualStackPolicy>("policy-ipv6-only.yaml")).await;
    install_istio_crds(&alpha).expect("Istio's CRDs on alpha");
    let istiod = Istiod::start(&alpha, "cluster-alpha", &Default::default()).expect("istiod");
    let mut keys = Watch::<ConfigMap>::start(
        Api::namespaced(a.clone(), ISTIO_NS),
        watcher::Config::default().fields("metadata.name=istio"),
        "lat-nz alpha's Istio ConfigMap",
    )
    .await;
    let operator = operator(&alpha, s).await;
    let started = Instant::now();
    for file in [
        "istio-native/meshcluster-alpha.yaml",
        "istio-native/meshcluster-beta.yaml",
    ] {
        // Only the meshNetworks path: no trust, no remote secrets.
        let mut mc: MeshCluster = example(file);
        mc.spec.trust = None;
        mc.spec.remote_secrets = None;
        create_meshcluster(&a, &mc).await;
    }
    keys.until(started, "beta's first gateway in alpha's key", |e| {
        e.applied("istio")
            .is_some_and(|cm| key_lists(cm, NODES[0].1))
    })
    .await
    .unwrap_or_else(|e| fail(&operator, e));
    networkz_lists(&istiod, NODES[0].1, started)
        .await
        .unwrap_or_else(|e| fail(&operator, e));

    let mut floor = Floor::new(&b, "lat-nz-beta").await;
    let pods: Api<Pod> = Api::namespaced(b.clone(), GW_NS);
    let (mut to_key, mut to_istiod) = (vec![], vec![]);
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
        pods.delete(&old, &DeleteParams::default().grace_period(0))
            .await
            .expect("delete gateway Pod");
        create_bound_pod(&b, &new, node).await;
        let ready = Instant::now();
        testplane::kubelet::set_pod_ready(&b, GW_NS, &new, &[POD_IP], true)
            .await
            .expect("set gateway Pod Ready");
        let at_key = keys
            .until(ready, &format!("{addr} in alpha's meshNetworks"), |e| {
                e.applied("istio").is_some_and(|cm| key_lists(cm, addr))
            })
            .await
            .unwrap_or_else(|e| fail(&operator, e));
        let at_istiod = networkz_lists(&istiod, addr, ready)
            .await
            .unwrap_or_else(|e| fail(&operator, e));
        if record {
            to_key.push(at_key - ready);
            to_istiod.push(at_istiod - ready);
        }
    }
    let usage = usage.expect("at least one measured event");
    let report = Report {
        id: "d",
        title: "beta's gateway Pod moved -> alpha's meshNetworks -> alpha's istiod networkz".into(),
        series: vec![
            Series {
                name: "(d) new Pod Ready (beta) -> alpha's meshNetworks key".into(),
                samples: to_key,
            },
            Series {
                name: "    -> alpha's istiod /debug/networkz (polled 5 ms)".into(),
                samples: to_istiod,
            },
            Series {
                name: "floor: raw SSA PATCH (beta)".into(),
                samples: floor.patch,
            },
            Series {
                name: "floor: raw SSA PATCH -> seen by a watch (beta)".into(),
                samples: floor.seen,
            },
        ],
        verdicts: vec![],
        notes: vec![
            "no target: two clusters' round trips (beta's watch, alpha's write) and istiod's own debounce are inside it; networkz is polled, so its figures are quantised to 5 ms".into(),
            usage.note(s.events),
        ],
    };
    drop(operator);
    drop(istiod);
    drop((alpha, beta));
    report
}

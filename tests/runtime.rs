//! `dualmesh run` as a process a platform team runs: /healthz, /readyz and
//! /metrics over HTTP, a graceful stop on SIGTERM, and two replicas sharing
//! a leader Lease (one reconciles; the other takes over when the leader is
//! killed and when it is stopped), all on a real control plane.

mod common;

use std::time::{Duration, Instant};

use common::*;
use dualmesh::api::{DualStackPolicy, MeshCluster};
use kube::Client;
use testplane::ControlPlane;
use testplane::kubelet::set_node_addresses;

const WAIT: Duration = Duration::from_secs(20);

/// Policy ipv6-only, MeshCluster alpha and its gateway on node-a.
async fn mesh(client: &Client) {
    create_policy(client, &example::<DualStackPolicy>("policy-ipv6-only.yaml")).await;
    create_meshcluster(client, &example::<MeshCluster>("meshcluster-alpha.yaml")).await;
    create_gateway(client, "node-a", &["2001:db8::a", "192.0.2.10"]).await;
}

async fn wait_ready_phase(addr: std::net::SocketAddr, code: u16, body: &str) {
    wait_for(&format!("/readyz {code} {body}"), WAIT, || async {
        let got = http_get(addr, "/readyz").await;
        if got == (code, format!("{body}\n")) {
            Ok(())
        } else {
            Err(format!("{got:?}"))
        }
    })
    .await;
}

#[tokio::test]
async fn serves_health_readiness_metrics_and_stops_gracefully_on_sigterm() {
    let plane = ControlPlane::start_named("runtime").await.expect("plane");
    let client = plane.client().await.expect("client");
    install_dualmesh_crds(&client).await;
    let mut operator = start_operator(&plane, "operator.log", LOG, &[]);
    let addr = http_addr(&operator).await;

    assert_eq!(http_get(addr, "/healthz").await, (200, "ok\n".into()));
    wait_ready_phase(addr, 200, "leading").await;

    mesh(&client).await;
    wait_mc(&client, "alpha", "Ready", "True", "Ready", WAIT).await;

    let text = http_get(addr, "/metrics").await.1;
    let series = |s: &str| metric(&text, s);
    let alpha = r#"namespace="dualmesh-system",meshcluster="alpha""#;
    // ipv6-only: the IPv4 node address is not published.
    assert_eq!(
        series(&format!(
            "dualmesh_gateway_addresses{{{alpha},family=\"IPv6\"}}"
        )),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        series(&format!(
            "dualmesh_gateway_addresses{{{alpha},family=\"IPv4\"}}"
        )),
        Some(0.0)
    );
    assert_eq!(
        series(&format!("dualmesh_meshcluster_ready{{{alpha}}}")),
        Some(1.0)
    );
    assert_eq!(
        series(&format!("dualmesh_member_reachable{{{alpha}}}")),
        Some(1.0)
    );
    assert_eq!(series("dualmesh_leader"), Some(1.0));
    let ok = series(r#"dualmesh_reconciles_total{controller="meshcluster",result="success"}"#)
        .expect("meshcluster reconciles counted");
    assert!(ok >= 1.0, "{text}");
    let observed = series(r#"dualmesh_reconcile_duration_seconds_count{controller="meshcluster"}"#)
        .expect("durations observed");
    assert!(observed >= ok, "{text}");
    assert!(
        series(r#"dualmesh_reconciles_total{controller="dualstackpolicy",result="success"}"#)
            .is_some_and(|n| n >= 1.0),
        "{text}"
    );
    assert_eq!(http_get(addr, "/nothing").await.0, 404);

    // SIGTERM: the controllers drain and the process exits 0.
    let status = operator
        .terminate(Duration::from_secs(20))
        .expect("dualmesh exits within 20 s of SIGTERM");
    assert!(status.success(), "{status:?}\n{}", operator.log_tail(20));
    let log = operator.log();
    assert!(log.contains("SIGTERM: stopping"), "{log}");
    assert!(log.contains("dualmesh controllers stopped"), "{log}");
}

/// Writes by `identity`'s user to anything but the Lease.
fn writes_besides_lease(plane: &ControlPlane, identity: &str) -> Vec<String> {
    plane
        .writes_by(&format!("dualmesh-{identity}"))
        .expect("audit log")
        .into_iter()
        .filter(|w| w.resource != "leases")
        .map(|w| format!("{} {} {:?}", w.verb, w.resource, w.name))
        .collect()
}

async fn wait_external_ip(client: &Client, ip: &str) {
    wait_external_ips(client, &[ip], WAIT).await;
}

#[tokio::test]
async fn two_replicas_one_leader_takeover_on_kill_and_handover_on_sigterm() {
    let plane = ControlPlane::start_named("leader").await.expect("plane");
    let client = plane.client().await.expect("client");
    install_dualmesh_crds(&client).await;
    create_namespace(&client, NS).await;

    let a = replica(&plane, "a");
    wait_holder(&client, "a", WAIT).await;
    let mut b = replica(&plane, "b");
    let b_addr = http_addr(&b).await;
    // The standby is ready (it can take over) but does not lead.
    wait_ready_phase(b_addr, 200, "standby").await;
    assert_eq!(
        metric(&http_get(b_addr, "/metrics").await.1, "dualmesh_leader"),
        Some(0.0)
    );
    let a_addr = http_addr(&a).await;
    wait_ready_phase(a_addr, 200, "leading").await;

    // A reconciles; B writes nothing.
    mesh(&client).await;
    wait_mc(&client, "alpha", "Ready", "True", "Ready", WAIT).await;
    wait_external_ip(&client, "2001:db8::a").await;
    assert!(!writes_besides_lease(&plane, "a").is_empty());
    assert_eq!(writes_besides_lease(&plane, "b"), Vec::<String>::new());
    assert_eq!(holder(&client).await.as_deref(), Some("a"));

    // The leader dies without a word: B takes over once the Lease expires
    // (at most LEASE after A's last renewal). kube-lease-manager then waits
    // 0.1-1 s before taking an expired Lease (collision avoidance) and makes
    // two or three requests; the poll here adds up to 0.1 s.
    let mut a = a;
    let killed = Instant::now();
    a.kill();
    wait_holder(&client, "b", LEASE + Duration::from_secs(5)).await;
    let takeover = killed.elapsed();
    eprintln!("takeover after kill -9: {takeover:?} (Lease {LEASE:?})");
    assert!(
        takeover <= LEASE + Duration::from_secs(2),
        "takeover took {takeover:?}"
    );
    wait_ready_phase(b_addr, 200, "leading").await;
    set_node_addresses(&client, "node-a", &[("InternalIP", "2001:db8::a2")])
        .await
        .expect("node addresses");
    wait_external_ip(&client, "2001:db8::a2").await;
    assert!(!writes_besides_lease(&plane, "b").is_empty());

    // A comes back as standby; B is stopped with SIGTERM and hands over.
    let a = replica(&plane, "a2");
    let a_addr = http_addr(&a).await;
    wait_ready_phase(a_addr, 200, "standby").await;
    let before = writes_besides_lease(&plane, "a2");
    assert_eq!(before, Vec::<String>::new());
    let stopped = Instant::now();
    let status = b.terminate(Duration::from_secs(20)).expect("B exits");
    assert!(status.success(), "{status:?}\n{}", b.log_tail(20));
    assert!(b.log().contains("released the leader Lease"), "{}", b.log());
    let b_writes = writes_besides_lease(&plane, "b").len();
    wait_holder(&client, "a2", LEASE + Duration::from_secs(5)).await;
    eprintln!("handover after SIGTERM: {:?}", stopped.elapsed());
    set_node_addresses(&client, "node-a", &[("InternalIP", "2001:db8::a3")])
        .await
        .expect("node addresses");
    wait_external_ip(&client, "2001:db8::a3").await;
    // Nothing from B after it let go.
    assert_eq!(writes_besides_lease(&plane, "b").len(), b_writes);
}

/// A leader frozen (SIGSTOP) past its Lease loses it to the standby; when
/// it wakes it notices, exits without writing anything but its failed
/// Lease renewal, and the new leader keeps the cluster as it should be.
#[tokio::test]
async fn a_frozen_leader_that_lost_its_lease_exits_without_writing() {
    let plane = ControlPlane::start_named("frozen").await.expect("plane");
    let client = plane.client().await.expect("client");
    install_dualmesh_crds(&client).await;
    create_namespace(&client, NS).await;

    let mut a = replica(&plane, "a");
    wait_holder(&client, "a", WAIT).await;
    let b = replica(&plane, "b");
    wait_ready_phase(http_addr(&b).await, 200, "standby").await;
    mesh(&client).await;
    wait_mc(&client, "alpha", "Ready", "True", "Ready", WAIT).await;
    wait_external_ip(&client, "2001:db8::a").await;

    let pid = a.pid().expect("A runs").to_string();
    let signal = |sig: &str| send_signal(&pid, sig);
    signal("-STOP");
    wait_holder(&client, "b", LEASE + Duration::from_secs(5)).await;
    // While A sleeps, the cluster changes and B follows.
    set_node_addresses(&client, "node-a", &[("InternalIP", "2001:db8::a4")])
        .await
        .expect("node addresses");
    wait_external_ip(&client, "2001:db8::a4").await;
    let a_writes = writes_besides_lease(&plane, "a");

    signal("-CONT");
    let status = exit_status(&mut a, WAIT).await;
    assert_eq!(status.code(), Some(1), "{}", a.log_tail(20));
    assert!(a.log().contains("lost the leader Lease"), "{}", a.log());
    assert_eq!(writes_besides_lease(&plane, "a"), a_writes);
    assert_eq!(holder(&client).await.as_deref(), Some("b"));
    assert_eq!(
        external_ips(&client).await,
        Some(vec!["2001:db8::a4".to_string()])
    );
}

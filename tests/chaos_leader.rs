//! Fault tests with two replicas under load (a change every 100 ms):
//!
//! - the leader killed (-9): the standby takes over within the Lease
//!   duration and the old leader's user writes nothing after that (read from
//!   the API server's audit log, with its timestamps);
//! - the leader frozen (SIGSTOP) past its Lease, then woken: it must exit,
//!   start no request after the standby took the Lease over (its own debug
//!   log, `dualmesh::fence: request started`), and every write of it the API
//!   server received after the takeover must have been refused (409, the
//!   resourceVersion precondition) or superseded by a later write of the new
//!   leader to the same object (the audit log). A lease is not a fencing
//!   token: a request sent before the freeze can arrive after it, which is
//!   why the server-side precondition, not the fence, is the guarantee.
//!
//! Both take 10-15 s and run in `make test` and `make chaos`.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::chaos::*;
use common::*;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use testplane::ControlPlane;
use testplane::operator::Operator;

/// kube-lease-manager takes an expired Lease after waiting 0.1-1 s
/// (collision avoidance) with two or three requests; the Lease poll adds up
/// to 0.1 s (the slack tests/runtime.rs justifies).
const TAKEOVER_SLACK: Duration = Duration::from_secs(2);
const LOCAL_UNDER_LOAD: usize = 10;

async fn wait_standby(op: &Operator) {
    let addr = http_addr(op).await;
    wait_for("/readyz standby", Duration::from_secs(20), || async {
        match http_get(addr, "/readyz").await {
            (200, body) if body.trim() == "standby" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
}

/// `identity`'s writes besides the Lease, as the API server's audit log
/// recorded them.
fn replica_writes(plane: &ControlPlane, identity: &str) -> Vec<testplane::Write> {
    plane
        .writes_by(&format!("dualmesh-{identity}"))
        .expect("audit log")
        .into_iter()
        .filter(|w| w.resource != "leases")
        .collect()
}

fn describe(w: &testplane::Write) -> String {
    format!(
        "{} {}{} {}/{} ({:?}) received {}",
        w.verb,
        w.resource,
        w.subresource
            .as_ref()
            .map(|s| format!("/{s}"))
            .unwrap_or_default(),
        w.namespace.clone().unwrap_or_default(),
        w.name.clone().unwrap_or_default(),
        w.code,
        w.received.map(|t| t.to_string()).unwrap_or_default()
    )
}

/// `identity`'s writes besides the Lease received after `after`, described.
fn writes_after(plane: &ControlPlane, identity: &str, after: Timestamp) -> Vec<String> {
    replica_writes(plane, identity)
        .iter()
        .filter(|w| w.received.is_some_and(|t| t > after))
        .map(describe)
        .collect()
}

/// When `identity` first wrote the Lease successfully after `after`: the
/// moment the previous holder lost it.
fn lease_taken(plane: &ControlPlane, identity: &str, after: Timestamp) -> Option<Timestamp> {
    plane
        .writes_by(&format!("dualmesh-{identity}"))
        .expect("audit log")
        .into_iter()
        .filter(|w| w.resource == "leases" && w.code.is_some_and(|c| (200..300).contains(&c)))
        .filter_map(|w| w.received)
        .filter(|t| *t > after)
        .min()
}

/// A stream of changes every 100 ms (the gateway node's address, a
/// MeshCluster's tag, policy `toggle`) until stopped; returns the world
/// after the last one.
struct Load {
    stop: Arc<AtomicBool>,
    made: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<World>,
}

impl Load {
    fn start(client: &Client, world: &World) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let made = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn({
            let (client, stop, made, mut world) =
                (client.clone(), stop.clone(), made.clone(), world.clone());
            async move {
                let specs = [ipv6_only(), dual_stack()];
                let mut n = 0usize;
                while !stop.load(Ordering::SeqCst) {
                    let change = match n % 3 {
                        0 => Change::NodeAddress {
                            node: world.gateway.1.clone(),
                            address: format!("2001:db8::{:x}", 0x200 + n),
                        },
                        1 => {
                            let name = format!("mc-{:02}", (n / 3) % LOCAL_UNDER_LOAD);
                            let mut mc = world.meshclusters[&name].clone();
                            mc.spec.istio.tag = format!("1.28.{n}");
                            Change::Mc(Box::new(mc))
                        }
                        _ => Change::Policy("toggle".into(), Box::new(specs[(n / 3) % 2].clone())),
                    };
                    world.make(&client, &change).await;
                    world.apply(&change);
                    made.fetch_add(1, Ordering::SeqCst);
                    n += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                world
            }
        });
        Load { stop, made, task }
    }

    async fn finish(self) -> (World, usize) {
        self.stop.store(true, Ordering::SeqCst);
        let world = self.task.await.expect("load driver");
        (world, self.made.load(Ordering::SeqCst))
    }
}

/// The times of the requests `op` logged as started (the fence's debug
/// line, `dualmesh::fence: request started`), with the line.
fn requests_started(op: &Operator) -> Vec<(Timestamp, String)> {
    op.log()
        .lines()
        .filter(|l| l.contains("request started"))
        .filter_map(|l| {
            let t: Timestamp = l.split_whitespace().next()?.parse().ok()?;
            Some((t, l.to_string()))
        })
        .collect()
}

/// Whether `b` wrote the object of `w` after `w` was received.
fn superseded(b_writes: &[testplane::Write], w: &testplane::Write) -> bool {
    b_writes.iter().any(|x| {
        x.resource == w.resource
            && x.subresource == w.subresource
            && x.namespace == w.namespace
            && x.name == w.name
            && x.code.is_some_and(|c| (200..300).contains(&c))
            && x.received > w.received
    })
}

/// A plane with two replicas, `a` leading and `b` standing by, over a
/// converged world of alpha and ten more MeshClusters.
async fn two_replicas(name: &str) -> (ControlPlane, Client, World, Operator, Operator) {
    let plane = start_plane(name).await;
    let client = plane.client().await.expect("client");
    install_dualmesh_crds(&client).await;
    let mut world = World::base();
    for i in 0..LOCAL_UNDER_LOAD {
        let name = format!("mc-{i:02}");
        world
            .meshclusters
            .insert(name.clone(), local_mc(&name, "toggle", "1.28.0"));
    }
    world.create(&client).await;
    let a = replica(&plane, "a");
    wait_holder(&client, "a", Duration::from_secs(30)).await;
    let b = replica(&plane, "b");
    wait_standby(&b).await;
    time_until(Duration::from_secs(60), || world.converged(&client))
        .await
        .unwrap_or_else(|last| panic!("the starting world never converged: {last}"));
    (plane, client, world, a, b)
}

#[tokio::test]
async fn leader_killed_hands_over_within_the_lease_and_the_old_leader_writes_nothing_after() {
    let (plane, client, world, mut a, b) = two_replicas("chaos-leader-kill").await;

    // Changes in flight: A is reconciling them when it dies.
    let load = Load::start(&client, &world);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let a_busy = writes_after(&plane, "a", Timestamp::now() - Duration::from_secs(2)).len();
    let killed_at = Timestamp::now();
    let killed = Instant::now();
    a.kill();
    let takeover = wait_holder(&client, "b", LEASE + Duration::from_secs(10)).await;
    let taken_at = lease_taken(&plane, "b", killed_at).expect("B wrote the Lease");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (end, made) = load.finish().await;
    let converged = time_until(Duration::from_secs(60), || end.converged(&client)).await;

    eprintln!(
        "leader A killed -9 under load ({made} changes, one per 100 ms; A wrote {a_busy} times in the 2 s before the kill)"
    );
    eprintln!(
        "B holds the Lease {} after the kill (Lease {}, bound {}); its takeover write reached the API server {} after the kill",
        secs(takeover),
        secs(LEASE),
        secs(LEASE + TAKEOVER_SLACK),
        since(killed_at, taken_at)
    );
    match &converged {
        Ok(t) => eprintln!(
            "B converged every change {} after the load stopped ({} after the kill)",
            secs(*t),
            secs(killed.elapsed())
        ),
        Err(last) => eprintln!("not converged: {last}"),
    }
    assert!(a_busy > 0, "A was not writing when it was killed");
    assert!(
        takeover <= LEASE + TAKEOVER_SLACK,
        "takeover took {takeover:?}"
    );
    // The old leader's Lease is lost when B takes it: nothing of A's may
    // reach the API server after that (requests A had in flight when it
    // died can still arrive a few ms after the kill, on a loaded machine).
    let late = writes_after(&plane, "a", taken_at);
    assert!(
        late.is_empty(),
        "A wrote after B took the Lease over: {late:#?}"
    );
    let b_writes = replica_writes(&plane, "b");
    assert!(!b_writes.is_empty(), "B never wrote");
    let b_before: Vec<String> = b_writes
        .iter()
        .filter(|w| w.received.is_none_or(|t| t < taken_at))
        .map(describe)
        .collect();
    assert!(
        b_before.is_empty(),
        "the standby wrote before it led: {b_before:#?}"
    );
    converged.unwrap_or_else(|last| panic!("B never converged: {last}\n{}", b.log_tail(40)));
    let mut b = b;
    assert_eq!(b.try_status(), None, "{}", b.log_tail(40));
}

#[tokio::test]
async fn a_leader_frozen_under_load_starts_nothing_after_its_fence_closed_and_its_late_writes_are_refused_or_superseded()
 {
    let (plane, client, world, mut a, b) = two_replicas("chaos-leader-freeze").await;
    let pid = a.pid().expect("A runs").to_string();
    let signal = |sig: &str| send_signal(&pid, sig);

    let load = Load::start(&client, &world);
    wait_for("A busy under the load", Duration::from_secs(20), || async {
        match requests_started(&a).len() {
            0 => Err("A started no request yet".to_string()),
            _ => Ok(()),
        }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await; // load keeps A writing
    let stopped_at = Timestamp::now();
    signal("-STOP");
    let takeover = wait_holder(&client, "b", LEASE + Duration::from_secs(10)).await;
    let taken_at = lease_taken(&plane, "b", stopped_at).expect("B wrote the Lease");
    // Changes keep coming; A's watches queue them while it sleeps. It wakes
    // with work in its queues, some of which B has not finished yet.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let woken_at = Timestamp::now();
    signal("-CONT");
    let status = exit_status(&mut a, Duration::from_secs(20)).await;
    let (end, made) = load.finish().await;
    let converged = time_until(Duration::from_secs(60), || end.converged(&client)).await;

    // Operator side: what A started, by its own log.
    let started = requests_started(&a);
    let started_late: Vec<&String> = started
        .iter()
        .filter(|(t, _)| *t >= taken_at)
        .map(|(_, l)| l)
        .collect();
    let last_start = started.iter().map(|(t, _)| *t).max();
    // Server side: what of A's reached the API server after the takeover.
    let b_writes = replica_writes(&plane, "b");
    let late: Vec<testplane::Write> = replica_writes(&plane, "a")
        .into_iter()
        .filter(|w| w.received.is_some_and(|t| t > taken_at))
        .collect();
    let refused = late.iter().filter(|w| w.code == Some(409)).count();
    let unexplained: Vec<String> = late
        .iter()
        .filter(|w| w.code != Some(409) && !superseded(&b_writes, w))
        .map(describe)
        .collect();

    eprintln!(
        "leader A frozen (SIGSTOP) under load ({made} changes, one per 100 ms); B holds the Lease {} after the freeze (bound {}), its takeover write {} after it; A woken {} after the takeover and exited with {status}",
        secs(takeover),
        secs(LEASE + TAKEOVER_SLACK),
        since(stopped_at, taken_at),
        since(taken_at, woken_at),
    );
    eprintln!(
        "A started {} requests, the last {} before the takeover; {} started after it",
        started.len(),
        last_start.map_or("-".into(), |t| since(t, taken_at)),
        started_late.len()
    );
    eprintln!(
        "A's writes received after the takeover: {} ({refused} refused with 409, {} superseded by B)",
        late.len(),
        late.len() - refused - unexplained.len()
    );
    for w in &late {
        eprintln!("  {}", describe(w));
    }
    assert!(
        takeover <= LEASE + TAKEOVER_SLACK,
        "takeover took {takeover:?}"
    );
    assert_eq!(status.code(), Some(1), "{}", a.log_tail(20));
    assert!(
        a.log().contains("lost the leader Lease"),
        "{}",
        a.log_tail(20)
    );
    assert!(
        !started.is_empty(),
        "A's log shows no request: is the fence's debug line logged?"
    );
    assert!(
        started_late.is_empty(),
        "A started requests after B took its Lease: {started_late:#?}"
    );
    assert!(
        unexplained.is_empty(),
        "A's writes after the takeover neither refused (409) nor superseded by B: {unexplained:#?}"
    );
    converged.unwrap_or_else(|last| panic!("B never converged: {last}\n{}", b.log_tail(40)));
}

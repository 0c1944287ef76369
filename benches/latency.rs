//! Latency of dualmesh's reactions, on real control planes, each printed
//! beside the latency of a single raw server-side-apply PATCH measured in
//! the same run on the same plane (the floor). Issue #8, part "Latency".
//!
//! ```text
//! cargo bench --bench latency        # or: make bench (runs scale too)
//! BENCH_EVENTS=20 BENCH_MEMBERS=2 cargo bench --bench latency   # a quick look
//! ```
//!
//! Scenarios, each on planes of its own with its own `dualmesh run` process
//! (the real binary, as in the integration tests):
//!
//! - **(a)** a MeshCluster is created -> its IstioOperator ConfigMap
//!   (`<name>-istiooperator` in `istio-system`) holds the expected render
//!   AND the MeshCluster reports `Ready=True`. Every event uses a new name;
//!   each MeshCluster is deleted (and its deletion awaited) before the next
//!   is created, so every event meets the same state (one MeshCluster, one
//!   gateway) instead of a growing number of them.
//! - **(b)** the gateway Pod moves to another node, as a scheduler and a
//!   kubelet would do it (the old Pod force-deleted, a new one created
//!   bound to the other node, then set Ready) -> the gateway Service's
//!   `spec.externalIPs` equals the new node's IPv6 address. The clock starts
//!   when the new Pod is set Ready: until then dualmesh must keep the old
//!   address (a rollout gap does not blank a working gateway), so that is
//!   the earliest moment it can act. The whole move, from the delete, is
//!   printed too.
//! - **(c)** the relay token Secret is rotated in the management plane ->
//!   the copy in EVERY member plane holds the new value, with
//!   `BENCH_MEMBERS` member planes (each a MeshCluster with a
//!   kubeconfigSecretRef). Judged on the last member of each rotation; the
//!   per-member latencies are printed too. The floor is measured on the
//!   management plane and on member 0.
//!
//! Method: every outcome is observed by a WATCH (kube's `watcher`) opened
//! before the first event, in a task that stamps each event with the instant
//! it arrived; nothing is polled, so nothing is quantised. A latency is
//! (arrival of the first watch event showing the outcome) - (the instant
//! the change request was SENT), so it includes the change's own write, as
//! a user would see it. The floor is one server-side apply of a ConfigMap
//! data value (field manager `bench-floor`, not dualmesh's, on an object
//! dualmesh does not watch), timed the same way: sent -> response (the
//! "raw SSA PATCH") and sent -> seen by a watch. One floor sample is taken
//! right before every event, so floor and events share the machine's
//! conditions (other builds on a shared machine move both).
//!
//! Every scenario starts with `BENCH_WARMUP` (default 5) events that are not
//! counted, and waits `BENCH_SETTLE_MS` (default 100) before each event so
//! the operator's trailing work of the previous one (its status write, its
//! Events, the reconciles its own writes trigger) is over.
//!
//! Targets (issue #8): (a) and (b) p50 within 3x the raw PATCH p50 and p99
//! under 250 ms; (c) under 1 s (judged on p99 to the last member). Verdicts
//! are printed, never asserted: figures depend on the machine. The run
//! panics only on a functional failure: an outcome not seen within 30 s.
//!
//! Settings (environment): `BENCH_EVENTS` (200), `BENCH_MEMBERS` (10),
//! `BENCH_WARMUP` (5), `BENCH_SETTLE_MS` (100), `BENCH_LOG` (the operator's
//! log filter, `info`), `BENCH_SCENARIOS` (`a,b,c`), `BENCH_PLANE_STARTS`
//! (planes started at once for (c), all by default), `BENCH_KEEP` (a folder
//! to keep the planes' files in: logs, audit logs). The figures are also
//! written to `target/bench/latency.json`.

#[path = "../tests/common/mod.rs"]
mod common;
// Its unit test's `use super::*` is unused in a harness-less bench (the
// #[test] fns are compiled out), which `clippy -D warnings` would refuse.
#[path = "support/mod.rs"]
#[allow(unused_imports)]
mod support;

use std::fmt::Debug;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::*;
use dualmesh::api::{DualStackPolicy, DualStackPolicySpec, MeshCluster};
use dualmesh::desired::istio_operator;
use dualmesh::desired::validate::{validate_mesh_cluster, validate_policy};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::json;
use support::Summary;
use testplane::operator::Operator;
use testplane::{ControlPlane, PlaneOptions};
use tokio::sync::{mpsc, oneshot};

/// How long one outcome may take before the run counts as broken.
const WAIT: Duration = Duration::from_secs(30);
/// The object the floor writes (in namespace `default`).
const FLOOR_CM: &str = "bench-floor";
/// The relay token Secret (c) rotates, in namespace `gloo-mesh` on both sides.
const TOKEN_SECRET: &str = "relay-identity-token-secret";
const GLOO_NS: &str = "gloo-mesh";

/// The knobs, from the environment.
#[derive(Clone, Debug)]
struct Settings {
    events: usize,
    warmup: usize,
    members: usize,
    settle: Duration,
    log: String,
    scenarios: String,
    plane_starts: usize,
}

impl Settings {
    fn from_env() -> Self {
        let members = support::env_or("BENCH_MEMBERS", 10usize).max(1);
        Settings {
            events: support::env_or("BENCH_EVENTS", 200usize).max(1),
            warmup: support::env_or("BENCH_WARMUP", 5usize),
            members,
            settle: Duration::from_millis(support::env_or("BENCH_SETTLE_MS", 100u64)),
            log: std::env::var("BENCH_LOG").unwrap_or_else(|_| "info".into()),
            scenarios: std::env::var("BENCH_SCENARIOS").unwrap_or_else(|_| "a,b,c".into()),
            plane_starts: support::env_or("BENCH_PLANE_STARTS", members + 1).max(1),
        }
    }

    fn wants(&self, id: &str) -> bool {
        self.scenarios.split(',').any(|s| s.trim() == id)
    }

    fn total(&self) -> usize {
        self.warmup + self.events
    }
}

// ---------------------------------------------------------------------------
// Watches that stamp arrival times
// ---------------------------------------------------------------------------

/// What a watch saw happen to one object.
enum Seen<K> {
    Applied(K),
    Deleted(K),
}

impl<K: ResourceExt> Seen<K> {
    fn applied(&self, name: &str) -> Option<&K> {
        match self {
            Seen::Applied(k) if k.name_any() == name => Some(k),
            _ => None,
        }
    }

    fn deleted(&self, name: &str) -> bool {
        matches!(self, Seen::Deleted(k) if k.name_any() == name)
    }
}

/// A watch running in a task of its own. The task stamps every event the
/// moment it arrives, so how late the benchmark reads the channel does not
/// move the measurement, and two watches can be read one after the other.
struct Watch<K> {
    what: String,
    rx: mpsc::UnboundedReceiver<(Instant, Seen<K>)>,
    task: tokio::task::JoinHandle<()>,
}

impl<K> Drop for Watch<K> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl<K> Watch<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default,
{
    /// Starts the watch and returns once its initial list is in (so no
    /// event of the measurement can precede it).
    async fn start(api: Api<K>, config: watcher::Config, what: &str) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let (listed_tx, listed_rx) = oneshot::channel();
        let label = what.to_string();
        let task = tokio::spawn(async move {
            let mut listed = Some(listed_tx);
            let stream = watcher(api, config).default_backoff();
            let mut stream = std::pin::pin!(stream);
            while let Some(event) = stream.next().await {
                let at = Instant::now();
                let seen = match event {
                    Ok(Event::Apply(k) | Event::InitApply(k)) => Seen::Applied(k),
                    Ok(Event::Delete(k)) => Seen::Deleted(k),
                    Ok(Event::InitDone) => {
                        if let Some(l) = listed.take() {
                            let _ = l.send(());
                        }
                        continue;
                    }
                    Ok(Event::Init) => continue,
                    // The backoff retries; a lasting failure shows as a
                    // timeout. (The first start of a watch on a fresh plane
                    // is often reset once; that is before any measurement,
                    // which waits for the initial list.)
                    Err(e) => {
                        eprintln!("watch {label}: start failed, retrying: {e}");
                        continue;
                    }
                };
                if tx.send((at, seen)).is_err() {
                    return;
                }
            }
        });
        tokio::time::timeout(WAIT, listed_rx)
            .await
            .unwrap_or_else(|_| panic!("watch {what}: no initial list within {WAIT:?}"))
            .unwrap_or_else(|_| panic!("watch {what} ended before its initial list"));
        Watch {
            what: what.to_string(),
            rx,
            task,
        }
    }

    /// Reads events until `done` holds for one that arrived at or after
    /// `since` (events before it cannot show the outcome of a change made
    /// at `since`); returns that event's arrival. Errs after [`WAIT`].
    async fn until(
        &mut self,
        since: Instant,
        outcome: &str,
        mut done: impl FnMut(&Seen<K>) -> bool,
    ) -> Result<Instant, String> {
        let deadline = tokio::time::Instant::from_std(since + WAIT);
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some((at, seen))) => {
                    if at >= since && done(&seen) {
                        return Ok(at);
                    }
                }
                Ok(None) => return Err(format!("watch {} ended", self.what)),
                Err(_) => {
                    return Err(format!(
                        "{outcome} not seen by watch {} within {WAIT:?}",
                        self.what
                    ));
                }
            }
        }
    }
}

/// A functional failure: say what, show the operator's log tail, stop.
fn fail(operator: &Operator, error: String) -> ! {
    panic!(
        "{error}\n--- operator log, last 40 lines ---\n{}",
        operator.log_tail(40)
    )
}

// ---------------------------------------------------------------------------
// The floor
// ---------------------------------------------------------------------------

/// One raw server-side apply at a time on one plane: sent -> response, and
/// sent -> seen by a watch.
struct Floor {
    api: Api<ConfigMap>,
    watch: Watch<ConfigMap>,
    writes: u64,
    patch: Vec<Duration>,
    seen: Vec<Duration>,
}

impl Floor {
    async fn new(client: &Client, plane: &str) -> Self {
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
        let mut floor = Floor {
            watch: Watch::start(
                api.clone(),
                watcher::Config::default().fields(&format!("metadata.name={FLOOR_CM}")),
                &format!("{plane} default/{FLOOR_CM}"),
            )
            .await,
            api,
            writes: 0,
            patch: Vec::new(),
            seen: Vec::new(),
        };
        // The first apply creates the object; what is measured are updates.
        floor.sample(false).await;
        floor
    }

    async fn sample(&mut self, record: bool) {
        self.writes += 1;
        let value = self.writes.to_string();
        let body = json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": FLOOR_CM, "namespace": "default"},
            "data": {"value": value},
        });
        let params = PatchParams::apply("bench-floor").force();
        let sent = Instant::now();
        self.api
            .patch(FLOOR_CM, &params, &Patch::Apply(&body))
            .await
            .expect("floor: apply the ConfigMap");
        let returned = Instant::now();
        let seen = self
            .watch
            .until(sent, "the floor's write", |s| {
                s.applied(FLOOR_CM)
                    .and_then(|cm| cm.data.as_ref()?.get("value"))
                    .is_some_and(|v| *v == value)
            })
            .await
            .unwrap_or_else(|e| panic!("floor: {e}"));
        if record {
            self.patch.push(returned - sent);
            self.seen.push(seen - sent);
        }
    }
}

// ---------------------------------------------------------------------------
// Results
// ---------------------------------------------------------------------------

/// One measured series.
struct Series {
    name: String,
    samples: Vec<Duration>,
}

/// One target check.
struct Verdict {
    check: String,
    measured: Duration,
    limit: Duration,
}

impl Verdict {
    fn pass(&self) -> bool {
        self.measured <= self.limit
    }

    fn line(&self) -> String {
        let word = support::verdict(self.pass());
        let how = if self.pass() {
            format!("{} ms to spare", support::ms(self.limit - self.measured))
        } else {
            format!(
                "over by {} ms ({:.1}x the limit)",
                support::ms(self.measured - self.limit),
                ratio(self.measured, self.limit)
            )
        };
        format!("  {word}  {}: {how}", self.check)
    }
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(1e-9)
}

/// What one scenario measured.
struct Report {
    id: &'static str,
    title: String,
    series: Vec<Series>,
    verdicts: Vec<Verdict>,
    notes: Vec<String>,
}

impl Report {
    fn print(&self) {
        println!("\n({}) {}", self.id, self.title);
        println!("{}", support::header());
        for s in &self.series {
            println!("{}", support::row(&s.name, &Summary::of(&s.samples)));
        }
        for v in &self.verdicts {
            println!("{}", v.line());
        }
        for n in &self.notes {
            println!("  note: {n}");
        }
    }

    fn json(&self) -> serde_json::Value {
        let msf = |d: Duration| (d.as_secs_f64() * 1e5).round() / 100.0;
        json!({
            "id": self.id,
            "title": self.title,
            "series": self.series.iter().map(|s| {
                let sum = Summary::of(&s.samples);
                json!({
                    "name": s.name,
                    "n": sum.count,
                    "p50_ms": msf(sum.p50),
                    "p95_ms": msf(sum.p95),
                    "p99_ms": msf(sum.p99),
                    "max_ms": msf(sum.max),
                    "samples_ms": s.samples.iter().map(|d| msf(*d)).collect::<Vec<_>>(),
                })
            }).collect::<Vec<_>>(),
            "verdicts": self.verdicts.iter().map(|v| json!({
                "check": v.check,
                "measured_ms": msf(v.measured),
                "limit_ms": msf(v.limit),
                "pass": v.pass(),
            })).collect::<Vec<_>>(),
            "notes": self.notes,
        })
    }
}

/// The targets of (a) and (b): p50 within 3x the raw PATCH p50, p99 under
/// 250 ms.
fn reactive_verdicts(id: &str, latency: &[Duration], floor: &[Duration]) -> Vec<Verdict> {
    let l = Summary::of(latency);
    let f = Summary::of(floor);
    vec![
        Verdict {
            check: format!(
                "({id}) p50 {} ms <= 3x raw PATCH p50 (3 x {} = {} ms); it is {:.1}x",
                support::ms(l.p50),
                support::ms(f.p50),
                support::ms(f.p50 * 3),
                ratio(l.p50, f.p50)
            ),
            measured: l.p50,
            limit: f.p50 * 3,
        },
        Verdict {
            check: format!("({id}) p99 {} ms < 250 ms", support::ms(l.p99)),
            measured: l.p99,
            limit: Duration::from_millis(250),
        },
    ]
}

/// The operator's CPU time and memory over a scenario.
struct Usage {
    pid: Option<u32>,
    cpu_before: Option<Duration>,
}

impl Usage {
    fn start(operator: &Operator) -> Self {
        let pid = operator.pid();
        Usage {
            pid,
            cpu_before: pid.and_then(support::cpu_time),
        }
    }

    fn note(&self, events: usize) -> String {
        let Some(pid) = self.pid else {
            return "operator not running".into();
        };
        let cpu = support::cpu_time(pid)
            .zip(self.cpu_before)
            .map(|(after, before)| after.saturating_sub(before));
        let rss = support::rss_kib(pid);
        format!(
            "operator CPU {} over the measured events ({} per event); RSS {} MiB, peak {} MiB",
            cpu.map_or("?".into(), |c| format!("{} ms", support::ms(c))),
            cpu.map_or("?".into(), |c| format!(
                "{} ms",
                support::ms(c / events.max(1) as u32)
            )),
            rss.map_or("?".into(), |(r, _)| (r / 1024).to_string()),
            rss.map_or("?".into(), |(_, p)| (p / 1024).to_string()),
        )
    }
}

// ---------------------------------------------------------------------------
// Shared set-up
// ---------------------------------------------------------------------------

/// A free loopback port for the operator's HTTP endpoints: the benchmark
/// asks `/readyz` itself, at any log level.
fn free_port() -> u16 {
    std::net::TcpListener::bind("[::1]:0")
        .and_then(|l| l.local_addr())
        .expect("a free port on ::1")
        .port()
}

/// Starts `dualmesh run` against `plane` and waits until `/readyz` says its
/// caches are filled.
async fn operator(plane: &ControlPlane, s: &Settings) -> Operator {
    let listen = format!("[::1]:{}", free_port());
    let op = start_operator(plane, "operator.log", &s.log, &["--listen", &listen]);
    let addr: std::net::SocketAddr = listen.parse().expect("a socket address");
    let deadline = Instant::now() + WAIT;
    loop {
        let ready = tokio::time::timeout(Duration::from_secs(2), async {
            let stream = tokio::net::TcpStream::connect(addr).await.ok()?;
            drop(stream);
            Some(http_get(addr, "/readyz").await.0)
        })
        .await;
        if let Ok(Some(200)) = ready {
            return op;
        }
        if Instant::now() > deadline {
            fail(&op, format!("the operator was not ready within {WAIT:?}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Options for plane `name`: with `BENCH_KEEP=<dir>`, its folder (logs,
/// the audit log of every write with microsecond stamps, the operator's
/// log) is `<dir>/<name>` and stays after the run, for reading where the
/// time went.
fn plane_options(name: &str) -> PlaneOptions {
    let mut opts = PlaneOptions::named(name);
    if let Some(dir) = std::env::var_os("BENCH_KEEP") {
        opts.dir = Some(PathBuf::from(dir).join(name));
    }
    opts
}

fn render(mc: &MeshCluster, policy: &DualStackPolicySpec) -> String {
    let mc = validate_mesh_cluster(&mc.spec).expect("a valid MeshCluster");
    let policy = validate_policy(policy).expect("a valid policy");
    istio_operator::build(&mc, &policy).yaml
}

fn is_ready(mc: &MeshCluster) -> bool {
    condition(mc, "Ready").is_some_and(|(status, _, _)| status == "True")
}

async fn settle(s: &Settings) {
    tokio::time::sleep(s.settle).await;
}

// ---------------------------------------------------------------------------
// (a) MeshCluster created -> ConfigMap applied and Ready=True
// ---------------------------------------------------------------------------

async fn scenario_create(s: &Settings) -> Report {
    let plane = ControlPlane::start(plane_options("lat-create"))
        .await
        .expect("plane lat-create");
    let client = plane.client().await.expect("client");
    install_dualmesh_crds(&client).await;
    // A gateway to publish, so Ready=True means every job ran, as in a
    // cluster with Istio installed.
    create_gateway(&client, "node-a", &["2001:db8::a"]).await;
    create_namespace(&client, NS).await;
    let policy: DualStackPolicy = example("policy-ipv6-only.yaml");
    create_policy(&client, &policy).await;
    let operator = operator(&plane, s).await;

    let mut floor = Floor::new(&client, "lat-create").await;
    let mut config_maps = Watch::<ConfigMap>::start(
        Api::namespaced(client.clone(), GW_NS),
        watcher::Config::default().labels(&format!(
            "{}={}",
            istio_operator::MANAGED_BY.0,
            istio_operator::MANAGED_BY.1
        )),
        "lat-create istio-system ConfigMaps",
    )
    .await;
    let mut meshclusters = Watch::<MeshCluster>::start(
        Api::namespaced(client.clone(), NS),
        watcher::Config::default(),
        "lat-create MeshClusters",
    )
    .await;
    let api: Api<MeshCluster> = Api::namespaced(client.clone(), NS);
    let template: MeshCluster = example("meshcluster-alpha.yaml");

    let (mut total, mut to_cm, mut to_ready, mut delete) = (vec![], vec![], vec![], vec![]);
    let mut usage = None;
    for i in 0..s.total() {
        let record = i >= s.warmup;
        if i == s.warmup {
            usage = Some(Usage::start(&operator));
        }
        floor.sample(record).await;
        settle(s).await;

        let name = format!("lat-{i}");
        let mut mc = template.clone();
        mc.metadata.name = Some(name.clone());
        mc.spec.cluster_name = format!("cluster-lat-{i}");
        let want = render(&mc, &policy.spec);
        let cm_name = format!("{name}-istiooperator");

        let sent = Instant::now();
        api.create(&PostParams::default(), &mc)
            .await
            .expect("create MeshCluster");
        let cm_at = config_maps
            .until(sent, &format!("ConfigMap {cm_name} with the render"), |e| {
                e.applied(&cm_name)
                    .and_then(|cm| cm.data.as_ref()?.get("istiooperator.yaml"))
                    .is_some_and(|y| *y == want)
            })
            .await
            .unwrap_or_else(|e| fail(&operator, e));
        let ready_at = meshclusters
            .until(sent, &format!("MeshCluster {name} Ready=True"), |e| {
                e.applied(&name).is_some_and(is_ready)
            })
            .await
            .unwrap_or_else(|e| fail(&operator, e));

        // Back to one MeshCluster: the deletion (cleanup included: the
        // finalizer goes last) finishes before the next event.
        let deleting = Instant::now();
        api.delete(&name, &DeleteParams::default())
            .await
            .expect("delete MeshCluster");
        let gone = meshclusters
            .until(deleting, &format!("MeshCluster {name} deleted"), |e| {
                e.deleted(&name)
            })
            .await
            .unwrap_or_else(|e| fail(&operator, e));
        config_maps
            .until(deleting, &format!("ConfigMap {cm_name} deleted"), |e| {
                e.deleted(&cm_name)
            })
            .await
            .unwrap_or_else(|e| fail(&operator, e));
        if record {
            total.push(cm_at.max(ready_at) - sent);
            to_cm.push(cm_at - sent);
            to_ready.push(ready_at - sent);
            delete.push(gone - deleting);
        }
    }
    let usage = usage.expect("at least one measured event");
    let verdicts = reactive_verdicts("a", &total, &floor.patch);
    let report = Report {
        id: "a",
        title: "MeshCluster created -> IstioOperator ConfigMap applied and Ready=True".into(),
        series: vec![
            Series {
                name: "(a) created -> ConfigMap + Ready=True".into(),
                samples: total,
            },
            Series {
                name: "    created -> ConfigMap with the render".into(),
                samples: to_cm,
            },
            Series {
                name: "    created -> Ready=True".into(),
                samples: to_ready,
            },
            Series {
                name: "    (delete -> gone, finalizer cleanup)".into(),
                samples: delete,
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
        notes: vec![usage.note(s.events)],
    };
    drop(operator);
    drop(plane);
    report
}

// ---------------------------------------------------------------------------
// (b) gateway Pod moved to another node -> Service externalIPs updated
// ---------------------------------------------------------------------------

/// The nodes the gateway Pod moves between: name and IPv6 address (inside
/// the policy's allowedCIDRs, so eligible).
const NODES: [(&str, &str); 2] = [("node-a", "2001:db8::a"), ("node-b", "2001:db8::b")];
/// The Pod IP the kubelet stand-in reports (any; dualmesh reads node addresses).
const POD_IP: &str = "fd00:10:244::5";

/// Creates gateway Pod `name` bound to `node`, as the scheduler would (not
/// Ready yet: that is the kubelet's status write, done separately).
async fn create_bound_pod(client: &Client, name: &str, node: &str) {
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

fn external_ips_of(svc: &Service) -> Vec<String> {
    svc.spec
        .as_ref()
        .and_then(|s| s.external_ips.clone())
        .unwrap_or_default()
}

async fn scenario_gateway(s: &Settings) -> Report {
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

// ---------------------------------------------------------------------------
// (c) source Secret rotated -> every member updated
// ---------------------------------------------------------------------------

fn token_of(secret: &Secret) -> Option<String> {
    let v = secret.data.as_ref()?.get("token")?;
    Some(String::from_utf8_lossy(&v.0).into_owned())
}

/// Resident memory of a plane's etcd and kube-apiserver, in MiB.
fn plane_rss_mib(plane: &ControlPlane) -> u64 {
    let (etcd, apiserver) = plane.pids();
    [etcd, apiserver]
        .into_iter()
        .flatten()
        .filter_map(support::rss_kib)
        .map(|(rss, _)| rss / 1024)
        .sum()
}

async fn scenario_federation(s: &Settings) -> Report {
    let n = s.members;
    // Every plane at once (or BENCH_PLANE_STARTS at a time): each start is
    // mostly waiting for kube-apiserver's post-start hooks.
    let starting = Instant::now();
    let names: Vec<String> = std::iter::once("lat-alpha".to_string())
        .chain((0..n).map(|m| format!("lat-member-{m}")))
        .collect();
    let mut planes: Vec<ControlPlane> = futures::stream::iter(names.clone())
        .map(|name| async move {
            ControlPlane::start(plane_options(&name))
                .await
                .unwrap_or_else(|e| panic!("plane {name}: {e}"))
        })
        .buffered(s.plane_starts)
        .collect()
        .await;
    let start_time = starting.elapsed();
    let members: Vec<ControlPlane> = planes.split_off(1);
    let alpha = planes.pop().expect("the management plane");

    let a = alpha.client().await.expect("client");
    install_dualmesh_crds(&a).await;
    create_namespace(&a, NS).await;
    create_namespace(&a, GLOO_NS).await;
    put_secret(
        &a,
        GLOO_NS,
        "relay-root-tls-secret",
        &[
            (
                "ca.crt",
                "-----BEGIN CERTIFICATE-----\nbenchROOTca\n-----END CERTIFICATE-----\n",
            ),
            (
                "tls.key",
                "-----BEGIN PRIVATE KEY-----\nbenchKEY\n-----END PRIVATE KEY-----\n",
            ),
        ],
    )
    .await;
    put_secret(&a, GLOO_NS, TOKEN_SECRET, &[("token", "token-initial")]).await;
    let mut member_clients = Vec::new();
    for (m, plane) in members.iter().enumerate() {
        let kubeconfig = std::fs::read_to_string(plane.kubeconfig_path()).expect("kubeconfig");
        put_secret(
            &a,
            NS,
            &format!("member-{m}-kubeconfig"),
            &[("kubeconfig", &kubeconfig)],
        )
        .await;
        let client = plane.client().await.expect("member client");
        // A gateway in each member, so its MeshCluster can be Ready.
        create_gateway(&client, "node-1", &[&format!("2001:db8:{:x}::1", m + 1)]).await;
        member_clients.push(client);
    }
    let policy: DualStackPolicy = example("policy-ipv6-only.yaml");
    create_policy(&a, &policy).await;
    let mut meshclusters = Watch::<MeshCluster>::start(
        Api::namespaced(a.clone(), NS),
        watcher::Config::default(),
        "lat-alpha MeshClusters",
    )
    .await;
    let mut copies = Vec::new();
    for (m, client) in member_clients.iter().enumerate() {
        copies.push(
            Watch::<Secret>::start(
                Api::namespaced(client.clone(), GLOO_NS),
                watcher::Config::default().fields(&format!("metadata.name={TOKEN_SECRET}")),
                &format!("lat-member-{m} {GLOO_NS}/{TOKEN_SECRET}"),
            )
            .await,
        );
    }
    let operator = operator(&alpha, s).await;
    let template: MeshCluster = example("meshcluster-beta.yaml");
    let connecting = Instant::now();
    for m in 0..n {
        let mut mc = template.clone();
        mc.metadata.name = Some(format!("member-{m}"));
        mc.spec.cluster_name = format!("cluster-member-{m}");
        mc.spec.network = format!("cluster-member-{m}-network");
        mc.spec
            .kubeconfig_secret_ref
            .as_mut()
            .expect("the example is a member")
            .name = format!("member-{m}-kubeconfig");
        create_meshcluster(&a, &mc).await;
    }
    // One channel carries every MeshCluster's events: wait for all of
    // them at once (waiting for one after the other would drop the others'
    // events while reading).
    let mut not_ready: std::collections::BTreeSet<String> =
        (0..n).map(|m| format!("member-{m}")).collect();
    meshclusters
        .until(connecting, "every member MeshCluster Ready=True", |e| {
            if let Seen::Applied(mc) = e
                && is_ready(mc)
            {
                not_ready.remove(&mc.name_any());
            }
            not_ready.is_empty()
        })
        .await
        .unwrap_or_else(|e| fail(&operator, format!("{e}; not Ready: {not_ready:?}")));
    for (m, copy) in copies.iter_mut().enumerate() {
        copy.until(connecting, &format!("member {m}'s first copy"), |e| {
            e.applied(TOKEN_SECRET)
                .and_then(token_of)
                .is_some_and(|t| t == "token-initial")
        })
        .await
        .unwrap_or_else(|e| fail(&operator, e));
    }
    let connected = connecting.elapsed();

    let mut floor_alpha = Floor::new(&a, "lat-alpha").await;
    let mut floor_member = Floor::new(&member_clients[0], "lat-member-0").await;
    let (mut last, mut first, mut per_member) = (vec![], vec![], vec![]);
    let mut usage = None;
    for i in 0..s.total() {
        let record = i >= s.warmup;
        if i == s.warmup {
            usage = Some(Usage::start(&operator));
        }
        floor_alpha.sample(record).await;
        floor_member.sample(record).await;
        settle(s).await;

        let token = format!("token-rotated-{i}");
        let sent = Instant::now();
        put_secret(&a, GLOO_NS, TOKEN_SECRET, &[("token", &token)]).await;
        let mut arrivals = Vec::with_capacity(n);
        for (m, copy) in copies.iter_mut().enumerate() {
            let at = copy
                .until(sent, &format!("member {m}'s copy = rotation {i}"), |e| {
                    e.applied(TOKEN_SECRET)
                        .and_then(token_of)
                        .is_some_and(|t| t == token)
                })
                .await
                .unwrap_or_else(|e| fail(&operator, e));
            arrivals.push(at - sent);
        }
        if record {
            last.push(*arrivals.iter().max().expect("at least one member"));
            first.push(*arrivals.iter().min().expect("at least one member"));
            per_member.extend(arrivals);
        }
    }
    let usage = usage.expect("at least one measured event");
    let l = Summary::of(&last);
    let fa = Summary::of(&floor_alpha.patch);
    let fm = Summary::of(&floor_member.patch);
    let rss: u64 = std::iter::once(&alpha)
        .chain(members.iter())
        .map(plane_rss_mib)
        .sum();
    let report = Report {
        id: "c",
        title: format!("source Secret rotated -> every member updated ({n} member planes)"),
        series: vec![
            Series {
                name: format!("(c) rotated -> last of {n} members updated"),
                samples: last,
            },
            Series {
                name: "    rotated -> first member updated".into(),
                samples: first,
            },
            Series {
                name: format!("    rotated -> a member updated (x{n})"),
                samples: per_member,
            },
            Series {
                name: "floor: raw SSA PATCH (management plane)".into(),
                samples: floor_alpha.patch,
            },
            Series {
                name: "floor: raw SSA PATCH -> seen (management)".into(),
                samples: floor_alpha.seen,
            },
            Series {
                name: "floor: raw SSA PATCH (member plane 0)".into(),
                samples: floor_member.patch,
            },
            Series {
                name: "floor: raw SSA PATCH -> seen (member 0)".into(),
                samples: floor_member.seen,
            },
        ],
        verdicts: vec![Verdict {
            check: format!(
                "(c) p99 to the last member {} ms < 1000 ms (p50 {} ms = {:.1}x the raw PATCH)",
                support::ms(l.p99),
                support::ms(l.p50),
                ratio(l.p50, fa.p50)
            ),
            measured: l.p99,
            limit: Duration::from_secs(1),
        }],
        notes: vec![
            format!(
                "{} planes (1 management + {n} members) started in {:.1} s, {} at a time; all {n} MeshClusters Ready and synced {:.1} s after creation",
                n + 1,
                start_time.as_secs_f64(),
                s.plane_starts.min(n + 1),
                connected.as_secs_f64()
            ),
            format!(
                "etcd + kube-apiserver resident memory, all {} planes: {rss} MiB",
                n + 1
            ),
            // Every plane's apiserver shares the machine's cores: a
            // management floor far above the member floor means the run was
            // CPU-bound, and (c) is then a figure for this machine only.
            format!(
                "raw PATCH p50: management plane {} ms, member plane {} ms; load average now {}",
                support::ms(fa.p50),
                support::ms(fm.p50),
                support::loadavg()
            ),
            usage.note(s.events),
        ],
    };
    drop(copies);
    drop(operator);
    drop(members);
    drop(alpha);
    report
}

// ---------------------------------------------------------------------------
// main
// ---------------------------------------------------------------------------

fn main() {
    let s = Settings::from_env();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let file = support::ReportFile::start("latency");
    let load_start = file.load_start().to_string();
    println!(
        "dualmesh latency: {} events (+{} warm-up) per scenario, {} member planes for (c), settle {} ms, operator log {:?}; {cores} cores, load {load_start}",
        s.events,
        s.warmup,
        s.members,
        s.settle.as_millis(),
        s.log
    );
    println!(
        "clock: from the change request SENT to the first event of our own watch showing the outcome; floor = one raw server-side apply (sent -> response; and -> seen by a watch) right before each event, same plane"
    );
    // Our watches, requests and timers; the planes and the operator are
    // processes of their own.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let reports = runtime.block_on(async {
        let mut reports = Vec::new();
        if s.wants("a") {
            let r = scenario_create(&s).await;
            r.print();
            reports.push(r);
        }
        if s.wants("b") {
            let r = scenario_gateway(&s).await;
            r.print();
            reports.push(r);
        }
        if s.wants("c") {
            let r = scenario_federation(&s).await;
            r.print();
            reports.push(r);
        }
        reports
    });
    let load_end = support::loadavg();

    println!("\n=== summary ===");
    println!("{}", support::header());
    for r in &reports {
        for series in &r.series {
            println!(
                "{}",
                support::row(&series.name, &Summary::of(&series.samples))
            );
        }
    }
    for r in &reports {
        for v in &r.verdicts {
            println!("{}", v.line());
        }
    }
    println!(
        "took {:.0} s; load average at start {load_start}, at end {load_end}",
        file.elapsed().as_secs_f64()
    );

    let path = file.write(json!({
        "events": s.events,
        "warmup": s.warmup,
        "members": s.members,
        "settle_ms": s.settle.as_millis() as u64,
        "operator_log": s.log,
        "clock": "from the change request sent to the first watch event showing the outcome",
        "scenarios": reports.iter().map(Report::json).collect::<Vec<_>>(),
    }));
    println!("figures written to {}", path.display());
}

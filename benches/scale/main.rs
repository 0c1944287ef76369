//! Scale and quiet benchmark (issue #8, parts "Scale" and "Quiet"): dualmesh
//! on one big cluster, measured from outside the process.
//!
//! Method, in the order it runs:
//!
//! 1. **Populate** one real control plane (etcd + kube-apiserver from
//!    `testplane`) *before* the operator starts: `BENCH_NODES` Nodes (default
//!    5,000) with an IPv4 and an IPv6 `InternalIP` plus a `Hostname`, written
//!    as a kubelet would (create, then the status subresource), including
//!    capacity, node info and `BENCH_NODE_IMAGES` (20) cached images, so a
//!    Node weighs what a real one does (about 5 KB of JSON);
//!    `BENCH_PODS` non-gateway Pods (20,000) bound to those nodes and Running,
//!    over 20 application namespaces plus the mesh namespaces (10% of them sit
//!    next to a gateway, with other labels, so the label selector has to do
//!    its work); `BENCH_MESHCLUSTERS` local MeshClusters (100), each with its
//!    own Istio and gateway namespace `mesh-NNN` (so no two share a Service
//!    or a published ConfigMap), a dual-stack NodePort gateway Service there
//!    and one or two ready gateway Pods on random nodes; and the IPv6-primary
//!    dual-stack policy from `examples/`. Node addresses come from
//!    2001:db8::/32 and 198.18.0.0/15 (RFC 2544's benchmarking range), both
//!    publishable under that policy. Creation runs `BENCH_CONCURRENCY` (48)
//!    requests at a time; the CPU seconds kube-apiserver, etcd and this
//!    program spent are printed beside the wall time, which shows who the
//!    bottleneck was.
//! 2. **Sync**: `dualmesh run` starts as a real process (release build, its
//!    own client certificate, log filter `BENCH_LOG`, default `info`). A watch
//!    on the MeshClusters, opened before the process starts, notes the
//!    instant the last one turns Ready=True: the resolution is the watch
//!    event's delivery (well under a millisecond on loopback), not a polling
//!    period. Then every gateway Service's `spec.externalIPs` and every
//!    `status.gatewayAddresses.all` are compared with what this program
//!    computes on its own from the Nodes and Pods it wrote (IPv6 first,
//!    ascending, then IPv4), and the operator's VmRSS, VmHWM and CPU seconds
//!    are read from /proc.
//! 3. **Quiet**: once the operator made no write for `BENCH_SETTLE_SECS`
//!    (5; it may still be sending the sync's Events), nothing changes for
//!    `BENCH_QUIET_SECS` (300); the operator's write requests in that window
//!    are counted in the API server's audit log (every write, by user), not
//!    by the operator's own code. The target is 0; any write is listed. The
//!    window includes the operator's 5-minute resync with the defaults.
//! 4. **Churn**: for `BENCH_CHURN_SECS` (600), `BENCH_CHURN_RATE` (20)
//!    changes a second, one after the other: gateway Pods rescheduled to
//!    another node (new Pod created Running and Ready, then the old one
//!    deleted gracefully and then for good, as a rolling update and a
//!    kubelet would), new addresses on gateway nodes and on other nodes,
//!    Node status heartbeats that change nothing the operator uses,
//!    non-gateway Pods created and deleted, Nodes created and deleted (only
//!    nodes without a gateway Pod; their Pods are deleted with them, as the
//!    Pod garbage collector would). RSS is sampled every 10 s. At the end
//!    everything must converge (all Ready, externalIPs and status equal to
//!    the computed ones) within 180 s, otherwise the benchmark fails. The
//!    operator's writes in the window are listed by kind; its MeshCluster
//!    status writes are set against the modifications the watch saw (an
//!    apply that changes nothing makes no watch event), which counts the
//!    writes that only repeated what was already there.
//!
//! Performance targets (RSS under 40 MiB, all Ready under 5 s, 0 writes when
//! quiet) are reported as PASS or MISS with the margin; only functional
//! failures (no convergence, the operator exiting, API errors) panic. The
//! figures also go to `target/bench/scale.json`.
//!
//! Small run while developing: `BENCH_NODES=200 BENCH_PODS=500
//! BENCH_MESHCLUSTERS=10 BENCH_CHURN_SECS=20 BENCH_QUIET_SECS=10 cargo bench
//! --bench scale`.

#[path = "../../tests/common/mod.rs"]
mod common;
// Cargo builds a harness-less bench with `--cfg test` but without `--test`:
// the module's unit test is dropped and its `use super::*` is left unused
// (a warning in the shared file, not this one's to change).
#[path = "../support/mod.rs"]
#[allow(unused_imports)]
mod support;

mod churn;
mod kubelet;
mod measure;
mod observe;
mod populate;
mod world;

use churn::*;
use kubelet::*;
use measure::*;
use observe::*;
use populate::*;
use world::*;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{NS, OPERATOR_USER};
use dualmesh::api::{DualStackPolicy, MeshCluster};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use support::{cpu_time, env_or, rss_kib, verdict};
use testplane::kubelet::{create_node, create_running_pod, set_node_addresses, set_pod_ready};
use testplane::retry::{Patience, conflict, not_found, retry};
use testplane::{ControlPlane, PlaneOptions};

/// The policy every MeshCluster follows (examples/, unchanged).
const POLICY_FILE: &str = "policy-dual-stack-ipv6-primary.yaml";
const POLICY: &str = "dual-stack-ipv6-primary";
/// The gateway name, Service name and `app` label (the spec's default).
const GATEWAY: &str = "istio-ingressgateway";
/// Application namespaces the non-gateway Pods are spread over.
const APP_NAMESPACES: usize = 20;
/// Issue #8's targets.
const TARGET_RSS_MIB: f64 = 40.0;
const TARGET_SYNC_SECS: f64 = 5.0;
/// Functional limits: past these the operator is broken, not slow.
const SYNC_TIMEOUT: Duration = Duration::from_secs(300);
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(180);
/// The longest wait for the operator's writes to stop before the quiet window.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(120);
/// How often RSS is sampled while quiet and during churn.
const SAMPLE_EVERY: Duration = Duration::from_secs(10);

/// The sizes and durations, from the environment.
#[derive(Clone, Debug)]
struct Config {
    nodes: usize,
    pods: usize,
    meshclusters: usize,
    churn_secs: u64,
    churn_rate: f64,
    quiet_secs: u64,
    settle_secs: u64,
    concurrency: usize,
    node_images: usize,
    seed: u64,
    log: String,
    /// Extra environment for the operator, `K=V` separated by spaces, e.g.
    /// `MALLOC_ARENA_MAX=2` to see how much of its RSS is the allocator's.
    operator_env: Vec<(String, String)>,
}

impl Config {
    fn from_env() -> Self {
        Config {
            nodes: env_or("BENCH_NODES", 5000),
            pods: env_or("BENCH_PODS", 20000),
            meshclusters: env_or("BENCH_MESHCLUSTERS", 100),
            churn_secs: env_or("BENCH_CHURN_SECS", 600),
            churn_rate: env_or("BENCH_CHURN_RATE", 20.0),
            quiet_secs: env_or("BENCH_QUIET_SECS", 300),
            settle_secs: env_or("BENCH_SETTLE_SECS", 5),
            concurrency: env_or("BENCH_CONCURRENCY", 48),
            node_images: env_or("BENCH_NODE_IMAGES", 20),
            seed: env_or("BENCH_SEED", 8),
            log: std::env::var("BENCH_LOG").unwrap_or_else(|_| "info".to_string()),
            operator_env: std::env::var("BENCH_OPERATOR_ENV")
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(bench(Config::from_env()));
}

async fn bench(cfg: Config) {
    assert!(
        cfg.meshclusters > 0 && cfg.nodes >= 4 && cfg.churn_rate > 0.0,
        "BENCH_MESHCLUSTERS must be > 0, BENCH_NODES >= 4, BENCH_CHURN_RATE > 0"
    );
    let file = support::ReportFile::start("scale");
    println!("dualmesh scale benchmark (issue #8: Scale, Quiet)");
    println!(
        "  {} Nodes (IPv4 + IPv6 InternalIP, {} images each), {} non-gateway Pods, {} MeshClusters; quiet {} s, churn {} s at {}/s; concurrency {}; seed {}{}",
        cfg.nodes,
        cfg.node_images,
        cfg.pods,
        cfg.meshclusters,
        cfg.quiet_secs,
        cfg.churn_secs,
        cfg.churn_rate,
        cfg.concurrency,
        cfg.seed,
        if cfg.operator_env.is_empty() {
            String::new()
        } else {
            format!("; operator env {:?}", cfg.operator_env)
        }
    );
    // BENCH_PLANE_DIR keeps the plane's files (audit log included) to study.
    let mut options = PlaneOptions::named("scale");
    options.dir = std::env::var_os("BENCH_PLANE_DIR").map(std::path::PathBuf::from);
    let plane = ControlPlane::start(options).await.expect("control plane");
    let client = plane.client().await.expect("client");
    let mut world = World::new(cfg.seed, cfg.node_images);

    let population = populate(&plane, &client, &cfg, &mut world).await;
    let (gateway_pods, cores) = (population.gateway_pods, population.cores);

    // ---- Sync: start the operator, time until every MeshCluster is Ready. --
    let view = Arc::new(Mutex::new(View {
        want: cfg.meshclusters,
        ..View::default()
    }));
    let watch = watch_meshclusters(client.clone(), view.clone());
    // The watch must have listed (0 Ready) before the clock starts.
    common::wait_for("the MeshCluster watch", Duration::from_secs(30), || async {
        let v = view.lock().expect("view lock");
        if v.ready.len() == cfg.meshclusters {
            Ok(())
        } else {
            Err(format!("{} listed", v.ready.len()))
        }
    })
    .await;
    let (_, apiserver_pid) = plane.pids();
    let apiserver_cpu0 = cpu(apiserver_pid);
    let started = Instant::now();
    let mut operator = start_operator(&plane, &cfg);
    let pid = operator.pid().expect("operator pid");
    let all_ready_at = common::wait_for(
        &format!("all {} MeshClusters Ready", cfg.meshclusters),
        SYNC_TIMEOUT,
        || {
            let ready = view.lock().expect("view lock").all_ready_at;
            let (count, alive) = (
                view.lock().expect("view lock").ready_count(),
                operator.try_status().is_none(),
            );
            async move {
                assert!(alive, "dualmesh exited during the initial sync");
                ready.ok_or(format!("{count} Ready"))
            }
        },
    )
    .await;
    let sync_secs = all_ready_at.duration_since(started).as_secs_f64();
    let (rss_sync, hwm_sync) = rss_kib(pid).expect("operator /proc status");
    let cpu_sync = cpu(Some(pid));
    let sockets_sync = sockets(pid);
    let apiserver_cpu_sync = cpu(apiserver_pid) - apiserver_cpu0;
    common::wait_for(
        "externalIPs and status equal to the computed ones",
        Duration::from_secs(30),
        || converged(&client, &world, &view),
    )
    .await;
    let http = common::http_addr(&operator).await;
    let reconciles_sync = reconciles(http).await;
    // Every write so far is the sync's (the operator started with none).
    let sync_writes = common::operator_writes(&plane);
    let (sync_ok, sync_verdict) = against(sync_secs, TARGET_SYNC_SECS, "s");
    let (rss_sync_ok, rss_sync_verdict) = against(mib(rss_sync), TARGET_RSS_MIB, "MiB");
    let (_, hwm_sync_verdict) = against(mib(hwm_sync), TARGET_RSS_MIB, "MiB");
    println!("\nsync (dualmesh started with every object in place):");
    println!(
        "  start to all {} Ready             {sync_secs:>8.3} s    target < {TARGET_SYNC_SECS} s     {sync_verdict}   (resolution: watch event delivery)",
        cfg.meshclusters
    );
    println!(
        "  externalIPs of {} Services         verified equal to the computed addresses",
        cfg.meshclusters
    );
    println!(
        "  RSS after sync (VmRSS)            {:>8.1} MiB  target < {TARGET_RSS_MIB} MiB  {rss_sync_verdict}",
        mib(rss_sync)
    );
    println!(
        "  peak RSS so far (VmHWM)           {:>8.1} MiB  target < {TARGET_RSS_MIB} MiB  {hwm_sync_verdict}",
        mib(hwm_sync)
    );
    println!("  CPU used to sync                  {cpu_sync:>8.2} s");
    println!(
        "  open sockets after sync           {sockets_sync:>8} (HTTP/1.1: one per watch; gateway watches shared per selector and Service name)"
    );
    println!(
        "  kube-apiserver CPU meanwhile      {apiserver_cpu_sync:>8.2} s; MeshCluster reconciles so far: {reconciles_sync}"
    );
    println!(
        "  operator writes to sync           {:>8}: {:?}",
        sync_writes.len(),
        grouped(&sync_writes)
    );

    // ---- Quiet: nothing changes; count the operator's writes. -------------
    // The operator may still be finishing the sync (Events are sent from a
    // queue after the status writes): the quiet window starts once its
    // writes stopped for BENCH_SETTLE_SECS, so it measures the steady state.
    let settle_before = sync_writes.len();
    let settle_started = Instant::now();
    let mut audit = AuditTail::new(plane.audit_log());
    audit.operator_writes().expect("the audit log");
    let mut still_since = Instant::now();
    while still_since.elapsed() < Duration::from_secs(cfg.settle_secs)
        && settle_started.elapsed() < SETTLE_TIMEOUT
    {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if audit.operator_writes().expect("the audit log") > 0 {
            still_since = Instant::now();
        }
    }
    let settle_secs = settle_started.elapsed().as_secs_f64();
    let settled = still_since.elapsed() >= Duration::from_secs(cfg.settle_secs);
    let quiet_from = common::operator_writes(&plane);
    let settle_writes = quiet_from[settle_before..].to_vec();
    let cpu_quiet0 = cpu(Some(pid));
    let quiet_started = Instant::now();
    let mut quiet_rss = Vec::new();
    while quiet_started.elapsed() < Duration::from_secs(cfg.quiet_secs) {
        let left = Duration::from_secs(cfg.quiet_secs).saturating_sub(quiet_started.elapsed());
        tokio::time::sleep(left.min(SAMPLE_EVERY)).await;
        assert_alive(&mut operator);
        if let Some((rss, _)) = rss_kib(pid) {
            quiet_rss.push(rss);
        }
    }
    let quiet_to = common::operator_writes(&plane);
    let quiet_writes = quiet_to[quiet_from.len()..].to_vec();
    let cpu_quiet = cpu(Some(pid)) - cpu_quiet0;
    let (rss_quiet, hwm_quiet) = rss_kib(pid).expect("operator /proc status");
    println!(
        "\nquiet ({} s, nothing changing; counted in the API server's audit log, user {OPERATOR_USER}):",
        cfg.quiet_secs
    );
    let quiet_ok = quiet_writes.is_empty();
    println!(
        "  write requests                    {:>8}      target 0          {}",
        quiet_writes.len(),
        if quiet_ok {
            verdict(true).to_string()
        } else {
            format!("{} ({} over)", verdict(false), quiet_writes.len())
        }
    );
    for w in quiet_writes.iter().take(50) {
        println!("    {w}");
    }
    println!(
        "  (before it, {settle_secs:.1} s until {} s without a write{}: {} writes: {:?})",
        cfg.settle_secs,
        if !settled {
            ", NOT reached: gave up waiting"
        } else {
            ""
        },
        settle_writes.len(),
        grouped(&settle_writes)
    );
    println!("  CPU while quiet                   {cpu_quiet:>8.2} s");
    println!(
        "  RSS after quiet                   {:>8.1} MiB (VmHWM {:.1} MiB)",
        mib(rss_quiet),
        mib(hwm_quiet)
    );

    // ---- Churn: a steady rate of changes, then everything must converge. --
    println!("\nchurn ({} s at {}/s):", cfg.churn_secs, cfg.churn_rate);
    let writes_before_churn = quiet_to.len();
    let modified_before_churn = view.lock().expect("view lock").modified;
    let cpu_churn0 = cpu(Some(pid));
    let mut counts: BTreeMap<Change, usize> = BTreeMap::new();
    let mut churn_rss: Vec<(f64, u64)> = Vec::new();
    let churn_started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / cfg.churn_rate));
    // Behind schedule (a slow request), catch up rather than lower the rate.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut next_sample = churn_started;
    let churn_for = Duration::from_secs(cfg.churn_secs);
    while churn_started.elapsed() < churn_for {
        tick.tick().await;
        let kind = Change::pick(&mut world.rng);
        change(&client, &mut world, kind).await;
        *counts.entry(kind).or_default() += 1;
        if Instant::now() >= next_sample {
            assert_alive(&mut operator);
            if let Some((rss, _)) = rss_kib(pid) {
                churn_rss.push((churn_started.elapsed().as_secs_f64(), rss));
            }
            next_sample += SAMPLE_EVERY;
        }
    }
    let churn_wall = churn_started.elapsed().as_secs_f64();
    let changes: usize = counts.values().sum();
    let converge_started = Instant::now();
    common::wait_for(
        "convergence after churn (all Ready, externalIPs and status equal to the computed ones)",
        CONVERGE_TIMEOUT,
        || converged(&client, &world, &view),
    )
    .await;
    let converge_secs = converge_started.elapsed().as_secs_f64();
    assert_alive(&mut operator);
    let (rss_churn, hwm_churn) = rss_kib(pid).expect("operator /proc status");
    let cpu_total = cpu(Some(pid));
    let cpu_churn = cpu_total - cpu_churn0;
    let churn_writes = common::operator_writes(&plane)[writes_before_churn..].to_vec();
    let mc_modified = view.lock().expect("view lock").modified - modified_before_churn;
    let status_writes = churn_writes
        .iter()
        .filter(|w| w.starts_with("patch meshclusters/status "))
        .count();
    let reconciles_total = reconciles(http).await;
    let rss_min = churn_rss.iter().map(|(_, r)| *r).min().unwrap_or(rss_churn);
    let rss_max = churn_rss.iter().map(|(_, r)| *r).max().unwrap_or(rss_churn);
    let gateway_changes = counts.get(&Change::MoveGatewayPod).copied().unwrap_or(0)
        + counts
            .get(&Change::GatewayNodeAddresses)
            .copied()
            .unwrap_or(0);
    for (c, n) in &counts {
        println!("  {:<36} {n:>7}", c.name());
    }
    println!(
        "  changes made                      {changes:>8} in {churn_wall:.1} s ({:.1}/s; {} touched a gateway)",
        changes as f64 / churn_wall,
        gateway_changes
    );
    println!(
        "  converged after the last change   {converge_secs:>8.2} s (all Ready, externalIPs and status verified)"
    );
    let (rss_churn_ok, rss_churn_verdict) = against(mib(rss_churn), TARGET_RSS_MIB, "MiB");
    let (_, hwm_churn_verdict) = against(mib(hwm_churn), TARGET_RSS_MIB, "MiB");
    println!(
        "  RSS after churn (VmRSS)           {:>8.1} MiB  target < {TARGET_RSS_MIB} MiB  {rss_churn_verdict}",
        mib(rss_churn)
    );
    println!(
        "  peak RSS (VmHWM)                  {:>8.1} MiB  target < {TARGET_RSS_MIB} MiB  {hwm_churn_verdict}",
        mib(hwm_churn)
    );
    println!(
        "  RSS every 10 s during churn       min {:.1} MiB, max {:.1} MiB ({} samples: {})",
        mib(rss_min),
        mib(rss_max),
        churn_rss.len(),
        churn_rss
            .iter()
            .map(|(_, r)| format!("{:.1}", mib(*r)))
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!("  CPU during churn                  {cpu_churn:>8.2} s");
    println!("  CPU since start                   {cpu_total:>8.2} s");
    println!(
        "  operator writes during churn      {:>8} ({:.2} per gateway change): {:?}",
        churn_writes.len(),
        churn_writes.len() as f64 / gateway_changes.max(1) as f64,
        grouped(&churn_writes)
    );
    println!(
        "  MeshCluster status writes         {status_writes:>8}, of which changed the object {mc_modified} (a watch saw a new resourceVersion); {} wrote what was already there",
        status_writes.saturating_sub(mc_modified)
    );
    println!("  MeshCluster reconciles in all     {reconciles_total:>8}");
    let log = operator.log();
    let warnings = log.lines().filter(|l| l.contains("WARN")).count();
    let errors = log.lines().filter(|l| l.contains("ERROR")).count();
    println!(
        "  operator log: {warnings} WARN, {errors} ERROR lines{}",
        if warnings + errors > 0 {
            "; the first ones:"
        } else {
            ""
        }
    );
    for line in log
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .take(5)
    {
        println!("    {}", line.chars().take(300).collect::<String>());
    }

    println!(
        "\nsummary: sync {} | RSS after sync {} | RSS after churn {} | quiet writes {}",
        verdict(sync_ok),
        verdict(rss_sync_ok),
        verdict(rss_churn_ok),
        verdict(quiet_ok)
    );

    let report = json!({
        "config": {
            "nodes": cfg.nodes, "pods": cfg.pods, "meshclusters": cfg.meshclusters,
            "gateway_pods": gateway_pods, "quiet_s": cfg.quiet_secs,
            "churn_s": cfg.churn_secs, "churn_rate": cfg.churn_rate,
            "concurrency": cfg.concurrency, "seed": cfg.seed, "log": cfg.log,
            "node_images": cfg.node_images,
            "operator_env": cfg.operator_env.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
            "cores": cores,
        },
        "population": population.json,
        "sync": {
            "all_ready_s": sync_secs, "target_s": TARGET_SYNC_SECS, "pass": sync_ok,
            "rss_kib": rss_sync, "hwm_kib": hwm_sync, "target_rss_mib": TARGET_RSS_MIB,
            "rss_pass": rss_sync_ok, "cpu_s": cpu_sync, "sockets": sockets_sync,
            "apiserver_cpu_s": apiserver_cpu_sync, "reconciles": reconciles_sync,
            "operator_writes": sync_writes.len(), "operator_writes_by_kind": grouped(&sync_writes),
        },
        "quiet": {
            "seconds": cfg.quiet_secs, "writes": quiet_writes.len(), "pass": quiet_ok,
            "write_list": quiet_writes, "settle_s": settle_secs, "settled": settled,
            "settle_writes": settle_writes.len(),
            "settle_writes_by_kind": grouped(&settle_writes),
            "cpu_s": cpu_quiet, "rss_kib": rss_quiet, "hwm_kib": hwm_quiet,
            "rss_samples_kib": quiet_rss,
        },
        "churn": {
            "seconds": churn_wall, "changes": changes,
            "by_kind": counts.iter().map(|(c, n)| (format!("{c:?}"), *n)).collect::<BTreeMap<_, _>>(),
            "gateway_changes": gateway_changes, "converge_s": converge_secs,
            "rss_kib": rss_churn, "hwm_kib": hwm_churn, "rss_pass": rss_churn_ok,
            "rss_min_kib": rss_min, "rss_max_kib": rss_max,
            "rss_samples": churn_rss.iter().map(|(t, r)| json!({"t_s": t, "rss_kib": r})).collect::<Vec<_>>(),
            "cpu_s": cpu_churn, "operator_writes": churn_writes.len(),
            "operator_writes_by_kind": grouped(&churn_writes),
            "meshcluster_status_writes": status_writes,
            "meshcluster_modifications_seen": mc_modified,
        },
        "operator": {
            "cpu_total_s": cpu_total, "reconciles_total": reconciles_total,
            "log_warn_lines": warnings, "log_error_lines": errors,
        },
    });
    let path = file.write(report);
    // The plane's folder goes with it; keep the operator's log to read.
    let log_copy = path.with_file_name("scale-operator.log");
    std::fs::write(&log_copy, &log).expect("write the operator log copy");
    println!(
        "figures written to {}, the operator's log to {}",
        path.display(),
        log_copy.display()
    );

    watch.abort();
    operator.terminate(Duration::from_secs(10));
}

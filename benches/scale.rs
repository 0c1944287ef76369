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

#[path = "../tests/common/mod.rs"]
mod common;
// Cargo builds a harness-less bench with `--cfg test` but without `--test`:
// the module's unit test is dropped and its `use super::*` is left unused
// (a warning in the shared file, not this one's to change).
#[path = "support/mod.rs"]
#[allow(unused_imports)]
mod support;

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

/// splitmix64: a fixed seed makes two runs make the same changes, without a
/// dependency for it.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// A node's addresses, numbered: every change takes a fresh number, so an
/// address change is always a real change.
fn node_addresses(seq: u32) -> (Ipv6Addr, Ipv4Addr) {
    let v6 = Ipv6Addr::new(
        0x2001,
        0xdb8,
        0x5ca1,
        0,
        0,
        0,
        (seq >> 16) as u16,
        seq as u16,
    );
    // 198.18.0.0/15 holds 131,072 addresses; a default run uses about 12,000.
    let v4 = Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 0)) + (seq % 131_072));
    (v6, v4)
}

/// A unique pod IP (the operator does not read it; the API server wants one).
fn pod_ip(seq: u64) -> String {
    Ipv6Addr::new(
        0xfd00,
        0x10,
        0x244,
        (seq >> 32) as u16,
        0,
        0,
        (seq >> 16) as u16,
        seq as u16,
    )
    .to_string()
}

#[derive(Clone, Debug)]
struct PodRef {
    namespace: String,
    name: String,
    node: String,
}

/// One MeshCluster's gateway as this program wrote it.
#[derive(Clone, Debug)]
struct Gateway {
    meshcluster: String,
    namespace: String,
    /// (Pod name, node name); every one Running and Ready.
    pods: Vec<(String, String)>,
}

/// Everything this program wrote, to compute the expected externalIPs
/// without asking the operator's code.
struct World {
    /// Node name -> address number.
    nodes: HashMap<String, u32>,
    node_names: Vec<String>,
    gateways: Vec<Gateway>,
    other_pods: Vec<PodRef>,
    next_address: u32,
    next_pod: u64,
    next_node: u64,
    node_images: usize,
    rng: Rng,
}

impl World {
    fn new(seed: u64, node_images: usize) -> Self {
        World {
            nodes: HashMap::new(),
            node_names: Vec::new(),
            gateways: Vec::new(),
            other_pods: Vec::new(),
            next_address: 0,
            next_pod: 0,
            next_node: 0,
            node_images,
            rng: Rng(seed),
        }
    }

    fn address_number(&mut self) -> u32 {
        self.next_address += 1;
        self.next_address
    }

    fn pod_number(&mut self) -> u64 {
        self.next_pod += 1;
        self.next_pod
    }

    fn random_node(&mut self) -> String {
        let i = self.rng.below(self.node_names.len());
        self.node_names[i].clone()
    }

    fn gateway_nodes(&self) -> HashSet<String> {
        self.gateways
            .iter()
            .flat_map(|g| g.pods.iter().map(|(_, n)| n.clone()))
            .collect()
    }

    /// A node without a gateway Pod (there are thousands; a few tries do).
    fn random_plain_node(&mut self) -> String {
        let busy = self.gateway_nodes();
        loop {
            let n = self.random_node();
            if !busy.contains(&n) {
                return n;
            }
        }
    }

    /// What `spec.externalIPs` of gateway `k` must be: the IPv6 addresses of
    /// its Pods' nodes ascending, then the IPv4 ones (the policy's order).
    fn expected(&self, k: usize) -> Vec<String> {
        let mut v6 = BTreeSet::new();
        let mut v4 = BTreeSet::new();
        for (_, node) in &self.gateways[k].pods {
            if let Some(seq) = self.nodes.get(node) {
                let (a, b) = node_addresses(*seq);
                v6.insert(a);
                v4.insert(b);
            }
        }
        v6.iter()
            .map(ToString::to_string)
            .chain(v4.iter().map(ToString::to_string))
            .collect()
    }
}

/// What the MeshCluster watch saw of each MeshCluster.
#[derive(Default)]
struct View {
    ready: HashMap<String, bool>,
    addresses: HashMap<String, String>,
    /// When the count of Ready ones first reached `want`.
    all_ready_at: Option<Instant>,
    want: usize,
    /// Modifications seen (not the initial list): an apply that changes
    /// nothing makes no new resourceVersion and so no event, which tells
    /// the operator's no-op writes from real ones.
    modified: usize,
}

impl View {
    fn ready_count(&self) -> usize {
        self.ready.values().filter(|r| **r).count()
    }
}

/// Watches the MeshClusters and keeps `view` current; notes the instant all
/// of them are first Ready, inside the event handler (no polling delay).
fn watch_meshclusters(client: Client, view: Arc<Mutex<View>>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let api: Api<MeshCluster> = Api::namespaced(client, NS);
        let mut stream = std::pin::pin!(watcher(api, watcher::Config::default()).default_backoff());
        while let Some(event) = stream.next().await {
            let Ok(event) = event else { continue };
            let mut v = view.lock().expect("view lock");
            if matches!(event, watcher::Event::Apply(_)) {
                v.modified += 1;
            }
            match event {
                watcher::Event::Apply(mc) | watcher::Event::InitApply(mc) => {
                    let name = mc.name_any();
                    let ready =
                        common::condition(&mc, "Ready").is_some_and(|(s, _, _)| s == "True");
                    let all = mc
                        .status
                        .as_ref()
                        .and_then(|s| s.gateway_addresses.as_ref())
                        .map(|g| g.all.clone())
                        .unwrap_or_default();
                    v.ready.insert(name.clone(), ready);
                    v.addresses.insert(name, all);
                }
                watcher::Event::Delete(mc) => {
                    v.ready.remove(&mc.name_any());
                }
                watcher::Event::Init | watcher::Event::InitDone => {}
            }
            if v.all_ready_at.is_none() && v.want > 0 && v.ready_count() == v.want {
                v.all_ready_at = Some(Instant::now());
            }
        }
    })
}

/// Reads the audit log from where it last stopped and counts the operator's
/// completed requests: cheap enough to ask twice a second, where
/// `ControlPlane::writes_by` parses the whole (by then large) log. A log that
/// cannot be opened or read is an error, never "no writes".
struct AuditTail {
    path: std::path::PathBuf,
    offset: u64,
}

impl AuditTail {
    fn new(path: std::path::PathBuf) -> Self {
        AuditTail { path, offset: 0 }
    }

    fn operator_writes(&mut self) -> std::io::Result<usize> {
        use std::io::{Read, Seek, SeekFrom};
        let mut f = std::fs::File::open(&self.path)?;
        let mut buf = Vec::new();
        f.seek(SeekFrom::Start(self.offset))?;
        f.read_to_end(&mut buf)?;
        // Only whole lines; a line being written is read next time.
        let end = buf.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        self.offset += end as u64;
        let user = format!("\"username\":\"{OPERATOR_USER}\"");
        Ok(String::from_utf8_lossy(&buf[..end])
            .lines()
            .filter(|l| l.contains("\"stage\":\"ResponseComplete\"") && l.contains(&user))
            .count())
    }
}

/// A Node as a kubelet registers it: created, then its status (addresses,
/// Ready) through the status subresource, then what else a kubelet reports
/// (capacity, node info, `images` cached images): the operator receives and
/// decodes whole Nodes, so their size is part of what its memory is measured
/// against (a real kubelet reports up to 50 images).
async fn kubelet_node(client: &Client, name: &str, seq: u32, images: usize) {
    let (v6, v4) = node_addresses(seq);
    let (v6, v4) = (v6.to_string(), v4.to_string());
    let addrs = &[
        ("InternalIP", v4.as_str()),
        ("InternalIP", v6.as_str()),
        ("Hostname", name),
    ][..];
    // A retried create may have been carried out: then it meets 409.
    retry(
        &format!("create node {name}"),
        Patience::OVERLOAD,
        |again| async move {
            match create_node(client, name, addrs).await {
                Err(e) if again && conflict(&e) => set_node_addresses(client, name, addrs).await,
                other => other,
            }
        },
    )
    .await;
    if images == 0 {
        return;
    }
    let nodes = &Api::<Node>::all(client.clone());
    let status = &node_status_extras(name, images);
    let patch = || async move {
        nodes
            .patch_status(name, &PatchParams::default(), &Patch::Merge(status))
            .await
    };
    retry(&format!("node {name} status"), Patience::OVERLOAD, |_| {
        patch()
    })
    .await;
}

/// The rest of a kubelet's Node status: capacity, allocatable, node info and
/// the images it has cached (digest and tag names, sizes).
fn node_status_extras(name: &str, images: usize) -> serde_json::Value {
    let resources = json!({
        "cpu": "16", "memory": "65842276Ki", "pods": "110",
        "ephemeral-storage": "101430960Ki", "hugepages-2Mi": "0",
    });
    let images: Vec<_> = (0..images)
        .map(|i| {
            let digest = format!("{:016x}", Rng(i as u64).next()).repeat(4);
            json!({
                "names": [
                    format!("registry.example.com/team-{i:02}/service-{i:02}@sha256:{digest}"),
                    format!("registry.example.com/team-{i:02}/service-{i:02}:1.{i}.0"),
                ],
                "sizeBytes": 50_000_000 + i * 7_340_033,
            })
        })
        .collect();
    json!({
        "status": {
            "capacity": resources,
            "allocatable": resources,
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "machineID": format!("{:032x}", name.len() as u128 * 0x9e37_79b9),
                "systemUUID": format!("ec2{name}"),
                "bootID": format!("boot-{name}"),
                "kernelVersion": "6.8.0-1021-aws",
                "osImage": "Ubuntu 24.04.1 LTS",
                "containerRuntimeVersion": "containerd://1.7.24",
                "kubeletVersion": "v1.36.3",
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
            "images": images,
        }
    })
}

async fn kubelet_addresses(client: &Client, name: &str, seq: u32) {
    let (v6, v4) = node_addresses(seq);
    let (v6, v4) = (v6.to_string(), v4.to_string());
    let addrs = &[
        ("InternalIP", v4.as_str()),
        ("InternalIP", v6.as_str()),
        ("Hostname", name),
    ][..];
    retry(
        &format!("set addresses of node {name}"),
        Patience::OVERLOAD,
        |_| set_node_addresses(client, name, addrs),
    )
    .await;
}

/// A Pod as the scheduler binds it and the kubelet runs it: Running, Ready.
async fn kubelet_pod(
    client: &Client,
    namespace: &str,
    name: &str,
    labels: &BTreeMap<String, String>,
    node: &str,
    ip: &str,
) {
    let ips = &[ip][..];
    retry(
        &format!("create pod {namespace}/{name}"),
        Patience::OVERLOAD,
        |again| async move {
            match create_running_pod(client, namespace, name, labels, node, ips).await {
                Err(e) if again && conflict(&e) => {
                    set_pod_ready(client, namespace, name, ips, true).await
                }
                other => other,
            }
        },
    )
    .await;
}

/// Deletes a Pod: gracefully first when `graceful` (it shows Terminating, as
/// between a kubelet being told and it finishing), then for good.
async fn delete_pod(client: &Client, namespace: &str, name: &str, graceful: bool) {
    let pods = &Api::<Pod>::namespaced(client.clone(), namespace);
    // Gone already is what a delete wants.
    let once = |params: DeleteParams| async move {
        match pods.delete(name, &params).await {
            Err(e) if not_found(&e) => Ok(()),
            other => other.map(|_| ()),
        }
    };
    if graceful {
        retry(
            &format!("delete pod {namespace}/{name}"),
            Patience::OVERLOAD,
            |_| once(DeleteParams::default()),
        )
        .await;
    }
    retry(
        &format!("delete pod {namespace}/{name} (grace 0)"),
        Patience::OVERLOAD,
        |_| once(DeleteParams::default().grace_period(0)),
    )
    .await;
}

async fn delete_node(client: &Client, name: &str) {
    let nodes = &Api::<Node>::all(client.clone());
    let once = || async move {
        match nodes.delete(name, &DeleteParams::default()).await {
            Err(e) if not_found(&e) => Ok(()),
            other => other.map(|_| ()),
        }
    };
    retry(&format!("delete node {name}"), Patience::OVERLOAD, |_| {
        once()
    })
    .await;
}

fn app_labels(app: &str) -> BTreeMap<String, String> {
    BTreeMap::from([("app".to_string(), app.to_string())])
}

/// A gateway Service as Istio's installer creates it: dual-stack NodePort,
/// node ports allocated by the API server (they are cluster-wide unique).
async fn create_gateway_service(client: &Client, namespace: &str) {
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": GATEWAY, "namespace": namespace, "labels": {"app": GATEWAY}},
        "spec": {
            "type": "NodePort",
            "ipFamilyPolicy": "PreferDualStack",
            "ipFamilies": ["IPv6", "IPv4"],
            "selector": {"app": GATEWAY},
            "ports": [
                {"name": "http2", "port": 80, "targetPort": 8080},
                {"name": "tls", "port": 15443, "targetPort": 15443}
            ]
        }
    }))
    .expect("a valid Service");
    let (api, svc) = (&Api::<Service>::namespaced(client.clone(), namespace), &svc);
    let create = || async move { api.create(&PostParams::default(), svc).await };
    retry(
        &format!("create Service {namespace}/{GATEWAY}"),
        Patience::OVERLOAD,
        |again| async move {
            match create().await {
                Err(e) if again && conflict(&e) => api.get(GATEWAY).await,
                other => other,
            }
        },
    )
    .await;
}

/// MeshCluster `mc-NNN`: the management-cluster example with its own
/// names, the dual-stack policy, and its own Istio (and so gateway) namespace.
fn meshcluster(k: usize) -> MeshCluster {
    let mut mc: MeshCluster = common::example("meshcluster-alpha.yaml");
    mc.metadata.name = Some(format!("mc-{k:03}"));
    mc.spec.cluster_name = format!("cluster-{k:03}");
    mc.spec.network = format!("network-{k:03}");
    mc.spec.dual_stack_policy_ref.name = POLICY.to_string();
    mc.spec.istio.namespace = mesh_namespace(k);
    // The node ports are allocated by the API server here (100 gateways
    // cannot share 32443); the rendered value is not what is measured.
    mc.spec.ingress_gateway.tls_node_port = None;
    mc
}

fn mesh_namespace(k: usize) -> String {
    format!("mesh-{k:03}")
}

fn app_namespace(i: usize) -> String {
    format!("app-{:02}", i % APP_NAMESPACES)
}

/// The sockets a process holds open: with HTTP/1.1, one connection per
/// watch and per request in flight, so it shows how the watches scale.
fn sockets(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| {
            dir.filter_map(Result::ok)
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .filter(|t| t.to_string_lossy().starts_with("socket:"))
                .count()
        })
        .unwrap_or(0)
}

/// CPU seconds of a process, 0 when it is gone.
fn cpu(pid: Option<u32>) -> f64 {
    pid.and_then(cpu_time).map_or(0.0, |d| d.as_secs_f64())
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// A figure beside its target: `PASS (x under)` or `MISS (x over)`.
fn against(value: f64, target: f64, unit: &str) -> (bool, String) {
    if value < target {
        (true, format!("PASS ({:.2} {unit} under)", target - value))
    } else {
        (false, format!("MISS ({:.2} {unit} over)", value - target))
    }
}

/// Runs `jobs` futures `n` at a time.
async fn run_all<F: Future<Output = ()>>(jobs: Vec<F>, n: usize) {
    futures::stream::iter(jobs)
        .buffer_unordered(n)
        .collect::<Vec<()>>()
        .await;
}

/// Wall and CPU of one population step, and the line that says it.
struct Step {
    wall: f64,
    apiserver_cpu: f64,
    etcd_cpu: f64,
    bench_cpu: f64,
    requests: usize,
}

impl Step {
    fn line(&self, what: &str) -> String {
        format!(
            "  {what:<34} {:>7.1} s  {:>6.0} req/s  CPU s: kube-apiserver {:>6.1}, etcd {:>5.1}, this program {:>5.1}",
            self.wall,
            self.requests as f64 / self.wall.max(1e-9),
            self.apiserver_cpu,
            self.etcd_cpu,
            self.bench_cpu
        )
    }

    fn json(&self) -> serde_json::Value {
        json!({
            "wall_s": self.wall, "requests": self.requests,
            "apiserver_cpu_s": self.apiserver_cpu, "etcd_cpu_s": self.etcd_cpu,
            "bench_cpu_s": self.bench_cpu,
        })
    }
}

/// Times `f`, with the CPU the plane's processes and this one used meanwhile.
async fn step<F: Future<Output = ()>>(plane: &ControlPlane, requests: usize, f: F) -> Step {
    let (etcd, apiserver) = plane.pids();
    let me = Some(std::process::id());
    let (a0, e0, b0) = (cpu(apiserver), cpu(etcd), cpu(me));
    let started = Instant::now();
    f.await;
    Step {
        wall: started.elapsed().as_secs_f64(),
        apiserver_cpu: cpu(apiserver) - a0,
        etcd_cpu: cpu(etcd) - e0,
        bench_cpu: cpu(me) - b0,
        requests,
    }
}

/// Writes grouped as `verb resource[/sub]` with counts, most first.
fn grouped(writes: &[String]) -> Vec<(String, usize)> {
    let mut by: BTreeMap<String, usize> = BTreeMap::new();
    for w in writes {
        let kind = w.rsplit_once(' ').map_or(w.as_str(), |(k, _)| k);
        *by.entry(kind.to_string()).or_default() += 1;
    }
    let mut v: Vec<_> = by.into_iter().collect();
    v.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
    v
}

/// Everything converged: every MeshCluster Ready with the computed
/// addresses in its status, and every gateway Service's externalIPs equal to
/// them. Err describes the first few differences.
async fn converged(client: &Client, world: &World, view: &Mutex<View>) -> Result<(), String> {
    let mut problems = Vec::new();
    {
        let v = view.lock().expect("view lock");
        for (k, gw) in world.gateways.iter().enumerate() {
            let want = world.expected(k).join(",");
            match (
                v.ready.get(&gw.meshcluster),
                v.addresses.get(&gw.meshcluster),
            ) {
                (Some(true), Some(all)) if *all == want => {}
                (ready, all) => problems.push(format!(
                    "{}: ready {ready:?}, status addresses {all:?}, want {want:?}",
                    gw.meshcluster
                )),
            }
        }
    }
    if problems.is_empty() {
        let services: Api<Service> = Api::all(client.clone());
        let list = services
            .list(&ListParams::default().labels(&format!("app={GATEWAY}")))
            .await
            .map_err(|e| e.to_string())?;
        let by_ns: HashMap<String, Vec<String>> = list
            .items
            .into_iter()
            .map(|s| {
                (
                    s.namespace().unwrap_or_default(),
                    s.spec.and_then(|s| s.external_ips).unwrap_or_default(),
                )
            })
            .collect();
        for (k, gw) in world.gateways.iter().enumerate() {
            let want = world.expected(k);
            let have = by_ns.get(&gw.namespace);
            if have != Some(&want) {
                problems.push(format!(
                    "Service {}/{GATEWAY}: externalIPs {have:?}, want {want:?}",
                    gw.namespace
                ));
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        let n = problems.len();
        problems.truncate(3);
        Err(format!("{n} not converged, e.g. {}", problems.join("; ")))
    }
}

/// `dualmesh run` as `common::start_operator` starts it, with
/// `BENCH_OPERATOR_ENV` added to its environment.
fn start_operator(plane: &ControlPlane, cfg: &Config) -> testplane::operator::Operator {
    if cfg.operator_env.is_empty() {
        return common::start_operator(plane, "operator.log", &cfg.log, &[]);
    }
    let kubeconfig = plane
        .user_kubeconfig(OPERATOR_USER, &["system:masters"], "operator.kubeconfig")
        .expect("operator kubeconfig");
    let env: Vec<(&str, &str)> = cfg
        .operator_env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    testplane::operator::Operator::start_with_env(
        std::path::Path::new(env!("CARGO_BIN_EXE_dualmesh")),
        &kubeconfig,
        &["--namespace", NS, "--log", &cfg.log, "--listen", "[::1]:0"],
        &env,
        &plane.dir().join("operator.log"),
    )
    .expect("start dualmesh")
}

/// The operator must still be running; if not, that is a functional failure.
fn assert_alive(operator: &mut testplane::operator::Operator) {
    if let Some(status) = operator.try_status() {
        panic!(
            "dualmesh exited ({status}); last log lines:\n{}",
            operator.log_tail(40)
        );
    }
}

/// Sum of `dualmesh_reconciles_total` for the MeshCluster controller.
async fn reconciles(addr: std::net::SocketAddr) -> f64 {
    let (_, body) = common::http_get(addr, "/metrics").await;
    body.lines()
        .filter(|l| l.starts_with("dualmesh_reconciles_total{controller=\"meshcluster\""))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

/// The kinds of change churn makes, with their weights (out of 40): about a
/// third touch a gateway, the rest is the background noise of a big cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Change {
    MoveGatewayPod,
    GatewayNodeAddresses,
    NodeAddresses,
    NodeHeartbeat,
    CreatePod,
    DeletePod,
    CreateNode,
    DeleteNode,
}

impl Change {
    const ALL: [(Change, u64); 8] = [
        (Change::MoveGatewayPod, 8),
        (Change::GatewayNodeAddresses, 6),
        (Change::NodeAddresses, 6),
        (Change::NodeHeartbeat, 8),
        (Change::CreatePod, 4),
        (Change::DeletePod, 4),
        (Change::CreateNode, 2),
        (Change::DeleteNode, 2),
    ];

    fn pick(rng: &mut Rng) -> Change {
        let total: u64 = Self::ALL.iter().map(|(_, w)| w).sum();
        let mut r = rng.next() % total;
        for (c, w) in Self::ALL {
            if r < w {
                return c;
            }
            r -= w;
        }
        unreachable!("weights sum to total")
    }

    fn name(self) -> &'static str {
        match self {
            Change::MoveGatewayPod => "gateway Pod moved to another node",
            Change::GatewayNodeAddresses => "gateway node's addresses changed",
            Change::NodeAddresses => "other node's addresses changed",
            Change::NodeHeartbeat => "Node status heartbeat (no change)",
            Change::CreatePod => "non-gateway Pod created",
            Change::DeletePod => "non-gateway Pod deleted",
            Change::CreateNode => "Node created",
            Change::DeleteNode => "Node deleted (with its Pods)",
        }
    }
}

/// Makes one change of kind `c` in the cluster and in `world`.
async fn change(client: &Client, world: &mut World, c: Change) {
    match c {
        Change::MoveGatewayPod => {
            let k = world.rng.below(world.gateways.len());
            let j = world.rng.below(world.gateways[k].pods.len());
            let (old, from) = world.gateways[k].pods[j].clone();
            let to = loop {
                let n = world.random_node();
                if n != from {
                    break n;
                }
            };
            let seq = world.pod_number();
            let name = format!("gw-{k:03}-{seq}");
            let ns = world.gateways[k].namespace.clone();
            // Surge first, as a rolling update does: never a gap without a
            // ready gateway Pod.
            kubelet_pod(client, &ns, &name, &app_labels(GATEWAY), &to, &pod_ip(seq)).await;
            world.gateways[k].pods[j] = (name, to);
            delete_pod(client, &ns, &old, true).await;
        }
        Change::GatewayNodeAddresses => {
            let k = world.rng.below(world.gateways.len());
            let j = world.rng.below(world.gateways[k].pods.len());
            let node = world.gateways[k].pods[j].1.clone();
            let seq = world.address_number();
            kubelet_addresses(client, &node, seq).await;
            world.nodes.insert(node, seq);
        }
        Change::NodeAddresses => {
            let node = world.random_plain_node();
            let seq = world.address_number();
            kubelet_addresses(client, &node, seq).await;
            world.nodes.insert(node, seq);
        }
        Change::NodeHeartbeat => {
            // The kubelet's periodic status update: same addresses, a new
            // heartbeat time. The most common Node event in a real cluster.
            let node = world.random_node();
            let seq = world.nodes[&node];
            kubelet_addresses(client, &node, seq).await;
        }
        Change::CreatePod => {
            let seq = world.pod_number();
            let ns = app_namespace(seq as usize);
            let node = world.random_node();
            let name = format!("churn-{seq}");
            kubelet_pod(client, &ns, &name, &app_labels("web"), &node, &pod_ip(seq)).await;
            world.other_pods.push(PodRef {
                namespace: ns,
                name,
                node,
            });
        }
        Change::DeletePod => {
            if world.other_pods.is_empty() {
                return;
            }
            let i = world.rng.below(world.other_pods.len());
            let pod = world.other_pods.swap_remove(i);
            delete_pod(client, &pod.namespace, &pod.name, false).await;
        }
        Change::CreateNode => {
            world.next_node += 1;
            let name = format!("node-c{:05}", world.next_node);
            let seq = world.address_number();
            kubelet_node(client, &name, seq, world.node_images).await;
            world.nodes.insert(name.clone(), seq);
            world.node_names.push(name);
        }
        Change::DeleteNode => {
            let node = world.random_plain_node();
            delete_node(client, &node).await;
            world.nodes.remove(&node);
            world.node_names.retain(|n| *n != node);
            // What the Pod garbage collector does for Pods of a gone node.
            let (gone, kept): (Vec<PodRef>, Vec<PodRef>) = std::mem::take(&mut world.other_pods)
                .into_iter()
                .partition(|p| p.node == node);
            world.other_pods = kept;
            for p in gone {
                delete_pod(client, &p.namespace, &p.name, false).await;
            }
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

    // ---- Populate, before the operator exists. --------------------------
    println!("\npopulation (the operator is not running yet):");
    let base = step(&plane, 0, async {
        common::install_dualmesh_crds(&client).await;
        common::create_namespace(&client, NS).await;
        let policy: DualStackPolicy = common::example(POLICY_FILE);
        common::create_policy(&client, &policy).await;
        let mut namespaces: Vec<String> = (0..APP_NAMESPACES).map(app_namespace).collect();
        namespaces.extend((0..cfg.meshclusters).map(mesh_namespace));
        run_all(
            namespaces
                .iter()
                .map(|ns| common::create_namespace(&client, ns))
                .collect(),
            cfg.concurrency,
        )
        .await;
    })
    .await;
    println!("{}", base.line("CRDs, policy, namespaces"));

    for i in 0..cfg.nodes {
        let name = format!("node-{i:05}");
        let seq = world.address_number();
        world.nodes.insert(name.clone(), seq);
        world.node_names.push(name);
    }
    let node_jobs: Vec<_> = world
        .node_names
        .iter()
        .map(|n| kubelet_node(&client, n, world.nodes[n], cfg.node_images))
        .collect();
    let per_node = if cfg.node_images > 0 { 3 } else { 2 };
    let nodes_step = step(
        &plane,
        per_node * cfg.nodes,
        run_all(node_jobs, cfg.concurrency),
    )
    .await;
    println!("{}", nodes_step.line(&format!("{} Nodes", cfg.nodes)));

    for k in 0..cfg.meshclusters {
        // One or two replicas, on distinct random nodes.
        let replicas = 1 + k % 2;
        let mut pods: Vec<(String, String)> = Vec::new();
        while pods.len() < replicas {
            let node = world.random_node();
            if pods.iter().all(|(_, n)| *n != node) {
                let seq = world.pod_number();
                pods.push((format!("gw-{k:03}-{seq}"), node));
            }
        }
        world.gateways.push(Gateway {
            meshcluster: format!("mc-{k:03}"),
            namespace: mesh_namespace(k),
            pods,
        });
    }
    let mut other = Vec::with_capacity(cfg.pods);
    for i in 0..cfg.pods {
        // Every tenth Pod lives next to a gateway, with other labels (istiod).
        let (namespace, app) = if i % 10 == 0 {
            (mesh_namespace((i / 10) % cfg.meshclusters), "istiod")
        } else {
            (app_namespace(i), "web")
        };
        let node = world.random_node();
        let seq = world.pod_number();
        other.push((
            PodRef {
                namespace,
                name: format!("pod-{seq}"),
                node,
            },
            app,
            pod_ip(seq),
        ));
    }
    let gateway_pods: usize = world.gateways.iter().map(|g| g.pods.len()).sum();
    let c = &client;
    let gw_jobs: Vec<_> = world
        .gateways
        .iter()
        .map(|gw| async move {
            create_gateway_service(c, &gw.namespace).await;
            for (pod, node) in &gw.pods {
                // The name ends in the Pod's number, which also numbers its IP.
                let seq = pod.rsplit('-').next().and_then(|s| s.parse().ok());
                let ip = pod_ip(seq.unwrap_or(0));
                kubelet_pod(c, &gw.namespace, pod, &app_labels(GATEWAY), node, &ip).await;
            }
        })
        .collect();
    let gw_step = step(
        &plane,
        cfg.meshclusters + 2 * gateway_pods,
        run_all(gw_jobs, cfg.concurrency),
    )
    .await;
    println!(
        "{}",
        gw_step.line(&format!(
            "{} gateway Services + {gateway_pods} Pods",
            cfg.meshclusters
        ))
    );
    let pod_jobs: Vec<_> = other
        .iter()
        .map(|(p, app, ip)| async move {
            kubelet_pod(c, &p.namespace, &p.name, &app_labels(app), &p.node, ip).await
        })
        .collect();
    let pods_step = step(&plane, 2 * cfg.pods, run_all(pod_jobs, cfg.concurrency)).await;
    println!(
        "{}",
        pods_step.line(&format!("{} non-gateway Pods", cfg.pods))
    );
    world.other_pods = other.into_iter().map(|(p, _, _)| p).collect();

    let mc_jobs: Vec<_> = (0..cfg.meshclusters)
        .map(|k| {
            let client = &client;
            async move {
                let api = &Api::<MeshCluster>::namespaced(client.clone(), NS);
                let mc = &meshcluster(k);
                let create = || async move { api.create(&PostParams::default(), mc).await };
                retry(
                    &format!("create MeshCluster mc-{k:03}"),
                    Patience::OVERLOAD,
                    |again| async move {
                        match create().await {
                            Err(e) if again && conflict(&e) => api.get(&mc.name_any()).await,
                            other => other,
                        }
                    },
                )
                .await;
            }
        })
        .collect();
    let mc_step = step(&plane, cfg.meshclusters, run_all(mc_jobs, cfg.concurrency)).await;
    println!(
        "{}",
        mc_step.line(&format!("{} MeshClusters", cfg.meshclusters))
    );
    let population = [&base, &nodes_step, &gw_step, &pods_step, &mc_step];
    let total = Step {
        wall: population.iter().map(|s| s.wall).sum(),
        apiserver_cpu: population.iter().map(|s| s.apiserver_cpu).sum(),
        etcd_cpu: population.iter().map(|s| s.etcd_cpu).sum(),
        bench_cpu: population.iter().map(|s| s.bench_cpu).sum(),
        requests: population.iter().map(|s| s.requests).sum(),
    };
    println!("{}", total.line("population, total"));
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let busiest = if total.apiserver_cpu >= total.bench_cpu {
        "kube-apiserver"
    } else {
        "this program"
    };
    println!(
        "  -> {busiest} used the most CPU: kube-apiserver {:.0}%, etcd {:.0}%, this program {:.0}% of the {cores} cores over the wall time{}",
        100.0 * total.apiserver_cpu / total.wall / cores,
        100.0 * total.etcd_cpu / total.wall / cores,
        100.0 * total.bench_cpu / total.wall / cores,
        if (total.apiserver_cpu + total.etcd_cpu + total.bench_cpu) / total.wall > 0.8 * cores {
            " (the machine was CPU-bound)"
        } else {
            ""
        }
    );

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
        "  open sockets after sync           {sockets_sync:>8} (HTTP/1.1: one per watch, two watches per gateway)"
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
        "population": {
            "base": base.json(), "nodes": nodes_step.json(), "gateways": gw_step.json(),
            "pods": pods_step.json(), "meshclusters": mc_step.json(), "total": total.json(),
        },
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

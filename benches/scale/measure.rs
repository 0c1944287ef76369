//! Resource figures, measured steps, convergence, and the operator process.

use super::*;

/// The sockets a process holds open: with HTTP/1.1, one connection per
/// watch and per request in flight, so it shows how the watches scale.
pub(crate) fn sockets(pid: u32) -> usize {
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
pub(crate) fn cpu(pid: Option<u32>) -> f64 {
    pid.and_then(cpu_time).map_or(0.0, |d| d.as_secs_f64())
}

pub(crate) fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// A figure beside its target: `PASS (x under)` or `MISS (x over)`.
pub(crate) fn against(value: f64, target: f64, unit: &str) -> (bool, String) {
    if value < target {
        (true, format!("PASS ({:.2} {unit} under)", target - value))
    } else {
        (false, format!("MISS ({:.2} {unit} over)", value - target))
    }
}

/// Runs `jobs` futures `n` at a time.
pub(crate) async fn run_all<F: Future<Output = ()>>(jobs: Vec<F>, n: usize) {
    futures::stream::iter(jobs)
        .buffer_unordered(n)
        .collect::<Vec<()>>()
        .await;
}

/// Wall and CPU of one population step, and the line that says it.
pub(crate) struct Step {
    pub(crate) wall: f64,
    pub(crate) apiserver_cpu: f64,
    pub(crate) etcd_cpu: f64,
    pub(crate) bench_cpu: f64,
    pub(crate) requests: usize,
}

impl Step {
    pub(crate) fn line(&self, what: &str) -> String {
        format!(
            "  {what:<34} {:>7.1} s  {:>6.0} req/s  CPU s: kube-apiserver {:>6.1}, etcd {:>5.1}, this program {:>5.1}",
            self.wall,
            self.requests as f64 / self.wall.max(1e-9),
            self.apiserver_cpu,
            self.etcd_cpu,
            self.bench_cpu
        )
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        json!({
            "wall_s": self.wall, "requests": self.requests,
            "apiserver_cpu_s": self.apiserver_cpu, "etcd_cpu_s": self.etcd_cpu,
            "bench_cpu_s": self.bench_cpu,
        })
    }
}

/// Times `f`, with the CPU the plane's processes and this one used meanwhile.
pub(crate) async fn step<F: Future<Output = ()>>(
    plane: &ControlPlane,
    requests: usize,
    f: F,
) -> Step {
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
pub(crate) fn grouped(writes: &[String]) -> Vec<(String, usize)> {
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
pub(crate) async fn converged(
    client: &Client,
    world: &World,
    view: &Mutex<View>,
) -> Result<(), String> {
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
pub(crate) fn start_operator(plane: &ControlPlane, cfg: &Config) -> testplane::operator::Operator {
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
pub(crate) fn assert_alive(operator: &mut testplane::operator::Operator) {
    if let Some(status) = operator.try_status() {
        panic!(
            "dualmesh exited ({status}); last log lines:\n{}",
            operator.log_tail(40)
        );
    }
}

/// Sum of `dualmesh_reconciles_total` for the MeshCluster controller.
pub(crate) async fn reconciles(addr: std::net::SocketAddr) -> f64 {
    let (_, body) = common::http_get(addr, "/metrics").await;
    body.lines()
        .filter(|l| l.starts_with("dualmesh_reconciles_total{controller=\"meshcluster\""))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

//! What the fault tests (tests/chaos_*.rs) share: planes that can be kept
//! for reading afterwards (`CHAOS_KEEP=<dir>`), the test's own writes, a
//! world of MeshClusters, policies, nodes and one gateway with the changes
//! made to it and the check that dualmesh converged on it, and the
//! federation sources of the member tests.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

use super::*;
use dualmesh::api::{DualStackPolicy, DualStackPolicySpec, MeshCluster};
use dualmesh::desired::istio_operator::{MANAGED_BY, Rendered};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use testplane::kubelet::{create_node, set_node_addresses, set_pod_ready};
use testplane::retry::{Patience, conflict, not_found, retry};
use testplane::{ControlPlane, PlaneOptions};

/// The field manager of the test's own writes.
pub const MANAGER: &str = "chaos";
/// The operator's log filter here: the tests' usual one, plus the
/// watch-stream backoffs of kube-runtime (how long a watch waits after an
/// error), which decide how soon the operator sees an API server again.
pub const CHAOS_LOG: &str = "info,dualmesh=debug,kube_runtime::utils::stream_backoff=debug";

/// Starts plane `name`; with `CHAOS_KEEP=<dir>` its files (logs, audit log,
/// the operator's log) are kept in `<dir>/<name>` for reading afterwards.
pub async fn start_plane(name: &str) -> ControlPlane {
    let mut opts = PlaneOptions::named(name);
    if let Some(dir) = std::env::var_os("CHAOS_KEEP") {
        opts.dir = Some(Path::new(&dir).join(name));
    }
    ControlPlane::start(opts).await.expect("control plane")
}

pub fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub fn not_found_is_ok<T>(r: kube::Result<T>) -> kube::Result<()> {
    match r {
        Ok(_) => Ok(()),
        Err(e) if not_found(&e) => Ok(()),
        Err(e) => Err(e),
    }
}

pub fn conflict_is_ok<T>(r: kube::Result<T>) -> kube::Result<()> {
    match r {
        Ok(_) => Ok(()),
        Err(e) if conflict(&e) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Polls `check` every 100 ms until it returns Ok; returns how long that
/// took, or the last state it described after `timeout`.
pub async fn time_until<F, Fut>(timeout: Duration, mut check: F) -> Result<Duration, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let start = Instant::now();
    loop {
        match check().await {
            Ok(()) => return Ok(start.elapsed()),
            Err(last) if start.elapsed() >= timeout => return Err(last),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

pub fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

pub fn since(from: Timestamp, to: Timestamp) -> String {
    let d = to.duration_since(from);
    format!("{:.2} s", d.as_secs_f64())
}

pub fn ipv6_only() -> DualStackPolicySpec {
    example::<DualStackPolicy>("policy-ipv6-only.yaml").spec
}

pub fn dual_stack() -> DualStackPolicySpec {
    example::<DualStackPolicy>("policy-dual-stack-ipv6-primary.yaml").spec
}

/// Server-side applies a MeshCluster's spec (creates it if absent).
pub async fn apply_mc(client: &Client, mc: &MeshCluster) -> kube::Result<MeshCluster> {
    let name = mc.name_any();
    let body = json!({
        "apiVersion": MeshCluster::api_version(&()),
        "kind": MeshCluster::kind(&()),
        "metadata": {"name": name, "namespace": NS},
        "spec": mc.spec,
    });
    Api::<MeshCluster>::namespaced(client.clone(), NS)
        .patch(
            &name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await
}

pub async fn delete_mc(client: &Client, name: &str) -> kube::Result<()> {
    not_found_is_ok(
        Api::<MeshCluster>::namespaced(client.clone(), NS)
            .delete(name, &DeleteParams::default())
            .await,
    )
}

/// Server-side applies a DualStackPolicy's spec (creates it if absent).
pub async fn apply_policy(
    client: &Client,
    name: &str,
    spec: &DualStackPolicySpec,
) -> kube::Result<DualStackPolicy> {
    let body = json!({
        "apiVersion": DualStackPolicy::api_version(&()),
        "kind": DualStackPolicy::kind(&()),
        "metadata": {"name": name},
        "spec": spec,
    });
    Api::<DualStackPolicy>::all(client.clone())
        .patch(
            name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await
}

/// Creates a gateway Pod bound to `node` (already there: fine) and sets it
/// Running and Ready, as the scheduler and kubelet would.
pub async fn gateway_pod(client: &Client, name: &str, node: &str) -> kube::Result<()> {
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": GW_NS, "labels": gateway_labels()},
        "spec": {
            "nodeName": node,
            "containers": [{"name": "istio-proxy", "image": "docker.io/istio/proxyv2:test"}],
        },
    }))
    .expect("a valid Pod");
    conflict_is_ok(
        Api::<Pod>::namespaced(client.clone(), GW_NS)
            .create(&PostParams::default(), &pod)
            .await,
    )?;
    set_pod_ready(client, GW_NS, name, &["fd00::5"], true)
        .await
        .map(|_| ())
}

pub async fn force_delete_pod(client: &Client, name: &str) -> kube::Result<()> {
    not_found_is_ok(
        Api::<Pod>::namespaced(client.clone(), GW_NS)
            .delete(name, &DeleteParams::default().grace_period(0))
            .await,
    )
}
pub fn managed_by_dualmesh() -> ListParams {
    ListParams::default().labels(&format!("{}={}", MANAGED_BY.0, MANAGED_BY.1))
}

/// Checks that `mc` reports Ready for its current generation with the hash
/// of `want`.
pub fn ready_with(mc: &MeshCluster, want: &Rendered) -> Result<(), String> {
    let name = mc.name_any();
    let status = mc.status.clone().unwrap_or_default();
    if status.observed_generation != mc.metadata.generation {
        return Err(format!(
            "{name}: observedGeneration {:?} != generation {:?}",
            status.observed_generation, mc.metadata.generation
        ));
    }
    if status.istio_config_hash.as_deref() != Some(want.hash.as_str()) {
        return Err(format!("{name}: status hash is not the expected render's"));
    }
    match condition(mc, "Ready") {
        Some((s, _, _)) if s == "True" => Ok(()),
        other => Err(format!("{name}: Ready {other:?}")),
    }
}

// ---------------------------------------------------------------------------
// A world of MeshClusters, policies, nodes and one gateway, and changes to it
// ---------------------------------------------------------------------------

/// What the management cluster should hold, and so what dualmesh should
/// have published.
#[derive(Clone, Debug)]
pub struct World {
    pub meshclusters: BTreeMap<String, MeshCluster>,
    pub policies: BTreeMap<String, DualStackPolicySpec>,
    /// Node name -> its one InternalIP.
    pub nodes: BTreeMap<String, String>,
    /// The one ready gateway Pod: (name, node).
    pub gateway: (String, String),
}

#[derive(Clone, Debug)]
pub enum Change {
    /// Create or change a MeshCluster.
    Mc(Box<MeshCluster>),
    DeleteMc(String),
    Policy(String, Box<DualStackPolicySpec>),
    NodeAddress {
        node: String,
        address: String,
    },
    /// The gateway Pod is rescheduled: a new Pod on `node`, the old one gone.
    MovePod {
        to: String,
        node: String,
    },
}

/// A local MeshCluster that publishes only its IstioOperator (the gateway
/// belongs to `alpha`).
pub fn local_mc(name: &str, policy: &str, tag: &str) -> MeshCluster {
    let mut mc: MeshCluster = example("meshcluster-alpha.yaml");
    mc.metadata.name = Some(name.into());
    mc.spec.cluster_name = format!("cluster-{name}");
    mc.spec.network = format!("{name}-network");
    mc.spec.dual_stack_policy_ref.name = policy.into();
    mc.spec.istio.tag = tag.into();
    mc.spec.istio.operator_name = name.into();
    mc.spec.ingress_gateway.manage_external_ips = false;
    mc
}

impl World {
    /// alpha (example, managing the gateway externalIPs under policy
    /// ipv6-only) on one of three nodes, and policy `toggle`.
    pub fn base() -> Self {
        let alpha: MeshCluster = example("meshcluster-alpha.yaml");
        World {
            meshclusters: BTreeMap::from([("alpha".to_string(), alpha)]),
            policies: BTreeMap::from([
                ("ipv6-only".to_string(), ipv6_only()),
                ("toggle".to_string(), ipv6_only()),
            ]),
            nodes: (0..3)
                .map(|i| (format!("node-{i}"), format!("2001:db8::a{i}")))
                .collect(),
            gateway: ("gw-0".to_string(), "node-0".to_string()),
        }
    }

    pub fn apply(&mut self, change: &Change) {
        match change {
            Change::Mc(mc) => {
                self.meshclusters.insert(mc.name_any(), (**mc).clone());
            }
            Change::DeleteMc(name) => {
                self.meshclusters.remove(name);
            }
            Change::Policy(name, spec) => {
                self.policies.insert(name.clone(), (**spec).clone());
            }
            Change::NodeAddress { node, address } => {
                self.nodes.insert(node.clone(), address.clone());
            }
            Change::MovePod { to, node } => self.gateway = (to.clone(), node.clone()),
        }
    }

    pub fn external_ips(&self) -> Vec<String> {
        vec![self.nodes[&self.gateway.1].clone()]
    }

    pub fn rendered(&self, name: &str) -> Rendered {
        let mc = &self.meshclusters[name];
        render(mc, &self.policies[&mc.spec.dual_stack_policy_ref.name])
    }

    /// Writes the whole world into an empty cluster (dualmesh's CRDs
    /// installed).
    pub async fn create(&self, client: &Client) {
        create_namespace(client, NS).await;
        for (name, spec) in &self.policies {
            apply_policy(client, name, spec).await.expect("policy");
        }
        create_gateway_service(client).await;
        for (node, address) in &self.nodes {
            create_node(client, node, &[("InternalIP", address)])
                .await
                .expect("node");
        }
        gateway_pod(client, &self.gateway.0, &self.gateway.1)
            .await
            .expect("gateway pod");
        for mc in self.meshclusters.values() {
            apply_mc(client, mc).await.expect("MeshCluster");
        }
    }

    /// Makes `change`, retrying until the API server takes it.
    pub async fn make(&self, client: &Client, change: &Change) {
        match change {
            Change::Mc(mc) => {
                retry("apply MeshCluster", Patience::RESTART, |_| {
                    apply_mc(client, mc)
                })
                .await;
            }
            Change::DeleteMc(name) => {
                retry("delete MeshCluster", Patience::RESTART, |_| {
                    delete_mc(client, name)
                })
                .await
            }
            Change::Policy(name, spec) => {
                retry("apply policy", Patience::RESTART, |_| {
                    apply_policy(client, name, spec)
                })
                .await;
            }
            Change::NodeAddress { node, address } => {
                retry("node addresses", Patience::RESTART, |_| async move {
                    set_node_addresses(client, node, &[("InternalIP", address)]).await
                })
                .await;
            }
            Change::MovePod { to, node } => {
                // As a rolling update does: the new Pod is ready first.
                retry("new gateway pod", Patience::RESTART, |_| {
                    gateway_pod(client, to, node)
                })
                .await;
                let old = &self.gateway.0;
                retry("delete gateway pod", Patience::RESTART, |_| {
                    force_delete_pod(client, old)
                })
                .await;
            }
        }
    }

    /// Everything dualmesh should have done for this world is done: exactly
    /// the MeshClusters of the world exist (deleted ones are gone, their
    /// finalizer handled), each Ready for its generation with its render
    /// published as the only ConfigMap of its name, and the gateway
    /// Service's externalIPs are the gateway node's address.
    pub async fn converged(&self, client: &Client) -> Result<(), String> {
        let e = |e: kube::Error| e.to_string();
        let mcs = Api::<MeshCluster>::namespaced(client.clone(), NS)
            .list(&ListParams::default())
            .await
            .map_err(e)?;
        let names: BTreeSet<String> = mcs.items.iter().map(ResourceExt::name_any).collect();
        let want: BTreeSet<String> = self.meshclusters.keys().cloned().collect();
        if names != want {
            return Err(format!(
                "MeshClusters: extra {:?}, missing {:?}",
                names.difference(&want).collect::<Vec<_>>(),
                want.difference(&names).collect::<Vec<_>>()
            ));
        }
        let cms = Api::<ConfigMap>::namespaced(client.clone(), ISTIO_NS)
            .list(&managed_by_dualmesh())
            .await
            .map_err(e)?;
        let published: BTreeMap<String, String> = cms
            .items
            .iter()
            .map(|cm| {
                let yaml = cm
                    .data
                    .as_ref()
                    .and_then(|d| d.get(CONFIG_MAP_KEY))
                    .cloned()
                    .unwrap_or_default();
                (cm.name_any(), yaml)
            })
            .collect();
        let want_cms: BTreeSet<String> =
            want.iter().map(|n| format!("{n}-istiooperator")).collect();
        let have_cms: BTreeSet<String> = published.keys().cloned().collect();
        if have_cms != want_cms {
            return Err(format!(
                "ConfigMaps: extra {:?}, missing {:?}",
                have_cms.difference(&want_cms).collect::<Vec<_>>(),
                want_cms.difference(&have_cms).collect::<Vec<_>>()
            ));
        }
        for mc in &mcs.items {
            let name = mc.name_any();
            let rendered = self.rendered(&name);
            if published[&format!("{name}-istiooperator")] != rendered.yaml {
                return Err(format!("ConfigMap {name}-istiooperator is stale"));
            }
            ready_with(mc, &rendered)?;
        }
        let want_ips = self.external_ips();
        match external_ips(client).await {
            Some(ips) if ips == want_ips => Ok(()),
            other => Err(format!("externalIPs {other:?}, want {want_ips:?}")),
        }
    }
}

// ---------------------------------------------------------------------------
// Federation: the relay pair in the management cluster, and members
// ---------------------------------------------------------------------------

/// A member MeshCluster `name` reached through Secret `<name>-kubeconfig`,
/// syncing the relay pair (the example's federation).
pub fn member_mc(name: &str) -> MeshCluster {
    let mut mc: MeshCluster = example("meshcluster-beta.yaml");
    mc.metadata.name = Some(name.into());
    mc.spec.cluster_name = format!("cluster-{name}");
    mc.spec.network = format!("cluster-{name}-network");
    mc.spec.kubeconfig_secret_ref.as_mut().unwrap().name = format!("{name}-kubeconfig");
    mc
}

pub async fn member_kubeconfig(mgmt: &Client, member: &ControlPlane, name: &str) {
    let kc = std::fs::read_to_string(member.kubeconfig_path()).expect("kubeconfig");
    put_secret(
        mgmt,
        NS,
        &format!("{name}-kubeconfig"),
        &[("kubeconfig", &kc)],
    )
    .await;
}

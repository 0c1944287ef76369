//! A target cluster as dualmesh sees it: a client, and the label-selected
//! watches of the MeshClusters' gateways there (their Pods and Services,
//! shared: see [`super::gateway_watch`]), plus one Node watch per cluster
//! whose cache keeps only names, podCIDRs and addresses, and one
//! ServiceCIDR watch. Every event maps back to the MeshClusters it concerns
//! and is sent on the trigger channel the MeshCluster controller listens to.
//!
//! Memory stays flat on big clusters: Pods are watched only with the
//! gateway selector, Services by name, Nodes are listed in small pages and
//! stripped to their addresses before they enter the cache.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex, Weak};

use futures::StreamExt;
use futures::channel::mpsc::UnboundedSender;
use k8s_openapi::api::core::v1::{Node, NodeSpec, NodeStatus};
use k8s_openapi::api::networking::v1::ServiceCIDR;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};

use super::gateway_watch::{self, Gateways, SharedWatches};
pub use super::gateway_watch::{GatewayKey, GatewayWatch};
use crate::api::MeshCluster;

/// Where reconcile requests go.
pub type Trigger = UnboundedSender<ObjectRef<MeshCluster>>;

/// A spawned task, aborted when dropped.
pub struct Task(pub tokio::task::JoinHandle<()>);

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One target cluster.
pub struct Cluster {
    pub client: Client,
    /// A member's API server URL, from its kubeconfig (None: the cluster
    /// dualmesh runs in).
    pub server: Option<String>,
    trigger: Trigger,
    nodes: Mutex<Option<(Store<Node>, Arc<Task>)>>,
    service_cidrs: Mutex<Option<(Store<ServiceCIDR>, Arc<Task>)>>,
    /// The HTTP code of the ServiceCIDR watch's last failed list (404:
    /// Kubernetes before 1.33; 403: no RBAC for it); 0 once a list worked.
    service_cidr_refused: AtomicU16,
    /// Each MeshCluster's gateway watches (shared: see [`gateway_watch`]).
    gateways: Arc<Gateways>,
    shared: SharedWatches,
    /// The MeshClusters checking this cluster against their policy: woken
    /// when a ServiceCIDR or a node's podCIDRs change.
    checkers: Mutex<HashSet<ObjectRef<MeshCluster>>>,
    /// The gateway Services (`namespace/name`) whose externalIPs write the
    /// API server answered with its deprecation warning.
    deprecated: Mutex<HashSet<String>>,
    this: Weak<Cluster>,
}

/// Keeps only what address selection and the policy check read: name,
/// podCIDRs and addresses.
fn strip_node(node: &mut Node) {
    node.metadata.managed_fields = None;
    node.metadata.annotations = None;
    node.metadata.labels = None;
    node.metadata.owner_references = None;
    let pod_cidrs = node.spec.take().and_then(|s| s.pod_cidrs);
    node.spec = pod_cidrs.is_some().then(|| NodeSpec {
        pod_cidrs,
        ..Default::default()
    });
    let addresses = node.status.take().and_then(|s| s.addresses);
    node.status = Some(NodeStatus {
        addresses,
        ..Default::default()
    });
}

/// Nodes per page of the Node watch's list: each page is held whole (full
/// Nodes, about 5 KB of JSON each with their images) before stripping, so
/// kube's default of 500 made the list, not the cache, the largest use of
/// memory on a big cluster (issue 17).
const NODE_PAGE: u32 = 50;

fn hash<T: std::hash::Hash>(value: &T) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault};
    BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default().hash_one(value)
}

fn addresses_of(node: &Node) -> Vec<(String, String)> {
    node.status
        .as_ref()
        .and_then(|s| s.addresses.as_ref())
        .map(|a| {
            a.iter()
                .map(|x| (x.type_.clone(), x.address.clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// A node's `spec.podCIDRs`.
pub fn pod_cidrs_of(node: &Node) -> Vec<String> {
    node.spec
        .as_ref()
        .and_then(|s| s.pod_cidrs.clone())
        .unwrap_or_default()
}

/// Keeps only what the policy check reads: name and `spec.cidrs`.
fn strip_service_cidr(c: &mut ServiceCIDR) {
    c.metadata.managed_fields = None;
    c.metadata.annotations = None;
    c.metadata.labels = None;
    c.status = None;
}

impl Cluster {
    pub fn new(client: Client, trigger: Trigger, server: Option<String>) -> Arc<Self> {
        Arc::new_cyclic(|this| Cluster {
            client,
            server,
            trigger,
            nodes: Mutex::new(None),
            service_cidrs: Mutex::new(None),
            service_cidr_refused: AtomicU16::new(0),
            gateways: Arc::new(Mutex::new(HashMap::new())),
            shared: SharedWatches::default(),
            checkers: Mutex::new(HashSet::new()),
            deprecated: Mutex::new(HashSet::new()),
            this: this.clone(),
        })
    }

    /// Records that writing the externalIPs of Service `key` drew the API
    /// server's deprecation warning; true the first time (log it once).
    pub fn note_deprecated(&self, key: &str) -> bool {
        let mut seen = self.deprecated.lock().expect("deprecated lock");
        seen.insert(key.to_string())
    }

    /// Whether writing the externalIPs of Service `key` drew the warning.
    pub fn is_deprecated(&self, key: &str) -> bool {
        let seen = self.deprecated.lock().expect("deprecated lock");
        seen.contains(key)
    }

    /// The cluster's Node cache (name, podCIDRs and addresses only), started on first use.
    pub fn nodes(&self) -> Store<Node> {
        let mut guard = self.nodes.lock().expect("nodes lock");
        if let Some((store, _)) = guard.as_ref() {
            return store.clone();
        }
        let (store, writer) = reflector::store();
        let api: Api<Node> = Api::all(self.client.clone());
        let this = self.this.clone();
        let stream = reflector::reflector(
            writer,
            watcher::watcher(api, watcher::Config::default().page_size(NODE_PAGE))
                .backoff(super::backoff::WatchBackoff::new())
                .modify(strip_node),
        );
        let task = tokio::spawn(async move {
            // Only a change of a node's addresses or podCIDRs (or its
            // arrival or deletion) matters: a hash of each per node, not a
            // second copy of what the cache holds.
            let mut seen: HashMap<String, (u64, u64)> = HashMap::new();
            let mut stream = std::pin::pin!(stream);
            while let Some(event) = stream.next().await {
                let Ok(event) = event else { continue };
                let (name, addresses_changed, cidrs_changed) = match event {
                    watcher::Event::Apply(node) | watcher::Event::InitApply(node) => {
                        let name = node.name_any();
                        let now = (hash(&addresses_of(&node)), hash(&pod_cidrs_of(&node)));
                        let before = seen.insert(name.clone(), now);
                        match before {
                            Some(b) if b == now => continue,
                            Some(b) => (name, b.0 != now.0, b.1 != now.1),
                            None => (name, true, true),
                        }
                    }
                    watcher::Event::Delete(node) => {
                        let name = node.name_any();
                        seen.remove(&name);
                        (name, true, true)
                    }
                    watcher::Event::Init | watcher::Event::InitDone => continue,
                };
                let Some(cluster) = this.upgrade() else {
                    return;
                };
                if addresses_changed {
                    cluster.trigger_for_nodes(&[name]);
                }
                if cidrs_changed {
                    cluster.trigger_checkers();
                }
            }
        });
        *guard = Some((store.clone(), Arc::new(Task(task))));
        store
    }

    /// Why the ServiceCIDR cache cannot fill: the HTTP code the API server
    /// refused its list with (404: no ServiceCIDR API, Kubernetes before
    /// 1.33; 403: the identity may not list them).
    pub fn service_cidr_refusal(&self) -> Option<u16> {
        match self.service_cidr_refused.load(Ordering::Relaxed) {
            0 => None,
            code => Some(code),
        }
    }

    /// The cluster's ServiceCIDR cache (names and `spec.cidrs`), started on
    /// first use.
    pub fn service_cidrs(&self) -> Store<ServiceCIDR> {
        let mut guard = self.service_cidrs.lock().expect("service cidrs lock");
        if let Some((store, _)) = guard.as_ref() {
            return store.clone();
        }
        let (store, writer) = reflector::store();
        let api: Api<ServiceCIDR> = Api::all(self.client.clone());
        let this = self.this.clone();
        let stream = reflector::reflector(
            writer,
            watcher::watcher(api, watcher::Config::default())
                .backoff(super::backoff::WatchBackoff::new())
                .modify(strip_service_cidr),
        );
        let task = tokio::spawn(async move {
            let mut seen: HashMap<String, Option<Vec<String>>> = HashMap::new();
            let mut stream = std::pin::pin!(stream);
            while let Some(event) = stream.next().await {
                let Some(cluster) = this.upgrade() else {
                    return;
                };
                let event = match event {
                    Ok(e) => e,
                    Err(watcher::Error::InitialListFailed(kube::Error::Api(s))) => {
                        cluster
                            .service_cidr_refused
                            .store(s.code, Ordering::Relaxed);
                        continue;
                    }
                    Err(_) => continue,
                };
                cluster.service_cidr_refused.store(0, Ordering::Relaxed);
                match event {
                    watcher::Event::Apply(c) | watcher::Event::InitApply(c) => {
                        let cidrs = c.spec.and_then(|s| s.cidrs);
                        if seen.insert(c.metadata.name.unwrap_or_default(), cidrs.clone())
                            == Some(cidrs)
                        {
                            continue;
                        }
                    }
                    watcher::Event::Delete(c) => {
                        seen.remove(&c.metadata.name.unwrap_or_default());
                    }
                    watcher::Event::Init | watcher::Event::InitDone => continue,
                }
                cluster.trigger_checkers();
            }
        });
        *guard = Some((store.clone(), Arc::new(Task(task))));
        store
    }

    /// Notes that `mc` checks this cluster against its policy.
    pub fn checked_by(&self, mc: &ObjectRef<MeshCluster>) {
        self.checkers
            .lock()
            .expect("checkers lock")
            .insert(mc.clone());
    }

    fn trigger_checkers(&self) {
        for mc in self.checkers.lock().expect("checkers lock").iter() {
            let _ = self.trigger.unbounded_send(mc.clone());
        }
    }

    fn trigger_for_nodes(&self, nodes: &[String]) {
        for mc in gateway_watch::on_nodes(&self.gateways, nodes) {
            let _ = self.trigger.unbounded_send(mc);
        }
    }

    /// The gateway watches for `mc`, joined anew when `key` changed.
    pub fn gateway(&self, mc: &ObjectRef<MeshCluster>, key: &GatewayKey) -> Arc<GatewayWatch> {
        if let Some(gw) = self.gateways.lock().expect("gateways lock").get(mc)
            && gw.key == *key
        {
            return gw.clone();
        }
        // Not under the gateways lock: a watch task takes it to find whom
        // to wake.
        let gw = Arc::new(self.shared.watch(
            &self.client,
            &self.trigger,
            Arc::downgrade(&self.gateways),
            key,
        ));
        self.gateways
            .lock()
            .expect("gateways lock")
            .insert(mc.clone(), gw.clone());
        gw
    }

    /// Stops the gateway watches of `mc` (gone, or no longer managing addresses).
    pub fn forget(&self, mc: &ObjectRef<MeshCluster>) {
        self.gateways.lock().expect("gateways lock").remove(mc);
    }

    /// Forgets `mc` altogether (it is being deleted).
    pub fn forget_all(&self, mc: &ObjectRef<MeshCluster>) {
        self.forget(mc);
        self.checkers.lock().expect("checkers lock").remove(mc);
    }
}

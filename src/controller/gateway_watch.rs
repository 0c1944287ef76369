//! The gateway watches of one target cluster, shared between MeshClusters.
//!
//! Each watch is a long-lived HTTP/1.1 connection of its own (kube-client
//! has no HTTP/2), about 150 KiB with its TLS and read buffers. One Pod
//! watch and one Service watch per MeshCluster made memory grow with the
//! number of MeshClusters (issue 17). Now the MeshClusters of a cluster
//! whose gateways use the same Pod selector share one cluster-wide Pod
//! watch with that selector, and those whose gateway Services have the
//! same name share one cluster-wide Service watch by that name; each
//! MeshCluster reads the part in its gateway namespace. A shared watch
//! stops when its last MeshCluster lets go of it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, Weak};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::core::{Expression, Selector};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};

use super::cluster::{Task, Trigger};
use crate::api::MeshCluster;

/// What a gateway watch selects; a change moves the MeshCluster to other
/// shared watches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewayKey {
    pub namespace: String,
    pub selector: BTreeMap<String, String>,
    pub service: String,
}

impl GatewayKey {
    /// One `key=value` requirement per entry, as kube's typed selector: the
    /// entries come from a validated MeshCluster (label keys and values, so
    /// none can carry a ',' that would add a requirement of its own).
    fn label_selector(&self) -> Selector {
        self.selector
            .iter()
            .map(|(k, v)| Expression::Equal(k.clone(), v.clone()))
            .collect()
    }
}

/// One cluster-wide watch and its cache; its task stops when dropped.
pub struct SharedWatch<K: Resource<DynamicType = ()> + 'static> {
    pub store: Store<K>,
    _task: Task,
}

/// The watches one MeshCluster's gateway reads.
pub struct GatewayWatch {
    pub key: GatewayKey,
    pods: Arc<SharedWatch<Pod>>,
    services: Arc<SharedWatch<Service>>,
}

impl GatewayWatch {
    /// The cache of the shared Pod watch (all namespaces), to wait on.
    pub fn pod_store(&self) -> &Store<Pod> {
        &self.pods.store
    }

    /// The cache of the shared Service watch (all namespaces), to wait on.
    pub fn service_store(&self) -> &Store<Service> {
        &self.services.store
    }

    /// The gateway's Pods: the selected ones in its namespace.
    pub fn pods(&self) -> Vec<Arc<Pod>> {
        self.pods
            .store
            .state()
            .into_iter()
            .filter(|p| p.metadata.namespace.as_deref() == Some(self.key.namespace.as_str()))
            .collect()
    }

    /// The gateway's Service, when it exists.
    pub fn service(&self) -> Option<Arc<Service>> {
        self.services
            .store
            .get(&ObjectRef::new(&self.key.service).within(&self.key.namespace))
    }
}

/// Who uses which gateway watches in one cluster.
pub type Gateways = Mutex<HashMap<ObjectRef<MeshCluster>, Arc<GatewayWatch>>>;

/// A gateway's Pod selector.
type Labels = BTreeMap<String, String>;

/// The shared watches of one cluster, by what they select.
#[derive(Default)]
pub struct SharedWatches {
    pods: Mutex<HashMap<Labels, Weak<SharedWatch<Pod>>>>,
    services: Mutex<HashMap<String, Weak<SharedWatch<Service>>>>,
}

/// What a watch event concerns: the object's namespace (None: every user
/// of the watch, after a (re)list).
type Touched = Option<String>;

impl SharedWatches {
    /// The watches for `key`, joining running ones where they exist.
    /// `gateways` is where the watch tasks look up whom to wake.
    pub fn watch(
        &self,
        client: &Client,
        trigger: &Trigger,
        gateways: Weak<Gateways>,
        key: &GatewayKey,
    ) -> GatewayWatch {
        let selector = key.selector.clone();
        let pods = join(&self.pods, &key.selector, || {
            start(
                Api::all(client.clone()),
                watcher::Config::default().labels_from(&key.label_selector()),
                strip_pod,
                trigger.clone(),
                gateways.clone(),
                move |k: &GatewayKey| k.selector == selector,
            )
        });
        let name = key.service.clone();
        let services = join(&self.services, &key.service, || {
            start(
                Api::all(client.clone()),
                watcher::Config::default().fields(&format!("metadata.name={}", key.service)),
                |s: &mut Service| s.metadata.managed_fields = None,
                trigger.clone(),
                gateways,
                move |k: &GatewayKey| k.service == name,
            )
        });
        GatewayWatch {
            key: key.clone(),
            pods,
            services,
        }
    }
}

/// The running watch for `key` in `watches`, or one `start`ed (and
/// recorded) when none runs; entries whose watch stopped are dropped.
fn join<Key, K>(
    watches: &Mutex<HashMap<Key, Weak<SharedWatch<K>>>>,
    key: &Key,
    start: impl FnOnce() -> Arc<SharedWatch<K>>,
) -> Arc<SharedWatch<K>>
where
    Key: std::hash::Hash + Eq + Clone,
    K: Resource<DynamicType = ()> + 'static,
{
    let mut watches = watches.lock().expect("gateway watches lock");
    watches.retain(|_, w| w.strong_count() > 0);
    if let Some(w) = watches.get(key).and_then(Weak::upgrade) {
        return w;
    }
    let w = start();
    watches.insert(key.clone(), Arc::downgrade(&w));
    w
}

/// Starts one shared watch; every change wakes the MeshClusters whose key
/// `uses` it and whose gateway namespace the object is in (all of them
/// after a list).
fn start<K, F>(
    api: Api<K>,
    config: watcher::Config,
    strip: fn(&mut K),
    trigger: Trigger,
    gateways: Weak<Gateways>,
    uses: F,
) -> Arc<SharedWatch<K>>
where
    K: Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
    F: Fn(&GatewayKey) -> bool + Send + 'static,
{
    let (store, writer) = reflector::store();
    let stream = reflector::reflector(
        writer,
        watcher::watcher(api, config)
            .backoff(super::backoff::WatchBackoff::new())
            .modify(strip),
    );
    let task = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            let touched: Touched = match event {
                Ok(watcher::Event::Apply(o) | watcher::Event::Delete(o)) => {
                    Some(o.namespace().unwrap_or_default())
                }
                // The first reconcile after a (re)list sees its cache.
                Ok(watcher::Event::InitDone) => None,
                Ok(watcher::Event::Init | watcher::Event::InitApply(_)) | Err(_) => continue,
            };
            let Some(gateways) = gateways.upgrade() else {
                return;
            };
            let wake: Vec<ObjectRef<MeshCluster>> = gateways
                .lock()
                .expect("gateways lock")
                .iter()
                .filter(|(_, gw)| uses(&gw.key))
                .filter(|(_, gw)| touched.as_ref().is_none_or(|ns| *ns == gw.key.namespace))
                .map(|(mc, _)| mc.clone())
                .collect();
            for mc in wake {
                if trigger.unbounded_send(mc).is_err() {
                    return;
                }
            }
        }
    });
    Arc::new(SharedWatch {
        store,
        _task: Task(task),
    })
}

/// The MeshClusters whose gateway Pods run on one of `nodes`.
pub fn on_nodes(gateways: &Gateways, nodes: &[String]) -> Vec<ObjectRef<MeshCluster>> {
    let gateways = gateways.lock().expect("gateways lock");
    // Per shared Pod watch, the namespaces with a Pod on those nodes (each
    // watch's cache scanned once, however many MeshClusters share it).
    let mut hit: HashMap<*const SharedWatch<Pod>, HashSet<String>> = HashMap::new();
    gateways
        .iter()
        .filter(|(_, gw)| {
            hit.entry(Arc::as_ptr(&gw.pods))
                .or_insert_with(|| {
                    gw.pods
                        .store
                        .state()
                        .iter()
                        .filter(|p| {
                            p.spec
                                .as_ref()
                                .and_then(|s| s.node_name.as_ref())
                                .is_some_and(|n| nodes.contains(n))
                        })
                        .filter_map(|p| p.metadata.namespace.clone())
                        .collect()
                })
                .contains(&gw.key.namespace)
        })
        .map(|(mc, _)| mc.clone())
        .collect()
}

/// Keeps only what gateway selection reads: node, phase, readiness, deletion.
fn strip_pod(pod: &mut Pod) {
    use k8s_openapi::api::core::v1::{PodCondition, PodSpec, PodStatus};
    pod.metadata.managed_fields = None;
    pod.metadata.annotations = None;
    pod.metadata.owner_references = None;
    let node_name = pod.spec.take().and_then(|s| s.node_name);
    pod.spec = Some(PodSpec {
        node_name,
        containers: Vec::new(),
        ..Default::default()
    });
    let status = pod.status.take().unwrap_or_default();
    pod.status = Some(PodStatus {
        phase: status.phase,
        conditions: status.conditions.map(|cs| {
            cs.into_iter()
                .filter(|c| c.type_ == "Ready")
                .map(|c| PodCondition {
                    type_: c.type_,
                    status: c.status,
                    ..Default::default()
                })
                .collect()
        }),
        ..Default::default()
    });
}

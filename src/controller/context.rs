//! What every reconcile shares: clients, caches, the Event queue, the
//! per-object failure counts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ObjectReference, Secret};
use kube::core::PartialObjectMeta;
use kube::runtime::events::{Event, Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};

use super::{Error, backoff, cluster, federation, mesh_networks, metrics, remote_secrets};
use crate::api::{DualStackPolicy, MeshCluster};
use crate::desired::selection;

/// Shared by every reconcile.
pub struct Context {
    /// The cluster dualmesh runs in (the management cluster).
    pub client: Client,
    /// Events to publish, in order, off the reconcile path.
    pub events: EventQueue,
    /// The cluster dualmesh runs in, as a target (its gateway watches).
    pub local: Arc<cluster::Cluster>,
    /// Reconcile requests from the per-cluster watches.
    pub trigger: cluster::Trigger,
    /// Member cluster connections.
    pub members: federation::Members,
    /// The MeshCluster cache (set once the controller is built).
    pub meshclusters: OnceLock<Store<MeshCluster>>,
    /// The DualStackPolicy cache: the MeshCluster controller is woken by
    /// policy changes only after this cache holds them, so a reconcile reads
    /// its policy here (no GET per pass).
    pub policies: Store<DualStackPolicy>,
    /// Metadata-only Secret watches, per namespace, for kubeconfig and
    /// source Secrets: a change triggers the MeshClusters naming it.
    secret_watches: Mutex<HashMap<String, cluster::Task>>,
    /// Consecutive failures per object, for exponential backoff.
    failures: Mutex<HashMap<String, u32>>,
    /// Per object: the resourceVersion the last status write was based on
    /// and a hash of the status it wrote. A reconcile woken by one of its
    /// own writes may still read the object from before that status write;
    /// writing the same status again would only be refused with 409.
    written: Mutex<HashMap<String, (Option<String>, u64)>>,
    /// What `/metrics` serves.
    pub metrics: Arc<metrics::Metrics>,
    /// The gateway addresses each MeshCluster publishes to meshNetworks.
    pub mesh_addresses: mesh_networks::Addresses,
    /// The reader kubeconfig each MeshCluster's cluster offers its peers.
    pub remote_offers: remote_secrets::Offers,
}

impl Context {
    pub fn new(
        client: Client,
        trigger: cluster::Trigger,
        metrics: Arc<metrics::Metrics>,
        policies: Store<DualStackPolicy>,
    ) -> Self {
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: "dualmesh".into(),
                instance: std::env::var("POD_NAME").ok(),
            },
        );
        Self {
            local: cluster::Cluster::new(client.clone(), trigger.clone(), None),
            trigger,
            client,
            events: EventQueue::start(recorder),
            members: federation::Members::default(),
            meshclusters: OnceLock::new(),
            policies,
            secret_watches: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
            written: Mutex::new(HashMap::new()),
            metrics,
            mesh_addresses: mesh_networks::Addresses::default(),
            remote_offers: remote_secrets::Offers::default(),
        }
    }

    /// Watches the metadata (never the data) of Secrets in `namespace` of
    /// the management cluster, once per namespace.
    pub fn watch_secrets(&self, namespace: &str) {
        let mut watches = self.secret_watches.lock().expect("secret watches lock");
        if watches.contains_key(namespace) {
            return;
        }
        // Metadata only: kube asks for PartialObjectMetadata, so the API
        // server never sends the data.
        let api: Api<PartialObjectMeta<Secret>> = Api::namespaced(self.client.clone(), namespace);
        let store = self.meshclusters.get().cloned();
        let trigger = self.trigger.clone();
        let ns = namespace.to_string();
        let task = tokio::spawn(async move {
            let stream = watcher::watcher(api, watcher::Config::default())
                .backoff(backoff::WatchBackoff::new())
                .touched_objects();
            let mut stream = std::pin::pin!(stream);
            while let Some(event) = stream.next().await {
                let (Ok(meta), Some(store)) = (event, store.as_ref()) else {
                    continue;
                };
                let name = meta.name_any();
                for mc in store.state() {
                    if selection::uses_secret(&mc, &ns, &name) {
                        let _ = trigger.unbounded_send(ObjectRef::from_obj(mc.as_ref()));
                    }
                }
            }
        });
        watches.insert(namespace.to_string(), cluster::Task(task));
    }

    /// Whether this replica already wrote status `hash` from the view at
    /// `resource_version` (the cache has not caught up with it yet).
    pub fn already_written(&self, key: &str, resource_version: &Option<String>, hash: u64) -> bool {
        self.written
            .lock()
            .expect("written lock")
            .get(key)
            .is_some_and(|(rv, h)| rv == resource_version && *h == hash)
    }

    /// Notes a status write of `hash` based on `resource_version`.
    pub fn wrote(&self, key: &str, resource_version: Option<String>, hash: u64) {
        self.written
            .lock()
            .expect("written lock")
            .insert(key.to_string(), (resource_version, hash));
    }

    /// Forgets what was recorded for `key` (the object is being deleted).
    pub fn forget(&self, key: &str, written_key: &str) {
        self.failures.lock().expect("failure map lock").remove(key);
        self.written
            .lock()
            .expect("written lock")
            .remove(written_key);
    }

    /// Records a success for `key` (resets its backoff).
    pub fn succeeded(&self, key: &str) {
        self.failures.lock().expect("failure map lock").remove(key);
    }

    /// Records a failure for `key` and returns how long to wait: see
    /// [`Error::retry_after`].
    pub fn failed(&self, key: &str, error: &Error) -> Duration {
        let mut map = self.failures.lock().expect("failure map lock");
        let n = map.entry(key.to_string()).or_insert(0);
        *n = n.saturating_add(1);
        error.retry_after(*n)
    }
}

/// Kubernetes Events waiting to be published by one background task, so a
/// reconcile never waits for its Events' round trips (a first sync of many
/// MeshClusters publishes several each) and they keep their order.
pub struct EventQueue {
    tx: tokio::sync::mpsc::Sender<(Event, ObjectReference)>,
}

impl EventQueue {
    /// Events beyond this many waiting are dropped (and logged): they are a
    /// report, and an API server that slow must not grow our memory.
    const CAPACITY: usize = 1024;

    /// Starts the publishing task (inside the runtime).
    fn start(recorder: Recorder) -> Self {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<(Event, ObjectReference)>(Self::CAPACITY);
        tokio::spawn(async move {
            while let Some((event, reference)) = rx.recv().await {
                if let Err(e) = recorder.publish(&event, &reference).await {
                    tracing::debug!(error = %e, reason = %event.reason, "could not publish an Event");
                }
            }
        });
        Self { tx }
    }

    /// Queues `event` about `reference`.
    pub fn publish(&self, event: Event, reference: ObjectReference) {
        if let Err(e) = self.tx.try_send((event, reference)) {
            tracing::debug!(error = %e, "Event queue full: an Event was dropped");
        }
    }
}

/// Requeue after an error with the object's backoff.
pub(crate) fn requeue_after_error(
    ctx: &Context,
    key: &str,
    error: &Error,
) -> kube::runtime::controller::Action {
    let wait = ctx.failed(key, error);
    tracing::warn!(object = key, categories = ?error.categories(), error = %error, retry_in = ?wait, "reconcile failed");
    kube::runtime::controller::Action::requeue(wait)
}

//! The I/O half: watches, the reconcile pipeline of each MeshCluster
//! (fetch -> validate -> build -> apply -> status), the DualStackPolicy status
//! and the server-side-apply helpers. Everything that decides *what* should
//! be lives in [`crate::desired`]; this module only reads, writes and reports.

pub mod backoff;
pub mod cluster;
pub mod federation;
pub mod fence;
pub mod gateway;
pub mod leader;
pub mod meshcluster;
pub mod metrics;
pub mod policy;
pub mod publish;
pub mod ssa;
pub mod status;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::events::{Event, Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};

use crate::api::{DualStackPolicy, MeshCluster};

/// The one field manager of every write dualmesh makes.
pub const FIELD_MANAGER: &str = "dualmesh";
/// The finalizer that lets dualmesh remove what it published for a MeshCluster.
pub const FINALIZER: &str = "dualmesh.io/cleanup";
/// How often a healthy object is looked at again (reads only; writes happen
/// only when something differs).
pub const RESYNC: Duration = Duration::from_secs(300);

/// Errors of one reconcile. Messages never carry Secret data: they come from
/// the API server (which does not echo Secret data) or from our own text.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("{0}")]
    Message(String),
    #[error("finalizer: {0}")]
    Finalizer(String),
}

impl Error {
    /// A short category for metrics and logs.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Kube(kube::Error::Api(s)) if s.code == 409 => "conflict",
            Error::Kube(kube::Error::Api(s)) if s.code == 403 => "forbidden",
            Error::Kube(kube::Error::Api(s)) if s.code == 422 || s.code == 400 => "invalid",
            Error::Kube(kube::Error::Api(_)) => "api",
            Error::Kube(_) => "transport",
            Error::Message(_) => "other",
            Error::Finalizer(_) => "finalizer",
        }
    }
}

/// What `dualmesh run` is told.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Watch MeshClusters only in this namespace (the operator's); all when None.
    pub namespace: Option<String>,
}

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
    pub meshclusters: std::sync::OnceLock<Store<MeshCluster>>,
    /// Metadata-only Secret watches, per namespace, for kubeconfig and
    /// source Secrets: a change triggers the MeshClusters naming it.
    secret_watches: Mutex<HashMap<String, cluster::Task>>,
    /// Consecutive failures per object, for exponential backoff.
    failures: Mutex<HashMap<String, u32>>,
    /// What `/metrics` serves.
    pub metrics: Arc<metrics::Metrics>,
}

impl Context {
    pub fn new(client: Client, trigger: cluster::Trigger, metrics: Arc<metrics::Metrics>) -> Self {
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: "dualmesh".into(),
                instance: std::env::var("POD_NAME").ok(),
            },
        );
        Self {
            local: cluster::Cluster::new(client.clone(), trigger.clone()),
            trigger,
            client,
            events: EventQueue::start(recorder),
            members: federation::Members::default(),
            meshclusters: std::sync::OnceLock::new(),
            secret_watches: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
            metrics,
        }
    }

    /// Watches the metadata (never the data) of Secrets in `namespace` of
    /// the management cluster, once per namespace.
    pub fn watch_secrets(&self, namespace: &str) {
        let mut watches = self.secret_watches.lock().expect("secret watches lock");
        if watches.contains_key(namespace) {
            return;
        }
        let api: Api<kube::core::PartialObjectMeta<k8s_openapi::api::core::v1::Secret>> =
            Api::namespaced(self.client.clone(), namespace);
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
                    if uses_secret(&mc, &ns, &name) {
                        let _ = trigger.unbounded_send(ObjectRef::from_obj(mc.as_ref()));
                    }
                }
            }
        });
        watches.insert(namespace.to_string(), cluster::Task(task));
    }

    /// Records a success for `key` (resets its backoff).
    pub fn succeeded(&self, key: &str) {
        self.failures.lock().expect("failure map lock").remove(key);
    }

    /// Records a failure for `key` and returns how long to wait: 1 s doubling
    /// up to 5 min, so a refusal is never retried hot.
    pub fn backoff(&self, key: &str) -> Duration {
        let mut map = self.failures.lock().expect("failure map lock");
        let n = map.entry(key.to_string()).or_insert(0);
        *n = n.saturating_add(1);
        backoff_for(*n)
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

/// The wait after `n` consecutive failures: 1, 2, 4 ... seconds, capped at 300.
pub fn backoff_for(n: u32) -> Duration {
    let secs = 1u64 << n.saturating_sub(1).min(9);
    Duration::from_secs(secs.min(300))
}

/// Waits for a store's first list.
///
/// `Store::wait_until_ready` keeps a single waker (a one-shot channel), so
/// of several tasks waiting on one store at once only the last one polled
/// is woken; the others would wait forever. Asking again every 20 ms bounds
/// a lost wakeup to that. Fails when the store's writer is gone.
pub async fn filled<K>(store: &Store<K>) -> Result<(), Error>
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    loop {
        match tokio::time::timeout(Duration::from_millis(20), store.wait_until_ready()).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => return Err(Error::Message(format!("cache: {e}"))),
            Err(_) => {}
        }
    }
}

fn object_key<K: ResourceExt>(obj: &K) -> String {
    format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any())
}

/// Resolves once: when the controllers are to stop (SIGTERM, SIGINT or a
/// lost leader Lease). Cloned into every controller.
pub type Shutdown = futures::future::Shared<futures::future::BoxFuture<'static, ()>>;

/// What `run` shares with the process around it.
pub struct Runtime {
    pub metrics: Arc<metrics::Metrics>,
    /// Called once the MeshCluster and DualStackPolicy caches are filled.
    pub on_ready: Box<dyn FnOnce() + Send>,
    /// Stops the controllers gracefully: running reconciles finish first.
    pub shutdown: Shutdown,
}

/// Runs the MeshCluster and DualStackPolicy controllers until `shutdown`.
pub async fn run(client: Client, options: RunOptions, runtime: Runtime) -> Result<(), Error> {
    let (trigger, triggered) = futures::channel::mpsc::unbounded();
    let ctx = Arc::new(Context::new(client.clone(), trigger, runtime.metrics));
    let shutdown = runtime.shutdown;
    let meshclusters: Api<MeshCluster> = match &options.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let policies: Api<DualStackPolicy> = Api::all(client.clone());

    // A MeshCluster is reconciled when what it asks for changes (its
    // generation), when its lifecycle does (finalizers, deletion), on the
    // watches below and on resync: not when only its status changed, which
    // is dualmesh's own write and would cost a reconcile for nothing.
    let (mc_store, mc_writer) = reflector::store();
    let mc_changes = watcher::watcher(meshclusters.clone(), watcher::Config::default())
        .backoff(backoff::WatchBackoff::new())
        .reflect(mc_writer)
        .applied_objects()
        .predicate_filter(spec_or_lifecycle, Default::default());
    // Every watch the controller merges (policies, published ConfigMaps, the
    // IstioOperator CRD) shares this backoff: bounded, so an API server
    // that returns is seen within seconds (see `backoff`).
    let mc_controller = Controller::for_stream(mc_changes, mc_store.clone())
        .with_config(controller::Config::default().concurrency(16))
        .trigger_backoff(backoff::WatchBackoff::new());
    let _ = ctx.meshclusters.set(mc_store.clone());
    let users = mc_store.clone();
    // Installing or removing Istio's IstioOperator CRD changes what is
    // published: look at every MeshCluster again when it does.
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd_changes = watcher::watcher(
        crds,
        watcher::Config::default()
            .fields(&format!("metadata.name={}", publish::ISTIO_OPERATOR_CRD)),
    )
    .touched_objects()
    .filter_map(|r| futures::future::ready(r.ok().map(|_| ())));
    // The ConfigMaps dualmesh published (label-selected): an edit or a delete
    // by someone else is repaired at once.
    let published: Api<ConfigMap> = Api::all(client.clone());
    let published_config = watcher::Config::default().labels(&format!(
        "{}={}",
        crate::desired::istio_operator::MANAGED_BY.0,
        crate::desired::istio_operator::MANAGED_BY.1
    ));
    let mc_controller = mc_controller
        .reconcile_all_on(crd_changes)
        .reconcile_on(triggered)
        .watches(published, published_config, |cm| owner_of(&cm))
        .watches(
            policies.clone(),
            watcher::Config::default(),
            move |policy| users_of(&users, &policy.name_any()),
        )
        .graceful_shutdown_on(shutdown.clone())
        .run(
            meshcluster::reconcile,
            meshcluster::error_policy,
            ctx.clone(),
        )
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!(error = %e, "meshcluster controller event");
            }
        });

    let policy_controller = Controller::new(policies, watcher::Config::default())
        .trigger_backoff(backoff::WatchBackoff::new());
    let policy_store = policy_controller.store();
    let policy_ready = policy_store.clone();
    let pctx = Arc::new(policy::PolicyContext {
        base: ctx.clone(),
        meshclusters: mc_store.clone(),
    });
    let policy_controller = policy_controller
        .watches(meshclusters, watcher::Config::default(), move |mc| {
            policies_touching(&policy_store, &mc)
        })
        .graceful_shutdown_on(shutdown.clone())
        .run(policy::reconcile, policy::error_policy, pctx)
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!(error = %e, "policy controller event");
            }
        });

    let on_ready = runtime.on_ready;
    let ready = async move {
        let caches = futures::future::try_join(filled(&mc_store), filled(&policy_ready));
        tokio::select! {
            filled = caches => if filled.is_ok() {
                tracing::info!("caches filled: ready");
                on_ready();
            },
            () = shutdown => {}
        }
    };

    tracing::info!(namespace = ?options.namespace, "dualmesh controllers started");
    futures::join!(mc_controller, policy_controller, ready);
    tracing::info!("dualmesh controllers stopped");
    Ok(())
}

/// What a MeshCluster reconcile depends on in the object itself: the spec
/// (through the generation, which status writes do not change), the
/// finalizers and the deletion mark.
fn spec_or_lifecycle(mc: &MeshCluster) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    mc.metadata.generation.hash(&mut hasher);
    mc.finalizers().hash(&mut hasher);
    mc.metadata.deletion_timestamp.is_some().hash(&mut hasher);
    Some(hasher.finish())
}

/// Whether `mc` reads Secret `ns/name` (its kubeconfig or a sync source).
fn uses_secret(mc: &MeshCluster, ns: &str, name: &str) -> bool {
    let kubeconfig = mc
        .spec
        .kubeconfig_secret_ref
        .as_ref()
        .is_some_and(|r| r.name == name && mc.namespace().as_deref() == Some(ns));
    kubeconfig
        || crate::desired::secret_sync::effective_syncs(&mc.spec)
            .iter()
            .any(|s| s.source.namespace == ns && s.source.name == name)
}

/// The MeshCluster a published object names in its owner annotation.
fn owner_of<K: ResourceExt>(obj: &K) -> Option<ObjectRef<MeshCluster>> {
    let owner = obj.annotations().get(publish::OWNER_ANNOTATION)?;
    let (ns, name) = owner.split_once('/')?;
    Some(ObjectRef::new(name).within(ns))
}

/// The MeshClusters naming `policy`.
fn users_of(store: &Store<MeshCluster>, policy: &str) -> Vec<ObjectRef<MeshCluster>> {
    store
        .state()
        .iter()
        .filter(|mc| mc.spec.dual_stack_policy_ref.name == policy)
        .map(|mc| ObjectRef::from_obj(mc.as_ref()))
        .collect()
}

/// The policy a MeshCluster names, and every policy that still lists it as
/// a user (so switching policies updates both).
fn policies_touching(
    store: &Store<DualStackPolicy>,
    mc: &MeshCluster,
) -> Vec<ObjectRef<DualStackPolicy>> {
    let me = object_key(mc);
    let mut refs = vec![ObjectRef::new(&mc.spec.dual_stack_policy_ref.name)];
    for p in store.state() {
        let listed = p.status.as_ref().is_some_and(|s| s.used_by.contains(&me));
        if listed && p.name_any() != mc.spec.dual_stack_policy_ref.name {
            refs.push(ObjectRef::from_obj(p.as_ref()));
        }
    }
    refs
}

/// Requeue after an error with the object's backoff.
/// The longest wait before retrying after a failed request: about what the
/// watches wait at most (`backoff::WatchBackoff::MAX`), so an object whose
/// reconcile failed while the API server was away is retried within
/// seconds of its return, and an API server that stays away costs one
/// request per object every 5 s.
pub const TRANSPORT_RETRY_MAX: Duration = Duration::from_secs(5);

pub(crate) fn requeue_after_error(ctx: &Context, key: &str, error: &Error) -> Action {
    let mut wait = ctx.backoff(key);
    // A failed request (API server or member away) is worth retrying soon
    // after it returns: the watches that see it come back do not re-trigger
    // objects whose spec did not change. Refusals keep the long backoff.
    if matches!(error, Error::Kube(_)) {
        wait = wait.min(TRANSPORT_RETRY_MAX);
    }
    tracing::warn!(object = key, category = error.category(), error = %error, retry_in = ?wait, "reconcile failed");
    Action::requeue(wait)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Several tasks waiting on one store all wake when it is filled (a
    /// bare `wait_until_ready` wakes only the last one polled).
    #[tokio::test]
    async fn every_waiter_sees_the_store_filled() {
        use k8s_openapi::api::core::v1::ConfigMap;
        let (store, mut writer) = kube::runtime::reflector::store::<ConfigMap>();
        let waiters: Vec<_> = (0..4)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move { filled(&store).await.is_ok() })
            })
            .collect();
        // Let every waiter register before the store fills.
        tokio::time::sleep(Duration::from_millis(50)).await;
        writer.apply_watcher_event(&watcher::Event::Init);
        writer.apply_watcher_event(&watcher::Event::InitDone);
        for w in waiters {
            // A lost wakeup would hang here; 5 s is only the test's guard.
            let done = tokio::time::timeout(Duration::from_secs(5), w).await;
            assert!(matches!(done, Ok(Ok(true))), "{done:?}");
        }
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let waits: Vec<u64> = (1..=12).map(|n| backoff_for(n).as_secs()).collect();
        assert_eq!(waits, vec![1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
    }
}

//! Building and running the two controllers: which watches wake which
//! objects (the mappers' selection logic is pure, in
//! [`crate::desired::selection`]), and readiness once the caches filled.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{self, Controller};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};

use super::cache::filled;
use super::{Context, Error, backoff, cluster, meshcluster, metrics, policy, publish};
use crate::api::labels::managed_by_selector;
use crate::api::{DualStackPolicy, MeshCluster};
use crate::desired::selection;

/// What `dualmesh run` is told.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Watch MeshClusters only in this namespace (the operator's); all when None.
    pub namespace: Option<String>,
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
    // The policies, cached for the reconcile to read (no GET per pass).
    // The watch of that cache is the one that wakes the MeshClusters, so a
    // reconcile woken by a policy change reads it there already.
    let (policy_cache, policy_writer) = reflector::store();
    let ctx = Arc::new(Context::new(
        client.clone(),
        trigger,
        runtime.metrics,
        policy_cache,
    ));
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
    // Its own task, not a stream of the MeshCluster controller: that one is
    // not polled while all its workers are busy, and a reconcile waiting for
    // this cache to fill would then wait for itself.
    let _policy_watch = {
        let users = mc_store.clone();
        let trigger = ctx.trigger.clone();
        let changes = watcher::watcher(policies.clone(), watcher::Config::default())
            .backoff(backoff::WatchBackoff::new())
            .reflect(policy_writer)
            .touched_objects();
        cluster::Task(tokio::spawn(async move {
            let mut changes = std::pin::pin!(changes);
            while let Some(change) = changes.next().await {
                let Ok(policy) = change else { continue };
                let name = kube::ResourceExt::name_any(&policy);
                for mc in selection::naming_policy(&users.state(), &name) {
                    if trigger
                        .unbounded_send(ObjectRef::from_obj(mc.as_ref()))
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }))
    };
    // Installing or removing Istio's IstioOperator CRD or Sail's CRDs
    // changes what is published: look at every MeshCluster again when one
    // does (each watched by name: a field selector takes one).
    let crds: Api<PartialObjectMeta<CustomResourceDefinition>> = Api::all(client.clone());
    let watched_crds = std::iter::once(publish::ISTIO_OPERATOR_CRD.to_string()).chain(
        crate::desired::install::sail_plan::KINDS
            .iter()
            .map(|(kind, _)| crate::desired::install::sail_plan::crd_name(kind)),
    );
    let crd_changes = futures::stream::select_all(watched_crds.map(|name| {
        watcher::watcher(
            crds.clone(),
            watcher::Config::default().fields(&format!("metadata.name={name}")),
        )
        .touched_objects()
        .boxed()
    }))
    .filter_map(|r| futures::future::ready(r.ok().map(|_| ())));
    // The ConfigMaps dualmesh published (label-selected): an edit or a delete
    // by someone else is repaired at once.
    let published: Api<ConfigMap> = Api::all(client.clone());
    let published_config = watcher::Config::default().labels(&managed_by_selector());
    let mc_controller = mc_controller
        .reconcile_all_on(crd_changes)
        .reconcile_on(triggered)
        .watches(published, published_config, |cm| {
            selection::owner_of(&cm).map(|(ns, name)| ObjectRef::new(name).within(ns))
        })
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
            selection::policies_touching(&mc, &policy_store.state())
                .into_iter()
                .map(|name| ObjectRef::new(&name))
                .collect::<Vec<_>>()
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
        let caches = futures::future::try_join3(
            filled(&mc_store, "MeshCluster"),
            filled(&policy_ready, "DualStackPolicy"),
            filled(&ctx.policies, "DualStackPolicy (reconcile cache)"),
        );
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
    kube::ResourceExt::finalizers(mc).hash(&mut hasher);
    mc.metadata.deletion_timestamp.is_some().hash(&mut hasher);
    Some(hasher.finish())
}

//! The jobs of a MeshCluster reconcile (Istio config, with the Helm values
//! ConfigMap for `installWith: Helm`; gateway addresses; trust Secrets:
//! each fetch -> build -> apply; and the read-only check of the cluster
//! against the policy), and what each reports; [`super::meshcluster`] runs
//! them side by side.

use std::time::Duration;

use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;

use super::cache::synced;
use super::cluster::{Cluster, pod_cidrs_of};
use super::gateway::{self, Applied};
use super::meshcluster::{location, owner};
use super::publish::{self, Location};
use super::publish_helm;
use super::publish_sail;
use super::{Context, Error, federation};
use crate::api::conditions::{self as types, reason};
use crate::api::{InstallWith, MeshCluster, PublishedConfig};
use crate::desired::check::{self, NodeFacts, Observed, ServiceCidr};
use crate::desired::conditions::Found;
use crate::desired::install::sail_plan;
use crate::desired::keys::{helm_values_config_map, object_key, parse_key};
use crate::desired::selection::meshcluster_key;
use crate::desired::validate::{ValidMeshCluster, ValidPolicy};
use crate::desired::{gateway_service, install, istio_operator, publish as publish_plan};

/// What one job produced.
pub(super) struct Job<P> {
    pub found: Vec<Found>,
    /// Its status part; None: not reached (the old one stays).
    pub part: Option<P>,
    pub error: Option<Error>,
}

impl<P> Job<P> {
    pub(super) fn done(found: Found, part: P) -> Self {
        Job {
            found: vec![found],
            part: Some(part),
            error: None,
        }
    }

    pub(super) fn failed(condition: &'static str, e: Error) -> Self {
        Job {
            found: vec![Found::fail(condition, reason::APPLY_FAILED, e.describe())],
            part: None,
            error: Some(e),
        }
    }
}

/// Builds the IstioOperator, fetches what the target holds, plans and
/// applies the ConfigMap (+ IstioOperator).
/// `claimed`: the networks of the other MeshClusters of the same cluster
/// and Istio namespace (the namespace label is not flipped between them).
pub(super) async fn istio(
    mc: &MeshCluster,
    cluster: &Cluster,
    valid_mc: &ValidMeshCluster<'_>,
    valid_policy: &ValidPolicy,
    claimed: &[String],
) -> Job<(String, PublishedConfig)> {
    let rendered = istio_operator::build(valid_mc, valid_policy);
    let owner = owner(mc);
    let here = location(mc);
    let client = &cluster.client;
    let helm_name = helm_values_config_map(&mc.name_any());
    let helm = (mc.spec.istio.install_with == InstallWith::Helm)
        .then(|| install::helm::build(valid_mc, valid_policy));
    let result = async {
        let observed = publish::fetch(client, &here).await?;
        let plan = publish_plan::plan(&owner, &here, &rendered, &observed)?;
        let mut outcome = publish::apply(client, &here, &plan, &observed).await?;
        if publish::label_namespace(
            client,
            &here.namespace,
            observed.namespace.as_ref(),
            &mc.spec.network,
            claimed,
        )
        .await?
        {
            outcome.writes += 1;
        }
        match &helm {
            Some(values) => {
                if publish_helm::publish(client, &owner, &here.namespace, &helm_name, values)
                    .await?
                {
                    outcome.writes += 1;
                }
            }
            // Not (or no longer) Helm: no values ConfigMap of ours stays.
            None => {
                publish_helm::unpublish(client, &owner, &here.namespace, &helm_name).await?;
            }
        }
        // A moved location: remove what the old one holds.
        if let Some(prev) = previous_location(mc)
            && prev != here
        {
            publish::unpublish(client, &owner, &prev).await?;
            publish_helm::unpublish(client, &owner, &prev.namespace, &helm_name).await?;
        }
        Ok::<_, Error>(outcome)
    }
    .await;
    let outcome = match result {
        Ok(o) => o,
        Err(e) => return Job::failed(types::ISTIO_CONFIG_APPLIED, e),
    };
    let (why, mut message) = if outcome.operator_published {
        (
            reason::CONFIG_MAP_AND_ISTIO_OPERATOR,
            format!(
                "ConfigMap {} and IstioOperator {} are up to date",
                here.config_map_ref(),
                here.operator_ref()
            ),
        )
    } else {
        (
            reason::CONFIG_MAP_ONLY,
            format!(
                "ConfigMap {} is up to date; IstioOperator not written: CRD {} is not installed",
                here.config_map_ref(),
                publish::ISTIO_OPERATOR_CRD
            ),
        )
    };
    if helm.is_some() {
        message.push_str(&format!(
            "; Helm values ConfigMap {} is up to date",
            object_key(&here.namespace, &helm_name)
        ));
    }
    if !rendered.overridden_keys.is_empty() {
        message.push_str(&format!(
            "; dualmesh's values replaced spec.istio entries {}",
            rendered.overridden_keys.join(", ")
        ));
    }
    if outcome.writes > 0 {
        tracing::info!(meshcluster = %owner.key, hash = %rendered.hash, writes = outcome.writes, "published IstioOperator");
    }
    let published = PublishedConfig {
        config_map: here.config_map_ref(),
        istio_operator: outcome.operator_published.then(|| here.operator_ref()),
    };
    Job::done(
        Found::ok(types::ISTIO_CONFIG_APPLIED, why, message),
        (rendered.hash.clone(), published),
    )
}

/// `installWith: Sail`: applies the Sail objects where Sail's CRDs are
/// installed and reads Sail's status back. None for the other paths (the
/// Sail objects of an earlier choice stay: removing Sail's `Istio` would
/// uninstall a running control plane before the new path installs one).
/// The part is true while Sail has still to act (look again soon).
pub(super) async fn sail(
    mc: &MeshCluster,
    cluster: &Cluster,
    valid_mc: &ValidMeshCluster<'_>,
    valid_policy: &ValidPolicy,
) -> Option<Job<bool>> {
    if mc.spec.istio.install_with != InstallWith::Sail {
        return None;
    }
    let rendered = install::sail::build(valid_mc, valid_policy);
    let owner = owner(mc);
    Some(
        match publish_sail::publish(&cluster.client, &owner, &rendered).await {
            Ok(outcome) => {
                tracing::debug!(meshcluster = %owner.key, writes = outcome.writes, missing = outcome.missing.len(), "Sail objects checked");
                if outcome.writes > 0 {
                    tracing::info!(meshcluster = %owner.key, hash = %rendered.hash, writes = outcome.writes, "applied Sail objects");
                }
                let target = format!("cluster {}", mc.spec.cluster_name);
                let (found, soon) = sail_plan::report(&target, &outcome.missing, &outcome.read);
                Job::done(found, soon)
            }
            Err(e) => Job::failed(types::SAIL_READY, e),
        },
    )
}

/// Fetches the gateway from the caches, plans and applies its Service.
/// Also gives the addresses meshNetworks should list for this cluster
/// (None: not known this pass; the key keeps what it holds).
pub(super) async fn gateway(
    mc: &MeshCluster,
    cluster: &Cluster,
    valid_mc: &ValidMeshCluster<'_>,
    valid_policy: &ValidPolicy,
) -> (
    Job<Option<crate::api::GatewayAddressesStatus>>,
    Option<Vec<String>>,
) {
    let mc_ref = ObjectRef::from_obj(mc);
    let observed = match gateway::fetch(cluster, &mc_ref, valid_mc).await {
        Ok(Some(o)) => o,
        Ok(None) => return (Job::done(gateway_service::not_managed(), None), None),
        Err(e) => return (Job::failed(types::GATEWAY_ADDRESSES_READY, e), None),
    };
    let key = gateway::key(valid_mc);
    let external = mc.spec.ingress_gateway.writes_external_ips();
    let plan = gateway_service::plan(&observed, valid_policy, &mc.spec.network, external);
    let own = plan.mesh_networks_addresses();
    let service_ref = object_key(&key.namespace, &key.service);
    let job = match gateway::apply(cluster, &key.namespace, &plan).await {
        Ok(Applied::Sent { writes, deprecated }) => {
            if deprecated && cluster.note_deprecated(&service_ref) {
                // Once per Service and process: the condition says it after.
                tracing::warn!(meshcluster = %meshcluster_key(mc), service = %service_ref, "{}", gateway_service::DEPRECATION_NOTE);
            }
            let (found, addresses) = gateway_service::report(
                &plan,
                &service_ref,
                None,
                cluster.is_deprecated(&service_ref),
            );
            if writes > 0 {
                let all = addresses.as_ref().map(|a| a.all.as_str()).unwrap_or("");
                tracing::info!(meshcluster = %meshcluster_key(mc), addresses = %all, "updated gateway externalIPs");
            }
            let mut job = Job::done(found, addresses);
            if !external && own.is_none() {
                // No ready gateway Pod: meshNetworks keeps the addresses it
                // lists, and so does the status.
                job.part = None;
            }
            job
        }
        Ok(Applied::Refused { code, reason }) => {
            let (found, addresses) =
                gateway_service::report(&plan, &service_ref, Some((code, &reason)), false);
            Job {
                found: vec![found],
                part: Some(addresses),
                error: Some(Error::ExternalIpsRefused { code }),
            }
        }
        Err(e) => Job::failed(types::GATEWAY_ADDRESSES_READY, e),
    };
    (job, own)
}

/// Copies the trust Secrets into the target.
pub(super) async fn secrets(
    ctx: &Context,
    target: &kube::Client,
    mc: &MeshCluster,
) -> Job<Vec<crate::api::SyncedSecret>> {
    for s in crate::desired::secret_sync::effective_syncs(&mc.spec) {
        ctx.watch_secrets(&s.source.namespace);
    }
    let previous = mc
        .status
        .as_ref()
        .map(|s| s.synced_secrets.clone())
        .unwrap_or_default();
    match federation::sync_secrets(&ctx.client, target, mc, &previous).await {
        Ok(outcome) => Job::done(outcome.condition, outcome.synced),
        Err(e) => Job {
            found: vec![Found::fail(
                types::SECRETS_SYNCED,
                reason::SYNC_FAILED,
                super::ssa::describe(&e),
            )],
            part: None,
            error: Some(e.into()),
        },
    }
}

/// Writes the cluster's `cacerts` from the mesh root (`spec.trust`).
pub(super) async fn trust(
    ctx: &Context,
    target: &kube::Client,
    mc: &MeshCluster,
) -> Job<Option<crate::api::TrustStatus>> {
    use crate::desired::trust::plan;
    let Some(spec) = &mc.spec.trust else {
        let had = crate::desired::selection::has_condition(mc, types::TRUST_DISTRIBUTED);
        return Job {
            found: plan::not_requested(had).into_iter().collect(),
            part: Some(None),
            error: None,
        };
    };
    ctx.watch_secrets(&mc.namespace().unwrap_or_default());
    // One root per meshID (peers from the MeshCluster cache).
    let own_root = plan::root_secret_name(&mc.spec.mesh_id, spec);
    let same_mesh: Vec<_> = ctx
        .meshclusters
        .get()
        .map(|store| store.state())
        .unwrap_or_default()
        .into_iter()
        .filter(|p| {
            p.namespace() == mc.namespace()
                && p.name_any() != mc.name_any()
                && p.spec.mesh_id == mc.spec.mesh_id
                && p.metadata.deletion_timestamp.is_none()
        })
        .collect();
    // A new spec of this one may end (or start) a peer's conflict: look at
    // them again. Once per generation, so peers never ping-pong.
    let seen = mc.status.as_ref().and_then(|s| s.observed_generation);
    if seen != mc.metadata.generation {
        for p in &same_mesh {
            let _ = ctx.trigger.unbounded_send(ObjectRef::from_obj(p.as_ref()));
        }
    }
    let peers: Vec<(String, String)> = same_mesh
        .iter()
        .filter_map(|p| {
            let trust = p.spec.trust.as_ref()?;
            Some((
                meshcluster_key(p),
                plan::root_secret_name(&p.spec.mesh_id, trust),
            ))
        })
        .collect();
    if let Some(conflict) = plan::root_conflict(&mc.spec.mesh_id, &own_root, &peers) {
        return Job {
            found: vec![conflict],
            part: None,
            error: None,
        };
    }
    let statuses: Vec<(String, Option<crate::api::TrustStatus>)> = same_mesh
        .iter()
        .filter(|p| p.spec.trust.is_some())
        .map(|p| {
            let status = p.status.as_ref().and_then(|s| s.trust.clone());
            (meshcluster_key(p), status)
        })
        .collect();
    let now = federation::trust::now();
    match federation::trust::distribute(&ctx.client, target, mc, spec, &statuses, now).await {
        Ok(outcome) => Job {
            found: vec![outcome.condition],
            part: outcome.status.map(Some),
            error: None,
        },
        Err(e) => Job::failed(types::TRUST_DISTRIBUTED, e.into()),
    }
}

/// How long the policy check waits for the ServiceCIDR and Node caches.
const CHECK_CACHE_WAIT: Duration = Duration::from_secs(5);

/// The `ClusterMatchesPolicy` condition from the target's ServiceCIDR and
/// Node caches (stripped to names, `spec.cidrs`, podCIDRs and addresses).
/// Reads only; None (the condition stays as it was) while a cache is not
/// filled.
pub(super) async fn cluster_check(
    mc: &MeshCluster,
    cluster: &Cluster,
    policy_name: &str,
    valid_policy: &ValidPolicy,
) -> Option<Found> {
    cluster.checked_by(&ObjectRef::from_obj(mc));
    let key = meshcluster_key(mc);
    let cidrs = cluster.service_cidrs();
    let nodes = cluster.nodes();
    let mut observed = Observed::default();
    // The first list, or the API server refusing it, whichever comes first.
    let deadline = tokio::time::Instant::now() + CHECK_CACHE_WAIT;
    loop {
        match cluster.service_cidr_refusal() {
            Some(404) => {
                observed.service_cidr_api_missing = true;
                break;
            }
            Some(code) => {
                tracing::debug!(meshcluster = %key, code, "policy check skipped: ServiceCIDRs refused");
                return None;
            }
            None => {}
        }
        if synced(&cidrs, "ServiceCIDR", Duration::from_millis(20))
            .await
            .is_ok()
        {
            let list = ServiceCidr::list(cidrs.state().iter().map(|c| c.as_ref()));
            observed.service_cidrs = Some(list);
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::debug!(meshcluster = %key, "policy check skipped: no ServiceCIDR list yet");
            return None;
        }
    }
    if let Err(e) = synced(&nodes, "Node", CHECK_CACHE_WAIT).await {
        tracing::debug!(meshcluster = %key, error = %e, "policy check skipped");
        return None;
    }
    let mut list: Vec<NodeFacts> = nodes
        .state()
        .iter()
        .map(|n| NodeFacts {
            name: n.name_any(),
            pod_cidrs: pod_cidrs_of(n),
            addresses: Vec::new(),
        })
        .collect();
    list.sort_by(|a, b| a.name.cmp(&b.name));
    observed.nodes = Some(list);
    Some(check::cluster_matches(&observed, policy_name, valid_policy))
}

/// Where the status says the config was published last.
pub(super) fn previous_location(mc: &MeshCluster) -> Option<Location> {
    let published = mc.status.as_ref()?.published.as_ref()?;
    let (namespace, config_map) = parse_key(&published.config_map)?;
    let operator = match &published.istio_operator {
        Some(o) => parse_key(o)?.1.to_string(),
        None => mc.spec.istio.operator_name.clone(),
    };
    Some(Location {
        namespace: namespace.to_string(),
        config_map: config_map.to_string(),
        operator,
    })
}

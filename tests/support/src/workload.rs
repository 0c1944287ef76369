//! Real workloads on a cluster plane: Deployments the scheduler places on
//! fake Nodes and kwok runs, and the kubectl moves that take them elsewhere
//! (cordon, drain).

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use serde_json::json;

use crate::ControlPlane;
use crate::wait::wait_for;

/// The field manager these helpers apply with.
pub const MANAGER: &str = "testplane-workload";

/// How long a Deployment may take to roll out on fake Nodes.
pub const ROLLOUT_TIMEOUT: Duration = Duration::from_secs(60);

/// A Deployment of `replicas` Pods labelled `labels` (also its selector),
/// one container named `container`.
pub fn deployment(
    namespace: &str,
    name: &str,
    labels: &BTreeMap<String, String>,
    container: &str,
    replicas: i32,
) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": name, "namespace": namespace },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": labels },
            "template": {
                "metadata": { "labels": labels },
                "spec": {
                    "containers": [{ "name": container, "image": "registry.k8s.io/pause:3.10" }],
                    // kwok deletes a terminating Pod at once; nothing waits.
                    "terminationGracePeriodSeconds": 0,
                },
            },
        },
    }))
    .expect("a valid Deployment")
}

/// Applies a Deployment (server-side, as [`MANAGER`]).
pub async fn apply(client: &kube::Client, d: &Deployment) -> kube::Result<Deployment> {
    let ns = d.metadata.namespace.as_deref().expect("a namespace");
    let name = d.metadata.name.as_deref().expect("a name");
    Api::<Deployment>::namespaced(client.clone(), ns)
        .patch(name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(d))
        .await
}

/// Sets a Deployment's replicas through its scale subresource (as `kubectl
/// scale` does).
pub async fn scale(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    replicas: i32,
) -> kube::Result<()> {
    Api::<Deployment>::namespaced(client.clone(), namespace)
        .patch_scale(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "replicas": replicas } })),
        )
        .await
        .map(|_| ())
}

/// Whether a Pod runs, is Ready and is not being deleted.
pub fn is_ready(pod: &Pod) -> bool {
    let status = pod.status.as_ref();
    pod.metadata.deletion_timestamp.is_none()
        && status.and_then(|s| s.phase.as_deref()) == Some("Running")
        && status
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The node a Pod is bound to.
pub fn node_of(pod: &Pod) -> Option<&str> {
    pod.spec.as_ref().and_then(|s| s.node_name.as_deref())
}

/// A Pod's `status.podIPs`.
pub fn pod_ips(pod: &Pod) -> Vec<String> {
    pod.status
        .as_ref()
        .and_then(|s| s.pod_ips.as_ref())
        .map(|ips| ips.iter().map(|ip| ip.ip.clone()).collect())
        .unwrap_or_default()
}

/// Makes a Deployment's Pods refuse to share a node (required pod
/// anti-affinity on `kubernetes.io/hostname`), so N replicas run on N nodes.
pub fn one_per_node(d: &mut Deployment) {
    let spec = d.spec.as_mut().expect("a Deployment spec");
    let labels = spec.selector.match_labels.clone().unwrap_or_default();
    let pod = spec.template.spec.as_mut().expect("a Pod template");
    pod.affinity = Some(
        serde_json::from_value(json!({
            "podAntiAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": [{
                    "labelSelector": { "matchLabels": labels },
                    "topologyKey": "kubernetes.io/hostname",
                }],
            },
        }))
        .expect("a valid affinity"),
    );
}

/// [`wait_rolled_out_within`] [`ROLLOUT_TIMEOUT`].
pub async fn wait_rolled_out(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    selector: &str,
    replicas: usize,
) -> Vec<Pod> {
    wait_rolled_out_within(client, namespace, name, selector, replicas, ROLLOUT_TIMEOUT).await
}

/// Waits until Deployment `name` has exactly `replicas` Pods matching
/// `selector` (a label selector), every one Running and Ready, none being
/// deleted, and the Deployment says so too (`availableReplicas`); returns
/// the Pods sorted by name. Panics after `timeout`.
pub async fn wait_rolled_out_within(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    selector: &str,
    replicas: usize,
    timeout: Duration,
) -> Vec<Pod> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    wait_for(
        &format!("deployment {namespace}/{name} with {replicas} Ready Pods"),
        timeout,
        || async {
            let d = deployments.get(name).await.map_err(|e| e.to_string())?;
            let available = d
                .status
                .as_ref()
                .and_then(|s| s.available_replicas)
                .unwrap_or(0);
            let mut list = pods
                .list(&ListParams::default().labels(selector))
                .await
                .map_err(|e| e.to_string())?
                .items;
            list.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
            let ready = list.iter().filter(|p| is_ready(p)).count();
            if available as usize == replicas && ready == replicas && list.len() == replicas {
                Ok(list)
            } else {
                Err(format!(
                    "availableReplicas {available}, {} Pods, {ready} Ready",
                    list.len()
                ))
            }
        },
    )
    .await
}

/// Runs the built kubectl against `plane` with `args`; panics with its
/// output when it fails, returns its stdout otherwise.
pub fn kubectl(plane: &ControlPlane, args: &[&str]) -> String {
    let out = plane.kubectl().args(args).output().expect("run kubectl");
    assert!(
        out.status.success(),
        "kubectl {args:?} failed with {}:\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

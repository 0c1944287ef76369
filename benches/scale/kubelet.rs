//! Nodes and Pods written as a kubelet would (the scale bench keeps hand-written objects for speed: no scheduler, no kubelet), the gateway Services and the MeshClusters.

use super::*;

/// A Node as a kubelet registers it: created, then its status (addresses,
/// Ready) through the status subresource, then what else a kubelet reports
/// (capacity, node info, `images` cached images): the operator receives and
/// decodes whole Nodes, so their size is part of what its memory is measured
/// against (a real kubelet reports up to 50 images).
pub(crate) async fn kubelet_node(client: &Client, name: &str, seq: u32, images: usize) {
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
pub(crate) fn node_status_extras(name: &str, images: usize) -> serde_json::Value {
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

pub(crate) async fn kubelet_addresses(client: &Client, name: &str, seq: u32) {
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
pub(crate) async fn kubelet_pod(
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
pub(crate) async fn delete_pod(client: &Client, namespace: &str, name: &str, graceful: bool) {
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

pub(crate) async fn delete_node(client: &Client, name: &str) {
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

pub(crate) fn app_labels(app: &str) -> BTreeMap<String, String> {
    BTreeMap::from([("app".to_string(), app.to_string())])
}

/// A gateway Service as Istio's installer creates it: dual-stack NodePort,
/// node ports allocated by the API server (they are cluster-wide unique).
pub(crate) async fn create_gateway_service(client: &Client, namespace: &str) {
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
pub(crate) fn meshcluster(k: usize) -> MeshCluster {
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

pub(crate) fn mesh_namespace(k: usize) -> String {
    format!("mesh-{k:03}")
}

pub(crate) fn app_namespace(i: usize) -> String {
    format!("app-{:02}", i % APP_NAMESPACES)
}

//! Populating the plane before the operator exists: CRDs, policy and
//! namespaces, the Nodes, the gateways (Services and Pods), the other Pods
//! and the MeshClusters, each step timed with the CPU it cost.

use super::*;

/// What later parts of the report need of the population.
pub(crate) struct Population {
    pub(crate) gateway_pods: usize,
    pub(crate) cores: f64,
    /// Each step's figures, for the JSON report.
    pub(crate) json: serde_json::Value,
}

/// Creates everything the operator will find, into `world`.
pub(crate) async fn populate(
    plane: &ControlPlane,
    client: &Client,
    cfg: &Config,
    world: &mut World,
) -> Population {
    println!("\npopulation (the operator is not running yet):");
    let base = step(plane, 0, async {
        common::install_dualmesh_crds(client).await;
        common::create_namespace(client, NS).await;
        let policy: DualStackPolicy = common::example(POLICY_FILE);
        common::create_policy(client, &policy).await;
        let mut namespaces: Vec<String> = (0..APP_NAMESPACES).map(app_namespace).collect();
        namespaces.extend((0..cfg.meshclusters).map(mesh_namespace));
        run_all(
            namespaces
                .iter()
                .map(|ns| common::create_namespace(client, ns))
                .collect(),
            cfg.concurrency,
        )
        .await;
    })
    .await;
    println!("{}", base.line("CRDs, policy, namespaces"));

    for i in 0..cfg.nodes {
        let name = format!("node-{i:05}");
        let seq = world.address_number();
        world.nodes.insert(name.clone(), seq);
        world.node_names.push(name);
    }
    let node_jobs: Vec<_> = world
        .node_names
        .iter()
        .map(|n| kubelet_node(client, n, world.nodes[n], cfg.node_images))
        .collect();
    let per_node = if cfg.node_images > 0 { 3 } else { 2 };
    let nodes_step = step(
        plane,
        per_node * cfg.nodes,
        run_all(node_jobs, cfg.concurrency),
    )
    .await;
    println!("{}", nodes_step.line(&format!("{} Nodes", cfg.nodes)));

    for k in 0..cfg.meshclusters {
        // One or two replicas, on distinct random nodes.
        let replicas = 1 + k % 2;
        let mut pods: Vec<(String, String)> = Vec::new();
        while pods.len() < replicas {
            let node = world.random_node();
            if pods.iter().all(|(_, n)| *n != node) {
                let seq = world.pod_number();
                pods.push((format!("gw-{k:03}-{seq}"), node));
            }
        }
        world.gateways.push(Gateway {
            meshcluster: format!("mc-{k:03}"),
            namespace: mesh_namespace(k),
            pods,
        });
    }
    let mut other = Vec::with_capacity(cfg.pods);
    for i in 0..cfg.pods {
        // Every tenth Pod lives next to a gateway, with other labels (istiod).
        let (namespace, app) = if i % 10 == 0 {
            (mesh_namespace((i / 10) % cfg.meshclusters), "istiod")
        } else {
            (app_namespace(i), "web")
        };
        let node = world.random_node();
        let seq = world.pod_number();
        other.push((
            PodRef {
                namespace,
                name: format!("pod-{seq}"),
                node,
            },
            app,
            pod_ip(seq),
        ));
    }
    let gateway_pods: usize = world.gateways.iter().map(|g| g.pods.len()).sum();
    let c = client;
    let gw_jobs: Vec<_> = world
        .gateways
        .iter()
        .map(|gw| async move {
            create_gateway_service(c, &gw.namespace).await;
            for (pod, node) in &gw.pods {
                // The name ends in the Pod's number, which also numbers its IP.
                let seq = pod.rsplit('-').next().and_then(|s| s.parse().ok());
                let ip = pod_ip(seq.unwrap_or(0));
                kubelet_pod(c, &gw.namespace, pod, &app_labels(GATEWAY), node, &ip).await;
            }
        })
        .collect();
    let gw_step = step(
        plane,
        cfg.meshclusters + 2 * gateway_pods,
        run_all(gw_jobs, cfg.concurrency),
    )
    .await;
    println!(
        "{}",
        gw_step.line(&format!(
            "{} gateway Services + {gateway_pods} Pods",
            cfg.meshclusters
        ))
    );
    let pod_jobs: Vec<_> = other
        .iter()
        .map(|(p, app, ip)| async move {
            kubelet_pod(c, &p.namespace, &p.name, &app_labels(app), &p.node, ip).await
        })
        .collect();
    let pods_step = step(plane, 2 * cfg.pods, run_all(pod_jobs, cfg.concurrency)).await;
    println!(
        "{}",
        pods_step.line(&format!("{} non-gateway Pods", cfg.pods))
    );
    world.other_pods = other.into_iter().map(|(p, _, _)| p).collect();

    let mc_jobs: Vec<_> = (0..cfg.meshclusters)
        .map(|k| async move {
            let api = &Api::<MeshCluster>::namespaced(client.clone(), NS);
            let mc = &meshcluster(k);
            let create = || async move { api.create(&PostParams::default(), mc).await };
            retry(
                &format!("create MeshCluster mc-{k:03}"),
                Patience::OVERLOAD,
                |again| async move {
                    match create().await {
                        Err(e) if again && conflict(&e) => api.get(&mc.name_any()).await,
                        other => other,
                    }
                },
            )
            .await;
        })
        .collect();
    let mc_step = step(plane, cfg.meshclusters, run_all(mc_jobs, cfg.concurrency)).await;
    println!(
        "{}",
        mc_step.line(&format!("{} MeshClusters", cfg.meshclusters))
    );
    let population = [&base, &nodes_step, &gw_step, &pods_step, &mc_step];
    let total = Step {
        wall: population.iter().map(|s| s.wall).sum(),
        apiserver_cpu: population.iter().map(|s| s.apiserver_cpu).sum(),
        etcd_cpu: population.iter().map(|s| s.etcd_cpu).sum(),
        bench_cpu: population.iter().map(|s| s.bench_cpu).sum(),
        requests: population.iter().map(|s| s.requests).sum(),
    };
    println!("{}", total.line("population, total"));
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let busiest = if total.apiserver_cpu >= total.bench_cpu {
        "kube-apiserver"
    } else {
        "this program"
    };
    println!(
        "  -> {busiest} used the most CPU: kube-apiserver {:.0}%, etcd {:.0}%, this program {:.0}% of the {cores} cores over the wall time{}",
        100.0 * total.apiserver_cpu / total.wall / cores,
        100.0 * total.etcd_cpu / total.wall / cores,
        100.0 * total.bench_cpu / total.wall / cores,
        if (total.apiserver_cpu + total.etcd_cpu + total.bench_cpu) / total.wall > 0.8 * cores {
            " (the machine was CPU-bound)"
        } else {
            ""
        }
    );
    Population {
        gateway_pods,
        cores,
        json: json!({
            "base": base.json(), "nodes": nodes_step.json(), "gateways": gw_step.json(),
            "pods": pods_step.json(), "meshclusters": mc_step.json(), "total": total.json(),
        }),
    }
}

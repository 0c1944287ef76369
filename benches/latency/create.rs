//! Scenario (a): a MeshCluster created -> its ConfigMap applied and Ready=True.

use super::*;

pub(crate) async fn scenario_create(s: &Settings) -> Report {
    let plane = ControlPlane::start(plane_options("lat-create"))
        .await
        .expect("plane lat-create");
    let client = plane.client().await.expect("client");
    install_dualmesh_crds(&client).await;
    // A gateway to publish, so Ready=True means every job ran, as in a
    // cluster with Istio installed.
    create_gateway(&client, "node-a", &["2001:db8::a"]).await;
    create_namespace(&client, NS).await;
    let policy: DualStackPolicy = example("policy-ipv6-only.yaml");
    create_policy(&client, &policy).await;
    let operator = operator(&plane, s).await;

    let mut floor = Floor::new(&client, "lat-create").await;
    let mut config_maps = Watch::<ConfigMap>::start(
        Api::namespaced(client.clone(), GW_NS),
        watcher::Config::default().labels(&format!(
            "{}={}",
            istio_operator::MANAGED_BY.0,
            istio_operator::MANAGED_BY.1
        )),
        "lat-create istio-system ConfigMaps",
    )
    .await;
    let mut meshclusters = Watch::<MeshCluster>::start(
        Api::namespaced(client.clone(), NS),
        watcher::Config::default(),
        "lat-create MeshClusters",
    )
    .await;
    let api: Api<MeshCluster> = Api::namespaced(client.clone(), NS);
    let template: MeshCluster = example("meshcluster-alpha.yaml");

    let (mut total, mut to_cm, mut to_ready, mut delete) = (vec![], vec![], vec![], vec![]);
    let mut usage = None;
    for i in 0..s.total() {
        let record = i >= s.warmup;
        if i == s.warmup {
            usage = Some(Usage::start(&operator));
        }
        floor.sample(record).await;
        settle(s).await;

        let name = format!("lat-{i}");
        let mut mc = template.clone();
        mc.metadata.name = Some(name.clone());
        mc.spec.cluster_name = format!("cluster-lat-{i}");
        let want = render(&mc, &policy.spec);
        let cm_name = format!("{name}-istiooperator");

        let sent = Instant::now();
        api.create(&PostParams::default(), &mc)
            .await
            .expect("create MeshCluster");
        let cm_at = config_maps
            .until(sent, &format!("ConfigMap {cm_name} with the render"), |e| {
                e.applied(&cm_name)
                    .and_then(|cm| cm.data.as_ref()?.get("istiooperator.yaml"))
                    .is_some_and(|y| *y == want)
            })
            .await
            .unwrap_or_else(|e| fail(&operator, e));
        let ready_at = meshclusters
            .until(sent, &format!("MeshCluster {name} Ready=True"), |e| {
                e.applied(&name).is_some_and(is_ready)
            })
            .await
            .unwrap_or_else(|e| fail(&operator, e));

        // Back to one MeshCluster: the deletion (cleanup included: the
        // finalizer goes last) finishes before the next event.
        let deleting = Instant::now();
        api.delete(&name, &DeleteParams::default())
            .await
            .expect("delete MeshCluster");
        let gone = meshclusters
            .until(deleting, &format!("MeshCluster {name} deleted"), |e| {
                e.deleted(&name)
            })
            .await
            .unwrap_or_else(|e| fail(&operator, e));
        config_maps
            .until(deleting, &format!("ConfigMap {cm_name} deleted"), |e| {
                e.deleted(&cm_name)
            })
            .await
            .unwrap_or_else(|e| fail(&operator, e));
        if record {
            total.push(cm_at.max(ready_at) - sent);
            to_cm.push(cm_at - sent);
            to_ready.push(ready_at - sent);
            delete.push(gone - deleting);
        }
    }
    let usage = usage.expect("at least one measured event");
    let verdicts = reactive_verdicts("a", &total, &floor.patch);
    let report = Report {
        id: "a",
        title: "MeshCluster created -> IstioOperator ConfigMap applied and Ready=True".into(),
        series: vec![
            Series {
                name: "(a) created -> ConfigMap + Ready=True".into(),
                samples: total,
            },
            Series {
                name: "    created -> ConfigMap with the render".into(),
                samples: to_cm,
            },
            Series {
                name: "    created -> Ready=True".into(),
                samples: to_ready,
            },
            Series {
                name: "    (delete -> gone, finalizer cleanup)".into(),
                samples: delete,
            },
            Series {
                name: "floor: raw SSA PATCH (same plane)".into(),
                samples: floor.patch,
            },
            Series {
                name: "floor: raw SSA PATCH -> seen by a watch".into(),
                samples: floor.seen,
            },
        ],
        verdicts,
        notes: vec![usage.note(s.events)],
    };
    drop(operator);
    drop(plane);
    report
}

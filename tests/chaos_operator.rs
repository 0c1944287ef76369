//! Fault test: the operator killed (-9) in the middle of its initial sync,
//! and MeshClusters deleted while it is dead: after a restart everything
//! converges, with exactly one published object per MeshCluster and nothing
//! left of the deleted ones. Runs in `make test` and `make chaos`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::chaos::*;
use common::*;
use dualmesh::api::MeshCluster;
use dualmesh::desired::istio_operator::Rendered;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use testplane::ControlPlane;
/// How many writes of one kind the operator made, from the audit log.
fn writes_of(plane: &ControlPlane, verb: &str, resource: &str, sub: Option<&str>) -> usize {
    plane
        .writes_by(OPERATOR_USER)
        .expect("audit log")
        .iter()
        .filter(|w| w.verb == verb && w.resource == resource && w.subresource.as_deref() == sub)
        .count()
}

/// Checks what dualmesh published in one cluster's Istio namespace: exactly
/// one ConfigMap and one IstioOperator per expected MeshCluster (name ->
/// render), nothing else, each labelled and annotated for its owner.
async fn published_exactly(
    client: &Client,
    want: &BTreeMap<String, Rendered>,
) -> Result<(), String> {
    let e = |e: kube::Error| e.to_string();
    let cms = Api::<ConfigMap>::namespaced(client.clone(), ISTIO_NS)
        .list(&ListParams::default())
        .await
        .map_err(e)?;
    let cm_names: BTreeSet<String> = cms
        .items
        .iter()
        .map(ResourceExt::name_any)
        .filter(|n| n != "kube-root-ca.crt")
        .collect();
    let want_cms: BTreeSet<String> = want.keys().map(|n| format!("{n}-istiooperator")).collect();
    if cm_names != want_cms {
        return Err(format!(
            "ConfigMaps: extra {:?}, missing {:?}",
            cm_names.difference(&want_cms).collect::<Vec<_>>(),
            want_cms.difference(&cm_names).collect::<Vec<_>>()
        ));
    }
    let ios = istio_operators(client)
        .list(&ListParams::default())
        .await
        .map_err(e)?;
    let io_names: BTreeSet<String> = ios.items.iter().map(ResourceExt::name_any).collect();
    let want_ios: BTreeSet<String> = want.keys().cloned().collect();
    if io_names != want_ios {
        return Err(format!(
            "IstioOperators: extra {:?}, missing {:?}",
            io_names.difference(&want_ios).collect::<Vec<_>>(),
            want_ios.difference(&io_names).collect::<Vec<_>>()
        ));
    }
    let owned = |meta: &kube::api::ObjectMeta, mc: &str| -> Result<(), String> {
        let labels = meta.labels.clone().unwrap_or_default();
        let annotations = meta.annotations.clone().unwrap_or_default();
        let ok = labels.get(MANAGED_BY.0).map(String::as_str) == Some(MANAGED_BY.1)
            && labels.get(MESH_CLUSTER_LABEL).map(String::as_str) == Some(mc)
            && annotations.get(OWNER_ANNOTATION) == Some(&format!("{NS}/{mc}"));
        if ok {
            Ok(())
        } else {
            Err(format!(
                "{:?}: labels {labels:?} annotations {annotations:?}",
                meta.name
            ))
        }
    };
    for cm in &cms.items {
        let name = cm.name_any();
        let Some(mc) = name.strip_suffix("-istiooperator") else {
            continue;
        };
        owned(&cm.metadata, mc)?;
        let yaml = cm.data.as_ref().and_then(|d| d.get(CONFIG_MAP_KEY));
        if yaml != Some(&want[mc].yaml) {
            return Err(format!("ConfigMap {name} is stale"));
        }
    }
    for io in &ios.items {
        let name = io.name_any();
        owned(&io.metadata, &name)?;
        let spec = serde_json::to_value(&want[&name].operator.spec).unwrap();
        if io.data.get("spec") != Some(&spec) {
            return Err(format!("IstioOperator {name} is stale"));
        }
    }
    Ok(())
}

#[tokio::test]
async fn operator_killed_mid_sync_converges_without_duplicates_or_orphans() {
    const LOCAL: usize = 30;
    let (alpha, beta) = tokio::join!(start_plane("chaos-op-alpha"), start_plane("chaos-op-beta"),);
    let a = alpha.client().await.unwrap();
    let b = beta.client().await.unwrap();
    install_dualmesh_crds(&a).await;
    install_crd(&a, ISTIO_OPERATOR_CRD).await;
    install_crd(&b, ISTIO_OPERATOR_CRD).await;
    create_namespace(&a, NS).await;
    federation_sources(&a, TOKEN_1).await;
    member_kubeconfig(&a, &beta, "beta").await;
    let policy = ipv6_only();
    apply_policy(&a, "ipv6-only", &policy).await.unwrap();

    // Four member MeshClusters publishing into beta and copying the token
    // to their own target; m-0 and m-2 delete their copy on removal.
    let member = |i: usize, tag: &str| {
        let mut mc = member_mc("beta");
        let name = format!("m-{i}");
        mc.metadata.name = Some(name.clone());
        mc.spec.cluster_name = format!("cluster-{name}");
        mc.spec.network = format!("{name}-network");
        mc.spec.istio.operator_name = name.clone();
        mc.spec.istio.tag = tag.into();
        mc.spec.ingress_gateway.manage_external_ips = false;
        mc.spec.federation = Some(
            serde_json::from_value(json!({
                "secrets": [{
                    "source": {"namespace": "gloo-mesh", "name": TOKEN_SECRET},
                    "keys": [{"from": "token"}],
                    "target": {"namespace": "gloo-mesh", "name": format!("token-{name}")},
                }],
                "deleteOnRemoval": i.is_multiple_of(2),
            }))
            .unwrap(),
        );
        mc
    };
    for i in 0..4 {
        apply_mc(&a, &member(i, "1.28.0")).await.unwrap();
    }
    let mut operator = start_operator(&alpha, "operator.log", CHAOS_LOG, &[]);
    for i in 0..4 {
        wait_mc(
            &a,
            &format!("m-{i}"),
            "Ready",
            "True",
            "Ready",
            Duration::from_secs(60),
        )
        .await;
    }

    // The operator stops; meanwhile the work of a full sync piles up: 30
    // new MeshClusters, every member re-rendered, the token rotated. It
    // starts again and is killed (-9) once it is some way into that sync.
    operator.kill();
    for i in 0..LOCAL {
        let name = format!("mc-{i:02}");
        apply_mc(&a, &local_mc(&name, "ipv6-only", "1.28.0"))
            .await
            .unwrap();
    }
    for i in 0..4 {
        apply_mc(&a, &member(i, "1.28.1")).await.unwrap();
    }
    put_secret(&a, "gloo-mesh", TOKEN_SECRET, &[("token", TOKEN_2)]).await;
    // ConfigMaps are created (POST) when new and applied (PATCH) after.
    let cm_writes = || {
        writes_of(&alpha, "patch", "configmaps", None)
            + writes_of(&alpha, "create", "configmaps", None)
    };
    let cm_writes_before = cm_writes();
    operator.restart().expect("restart dualmesh");
    let sync_started = Instant::now();
    let kill_at = 3;
    loop {
        let published = cm_writes() - cm_writes_before;
        if published >= kill_at {
            break;
        }
        assert!(
            sync_started.elapsed() < Duration::from_secs(60),
            "the sync never started:\n{}",
            operator.log_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    operator.kill();
    let killed_after = sync_started.elapsed();
    // Let anything already sent reach the audit log.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let cm_published = cm_writes() - cm_writes_before;
    let finalized = Api::<MeshCluster>::namespaced(a.clone(), NS)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .filter(|mc| mc.finalizers().iter().any(|f| f == FINALIZER))
        .count();
    eprintln!(
        "operator killed -9 {} after its start, into the sync: {cm_published} of {LOCAL} new ConfigMaps written, {finalized} of {} MeshClusters with the finalizer",
        secs(killed_after),
        LOCAL + 4
    );
    assert!(
        cm_published < LOCAL,
        "the sync was over before the kill; kill earlier"
    );

    // While it is dead: deletions (some published, some not yet) and changes.
    let mut deleted_with_finalizer = Vec::new();
    let deleted: Vec<String> = [
        "mc-00", "mc-01", "mc-02", "mc-03", "mc-04", "mc-29", "m-0", "m-1",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    for name in &deleted {
        let mc = Api::<MeshCluster>::namespaced(a.clone(), NS)
            .get(name)
            .await
            .unwrap();
        if mc.finalizers().iter().any(|f| f == FINALIZER) {
            deleted_with_finalizer.push(name.clone());
        }
        delete_mc(&a, name).await.unwrap();
    }
    let mut locals: BTreeMap<String, MeshCluster> = (0..LOCAL)
        .map(|i| format!("mc-{i:02}"))
        .filter(|n| !deleted.contains(n))
        .map(|n| (n.clone(), local_mc(&n, "ipv6-only", "1.28.0")))
        .collect();
    for i in 10..15 {
        let mc = locals.get_mut(&format!("mc-{i}")).unwrap();
        mc.spec.istio.tag = "1.28.7".into();
        apply_mc(&a, mc).await.unwrap();
    }
    let members: BTreeMap<String, MeshCluster> = (2..4)
        .map(|i| (format!("m-{i}"), member(i, "1.28.1")))
        .collect();
    eprintln!(
        "while it was dead: deleted {deleted:?} ({} of them waiting for dualmesh's finalizer: {deleted_with_finalizer:?}), changed mc-10..mc-14",
        deleted_with_finalizer.len()
    );
    assert!(
        deleted_with_finalizer.len() >= 2,
        "the orphan case needs deleted MeshClusters that had published"
    );

    operator.restart().expect("restart dualmesh");
    let want_alpha: BTreeMap<String, Rendered> = locals
        .iter()
        .map(|(n, mc)| (n.clone(), render(mc, &policy)))
        .collect();
    let want_beta: BTreeMap<String, Rendered> = members
        .iter()
        .map(|(n, mc)| (n.clone(), render(mc, &policy)))
        .collect();
    let converged = time_until(Duration::from_secs(120), || async {
        let mcs = Api::<MeshCluster>::namespaced(a.clone(), NS)
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?;
        let names: BTreeSet<String> = mcs.items.iter().map(ResourceExt::name_any).collect();
        let want: BTreeSet<String> = locals.keys().chain(members.keys()).cloned().collect();
        if names != want {
            return Err(format!(
                "MeshClusters: extra {:?}, missing {:?}",
                names.difference(&want).collect::<Vec<_>>(),
                want.difference(&names).collect::<Vec<_>>()
            ));
        }
        for mc in &mcs.items {
            let name = mc.name_any();
            let rendered = want_alpha.get(&name).or(want_beta.get(&name)).unwrap();
            ready_with(mc, rendered)?;
        }
        published_exactly(&a, &want_alpha).await?;
        published_exactly(&b, &want_beta).await?;
        // The token copies: m-0's removed with it (deleteOnRemoval), m-1's
        // kept (it was synced before the kill), m-2's and m-3's rotated.
        let secrets = Api::<Secret>::namespaced(b.clone(), "gloo-mesh")
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?;
        let copies: BTreeSet<String> = secrets.items.iter().map(ResourceExt::name_any).collect();
        let want_copies: BTreeSet<String> = ["token-m-1", "token-m-2", "token-m-3"]
            .into_iter()
            .map(String::from)
            .collect();
        if copies != want_copies {
            return Err(format!("beta's Secrets {copies:?}"));
        }
        for name in ["token-m-2", "token-m-3"] {
            if secret_value(&b, "gloo-mesh", name, "token")
                .await
                .as_deref()
                != Some(TOKEN_2)
            {
                return Err(format!("{name} not rotated"));
            }
        }
        // Each member lists its one copy, once.
        for mc in mcs
            .items
            .iter()
            .filter(|mc| mc.name_any().starts_with("m-"))
        {
            let name = mc.name_any();
            let synced: Vec<String> = mc
                .status
                .as_ref()
                .map(|s| s.synced_secrets.iter().map(|x| x.target.clone()).collect())
                .unwrap_or_default();
            if synced != [format!("gloo-mesh/token-{name}")] {
                return Err(format!("{name} status.syncedSecrets {synced:?}"));
            }
        }
        Ok(())
    })
    .await;
    match &converged {
        Ok(t) => eprintln!("converged {} after the restart", secs(*t)),
        Err(last) => eprintln!("not converged 120 s after the restart: {last}"),
    }
    converged.unwrap_or_else(|last| panic!("never converged: {last}\n{}", operator.log_tail(40)));

    // No duplicates: one finalizer each, no second copy of anything
    // (published_exactly listed whole namespaces).
    for mc in Api::<MeshCluster>::namespaced(a.clone(), NS)
        .list(&ListParams::default())
        .await
        .unwrap()
    {
        assert_eq!(
            mc.finalizers(),
            [FINALIZER.to_string()],
            "{}",
            mc.name_any()
        );
    }
    assert_eq!(operator.try_status(), None, "{}", operator.log_tail(40));
    let log = operator.log();
    assert!(!log.contains("panicked"), "{log}");
}

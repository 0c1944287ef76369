//! `installWith: Sail` under the real operator on a real control plane.
//! Sail Operator itself cannot run here, and its CRDs are replaced by the
//! stand-ins of tests/fixtures/sail/crds-standin.yaml (named so there:
//! same group, kinds and scope, no schema of Sail's); this test plays
//! Sail's part by writing the objects' status as Sail would.
//!
//! Without the CRDs: `SailReady` says what to install and nothing else
//! changes. Once they are installed: the rendered Istio and IstioCNI are
//! applied with dualmesh's labels, reconciles with nothing changed write
//! nothing to them (audit log), Sail's status is read back into
//! `SailReady`, a policy change updates the Istio in place, turning CNI
//! off removes the IstioCNI, deleting the MeshCluster removes the Istio,
//! and a person's Istio of the same name is left alone (the condition says
//! how to hand it over).

mod common;

use std::time::Duration;

use common::*;
use dualmesh::api::{DualStackPolicy, InstallWith, MeshCluster};
use dualmesh::desired::install::sail;
use dualmesh::desired::validate::{validate_mesh_cluster, validate_policy};
use kube::api::{ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;
use testplane::ControlPlane;

const WAIT: Duration = Duration::from_secs(30);

fn sail_api(client: &Client, kind: &str, plural: &str) -> Api<DynamicObject> {
    Api::all_with(
        client.clone(),
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("sailoperator.io", "v1", kind),
            plural,
        ),
    )
}

async fn wait_present(api: &Api<DynamicObject>, name: &str) -> DynamicObject {
    wait_for(&format!("Sail object {name}"), WAIT, || async {
        api.get_opt(name)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "absent".to_string())
    })
    .await
}

async fn wait_gone(api: &Api<DynamicObject>, name: &str) {
    wait_for(&format!("Sail object {name} removed"), WAIT, || async {
        match api.get_opt(name).await {
            Ok(None) => Ok(()),
            Ok(Some(_)) => Err("still there".to_string()),
            Err(e) => Err(e.to_string()),
        }
    })
    .await
}

/// Writes `status` as Sail would: Ready True, on the object's generation.
async fn play_sail_ready(api: &Api<DynamicObject>, name: &str) {
    let object = api.get(name).await.expect("get Sail object");
    let status = json!({"status": {
        "observedGeneration": object.metadata.generation,
        "activeRevisionName": name,
        "conditions": [
            {"type": "Reconciled", "status": "True"},
            {"type": "Ready", "status": "True", "reason": "Healthy"},
        ],
    }});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("write Sail status");
}

#[tokio::test]
async fn sail_objects_are_applied_where_the_crds_are_read_back_and_removed() {
    let plane = ControlPlane::start_named("install-sail")
        .await
        .expect("plane");
    let client = plane.client().await.expect("client");
    install_dualmesh_crds(&client).await;
    let operator = start_operator(&plane, "operator.log", LOG, &[]);

    let policy: DualStackPolicy = example("policy-ipv6-only.yaml");
    create_policy(&client, &policy).await;
    let mut alpha: MeshCluster = example("meshcluster-alpha.yaml");
    alpha.spec.istio.install_with = InstallWith::Sail;
    // No gateway here: Ready then reads the install path alone.
    alpha.spec.ingress_gateway.manage_external_ips = false;
    create_meshcluster(&client, &alpha).await;

    // No Sail CRDs: what to install, and the IstioOperator ConfigMap still.
    let (mc, _) = wait_mc(
        &client,
        "alpha",
        "SailReady",
        "False",
        "SailNotInstalled",
        WAIT,
    )
    .await;
    let (_, _, message) = condition(&mc, "SailReady").unwrap();
    assert!(
        message.contains(
            "no CRD istios.sailoperator.io, istiocnis.sailoperator.io: install Sail Operator"
        ),
        "{message}"
    );
    wait_mc(
        &client,
        "alpha",
        "IstioConfigApplied",
        "True",
        "ConfigMapApplied",
        WAIT,
    )
    .await;
    // SailReady informs: Ready does not wait for Sail.
    wait_mc(&client, "alpha", "Ready", "True", "Ready", WAIT).await;

    // The CRDs arrive: the objects are applied as rendered.
    let standins = std::fs::read_to_string(repo().join("tests/fixtures/sail/crds-standin.yaml"))
        .expect("stand-in CRDs");
    for doc in standins.split("\n---\n") {
        install_crd(&client, doc).await;
    }
    let rendered = sail::build(
        &validate_mesh_cluster(&alpha.spec).unwrap(),
        &validate_policy(&policy.spec).unwrap(),
    );
    let kinds: Vec<(&str, &str)> = rendered
        .objects
        .iter()
        .map(|o| (o.kind, o.name.as_str()))
        .collect();
    assert_eq!(kinds, [("Istio", "default"), ("IstioCNI", "default")]);
    let istios = sail_api(&client, "Istio", "istios");
    let cnis = sail_api(&client, "IstioCNI", "istiocnis");
    for (api, object) in [
        (&istios, &rendered.objects[0]),
        (&cnis, &rendered.objects[1]),
    ] {
        let held = wait_present(api, &object.name).await;
        assert_eq!(
            held.data["spec"], object.body["spec"],
            "{} as rendered",
            object.kind
        );
        let labels = held.metadata.labels.clone().unwrap_or_default();
        assert_eq!(
            labels.get(MANAGED_BY.0).map(String::as_str),
            Some(MANAGED_BY.1)
        );
        let annotations = held.metadata.annotations.clone().unwrap_or_default();
        assert_eq!(
            annotations.get(OWNER_ANNOTATION).map(String::as_str),
            Some("dualmesh-system/alpha")
        );
    }
    let (mc, _) = wait_mc(&client, "alpha", "SailReady", "False", "SailPending", WAIT).await;
    assert_eq!(
        condition(&mc, "SailReady").unwrap().2,
        "Istio default: no status from Sail yet; IstioCNI default: no status from Sail yet"
    );

    // While Sail has not answered, dualmesh looks again every few seconds;
    // with nothing changed, it writes nothing: three passes after the
    // objects were created, each was written once (its create).
    let passes = |log: &str| log.matches("Sail objects checked").count();
    let before = passes(&operator.log());
    wait_for("three more passes over the Sail objects", WAIT, || async {
        let now = passes(&operator.log());
        if now >= before + 3 {
            Ok(())
        } else {
            Err(format!("{} passes", now - before))
        }
    })
    .await;
    let writes = operator_writes(&plane);
    let to_sail: Vec<&String> = writes
        .iter()
        .filter(|w| w.contains(" istios ") || w.contains(" istiocnis "))
        .collect();
    assert_eq!(
        to_sail,
        ["create istios /default", "create istiocnis /default"],
        "{writes:?}"
    );

    // Sail reports Ready: read back.
    play_sail_ready(&istios, "default").await;
    play_sail_ready(&cnis, "default").await;
    let (mc, _) = wait_mc(
        &client,
        "alpha",
        "SailReady",
        "True",
        "SailObjectsReady",
        WAIT,
    )
    .await;
    assert_eq!(
        condition(&mc, "SailReady").unwrap().2,
        "Istio default is Ready (active revision default); IstioCNI default is Ready (active revision default)"
    );

    // The policy changes: the Istio is updated in place, dual-stack on.
    let dual: DualStackPolicy = example("policy-dual-stack-ipv6-primary.yaml");
    create_policy(&client, &dual).await;
    let uid = istios.get("default").await.unwrap().metadata.uid;
    Api::<MeshCluster>::namespaced(client.clone(), NS)
        .patch(
            "alpha",
            &PatchParams::default(),
            &Patch::Merge(
                &json!({"spec": {"dualStackPolicyRef": {"name": "dual-stack-ipv6-primary"}}}),
            ),
        )
        .await
        .expect("patch MeshCluster");
    alpha.spec.dual_stack_policy_ref.name = "dual-stack-ipv6-primary".into();
    let dual_render = sail::build(
        &validate_mesh_cluster(&alpha.spec).unwrap(),
        &validate_policy(&dual.spec).unwrap(),
    );
    wait_for("the Istio re-rendered for dual-stack", WAIT, || async {
        let held = istios.get("default").await.map_err(|e| e.to_string())?;
        if held.data["spec"] == dual_render.objects[0].body["spec"] {
            Ok(held)
        } else {
            Err(format!("spec {}", held.data["spec"]))
        }
    })
    .await;
    let held = istios.get("default").await.unwrap();
    assert_eq!(held.metadata.uid, uid, "updated in place");
    assert_eq!(
        held.data["spec"]["values"]["pilot"]["env"]["ISTIO_DUAL_STACK"],
        "true"
    );
    // A new generation: pending until Sail reports on it.
    wait_mc(&client, "alpha", "SailReady", "False", "SailPending", WAIT).await;
    play_sail_ready(&istios, "default").await;
    play_sail_ready(&cnis, "default").await;

    // CNI off: the IstioCNI goes, the Istio stays.
    Api::<MeshCluster>::namespaced(client.clone(), NS)
        .patch(
            "alpha",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"istio": {"cni": {"enabled": false}}}})),
        )
        .await
        .expect("patch MeshCluster");
    wait_gone(&cnis, "default").await;
    alpha.spec.istio.cni.enabled = false;
    let without_cni = sail::build(
        &validate_mesh_cluster(&alpha.spec).unwrap(),
        &validate_policy(&dual.spec).unwrap(),
    );
    assert_eq!(without_cni.objects.len(), 1, "only the Istio is rendered");
    wait_for("the Istio re-rendered without CNI", WAIT, || async {
        let held = istios.get("default").await.map_err(|e| e.to_string())?;
        if held.data["spec"] == without_cni.objects[0].body["spec"] {
            Ok(())
        } else {
            Err(format!("spec {}", held.data["spec"]))
        }
    })
    .await;

    // The MeshCluster goes: so does its Istio (Sail would uninstall it).
    Api::<MeshCluster>::namespaced(client.clone(), NS)
        .delete("alpha", &DeleteParams::default())
        .await
        .expect("delete MeshCluster");
    wait_gone(&istios, "default").await;

    // A person's Istio of that name: left alone, and the condition says
    // how to hand it over.
    let theirs: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "sailoperator.io/v1",
        "kind": "Istio",
        "metadata": {"name": "default"},
        "spec": {"version": "v1.27.0", "namespace": "istio-system"},
    }))
    .unwrap();
    istios
        .create(&Default::default(), &theirs)
        .await
        .expect("a person's Istio");
    wait_gone_mc(&client, "alpha").await;
    let mut again: MeshCluster = example("meshcluster-alpha.yaml");
    again.spec.istio.install_with = InstallWith::Sail;
    again.spec.ingress_gateway.manage_external_ips = false;
    create_meshcluster(&client, &again).await;
    let (mc, _) = wait_mc(&client, "alpha", "SailReady", "False", "ApplyFailed", WAIT).await;
    let message = condition(&mc, "SailReady").unwrap().2;
    assert!(
        message.contains("Istio default exists and is not managed by dualmesh for dualmesh-system/alpha; delete it, or label it"),
        "{message}"
    );
    let held = istios.get("default").await.unwrap();
    assert_eq!(
        held.data["spec"], theirs.data["spec"],
        "a person's object is not written"
    );
}

async fn wait_gone_mc(client: &Client, name: &str) {
    let api: Api<MeshCluster> = Api::namespaced(client.clone(), NS);
    wait_for(&format!("MeshCluster {name} gone"), WAIT, || async {
        match api.get_opt(name).await {
            Ok(None) => Ok(()),
            Ok(Some(_)) => Err("still there".to_string()),
            Err(e) => Err(e.to_string()),
        }
    })
    .await
}

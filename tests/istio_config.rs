//! `dualmesh run` publishing each MeshCluster's IstioOperator into a real
//! control plane: created -> published, policy change -> re-rendered,
//! invalid policy -> Valid=False with the last good config left in place,
//! IstioOperator CRD absent/present, drift repaired, no writes in a steady
//! state (counted in the API server's audit log), delete -> cleaned up.

mod common;

use std::time::Duration;

use common::*;
use dualmesh::api::{DualStackPolicy, MeshCluster};
use dualmesh::desired::istio_operator::Rendered;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Client};
use testplane::ControlPlane;

const WAIT: Duration = Duration::from_secs(20);

async fn config_map(client: &Client, name: &str) -> Option<ConfigMap> {
    Api::<ConfigMap>::namespaced(client.clone(), ISTIO_NS)
        .get_opt(name)
        .await
        .expect("get ConfigMap")
}

async fn wait_published(client: &Client, cm_name: &str, want: &Rendered) {
    wait_for(
        &format!("ConfigMap {cm_name} to hold the render"),
        WAIT,
        || async {
            match config_map(client, cm_name).await {
                Some(cm) if published_yaml(&cm) == want.yaml => Ok(()),
                Some(cm) => Err(format!("stale:\n{}", published_yaml(&cm))),
                None => Err("absent".into()),
            }
        },
    )
    .await;
}

async fn get_mc(client: &Client, name: &str) -> MeshCluster {
    Api::<MeshCluster>::namespaced(client.clone(), NS)
        .get(name)
        .await
        .expect("get MeshCluster")
}

async fn wait_condition(
    client: &Client,
    name: &str,
    type_: &str,
    status: &str,
    reason: &str,
) -> MeshCluster {
    wait_mc(client, name, type_, status, reason, WAIT).await.0
}

/// Replaces the whole spec of policy `name`.
async fn set_policy_spec(client: &Client, name: &str, spec: &serde_json::Value) {
    let api = Api::<DualStackPolicy>::all(client.clone());
    let mut policy = api.get(name).await.expect("get policy");
    policy.spec = serde_json::from_value(spec.clone()).expect("policy spec");
    api.replace(name, &Default::default(), &policy)
        .await
        .expect("replace policy");
}

#[tokio::test]
async fn publishes_follows_the_policy_keeps_the_last_good_config_and_cleans_up() {
    let plane = ControlPlane::start_named("istio-config")
        .await
        .expect("plane");
    let client = plane.client().await.expect("client");
    install_dualmesh_crds(&client).await;
    let operator = start_operator(&plane, "operator.log", LOG, &[]);

    let ipv6_only: DualStackPolicy = example("policy-ipv6-only.yaml");
    let dual: DualStackPolicy = example("policy-dual-stack-ipv6-primary.yaml");
    let alpha: MeshCluster = example("meshcluster-alpha.yaml");
    create_policy(&client, &ipv6_only).await;
    create_meshcluster(&client, &alpha).await;
    // Its gateway (so the steady state below covers that job too).
    create_gateway(&client, "node-a", &["2001:db8::a", "192.0.2.10"]).await;

    // Created -> published, ConfigMap only (no IstioOperator CRD yet).
    let first = render(&alpha, &ipv6_only.spec);
    wait_published(&client, "alpha-istiooperator", &first).await;
    let mc = wait_condition(&client, "alpha", "Ready", "True", "Ready").await;
    let (_, reason, message) = condition(&mc, "IstioConfigApplied").expect("condition");
    assert_eq!(reason, "ConfigMapApplied");
    assert!(
        message.contains("CRD istiooperators.install.istio.io is not installed"),
        "{message}"
    );
    let status = mc.status.clone().expect("status");
    assert_eq!(status.observed_generation, mc.metadata.generation);
    assert_eq!(
        status.istio_config_hash.as_deref(),
        Some(first.hash.as_str())
    );
    assert_eq!(status.ip_families.as_deref(), Some("IPv6"));
    let published = status.published.expect("published");
    assert_eq!(published.config_map, "istio-system/alpha-istiooperator");
    assert_eq!(published.istio_operator, None);
    let cm = config_map(&client, "alpha-istiooperator")
        .await
        .expect("cm");
    let labels = cm.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        labels
            .get("app.kubernetes.io/managed-by")
            .map(String::as_str),
        Some("dualmesh")
    );
    let managers: Vec<String> = cm
        .metadata
        .managed_fields
        .unwrap_or_default()
        .iter()
        .filter_map(|m| m.manager.clone())
        .collect();
    assert_eq!(managers, vec!["dualmesh".to_string()]);

    // The policy's status says who uses it.
    wait_for("policy ipv6-only usedBy alpha", WAIT, || async {
        let p = Api::<DualStackPolicy>::all(client.clone())
            .get("ipv6-only")
            .await
            .unwrap();
        let s = p.status.unwrap_or_default();
        let valid = s
            .conditions
            .iter()
            .any(|c| c.type_ == "Valid" && c.status == "True");
        if valid && s.in_use == 1 && s.used_by == vec!["dualmesh-system/alpha".to_string()] {
            Ok(())
        } else {
            Err(format!("{s:?}"))
        }
    })
    .await;

    // A policy change re-renders: ipv6-only becomes dual-stack.
    let dual_spec = serde_json::to_value(&dual.spec).unwrap();
    set_policy_spec(&client, "ipv6-only", &dual_spec).await;
    let second = render(&alpha, &dual.spec);
    assert_ne!(first.hash, second.hash);
    assert!(second.yaml.contains("ISTIO_DUAL_STACK"));
    wait_published(&client, "alpha-istiooperator", &second).await;
    wait_for("status hash of the second render", WAIT, || async {
        let s = get_mc(&client, "alpha").await.status.unwrap_or_default();
        if s.istio_config_hash.as_deref() == Some(second.hash.as_str())
            && s.ip_families.as_deref() == Some("IPv6,IPv4")
        {
            Ok(())
        } else {
            Err(format!("{:?} {:?}", s.istio_config_hash, s.ip_families))
        }
    })
    .await;

    // An invalid policy (overlapping CIDRs: CEL cannot see it) sets
    // Valid=False naming the field and leaves the last good config alone.
    // The operator's writes of the ConfigMap, from the audit log: none may
    // come while the policy is invalid, nor when it is fixed to what it was.
    let config_map_writes = || {
        operator_writes(&plane)
            .iter()
            .filter(|w| *w == &format!("patch configmaps {ISTIO_NS}/alpha-istiooperator"))
            .count()
    };
    let writes_before_invalid = config_map_writes();
    let mut bad = dual_spec.clone();
    bad["addressPlan"]["ipv6"]["podCIDR"] = "fd00:10:96::/104".into();
    set_policy_spec(&client, "ipv6-only", &bad).await;
    let mc = wait_condition(&client, "alpha", "Valid", "False", "PolicyInvalid").await;
    let (_, _, message) = condition(&mc, "Valid").unwrap();
    assert!(
        message.contains("spec.addressPlan.ipv6.podCIDR") && message.contains("overlaps"),
        "{message}"
    );
    let (ready, _, _) = condition(&mc, "Ready").unwrap();
    assert_eq!(ready, "False");
    // What is in the cluster is still the last good render.
    let (applied, _, _) = condition(&mc, "IstioConfigApplied").unwrap();
    assert_eq!(applied, "True");
    assert_eq!(
        mc.status.unwrap().istio_config_hash.as_deref(),
        Some(second.hash.as_str())
    );
    // The reconcile that wrote Valid=False wrote the ConfigMap before its
    // status, if at all: it did not.
    assert_eq!(config_map_writes(), writes_before_invalid);
    assert_eq!(
        published_yaml(&config_map(&client, "alpha-istiooperator").await.unwrap()),
        second.yaml
    );
    wait_for("policy Valid=False", WAIT, || async {
        let p = Api::<DualStackPolicy>::all(client.clone())
            .get("ipv6-only")
            .await
            .unwrap();
        let s = p.status.unwrap_or_default();
        match s.conditions.iter().find(|c| c.type_ == "Valid") {
            Some(c)
                if c.status == "False" && c.message.contains("spec.addressPlan.ipv6.podCIDR") =>
            {
                Ok(())
            }
            other => Err(format!("{other:?}")),
        }
    })
    .await;

    // Fixed again -> Valid, same config (no change needed).
    set_policy_spec(&client, "ipv6-only", &dual_spec).await;
    wait_condition(&client, "alpha", "Ready", "True", "Ready").await;
    assert_eq!(
        config_map_writes(),
        writes_before_invalid,
        "the ConfigMap was written while the policy was invalid or after the fix"
    );

    // The IstioOperator CRD appears -> the object is published too.
    install_crd(&client, ISTIO_OPERATOR_CRD).await;
    let mc = wait_condition(
        &client,
        "alpha",
        "IstioConfigApplied",
        "True",
        "ConfigMapAndIstioOperatorApplied",
    )
    .await;
    assert_eq!(
        mc.status
            .unwrap()
            .published
            .unwrap()
            .istio_operator
            .as_deref(),
        Some("istio-system/istio-control-plane")
    );
    let io = istio_operators(&client)
        .get("istio-control-plane")
        .await
        .expect("IstioOperator");
    assert_eq!(
        io.data["spec"],
        serde_json::to_value(&second.operator.spec).unwrap()
    );

    // Someone edits the published ConfigMap: it is repaired.
    Api::<ConfigMap>::namespaced(client.clone(), ISTIO_NS)
        .patch(
            "alpha-istiooperator",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"data": {CONFIG_MAP_KEY: "edited"}})),
        )
        .await
        .unwrap();
    wait_published(&client, "alpha-istiooperator", &second).await;

    // Steady state: no write requests from the operator for 30 s, once the
    // writes the repair caused (its queued Events too) have all arrived.
    let before = wait_writes_settled(&plane, WAIT).await;
    tokio::time::sleep(Duration::from_secs(30)).await;
    let after = operator_writes(&plane);
    assert!(
        after.len() == before.len(),
        "writes in a steady state: {:?}",
        &after[before.len()..]
    );
    assert!(
        !before.is_empty(),
        "the audit log saw the operator's writes"
    );

    // Delete -> what it published is removed, then the MeshCluster goes.
    Api::<MeshCluster>::namespaced(client.clone(), NS)
        .delete("alpha", &DeleteParams::default())
        .await
        .unwrap();
    wait_for(
        "alpha gone with its ConfigMap and IstioOperator",
        WAIT,
        || async {
            let mc = Api::<MeshCluster>::namespaced(client.clone(), NS)
                .get_opt("alpha")
                .await
                .unwrap();
            let cm = config_map(&client, "alpha-istiooperator").await;
            let io = istio_operators(&client)
                .get_opt("istio-control-plane")
                .await
                .unwrap();
            if mc.is_none() && cm.is_none() && io.is_none() {
                Ok(())
            } else {
                Err(format!(
                    "mc {} cm {} io {}",
                    mc.is_some(),
                    cm.is_some(),
                    io.is_some()
                ))
            }
        },
    )
    .await;
    wait_for("policy no longer in use", WAIT, || async {
        let p = Api::<DualStackPolicy>::all(client.clone())
            .get("ipv6-only")
            .await
            .unwrap();
        let s = p.status.unwrap_or_default();
        if s.in_use == 0 && s.used_by.is_empty() {
            Ok(())
        } else {
            Err(format!("{s:?}"))
        }
    })
    .await;

    let log = operator.log();
    assert!(!log.contains("panicked"), "operator log:\n{log}");
}

#[tokio::test]
async fn invalid_or_foreign_input_publishes_nothing() {
    let plane = ControlPlane::start_named("istio-invalid")
        .await
        .expect("plane");
    let client = plane.client().await.expect("client");
    install_dualmesh_crds(&client).await;
    let _operator = start_operator(&plane, "operator.log", LOG, &[]);
    let policy: DualStackPolicy = example("policy-ipv6-only.yaml");
    create_policy(&client, &policy).await;

    // A MeshCluster naming a policy that does not exist.
    let mut lost: MeshCluster = example("meshcluster-alpha.yaml");
    lost.metadata.name = Some("lost".into());
    lost.spec.dual_stack_policy_ref.name = "nope".into();
    // No gateway on this plane: Ready then depends on the Istio config only.
    lost.spec.ingress_gateway.manage_external_ips = false;
    create_meshcluster(&client, &lost).await;

    // A MeshCluster whose federation names one target twice (checked by the
    // controller: the CEL rule for it exceeded the cost budget).
    let mut twice: MeshCluster = example("meshcluster-alpha.yaml");
    twice.metadata.name = Some("twice".into());
    twice.spec.federation = Some(serde_json::from_value(serde_json::json!({
        "secrets": [
            {"source": {"namespace": "gloo-mesh", "name": "a"}, "target": {"namespace": "gloo-mesh", "name": "t"}},
            {"source": {"namespace": "gloo-mesh", "name": "b"}, "target": {"namespace": "gloo-mesh", "name": "t"}}
        ]
    })).unwrap());
    create_meshcluster(&client, &twice).await;

    // A MeshCluster whose ConfigMap name is taken by someone else's object.
    create_namespace(&client, ISTIO_NS).await;
    let foreign: ConfigMap = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "taken-istiooperator", "namespace": ISTIO_NS},
        "data": {CONFIG_MAP_KEY: "mine"}
    }))
    .unwrap();
    Api::<ConfigMap>::namespaced(client.clone(), ISTIO_NS)
        .create(&Default::default(), &foreign)
        .await
        .unwrap();
    let mut taken: MeshCluster = example("meshcluster-alpha.yaml");
    taken.metadata.name = Some("taken".into());
    create_meshcluster(&client, &taken).await;

    let mc = wait_condition(&client, "lost", "Valid", "False", "PolicyNotFound").await;
    let (_, _, message) = condition(&mc, "Valid").unwrap();
    assert!(
        message.starts_with("spec.dualStackPolicyRef.name"),
        "{message}"
    );

    let mc = wait_condition(&client, "twice", "Valid", "False", "InvalidSpec").await;
    let (_, _, message) = condition(&mc, "Valid").unwrap();
    assert!(
        message.contains("spec.federation.secrets[1].target"),
        "{message}"
    );

    let mc = wait_condition(
        &client,
        "taken",
        "IstioConfigApplied",
        "False",
        "ApplyFailed",
    )
    .await;
    let (_, _, message) = condition(&mc, "IstioConfigApplied").unwrap();
    assert!(
        message.contains(
            "ConfigMap istio-system/taken-istiooperator exists and is not managed by dualmesh"
        ),
        "{message}"
    );

    // Nothing was published for the invalid ones; the foreign object is untouched.
    assert!(config_map(&client, "lost-istiooperator").await.is_none());
    assert!(config_map(&client, "twice-istiooperator").await.is_none());
    let cm = config_map(&client, "taken-istiooperator").await.unwrap();
    assert_eq!(published_yaml(&cm), "mine");
    assert_eq!(cm.metadata.labels, None);

    // Fixing the reference publishes.
    Api::<MeshCluster>::namespaced(client.clone(), NS)
        .patch(
            "lost",
            &PatchParams::default(),
            &Patch::Merge(
                serde_json::json!({"spec": {"dualStackPolicyRef": {"name": "ipv6-only"}}}),
            ),
        )
        .await
        .unwrap();
    let mut fixed = lost.clone();
    fixed.spec.dual_stack_policy_ref.name = "ipv6-only".into();
    wait_published(&client, "lost-istiooperator", &render(&fixed, &policy.spec)).await;
    wait_condition(&client, "lost", "Ready", "True", "Ready").await;
}

//! One install, end to end, with Istio's own charts (issue 15, item 6): on
//! a cluster plane (scheduler, controller-manager, kwok), dualmesh
//! publishes the Helm values of an `installWith: Helm` MeshCluster; the
//! built helm installs Istio's `base`, `istiod` and `gateway` charts from
//! the pinned istio.io/istio module with exactly those values files; the
//! gateway chart's Deployment is scheduled onto a fake Node and kwok makes
//! it Ready; dualmesh then sets the chart's Service's `spec.externalIPs`
//! to that node's address, owning that field only. A `helm upgrade` of the
//! gateway release leaves the addresses in place (helm's three-way merge
//! never names a field its manifests do not hold) and dualmesh writes
//! nothing after it (audit log).

mod common;

use std::time::Duration;

use common::istio_charts::{chart_dir, charts};
use common::*;
use dualmesh::api::{DualStackPolicy, InstallWith, MeshCluster};
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kube::Api;
use testplane::fake_nodes::create_fake_nodes;
use testplane::{ControlPlane, PlaneOptions};

const WAIT: Duration = Duration::from_secs(60);

/// The chart's gateway Service as held: externalIPs and who owns what.
async fn gateway_service(client: &kube::Client) -> Option<Service> {
    Api::<Service>::namespaced(client.clone(), ISTIO_NS)
        .get_opt(GW)
        .await
        .expect("get gateway Service")
}

fn external_ips(svc: &Service) -> Vec<String> {
    svc.spec
        .as_ref()
        .and_then(|s| s.external_ips.clone())
        .unwrap_or_default()
}

/// The top-level spec fields field manager `manager` owns in `svc`.
fn owned_spec_fields(svc: &Service, manager: &str) -> Vec<String> {
    let mut out: Vec<String> = svc
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter(|m| m.manager.as_deref() == Some(manager))
        .filter_map(|m| m.fields_v1.as_ref())
        .filter_map(|f| f.0.get("f:spec").and_then(|s| s.as_object()).cloned())
        .flat_map(|spec| spec.keys().cloned().collect::<Vec<_>>())
        .collect();
    out.sort();
    out.dedup();
    out
}

fn helm_install(
    plane: &ControlPlane,
    verb: &str,
    release: &str,
    chart: &str,
    values: &std::path::Path,
) {
    let out = plane
        .helm()
        .args([verb, release])
        .arg(charts().join(chart_dir(chart)))
        .args(["-n", ISTIO_NS, "--create-namespace", "-f"])
        .arg(values)
        .output()
        .expect("run helm");
    assert!(
        out.status.success(),
        "helm {verb} {release}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn istios_charts_install_from_dualmesh_values_and_dualmesh_manages_the_charts_gateway_service()
 {
    let plane = ControlPlane::start(PlaneOptions::named("helm-e2e").cluster())
        .await
        .expect("cluster plane");
    let client = plane.client().await.expect("client");
    install_dualmesh_crds(&client).await;
    create_fake_nodes(&client, &[("node-1", &[("InternalIP", "2001:db8::1")])])
        .await
        .expect("fake Node");
    let _operator = start_operator(&plane, "operator.log", LOG, &[]);
    let policy: DualStackPolicy = example("policy-ipv6-only.yaml");
    create_policy(&client, &policy).await;
    let mut alpha: MeshCluster = example("meshcluster-alpha.yaml");
    alpha.spec.istio.install_with = InstallWith::Helm;
    create_meshcluster(&client, &alpha).await;

    // The values files, as published.
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ISTIO_NS);
    let data = wait_for("the Helm values ConfigMap", WAIT, || async {
        cms.get_opt("alpha-helm-values")
            .await
            .map_err(|e| e.to_string())?
            .and_then(|cm| cm.data)
            .ok_or_else(|| "absent".to_string())
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    for (key, text) in &data {
        std::fs::write(dir.path().join(key), text).unwrap();
    }

    // Istio's charts, installed from them.
    helm_install(
        &plane,
        "install",
        "istio-base",
        "base",
        &dir.path().join("base.yaml"),
    );
    helm_install(
        &plane,
        "install",
        "istiod",
        "istiod",
        &dir.path().join("istiod.yaml"),
    );
    // istiod's Pod is a kwok stand-in: nothing answers the sidecar
    // injection webhooks its chart registers (every mutating webhook on
    // this plane), and the API server refuses every Pod they match (the
    // gateway's, labelled for gateway injection). A departure from a real
    // cluster, so they are removed here: the gateway Pod then runs
    // uninjected, which changes nothing dualmesh reads (its node and its
    // readiness).
    let out = plane
        .kubectl()
        .args(["delete", "mutatingwebhookconfigurations", "--all"])
        .output()
        .expect("kubectl");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("istio-sidecar-injector"),
        "the istiod chart registers its injection webhook: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    helm_install(
        &plane,
        "install",
        GW,
        "gateway",
        &dir.path().join("gateway.yaml"),
    );

    // The chart's Deployment runs on node-1; dualmesh publishes its address
    // on the chart's Service and owns nothing there but externalIPs.
    let svc = wait_for(
        "externalIPs on the chart's gateway Service",
        WAIT,
        || async {
            match gateway_service(&client).await {
                Some(svc) if external_ips(&svc) == ["2001:db8::1"] => Ok(svc),
                Some(svc) => {
                    let mc = Api::<MeshCluster>::namespaced(client.clone(), NS)
                        .get("alpha")
                        .await
                        .map_err(|e| e.to_string())?;
                    let pods = plane
                        .kubectl()
                        .args(["get", "pods,events", "-n", ISTIO_NS])
                        .output()
                        .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
                        .unwrap_or_default();
                    Err(format!(
                        "externalIPs {:?}; GatewayAddressesReady {:?}\n{pods}",
                        external_ips(&svc),
                        condition(&mc, "GatewayAddressesReady")
                    ))
                }
                None => Err("no Service yet".to_string()),
            }
        },
    )
    .await;
    assert_eq!(owned_spec_fields(&svc, "dualmesh"), ["f:externalIPs"]);
    let families = svc.spec.as_ref().and_then(|s| s.ip_families.clone());
    assert_eq!(
        families,
        Some(vec!["IPv6".to_string()]),
        "the chart set the policy's family"
    );
    wait_mc(
        &client,
        "alpha",
        "GatewayAddressesReady",
        "True",
        "AddressesPublished",
        WAIT,
    )
    .await;

    // helm upgrade of the gateway release: the addresses stay, and
    // dualmesh has nothing to repair.
    let before = wait_writes_settled(&plane, WAIT).await;
    helm_install(
        &plane,
        "upgrade",
        GW,
        "gateway",
        &dir.path().join("gateway.yaml"),
    );
    let after_upgrade = gateway_service(&client).await.expect("the Service stays");
    assert_eq!(
        external_ips(&after_upgrade),
        ["2001:db8::1"],
        "helm upgrade kept dualmesh's addresses"
    );
    let after = wait_writes_settled(&plane, WAIT).await;
    let to_service: Vec<&String> = after[before.len()..]
        .iter()
        .filter(|w| w.contains(&format!("services {ISTIO_NS}/{GW}")))
        .collect();
    assert!(
        to_service.is_empty(),
        "dualmesh rewrote the Service after helm upgrade: {to_service:?}"
    );
}

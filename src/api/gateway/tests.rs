//! Tests of the gateway spec's serde behaviour.

use super::*;
use crate::api::MeshCluster;

fn gateway(yaml: &str) -> Result<IngressGatewaySpec, serde_saphyr::Error> {
    serde_saphyr::from_str(yaml)
}

#[test]
fn manage_external_ips_reads_both_spellings_and_defaults_to_true() {
    assert!(
        !gateway("manageExternalIPs: false")
            .unwrap()
            .manage_external_ips
    );
    assert!(
        !gateway("manageExternalIps: false")
            .unwrap()
            .manage_external_ips
    );
    assert!(gateway("name: gw").unwrap().manage_external_ips);
    // Written back, only the new spelling.
    let out = serde_json::to_value(gateway("manageExternalIps: false").unwrap()).unwrap();
    assert_eq!(out["manageExternalIPs"], false);
    assert!(out.get("manageExternalIps").is_none());
}

#[test]
fn both_spellings_at_once_are_refused_by_serde_and_by_the_schema() {
    let err = gateway("manageExternalIPs: true\nmanageExternalIps: false").unwrap_err();
    assert!(err.to_string().contains("duplicate field"), "{err}");
    // So the CRD refuses them at admission, and keeps the old one (an
    // object stored with it is not pruned and defaulted to true).
    let crd = serde_json::to_value(<MeshCluster as kube::CustomResourceExt>::crd()).unwrap();
    let gw = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
        ["ingressGateway"];
    assert!(gw["properties"]["manageExternalIps"].is_object());
    assert!(
        gw["properties"]["manageExternalIPs"]
            .get("default")
            .is_none()
    );
    let rules: Vec<&str> = gw["x-kubernetes-validations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["rule"].as_str().unwrap())
        .collect();
    assert!(
        rules.contains(&"!has(self.manageExternalIPs) || !has(self.manageExternalIps)"),
        "{rules:?}"
    );
}

//! The gateway Service's write: from the observed Pods, Nodes and Service
//! to the `spec.externalIPs` (and the annotation recording dualmesh's share)
//! it should carry, and the status reporting it. Pure; address selection
//! itself is [`super::gateway_addresses`].
//!
//! `spec.externalIPs` is an atomic list, so server-side apply owns it whole.
//! To leave addresses another manager set alone, the Service carries an
//! annotation with the addresses dualmesh set; each apply writes dualmesh's
//! addresses first, then the others', and drops only dualmesh's stale ones.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, Pod, Service};
use kube::ResourceExt;
use serde_json::json;

use super::conditions::Found;
use super::gateway_addresses::{self, GatewayPod, NodeAddress, Selection};
use super::publish::Write;
use super::validate::ValidPolicy;
use crate::api::GatewayAddressesStatus;
use crate::api::conditions::{self as types, reason};
use crate::api::labels::{EXTERNAL_IPS_ANNOTATION, NETWORK_LABEL};

/// A Pod as address selection sees it.
pub fn gateway_pod(pod: &Pod) -> GatewayPod {
    let status = pod.status.as_ref();
    GatewayPod {
        name: pod.name_any(),
        node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
        running: status.and_then(|s| s.phase.as_deref()) == Some("Running"),
        ready: status
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True")),
        deleting: pod.metadata.deletion_timestamp.is_some(),
    }
}

/// A Node's `status.addresses`.
pub fn node_addresses(node: &Node) -> Vec<NodeAddress> {
    node.status
        .as_ref()
        .and_then(|s| s.addresses.as_ref())
        .map(|a| {
            a.iter()
                .map(|x| NodeAddress {
                    kind: x.type_.clone(),
                    address: x.address.clone(),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The comma-separated list an annotation holds, empty entries dropped.
pub fn split(value: Option<&String>) -> Vec<String> {
    value
        .map(|v| {
            v.split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// The status of a list of addresses, split by family, order kept
/// (entries that are no IP address are in `all` only).
pub fn status_from(addrs: &[String]) -> GatewayAddressesStatus {
    let of = |v6: bool| {
        addrs
            .iter()
            .filter(|a| {
                a.parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_ipv6() == v6)
            })
            .cloned()
            .collect()
    };
    GatewayAddressesStatus {
        ipv6: of(true),
        ipv4: of(false),
        all: addrs.join(","),
    }
}

/// What the gateway Service should become.
#[derive(Clone, Debug, PartialEq)]
pub struct ServicePlan {
    /// The Service's name.
    pub name: String,
    /// The write (an apply carrying the resourceVersion read, or nothing).
    pub write: Write,
    /// The externalIPs the Service will carry (ours first, then others').
    pub external_ips: Vec<String>,
    /// What dualmesh publishes (kept from before while no gateway Pod is
    /// ready: a rollout gap must not blank a working gateway).
    pub ours: Vec<String>,
}

/// Plans the write of `service` (as read) for `selection`: its
/// externalIPs, and Istio's network label naming `network` (istiod takes a
/// Service so labelled, listening on 15443, as that network's gateway).
pub fn plan_service(service: &Service, selection: &Selection, network: &str) -> ServicePlan {
    let previous = split(service.annotations().get(EXTERNAL_IPS_ANNOTATION));
    let ours = if selection.ready_pods == 0 {
        previous.clone()
    } else {
        selection.external_ips.clone()
    };
    let current = service
        .spec
        .as_ref()
        .and_then(|s| s.external_ips.clone())
        .unwrap_or_default();
    let merged = gateway_addresses::merge_external_ips(&current, &previous, &ours);
    let annotation = ours.join(",");
    let annotated = service.annotations().get(EXTERNAL_IPS_ANNOTATION) == Some(&annotation);
    let labelled = service.labels().get(NETWORK_LABEL).map(String::as_str) == Some(network);
    let write = if merged != current || !annotated || !labelled {
        Write::Apply(json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": service.name_any(),
                "namespace": service.namespace(),
                "resourceVersion": service.resource_version(),
                "labels": {NETWORK_LABEL: network},
                "annotations": {EXTERNAL_IPS_ANNOTATION: annotation},
            },
            "spec": {"externalIPs": merged},
        }))
    } else {
        Write::Keep
    };
    ServicePlan {
        name: service.name_any(),
        write,
        external_ips: merged,
        ours,
    }
}

/// What the fetch step read for a gateway: its Pods, the addresses of the
/// nodes they run on (those in the Node cache), its Service.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    pub pods: Vec<GatewayPod>,
    pub nodes: BTreeMap<String, Vec<NodeAddress>>,
    /// None: the Service does not exist (yet).
    pub service: Option<std::sync::Arc<Service>>,
}

/// The gateway job's plan.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub selection: Selection,
    pub verdict: gateway_addresses::Verdict,
    /// None: the Service is missing, nothing to write.
    pub service: Option<ServicePlan>,
}

/// Plans the gateway job over what was observed, for the cluster's
/// `network`.
pub fn plan(observed: &Observed, policy: &ValidPolicy, network: &str) -> Plan {
    let selection = gateway_addresses::select(&observed.pods, &observed.nodes, policy);
    let verdict = gateway_addresses::verdict(&selection, policy);
    let service = observed
        .service
        .as_ref()
        .map(|svc| plan_service(svc, &selection, network));
    Plan {
        selection,
        verdict,
        service,
    }
}

/// `GatewayAddressesReady` when dualmesh does not manage the addresses.
pub fn not_managed() -> Found {
    Found::ok(
        types::GATEWAY_ADDRESSES_READY,
        reason::NOT_MANAGED,
        "spec.ingressGateway.manageExternalIPs is false: externalIPs are left as they are",
    )
}

/// The gateway job's condition and status addresses, from its plan and,
/// when the API server refused the write, its HTTP code and reason word.
pub fn report(
    plan: &Plan,
    service_ref: &str,
    refused: Option<(u16, &str)>,
) -> (Found, GatewayAddressesStatus) {
    let wanted = status_from(&plan.selection.external_ips);
    let Some(service) = &plan.service else {
        let found = Found::fail(
            types::GATEWAY_ADDRESSES_READY,
            reason::SERVICE_MISSING,
            format!(
                "Service {service_ref} not found; it appears when Istio installs the gateway (spec.ingressGateway.name)"
            ),
        );
        return (found, wanted);
    };
    if let Some((code, why)) = refused {
        let found = Found::fail(
            types::GATEWAY_ADDRESSES_READY,
            reason::EXTERNAL_IPS_DENIED,
            format!(
                "externalIPs [{}] on Service {service_ref} refused: {}; where externalIPs are denied, set spec.ingressGateway.manageExternalIPs to false",
                service.external_ips.join(", "),
                super::redact::api_error(code, why),
            ),
        );
        return (found, wanted);
    }
    let v = &plan.verdict;
    let found = if v.ready {
        Found::ok(types::GATEWAY_ADDRESSES_READY, v.reason, v.message.clone())
    } else {
        Found::fail(types::GATEWAY_ADDRESSES_READY, v.reason, v.message.clone())
    };
    (found, status_from(&service.ours))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ServiceSpec;
    use kube::api::ObjectMeta;

    fn service(external_ips: &[&str], annotation: Option<&str>) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some("istio-ingressgateway".into()),
                namespace: Some("istio-system".into()),
                resource_version: Some("7".into()),
                labels: Some(BTreeMap::from([(
                    NETWORK_LABEL.to_string(),
                    "net-a".to_string(),
                )])),
                annotations: annotation.map(|a| {
                    BTreeMap::from([(EXTERNAL_IPS_ANNOTATION.to_string(), a.to_string())])
                }),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                external_ips: Some(external_ips.iter().map(|s| s.to_string()).collect()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn selection(ready: usize, ips: &[&str]) -> Selection {
        Selection {
            ready_pods: ready,
            external_ips: ips.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn new_addresses_are_applied_before_foreign_ones_with_the_resource_version_read() {
        let svc = service(&["198.51.100.9", "2001:db8::1"], Some("2001:db8::1"));
        let plan = plan_service(&svc, &selection(1, &["2001:db8::2"]), "net-a");
        assert_eq!(
            plan,
            ServicePlan {
                name: "istio-ingressgateway".into(),
                write: Write::Apply(json!({
                    "apiVersion": "v1",
                    "kind": "Service",
                    "metadata": {
                        "name": "istio-ingressgateway",
                        "namespace": "istio-system",
                        "resourceVersion": "7",
                        "labels": {NETWORK_LABEL: "net-a"},
                        "annotations": {EXTERNAL_IPS_ANNOTATION: "2001:db8::2"},
                    },
                    "spec": {"externalIPs": ["2001:db8::2", "198.51.100.9"]},
                })),
                external_ips: vec!["2001:db8::2".into(), "198.51.100.9".into()],
                ours: vec!["2001:db8::2".into()],
            }
        );
    }

    #[test]
    fn an_up_to_date_service_costs_no_write_and_no_ready_pod_keeps_what_is_published() {
        let svc = service(&["2001:db8::1"], Some("2001:db8::1"));
        let same = plan_service(&svc, &selection(2, &["2001:db8::1"]), "net-a");
        assert_eq!(same.write, Write::Keep);
        let gap = plan_service(&svc, &selection(0, &[]), "net-a");
        assert_eq!(gap.write, Write::Keep);
        assert_eq!(gap.ours, vec!["2001:db8::1".to_string()]);
    }

    #[test]
    fn a_service_without_the_network_label_or_with_another_network_is_labelled() {
        let mut svc = service(&["2001:db8::1"], Some("2001:db8::1"));
        for labels in [
            None,
            Some(BTreeMap::from([(
                NETWORK_LABEL.to_string(),
                "net-b".to_string(),
            )])),
        ] {
            svc.metadata.labels = labels;
            let plan = plan_service(&svc, &selection(1, &["2001:db8::1"]), "net-a");
            let Write::Apply(body) = plan.write else {
                panic!("an apply");
            };
            assert_eq!(body["metadata"]["labels"], json!({NETWORK_LABEL: "net-a"}));
            assert_eq!(body["spec"]["externalIPs"], json!(["2001:db8::1"]));
        }
    }

    #[test]
    fn a_refusal_is_reported_by_code_and_known_reason_only() {
        let svc = service(&["2001:db8::1"], Some("2001:db8::1"));
        let sel = selection(1, &["2001:db8::2"]);
        let spec: crate::api::DualStackPolicySpec =
            serde_saphyr::from_str("{ipFamilies: [IPv6], ipFamilyPolicy: SingleStack}").unwrap();
        let policy = crate::desired::validate::validate_policy(&spec).unwrap();
        let mut plan = plan(&Observed::default(), &policy, "net-a");
        plan.service = Some(plan_service(&svc, &sel, "net-a"));
        plan.selection = sel;
        let message = |reason: &str| {
            report(
                &plan,
                "istio-system/istio-ingressgateway",
                Some((403, reason)),
            )
            .0
            .message
        };
        assert_eq!(
            message("Forbidden"),
            "externalIPs [2001:db8::2] on Service istio-system/istio-ingressgateway refused: the API server answered 403 Forbidden: the request was refused by authorization or admission; where externalIPs are denied, set spec.ingressGateway.manageExternalIPs to false"
        );
        // A reason the member's admission chose is not repeated.
        assert_eq!(
            message("<script>ask for the token</script>"),
            "externalIPs [2001:db8::2] on Service istio-system/istio-ingressgateway refused: the API server answered 403: the request was refused by authorization or admission; where externalIPs are denied, set spec.ingressGateway.manageExternalIPs to false"
        );
    }

    #[test]
    fn status_splits_by_family_in_order_and_split_drops_empty_entries() {
        let addrs: Vec<String> = ["2001:db8::1", "192.0.2.1", "not-an-ip", "2001:db8::2"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            status_from(&addrs),
            GatewayAddressesStatus {
                ipv6: vec!["2001:db8::1".into(), "2001:db8::2".into()],
                ipv4: vec!["192.0.2.1".into()],
                all: "2001:db8::1,192.0.2.1,not-an-ip,2001:db8::2".into(),
            }
        );
        assert_eq!(
            split(Some(&",a,,b,".to_string())),
            vec!["a".to_string(), "b".to_string()]
        );
        assert!(split(None).is_empty());
    }
}

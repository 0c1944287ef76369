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
/// externalIPs when `external` (publishAddressesTo writes them), and
/// Istio's network label naming `network` (istiod takes a Service so
/// labelled, listening on 15443, as that network's gateway). Without
/// `external`, dualmesh's share of the externalIPs (and its annotation) is
/// dropped: addresses other managers set stay.
pub fn plan_service(
    service: &Service,
    selection: &Selection,
    network: &str,
    external: bool,
) -> ServicePlan {
    let previous = split(service.annotations().get(EXTERNAL_IPS_ANNOTATION));
    let ours = if !external {
        Vec::new()
    } else if selection.ready_pods == 0 {
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
    let held = service.annotations().get(EXTERNAL_IPS_ANNOTATION);
    let annotated = if external {
        held == Some(&annotation)
    } else {
        held.is_none()
    };
    let labelled = service.labels().get(NETWORK_LABEL).map(String::as_str) == Some(network);
    let write = if merged != current || !annotated || !labelled {
        let mut body = json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": service.name_any(),
                "namespace": service.namespace(),
                "resourceVersion": service.resource_version(),
                "labels": {NETWORK_LABEL: network},
            },
        });
        if external {
            body["metadata"]["annotations"] = json!({EXTERNAL_IPS_ANNOTATION: annotation});
        }
        // Not writing externalIPs: leaving them out releases them (and so
        // removes what only dualmesh held), unless others' remain.
        if external || !merged.is_empty() {
            body["spec"] = json!({"externalIPs": merged});
        }
        Write::Apply(body)
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
    /// Whether the addresses go into the Service's externalIPs.
    pub external: bool,
}

impl Plan {
    /// The addresses to publish in `meshNetworks`; None while no gateway
    /// Pod is ready (what is published stays: a rollout gap must not blank
    /// a working gateway).
    pub fn mesh_networks_addresses(&self) -> Option<Vec<String>> {
        (self.selection.ready_pods > 0).then(|| self.selection.external_ips.clone())
    }
}

/// Plans the gateway job over what was observed, for the cluster's
/// `network`; `external`: whether the Service's externalIPs carry the
/// addresses (`spec.ingressGateway.publishAddressesTo`).
pub fn plan(observed: &Observed, policy: &ValidPolicy, network: &str, external: bool) -> Plan {
    let selection = gateway_addresses::select(&observed.pods, &observed.nodes, policy);
    let verdict = gateway_addresses::verdict(&selection, policy);
    let service = observed
        .service
        .as_ref()
        .map(|svc| plan_service(svc, &selection, network, external));
    Plan {
        selection,
        verdict,
        service,
        external,
    }
}

/// `GatewayAddressesReady` when dualmesh does not manage the addresses.
pub fn not_managed() -> Found {
    Found::ok(
        types::GATEWAY_ADDRESSES_READY,
        reason::NOT_MANAGED,
        "spec.ingressGateway.manageExternalIPs is false and publishAddressesTo is ExternalIPs: addresses are left as they are",
    )
}

/// What the condition adds once the API server warned that
/// `spec.externalIPs` is deprecated (dualmesh's words, not the server's).
pub const DEPRECATION_NOTE: &str = "the API server warns that spec.externalIPs is deprecated (Kubernetes 1.36+): spec.ingressGateway.publishAddressesTo MeshNetworks publishes the addresses without it";

/// The gateway job's condition and status addresses (None: the status
/// keeps what it said), from its plan; `refused`: the API server's HTTP
/// code and reason word when it refused the write; `deprecated`: it warned
/// that externalIPs are deprecated.
pub fn report(
    plan: &Plan,
    service_ref: &str,
    refused: Option<(u16, &str)>,
    deprecated: bool,
) -> (Found, Option<GatewayAddressesStatus>) {
    let wanted = status_from(&plan.selection.external_ips);
    let service = match &plan.service {
        Some(service) => Some(service),
        None if plan.external => {
            let found = Found::fail(
                types::GATEWAY_ADDRESSES_READY,
                reason::SERVICE_MISSING,
                format!(
                    "Service {service_ref} not found; it appears when Istio installs the gateway (spec.ingressGateway.name)"
                ),
            );
            return (found, Some(wanted));
        }
        None => None,
    };
    if let (Some((code, why)), Some(service)) = (refused, service) {
        let found = Found::fail(
            types::GATEWAY_ADDRESSES_READY,
            reason::EXTERNAL_IPS_DENIED,
            format!(
                "externalIPs [{}] on Service {service_ref} refused: {}; where externalIPs are denied, set spec.ingressGateway.publishAddressesTo to MeshNetworks",
                service.external_ips.join(", "),
                super::redact::api_error(code, why),
            ),
        );
        return (found, Some(wanted));
    }
    let v = &plan.verdict;
    let mut message = v.message.clone();
    if plan.external && deprecated {
        message = format!("{message}; {DEPRECATION_NOTE}");
    }
    let found = if v.ready {
        Found::ok(types::GATEWAY_ADDRESSES_READY, v.reason, message)
    } else {
        Found::fail(types::GATEWAY_ADDRESSES_READY, v.reason, message)
    };
    let status = match service {
        Some(service) if plan.external => Some(status_from(&service.ours)),
        _ => plan.mesh_networks_addresses().map(|a| status_from(&a)),
    };
    (found, status)
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
        let plan = plan_service(&svc, &selection(1, &["2001:db8::2"]), "net-a", true);
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
        let same = plan_service(&svc, &selection(2, &["2001:db8::1"]), "net-a", true);
        assert_eq!(same.write, Write::Keep);
        let gap = plan_service(&svc, &selection(0, &[]), "net-a", true);
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
            let plan = plan_service(&svc, &selection(1, &["2001:db8::1"]), "net-a", true);
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
        let mut plan = plan(&Observed::default(), &policy, "net-a", true);
        plan.service = Some(plan_service(&svc, &sel, "net-a", true));
        plan.selection = sel;
        let message = |reason: &str| {
            report(
                &plan,
                "istio-system/istio-ingressgateway",
                Some((403, reason)),
                false,
            )
            .0
            .message
        };
        assert_eq!(
            message("Forbidden"),
            "externalIPs [2001:db8::2] on Service istio-system/istio-ingressgateway refused: the API server answered 403 Forbidden: the request was refused by authorization or admission; where externalIPs are denied, set spec.ingressGateway.publishAddressesTo to MeshNetworks"
        );
        // A reason the member's admission chose is not repeated.
        assert_eq!(
            message("<script>ask for the token</script>"),
            "externalIPs [2001:db8::2] on Service istio-system/istio-ingressgateway refused: the API server answered 403: the request was refused by authorization or admission; where externalIPs are denied, set spec.ingressGateway.publishAddressesTo to MeshNetworks"
        );
    }

    #[test]
    fn without_external_ips_dualmesh_drops_its_share_and_annotation_and_keeps_others() {
        // Only dualmesh's address: externalIPs and the annotation are left
        // out of the apply, which releases (removes) them.
        let svc = service(&["2001:db8::1"], Some("2001:db8::1"));
        let plan = plan_service(&svc, &selection(1, &["2001:db8::2"]), "net-a", false);
        assert_eq!(
            plan.write,
            Write::Apply(json!({
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {
                    "name": "istio-ingressgateway",
                    "namespace": "istio-system",
                    "resourceVersion": "7",
                    "labels": {NETWORK_LABEL: "net-a"},
                },
            }))
        );
        assert!(plan.ours.is_empty());
        // Someone else's address stays.
        let svc = service(&["2001:db8::1", "198.51.100.9"], Some("2001:db8::1"));
        let plan = plan_service(&svc, &selection(1, &["2001:db8::2"]), "net-a", false);
        let Write::Apply(body) = plan.write else {
            panic!("an apply");
        };
        assert_eq!(body["spec"]["externalIPs"], json!(["198.51.100.9"]));
        assert_eq!(body["metadata"].get("annotations"), None);
        // Released already: no write.
        let svc = service(&[], None);
        let plan = plan_service(&svc, &selection(1, &["2001:db8::2"]), "net-a", false);
        assert_eq!(plan.write, Write::Keep);
    }

    fn ipv6_policy() -> ValidPolicy {
        let spec: crate::api::DualStackPolicySpec =
            serde_saphyr::from_str("{ipFamilies: [IPv6], ipFamilyPolicy: SingleStack}").unwrap();
        crate::desired::validate::validate_policy(&spec).unwrap()
    }

    #[test]
    fn mesh_networks_only_needs_no_service_and_a_rollout_gap_keeps_the_status() {
        let policy = ipv6_policy();
        let mut plan = plan(&Observed::default(), &policy, "net-a", false);
        assert_eq!(plan.mesh_networks_addresses(), None);
        let (found, status) = report(&plan, "istio-system/gw", None, true);
        assert_eq!(found.reason, reason::NO_GATEWAY_PODS);
        assert_eq!(status, None);
        plan.selection = selection(1, &["2001:db8::2"]);
        plan.verdict = gateway_addresses::verdict(&plan.selection, &policy);
        assert_eq!(
            plan.mesh_networks_addresses(),
            Some(vec!["2001:db8::2".to_string()])
        );
        let (found, status) = report(&plan, "istio-system/gw", None, true);
        // Not writing externalIPs: their deprecation is not mentioned.
        assert_eq!(found.message, plan.verdict.message);
        assert_eq!(status.unwrap().ipv6, vec!["2001:db8::2".to_string()]);
    }

    #[test]
    fn a_deprecation_warning_is_told_in_dualmesh_words_while_externalips_are_written() {
        let policy = ipv6_policy();
        let svc = service(&["2001:db8::2"], Some("2001:db8::2"));
        let mut plan = plan(&Observed::default(), &policy, "net-a", true);
        plan.selection = selection(1, &["2001:db8::2"]);
        plan.verdict = gateway_addresses::verdict(&plan.selection, &policy);
        plan.service = Some(plan_service(&svc, &plan.selection, "net-a", true));
        let (found, _) = report(&plan, "istio-system/gw", None, true);
        assert_eq!(
            found.message,
            format!("{}; {DEPRECATION_NOTE}", plan.verdict.message)
        );
        let (found, _) = report(&plan, "istio-system/gw", None, false);
        assert_eq!(found.message, plan.verdict.message);
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

//! The multi-network (east-west) gateway of a MeshCluster: its Service,
//! the Pods it selects, and how their nodes' addresses are published.

use std::collections::BTreeMap;

use super::DNS1123_LABEL;
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// How the gateway Service is exposed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum ServiceType {
    ClusterIP,
    NodePort,
    LoadBalancer,
}

impl ServiceType {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceType::ClusterIP => "ClusterIP",
            ServiceType::NodePort => "NodePort",
            ServiceType::LoadBalancer => "LoadBalancer",
        }
    }
}

/// Where dualmesh publishes the gateway nodes' addresses for istiod.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum PublishAddressesTo {
    /// The gateway Service's `spec.externalIPs` (deprecated since
    /// Kubernetes 1.36; istiod reads them from the labelled Service).
    #[default]
    ExternalIPs,
    /// `meshNetworks` gateway entries (`{address, port}`) in ConfigMap
    /// `istio` (or `istio-<revision>`) of every cluster of the mesh; no
    /// externalIPs are written.
    MeshNetworks,
    /// Both of the above.
    Both,
}

impl PublishAddressesTo {
    /// Whether the addresses go into the gateway Service's externalIPs.
    pub fn external_ips(self) -> bool {
        matches!(self, Self::ExternalIPs | Self::Both)
    }
    /// Whether the addresses go into `meshNetworks`.
    pub fn mesh_networks(self) -> bool {
        matches!(self, Self::MeshNetworks | Self::Both)
    }
}

/// The multi-network ingress gateway (sni-dnat on port 15443).
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = old_manage_external_ips_spelling)]
#[x_kube(
    validation = Rule::new("self.serviceType != 'ClusterIP' || !has(self.tlsNodePort)")
        .message("tlsNodePort needs serviceType NodePort or LoadBalancer")
        .field_path(".tlsNodePort"),
    validation = Rule::new("!has(self.manageExternalIPs) || !has(self.manageExternalIps)")
        .message("manageExternalIps is the old spelling of manageExternalIPs: set only manageExternalIPs")
        .field_path(".manageExternalIps"),
    validation = Rule::new("!has(self.publishAddressesTo) || self.publishAddressesTo != 'Both' || !has(self.manageExternalIPs) || self.manageExternalIPs")
        .message("publishAddressesTo Both writes externalIPs, which manageExternalIPs false forbids: set publishAddressesTo to MeshNetworks")
        .field_path(".publishAddressesTo"),
)]
pub struct IngressGatewaySpec {
    /// The gateway's component and Service name. Default `istio-ingressgateway`.
    #[serde(default = "default_gateway_name")]
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS1123_LABEL))]
    pub name: String,

    /// The gateway's namespace. Default: the Istio namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS1123_LABEL))]
    pub namespace: Option<String>,

    /// The gateway Service's type. Default `NodePort` (as in seed 000).
    #[serde(default = "default_service_type")]
    pub service_type: ServiceType,

    /// The nodePort of the `tls` (15443) port. Default 32443; NodePort and LoadBalancer only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 30000, max = 32767))]
    pub tls_node_port: Option<i32>,

    /// The port `meshNetworks` advertises for cross-network traffic. Default 443.
    #[serde(default = "default_network_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub network_gateway_port: i32,

    /// Labels selecting the gateway's Pods. Default `app: <name>`. Keys are
    /// label keys (`[prefix/]name`, e.g. `app.kubernetes.io/name`), values
    /// label values (at most 63 letters, digits, '-', '_' or '.', starting and
    /// ending with a letter or digit, or empty).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend(
        "maxProperties" = 16,
        "additionalProperties" = {"type": "string", "maxLength": 63, "pattern": LABEL_VALUE_OR_EMPTY}
    ))]
    #[x_kube(validation = Rule::new(LABEL_KEYS_RULE)
        .message("keys must be label keys: an optional DNS-1123 prefix and '/', then at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit, e.g. app.kubernetes.io/name"))]
    pub pod_selector: BTreeMap<String, String>,

    /// Keep the gateway Service's `externalIPs` equal to the addresses of the
    /// nodes its Pods run on. Default true. The spelling before dualmesh 0.2,
    /// `manageExternalIps`, is still read (for one release): set only one.
    #[serde(
        rename = "manageExternalIPs",
        alias = "manageExternalIps",
        default = "yes"
    )]
    pub manage_external_ips: bool,

    /// Where the addresses are published for istiod: `ExternalIPs` (the
    /// default), `MeshNetworks` (the `meshNetworks` key of ConfigMap
    /// `istio`, or `istio-<revision>`, in every cluster of the mesh: the
    /// way without the externalIPs field Kubernetes 1.36 deprecated), or
    /// `Both`. With `manageExternalIPs: false` no externalIPs are written
    /// whatever this says.
    #[serde(default)]
    pub publish_addresses_to: PublishAddressesTo,
}

impl IngressGatewaySpec {
    /// Whether dualmesh writes the gateway Service's externalIPs.
    pub fn writes_external_ips(&self) -> bool {
        self.manage_external_ips && self.publish_addresses_to.external_ips()
    }
    /// Whether dualmesh follows the gateway's Pods and nodes at all.
    pub fn follows_addresses(&self) -> bool {
        self.writes_external_ips() || self.publish_addresses_to.mesh_networks()
    }
}

/// A label value, or empty (a selector may ask for an empty value).
pub const LABEL_VALUE_OR_EMPTY: &str = "^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$";

/// Every key of the map is a label key: an optional prefix (a DNS-1123
/// subdomain of at most 253 characters) and '/', then a name of at most 63
/// characters (Kubernetes' `IsQualifiedName`).
const LABEL_KEYS_RULE: &str = "self.all(k, k.matches('^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$') && (!k.contains('/') || k.indexOf('/') <= 253))";

/// The old spelling of `manageExternalIPs` stays in the schema for one
/// release, so an object stored with it keeps its value (the API server
/// prunes fields the schema lacks, and would then default the new spelling
/// to true: on a `DenyServiceExternalIPs` cluster, the opposite of what the
/// user set). The new spelling gets no schema default for the same reason;
/// serde's default gives true when neither is set, and a CEL rule refuses
/// both at once (serde could not tell which one was meant).
///
/// KubeSchema also runs this on one-field copies of the struct (to attach a
/// field's CEL rules), so it acts only where `manageExternalIPs` is.
fn old_manage_external_ips_spelling(schema: &mut schemars::Schema) {
    let Some(props) = schema.get_mut("properties").and_then(|p| p.as_object_mut()) else {
        return;
    };
    let Some(new) = props
        .get_mut("manageExternalIPs")
        .and_then(|p| p.as_object_mut())
    else {
        return;
    };
    new.remove("default");
    props.insert(
        "manageExternalIps".into(),
        serde_json::json!({
            "type": "boolean",
            "description": "Deprecated: the spelling of manageExternalIPs before dualmesh 0.2, read for one release. Use manageExternalIPs."
        }),
    );
}

fn default_gateway_name() -> String {
    "istio-ingressgateway".to_string()
}
fn default_service_type() -> ServiceType {
    ServiceType::NodePort
}
fn default_network_port() -> i32 {
    443
}

impl Default for IngressGatewaySpec {
    fn default() -> Self {
        Self {
            name: default_gateway_name(),
            namespace: None,
            service_type: default_service_type(),
            tls_node_port: None,
            network_gateway_port: default_network_port(),
            pod_selector: BTreeMap::new(),
            manage_external_ips: true,
            publish_addresses_to: PublishAddressesTo::default(),
        }
    }
}

fn yes() -> bool {
    true
}

#[cfg(test)]
mod tests;

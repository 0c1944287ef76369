//! `MeshCluster`: one cluster of the mesh, its Istio identity, gateway,
//! policy, and for member clusters the Secret holding their kubeconfig.

use std::collections::BTreeMap;

use super::MeshClusterStatus;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// DNS-1123 label: lowercase letters, digits and '-', at most 63 characters.
pub const DNS1123_LABEL: &str = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
/// DNS-1123 subdomain: labels joined by '.', at most 253 characters.
pub const DNS1123_SUBDOMAIN: &str =
    "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
/// A Kubernetes label value (the network becomes `topology.istio.io/network`).
pub const LABEL_VALUE: &str = "^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$";
/// A key in a Secret's data.
pub const SECRET_KEY: &str = "^[-._a-zA-Z0-9]+$";
/// An environment variable name.
pub const ENV_NAME: &str = "^[A-Za-z_][A-Za-z0-9_]*$";

/// One cluster of the mesh. Namespaced, in the operator's namespace.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "dualmesh.io",
    version = "v1alpha1",
    kind = "MeshCluster",
    plural = "meshclusters",
    namespaced,
    shortname = "mc",
    category = "dualmesh",
    status = "MeshClusterStatus",
    doc = "One cluster of an Istio mesh on IPv6-only or dual-stack Kubernetes: its Istio identity, gateway and DualStackPolicy, and for a member cluster the Secret with its kubeconfig.",
    printcolumn = r#"{"name":"CLUSTER","type":"string","jsonPath":".spec.clusterName"}"#,
    printcolumn = r#"{"name":"NETWORK","type":"string","jsonPath":".spec.network"}"#,
    printcolumn = r#"{"name":"FAMILIES","type":"string","jsonPath":".status.ipFamilies"}"#,
    printcolumn = r#"{"name":"GATEWAY-IPS","type":"string","jsonPath":".status.gatewayAddresses.all"}"#,
    printcolumn = r#"{"name":"READY","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"AGE","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct MeshClusterSpec {
    /// The Istio cluster name (`values.global.multiCluster.clusterName`), unique
    /// in the mesh, e.g. `cluster-alpha`.
    #[schemars(length(min = 1, max = 63), regex(pattern = LABEL_VALUE))]
    pub cluster_name: String,

    /// The Istio network of this cluster (`values.global.network` and the
    /// gateway's `topology.istio.io/network` label), e.g. `cluster-alpha-network`.
    #[schemars(length(min = 1, max = 63), regex(pattern = LABEL_VALUE))]
    pub network: String,

    /// The mesh this cluster belongs to (`values.global.meshID`), e.g. `mesh1`.
    #[schemars(length(min = 1, max = 63), regex(pattern = LABEL_VALUE))]
    #[serde(rename = "meshID")]
    pub mesh_id: String,

    /// The cluster-scoped DualStackPolicy this cluster follows.
    pub dual_stack_policy_ref: PolicyReference,

    /// For a member cluster: the Secret, in this MeshCluster's namespace,
    /// holding its kubeconfig. Absent: the cluster dualmesh runs in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubeconfig_secret_ref: Option<KubeconfigSecretReference>,

    /// The Istio installation dualmesh derives the IstioOperator from.
    pub istio: IstioSpec,

    /// The multi-network ingress (east-west) gateway.
    #[serde(default)]
    pub ingress_gateway: IngressGatewaySpec,

    /// Trust secrets copied from the management cluster to this member.
    /// Absent on a member cluster: the Gloo Mesh relay pair
    /// (`relay-root-tls-secret`/`ca.crt`, `relay-identity-token-secret`/`token`
    /// from and to namespace `gloo-mesh`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub federation: Option<FederationSpec>,

    /// Istio-native trust: a root CA per meshID and an intermediate CA for
    /// this cluster, written as Secret `cacerts` in its Istio namespace.
    /// Absent: dualmesh writes no `cacerts`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust: Option<super::TrustSpec>,
}

/// A reference to a DualStackPolicy.
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PolicyReference {
    /// The DualStackPolicy's name.
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS1123_SUBDOMAIN))]
    pub name: String,
}

/// A key of a Secret in the MeshCluster's namespace.
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KubeconfigSecretReference {
    /// The Secret's name.
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS1123_SUBDOMAIN))]
    pub name: String,
    /// The key holding the kubeconfig. Default `kubeconfig`.
    #[serde(default = "default_kubeconfig_key")]
    #[schemars(length(min = 1, max = 253), regex(pattern = SECRET_KEY))]
    pub key: String,
}

fn default_kubeconfig_key() -> String {
    "kubeconfig".to_string()
}

/// Istio installation profiles istioctl knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum IstioProfile {
    Default,
    Demo,
    Minimal,
    Remote,
    Empty,
    Preview,
    Ambient,
}

impl IstioProfile {
    pub fn as_str(self) -> &'static str {
        match self {
            IstioProfile::Default => "default",
            IstioProfile::Demo => "demo",
            IstioProfile::Minimal => "minimal",
            IstioProfile::Remote => "remote",
            IstioProfile::Empty => "empty",
            IstioProfile::Preview => "preview",
            IstioProfile::Ambient => "ambient",
        }
    }
}

/// The Istio installation of this cluster.
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!has(self.installWith) || self.installWith != 'Helm' || !has(self.profile) || self.profile != 'empty'")
        .message("profile empty with installWith Helm: Istio's Helm charts have no such profile (use default, minimal, demo, preview, remote or ambient)")
        .field_path(".profile"),
    validation = Rule::new("!has(self.installWith) || self.installWith != 'Sail' || self.tag.matches('^[0-9]{1,4}\\\\.[0-9]{1,4}\\\\.[0-9]{1,4}$')")
        .message("tag with installWith Sail: Sail Operator installs released versions only; use a release such as 1.28.0 (it becomes spec.version v1.28.0)")
        .field_path(".tag"),
)]
pub struct IstioSpec {
    /// The container registry of Istio's images, e.g. `docker.io/istio`.
    /// Explicit, so the rendered IstioOperator is reproducible.
    #[schemars(length(min = 1, max = 253), regex(pattern = "^[^\\s]+$"))]
    pub hub: String,

    /// The Istio image tag, e.g. `1.28.0`. Explicit, so the rendered
    /// IstioOperator is reproducible.
    #[schemars(
        length(min = 1, max = 128),
        regex(pattern = "^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
    )]
    pub tag: String,

    /// Which install path acts on what dualmesh renders: `IstioOperator`
    /// (default: `istioctl install -f` from the published ConfigMap), `Sail`
    /// (Sail Operator's `Istio`, `IstioCNI`, `ZTunnel`, applied where Sail's
    /// CRDs are installed) or `Helm` (values files for Istio's charts in the
    /// ConfigMap `<meshcluster>-helm-values`). The IstioOperator ConfigMap is
    /// published whatever the choice.
    #[serde(default)]
    pub install_with: super::InstallWith,

    /// The installation profile. Default `minimal` (as in seed 000: the
    /// gateway is declared here).
    #[serde(default = "default_profile")]
    pub profile: IstioProfile,

    /// The Istio revision (canary upgrades), a DNS-1123 label. Default none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS1123_LABEL))]
    pub revision: Option<String>,

    /// The namespace Istio runs in (`values.global.istioNamespace`). Default `istio-system`.
    #[serde(default = "default_istio_namespace")]
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS1123_LABEL))]
    pub namespace: String,

    /// The name of the published IstioOperator. Default `istio-control-plane`.
    #[serde(default = "default_operator_name")]
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS1123_SUBDOMAIN))]
    pub operator_name: String,

    /// `meshConfig.accessLogFile`. Default `/dev/stdout`; empty turns access logs off.
    #[serde(default = "default_access_log")]
    #[schemars(length(max = 1024))]
    pub access_log_file: String,

    /// `meshConfig.enableAutoMtls`. Default true.
    #[serde(default = "yes")]
    pub enable_auto_mtls: bool,

    /// DNS proxying: `ISTIO_META_DNS_CAPTURE` and `ISTIO_META_DNS_AUTO_ALLOCATE`.
    #[serde(default)]
    pub dns: DnsSpec,

    /// The Istio CNI node agent.
    #[serde(default)]
    pub cni: CniSpec,

    /// Environment variables for istiod (`components.pilot.k8s.env`), e.g.
    /// `PILOT_SKIP_VALIDATE_TRUST_DOMAIN: "true"`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64))]
    #[x_kube(validation = Rule::new("self.all(k, k.matches('^[A-Za-z_][A-Za-z0-9_]*$'))")
        .message("keys must be environment variable names (letters, digits, '_')"))]
    pub pilot_env: BTreeMap<String, String>,

    /// Extra `meshConfig.defaultConfig.proxyMetadata` entries. Keys dualmesh
    /// owns (`ISTIO_DUAL_STACK`, `ISTIO_META_DNS_CAPTURE`,
    /// `ISTIO_META_DNS_AUTO_ALLOCATE`, `GLOO_MESH_CLUSTER_NAME`) are set from
    /// the policy and this spec: dualmesh's value wins and the condition says so.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64))]
    #[x_kube(validation = Rule::new("self.all(k, k.matches('^[A-Za-z_][A-Za-z0-9_]*$'))")
        .message("keys must be environment variable names (letters, digits, '_')"))]
    pub proxy_metadata: BTreeMap<String, String>,

    /// Set when Gloo Mesh manages the mesh: adds `GLOO_MESH_CLUSTER_NAME` and
    /// sends Envoy metrics and access logs to the Gloo Mesh agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gloo_mesh: Option<GlooMeshSpec>,
}

fn default_profile() -> IstioProfile {
    IstioProfile::Minimal
}
fn default_istio_namespace() -> String {
    "istio-system".to_string()
}
fn default_operator_name() -> String {
    "istio-control-plane".to_string()
}
fn default_access_log() -> String {
    "/dev/stdout".to_string()
}
fn yes() -> bool {
    true
}

/// DNS proxying in the sidecars.
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DnsSpec {
    /// `ISTIO_META_DNS_CAPTURE`: the sidecar answers DNS. Default true.
    #[serde(default = "yes")]
    pub capture: bool,
    /// `ISTIO_META_DNS_AUTO_ALLOCATE`: addresses for ServiceEntries without one. Default true.
    #[serde(default = "yes")]
    pub auto_allocate: bool,
}

impl Default for DnsSpec {
    fn default() -> Self {
        Self {
            capture: true,
            auto_allocate: true,
        }
    }
}

/// The Istio CNI node agent.
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CniSpec {
    /// Install the CNI agent (`components.cni.enabled`). Default true.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Namespaces the CNI agent leaves alone. Default `[istio-system, kube-system]`.
    #[serde(default = "default_cni_excluded")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 63), regex(pattern = DNS1123_LABEL)))]
    pub exclude_namespaces: Vec<String>,
    /// The CNI agent's log level. Default `info`.
    #[serde(default = "default_cni_log_level")]
    pub log_level: LogLevel,
}

impl Default for CniSpec {
    fn default() -> Self {
        Self {
            enabled: true,
            exclude_namespaces: default_cni_excluded(),
            log_level: default_cni_log_level(),
        }
    }
}

fn default_cni_excluded() -> Vec<String> {
    vec!["istio-system".to_string(), "kube-system".to_string()]
}
fn default_cni_log_level() -> LogLevel {
    LogLevel::Info
}

/// A log level Istio components accept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
    None,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
            LogLevel::None => "none",
        }
    }
}

/// The Gloo Mesh agent Envoy reports to.
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GlooMeshSpec {
    /// The agent's `host:port` for `envoyMetricsService` and
    /// `envoyAccessLogService`, e.g. `enterprise-agent.gloo-mesh:9977`; IPv6
    /// literals in brackets: `[2001:db8::1]:9977`.
    #[schemars(length(min = 3, max = 261))]
    #[x_kube(validation = Rule::new(
        "self.matches('^\\\\[[0-9A-Fa-f:.]+\\\\]:[0-9]{1,5}$') || self.matches('^[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?:[0-9]{1,5}$')"
    ).message("must be host:port, with an IPv6 literal in brackets, e.g. enterprise-agent.gloo-mesh:9977 or [2001:db8::1]:9977"))]
    pub agent_address: String,
}

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
        }
    }
}

/// Trust material copied from the management cluster to a member.
#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FederationSpec {
    /// The Secrets to copy. An empty list copies nothing. Each target
    /// (namespace/name) may appear once.
    #[serde(default)]
    #[schemars(length(max = 32))]
    pub secrets: Vec<SecretSync>,

    /// On MeshCluster deletion, delete the copies that are still labelled as
    /// managed by dualmesh. Default false: copies stay, so a member keeps
    /// working trust material.
    #[serde(default)]
    pub delete_on_removal: bool,
}

/// One Secret to copy into the member cluster.
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretSync {
    /// The Secret in the management cluster.
    pub source: SecretLocation,
    /// The keys to copy, optionally renamed. Empty: every key, same names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub keys: Vec<KeyMapping>,
    /// Where the copy goes in the member. The namespace is created if missing.
    pub target: SecretLocation,
}

/// A Secret's namespace and name.
#[derive(KubeSchema, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SecretLocation {
    /// The namespace.
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS1123_LABEL))]
    pub namespace: String,
    /// The Secret's name.
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS1123_SUBDOMAIN))]
    pub name: String,
}

/// A key copied from the source Secret, optionally under another name.
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KeyMapping {
    /// The key in the source Secret.
    #[schemars(length(min = 1, max = 253), regex(pattern = SECRET_KEY))]
    pub from: String,
    /// The key in the copy. Default: the same as `from`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = SECRET_KEY))]
    pub to: Option<String>,
}

#[cfg(test)]
mod tests;

//! `MeshCluster`: one cluster of the mesh, its Istio identity, gateway,
//! policy, and for member clusters the Secret holding their kubeconfig.

use std::collections::BTreeMap;

use super::{FederationSpec, GlooMeshSpec, IngressGatewaySpec, MeshClusterStatus};
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
#[x_kube(
    validation = Rule::new("!has(self.remoteSecrets) || has(self.kubeconfigSecretRef) || has(self.remoteSecrets.apiServerURL)")
        .message("remoteSecrets of the cluster dualmesh runs in needs apiServerURL: the https:// address the other clusters' istiods reach its API server at")
        .field_path(".remoteSecrets.apiServerURL"),
)]
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

    /// Remote secrets, so the istiods of the mesh's other clusters discover
    /// this one's endpoints (and this istiod theirs). Absent: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_secrets: Option<super::RemoteSecretsSpec>,
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

//! A typed model of the part of Istio's `IstioOperator`
//! (`install.istio.io/v1alpha1`) that dualmesh writes. Field order here is
//! the key order of the rendered YAML; maps are `BTreeMap`s, so the output is
//! byte-for-byte reproducible.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub const API_VERSION: &str = "install.istio.io/v1alpha1";
pub const KIND: &str = "IstioOperator";

/// An IstioOperator document.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IstioOperator {
    pub api_version: String,
    pub kind: String,
    pub metadata: Metadata,
    pub spec: IstioOperatorSpec,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    pub name: String,
    pub namespace: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IstioOperatorSpec {
    pub profile: String,
    pub hub: String,
    pub tag: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    pub mesh_config: MeshConfig,
    pub components: Components,
    pub values: Values,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeshConfig {
    pub access_log_file: String,
    pub enable_auto_mtls: bool,
    pub default_config: ProxyConfig,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProxyConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub envoy_metrics_service: Option<RemoteService>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub envoy_access_log_service: Option<RemoteService>,
    pub proxy_metadata: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RemoteService {
    pub address: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Components {
    pub cni: Enabled,
    pub ingress_gateways: Vec<GatewayComponent>,
    pub pilot: PilotComponent,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Enabled {
    pub enabled: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GatewayComponent {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub enabled: bool,
    pub label: BTreeMap<String, String>,
    pub k8s: GatewayK8s,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GatewayK8s {
    pub env: Vec<EnvVar>,
    pub service: GatewayService,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayService {
    #[serde(rename = "type")]
    pub type_: String,
    pub ip_family_policy: String,
    pub ip_families: Vec<String>,
    pub ports: Vec<ServicePort>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServicePort {
    pub name: String,
    pub port: i32,
    pub target_port: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_port: Option<i32>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PilotComponent {
    pub k8s: PilotK8s,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PilotK8s {
    pub env: Vec<EnvVar>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct EnvVar {
    pub name: String,
    pub value: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Values {
    pub global: GlobalValues,
    #[serde(default, skip_serializing_if = "PilotValues::is_empty")]
    pub pilot: PilotValues,
    pub cni: CniValues,
    pub gateways: BTreeMap<String, GatewayValues>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GlobalValues {
    #[serde(rename = "meshID")]
    pub mesh_id: String,
    pub multi_cluster: MultiCluster,
    pub network: String,
    pub mesh_networks: BTreeMap<String, MeshNetwork>,
    pub istio_namespace: String,
    pub pilot_cert_provider: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MultiCluster {
    pub cluster_name: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MeshNetwork {
    pub endpoints: Vec<NetworkEndpoint>,
    pub gateways: Vec<NetworkGateway>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkEndpoint {
    pub from_registry: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkGateway {
    pub registry_service_name: String,
    pub port: i32,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PilotValues {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CniValues {
    pub exclude_namespaces: Vec<String>,
    pub log_level: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayValues {
    pub ip_family_policy: String,
    pub ip_families: Vec<String>,
}

impl PilotValues {
    pub fn is_empty(&self) -> bool {
        self.env.is_empty()
    }
}

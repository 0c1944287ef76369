//! The MeshCluster's status: what dualmesh observed and did.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use serde::{Deserialize, Serialize};

/// What dualmesh observed and did for a MeshCluster.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MeshClusterStatus {
    /// The generation these conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Valid`, `ClusterReachable`, `IstioConfigApplied`,
    /// `GatewayAddressesReady`, `SecretsSynced`; see docs/conditions.md.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The policy's IP families, primary first, e.g. `IPv6,IPv4`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_families: Option<String>,
    /// The SHA-256 of the rendered IstioOperator YAML last published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub istio_config_hash: Option<String>,
    /// Where the IstioOperator was published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published: Option<PublishedConfig>,
    /// The externalIPs dualmesh set on the gateway Service, by family.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_addresses: Option<GatewayAddressesStatus>,
    /// The Secrets copied into this cluster, with content hashes (never data).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub synced_secrets: Vec<SyncedSecret>,
    /// The intermediate CA in the cluster's `cacerts` (`spec.trust`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust: Option<TrustStatus>,
}

/// The intermediate CA dualmesh wrote as `cacerts` (certificates' dates, never keys).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrustStatus {
    /// The root CA Secret it was issued from, `namespace/name` in the management cluster.
    pub root_secret: String,
    /// The `cacerts` Secret, `namespace/name` in the target cluster.
    pub cacerts: String,
    /// When the intermediate expires.
    pub intermediate_not_after: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
    /// From when dualmesh re-issues it (two thirds of its validity).
    pub renew_after: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
    /// The serial number of the mesh root (`rootSecret`'s certificate), as
    /// `openssl x509 -serial` prints it: during a rotation, the new root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_serial: Option<String>,
    /// A root rotation under way in this cluster; absent when `cacerts`
    /// trusts the mesh root alone and holds an intermediate of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation: Option<RootRotationStatus>,
}

/// Where this cluster is in a root rotation (the multi-root sequence).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RootRotationStatus {
    /// `BothRootsTrusted`: `root-cert.pem` holds the old and the new root,
    /// the old intermediate still signs. `IntermediateReissued`: the
    /// intermediate is from the new root, the old root is still trusted.
    pub phase: RootRotationPhase,
    /// When this cluster entered the phase.
    pub since: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
    /// MeshClusters of the mesh that have not reached this phase yet
    /// (`namespace/name`); the next step waits for them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub waiting_for: Vec<String>,
    /// The earliest time of the next step, once nobody is waited for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_step_after: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
}

/// A step of the root rotation (see [`RootRotationStatus`]).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum RootRotationPhase {
    BothRootsTrusted,
    IntermediateReissued,
}

/// Where the rendered IstioOperator went.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PublishedConfig {
    /// The ConfigMap holding the rendered YAML, `namespace/name`.
    pub config_map: String,
    /// The IstioOperator object, `namespace/name`, when that CRD is installed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub istio_operator: Option<String>,
}

/// Gateway externalIPs by family.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GatewayAddressesStatus {
    /// The IPv6 addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ipv6: Vec<String>,
    /// The IPv4 addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ipv4: Vec<String>,
    /// All addresses in the Service's order, comma-separated (for `kubectl get`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub all: String,
}

/// A Secret copied into the member cluster.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncedSecret {
    /// The copy, `namespace/name` in the member cluster.
    pub target: String,
    /// The source, `namespace/name` in the management cluster.
    pub source: String,
    /// HMAC-SHA256 over the copied keys and values, keyed per installation (never the data).
    pub hash: String,
}

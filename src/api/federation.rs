//! What a MeshCluster copies from the management cluster to its member:
//! the Gloo Mesh relay material, or Secrets the user names.

use super::{DNS1123_LABEL, DNS1123_SUBDOMAIN, SECRET_KEY};
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

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

//! `spec.trust`: Istio-native trust for a MeshCluster (one root CA per
//! meshID, an intermediate CA per cluster written as `cacerts`).

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use super::DNS1123_SUBDOMAIN;

/// Istio-native trust: dualmesh writes Secret `cacerts` (`ca-cert.pem`,
/// `ca-key.pem`, `root-cert.pem`, `cert-chain.pem`) into this cluster's
/// Istio namespace, an intermediate CA issued from the mesh's root. The
/// root's private key never leaves the management cluster. Absent: no
/// `cacerts` is written (istiod's self-signed CA, or the Gloo Mesh relay).
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrustSpec {
    /// The mesh's root CA: a Secret in the operator's namespace with keys
    /// `ca-cert.pem` and `ca-key.pem`, or `tls.crt` and `tls.key` (PEM; an
    /// ECDSA P-256/P-384 or Ed25519 key, or an RSA key in PKCS#8). Absent:
    /// dualmesh generates one root per meshID and keeps it as Secret
    /// `dualmesh-root-ca-<meshID>` in the operator's namespace. Every
    /// MeshCluster of one meshID must name the same root.
    #[serde(
        rename = "rootCASecretRef",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub root_ca_secret_ref: Option<RootCaSecretReference>,

    /// How long an intermediate CA is valid, in days. Default 365; it is
    /// re-issued when two thirds of that have passed.
    #[serde(default = "default_validity_days")]
    #[schemars(range(min = 1, max = 3650))]
    pub intermediate_validity_days: i32,

    /// Rotate the generated root: raising this number makes dualmesh
    /// generate a new root, kept as `dualmesh-root-ca-<meshID>-gen<N>`
    /// (0, the default: `dualmesh-root-ca-<meshID>`), and move the mesh to
    /// it by the multi-root sequence (see `rotationGracePeriodSeconds`).
    /// Set the same number in every MeshCluster of the mesh. Ignored when
    /// `rootCASecretRef` is set: naming another Secret rotates that way.
    #[serde(default, skip_serializing_if = "is_zero")]
    #[schemars(range(min = 0, max = 1000000))]
    pub root_generation: i32,

    /// How long each step of a root rotation holds once every cluster of
    /// the mesh has reached it, in seconds: first every `root-cert.pem`
    /// trusts the old and the new root, then every intermediate is
    /// re-issued from the new root, then the old root is dropped. Set it at
    /// least to the workload certificate lifetime (Istio's default: 24 h),
    /// so every workload holds a certificate of the new root before the old
    /// one stops being trusted. Default 86400 (one day); 0 moves on as soon
    /// as every cluster is there.
    #[serde(default = "default_grace_seconds")]
    #[schemars(range(min = 0, max = 31536000))]
    pub rotation_grace_period_seconds: i64,
}

/// A Secret in the operator's namespace holding a root CA.
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RootCaSecretReference {
    /// The Secret's name.
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS1123_SUBDOMAIN))]
    pub name: String,
}

/// One year.
pub const DEFAULT_INTERMEDIATE_VALIDITY_DAYS: i32 = 365;

fn default_validity_days() -> i32 {
    DEFAULT_INTERMEDIATE_VALIDITY_DAYS
}

/// One day.
pub const DEFAULT_ROTATION_GRACE_SECONDS: i64 = 86_400;

fn default_grace_seconds() -> i64 {
    DEFAULT_ROTATION_GRACE_SECONDS
}

fn is_zero(n: &i32) -> bool {
    *n == 0
}

impl Default for TrustSpec {
    fn default() -> Self {
        Self {
            root_ca_secret_ref: None,
            intermediate_validity_days: DEFAULT_INTERMEDIATE_VALIDITY_DAYS,
            root_generation: 0,
            rotation_grace_period_seconds: DEFAULT_ROTATION_GRACE_SECONDS,
        }
    }
}

/// Remote secrets (istio.io "Install multi-primary"): every other cluster
/// of the mesh whose MeshCluster also sets this gets Secret
/// `istio-remote-secret-<clusterName>` in its Istio namespace, in the
/// format `istioctl create-remote-secret` writes: a kubeconfig reaching
/// this cluster with the token of its `istio-reader-service-account`, so
/// the other istiods discover this cluster's endpoints. Absent: none.
#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RemoteSecretsSpec {
    /// The URL the other clusters' istiods reach this cluster's API server
    /// at (`https://...`). Default for a member: the server of its
    /// kubeconfig; required for the cluster dualmesh runs in (its own
    /// in-cluster address is no use elsewhere).
    #[serde(
        rename = "apiServerURL",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(length(min = 9, max = 2048))]
    #[x_kube(validation = Rule::new("self.startsWith('https://') && isURL(self)")
        .message("apiServerURL must be an https:// URL, e.g. https://api.cluster-alpha.example.com:6443"))]
    pub api_server_url: Option<String>,
}

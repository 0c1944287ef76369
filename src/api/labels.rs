//! Every label, annotation, finalizer and field-manager name dualmesh puts
//! on objects, in one place: they are part of its contract with users (label
//! selectors, Argo CD ignore rules, hand-overs) and must not drift apart.

/// The one field manager of every write dualmesh makes (the leader Lease
/// excepted: see [`crate::controller::leader`]).
pub const FIELD_MANAGER: &str = "dualmesh";
/// The finalizer that lets dualmesh remove what it published for a MeshCluster.
pub const FINALIZER: &str = "dualmesh.io/cleanup";
/// The label every object dualmesh publishes carries.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "dualmesh");
/// The label naming the MeshCluster an object was published for (when the
/// name fits in a label value).
pub const MESH_CLUSTER_LABEL: &str = "dualmesh.io/meshcluster";
/// Annotation naming the MeshCluster (`namespace/name`) an object belongs to.
pub const OWNER_ANNOTATION: &str = "dualmesh.io/owner";
/// Annotation holding the SHA-256 of the rendered IstioOperator YAML (not
/// secret: the YAML is in the same ConfigMap).
pub const HASH_ANNOTATION: &str = "dualmesh.io/config-hash";
/// The annotation on the gateway Service listing the externalIPs dualmesh set.
pub const EXTERNAL_IPS_ANNOTATION: &str = "dualmesh.io/external-ips";

/// `MANAGED_BY` as a label selector.
pub fn managed_by_selector() -> String {
    format!("{}={}", MANAGED_BY.0, MANAGED_BY.1)
}

/// Istio's network label: on the Istio namespace (the network of the
/// cluster's workloads) and on the gateway Service (that network's
/// cross-network gateway, port 15443, as istiod reads it).
pub const NETWORK_LABEL: &str = "topology.istio.io/network";

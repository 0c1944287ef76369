//! `spec.istio.installWith`: which of Istio's install paths acts on what
//! dualmesh renders for a MeshCluster.

use serde::{Deserialize, Serialize};

/// The install path of a MeshCluster's Istio. Every path carries the same
/// intent (mesh identity, dual-stack switches, proxy metadata); the choice
/// decides what dualmesh publishes besides the IstioOperator ConfigMap,
/// which it always publishes:
///
/// - `IstioOperator`: nothing more (`istioctl install -f` from the
///   ConfigMap `<meshcluster>-istiooperator`, and the IstioOperator object
///   where its CRD is installed);
/// - `Sail`: Sail Operator's `sailoperator.io/v1` `Istio`, `IstioCNI` and
///   `ZTunnel`, applied where Sail's CRDs are installed;
/// - `Helm`: one values file per Istio chart in the ConfigMap
///   `<meshcluster>-helm-values`, for Argo CD, Flux or `helm install -f`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum InstallWith {
    #[default]
    IstioOperator,
    Sail,
    Helm,
}

impl InstallWith {
    pub fn as_str(self) -> &'static str {
        match self {
            InstallWith::IstioOperator => "IstioOperator",
            InstallWith::Sail => "Sail",
            InstallWith::Helm => "Helm",
        }
    }
}

//! The custom resources (group `dualmesh.io`, version `v1alpha1`) and the
//! names of their conditions and reasons.

pub mod conditions;
mod federation;
mod gateway;
mod install;
pub mod labels;
mod meshcluster;
mod meshcluster_status;
mod policy;
mod trust;

pub use federation::*;
pub use gateway::*;
pub use install::*;
pub use meshcluster::*;
pub use meshcluster_status::*;
pub use policy::*;
pub use trust::*;

use kube::CustomResourceExt;

/// The API group.
pub const GROUP: &str = "dualmesh.io";

/// Both CRDs as one YAML stream, as `dualmesh crd` prints them and `crds/` holds them.
pub fn crds_yaml() -> String {
    crd_files()
        .into_iter()
        .map(|(_, yaml)| yaml)
        .collect::<Vec<_>>()
        .join("---\n")
}

/// The CRDs as separate files: (file name, YAML).
pub fn crd_files() -> Vec<(String, String)> {
    [DualStackPolicy::crd(), MeshCluster::crd()]
        .iter()
        .map(|crd| {
            let name = crd.metadata.name.clone().expect("a CRD has a name");
            (format!("{name}.yaml"), crate::yaml::to_string(crd))
        })
        .collect()
}

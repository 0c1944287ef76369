//! Validation that turns raw specs into typed, checked values. Pure: no
//! client, no clock.
//!
//! The CRD schema and its CEL rules refuse most bad input at the door; this
//! repeats those checks (so `dualmesh render` on plain files gives the same
//! answers) and adds what CEL cannot say: overlapping CIDRs, Pod CIDR vs node
//! mask vs Calico block size, duplicate sync targets. Every problem names the
//! field it is about.
//!
//! One file per subject: `policy` (DualStackPolicy) with `address_plan`
//! (one family's CIDRs), `meshcluster` (MeshCluster) with `install` (the install path's limits), `host_port`
//! (`host:port` parsing) and `names` (the Kubernetes name, label and key
//! syntaxes both use).

use std::fmt;

mod address_plan;
mod host_port;
mod install;
mod meshcluster;
mod names;
mod policy;

pub use address_plan::FamilyPlan;
pub use host_port::{HostPort, parse_host_port};
pub use install::{is_release, profile_for};
pub use meshcluster::{ValidMeshCluster, validate_mesh_cluster};
pub use policy::{AddressRules, ValidPolicy, validate_policy};

/// One thing wrong with a spec: the field (as in `kubectl explain`) and what to do.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Problem {
    pub field: String,
    pub message: String,
}

impl Problem {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// All problems of one object, sorted by field, as one line for a condition.
pub fn summarize(problems: &[Problem]) -> String {
    let mut sorted = problems.to_vec();
    sorted.sort();
    sorted
        .iter()
        .map(Problem::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

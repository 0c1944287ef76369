//! The I/O half: watches, the reconcile pipeline of each MeshCluster
//! (fetch -> validate -> build -> apply -> status), the DualStackPolicy status
//! and the server-side-apply helpers. Everything that decides *what* should
//! be lives in [`crate::desired`]; this module only reads, writes and reports.
//!
//! - [`run`]: the two controllers and their watches;
//! - [`context`]: what reconciles share; [`error`]: the one error type;
//! - [`meshcluster`], [`policy`]: the reconciles; [`publish`], [`gateway`],
//!   [`federation`]: the apply step of each job; [`status`]: the status step;
//! - [`cluster`]: per-cluster connections and watches; [`cache`]: waiting
//!   for them; [`fence`], [`leader`]: leader election and its write fence.

pub mod backoff;
pub mod cache;
pub mod cluster;
pub mod context;
pub mod cross_network;
pub mod error;
pub mod federation;
pub mod fence;
pub mod gateway;
pub mod gateway_watch;
pub mod jobs;
pub mod leader;
pub mod mesh_networks;
pub mod meshcluster;
pub mod metrics;
pub mod policy;
pub mod publish;
pub mod publish_helm;
pub mod publish_sail;
pub mod remote_secrets;
pub mod run;
pub mod ssa;
pub mod status;

use std::time::Duration;

pub use crate::api::labels::{FIELD_MANAGER, FINALIZER};
pub use context::{Context, EventQueue};
pub use error::Error;
pub use run::{RunOptions, Runtime, Shutdown, run};

/// How often a healthy object is looked at again (reads only; writes happen
/// only when something differs).
pub const RESYNC: Duration = Duration::from_secs(300);

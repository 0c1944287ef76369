//! Federation, the I/O half: connections to member clusters
//! ([`members`]: kubeconfig Secrets, vetted first, and reachability) and the
//! sync of trust Secrets from the management cluster into them
//! ([`secret_sync`]). What callers use is re-exported here.
//!
//! Secret data never leaves these modules except into the API request that
//! writes the copy, and a member's error text never reaches the management
//! cluster's status or Events ([`super::ssa::describe`]).

pub mod members;
pub mod secret_sync;
pub mod trust;

pub use members::{MEMBER_RESYNC, MEMBER_TIMEOUT, Members, Unusable, probe};
pub use secret_sync::{SyncOutcome, remove_copies, sync_secrets};

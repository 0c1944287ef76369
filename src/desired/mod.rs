//! The pure core: validation, rendering, address selection, sync planning,
//! publish planning, the cluster checks, status assembly and conditions.
//! Nothing here talks to a cluster, spawns a task or reads the clock;
//! callers pass in what they observed and get back what should be.

pub mod check;
pub mod conditions;
pub mod finalizer;
pub mod gateway_addresses;
pub mod gateway_service;
pub mod install;
pub mod istio_operator;
pub mod keys;
pub mod kubeconfig;
pub mod mesh_networks;
pub mod network;
pub mod ownership;
pub mod publish;
pub mod redact;
pub mod remote_secret;
pub mod secret_sync;
pub mod selection;
pub mod status;
pub mod trust;
pub mod validate;

//! dualmesh: a Kubernetes operator that runs Istio meshes on IPv6-only and
//! dual-stack clusters, one cluster or many.
//!
//! `main.rs` only wires things together; everything else lives here:
//! the CRD types ([`api`]), the pure derivations ([`desired`]), the I/O
//! ([`controller`]) and the process around it ([`operator`]).
#![forbid(unsafe_code)]

pub mod api;
pub mod check;
pub mod controller;
pub mod desired;
pub mod istio;
pub mod operator;
pub mod render;
pub mod server;
pub mod yaml;

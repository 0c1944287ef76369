//! The operator's HTTP endpoint: `/healthz` (liveness), `/readyz`
//! (readiness) and `/metrics` (OpenMetrics text).
//!
//! Liveness only says the process answers. Readiness says the replica can
//! do its job: a leader once its caches are filled, a standby once it has
//! reached the API server and waits for the Lease.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;

use crate::controller::metrics::Metrics;

/// Where this replica stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// Starting: not ready.
    Starting = 0,
    /// Waiting for the leader Lease: ready (it can take over).
    Standby = 1,
    /// Leading, caches not yet filled: not ready.
    Syncing = 2,
    /// Leading with filled caches: ready.
    Leading = 3,
    /// Shutting down: not ready.
    Stopping = 4,
}

impl Phase {
    fn from_u8(v: u8) -> Self {
        match v {
            1 => Phase::Standby,
            2 => Phase::Syncing,
            3 => Phase::Leading,
            4 => Phase::Stopping,
            _ => Phase::Starting,
        }
    }

    /// Whether `/readyz` answers 200.
    pub fn ready(self) -> bool {
        matches!(self, Phase::Standby | Phase::Leading)
    }

    fn word(self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::Standby => "standby",
            Phase::Syncing => "syncing",
            Phase::Leading => "leading",
            Phase::Stopping => "stopping",
        }
    }
}

/// The replica's phase, shared between the wiring and the endpoint.
#[derive(Debug, Default)]
pub struct Health(AtomicU8);

impl Health {
    pub fn set(&self, phase: Phase) {
        self.0.store(phase as u8, Ordering::SeqCst);
    }

    pub fn get(&self) -> Phase {
        Phase::from_u8(self.0.load(Ordering::SeqCst))
    }
}

#[derive(Clone)]
struct AppState {
    health: Arc<Health>,
    metrics: Arc<Metrics>,
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let phase = state.health.get();
    let code = if phase.ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, format!("{}\n", phase.word()))
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
}

/// The router, without a listener (tests drive it directly).
pub fn router(health: Arc<Health>, metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/livez", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(self::metrics))
        .with_state(AppState { health, metrics })
}

/// Binds `addr`. An IPv6 wildcard (`[::]`) on a host without IPv6 falls
/// back to `0.0.0.0` with a warning instead of refusing to start.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    match TcpListener::bind(addr).await {
        Ok(l) => Ok(l),
        Err(e) if addr.ip().is_unspecified() && addr.is_ipv6() => {
            let v4 = SocketAddr::from(([0, 0, 0, 0], addr.port()));
            tracing::warn!(error = %e, %addr, fallback = %v4, "cannot bind the IPv6 wildcard; using IPv4");
            TcpListener::bind(v4).await
        }
        Err(e) => Err(e),
    }
}

/// Serves for as long as the process lives: probes keep answering (with
/// `/readyz` saying `stopping`) while a shutdown drains.
pub async fn serve(
    listener: TcpListener,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
) -> std::io::Result<()> {
    axum::serve(listener, router(health, metrics)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_standby_and_leading_are_ready() {
        let ready: Vec<(&str, bool)> = [
            Phase::Starting,
            Phase::Standby,
            Phase::Syncing,
            Phase::Leading,
            Phase::Stopping,
        ]
        .into_iter()
        .map(|p| (p.word(), p.ready()))
        .collect();
        assert_eq!(
            ready,
            vec![
                ("starting", false),
                ("standby", true),
                ("syncing", false),
                ("leading", true),
                ("stopping", false),
            ]
        );
    }

    #[test]
    fn health_round_trips_every_phase() {
        let h = Health::default();
        assert_eq!(h.get(), Phase::Starting);
        for p in [
            Phase::Standby,
            Phase::Syncing,
            Phase::Leading,
            Phase::Stopping,
        ] {
            h.set(p);
            assert_eq!(h.get(), p);
        }
    }
}

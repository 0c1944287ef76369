//! The `dualmesh run` process: its HTTP endpoint, leader election, write
//! fence and controllers, and the phases between them:
//!
//! ```text
//! starting -> standby (leader election only: waits for the Lease)
//!          -> syncing (leading, caches filling) -> leading (ready)
//!          -> stopping (SIGTERM/SIGINT: running reconciles finish, the Lease is released)
//! leading  -> exit 1 at once when the Lease is lost (the new leader may be writing)
//! ```

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;

use crate::controller::{self, Error, Shutdown, fence, leader, metrics::Metrics};
use crate::server::{self, Health, Phase};

/// Everything `dualmesh run` was told.
#[derive(Clone, Debug)]
pub struct Options {
    /// Watch MeshClusters only in this namespace (the operator's).
    pub namespace: Option<String>,
    /// Where /healthz, /readyz and /metrics are served.
    pub listen: SocketAddr,
    /// Leader election; None: this replica always leads.
    pub leader: Option<leader::LeaderConfig>,
}

/// This replica's name in the Lease: the one given, else `HOSTNAME`, else
/// the kernel's host name, else one made from the PID.
pub fn identity(given: Option<String>) -> String {
    given
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        })
        .unwrap_or_else(|| format!("dualmesh-{}", std::process::id()))
}

/// SIGTERM or SIGINT, once, shared by every part that must stop.
pub fn signals() -> Shutdown {
    async {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for SIGTERM");
                    futures::future::pending::<()>().await;
                    unreachable!()
                }
            };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: stopping"),
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: stopping"),
        }
    }
    .boxed()
    .shared()
}

/// Runs the process on a new runtime until it stops; the exit code.
pub fn main(options: Options) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(async {
        match run(options).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = %e, "dualmesh failed");
                ExitCode::FAILURE
            }
        }
    });
    // Watches and the HTTP endpoint end with the process, not one by one.
    runtime.shutdown_timeout(Duration::from_secs(1));
    code
}

/// Serves the endpoint, waits for the Lease (when electing), runs the
/// controllers until a signal, then releases the Lease.
pub async fn run(options: Options) -> Result<(), Error> {
    let shutdown = signals();
    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::default());
    let listener = server::bind(options.listen)
        .await
        .map_err(|e| Error::Client(format!("cannot listen on {}: {e}", options.listen)))?;
    match listener.local_addr() {
        Ok(addr) => tracing::info!(%addr, "serving /healthz /readyz /metrics"),
        Err(e) => tracing::warn!(error = %e, "listening on an unknown address"),
    }
    tokio::spawn({
        let (health, metrics) = (health.clone(), metrics.clone());
        async move {
            if let Err(e) = server::serve(listener, health, metrics).await {
                tracing::error!(error = %e, "HTTP endpoint failed");
            }
        }
    });

    // The fence must be installed before the first request of any client.
    if let Some(config) = &options.leader {
        fence::install(
            &config.namespace,
            &config.lease_name,
            config.duration,
            config.fence_margin(),
        );
    }
    let config = kube::Config::infer()
        .await
        .map_err(|e| Error::Client(e.to_string()))?;
    let clients = fence::clients(config)?;

    // Leader election first: a standby watches nothing but the Lease.
    let mut leadership = match &options.leader {
        Some(config) => {
            health.set(Phase::Standby);
            match leader::acquire(clients.lease.clone(), config, shutdown.clone()).await? {
                Some(l) => Some(l),
                None => return Ok(()),
            }
        }
        None => None,
    };
    metrics.set_leader(true);
    health.set(Phase::Syncing);

    // Losing the Lease stops this replica at once, without draining: the
    // new leader may already be writing. Kubernetes restarts it as a standby.
    let lost = match leadership.as_mut() {
        Some(l) => async move {
            l.lost().await;
            tracing::error!("lost the leader Lease: exiting");
            std::process::exit(1);
        }
        .boxed(),
        None => futures::future::pending().boxed(),
    };

    let ready_health = health.clone();
    let runtime = controller::Runtime {
        metrics: metrics.clone(),
        on_ready: Box::new(move || ready_health.set(Phase::Leading)),
        shutdown: shutdown.clone(),
    };
    let run_options = controller::RunOptions {
        namespace: options.namespace,
    };
    let stopping = health.clone();
    let controllers = async move {
        let result = controller::run(clients.controllers, run_options, runtime).await;
        stopping.set(Phase::Stopping);
        result
    };
    let result = tokio::select! {
        result = controllers => result,
        () = lost => unreachable!("exits the process"),
    };
    metrics.set_leader(false);
    if let Some(l) = leadership {
        l.release().await;
    }
    result
}

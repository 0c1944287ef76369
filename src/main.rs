//! The `dualmesh` command: wiring only (CLI, telemetry, controller start).
#![forbid(unsafe_code)]

use clap::{Parser, Subcommand};

/// Runs Istio service meshes on IPv6-only and dual-stack Kubernetes clusters.
#[derive(Parser, Debug)]
#[command(name = "dualmesh", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print both CustomResourceDefinitions as YAML (what crds/ holds).
    Crd {
        /// Write one file per CRD into this folder instead of printing.
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
    },
    /// Render one IstioOperator per MeshCluster from YAML files, offline.
    /// Exits 2 on bad input, naming the file, object and field.
    Render {
        /// Files or folders with MeshCluster and DualStackPolicy YAML.
        #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
        files: Vec<std::path::PathBuf>,
    },
    /// Run the controllers against the cluster of the current kubeconfig
    /// (in-cluster config when running in a Pod).
    Run {
        /// Watch MeshClusters only in this namespace (the operator's).
        #[arg(long, env = "DUALMESH_NAMESPACE")]
        namespace: Option<String>,
        /// Log format.
        #[arg(long, env = "DUALMESH_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
        /// Log filter, as RUST_LOG (e.g. `info`, `dualmesh=debug`).
        #[arg(long, env = "DUALMESH_LOG", default_value = "info")]
        log: String,
        /// Address of the HTTP endpoint serving /healthz, /readyz and
        /// /metrics (port 0: any free port, logged at start).
        #[arg(long, env = "DUALMESH_LISTEN", default_value = "[::]:8080")]
        listen: std::net::SocketAddr,
        #[command(flatten)]
        leader: LeaderArgs,
    },
    /// Print the version.
    Version,
}

/// Leader election: with several replicas, one reconciles.
#[derive(clap::Args, Debug)]
struct LeaderArgs {
    /// Reconcile only while holding the leader Lease.
    #[arg(long, env = "DUALMESH_LEADER_ELECT", default_value_t = false)]
    leader_elect: bool,
    /// Name of the leader Lease.
    #[arg(long, env = "DUALMESH_LEASE_NAME", default_value = "dualmesh")]
    lease_name: String,
    /// Namespace of the leader Lease (default: --namespace, else `default`).
    #[arg(long, env = "DUALMESH_LEASE_NAMESPACE")]
    lease_namespace: Option<String>,
    /// How long the Lease stays valid without renewal: the longest a
    /// standby waits after the leader died.
    #[arg(long, env = "DUALMESH_LEASE_DURATION_SECONDS", default_value_t = 15)]
    lease_duration_seconds: u64,
    /// This replica's name in the Lease (default: POD_NAME, else the host
    /// name, else a random one).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum LogFormat {
    Text,
    Json,
}

fn init_logging(format: LogFormat, filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Everything `dualmesh run` was told.
struct RunArgs {
    namespace: Option<String>,
    listen: std::net::SocketAddr,
    leader: LeaderArgs,
}

fn run(args: RunArgs) -> std::process::ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(serve_and_run(args));
    // Watches and the HTTP endpoint end with the process, not one by one.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    code
}

/// SIGTERM or SIGINT, once, shared by every part that must stop.
fn signals() -> dualmesh::controller::Shutdown {
    use futures::FutureExt;
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

fn identity(given: Option<String>) -> String {
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

async fn serve_and_run(args: RunArgs) -> std::process::ExitCode {
    use dualmesh::controller::{self, leader, metrics::Metrics};
    use dualmesh::server::{self, Health, Phase};
    use futures::FutureExt;
    use std::sync::Arc;

    let shutdown = signals();
    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::default());
    let listener = match server::bind(args.listen).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, listen = %args.listen, "cannot listen");
            return std::process::ExitCode::FAILURE;
        }
    };
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

    // Every write goes through the fence (a no-op without leader election).
    let client = match kube::Config::infer()
        .await
        .map_err(|e| e.to_string())
        .and_then(|config| controller::fence::client(config).map_err(|e| e.to_string()))
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot build a Kubernetes client");
            return std::process::ExitCode::FAILURE;
        }
    };

    // Leader election first: a standby watches nothing but the Lease.
    let leadership = if args.leader.leader_elect {
        let config = leader::LeaderConfig {
            lease_name: args.leader.lease_name.clone(),
            namespace: args
                .leader
                .lease_namespace
                .clone()
                .or_else(|| args.namespace.clone())
                .unwrap_or_else(|| "default".into()),
            identity: identity(args.leader.identity.clone()),
            duration: std::time::Duration::from_secs(args.leader.lease_duration_seconds),
        };
        controller::fence::install(
            &config.namespace,
            &config.lease_name,
            config.duration,
            config.fence_margin(),
        );
        health.set(Phase::Standby);
        match leader::acquire(client.clone(), &config, shutdown.clone()).await {
            Ok(Some(l)) => Some(l),
            Ok(None) => return std::process::ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = %e, "leader election failed");
                return std::process::ExitCode::FAILURE;
            }
        }
    } else {
        None
    };
    metrics.set_leader(true);
    health.set(Phase::Syncing);

    // Losing the Lease stops this replica at once, without draining: the
    // new leader may already be writing. Kubernetes restarts it as a standby.
    let mut leadership = leadership;
    let lost = match leadership.as_mut() {
        Some(l) => {
            let lost = l.lost();
            async move {
                lost.await;
                tracing::error!("lost the leader Lease: exiting");
                std::process::exit(1);
            }
            .boxed()
        }
        None => futures::future::pending().boxed(),
    };

    let ready_health = health.clone();
    let runtime = controller::Runtime {
        metrics: metrics.clone(),
        on_ready: Box::new(move || ready_health.set(Phase::Leading)),
        shutdown: shutdown.clone(),
    };
    let options = controller::RunOptions {
        namespace: args.namespace,
    };
    let stopping = health.clone();
    let controllers = async move {
        let result = controller::run(client, options, runtime).await;
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
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "controller failed");
            std::process::ExitCode::FAILURE
        }
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd { dir: None } => print!("{}", dualmesh::api::crds_yaml()),
        Command::Crd { dir: Some(dir) } => {
            for (file, yaml) in dualmesh::api::crd_files() {
                if let Err(e) = std::fs::write(dir.join(&file), yaml) {
                    eprintln!("failed to write {}: {e}", dir.join(file).display());
                    return std::process::ExitCode::FAILURE;
                }
            }
        }
        Command::Render { files } => match dualmesh::render::render(&files) {
            Ok(yaml) => print!("{yaml}"),
            Err(e) => {
                eprintln!("error: {e}");
                return std::process::ExitCode::from(2);
            }
        },
        Command::Run {
            namespace,
            log_format,
            log,
            listen,
            leader,
        } => {
            init_logging(log_format, &log);
            return run(RunArgs {
                namespace,
                listen,
                leader,
            });
        }
        Command::Version => println!("dualmesh {}", env!("CARGO_PKG_VERSION")),
    }
    std::process::ExitCode::SUCCESS
}

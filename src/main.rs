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
    /// Render each MeshCluster's Istio install (IstioOperator, Sail objects or
    /// Helm values files) from YAML files, offline.
    /// Exits 2 on bad input, naming the file, object and field.
    Render {
        /// Files or folders with MeshCluster and DualStackPolicy YAML.
        #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
        files: Vec<std::path::PathBuf>,
        /// Render this install path for every MeshCluster instead of each
        /// one's `spec.istio.installWith`: IstioOperator, Sail or Helm.
        #[arg(long = "install-with", value_parser = ["IstioOperator", "Sail", "Helm"])]
        install_with: Option<String>,
    },
    /// Check that a cluster is ready for a policy's mesh, family by family:
    /// ServiceCIDRs, node podCIDRs and addresses, externalIPs admission,
    /// Istio and API server versions. Read-only (plus one server-side dry
    /// run). Exits 0 when nothing FAILs, 1 when something does, 2 on usage
    /// or connection errors.
    Check {
        /// The kubeconfig file (default: $KUBECONFIG, ~/.kube/config, in-cluster).
        #[arg(long)]
        kubeconfig: Option<std::path::PathBuf>,
        /// The kubeconfig context (default: its current one).
        #[arg(long)]
        context: Option<String>,
        /// A YAML file with the DualStackPolicy to check against.
        #[arg(short = 'f', long = "filename", conflicts_with = "policy")]
        file: Option<std::path::PathBuf>,
        /// The DualStackPolicy in the cluster to check against (default:
        /// none: both families, the default gatewayAddresses rules).
        #[arg(long)]
        policy: Option<String>,
        /// Output format.
        #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Text)]
        output: OutputFormat,
        /// The namespace of the externalIPs dry-run Service (must exist).
        #[arg(long, default_value = "default")]
        namespace: String,
        /// The namespace istiod runs in.
        #[arg(long, default_value = "istio-system")]
        istio_namespace: String,
        /// The namespace of the gateway Pods.
        #[arg(long, default_value = "istio-system")]
        gateway_namespace: String,
        /// The label selector of the gateway Pods.
        #[arg(long, default_value = "app=istio-ingressgateway")]
        gateway_selector: String,
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
enum OutputFormat {
    Text,
    Json,
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
        Command::Render {
            files,
            install_with,
        } => match dualmesh::render::render(&files, install_with.as_deref()) {
            Ok(yaml) => print!("{yaml}"),
            Err(e) => {
                eprintln!("error: {e}");
                return std::process::ExitCode::from(2);
            }
        },
        Command::Check {
            kubeconfig,
            context,
            file,
            policy,
            output,
            namespace,
            istio_namespace,
            gateway_namespace,
            gateway_selector,
        } => {
            use dualmesh::check::{Format, Options, PolicySource};
            return dualmesh::check::main(Options {
                kubeconfig,
                context,
                policy: match (file, policy) {
                    (Some(f), _) => PolicySource::File(f),
                    (None, Some(name)) => PolicySource::Named(name),
                    (None, None) => PolicySource::None,
                },
                format: match output {
                    OutputFormat::Text => Format::Text,
                    OutputFormat::Json => Format::Json,
                },
                namespace,
                istio_namespace,
                gateway_namespace,
                gateway_selector,
            });
        }
        Command::Run {
            namespace,
            log_format,
            log,
            listen,
            leader,
        } => {
            init_logging(log_format, &log);
            let leader = leader
                .leader_elect
                .then(|| dualmesh::controller::leader::LeaderConfig {
                    namespace: leader
                        .lease_namespace
                        .or_else(|| namespace.clone())
                        .unwrap_or_else(|| "default".into()),
                    lease_name: leader.lease_name,
                    identity: dualmesh::operator::identity(leader.identity),
                    duration: std::time::Duration::from_secs(leader.lease_duration_seconds),
                });
            return dualmesh::operator::main(dualmesh::operator::Options {
                namespace,
                listen,
                leader,
            });
        }
        Command::Version => println!("dualmesh {}", env!("CARGO_PKG_VERSION")),
    }
    std::process::ExitCode::SUCCESS
}

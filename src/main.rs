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
    },
    /// Print the version.
    Version,
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
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn run(namespace: Option<String>) -> std::process::ExitCode {
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
    runtime.block_on(async move {
        let client = match kube::Client::try_default().await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "cannot build a Kubernetes client");
                return std::process::ExitCode::FAILURE;
            }
        };
        let options = dualmesh::controller::RunOptions { namespace };
        match dualmesh::controller::run(client, options).await {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = %e, "controller failed");
                std::process::ExitCode::FAILURE
            }
        }
    })
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
        } => {
            init_logging(log_format, &log);
            return run(namespace);
        }
        Command::Version => println!("dualmesh {}", env!("CARGO_PKG_VERSION")),
    }
    std::process::ExitCode::SUCCESS
}

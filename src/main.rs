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
    /// Print the version.
    Version,
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
        Command::Version => println!("dualmesh {}", env!("CARGO_PKG_VERSION")),
    }
    std::process::ExitCode::SUCCESS
}

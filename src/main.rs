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
    /// Print the version.
    Version,
}

fn main() {
    let cli = Cli::parse();
    match cli.command {
        Command::Version => println!("dualmesh {}", env!("CARGO_PKG_VERSION")),
    }
}

//! The `storefront-operator` binary. The controller itself arrives with the
//! reconcile work (issue #8); for now the binary can print the CRD it serves,
//! and `run` says plainly that it does not reconcile yet instead of pretending to.

use std::{io::Write, process::ExitCode};

use clap::{Parser, Subcommand};

/// Kubernetes operator for the Storefront platform.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Reconcile Storefront resources (the default; not implemented yet).
    Run,
    /// Print the Storefront CRD as YAML, e.g. `storefront-operator crd | kubectl apply -f -`.
    Crd,
}

fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run) {
        Command::Crd => {
            let yaml = storefront_operator::crd_yaml()?;
            std::io::stdout().lock().write_all(yaml.as_bytes())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Run => {
            eprintln!(
                "storefront-operator {}: the Storefront controller is not implemented yet (issue #8); exiting",
                env!("CARGO_PKG_VERSION")
            );
            Ok(ExitCode::from(2))
        }
    }
}

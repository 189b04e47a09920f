//! `dispenser`: the binary. Parses arguments and either validates the
//! configuration (`--test`) or runs the daemon.

mod cli;
mod config;

use std::path::Path;
use std::process::ExitCode;

use clap::Parser;

use cli::Cli;
use config::{Diagnostics, LocalSecrets};

/// Exit code of `--test` when the configuration has errors.
const EXIT_INVALID_CONFIG: u8 = 1;
/// Exit code while the daemon is not part of this branch.
const EXIT_NOT_IMPLEMENTED: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    if cli.test {
        return test_config(&cli.config);
    }
    eprintln!("the daemon is not implemented in this branch");
    ExitCode::from(EXIT_NOT_IMPLEMENTED)
}

/// Logs go to stderr; `RUST_LOG` chooses the level (warnings by default).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// `--test`: loads everything, prints warnings and errors, never a secret.
fn test_config(config_path: &Path) -> ExitCode {
    let config_dir = config_path.parent().unwrap_or(Path::new("."));
    let secrets = LocalSecrets::new(config_dir);
    match config::load(config_path, &secrets) {
        Ok(loaded) => {
            print_warnings(&loaded.warnings);
            tracing::info!(
                services = loaded.plan.services.len(),
                files = loaded.files.len(),
                "configuration loaded"
            );
            println!("Dispenser config is ok.");
            ExitCode::SUCCESS
        }
        Err(diagnostics) => {
            eprint!("{diagnostics}");
            ExitCode::from(EXIT_INVALID_CONFIG)
        }
    }
}

fn print_warnings(warnings: &Diagnostics) {
    for warning in warnings.warnings() {
        eprintln!("{warning}");
    }
}

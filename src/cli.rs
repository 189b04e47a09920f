//! Command-line arguments.

use std::path::PathBuf;

use clap::{Parser, ValueEnum};

/// Default configuration file, in the current directory.
pub const DEFAULT_CONFIG: &str = "dispenser.toml";

/// Runs one VM's containers from files in version control.
#[derive(Debug, Parser)]
#[command(name = "dispenser", version, about)]
pub struct Cli {
    /// The dispenser.toml to load.
    #[arg(short, long, default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// Where the daemon writes its process id.
    #[arg(short, long)]
    pub pid_file: Option<PathBuf>,
    /// Load and validate the configuration, then exit.
    #[arg(short, long)]
    pub test: bool,
    /// Send a signal to the running daemon.
    #[arg(short, long, value_enum)]
    pub signal: Option<Signal>,
}

/// Signals `--signal` can send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Signal {
    Reload,
    Stop,
}

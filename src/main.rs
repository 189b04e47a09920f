//! `dispenser`: the binary. Parses arguments, then validates the
//! configuration (`--test`), signals the running daemon (`-s`), runs a
//! subcommand (`commands.rs`), or runs the daemon.

mod acme_dns;
mod admin;
mod cli;
mod commands;
mod daemon;
mod dev;
mod export;
mod import;
mod logging;
mod notify;
mod pidfile;
mod takeover;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use cli::{Cli, Command, Signal};
use dispenser::config::{self, Diagnostics, Secrets};

/// Exit code of `--test` when the configuration has errors.
const EXIT_INVALID_CONFIG: u8 = 1;
/// How long `-s stop` waits for the daemon to exit.
const STOP_WAIT: Duration = Duration::from_secs(120);
/// The pidfile's name, beside dispenser.toml, unless `-p` says otherwise.
const DEFAULT_PID_FILE: &str = "dispenser.pid";

fn main() -> ExitCode {
    let cli = Cli::parse();
    let pid_file = cli
        .pid_file
        .clone()
        .unwrap_or_else(|| beside(&cli.config, DEFAULT_PID_FILE));
    if let Some(signal) = cli.signal {
        return send_signal(&pid_file, signal);
    }
    install_crypto_provider();
    if cli.test {
        logging::init(cli.log_level.as_deref(), "warn");
        return test_config(&cli.config);
    }
    match cli.command {
        None => {
            logging::init(cli.log_level.as_deref(), "info");
            let operator = notify::OperatorSlot::default();
            let options = daemon::DaemonOptions {
                socket: Some(admin::socket_path(&cli.config)),
                config: cli.config.clone(),
                pid_file,
                dev: false,
                operator: operator.clone(),
            };
            let config_path = cli.config;
            daemon::run(options, move || load_plan(&config_path, &operator))
        }
        Some(Command::Dev {
            services,
            http_port,
            https_port,
        }) => {
            logging::init(cli.log_level.as_deref(), "info");
            let options = dev::DevOptions {
                services,
                http_port: http_port.unwrap_or(cli::DEV_HTTP_PORT),
                https_port: https_port.unwrap_or(cli::DEV_HTTPS_PORT),
            };
            commands::dev(&cli.config, cli.pid_file, options)
        }
        Some(Command::Takeover { services }) => {
            logging::init(cli.log_level.as_deref(), "warn");
            takeover::run(&cli.config, &pid_file, &services)
        }
        Some(command) => {
            logging::init(cli.log_level.as_deref(), "warn");
            commands::run(&cli.config, command)
        }
    }
}

/// rustls uses ring, process-wide: several providers are linked in and
/// rustls refuses to choose at first use.
fn install_crypto_provider() {
    // An error means a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// `--test`: loads everything (fetching every secret, which proves access),
/// prints warnings and errors, never a secret.
fn test_config(config_path: &Path) -> ExitCode {
    let secrets = Secrets::from_env(config_dir(config_path));
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

/// The daemon's loader: the plan, or every problem rendered as text; the
/// operator settings go to `operator`. Each call fetches the secrets again,
/// so a rotated secret reaches its services.
pub(crate) fn load_plan(
    config_path: &Path,
    operator: &notify::OperatorSlot,
) -> Result<dispenser_actors::plan::Plan, String> {
    let secrets = Secrets::from_env(config_dir(config_path));
    match config::load(config_path, &secrets) {
        Ok(loaded) => {
            for warning in loaded.warnings.warnings() {
                tracing::warn!(warning = %warning, "configuration warning");
            }
            operator.set(loaded.operator);
            Ok(loaded.plan)
        }
        Err(diagnostics) => Err(diagnostics.to_string()),
    }
}

/// `-s reload|stop`: signals the daemon that holds the pidfile.
fn send_signal(pid_file: &Path, signal: Signal) -> ExitCode {
    let unix_signal = match signal {
        Signal::Reload => nix::sys::signal::Signal::SIGHUP,
        Signal::Stop => nix::sys::signal::Signal::SIGTERM,
    };
    let pid = match pidfile::signal_daemon(pid_file, unix_signal) {
        Ok(pid) => pid,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::FAILURE;
        }
    };
    if signal == Signal::Stop {
        if let Err(err) = pidfile::wait_released(pid_file, pid, STOP_WAIT) {
            eprintln!("error: {err}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

fn print_warnings(warnings: &Diagnostics) {
    for warning in warnings.warnings() {
        eprintln!("{warning}");
    }
}

fn config_dir(config_path: &Path) -> &Path {
    config_path.parent().unwrap_or(Path::new("."))
}

pub(crate) fn beside(config_path: &Path, name: &str) -> PathBuf {
    config_dir(config_path).join(name)
}

//! Command-line arguments: the top-level flags (`-c`, `-p`, `-t`, `-s`) as
//! before, and subcommands that talk to the running daemon or help install it.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use clap_complete::Shell;

/// Default configuration file, in the current directory.
pub const DEFAULT_CONFIG: &str = "dispenser.toml";
/// Lines of output `dispenser logs` shows before following.
pub const DEFAULT_TAIL: usize = 100;
/// The proxy's HTTP port in `dispenser dev` unless the config sets one.
pub const DEV_HTTP_PORT: u16 = 8080;
/// The proxy's HTTPS port in `dispenser dev` unless the config sets one.
pub const DEV_HTTPS_PORT: u16 = 8443;

/// Runs one VM's containers from files in version control.
#[derive(Debug, Parser)]
#[command(name = "dispenser", version, about)]
pub struct Cli {
    /// The dispenser.toml to load.
    #[arg(short, long, default_value = DEFAULT_CONFIG, global = true)]
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
    /// Log level or filter (as RUST_LOG: `debug`, `info,dispenser_actors=debug`).
    #[arg(long, global = true, env = "DISPENSER_LOG_LEVEL")]
    pub log_level: Option<String>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// What to do instead of running the daemon.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run services in the foreground, for development: every service, or
    /// those named with -s (their dependencies outside the selection are
    /// dropped); certificates come from the development CA, and the proxy
    /// listens on unprivileged ports.
    Dev {
        /// A service to run (its name or its folder); repeat for more. None:
        /// every service.
        #[arg(short = 's', long = "service", value_name = "NAME")]
        services: Vec<String>,
        /// The proxy's HTTP port (default 8080).
        #[arg(long)]
        http_port: Option<u16>,
        /// The proxy's HTTPS port (default 8443).
        #[arg(long)]
        https_port: Option<u16>,
    },
    /// Show every service: state, image, uptime, next run, routes, certificates.
    Status {
        /// Print JSON for scripts instead of a table.
        #[arg(long)]
        json: bool,
        /// Refresh until interrupted: in place on a terminal; otherwise the
        /// table again each time after a blank line (with --json, one JSON
        /// document per line).
        #[arg(short, long)]
        watch: bool,
        /// Seconds between two refreshes of --watch.
        #[arg(long, value_name = "SECONDS", default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=3600), requires = "watch")]
        interval: u64,
    },
    /// Show a service's container output.
    Logs {
        /// The service.
        service: String,
        /// Keep printing new output until interrupted.
        #[arg(short, long)]
        follow: bool,
        /// How many lines of past output to show.
        #[arg(long, default_value_t = DEFAULT_TAIL)]
        tail: usize,
    },
    /// Redeploy a service now, from a fresh pull of its image.
    Deploy {
        /// The service.
        service: String,
    },
    /// Put back a service's previous good version.
    Rollback {
        /// The service.
        service: String,
    },
    /// Take a service's routes out of traffic (they answer 503 with a page
    /// and Retry-After) or put them back; kept across daemon restarts.
    Maintenance {
        /// `on` or `off`.
        state: MaintenanceState,
        /// The service.
        service: String,
        /// What the page tells visitors (with `on`).
        #[arg(long)]
        message: Option<String>,
    },
    /// Replace containers that hold services' names but that Dispenser did
    /// not create (an ixpantia/dispenser host's) with managed ones, through
    /// the health gate; through the running daemon, or in this process when
    /// none runs.
    Takeover {
        /// The services; every declared service when none is named.
        services: Vec<String>,
    },
    /// Print a shell completion script.
    Completions {
        /// The shell.
        shell: Shell,
    },
    /// Print the man page (roff).
    Man,
    /// Write Dispenser's files from another tool's configuration.
    #[command(subcommand)]
    Import(Import),
    /// Write the plan as another engine's files (Kubernetes manifests, a
    /// Docker Swarm stack, Nomad jobs), from the same load and checks as
    /// --test; what cannot be carried over stops the export.
    Export {
        /// The engine to write for.
        #[arg(value_enum)]
        target: crate::export::Target,
        /// The folder to write into (created if missing; files of the same name are replaced).
        #[arg(short, long)]
        output: PathBuf,
        /// Export what cannot be carried over exactly (each such mapping is still listed).
        #[arg(long)]
        allow_lossy: bool,
        /// Export mounts of absolute host paths (each is still listed).
        #[arg(long)]
        allow_host_paths: bool,
        /// Kubernetes: also write an HTTPRoute per route, attached to this Gateway.
        #[arg(long, value_name = "NAME")]
        gateway: Option<String>,
    },
}

/// What `dispenser import` reads.
#[derive(Debug, Subcommand)]
pub enum Import {
    /// A Compose file: writes dispenser.toml, dispenser.vars and one folder
    /// per service; keys that cannot be mapped stop the import.
    Compose {
        /// The Compose file (compose.yaml, docker-compose.yml).
        file: PathBuf,
        /// The folder to write into (created if missing; it must hold no dispenser.toml).
        #[arg(short, long, default_value = ".")]
        output: PathBuf,
        /// Leave out what cannot be mapped (each dropped key is still listed).
        #[arg(long)]
        allow_lossy: bool,
    },
}

/// `dispenser maintenance on|off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MaintenanceState {
    On,
    Off,
}

/// Signals `--signal` can send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Signal {
    Reload,
    Stop,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn definitions_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn old_flags_still_parse() {
        let cli = Cli::parse_from(["dispenser", "-c", "x.toml", "-s", "reload"]);
        assert_eq!(cli.signal, Some(Signal::Reload));
        assert_eq!(cli.config, PathBuf::from("x.toml"));
        assert!(cli.command.is_none());
    }

    #[test]
    fn dev_takes_repeated_services() {
        let cli = Cli::parse_from(["dispenser", "dev", "-s", "api", "-s", "web/"]);
        match cli.command {
            Some(Command::Dev { services, .. }) => assert_eq!(services, ["api", "web/"]),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn import_compose_takes_a_file_an_output_and_the_lossy_flag() {
        let cli = Cli::parse_from(["dispenser", "import", "compose", "compose.yaml"]);
        match cli.command {
            Some(Command::Import(Import::Compose {
                file,
                output,
                allow_lossy,
            })) => {
                assert_eq!(file, PathBuf::from("compose.yaml"));
                assert_eq!(output, PathBuf::from("."));
                assert!(!allow_lossy);
            }
            other => panic!("unexpected {other:?}"),
        }
        let cli = Cli::parse_from([
            "dispenser",
            "import",
            "compose",
            "c.yml",
            "-o",
            "out",
            "--allow-lossy",
        ]);
        assert!(matches!(
            cli.command,
            Some(Command::Import(Import::Compose { allow_lossy: true, ref output, .. })) if output == &PathBuf::from("out")
        ));
    }

    #[test]
    fn export_takes_a_target_an_output_and_its_flags() {
        let cli = Cli::parse_from([
            "dispenser",
            "export",
            "kubernetes",
            "-o",
            "k8s",
            "--allow-lossy",
            "--gateway",
            "public",
        ]);
        match cli.command {
            Some(Command::Export {
                target,
                output,
                allow_lossy,
                allow_host_paths,
                gateway,
            }) => {
                assert_eq!(target, crate::export::Target::Kubernetes);
                assert_eq!(output, PathBuf::from("k8s"));
                assert!(allow_lossy && !allow_host_paths);
                assert_eq!(gateway.as_deref(), Some("public"));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(
            Cli::try_parse_from(["dispenser", "export", "kubernetes"]).is_err(),
            "-o is required"
        );
        assert!(Cli::try_parse_from(["dispenser", "export", "compose", "-o", "x"]).is_err());
    }

    #[test]
    fn logs_defaults() {
        let cli = Cli::parse_from(["dispenser", "logs", "api", "-f"]);
        match cli.command {
            Some(Command::Logs {
                service,
                follow,
                tail,
            }) => {
                assert_eq!(service, "api");
                assert!(follow);
                assert_eq!(tail, DEFAULT_TAIL);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

//! The subcommands: the ones that ask the running daemon (status, logs,
//! deploy, rollback), the generated files (completions, man page), `import`
//! (`crate::import`), `export` (`crate::export`), and `dev`, which runs the daemon on a development plan.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::CommandFactory;

use crate::admin::client::{self, Client, ClientError};
use crate::cli::{Cli, Command};
use crate::dev::{self, DevOptions};
use crate::{beside, daemon, load_plan};

/// The pidfile of `dispenser dev`, beside dispenser.toml, so a development
/// run never contends with the production daemon's pidfile.
const DEV_PID_FILE: &str = "dispenser-dev.pid";

/// Runs a subcommand other than `dev`.
pub fn run(config: &Path, command: Command) -> ExitCode {
    match command {
        Command::Completions { shell } => {
            let mut cli = Cli::command();
            clap_complete::generate(shell, &mut cli, "dispenser", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
        Command::Man => {
            let page = clap_mangen::Man::new(Cli::command());
            match page.render(&mut std::io::stdout()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => fail(err),
            }
        }
        Command::Status {
            json, watch: false, ..
        } => ask(config, |client| async move {
            let report = client.status().await?;
            if json {
                match serde_json::to_string_pretty(&report) {
                    Ok(text) => println!("{text}"),
                    Err(err) => return Err(ClientError::Decode(err.to_string())),
                }
            } else {
                print!("{}", client::table(&report));
            }
            Ok(())
        }),
        Command::Status {
            json,
            watch: true,
            interval,
        } => ask(config, |client| {
            crate::admin::watch::status(client, json, std::time::Duration::from_secs(interval))
        }),
        Command::Logs {
            service,
            follow,
            tail,
        } => ask(config, |client| async move {
            client.logs(&service, tail, follow).await
        }),
        Command::Deploy { service } => ask(config, |client| async move {
            let message =
                with_progress(&client, &service, client.action(&service, "deploy")).await?;
            println!("{message}");
            Ok(())
        }),
        Command::Rollback { service } => ask(config, |client| async move {
            let message =
                with_progress(&client, &service, client.action(&service, "rollback")).await?;
            println!("{message}");
            Ok(())
        }),
        Command::Maintenance {
            state,
            service,
            message,
        } => ask(config, |client| async move {
            let on = state == crate::cli::MaintenanceState::On;
            let message = client.maintenance(&service, on, message.as_deref()).await?;
            println!("{message}");
            Ok(())
        }),
        Command::Import(crate::cli::Import::Compose {
            file,
            output,
            allow_lossy,
        }) => crate::import::compose(&file, &output, allow_lossy),
        Command::Export {
            target,
            output,
            allow_lossy,
            allow_host_paths,
            gateway,
        } => {
            let options = crate::export::Options {
                allow: crate::export::Allow {
                    lossy: allow_lossy,
                    host_paths: allow_host_paths,
                },
                gateway,
            };
            crate::export::run(config, target, &output, options)
        }
        Command::Dev { .. } | Command::Takeover { .. } => {
            eprintln!("error: `dev` and `takeover` are run by main");
            ExitCode::FAILURE
        }
    }
}

/// `dispenser dev`: the daemon in the foreground on the development plan.
pub fn dev(config: &Path, pid_file: Option<PathBuf>, options: DevOptions) -> ExitCode {
    // Fail early, before Docker, on a selection that does not exist.
    let operator = crate::notify::OperatorSlot::default();
    let plan = match load_plan(config, &operator) {
        Ok(plan) => plan,
        Err(problems) => {
            eprint!("{problems}");
            return ExitCode::FAILURE;
        }
    };
    let plan = match dev::select(plan, &options) {
        Ok(plan) => plan,
        Err(err) => return fail(err),
    };
    println!(
        "dispenser dev: running {} (instance `{}`); Ctrl-C stops them",
        plan.services.keys().cloned().collect::<Vec<_>>().join(", "),
        plan.settings.instance
    );
    for url in dev::urls(&plan) {
        println!("  {url}");
    }
    let daemon_options = daemon::DaemonOptions {
        config: config.to_path_buf(),
        pid_file: pid_file.unwrap_or_else(|| beside(config, DEV_PID_FILE)),
        socket: None,
        dev: true,
        // No admin listener and no notifications in development.
        operator: crate::notify::OperatorSlot::default(),
    };
    let config_path = config.to_path_buf();
    daemon::run(daemon_options, move || {
        let plan = load_plan(&config_path, &operator)?;
        dev::select(plan, &options).map_err(|err| format!("error: {err}\n"))
    })
}

/// Runs one client request on a small runtime; errors go to stderr.
fn ask<F, Fut>(config: &Path, request: F) -> ExitCode
where
    F: FnOnce(Client) -> Fut,
    Fut: std::future::Future<Output = Result<(), ClientError>>,
{
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => return fail(err),
    };
    match runtime.block_on(request(Client::for_config(config))) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => fail(err),
    }
}

fn fail(err: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {err}");
    ExitCode::FAILURE
}

/// Runs `work` (a deploy, a rollback, a takeover through the socket) while
/// drawing the daemon's progress for `service` on stderr. The work is a
/// future not yet started: progress is subscribed to first, so no update of
/// it is missed.
pub(crate) async fn with_progress<T>(
    client: &Client,
    service: &str,
    work: impl std::future::Future<Output = Result<T, ClientError>>,
) -> Result<T, ClientError> {
    let view = crate::admin::progress::View::for_stderr(Some(service.to_string()));
    let watch = client.watch_progress(view).await;
    let outcome = work.await;
    if let Some(watch) = watch {
        watch.finish().await;
    }
    outcome
}

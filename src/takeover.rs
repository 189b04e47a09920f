//! `dispenser takeover [SERVICE...]`: replaces the containers that hold
//! declared services' names but carry no Dispenser labels (what an
//! ixpantia/dispenser host leaves) with managed ones. With the daemon
//! running, each service is asked through the admin socket (`TakeoverNow`);
//! without it, this process runs the same actors: it takes the pidfile (so
//! no daemon starts meanwhile), applies the plan, takes over, and exits,
//! leaving the containers running.

use std::path::Path;
use std::process::ExitCode;

use dispenser_actors::control::{self, Options};
use dispenser_actors::plan::Plan;
use dispenser_actors::supervisor::TakeoverNow;

use crate::admin::client::{Client, ClientError};
use crate::load_plan;
use crate::notify::OperatorSlot;
use crate::pidfile::Pidfile;

/// Runs the command: the services named (every declared one when none is),
/// one line per service; fails when any takeover failed. `pid_file` is the
/// daemon's: held while this process runs the actors itself.
pub fn run(config: &Path, pid_file: &Path, services: &[String]) -> ExitCode {
    let plan = match load_plan(config, &OperatorSlot::default()) {
        Ok(plan) => plan,
        Err(problems) => {
            eprint!("{problems}");
            return ExitCode::FAILURE;
        }
    };
    let names: Vec<String> = if services.is_empty() {
        plan.services.keys().cloned().collect()
    } else {
        services.to_vec()
    };
    if let Some(unknown) = names.iter().find(|name| !plan.services.contains_key(*name)) {
        eprintln!(
            "error: no service named `{unknown}` in {}",
            config.display()
        );
        return ExitCode::FAILURE;
    }
    let client = Client::for_config(config);
    let running = match current_thread(client.status()) {
        Ok(Ok(_)) => true,
        Ok(Err(ClientError::NotRunning { .. })) => false,
        Ok(Err(err)) => {
            eprintln!("error: {err}");
            return ExitCode::FAILURE;
        }
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::FAILURE;
        }
    };
    let outcomes = if running {
        current_thread(through_daemon(&client, &names))
            .unwrap_or_else(|err| vec![Err(err.to_string())])
    } else {
        in_process(pid_file, plan, &names)
    };
    let mut failed = false;
    for outcome in outcomes {
        match outcome {
            Ok(line) => println!("{line}"),
            Err(line) => {
                failed = true;
                eprintln!("error: {line}");
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Asks the running daemon, one service after the other.
async fn through_daemon(client: &Client, names: &[String]) -> Vec<Result<String, String>> {
    let mut outcomes = Vec::new();
    for name in names {
        let outcome =
            crate::commands::with_progress(client, name, client.action(name, "takeover")).await;
        outcomes.push(outcome.map_err(|err| format!("{name}: {err}")));
    }
    outcomes
}

/// Without a daemon: the supervisor and service actors of this process
/// apply the plan (which refuses the names held, as the daemon does) and
/// then take over, one service after the other.
fn in_process(pid_file: &Path, plan: Plan, names: &[String]) -> Vec<Result<String, String>> {
    let _pidfile = match Pidfile::acquire(pid_file) {
        Ok(pidfile) => pidfile,
        Err(err) => return vec![Err(err.to_string())],
    };
    let system = actix_rt::System::new();
    system.block_on(async move {
        let engine = match control::connect().await {
            Ok(engine) => engine,
            Err(err) => return vec![Err(format!("cannot reach the Docker Engine: {err}"))],
        };
        let mut control = control::start(engine, &plan, Options::command());
        if let Err(err) = control.apply(plan).await {
            return vec![Err(format!("the plan was not applied: {err}"))];
        }
        let supervisor = control.supervisor();
        let drawing = crate::admin::progress::draw_local(None);
        let mut outcomes = Vec::new();
        for name in names {
            let outcome = match supervisor
                .send(TakeoverNow {
                    service: name.clone(),
                })
                .await
            {
                Ok(Ok(line)) => Ok(line),
                Ok(Err(err)) => Err(format!("{name}: {err}")),
                Err(err) => Err(format!("{name}: the supervisor did not answer: {err}")),
            };
            outcomes.push(outcome);
        }
        drawing.finish().await;
        // Every deploy above is written before the process exits.
        control.flush().await;
        outcomes
    })
}

/// Runs `work` on a small single-threaded runtime.
fn current_thread<T>(work: impl std::future::Future<Output = T>) -> Result<T, std::io::Error> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    Ok(runtime.block_on(work))
}

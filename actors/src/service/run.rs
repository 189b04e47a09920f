//! Scheduled runs of a service: the `CronFired`, `RunOverdue` and
//! `RunFinished` handlers of `ServiceActor`. A job's run holds the mailbox
//! only while its container is replaced and started; a spawned future waits
//! for the exit and reports back with `RunFinished`.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use tracing::{debug, error, info, warn};

use super::container::short;
use super::pipeline::{Change, Job, Reconciled};
use super::{Action, ServiceActor, State};
use crate::cron::CronFired;
use crate::engine::reachability::BackOff;
use crate::engine::{Engine, EngineError};
use crate::ledger::{Outcome, RecordRun, RunRecord, Trigger};
use crate::plan::Overlap;

/// Lines of a run's output kept in the ledger.
pub const OUTPUT_LINES: usize = 20;

/// A run went past the service's `max_runtime`: stop its container.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct RunOverdue {
    pub run: u64,
}

/// A run's container exited (or could no longer be waited for).
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct RunFinished {
    pub run: u64,
    /// The exit code, or why waiting failed.
    pub exit: Result<i64, String>,
    pub output_tail: Vec<String>,
}

/// A job's run in progress.
#[derive(Debug, Clone)]
pub(super) struct ActiveRun {
    id: u64,
    container_id: String,
    started_at: DateTime<Utc>,
    /// Set when Dispenser ended the run itself (replaced, over time).
    ended_by: Option<String>,
}

impl ServiceActor {
    /// Writes a run to the ledger, if there is one.
    fn record(&self, record: RunRecord) {
        if let Some(ledger) = &self.runtime.ledger {
            if let Err(err) = ledger.try_send(RecordRun(record)) {
                warn!(service = %self.service.name, error = %err, "cannot send the run to the ledger");
            }
        }
    }

    /// A record of a run that did not start or restarted a service.
    fn instant_record(&self, outcome: Outcome, reason: Option<String>) -> RunRecord {
        let now = Utc::now();
        RunRecord {
            service: self.service.name.clone(),
            trigger: Trigger::Cron,
            started_at: now,
            ended_at: (outcome != Outcome::Skipped).then_some(now),
            exit_code: None,
            outcome,
            reason,
            output_tail: Vec::new(),
        }
    }

    /// True while a job's container runs (a scheduled run, or the start-up one).
    fn run_in_progress(&self) -> bool {
        self.run.is_some() || self.state == State::Running
    }

    /// True when a reconcile found a scheduled job's container running that
    /// no run of this actor waits for: a run started by a daemon that was
    /// killed (or stopped) before it ended.
    pub(super) fn is_unwatched_run(&self, done: &Reconciled) -> bool {
        self.service.is_job()
            && self.service.lifecycle.schedule.is_some()
            && self.run.is_none()
            && done.change == Change::Adopted
            && done.state == State::Running
    }

    /// Takes over a run started before a restart of Dispenser: it is waited
    /// for and recorded like any run (with its real start, from Docker), so
    /// its row is closed and the schedule goes on once it exits.
    /// `max_runtime` counts from the adoption.
    pub(super) fn adopt_run(&mut self, container_id: String, ctx: &mut Context<Self>) {
        self.next_run += 1;
        let run = self.next_run;
        info!(service = %self.service.name, container = %short(&container_id), "adopted a run started before a restart; waiting for it");
        self.run = Some(ActiveRun {
            id: run,
            container_id: container_id.clone(),
            started_at: Utc::now(),
            ended_by: None,
        });
        let engine = self.runtime.engine.clone();
        let id = container_id.clone();
        let lookup = async move { engine.inspect(&id).await };
        ctx.wait(lookup.into_actor(self).map(move |found, actor, _| {
            let started = found
                .ok()
                .flatten()
                .and_then(|container| DateTime::parse_from_rfc3339(&container.started_at).ok());
            if let (Some(started), Some(active)) = (started, actor.run.as_mut()) {
                if active.id == run {
                    active.started_at = started.with_timezone(&Utc);
                }
            }
        }));
        self.watch(run, container_id, ctx);
    }

    /// Spawns the future that waits for the run's exit, enforcing `max_runtime`.
    fn watch(&self, run: u64, container_id: String, ctx: &mut Context<Self>) {
        let engine = self.runtime.engine.clone();
        let max_runtime: Option<Duration> = self.service.lifecycle.max_runtime;
        let me = ctx.address();
        actix::spawn(async move {
            let mut waiting = Box::pin(wait_through_outages(engine.clone(), container_id.clone()));
            let exit = match max_runtime {
                Some(limit) => match tokio::time::timeout(limit, &mut waiting).await {
                    Ok(exit) => exit,
                    Err(_elapsed) => {
                        me.do_send(RunOverdue { run });
                        waiting.await
                    }
                },
                None => waiting.await,
            };
            let output_tail = engine
                .logs_tail(&container_id, OUTPUT_LINES)
                .await
                .unwrap_or_default();
            me.do_send(RunFinished {
                run,
                exit: exit.map_err(|err| err.to_string()),
                output_tail,
            });
        });
    }
}

/// Waits for the container's exit; while Docker does not answer, waits for
/// it to come back (capped back-off with jitter) and asks again, so an
/// outage of Docker is not recorded as a failed run. Docker answers at once
/// for a container that exited meanwhile.
async fn wait_through_outages(engine: Arc<dyn Engine>, id: String) -> Result<i64, EngineError> {
    let mut back_off = BackOff::default();
    loop {
        match engine.wait_exit(&id).await {
            Err(EngineError::Unreachable(reason)) => {
                let pause = back_off.next_pause();
                debug!(container = %id, error = %reason, "cannot wait for the run's exit; asking again when docker answers");
                tokio::time::sleep(pause).await;
            }
            outcome => return outcome,
        }
    }
}

impl Handler<CronFired> for ServiceActor {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, msg: CronFired, _ctx: &mut Self::Context) -> Self::Result {
        let name = self.service.name.clone();
        let is_job = self.service.is_job();
        if is_job && self.run_in_progress() {
            match self.service.lifecycle.overlap {
                Overlap::Skip => {
                    warn!(service = %name, due = %msg.due, "the previous run still goes; run skipped");
                    self.record(self.instant_record(
                        Outcome::Skipped,
                        Some("the previous run was still going".into()),
                    ));
                    return AtomicResponse::new(Box::pin(fut::ready(())));
                }
                Overlap::Replace => {
                    info!(service = %name, "the previous run still goes; replacing it");
                    if let Some(mut old) = self.run.take() {
                        old.ended_by = Some("replaced by a newer run".into());
                        self.ended_runs.insert(old.id, old);
                    }
                }
            }
        }
        if let Err(err) = self.begin(Action::Run) {
            self.record(self.instant_record(Outcome::Failed, Some(err.to_string())));
            return AtomicResponse::new(Box::pin(fut::ready(())));
        }
        let started_at = Utc::now();
        AtomicResponse::new(Box::pin(self.pipeline(Job::Cron).map(
            move |outcome, actor, ctx| match outcome {
                Ok(done) if is_job => {
                    let container_id = done.container_id;
                    actor.next_run += 1;
                    let run = actor.next_run;
                    info!(service = %actor.service.name, container = %short(&container_id), "scheduled run started");
                    actor.run = Some(ActiveRun {
                        id: run,
                        container_id: container_id.clone(),
                        started_at,
                        ended_by: None,
                    });
                    actor.set_state(State::Running);
                    actor.watch(run, container_id, ctx);
                }
                Ok(done) => {
                    info!(service = %actor.service.name, container = %short(&done.container_id), "restarted on schedule");
                    actor.set_state(State::Running);
                    actor.record(actor.instant_record(Outcome::Restarted, None));
                }
                Err(err) => {
                    let mut record = actor.instant_record(Outcome::Failed, Some(err.to_string()));
                    record.started_at = started_at;
                    actor.record(record);
                }
            },
        )))
    }
}

impl Handler<RunOverdue> for ServiceActor {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, msg: RunOverdue, _ctx: &mut Self::Context) -> Self::Result {
        let current = self.run.as_ref().filter(|run| run.id == msg.run).cloned();
        let Some(run) = current else {
            info!(service = %self.service.name, "overdue run already ended");
            return AtomicResponse::new(Box::pin(fut::ready(())));
        };
        if self.begin(Action::StopRun).is_err() {
            return AtomicResponse::new(Box::pin(fut::ready(())));
        }
        let limit = self.service.lifecycle.max_runtime.unwrap_or_default();
        warn!(service = %self.service.name, max_runtime = ?limit, "run exceeded max_runtime; stopping it");
        if let Some(active) = self.run.as_mut() {
            active.ended_by = Some(format!("stopped after exceeding max_runtime ({limit:?})"));
        }
        let engine = self.runtime.engine.clone();
        let grace = self.service.container.stop_grace();
        let work = async move { engine.stop(&run.container_id, grace).await };
        AtomicResponse::new(Box::pin(work.into_actor(self).map(|stopped, actor, _| {
            if let Err(err) = stopped {
                error!(service = %actor.service.name, error = %err, "cannot stop the overdue run");
            }
            // The waiter reports the exit with `RunFinished`.
            actor.set_state(State::Running);
        })))
    }
}

impl Handler<RunFinished> for ServiceActor {
    type Result = ();

    fn handle(&mut self, msg: RunFinished, _ctx: &mut Self::Context) -> Self::Result {
        let is_current = self.run.as_ref().is_some_and(|run| run.id == msg.run);
        let run = match is_current {
            true => self.run.take(),
            false => self.ended_runs.remove(&msg.run),
        };
        let Some(run) = run else {
            warn!(service = %self.service.name, run = msg.run, "a run nobody waits for finished");
            return;
        };
        let ended_at = Utc::now();
        let duration_ms = (ended_at - run.started_at).num_milliseconds();
        let exit_code = msg.exit.as_ref().ok().copied();
        let (outcome, reason) = match (&run.ended_by, &msg.exit) {
            (Some(why), _) => (Outcome::Failed, Some(why.clone())),
            (None, Ok(0)) => (Outcome::Succeeded, None),
            (None, Ok(code)) => (Outcome::Failed, Some(format!("exited with code {code}"))),
            (None, Err(err)) => (
                Outcome::Failed,
                Some(format!("cannot wait for the run: {err}")),
            ),
        };
        match (&outcome, &reason) {
            (Outcome::Succeeded, _) => {
                info!(service = %self.service.name, exit_code = 0, duration_ms, "run succeeded");
            }
            (_, reason) => {
                let reason = reason.clone().unwrap_or_default();
                error!(service = %self.service.name, exit_code = ?exit_code, duration_ms, reason = %reason, "run failed");
            }
        }
        self.record(RunRecord {
            service: self.service.name.clone(),
            trigger: Trigger::Cron,
            started_at: run.started_at,
            ended_at: Some(ended_at),
            exit_code,
            outcome,
            reason,
            output_tail: msg.output_tail,
        });
        // The state follows the run only while its container is the service's.
        if is_current && self.container_id.as_deref() == Some(run.container_id.as_str()) {
            if let State::Running = self.state {
                self.set_state(State::Exited {
                    code: exit_code.unwrap_or(-1),
                });
            }
        }
    }
}

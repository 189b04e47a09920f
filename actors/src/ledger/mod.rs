//! `Ledger`: Dispenser's history, in one embedded SQLite file under the state
//! dir (`ledger.sqlite3`, readable with `sqlite3`). One actor on a
//! `SyncArbiter` thread owns the connection; everything else only sends it
//! records, so a slow disk never blocks a service actor.
//!
//! Protocol:
//! - `RecordRun(RunRecord)` -> `()`: appends a run and keeps the last
//!   `RUNS_KEPT` runs of its service.
//! - `RecentRuns { service, limit }` -> `Result<Vec<RunRecord>, LedgerError>`:
//!   the newest runs of a service, newest first.
//!
//! - `RecordDeploy`, `RecentDeploys`: the deploy history (`deploys.rs`).
//!
//! Tables are created by numbered migrations (`schema.rs`, `PRAGMA
//! user_version`).

mod deploys;
mod schema;
#[cfg(test)]
mod tests;

use std::fmt;
use std::fs::{DirBuilder, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use actix::prelude::*;
use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{params, Connection};
use tracing::{error, warn};

pub use deploys::{
    DeployOutcomeKind, DeployRecord, DeployTrigger, RecentDeploys, RecordDeploy, DEPLOYS_KEPT,
};

/// The ledger's file name inside the state dir.
pub const LEDGER_FILE: &str = "ledger.sqlite3";
/// Runs kept per service; older ones are deleted as new ones arrive.
pub const RUNS_KEPT: usize = 200;
/// How long a write waits for a reader (`sqlite3` open on the file) to let go.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Appends one run to the history.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct RecordRun(pub RunRecord);

/// The newest runs of a service, newest first.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<Vec<RunRecord>, LedgerError>")]
pub struct RecentRuns {
    pub service: String,
    pub limit: usize,
}

/// The actor that owns the SQLite connection.
pub struct Ledger {
    /// `None` when the file could not be opened: records are logged and dropped.
    connection: Option<Connection>,
    path: PathBuf,
}

/// One run of a scheduled service, as the `runs` table holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRecord {
    pub service: String,
    pub trigger: Trigger,
    pub started_at: DateTime<Utc>,
    /// `None` for a run that never started (skipped).
    pub ended_at: Option<DateTime<Utc>>,
    pub exit_code: Option<i64>,
    pub outcome: Outcome,
    /// Why it failed or was skipped, in words.
    pub reason: Option<String>,
    /// The last lines of the container's output.
    pub output_tail: Vec<String>,
}

/// What started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The service's `cron` schedule.
    Cron,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A job exited with code 0.
    Succeeded,
    /// A job exited with another code, was stopped, or could not start.
    Failed,
    /// Not run: the previous run still went (`overlap = "skip"`).
    Skipped,
    /// A long-running service was restarted by its schedule.
    Restarted,
}

/// Why the ledger could not be opened or read.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("cannot create the state dir {path}: {source}")]
    StateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open the ledger {path}: {reason}")]
    Open { path: PathBuf, reason: String },
    #[error("ledger query failed: {0}")]
    Query(String),
    #[error("the ledger is not open")]
    Closed,
}

impl Ledger {
    /// Opens (creating it and the state dir, mode 0700, if needed) the ledger
    /// in `state_dir`, and brings its tables up to date.
    pub fn open(state_dir: &Path) -> Result<Ledger, LedgerError> {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(state_dir)
            .map_err(|source| LedgerError::StateDir {
                path: state_dir.to_path_buf(),
                source,
            })?;
        let path = state_dir.join(LEDGER_FILE);
        let open_error = |reason: String| LedgerError::Open {
            path: path.clone(),
            reason,
        };
        // Created 0600 before SQLite opens it: job output may be private.
        OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)
            .map_err(|err| open_error(err.to_string()))?;
        let mut connection = Connection::open(&path).map_err(|err| open_error(err.to_string()))?;
        connection
            .busy_timeout(BUSY_TIMEOUT)
            .and_then(|_| connection.pragma_update(None, "journal_mode", "WAL"))
            .map_err(|err| open_error(err.to_string()))?;
        schema::migrate(&mut connection).map_err(|err| open_error(err.to_string()))?;
        Ok(Ledger {
            connection: Some(connection),
            path,
        })
    }

    /// Where the file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Starts the actor on its own thread.
    pub fn start(self) -> Addr<Ledger> {
        let path = self.path.clone();
        let once = Mutex::new(Some(self));
        SyncArbiter::start(1, move || {
            once.lock()
                .ok()
                .and_then(|mut slot| slot.take())
                .unwrap_or_else(|| Ledger {
                    connection: None,
                    path: path.clone(),
                })
        })
    }

    fn insert_run(&self, run: &RunRecord) -> Result<(), LedgerError> {
        let connection = self.connection.as_ref().ok_or(LedgerError::Closed)?;
        let query = |err: rusqlite::Error| LedgerError::Query(err.to_string());
        connection
            .execute(
                "INSERT INTO runs (service, trigger, started_at, ended_at, exit_code, outcome, reason, output_tail)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    run.service,
                    run.trigger.to_string(),
                    timestamp(run.started_at),
                    run.ended_at.map(timestamp),
                    run.exit_code,
                    run.outcome.to_string(),
                    run.reason,
                    (!run.output_tail.is_empty()).then(|| run.output_tail.join("\n")),
                ],
            )
            .map_err(query)?;
        connection
            .execute(
                "DELETE FROM runs WHERE service = ?1 AND id NOT IN
                   (SELECT id FROM runs WHERE service = ?1 ORDER BY id DESC LIMIT ?2)",
                params![run.service, RUNS_KEPT as i64],
            )
            .map_err(query)?;
        Ok(())
    }

    fn recent_runs(&self, service: &str, limit: usize) -> Result<Vec<RunRecord>, LedgerError> {
        let connection = self.connection.as_ref().ok_or(LedgerError::Closed)?;
        let query = |err: rusqlite::Error| LedgerError::Query(err.to_string());
        let mut statement = connection
            .prepare(
                "SELECT service, trigger, started_at, ended_at, exit_code, outcome, reason, output_tail
                 FROM runs WHERE service = ?1 ORDER BY id DESC LIMIT ?2",
            )
            .map_err(query)?;
        let rows = statement
            .query_map(params![service, limit as i64], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, Option<String>>(3)?,
                    row.get::<_, Option<i64>>(4)?,
                    row.get::<_, String>(5)?,
                    row.get::<_, Option<String>>(6)?,
                    row.get::<_, Option<String>>(7)?,
                ))
            })
            .map_err(query)?;
        let mut runs = Vec::new();
        for row in rows {
            let (service, trigger, started, ended, exit_code, outcome, reason, output) =
                row.map_err(query)?;
            runs.push(RunRecord {
                service,
                trigger: Trigger::parse(&trigger)
                    .ok_or_else(|| LedgerError::Query(format!("unknown trigger `{trigger}`")))?,
                started_at: parse_timestamp(&started)?,
                ended_at: ended.as_deref().map(parse_timestamp).transpose()?,
                exit_code,
                outcome: Outcome::parse(&outcome)
                    .ok_or_else(|| LedgerError::Query(format!("unknown outcome `{outcome}`")))?,
                reason,
                output_tail: output
                    .map(|text| text.lines().map(str::to_string).collect())
                    .unwrap_or_default(),
            });
        }
        Ok(runs)
    }
}

impl Actor for Ledger {
    type Context = SyncContext<Self>;
}

impl Handler<RecordRun> for Ledger {
    type Result = ();

    fn handle(&mut self, msg: RecordRun, _ctx: &mut Self::Context) -> Self::Result {
        let RecordRun(run) = msg;
        crate::metrics::global().cron_run(&run.service, &run.outcome.to_string());
        if run.outcome == Outcome::Failed {
            crate::events::publish(crate::events::Event::CronRunFailed {
                service: run.service.clone(),
                exit_code: run.exit_code,
                reason: run.reason.clone(),
            });
        }
        match self.insert_run(&run) {
            Ok(()) => {}
            Err(LedgerError::Closed) => {
                warn!(service = %run.service, "the ledger is not open; run not recorded");
            }
            Err(err) => {
                error!(service = %run.service, ledger = %self.path.display(), error = %err, "cannot record the run");
            }
        }
    }
}

impl Handler<RecentRuns> for Ledger {
    type Result = Result<Vec<RunRecord>, LedgerError>;

    fn handle(&mut self, msg: RecentRuns, _ctx: &mut Self::Context) -> Self::Result {
        self.recent_runs(&msg.service, msg.limit)
    }
}

impl Trigger {
    fn parse(text: &str) -> Option<Trigger> {
        match text {
            "cron" => Some(Trigger::Cron),
            _ => None,
        }
    }
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Trigger::Cron => "cron",
        })
    }
}

impl Outcome {
    fn parse(text: &str) -> Option<Outcome> {
        match text {
            "succeeded" => Some(Outcome::Succeeded),
            "failed" => Some(Outcome::Failed),
            "skipped" => Some(Outcome::Skipped),
            "restarted" => Some(Outcome::Restarted),
            _ => None,
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Failed => "failed",
            Outcome::Skipped => "skipped",
            Outcome::Restarted => "restarted",
        })
    }
}

/// RFC 3339 in UTC with milliseconds, which sorts as text and which SQLite's
/// date functions read.
fn timestamp(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn parse_timestamp(text: &str) -> Result<DateTime<Utc>, LedgerError> {
    DateTime::parse_from_rfc3339(text)
        .map(|time| time.with_timezone(&Utc))
        .map_err(|err| LedgerError::Query(format!("bad timestamp `{text}`: {err}")))
}

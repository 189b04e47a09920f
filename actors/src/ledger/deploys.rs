//! The `deploys` table: one row per deploy of a service (new digest, reload,
//! cron restart, manual deploy or rollback), written only by the `Ledger`.
//!
//! Protocol (handled by `Ledger`):
//! - `RecordDeploy(DeployRecord)` -> `()`: appends a deploy and keeps the last
//!   `DEPLOYS_KEPT` of its service.
//! - `RecentDeploys { service, limit }` -> `Result<Vec<DeployRecord>, LedgerError>`:
//!   the newest deploys of a service, newest first.

use std::fmt;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use rusqlite::params;
use tracing::{error, warn};

use super::{parse_timestamp, timestamp, Ledger, LedgerError};

/// Deploys kept per service; older ones are deleted as new ones arrive.
pub const DEPLOYS_KEPT: usize = 500;

/// Appends one deploy to the history.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct RecordDeploy(pub DeployRecord);

/// The newest deploys of a service, newest first.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<Vec<DeployRecord>, LedgerError>")]
pub struct RecentDeploys {
    pub service: String,
    pub limit: usize,
}

/// One deploy, as the `deploys` table holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployRecord {
    pub service: String,
    pub trigger: DeployTrigger,
    /// The registry digest the service ran before (empty when it had no container).
    pub old_digest: Option<String>,
    /// The digest the deploy tried to put in place.
    pub new_digest: Option<String>,
    /// The registry tag of `new_digest`, for a service that tracks a semver
    /// range (`[dispenser] track`).
    pub tag: Option<String>,
    pub started_at: DateTime<Utc>,
    pub ended_at: DateTime<Utc>,
    pub outcome: DeployOutcomeKind,
    /// Why it failed or was rolled back, in words.
    pub reason: Option<String>,
}

/// What started a deploy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeployTrigger {
    /// The registry watcher found a new digest.
    NewDigest,
    /// A reload changed the service's spec.
    Reload,
    /// The service's schedule restarted it.
    Cron,
    /// `dispenser deploy SERVICE`.
    Manual,
    /// `dispenser rollback SERVICE`.
    Rollback,
    /// `dispenser takeover`: a container Dispenser did not create is replaced.
    Takeover,
}

/// How a deploy ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeployOutcomeKind {
    /// The new container serves.
    Succeeded,
    /// The new container was bad; the previous one serves again.
    RolledBack,
    /// The deploy failed before touching the running container (a pull, a
    /// create), or the previous version could not be put back.
    Failed,
    /// The daemon stopped during the gate: the new container was removed
    /// and the previous one serves; the next start deploys it again.
    Abandoned,
    /// A newer digest came during the soak: the new container was removed
    /// and the previous (proven) one serves until the newer one is ready.
    Superseded,
}

impl Ledger {
    pub(super) fn insert_deploy(&self, deploy: &DeployRecord) -> Result<(), LedgerError> {
        let connection = self.connection.as_ref().ok_or(LedgerError::Closed)?;
        let query = |err: rusqlite::Error| LedgerError::Query(err.to_string());
        connection
            .execute(
                "INSERT INTO deploys (service, trigger, old_digest, new_digest, started_at, ended_at, outcome, reason, tag)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    deploy.service,
                    deploy.trigger.to_string(),
                    deploy.old_digest,
                    deploy.new_digest,
                    timestamp(deploy.started_at),
                    timestamp(deploy.ended_at),
                    deploy.outcome.to_string(),
                    deploy.reason,
                    deploy.tag,
                ],
            )
            .map_err(query)?;
        connection
            .execute(
                "DELETE FROM deploys WHERE service = ?1 AND id NOT IN
                   (SELECT id FROM deploys WHERE service = ?1 ORDER BY id DESC LIMIT ?2)",
                params![deploy.service, DEPLOYS_KEPT as i64],
            )
            .map_err(query)?;
        Ok(())
    }

    pub(super) fn recent_deploys(
        &self,
        service: &str,
        limit: usize,
    ) -> Result<Vec<DeployRecord>, LedgerError> {
        let connection = self.connection.as_ref().ok_or(LedgerError::Closed)?;
        let query = |err: rusqlite::Error| LedgerError::Query(err.to_string());
        let mut statement = connection
            .prepare(
                "SELECT service, trigger, old_digest, new_digest, started_at, ended_at, outcome, reason, tag
                 FROM deploys WHERE service = ?1 ORDER BY id DESC LIMIT ?2",
            )
            .map_err(query)?;
        let rows = statement
            .query_map(params![service, limit as i64], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, Option<String>>(2)?,
                    row.get::<_, Option<String>>(3)?,
                    row.get::<_, String>(4)?,
                    row.get::<_, String>(5)?,
                    row.get::<_, String>(6)?,
                    row.get::<_, Option<String>>(7)?,
                    row.get::<_, Option<String>>(8)?,
                ))
            })
            .map_err(query)?;
        let mut deploys = Vec::new();
        for row in rows {
            let (service, trigger, old_digest, new_digest, started, ended, outcome, reason, tag) =
                row.map_err(query)?;
            deploys.push(DeployRecord {
                service,
                trigger: DeployTrigger::parse(&trigger)
                    .ok_or_else(|| LedgerError::Query(format!("unknown trigger `{trigger}`")))?,
                old_digest,
                new_digest,
                tag,
                started_at: parse_timestamp(&started)?,
                ended_at: parse_timestamp(&ended)?,
                outcome: DeployOutcomeKind::parse(&outcome)
                    .ok_or_else(|| LedgerError::Query(format!("unknown outcome `{outcome}`")))?,
                reason,
            });
        }
        Ok(deploys)
    }
}

impl Handler<RecordDeploy> for Ledger {
    type Result = ();

    fn handle(&mut self, msg: RecordDeploy, _ctx: &mut Self::Context) -> Self::Result {
        let RecordDeploy(deploy) = msg;
        match self.insert_deploy(&deploy) {
            Ok(()) => {}
            Err(LedgerError::Closed) => {
                warn!(service = %deploy.service, "the ledger is not open; deploy not recorded");
            }
            Err(err) => {
                error!(service = %deploy.service, error = %err, "cannot record the deploy");
            }
        }
    }
}

impl Handler<RecentDeploys> for Ledger {
    type Result = Result<Vec<DeployRecord>, LedgerError>;

    fn handle(&mut self, msg: RecentDeploys, _ctx: &mut Self::Context) -> Self::Result {
        self.recent_deploys(&msg.service, msg.limit)
    }
}

impl DeployTrigger {
    fn parse(text: &str) -> Option<DeployTrigger> {
        match text {
            "new-digest" => Some(DeployTrigger::NewDigest),
            "reload" => Some(DeployTrigger::Reload),
            "cron" => Some(DeployTrigger::Cron),
            "manual" => Some(DeployTrigger::Manual),
            "rollback" => Some(DeployTrigger::Rollback),
            "takeover" => Some(DeployTrigger::Takeover),
            _ => None,
        }
    }
}

impl fmt::Display for DeployTrigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DeployTrigger::NewDigest => "new-digest",
            DeployTrigger::Reload => "reload",
            DeployTrigger::Cron => "cron",
            DeployTrigger::Manual => "manual",
            DeployTrigger::Rollback => "rollback",
            DeployTrigger::Takeover => "takeover",
        })
    }
}

impl DeployOutcomeKind {
    fn parse(text: &str) -> Option<DeployOutcomeKind> {
        match text {
            "succeeded" => Some(DeployOutcomeKind::Succeeded),
            "rolled-back" => Some(DeployOutcomeKind::RolledBack),
            "failed" => Some(DeployOutcomeKind::Failed),
            "abandoned" => Some(DeployOutcomeKind::Abandoned),
            "superseded" => Some(DeployOutcomeKind::Superseded),
            _ => None,
        }
    }
}

impl fmt::Display for DeployOutcomeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DeployOutcomeKind::Succeeded => "succeeded",
            DeployOutcomeKind::RolledBack => "rolled-back",
            DeployOutcomeKind::Failed => "failed",
            DeployOutcomeKind::Abandoned => "abandoned",
            DeployOutcomeKind::Superseded => "superseded",
        })
    }
}

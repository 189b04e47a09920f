//! Operator requests on one service, from the CLI through the supervisor:
//! deploy now and roll back. Both go through the service's mailbox and the
//! same health-gated path as every other deploy.
//!
//! Protocol:
//! - `ManualDeploy` -> `Result<String, ServiceError>`: pull the image (the
//!   tag, whatever the pull policy) and replace the container now; this also
//!   lifts the quarantine of rolled-back digests.
//! - `ManualRollback` -> `Result<String, ServiceError>`: put back the
//!   previous good version, as the deploy ledger knows it; the digest left
//!   is quarantined so the watcher does not bring it back.
//! - `Takeover` -> `Result<String, ServiceError>`: `dispenser takeover`: a
//!   container without Dispenser labels that holds the service's name is
//!   replaced by a managed one through the health gate
//!   (`pipeline::Job::Takeover`); a container of another instance is refused.
//!
//! Each runs the one deploy pipeline (`settle.rs`); only the answer is theirs.

use std::collections::BTreeSet;

use actix::prelude::*;
use tracing::info;

use super::container::short;
use super::pipeline::{Change, Job};
use super::{Action, ServiceActor, ServiceError};
use crate::ledger::{DeployOutcomeKind, DeployRecord, DeployTrigger};

/// Deploys read at start-up to rebuild the quarantine.
pub(super) const QUARANTINE_HISTORY: usize = 100;

/// Redeploys the service now; answers a one-line summary.
#[derive(Debug, Message)]
#[rtype(result = "Result<String, ServiceError>")]
pub struct ManualDeploy;

/// Puts back the previous good version; answers a one-line summary.
#[derive(Debug, Message)]
#[rtype(result = "Result<String, ServiceError>")]
pub struct ManualRollback;

/// Takes over the container holding the service's name when Dispenser did
/// not create it; answers a one-line summary of what was done.
#[derive(Debug, Message)]
#[rtype(result = "Result<String, ServiceError>")]
pub struct Takeover;

impl Handler<ManualDeploy> for ServiceActor {
    type Result = AtomicResponse<Self, Result<String, ServiceError>>;

    fn handle(&mut self, _msg: ManualDeploy, _ctx: &mut Self::Context) -> Self::Result {
        if let Err(err) = self.begin(Action::Deploy) {
            return AtomicResponse::new(Box::pin(fut::ready(Err(err))));
        }
        info!(service = %self.service.name, "deploy requested by an operator");
        self.quarantined.clear();
        self.failed_deploy = None;
        AtomicResponse::new(Box::pin(self.pipeline(Job::Manual).map(
            |outcome, actor, _| {
                outcome.map(|done| {
                    format!(
                        "{} redeployed (container {})",
                        actor.service.name,
                        short(&done.container_id)
                    )
                })
            },
        )))
    }
}

impl Handler<ManualRollback> for ServiceActor {
    type Result = AtomicResponse<Self, Result<String, ServiceError>>;

    fn handle(&mut self, _msg: ManualRollback, _ctx: &mut Self::Context) -> Self::Result {
        if let Err(err) = self.begin(Action::Deploy) {
            return AtomicResponse::new(Box::pin(fut::ready(Err(err))));
        }
        info!(service = %self.service.name, "rollback requested by an operator");
        let current = self.digest.clone();
        if let Some(left) = &current {
            // The version left behind is not redeployed by the watcher.
            self.quarantined.insert(left.clone());
        }
        AtomicResponse::new(Box::pin(self.pipeline(Job::Rollback { current }).map(
            |outcome, actor, _| {
                outcome.map(|done| {
                    format!(
                        "{} rolled back (container {})",
                        actor.service.name,
                        short(&done.container_id)
                    )
                })
            },
        )))
    }
}

impl Handler<Takeover> for ServiceActor {
    type Result = AtomicResponse<Self, Result<String, ServiceError>>;

    fn handle(&mut self, _msg: Takeover, _ctx: &mut Self::Context) -> Self::Result {
        let before = self.state.clone();
        if let Err(err) = self.begin(Action::Deploy) {
            return AtomicResponse::new(Box::pin(fut::ready(Err(err))));
        }
        info!(service = %self.service.name, "takeover requested by an operator");
        AtomicResponse::new(Box::pin(self.pipeline(Job::Takeover).map(
            move |outcome, actor, ctx| {
                let name = actor.service.name.clone();
                let done = outcome?;
                Ok(match done.change {
                    Change::TakenOver { previous_id } => format!(
                        "{name}: took over container {}; it is replaced by managed container {}",
                        short(&previous_id),
                        short(&done.container_id)
                    ),
                    Change::Absent => {
                        actor.set_state(before);
                        format!("{name}: no container holds the name; nothing to take over")
                    }
                    _ => {
                        actor.set_state(before);
                        actor.refresh_container(ctx);
                        format!(
                            "{name}: already managed (container {}); nothing to take over",
                            short(&done.container_id)
                        )
                    }
                })
            },
        )))
    }
}

/// The digest to roll back to: the version the current one replaced, as the
/// newest succeeded deploy to the current digest recorded it; without
/// `current`, the newest succeeded deploy's previous digest.
pub(super) fn previous_good(history: &[DeployRecord], current: Option<&str>) -> Option<String> {
    history
        .iter()
        .filter(|deploy| deploy.outcome == DeployOutcomeKind::Succeeded)
        .filter(|deploy| current.is_none() || deploy.new_digest.as_deref() == current)
        .find_map(|deploy| {
            deploy
                .old_digest
                .clone()
                .filter(|old| !old.is_empty() && Some(old.as_str()) != current)
        })
}

/// The digests a service keeps away from, as its deploy history (newest
/// first) left them: a new digest that was rolled back, and the digest an
/// operator's rollback left, back to the newest operator deploy (which lifts
/// the quarantine). The same rules as the running actor's, so a restart of
/// the daemon does not try a rolled-back digest again.
pub fn quarantined_in(history: &[DeployRecord]) -> BTreeSet<String> {
    let mut quarantined = BTreeSet::new();
    for deploy in history {
        let digest = match (deploy.trigger, deploy.outcome) {
            (DeployTrigger::Manual, _) => break,
            (DeployTrigger::NewDigest, DeployOutcomeKind::RolledBack) => &deploy.new_digest,
            (DeployTrigger::Rollback, DeployOutcomeKind::Succeeded) => &deploy.old_digest,
            _ => continue,
        };
        if let Some(digest) = digest.as_ref().filter(|digest| !digest.is_empty()) {
            quarantined.insert(digest.clone());
        }
    }
    quarantined
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;

    fn deploy(old: &str, new: &str, outcome: DeployOutcomeKind) -> DeployRecord {
        DeployRecord {
            service: "web".into(),
            trigger: DeployTrigger::NewDigest,
            old_digest: Some(old.into()),
            new_digest: Some(new.into()),
            tag: None,
            started_at: Utc::now(),
            ended_at: Utc::now(),
            outcome,
            reason: None,
        }
    }

    #[test]
    fn quarantine_is_rebuilt_from_the_history_back_to_an_operator_deploy() {
        use DeployOutcomeKind::*;
        let mut rolled_back_by_operator = deploy("c", "a", Succeeded);
        rolled_back_by_operator.trigger = DeployTrigger::Rollback;
        let mut operator = deploy("a", "a", Succeeded);
        operator.trigger = DeployTrigger::Manual;
        let history = vec![
            deploy("a", "d", RolledBack),
            rolled_back_by_operator,
            deploy("a", "c", Succeeded),
            deploy("a", "b", RolledBack),
            // Older than the operator's deploy: lifted.
            operator,
            deploy("z", "y", RolledBack),
        ];
        let quarantined = quarantined_in(&history);
        assert_eq!(
            quarantined.iter().map(String::as_str).collect::<Vec<_>>(),
            ["b", "c", "d"]
        );
        // A reload that failed, or a deploy that failed before touching the
        // running container, quarantines nothing.
        let mut reload = deploy("a", "e", RolledBack);
        reload.trigger = DeployTrigger::Reload;
        assert!(quarantined_in(&[reload, deploy("a", "f", Failed)]).is_empty());
    }

    #[test]
    fn previous_good_is_what_the_current_version_replaced() {
        use DeployOutcomeKind::*;
        let history = vec![
            deploy("b", "c", RolledBack),
            deploy("a", "b", Succeeded),
            deploy("z", "a", Succeeded),
        ];
        assert_eq!(previous_good(&history, Some("b")).as_deref(), Some("a"));
        assert_eq!(previous_good(&history, Some("a")).as_deref(), Some("z"));
        assert_eq!(previous_good(&history, Some("q")), None);
        assert_eq!(previous_good(&[], Some("b")), None);
    }
}

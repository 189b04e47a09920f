//! The soak, watched from outside the mailbox: after the swap the actor
//! goes back to its mailbox, and the soak ends by message. Docker's events
//! about the new container (`events.rs`) and a resync after the event
//! stream was down look at it at once (`check_soak`); `SoakOver`, sent to
//! itself for the end of the period, promotes it when it held. Any other
//! action on the service first ends the soak (`supersede`): the version is
//! not proven, so the last proven one serves again. A stop abandons it
//! (`abandon`) without waiting.
//!
//! Protocol:
//! - `SoakOver { generation }` -> `()`: the soak period of the deploy
//!   numbered `generation` is over.

use actix::prelude::*;
use tokio::time::Instant;
use tracing::{info, warn};

use super::pipeline::{Job, Soaking};
use super::rollout::{self, Verdict};
use super::{Runtime, ServiceActor, ServiceError, State};
use crate::ledger::DeployOutcomeKind;
use crate::plan::Service;

/// Wait before the end of a soak is looked at again when Docker did not answer.
const RECHECK: std::time::Duration = std::time::Duration::from_secs(1);

/// The soak period of one deploy is over.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct SoakOver {
    generation: u64,
}

/// The soak in progress.
#[derive(Debug)]
pub(super) struct ActiveSoak {
    job: Job,
    soaking: Soaking,
    generation: u64,
}

/// What one look at a soaking container led to.
enum Checked {
    /// It holds; the soak goes on.
    Holding(ActiveSoak),
    /// Docker did not answer at the soak's end: look again shortly.
    Unknown(ActiveSoak),
    /// It held to the end and is the service's container now.
    Promoted(ActiveSoak, Result<String, ServiceError>),
    /// It failed; the previous container serves again.
    Failed(ActiveSoak, ServiceError),
}

impl ActiveSoak {
    /// True when `id` is the soaking container.
    pub(super) fn is_about(&self, id: &str) -> bool {
        self.soaking.soak.id == id
    }

    /// The digest the soaking container runs.
    pub(super) fn digest(&self) -> &str {
        &self.soaking.soak.digest
    }

    /// The soaking container.
    pub(super) fn container_id(&self) -> &str {
        &self.soaking.soak.id
    }
}

/// Ends a soak because `by` came first: the unproven version leaves and the
/// previous one serves again; the ledger says it was superseded.
pub(super) async fn supersede(
    runtime: &Runtime,
    service: &Service,
    active: ActiveSoak,
    by: &str,
    newer_digest: bool,
) -> Result<(), ServiceError> {
    if newer_digest {
        info!(service = %service.name, digest = %by, "a newer digest came during the soak");
    } else {
        info!(service = %service.name, by, "the soak ends early: the previous version serves again first");
    }
    let deploying = &active.soaking.deploying;
    if let Err(err) = rollout::revert(runtime, service, &active.soaking.soak).await {
        deploying
            .finish(
                runtime,
                service,
                DeployOutcomeKind::Failed,
                Some(err.to_string()),
            )
            .await;
        return Err(err);
    }
    deploying
        .finish(
            runtime,
            service,
            DeployOutcomeKind::Superseded,
            Some(format!("superseded by {by} during the soak")),
        )
        .await;
    Ok(())
}

/// Ends a soak because the daemon stops: it does not wait for the soak's
/// end; the previous version serves again and the ledger says the deploy
/// was abandoned, so the next start deploys it again.
pub(super) async fn abandon(runtime: &Runtime, service: &Service, active: ActiveSoak) {
    let deploying = &active.soaking.deploying;
    let (kind, reason) = match rollout::revert(runtime, service, &active.soaking.soak).await {
        Ok(()) => {
            info!(service = %service.name, digest = %active.digest(), phase = "soak", "deploy abandoned; the previous version serves");
            (
                DeployOutcomeKind::Abandoned,
                "the daemon stopped during the soak phase".to_string(),
            )
        }
        Err(err) => {
            warn!(service = %service.name, error = %err, "deploy abandoned; cannot put the previous version back");
            (DeployOutcomeKind::Failed, err.to_string())
        }
    };
    deploying.finish(runtime, service, kind, Some(reason)).await;
}

impl ServiceActor {
    /// Keeps a deploy's soak and arms its end.
    pub(super) fn watch_soak(&mut self, job: Job, soaking: Soaking, ctx: &mut Context<Self>) {
        self.soak_generation += 1;
        let generation = self.soak_generation;
        let wait = soaking
            .soak
            .deadline()
            .saturating_duration_since(Instant::now());
        ctx.notify_later(SoakOver { generation }, wait);
        self.soak = Some(ActiveSoak {
            job,
            soaking,
            generation,
        });
    }

    /// Looks at the soaking container; ends the soak when it failed, or,
    /// `at_end`, promotes it when it held.
    pub(super) fn check_soak(&mut self, at_end: bool) -> AtomicResponse<Self, ()> {
        let Some(active) = self.soak.take() else {
            return AtomicResponse::new(Box::pin(fut::ready(())));
        };
        let runtime = self.runtime.clone();
        let service = self.service.clone();
        let work = async move {
            let soak = &active.soaking.soak;
            let deploying = &active.soaking.deploying;
            match rollout::judge(&runtime, soak).await {
                Verdict::Holds if !at_end => Checked::Holding(active),
                Verdict::Unknown => Checked::Unknown(active),
                Verdict::Holds => {
                    let promoted = rollout::promote(&runtime, &service, soak).await;
                    let (kind, reason) = match &promoted {
                        Ok(_) => (DeployOutcomeKind::Succeeded, None),
                        Err(err) => (DeployOutcomeKind::Failed, Some(err.to_string())),
                    };
                    deploying.finish(&runtime, &service, kind, reason).await;
                    Checked::Promoted(active, promoted)
                }
                Verdict::Fails(reason) => {
                    if let Err(err) = rollout::revert(&runtime, &service, soak).await {
                        warn!(service = %service.name, error = %err, "cannot put the previous container back");
                    }
                    deploying
                        .finish(
                            &runtime,
                            &service,
                            DeployOutcomeKind::RolledBack,
                            Some(reason.clone()),
                        )
                        .await;
                    Checked::Failed(active, ServiceError::RolledBack { reason })
                }
            }
        };
        AtomicResponse::new(Box::pin(
            self.guarded(async move { Ok(work.await) }, "the soak's end")
                .map(move |checked, actor, ctx| match checked {
                    Ok(Checked::Holding(active)) => actor.soak = Some(active),
                    Ok(Checked::Unknown(active)) => {
                        if at_end {
                            ctx.notify_later(
                                SoakOver {
                                    generation: active.generation,
                                },
                                RECHECK,
                            );
                        }
                        actor.soak = Some(active);
                    }
                    Ok(Checked::Promoted(active, Ok(id))) => {
                        actor.container_id = Some(id);
                        actor.digest = Some(active.digest().to_string());
                        if matches!(active.job, Job::NewDigest { .. }) {
                            actor.failed_deploy = None;
                        }
                        actor.set_state(State::Running);
                    }
                    Ok(Checked::Promoted(active, Err(err)) | Checked::Failed(active, err)) => {
                        actor.failed(&active.job, err, ctx);
                    }
                    Err(_crashed) => {}
                }),
        ))
    }
}

impl Handler<SoakOver> for ServiceActor {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, msg: SoakOver, _ctx: &mut Self::Context) -> Self::Result {
        let current = self
            .soak
            .as_ref()
            .is_some_and(|active| active.generation == msg.generation);
        // A stop abandons the soak in `Shutdown`; nothing is promoted meanwhile.
        if !current || self.runtime.stopping.is_cancelled() {
            return AtomicResponse::new(Box::pin(fut::ready(())));
        }
        self.check_soak(true)
    }
}

//! The *settle* step of the deploy pipeline, in the actor: every pass
//! (`pipeline::run`) is run by `ServiceActor::pipeline`, which ends a soak
//! in progress first, catches a panic, and moves the actor's state,
//! quarantine and back-off from the outcome, in one place for every trigger.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;

use actix::prelude::*;
use futures_util::FutureExt;
use tracing::{error, info, warn};

use super::container::{digest_of, owned_by};
use super::pipeline::{self, Change, Job, Ran, Reconciled};
use super::{soak, ServiceActor, ServiceError, State};

/// A pass of the pipeline as the actor runs it.
pub(super) type Pass =
    Pin<Box<dyn ActorFuture<ServiceActor, Output = Result<Reconciled, ServiceError>>>>;

impl Job {
    /// The log line of a failure of this job (a new digest's have their own).
    fn failure(&self) -> &'static str {
        match self {
            Job::Reconcile { .. } => "reconcile failed",
            Job::NewDigest { .. } => "deploy failed",
            Job::Manual | Job::Rollback { .. } => "operator deploy failed",
            Job::Cron => "scheduled run failed to start",
            Job::Takeover => "takeover failed",
        }
    }
}

impl ServiceActor {
    /// Runs `job` through the pipeline and settles the actor from its
    /// outcome. A soak in progress ends first: the job supersedes it, and
    /// the last proven version is what the job starts from (an operator's
    /// rollback during a soak is that and nothing more).
    pub(super) fn pipeline(&mut self, job: Job) -> Pass {
        let prior = self.soak.take();
        let runtime = self.runtime.clone();
        let service = self.service.clone();
        let passing = job.clone();
        let work = async move {
            if let Some(prior) = prior {
                let newer = matches!(passing, Job::NewDigest { .. });
                soak::supersede(&runtime, &service, prior, &passing.to_string(), newer).await?;
                if matches!(passing, Job::Rollback { .. }) {
                    return put_back(&runtime, &service).await;
                }
            }
            let ran = pipeline::run(&runtime, &service, &passing).await;
            if passing.refreshes_endpoint() {
                runtime.refresh_endpoint(&service.name).await;
            }
            ran
        };
        Box::pin(
            self.guarded(work, "the deploy")
                .map(move |outcome, actor, ctx| actor.settle(&job, outcome, ctx)),
        )
    }

    /// `work`, with a panic inside it turned into `Crashed`: the actor stops
    /// and its supervisor restarts it, and it rebuilds its state from Docker.
    pub(super) fn guarded<T: 'static>(
        &mut self,
        work: impl Future<Output = Result<T, ServiceError>> + 'static,
        what: &'static str,
    ) -> impl ActorFuture<Self, Output = Result<T, ServiceError>> {
        AssertUnwindSafe(work)
            .catch_unwind()
            .into_actor(self)
            .map(move |outcome, actor, ctx| match outcome {
                Ok(done) => done,
                Err(_panic) => {
                    error!(service = %actor.service.name, "{what} panicked");
                    ctx.stop();
                    Err(ServiceError::Crashed)
                }
            })
    }

    /// The actor's state from a pass's outcome.
    fn settle(
        &mut self,
        job: &Job,
        outcome: Result<Ran, ServiceError>,
        ctx: &mut Context<Self>,
    ) -> Result<Reconciled, ServiceError> {
        let Ran { reconciled, soak } = match outcome {
            Ok(ran) => ran,
            Err(err) => return Err(self.failed(job, err, ctx)),
        };
        if reconciled.change != Change::Absent {
            self.container_id = Some(reconciled.container_id.clone());
            self.digest = Some(reconciled.digest.clone());
        }
        if matches!(job, Job::NewDigest { .. }) {
            self.failed_deploy = None;
        }
        self.set_state(reconciled.state.clone());
        if let Some(soaking) = soak {
            self.watch_soak(job.clone(), soaking, ctx);
        }
        Ok(reconciled)
    }

    /// Settles a failed pass (or soak): logs it once, quarantines a new
    /// digest that was rolled back, keeps a back-off for one that failed
    /// otherwise, and reads which container serves now. A pass that was
    /// superseded or abandoned blames nothing.
    pub(super) fn failed(
        &mut self,
        job: &Job,
        err: ServiceError,
        ctx: &mut Context<Self>,
    ) -> ServiceError {
        let name = self.service.name.clone();
        let digest = match job {
            Job::NewDigest { digest, .. } => Some(digest.clone()),
            _ => None,
        };
        let blameless = matches!(err, ServiceError::Superseded(_) | ServiceError::Stopping(_));
        match (&err, digest) {
            (ServiceError::Crashed, _) => return err,
            (ServiceError::Superseded(by), digest) => {
                info!(service = %name, digest = ?digest, by = %by, "deploy superseded by a newer digest; the previous version serves until it is ready");
            }
            (ServiceError::Stopping(_), digest) => {
                info!(service = %name, digest = ?digest, "deploy abandoned: the daemon is stopping");
            }
            (ServiceError::RolledBack { reason }, Some(digest)) => {
                error!(
                    service = %name,
                    digest = %digest,
                    reason = %reason,
                    "new version rolled back; this digest is quarantined until a newer one appears or an operator deploys"
                );
                self.quarantined.insert(digest);
            }
            (ServiceError::Unreachable(reason), Some(digest)) => {
                // Not the digest's fault: tried again once Docker is back,
                // without a back-off.
                warn!(service = %name, digest = %digest, error = %reason, "deploy interrupted: docker stopped answering; tried again once it is back");
            }
            (_, Some(digest)) => {
                let retry_in = self.remember_failed_deploy(&digest);
                error!(
                    service = %name,
                    digest = %digest,
                    error = %err,
                    retry_in_secs = retry_in.as_secs(),
                    "deploy failed; this digest is not tried again before the back-off unless a newer one appears"
                );
            }
            (_, None) => error!(service = %name, error = %err, "{}", job.failure()),
        }
        if blameless {
            self.set_state(State::Pending);
        } else {
            self.set_state(State::Failed {
                reason: err.to_string(),
            });
        }
        // A failed reconcile leaves nothing new behind, unless it was rolled
        // back; every other job may have changed which container serves.
        let reread = !matches!(job, Job::Reconcile { .. })
            || blameless
            || matches!(err, ServiceError::RolledBack { .. });
        if reread {
            self.refresh_container(ctx);
        }
        err
    }
}

/// After an operator's rollback ended a soak: the proven version serves
/// again under the service's name; that is the rollback.
async fn put_back(
    runtime: &super::Runtime,
    service: &crate::plan::Service,
) -> Result<Ran, ServiceError> {
    let serving = runtime
        .engine
        .inspect(&service.name)
        .await?
        .filter(|container| owned_by(container, &runtime.instance))
        .ok_or_else(|| {
            ServiceError::Engine(format!(
                "the soak of {} ended, but no container of this instance holds its name",
                service.name
            ))
        })?;
    Ok(Ran {
        reconciled: Reconciled {
            container_id: serving.id.clone(),
            change: Change::Recreated,
            state: State::Running,
            digest: digest_of(&serving).unwrap_or_default(),
        },
        soak: None,
    })
}

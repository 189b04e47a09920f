//! Operator requests on one service, from the CLI through the supervisor:
//! deploy now and roll back. Both go through the service's mailbox like
//! every other action.
//!
//! Protocol:
//! - `ManualDeploy` -> `Result<String, ServiceError>`: pull the image (the
//!   tag, whatever the pull policy) and replace the container now.
//! - `ManualRollback` -> `Result<String, ServiceError>`: put back the previous
//!   good version (not available yet: the deploy ledger comes with the
//!   zero-downtime deploys, and until then this says so).

use std::panic::AssertUnwindSafe;

use actix::prelude::*;
use futures_util::FutureExt;
use tracing::{error, info};

use super::{reconcile, Action, ServiceActor, ServiceError, State};
use crate::plan::PullPolicy;

/// Redeploys the service now; answers a one-line summary.
#[derive(Debug, Message)]
#[rtype(result = "Result<String, ServiceError>")]
pub struct ManualDeploy;

/// Puts back the previous good version; answers a one-line summary.
#[derive(Debug, Message)]
#[rtype(result = "Result<String, ServiceError>")]
pub struct ManualRollback;

impl Handler<ManualDeploy> for ServiceActor {
    type Result = AtomicResponse<Self, Result<String, ServiceError>>;

    fn handle(&mut self, _msg: ManualDeploy, _ctx: &mut Self::Context) -> Self::Result {
        if let Err(err) = self.begin(Action::Deploy) {
            return AtomicResponse::new(Box::pin(fut::ready(Err(err))));
        }
        info!(service = %self.service.name, "deploy requested by an operator");
        let runtime = self.runtime.clone();
        let mut service = self.service.clone();
        service.lifecycle.pull = PullPolicy::Always;
        let work = async move { reconcile::replace_and_start(&runtime, &service).await };
        AtomicResponse::new(Box::pin(
            AssertUnwindSafe(work)
                .catch_unwind()
                .into_actor(self)
                .map(|outcome, actor, ctx| match outcome {
                    Ok(Ok(id)) => {
                        actor.container_id = Some(id.clone());
                        actor.set_state(State::Running);
                        actor.refresh_container(ctx);
                        Ok(format!(
                            "{} redeployed (container {})",
                            actor.service.name,
                            reconcile::short(&id)
                        ))
                    }
                    Ok(Err(err)) => {
                        error!(service = %actor.service.name, error = %err, "deploy failed");
                        actor.set_state(State::Failed {
                            reason: err.to_string(),
                        });
                        actor.refresh_container(ctx);
                        Err(err)
                    }
                    Err(_panic) => {
                        error!(service = %actor.service.name, "deploy panicked");
                        ctx.stop();
                        Err(ServiceError::Crashed)
                    }
                }),
        ))
    }
}

impl Handler<ManualRollback> for ServiceActor {
    type Result = Result<String, ServiceError>;

    fn handle(&mut self, _msg: ManualRollback, _ctx: &mut Self::Context) -> Self::Result {
        Err(ServiceError::Engine(format!(
            "no previous version of {} is recorded: rollback needs the deploy ledger",
            self.service.name
        )))
    }
}

//! The plan as a message: `PlanApplied` tells an observer which plan is now
//! in force, `Subscribe` registers one with the supervisor. They belong to the
//! contract, not to the supervisor, so the observers (router, certificate
//! loader, ACME manager, watcher, ticker, the admin API) depend on the plan
//! only.

use std::sync::Arc;

use actix::prelude::*;

use super::Plan;

/// Registers an observer of applied plans; it receives the current plan at once.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Subscribe(pub Recipient<PlanApplied>);

/// Sent to every subscriber after each `Apply`, with the plan now in force.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct PlanApplied(pub Arc<Plan>);

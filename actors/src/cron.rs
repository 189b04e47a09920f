//! `CronTicker`: keeps the next fire time of every scheduled service, sleeps
//! until the earliest (one timer, re-armed on every change, never a polling
//! loop), and sends `CronFired` to its target (the supervisor, which
//! forwards it to the service's actor).
//!
//! Protocol:
//! - `PlanApplied(plan)` -> `()`: recompute the timetable. A service whose
//!   schedule and time zone did not change keeps the fire time already
//!   computed, so a reload neither loses nor doubles its runs.
//!
//! - `NextRuns` -> `BTreeMap<String, DateTime<Utc>>`: the next fire time of
//!   every scheduled service (for `dispenser status`).
//!
//! Sends: `CronFired { service, due }` to a `Recipient<CronFired>`.
//!
//! Runs missed while the daemon was down, or while the host slept, are not
//! replayed: a late wake-up fires each due service once, then plans the
//! next time after now.

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use tracing::{debug, info, warn};

use crate::plan::{Plan, PlanApplied, Schedule, Zone};

/// The next fire time of every scheduled service, by name.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "BTreeMap<String, DateTime<Utc>>")]
pub struct NextRuns;

/// Longest single sleep: the wall clock is read again at least this often,
/// so a clock step (NTP, a suspended host) delays a run by at most this much.
pub const MAX_SLEEP: Duration = Duration::from_secs(60);

/// A service's schedule is due. Sent by the ticker; handled by the supervisor
/// (which forwards it) and by the service's actor (which runs it).
#[derive(Debug, Clone, PartialEq, Eq, Message)]
#[rtype(result = "()")]
pub struct CronFired {
    pub service: String,
    /// The fire time that came due.
    pub due: DateTime<Utc>,
}

/// The ticker.
pub struct CronTicker {
    clock: Arc<dyn Clock>,
    target: Recipient<CronFired>,
    timetable: Timetable,
    timer: Option<SpawnHandle>,
}

/// Where the ticker reads the time; tests hand in a clock of their own.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

/// The next fire time of every scheduled service: the ticker's pure core.
#[derive(Debug, Clone, Default)]
pub struct Timetable {
    entries: BTreeMap<String, Entry>,
}

#[derive(Debug, Clone)]
struct Entry {
    schedule: Schedule,
    zone: Zone,
    /// `None` when the schedule never fires again (a past year).
    next: Option<DateTime<Utc>>,
}

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

impl Timetable {
    /// Takes the schedules of `plan`: new or changed ones get their next time
    /// after `now`, unchanged ones keep theirs, others are forgotten.
    pub fn update(&mut self, plan: &Plan, now: DateTime<Utc>) {
        let mut entries = BTreeMap::new();
        for (name, service) in &plan.services {
            let Some(schedule) = &service.lifecycle.schedule else {
                continue;
            };
            let zone = service.lifecycle.timezone;
            let entry = match self.entries.remove(name) {
                Some(kept) if kept.schedule == *schedule && kept.zone == zone => kept,
                _ => Entry {
                    next: zone.next_fire(schedule, now),
                    schedule: schedule.clone(),
                    zone,
                },
            };
            entries.insert(name.clone(), entry);
        }
        self.entries = entries;
    }

    /// The services due at `now`, each once with its due time; their next
    /// times move past `now` (missed occurrences are not replayed).
    pub fn take_due(&mut self, now: DateTime<Utc>) -> Vec<(String, DateTime<Utc>)> {
        let mut due = Vec::new();
        for (name, entry) in &mut self.entries {
            match entry.next {
                Some(next) if next <= now => {
                    due.push((name.clone(), next));
                    entry.next = entry.zone.next_fire(&entry.schedule, now);
                }
                _ => {}
            }
        }
        due
    }

    /// The earliest next fire time of all services.
    pub fn earliest(&self) -> Option<DateTime<Utc>> {
        self.entries.values().filter_map(|entry| entry.next).min()
    }

    /// The next fire time of every service that has one.
    pub fn all_next(&self) -> BTreeMap<String, DateTime<Utc>> {
        self.entries
            .iter()
            .filter_map(|(name, entry)| entry.next.map(|next| (name.clone(), next)))
            .collect()
    }

    /// The next fire time of one service.
    pub fn next_of(&self, service: &str) -> Option<DateTime<Utc>> {
        self.entries.get(service).and_then(|entry| entry.next)
    }
}

impl CronTicker {
    pub fn new(clock: Arc<dyn Clock>, target: Recipient<CronFired>) -> Self {
        CronTicker {
            clock,
            target,
            timetable: Timetable::default(),
            timer: None,
        }
    }

    /// Sends what is due, then sleeps until the next fire time.
    fn fire(&mut self, ctx: &mut Context<Self>) {
        self.timer = None;
        for (service, due) in self.timetable.take_due(self.clock.now()) {
            info!(service = %service, due = %due, "scheduled run due");
            if let Err(err) = self.target.try_send(CronFired {
                service: service.clone(),
                due,
            }) {
                warn!(service = %service, error = %err, "cannot deliver the scheduled run");
            }
        }
        self.arm(ctx);
    }

    /// Replaces the timer with one for the earliest fire time.
    fn arm(&mut self, ctx: &mut Context<Self>) {
        if let Some(timer) = self.timer.take() {
            ctx.cancel_future(timer);
        }
        let Some(earliest) = self.timetable.earliest() else {
            debug!("no schedule; the ticker sleeps until the next plan");
            return;
        };
        let wait = (earliest - self.clock.now())
            .to_std()
            .unwrap_or(Duration::ZERO)
            .min(MAX_SLEEP);
        self.timer = Some(ctx.run_later(wait, |ticker, ctx| ticker.fire(ctx)));
    }
}

impl Actor for CronTicker {
    type Context = Context<Self>;
}

impl Handler<PlanApplied> for CronTicker {
    type Result = ();

    fn handle(&mut self, msg: PlanApplied, ctx: &mut Self::Context) -> Self::Result {
        let PlanApplied(plan) = msg;
        self.timetable.update(&plan, self.clock.now());
        for (name, service) in &plan.services {
            if let (Some(schedule), Some(next)) =
                (&service.lifecycle.schedule, self.timetable.next_of(name))
            {
                debug!(service = %name, cron = %schedule.expression, next = %next, "scheduled");
            }
        }
        self.arm(ctx);
    }
}

impl Handler<NextRuns> for CronTicker {
    type Result = MessageResult<NextRuns>;

    fn handle(&mut self, _msg: NextRuns, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.timetable.all_next())
    }
}

//! What Docker reports about a service's own container: the `ContainerChanged`
//! and `Resync` handlers of `ServiceActor`. Reports arrive through the
//! supervisor from `docker_events::DockerEvents` and wait in the mailbox like
//! every action, so an event met during a deploy is handled after it, against
//! the container the deploy left (events about other containers, such as a
//! deploy's `-next` or `-prev`, are ignored).
//!
//! Dispenser never fights Docker: a container that exits is restarted by its
//! restart policy or stays down; this module only records it (state,
//! restarts, out-of-memory kills), logs it once, tells the proxy (`service
//! down` at once, `service starting` while Docker's healthcheck says
//! starting) and spots crash loops: more than `CRASH_LOOP_RESTARTS` restarts
//! within `CRASH_LOOP_WINDOW` log one warning per streak, not one per exit.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use actix::prelude::*;
use tracing::{debug, info, warn};

use super::container::{owned_by, short};
use super::state::Observed;
use super::{ServiceActor, State};
use crate::engine::{Container, ContainerEvent, ContainerState, EngineError, EventKind, Health};

/// Restarts within `CRASH_LOOP_WINDOW` beyond which a service is in a crash loop.
pub const CRASH_LOOP_RESTARTS: usize = 3;
/// The window of `CRASH_LOOP_RESTARTS`; a streak ends after this long without a restart.
pub const CRASH_LOOP_WINDOW: Duration = Duration::from_secs(300);

/// Docker reported a change of a container of this service.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct ContainerChanged(pub ContainerEvent);

/// Docker's event stream was down: read the container's state again, since
/// events may have been missed.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct Resync;

/// Restarts and exits of the service's containers, as seen from events.
#[derive(Debug, Default)]
pub(super) struct CrashWatch {
    /// The container whose `RestartCount` is `restart_count`.
    container: Option<String>,
    restart_count: u64,
    /// Restarts by Docker seen since the daemon started (every container).
    pub(super) total_restarts: u64,
    /// When the restarts of the current streak were seen.
    streak: VecDeque<Instant>,
    /// The streak's warning was logged.
    looping: bool,
    /// An out-of-memory kill of this streak was logged as a warning; the
    /// streak's later ones log at debug level.
    oom_warned: bool,
    /// A container the kernel killed for lack of memory, whose exit is yet to be logged.
    oom: Option<String>,
}

impl CrashWatch {
    /// Counts from `container`'s restarts as they are now: a container the
    /// actor found running when it started (its earlier restarts are not news).
    pub(super) fn baseline(&mut self, container: &Container) {
        self.container = Some(container.id.clone());
        self.restart_count = container.restart_count;
    }

    /// Takes in the container's restart count; returns how many restarts
    /// happened since the last look. A container seen first that has no
    /// baseline was created (or started, which resets the count) by
    /// Dispenser: it counts from zero.
    fn restarts(&mut self, container: &Container, now: Instant) -> u64 {
        if self.container.as_deref() != Some(container.id.as_str()) {
            self.container = Some(container.id.clone());
            self.restart_count = 0;
        }
        let new = container.restart_count.saturating_sub(self.restart_count);
        self.restart_count = container.restart_count;
        if new == 0 {
            return 0;
        }
        self.total_restarts += new;
        if self
            .streak
            .back()
            .is_some_and(|last| now.duration_since(*last) > CRASH_LOOP_WINDOW)
        {
            self.streak.clear();
            self.looping = false;
            self.oom_warned = false;
        }
        for _ in 0..new {
            self.streak.push_back(now);
        }
        while self
            .streak
            .front()
            .is_some_and(|first| now.duration_since(*first) > CRASH_LOOP_WINDOW)
        {
            self.streak.pop_front();
        }
        new
    }

    /// True once per streak: the moment it becomes a crash loop.
    fn loop_begins(&mut self) -> bool {
        if self.looping || self.streak.len() <= CRASH_LOOP_RESTARTS {
            return false;
        }
        self.looping = true;
        true
    }

    /// True for the streak's first out-of-memory kill: the one that is
    /// logged as a warning. A restart more than `CRASH_LOOP_WINDOW` after the
    /// last one starts a new streak, which warns again.
    fn oom_is_news(&mut self) -> bool {
        !self.looping && !std::mem::replace(&mut self.oom_warned, true)
    }

    /// The last restart of the streak, when the streak is a crash loop.
    pub(super) fn loop_last_restart(&self) -> Option<Instant> {
        self.streak.back().copied().filter(|_| self.looping)
    }
}

impl ServiceActor {
    /// True when the report is about the container this service runs now.
    fn is_current(&self, event: &ContainerEvent) -> bool {
        match &self.container_id {
            Some(id) => *id == event.id,
            None => event.name == self.service.name,
        }
    }

    /// Applies what Docker reports about the current container (`found`:
    /// a fresh inspect; `event`: what happened, `None` on a resync).
    fn observe(&mut self, found: Option<Container>, event: Option<EventKind>) {
        let name = self.service.name.clone();
        let found = found.filter(|container| owned_by(container, &self.runtime.instance));
        let observed = match &found {
            None => Observed::Gone,
            Some(container) => match container.state {
                ContainerState::Running | ContainerState::Paused => Observed::Running,
                ContainerState::Restarting => Observed::Restarting,
                ContainerState::Created => Observed::Created,
                ContainerState::Exited { code } => Observed::Exited { code },
                ContainerState::Removing | ContainerState::Dead => Observed::Gone,
            },
        };
        let Some(next) = self.state.observe(observed) else {
            debug!(service = %name, state = %self.state, ?observed, "container change ignored in this state");
            return;
        };
        let now = Instant::now();
        let restarted = match &found {
            Some(container) => self.crashes.restarts(container, now),
            None => 0,
        };
        if restarted > 0 {
            crate::metrics::global().container_restarts(&name, restarted);
        }
        let died = match event {
            Some(EventKind::Die { exit_code }) => Some(exit_code),
            // Missed events: a container restarted, or found down that was not, exited.
            None if restarted > 0
                || (matches!(observed, Observed::Exited { .. }) && next != self.state) =>
            {
                Some(None)
            }
            _ => None,
        };
        // An exit Dispenser caused itself (a deploy stopped this container and
        // started it again) is neither a crash nor a restart by Docker.
        let own_restart = observed == Observed::Running && restarted == 0;
        // A scheduled job's exits are runs, recorded by the run handlers.
        let scheduled_job = self.service.is_job() && self.service.lifecycle.schedule.is_some();
        if let Some(exit_code) = died.filter(|_| !own_restart && !scheduled_job) {
            let exit_code = exit_code.or(match observed {
                Observed::Exited { code } => Some(code),
                _ => None,
            });
            let container = found.as_ref();
            let oom = self.crashes.oom.is_some() || container.is_some_and(|c| c.oom_killed);
            self.crashes.oom = None;
            self.log_exit(exit_code, oom, observed, container);
            crate::metrics::global().container_exit(&name, if oom { "oom" } else { "exited" });
        }
        if self.crashes.loop_begins() {
            warn!(
                service = %name,
                restarts = self.crashes.streak.len(),
                window_secs = CRASH_LOOP_WINDOW.as_secs(),
                policy = ?self.service.container.restart,
                "crash loop: the container keeps exiting and Docker keeps restarting it; \
                 dispenser leaves the restarts to Docker and logs no more exits of this streak"
            );
        }
        match event {
            Some(EventKind::Health(Health::Unhealthy)) => warn!(
                service = %name,
                "healthcheck failing; the proxy keeps sending it requests (docker does not restart an unhealthy container)"
            ),
            Some(EventKind::Health(Health::Healthy)) => info!(service = %name, "healthy"),
            _ => {}
        }
        if let Some(container) = &found {
            self.container_id = Some(container.id.clone());
        }
        self.runtime.report_endpoint(&name, found.as_ref());
        if next != self.state {
            info!(service = %name, from = %self.state, to = %next, "state changed by docker");
        }
        self.set_state(next);
    }

    /// Docker reports the OOM kill before the exit, so it is remembered for
    /// the exit's line; when it comes after (the exit was handled already:
    /// the container is down), it gets a line of its own.
    fn late_oom_or_remember(&mut self, id: String) {
        let down = matches!(self.state, State::Exited { .. } | State::Restarting);
        if !down {
            self.crashes.oom = Some(id);
            return;
        }
        let name = &self.service.name;
        crate::metrics::global().container_exit(name, "oom");
        if self.crashes.oom_is_news() {
            warn!(service = %name, container = %short(&id), oom = true, "container killed: out of memory (its memory limit)");
        } else {
            debug!(service = %name, container = %short(&id), "container killed again: out of memory (same streak)");
        }
    }

    /// One line per exit, until the streak is a crash loop; of its
    /// out-of-memory kills, only the first is a warning.
    fn log_exit(
        &mut self,
        exit_code: Option<i64>,
        oom: bool,
        observed: Observed,
        container: Option<&Container>,
    ) {
        let name = &self.service.name;
        let id = container
            .map(|c| short(&c.id).to_string())
            .unwrap_or_default();
        let code = exit_code.map_or_else(|| "unknown".to_string(), |code| code.to_string());
        let then = match observed {
            Observed::Exited { .. } | Observed::Created => "it stays down",
            Observed::Gone => "it is gone",
            Observed::Running | Observed::Restarting => "docker's restart policy restarts it",
        };
        if self.crashes.looping {
            debug!(service = %name, container = %id, exit_code = %code, oom, "container exited (crash loop)");
        } else if oom && !self.crashes.oom_is_news() {
            debug!(service = %name, container = %id, exit_code = %code, oom, "container killed again: out of memory (same streak); {then}");
        } else if oom {
            warn!(service = %name, container = %id, exit_code = %code, oom, "container killed: out of memory (its memory limit); {then}");
        } else if exit_code == Some(0) && self.service.is_job() {
            info!(service = %name, container = %id, exit_code = %code, oom, "container exited");
        } else {
            warn!(service = %name, container = %id, exit_code = %code, oom, "container exited; {then}");
        }
    }
}

impl Handler<ContainerChanged> for ServiceActor {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, msg: ContainerChanged, _ctx: &mut Self::Context) -> Self::Result {
        let ContainerChanged(event) = msg;
        // The soaking container: a report about it is judged at once.
        if self
            .soak
            .as_ref()
            .is_some_and(|soak| soak.is_about(&event.id))
        {
            return match event.kind {
                EventKind::Health(Health::Healthy | Health::Starting) => {
                    AtomicResponse::new(Box::pin(fut::ready(())))
                }
                _ => self.check_soak(false),
            };
        }
        if !self.is_current(&event) {
            debug!(service = %self.service.name, container = %event.name, kind = ?event.kind, "event about another container of the service (a deploy's); ignored");
            return AtomicResponse::new(Box::pin(fut::ready(())));
        }
        if self.run.is_some() {
            // A scheduled run's exit is the run handlers' business.
            return AtomicResponse::new(Box::pin(fut::ready(())));
        }
        match event.kind {
            EventKind::Oom => {
                self.late_oom_or_remember(event.id);
                return AtomicResponse::new(Box::pin(fut::ready(())));
            }
            EventKind::Start => self.crashes.oom = None,
            EventKind::Die { .. } | EventKind::Health(_) | EventKind::Destroy => {}
        }
        let engine = self.runtime.engine.clone();
        let id = event.id.clone();
        let lookup = async move { engine.inspect(&id).await };
        AtomicResponse::new(Box::pin(lookup.into_actor(self).map(
            move |found, actor, _| match found {
                Ok(found) => actor.observe(found, Some(event.kind)),
                Err(err) => {
                    warn!(service = %actor.service.name, error = %err, "cannot read the container after a docker event");
                }
            },
        )))
    }
}

impl Handler<Resync> for ServiceActor {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, _msg: Resync, _ctx: &mut Self::Context) -> Self::Result {
        // Events about a soaking container may have been missed.
        if self.soak.is_some() {
            return self.check_soak(false);
        }
        if self.run.is_some() {
            return AtomicResponse::new(Box::pin(fut::ready(())));
        }
        let engine = self.runtime.engine.clone();
        let name = self
            .container_id
            .clone()
            .unwrap_or_else(|| self.service.name.clone());
        let lookup = async move { engine.inspect(&name).await };
        AtomicResponse::new(Box::pin(lookup.into_actor(self).map(
            |found, actor, _| match found {
                Ok(found) => actor.observe(found, None),
                // Docker went away again: `DockerWatch` has warned and
                // reconciles every service when it is back.
                Err(err @ EngineError::Unreachable(_)) => {
                    debug!(service = %actor.service.name, error = %err, "cannot read the container: docker is away");
                }
                Err(err) => {
                    warn!(service = %actor.service.name, error = %err, "cannot read the container after docker came back");
                }
            },
        )))
    }
}

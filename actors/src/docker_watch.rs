//! `DockerWatch`: checks that the Docker Engine answers, logs one warning when
//! it stops answering and one line when it is back, and then has the
//! supervisor rebuild every service's state from Docker (`DockerBack`).
//!
//! Protocol:
//! - `DockerBack { away_for }` (sent, to the supervisor): the engine answers
//!   again after an outage; the supervisor re-reconciles every service (which
//!   adopts running containers untouched) and applies a plan kept meanwhile.
//!
//! Nothing else: the actor pings every `interval` while the engine answers
//! and, after a failure, with capped exponential back-off and jitter (from
//! `reachability::RETRY_FIRST` up to the interval), flipping the shared
//! `Reachability` flag the supervisor and the service actors read. Running
//! containers and the proxy do not need Docker and are never touched here.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use tracing::{info, warn};

use crate::engine::reachability::{BackOff, Reachability, RETRY_FIRST, RETRY_MAX};
use crate::engine::{Engine, EngineError};

/// Longest wait for the answer to one ping.
const PING_TIMEOUT: Duration = Duration::from_secs(5);

/// The Docker Engine answers again after an outage of `away_for`.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct DockerBack {
    pub away_for: Duration,
}

/// The actor.
pub struct DockerWatch {
    engine: Arc<dyn Engine>,
    reachability: Reachability,
    interval: Duration,
    back_off: BackOff,
    /// When the current outage began; `None` while the engine answers.
    down_since: Option<Instant>,
    on_back: Recipient<DockerBack>,
}

impl DockerWatch {
    /// Watches `engine` every `interval`, publishing into `reachability`.
    pub fn new(
        engine: Arc<dyn Engine>,
        reachability: Reachability,
        interval: Duration,
        on_back: Recipient<DockerBack>,
    ) -> Self {
        let interval = interval.max(RETRY_FIRST);
        DockerWatch {
            engine,
            reachability,
            interval,
            back_off: BackOff::new(RETRY_FIRST, interval.min(RETRY_MAX)),
            down_since: None,
            on_back,
        }
    }

    fn schedule(&mut self, ctx: &mut Context<Self>, after: Duration) {
        ctx.run_later(after, |watch, ctx| watch.check(ctx));
    }

    /// One ping, off the mailbox; the answer schedules the next one.
    fn check(&mut self, ctx: &mut Context<Self>) {
        let engine = self.engine.clone();
        let ping = async move {
            match tokio::time::timeout(PING_TIMEOUT, engine.ping()).await {
                Ok(outcome) => outcome,
                Err(_) => Err(EngineError::Unreachable(format!(
                    "no answer to a ping within {}s",
                    PING_TIMEOUT.as_secs()
                ))),
            }
        };
        ctx.spawn(ping.into_actor(self).map(|outcome, watch, ctx| {
            let next = watch.observe(outcome);
            watch.schedule(ctx, next);
        }));
    }

    /// Records one check's outcome, logs a change, and returns the wait
    /// before the next check.
    fn observe(&mut self, outcome: Result<(), EngineError>) -> Duration {
        crate::dependencies::global().observe(
            crate::dependencies::DOCKER,
            outcome.is_ok(),
            chrono::Utc::now(),
        );
        match outcome {
            Ok(()) => {
                self.back_off.reset();
                if let Some(since) = self.down_since.take() {
                    let away_for = since.elapsed();
                    self.reachability.set(true);
                    info!(
                        away_secs = away_for.as_secs(),
                        "the Docker Engine is reachable again; rebuilding the services' state from it"
                    );
                    self.on_back.do_send(DockerBack { away_for });
                }
                self.interval
            }
            Err(err) => {
                if self.down_since.is_none() {
                    self.down_since = Some(Instant::now());
                    self.reachability.set(false);
                    warn!(
                        error = %err,
                        "the Docker Engine is unreachable; running containers and the proxy carry on, changes wait until it is back; retrying"
                    );
                }
                self.back_off.next_pause()
            }
        }
    }
}

impl Actor for DockerWatch {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // The daemon reached the engine before it started the watch.
        crate::dependencies::global().observe(
            crate::dependencies::DOCKER,
            self.reachability.is_up(),
            chrono::Utc::now(),
        );
        let first = self.interval;
        self.schedule(ctx, first);
    }
}

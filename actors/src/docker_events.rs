//! `DockerEvents`: follows Docker's event stream for this instance's
//! containers (start, die, oom, health status, destroy) and hands each event
//! to the supervisor, which forwards it to the service's actor by the
//! container's `dispenser.service` label, so every change of a service stays
//! serialized in that service's mailbox. It never acts on a container.
//!
//! When the stream breaks (Docker restarts, the socket goes away) it
//! subscribes again after a capped, jittered back-off (`BackOff`), logging
//! one warning per streak of failures, and none when `DockerWatch` already
//! reports the whole engine away (one outage, one warning); after every new
//! subscription it sends
//! `DockerReconnected`, so each service reads its container again (events may
//! have been missed meanwhile).
//!
//! Protocol: it receives no message; it sends `DockerEvent` and
//! `DockerReconnected` to the recipients it was built with.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures_util::StreamExt;
use tracing::{debug, info, warn};

use crate::engine::reachability::{BackOff, Reachability, RETRY_FIRST, RETRY_MAX};
use crate::engine::{ContainerEvent, Engine};
/// A stream that lasted this long (or delivered an event) was healthy: the
/// next failure starts a new streak with the first wait.
const HEALTHY_AFTER: Duration = Duration::from_secs(10);

/// Docker reported `0` about a container of this instance.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct DockerEvent(pub ContainerEvent);

/// The event stream was subscribed again after it broke: events may have
/// been missed.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct DockerReconnected;

/// The actor that follows the event stream.
pub struct DockerEvents {
    engine: Arc<dyn Engine>,
    instance: String,
    events: Recipient<DockerEvent>,
    reconnected: Recipient<DockerReconnected>,
    retry_first: Duration,
    docker: Reachability,
}

impl DockerEvents {
    pub fn new(
        engine: Arc<dyn Engine>,
        instance: String,
        events: Recipient<DockerEvent>,
        reconnected: Recipient<DockerReconnected>,
    ) -> Self {
        DockerEvents {
            engine,
            instance,
            events,
            reconnected,
            retry_first: RETRY_FIRST,
            docker: Reachability::default(),
        }
    }

    /// Shares the flag `DockerWatch` keeps: while it says the engine is
    /// away, a broken stream is not worth a warning of its own.
    pub fn with_reachability(mut self, docker: Reachability) -> Self {
        self.docker = docker;
        self
    }

    /// Starts the back-off at `first` instead of `RETRY_FIRST` (tests).
    pub fn with_retry_first(mut self, first: Duration) -> Self {
        self.retry_first = first;
        self
    }
}

impl Actor for DockerEvents {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let follow = follow(
            self.engine.clone(),
            self.instance.clone(),
            self.events.clone(),
            self.reconnected.clone(),
            self.retry_first,
            self.docker.clone(),
        );
        // Ends with the actor (the daemon's system) and not before.
        ctx.spawn(follow.into_actor(self));
    }
}

/// Subscribes, forwards, and subscribes again, for ever.
///
/// A subscription is lazy (the request goes out at the first read, and
/// Docker sends nothing until an event happens), so it cannot tell whether
/// the engine is there: a ping before each subscription does. When the
/// engine itself is away the `DockerWatch` actor warns once and, when it is
/// back, has every service reconciled; this loop then stays quiet and sends
/// no `DockerReconnected` of its own until the engine answers a ping again.
async fn follow(
    engine: Arc<dyn Engine>,
    instance: String,
    events: Recipient<DockerEvent>,
    reconnected: Recipient<DockerReconnected>,
    retry_first: Duration,
    docker: Reachability,
) {
    let mut back_off = BackOff::new(retry_first, RETRY_MAX);
    let mut warned = false;
    let mut subscriptions: u64 = 0;
    loop {
        let began = Instant::now();
        let mut delivered = false;
        let subscribed = match engine.ping().await {
            Ok(()) => engine.events(&instance).await,
            Err(err) => Err(err),
        };
        let reason = match subscribed {
            Ok(mut stream) => {
                subscriptions += 1;
                debug!(instance = %instance, "following docker events");
                if subscriptions > 1 {
                    reconnected.do_send(DockerReconnected);
                }
                loop {
                    match stream.next().await {
                        Some(Ok(event)) => {
                            if !delivered && warned {
                                info!("docker events are followed again");
                            }
                            delivered = true;
                            events.do_send(DockerEvent(event));
                        }
                        Some(Err(err)) => break err.to_string(),
                        None => break "the engine closed the event stream".to_string(),
                    }
                }
            }
            Err(err) => err.to_string(),
        };
        if delivered || began.elapsed() >= HEALTHY_AFTER {
            // A new streak: it gets its own warning.
            back_off.reset();
            warned = false;
        }
        let wait = back_off.next_pause();
        let engine_away = !docker.is_up() || engine.ping().await.is_err();
        if warned || engine_away {
            debug!(error = %reason, retry_in_ms = wait.as_millis() as u64, engine_away, "docker events unavailable");
        } else {
            warn!(
                error = %reason,
                retry_in_ms = wait.as_millis() as u64,
                "lost docker's event stream while docker answers; following it again (services are re-read then)"
            );
            warned = true;
        }
        actix_rt::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests;

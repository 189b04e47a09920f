//! Tests of `DockerEvents` over the fake engine: events reach the recipient,
//! a broken stream is subscribed again and announced, the back-off is capped.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::{Actor, Context, Handler};

use super::*;
use crate::engine::fake::FakeEngine;
use crate::engine::EventKind;

/// Records what `DockerEvents` sends.
#[derive(Clone, Default)]
struct Seen {
    events: Arc<Mutex<Vec<ContainerEvent>>>,
    reconnects: Arc<Mutex<u32>>,
}

impl Actor for Seen {
    type Context = Context<Self>;
}

impl Handler<DockerEvent> for Seen {
    type Result = ();

    fn handle(&mut self, msg: DockerEvent, _ctx: &mut Self::Context) {
        self.events.lock().unwrap().push(msg.0);
    }
}

impl Handler<DockerReconnected> for Seen {
    type Result = ();

    fn handle(&mut self, _msg: DockerReconnected, _ctx: &mut Self::Context) {
        *self.reconnects.lock().unwrap() += 1;
    }
}

async fn eventually(what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(3);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn die(id: &str) -> ContainerEvent {
    ContainerEvent {
        id: id.into(),
        name: "web".into(),
        service: Some("web".into()),
        kind: EventKind::Die { exit_code: Some(1) },
    }
}

#[actix_rt::test]
async fn events_are_forwarded_and_a_broken_stream_is_followed_again() {
    let engine = Arc::new(FakeEngine::new());
    let seen = Seen::default();
    let probe = seen.clone().start();
    DockerEvents::new(
        engine.clone(),
        "unit".into(),
        probe.clone().recipient(),
        probe.recipient(),
    )
    .with_retry_first(Duration::from_millis(10))
    .start();
    eventually("a subscription", || engine.event_streams() == 1).await;
    assert_eq!(engine.calls_of(&["events"]), vec!["events unit"]);
    engine.emit(die("c1"));
    eventually("the event", || seen.events.lock().unwrap().len() == 1).await;
    assert_eq!(seen.events.lock().unwrap()[0], die("c1"));
    assert_eq!(*seen.reconnects.lock().unwrap(), 0);

    // Docker goes away, and refuses the next subscription once.
    engine.fail_once("events", "unit");
    engine.end_event_streams();
    eventually("a new subscription", || engine.event_streams() == 1).await;
    eventually("the resync", || *seen.reconnects.lock().unwrap() == 1).await;
    assert_eq!(
        engine.calls_of(&["events"]).len(),
        3,
        "one refused, then followed"
    );
    engine.emit(die("c2"));
    eventually("the next event", || seen.events.lock().unwrap().len() == 2).await;
}

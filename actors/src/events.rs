//! Events an operator wants to hear about (deploys, rollbacks, failed runs,
//! certificate trouble), published process-wide with one call and read by
//! whoever subscribes (the binary's webhook notifier). Publishing never
//! blocks and never fails: without a subscriber an event is dropped.
//!
//! An event carries names and reasons, never a secret value or a
//! container's output.

use std::sync::OnceLock;

use serde::Serialize;
use tokio::sync::broadcast;

/// Events buffered per subscriber before the oldest are dropped.
const CAPACITY: usize = 256;

/// Something an operator may want to be told.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A service was deployed (operator request or new image).
    Deployed { service: String, message: String },
    /// A deploy failed; the previous container keeps running.
    DeployFailed { service: String, reason: String },
    /// A service was put back on its previous version.
    RolledBack { service: String, message: String },
    /// A rollback was asked for and failed.
    RollbackFailed { service: String, reason: String },
    /// A scheduled run failed.
    CronRunFailed {
        service: String,
        exit_code: Option<i64>,
        reason: Option<String>,
    },
    /// A certificate could not be obtained or renewed.
    CertificateTrouble { host: String, reason: String },
}

fn sender() -> &'static broadcast::Sender<Event> {
    static SENDER: OnceLock<broadcast::Sender<Event>> = OnceLock::new();
    SENDER.get_or_init(|| broadcast::channel(CAPACITY).0)
}

/// Publishes an event to every current subscriber.
pub fn publish(event: Event) {
    let _ = sender().send(event);
}

/// A receiver of every event published from now on.
pub fn subscribe() -> broadcast::Receiver<Event> {
    sender().subscribe()
}

impl Event {
    /// The event's name as serialized (`deployed`, `cron_run_failed`...).
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Deployed { .. } => "deployed",
            Event::DeployFailed { .. } => "deploy_failed",
            Event::RolledBack { .. } => "rolled_back",
            Event::RollbackFailed { .. } => "rollback_failed",
            Event::CronRunFailed { .. } => "cron_run_failed",
            Event::CertificateTrouble { .. } => "certificate_trouble",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribers_receive_tagged_events() {
        // The channel is the process's: tests running beside this one
        // publish too, so only this test's service counts.
        let service = "events-tagged-test";
        let mut receiver = subscribe();
        publish(Event::DeployFailed {
            service: service.into(),
            reason: "pull failed".into(),
        });
        let event = std::iter::from_fn(|| receiver.try_recv().ok())
            .find(|event| serde_json::to_value(event).expect("json")["service"] == service)
            .expect("the event");
        assert_eq!(event.kind(), "deploy_failed");
        let json = serde_json::to_value(&event).expect("json");
        assert_eq!(json["event"], "deploy_failed");
        assert_eq!(json["service"], service);
    }
}

//! Progress of long work, for a person watching: image pulls (layers and
//! bytes) and the health gate (how long a new container has been waited
//! for). Published process-wide with one call, like `events`, and read by
//! whoever subscribes: `dispenser dev` in process, the admin API's
//! `GET /v1/progress` stream for `deploy` and `takeover`. Without a
//! subscriber nothing is kept; a slow subscriber loses the oldest updates,
//! never the work. Updates carry names and counts only.

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

/// Updates buffered per subscriber before the oldest are dropped.
const CAPACITY: usize = 512;

/// One update of long work.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Progress {
    /// An image is being pulled: layers finished of those announced, and
    /// bytes downloaded of those known so far.
    Pulling {
        image: String,
        layers_done: u32,
        layers: u32,
        bytes_done: u64,
        bytes: u64,
    },
    /// The pull is done.
    Pulled { image: String },
    /// A new container of `service` is waited for: `elapsed_secs` of at
    /// most `limit_secs`.
    Waiting {
        service: String,
        elapsed_secs: u64,
        limit_secs: u64,
    },
    /// The new container passed the health gate.
    Ready { service: String },
}

fn sender() -> &'static broadcast::Sender<Progress> {
    static SENDER: OnceLock<broadcast::Sender<Progress>> = OnceLock::new();
    SENDER.get_or_init(|| broadcast::channel(CAPACITY).0)
}

/// Publishes an update to every current subscriber.
pub fn publish(progress: Progress) {
    if sender().receiver_count() > 0 {
        let _ = sender().send(progress);
    }
}

/// A receiver of every update published from now on.
pub fn subscribe() -> broadcast::Receiver<Progress> {
    sender().subscribe()
}

impl Progress {
    /// The service the update is about, when it names one (a pull names
    /// its image only).
    pub fn service(&self) -> Option<&str> {
        match self {
            Progress::Waiting { service, .. } | Progress::Ready { service } => Some(service),
            Progress::Pulling { .. } | Progress::Pulled { .. } => None,
        }
    }
}

/// Per-layer counts of one pull, from the engine's progress messages.
#[derive(Debug, Default)]
pub struct PullTally {
    /// Layer id to (bytes done, bytes total, finished).
    layers: std::collections::BTreeMap<String, (u64, u64, bool)>,
}

impl PullTally {
    /// Takes one engine message: a layer's `status` (`Downloading`,
    /// `Pull complete`, `Already exists`...) and its byte counts.
    pub fn record(&mut self, layer: &str, status: &str, current: Option<i64>, total: Option<i64>) {
        if layer.is_empty() || !status_is_about_a_layer(status) {
            return;
        }
        let entry = self.layers.entry(layer.to_string()).or_default();
        if status.starts_with("Downloading") {
            if let (Some(current), Some(total)) = (current, total) {
                entry.0 = u64::try_from(current).unwrap_or(0);
                entry.1 = u64::try_from(total).unwrap_or(0);
            }
        }
        if matches!(
            status,
            "Download complete" | "Pull complete" | "Already exists"
        ) {
            entry.0 = entry.1;
            if status != "Download complete" {
                entry.2 = true;
            }
        }
    }

    /// The update for `image` as things stand.
    pub fn progress(&self, image: &str) -> Progress {
        let (mut bytes_done, mut bytes) = (0, 0);
        for (done, total, _) in self.layers.values() {
            bytes_done += done;
            bytes += total;
        }
        Progress::Pulling {
            image: image.to_string(),
            layers_done: self.layers.values().filter(|layer| layer.2).count() as u32,
            layers: self.layers.len() as u32,
            bytes_done,
            bytes,
        }
    }
}

/// Statuses that name a layer (not `Pulling from ...` or `Digest: ...`).
fn status_is_about_a_layer(status: &str) -> bool {
    [
        "Pulling fs layer",
        "Waiting",
        "Downloading",
        "Verifying Checksum",
        "Download complete",
        "Extracting",
        "Pull complete",
        "Already exists",
    ]
    .iter()
    .any(|known| status.starts_with(known))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tally_counts_finished_layers_and_bytes() {
        let mut tally = PullTally::default();
        tally.record("", "Pulling from library/web", None, None);
        tally.record("aaa", "Pulling fs layer", None, None);
        tally.record("bbb", "Already exists", None, None);
        tally.record("aaa", "Downloading", Some(300), Some(1000));
        assert_eq!(
            tally.progress("web:1"),
            Progress::Pulling {
                image: "web:1".into(),
                layers_done: 1,
                layers: 2,
                bytes_done: 300,
                bytes: 1000,
            }
        );
        tally.record("aaa", "Download complete", None, None);
        tally.record("aaa", "Pull complete", None, None);
        tally.record("x", "Digest: sha256:abc", None, None);
        let Progress::Pulling {
            layers_done,
            layers,
            bytes_done,
            bytes,
            ..
        } = tally.progress("web:1")
        else {
            panic!("a pull")
        };
        assert_eq!((layers_done, layers, bytes_done, bytes), (2, 2, 1000, 1000));
    }

    #[test]
    fn updates_reach_subscribers_and_name_their_service() {
        let mut receiver = subscribe();
        let service = "progress-test-service";
        publish(Progress::Ready {
            service: service.into(),
        });
        loop {
            let got = receiver.try_recv().expect("the update arrived");
            if got.service() == Some(service) {
                break;
            }
        }
        let line = serde_json::to_string(&Progress::Pulled {
            image: "web:1".into(),
        })
        .unwrap();
        assert_eq!(line, r#"{"step":"pulled","image":"web:1"}"#);
    }
}

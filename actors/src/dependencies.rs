//! `Dependencies`: what the daemon depends on outside itself (the Docker
//! Engine, each watched registry) and whether it answered when last asked,
//! since when. A process-wide board like `metrics`: `DockerWatch` and the
//! `RegistryWatcher` write an outcome per check, the status page reads it.
//! It keeps no error text: a registry's message may quote a URL with
//! credentials in it, and the page only says reachable or not.

use std::collections::BTreeMap;
use std::sync::{OnceLock, RwLock};

use chrono::{DateTime, Utc};

/// The Docker Engine's name on the board.
pub const DOCKER: &str = "Docker Engine";

/// The board: one entry per dependency, by name.
#[derive(Debug, Default)]
pub struct Dependencies(RwLock<BTreeMap<String, Reach>>);

/// A dependency as last seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reach {
    pub reachable: bool,
    /// When it became reachable, or stopped being so (first check included).
    pub since: DateTime<Utc>,
    /// When it was last checked.
    pub checked_at: DateTime<Utc>,
}

/// The process's board.
pub fn global() -> &'static Dependencies {
    static BOARD: OnceLock<Dependencies> = OnceLock::new();
    BOARD.get_or_init(Dependencies::default)
}

/// The board's name for a registry host.
pub fn registry(host: &str) -> String {
    format!("registry {host}")
}

impl Dependencies {
    /// Records one check of `name` at `now`; `since` moves only on a change.
    pub fn observe(&self, name: &str, reachable: bool, now: DateTime<Utc>) {
        let mut board = self
            .0
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match board.get_mut(name) {
            Some(reach) => {
                if reach.reachable != reachable {
                    reach.reachable = reachable;
                    reach.since = now;
                }
                reach.checked_at = now;
            }
            None => {
                board.insert(
                    name.to_owned(),
                    Reach {
                        reachable,
                        since: now,
                        checked_at: now,
                    },
                );
            }
        }
    }

    /// Every dependency, by name.
    pub fn snapshot(&self) -> BTreeMap<String, Reach> {
        self.0
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_moves_only_when_reachability_changes() {
        let board = Dependencies::default();
        let at = |secs| DateTime::<Utc>::from_timestamp(secs, 0).expect("time");
        board.observe(DOCKER, true, at(10));
        board.observe(DOCKER, true, at(20));
        assert_eq!(board.snapshot()[DOCKER].since, at(10));
        assert_eq!(board.snapshot()[DOCKER].checked_at, at(20));
        board.observe(DOCKER, false, at(30));
        board.observe(DOCKER, false, at(40));
        let reach = &board.snapshot()[DOCKER];
        assert!(!reach.reachable);
        assert_eq!(reach.since, at(30));
    }
}

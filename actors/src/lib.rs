//! Dispenser's runtime: the actors that make the host match the plan.
//! See docs/ARCHITECTURE.md for the map.

pub mod control;
pub mod cron;
pub mod dependencies;
pub mod docker_events;
pub mod docker_watch;
pub mod engine;
pub mod events;
pub mod files;
pub mod ledger;
pub mod metrics;
pub mod net;
pub mod plan;
pub mod progress;
pub mod proxy;
pub mod registry;
pub mod service;
pub mod supervisor;
pub mod watcher;

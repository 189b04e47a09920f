//! The admin surface: an HTTP/1.1 API (actix-web) on a unix socket beside the config
//! (`dispenser.sock`, mode 0660) and, when `[admin] listen` names a
//! loopback address, on that TCP address too. Never on the public listeners.
//!
//! Routes:
//! - `GET /v1/status` -> `StatusReport` (JSON)
//! - `GET /v1/logs/{service}?tail=N&follow=1` -> the container's output, streamed
//! - `POST /v1/services/{name}/deploy`, `POST /v1/services/{name}/rollback`,
//!   `POST /v1/services/{name}/takeover`
//!   -> `{"ok": bool, "message": "..."}`
//! - `POST /v1/services/{name}/maintenance?on=true&message=...` (`on=false` to end it)
//!   -> `{"ok": bool, "message": "..."}`
//! - `GET /metrics` -> Prometheus text format
//! - `GET /` -> the status page (HTML)
//!
//! `client.rs` is the CLI's side (`watch.rs`: `status --watch`); `report.rs`
//! gathers the status; `page.rs` renders it.

mod charts;
pub mod client;
mod page;
pub mod progress;
pub mod report;
mod server;
pub mod watch;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, RwLock};

use actix::prelude::*;
use dispenser_actors::cron::CronTicker;
use dispenser_actors::engine::Engine;
use dispenser_actors::events::{self, Event};
use dispenser_actors::ledger::Ledger;
use dispenser_actors::plan::{Plan, PlanApplied};
use dispenser_actors::proxy::certs::CertMap;
use dispenser_actors::proxy::router::SetMaintenance;
use dispenser_actors::proxy::table::SharedTable;
use dispenser_actors::supervisor::Supervisor;

pub use server::AdminServer;

/// The socket's file name, beside dispenser.toml.
pub const SOCKET_FILE: &str = "dispenser.sock";
/// The socket's mode: the daemon's user and group read and write.
pub const SOCKET_MODE: u32 = 0o660;

/// What the admin handlers read and whom they ask.
#[derive(Clone)]
pub struct AdminState {
    pub supervisor: Addr<Supervisor>,
    pub ticker: Option<Addr<CronTicker>>,
    pub ledger: Option<Addr<Ledger>>,
    pub certs: Option<CertMap>,
    /// The proxy's route table, for each route's upstream state.
    pub routes: Option<SharedTable>,
    pub engine: Arc<dyn Engine>,
    pub plan: PlanCache,
    pub deploys: DeployLog,
    /// Where maintenance is turned on and off (the proxy's router).
    pub maintenance: Option<Recipient<SetMaintenance>>,
}

/// The last deploy or rollback of each service since the daemon started,
/// fed by the events bus (so deploys any actor announces show up too).
#[derive(Debug, Clone, Default)]
pub struct DeployLog(Arc<RwLock<BTreeMap<String, report::DeployReport>>>);

/// The plan in force, kept by a small actor subscribed to the supervisor.
#[derive(Debug, Clone, Default)]
pub struct PlanCache(Arc<RwLock<Option<Arc<Plan>>>>);

/// The actor that keeps `PlanCache` current.
pub struct PlanWatcher(PlanCache);

/// Why the admin listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("cannot listen on {path}: {source}")]
    Socket {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot listen on {address}: {source}")]
    Tcp {
        address: SocketAddr,
        source: std::io::Error,
    },
}

impl PlanCache {
    /// The plan in force, if one was applied.
    pub fn current(&self) -> Option<Arc<Plan>> {
        self.0
            .read()
            .map(|plan| plan.clone())
            .unwrap_or_else(|poisoned| poisoned.into_inner().clone())
    }

    fn set(&self, plan: Arc<Plan>) {
        let mut slot = self
            .0
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *slot = Some(plan);
    }
}

impl DeployLog {
    /// Follows the events bus on the current runtime.
    pub fn follow(&self) {
        let log = self.clone();
        let mut receiver = events::subscribe();
        tokio::spawn(async move {
            loop {
                match receiver.recv().await {
                    Ok(event) => log.record(&event),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        });
    }

    /// The last deploy of `service`, if any.
    pub fn last(&self, service: &str) -> Option<report::DeployReport> {
        self.0
            .read()
            .map(|log| log.get(service).cloned())
            .unwrap_or_else(|poisoned| poisoned.into_inner().get(service).cloned())
    }

    fn record(&self, event: &Event) {
        let (service, message) = match event {
            Event::Deployed { service, message } | Event::RolledBack { service, message } => {
                (service, message)
            }
            Event::DeployFailed { service, reason } | Event::RollbackFailed { service, reason } => {
                (service, reason)
            }
            Event::CronRunFailed { .. } | Event::CertificateTrouble { .. } => return,
        };
        let entry = report::DeployReport {
            at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            outcome: event.kind().to_owned(),
            message: message.clone(),
        };
        let mut log = self
            .0
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        log.insert(service.clone(), entry);
    }
}

impl PlanWatcher {
    pub fn new(cache: PlanCache) -> Self {
        PlanWatcher(cache)
    }
}

impl Actor for PlanWatcher {
    type Context = Context<Self>;
}

impl Handler<PlanApplied> for PlanWatcher {
    type Result = ();

    fn handle(&mut self, msg: PlanApplied, _ctx: &mut Self::Context) -> Self::Result {
        self.0.set(msg.0);
    }
}

/// The socket's path for a config file.
pub fn socket_path(config: &Path) -> std::path::PathBuf {
    config.parent().unwrap_or(Path::new(".")).join(SOCKET_FILE)
}

//! The control plane's face. `control::start` builds and wires, around one
//! engine, the actors that make the host match a plan: the ledger, the
//! supervisor, and in the daemon Docker's event stream and outage watch, the
//! cron ticker and the registry watcher; each observer of applied plans is
//! subscribed here, once. `Control` is what the binary holds: `apply`,
//! `shutdown`, and the addresses the admin API asks.
//!
//! `connect` and `connect_patiently` reach the Docker Engine first.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::cron::{Clock, CronTicker, SystemClock};
use crate::docker_events::DockerEvents;
use crate::docker_watch::DockerWatch;
use crate::engine::docker::DockerEngine;
use crate::engine::reachability::{BackOff, Reachability, RETRY_FIRST, RETRY_MAX};
use crate::engine::{Engine, EngineError};
use crate::ledger::{Ledger, RecentDeploys};
use crate::plan::{Plan, PlanApplied, Subscribe};
use crate::proxy::Proxy;
use crate::registry::{DigestSource, DockerConfig, RegistryClient};
use crate::supervisor::{Apply, ApplyReport, Shutdown, Supervisor};
use crate::watcher::RegistryWatcher;

/// What runs besides the supervisor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The daemon: Docker's events and outage watch, the cron ticker and the
    /// registry watcher run too, so the host follows on its own.
    Daemon,
    /// A one-shot command (`dispenser takeover`): the supervisor and the
    /// ledger only; nothing acts unless asked.
    Command,
}

/// What `start` wires in besides the engine.
pub struct Options {
    mode: Mode,
    proxy: Option<Proxy>,
    observers: Vec<Recipient<PlanApplied>>,
    registry: Registry,
    clock: Arc<dyn Clock>,
}

/// Where the watcher and the service actors ask for digests.
enum Registry {
    /// A `RegistryClient` with the Docker config's credentials.
    Client,
    /// A given source (tests).
    Source(Arc<dyn DigestSource>),
}

/// The running control plane.
pub struct Control {
    engine: Arc<dyn Engine>,
    supervisor: Addr<Supervisor>,
    ledger: Option<Addr<Ledger>>,
    ticker: Option<Addr<CronTicker>>,
    proxy: Option<Proxy>,
    /// Cancelled first when the daemon stops (`Runtime::stopping`).
    stopping: CancellationToken,
    /// What starts once the first plan is applied (the daemon only).
    after_first: Option<AfterFirst>,
    /// Whether a plan was applied already: the next `apply` is a reload.
    applied: bool,
}

/// The watchers that start after the first apply: the outage watch would
/// otherwise reconcile a host still being built, and the registry watcher's
/// first round follows the services' first containers.
struct AfterFirst {
    docker: Reachability,
    check_interval: Duration,
    registry: Option<Arc<dyn DigestSource>>,
}

impl Options {
    /// The daemon's control plane.
    pub fn daemon() -> Self {
        Options::new(Mode::Daemon)
    }

    /// A one-shot command's control plane.
    pub fn command() -> Self {
        Options::new(Mode::Command)
    }

    fn new(mode: Mode) -> Self {
        Options {
            mode,
            proxy: None,
            observers: Vec::new(),
            registry: Registry::Client,
            clock: Arc::new(SystemClock),
        }
    }

    /// The services report their endpoints to `proxy`, deploys drain by its
    /// in-flight counts, and its observers learn each applied plan. The
    /// control plane keeps it for the process's life.
    pub fn with_proxy(mut self, proxy: Option<Proxy>) -> Self {
        self.proxy = proxy;
        self
    }

    /// `observer` learns each applied plan too (the admin API's).
    pub fn with_observer(mut self, observer: Recipient<PlanApplied>) -> Self {
        self.observers.push(observer);
        self
    }

    /// Digests come from `source` instead of the registries (tests).
    pub fn with_registry(mut self, source: Arc<dyn DigestSource>) -> Self {
        self.registry = Registry::Source(source);
        self
    }

    /// The cron ticker reads `clock` (tests).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }
}

/// Starts the control plane for `plan`'s settings, read at start-up only
/// (state dir, instance, Docker check interval): nothing is applied yet.
/// Must run inside an actix system.
pub fn start(engine: Arc<dyn Engine>, plan: &Plan, options: Options) -> Control {
    let Options {
        mode,
        proxy,
        observers,
        registry,
        clock,
    } = options;
    let settings = &plan.settings;
    let credentials = DockerConfig::from_env();
    if let Some(config) = &credentials {
        info!(docker_config = %config.path().display(), "registry credentials are read from the docker config");
    }
    let docker = Reachability::default();
    let mut supervisor = Supervisor::new(engine.clone()).with_credentials(credentials.clone());
    // One registry client: the watcher polls with it, and a watched
    // service's first container starts on the digest it gives.
    let registry = match (mode, registry) {
        (Mode::Command, _) => None,
        (Mode::Daemon, Registry::Source(source)) => Some(source),
        (Mode::Daemon, Registry::Client) => registry_client(credentials),
    };
    if mode == Mode::Daemon {
        supervisor = supervisor.with_reachability(docker.clone());
    }
    if let Some(registry) = &registry {
        supervisor = supervisor.with_registry(registry.clone());
    }
    // The state dir is read at start-up only; a reload does not move it.
    let ledger = match Ledger::open(&settings.state_dir) {
        Ok(ledger) => {
            info!(ledger = %ledger.path().display(), "run history opened");
            let ledger = ledger.start();
            supervisor = supervisor.with_history(&ledger);
            Some(ledger)
        }
        Err(err) => {
            error!(error = %err, "no run history: runs and deploys are logged only");
            None
        }
    };
    if let Some(proxy) = &proxy {
        supervisor = supervisor
            .with_endpoints(proxy.endpoints())
            .with_in_flight(proxy.in_flight());
    }
    let stopping = supervisor.stopping();
    let supervisor = supervisor.start();
    let proxy_observers = proxy.iter().flat_map(Proxy::observers);
    for observer in proxy_observers.chain(observers) {
        supervisor.do_send(Subscribe(observer));
    }
    let mut ticker = None;
    let mut after_first = None;
    if mode == Mode::Daemon {
        // Docker's events (exits, OOM kills, health) reach each service's
        // actor through the supervisor; the instance is fixed for the
        // daemon's life.
        DockerEvents::new(
            engine.clone(),
            settings.instance.clone(),
            supervisor.clone().recipient(),
            supervisor.clone().recipient(),
        )
        .with_reachability(docker.clone())
        .start();
        let started = CronTicker::new(clock, supervisor.clone().recipient()).start();
        supervisor.do_send(Subscribe(started.clone().recipient()));
        ticker = Some(started);
        after_first = Some(AfterFirst {
            docker,
            check_interval: settings.docker_check_interval,
            registry,
        });
    }
    Control {
        engine,
        supervisor,
        ledger,
        ticker,
        proxy,
        stopping,
        after_first,
        applied: false,
    }
}

impl Control {
    /// Makes the host match `plan` (start-up and reload alike) and logs the
    /// report, phase `start-up` the first time and `reload` after. After the
    /// first, the outage watch and the registry watcher start; in a
    /// development run the proxy issues its certificates.
    pub async fn apply(&mut self, plan: Plan) -> Result<ApplyReport, MailboxError> {
        let phase = if self.applied { "reload" } else { "start-up" };
        if self.applied {
            self.warn_on_listener_change(&plan);
        }
        let issuing = self
            .proxy
            .as_ref()
            .filter(|proxy| proxy.issues_on_apply())
            .map(|_| plan.clone());
        let report = self.supervisor.send(Apply(plan)).await;
        log_report(phase, &report);
        self.applied = true;
        if let Some(after_first) = self.after_first.take() {
            self.start_watchers(after_first);
        }
        if let (Some(proxy), Some(plan)) = (&self.proxy, &issuing) {
            proxy.applied(plan);
        }
        report
    }

    /// Stops: first cancels every gate, soak and pull in progress (so no
    /// deploy starts, whatever the mailboxes hold), then tells every service,
    /// in reverse dependency order. Containers keep running unless
    /// `stop_on_shutdown`.
    pub async fn shutdown(self) {
        self.stopping.cancel();
        let _ = self.supervisor.send(Shutdown).await;
    }

    /// Waits until the ledger has written every record sent before (it
    /// handles its messages in order).
    pub async fn flush(&self) {
        if let Some(ledger) = &self.ledger {
            let _ = ledger
                .send(RecentDeploys {
                    service: String::new(),
                    limit: 1,
                })
                .await;
        }
    }

    /// The supervisor, for the operator's requests (`GetStatus`, `DeployNow`, ...).
    pub fn supervisor(&self) -> Addr<Supervisor> {
        self.supervisor.clone()
    }

    /// The run and deploy history, when it opened.
    pub fn ledger(&self) -> Option<Addr<Ledger>> {
        self.ledger.clone()
    }

    /// The cron ticker (the daemon only).
    pub fn ticker(&self) -> Option<Addr<CronTicker>> {
        self.ticker.clone()
    }

    /// The engine every actor shares.
    pub fn engine(&self) -> Arc<dyn Engine> {
        self.engine.clone()
    }

    /// The proxy, when the plan it started on has one.
    pub fn proxy(&self) -> Option<&Proxy> {
        self.proxy.as_ref()
    }

    fn start_watchers(&self, after_first: AfterFirst) {
        let AfterFirst {
            docker,
            check_interval,
            registry,
        } = after_first;
        // From now on an outage of Docker is noticed, logged once, and
        // followed by a rebuild of every service's state when it ends.
        DockerWatch::new(
            self.engine.clone(),
            docker,
            check_interval,
            self.supervisor.clone().recipient(),
        )
        .start();
        if let Some(registry) = registry {
            let watcher =
                RegistryWatcher::new(registry, self.supervisor.clone().recipient()).start();
            self.supervisor.do_send(Subscribe(watcher.recipient()));
        }
    }

    /// The listeners start once: a reload that changes them is applied to
    /// routes only, and says so.
    fn warn_on_listener_change(&self, plan: &Plan) {
        let running = self.proxy.as_ref().map(Proxy::settings);
        if running != plan.proxy.as_ref() {
            warn!("the [proxy] settings changed; routes follow at once, listeners and proxy settings after a restart");
        }
    }
}

/// Connects to the Docker Engine once.
pub async fn connect() -> Result<Arc<dyn Engine>, EngineError> {
    let engine = DockerEngine::connect().await?;
    Ok(Arc::new(engine))
}

/// Connects to the Docker Engine, retrying with capped exponential back-off,
/// jitter and one warning per streak, for as long as it takes; `waiting`
/// hears each pause before it is taken (the daemon extends systemd's start
/// timeout beyond it). The caller drops the future to give up.
pub async fn connect_patiently(
    check_interval: Duration,
    mut waiting: impl FnMut(Duration),
) -> Arc<dyn Engine> {
    let mut back_off = BackOff::new(RETRY_FIRST, check_interval.min(RETRY_MAX));
    let mut warned = false;
    loop {
        match connect().await {
            Ok(engine) => {
                if warned {
                    info!("the Docker Engine is reachable again");
                }
                return engine;
            }
            Err(err) => {
                if !warned {
                    warn!(error = %err, "cannot reach the Docker Engine; waiting for it before starting anything");
                    warned = true;
                }
            }
        }
        let pause = back_off.next_pause();
        waiting(pause);
        tokio::time::sleep(pause).await;
    }
}

/// The registry client the watcher and the service actors share. Without
/// it nothing is redeployed, but everything else runs.
fn registry_client(credentials: Option<DockerConfig>) -> Option<Arc<dyn DigestSource>> {
    match RegistryClient::new(credentials) {
        Ok(client) => Some(Arc::new(client)),
        Err(err) => {
            error!(error = %err, "cannot start the registry watcher; images are not watched");
            None
        }
    }
}

fn log_report(phase: &str, report: &Result<ApplyReport, MailboxError>) {
    match report {
        Ok(report) if report.deferred => {
            warn!(
                phase,
                "plan deferred: docker does not answer; it is applied once it answers again"
            );
        }
        Ok(report) if report.is_clean() => {
            info!(
                phase,
                reconciled = report.reconciled.len(),
                retired = report.retired.len(),
                "plan applied"
            );
        }
        Ok(report) => {
            for (what, reason) in &report.failures {
                error!(phase, service = %what, error = %reason, "not applied");
            }
            warn!(
                phase,
                failures = report.failures.len(),
                "plan applied with failures; the services above keep their previous state"
            );
        }
        Err(err) => error!(phase, error = %err, "the supervisor did not answer"),
    }
}

#[cfg(test)]
mod tests;

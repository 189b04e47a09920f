//! The daemon: takes the pidfile, applies the plan, then turns signals into
//! reloads and a graceful stop, telling systemd where it stands.
//!
//! Reload re-renders and validates the files first: a broken config is
//! logged, error by error, and nothing running changes.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use dispenser_actors::cron::{CronTicker, SystemClock};
use dispenser_actors::docker_events::DockerEvents;
use dispenser_actors::docker_watch::DockerWatch;
use dispenser_actors::engine::docker::DockerEngine;
use dispenser_actors::engine::reachability::{BackOff, Reachability, RETRY_FIRST, RETRY_MAX};
use dispenser_actors::engine::Engine;
use dispenser_actors::ledger::Ledger;
use dispenser_actors::plan::Subscribe;
use dispenser_actors::plan::{Plan, ProxySettings};
use dispenser_actors::proxy::acme::{AcmeManager, Timing};
use dispenser_actors::proxy::certs::CertMap;
use dispenser_actors::proxy::challenge::Challenges;
use dispenser_actors::proxy::dev_ca::DevCa;
use dispenser_actors::proxy::router::ProxyRouter;
use dispenser_actors::proxy::server::ProxyServer;
use dispenser_actors::proxy::table::{InFlightBoard, SharedTable};
use dispenser_actors::proxy::tls::CertLoader;
use dispenser_actors::registry::{DigestSource, DockerConfig, RegistryClient};
use dispenser_actors::supervisor::{Apply, ApplyReport, Shutdown, Supervisor};
use dispenser_actors::watcher::RegistryWatcher;
use sd_notify::NotifyState;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use crate::admin::{AdminServer, AdminState, DeployLog, PlanCache, PlanWatcher};
use crate::notify::{self, OperatorSlot};
use crate::pidfile::Pidfile;

/// How much longer than the next pause systemd is asked to wait for READY
/// while the daemon waits for the Docker Engine at start-up.
const START_TIMEOUT_MARGIN: Duration = Duration::from_secs(30);

/// Where the daemon finds its files.
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    pub config: PathBuf,
    pub pid_file: PathBuf,
    /// The admin API's unix socket; `None`: no admin API (`dispenser dev`).
    pub socket: Option<PathBuf>,
    /// A development run: certificates from the development CA, no ACME.
    pub dev: bool,
    /// `[admin]` and `[notify]` of the latest configuration that loaded.
    pub operator: OperatorSlot,
}

/// The maps the proxy reads and the control plane writes; one of each per
/// process. The ACME manager is started with these same two.
#[derive(Debug, Clone, Default)]
pub struct ProxyMaps {
    pub certs: CertMap,
    pub challenges: Challenges,
}

/// The proxy's parts that live as long as the process.
struct Proxy {
    settings: ProxySettings,
    /// The route table the router writes (read by the admin API).
    table: SharedTable,
    router: Addr<ProxyRouter>,
    /// The router's in-flight counts, read by deploys to drain.
    in_flight: InFlightBoard,
    cert_loader: Addr<CertLoader>,
    _server: ProxyServer,
}

/// What a signal asks of the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Request {
    Reload,
    Stop,
}

/// Runs the daemon until SIGTERM or SIGINT. `load` reads, renders and
/// validates the files; its error is the rendered list of problems.
pub fn run<L>(options: DaemonOptions, load: L) -> ExitCode
where
    L: Fn() -> Result<Plan, String> + Send + Sync + 'static,
{
    // rustls panics at first use when no process-wide provider is set and
    // several are linked in; install ring before anything uses TLS.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let load = Arc::new(load);
    let pidfile = match Pidfile::acquire(&options.pid_file) {
        Ok(pidfile) => pidfile,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::FAILURE;
        }
    };
    // Registered before anything slow, so an early SIGTERM is not lost.
    let (requests, mut incoming) = mpsc::unbounded_channel();
    if let Err(err) = forward_signals(requests) {
        eprintln!("error: cannot install signal handlers: {err}");
        return ExitCode::FAILURE;
    }
    let system = actix_rt::System::new();
    let code = system.block_on(async move {
        // A SIGHUP while a load runs is kept for after it: one more reload.
        let mut reload_queued = false;
        let plan = match load_off_thread(&load, &mut incoming, &mut reload_queued).await {
            Some(Ok(plan)) => plan,
            Some(Err(problems)) => {
                eprint!("{problems}");
                error!(config = %options.config.display(), "the configuration is invalid; not starting");
                return ExitCode::FAILURE;
            }
            None => {
                info!("asked to stop while the configuration was loading; not starting");
                return ExitCode::SUCCESS;
            }
        };
        let Some(engine) =
            connect_docker(&mut incoming, plan.settings.docker_check_interval).await
        else {
            return ExitCode::SUCCESS;
        };
        let credentials = DockerConfig::from_env();
        if let Some(config) = &credentials {
            info!(docker_config = %config.path().display(), "registry credentials are read from the docker config");
        }
        let maps = ProxyMaps::default();
        let proxy = match &plan.proxy {
            Some(settings) => match start_proxy(settings, &maps) {
                Ok(proxy) => Some(proxy),
                Err(err) => {
                    error!(error = %err, "cannot start the proxy; not starting");
                    return ExitCode::FAILURE;
                }
            },
            None => None,
        };
        let docker = Reachability::default();
        // One registry client: the watcher polls with it, and a watched
        // service's first container starts on the digest it gives.
        let registry = registry_client(credentials.clone());
        let mut supervisor = Supervisor::new(engine.clone())
            .with_credentials(credentials.clone())
            .with_reachability(docker.clone());
        if let Some(registry) = &registry {
            supervisor = supervisor.with_registry(registry.clone());
        }
        // The state dir is read at start-up only; a reload does not move it.
        let ledger = match Ledger::open(&plan.settings.state_dir) {
            Ok(ledger) => {
                info!(ledger = %ledger.path().display(), "run history opened");
                let ledger = ledger.start();
                supervisor = supervisor.with_history(&ledger);
                Some(ledger)
            }
            Err(err) => {
                error!(error = %err, "no run history: runs are logged only");
                None
            }
        };
        if let Some(proxy) = &proxy {
            supervisor = supervisor
                .with_endpoints(proxy.router.clone().recipient())
                .with_in_flight(proxy.in_flight.clone());
        }
        let stopping = supervisor.stopping();
        let supervisor = supervisor.start();
        if let Some(proxy) = &proxy {
            supervisor.do_send(Subscribe(proxy.router.clone().recipient()));
            supervisor.do_send(Subscribe(proxy.cert_loader.clone().recipient()));
            // Certificates from the ACME CA when [certbot] is set; its
            // HTTP-01 answers go out through the proxy's port-80 listener.
            // A development run uses the development CA instead.
            if !options.dev {
                // The back-off after a failed request is read at start-up only.
                let timing = Timing {
                    backoff_base: plan
                        .acme
                        .as_ref()
                        .map_or(Timing::default().backoff_base, |acme| acme.retry_after_failure),
                    ..Timing::default()
                };
                let acme =
                    AcmeManager::new(maps.challenges.clone(), maps.certs.clone(), timing).start();
                supervisor.do_send(Subscribe(acme.recipient()));
            }
        }
        // Docker's events (exits, OOM kills, health) reach each service's actor
        // through the supervisor; the instance is fixed for the daemon's life.
        DockerEvents::new(
            engine.clone(),
            plan.settings.instance.clone(),
            supervisor.clone().recipient(),
            supervisor.clone().recipient(),
        )
        .with_reachability(docker.clone())
        .start();
        let ticker = CronTicker::new(Arc::new(SystemClock), supervisor.clone().recipient()).start();
        supervisor.do_send(Subscribe(ticker.clone().recipient()));
        let _admin = match &options.socket {
            Some(socket) => {
                let state = AdminState {
                    supervisor: supervisor.clone(),
                    ticker: Some(ticker),
                    ledger: ledger.clone(),
                    certs: proxy.as_ref().map(|_| maps.certs.clone()),
                    routes: proxy.as_ref().map(|proxy| proxy.table.clone()),
                    engine: engine.clone(),
                    plan: PlanCache::default(),
                    deploys: DeployLog::default(),
                };
                state.deploys.follow();
                supervisor.do_send(Subscribe(
                    PlanWatcher::new(state.plan.clone()).start().recipient(),
                ));
                // The services matter more than their status: without the
                // admin API the daemon still runs them, and says so.
                match start_admin(socket, options.operator.get().admin_listen, state) {
                    Ok(server) => Some(server),
                    Err(err) => {
                        error!(error = %err, "cannot start the admin API; status, logs and deploy commands will not reach this daemon");
                        None
                    }
                }
            }
            None => None,
        };
        notify::start(options.operator.clone(), plan.settings.instance.clone());
        let first = options.dev.then(|| plan.clone());
        let docker_check = plan.settings.docker_check_interval;
        log_report("start-up", supervisor.send(Apply(plan)).await);
        // From now on an outage of Docker is noticed, logged once, and
        // followed by a rebuild of every service's state when it ends.
        DockerWatch::new(engine.clone(), docker, docker_check, supervisor.clone().recipient())
            .start();
        if let Some(plan) = &first {
            fill_dev_certs(plan, &maps);
        }
        if let Some(registry) = registry {
            let watcher = RegistryWatcher::new(registry, supervisor.clone().recipient()).start();
            supervisor.do_send(Subscribe(watcher.recipient()));
        }
        notify(&[NotifyState::Ready]);
        info!(config = %options.config.display(), "dispenser is ready");
        loop {
            let request = if std::mem::take(&mut reload_queued) {
                Request::Reload
            } else {
                match incoming.recv().await {
                    Some(request) => request,
                    None => break,
                }
            };
            match request {
                Request::Reload => {
                    notify(&[NotifyState::Reloading, monotonic()]);
                    info!("reloading the configuration");
                    let Some(loaded) =
                        load_off_thread(&load, &mut incoming, &mut reload_queued).await
                    else {
                        info!("asked to stop while the configuration was loading; that reload is abandoned");
                        break;
                    };
                    match loaded {
                        Ok(plan) => {
                            warn_on_listener_change(proxy.as_ref(), &plan);
                            let dev_plan = options.dev.then(|| plan.clone());
                            log_report("reload", supervisor.send(Apply(plan)).await);
                            if let Some(plan) = &dev_plan {
                                fill_dev_certs(plan, &maps);
                            }
                        }
                        Err(problems) => {
                            for problem in problems.split("\n\n").filter(|p| !p.trim().is_empty()) {
                                error!(problem = %problem.trim_end(), "invalid configuration");
                            }
                            warn!(
                                "reload refused: the configuration is invalid; nothing was changed"
                            );
                        }
                    }
                    notify(&[NotifyState::Ready]);
                }
                Request::Stop => break,
            }
        }
        notify(&[NotifyState::Stopping]);
        info!("stopping");
        // First, so that a gate or soak in progress is abandoned at once and
        // no deploy starts, whatever the actors' mailboxes hold.
        stopping.cancel();
        let _ = supervisor.send(Shutdown).await;
        ExitCode::SUCCESS
    });
    drop(pidfile);
    info!("stopped");
    code
}

/// Runs `load` on a thread of its own and waits for it while handling
/// signals: `None` when asked to stop meanwhile (the load is abandoned: it
/// may wait on the network, and a stop must not wait for it). A reload asked
/// for meanwhile sets `reload_queued`. Loading reads files, renders
/// templates (bounded: see `config::render::RENDER_FUEL`) and fetches
/// secrets; the actors keep running on their threads.
async fn load_off_thread<L>(
    load: &Arc<L>,
    incoming: &mut mpsc::UnboundedReceiver<Request>,
    reload_queued: &mut bool,
) -> Option<Result<Plan, String>>
where
    L: Fn() -> Result<Plan, String> + Send + Sync + 'static,
{
    let (done, mut result) = tokio::sync::oneshot::channel();
    let loader = Arc::clone(load);
    let spawned = std::thread::Builder::new()
        .name("config-load".into())
        .spawn(move || {
            let _ = done.send(loader());
        });
    if let Err(err) = spawned {
        return Some(Err(format!(
            "error: cannot start a thread to load the configuration: {err}\n"
        )));
    }
    loop {
        tokio::select! {
            loaded = &mut result => {
                return Some(loaded.unwrap_or_else(|_| {
                    Err("error: loading the configuration failed unexpectedly (see the log)\n".to_string())
                }));
            }
            request = incoming.recv() => match request {
                Some(Request::Reload) => {
                    if !*reload_queued {
                        info!("a reload was asked for while the configuration loads; it follows this one");
                    }
                    *reload_queued = true;
                }
                Some(Request::Stop) | None => return None,
            },
        }
    }
}

/// Starts the listeners, the router and the certificate loader.
fn start_proxy(settings: &ProxySettings, maps: &ProxyMaps) -> Result<Proxy, String> {
    let table = SharedTable::default();
    let server = ProxyServer::start(
        settings,
        table.clone(),
        maps.certs.clone(),
        maps.challenges.clone(),
    )
    .map_err(|err| err.to_string())?;
    let router = ProxyRouter::new(table.clone());
    Ok(Proxy {
        settings: settings.clone(),
        table: table.clone(),
        in_flight: router.in_flight(),
        router: router.start(),
        cert_loader: CertLoader::new(maps.certs.clone()).start(),
        _server: server,
    })
}

/// Starts the admin API on `socket` and on `[admin] listen` when set (read
/// at start-up only).
fn start_admin(
    socket: &std::path::Path,
    tcp: Option<std::net::SocketAddr>,
    state: AdminState,
) -> Result<AdminServer, String> {
    AdminServer::start(socket, tcp, state).map_err(|err| err.to_string())
}

/// `dispenser dev`: a certificate from the development CA for every route
/// host (the CA is created on first use under the state dir).
fn fill_dev_certs(plan: &Plan, maps: &ProxyMaps) {
    match DevCa::load_or_create(&plan.settings.state_dir) {
        Ok(ca) => match ca.fill(plan, &maps.certs) {
            Ok(hosts) => info!(
                hosts = hosts.len(),
                ca = %DevCa::cert_path(&plan.settings.state_dir).display(),
                "development certificates installed; trust the CA file to avoid warnings"
            ),
            Err(err) => error!(error = %err, "cannot issue development certificates"),
        },
        Err(err) => error!(error = %err, "cannot open the development CA"),
    }
}

/// The listeners start once: a reload that changes them is applied to
/// routes only, and says so.
fn warn_on_listener_change(proxy: Option<&Proxy>, plan: &Plan) {
    let running = proxy.map(|proxy| &proxy.settings);
    if running != plan.proxy.as_ref() {
        warn!("the [proxy] settings changed; routes follow at once, listeners and proxy settings after a restart");
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

/// Turns SIGHUP into `Reload` and SIGTERM/SIGINT into `Stop`, from a thread
/// of signal-hook's.
fn forward_signals(requests: mpsc::UnboundedSender<Request>) -> std::io::Result<()> {
    let mut signals = Signals::new([SIGHUP, SIGTERM, SIGINT])?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                let request = match signal {
                    SIGHUP => Request::Reload,
                    _ => Request::Stop,
                };
                if requests.send(request).is_err() {
                    break;
                }
            }
        })?;
    Ok(())
}

/// Connects to Docker, retrying with capped exponential back-off, jitter and
/// one warning per streak; `None` when asked to stop meanwhile. READY is not
/// sent before this returns; each retry extends systemd's start timeout
/// beyond the next pause, so `TimeoutStartSec` does not kill a daemon that
/// only waits for Docker.
async fn connect_docker(
    incoming: &mut mpsc::UnboundedReceiver<Request>,
    check_interval: Duration,
) -> Option<Arc<dyn Engine>> {
    let mut back_off = BackOff::new(RETRY_FIRST, check_interval.min(RETRY_MAX));
    let mut warned = false;
    loop {
        match DockerEngine::connect().await {
            Ok(engine) => {
                if warned {
                    info!("the Docker Engine is reachable again");
                }
                return Some(Arc::new(engine));
            }
            Err(err) => {
                if !warned {
                    warn!(error = %err, "cannot reach the Docker Engine; waiting for it before starting anything");
                    warned = true;
                }
            }
        }
        let pause = back_off.next_pause();
        let extend = u32::try_from((pause + START_TIMEOUT_MARGIN).as_micros()).unwrap_or(u32::MAX);
        notify(&[
            NotifyState::Status("waiting for the Docker Engine"),
            NotifyState::ExtendTimeoutUsec(extend),
        ]);
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            request = incoming.recv() => {
                if matches!(request, Some(Request::Stop) | None) {
                    return None;
                }
            }
        }
    }
}

fn log_report(phase: &str, report: Result<ApplyReport, MailboxError>) {
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

fn notify(states: &[NotifyState]) {
    if let Err(err) = sd_notify::notify(states) {
        warn!(error = %err, "cannot notify systemd");
    }
}

fn monotonic() -> NotifyState<'static> {
    match NotifyState::monotonic_usec_now() {
        Ok(state) => state,
        Err(_) => NotifyState::Status("reloading"),
    }
}

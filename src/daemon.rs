//! The daemon: takes the pidfile, applies the plan, then turns signals into
//! reloads and a graceful stop, telling systemd where it stands.
//!
//! Reload re-renders and validates the files first: a broken config is
//! logged, error by error, and nothing running changes.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use actix::Actor as _;
use dispenser_actors::control::{self, Control, Options};
use dispenser_actors::engine::Engine;
use dispenser_actors::plan::Plan;
use dispenser_actors::proxy::{self, Certificates};
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

/// What a signal asks of the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Request {
    Reload,
    Stop,
}

/// The requests the signal thread forwards, and a reload kept for later.
struct Requests {
    incoming: mpsc::UnboundedReceiver<Request>,
    /// A SIGHUP came while a load ran: one more reload follows it.
    reload_queued: bool,
}

/// What the daemon built at start-up and holds until it stops.
struct Running {
    control: Control,
    _admin: Option<AdminServer>,
    /// `dev` draws its pulls and health gates on its own stderr.
    _progress: Option<crate::admin::progress::Local>,
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
    let (sender, incoming) = mpsc::unbounded_channel();
    if let Err(err) = forward_signals(sender) {
        eprintln!("error: cannot install signal handlers: {err}");
        return ExitCode::FAILURE;
    }
    let mut requests = Requests {
        incoming,
        reload_queued: false,
    };
    let system = actix_rt::System::new();
    let code = system.block_on(async move {
        let plan = match first_load(&options, &load, &mut requests).await {
            Ok(plan) => plan,
            Err(code) => return code,
        };
        let mut running = match build(&options, &plan, &mut requests).await {
            Ok(running) => running,
            Err(code) => return code,
        };
        let _ = running.control.apply(plan).await;
        notify(&[NotifyState::Ready]);
        info!(config = %options.config.display(), "dispenser is ready");
        serve(&mut running.control, &load, &mut requests).await;
        notify(&[NotifyState::Stopping]);
        info!("stopping");
        running.control.shutdown().await;
        ExitCode::SUCCESS
    });
    drop(pidfile);
    info!("stopped");
    code
}

/// The first load: the plan to start on, or the exit code (a stop asked
/// meanwhile is a clean exit, invalid files a failure).
async fn first_load<L>(
    options: &DaemonOptions,
    load: &Arc<L>,
    requests: &mut Requests,
) -> Result<Plan, ExitCode>
where
    L: Fn() -> Result<Plan, String> + Send + Sync + 'static,
{
    match load_off_thread(load, requests).await {
        Some(Ok(plan)) => Ok(plan),
        Some(Err(problems)) => {
            eprint!("{problems}");
            error!(config = %options.config.display(), "the configuration is invalid; not starting");
            Err(ExitCode::FAILURE)
        }
        None => {
            info!("asked to stop while the configuration was loading; not starting");
            Err(ExitCode::SUCCESS)
        }
    }
}

/// Waits for Docker, then starts the proxy, the control plane, the admin API
/// and the notifier; nothing is applied yet.
async fn build(
    options: &DaemonOptions,
    plan: &Plan,
    requests: &mut Requests,
) -> Result<Running, ExitCode> {
    let Some(engine) = connect_docker(requests, plan.settings.docker_check_interval).await else {
        return Err(ExitCode::SUCCESS);
    };
    let certificates = if options.dev {
        Certificates::Development
    } else {
        Certificates::Acme
    };
    let proxy =
        proxy::start_with_dns(plan, certificates, crate::acme_dns::connector()).map_err(|err| {
            error!(error = %err, "cannot start the proxy; not starting");
            ExitCode::FAILURE
        })?;
    let plan_cache = PlanCache::default();
    let mut control_options = Options::daemon().with_proxy(proxy);
    if options.socket.is_some() {
        let watcher = PlanWatcher::new(plan_cache.clone()).start();
        control_options = control_options.with_observer(watcher.recipient());
    }
    let control = control::start(engine, plan, control_options);
    let admin = options.socket.as_ref().and_then(|socket| {
        start_admin(
            socket,
            options.operator.get().admin_listen,
            &control,
            plan_cache,
        )
    });
    notify::start(options.operator.clone(), plan.settings.instance.clone());
    Ok(Running {
        control,
        _admin: admin,
        _progress: options
            .dev
            .then(|| crate::admin::progress::draw_local(None)),
    })
}

/// Turns requests into reloads until a stop (or the end of the signals).
async fn serve<L>(control: &mut Control, load: &Arc<L>, requests: &mut Requests)
where
    L: Fn() -> Result<Plan, String> + Send + Sync + 'static,
{
    loop {
        let request = if std::mem::take(&mut requests.reload_queued) {
            Request::Reload
        } else {
            match requests.incoming.recv().await {
                Some(request) => request,
                None => return,
            }
        };
        if request == Request::Stop {
            return;
        }
        notify(&[NotifyState::Reloading, monotonic()]);
        info!("reloading the configuration");
        let Some(loaded) = load_off_thread(load, requests).await else {
            info!("asked to stop while the configuration was loading; that reload is abandoned");
            return;
        };
        match loaded {
            Ok(plan) => {
                let _ = control.apply(plan).await;
            }
            Err(problems) => {
                for problem in problems.split("\n\n").filter(|p| !p.trim().is_empty()) {
                    error!(problem = %problem.trim_end(), "invalid configuration");
                }
                warn!("reload refused: the configuration is invalid; nothing was changed");
            }
        }
        notify(&[NotifyState::Ready]);
    }
}

/// Runs `load` on a thread of its own and waits for it while handling
/// signals: `None` when asked to stop meanwhile (the load is abandoned: it
/// may wait on the network, and a stop must not wait for it). A reload asked
/// for meanwhile is queued. Loading reads files, renders templates (bounded:
/// see `config::render::RENDER_FUEL`) and fetches secrets; the actors keep
/// running on their threads.
async fn load_off_thread<L>(load: &Arc<L>, requests: &mut Requests) -> Option<Result<Plan, String>>
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
            request = requests.incoming.recv() => match request {
                Some(Request::Reload) => {
                    if !requests.reload_queued {
                        info!("a reload was asked for while the configuration loads; it follows this one");
                    }
                    requests.reload_queued = true;
                }
                Some(Request::Stop) | None => return None,
            },
        }
    }
}

/// Starts the admin API on `socket` and on `[admin] listen` when set (read
/// at start-up only). The services matter more than their status: without
/// the admin API the daemon still runs them, and says so.
fn start_admin(
    socket: &std::path::Path,
    tcp: Option<std::net::SocketAddr>,
    control: &Control,
    plan: PlanCache,
) -> Option<AdminServer> {
    let proxy = control.proxy();
    let state = AdminState {
        supervisor: control.supervisor(),
        ticker: control.ticker(),
        ledger: control.ledger(),
        certs: proxy.map(|proxy| proxy.certs()),
        routes: proxy.map(|proxy| proxy.table()),
        engine: control.engine(),
        plan,
        deploys: DeployLog::default(),
        maintenance: proxy.map(|proxy| proxy.maintenance()),
    };
    state.deploys.follow();
    match AdminServer::start(socket, tcp, state) {
        Ok(server) => Some(server),
        Err(err) => {
            error!(error = %err, "cannot start the admin API; status, logs and deploy commands will not reach this daemon");
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

/// Connects to Docker (`control::connect_patiently`); `None` when asked to
/// stop meanwhile. READY is not sent before this returns; each retry extends
/// systemd's start timeout beyond the next pause, so `TimeoutStartSec` does
/// not kill a daemon that only waits for Docker.
async fn connect_docker(
    requests: &mut Requests,
    check_interval: Duration,
) -> Option<Arc<dyn Engine>> {
    let waiting = |pause: Duration| {
        let extend = u32::try_from((pause + START_TIMEOUT_MARGIN).as_micros()).unwrap_or(u32::MAX);
        notify(&[
            NotifyState::Status("waiting for the Docker Engine"),
            NotifyState::ExtendTimeoutUsec(extend),
        ]);
    };
    let stop_asked = async { while let Some(Request::Reload) = requests.incoming.recv().await {} };
    tokio::select! {
        engine = control::connect_patiently(check_interval, waiting) => Some(engine),
        () = stop_asked => None,
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

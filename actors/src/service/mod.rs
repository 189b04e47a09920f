//! `ServiceActor`: the only place that changes one service's container. Every
//! action is a message handled to completion before the next one starts
//! (`AtomicResponse`), so two actions on one service never interleave.
//! Every action that replaces the container runs the one deploy pipeline
//! (`pipeline.rs`: acquire, replace; `settle.rs`: settle). A soak is
//! watched outside the mailbox (`soak.rs`), so the actor answers newer
//! work, a reload and a stop during it.
//!
//! Protocol:
//! - `Reconcile(Service)` -> `Result<Reconciled, ServiceError>`: make Docker match the spec.
//! - `Retire` -> `Result<(), ServiceError>`: stop and remove the container.
//! - `Shutdown { stop_container }` -> `()`: the daemon stops.
//! - `CronFired` -> `()`: a scheduled run (handlers for runs in `run.rs`): a job
//!   gets a fresh container, started and watched without holding the mailbox;
//!   a long-running service is restarted through the recreate path.
//! - `RunOverdue { run }` -> `()`: a run passed `max_runtime`; stop it.
//! - `RunFinished { run, exit, output_tail }` -> `()`: a run's container
//!   exited; record the outcome in the log and the ledger.
//! - `ImageUpdated { digest }` -> `Result<DeployOutcome, ServiceError>`: the
//!   registry has `digest` for the image; deploy it unless the container runs
//!   it already or its deploy failed within the back-off. Answered at the
//!   swap: a soak that follows is watched from the mailbox.
//! - `SoakOver { generation }` -> `()`: a soak's period ended (`soak.rs`).
//! - `ContainerChanged(event)` -> `()`: Docker reported a start, exit, OOM
//!   kill, health change or removal of the service's container (handlers in
//!   `events.rs`): record, log, tell the proxy; never restart it.
//! - `Resync` -> `()`: Docker's event stream was down; read the container again.
//! - `ManualDeploy`, `ManualRollback`, `Takeover` -> `Result<String, ServiceError>`:
//!   operator requests (`manual.rs`).
//!
//! The actor publishes its state on the shared `StatusBoard` after every step,
//! so status reads never wait on a busy mailbox. If the actor stops
//! unexpectedly (a panic inside an action), its supervisor restarts it and it
//! rebuilds its state from Docker.

pub mod container;
mod converge;
mod events;
mod image;
mod manual;
pub mod pipeline;
mod prune;
pub mod rollout;
mod run;
mod settle;
mod soak;
pub mod state;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::engine::reachability::Reachability;
use crate::engine::{labels, Container, ContainerState, Engine, EngineError, Health};
use crate::ledger::{RecentDeploys, RecordDeploy, RecordRun};
use crate::plan::{DefaultNetwork, DeploySettings, Initialize, Service};
use crate::proxy::router::EndpointChanged;
use crate::proxy::table::{EndpointState, InFlightBoard};
use crate::registry::{DigestSource, DockerConfig};
pub use events::{ContainerChanged, Resync, CRASH_LOOP_RESTARTS, CRASH_LOOP_WINDOW};
pub use manual::{quarantined_in, ManualDeploy, ManualRollback, Takeover};
pub use pipeline::{Change, Job, Reconciled};
pub use run::{RunFinished, RunOverdue};
pub use soak::SoakOver;
pub use state::{Action, State, StateError};

/// Grace period between the stop signal and a kill, for a container whose
/// service does not set `stop_grace_period` (or that is in no plan).
pub const STOP_GRACE: Duration = crate::plan::DEFAULT_STOP_GRACE;
/// Wait before a digest whose deploy failed is tried again (doubling).
pub const DEPLOY_RETRY_FIRST: Duration = Duration::from_secs(60);
/// Longest wait between two attempts to deploy the same failed digest.
pub const DEPLOY_RETRY_MAX: Duration = Duration::from_secs(3600);

/// Makes the service's container match `service`.
#[derive(Debug, Message)]
#[rtype(result = "Result<Reconciled, ServiceError>")]
pub struct Reconcile(pub Service);

/// Stops and removes the service's container; the service left the plan.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), ServiceError>")]
pub struct Retire;

/// The daemon is stopping. The container keeps running unless `stop_container`.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Shutdown {
    pub stop_container: bool,
}

/// The registry watcher found `digest` for the service's image tag.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<DeployOutcome, ServiceError>")]
pub struct ImageUpdated {
    pub digest: String,
    /// The tag `digest` is of, for a service that tracks a semver range.
    pub tag: Option<String>,
}

/// What an `ImageUpdated` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeployOutcome {
    /// The container already runs that digest (or the service does not watch).
    Current,
    /// That digest failed to deploy recently; retried after the back-off.
    Deferred { retry_in: Duration },
    /// That digest was rolled back as a bad version: it is not deployed
    /// again until a newer digest appears or an operator asks.
    Quarantined,
    /// The digest was pulled and the container recreated from it.
    Deployed(Reconciled),
    /// The Docker Engine is unreachable: nothing was tried; the watcher's
    /// next report after the engine is back deploys it.
    DockerAway,
}

/// What every service actor shares: the engine and the daemon's settings.
#[derive(Clone)]
pub struct Runtime {
    pub engine: Arc<dyn Engine>,
    pub instance: String,
    pub default_network: DefaultNetwork,
    pub status: StatusBoard,
    /// Where run records go; `None` keeps them in the log only.
    pub ledger: Option<Recipient<RecordRun>>,
    /// The proxy router, told where the container is after every change;
    /// `None` when the proxy is off (and in tests without a router).
    pub endpoints: Option<Recipient<EndpointChanged>>,
    /// Where pull credentials come from (the Docker config); `None`: anonymous.
    pub credentials: Option<DockerConfig>,
    /// Where deploys are recorded and rollbacks look; `None`: logs only.
    pub deploys: Option<DeployLedger>,
    /// The proxy's in-flight counts, to drain an old container; `None`
    /// when the proxy is off.
    pub in_flight: Option<InFlightBoard>,
    /// Readiness, drain and soak times.
    pub deploy: DeploySettings,
    /// Cancelled when the daemon begins to stop: a gate in progress is
    /// abandoned (the previous container serves) and no action but a
    /// shutdown starts.
    pub stopping: CancellationToken,
    /// The newest digest the registry reported for this service's image
    /// (set by the supervisor before the `ImageUpdated` reaches the
    /// mailbox): a soak ends, superseded, when it moves on.
    pub newest_digest: NewestDigest,
    /// The registry client (the watcher's): a watched service's first
    /// container starts on the tag's current digest. `None`: the local image.
    pub registry: Option<Arc<dyn DigestSource>>,
    /// Whether the Docker Engine answers (`DockerWatch`): no deploy starts
    /// while it is away.
    pub docker: Reachability,
}

/// The newest digest reported for one service's image, shared by the
/// supervisor (which writes it) and the service's deploys (which read it).
/// The default never reports one.
#[derive(Debug, Clone, Default)]
pub struct NewestDigest(Option<tokio::sync::watch::Receiver<Option<String>>>);

impl NewestDigest {
    /// The writing side and the reading side of one service's newest digest.
    pub fn channel() -> (tokio::sync::watch::Sender<Option<String>>, NewestDigest) {
        let (sender, receiver) = tokio::sync::watch::channel(None);
        (sender, NewestDigest(Some(receiver)))
    }

    /// The newest digest, when one other than `digest` was reported.
    pub fn past(&self, digest: &str) -> Option<String> {
        let receiver = self.0.as_ref()?;
        let newest = receiver.borrow();
        newest.as_ref().filter(|newest| *newest != digest).cloned()
    }

    /// Resolves with the newest digest once it is one other than `digest`;
    /// never, when nothing reports digests.
    pub async fn moved_past(&self, digest: &str) -> String {
        let Some(mut receiver) = self.0.clone() else {
            return std::future::pending().await;
        };
        loop {
            if let Some(newest) = receiver.borrow_and_update().as_ref() {
                if newest != digest {
                    return newest.clone();
                }
            }
            if receiver.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    }
}

/// The ledger's deploy history, as the service actors use it.
#[derive(Clone)]
pub struct DeployLedger {
    pub record: Recipient<RecordDeploy>,
    pub recent: Recipient<RecentDeploys>,
}

/// The latest status of every service, readable without asking the actors.
#[derive(Debug, Clone, Default)]
pub struct StatusBoard(Arc<RwLock<BTreeMap<String, ServiceStatus>>>);

/// One service as the status board shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceStatus {
    pub name: String,
    pub state: State,
    pub container_id: Option<String>,
    pub image: String,
    pub spec_hash: String,
    /// Restarts by Docker's restart policy seen since the daemon started.
    pub restarts: u64,
    /// The last restart of a crash loop's streak, while it lasts: the loop
    /// is over `CRASH_LOOP_WINDOW` after it.
    pub crash_loop_last_restart: Option<Instant>,
}

/// Why an action on a service failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(
        "a container named `{name}` ({id}) exists and was not created by this dispenser instance; \
         rename or remove it, or rename the service"
    )]
    NameTaken { name: String, id: String },
    #[error("image {image} is not on this host and could not be pulled: {reason}")]
    ImageUnavailable { image: String, reason: String },
    #[error("{0}")]
    Engine(String),
    /// The Docker Engine did not answer: says nothing about the service or
    /// its image, so no back-off is kept for it.
    #[error("{0}")]
    Unreachable(String),
    #[error("the new version was rolled back: {reason}")]
    RolledBack { reason: String },
    #[error("the action stopped unexpectedly (panic); the actor restarts and rebuilds its state")]
    Crashed,
    /// The daemon is stopping: the action was not started, or its deploy
    /// was abandoned with the previous version serving.
    #[error("the daemon is stopping: {0}")]
    Stopping(String),
    /// A newer digest came during the soak; the previous version serves.
    #[error("superseded by {0} during the soak")]
    Superseded(String),
}

/// The actor of one service.
pub struct ServiceActor {
    service: Service,
    runtime: Runtime,
    state: State,
    container_id: Option<String>,
    /// The job's run in progress, if any.
    run: Option<run::ActiveRun>,
    /// Runs replaced by a newer one whose exit is still to be recorded.
    ended_runs: BTreeMap<u64, run::ActiveRun>,
    next_run: u64,
    /// The registry digest the container was deployed from (its label).
    /// Advances only when a deploy succeeded.
    digest: Option<String>,
    /// The last digest whose deploy failed, and when to try it again.
    failed_deploy: Option<FailedDeploy>,
    /// Digests rolled back as bad versions; the watcher's reports of them
    /// are ignored until an operator deploys.
    quarantined: BTreeSet<String>,
    /// Exits and restarts Docker reported.
    crashes: events::CrashWatch,
    /// The soak of the last deploy, while it lasts.
    soak: Option<soak::ActiveSoak>,
    /// Numbers the soaks, so the end of one that was superseded is ignored.
    soak_generation: u64,
}

/// A digest whose deploy failed.
#[derive(Debug, Clone)]
struct FailedDeploy {
    digest: String,
    attempts: u32,
    retry_at: Instant,
}

impl From<EngineError> for ServiceError {
    fn from(err: EngineError) -> Self {
        match err {
            EngineError::Unreachable(_) => ServiceError::Unreachable(err.to_string()),
            other => ServiceError::Engine(other.to_string()),
        }
    }
}

impl Runtime {
    /// Tells the proxy router where the service's container is now.
    fn report_endpoint(&self, service: &str, container: Option<&Container>) {
        let Some(endpoints) = &self.endpoints else {
            return;
        };
        // Docker's healthcheck: `starting` holds requests (then 503); an
        // unhealthy container keeps its requests: it is the only one there
        // is, Docker does not restart it, and it may still answer.
        let (ip, state) = match container {
            Some(container) if container.state == ContainerState::Running => {
                match container.addresses.get(&self.default_network.name) {
                    Some(_) if container.health == Some(Health::Starting) => {
                        (None, EndpointState::Starting)
                    }
                    Some(ip) => (Some(*ip), EndpointState::Ready),
                    None => (None, EndpointState::Down),
                }
            }
            _ => (None, EndpointState::Down),
        };
        endpoints.do_send(EndpointChanged {
            service: service.to_string(),
            ip,
            state,
            fallback: None,
        });
    }

    /// Tells the proxy router the service's container is being (re)started.
    fn report_starting(&self, service: &str) {
        if let Some(endpoints) = &self.endpoints {
            endpoints.do_send(EndpointChanged {
                service: service.to_string(),
                ip: None,
                state: EndpointState::Starting,
                fallback: None,
            });
        }
    }

    /// Reads the container of `service` and reports it to the proxy router.
    async fn refresh_endpoint(&self, service: &str) {
        if self.endpoints.is_none() {
            return;
        }
        match self.engine.inspect(service).await {
            // A container without Dispenser labels under the service's name
            // (an ixpantia/dispenser host's, before `dispenser takeover`)
            // is served, never changed: the switch-over drops no request.
            Ok(container) => self.report_endpoint(
                service,
                container
                    .as_ref()
                    .filter(|c| container::owned_by(c, &self.instance) || container::unlabelled(c)),
            ),
            // Docker is away, not the container: the proxy keeps the
            // address it has (containers run and answer without Docker).
            Err(err @ EngineError::Unreachable(_)) => {
                debug!(service = %service, error = %err, "cannot read the container's address; the route keeps its endpoint");
            }
            Err(err) => {
                warn!(service = %service, error = %err, "cannot read the container's address");
                self.report_endpoint(service, None);
            }
        }
    }
}

impl ServiceStatus {
    /// True while the service is in a crash loop.
    pub fn in_crash_loop(&self) -> bool {
        self.crash_loop_last_restart
            .is_some_and(|last| last.elapsed() <= CRASH_LOOP_WINDOW)
    }
}

impl StatusBoard {
    /// Every service's status, by name.
    pub fn snapshot(&self) -> BTreeMap<String, ServiceStatus> {
        self.0
            .read()
            .map(|board| board.clone())
            .unwrap_or_else(|poisoned| poisoned.into_inner().clone())
    }

    /// One service's status.
    pub fn get(&self, name: &str) -> Option<ServiceStatus> {
        self.snapshot().remove(name)
    }

    fn publish(&self, status: ServiceStatus) {
        let mut board = self
            .0
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        board.insert(status.name.clone(), status);
    }

    fn forget(&self, name: &str) {
        let mut board = self
            .0
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        board.remove(name);
    }
}

impl ServiceActor {
    pub fn new(service: Service, runtime: Runtime) -> Self {
        let actor = ServiceActor {
            service,
            runtime,
            state: State::Pending,
            container_id: None,
            run: None,
            ended_runs: BTreeMap::new(),
            next_run: 0,
            digest: None,
            failed_deploy: None,
            quarantined: BTreeSet::new(),
            crashes: events::CrashWatch::default(),
            soak: None,
            soak_generation: 0,
        };
        actor.publish();
        actor
    }

    fn set_state(&mut self, state: State) {
        self.state = state;
        self.publish();
    }

    fn publish(&self) {
        if self.state == State::Retired {
            self.runtime.status.forget(&self.service.name);
            return;
        }
        self.runtime.status.publish(ServiceStatus {
            name: self.service.name.clone(),
            state: self.state.clone(),
            container_id: self.container_id.clone(),
            image: self.service.container.image.original.clone(),
            spec_hash: self.service.spec_hash.clone(),
            restarts: self.crashes.total_restarts,
            crash_loop_last_restart: self.crashes.loop_last_restart(),
        });
    }

    /// Starts `action` if the state admits it, and marks the actor busy.
    fn begin(&mut self, action: Action) -> Result<(), ServiceError> {
        if self.runtime.stopping.is_cancelled()
            && !matches!(action, Action::Shutdown | Action::StopRun)
        {
            info!(service = %self.service.name, action = %action, "action refused: the daemon is stopping");
            return Err(ServiceError::Stopping(format!("{action} was not started")));
        }
        if let Err(err) = self.state.admits(action) {
            warn!(service = %self.service.name, error = %err, "action refused");
            return Err(err.into());
        }
        self.set_state(State::Busy(action));
        Ok(())
    }

    /// Records a failed deploy of `digest` and returns the back-off before
    /// it is tried again (doubling per attempt of the same digest).
    fn remember_failed_deploy(&mut self, digest: &str) -> Duration {
        let attempts = match &self.failed_deploy {
            Some(failed) if failed.digest == digest => failed.attempts + 1,
            _ => 1,
        };
        let factor = 2u32.saturating_pow(attempts - 1);
        let retry_in = DEPLOY_RETRY_FIRST
            .saturating_mul(factor)
            .min(DEPLOY_RETRY_MAX);
        self.failed_deploy = Some(FailedDeploy {
            digest: digest.to_string(),
            attempts,
            retry_at: Instant::now() + retry_in,
        });
        retry_in
    }

    /// After a failed deploy: learn which container (if any) now carries the
    /// service's name, and the digest it runs. When the old one still runs
    /// (the pull failed), the service is running, not failed: the failure is
    /// in the log and the back-off, and the status board does not show a
    /// service down that is up.
    fn refresh_container(&mut self, ctx: &mut Context<Self>) {
        let engine = self.runtime.engine.clone();
        let name = self.service.name.clone();
        let instance = self.runtime.instance.clone();
        let lookup = async move { engine.inspect(&name).await };
        ctx.wait(lookup.into_actor(self).map(move |found, actor, _| {
            let Ok(found) = found else {
                return;
            };
            let ours = found.filter(|container| container::owned_by(container, &instance));
            actor.container_id = ours.as_ref().map(|container| container.id.clone());
            // The digest it runs, so the watcher's next report of the digest
            // that failed is not taken for the one already running.
            actor.digest = ours
                .as_ref()
                .and_then(|container| container.labels.get(labels::IMAGE_DIGEST).cloned());
            let running = ours.is_some_and(|container| container.state == ContainerState::Running);
            if running {
                actor.set_state(State::Running);
            } else {
                actor.publish();
            }
        }));
    }

    /// Reads the digests this service keeps away from out of the deploy
    /// ledger, before any message is handled, so a restart of the daemon
    /// does not deploy a rolled-back digest again.
    fn restore_quarantine(&mut self, ctx: &mut Context<Self>) {
        let Some(ledger) = &self.runtime.deploys else {
            return;
        };
        let history = ledger.recent.send(RecentDeploys {
            service: self.service.name.clone(),
            limit: manual::QUARANTINE_HISTORY,
        });
        ctx.wait(history.into_actor(self).map(|history, actor, _| {
            match history {
                Ok(Ok(history)) => {
                    let quarantined = manual::quarantined_in(&history);
                    if !quarantined.is_empty() {
                        info!(service = %actor.service.name, digests = ?quarantined, "rolled-back digests stay quarantined");
                    }
                    actor.quarantined.extend(quarantined);
                }
                Ok(Err(err)) => {
                    warn!(service = %actor.service.name, error = %err, "cannot read the deploy history; no digest is quarantined");
                }
                Err(err) => {
                    warn!(service = %actor.service.name, error = %err, "the ledger is unavailable; no digest is quarantined");
                }
            }
        }));
    }

    /// Reads the container's state from Docker, for a fresh or restarted actor.
    fn rebuild(&mut self, ctx: &mut Context<Self>) {
        let engine = self.runtime.engine.clone();
        let name = self.service.name.clone();
        let instance = self.runtime.instance.clone();
        let lookup = async move { engine.inspect(&name).await };
        ctx.wait(lookup.into_actor(self).map(move |found, actor, _| {
            match found {
                Ok(Some(container)) if container::owned_by(&container, &instance) => {
                    actor
                        .runtime
                        .report_endpoint(&actor.service.name, Some(&container));
                    actor.container_id = Some(container.id.clone());
                    actor.crashes.baseline(&container);
                    actor.digest = container.labels.get(labels::IMAGE_DIGEST).cloned();
                    let state = match container.state {
                        ContainerState::Running | ContainerState::Restarting => State::Running,
                        ContainerState::Exited { code } => State::Exited { code },
                        ContainerState::Created
                            if actor.service.lifecycle.initialize == Initialize::OnTrigger =>
                        {
                            State::Waiting
                        }
                        _ => State::Pending,
                    };
                    actor.set_state(state);
                }
                Ok(_) => actor.set_state(State::Pending),
                Err(err) => {
                    warn!(service = %actor.service.name, error = %err, "cannot read the container's state");
                    actor.set_state(State::Pending);
                }
            }
        }));
    }
}

impl Actor for ServiceActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.rebuild(ctx);
        self.restore_quarantine(ctx);
    }
}

impl Supervised for ServiceActor {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        warn!(service = %self.service.name, "service actor restarting");
        self.container_id = None;
        self.set_state(State::Pending);
    }
}

impl Handler<Reconcile> for ServiceActor {
    type Result = AtomicResponse<Self, Result<Reconciled, ServiceError>>;

    fn handle(&mut self, msg: Reconcile, _ctx: &mut Self::Context) -> Self::Result {
        let Reconcile(service) = msg;
        // The same spec during a soak: the soak goes on (it is the deploy
        // of that spec's image in progress).
        if let Some(active) = &self.soak {
            if service.spec_hash == self.service.spec_hash && !self.runtime.stopping.is_cancelled()
            {
                self.service = service;
                let done = Reconciled {
                    container_id: active.container_id().to_string(),
                    change: Change::Adopted,
                    state: State::Running,
                    digest: active.digest().to_string(),
                };
                return AtomicResponse::new(Box::pin(fut::ready(Ok(done))));
            }
        }
        if let Err(err) = self.begin(Action::Reconcile) {
            return AtomicResponse::new(Box::pin(fut::ready(Err(err))));
        }
        self.service = service;
        if self.container_id.is_none() {
            self.runtime.report_starting(&self.service.name);
        }
        let job = Job::Reconcile {
            quarantined: self.quarantined.clone(),
        };
        AtomicResponse::new(Box::pin(self.pipeline(job).map(|outcome, actor, ctx| {
            if let Ok(done) = &outcome {
                if actor.is_unwatched_run(done) {
                    actor.adopt_run(done.container_id.clone(), ctx);
                }
            }
            outcome
        })))
    }
}

impl Handler<Retire> for ServiceActor {
    type Result = AtomicResponse<Self, Result<(), ServiceError>>;

    fn handle(&mut self, _msg: Retire, _ctx: &mut Self::Context) -> Self::Result {
        if let Err(err) = self.begin(Action::Retire) {
            return AtomicResponse::new(Box::pin(fut::ready(Err(err))));
        }
        let runtime = self.runtime.clone();
        let service = self.service.clone();
        let prior = self.soak.take();
        let work = async move {
            if let Some(prior) = prior {
                soak::supersede(&runtime, &service, prior, "the service's removal", false).await?;
            }
            pipeline::retire(runtime.engine.as_ref(), &runtime.instance, &service.name).await
        };
        AtomicResponse::new(Box::pin(self.guarded(work, "retire").map(
            |outcome, actor, _| match outcome {
                Ok(()) => {
                    actor.container_id = None;
                    actor.runtime.report_endpoint(&actor.service.name, None);
                    actor.set_state(State::Retired);
                    Ok(())
                }
                Err(ServiceError::Crashed) => Err(ServiceError::Crashed),
                Err(err) => {
                    error!(service = %actor.service.name, error = %err, "retire failed");
                    actor.set_state(State::Failed {
                        reason: err.to_string(),
                    });
                    Err(err)
                }
            },
        )))
    }
}

impl Handler<Shutdown> for ServiceActor {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, msg: Shutdown, _ctx: &mut Self::Context) -> Self::Result {
        // A stop does not wait for a soak: it is abandoned at once.
        let prior = self.soak.take();
        let stop = msg.stop_container
            && self.container_id.is_some()
            && self.begin(Action::Shutdown).is_ok();
        if prior.is_none() && !stop {
            return AtomicResponse::new(Box::pin(fut::ready(())));
        }
        let runtime = self.runtime.clone();
        let service = self.service.clone();
        let grace = self.service.container.stop_grace();
        let work = async move {
            if let Some(prior) = prior {
                soak::abandon(&runtime, &service, prior).await;
            }
            if !stop {
                return Ok(None);
            }
            // After an abandoned soak the proven container has the name again.
            let serving = runtime
                .engine
                .inspect(&service.name)
                .await?
                .filter(|found| container::owned_by(found, &runtime.instance));
            match serving {
                Some(found) => runtime
                    .engine
                    .stop(&found.id, grace)
                    .await
                    .map(|()| Some(found.id))
                    .map_err(ServiceError::from),
                None => Ok(None),
            }
        };
        AtomicResponse::new(Box::pin(self.guarded(work, "shutdown").map(
            move |outcome, actor, ctx| match outcome {
                Ok(Some(id)) => {
                    info!(service = %actor.service.name, container = %id, "stopped");
                    actor.container_id = Some(id);
                    actor.runtime.report_endpoint(&actor.service.name, None);
                    actor.set_state(State::Stopped);
                }
                Ok(None) => actor.refresh_container(ctx),
                Err(ServiceError::Crashed) => {}
                Err(err) => {
                    error!(service = %actor.service.name, error = %err, "stop failed");
                    actor.set_state(State::Failed {
                        reason: err.to_string(),
                    });
                }
            },
        )))
    }
}

impl Handler<ImageUpdated> for ServiceActor {
    type Result = AtomicResponse<Self, Result<DeployOutcome, ServiceError>>;

    fn handle(&mut self, msg: ImageUpdated, _ctx: &mut Self::Context) -> Self::Result {
        let ImageUpdated { digest, tag } = msg;
        let watched = self.service.lifecycle.watch && self.service.container.image.digest.is_none();
        if !watched || self.digest.as_deref() == Some(digest.as_str()) {
            return AtomicResponse::new(Box::pin(fut::ready(Ok(DeployOutcome::Current))));
        }
        if self.quarantined.contains(&digest) {
            return AtomicResponse::new(Box::pin(fut::ready(Ok(DeployOutcome::Quarantined))));
        }
        if let Some(failed) = &self.failed_deploy {
            let now = Instant::now();
            if failed.digest == digest && now < failed.retry_at {
                let retry_in = failed.retry_at - now;
                return AtomicResponse::new(Box::pin(fut::ready(Ok(DeployOutcome::Deferred {
                    retry_in,
                }))));
            }
        }
        if !self.runtime.docker.is_up() {
            // `DockerWatch` logged the outage once; the watcher reports the
            // digest again every round, so it is deployed once Docker is back.
            debug!(service = %self.service.name, digest = %digest, "new image waits for the Docker Engine");
            return AtomicResponse::new(Box::pin(fut::ready(Ok(DeployOutcome::DockerAway))));
        }
        if let Err(err) = self.begin(Action::Deploy) {
            return AtomicResponse::new(Box::pin(fut::ready(Err(err))));
        }
        info!(service = %self.service.name, image = %self.service.container.image, tag = %tag.as_deref().unwrap_or(""), digest = %digest, "new image in the registry");
        AtomicResponse::new(Box::pin(
            self.pipeline(Job::NewDigest { digest, tag })
                .map(|outcome, _, _| outcome.map(DeployOutcome::Deployed)),
        ))
    }
}

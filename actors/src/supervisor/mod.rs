//! `Supervisor`: the root actor. It owns the current plan and one
//! `ServiceActor` per service, and applies a new plan as a diff: start-up is
//! `diff(nothing, plan)`, reload is `diff(old, new)`, one code path.
//!
//! Protocol:
//! - `Apply(Plan)` -> `ApplyReport`: networks, then retire removed services (reverse
//!   dependency order) and orphans, then reconcile added and changed services
//!   (each after its dependencies meet their conditions), then remove networks
//!   no longer declared. Applies never overlap.
//! - `Shutdown` -> `()`: tells every service the daemon stops, in reverse
//!   dependency order, the services of one dependency level at once.
//! - `GetStatus` -> `Vec<ServiceStatus>`.
//! - `DeployNow { service }`, `RollbackNow { service }` -> `Result<String, ControlError>`:
//!   operator requests, forwarded to the service's actor.
//! - `TakeoverNow { service }` -> `Result<String, ControlError>`: `dispenser takeover`,
//!   forwarded to the service's actor as `Takeover`.
//! - `Subscribe(Recipient<PlanApplied>)` -> `()` (both messages are the
//!   plan's, `plan/applied.rs`): the registry watcher, cron ticker and proxy
//!   router learn each applied plan this way, and only send messages back.
//! - `CronFired` -> `()`: forwarded to the service's actor (unknown services
//!   are logged: the plan changed between the tick and its delivery).
//! - `NewDigest { image, digest }` -> `()`: the registry watcher's report;
//!   forwarded as `ImageUpdated` to every service that watches that image.
//! - `DockerBack { away_for }` -> `()`: the Docker Engine answers again: every
//!   service of the plan (the one kept while Docker was away, if any) is
//!   reconciled, which adopts running containers untouched and rebuilds
//!   each actor's state and endpoint from Docker.
//! - `DockerEvent(event)` -> `()`: from `docker_events::DockerEvents`;
//!   forwarded as `ContainerChanged` to the service named by the container's
//!   `dispenser.service` label (others are ignored).
//! - `DockerReconnected` -> `()`: every service gets `Resync`.
//!
//! While `Reachability` says the engine is away, `Apply` changes nothing: it
//! keeps the plan (the latest wins) and answers `deferred`; `DockerBack`
//! applies it.

mod dependency;
#[cfg(test)]
mod deploy_tests;
pub mod diff;
#[cfg(test)]
mod event_tests;
#[cfg(test)]
mod takeover_tests;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use actix::prelude::*;
use futures_util::future::{join_all, BoxFuture, FutureExt, Shared};
use tracing::{debug, error, info, warn};

use crate::cron::CronFired;
use crate::docker_events::{DockerEvent, DockerReconnected};
use crate::docker_watch::DockerBack;
use crate::engine::reachability::Reachability;
use crate::engine::{labels, Engine};
use crate::ledger::{Ledger, RecentDeploys, RecordDeploy, RecordRun};
use crate::plan::{ImageRef, Plan, PlanApplied, Subscribe};
use crate::proxy::router::EndpointChanged;
use crate::proxy::table::InFlightBoard;
use crate::registry::{DigestSource, DockerConfig};
use crate::service::{
    self, ContainerChanged, DeployLedger, ImageUpdated, NewestDigest, Reconcile, Reconciled,
    Resync, Retire, Runtime, ServiceActor, ServiceError, ServiceStatus, StatusBoard,
};
pub use dependency::DependencyError;
pub use diff::PlanDiff;
use tokio_util::sync::CancellationToken;

/// Makes the host match `plan`.
#[derive(Debug, Message)]
#[rtype(result = "ApplyReport")]
pub struct Apply(pub Plan);

/// The daemon stops: services are told in reverse dependency order, those of
/// one level (see `shutdown_levels`) at once.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Shutdown;

/// The status of every service.
#[derive(Debug, Message)]
#[rtype(result = "Vec<ServiceStatus>")]
pub struct GetStatus;

/// An operator asks to redeploy a service now (`dispenser deploy SERVICE`).
#[derive(Debug, Message)]
#[rtype(result = "Result<String, ControlError>")]
pub struct DeployNow {
    pub service: String,
}

/// An operator asks to put back a service's previous good version
/// (`dispenser rollback SERVICE`).
#[derive(Debug, Message)]
#[rtype(result = "Result<String, ControlError>")]
pub struct RollbackNow {
    pub service: String,
}

/// An operator asks to replace the container holding a service's name when
/// Dispenser did not create it (`dispenser takeover`).
#[derive(Debug, Message)]
#[rtype(result = "Result<String, ControlError>")]
pub struct TakeoverNow {
    pub service: String,
}

/// Why an operator's request was not carried out: typed, so that the admin
/// API's answer (its HTTP status) never depends on a message's text.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ControlError {
    #[error("no service named `{0}`")]
    UnknownService(String),
    /// The service's actor refused or failed the action.
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// The service's actor did not answer (it is restarting).
    #[error("service actor unavailable: {0}")]
    Unavailable(String),
}

/// The registry has `digest` for the tag of `image` (sent every poll round).
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct NewDigest {
    pub image: ImageRef,
    pub digest: String,
    /// The semver range the digest answers (`[dispenser] track`); `None`
    /// for the digest of the image's own tag.
    pub track: Option<String>,
    /// The tag `digest` is of, when `track` is set.
    pub tag: Option<String>,
}

/// What one `Apply` did, service by service.
#[derive(Debug, Clone, Default)]
pub struct ApplyReport {
    pub diff: PlanDiff,
    /// Services reconciled, with what happened to each.
    pub reconciled: BTreeMap<String, Reconciled>,
    /// Services retired (removed from the plan or orphans found in Docker).
    pub retired: BTreeSet<String>,
    /// Failures, by service (or `network <name>`), in words.
    pub failures: BTreeMap<String, String>,
    /// The Docker Engine was unreachable: nothing was done, the plan is kept
    /// and applied when the engine answers again.
    pub deferred: bool,
}

/// The root actor.
pub struct Supervisor {
    engine: Arc<dyn Engine>,
    status: StatusBoard,
    plan: Option<Plan>,
    services: BTreeMap<String, Addr<ServiceActor>>,
    subscribers: Vec<Recipient<PlanApplied>>,
    ledger: Option<Recipient<RecordRun>>,
    deploy_ledger: Option<DeployLedger>,
    endpoints: Option<Recipient<EndpointChanged>>,
    in_flight: Option<InFlightBoard>,
    credentials: Option<DockerConfig>,
    registry: Option<Arc<dyn DigestSource>>,
    /// Cancelled when the daemon begins to stop (`Runtime::stopping`).
    stopping: CancellationToken,
    /// Whether the Docker Engine answers (written by `DockerWatch`).
    docker: Reachability,
    /// A plan that arrived while Docker was unreachable; applied on `DockerBack`.
    pending: Option<Plan>,
    /// Per service: the newest digest reported for its image, and whether
    /// an `ImageUpdated` is on its way (see `NewDigest`).
    digests: BTreeMap<String, DigestDelivery>,
}

/// How new digests reach one service: one `ImageUpdated` at a time, and
/// only the newest of those reported meanwhile (coalesced), so a service
/// whose deploy is in its gate deploys the latest digest next, not each one
/// in turn. `newest` is also what its soak watches (`NewestDigest`).
struct DigestDelivery {
    newest: tokio::sync::watch::Sender<Option<String>>,
    /// The digest waiting to be sent (with its tracked tag), reported while
    /// one was on its way.
    waiting: Option<(String, Option<String>)>,
    on_its_way: bool,
}

type Completion = Shared<BoxFuture<'static, Result<(), String>>>;

impl ApplyReport {
    /// True when every step succeeded.
    pub fn is_clean(&self) -> bool {
        self.failures.is_empty() && !self.deferred
    }
}

impl Supervisor {
    pub fn new(engine: Arc<dyn Engine>) -> Self {
        Supervisor {
            engine,
            status: StatusBoard::default(),
            plan: None,
            services: BTreeMap::new(),
            subscribers: Vec::new(),
            ledger: None,
            deploy_ledger: None,
            endpoints: None,
            in_flight: None,
            credentials: None,
            registry: None,
            stopping: CancellationToken::new(),
            docker: Reachability::default(),
            pending: None,
            digests: BTreeMap::new(),
        }
    }

    /// Applies wait while `docker` says the engine is away; services skip
    /// deploys meanwhile.
    pub fn with_reachability(mut self, docker: Reachability) -> Self {
        self.docker = docker;
        self
    }

    /// Services record their deploys in, and read rollbacks from, the ledger.
    pub fn with_deploy_ledger(
        mut self,
        record: Recipient<RecordDeploy>,
        recent: Recipient<RecentDeploys>,
    ) -> Self {
        self.deploy_ledger = Some(DeployLedger { record, recent });
        self
    }

    /// Runs and deploys are recorded in `ledger`, and rollbacks and the
    /// quarantine read their history from it.
    pub fn with_history(self, ledger: &Addr<Ledger>) -> Self {
        self.with_ledger(ledger.clone().recipient())
            .with_deploy_ledger(ledger.clone().recipient(), ledger.clone().recipient())
    }

    /// Deploys drain old containers by the proxy's in-flight counts.
    pub fn with_in_flight(mut self, board: InFlightBoard) -> Self {
        self.in_flight = Some(board);
        self
    }

    /// Sends the services' run records to `ledger`.
    pub fn with_ledger(mut self, ledger: Recipient<RecordRun>) -> Self {
        self.ledger = Some(ledger);
        self
    }

    /// Service actors report their containers' endpoints to `endpoints` (the
    /// proxy router). Only service actors started after this call do.
    pub fn with_endpoints(mut self, endpoints: Recipient<EndpointChanged>) -> Self {
        self.endpoints = Some(endpoints);
        self
    }

    /// A watched service's first container starts on the digest `registry`
    /// gives for its tag (the watcher's client).
    pub fn with_registry(mut self, registry: Arc<dyn DigestSource>) -> Self {
        self.registry = Some(registry);
        self
    }

    /// The token that tells the services the daemon is stopping. The daemon
    /// cancels it before it sends `Shutdown`, since that message may wait
    /// behind an `Apply` whose gates only the token cuts short.
    pub fn stopping(&self) -> CancellationToken {
        self.stopping.clone()
    }

    /// Pulls use the credentials of this Docker config.
    pub fn with_credentials(mut self, credentials: Option<DockerConfig>) -> Self {
        self.credentials = credentials;
        self
    }

    /// The status board the service actors publish to.
    pub fn status_board(&self) -> StatusBoard {
        self.status.clone()
    }

    fn runtime(&self, plan: &Plan) -> Runtime {
        Runtime {
            engine: self.engine.clone(),
            instance: plan.settings.instance.clone(),
            default_network: plan.settings.default_network.clone(),
            status: self.status.clone(),
            ledger: self.ledger.clone(),
            endpoints: self.endpoints.clone(),
            credentials: self.credentials.clone(),
            deploys: self.deploy_ledger.clone(),
            in_flight: self.in_flight.clone(),
            deploy: plan.settings.deploy,
            registry: self.registry.clone(),
            stopping: self.stopping.clone(),
            newest_digest: NewestDigest::default(),
            docker: self.docker.clone(),
        }
    }

    /// Applies `plan`: the diff from the plan in force, or, with `resync`,
    /// every service of `plan` (after an outage of the Docker Engine).
    fn apply_plan(&mut self, plan: Plan, resync: bool) -> ResponseActFuture<Self, ApplyReport> {
        let diff = PlanDiff::between(self.plan.as_ref(), &plan);
        info!(
            added = diff.added.len(),
            changed = diff.changed.len(),
            removed = diff.removed.len(),
            unchanged = diff.unchanged.len(),
            resync,
            "applying plan"
        );
        let runtime = self.runtime(&plan);
        // Actors for new services start now; they rebuild their state from Docker.
        for name in &diff.added {
            let service = plan.services[name].clone();
            let mut runtime = runtime.clone();
            let (newest, reading) = NewestDigest::channel();
            runtime.newest_digest = reading;
            self.digests.insert(
                name.clone(),
                DigestDelivery {
                    newest,
                    waiting: None,
                    on_its_way: false,
                },
            );
            let addr = actix::Supervisor::start(move |_| ServiceActor::new(service, runtime));
            self.services.insert(name.clone(), addr);
        }
        let retiring: Vec<(String, Addr<ServiceActor>)> = self
            .plan
            .as_ref()
            .map(|old| {
                let mut order = old.start_order();
                order.reverse();
                order
                    .into_iter()
                    .filter(|name| diff.removed.contains(*name))
                    .filter_map(|name| {
                        self.services
                            .get(name)
                            .map(|a| (name.to_string(), a.clone()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let to_reconcile = if resync {
            plan.services.keys().cloned().collect()
        } else {
            diff.to_reconcile()
        };
        let reconciling: Vec<(String, Addr<ServiceActor>)> = plan
            .start_order()
            .into_iter()
            .filter(|name| to_reconcile.contains(*name))
            .filter_map(|name| {
                self.services
                    .get(name)
                    .map(|a| (name.to_string(), a.clone()))
            })
            .collect();
        let engine = self.engine.clone();
        let work = apply(engine, plan.clone(), diff, retiring, reconciling);
        Box::pin(work.into_actor(self).map(move |report, actor, _| {
            for name in &report.retired {
                actor.services.remove(name);
                actor.digests.remove(name);
            }
            let applied = Arc::new(plan.clone());
            actor.plan = Some(plan);
            for subscriber in &actor.subscribers {
                subscriber.do_send(PlanApplied(applied.clone()));
            }
            report
        }))
    }
}

impl Actor for Supervisor {
    type Context = Context<Self>;
}

impl Handler<Apply> for Supervisor {
    type Result = AtomicResponse<Self, ApplyReport>;

    fn handle(&mut self, msg: Apply, _ctx: &mut Self::Context) -> Self::Result {
        let Apply(plan) = msg;
        if !self.docker.is_up() {
            info!("docker is away: the plan is kept and applied when it answers again");
            self.pending = Some(plan);
            let report = ApplyReport {
                deferred: true,
                ..ApplyReport::default()
            };
            return AtomicResponse::new(Box::pin(fut::ready(report)));
        }
        // A plan given while Docker answers replaces one kept during an outage.
        self.pending = None;
        AtomicResponse::new(self.apply_plan(plan, false))
    }
}

impl Handler<Shutdown> for Supervisor {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, _msg: Shutdown, _ctx: &mut Self::Context) -> Self::Result {
        self.stopping.cancel();
        let stop_container = self
            .plan
            .as_ref()
            .map(|plan| plan.settings.stop_on_shutdown)
            .unwrap_or(false);
        // Dependents stop before what they depend on; services of one level
        // stop together, so many slow stops fit in systemd's stop timeout.
        let levels: Vec<Vec<Addr<ServiceActor>>> = self
            .plan
            .as_ref()
            .map(|plan| {
                shutdown_levels(plan)
                    .into_iter()
                    .map(|level| {
                        level
                            .into_iter()
                            .filter_map(|name| self.services.get(name).cloned())
                            .collect()
                    })
                    .collect()
            })
            .unwrap_or_default();
        let work = async move {
            for level in levels {
                join_all(
                    level
                        .iter()
                        .map(|addr| addr.send(service::Shutdown { stop_container })),
                )
                .await;
            }
        };
        AtomicResponse::new(Box::pin(work.into_actor(self)))
    }
}

impl Handler<Subscribe> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: Subscribe, _ctx: &mut Self::Context) -> Self::Result {
        if let Some(plan) = &self.plan {
            msg.0.do_send(PlanApplied(Arc::new(plan.clone())));
        }
        self.subscribers.push(msg.0);
    }
}

impl Handler<GetStatus> for Supervisor {
    type Result = Vec<ServiceStatus>;

    fn handle(&mut self, _msg: GetStatus, _ctx: &mut Self::Context) -> Self::Result {
        self.status.snapshot().into_values().collect()
    }
}

impl Handler<DeployNow> for Supervisor {
    type Result = ResponseFuture<Result<String, ControlError>>;

    fn handle(&mut self, msg: DeployNow, _ctx: &mut Self::Context) -> Self::Result {
        let addr = self.services.get(&msg.service).cloned();
        Box::pin(async move {
            let addr = addr.ok_or(ControlError::UnknownService(msg.service))?;
            match addr.send(service::ManualDeploy).await {
                Ok(result) => result.map_err(ControlError::Service),
                Err(err) => Err(ControlError::Unavailable(err.to_string())),
            }
        })
    }
}

impl Handler<RollbackNow> for Supervisor {
    type Result = ResponseFuture<Result<String, ControlError>>;

    fn handle(&mut self, msg: RollbackNow, _ctx: &mut Self::Context) -> Self::Result {
        let addr = self.services.get(&msg.service).cloned();
        Box::pin(async move {
            let addr = addr.ok_or(ControlError::UnknownService(msg.service))?;
            match addr.send(service::ManualRollback).await {
                Ok(result) => result.map_err(ControlError::Service),
                Err(err) => Err(ControlError::Unavailable(err.to_string())),
            }
        })
    }
}

impl Handler<TakeoverNow> for Supervisor {
    type Result = ResponseFuture<Result<String, ControlError>>;

    fn handle(&mut self, msg: TakeoverNow, _ctx: &mut Self::Context) -> Self::Result {
        let addr = self.services.get(&msg.service).cloned();
        Box::pin(async move {
            let addr = addr.ok_or(ControlError::UnknownService(msg.service))?;
            match addr.send(service::Takeover).await {
                Ok(result) => result.map_err(ControlError::Service),
                Err(err) => Err(ControlError::Unavailable(err.to_string())),
            }
        })
    }
}

impl Handler<CronFired> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: CronFired, _ctx: &mut Self::Context) -> Self::Result {
        match self.services.get(&msg.service) {
            Some(addr) => addr.do_send(msg),
            None => {
                warn!(service = %msg.service, "scheduled run for a service no longer running; ignored")
            }
        }
    }
}

impl Handler<NewDigest> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: NewDigest, ctx: &mut Self::Context) -> Self::Result {
        let Some(plan) = &self.plan else {
            return;
        };
        let wanted = msg.image.canonical();
        let watching: Vec<String> = plan
            .services
            .iter()
            .filter(|(_, service)| {
                let image = &service.container.image;
                service.lifecycle.watch
                    && image.digest.is_none()
                    && image.canonical() == wanted
                    && service.lifecycle.track == msg.track
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in watching {
            if let Some(delivery) = self.digests.get_mut(&name) {
                delivery.newest.send_replace(Some(msg.digest.clone()));
                delivery.waiting = Some((msg.digest.clone(), msg.tag.clone()));
            }
            self.deliver_digest(name, ctx);
        }
    }
}

impl Supervisor {
    /// Sends the service's waiting digest unless one is on its way; when
    /// that one is answered, sends the newest that came meanwhile.
    fn deliver_digest(&mut self, name: String, ctx: &mut Context<Self>) {
        let (Some(delivery), Some(addr)) = (self.digests.get_mut(&name), self.services.get(&name))
        else {
            return;
        };
        if delivery.on_its_way {
            return;
        }
        let Some((digest, tag)) = delivery.waiting.take() else {
            return;
        };
        delivery.on_its_way = true;
        // The actor logs what it does with it; the answer is not needed here.
        let sent = addr.send(ImageUpdated { digest, tag });
        ctx.spawn(sent.into_actor(self).map(move |_, actor, ctx| {
            if let Some(delivery) = actor.digests.get_mut(&name) {
                delivery.on_its_way = false;
            }
            actor.deliver_digest(name, ctx);
        }));
    }
}

impl Handler<DockerBack> for Supervisor {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, msg: DockerBack, _ctx: &mut Self::Context) -> Self::Result {
        let kept = self.pending.take();
        let deferred = kept.is_some();
        let Some(plan) = kept.or_else(|| self.plan.clone()) else {
            return AtomicResponse::new(Box::pin(fut::ready(())));
        };
        let away_secs = msg.away_for.as_secs();
        let work = self.apply_plan(plan, true).map(move |report, _, _| {
            if report.is_clean() {
                info!(
                    away_secs,
                    deferred,
                    reconciled = report.reconciled.len(),
                    retired = report.retired.len(),
                    "state rebuilt from Docker after its outage"
                );
            } else {
                for (what, reason) in &report.failures {
                    error!(service = %what, error = %reason, "not applied after the Docker outage");
                }
            }
        });
        AtomicResponse::new(Box::pin(work))
    }
}

impl Handler<DockerEvent> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: DockerEvent, _ctx: &mut Self::Context) -> Self::Result {
        let DockerEvent(event) = msg;
        let addr = event
            .service
            .as_ref()
            .and_then(|service| self.services.get(service));
        match addr {
            Some(addr) => addr.do_send(ContainerChanged(event)),
            None => {
                debug!(container = %event.name, kind = ?event.kind, "docker event about no current service; ignored")
            }
        }
    }
}

impl Handler<DockerReconnected> for Supervisor {
    type Result = ();

    fn handle(&mut self, _msg: DockerReconnected, _ctx: &mut Self::Context) -> Self::Result {
        info!(
            services = self.services.len(),
            "reading every service's container again after the event stream was down"
        );
        for addr in self.services.values() {
            addr.do_send(Resync);
        }
    }
}

/// The plan's services grouped for shutdown: each group holds the services
/// whose longest chain of dependencies has the same length, deepest first,
/// so every service comes after all that depend on it.
pub fn shutdown_levels(plan: &Plan) -> Vec<Vec<&str>> {
    let mut depth: BTreeMap<&str, usize> = BTreeMap::new();
    for name in plan.start_order() {
        let level = plan.services[name]
            .depends_on
            .keys()
            .filter_map(|dep| depth.get(dep.as_str()))
            .map(|dep_level| dep_level + 1)
            .max()
            .unwrap_or(0);
        depth.insert(name, level);
    }
    let deepest = depth.values().copied().max().unwrap_or(0);
    let mut levels: Vec<Vec<&str>> = vec![Vec::new(); deepest + 1];
    for (name, level) in depth {
        levels[deepest - level].push(name);
    }
    levels.retain(|level| !level.is_empty());
    levels
}

/// The body of `Apply`, awaited with the supervisor's mailbox held.
async fn apply(
    engine: Arc<dyn Engine>,
    plan: Plan,
    diff: PlanDiff,
    retiring: Vec<(String, Addr<ServiceActor>)>,
    reconciling: Vec<(String, Addr<ServiceActor>)>,
) -> ApplyReport {
    let mut report = ApplyReport {
        diff,
        ..ApplyReport::default()
    };
    let instance = plan.settings.instance.clone();
    let network_labels = BTreeMap::from([
        (labels::MANAGED.to_string(), "true".to_string()),
        (labels::INSTANCE.to_string(), instance.clone()),
    ]);

    if let Err(err) = engine
        .ensure_default_network(&plan.settings.default_network, &network_labels)
        .await
    {
        let key = format!("network {}", plan.settings.default_network.name);
        error!(network = %plan.settings.default_network.name, error = %err, "cannot create the default network");
        report.failures.insert(key, err.to_string());
    }
    for network in plan.networks.values() {
        if let Err(err) = engine.ensure_network(network, &network_labels).await {
            error!(network = %network.name, error = %err, "cannot create network");
            report
                .failures
                .insert(format!("network {}", network.name), err.to_string());
        }
    }

    for (name, addr) in retiring {
        match addr.send(Retire).await {
            Ok(Ok(())) => {
                info!(service = %name, "retired");
                report.retired.insert(name);
            }
            Ok(Err(err)) => {
                report.failures.insert(name, err.to_string());
            }
            Err(err) => {
                report.failures.insert(name, err.to_string());
            }
        }
    }
    retire_orphans(engine.as_ref(), &plan, &mut report).await;

    let completions = reconcile_in_order(engine.clone(), &plan, reconciling);
    for (name, outcome) in join_all(
        completions
            .into_iter()
            .map(|(name, done)| async move { (name, done.await) }),
    )
    .await
    {
        match outcome {
            Ok(reconciled) => {
                report.reconciled.insert(name, reconciled);
            }
            Err(reason) => {
                report.failures.insert(name, reason);
            }
        }
    }

    remove_undeclared_networks(engine.as_ref(), &plan).await;
    report
}

/// Starts every reconcile at once; each first awaits its dependencies'
/// reconciles (when they are part of this apply) and then their conditions.
fn reconcile_in_order(
    engine: Arc<dyn Engine>,
    plan: &Plan,
    reconciling: Vec<(String, Addr<ServiceActor>)>,
) -> Vec<(String, BoxFuture<'static, Result<Reconciled, String>>)> {
    let timeout = plan.settings.dependency_timeout;
    let mut done: BTreeMap<String, Completion> = BTreeMap::new();
    let mut futures = Vec::new();
    for (name, addr) in reconciling {
        let service = plan.services[&name].clone();
        let waits: Vec<(String, crate::plan::DependsOn, Option<Completion>)> = service
            .depends_on
            .iter()
            .map(|(dep, condition)| (dep.clone(), *condition, done.get(dep).cloned()))
            .collect();
        let engine = engine.clone();
        let service_name = name.clone();
        let result = async move {
            for (dep, condition, completion) in waits {
                if let Some(completion) = completion {
                    completion
                        .await
                        .map_err(|_| format!("dependency `{dep}` failed"))?;
                }
                dependency::wait_for(engine.as_ref(), &dep, condition, timeout)
                    .await
                    .map_err(|err| err.to_string())?;
            }
            match addr.send(Reconcile(service)).await {
                Ok(Ok(reconciled)) => Ok(reconciled),
                Ok(Err(err)) => Err(err.to_string()),
                Err(err) => Err(format!("service actor unavailable: {err}")),
            }
        }
        .map(move |result| {
            if let Err(reason) = &result {
                error!(service = %service_name, error = %reason, "service not started");
            }
            result
        })
        .boxed()
        .shared();
        let completion: Completion = result.clone().map(|r| r.map(|_| ())).boxed().shared();
        done.insert(name.clone(), completion);
        futures.push((name, result.boxed()));
    }
    futures
}

/// Removes networks this instance created that the plan no longer declares
/// (also those removed from the files while Dispenser was not running).
async fn remove_undeclared_networks(engine: &dyn Engine, plan: &Plan) {
    let ours = match engine.list_managed_networks(&plan.settings.instance).await {
        Ok(ours) => ours,
        Err(err) => {
            warn!(error = %err, "cannot list networks");
            return;
        }
    };
    for name in ours {
        if name == plan.settings.default_network.name || plan.networks.contains_key(&name) {
            continue;
        }
        match engine.remove_network(&name).await {
            Ok(()) => info!(network = %name, "network removed"),
            Err(err) => warn!(network = %name, error = %err, "cannot remove network"),
        }
    }
}

/// Removes managed containers of this instance whose service is not in the
/// plan: services deleted while Dispenser was not running.
async fn retire_orphans(engine: &dyn Engine, plan: &Plan, report: &mut ApplyReport) {
    let containers = match engine.list_managed(&plan.settings.instance).await {
        Ok(containers) => containers,
        Err(err) => {
            report.failures.insert("orphans".into(), err.to_string());
            return;
        }
    };
    for container in containers {
        let Some(service) = container.labels.get(labels::SERVICE) else {
            continue;
        };
        if plan.services.contains_key(service) {
            continue;
        }
        warn!(service = %service, container = %container.name, "removing container of a service no longer declared");
        let stopped = engine.stop(&container.id, service::STOP_GRACE).await;
        let removed = engine.remove(&container.id).await;
        match stopped.and(removed) {
            Ok(()) => {
                report.retired.insert(service.clone());
            }
            Err(err) => {
                report.failures.insert(service.clone(), err.to_string());
            }
        }
    }
}

//! The one deploy pipeline. Every trigger that ends in replacing a
//! service's container (a reconcile or reload, a new registry digest, an
//! operator's deploy or rollback, a scheduled restart, a takeover) runs the
//! same three steps, and only the first one differs:
//!
//! 1. *acquire*: converge after an interrupted deploy, read the container
//!    under the service's name, decide what is to be replaced (`target`),
//!    and get the image onto the host (`image.rs`);
//! 2. *replace*: through the health gate (`rollout.rs`) when the old
//!    container serves, else stop, remove and create (`install`);
//! 3. *settle*, in the actor (`settle.rs`): its state, quarantine and
//!    back-off from the outcome.
//!
//! Every deploy the pipeline makes is recorded and announced by `record`,
//! the one place that sees every deploy record (ledger, events, metrics).

use std::collections::BTreeSet;
use std::fmt;

use chrono::{DateTime, Utc};
use tracing::{info, warn};

use super::container::{
    digest_of, gated, name_taken, owned_by, registry_digest, short, unlabelled, TAKEOVER_SUFFIX,
};
use super::rollout::{self, RolloutError, Swapped};
use super::{converge, image, manual, NewestDigest, Runtime, ServiceError, State, STOP_GRACE};
use crate::engine::{labels, Container, ContainerState, CreateRequest, Engine, Image};
use crate::events::Event;
use crate::ledger::{DeployOutcomeKind, DeployRecord, DeployTrigger, RecentDeploys, RecordDeploy};
use crate::plan::{Initialize, PullPolicy, RestartPolicy, Service};

/// What asked for the pass, with what that trigger brings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Job {
    /// Make the container match the spec (start-up, reload, Docker back); a
    /// watched service without a container starts on the registry's
    /// current digest unless it is in `quarantined`.
    Reconcile { quarantined: BTreeSet<String> },
    /// The registry has this digest for the service's tag.
    NewDigest(String),
    /// `dispenser deploy`: pull the tag whatever the pull policy, replace now.
    Manual,
    /// `dispenser rollback`: the version `current` replaced, from the ledger.
    Rollback { current: Option<String> },
    /// The schedule fired: a job's fresh run, or a long-running service's restart.
    Cron,
    /// `dispenser takeover`: replace a container Dispenser did not create.
    Takeover,
}

/// What a pass did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reconciled {
    pub container_id: String,
    pub change: Change,
    pub state: State,
    /// The registry digest the container runs (its `dispenser.image-digest`).
    pub digest: String,
}

/// How the container was brought in line with the spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The existing container matched (or is this instance's already, for a
    /// takeover) and was left as it was.
    Adopted,
    /// The existing container matched but was stopped, and was started.
    Started,
    /// There was no container; one was created.
    Created,
    /// The container was replaced.
    Recreated,
    /// A container without Dispenser labels was replaced by a managed one.
    TakenOver { previous_id: String },
    /// A takeover found no container under the service's name: nothing was
    /// done, and `container_id` is empty.
    Absent,
}

/// A pass's outcome: what is in place, and the soak still to watch when
/// the new container took traffic unproven.
#[derive(Debug)]
pub struct Ran {
    pub reconciled: Reconciled,
    pub soak: Option<Soaking>,
}

/// A deploy that swapped in a container which is not proven yet.
#[derive(Debug)]
pub struct Soaking {
    pub soak: Box<rollout::Soak>,
    pub deploying: Deploying,
}

/// A deploy in progress, as its record will say.
#[derive(Debug, Clone)]
pub struct Deploying {
    pub service: String,
    pub trigger: DeployTrigger,
    pub old_digest: Option<String>,
    pub new_digest: Option<String>,
    pub started_at: DateTime<Utc>,
    /// The image the local tag named before this deploy moved it: a deploy
    /// that does not succeed points the tag back at it.
    pub restore_tag: Option<Image>,
}

/// Deploys of a service read to find the previous good version.
const ROLLBACK_HISTORY: usize = 100;

/// What the replace step works on.
enum Target {
    /// Nothing to replace: the pass is done.
    Settled(Reconciled),
    /// Replace this container (or create the first one).
    Replace(Option<Container>),
}

/// The image the replace creates the container from.
struct Acquired {
    digest: String,
    restore_tag: Option<Image>,
}

impl Job {
    /// What the ledger calls it.
    pub fn trigger(&self) -> DeployTrigger {
        match self {
            Job::Reconcile { .. } => DeployTrigger::Reload,
            Job::NewDigest(_) => DeployTrigger::NewDigest,
            Job::Manual => DeployTrigger::Manual,
            Job::Rollback { .. } => DeployTrigger::Rollback,
            Job::Cron => DeployTrigger::Cron,
            Job::Takeover => DeployTrigger::Takeover,
        }
    }

    /// New code is watched for the soak period; a known version is not.
    pub fn soaks(&self) -> bool {
        matches!(self, Job::NewDigest(_) | Job::Manual)
    }

    /// Only a new digest from the registry is superseded by a newer one: a
    /// reload, a rollback or an operator's deploy is carried through.
    fn supersedable(&self) -> bool {
        matches!(self, Job::NewDigest(_))
    }

    /// A deploy an operator or the registry asked for is recorded even when
    /// it needs no gate, and when it fails before the replace.
    fn always_recorded(&self) -> bool {
        matches!(
            self,
            Job::NewDigest(_) | Job::Manual | Job::Rollback { .. } | Job::Takeover
        )
    }

    /// Without a gate, the new container is started even when the service
    /// waits for a trigger: the job is that trigger.
    fn force_start(&self) -> bool {
        !matches!(self, Job::Reconcile { .. } | Job::Takeover)
    }

    /// The pass tells the proxy where the container is when it ends (the
    /// gate does so for the triggers that deploy new code).
    pub fn refreshes_endpoint(&self) -> bool {
        matches!(self, Job::Reconcile { .. } | Job::Takeover)
    }
}

impl fmt::Display for Job {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Job::Reconcile { .. } => f.write_str("a reload"),
            Job::NewDigest(digest) => write!(f, "{digest}"),
            Job::Manual => f.write_str("an operator's deploy"),
            Job::Rollback { .. } => f.write_str("an operator's rollback"),
            Job::Cron => f.write_str("a scheduled run"),
            Job::Takeover => f.write_str("a takeover"),
        }
    }
}

impl Reconciled {
    /// A container replaced through the health gate: it runs.
    fn replaced(container_id: String, digest: String) -> Reconciled {
        Reconciled {
            container_id,
            change: Change::Recreated,
            state: State::Running,
            digest,
        }
    }
}

impl Ran {
    fn settled(reconciled: Reconciled) -> Ran {
        Ran {
            reconciled,
            soak: None,
        }
    }
}

impl Deploying {
    fn new(service: &Service, job: &Job, old: Option<&Container>) -> Deploying {
        Deploying {
            service: service.name.clone(),
            trigger: job.trigger(),
            old_digest: old.and_then(digest_of),
            new_digest: None,
            started_at: Utc::now(),
            restore_tag: None,
        }
    }

    /// Records how the deploy ended; one that did not succeed points the
    /// local tag back first.
    pub async fn finish(
        &self,
        runtime: &Runtime,
        service: &Service,
        outcome: DeployOutcomeKind,
        reason: Option<String>,
    ) {
        if outcome != DeployOutcomeKind::Succeeded {
            if let Some(image) = &self.restore_tag {
                image::restore_tag(runtime, service, image).await;
            }
        } else {
            info!(
                service = %service.name,
                digest = %self.new_digest.as_deref().unwrap_or(""),
                trigger = %self.trigger,
                "deployed"
            );
        }
        let deploy = DeployRecord {
            service: self.service.clone(),
            trigger: self.trigger,
            old_digest: self.old_digest.clone(),
            new_digest: self.new_digest.clone(),
            started_at: self.started_at,
            ended_at: Utc::now(),
            outcome,
            reason,
        };
        let proven = (outcome == DeployOutcomeKind::Succeeded).then(|| deploy.clone());
        record(runtime, deploy);
        if let Some(proven) = proven {
            super::prune::after_proven(runtime, service, proven).await;
        }
    }
}

/// Runs one pass of the pipeline for `job`.
pub async fn run(runtime: &Runtime, service: &Service, job: &Job) -> Result<Ran, ServiceError> {
    let mut deploying = Deploying::new(service, job, None);
    let outcome = acquire_and_replace(runtime, service, job, &mut deploying).await;
    if let Err(Failure::Early(err)) = &outcome {
        if job.always_recorded() {
            let kind = match err {
                ServiceError::Stopping(_) => DeployOutcomeKind::Abandoned,
                _ => DeployOutcomeKind::Failed,
            };
            deploying
                .finish(runtime, service, kind, Some(err.to_string()))
                .await;
        }
    }
    outcome.map_err(|failure| match failure {
        Failure::Early(err) | Failure::Recorded(err) => err,
    })
}

/// A pass that failed: before the replace recorded the deploy (`Early`:
/// `run` records it when the job is always recorded), or after.
enum Failure {
    Early(ServiceError),
    Recorded(ServiceError),
}

impl From<ServiceError> for Failure {
    fn from(err: ServiceError) -> Self {
        Failure::Early(err)
    }
}

async fn acquire_and_replace(
    runtime: &Runtime,
    service: &Service,
    job: &Job,
    deploying: &mut Deploying,
) -> Result<Ran, Failure> {
    let engine = runtime.engine.as_ref();
    let interrupted = converge::remove_strays(runtime, service).await?;
    let existing = engine
        .inspect(&service.name)
        .await
        .map_err(ServiceError::from)?;
    deploying.old_digest = existing.as_ref().and_then(digest_of);
    let old = match target(engine, &runtime.instance, service, job, existing).await? {
        Target::Settled(reconciled) => return Ok(Ran::settled(reconciled)),
        Target::Replace(old) => old,
    };
    let acquired = acquire(runtime, service, job, interrupted, old.as_ref()).await?;
    deploying.new_digest = Some(acquired.digest.clone());
    deploying.restore_tag = acquired.restore_tag;
    replace(runtime, service, job, old, acquired.digest, deploying).await
}

/// What is to be replaced, or the pass's end when nothing is.
async fn target(
    engine: &dyn Engine,
    instance: &str,
    service: &Service,
    job: &Job,
    existing: Option<Container>,
) -> Result<Target, ServiceError> {
    let Some(container) = existing else {
        return Ok(match job {
            Job::Takeover => Target::Settled(Reconciled {
                container_id: String::new(),
                change: Change::Absent,
                state: State::Pending,
                digest: String::new(),
            }),
            _ => Target::Replace(None),
        });
    };
    let ours = owned_by(&container, instance);
    match job {
        Job::Takeover if ours => Ok(Target::Settled(Reconciled {
            container_id: container.id.clone(),
            change: Change::Adopted,
            state: State::Running,
            digest: digest_of(&container).unwrap_or_default(),
        })),
        // Another instance's container is never taken over.
        Job::Takeover if !unlabelled(&container) => Err(name_taken(container)),
        Job::Takeover => {
            info!(service = %service.name, container = %short(&container.id), "taking over a container dispenser did not create");
            Ok(Target::Replace(Some(container)))
        }
        _ if !ours => Err(name_taken(container)),
        Job::Reconcile { .. } if matches_spec(engine, service, &container).await? => {
            Ok(Target::Settled(adopt(engine, service, container).await?))
        }
        Job::Reconcile { .. } => {
            info!(service = %service.name, container = %short(&container.id), "spec changed, recreating");
            Ok(Target::Replace(Some(container)))
        }
        _ => Ok(Target::Replace(Some(container))),
    }
}

/// Gets the job's image onto the host, before the old container is
/// touched, so a failed pull leaves it running.
async fn acquire(
    runtime: &Runtime,
    service: &Service,
    job: &Job,
    interrupted: bool,
    old: Option<&Container>,
) -> Result<Acquired, ServiceError> {
    let reference = &service.container.image;
    let (digest, restore_tag) = match job {
        Job::NewDigest(digest) => {
            let before = image::pull_digest(runtime, service, digest).await?;
            (digest.clone(), before)
        }
        Job::Rollback { current } => {
            let target = previous_good(runtime, service, current.as_deref()).await?;
            info!(service = %service.name, digest = %target, "rolling back");
            let before = image::earlier(runtime, service, &target).await?;
            (target, before)
        }
        Job::Reconcile { quarantined } => {
            let local = image::ensure(runtime, service).await?;
            let local = match old {
                None => image::current(runtime, service, local, quarantined).await,
                Some(_) => local,
            };
            let proven = old.and_then(|old| converge::proven_image(interrupted, service, old));
            (registry_digest(reference, &local), proven)
        }
        Job::Manual => {
            let mut service = service.clone();
            service.lifecycle.pull = PullPolicy::Always;
            let local = image::ensure(runtime, &service).await?;
            (registry_digest(reference, &local), None)
        }
        Job::Cron | Job::Takeover => {
            let local = image::ensure(runtime, service).await?;
            (registry_digest(reference, &local), None)
        }
    };
    Ok(Acquired {
        digest,
        restore_tag,
    })
}

/// The digest a rollback puts back: what the current version replaced, as
/// the deploy ledger knows it.
async fn previous_good(
    runtime: &Runtime,
    service: &Service,
    current: Option<&str>,
) -> Result<String, ServiceError> {
    let Some(ledger) = &runtime.deploys else {
        return Err(ServiceError::Engine(format!(
            "no previous version of {} is known: the deploy ledger is not open",
            service.name
        )));
    };
    let history = ledger
        .recent
        .send(RecentDeploys {
            service: service.name.clone(),
            limit: ROLLBACK_HISTORY,
        })
        .await
        .map_err(|err| ServiceError::Engine(format!("the ledger is unavailable: {err}")))?
        .map_err(|err| ServiceError::Engine(err.to_string()))?;
    manual::previous_good(&history, current).ok_or_else(|| {
        ServiceError::Engine(format!(
            "no previous good version of {} is recorded in the deploy ledger",
            service.name
        ))
    })
}

/// The one replace: through the health gate when the old container serves,
/// a takeover's rename-aside otherwise, else stop, remove and create.
async fn replace(
    runtime: &Runtime,
    service: &Service,
    job: &Job,
    old: Option<Container>,
    digest: String,
    deploying: &Deploying,
) -> Result<Ran, Failure> {
    match old {
        Some(old) if gated(service, &old) => {
            let mut ran = gated_replace(runtime, service, job, &old, digest, deploying).await?;
            if *job == Job::Takeover {
                ran.reconciled.change = Change::TakenOver {
                    previous_id: old.id.clone(),
                };
            }
            Ok(ran)
        }
        Some(foreign) if *job == Job::Takeover => {
            let outcome = take_over_ungated(runtime, service, &foreign, digest.clone()).await;
            record_ungated(runtime, service, deploying, &outcome).await;
            let id = outcome.map_err(Failure::Recorded)?;
            Ok(Ran::settled(Reconciled {
                container_id: id,
                change: Change::TakenOver {
                    previous_id: foreign.id,
                },
                state: State::Running,
                digest,
            }))
        }
        old => {
            let outcome = install(
                runtime,
                service,
                old.as_ref(),
                digest.clone(),
                job.force_start(),
            )
            .await;
            let (id, state) = match outcome {
                Ok(done) if job.always_recorded() => {
                    record_ungated(runtime, service, deploying, &Ok(())).await;
                    done
                }
                Ok(done) => done,
                Err(err) if job.always_recorded() => {
                    record_ungated::<()>(runtime, service, deploying, &Err(err.clone())).await;
                    return Err(Failure::Recorded(err));
                }
                Err(err) => return Err(Failure::Early(err)),
            };
            Ok(Ran::settled(Reconciled {
                container_id: id,
                change: if old.is_some() {
                    Change::Recreated
                } else {
                    Change::Created
                },
                state,
                digest,
            }))
        }
    }
}

/// Records an ungated replace's outcome.
async fn record_ungated<T>(
    runtime: &Runtime,
    service: &Service,
    deploying: &Deploying,
    outcome: &Result<T, ServiceError>,
) {
    let (kind, reason) = match outcome {
        Ok(_) => (DeployOutcomeKind::Succeeded, None),
        Err(err) => (DeployOutcomeKind::Failed, Some(err.to_string())),
    };
    deploying.finish(runtime, service, kind, reason).await;
}

/// Replaces `old` through the health gate (`rollout::replace`). A swap that
/// leaves a soak to watch is recorded when the soak ends (`soak.rs`).
async fn gated_replace(
    runtime: &Runtime,
    service: &Service,
    job: &Job,
    old: &Container,
    digest: String,
    deploying: &Deploying,
) -> Result<Ran, Failure> {
    let carried_through;
    let runtime = if job.supersedable() {
        runtime
    } else {
        carried_through = Runtime {
            newest_digest: NewestDigest::default(),
            ..runtime.clone()
        };
        &carried_through
    };
    let outcome = rollout::replace(runtime, service, Some(old), digest.clone(), job.soaks()).await;
    let (kind, reason, err) = match outcome {
        Ok(Swapped::Done(id)) => {
            deploying
                .finish(runtime, service, DeployOutcomeKind::Succeeded, None)
                .await;
            return Ok(Ran::settled(Reconciled::replaced(id, digest)));
        }
        Ok(Swapped::Soaking(soak)) => {
            info!(service = %service.name, container = %short(&soak.id), soak_secs = soak.period.as_secs(), "soaking: the new container serves; the previous one is kept until the soak ends");
            return Ok(Ran {
                reconciled: Reconciled::replaced(soak.id.clone(), digest),
                soak: Some(Soaking {
                    soak,
                    deploying: deploying.clone(),
                }),
            });
        }
        Err(RolloutError::RolledBack { reason }) => (
            DeployOutcomeKind::RolledBack,
            reason.clone(),
            ServiceError::RolledBack { reason },
        ),
        Err(RolloutError::Failed(err)) => (DeployOutcomeKind::Failed, err.to_string(), err),
        Err(RolloutError::Superseded { by }) => (
            DeployOutcomeKind::Superseded,
            format!("superseded by {by} during the gate"),
            ServiceError::Superseded(by),
        ),
        Err(RolloutError::Abandoned { phase }) => {
            info!(service = %service.name, digest = %digest, phase, "deploy abandoned; the previous version serves");
            (
                DeployOutcomeKind::Abandoned,
                format!("the daemon stopped during the {phase} phase"),
                ServiceError::Stopping(format!(
                    "the deploy was abandoned in its {phase} phase; the previous version serves"
                )),
            )
        }
    };
    deploying.finish(runtime, service, kind, Some(reason)).await;
    Err(Failure::Recorded(err))
}

/// Takes over a container that is not running, or of a service that is not
/// gated (a job, an `on-trigger` service): it is renamed `-takeover` while
/// the new container is created (and started unless it waits), removed once
/// that worked, and renamed back when it did not.
async fn take_over_ungated(
    runtime: &Runtime,
    service: &Service,
    foreign: &Container,
    digest: String,
) -> Result<String, ServiceError> {
    let engine = runtime.engine.as_ref();
    let kept = format!("{}{TAKEOVER_SUFFIX}", service.name);
    engine.rename(&foreign.id, &kept).await?;
    engine
        .stop(&foreign.id, service.container.stop_grace())
        .await?;
    let installed = async {
        let id = create(runtime, service, digest).await?;
        if let Err(err) = start_unless_waiting(engine, service, &id).await {
            engine.remove(&id).await?;
            return Err(err);
        }
        Ok(id)
    };
    match installed.await {
        Ok(id) => {
            engine.remove(&foreign.id).await?;
            info!(service = %service.name, container = %short(&foreign.id), "removed the container taken over");
            Ok(id)
        }
        Err(err) => {
            engine.rename(&foreign.id, &service.name).await?;
            if foreign.state == ContainerState::Running {
                engine.start(&foreign.id).await?;
            }
            warn!(service = %service.name, container = %short(&foreign.id), error = %err, "takeover failed; the container taken over has its name back");
            Err(err)
        }
    }
}

/// Removes `old` (when given), creates the container from the local image
/// and starts it unless it waits for a trigger (`force_start` overrides).
/// The image must already be on the host.
async fn install(
    runtime: &Runtime,
    service: &Service,
    old: Option<&Container>,
    digest: String,
    force_start: bool,
) -> Result<(String, State), ServiceError> {
    let engine = runtime.engine.as_ref();
    if let Some(old) = old {
        engine.stop(&old.id, service.container.stop_grace()).await?;
        engine.remove(&old.id).await?;
        info!(service = %service.name, container = %short(&old.id), "removed");
    }
    let id = create(runtime, service, digest).await?;
    let state = if force_start {
        engine.start(&id).await?;
        info!(service = %service.name, container = %short(&id), "started");
        State::Running
    } else {
        start_unless_waiting(engine, service, &id).await?
    };
    Ok((id, state))
}

/// Creates the service's container under its own name.
async fn create(
    runtime: &Runtime,
    service: &Service,
    digest: String,
) -> Result<String, ServiceError> {
    let image = super::container::source_image(runtime.engine.as_ref(), service, &digest).await?;
    let request = CreateRequest {
        name: &service.name,
        service,
        image: &image,
        default_network: &runtime.default_network,
        labels: super::container::container_labels(&runtime.instance, service, digest),
    };
    let id = runtime.engine.create(&request).await?;
    info!(service = %service.name, container = %short(&id), image = %service.container.image, "created");
    Ok(id)
}

/// Starts a new container unless the service waits for a trigger.
async fn start_unless_waiting(
    engine: &dyn Engine,
    service: &Service,
    id: &str,
) -> Result<State, ServiceError> {
    if service.lifecycle.initialize == Initialize::OnTrigger {
        return Ok(State::Waiting);
    }
    engine.start(id).await?;
    info!(service = %service.name, container = %short(id), "started");
    Ok(State::Running)
}

/// True when the container was created from this spec and the image the
/// reference points to locally (when the image is still on the host).
async fn matches_spec(
    engine: &dyn Engine,
    service: &Service,
    container: &Container,
) -> Result<bool, ServiceError> {
    if matches!(
        container.state,
        ContainerState::Dead | ContainerState::Removing
    ) {
        return Ok(false);
    }
    let hash = container.labels.get(labels::SPEC_HASH).map(String::as_str);
    if hash != Some(service.spec_hash.as_str()) {
        return Ok(false);
    }
    Ok(match engine.image(&service.container.image).await? {
        Some(image) => image.id == container.image_id,
        None => true,
    })
}

/// Leaves a matching container as it is, starting it when it should run.
async fn adopt(
    engine: &dyn Engine,
    service: &Service,
    container: Container,
) -> Result<Reconciled, ServiceError> {
    let id = container.id.clone();
    let waiting = service.lifecycle.initialize == Initialize::OnTrigger;
    // A scheduled job's exited container is the last run: the schedule starts the next.
    let scheduled_job = service.is_job() && service.lifecycle.schedule.is_some();
    let (change, state) = match container.state {
        ContainerState::Running | ContainerState::Restarting => (Change::Adopted, State::Running),
        ContainerState::Paused => {
            warn!(service = %service.name, container = %short(&id), "container is paused; leaving it");
            (Change::Adopted, State::Running)
        }
        ContainerState::Created if waiting => (Change::Adopted, State::Waiting),
        ContainerState::Exited { code } if waiting || scheduled_job => {
            (Change::Adopted, State::Exited { code })
        }
        // A job that finished well is not run again by a restart of Dispenser.
        ContainerState::Exited { code: 0 } if service.container.restart == RestartPolicy::No => {
            (Change::Adopted, State::Exited { code: 0 })
        }
        _ => {
            engine.start(&id).await?;
            info!(service = %service.name, container = %short(&id), "started");
            (Change::Started, State::Running)
        }
    };
    if change == Change::Adopted {
        info!(service = %service.name, container = %short(&id), "adopted");
    }
    Ok(Reconciled {
        container_id: id,
        change,
        state,
        digest: digest_of(&container).unwrap_or_default(),
    })
}

/// Stops and removes every container of this service (retirement).
pub async fn retire(engine: &dyn Engine, instance: &str, name: &str) -> Result<(), ServiceError> {
    for container in engine.list_service(instance, name).await? {
        engine.stop(&container.id, STOP_GRACE).await?;
        engine.remove(&container.id).await?;
        info!(service = %name, container = %short(&container.id), "removed");
    }
    Ok(())
}

/// Records a deploy in the ledger (or only in the log without one), counts
/// it and announces it: the one place every deploy record passes.
pub fn record(runtime: &Runtime, record: DeployRecord) {
    let (outcome, event) = announcement(&record);
    crate::metrics::global().deploy(&record.service, outcome);
    if let Some(event) = event {
        crate::events::publish(event);
    }
    match &runtime.deploys {
        Some(ledger) => ledger.record.do_send(RecordDeploy(record)),
        None => {
            info!(service = %record.service, outcome = %record.outcome, "deploy not recorded: no ledger")
        }
    }
}

/// The metric label and the operator event of a deploy record.
fn announcement(deploy: &DeployRecord) -> (&'static str, Option<Event>) {
    let service = deploy.service.clone();
    let reason = deploy.reason.clone().unwrap_or_default();
    let digest = deploy.new_digest.as_deref().unwrap_or("");
    let rollback = deploy.trigger == DeployTrigger::Rollback;
    match deploy.outcome {
        DeployOutcomeKind::Succeeded if rollback => (
            "rolled_back",
            Some(Event::RolledBack {
                service,
                message: format!("{} rolled back to {digest}", deploy.service),
            }),
        ),
        DeployOutcomeKind::Succeeded => (
            "succeeded",
            Some(Event::Deployed {
                service,
                message: format!("{} deployed {digest}", deploy.service),
            }),
        ),
        // An operator's deploy that was rolled back is a deploy that failed:
        // the operator asked for it and the previous version serves.
        DeployOutcomeKind::RolledBack if deploy.trigger == DeployTrigger::Manual => {
            ("failed", Some(Event::DeployFailed { service, reason }))
        }
        DeployOutcomeKind::RolledBack => (
            "rolled_back",
            Some(Event::RolledBack {
                service,
                message: format!("{} rolled back: {reason}", deploy.service),
            }),
        ),
        DeployOutcomeKind::Failed if rollback => (
            "rollback_failed",
            Some(Event::RollbackFailed { service, reason }),
        ),
        DeployOutcomeKind::Failed => ("failed", Some(Event::DeployFailed { service, reason })),
        // The daemon is stopping, or a newer version came: counted, but
        // nothing to tell an operator.
        DeployOutcomeKind::Abandoned => ("abandoned", None),
        DeployOutcomeKind::Superseded => ("superseded", None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(trigger: DeployTrigger, outcome: DeployOutcomeKind) -> DeployRecord {
        DeployRecord {
            service: "api".into(),
            trigger,
            old_digest: Some("sha256:a".into()),
            new_digest: Some("sha256:b".into()),
            started_at: Utc::now(),
            ended_at: Utc::now(),
            outcome,
            reason: Some("it failed its healthcheck".into()),
        }
    }

    #[test]
    fn every_trigger_is_announced_by_its_outcome() {
        use DeployOutcomeKind::*;
        let cases = [
            (
                DeployTrigger::NewDigest,
                Succeeded,
                "succeeded",
                Some("deployed"),
            ),
            (
                DeployTrigger::Manual,
                Succeeded,
                "succeeded",
                Some("deployed"),
            ),
            (
                DeployTrigger::Rollback,
                Succeeded,
                "rolled_back",
                Some("rolled_back"),
            ),
            (
                DeployTrigger::NewDigest,
                RolledBack,
                "rolled_back",
                Some("rolled_back"),
            ),
            (
                DeployTrigger::Manual,
                Failed,
                "failed",
                Some("deploy_failed"),
            ),
            (
                DeployTrigger::Rollback,
                Failed,
                "rollback_failed",
                Some("rollback_failed"),
            ),
            (
                DeployTrigger::Takeover,
                Succeeded,
                "succeeded",
                Some("deployed"),
            ),
            (DeployTrigger::NewDigest, Superseded, "superseded", None),
            (DeployTrigger::NewDigest, Abandoned, "abandoned", None),
        ];
        for (trigger, outcome, label, event) in cases {
            let (got_label, got_event) = announcement(&record(trigger, outcome));
            assert_eq!(got_label, label, "{trigger} {outcome}");
            assert_eq!(
                got_event.as_ref().map(Event::kind),
                event,
                "{trigger} {outcome}"
            );
        }
        let (_, event) = announcement(&record(DeployTrigger::Rollback, Succeeded));
        assert_eq!(
            event,
            Some(Event::RolledBack {
                service: "api".into(),
                message: "api rolled back to sha256:b".into()
            })
        );
    }

    #[test]
    fn only_a_new_digest_is_superseded_and_only_new_code_soaks() {
        let jobs = [
            Job::Reconcile {
                quarantined: BTreeSet::new(),
            },
            Job::NewDigest("sha256:b".into()),
            Job::Manual,
            Job::Rollback { current: None },
            Job::Cron,
            Job::Takeover,
        ];
        let superseded: Vec<bool> = jobs.iter().map(Job::supersedable).collect();
        assert_eq!(superseded, [false, true, false, false, false, false]);
        let soaks: Vec<bool> = jobs.iter().map(Job::soaks).collect();
        assert_eq!(soaks, [false, true, true, false, false, false]);
        let triggers: Vec<String> = jobs.iter().map(|job| job.trigger().to_string()).collect();
        assert_eq!(
            triggers,
            [
                "reload",
                "new-digest",
                "manual",
                "rollback",
                "cron",
                "takeover"
            ]
        );
    }
}

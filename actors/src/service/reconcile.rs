//! The steps a service actor awaits: adopt, create, recreate and retire a
//! container. Plain async functions over the `Engine`, so the actor stays a
//! thin shell around its mailbox.

use std::collections::{BTreeMap, BTreeSet};

use chrono::Utc;
use tracing::{info, warn};

use super::rollout::{self, RolloutError};
use super::{Runtime, ServiceError, State, STOP_GRACE};
use crate::engine::{labels, Container, ContainerState, CreateRequest, Engine, EngineError, Image};
use crate::ledger::{DeployOutcomeKind, DeployRecord, DeployTrigger, RecordDeploy};
use crate::plan::{ImageRef, Initialize, PullPolicy, RestartPolicy, Service};
use crate::registry::Credential;

/// What a reconcile did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reconciled {
    pub container_id: String,
    pub change: Change,
    pub state: State,
    /// The registry digest the container runs (its `dispenser.image-digest`).
    pub digest: String,
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

/// How the container was brought in line with the spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The existing container matched and was left as it was.
    Adopted,
    /// The existing container matched but was stopped, and was started.
    Started,
    /// There was no container; one was created.
    Created,
    /// The container differed from the spec and was replaced.
    Recreated,
}

/// Suffix of a container being taken over during a stop-first takeover
/// (`dispenser takeover`): it keeps no Dispenser labels, so a restart finds
/// it by this name (`remove_strays`), and puts it back if the takeover was
/// not finished.
pub const TAKEOVER_SUFFIX: &str = "-takeover";

/// What a takeover found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TakeoverOutcome {
    /// A container without Dispenser labels held the name; it was replaced
    /// through the health gate by `container_id`, and removed.
    TakenOver {
        previous_id: String,
        container_id: String,
    },
    /// The container under the service's name is this instance's already.
    AlreadyManaged { container_id: String },
    /// No container holds the service's name.
    NoContainer,
}

/// True when Dispenser (this instance) created the container.
pub fn owned_by(container: &Container, instance: &str) -> bool {
    container.labels.get(labels::MANAGED).map(String::as_str) == Some("true")
        && container.labels.get(labels::INSTANCE).map(String::as_str) == Some(instance)
}

/// Makes the service's container match its spec. A watched service without
/// a container starts on the registry's current digest for its tag, unless
/// that digest is in `quarantined`.
pub async fn reconcile(
    runtime: &Runtime,
    service: &Service,
    quarantined: &BTreeSet<String>,
) -> Result<Reconciled, ServiceError> {
    let engine = runtime.engine.as_ref();
    let interrupted = remove_strays(runtime, service).await?;
    let existing = engine.inspect(&service.name).await?;
    let Some(container) = existing else {
        let image = ensure_image(runtime, service).await?;
        let image = current_image(runtime, service, image, quarantined).await;
        let digest = registry_digest(&service.container.image, &image);
        let (id, state) = install(runtime, service, None, digest.clone(), false).await?;
        return Ok(Reconciled {
            container_id: id,
            change: Change::Created,
            state,
            digest,
        });
    };
    if !owned_by(&container, &runtime.instance) {
        return Err(name_taken(container));
    }
    if matches_spec(engine, service, &container).await? {
        return adopt(engine, service, container).await;
    }
    // Pull before touching the old container, so a failed pull leaves it running.
    let image = ensure_image(runtime, service).await?;
    info!(service = %service.name, container = %short(&container.id), "spec changed, recreating");
    let digest = registry_digest(&service.container.image, &image);
    if gated(service, &container) {
        let proven = proven_image(interrupted, service, &container);
        let id = replace_gated(
            runtime,
            service,
            &container,
            digest.clone(),
            DeployTrigger::Reload,
            proven.as_ref(),
        )
        .await?;
        return Ok(Reconciled::replaced(id, digest));
    }
    let (id, state) = install(runtime, service, Some(&container), digest.clone(), false).await?;
    Ok(Reconciled {
        container_id: id,
        change: Change::Recreated,
        state,
        digest,
    })
}

/// True when the container carries no Dispenser labels at all (one an
/// operator or ixpantia/dispenser started): the only kind `take_over` replaces.
pub fn unlabelled(container: &Container) -> bool {
    !container.labels.contains_key(labels::MANAGED)
}

/// `dispenser takeover` for one service: when a container without
/// Dispenser labels holds the service's name, it is replaced by a managed
/// one through the health gate (`replace_gated`, start-first or stop-first
/// as for every deploy; the old container is kept until the new one is
/// proven and put back under its name when it is not). A container of
/// another Dispenser instance is refused (`NameTaken`), never touched.
pub async fn take_over(
    runtime: &Runtime,
    service: &Service,
) -> Result<TakeoverOutcome, ServiceError> {
    let engine = runtime.engine.as_ref();
    remove_strays(runtime, service).await?;
    let Some(foreign) = engine.inspect(&service.name).await? else {
        return Ok(TakeoverOutcome::NoContainer);
    };
    if owned_by(&foreign, &runtime.instance) {
        return Ok(TakeoverOutcome::AlreadyManaged {
            container_id: foreign.id,
        });
    }
    if !unlabelled(&foreign) {
        return Err(name_taken(foreign));
    }
    let image = ensure_image(runtime, service).await?;
    let digest = registry_digest(&service.container.image, &image);
    info!(service = %service.name, container = %short(&foreign.id), "taking over a container dispenser did not create");
    let container_id = if gated(service, &foreign) {
        replace_gated(
            runtime,
            service,
            &foreign,
            digest,
            DeployTrigger::Takeover,
            None,
        )
        .await?
    } else {
        replace_ungated(runtime, service, &foreign, digest).await?
    };
    Ok(TakeoverOutcome::TakenOver {
        previous_id: foreign.id,
        container_id,
    })
}

/// Takes over a container that is not running, or of a service that is not
/// gated (a job, an `on-trigger` service): it is renamed `-takeover` while
/// the new container is created (and started unless it waits), removed once
/// that worked, and renamed back when it did not.
async fn replace_ungated(
    runtime: &Runtime,
    service: &Service,
    foreign: &Container,
    digest: String,
) -> Result<String, ServiceError> {
    let engine = runtime.engine.as_ref();
    let started_at = Utc::now();
    let kept = format!("{}{TAKEOVER_SUFFIX}", service.name);
    engine.rename(&foreign.id, &kept).await?;
    engine
        .stop(&foreign.id, service.container.stop_grace())
        .await?;
    let installed = async {
        let id = create(runtime, service, digest.clone()).await?;
        if let Err(err) = start_unless_waiting(engine, service, &id).await {
            engine.remove(&id).await?;
            return Err(err);
        }
        Ok(id)
    };
    let outcome = match installed.await {
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
    };
    let (kind, reason) = match &outcome {
        Ok(_) => (DeployOutcomeKind::Succeeded, None),
        Err(err) => (DeployOutcomeKind::Failed, Some(err.to_string())),
    };
    record_deploy(
        runtime,
        DeployRecord {
            service: service.name.clone(),
            trigger: DeployTrigger::Takeover,
            old_digest: None,
            new_digest: Some(digest),
            started_at,
            ended_at: Utc::now(),
            outcome: kind,
            reason,
        },
    );
    outcome
}

/// True when replacing `old` goes through the health gate: a service whose
/// container runs. A scheduled job's run, a service that waits for a
/// trigger, or a container that is not running is simply replaced.
pub fn gated(service: &Service, old: &Container) -> bool {
    let scheduled_job = service.is_job() && service.lifecycle.schedule.is_some();
    service.lifecycle.initialize == Initialize::Immediately
        && !scheduled_job
        && old.state == ContainerState::Running
}

/// Replaces `old` through the health gate (`rollout::replace`) and records
/// the deploy. On a rollback the local tag is pointed back at `restore_tag`
/// (the image it named before the deploy moved it), when given.
pub async fn replace_gated(
    runtime: &Runtime,
    service: &Service,
    old: &Container,
    digest: String,
    trigger: DeployTrigger,
    restore_tag: Option<&Image>,
) -> Result<String, ServiceError> {
    let started_at = Utc::now();
    let old_digest = old.labels.get(labels::IMAGE_DIGEST).cloned();
    let new_code = matches!(trigger, DeployTrigger::NewDigest | DeployTrigger::Manual);
    // Only a new digest from the registry is superseded by a newer one: a
    // reload, a rollback or an operator's deploy is carried through.
    let carried_through;
    let runtime = if trigger == DeployTrigger::NewDigest {
        runtime
    } else {
        carried_through = Runtime {
            newest_digest: super::NewestDigest::default(),
            ..runtime.clone()
        };
        &carried_through
    };
    let outcome = rollout::replace(runtime, service, Some(old), digest.clone(), new_code).await;
    let (kind, reason) = match &outcome {
        Ok(_) => (DeployOutcomeKind::Succeeded, None),
        Err(RolloutError::RolledBack { reason }) => {
            (DeployOutcomeKind::RolledBack, Some(reason.clone()))
        }
        Err(RolloutError::Failed(err)) => (DeployOutcomeKind::Failed, Some(err.to_string())),
        Err(RolloutError::Superseded { by }) => (
            DeployOutcomeKind::Superseded,
            Some(format!("superseded by {by} during the soak")),
        ),
        Err(RolloutError::Abandoned { phase }) => (
            DeployOutcomeKind::Abandoned,
            Some(format!("the daemon stopped during the {phase} phase")),
        ),
    };
    if kind != DeployOutcomeKind::Succeeded {
        if let Some(image) = restore_tag {
            restore(runtime, service, image).await;
        }
    }
    record_deploy(
        runtime,
        DeployRecord {
            service: service.name.clone(),
            trigger,
            old_digest,
            new_digest: Some(digest.clone()),
            started_at,
            ended_at: Utc::now(),
            outcome: kind,
            reason,
        },
    );
    match outcome {
        Ok(id) => {
            info!(service = %service.name, container = %short(&id), digest = %digest, trigger = %trigger, "deployed");
            Ok(id)
        }
        Err(RolloutError::RolledBack { reason }) => Err(ServiceError::RolledBack { reason }),
        Err(RolloutError::Failed(err)) => Err(err),
        Err(RolloutError::Superseded { by }) => Err(ServiceError::Superseded(by)),
        Err(RolloutError::Abandoned { phase }) => {
            info!(service = %service.name, digest = %digest, phase, "deploy abandoned; the previous version serves");
            Err(ServiceError::Stopping(format!(
                "the deploy was abandoned in its {phase} phase; the previous version serves"
            )))
        }
    }
}

/// Points the service's local tag back at `image` after a failed deploy.
async fn restore(runtime: &Runtime, service: &Service, image: &Image) {
    let reference = &service.container.image;
    let source = ImageRef {
        original: image.id.clone(),
        registry: reference.registry.clone(),
        repository: reference.repository.clone(),
        tag: None,
        digest: None,
    };
    match runtime.engine.tag(&source, reference).await {
        Ok(()) => {
            info!(service = %service.name, image = %reference, "local tag moved back to the previous image")
        }
        Err(err) => {
            warn!(service = %service.name, image = %reference, error = %err, "cannot move the local tag back")
        }
    }
}

/// Sends a deploy to the ledger (or only to the log without one).
pub fn record_deploy(runtime: &Runtime, record: DeployRecord) {
    match &runtime.deploys {
        Some(ledger) => ledger.record.do_send(RecordDeploy(record)),
        None => {
            info!(service = %record.service, outcome = %record.outcome, "deploy not recorded: no ledger")
        }
    }
}

/// Replaces the service's container with a fresh, started one: a job's
/// scheduled run, or a scheduled restart of a long-running service (the
/// deploy's recreate path). The image is ready before the old container stops.
pub async fn replace_and_start(
    runtime: &Runtime,
    service: &Service,
    trigger: DeployTrigger,
) -> Result<String, ServiceError> {
    let engine = runtime.engine.as_ref();
    remove_strays(runtime, service).await?;
    let image = ensure_image(runtime, service).await?;
    let previous = engine.inspect(&service.name).await?;
    if let Some(previous) = &previous {
        if !owned_by(previous, &runtime.instance) {
            return Err(name_taken(previous.clone()));
        }
    }
    let digest = registry_digest(&service.container.image, &image);
    if let Some(previous) = previous.as_ref().filter(|old| gated(service, old)) {
        return replace_gated(runtime, service, previous, digest, trigger, None).await;
    }
    let (id, _) = install(runtime, service, previous.as_ref(), digest, true).await?;
    Ok(id)
}

/// Deploys `digest` of the service's image: pulls exactly
/// `repository@digest` (never the tag, so what was checked is what runs),
/// tags it locally as the service's image reference (so adoption after a
/// restart matches), then replaces the container and starts it (a new
/// digest is also the trigger of an `on-trigger` service). A failed pull
/// leaves the old container running.
pub async fn deploy(
    runtime: &Runtime,
    service: &Service,
    digest: &str,
    trigger: DeployTrigger,
) -> Result<Reconciled, ServiceError> {
    let engine = runtime.engine.as_ref();
    let reference = &service.container.image;
    let pinned = pinned(reference, digest);
    info!(service = %service.name, image = %pinned, "pulling new image");
    let pull_began = std::time::Instant::now();
    let credential = pull_credential(runtime, reference).await;
    let pulled = rollout::unless_stopping(runtime, engine.pull_with(&pinned, credential.as_ref()))
        .await
        .ok_or_else(|| ServiceError::Stopping("the pull was abandoned".into()))?;
    pulled.map_err(|err| match err {
        // Docker is away: not the image's fault (no back-off for it).
        EngineError::Unreachable(_) => ServiceError::from(err),
        err => ServiceError::ImageUnavailable {
            image: pinned.to_string(),
            reason: err.to_string(),
        },
    })?;
    let pull_ms = u64::try_from(pull_began.elapsed().as_millis()).unwrap_or(u64::MAX);
    info!(service = %service.name, pull_ms, "pulled");
    let before = engine.image(reference).await?;
    engine.tag(&pinned, reference).await?;
    remove_strays(runtime, service).await?;
    let existing = engine.inspect(&service.name).await?;
    if let Some(container) = &existing {
        if !owned_by(container, &runtime.instance) {
            return Err(name_taken(container.clone()));
        }
        if gated(service, container) {
            let id = replace_gated(
                runtime,
                service,
                container,
                digest.to_string(),
                trigger,
                before.as_ref(),
            )
            .await?;
            return Ok(Reconciled::replaced(id, digest.to_string()));
        }
    }
    let (id, state) = install(
        runtime,
        service,
        existing.as_ref(),
        digest.to_string(),
        true,
    )
    .await?;
    info!(service = %service.name, container = %short(&id), digest = %digest, "deployed");
    Ok(Reconciled {
        container_id: id,
        change: if existing.is_some() {
            Change::Recreated
        } else {
            Change::Created
        },
        state,
        digest: digest.to_string(),
    })
}

/// Puts back the service's version `digest` (a rollback): the image is
/// used from the host when it is there (it is never pruned), pulled by
/// digest otherwise, tagged as the service's image and deployed through the
/// health gate.
pub async fn roll_back_to(
    runtime: &Runtime,
    service: &Service,
    digest: &str,
) -> Result<String, ServiceError> {
    let engine = runtime.engine.as_ref();
    let reference = &service.container.image;
    let pinned = pinned(reference, digest);
    // An image that never met a registry is recorded by its image id, which
    // Docker finds by itself but not as `repository@id`.
    let by_id = ImageRef {
        original: digest.to_string(),
        digest: None,
        ..pinned.clone()
    };
    let source = if engine.image(&pinned).await?.is_some() {
        pinned
    } else if engine.image(&by_id).await?.is_some() {
        by_id
    } else {
        info!(service = %service.name, image = %pinned, "previous image not on this host; pulling it");
        let credential = pull_credential(runtime, reference).await;
        engine
            .pull_with(&pinned, credential.as_ref())
            .await
            .map_err(|err| ServiceError::ImageUnavailable {
                image: pinned.to_string(),
                reason: err.to_string(),
            })?;
        pinned
    };
    let before = engine.image(reference).await?;
    engine.tag(&source, reference).await?;
    remove_strays(runtime, service).await?;
    let existing = engine.inspect(&service.name).await?;
    match existing {
        Some(container) if !owned_by(&container, &runtime.instance) => Err(name_taken(container)),
        Some(container) if gated(service, &container) => {
            replace_gated(
                runtime,
                service,
                &container,
                digest.to_string(),
                DeployTrigger::Rollback,
                before.as_ref(),
            )
            .await
        }
        existing => {
            let (id, _) = install(
                runtime,
                service,
                existing.as_ref(),
                digest.to_string(),
                true,
            )
            .await?;
            Ok(id)
        }
    }
}

/// The image a new container of the service is created from: its
/// reference pinned to `digest` when the host has the image under that name
/// (it was pulled or pushed as it), so the container runs exactly the
/// version its label and the ledger name even if someone moves the local
/// tag meanwhile; the service's reference otherwise (an image that never
/// met a registry, whose digest is its image id).
pub async fn source_image(
    engine: &dyn Engine,
    service: &Service,
    digest: &str,
) -> Result<ImageRef, EngineError> {
    let reference = &service.container.image;
    let pinned = pinned(reference, digest);
    Ok(match engine.image(&pinned).await? {
        Some(_) => pinned,
        None => reference.clone(),
    })
}

/// `repository@digest` of the service's image.
fn pinned(reference: &ImageRef, digest: &str) -> ImageRef {
    ImageRef {
        original: format!("{}/{}@{digest}", reference.registry, reference.repository),
        registry: reference.registry.clone(),
        repository: reference.repository.clone(),
        tag: None,
        digest: Some(digest.to_string()),
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

fn name_taken(container: Container) -> ServiceError {
    ServiceError::NameTaken {
        name: container.name,
        id: short(&container.id).to_string(),
    }
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

/// Cleans up after a deploy that was interrupted (for example by a kill of
/// the daemon), and returns true when there was one. Containers of this
/// service that carry another name are leftovers: a `<name>-next` (start
/// first) never took over and is removed. A `<name>-prev` (stop first) is
/// the version that was proven: the container under the service's name
/// never passed the gate, so it is removed and `-prev` takes the name back
/// and runs again; the caller then deploys the declared version through the
/// gate, as if the deploy had not begun.
async fn remove_strays(runtime: &Runtime, service: &Service) -> Result<bool, ServiceError> {
    let engine = runtime.engine.as_ref();
    let prev_name = format!("{}{}", service.name, rollout::PREV_SUFFIX);
    let mut interrupted = restore_takeover(runtime, service).await?;
    for container in engine
        .list_service(&runtime.instance, &service.name)
        .await?
    {
        if container.name == service.name {
            continue;
        }
        interrupted = true;
        if container.name == prev_name {
            if let Some(unproven) = engine.inspect(&service.name).await? {
                if !owned_by(&unproven, &runtime.instance) {
                    return Err(name_taken(unproven));
                }
                warn!(service = %service.name, container = %short(&unproven.id), "removing the unproven container of an interrupted deploy");
                engine
                    .stop(&unproven.id, service.container.stop_grace())
                    .await?;
                engine.remove(&unproven.id).await?;
            }
            engine.rename(&container.id, &service.name).await?;
            engine.start(&container.id).await?;
            warn!(service = %service.name, container = %short(&container.id), "an interrupted deploy left the previous container; it runs again");
            continue;
        }
        warn!(service = %service.name, container = %container.name, "removing leftover container");
        engine.stop(&container.id, STOP_GRACE).await?;
        engine.remove(&container.id).await?;
    }
    Ok(interrupted)
}

/// Puts back a container whose takeover was interrupted (a kill during a
/// stop-first `dispenser takeover`): `<name>-takeover`, with no Dispenser
/// labels, is the version that was serving; an unproven container of this
/// instance under the service's name is removed and `-takeover` takes its
/// name back and runs again, as before the takeover began. Anything else
/// under either name is left alone.
async fn restore_takeover(runtime: &Runtime, service: &Service) -> Result<bool, ServiceError> {
    let engine = runtime.engine.as_ref();
    let kept_name = format!("{}{TAKEOVER_SUFFIX}", service.name);
    let Some(kept) = engine.inspect(&kept_name).await? else {
        return Ok(false);
    };
    if !unlabelled(&kept) {
        return Ok(false);
    }
    if let Some(unproven) = engine.inspect(&service.name).await? {
        if !owned_by(&unproven, &runtime.instance) {
            return Err(name_taken(unproven));
        }
        warn!(service = %service.name, container = %short(&unproven.id), "removing the unproven container of an interrupted takeover");
        engine
            .stop(&unproven.id, service.container.stop_grace())
            .await?;
        engine.remove(&unproven.id).await?;
    }
    engine.rename(&kept.id, &service.name).await?;
    engine.start(&kept.id).await?;
    warn!(service = %service.name, container = %short(&kept.id), "an interrupted takeover left the previous container; it has its name back and runs again");
    Ok(true)
}

/// After an interrupted deploy, the image the local tag named before the
/// deploy moved it: the image of the container that was proven, when that
/// container was made from the current spec (so the tag is the same
/// reference). A failed retry points the tag back at it.
fn proven_image(interrupted: bool, service: &Service, container: &Container) -> Option<Image> {
    let same_spec =
        container.labels.get(labels::SPEC_HASH).map(String::as_str) == Some(&service.spec_hash);
    (interrupted && same_spec).then(|| Image {
        id: container.image_id.clone(),
        repo_digests: Vec::new(),
    })
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
        digest: container
            .labels
            .get(labels::IMAGE_DIGEST)
            .cloned()
            .unwrap_or_default(),
    })
}

/// The credentials for pulling `image`, from the Docker config; a config
/// that cannot be read is logged and the pull goes anonymous.
async fn pull_credential(runtime: &Runtime, image: &ImageRef) -> Option<Credential> {
    let config = runtime.credentials.as_ref()?;
    match config.lookup(&image.registry).await {
        Ok(credential) => credential,
        Err(err) => {
            warn!(image = %image, error = %err, "cannot read registry credentials; pulling anonymously");
            None
        }
    }
}

/// Makes the image available locally as the pull policy says, and returns it.
async fn ensure_image(runtime: &Runtime, service: &Service) -> Result<Image, ServiceError> {
    let engine = runtime.engine.as_ref();
    let reference = &service.container.image;
    let local = engine.image(reference).await?;
    let must_pull = service.lifecycle.pull == PullPolicy::Always || local.is_none();
    if must_pull {
        info!(service = %service.name, image = %reference, "pulling");
        let credential = pull_credential(runtime, reference).await;
        if let Err(err) = engine.pull_with(reference, credential.as_ref()).await {
            match &local {
                Some(_) => {
                    warn!(service = %service.name, image = %reference, error = %err, "pull failed; using the image already on this host");
                }
                None => {
                    return Err(ServiceError::ImageUnavailable {
                        image: reference.to_string(),
                        reason: err.to_string(),
                    })
                }
            }
        }
    }
    engine
        .image(reference)
        .await?
        .ok_or_else(|| ServiceError::ImageUnavailable {
            image: reference.to_string(),
            reason: "not found after pull".into(),
        })
}

/// The image a watched service's first container is created from: the one
/// the registry's tag names now (one `HEAD`, then a pull by digest when the
/// host's copy of the tag is older), so the service starts on the current
/// version instead of being created and redeployed a moment later. When the
/// registry cannot be asked, the pull fails or the digest is quarantined,
/// the host's `local` image is used, as without watching.
async fn current_image(
    runtime: &Runtime,
    service: &Service,
    local: Image,
    quarantined: &BTreeSet<String>,
) -> Image {
    let reference = &service.container.image;
    let Some(registry) = runtime
        .registry
        .as_ref()
        .filter(|_| service.lifecycle.watch)
    else {
        return local;
    };
    if reference.digest.is_some() {
        return local;
    }
    let remote = match registry.digest(reference).await {
        Ok(remote) => remote.digest,
        Err(err) => {
            warn!(service = %service.name, image = %reference, error = %err, "cannot ask the registry for the current digest; starting from the image on this host");
            return local;
        }
    };
    if remote == registry_digest(reference, &local) {
        return local;
    }
    if quarantined.contains(&remote) {
        info!(service = %service.name, digest = %remote, "the registry's digest is quarantined; starting from the image on this host");
        return local;
    }
    let engine = runtime.engine.as_ref();
    let pinned = pinned(reference, &remote);
    info!(service = %service.name, image = %pinned, "the registry has a newer image; pulling it before the first start");
    let credential = pull_credential(runtime, reference).await;
    let pulled = async {
        engine.pull_with(&pinned, credential.as_ref()).await?;
        engine.tag(&pinned, reference).await?;
        engine.image(reference).await
    };
    match pulled.await {
        Ok(Some(current)) => current,
        Ok(None) => local,
        Err(err) => {
            warn!(service = %service.name, image = %pinned, error = %err, "cannot pull the registry's current image; starting from the image on this host");
            local
        }
    }
}

/// Creates the service's container under its own name.
async fn create(
    runtime: &Runtime,
    service: &Service,
    digest: String,
) -> Result<String, ServiceError> {
    let image = source_image(runtime.engine.as_ref(), service, &digest).await?;
    let request = CreateRequest {
        name: &service.name,
        service,
        image: &image,
        default_network: &runtime.default_network,
        labels: container_labels(&runtime.instance, service, digest),
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

/// The registry digest a local image was pulled (or pushed) as, for the
/// image's own repository: the `RepoDigests` entry whose repository is the
/// reference's (an image may carry entries of other repositories too). The
/// image id for an image that never met a registry.
pub fn registry_digest(reference: &ImageRef, image: &Image) -> String {
    image
        .repo_digests
        .iter()
        .filter_map(|entry| ImageRef::parse(entry).ok())
        .find(|entry| {
            entry.registry == reference.registry && entry.repository == reference.repository
        })
        .and_then(|entry| entry.digest)
        .unwrap_or_else(|| image.id.clone())
}

/// The labels of a service's container; `digest` is the registry digest it runs.
pub fn container_labels(
    instance: &str,
    service: &Service,
    digest: String,
) -> BTreeMap<String, String> {
    BTreeMap::from([
        (labels::MANAGED.to_string(), "true".to_string()),
        (labels::INSTANCE.to_string(), instance.to_string()),
        (labels::SERVICE.to_string(), service.name.clone()),
        (labels::SPEC_HASH.to_string(), service.spec_hash.clone()),
        (labels::IMAGE_DIGEST.to_string(), digest),
        (labels::ROLE.to_string(), "current".to_string()),
    ])
}

/// The first 12 characters of a container id, as Docker prints it.
pub fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

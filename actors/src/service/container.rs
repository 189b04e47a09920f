//! Facts about a service's containers that every step shares: who owns a
//! container, the labels it is created with, the names a deploy gives it,
//! and which image and digest it runs. Pure, or one engine read; below both
//! the pipeline (`pipeline.rs`) and the rollout (`rollout.rs`).

use std::collections::BTreeMap;

use super::ServiceError;
use crate::engine::{labels, Container, ContainerState, Engine, EngineError, Image};
use crate::plan::{ImageRef, Initialize, Service};

/// Suffix of the new container during a start-first replace.
pub const NEXT_SUFFIX: &str = "-next";
/// Suffix of the stopped old container during a stop-first replace.
pub const PREV_SUFFIX: &str = "-prev";
/// Suffix of a container being taken over during a stop-first takeover
/// (`dispenser takeover`): it keeps no Dispenser labels, so a restart finds
/// it by this name (`converge::remove_strays`), and puts it back if the
/// takeover was not finished.
pub const TAKEOVER_SUFFIX: &str = "-takeover";

/// True when Dispenser (this instance) created the container.
pub fn owned_by(container: &Container, instance: &str) -> bool {
    container.labels.get(labels::MANAGED).map(String::as_str) == Some("true")
        && container.labels.get(labels::INSTANCE).map(String::as_str) == Some(instance)
}

/// True when the container carries no Dispenser labels at all (one an
/// operator or ixpantia/dispenser started): the only kind a takeover replaces.
pub fn unlabelled(container: &Container) -> bool {
    !container.labels.contains_key(labels::MANAGED)
}

/// The refusal for a container under the service's name that is not ours.
pub fn name_taken(container: Container) -> ServiceError {
    ServiceError::NameTaken {
        name: container.name,
        id: short(&container.id).to_string(),
    }
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

/// The digest label of a container (empty when it has none).
pub fn digest_of(container: &Container) -> Option<String> {
    container.labels.get(labels::IMAGE_DIGEST).cloned()
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
pub fn pinned(reference: &ImageRef, digest: &str) -> ImageRef {
    ImageRef {
        original: format!("{}/{}@{digest}", reference.registry, reference.repository),
        registry: reference.registry.clone(),
        repository: reference.repository.clone(),
        tag: None,
        digest: Some(digest.to_string()),
    }
}

/// The first 12 characters of a container id, as Docker prints it.
pub fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

//! The *acquire* step of the deploy pipeline: getting the image a new
//! container runs onto the host, as each trigger needs it (the spec's tag
//! under its pull policy, a registry digest, a rollback's earlier digest),
//! and putting the local tag back when a deploy that moved it failed.

use std::collections::BTreeSet;

use tracing::{info, warn};

use super::container::{pinned, registry_digest};
use super::{rollout, Runtime, ServiceError};
use crate::engine::{EngineError, Image};
use crate::plan::{ImageRef, PullPolicy, Service};
use crate::registry::Credential;

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
pub async fn ensure(runtime: &Runtime, service: &Service) -> Result<Image, ServiceError> {
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
pub async fn current(
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

/// Pulls exactly `repository@digest` (never the tag, so what was checked is
/// what runs) and tags it locally as the service's image reference (so
/// adoption after a restart matches). Returns the image the tag named
/// before, which a failed deploy points it back at. A failed pull changes
/// nothing.
pub async fn pull_digest(
    runtime: &Runtime,
    service: &Service,
    digest: &str,
) -> Result<Option<Image>, ServiceError> {
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
    Ok(before)
}

/// Puts the service's earlier version `digest` under its tag (a rollback):
/// the image is used from the host when it is there (the clean-up keeps the
/// newest versions and the rollback target, see `prune.rs`),
/// pulled by digest otherwise. Returns the image the tag named before.
pub async fn earlier(
    runtime: &Runtime,
    service: &Service,
    digest: &str,
) -> Result<Option<Image>, ServiceError> {
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
    Ok(before)
}

/// Points the service's local tag back at `image` after a failed deploy.
pub async fn restore_tag(runtime: &Runtime, service: &Service, image: &Image) {
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

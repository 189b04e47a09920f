//! Convergence after an interrupted deploy or takeover (a kill of the
//! daemon at any step): the first thing every pass of the pipeline does.
//! The proven container serves again; an unproven one is never adopted.

use tracing::warn;

use super::container::{name_taken, owned_by, short, unlabelled, PREV_SUFFIX, TAKEOVER_SUFFIX};
use super::{Runtime, ServiceError, STOP_GRACE};
use crate::engine::{labels, Container, Image};
use crate::plan::Service;

/// Cleans up after a deploy that was interrupted (for example by a kill of
/// the daemon), and returns true when there was one. Containers of this
/// service that carry another name are leftovers: a `<name>-next` (start
/// first) never took over and is removed. A `<name>-prev` (stop first) is
/// the version that was proven: the container under the service's name
/// never passed the gate, so it is removed and `-prev` takes the name back
/// and runs again; the caller then deploys the declared version through the
/// gate, as if the deploy had not begun.
pub async fn remove_strays(runtime: &Runtime, service: &Service) -> Result<bool, ServiceError> {
    let engine = runtime.engine.as_ref();
    let prev_name = format!("{}{PREV_SUFFIX}", service.name);
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
pub fn proven_image(interrupted: bool, service: &Service, container: &Container) -> Option<Image> {
    let same_spec =
        container.labels.get(labels::SPEC_HASH).map(String::as_str) == Some(&service.spec_hash);
    (interrupted && same_spec).then(|| Image {
        id: container.image_id.clone(),
        ..Image::default()
    })
}

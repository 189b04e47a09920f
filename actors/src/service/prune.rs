//! Image clean-up after a proven deploy: every deploy pulls an image, so a
//! year of continuous deployment would fill the disk. Once a deploy is
//! proven (its soak passed), the service's images of versions older than
//! the newest `[daemon] keep_images` it ran are removed.
//!
//! Only images this service's deploys pulled are candidates: a digest of the
//! service's deploy ledger, present on the host as `repository@digest` of
//! the service's own repository. Never removed:
//! - an image a container uses, running or stopped (Docker refuses, since
//!   the removal is never forced);
//! - the newest `keep_images` versions the service ran (a rolled-back
//!   digest never ran: the version it went back to did), and always the
//!   version `dispenser rollback` would go back to;
//! - an image built on the host or known by its id only, and any image
//!   Dispenser's ledger does not name for this service;
//! - an image another tag still names (only the digest reference goes).

use std::collections::BTreeSet;

use tracing::{debug, info, warn};

use super::container::{pinned, registry_digest};
use super::manual::{previous_good, QUARANTINE_HISTORY};
use super::Runtime;
use crate::engine::ImageRemoval;
use crate::ledger::{DeployOutcomeKind, DeployRecord, RecentDeploys};
use crate::plan::Service;

/// Removes the service's old images after `proven`, the deploy that just
/// succeeded (it may not be in the ledger yet); logs what it freed. Every
/// failure is logged and left: the clean-up never fails a deploy.
pub(super) async fn after_proven(runtime: &Runtime, service: &Service, proven: DeployRecord) {
    let Some(ledger) = &runtime.deploys else {
        return;
    };
    let history = ledger
        .recent
        .send(RecentDeploys {
            service: service.name.clone(),
            limit: QUARANTINE_HISTORY,
        })
        .await;
    let history: Vec<DeployRecord> = match history {
        Ok(Ok(history)) => std::iter::once(proven).chain(history).collect(),
        Ok(Err(err)) => {
            warn!(service = %service.name, error = %err, "cannot read the deploy history; no old image removed");
            return;
        }
        Err(err) => {
            warn!(service = %service.name, error = %err, "the ledger is unavailable; no old image removed");
            return;
        }
    };
    let engine = runtime.engine.as_ref();
    let reference = &service.container.image;
    let (mut removed, mut freed) = (0u64, 0u64);
    for digest in removable(&history, runtime.deploy.keep_images) {
        let image_ref = pinned(reference, &digest);
        let image = match engine.image(&image_ref).await {
            Ok(Some(image)) => image,
            Ok(None) => continue,
            Err(err) => {
                warn!(service = %service.name, image = %image_ref, error = %err, "cannot read an old image; left in place");
                continue;
            }
        };
        // Pulled from the service's repository by that digest, not built here.
        if registry_digest(reference, &image) != digest {
            continue;
        }
        match engine.remove_image(&image_ref).await {
            Ok(ImageRemoval::Deleted) => {
                removed += 1;
                freed += image.size;
                debug!(service = %service.name, image = %image_ref, bytes = image.size, "old image removed");
            }
            Ok(ImageRemoval::Untagged) => {
                debug!(service = %service.name, image = %image_ref, "old digest reference removed; another reference keeps the image");
            }
            Ok(ImageRemoval::InUse | ImageRemoval::Absent) => {}
            Err(err) => {
                warn!(service = %service.name, image = %image_ref, error = %err, "cannot remove an old image; left in place");
            }
        }
    }
    if removed > 0 {
        info!(service = %service.name, images = removed, freed_bytes = freed, keep = runtime.deploy.keep_images, "removed old images");
        crate::metrics::global().images_removed(&service.name, removed, freed);
    }
}

/// The digests of `history` (newest first) whose images may go: all it
/// names, less the newest `keep` versions the service ran and the version
/// a rollback would go back to. A version ran when a deploy to it
/// succeeded, or when a deploy replaced it (its `old_digest`).
pub(super) fn removable(history: &[DeployRecord], keep: usize) -> Vec<String> {
    let mut ran: Vec<&str> = Vec::new();
    for deploy in history {
        let new = deploy
            .new_digest
            .as_deref()
            .filter(|_| deploy.outcome == DeployOutcomeKind::Succeeded);
        for digest in [new, deploy.old_digest.as_deref()].into_iter().flatten() {
            if !digest.is_empty() && !ran.contains(&digest) {
                ran.push(digest);
            }
        }
    }
    let mut kept: BTreeSet<&str> = ran.iter().take(keep.max(1)).copied().collect();
    let current = ran.first().copied();
    let rollback_target = previous_good(history, current);
    if let Some(target) = &rollback_target {
        kept.insert(target);
    }
    let mut named: Vec<String> = Vec::new();
    for deploy in history {
        for digest in [deploy.new_digest.as_deref(), deploy.old_digest.as_deref()]
            .into_iter()
            .flatten()
        {
            if !digest.is_empty() && !kept.contains(digest) && !named.iter().any(|d| d == digest) {
                named.push(digest.to_string());
            }
        }
    }
    named
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::ledger::DeployTrigger;

    fn deploy(
        old: &str,
        new: &str,
        trigger: DeployTrigger,
        outcome: DeployOutcomeKind,
    ) -> DeployRecord {
        DeployRecord {
            service: "web".into(),
            trigger,
            old_digest: Some(old.into()),
            new_digest: Some(new.into()),
            started_at: Utc::now(),
            ended_at: Utc::now(),
            outcome,
            reason: None,
        }
    }

    use DeployOutcomeKind::{RolledBack, Succeeded};
    use DeployTrigger::{NewDigest, Rollback};

    #[test]
    fn the_newest_versions_that_ran_are_kept_and_older_ones_go() {
        // Newest first: d1 -> d2 -> d3 -> d4 -> d5.
        let history = [
            deploy("d4", "d5", NewDigest, Succeeded),
            deploy("d3", "d4", NewDigest, Succeeded),
            deploy("d2", "d3", NewDigest, Succeeded),
            deploy("d1", "d2", NewDigest, Succeeded),
        ];
        assert_eq!(removable(&history, 3), ["d2", "d1"]);
        assert_eq!(removable(&history, 10), Vec::<String>::new());
        // keep = 1 still keeps the rollback target.
        assert_eq!(removable(&history, 1), ["d3", "d2", "d1"]);
    }

    #[test]
    fn a_rolled_back_digest_goes_and_the_version_it_went_back_to_stays() {
        let history = [
            deploy("d3", "d9", NewDigest, RolledBack),
            deploy("d2", "d3", NewDigest, Succeeded),
            deploy("d1", "d2", NewDigest, Succeeded),
        ];
        assert_eq!(removable(&history, 2), ["d9", "d1"]);
    }

    #[test]
    fn after_an_operator_rollback_the_version_it_serves_and_its_rollback_target_stay() {
        // The operator rolled d3 back to d2: d2 serves, and `dispenser
        // rollback` from d2 would name d3, the version it replaced.
        let history = [
            deploy("d3", "d2", Rollback, Succeeded),
            deploy("d2", "d3", NewDigest, Succeeded),
            deploy("d1", "d2", NewDigest, Succeeded),
            deploy("d0", "d1", NewDigest, Succeeded),
        ];
        assert_eq!(removable(&history, 1), ["d1", "d0"]);
        assert_eq!(removable(&history, 3), ["d0"]);
    }
}

//! `RegistryWatcher`: continuous deployment's eyes. Every `poll_delay` (plus
//! a little jitter) it asks the registries for the digest of each watched
//! image, once per distinct image however many services share it, a bounded
//! number at once per registry, and reports what it found. It never pulls
//! and never touches a container: the service actors decide, comparing with
//! the digest their container was deployed from.
//!
//! Protocol:
//! - `PlanApplied(plan)` -> `()` (it subscribes to the supervisor): the
//!   watched images are the services with `watch = true` whose image is not
//!   pinned by digest, each once per `track` range; the delay is
//!   `settings.poll_delay`. What it has seen
//!   and the registries' back-offs survive a reload, and there is only ever
//!   one timer (a reload reschedules it, never adds a second loop).
//! - `GetWatched` -> `Vec<String>`: the canonical references being polled.
//!
//! It sends `NewDigest { image, digest, track, tag }` to a
//! `Recipient<NewDigest>` (the supervisor in production) for every image
//! that answered, every round. A plain watch asks for the digest of the
//! image's own tag (one HEAD). A `track` range first reads the repository's
//! tag list (all pages) and picks the newest tag in the range
//! (`registry::newest_in`),
//! then asks for that tag's digest, reported with the tag.
//!
//! Registry failures never stop anything: the failing registry (or image)
//! backs off exponentially, `429` and `Retry-After` are honoured, and one
//! warning is logged per failure streak, one info line when it recovers.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures_util::stream::{self, StreamExt};
use tracing::{debug, info, warn};

use crate::plan::{ImageRef, Plan, PlanApplied};
use crate::registry::{resolve, DigestSource, RegistryError, RemoteDigest};
use crate::supervisor::NewDigest;

/// Registry requests in flight at once for one registry.
pub const MAX_CONCURRENT_PER_REGISTRY: usize = 4;
/// Longest back-off of a failing registry or image.
pub const BACKOFF_MAX: Duration = Duration::from_secs(600);
/// The jitter added to each delay is at most this fraction of it...
const JITTER_DIVISOR: u32 = 10;
/// ...and at most this long.
const JITTER_MAX: Duration = Duration::from_secs(5);

/// One watched image: its reference and the semver range it tracks, if any.
#[derive(Debug, Clone)]
struct Watched {
    image: ImageRef,
    track: Option<String>,
}

/// The canonical references of the images being watched, sorted.
#[derive(Debug, Message)]
#[rtype(result = "Vec<String>")]
pub struct GetWatched;

/// The actor.
pub struct RegistryWatcher {
    source: Arc<dyn DigestSource>,
    report: Recipient<NewDigest>,
    /// Watched images, by canonical reference (and ` track <range>`).
    images: BTreeMap<String, Watched>,
    poll_delay: Duration,
    /// The last digest seen per image; kept across reloads.
    seen: HashMap<String, String>,
    /// Failure streaks, by `registry <host>` or `image <canonical>`.
    backoffs: HashMap<String, Backoff>,
    /// The last `ratelimit-remaining` per registry, to log changes only.
    ratelimit: HashMap<String, String>,
    /// The one pending timer of the next round.
    timer: Option<SpawnHandle>,
    /// A round is running; the next is scheduled when it ends.
    in_flight: bool,
}

/// A failure streak of a registry or an image.
#[derive(Debug, Clone)]
struct Backoff {
    failures: u32,
    until: Instant,
}

/// One image's answer in a round: the digest, and the tag it is of when
/// the image tracks a range.
type Answer = (
    String,
    Watched,
    Result<(RemoteDigest, Option<String>), RegistryError>,
);

impl RegistryWatcher {
    pub fn new(source: Arc<dyn DigestSource>, report: Recipient<NewDigest>) -> Self {
        RegistryWatcher {
            source,
            report,
            images: BTreeMap::new(),
            poll_delay: crate::plan::DEFAULT_POLL_DELAY,
            seen: HashMap::new(),
            backoffs: HashMap::new(),
            ratelimit: HashMap::new(),
            timer: None,
            in_flight: false,
        }
    }

    /// Replaces the pending timer with one that starts a round after `after`.
    fn schedule(&mut self, ctx: &mut Context<Self>, after: Duration) {
        if let Some(handle) = self.timer.take() {
            ctx.cancel_future(handle);
        }
        self.timer = Some(ctx.run_later(after, |watcher, ctx| {
            watcher.timer = None;
            watcher.start_round(ctx);
        }));
    }

    /// The delay before the next round, with jitter.
    fn next_delay(&self) -> Duration {
        let jitter_max = (self.poll_delay / JITTER_DIVISOR).min(JITTER_MAX);
        let jitter_ms = u64::try_from(jitter_max.as_millis()).unwrap_or(0);
        self.poll_delay + Duration::from_millis(fastrand::u64(0..=jitter_ms))
    }

    /// Checks every watched image not in back-off, then schedules the next round.
    fn start_round(&mut self, ctx: &mut Context<Self>) {
        if self.in_flight {
            return;
        }
        let now = Instant::now();
        let mut by_registry: BTreeMap<String, Vec<(String, Watched)>> = BTreeMap::new();
        for (key, watched) in &self.images {
            let image = &watched.image;
            let waiting = |streak: &str| {
                self.backoffs
                    .get(streak)
                    .is_some_and(|backoff| backoff.until > now)
            };
            if waiting(&registry_key(image)) || waiting(&image_key(key)) {
                continue;
            }
            by_registry
                .entry(image.registry_host().to_string())
                .or_default()
                .push((key.clone(), watched.clone()));
        }
        self.in_flight = true;
        let source = self.source.clone();
        let work = async move {
            let per_registry = by_registry.into_values().map(|images| {
                let source = source.clone();
                stream::iter(images)
                    .map(move |(key, watched)| {
                        let source = source.clone();
                        async move {
                            let answer =
                                resolve(source.as_ref(), &watched.image, watched.track.as_deref())
                                    .await;
                            (key, watched, answer)
                        }
                    })
                    .buffer_unordered(MAX_CONCURRENT_PER_REGISTRY)
                    .collect::<Vec<Answer>>()
            });
            futures_util::future::join_all(per_registry).await
        };
        ctx.spawn(work.into_actor(self).map(|answers, watcher, ctx| {
            watcher.in_flight = false;
            watcher.absorb(answers.into_iter().flatten().collect());
            let delay = watcher.next_delay();
            watcher.schedule(ctx, delay);
        }));
    }

    /// Records a round's answers: reports digests, updates the streaks.
    fn absorb(&mut self, answers: Vec<Answer>) {
        let now = Instant::now();
        // Each streak counts at most one failure per round.
        let mut failed: BTreeMap<String, (ImageRef, RegistryError)> = BTreeMap::new();
        for (key, watched, answer) in answers {
            let Watched { image, track } = watched;
            match answer {
                Ok((remote, tag)) => {
                    crate::metrics::global().registry_check("ok");
                    reached(&image, true);
                    self.recovered(&registry_key(&image), &image);
                    self.recovered(&image_key(&key), &image);
                    self.note_ratelimit(&image, remote.ratelimit_remaining.as_deref());
                    let shown_tag = tag.as_deref().unwrap_or("");
                    match self.seen.insert(key.clone(), remote.digest.clone()) {
                        Some(previous) if previous != remote.digest => {
                            info!(image = %image, tag = %shown_tag, digest = %remote.digest, previous = %previous, "new digest in the registry");
                        }
                        None => {
                            debug!(image = %image, tag = %shown_tag, digest = %remote.digest, "watching");
                        }
                        Some(_) => {}
                    }
                    self.report.do_send(NewDigest {
                        image,
                        digest: remote.digest,
                        track,
                        tag,
                    });
                }
                Err(err) => {
                    crate::metrics::global().registry_check("error");
                    reached(&image, err.registry_answered());
                    let streak = if err.is_registry_wide() {
                        registry_key(&image)
                    } else {
                        image_key(&key)
                    };
                    failed.entry(streak).or_insert((image, err));
                }
            }
        }
        for (streak, (image, err)) in failed {
            let backoff = self.backoffs.entry(streak).or_insert(Backoff {
                failures: 0,
                until: now,
            });
            backoff.failures += 1;
            let exponent = backoff.failures.min(16);
            let mut wait = self
                .poll_delay
                .saturating_mul(1 << exponent)
                .min(BACKOFF_MAX);
            if let Some(asked) = err.retry_after() {
                wait = wait.max(asked.min(BACKOFF_MAX));
            }
            backoff.until = now + wait;
            if backoff.failures == 1 {
                warn!(
                    registry = %image.registry,
                    image = %image,
                    error = %err,
                    "registry check failed; backing off (logged once until it recovers)"
                );
            } else {
                debug!(registry = %image.registry, image = %image, error = %err, failures = backoff.failures, wait_secs = wait.as_secs(), "registry check failed again");
            }
        }
    }

    /// Ends a failure streak, if there was one.
    fn recovered(&mut self, streak: &str, image: &ImageRef) {
        if let Some(backoff) = self.backoffs.remove(streak) {
            info!(registry = %image.registry, image = %image, failures = backoff.failures, "registry check works again");
        }
    }

    /// Logs `ratelimit-remaining` when it changes.
    fn note_ratelimit(&mut self, image: &ImageRef, remaining: Option<&str>) {
        let Some(remaining) = remaining else {
            return;
        };
        let registry = image.registry.clone();
        if self.ratelimit.get(&registry).map(String::as_str) != Some(remaining) {
            info!(registry = %registry, remaining = %remaining, "registry rate limit");
            self.ratelimit.insert(registry, remaining.to_string());
        }
    }
}

impl Actor for RegistryWatcher {
    type Context = Context<Self>;
}

impl Handler<PlanApplied> for RegistryWatcher {
    type Result = ();

    fn handle(&mut self, msg: PlanApplied, ctx: &mut Self::Context) -> Self::Result {
        let PlanApplied(plan) = msg;
        let first = self.timer.is_none() && !self.in_flight;
        self.images = watched_images(&plan);
        // Forget what no longer matters; keep everything about images still watched.
        self.seen.retain(|key, _| self.images.contains_key(key));
        self.backoffs.retain(|streak, _| {
            streak.starts_with("registry ") || self.images.contains_key(&streak["image ".len()..])
        });
        let delay_changed = plan.settings.poll_delay != self.poll_delay;
        self.poll_delay = plan.settings.poll_delay;
        info!(
            images = self.images.len(),
            delay_secs = self.poll_delay.as_secs_f64(),
            "registry watcher: watching"
        );
        if first {
            self.schedule(ctx, Duration::ZERO);
        } else if delay_changed && !self.in_flight {
            let delay = self.next_delay();
            self.schedule(ctx, delay);
        }
    }
}

impl Handler<GetWatched> for RegistryWatcher {
    type Result = Vec<String>;

    fn handle(&mut self, _msg: GetWatched, _ctx: &mut Self::Context) -> Self::Result {
        self.images.keys().cloned().collect()
    }
}

/// The distinct images of services that watch and are not pinned by
/// digest, once per tracked range.
fn watched_images(plan: &Plan) -> BTreeMap<String, Watched> {
    plan.services
        .values()
        .filter(|service| service.lifecycle.watch && service.container.image.digest.is_none())
        .map(|service| {
            let image = service.container.image.clone();
            let track = service.lifecycle.track.clone();
            let key = match &track {
                Some(range) => format!("{} track {range}", image.canonical()),
                None => image.canonical(),
            };
            (key, Watched { image, track })
        })
        .collect()
}

/// Writes a check's outcome on the dependencies board, by registry host.
fn reached(image: &ImageRef, reachable: bool) {
    let name = crate::dependencies::registry(image.registry_host());
    crate::dependencies::global().observe(&name, reachable, chrono::Utc::now());
}

fn registry_key(image: &ImageRef) -> String {
    format!("registry {}", image.registry_host())
}

fn image_key(canonical: &str) -> String {
    format!("image {canonical}")
}

#[cfg(test)]
mod tests;

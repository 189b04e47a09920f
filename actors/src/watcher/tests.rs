//! Unit tests of the watcher with a scripted digest source and a probe in
//! place of the supervisor: distinct images, one loop across reloads,
//! back-off and `Retry-After`.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;

use super::*;
use crate::plan::sample::{image_ref, plan, service};
use crate::plan::Service;

const DIGEST: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

/// Answers `DIGEST` unless told otherwise, and records every call.
#[derive(Default)]
struct Scripted {
    calls: Mutex<Vec<String>>,
    failures: Mutex<HashMap<String, RegistryError>>,
}

#[async_trait]
impl DigestSource for Scripted {
    async fn digest(&self, image: &ImageRef) -> Result<RemoteDigest, RegistryError> {
        let key = image.canonical();
        self.calls.lock().unwrap().push(key.clone());
        if let Some(err) = self.failures.lock().unwrap().get(&key) {
            return Err(err.clone());
        }
        Ok(RemoteDigest {
            digest: DIGEST.into(),
            ratelimit_remaining: None,
            fetched_with_get: false,
        })
    }

    async fn tags(&self, image: &ImageRef) -> Result<Vec<String>, RegistryError> {
        let key = format!("tags {}/{}", image.registry, image.repository);
        self.calls.lock().unwrap().push(key.clone());
        if let Some(err) = self.failures.lock().unwrap().get(&key) {
            return Err(err.clone());
        }
        Ok(["1.2.0", "v1.2.5", "1.3.0-rc.1", "2.0.0", "latest"]
            .map(String::from)
            .to_vec())
    }
}

impl Scripted {
    fn count(&self, key: &str) -> usize {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| *c == key)
            .count()
    }

    fn fail(&self, key: &str, err: RegistryError) {
        self.failures.lock().unwrap().insert(key.into(), err);
    }
}

/// Stands in for the supervisor: keeps every report.
struct Probe(Arc<Mutex<Vec<NewDigest>>>);

impl Actor for Probe {
    type Context = Context<Self>;
}

impl Handler<NewDigest> for Probe {
    type Result = ();

    fn handle(&mut self, msg: NewDigest, _ctx: &mut Self::Context) {
        self.0.lock().unwrap().push(msg);
    }
}

fn watching(name: &str, image: &str) -> Service {
    let mut service = service(name, image);
    service.lifecycle.watch = true;
    service
}

fn applied(services: Vec<Service>, delay_ms: u64) -> PlanApplied {
    let mut plan = plan("unit", services);
    plan.settings.poll_delay = Duration::from_millis(delay_ms);
    PlanApplied(Arc::new(plan))
}

fn start(source: Arc<Scripted>) -> (Addr<RegistryWatcher>, Arc<Mutex<Vec<NewDigest>>>) {
    let reports = Arc::new(Mutex::new(Vec::new()));
    let probe = Probe(reports.clone()).start();
    let watcher = RegistryWatcher::new(source, probe.recipient()).start();
    (watcher, reports)
}

fn unreachable() -> RegistryError {
    RegistryError::Unreachable {
        registry: "docker.io".into(),
        reason: "connection refused".into(),
    }
}

async fn sleep_ms(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

#[actix_rt::test]
async fn one_check_per_distinct_image_and_pinned_or_unwatched_never() {
    let source = Arc::new(Scripted::default());
    let (watcher, reports) = start(source.clone());
    let mut pinned = watching("e", "pinned:1");
    pinned.container.image.digest = Some(DIGEST.into());
    let services = vec![
        watching("a", "x:1"),
        watching("b", "x:1"),
        watching("c", "y:1"),
        service("d", "z:1"),
        pinned,
    ];
    watcher.send(applied(services, 100)).await.unwrap();
    sleep_ms(250).await;
    assert_eq!(
        watcher.send(GetWatched).await.unwrap(),
        vec!["docker.io/x:1", "docker.io/y:1"]
    );
    let x = source.count("docker.io/x:1");
    let y = source.count("docker.io/y:1");
    assert!((2..=3).contains(&x), "x checked {x} times");
    assert_eq!(x, y);
    assert_eq!(source.calls.lock().unwrap().len(), x + y);
    let reports = reports.lock().unwrap();
    assert_eq!(reports.len(), x + y);
    assert!(reports.iter().all(|r| r.digest == DIGEST));
    assert_eq!(reports[0].image, image_ref("x:1"));
}

#[actix_rt::test]
async fn reloads_keep_one_polling_loop_and_what_was_seen() {
    let source = Arc::new(Scripted::default());
    let (watcher, _) = start(source.clone());
    let services = || vec![watching("a", "x:1")];
    watcher.send(applied(services(), 100)).await.unwrap();
    for delay in [100, 100, 90, 100, 100] {
        sleep_ms(20).await;
        watcher.send(applied(services(), delay)).await.unwrap();
    }
    sleep_ms(500).await;
    // About six rounds in 600 ms; a second loop per reload would make dozens.
    let rounds = source.count("docker.io/x:1");
    assert!((4..=8).contains(&rounds), "{rounds} rounds");
}

#[actix_rt::test]
async fn a_failing_registry_backs_off_exponentially_and_recovers() {
    let source = Arc::new(Scripted::default());
    source.fail("docker.io/x:1", unreachable());
    source.fail("docker.io/y:1", unreachable());
    let (watcher, reports) = start(source.clone());
    watcher
        .send(applied(
            vec![watching("a", "x:1"), watching("b", "y:1")],
            50,
        ))
        .await
        .unwrap();
    sleep_ms(1000).await;
    // Without back-off: about 20 checks. With it: 0, ~150, ~400, ~850 ms.
    let x = source.count("docker.io/x:1");
    assert!((2..=5).contains(&x), "x checked {x} times");
    // One streak for the registry, not one per image: y follows x.
    let y = source.count("docker.io/y:1");
    assert_eq!(x, y);
    assert!(reports.lock().unwrap().is_empty());

    source.failures.lock().unwrap().clear();
    sleep_ms(1200).await;
    let after = source.count("docker.io/x:1");
    assert!(after > x + 3, "checks did not resume: {after}");
}

#[actix_rt::test]
async fn an_image_missing_does_not_slow_the_others() {
    let source = Arc::new(Scripted::default());
    source.fail(
        "docker.io/x:1",
        RegistryError::NotFound {
            registry: "docker.io".into(),
            repository: "x".into(),
            tag: "1".into(),
        },
    );
    let (watcher, _) = start(source.clone());
    watcher
        .send(applied(
            vec![watching("a", "x:1"), watching("b", "y:1")],
            50,
        ))
        .await
        .unwrap();
    sleep_ms(600).await;
    let x = source.count("docker.io/x:1");
    let y = source.count("docker.io/y:1");
    assert!(y >= 8, "y checked {y} times");
    assert!(x <= 4, "x checked {x} times");
}

#[actix_rt::test]
async fn retry_after_is_honoured() {
    let source = Arc::new(Scripted::default());
    source.fail(
        "docker.io/x:1",
        RegistryError::RateLimited {
            registry: "docker.io".into(),
            retry_after: Some(Duration::from_secs(2)),
        },
    );
    let (watcher, _) = start(source.clone());
    watcher
        .send(applied(vec![watching("a", "x:1")], 50))
        .await
        .unwrap();
    sleep_ms(700).await;
    assert_eq!(source.count("docker.io/x:1"), 1);
}

#[actix_rt::test]
async fn a_tracked_range_reads_the_tag_list_and_reports_the_newest_tag_in_it() {
    let source = Arc::new(Scripted::default());
    let (watcher, reports) = start(source.clone());
    let mut tracking = watching("t", "x:1.2.0");
    tracking.lifecycle.track = Some("^1.2".into());
    // The same image watched plainly is a second, separate check.
    let services = vec![tracking, watching("p", "x:1.2.0")];
    watcher.send(applied(services, 100)).await.unwrap();
    sleep_ms(250).await;
    assert_eq!(
        watcher.send(GetWatched).await.unwrap(),
        vec!["docker.io/x:1.2.0", "docker.io/x:1.2.0 track ^1.2"]
    );
    // The newest in ^1.2 of 1.2.0, v1.2.5, 1.3.0-rc.1 and 2.0.0 is v1.2.5.
    assert!(source.count("tags docker.io/x") >= 1);
    assert!(source.count("docker.io/x:v1.2.5") >= 1);
    assert_eq!(source.count("docker.io/x:2.0.0"), 0);
    let reports = reports.lock().unwrap();
    let tracked = reports
        .iter()
        .find(|r| r.track.is_some())
        .expect("a tracked report");
    assert_eq!(tracked.track.as_deref(), Some("^1.2"));
    assert_eq!(tracked.tag.as_deref(), Some("v1.2.5"));
    assert_eq!(tracked.image, image_ref("x:1.2.0"));
    assert!(reports.iter().any(|r| r.track.is_none() && r.tag.is_none()));
}

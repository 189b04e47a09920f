//! Unit tests of continuous deployment over the fake engine: a new digest
//! reaches the services that watch the image, is pulled by digest, tagged
//! and deployed; the same digest does nothing; a failed deploy backs off;
//! an on-trigger service is started by its first new digest; a soak holds no
//! mailbox and ends by a newer digest or by a Docker event; digests reported
//! during a deploy coalesce, so only the newest is deployed next.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::{Actor, Addr};

use super::*;
use crate::engine::fake::FakeEngine;
use crate::engine::{ContainerState, Image};
use crate::plan::sample::{image_ref, plan, service};
use crate::plan::{Initialize, Service};
use crate::service::container::registry_digest;
use crate::service::state::State;

const INSTANCE: &str = "unit";
const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

fn watching(name: &str, image: &str) -> Service {
    let mut service = service(name, image);
    service.lifecycle.watch = true;
    service
}

async fn started(engine: &Arc<FakeEngine>, services: Vec<Service>) -> Addr<Supervisor> {
    let supervisor = Supervisor::new(engine.clone()).start();
    let report = supervisor
        .send(Apply(plan(INSTANCE, services)))
        .await
        .unwrap();
    assert!(report.is_clean(), "{:?}", report.failures);
    supervisor
}

/// Sends a digest for `image` and waits until the engine's calls settle.
async fn report(supervisor: &Addr<Supervisor>, engine: &FakeEngine, image: &str, digest: &str) {
    supervisor
        .send(NewDigest {
            image: image_ref(image),
            digest: digest.into(),
        })
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut last = usize::MAX;
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = engine.calls().len();
        if now == last || Instant::now() > deadline {
            return;
        }
        last = now;
    }
}

fn engine() -> Arc<FakeEngine> {
    let engine = Arc::new(FakeEngine::new());
    engine.add_local_image("web:1", "sha256:img-old");
    engine.add_local_image("other:1", "sha256:img-other");
    engine.add_registry_image(&format!("docker.io/web@{D1}"), "sha256:img-d1");
    engine.add_registry_image(&format!("docker.io/web@{D2}"), "sha256:img-d2");
    engine
}

#[actix_rt::test]
async fn new_digest_is_pulled_by_digest_tagged_and_deployed() {
    let engine = engine();
    let supervisor = started(
        &engine,
        vec![
            watching("web", "web:1"),
            watching("web2", "web:1"),
            service("quiet", "web:1"),
            watching("other", "other:1"),
        ],
    )
    .await;
    engine.clear_calls();
    report(&supervisor, &engine, "web:1", D1).await;
    let calls = engine.calls_of(&["pull", "tag", "stop", "remove", "create", "start"]);
    // Both watchers of web:1 deploy; `quiet` (not watching) and `other` do not.
    for name in ["web", "web2"] {
        let pull = format!("pull docker.io/web@{D1}");
        assert!(calls.contains(&pull), "{calls:?}");
        // Stop-first (no proxy): the old container steps aside as
        // `<name>-prev` (removed after the soak) while the new one starts.
        for step in ["stop {name}-prev", "create {name}", "start {name}"] {
            let step = step.replace("{name}", name);
            assert!(calls.contains(&step), "{calls:?}");
        }
        let container = engine.container_named(name).unwrap();
        assert_eq!(container.image_id, "sha256:img-d1");
        assert_eq!(container.labels["dispenser.image-digest"], D1);
        assert_eq!(container.state, ContainerState::Running);
    }
    assert!(calls.contains(&format!("tag docker.io/web@{D1} web:1")));
    assert!(
        !calls.iter().any(|c| c == "pull web:1"),
        "the tag was pulled: {calls:?}"
    );
    assert!(!calls
        .iter()
        .any(|c| c.ends_with("quiet") || c.ends_with("other")));
    // Pull before stop: the old container is only removed once the image is here.
    let pull = calls.iter().position(|c| c.starts_with("pull")).unwrap();
    let stop = calls.iter().position(|c| c.starts_with("stop")).unwrap();
    assert!(pull < stop, "{calls:?}");

    engine.clear_calls();
    report(&supervisor, &engine, "web:1", D1).await;
    assert!(
        engine.calls().is_empty(),
        "same digest: {:?}",
        engine.calls()
    );
}

#[actix_rt::test]
async fn failed_pull_keeps_the_old_container_and_backs_off() {
    let engine = engine();
    let supervisor = started(&engine, vec![watching("web", "web:1")]).await;
    let before = engine.container_named("web").unwrap();
    let missing = "sha256:3333333333333333333333333333333333333333333333333333333333333333";
    engine.clear_calls();
    report(&supervisor, &engine, "web:1", missing).await;
    assert_eq!(
        engine.calls_of(&["pull", "stop", "remove", "create"]).len(),
        1
    );
    assert_eq!(engine.container_named("web"), Some(before.clone()));
    // The old container still runs, and the status says so.
    let status = supervisor.send(GetStatus).await.unwrap();
    assert_eq!(status[0].state, State::Running, "{status:?}");
    assert_eq!(status[0].container_id.as_deref(), Some(before.id.as_str()));

    // The same digest on the next polls: not tried again within the back-off.
    engine.clear_calls();
    for _ in 0..3 {
        report(&supervisor, &engine, "web:1", missing).await;
    }
    assert!(engine.calls().is_empty(), "{:?}", engine.calls());

    // A newer digest is tried at once.
    report(&supervisor, &engine, "web:1", D2).await;
    assert_eq!(
        engine.container_named("web").unwrap().image_id,
        "sha256:img-d2"
    );
}

#[actix_rt::test]
async fn failed_start_does_not_advance_the_digest() {
    let engine = engine();
    let supervisor = started(&engine, vec![watching("web", "web:1")]).await;
    let before = engine.container_named("web").unwrap();
    engine.fail_once("start", "web");
    report(&supervisor, &engine, "web:1", D1).await;
    // The new container never started: the old one is put back and serves.
    let status = supervisor.send(GetStatus).await.unwrap();
    assert_eq!(status[0].state, State::Running, "{status:?}");
    let now = engine.container_named("web").unwrap();
    assert_eq!(now.id, before.id);
    assert_ne!(now.labels["dispenser.image-digest"], D1);
    // Not tried again on the next polls: the digest was not recorded as deployed.
    engine.clear_calls();
    report(&supervisor, &engine, "web:1", D1).await;
    assert!(engine.calls().is_empty(), "{:?}", engine.calls());
}

#[actix_rt::test]
async fn on_trigger_service_is_started_by_its_first_new_digest() {
    let engine = engine();
    let mut job = watching("web", "web:1");
    job.lifecycle.initialize = Initialize::OnTrigger;
    let supervisor = started(&engine, vec![job]).await;
    assert_eq!(
        engine.container_named("web").unwrap().state,
        ContainerState::Created
    );
    report(&supervisor, &engine, "web:1", D1).await;
    let container = engine.container_named("web").unwrap();
    assert_eq!(container.state, ContainerState::Running);
    assert_eq!(container.image_id, "sha256:img-d1");
}

#[test]
fn the_label_digest_is_the_one_of_the_images_own_repository() {
    let reference = crate::plan::ImageRef::parse("127.0.0.1:5000/team/app:latest").unwrap();
    let image = Image {
        id: "sha256:id".into(),
        repo_digests: vec![
            format!("ghcr.io/team/app@{D1}"),
            format!("127.0.0.1:5000/team/app@{D2}"),
        ],
        ..Image::default()
    };
    assert_eq!(registry_digest(&reference, &image), D2);
    let local = Image {
        id: "sha256:id".into(),
        repo_digests: vec![format!("ghcr.io/team/app@{D1}")],
        ..Image::default()
    };
    assert_eq!(registry_digest(&reference, &local), "sha256:id");
    let hub = crate::plan::ImageRef::parse("nginx").unwrap();
    let pulled = Image {
        id: "sha256:id".into(),
        repo_digests: vec![format!("nginx@{D1}")],
        ..Image::default()
    };
    assert_eq!(registry_digest(&hub, &pulled), D1);
}

/// Applies `services` with a soak of `soak`.
async fn started_soaking(
    engine: &Arc<FakeEngine>,
    services: Vec<Service>,
    soak: Duration,
) -> Addr<Supervisor> {
    let supervisor = Supervisor::new(engine.clone()).start();
    let mut plan = plan(INSTANCE, services);
    plan.settings.deploy.soak = soak;
    let report = supervisor.send(Apply(plan)).await.unwrap();
    assert!(report.is_clean(), "{:?}", report.failures);
    supervisor
}

/// Waits (up to 5 s) until the service's container runs `digest` and the
/// service is `Running`, not busy; returns how long that took.
async fn serving(supervisor: &Addr<Supervisor>, engine: &FakeEngine, digest: &str) -> Duration {
    let began = Instant::now();
    loop {
        let statuses = supervisor.send(GetStatus).await.unwrap();
        let state = statuses
            .into_iter()
            .find(|s| s.name == "web")
            .unwrap()
            .state;
        let label = engine
            .container_named("web")
            .map(|c| c.labels["dispenser.image-digest"].clone());
        if state == State::Running && label.as_deref() == Some(digest) {
            return began.elapsed();
        }
        assert!(
            began.elapsed() < Duration::from_secs(5),
            "{state:?} {label:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[actix_rt::test]
async fn a_soak_holds_no_mailbox_and_a_newer_digest_deploys_at_once_against_the_proven_one() {
    let engine = engine();
    let supervisor = started_soaking(
        &engine,
        vec![watching("web", "web:1")],
        Duration::from_secs(600),
    )
    .await;
    let proven = engine.container_named("web").unwrap();
    report(&supervisor, &engine, "web:1", D1).await;
    // D1 serves and soaks; the proven container waits as `web-prev`, and
    // the service is not busy for the soak's 600 s.
    serving(&supervisor, &engine, D1).await;
    assert!(engine.container_named("web-prev").is_some());

    // A newer digest, well inside the 600 s soak: D1 leaves, the proven
    // one comes back, and D2 is deployed against it at once.
    engine.clear_calls();
    let began = Instant::now();
    report(&supervisor, &engine, "web:1", D2).await;
    assert!(
        began.elapsed() < Duration::from_secs(5),
        "{:?}",
        began.elapsed()
    );
    let calls = engine.calls_of(&["rename", "pull", "create"]);
    assert_eq!(
        calls,
        [
            "rename web-prev web".to_string(),
            format!("pull docker.io/web@{D2}"),
            "rename web web-prev".to_string(),
            "create web".to_string(),
        ]
    );
    let prev = engine.container_named("web-prev").unwrap();
    assert_eq!(prev.id, proven.id, "D2's way back is the proven version");
}

#[actix_rt::test]
async fn a_crash_during_the_soak_reported_by_docker_rolls_back_and_quarantines() {
    let engine = engine();
    let supervisor = started_soaking(
        &engine,
        vec![watching("web", "web:1")],
        Duration::from_secs(600),
    )
    .await;
    let proven = engine.container_named("web").unwrap();
    report(&supervisor, &engine, "web:1", D1).await;
    serving(&supervisor, &engine, D1).await;
    let soaking = engine.container_named("web").unwrap();
    assert_ne!(soaking.id, proven.id);

    // Docker reports the new container's exit: no polling, the event ends the soak.
    engine.update_container("web", |c| c.state = ContainerState::Exited { code: 3 });
    supervisor
        .send(crate::docker_events::DockerEvent(
            crate::engine::ContainerEvent {
                id: soaking.id.clone(),
                name: "web".into(),
                service: Some("web".into()),
                kind: crate::engine::EventKind::Die { exit_code: Some(3) },
            },
        ))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while engine.container_named("web").map(|c| c.id) != Some(proven.id.clone()) {
        assert!(Instant::now() < deadline, "{:?}", engine.calls());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let back = engine.container_named("web").unwrap();
    assert_eq!(back.state, ContainerState::Running);
    assert!(engine.container_named("web-prev").is_none());
    assert_eq!(engine.containers().len(), 1);

    // D1 is quarantined: reported again, nothing is tried.
    engine.clear_calls();
    report(&supervisor, &engine, "web:1", D1).await;
    assert!(
        engine.calls_of(&["pull", "create"]).is_empty(),
        "{:?}",
        engine.calls()
    );
}

#[actix_rt::test]
async fn digests_reported_during_a_deploy_coalesce_and_only_the_newest_is_deployed_next() {
    const D3: &str = "sha256:3333333333333333333333333333333333333333333333333333333333333333";
    const D4: &str = "sha256:4444444444444444444444444444444444444444444444444444444444444444";
    let engine = engine();
    engine.add_registry_image(&format!("docker.io/web@{D3}"), "sha256:img-d3");
    engine.add_registry_image(&format!("docker.io/web@{D4}"), "sha256:img-d4");
    let supervisor = started(&engine, vec![watching("web", "web:1")]).await;
    // Each deploy takes a while (its stop), so D2, D3 and D4 are all
    // reported while D1's deploy is still running.
    engine.slow_stops(Duration::from_millis(800));
    engine.clear_calls();
    for digest in [D1, D2, D3, D4] {
        supervisor
            .send(NewDigest {
                image: image_ref("web:1"),
                digest: digest.into(),
            })
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    serving(&supervisor, &engine, D4).await;
    let pulls = engine.calls_of(&["pull"]);
    assert_eq!(
        pulls,
        [
            format!("pull docker.io/web@{D1}"),
            format!("pull docker.io/web@{D4}"),
        ],
        "D2 and D3 were superseded while D1 deployed"
    );
}

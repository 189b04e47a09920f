//! Tests of the replace paths on the fake engine, with the real proxy router
//! and route table: the order of steps, the swap, and rollbacks.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use super::*;
use crate::engine::fake::FakeEngine;
use crate::engine::Engine;
use crate::plan::{sample, DeploySettings, Healthcheck, PlanApplied, Route, TlsSource};
use crate::proxy::router::ProxyRouter;
use crate::proxy::table::{Lookup, SharedTable, Upstream};
use crate::service::container::container_labels;
use crate::service::StatusBoard;

const IMAGE: &str = "web:1";

fn routed() -> Service {
    let mut service = sample::service("web", IMAGE);
    service.route = Some(Route {
        host: "app.test".into(),
        path: "/".into(),
        service_port: 8080,
        health_path: None,
        tls: TlsSource::Automatic,
        challenge: None,
        rules: Default::default(),
    });
    // A healthcheck makes readiness the fake engine's health, not a probe.
    service.container.healthcheck = Some(Healthcheck {
        test: vec!["CMD".into(), "true".into()],
        interval: None,
        timeout: None,
        retries: None,
        start_period: None,
    });
    service
}

/// A runtime on `engine` whose endpoints go to a real router publishing into `table`.
async fn runtime(engine: Arc<FakeEngine>, service: &Service, table: &SharedTable) -> Runtime {
    let plan = sample::plan("test", vec![service.clone()]);
    let router = ProxyRouter::new(table.clone()).start();
    router
        .send(PlanApplied(Arc::new(plan.clone())))
        .await
        .unwrap();
    Runtime {
        engine,
        instance: "test".into(),
        default_network: plan.settings.default_network.clone(),
        status: StatusBoard::default(),
        ledger: None,
        endpoints: Some(router.recipient()),
        credentials: None,
        deploys: None,
        in_flight: None,
        registry: None,
        stopping: Default::default(),
        newest_digest: Default::default(),
        deploy: DeploySettings {
            ready_timeout: Duration::from_secs(5),
            drain_timeout: Duration::from_secs(1),
            soak: Duration::ZERO,
            ..DeploySettings::default()
        },
        docker: Default::default(),
    }
}

/// Creates and starts the service's current container; returns it.
async fn running(engine: &FakeEngine, runtime: &Runtime, service: &Service) -> Container {
    let request = CreateRequest {
        name: &service.name,
        service,
        image: &service.container.image,
        default_network: &runtime.default_network,
        labels: container_labels(&runtime.instance, service, "sha256:old".into()),
    };
    let id = engine.create(&request).await.unwrap();
    engine.start(&id).await.unwrap();
    runtime.report_endpoint(&service.name, engine.inspect(&id).await.unwrap().as_ref());
    // Let the router take the endpoint before the test goes on.
    tokio::time::sleep(Duration::from_millis(20)).await;
    engine.inspect(&id).await.unwrap().unwrap()
}

/// What a start-first test begins with: the routed `web` running its first
/// container (`sha256:old`) on the fake engine, healthy once running, routed
/// by a real router, with the engine's calls so far cleared.
struct Started {
    engine: Arc<FakeEngine>,
    service: Service,
    table: SharedTable,
    runtime: Runtime,
    old: Container,
    old_ip: String,
}

/// Starts `web`; `next` sets up how the new container `web-next` behaves.
async fn started(next: impl FnOnce(&FakeEngine)) -> Started {
    let engine = Arc::new(FakeEngine::new());
    engine.add_local_image(IMAGE, "sha256:i1");
    engine.healthy_when_running("web");
    next(&engine);
    let service = routed();
    let table = SharedTable::default();
    let runtime = runtime(engine.clone(), &service, &table).await;
    let old = running(&engine, &runtime, &service).await;
    let old_ip = old.addresses[&runtime.default_network.name].to_string();
    engine.clear_calls();
    Started {
        engine,
        service,
        table,
        runtime,
        old,
        old_ip,
    }
}

/// `web-next` becomes healthy once running.
fn healthy_next(engine: &FakeEngine) {
    engine.healthy_when_running("web-next");
}

/// The id of a replace that finished (no soak to watch).
fn done(swapped: Result<Swapped, RolloutError>) -> String {
    match swapped {
        Ok(Swapped::Done(id)) => id,
        other => panic!("not done: {other:?}"),
    }
}

fn routed_to(table: &SharedTable) -> Option<String> {
    match table.load().lookup("app.test", "/") {
        Lookup::Found(entry) => match &entry.upstream {
            Upstream::Ready { address, .. } => Some(address.ip().to_string()),
            _ => None,
        },
        _ => None,
    }
}

/// The IP of the route's fallback: the previous container, up while the
/// new one soaks.
fn fallback_of(table: &SharedTable) -> Option<String> {
    match table.load().lookup("app.test", "/") {
        Lookup::Found(entry) => match &entry.upstream {
            Upstream::Ready {
                fallback: Some(fallback),
                ..
            } => Some(fallback.address.ip().to_string()),
            _ => None,
        },
        _ => None,
    }
}

#[actix_rt::test]
async fn start_first_swaps_then_retires_the_old_container() {
    let Started {
        engine,
        service,
        table,
        runtime,
        old,
        ..
    } = started(healthy_next).await;
    assert!(starts_first(&runtime, &service, Some(&old)));

    let id = done(replace(&runtime, &service, Some(&old), "sha256:new".into(), true).await);
    assert_eq!(
        engine.calls_of(&["create", "start", "stop", "remove", "rename"]),
        [
            "create web-next",
            "start web-next",
            "stop web",
            "remove web",
            "rename web-next web"
        ]
    );
    let new = engine.container_named("web").unwrap();
    assert_eq!(new.id, id);
    assert_eq!(new.labels[labels::IMAGE_DIGEST], "sha256:new");
    let new_ip = new.addresses[&runtime.default_network.name].to_string();
    assert_eq!(routed_to(&table), Some(new_ip));
    assert_eq!(engine.containers().len(), 1);
}

#[actix_rt::test]
async fn a_new_container_that_exits_is_removed_and_the_old_one_keeps_the_route() {
    let Started {
        engine,
        service,
        table,
        runtime,
        old,
        old_ip,
    } = started(|engine| engine.exits_with("web-next", 3)).await;

    let err = replace(&runtime, &service, Some(&old), "sha256:bad".into(), true)
        .await
        .unwrap_err();
    match err {
        RolloutError::RolledBack { reason } => assert!(reason.contains("code 3"), "{reason}"),
        other => panic!("expected a rollback, got {other:?}"),
    }
    assert!(
        engine.calls_of(&["stop"]).is_empty(),
        "the old one never stops"
    );
    let left = engine.containers();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].id, old.id);
    assert_eq!(left[0].state, ContainerState::Running);
    assert_eq!(routed_to(&table), Some(old_ip));
}

#[actix_rt::test]
async fn stop_first_puts_the_previous_container_back_when_the_new_one_fails() {
    let engine = Arc::new(FakeEngine::new());
    engine.add_local_image(IMAGE, "sha256:i1");
    let mut service = routed();
    service.container.ports = vec![crate::plan::PortBinding {
        host: 8080,
        container: 8080,
    }];
    service.container.healthcheck = None;
    let table = SharedTable::default();
    let runtime = runtime(engine.clone(), &service, &table).await;
    let old = running(&engine, &runtime, &service).await;
    assert!(!starts_first(&runtime, &service, Some(&old)));
    // The new container fails to start at all.
    engine.fail_once("start", "web");
    engine.clear_calls();

    let err = replace(&runtime, &service, Some(&old), "sha256:bad".into(), false)
        .await
        .unwrap_err();
    assert!(matches!(err, RolloutError::RolledBack { .. }));
    assert_eq!(
        engine.calls_of(&["stop", "rename", "create", "start", "remove"]),
        [
            "rename web web-prev",
            "stop web-prev",
            "create web",
            "start web",
            "remove web",
            "rename web-prev web",
            "start web"
        ]
    );
    let back = engine.container_named("web").unwrap();
    assert_eq!(back.id, old.id);
    assert_eq!(back.state, ContainerState::Running);
}

/// Cancels the runtime's stop token once `name` is running (so the gate
/// is in progress), from a task of its own.
fn stop_once_running(engine: Arc<FakeEngine>, runtime: &Runtime, name: &'static str) {
    let stopping = runtime.stopping.clone();
    actix_rt::spawn(async move {
        loop {
            let running = engine
                .container_named(name)
                .is_some_and(|c| c.state == ContainerState::Running);
            if running {
                stopping.cancel();
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
}

#[actix_rt::test]
async fn a_soak_is_left_to_watch_and_a_revert_gives_the_old_container_the_traffic_back() {
    let Started {
        engine,
        service,
        table,
        mut runtime,
        old,
        old_ip,
    } = started(healthy_next).await;
    runtime.deploy.soak = Duration::from_secs(600);

    // The replace ends at the swap: the soak is the caller's to watch.
    let began = std::time::Instant::now();
    let swapped = replace(&runtime, &service, Some(&old), "sha256:new".into(), true).await;
    let Ok(Swapped::Soaking(soak)) = swapped else {
        panic!("no soak to watch: {swapped:?}");
    };
    assert!(
        began.elapsed() < Duration::from_secs(5),
        "{:?}",
        began.elapsed()
    );
    assert_eq!(soak.period, Duration::from_secs(600));
    assert_ne!(
        routed_to(&table),
        Some(old_ip.clone()),
        "the new one serves"
    );
    assert_eq!(
        fallback_of(&table),
        Some(old_ip.clone()),
        "the old one is the fallback while the new one soaks"
    );
    assert_eq!(judge(&runtime, &soak).await, Verdict::Holds);
    // A restart Docker made is a failure of the soak.
    engine.update_container("web-next", |c| c.started_at = "later".into());
    assert!(
        matches!(judge(&runtime, &soak).await, Verdict::Fails(why) if why.contains("restarted"))
    );

    revert(&runtime, &service, &soak).await.unwrap();
    assert_eq!(
        engine.calls_of(&["create", "start", "stop", "remove", "rename"]),
        ["create web-next", "start web-next", "remove web-next"]
    );
    assert_eq!(routed_to(&table), Some(old_ip), "the old container serves");
    assert_eq!(fallback_of(&table), None);
    let left = engine.containers();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].id, old.id);
    assert_eq!(left[0].state, ContainerState::Running);
}

#[actix_rt::test]
async fn a_promoted_soak_leaves_the_route_no_fallback_to_the_stopped_container() {
    let Started {
        service,
        table,
        mut runtime,
        old,
        old_ip,
        ..
    } = started(healthy_next).await;
    runtime.deploy.soak = Duration::from_secs(600);
    let swapped = replace(&runtime, &service, Some(&old), "sha256:new".into(), true).await;
    let Ok(Swapped::Soaking(soak)) = swapped else {
        panic!("no soak to watch: {swapped:?}");
    };
    assert_eq!(fallback_of(&table), Some(old_ip));

    let id = promote(&runtime, &service, &soak).await.unwrap();
    assert_eq!(id, soak.id);
    assert!(routed_to(&table).is_some(), "the new one serves");
    assert_eq!(fallback_of(&table), None, "the old one is gone");
}

#[actix_rt::test]
async fn a_stop_during_the_drain_does_not_wait_for_the_soak() {
    let Started {
        engine,
        service,
        table,
        mut runtime,
        old,
        old_ip,
    } = started(healthy_next).await;
    runtime.deploy.soak = Duration::from_secs(600);
    stop_once_running(engine.clone(), &runtime, "web-next");

    let err = replace(&runtime, &service, Some(&old), "sha256:new".into(), true)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            RolloutError::Abandoned {
                phase: "soak" | "ready"
            }
        ),
        "{err:?}"
    );
    assert_eq!(routed_to(&table), Some(old_ip), "the old container serves");
    assert_eq!(fallback_of(&table), None);
    let left = engine.containers();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].id, old.id);
}

#[actix_rt::test]
async fn a_stop_during_a_stop_first_gate_puts_the_previous_container_back() {
    let engine = Arc::new(FakeEngine::new());
    engine.add_local_image(IMAGE, "sha256:i1");
    let mut service = routed();
    service.container.ports = vec![crate::plan::PortBinding {
        host: 8080,
        container: 8080,
    }];
    let table = SharedTable::default();
    let mut runtime = runtime(engine.clone(), &service, &table).await;
    runtime.deploy.soak = Duration::from_secs(600);
    let old = running(&engine, &runtime, &service).await;
    engine.clear_calls();
    // The new container never turns healthy; the stop lands in its gate.
    let stopping = runtime.stopping.clone();
    actix_rt::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        stopping.cancel();
    });

    let err = replace(&runtime, &service, Some(&old), "sha256:new".into(), true)
        .await
        .unwrap_err();
    assert!(
        matches!(err, RolloutError::Abandoned { phase: "gate" }),
        "{err:?}"
    );
    assert_eq!(
        engine.calls_of(&["stop", "rename", "create", "start", "remove"]),
        [
            "rename web web-prev",
            "stop web-prev",
            "create web",
            "start web",
            "remove web",
            "rename web-prev web",
            "start web"
        ]
    );
    let back = engine.container_named("web").unwrap();
    assert_eq!(back.id, old.id);
    assert_eq!(back.state, ContainerState::Running);
}

#[actix_rt::test]
async fn a_digest_superseded_during_its_gate_never_takes_traffic() {
    let Started {
        engine,
        service,
        table,
        mut runtime,
        old,
        old_ip,
    } = started(healthy_next).await;
    let (newest, reading) = crate::service::NewestDigest::channel();
    runtime.newest_digest = reading;
    // Reported before the gate ended.
    newest.send_replace(Some("sha256:newer".into()));
    let err = replace(&runtime, &service, Some(&old), "sha256:new".into(), true)
        .await
        .unwrap_err();
    assert!(matches!(err, RolloutError::Superseded { .. }), "{err:?}");
    assert_eq!(routed_to(&table), Some(old_ip));
    assert_eq!(engine.containers().len(), 1);
}

#[actix_rt::test]
async fn nothing_is_replaced_once_stopping_began() {
    let Started {
        engine,
        service,
        runtime,
        old,
        ..
    } = started(|_| {}).await;
    runtime.stopping.cancel();
    let err = replace(&runtime, &service, Some(&old), "sha256:new".into(), true)
        .await
        .unwrap_err();
    assert!(
        matches!(err, RolloutError::Abandoned { phase: "start" }),
        "{err:?}"
    );
    assert_eq!(
        engine.calls_of(&["create", "start", "stop", "remove", "rename"]),
        Vec::<String>::new()
    );
}

/// The calls of a retry, through the gate, of a new image that never
/// becomes healthy, after an interrupted stop-first replace: rolled back, and
/// the local tag pointed back at the proven image.
const RETRIED_THROUGH_THE_GATE: [&str; 8] = [
    "rename web web-prev",
    "stop web-prev",
    "create web",
    "start web",
    "remove web",
    "rename web-prev web",
    "start web",
    "tag sha256:i1 web:1",
];

/// What a kill during a stop-first replace of `web` leaves: the proven
/// container (image i1) renamed `web-prev`, stopped when `stopped`, and the
/// local tag already moved to the new image i2. No route (so stop-first)
/// and a healthcheck that never passes on the fake.
async fn interrupted_stop_first(
    engine: &Arc<FakeEngine>,
    stopped: bool,
) -> (Service, Runtime, Container) {
    engine.add_local_image(IMAGE, "sha256:i1");
    // Docker resolves an image id as a reference.
    engine.add_local_image("sha256:i1", "sha256:i1");
    let mut service = routed();
    service.route = None;
    let table = SharedTable::default();
    let mut runtime = runtime(engine.clone(), &service, &table).await;
    runtime.deploy.ready_timeout = Duration::from_millis(300);
    let proven = running(engine, &runtime, &service).await;
    if stopped {
        engine.stop(&proven.id, Duration::ZERO).await.unwrap();
    }
    engine.rename(&proven.id, "web-prev").await.unwrap();
    engine.add_local_image(IMAGE, "sha256:i2");
    (service, runtime, proven)
}

/// Reconciles after the interruption: the retry is rolled back, and the
/// engine calls (of the kinds that matter here) are `before` then
/// `RETRIED_THROUGH_THE_GATE`. The proven container runs as `web`, alone,
/// and the tag names its image again.
async fn assert_retried_and_rolled_back(
    engine: &FakeEngine,
    runtime: &Runtime,
    service: &Service,
    proven: &Container,
    before: &[&str],
) {
    let err = crate::service::pipeline::run(
        runtime,
        service,
        &crate::service::Job::Reconcile {
            quarantined: Default::default(),
        },
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ServiceError::RolledBack { .. }), "{err}");
    assert_eq!(
        engine.calls_of(&["stop", "rename", "create", "start", "remove", "tag"]),
        [before, &RETRIED_THROUGH_THE_GATE[..]].concat()
    );
    let back = engine.container_named("web").unwrap();
    assert_eq!(back.id, proven.id);
    assert_eq!(back.state, ContainerState::Running);
    assert_eq!(engine.containers().len(), 1);
    let tagged = engine.image(&service.container.image).await.unwrap();
    assert_eq!(tagged.unwrap().id, "sha256:i1");
}

/// A kill of the daemon during a stop-first replace left the proven
/// container as `web-prev` and an unproven one as `web`, with the local tag
/// already moved to the new image. The next reconcile puts `web-prev` back,
/// tries the new image through the gate again and, when it fails again,
/// points the tag back at the proven image.
#[actix_rt::test]
async fn an_interrupted_stop_first_replace_puts_the_proven_container_back() {
    let engine = Arc::new(FakeEngine::new());
    let (service, runtime, proven) = interrupted_stop_first(&engine, true).await;
    let request = CreateRequest {
        name: "web",
        service: &service,
        image: &service.container.image,
        default_network: &runtime.default_network,
        labels: container_labels(&runtime.instance, &service, "sha256:new".into()),
    };
    let unproven = engine.create(&request).await.unwrap();
    engine.start(&unproven).await.unwrap();
    engine.clear_calls();

    // The unproven container goes, the proven one takes its name back.
    let before = ["stop web", "remove web", "rename web-prev web", "start web"];
    assert_retried_and_rolled_back(&engine, &runtime, &service, &proven, &before).await;
}

/// A kill right after the old container was renamed `web-prev`, before it
/// was stopped: it still runs, and nothing is named `web`. The next
/// reconcile gives it its name back without stopping it, then deploys the
/// new image through the gate.
#[actix_rt::test]
async fn a_kill_between_rename_and_stop_keeps_the_proven_container_running() {
    let engine = Arc::new(FakeEngine::new());
    let (service, runtime, proven) = interrupted_stop_first(&engine, false).await;
    engine.clear_calls();

    // Its name back; the start finds it running and leaves it be.
    let before = ["rename web-prev web", "start web"];
    assert_retried_and_rolled_back(&engine, &runtime, &service, &proven, &before).await;
}

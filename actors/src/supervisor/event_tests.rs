//! Unit tests of Docker events over the fake engine: an event reaches the
//! service of its container's label, moves its state and its route, counts
//! restarts and spots a crash loop, and never makes Dispenser start or create
//! a container; events about a deploy's other containers are ignored.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::{Actor, Addr, Context, Handler};

use super::*;
use crate::engine::fake::FakeEngine;
use crate::engine::{ContainerEvent, ContainerState, EventKind, Health};
use crate::plan::sample::{plan, service};
use crate::plan::{Healthcheck, RestartPolicy, Service};
use crate::proxy::table::EndpointState;
use crate::service::state::State;

const INSTANCE: &str = "unit";

/// Records every endpoint change the service actors send.
#[derive(Clone, Default)]
struct Endpoints(Arc<Mutex<Vec<EndpointChanged>>>);

impl Actor for Endpoints {
    type Context = Context<Self>;
}

impl Handler<EndpointChanged> for Endpoints {
    type Result = ();

    fn handle(&mut self, msg: EndpointChanged, _ctx: &mut Self::Context) {
        self.0.lock().unwrap().push(msg);
    }
}

impl Endpoints {
    fn last(&self) -> Option<EndpointState> {
        self.0.lock().unwrap().last().map(|change| change.state)
    }
}

fn always(name: &str) -> Service {
    let mut service = service(name, "web:1");
    service.container.restart = RestartPolicy::Always;
    service
}

async fn started(
    engine: &Arc<FakeEngine>,
    services: Vec<Service>,
) -> (Addr<Supervisor>, Endpoints) {
    let endpoints = Endpoints::default();
    let supervisor = Supervisor::new(engine.clone())
        .with_endpoints(endpoints.clone().start().recipient())
        .start();
    let report = supervisor
        .send(Apply(plan(INSTANCE, services)))
        .await
        .unwrap();
    assert!(report.is_clean(), "{:?}", report.failures);
    (supervisor, endpoints)
}

fn engine() -> Arc<FakeEngine> {
    let engine = Arc::new(FakeEngine::new());
    engine.add_local_image("web:1", "sha256:web1");
    engine
}

fn event(engine: &FakeEngine, name: &str, kind: EventKind) -> DockerEvent {
    let container = engine.container_named(name).expect("container");
    DockerEvent(ContainerEvent {
        id: container.id,
        name: container.name,
        service: container.labels.get("dispenser.service").cloned(),
        kind,
    })
}

/// Waits until `check` holds on the service's status, or fails after 2 s.
async fn until(supervisor: &Addr<Supervisor>, what: &str, check: impl Fn(&ServiceStatus) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let status = supervisor.send(GetStatus).await.unwrap();
        if status.iter().any(&check) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: {status:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Docker restarts the container `times` times (its policy), reporting each.
/// The container exits with `code` and Docker reports it; waits until the
/// service's actor has seen it.
async fn exit(supervisor: &Addr<Supervisor>, engine: &FakeEngine, name: &str, code: i64) {
    engine.update_container(name, |c| c.state = ContainerState::Exited { code });
    let die = event(
        engine,
        name,
        EventKind::Die {
            exit_code: Some(code),
        },
    );
    supervisor.send(die).await.unwrap();
    until(supervisor, "exited", |s| s.state == State::Exited { code }).await;
}

async fn crash(supervisor: &Addr<Supervisor>, engine: &FakeEngine, name: &str, times: u64) {
    for _ in 0..times {
        engine.update_container(name, |c| c.state = ContainerState::Restarting);
        let die = event(engine, name, EventKind::Die { exit_code: Some(3) });
        supervisor.send(die).await.unwrap();
        engine.update_container(name, |c| {
            c.state = ContainerState::Running;
            c.restart_count += 1;
        });
        supervisor
            .send(event(engine, name, EventKind::Start))
            .await
            .unwrap();
    }
}

#[actix_rt::test]
async fn an_exit_that_stays_down_marks_the_route_down_and_starts_nothing() {
    let engine = engine();
    let mut web = service("web", "web:1");
    web.container.restart = RestartPolicy::No;
    let (supervisor, endpoints) = started(&engine, vec![web]).await;
    assert_eq!(endpoints.last(), Some(EndpointState::Ready));
    engine.clear_calls();

    exit(&supervisor, &engine, "web", 137).await;
    assert_eq!(endpoints.last(), Some(EndpointState::Down));
    assert!(engine
        .calls_of(&["create", "start", "stop", "remove"])
        .is_empty());
}

#[actix_rt::test]
async fn docker_restarts_are_counted_and_a_crash_loop_is_shown_without_fighting() {
    let engine = engine();
    let (supervisor, endpoints) = started(&engine, vec![always("web")]).await;
    let id = engine.container_named("web").unwrap().id;
    engine.clear_calls();

    crash(&supervisor, &engine, "web", 2).await;
    until(&supervisor, "two restarts", |s| {
        s.restarts == 2 && !s.in_crash_loop()
    })
    .await;
    assert_eq!(endpoints.last(), Some(EndpointState::Ready), "serves again");

    crash(&supervisor, &engine, "web", 2).await;
    until(&supervisor, "crash loop", |s| {
        s.restarts == 4 && s.in_crash_loop() && s.state == State::Running
    })
    .await;
    assert!(engine
        .calls_of(&["create", "start", "stop", "remove"])
        .is_empty());
    assert_eq!(engine.container_named("web").unwrap().id, id);
}

#[actix_rt::test]
async fn a_restart_docker_made_before_the_first_report_still_counts() {
    let engine = engine();
    let (supervisor, _) = started(&engine, vec![always("web")]).await;
    // The exit is handled only once Docker already restarted the container.
    engine.update_container("web", |c| c.restart_count = 1);
    let die = event(&engine, "web", EventKind::Die { exit_code: Some(2) });
    supervisor.send(die).await.unwrap();
    until(&supervisor, "one restart", |s| {
        s.restarts == 1 && s.state == State::Running
    })
    .await;

    // A daemon started next to a container that restarted before counts anew.
    let (again, _) = started(&engine, vec![always("web")]).await;
    engine.update_container("web", |c| c.restart_count = 2);
    let die = event(&engine, "web", EventKind::Die { exit_code: Some(2) });
    again.send(die).await.unwrap();
    until(&again, "one more restart", |s| s.restarts == 1).await;
}

#[actix_rt::test]
async fn a_die_reported_while_docker_restarts_gives_down_then_ready() {
    let engine = engine();
    let (supervisor, endpoints) = started(&engine, vec![always("web")]).await;
    engine.update_container("web", |c| c.state = ContainerState::Restarting);
    let die = event(&engine, "web", EventKind::Die { exit_code: Some(1) });
    supervisor.send(die).await.unwrap();
    until(&supervisor, "restarting", |s| s.state == State::Restarting).await;
    assert_eq!(endpoints.last(), Some(EndpointState::Down));
}

#[actix_rt::test]
async fn health_starting_holds_the_route_until_healthy() {
    let engine = engine();
    let mut web = always("web");
    web.container.healthcheck = Some(Healthcheck {
        test: vec!["CMD".into(), "true".into()],
        interval: Some(Duration::from_secs(1)),
        timeout: None,
        retries: None,
        start_period: None,
    });
    let (supervisor, endpoints) = started(&engine, vec![web]).await;
    assert_eq!(endpoints.last(), Some(EndpointState::Starting));

    engine.update_container("web", |c| c.health = Some(Health::Healthy));
    let healthy = event(&engine, "web", EventKind::Health(Health::Healthy));
    supervisor.send(healthy).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    while endpoints.last() != Some(EndpointState::Ready) {
        assert!(Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Unhealthy keeps serving: it is the only container there is.
    engine.update_container("web", |c| c.health = Some(Health::Unhealthy));
    let unhealthy = event(&engine, "web", EventKind::Health(Health::Unhealthy));
    supervisor.send(unhealthy).await.unwrap();
    until(&supervisor, "running", |s| s.state == State::Running).await;
    assert_eq!(endpoints.last(), Some(EndpointState::Ready));
}

#[actix_rt::test]
async fn events_about_other_containers_of_the_service_are_ignored() {
    let engine = engine();
    let (supervisor, endpoints) = started(&engine, vec![always("web")]).await;
    let seen = endpoints.0.lock().unwrap().len();
    // A deploy's old container, stopped and renamed: not the current one.
    let mut old = engine.container_named("web").unwrap();
    old.id = "old0".into();
    old.name = "web-prev".into();
    old.state = ContainerState::Exited { code: 143 };
    engine.insert_container(old);
    let die = event(
        &engine,
        "web-prev",
        EventKind::Die {
            exit_code: Some(143),
        },
    );
    supervisor.send(die).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let status = supervisor.send(GetStatus).await.unwrap();
    assert_eq!(status[0].state, State::Running);
    assert_eq!(endpoints.0.lock().unwrap().len(), seen);
}

#[actix_rt::test]
async fn a_resync_reads_state_missed_while_the_stream_was_down() {
    let engine = engine();
    let mut web = service("web", "web:1");
    web.container.restart = RestartPolicy::No;
    let (supervisor, endpoints) = started(&engine, vec![web]).await;
    engine.update_container("web", |c| c.state = ContainerState::Exited { code: 1 });
    supervisor.send(DockerReconnected).await.unwrap();
    until(&supervisor, "exited", |s| {
        s.state == State::Exited { code: 1 }
    })
    .await;
    assert_eq!(endpoints.last(), Some(EndpointState::Down));
}

#[actix_rt::test]
async fn an_oom_kill_reported_after_the_exit_still_counts() {
    let engine = engine();
    let mut web = service("web", "web:1");
    web.container.restart = RestartPolicy::No;
    let (supervisor, _) = started(&engine, vec![web]).await;
    let before = oom_exits("web");
    exit(&supervisor, &engine, "web", 137).await;
    supervisor
        .send(event(&engine, "web", EventKind::Oom))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    while oom_exits("web") != before + 1 {
        assert!(
            Instant::now() < deadline,
            "the late OOM kill was not counted"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[actix_rt::test]
async fn an_oom_kill_before_the_exit_marks_that_exit() {
    let engine = engine();
    let mut hungry = service("hungry", "web:1");
    hungry.container.restart = RestartPolicy::No;
    let (supervisor, _) = started(&engine, vec![hungry]).await;
    let before = oom_exits("hungry");
    supervisor
        .send(event(&engine, "hungry", EventKind::Oom))
        .await
        .unwrap();
    exit(&supervisor, &engine, "hungry", 137).await;
    assert_eq!(oom_exits("hungry"), before + 1);
}

/// `dispenser_container_exits_total{service,reason="oom"}` from the process's metrics.
fn oom_exits(service: &str) -> u64 {
    let mut text = String::new();
    crate::metrics::global().render(&mut text);
    let series =
        format!("dispenser_container_exits_total{{service=\"{service}\",reason=\"oom\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&series))
        .map_or(0, |count| count.trim().parse().unwrap())
}

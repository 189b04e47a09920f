//! Unit tests of the supervisor and the service actors over the fake engine.

use std::collections::BTreeMap;
use std::sync::Arc;

use actix::prelude::{Actor, Addr};

use super::*;
use crate::engine::fake::FakeEngine;
use crate::engine::{Container, ContainerState};
use crate::plan::sample::{plan, service};
use crate::plan::{DependsOn, Initialize, PullPolicy, Sensitive, Service};
use crate::service::state::State;

const INSTANCE: &str = "unit";

fn engine_with_images() -> Arc<FakeEngine> {
    let engine = Arc::new(FakeEngine::new());
    for image in ["web:1", "db:1", "job:1", "api:1"] {
        engine.add_local_image(image, &format!("sha256:{image}"));
    }
    engine
}

fn stack() -> Vec<Service> {
    let db = service("db", "db:1");
    let mut api = service("api", "api:1");
    api.depends_on.insert("db".into(), DependsOn::Started);
    let mut web = service("web", "web:1");
    web.depends_on.insert("api".into(), DependsOn::Started);
    vec![web, api, db]
}

async fn apply(
    engine: &Arc<FakeEngine>,
    services: Vec<Service>,
) -> (Addr<Supervisor>, ApplyReport) {
    let supervisor = Supervisor::new(engine.clone()).start();
    let report = supervisor
        .send(Apply(plan(INSTANCE, services)))
        .await
        .expect("supervisor answers");
    (supervisor, report)
}

fn with_env(mut service: Service, key: &str, value: &str) -> Service {
    service
        .container
        .env
        .insert(key.into(), Sensitive::new(value));
    service.spec_hash.push_str("-changed");
    service
}

#[actix_rt::test]
async fn startup_creates_every_service_in_dependency_order() {
    let engine = engine_with_images();
    let (_, report) = apply(&engine, stack()).await;
    assert!(report.is_clean(), "{:?}", report.failures);
    assert_eq!(
        engine.calls_of(&["start"]),
        vec!["start db", "start api", "start web"]
    );
    for name in ["db", "api", "web"] {
        let container = engine.container_named(name).expect("created");
        assert_eq!(container.state, ContainerState::Running);
        assert_eq!(container.labels["dispenser.instance"], INSTANCE);
        assert_eq!(container.labels["dispenser.service"], name);
    }
    assert!(engine.network_names().contains(&format!("{INSTANCE}-net")));
}

#[actix_rt::test]
async fn restart_with_nothing_changed_touches_no_container() {
    let engine = engine_with_images();
    apply(&engine, stack()).await;
    let before = engine.containers();
    engine.clear_calls();
    // A new supervisor over the same engine: a restart of the daemon.
    let (_, report) = apply(&engine, stack()).await;
    assert!(report.is_clean(), "{:?}", report.failures);
    assert_eq!(engine.containers(), before);
    assert!(engine
        .calls_of(&["create", "start", "stop", "remove"])
        .is_empty());
}

#[actix_rt::test]
async fn changed_env_recreates_that_service_only() {
    let engine = engine_with_images();
    let (supervisor, _) = apply(&engine, stack()).await;
    let api_before = engine.container_named("api").unwrap().id;
    engine.clear_calls();
    let mut services = stack();
    services[1] = with_env(services[1].clone(), "MODE", "blue");
    let report = supervisor
        .send(Apply(plan(INSTANCE, services)))
        .await
        .unwrap();
    assert!(report.is_clean(), "{:?}", report.failures);
    assert_eq!(report.diff.changed.iter().collect::<Vec<_>>(), vec!["api"]);
    assert_eq!(
        engine.calls_of(&["create", "start", "stop", "remove"]),
        // Health-gated, stop-first: the old container waits as `api-prev`
        // until the new one is ready, then goes.
        vec![
            "stop api-prev",
            "create api",
            "start api",
            "remove api-prev"
        ]
    );
    assert_ne!(engine.container_named("api").unwrap().id, api_before);
}

#[actix_rt::test]
async fn removed_service_is_stopped_and_removed() {
    let engine = engine_with_images();
    let (supervisor, _) = apply(&engine, stack()).await;
    engine.clear_calls();
    let mut services = stack();
    services.remove(0); // web
    let report = supervisor
        .send(Apply(plan(INSTANCE, services)))
        .await
        .unwrap();
    assert!(report.retired.contains("web"), "{report:?}");
    assert!(engine.container_named("web").is_none());
    assert_eq!(
        engine.calls_of(&["create", "start", "stop", "remove"]),
        vec!["stop web", "remove web"]
    );
    let status = supervisor.send(GetStatus).await.unwrap();
    assert!(status.iter().all(|s| s.name != "web"));
}

#[actix_rt::test]
async fn orphans_of_this_instance_are_removed_and_others_left_alone() {
    let engine = engine_with_images();
    let orphan = |id: &str, name: &str, instance: &str| Container {
        id: id.into(),
        name: name.into(),
        labels: BTreeMap::from([
            ("dispenser.managed".into(), "true".into()),
            ("dispenser.instance".into(), instance.into()),
            ("dispenser.service".into(), name.into()),
        ]),
        state: ContainerState::Running,
        health: None,
        image_id: "sha256:old".into(),
        started_at: "t0".into(),
        addresses: BTreeMap::new(),
        oom_killed: false,
        restart_count: 0,
    };
    engine.insert_container(orphan("x1", "gone", INSTANCE));
    engine.insert_container(orphan("x2", "theirs", "another-install"));
    let (_, report) = apply(&engine, vec![service("db", "db:1")]).await;
    assert!(report.retired.contains("gone"));
    assert!(engine.container_named("gone").is_none());
    assert!(engine.container_named("theirs").is_some());
}

#[actix_rt::test]
async fn unmanaged_container_with_the_same_name_is_never_touched() {
    let engine = engine_with_images();
    let foreign = Container {
        id: "f00d".into(),
        name: "db".into(),
        labels: BTreeMap::new(),
        state: ContainerState::Running,
        health: None,
        image_id: "sha256:postgres".into(),
        started_at: "t0".into(),
        addresses: BTreeMap::new(),
        oom_killed: false,
        restart_count: 0,
    };
    engine.insert_container(foreign.clone());
    let (_, report) = apply(&engine, vec![service("db", "db:1")]).await;
    let failure = &report.failures["db"];
    assert!(failure.contains("a container named `db`"), "{failure}");
    assert!(failure.contains("was not created by this dispenser instance"));
    assert_eq!(engine.container_named("db"), Some(foreign));
    assert!(engine.calls_of(&["stop", "remove", "create"]).is_empty());
}

#[actix_rt::test]
async fn completed_dependency_gates_its_dependent() {
    let engine = engine_with_images();
    engine.exits_with("job", 0);
    let mut job = service("job", "job:1");
    job.container.restart = crate::plan::RestartPolicy::No;
    let mut web = service("web", "web:1");
    web.depends_on.insert("job".into(), DependsOn::Completed);
    let (_, report) = apply(&engine, vec![job, web]).await;
    assert!(report.is_clean(), "{:?}", report.failures);
    assert_eq!(engine.calls_of(&["start"]), vec!["start job", "start web"]);
}

#[actix_rt::test]
async fn failed_dependency_keeps_its_dependent_down() {
    let engine = engine_with_images();
    engine.exits_with("job", 3);
    let mut web = service("web", "web:1");
    web.depends_on.insert("job".into(), DependsOn::Completed);
    let (_, report) = apply(&engine, vec![service("job", "job:1"), web]).await;
    assert!(
        report.failures["web"].contains("exited with code 3"),
        "{report:?}"
    );
    assert!(engine.container_named("web").is_none());
}

#[actix_rt::test]
async fn on_trigger_service_is_created_but_not_started() {
    let engine = engine_with_images();
    let mut job = service("job", "job:1");
    job.lifecycle.initialize = Initialize::OnTrigger;
    let (supervisor, report) = apply(&engine, vec![job]).await;
    assert!(report.is_clean());
    assert_eq!(
        engine.container_named("job").unwrap().state,
        ContainerState::Created
    );
    let status = supervisor.send(GetStatus).await.unwrap();
    assert_eq!(status[0].state, State::Waiting);
}

#[actix_rt::test]
async fn pull_failure_uses_the_local_image_and_fails_without_one() {
    let engine = engine_with_images();
    let mut web = service("web", "web:1");
    web.lifecycle.pull = PullPolicy::Always;
    let missing = service("ghost", "ghost:1");
    let (_, report) = apply(&engine, vec![web, missing]).await;
    assert!(engine.container_named("web").is_some());
    assert!(report.failures["ghost"].contains("ghost:1 is not on this host"));
}

#[actix_rt::test]
async fn a_panicking_action_restarts_the_actor_with_state_from_docker() {
    let engine = engine_with_images();
    let (supervisor, _) = apply(&engine, vec![service("db", "db:1")]).await;
    engine.panic_once("pull", "db:1");
    let mut changed = with_env(service("db", "db:1"), "A", "1");
    changed.lifecycle.pull = PullPolicy::Always;
    let report = supervisor
        .send(Apply(plan(INSTANCE, vec![changed.clone()])))
        .await
        .unwrap();
    assert!(report.failures["db"].contains("panic"), "{report:?}");
    // The restarted actor read the running container back from Docker…
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let status = supervisor.send(GetStatus).await.unwrap();
    assert_eq!(status[0].state, State::Running);
    // …and takes the next action normally.
    let again = with_env(changed, "A", "2");
    let report = supervisor
        .send(Apply(plan(INSTANCE, vec![again])))
        .await
        .unwrap();
    assert!(report.is_clean(), "{:?}", report.failures);
}

#[actix_rt::test]
async fn networks_are_created_and_undeclared_ones_removed() {
    use crate::plan::{Network, NetworkDriver};
    let engine = engine_with_images();
    let network = |name: &str| Network {
        name: name.into(),
        driver: NetworkDriver::Bridge,
        external: false,
        internal: false,
        attachable: true,
        labels: BTreeMap::new(),
    };
    let mut first = plan(INSTANCE, vec![service("db", "db:1")]);
    first.networks.insert("front".into(), network("front"));
    first.networks.insert("back".into(), network("back"));
    let supervisor = Supervisor::new(engine.clone()).start();
    supervisor.send(Apply(first.clone())).await.unwrap();
    assert!(engine.network_names().contains(&"back".to_string()));

    first.networks.remove("back");
    let report = supervisor.send(Apply(first)).await.unwrap();
    assert!(report.is_clean(), "{:?}", report.failures);
    let names = engine.network_names();
    assert!(!names.contains(&"back".to_string()), "{names:?}");
    assert!(names.contains(&"front".to_string()), "{names:?}");
    assert!(names.contains(&format!("{INSTANCE}-net")), "{names:?}");
}

/// Collects the plans it is told about.
struct Probe(Arc<std::sync::Mutex<Vec<Vec<String>>>>);

impl Actor for Probe {
    type Context = actix::Context<Self>;
}

impl actix::Handler<PlanApplied> for Probe {
    type Result = ();
    fn handle(&mut self, msg: PlanApplied, _ctx: &mut Self::Context) {
        let names = msg.0.services.keys().cloned().collect();
        self.0.lock().unwrap().push(names);
    }
}

#[actix_rt::test]
async fn subscribers_learn_every_applied_plan() {
    let engine = engine_with_images();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let probe = Probe(seen.clone()).start();
    let supervisor = Supervisor::new(engine.clone()).start();
    supervisor.send(Subscribe(probe.recipient())).await.unwrap();
    supervisor
        .send(Apply(plan(INSTANCE, vec![service("db", "db:1")])))
        .await
        .unwrap();
    supervisor
        .send(Apply(plan(INSTANCE, vec![service("web", "web:1")])))
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    assert_eq!(
        *seen.lock().unwrap(),
        vec![vec!["db".to_string()], vec!["web".to_string()]]
    );
}

#[actix_rt::test]
async fn service_actors_report_endpoints_to_the_proxy_router() {
    use crate::proxy::router::ProxyRouter;
    use crate::proxy::table::{Lookup, SharedTable, Upstream};

    let engine = engine_with_images();
    let table = SharedTable::default();
    let router = ProxyRouter::new(table.clone()).start();
    let supervisor = Supervisor::new(engine.clone())
        .with_endpoints(router.clone().recipient())
        .start();
    supervisor
        .send(Subscribe(router.clone().recipient()))
        .await
        .unwrap();
    let mut web = service("web", "web:1");
    web.route = Some(crate::plan::Route {
        host: "app.test".into(),
        path: "/".into(),
        service_port: 8080,
        health_path: None,
        tls: crate::plan::TlsSource::Automatic,
        challenge: None,
        rules: Default::default(),
    });
    let report = supervisor
        .send(Apply(plan(INSTANCE, vec![web.clone()])))
        .await
        .unwrap();
    assert!(report.is_clean(), "{:?}", report.failures);
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let expected = engine
        .container_named("web")
        .and_then(|c| c.addresses.values().next().copied())
        .expect("the fake gives an address");
    match table.load().lookup("app.test", "/") {
        Lookup::Found(entry) => match &entry.upstream {
            Upstream::Ready { address, .. } => {
                assert_eq!(*address, std::net::SocketAddr::new(expected, 8080))
            }
            other => panic!("expected ready, got {other:?}"),
        },
        other => panic!("expected a route, got {other:?}"),
    }

    // Retired: the route goes away with the service.
    supervisor
        .send(Apply(plan(INSTANCE, vec![service("db", "db:1")])))
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    assert_eq!(table.load().lookup("app.test", "/"), Lookup::UnknownHost);
}

#[actix_rt::test]
async fn a_plan_given_while_docker_is_away_waits_and_docker_back_applies_it_alone() {
    let engine = engine_with_images();
    let docker = crate::engine::reachability::Reachability::default();
    let supervisor = Supervisor::new(engine.clone())
        .with_reachability(docker.clone())
        .start();
    let report = supervisor
        .send(Apply(plan(INSTANCE, stack())))
        .await
        .unwrap();
    assert!(report.is_clean(), "{:?}", report.failures);
    let web_before = engine.container_named("web").unwrap().id;
    let api_before = engine.container_named("api").unwrap().id;
    engine.clear_calls();

    // Docker is away: the reload touches nothing and says it was deferred.
    docker.set(false);
    let mut services = stack();
    services[1] = with_env(services[1].clone(), "MODE", "blue");
    let report = supervisor
        .send(Apply(plan(INSTANCE, services)))
        .await
        .unwrap();
    assert!(report.deferred);
    assert!(!report.is_clean());
    assert!(engine.calls().is_empty(), "{:?}", engine.calls());

    // Back: every service is reconciled; only the changed one is replaced.
    docker.set(true);
    supervisor
        .send(DockerBack {
            away_for: std::time::Duration::from_secs(3),
        })
        .await
        .unwrap();
    assert_eq!(engine.container_named("web").unwrap().id, web_before);
    assert_ne!(engine.container_named("api").unwrap().id, api_before);
    assert_eq!(
        engine.calls_of(&["create", "start", "stop", "remove"]),
        vec![
            "stop api-prev",
            "create api",
            "start api",
            "remove api-prev"
        ]
    );

    // A second DockerBack with nothing kept changes no container.
    engine.clear_calls();
    supervisor
        .send(DockerBack {
            away_for: std::time::Duration::from_secs(1),
        })
        .await
        .unwrap();
    assert!(engine
        .calls_of(&["create", "start", "stop", "remove"])
        .is_empty());
}

/// Collects the run records the services send to the ledger.
struct RunProbe(Arc<std::sync::Mutex<Vec<crate::ledger::RunRecord>>>);

impl Actor for RunProbe {
    type Context = actix::Context<Self>;
}

impl actix::Handler<RecordRun> for RunProbe {
    type Result = ();

    fn handle(&mut self, msg: RecordRun, _ctx: &mut Self::Context) {
        self.0.lock().unwrap().push(msg.0);
    }
}

#[actix_rt::test]
async fn a_run_outlives_a_docker_outage_and_is_recorded_by_its_exit() {
    let engine = engine_with_images();
    engine.exits_with("job", 0);
    let records = Arc::new(std::sync::Mutex::new(Vec::new()));
    let probe = RunProbe(records.clone()).start();
    let mut job = service("job", "job:1");
    job.container.restart = crate::plan::RestartPolicy::No;
    job.lifecycle.initialize = Initialize::OnTrigger;
    let supervisor = Supervisor::new(engine.clone())
        .with_ledger(probe.recipient())
        .start();
    let report = supervisor
        .send(Apply(plan(INSTANCE, vec![job])))
        .await
        .unwrap();
    assert!(report.is_clean(), "{:?}", report.failures);
    // Docker does not answer the first two waits for the run's exit.
    engine.unreachable_for("wait", "job", 2);
    supervisor
        .send(CronFired {
            service: "job".into(),
            due: chrono::Utc::now(),
        })
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let record = loop {
        if let Some(record) = records.lock().unwrap().first().cloned() {
            break record;
        }
        assert!(std::time::Instant::now() < deadline, "no run recorded");
        actix_rt::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(
        record.outcome,
        crate::ledger::Outcome::Succeeded,
        "{record:?}"
    );
    assert_eq!(record.exit_code, Some(0));
    assert!(
        engine.calls_of(&["wait"]).len() >= 3,
        "{:?}",
        engine.calls()
    );
}

#[actix_rt::test]
async fn shutdown_stops_each_dependency_level_at_once_dependents_first() {
    let engine = engine_with_images();
    let mut services = stack();
    for name in ["w1", "w2", "w3"] {
        services.push(service(name, "web:1"));
    }
    let mut services_plan = plan(INSTANCE, services);
    services_plan.settings.stop_on_shutdown = true;
    assert_eq!(
        super::shutdown_levels(&services_plan),
        vec![vec!["web"], vec!["api"], vec!["db", "w1", "w2", "w3"]]
    );
    let supervisor = Supervisor::new(engine.clone()).start();
    let report = supervisor.send(Apply(services_plan)).await.unwrap();
    assert!(report.is_clean(), "{:?}", report.failures);
    engine.clear_calls();
    engine.slow_stops(std::time::Duration::from_millis(300));

    let began = std::time::Instant::now();
    supervisor.send(Shutdown).await.unwrap();
    let took = began.elapsed();
    // Three levels of 300 ms each; one at a time would be six stops.
    assert!(
        took < std::time::Duration::from_millis(1500),
        "shutdown took {took:?}"
    );
    let stops = engine.calls_of(&["stop"]);
    assert_eq!(stops.len(), 6, "{stops:?}");
    assert_eq!(&stops[..2], ["stop web", "stop api"]);
    for container in engine.containers() {
        assert_ne!(
            container.state,
            ContainerState::Running,
            "{}",
            container.name
        );
    }
}

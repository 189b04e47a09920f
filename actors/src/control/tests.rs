//! The face wires what the daemon and a command need, once each: the
//! proxy's observers and the caller's learn every plan exactly once, the
//! routes and the development certificates follow an apply, the ticker and
//! the event stream run in the daemon only, and the registry watcher polls
//! the registry the face was given.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use async_trait::async_trait;

use super::*;
use crate::cron::NextRuns;
use crate::engine::fake::FakeEngine;
use crate::plan::{sample, ImageRef, ProxySettings, ProxyStrategy, Route, Schedule, TlsSource};
use crate::proxy::dev_ca::DevCa;
use crate::proxy::table::Lookup;
use crate::proxy::{self, Certificates};
use crate::registry::{RegistryError, RemoteDigest};

const HOST: &str = "app.face.test";

/// Counts the plans it is told of.
struct Probe(Arc<Mutex<usize>>);

impl Actor for Probe {
    type Context = Context<Self>;
}

impl Handler<PlanApplied> for Probe {
    type Result = ();

    fn handle(&mut self, _msg: PlanApplied, _ctx: &mut Self::Context) {
        *self.0.lock().unwrap() += 1;
    }
}

/// A registry that never answers, counting the questions.
#[derive(Default)]
struct Silent(Mutex<usize>);

#[async_trait]
impl DigestSource for Silent {
    async fn digest(&self, image: &ImageRef) -> Result<RemoteDigest, RegistryError> {
        *self.0.lock().unwrap() += 1;
        Err(RegistryError::Unreachable {
            registry: image.registry.clone(),
            reason: "not in this test".into(),
        })
    }

    async fn tags(&self, image: &ImageRef) -> Result<Vec<String>, RegistryError> {
        self.digest(image).await.map(|_| Vec::new())
    }
}

fn engine() -> Arc<FakeEngine> {
    let engine = Arc::new(FakeEngine::new());
    for image in ["web:1", "job:1"] {
        engine.add_local_image(image, &format!("sha256:{image}"));
    }
    engine
}

/// A watched, routed `web`, a scheduled `job`, and an HTTP-only proxy on a
/// free loopback port.
fn face_plan(state_dir: &std::path::Path) -> Plan {
    let mut web = sample::service("web", "web:1");
    web.lifecycle.watch = true;
    web.route = Some(Route {
        host: HOST.into(),
        path: "/".into(),
        service_port: 8080,
        health_path: None,
        tls: TlsSource::Automatic,
        challenge: None,
        rules: Default::default(),
    });
    let mut job = sample::service("job", "job:1");
    job.lifecycle.schedule = Some(Schedule::parse("0 3 * * *").unwrap());
    let mut plan = sample::plan("face", vec![web, job]);
    plan.settings.state_dir = state_dir.to_path_buf();
    let loopback = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    plan.proxy = Some(ProxySettings {
        strategy: ProxyStrategy::HttpOnly,
        trust_forwarded_headers: false,
        http_listen: loopback,
        https_listen: loopback,
        connect_timeout: Duration::from_secs(1),
        header_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(5),
        max_header_bytes: 16 * 1024,
        hold_timeout: Duration::from_millis(100),
        workers: Some(1),
    });
    plan
}

/// Waits up to two seconds for `done`.
async fn eventually(done: impl Fn() -> bool) -> bool {
    for _ in 0..200 {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    done()
}

#[actix_rt::test]
async fn the_daemon_face_subscribes_each_observer_once_and_feeds_the_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let plan = face_plan(dir.path());
    let engine = engine();
    let proxy = proxy::start(&plan, Certificates::Development)
        .unwrap()
        .expect("the plan has a proxy");
    assert!(proxy.http().is_some_and(|http| http.port() != 0));
    let told = Arc::new(Mutex::new(0));
    let options = Options::daemon()
        .with_proxy(Some(proxy))
        .with_observer(Probe(told.clone()).start().recipient())
        .with_registry(Arc::new(Silent::default()));
    let mut control = start(engine.clone(), &plan, options);

    let report = control.apply(plan.clone()).await.unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert!(eventually(|| *told.lock().unwrap() == 1).await);
    let table = control.proxy().unwrap().table();
    assert!(
        matches!(table.load().lookup(HOST, "/"), Lookup::Found(_)),
        "the router learnt no route"
    );
    // Issued within `apply`, not after it.
    assert!(DevCa::cert_path(dir.path()).exists());
    assert!(control.proxy().unwrap().certs().get(HOST).is_some());
    let next = control.ticker().unwrap().send(NextRuns).await.unwrap();
    assert!(next.contains_key("job"), "{next:?}");
    assert!(eventually(|| engine.event_streams() == 1).await);
    assert!(control.ledger().is_some());

    control.apply(plan).await.unwrap();
    assert!(eventually(|| *told.lock().unwrap() == 2).await);
    // Once per plan, never twice.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(*told.lock().unwrap(), 2);
    control.shutdown().await;
}

#[actix_rt::test]
async fn the_registry_watcher_polls_the_given_source_once_a_plan_is_applied() {
    let dir = tempfile::tempdir().unwrap();
    let mut plan = face_plan(dir.path());
    plan.proxy = None;
    let source = Arc::new(Silent::default());
    let options = Options::daemon().with_registry(source.clone());
    let mut control = start(engine(), &plan, options);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(*source.0.lock().unwrap(), 0, "asked before any apply");

    control.apply(plan).await.unwrap();
    // The service asked once for its first container; the watcher's first
    // round asks again.
    let asked_by_apply = *source.0.lock().unwrap();
    assert!(eventually(|| *source.0.lock().unwrap() > asked_by_apply).await);
    control.shutdown().await;
}

#[actix_rt::test]
async fn a_command_runs_the_supervisor_and_ledger_only() {
    let dir = tempfile::tempdir().unwrap();
    let mut plan = face_plan(dir.path());
    plan.proxy = None;
    let engine = engine();
    let mut control = start(engine.clone(), &plan, Options::command());

    let report = control.apply(plan).await.unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert!(control.ticker().is_none());
    assert!(control.ledger().is_some());
    assert!(engine.container_named("web").is_some());
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(engine.event_streams(), 0);
    control.flush().await;
}

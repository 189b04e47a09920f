//! Unit tests of `dispenser takeover` over the fake engine: a container
//! without Dispenser labels that holds a service's name is replaced through
//! the gate and removed; one of another instance is refused untouched; a
//! failed gate gives the name back; an interrupted takeover is put back.

use std::collections::BTreeMap;
use std::sync::Arc;

use actix::prelude::{Actor, Addr};

use super::*;
use crate::engine::fake::FakeEngine;
use crate::engine::{labels, Container, ContainerState};
use crate::plan::sample::{plan, service};
use crate::service::container::owned_by;
use crate::service::state::State;

const INSTANCE: &str = "unit";

fn engine() -> Arc<FakeEngine> {
    let engine = Arc::new(FakeEngine::new());
    engine.add_local_image("db:1", "sha256:db");
    engine
}

/// A running container named `name`, with `labels`.
fn container(id: &str, name: &str, labels: BTreeMap<String, String>) -> Container {
    Container {
        id: id.into(),
        name: name.into(),
        labels,
        state: ContainerState::Running,
        health: None,
        image_id: "sha256:upstream".into(),
        started_at: "t0".into(),
        addresses: BTreeMap::new(),
        oom_killed: false,
        restart_count: 0,
    }
}

async fn applied(engine: &Arc<FakeEngine>) -> (Addr<Supervisor>, ApplyReport) {
    let supervisor = Supervisor::new(engine.clone()).start();
    let report = supervisor
        .send(Apply(plan(INSTANCE, vec![service("db", "db:1")])))
        .await
        .unwrap();
    (supervisor, report)
}

async fn take_over(supervisor: &Addr<Supervisor>) -> Result<String, ControlError> {
    supervisor
        .send(TakeoverNow {
            service: "db".into(),
        })
        .await
        .unwrap()
}

#[actix_rt::test]
async fn an_unlabelled_container_is_replaced_through_the_gate_and_removed() {
    let engine = engine();
    engine.insert_container(container("f00d", "db", BTreeMap::new()));
    let (supervisor, report) = applied(&engine).await;
    // Without the command the name is refused, as before.
    assert!(report.failures["db"].contains("was not created by this dispenser instance"));
    assert_eq!(engine.container_named("db").unwrap().id, "f00d");

    let message = take_over(&supervisor).await.expect("taken over");
    assert!(message.contains("took over container f00d"), "{message}");
    let now = engine.container_named("db").expect("a container named db");
    assert!(owned_by(&now, INSTANCE), "{now:?}");
    assert_eq!(now.state, ContainerState::Running);
    assert!(engine.containers().iter().all(|c| c.id != "f00d"));
    assert_eq!(engine.containers().len(), 1);
    // Stop-first: the old one was kept, renamed, until the new one was proven.
    assert_eq!(
        engine.calls_of(&["rename", "remove"]),
        vec!["rename db db-takeover", "remove db-takeover"]
    );
    let status = supervisor.send(GetStatus).await.unwrap();
    assert_eq!(status[0].state, State::Running);
    // A second takeover has nothing to do.
    let again = take_over(&supervisor).await.expect("answered");
    assert!(again.contains("already managed"), "{again}");
}

#[actix_rt::test]
async fn a_stopped_unlabelled_container_is_replaced_and_removed() {
    let engine = engine();
    let mut stopped = container("f00d", "db", BTreeMap::new());
    stopped.state = ContainerState::Exited { code: 137 };
    engine.insert_container(stopped);
    let (supervisor, _) = applied(&engine).await;
    take_over(&supervisor).await.expect("taken over");
    let now = engine.container_named("db").expect("a container named db");
    assert!(owned_by(&now, INSTANCE), "{now:?}");
    assert_eq!(now.state, ContainerState::Running);
    assert_eq!(engine.containers().len(), 1);
    assert_eq!(
        engine.calls_of(&["rename", "remove"]),
        vec!["rename db db-takeover", "remove db-takeover"]
    );
}

#[actix_rt::test]
async fn a_container_of_another_instance_is_refused_untouched() {
    let engine = engine();
    let theirs = container(
        "beef",
        "db",
        BTreeMap::from([
            (labels::MANAGED.to_string(), "true".to_string()),
            (labels::INSTANCE.to_string(), "another".to_string()),
            (labels::SERVICE.to_string(), "db".to_string()),
        ]),
    );
    engine.insert_container(theirs.clone());
    let (supervisor, _) = applied(&engine).await;
    let refused = take_over(&supervisor).await.expect_err("refused");
    assert!(
        matches!(
            refused,
            ControlError::Service(ServiceError::NameTaken { .. })
        ),
        "{refused:?}"
    );
    assert_eq!(engine.container_named("db"), Some(theirs));
    assert!(engine
        .calls_of(&["stop", "remove", "rename", "create"])
        .is_empty());
}

#[actix_rt::test]
async fn a_failed_gate_gives_the_name_back_to_the_container_taken_over() {
    let engine = engine();
    engine.insert_container(container("f00d", "db", BTreeMap::new()));
    let (supervisor, _) = applied(&engine).await;
    engine.fail_once("start", "db");
    let failed = take_over(&supervisor).await.expect_err("rolled back");
    assert!(
        matches!(
            failed,
            ControlError::Service(ServiceError::RolledBack { .. })
        ),
        "{failed:?}"
    );
    let back = engine.container_named("db").expect("a container named db");
    assert_eq!(back.id, "f00d");
    assert_eq!(back.state, ContainerState::Running);
    assert_eq!(engine.containers().len(), 1);
}

#[actix_rt::test]
async fn an_interrupted_takeover_is_put_back_at_the_next_start() {
    let engine = engine();
    let mut kept = container("f00d", "db-takeover", BTreeMap::new());
    kept.state = ContainerState::Exited { code: 0 };
    engine.insert_container(kept);
    let unproven = container(
        "c0de",
        "db",
        crate::service::container::container_labels(INSTANCE, &service("db", "db:1"), "d".into()),
    );
    engine.insert_container(unproven);
    let (_, report) = applied(&engine).await;
    // The container taken over has its name back and runs; the name is
    // refused again until the next `takeover`.
    assert!(report.failures["db"].contains("was not created by this dispenser instance"));
    let back = engine.container_named("db").expect("a container named db");
    assert_eq!(back.id, "f00d");
    assert_eq!(back.state, ContainerState::Running);
    assert_eq!(engine.containers().len(), 1);
}

//! Tests of the ledger: a real SQLite file in a temporary folder.

use std::os::unix::fs::PermissionsExt;

use chrono::TimeZone;

use super::*;

fn run(service: &str, second: u32, outcome: Outcome) -> RunRecord {
    RunRecord {
        service: service.to_string(),
        trigger: Trigger::Cron,
        started_at: Utc.with_ymd_and_hms(2025, 1, 1, 12, 0, second).unwrap(),
        ended_at: Some(Utc.with_ymd_and_hms(2025, 1, 1, 12, 0, second + 1).unwrap()),
        exit_code: Some(if outcome == Outcome::Succeeded { 0 } else { 3 }),
        outcome,
        reason: None,
        output_tail: vec!["line one".into(), "line two".into()],
    }
}

#[test]
fn state_dir_is_private_and_runs_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state/inner");
    let ledger = Ledger::open(&state).unwrap();
    let mode = std::fs::metadata(&state).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    let file_mode = std::fs::metadata(ledger.path())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(file_mode, 0o600);
    ledger
        .insert_run(&run("job", 1, Outcome::Succeeded))
        .unwrap();
    ledger.insert_run(&run("job", 3, Outcome::Failed)).unwrap();
    ledger
        .insert_run(&run("other", 5, Outcome::Skipped))
        .unwrap();
    let runs = ledger.recent_runs("job", 10).unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0], run("job", 3, Outcome::Failed));
    assert_eq!(runs[1].outcome, Outcome::Succeeded);
}

#[test]
fn history_is_bounded_per_service() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(dir.path()).unwrap();
    ledger
        .insert_run(&run("other", 0, Outcome::Succeeded))
        .unwrap();
    for _ in 0..RUNS_KEPT + 5 {
        ledger
            .insert_run(&run("job", 1, Outcome::Succeeded))
            .unwrap();
    }
    assert_eq!(ledger.recent_runs("job", 1000).unwrap().len(), RUNS_KEPT);
    assert_eq!(ledger.recent_runs("other", 1000).unwrap().len(), 1);
}

#[test]
fn reopening_keeps_history_and_schema() {
    let dir = tempfile::tempdir().unwrap();
    Ledger::open(dir.path())
        .unwrap()
        .insert_run(&run("job", 1, Outcome::Succeeded))
        .unwrap();
    let again = Ledger::open(dir.path()).unwrap();
    assert_eq!(again.recent_runs("job", 10).unwrap().len(), 1);
}

#[actix_rt::test]
async fn the_actor_records_what_it_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(dir.path()).unwrap().start();
    ledger
        .send(RecordRun(run("job", 1, Outcome::Failed)))
        .await
        .unwrap();
    let runs = ledger
        .send(RecentRuns {
            service: "job".into(),
            limit: 5,
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(runs, vec![run("job", 1, Outcome::Failed)]);
}

fn deploy(service: &str, second: u32, outcome: DeployOutcomeKind) -> DeployRecord {
    DeployRecord {
        service: service.to_string(),
        trigger: DeployTrigger::NewDigest,
        old_digest: Some("sha256:old".into()),
        new_digest: Some(format!("sha256:new{second}")),
        tag: None,
        started_at: Utc.with_ymd_and_hms(2025, 1, 1, 12, 0, second).unwrap(),
        ended_at: Utc.with_ymd_and_hms(2025, 1, 1, 12, 0, second + 1).unwrap(),
        outcome,
        reason: (outcome != DeployOutcomeKind::Succeeded).then(|| "bad".to_string()),
    }
}

#[test]
fn deploys_round_trip_newest_first_and_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(dir.path()).unwrap();
    ledger
        .insert_deploy(&deploy("web", 1, DeployOutcomeKind::Succeeded))
        .unwrap();
    ledger
        .insert_deploy(&deploy("web", 2, DeployOutcomeKind::RolledBack))
        .unwrap();
    ledger
        .insert_deploy(&deploy("other", 3, DeployOutcomeKind::Failed))
        .unwrap();
    let deploys = ledger.recent_deploys("web", 10).unwrap();
    assert_eq!(
        deploys,
        vec![
            deploy("web", 2, DeployOutcomeKind::RolledBack),
            deploy("web", 1, DeployOutcomeKind::Succeeded)
        ]
    );
    for second in 0..(DEPLOYS_KEPT as u32 + 5) {
        let mut record = deploy("web", second % 50, DeployOutcomeKind::Succeeded);
        record.new_digest = Some(format!("sha256:{second}"));
        ledger.insert_deploy(&record).unwrap();
    }
    let kept = ledger.recent_deploys("web", usize::MAX >> 1).unwrap();
    assert_eq!(kept.len(), DEPLOYS_KEPT);
    assert_eq!(
        kept[0].new_digest.as_deref(),
        Some(format!("sha256:{}", DEPLOYS_KEPT + 4).as_str())
    );
    assert_eq!(ledger.recent_deploys("other", 10).unwrap().len(), 1);
}

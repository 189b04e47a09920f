//! Scheduled services against the real Docker Engine: runs happen on time,
//! each leaves a row in the SQLite ledger, overlapping runs are skipped,
//! `max_runtime` stops a sleeper, and an on-trigger job waits for its schedule.

use std::path::Path;
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::support::{inspect, Sandbox};

const BUSYBOX: &str = "dispenser-test/busybox:latest";
/// Longest wait for runs to show up in the ledger.
const LEDGER_TIMEOUT: Duration = Duration::from_secs(30);

/// One row of the `runs` table.
#[derive(Debug, Clone)]
struct Run {
    started_at: String,
    ended_at: Option<String>,
    exit_code: Option<i64>,
    outcome: String,
    reason: Option<String>,
    output_tail: Option<String>,
}

/// Runs of `service` in the sandbox's ledger, oldest first.
fn runs(sb: &Sandbox, service: &str) -> Vec<Run> {
    let path = sb.path(".dispenser/ledger.sqlite3");
    if !Path::new(&path).exists() {
        return Vec::new();
    }
    let connection = rusqlite::Connection::open(&path).expect("open the ledger");
    let mut statement = connection
        .prepare(
            "SELECT started_at, ended_at, exit_code, outcome, reason, output_tail
             FROM runs WHERE service = ?1 ORDER BY id",
        )
        .expect("the runs table");
    statement
        .query_map([service], |row| {
            Ok(Run {
                started_at: row.get(0)?,
                ended_at: row.get(1)?,
                exit_code: row.get(2)?,
                outcome: row.get(3)?,
                reason: row.get(4)?,
                output_tail: row.get(5)?,
            })
        })
        .expect("query runs")
        .collect::<Result<Vec<_>, _>>()
        .expect("read runs")
}

/// Waits until `done` holds for the service's runs, and returns them.
fn wait_runs(sb: &Sandbox, service: &str, done: impl Fn(&[Run]) -> bool) -> Vec<Run> {
    let deadline = Instant::now() + LEDGER_TIMEOUT;
    loop {
        let found = runs(sb, service);
        if done(&found) {
            return found;
        }
        assert!(Instant::now() < deadline, "runs of {service}: {found:#?}");
        sleep(Duration::from_millis(200));
    }
}

fn job(command: &str, cron: &str, extra: &str) -> String {
    format!(
        "command = [\"sh\", \"-c\", \"{command}\"]\nrestart = \"no\"\n\n[dispenser]\ninitialize = \"on-trigger\"\ncron = \"{cron}\"\n{extra}"
    )
}

#[test]
fn jobs_run_on_schedule_and_record_exit_codes() {
    let mut sb = Sandbox::new();
    sb.service(
        "ok",
        BUSYBOX,
        &job("echo hello from $HOSTNAME; exit 0", "*/2 * * * * *", ""),
    );
    sb.service(
        "bad",
        BUSYBOX,
        &job("echo broken >&2; exit 3", "*/2 * * * * *", ""),
    );
    sb.service("later", BUSYBOX, &job("echo never", "0 0 1 1 *", ""));
    let daemon = sb.start();
    // An on-trigger job is created at start-up but not run.
    assert_eq!(inspect(&sb.name("later"))["State"]["Status"], "created");
    sleep(Duration::from_millis(6500));

    let ok = runs(&sb, &sb.name("ok"));
    assert!(ok.len() >= 2, "at least two runs in six seconds: {ok:#?}");
    for run in &ok {
        assert_eq!(run.outcome, "succeeded", "{run:?}");
        assert_eq!(run.exit_code, Some(0));
        assert!(run.ended_at.as_deref() >= Some(run.started_at.as_str()));
        assert!(
            run.output_tail
                .as_deref()
                .unwrap_or("")
                .contains("hello from"),
            "{run:?}"
        );
    }
    let bad = wait_runs(&sb, &sb.name("bad"), |runs| !runs.is_empty());
    assert_eq!(bad[0].outcome, "failed");
    assert_eq!(bad[0].exit_code, Some(3));
    assert_eq!(bad[0].reason.as_deref(), Some("exited with code 3"));
    assert!(bad[0]
        .output_tail
        .as_deref()
        .unwrap_or("")
        .contains("broken"));
    assert!(runs(&sb, &sb.name("later")).is_empty());
    assert_eq!(inspect(&sb.name("later"))["State"]["Status"], "created");
    // The last run's container is left stopped.
    let log = daemon.stop();
    assert!(log.contains("run failed"), "{log}");
    assert!(log.contains(&sb.name("bad")), "{log}");
}

#[test]
fn an_overlapping_run_is_skipped() {
    let mut sb = Sandbox::new();
    sb.service(
        "slow",
        BUSYBOX,
        &job("trap 'exit 143' TERM; sleep 5 & wait", "*/2 * * * * *", ""),
    );
    let daemon = sb.start();
    let name = sb.name("slow");
    let found = wait_runs(&sb, &name, |runs| {
        runs.iter().filter(|r| r.outcome == "succeeded").count() >= 1
            && runs.iter().filter(|r| r.outcome == "skipped").count() >= 2
    });
    let log = daemon.stop();
    assert!(log.contains("run skipped"), "{log}");
    let finished: Vec<&Run> = found.iter().filter(|r| r.outcome == "succeeded").collect();
    let first = finished[0];
    // Skips happen while the first run goes: between its start and its end.
    let ended = first.ended_at.clone().unwrap();
    let skipped_during = found
        .iter()
        .filter(|r| r.outcome == "skipped")
        .filter(|r| r.started_at > first.started_at && r.started_at < ended)
        .count();
    assert!(skipped_during >= 2, "{found:#?}");
}

#[test]
fn max_runtime_stops_a_sleeper_and_records_a_failure() {
    let mut sb = Sandbox::new();
    sb.service(
        "sleeper",
        BUSYBOX,
        &job(
            "trap 'exit 143' TERM; sleep 60 & wait",
            "*/3 * * * * *",
            "max_runtime = \"2s\"\n",
        ),
    );
    let daemon = sb.start();
    let name = sb.name("sleeper");
    let started = Instant::now();
    let found = wait_runs(&sb, &name, |runs| {
        runs.iter().any(|r| r.outcome == "failed")
    });
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the sleeper ran too long"
    );
    let failed = found.iter().find(|r| r.outcome == "failed").unwrap();
    assert!(
        failed
            .reason
            .as_deref()
            .unwrap_or("")
            .contains("max_runtime"),
        "{failed:?}"
    );
    assert_eq!(failed.exit_code, Some(143));
    let log = daemon.stop();
    assert!(log.contains("exceeded max_runtime"), "{log}");
}

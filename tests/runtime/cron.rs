//! Scheduled services against the real Docker Engine: runs happen on time,
//! each leaves a row in the SQLite ledger, overlapping runs are skipped or
//! replaced, `max_runtime` stops a sleeper, an on-trigger job waits for its
//! schedule, and a long-running service with a `cron` is restarted on it.

use std::path::Path;
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::support::{eventually, exists, inspect, Sandbox};

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
    let ok = wait_runs(&sb, &sb.name("ok"), |runs| {
        runs.iter().filter(|run| run.ended_at.is_some()).count() >= 2
    });
    let ok: Vec<Run> = ok
        .into_iter()
        .filter(|run| run.ended_at.is_some())
        .collect();
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
    // The first fire comes within 3 s of the start, the stop 2 s into the
    // run: a sleeper of 60 s that the limit did not stop fails this bound.
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(8),
        "the sleeper was stopped only {took:?} after the start"
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

#[test]
fn an_overlapping_run_is_replaced_when_overlap_is_replace() {
    let mut sb = Sandbox::new();
    sb.service(
        "slow",
        BUSYBOX,
        &job(
            "trap 'exit 143' TERM; sleep 60 & wait",
            "*/3 * * * * *",
            "overlap = \"replace\"\n",
        ),
    );
    let daemon = sb.start();
    let name = sb.name("slow");
    // Two replaced runs: the second was replaced too, so it ran.
    let replaced = |run: &Run| run.reason.as_deref() == Some("replaced by a newer run");
    let found = wait_runs(&sb, &name, |runs| {
        runs.iter().filter(|run| replaced(run)).count() >= 2
    });
    let log = daemon.stop();
    assert!(
        log.contains("the previous run still goes; replacing it"),
        "{log}"
    );
    assert!(!log.contains("run skipped"), "{log}");
    for run in found.iter().filter(|run| replaced(run)) {
        assert_eq!(run.outcome, "failed", "{run:?}");
        // Stopped by its stop signal, not killed after the grace period.
        assert_eq!(run.exit_code, Some(143), "{run:?}");
    }
    assert!(
        found.iter().all(|run| run.outcome != "skipped"),
        "{found:#?}"
    );
    let first_replaced = found.iter().position(replaced).unwrap();
    assert!(
        found.len() > first_replaced + 1,
        "a run follows the replaced one: {found:#?}"
    );
}

#[test]
fn a_long_running_service_is_restarted_on_its_schedule() {
    let mut sb = Sandbox::new();
    sb.service(
        "daily",
        BUSYBOX,
        "command = [\"sleep\", \"3600\"]\nrestart = \"unless-stopped\"\n\n[dispenser]\ncron = \"*/4 * * * * *\"\n",
    );
    let daemon = sb.start();
    let name = sb.name("daily");
    let first = inspect(&name);
    assert_eq!(first["State"]["Running"], true);
    let restarted = wait_runs(&sb, &name, |runs| {
        runs.iter().any(|run| run.outcome == "restarted")
    });
    // The next restart may be under way (the name free for a moment):
    // wait for a running container under the name, started anew.
    eventually(
        "a running container started after the first one",
        LEDGER_TIMEOUT,
        || {
            exists(&name) && {
                let after = inspect(&name);
                after["State"]["Running"] == true
                    && after["State"]["StartedAt"] != first["State"]["StartedAt"]
            }
        },
        || daemon.log(),
    );
    assert!(
        restarted.iter().all(|run| run.outcome == "restarted"),
        "{restarted:#?}"
    );
    let log = daemon.stop();
    let lines: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("restarted on schedule") && line.contains(&name))
        .collect();
    assert!(!lines.is_empty(), "{log}");
    // One container under the service's name, no deploy leftover.
    sb.assert_converged(&["daily"]);
}

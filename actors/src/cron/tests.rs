//! Tests of the ticker over fixed clocks: the timetable directly, and the
//! actor under tokio's paused clock (virtual time, no real sleeping).

use std::sync::Mutex;

use chrono::{Datelike, TimeZone, Timelike, Weekday};
use chrono_tz::{America::New_York, Europe::Zurich};

use super::*;
use crate::plan::sample;

/// Wednesday 2025-01-01 12:00:00 UTC.
fn noon() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, 1, 12, 0, 0).unwrap()
}

fn scheduled(name: &str, expression: &str, zone: Zone) -> crate::plan::Service {
    let mut service = sample::service(name, "job:1");
    service.lifecycle.schedule = Some(Schedule::parse(expression).unwrap());
    service.lifecycle.timezone = zone;
    service
}

fn utc() -> Zone {
    Zone::Named(chrono_tz::UTC)
}

#[test]
fn five_field_monday_nine_and_six_field_seconds() {
    let plan = sample::plan(
        "t",
        vec![
            scheduled("weekly", "0 9 * * 1", utc()),
            scheduled("fast", "*/2 * * * * *", utc()),
            sample::service("plain", "web:1"),
        ],
    );
    let mut table = Timetable::default();
    table.update(&plan, noon());
    let monday = table.next_of("weekly").unwrap();
    assert_eq!(monday, Utc.with_ymd_and_hms(2025, 1, 6, 9, 0, 0).unwrap());
    assert_eq!(monday.weekday(), Weekday::Mon);
    assert_eq!(
        table.next_of("fast").unwrap(),
        noon() + chrono::Duration::seconds(2)
    );
    assert_eq!(table.next_of("plain"), None);
    assert_eq!(table.earliest(), table.next_of("fast"));
}

#[test]
fn due_fires_once_and_skips_missed_occurrences() {
    let plan = sample::plan("t", vec![scheduled("fast", "*/2 * * * * *", utc())]);
    let mut table = Timetable::default();
    table.update(&plan, noon());
    assert!(table
        .take_due(noon() + chrono::Duration::seconds(1))
        .is_empty());
    // Woken 9 s late (a suspended host): one run, then the next after now.
    let late = noon() + chrono::Duration::seconds(11);
    let due = table.take_due(late);
    assert_eq!(
        due,
        vec![("fast".to_string(), noon() + chrono::Duration::seconds(2))]
    );
    assert_eq!(
        table.next_of("fast").unwrap(),
        noon() + chrono::Duration::seconds(12)
    );
    assert!(table.take_due(late).is_empty());
}

#[test]
fn reload_keeps_unchanged_schedules_and_recomputes_changed_ones() {
    let mut table = Timetable::default();
    let first = sample::plan(
        "t",
        vec![
            scheduled("daily", "0 3 * * *", utc()),
            scheduled("edited", "0 3 * * *", utc()),
            scheduled("moved", "0 3 * * *", utc()),
            scheduled("gone", "0 3 * * *", utc()),
        ],
    );
    table.update(&first, noon());
    let daily = table.next_of("daily").unwrap();
    // A reload just after 03:00 the next day, before the tick was handled:
    // the kept time is still due, so the run is neither lost nor doubled.
    let reload_at = daily + chrono::Duration::milliseconds(10);
    let mut second = sample::plan(
        "t",
        vec![
            scheduled("daily", "0 3 * * *", utc()),
            scheduled("edited", "0 4 * * *", utc()),
            scheduled("moved", "0 3 * * *", Zone::Named(Zurich)),
        ],
    );
    second
        .services
        .get_mut("daily")
        .unwrap()
        .container
        .env
        .clear();
    table.update(&second, reload_at);
    assert_eq!(table.next_of("daily"), Some(daily));
    assert_eq!(
        table.next_of("edited").unwrap(),
        Utc.with_ymd_and_hms(2025, 1, 2, 4, 0, 0).unwrap()
    );
    // 03:00 in Zurich is 02:00 UTC in winter: the next is on the 3rd.
    assert_eq!(
        table.next_of("moved").unwrap(),
        Utc.with_ymd_and_hms(2025, 1, 3, 2, 0, 0).unwrap()
    );
    assert_eq!(table.next_of("gone"), None);
    let due: Vec<String> = table
        .take_due(reload_at)
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(due, vec!["daily".to_string()]);
}

#[test]
fn day_of_week_zero_and_seven_are_sunday_in_a_zone() {
    let plan = sample::plan(
        "t",
        vec![
            scheduled("zero", "0 8 * * 0", Zone::Named(Zurich)),
            scheduled("seven", "0 0 8 * * 7", Zone::Named(Zurich)),
        ],
    );
    let mut table = Timetable::default();
    table.update(&plan, noon());
    for name in ["zero", "seven"] {
        let fire = table.next_of(name).unwrap().with_timezone(&Zurich);
        assert_eq!(fire.weekday(), Weekday::Sun, "{name}");
        assert_eq!(fire.hour(), 8, "{name}");
        assert_eq!(fire.day(), 5, "{name}");
    }
}

/// Every fire time of `expression` in New York between two UTC instants.
fn fires_in_new_york(
    expression: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Vec<DateTime<Utc>> {
    let schedule = Schedule::parse(expression).unwrap();
    let zone = Zone::Named(New_York);
    let mut fires = Vec::new();
    let mut after = from;
    while let Some(next) = zone.next_fire(&schedule, after).filter(|next| *next < to) {
        fires.push(next);
        after = next;
    }
    fires
}

#[test]
fn dst_spring_forward_runs_a_skipped_time_once_after_the_jump() {
    // 2025-03-09: 02:00 EST becomes 03:00 EDT (07:00 UTC).
    let from = Utc.with_ymd_and_hms(2025, 3, 8, 12, 0, 0).unwrap();
    let to = Utc.with_ymd_and_hms(2025, 3, 10, 12, 0, 0).unwrap();
    let fires = fires_in_new_york("30 2 * * *", from, to);
    assert_eq!(
        fires,
        vec![
            Utc.with_ymd_and_hms(2025, 3, 9, 7, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(2025, 3, 10, 6, 30, 0).unwrap(),
        ]
    );
    // An hourly job: one run per real hour, none doubled around the jump.
    let day = fires_in_new_york(
        "0 * * * *",
        Utc.with_ymd_and_hms(2025, 3, 9, 4, 30, 0).unwrap(),
        Utc.with_ymd_and_hms(2025, 3, 9, 9, 30, 0).unwrap(),
    );
    let hours: Vec<u32> = day.iter().map(|fire| fire.hour()).collect();
    assert_eq!(hours, vec![5, 6, 7, 8, 9]);
}

#[test]
fn dst_fall_back_runs_a_repeated_time_once_and_hourly_jobs_every_hour() {
    // 2025-11-02: 02:00 EDT becomes 01:00 EST (06:00 UTC); 01:xx happens twice.
    let from = Utc.with_ymd_and_hms(2025, 11, 1, 12, 0, 0).unwrap();
    let to = Utc.with_ymd_and_hms(2025, 11, 3, 12, 0, 0).unwrap();
    let fires = fires_in_new_york("30 1 * * *", from, to);
    assert_eq!(
        fires,
        vec![
            Utc.with_ymd_and_hms(2025, 11, 2, 5, 30, 0).unwrap(),
            Utc.with_ymd_and_hms(2025, 11, 3, 6, 30, 0).unwrap(),
        ]
    );
    let hourly = fires_in_new_york(
        "0 * * * *",
        Utc.with_ymd_and_hms(2025, 11, 2, 3, 30, 0).unwrap(),
        Utc.with_ymd_and_hms(2025, 11, 2, 8, 30, 0).unwrap(),
    );
    let hours: Vec<u32> = hourly.iter().map(|fire| fire.hour()).collect();
    assert_eq!(hours, vec![4, 5, 6, 7, 8]);
}

/// A clock that follows tokio's (pausable) clock from a fixed start.
struct VirtualClock {
    start: DateTime<Utc>,
    origin: tokio::time::Instant,
}

impl Clock for VirtualClock {
    fn now(&self) -> DateTime<Utc> {
        let elapsed = tokio::time::Instant::now() - self.origin;
        self.start + chrono::Duration::from_std(elapsed).unwrap()
    }
}

/// Collects what the ticker sends.
struct Probe(Arc<Mutex<Vec<CronFired>>>);

impl Actor for Probe {
    type Context = Context<Self>;
}

impl Handler<CronFired> for Probe {
    type Result = ();

    fn handle(&mut self, msg: CronFired, _ctx: &mut Self::Context) {
        self.0.lock().unwrap().push(msg);
    }
}

#[actix_rt::test]
async fn the_ticker_fires_on_time_and_a_reload_does_not_double() {
    tokio::time::pause();
    let clock = Arc::new(VirtualClock {
        start: noon() + chrono::Duration::milliseconds(500),
        origin: tokio::time::Instant::now(),
    });
    let seen = Arc::new(Mutex::new(Vec::new()));
    let probe = Probe(seen.clone()).start();
    let ticker = CronTicker::new(clock, probe.recipient()).start();
    let plan = Arc::new(sample::plan(
        "t",
        vec![
            scheduled("fast", "*/2 * * * * *", utc()),
            scheduled("never", "0 0 0 1 1 * 2020", utc()),
        ],
    ));
    ticker.send(PlanApplied(plan.clone())).await.unwrap();
    tokio::time::sleep(Duration::from_millis(3000)).await;
    // Reloads of the same plan re-arm the timer but keep the fire times.
    ticker.send(PlanApplied(plan.clone())).await.unwrap();
    ticker.send(PlanApplied(plan)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let fired: Vec<DateTime<Utc>> = seen.lock().unwrap().iter().map(|f| f.due).collect();
    assert_eq!(
        fired,
        vec![
            noon() + chrono::Duration::seconds(2),
            noon() + chrono::Duration::seconds(4),
        ]
    );
    assert!(seen.lock().unwrap().iter().all(|f| f.service == "fast"));
}

#[test]
fn all_next_lists_only_scheduled_services() {
    let plan = sample::plan(
        "t",
        vec![
            scheduled("hourly", "0 * * * *", utc()),
            sample::service("plain", "web:1"),
        ],
    );
    let mut table = Timetable::default();
    table.update(&plan, noon());
    let next = table.all_next();
    assert_eq!(next.keys().collect::<Vec<_>>(), ["hourly"]);
    assert_eq!(next["hourly"], noon() + chrono::Duration::hours(1));
}

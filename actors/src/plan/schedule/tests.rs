//! Tests of cron parsing and of the next firing time, over fixed clocks.

use chrono::{DateTime, Datelike, TimeZone, Timelike, Utc, Weekday};

use super::*;

/// Wednesday 2025-01-01 12:00:00 UTC.
fn clock() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, 1, 12, 0, 0).unwrap()
}

fn next(expression: &str, after: DateTime<Utc>) -> DateTime<Utc> {
    Schedule::parse(expression)
        .unwrap()
        .next_after(after)
        .unwrap()
}

#[test]
fn monday_is_one() {
    let fire = next("0 9 * * 1", clock());
    assert_eq!(fire, Utc.with_ymd_and_hms(2025, 1, 6, 9, 0, 0).unwrap());
    assert_eq!(fire.weekday(), Weekday::Mon);
    // The 6-field form (seconds first) and the day name say the same.
    assert_eq!(next("0 0 9 * * 1", clock()), fire);
    assert_eq!(next("0 0 9 * * MON", clock()), fire);
}

#[test]
fn sunday_is_zero_and_seven() {
    for expression in ["0 0 * * 0", "0 0 * * 7", "0 0 * * sun", "0 0 0 * * SUN"] {
        let fire = next(expression, clock());
        assert_eq!(
            fire,
            Utc.with_ymd_and_hms(2025, 1, 5, 0, 0, 0).unwrap(),
            "{expression}"
        );
    }
}

#[test]
fn day_of_month_or_day_of_week() {
    let schedule = Schedule::parse("0 0 1 * 1").unwrap();
    let mut fires = Vec::new();
    let mut after = clock();
    for _ in 0..5 {
        after = schedule.next_after(after).unwrap();
        fires.push(after.day());
    }
    // Mondays of January 2025 (6, 13, 20, 27), then February 1st (a Saturday).
    assert_eq!(fires, vec![6, 13, 20, 27, 1]);
}

#[test]
fn six_fields_every_two_seconds() {
    let schedule = Schedule::parse("*/2 * * * * *").unwrap();
    let first = schedule.next_after(clock()).unwrap();
    let second = schedule.next_after(first).unwrap();
    assert_eq!(first.second(), 2);
    assert_eq!((second - first).num_seconds(), 2);
}

#[test]
fn seven_fields_with_year() {
    let fire = next("0 30 8 * * * 2026", clock());
    assert_eq!(fire, Utc.with_ymd_and_hms(2026, 1, 1, 8, 30, 0).unwrap());
}

#[test]
fn shortcuts() {
    assert_eq!(
        next("@daily", clock()),
        Utc.with_ymd_and_hms(2025, 1, 2, 0, 0, 0).unwrap()
    );
    assert_eq!(next("@midnight", clock()), next("@daily", clock()));
    assert_eq!(
        next("@hourly", clock()),
        Utc.with_ymd_and_hms(2025, 1, 1, 13, 0, 0).unwrap()
    );
    assert_eq!(next("@weekly", clock()).weekday(), Weekday::Sun);
    assert_eq!(
        next("@monthly", clock()),
        Utc.with_ymd_and_hms(2025, 2, 1, 0, 0, 0).unwrap()
    );
    assert_eq!(
        next("@yearly", clock()),
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
    );
}

#[test]
fn day_ranges_lists_and_steps() {
    let weekdays = Schedule::parse("0 0 * * MON-FRI").unwrap();
    let mut after = clock();
    let mut seen = Vec::new();
    for _ in 0..7 {
        after = weekdays.next_after(after).unwrap();
        seen.push(after.weekday());
    }
    assert!(
        !seen.contains(&Weekday::Sat) && !seen.contains(&Weekday::Sun),
        "{seen:?}"
    );
    let weekend = Schedule::parse("0 0 * * 6-7").unwrap();
    let fire = weekend.next_after(clock()).unwrap();
    assert_eq!(fire.weekday(), Weekday::Sat);
    let every_other = Schedule::parse("0 0 * * */2").unwrap();
    // Sunday, Tuesday, Thursday, Saturday: from Wednesday the next is Thursday.
    assert_eq!(
        every_other.next_after(clock()).unwrap().weekday(),
        Weekday::Thu
    );
    let list = Schedule::parse("0 0 * * 2,fri").unwrap();
    assert_eq!(list.next_after(clock()).unwrap().weekday(), Weekday::Fri);
}

#[test]
fn invalid_expressions_name_the_field() {
    let cases = [
        ("61 * * * *", "minute"),
        ("0 25 * * *", "hour"),
        ("0 0 32 * *", "day of month"),
        ("0 0 * 13 *", "month"),
        ("0 0 * * 8", "day of week"),
        ("0 0 * * FOO", "day of week"),
        ("* * *", "fields"),
        ("@often", "shortcut"),
    ];
    for (expression, expected) in cases {
        let error = Schedule::parse(expression).unwrap_err();
        assert!(
            error.reason.contains(expected),
            "{expression}: {} should mention {expected}",
            error.reason
        );
    }
}

#[test]
fn numeric_days_of_week_name_what_upstream_ran() {
    let notes = super::upstream_differences("0 30 9 * * 1-5");
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(
        notes[0].contains("runs Monday to Friday; ixpantia/dispenser ran this Sunday to Thursday"),
        "{notes:?}"
    );
    assert!(notes[0].contains("`MON-FRI`"), "{notes:?}");
    // Sunday as 0 does not exist upstream; 7 was Saturday there.
    let notes = super::upstream_differences("0 0 8 * * 0");
    assert!(
        notes[0].contains("runs Sunday; ixpantia/dispenser refused it"),
        "{notes:?}"
    );
    let notes = super::upstream_differences("0 0 8 * * 6,7");
    assert!(
        notes[0].contains("runs Sunday, Saturday; ixpantia/dispenser ran this Friday, Saturday"),
        "{notes:?}"
    );
    assert!(notes[0].contains("`SUN,SAT`"), "{notes:?}");
}

#[test]
fn names_steps_and_five_fields_need_no_note() {
    for expression in [
        "0 30 9 * * MON-FRI",
        "0 0 * * * */2",
        "0 0 * * * *",
        "30 9 * * 1-5",
        "@weekly",
    ] {
        assert!(
            super::upstream_differences(expression).is_empty(),
            "{expression}"
        );
    }
}

#[test]
fn both_day_fields_restricted_is_either_here_and_both_upstream() {
    let notes = super::upstream_differences("0 0 0 13 * FRI");
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(notes[0].contains("runs when either matches"), "{notes:?}");
    assert!(notes[0].contains("only when both matched"), "{notes:?}");
}

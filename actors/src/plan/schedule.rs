//! Cron schedules with standard cron semantics, whatever form they are written in.
//!
//! The `cron` crate does the date arithmetic, but it numbers days of the week
//! from Sunday = 1 and requires day-of-month AND day-of-week to match. Standard
//! cron numbers Sunday 0 (or 7) and fires when EITHER restricted day field
//! matches, so the day-of-week field is parsed here and handed to the crate as
//! names, and a schedule restricting both day fields keeps two crate schedules.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Duration, LocalResult, NaiveDateTime, Offset, TimeZone, Timelike, Utc};
use serde::{Serialize, Serializer};

/// Names of the fields of the 7-field form, in order.
const FIELD_NAMES: [&str; 7] = [
    "second",
    "minute",
    "hour",
    "day of month",
    "month",
    "day of week",
    "year",
];
/// Day names as the `cron` crate expects them, indexed by standard cron number (Sunday = 0).
const DAY_NAMES: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];
const HOUR: usize = 2;
const DAY_OF_MONTH: usize = 3;
/// Longest daylight-saving gap searched for its end, in minutes (a skipped day at most).
const MAX_GAP_MINUTES: i64 = 26 * 60;
/// Wall-clock candidates tried before giving up on finding an instant that maps.
const MAX_CANDIDATES: usize = 8;
const DAY_OF_WEEK: usize = 5;

/// A parsed cron schedule. Accepts the 5-field standard form, the 6-field
/// form with seconds first, the 7-field form with a year last, and `@hourly`,
/// `@daily`, `@midnight`, `@weekly`, `@monthly`, `@yearly`, `@annually`.
/// Day of week: 0 or 7 is Sunday, 1 is Monday, names SUN..SAT.
#[derive(Clone)]
pub struct Schedule {
    /// The expression as the user wrote it.
    pub expression: String,
    /// One crate schedule, or two when both day fields are restricted (either matches).
    crate_schedules: Vec<cron::Schedule>,
    /// The hour field is `*`: the schedule is periodic within the day, so it
    /// also fires during the second pass of an hour repeated by a DST change.
    every_hour: bool,
}

/// Why a cron expression does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct ScheduleError {
    pub reason: String,
}

impl Schedule {
    pub fn parse(expression: &str) -> Result<Schedule, ScheduleError> {
        let trimmed = expression.trim();
        let expanded = match trimmed.to_ascii_lowercase().as_str() {
            "@hourly" => "0 0 * * * *".to_string(),
            "@daily" | "@midnight" => "0 0 0 * * *".to_string(),
            "@weekly" => "0 0 0 * * 0".to_string(),
            "@monthly" => "0 0 0 1 * *".to_string(),
            "@yearly" | "@annually" => "0 0 0 1 1 *".to_string(),
            other if other.starts_with('@') => {
                return Err(ScheduleError::new(format!(
                    "unknown shortcut `{trimmed}` (expected @hourly, @daily, @midnight, @weekly, @monthly, @yearly or @annually)"
                )))
            }
            _ => trimmed.to_string(),
        };
        let mut fields: Vec<String> = expanded.split_whitespace().map(str::to_string).collect();
        match fields.len() {
            5 => fields.insert(0, "0".to_string()),
            6 | 7 => {}
            count => {
                return Err(ScheduleError::new(format!(
                    "expected 5, 6 or 7 fields, found {count}"
                )))
            }
        }
        if fields.len() == 6 {
            fields.push("*".to_string());
        }
        let days = parse_day_of_week(&fields[DAY_OF_WEEK])?;
        let dom_restricted = !is_wildcard(&fields[DAY_OF_MONTH]);
        let mut variants = Vec::new();
        match (dom_restricted, days) {
            (_, None) => variants.push(with_field(&fields, DAY_OF_WEEK, "*")),
            (false, Some(days)) => {
                variants.push(with_field(
                    &with_field(&fields, DAY_OF_MONTH, "*"),
                    DAY_OF_WEEK,
                    &days,
                ));
            }
            (true, Some(days)) => {
                variants.push(with_field(&fields, DAY_OF_WEEK, "*"));
                variants.push(with_field(
                    &with_field(&fields, DAY_OF_MONTH, "*"),
                    DAY_OF_WEEK,
                    &days,
                ));
            }
        }
        let mut crate_schedules = Vec::with_capacity(variants.len());
        for variant in &variants {
            let schedule = cron::Schedule::from_str(&variant.join(" "))
                .map_err(|_| ScheduleError::new(blame_field(&fields)))?;
            crate_schedules.push(schedule);
        }
        Ok(Schedule {
            expression: expression.to_string(),
            crate_schedules,
            every_hour: is_wildcard(&fields[HOUR]),
        })
    }

    /// The first time strictly after `after` when the schedule fires, if any,
    /// with standard cron's daylight-saving behaviour: a wall-clock time that
    /// does not exist (clocks jump forward) fires once at the end of the jump;
    /// a wall-clock time that happens twice (clocks go back) fires once, at its
    /// first occurrence, except that a schedule whose hour field is `*` keeps
    /// firing through the repeated hour.
    pub fn next_after<Tz: TimeZone>(&self, after: DateTime<Tz>) -> Option<DateTime<Tz>> {
        let zone = after.timezone();
        let mut cursor = after.naive_local();
        let mut first = None;
        for _ in 0..MAX_CANDIDATES {
            let wall = self.next_wall_after(cursor)?;
            let fire = match zone.from_local_datetime(&wall) {
                LocalResult::Single(fire) => Some(fire),
                LocalResult::Ambiguous(earlier, later) => {
                    Some(if earlier > after { earlier } else { later })
                }
                LocalResult::None => end_of_gap(&zone, wall),
            };
            if let Some(fire) = fire.filter(|fire| *fire > after) {
                first = Some(fire);
                break;
            }
            cursor = wall;
        }
        let first = first?;
        if !self.every_hour {
            return Some(first);
        }
        // Clocks went back between `after` and `first`: the repeated wall-clock
        // times, read with the later offset, come first.
        let later_offset = first.offset().fix();
        if later_offset.local_minus_utc() >= after.offset().fix().local_minus_utc() {
            return Some(first);
        }
        let repeated_from =
            after.naive_utc() + Duration::seconds(i64::from(later_offset.local_minus_utc()));
        let repeated = self
            .next_wall_after(repeated_from)
            .and_then(|wall| zone.from_local_datetime(&wall).latest())
            .filter(|fire| *fire > after && *fire < first);
        Some(repeated.unwrap_or(first))
    }

    /// The first wall-clock time strictly after `after` that matches, zone aside.
    fn next_wall_after(&self, after: NaiveDateTime) -> Option<NaiveDateTime> {
        let after = Utc.from_utc_datetime(&after);
        self.crate_schedules
            .iter()
            .filter_map(|schedule| schedule.after(&after).next())
            .min()
            .map(|fire| fire.naive_utc())
    }
}

/// The first instant after a wall-clock time skipped by a jump forward.
fn end_of_gap<Tz: TimeZone>(zone: &Tz, wall: NaiveDateTime) -> Option<DateTime<Tz>> {
    let start = wall.with_second(0)?;
    (1..=MAX_GAP_MINUTES)
        .map(|minutes| start + Duration::minutes(minutes))
        .find_map(|candidate| zone.from_local_datetime(&candidate).earliest())
}

impl ScheduleError {
    fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
        }
    }
}

fn is_wildcard(field: &str) -> bool {
    field == "*" || field == "?"
}

fn with_field(fields: &[String], index: usize, value: &str) -> Vec<String> {
    let mut copy = fields.to_vec();
    copy[index] = value.to_string();
    copy
}

/// Finds the field the crate rejects by trying each one alone.
fn blame_field(fields: &[String]) -> String {
    for (index, field) in fields.iter().enumerate() {
        if index == DAY_OF_WEEK {
            continue;
        }
        let alone = with_field(&vec!["*".to_string(); 7], index, field);
        let alone = if index == 0 {
            alone
        } else {
            with_field(&alone, 0, "0")
        };
        if cron::Schedule::from_str(&alone.join(" ")).is_err() {
            return format!("invalid {} field `{field}`", FIELD_NAMES[index]);
        }
    }
    "invalid cron expression".to_string()
}

/// Parses a standard day-of-week field into crate day names; `None` means any day.
fn parse_day_of_week(field: &str) -> Result<Option<String>, ScheduleError> {
    if is_wildcard(field) {
        return Ok(None);
    }
    let days = expand_days(field, day_number)?;
    let names: Vec<&str> = days.iter().map(|day| DAY_NAMES[*day]).collect();
    Ok(Some(names.join(",")))
}

/// The days (Sunday = 0) a day-of-week field names, each day read by `day`
/// (which returns 0..=7, 7 being Sunday again).
fn expand_days(
    field: &str,
    day: fn(&str) -> Option<usize>,
) -> Result<BTreeSet<usize>, ScheduleError> {
    let invalid = |why: &str| {
        ScheduleError::new(format!(
            "invalid day of week field `{field}`: {why} (0-7 or SUN-SAT, 0 and 7 are Sunday)"
        ))
    };
    let mut days = BTreeSet::new();
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => {
                let step: usize = step
                    .parse()
                    .ok()
                    .filter(|step| *step > 0)
                    .ok_or_else(|| invalid("bad step"))?;
                (range, step)
            }
            None => (item, 1),
        };
        let (first, last) = if is_wildcard(range) {
            (0, 6)
        } else if let Some((start, end)) = range.split_once('-') {
            day(start).zip(day(end)).ok_or_else(|| invalid("bad day"))?
        } else {
            let one = day(range).ok_or_else(|| invalid("bad day"))?;
            let last = if item.contains('/') { 7 } else { one };
            (one, last)
        };
        if first > last {
            return Err(invalid("a range must go upwards"));
        }
        for one in (first..=last).step_by(step) {
            days.insert(one % 7);
        }
    }
    Ok(days)
}

/// A day as ixpantia/dispenser's `cron` crate numbers it: 1 (Sunday) to 7
/// (Saturday), names as everywhere; as standard cron's number (Sunday = 0).
fn upstream_day_number(text: &str) -> Option<usize> {
    match text.parse::<usize>() {
        Ok(number) => (1..=7).contains(&number).then(|| number - 1),
        Err(_) => day_number(text),
    }
}

/// Where an expression means something else to ixpantia/dispenser, whose
/// `cron` crate counts days of the week from Sunday = 1 and fires only when
/// both restricted day fields match: one line each, for a warning. Only
/// for the 6- and 7-field forms upstream takes (its files never have 5).
pub fn upstream_differences(expression: &str) -> Vec<String> {
    let fields: Vec<&str> = expression.split_whitespace().collect();
    if !(6..=7).contains(&fields.len()) {
        return Vec::new();
    }
    let mut notes = Vec::new();
    let day_of_week = fields[DAY_OF_WEEK];
    // A number as a day (a step's number is no day: `*/2` is the same days
    // in both numberings).
    let numeric = day_of_week.split(',').any(|item| {
        let range = item.split('/').next().unwrap_or_default();
        range.bytes().any(|b| b.is_ascii_digit())
    });
    if !is_wildcard(day_of_week) && numeric {
        if let Ok(days) = expand_days(day_of_week, day_number) {
            let theirs = expand_days(day_of_week, upstream_day_number).ok();
            let mut note = format!(
                "the day of week `{day_of_week}` runs {}",
                describe_days(&days)
            );
            match theirs {
                Some(theirs) if theirs != days => note.push_str(&format!(
                    "; ixpantia/dispenser ran this {}",
                    describe_days(&theirs)
                )),
                Some(_) => {}
                None => note.push_str("; ixpantia/dispenser refused it"),
            }
            note.push_str(&format!(
                " (standard cron: 0 and 7 are Sunday); write day names to be clear: `{}`",
                day_names(&days)
            ));
            notes.push(note);
        }
    }
    if !is_wildcard(fields[DAY_OF_MONTH]) && !is_wildcard(day_of_week) {
        notes.push(format!(
            "both day fields are restricted (`{}` and `{day_of_week}`): this runs when either matches, as in standard cron; ixpantia/dispenser ran it only when both matched",
            fields[DAY_OF_MONTH]
        ));
    }
    notes
}

/// Full day names for people: "Monday to Friday", "Sunday, Tuesday".
fn describe_days(days: &BTreeSet<usize>) -> String {
    const FULL: [&str; 7] = [
        "Sunday",
        "Monday",
        "Tuesday",
        "Wednesday",
        "Thursday",
        "Friday",
        "Saturday",
    ];
    day_runs(days)
        .into_iter()
        .map(|(first, last)| match last - first {
            0 => FULL[first].to_string(),
            1 => format!("{}, {}", FULL[first], FULL[last]),
            _ => format!("{} to {}", FULL[first], FULL[last]),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The days as a day-of-week field of names: `MON-FRI`, `SUN,TUE`.
fn day_names(days: &BTreeSet<usize>) -> String {
    day_runs(days)
        .into_iter()
        .map(|(first, last)| match last - first {
            0 => DAY_NAMES[first].to_string(),
            1 => format!("{},{}", DAY_NAMES[first], DAY_NAMES[last]),
            _ => format!("{}-{}", DAY_NAMES[first], DAY_NAMES[last]),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Consecutive days as (first, last) runs, in week order from Sunday.
fn day_runs(days: &BTreeSet<usize>) -> Vec<(usize, usize)> {
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for &day in days {
        match runs.last_mut() {
            Some((_, last)) if *last + 1 == day => *last = day,
            _ => runs.push((day, day)),
        }
    }
    runs
}

/// A day as standard cron numbers it: 0..=7 or a three-letter name.
fn day_number(text: &str) -> Option<usize> {
    if let Ok(number) = text.parse::<usize>() {
        return (number <= 7).then_some(number);
    }
    DAY_NAMES
        .iter()
        .position(|name| name.eq_ignore_ascii_case(text))
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        self.expression == other.expression
    }
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Schedule({:?})", self.expression)
    }
}

impl Serialize for Schedule {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.expression)
    }
}

#[cfg(test)]
mod tests;

//! The tables of service.toml that decide when the container runs:
//! `[dispenser]` (watching, tag tracking, initialize, cron, pull, overlap)
//! and `[depends_on]`.

use std::collections::BTreeMap;
use std::time::Duration;

use dispenser_actors::plan::{
    DependsOn, Initialize, Lifecycle, PullPolicy, Schedule, Zone, DEFAULT_OVERLAP,
};

use super::field::{duration, pick, zone};
use crate::config::check::FileCheck;
use crate::config::file::DispenserTable;
use crate::config::values::{DEPENDS_ON, INITIALIZE, OVERLAPS, PULL_POLICIES};

/// `[dispenser]`: its defaults when absent; the time zone defaults to `[daemon]`'s.
pub(super) fn lifecycle(
    check: &mut FileCheck<'_>,
    table: Option<&DispenserTable>,
    default_zone: Zone,
) -> Lifecycle {
    let initialize = match table.and_then(|t| t.initialize.clone()) {
        Some(word) => pick(
            check,
            "dispenser.initialize",
            INITIALIZE,
            &word,
            "initialize mode",
        )
        .unwrap_or(Initialize::Immediately),
        None => Initialize::Immediately,
    };
    let pull = match table.and_then(|t| t.pull.clone()) {
        Some(word) => pick(check, "dispenser.pull", PULL_POLICIES, &word, "pull policy")
            .unwrap_or(PullPolicy::OnStartup),
        None => PullPolicy::OnStartup,
    };
    let schedule = table
        .and_then(|t| t.cron.clone())
        .and_then(|expression| schedule(check, &expression));
    let timezone = table
        .and_then(|t| t.timezone.as_deref())
        .map_or(default_zone, |name| zone(check, "dispenser.timezone", name));
    let overlap = match table.and_then(|t| t.overlap.clone()) {
        Some(word) => pick(check, "dispenser.overlap", OVERLAPS, &word, "overlap mode")
            .unwrap_or(DEFAULT_OVERLAP),
        None => DEFAULT_OVERLAP,
    };
    let max_runtime = duration(
        check,
        "dispenser.max_runtime",
        table.and_then(|t| t.max_runtime.as_ref()),
    );
    if max_runtime == Some(Duration::ZERO) {
        check.error(
            "dispenser.max_runtime",
            "`max_runtime` must be longer than zero",
            "zero",
        );
    }
    let track = table
        .and_then(|t| t.track.as_deref())
        .and_then(|range| track(check, range));
    let watch = table.and_then(|t| t.watch);
    if track.is_some() && watch == Some(false) {
        check.error(
            "dispenser.watch",
            "`track` follows the registry's tags, so the service is watched: `watch = false` contradicts it",
            "contradicts `track`",
        ).help = Some("remove `watch = false`, or `track`".into());
    }
    Lifecycle {
        watch: watch.unwrap_or(false) || track.is_some(),
        initialize,
        schedule,
        pull,
        timezone,
        overlap,
        max_runtime,
        track,
    }
}

/// `[dispenser] track`: a semver range, as Cargo writes them (`^1.2`,
/// `~1.4.2`, `>=2, <3`, `1.*`).
fn track(check: &mut FileCheck<'_>, range: &str) -> Option<String> {
    match semver::VersionReq::parse(range) {
        Ok(_) => Some(range.to_string()),
        Err(err) => {
            let shown = check.shown("dispenser.track", range);
            // The parser's reason quotes the value: not when it is a secret.
            let reason = match check.masked("dispenser.track", range).masked {
                true => String::new(),
                false => format!(": {err}"),
            };
            check
                .error(
                    "dispenser.track",
                    format!("`track`{shown} is not a semver range{reason}"),
                    "invalid range",
                )
                .help = Some("a range such as `\"^1.2\"` (1.2 and later 1.x), `\"~1.4\"` (1.4.x) or `\">=2, <3\"`".into());
            None
        }
    }
}

/// `[dispenser] cron`: a cron expression, with a warning where it meant
/// other days in ixpantia/dispenser.
fn schedule(check: &mut FileCheck<'_>, expression: &str) -> Option<Schedule> {
    // Files written for ixpantia/dispenser: where this expression meant
    // other days there, say so (not for a value from a secret).
    if !check.masked("dispenser.cron", expression).masked {
        for note in dispenser_actors::plan::upstream_differences(expression) {
            check.warning(
                "dispenser.cron",
                note,
                "other days than in ixpantia/dispenser",
            );
        }
    }
    Schedule::parse(expression)
        .map_err(|error| {
            // The reason quotes the bad field: not when it is a secret.
            let reason = match check.masked("dispenser.cron", expression).masked {
                true => "the expression does not parse".to_string(),
                false => error.reason,
            };
            check.error("dispenser.cron", format!("invalid cron expression: {reason}"), "invalid schedule")
                .help = Some("write 5 fields (minute hour day-of-month month day-of-week), 6 with seconds first, or @daily".into());
        })
        .ok()
}

/// `[depends_on]`: each dependency's condition (whether the dependency
/// exists is a cross-service check).
pub(super) fn depends_on(
    check: &mut FileCheck<'_>,
    table: &BTreeMap<String, String>,
) -> BTreeMap<String, DependsOn> {
    let mut depends_on = BTreeMap::new();
    for (dependency, word) in table {
        if let Some(condition) = pick(
            check,
            &format!("depends_on.{dependency}"),
            DEPENDS_ON,
            word,
            "dependency condition",
        ) {
            depends_on.insert(dependency.clone(), condition);
        }
    }
    depends_on
}

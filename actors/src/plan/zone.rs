//! The time zone a schedule is read in: the host's local time or an IANA zone.

use std::fmt;

use chrono::{DateTime, Local, Utc};
use serde::{Serialize, Serializer};

use super::Schedule;

/// Where a schedule's wall-clock times live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Zone {
    /// The host's local time (`/etc/localtime`, or `TZ`).
    #[default]
    Local,
    /// An IANA zone such as `Europe/Zurich`.
    Named(chrono_tz::Tz),
}

impl Zone {
    /// An IANA zone by name (exact spelling, as in the tz database).
    pub fn named(name: &str) -> Option<Zone> {
        name.parse::<chrono_tz::Tz>().ok().map(Zone::Named)
    }

    /// Every IANA zone name, for suggestions.
    pub fn names() -> impl Iterator<Item = &'static str> {
        chrono_tz::TZ_VARIANTS.iter().map(|zone| zone.name())
    }

    /// The first time strictly after `after` when `schedule` fires, read in this zone.
    pub fn next_fire(&self, schedule: &Schedule, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Zone::Local => schedule
                .next_after(after.with_timezone(&Local))
                .map(|fire| fire.with_timezone(&Utc)),
            Zone::Named(zone) => schedule
                .next_after(after.with_timezone(zone))
                .map(|fire| fire.with_timezone(&Utc)),
        }
    }
}

impl fmt::Display for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Zone::Local => f.write_str("local"),
            Zone::Named(zone) => f.write_str(zone.name()),
        }
    }
}

impl Serialize for Zone {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

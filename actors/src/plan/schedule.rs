//! Cron schedules with standard cron semantics, whatever form they are written in.

use std::fmt;

use serde::{Serialize, Serializer};

/// A parsed cron schedule. Accepts the 5-field standard form, the 6-field
/// form with seconds first, and `@hourly`, `@daily`, `@weekly`, `@monthly`,
/// `@yearly`. Day of week: 0 or 7 is Sunday, 1 is Monday, names MON..SUN.
#[derive(Clone)]
pub struct Schedule {
    /// The expression as the user wrote it.
    pub expression: String,
}

/// Why a cron expression does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct ScheduleError {
    pub reason: String,
}

impl Schedule {
    pub fn parse(expression: &str) -> Result<Schedule, ScheduleError> {
        let _ = expression;
        Err(ScheduleError {
            reason: "cron parsing is not implemented yet".into(),
        })
    }
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

//! Fuzzes the cron parser: the input is `8 bytes of time NUL-free expression`;
//! parsing never panics and a next fire time is after `now`.
#![no_main]

use chrono::{TimeZone, Utc};
use dispenser_actors::plan::Schedule;
use libfuzzer_sys::fuzz_target;

/// 1990-01-01 and the span of instants tried after it (70 years).
const EPOCH_1990: i64 = 631_152_000;
const SPAN: u64 = 70 * 365 * 86_400;

fuzz_target!(|data: &[u8]| {
    let (clock, text) = data.split_at(data.len().min(8));
    let mut seconds = [0u8; 8];
    seconds[..clock.len()].copy_from_slice(clock);
    let offset = i64::try_from(u64::from_le_bytes(seconds) % SPAN).unwrap_or_default();
    let Some(now) = Utc.timestamp_opt(EPOCH_1990 + offset, 0).single() else {
        return;
    };
    let text = String::from_utf8_lossy(text);
    if let Ok(schedule) = Schedule::parse(&text) {
        if let Some(next) = schedule.next_after(now) {
            assert!(next > now, "{text}: {next} <= {now}");
        }
        let berlin = now.with_timezone(&chrono_tz::Europe::Berlin);
        if let Some(next) = schedule.next_after(berlin) {
            assert!(next > berlin, "{text}: {next} <= {berlin}");
        }
    }
});

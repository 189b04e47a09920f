//! `TrafficRing`: one route's requests per minute over the last hour, for the
//! status page's charts. The proxy's request path pays one clock read, one
//! load and one or two atomic additions per request: no lock, no allocation.
//!
//! Each of the `MINUTES` slots packs the minute it counts (its low
//! `STAMP_BITS` bits) above the count, so a slot that still holds an hour-old
//! minute is recognised and restarted by one compare-and-swap, and a reader
//! never takes an old count for a current one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Minutes kept: the last hour.
pub const MINUTES: usize = 60;
/// Bits of a slot that hold the count; the rest hold the minute's stamp.
const COUNT_BITS: u32 = 40;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;
/// The stamp is the minute modulo 2^24 (about 32 years): enough to tell
/// this hour's minutes from those of an hour ago.
const STAMP_MASK: u64 = (1 << (64 - COUNT_BITS)) - 1;

/// One route's last hour: requests, and of those the 4xx and 5xx answers.
#[derive(Debug)]
pub struct TrafficRing {
    requests: [AtomicU64; MINUTES],
    client_errors: [AtomicU64; MINUTES],
    server_errors: [AtomicU64; MINUTES],
}

/// What one minute of a route saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MinuteCounts {
    /// Minutes since the Unix epoch.
    pub minute: u64,
    pub requests: u64,
    pub client_errors: u64,
    pub server_errors: u64,
}

impl Default for TrafficRing {
    fn default() -> Self {
        TrafficRing {
            requests: std::array::from_fn(|_| AtomicU64::new(0)),
            client_errors: std::array::from_fn(|_| AtomicU64::new(0)),
            server_errors: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl TrafficRing {
    /// Counts one answer with `status` in the current minute.
    pub fn record(&self, status: u16) {
        self.record_at(current_minute(), status);
    }

    /// Counts one answer with `status` in `minute` (minutes since the epoch).
    pub fn record_at(&self, minute: u64, status: u16) {
        let slot = slot_of(minute);
        bump(&self.requests[slot], minute);
        match status {
            400..=499 => bump(&self.client_errors[slot], minute),
            500..=599 => bump(&self.server_errors[slot], minute),
            _ => {}
        }
    }

    /// The `MINUTES` minutes that end with `now`, oldest first; a minute
    /// nothing was counted in has zeros.
    pub fn last_hour(&self, now: u64) -> Vec<MinuteCounts> {
        let first = now.saturating_sub(MINUTES as u64 - 1);
        (first..=now)
            .map(|minute| {
                let slot = slot_of(minute);
                MinuteCounts {
                    minute,
                    requests: count_in(&self.requests[slot], minute),
                    client_errors: count_in(&self.client_errors[slot], minute),
                    server_errors: count_in(&self.server_errors[slot], minute),
                }
            })
            .collect()
    }
}

/// Minutes since the Unix epoch, by the system clock.
pub fn current_minute() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs() / 60)
        .unwrap_or(0)
}

fn slot_of(minute: u64) -> usize {
    (minute % MINUTES as u64) as usize
}

fn stamp_of(minute: u64) -> u64 {
    (minute & STAMP_MASK) << COUNT_BITS
}

/// Adds one to `cell` for `minute`, restarting it when it holds another minute.
fn bump(cell: &AtomicU64, minute: u64) {
    let stamp = stamp_of(minute);
    let mut seen = cell.load(Ordering::Relaxed);
    loop {
        if seen & !COUNT_MASK == stamp {
            // The count never reaches 2^40 within one minute.
            cell.fetch_add(1, Ordering::Relaxed);
            return;
        }
        match cell.compare_exchange_weak(seen, stamp | 1, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return,
            Err(now) => seen = now,
        }
    }
}

fn count_in(cell: &AtomicU64, minute: u64) -> u64 {
    let value = cell.load(Ordering::Relaxed);
    match value & !COUNT_MASK == stamp_of(minute) {
        true => value & COUNT_MASK,
        false => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minutes_count_requests_and_error_classes() {
        let ring = TrafficRing::default();
        let now = 29_000_000;
        for status in [200, 204, 404, 502, 503] {
            ring.record_at(now, status);
        }
        ring.record_at(now - 2, 200);
        let hour = ring.last_hour(now);
        assert_eq!(hour.len(), MINUTES);
        assert_eq!(hour[0].minute, now - 59);
        let last = hour[MINUTES - 1];
        assert_eq!(
            (last.requests, last.client_errors, last.server_errors),
            (5, 1, 2)
        );
        assert_eq!(hour[MINUTES - 3].requests, 1);
        assert_eq!(hour.iter().map(|m| m.requests).sum::<u64>(), 6);
    }

    #[test]
    fn a_slot_an_hour_old_reads_as_zero_and_restarts() {
        let ring = TrafficRing::default();
        let then = 29_000_000;
        ring.record_at(then, 500);
        ring.record_at(then, 500);
        let an_hour_later = then + MINUTES as u64;
        // Same slot, another minute: nothing of the old count shows.
        assert!(ring
            .last_hour(an_hour_later)
            .iter()
            .all(|m| m.requests == 0));
        ring.record_at(an_hour_later, 200);
        let last = ring.last_hour(an_hour_later)[MINUTES - 1];
        assert_eq!((last.requests, last.server_errors), (1, 0));
    }

    #[test]
    fn concurrent_writers_lose_no_request() {
        let ring = std::sync::Arc::new(TrafficRing::default());
        let minute = 29_000_000;
        let writers: Vec<_> = (0..4)
            .map(|_| {
                let ring = ring.clone();
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        ring.record_at(minute, 500);
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.join().expect("writer");
        }
        let last = ring.last_hour(minute)[MINUTES - 1];
        assert_eq!((last.requests, last.server_errors), (40_000, 40_000));
    }
}

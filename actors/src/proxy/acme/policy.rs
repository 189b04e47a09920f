//! When to renew and how long to wait after a failure: pure functions over
//! times and a random fraction, so the policy is unit-tested with a fixed
//! clock. Every answer is a time in the future or a bounded delay: nothing
//! here can make the manager contact the CA in a tight loop.

use std::time::{Duration, SystemTime};

/// Renew when this fraction of the lifetime is left (1/3).
pub const RENEW_WHEN_LEFT_DIVISOR: u32 = 3;
/// How often the manager looks at its certificates, unless configured.
pub const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(60 * 60);
/// First wait after a failed attempt, unless configured.
pub const DEFAULT_BACKOFF_BASE: Duration = Duration::from_secs(5 * 60);
/// Longest wait between two failed attempts, unless configured.
pub const DEFAULT_BACKOFF_CAP: Duration = Duration::from_secs(24 * 60 * 60);
/// Longest a single issuance (order, validation, download) may take.
pub const DEFAULT_ORDER_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// A `Retry-After` longer than this is taken as this (a hostile or broken
/// server must not disable renewal for months).
pub const RETRY_AFTER_MAX: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// Wait after a rate-limit error that carried no `Retry-After`.
pub const RATE_LIMITED_FLOOR: Duration = Duration::from_secs(60 * 60);
/// Shortest time between two fetches of a certificate's renewal information.
pub const ARI_REFRESH_MIN: Duration = Duration::from_secs(60 * 60);
/// Jitter applied to scheduled checks and back-offs: plus or minus 10%.
const JITTER_SPREAD: f64 = 0.2;

/// The manager's clock settings. Tests shorten them; the daemon uses `default`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Time between two periodic checks (with jitter).
    pub check_interval: Duration,
    /// Wait after the first failure; doubles with each further failure.
    pub backoff_base: Duration,
    /// The doubling stops here.
    pub backoff_cap: Duration,
    /// Longest a single issuance may take before it counts as failed.
    pub order_timeout: Duration,
}

/// Why an attempt failed, as far as the schedule cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Anything but a rate limit.
    Other,
    /// `urn:ietf:params:acme:error:rateLimited`, with the server's
    /// `Retry-After` when it sent one.
    RateLimited { retry_after: Option<Duration> },
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            check_interval: DEFAULT_CHECK_INTERVAL,
            backoff_base: DEFAULT_BACKOFF_BASE,
            backoff_cap: DEFAULT_BACKOFF_CAP,
            order_timeout: DEFAULT_ORDER_TIMEOUT,
        }
    }
}

impl Timing {
    /// The wait after the `failures`-th consecutive failure (1 for the
    /// first), before jitter: `base * 2^(failures-1)`, at most `cap`; a rate
    /// limit waits at least as long as the server asked (bounded by
    /// `RETRY_AFTER_MAX`) or `RATE_LIMITED_FLOOR`.
    pub fn retry_delay(&self, failures: u32, kind: FailureKind) -> Duration {
        let exponent = failures.saturating_sub(1).min(31);
        let backoff = self
            .backoff_base
            .checked_mul(1u32 << exponent)
            .unwrap_or(self.backoff_cap)
            .min(self.backoff_cap);
        match kind {
            FailureKind::Other => backoff,
            FailureKind::RateLimited { retry_after } => {
                let asked = retry_after
                    .unwrap_or(RATE_LIMITED_FLOOR)
                    .min(RETRY_AFTER_MAX);
                backoff.max(asked)
            }
        }
    }
}

/// When a certificate valid from `not_before` to `not_after` is due for
/// renewal by lifetime: when a third of it is left. A certificate whose
/// validity is empty or inverted is due at `not_before`, never "now" by
/// default, so a strange certificate cannot cause a renewal loop on its own.
pub fn renew_by_lifetime(not_before: SystemTime, not_after: SystemTime) -> SystemTime {
    match not_after.duration_since(not_before) {
        Ok(lifetime) if !lifetime.is_zero() => not_after - lifetime / RENEW_WHEN_LEFT_DIVISOR,
        _ => not_before,
    }
}

/// A point in the CA's suggested renewal window (RFC 9773): `start` plus
/// `fraction` (in `[0, 1)`) of its length, as the RFC asks clients to pick a
/// uniformly random time inside it.
pub fn renew_in_window(start: SystemTime, end: SystemTime, fraction: f64) -> SystemTime {
    let length = end.duration_since(start).unwrap_or(Duration::ZERO);
    start + length.mul_f64(fraction.clamp(0.0, 1.0))
}

/// `delay` spread by plus or minus 10%, `fraction` in `[0, 1)` being the random draw.
pub fn jitter(delay: Duration, fraction: f64) -> Duration {
    delay.mul_f64(1.0 - JITTER_SPREAD / 2.0 + JITTER_SPREAD * fraction.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);
    const DAY: Duration = Duration::from_secs(86_400);

    #[test]
    fn renews_when_a_third_of_the_lifetime_is_left() {
        let start = SystemTime::UNIX_EPOCH + DAY * 1000;
        assert_eq!(renew_by_lifetime(start, start + DAY * 90), start + DAY * 60);
        assert_eq!(renew_by_lifetime(start, start + DAY * 6), start + DAY * 4);
        assert_eq!(renew_by_lifetime(start, start + DAY * 45), start + DAY * 30);
    }

    #[test]
    fn a_broken_validity_is_not_due_now() {
        let start = SystemTime::UNIX_EPOCH + DAY * 1000;
        assert_eq!(renew_by_lifetime(start, start), start);
        assert_eq!(renew_by_lifetime(start, start - DAY), start);
    }

    #[test]
    fn the_window_point_stays_inside_the_window() {
        let start = SystemTime::UNIX_EPOCH + DAY * 1000;
        let end = start + DAY * 2;
        assert_eq!(renew_in_window(start, end, 0.0), start);
        assert_eq!(renew_in_window(start, end, 0.5), start + DAY);
        assert!(renew_in_window(start, end, 0.999_999) < end);
        assert_eq!(renew_in_window(end, start, 0.5), end, "inverted window");
    }

    #[test]
    fn back_off_doubles_up_to_the_cap() {
        let timing = Timing::default();
        let delays: Vec<_> = (1..=12)
            .map(|n| timing.retry_delay(n, FailureKind::Other))
            .collect();
        let minutes = |m: u64| Duration::from_secs(m * 60);
        assert_eq!(
            &delays[..5],
            &[
                minutes(5),
                minutes(10),
                minutes(20),
                minutes(40),
                minutes(80)
            ]
        );
        assert!(delays.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(delays[11], DAY);
        assert_eq!(timing.retry_delay(u32::MAX, FailureKind::Other), DAY);
    }

    #[test]
    fn rate_limits_wait_at_least_as_long_as_asked() {
        let timing = Timing::default();
        let limited = |retry_after| FailureKind::RateLimited { retry_after };
        assert_eq!(timing.retry_delay(1, limited(Some(HOUR * 3))), HOUR * 3);
        assert_eq!(timing.retry_delay(1, limited(None)), RATE_LIMITED_FLOOR);
        assert_eq!(
            timing.retry_delay(1, limited(Some(DAY * 365))),
            RETRY_AFTER_MAX
        );
        // A short Retry-After never shortens the exponential back-off.
        assert_eq!(
            timing.retry_delay(12, limited(Some(Duration::from_secs(1)))),
            DAY
        );
    }

    #[test]
    fn jitter_spreads_by_ten_percent() {
        assert_eq!(jitter(HOUR, 0.0), HOUR.mul_f64(0.9));
        assert_eq!(jitter(HOUR, 0.5), HOUR);
        assert!(jitter(HOUR, 0.999) < HOUR.mul_f64(1.1));
    }
}

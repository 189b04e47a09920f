//! Whether the Docker Engine answers, as the `DockerWatch` actor last saw it,
//! and the back-off between two attempts to reach it. `Reachability` is a
//! shared flag the supervisor and the service actors read, so nothing that
//! needs Docker is started (and fails, and logs) while it is known to be away.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// First pause after a failed attempt to reach the Docker Engine.
pub const RETRY_FIRST: Duration = Duration::from_millis(500);
/// Longest pause between two attempts.
pub const RETRY_MAX: Duration = Duration::from_secs(30);
/// Each pause is shortened by up to this fraction, at random, so several
/// daemons (or several retries) do not hit a restarting engine in step.
const JITTER_FRACTION: f64 = 0.25;

/// The Docker Engine answered the last check (shared; cloning shares it).
#[derive(Debug, Clone)]
pub struct Reachability(Arc<AtomicBool>);

/// Capped exponential back-off with jitter: `first`, then doubling up to `max`,
/// each pause shortened by up to a quarter at random.
#[derive(Debug, Clone)]
pub struct BackOff {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Default for Reachability {
    /// Reachable: the daemon connects before anything reads the flag.
    fn default() -> Self {
        Reachability(Arc::new(AtomicBool::new(true)))
    }
}

impl Reachability {
    /// True unless the last check failed.
    pub fn is_up(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// Records the outcome of a check; returns the previous state.
    pub fn set(&self, up: bool) -> bool {
        self.0.swap(up, Ordering::SeqCst)
    }
}

impl Default for BackOff {
    fn default() -> Self {
        BackOff::new(RETRY_FIRST, RETRY_MAX)
    }
}

impl BackOff {
    pub fn new(first: Duration, max: Duration) -> Self {
        let first = first.min(max);
        BackOff {
            first,
            max,
            next: first,
        }
    }

    /// The pause before the next attempt, given `random` in `[0, 1)`.
    pub fn next_with(&mut self, random: f64) -> Duration {
        let pause = self.next;
        self.next = (self.next * 2).min(self.max);
        let cut = JITTER_FRACTION * random.clamp(0.0, 1.0);
        pause.mul_f64(1.0 - cut)
    }

    /// The pause before the next attempt, with random jitter.
    pub fn next_pause(&mut self) -> Duration {
        self.next_with(fastrand::f64())
    }

    /// Back to the first pause (after a success).
    pub fn reset(&mut self) {
        self.next = self.first;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_up_to_the_cap() {
        let mut back_off = BackOff::new(Duration::from_millis(500), Duration::from_secs(3));
        let pauses: Vec<Duration> = (0..6).map(|_| back_off.next_with(0.0)).collect();
        assert_eq!(
            pauses,
            [500, 1000, 2000, 3000, 3000, 3000].map(Duration::from_millis)
        );
        back_off.reset();
        assert_eq!(back_off.next_with(0.0), Duration::from_millis(500));
    }

    #[test]
    fn jitter_shortens_by_at_most_a_quarter() {
        let mut back_off = BackOff::new(Duration::from_secs(4), Duration::from_secs(4));
        let shortest = back_off.next_with(0.999_999);
        assert!(shortest >= Duration::from_secs(3) && shortest < Duration::from_millis(3001));
        for _ in 0..100 {
            let pause = back_off.next_pause();
            assert!(
                pause > Duration::from_secs(3) && pause <= Duration::from_secs(4),
                "{pause:?}"
            );
        }
    }

    #[test]
    fn reachability_is_shared_between_clones() {
        let flag = Reachability::default();
        let other = flag.clone();
        assert!(other.is_up());
        assert!(flag.set(false));
        assert!(!other.is_up());
        assert!(!other.set(true));
        assert!(flag.is_up());
    }
}

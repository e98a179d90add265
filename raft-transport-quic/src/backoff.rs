//! Reconnect pacing and log rate limiting: the two things that keep a down peer cheap.

use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant};

/// A small xorshift generator for jitter; seeded from the standard library's per-process
/// random hasher keys, so no two processes (or peers) retry in lockstep.
#[derive(Debug, Clone)]
pub(crate) struct Jitter(u64);

impl Jitter {
    pub(crate) fn new(salt: u64) -> Jitter {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(salt);
        Jitter(h.finish() | 1)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A uniform fraction in `[0, 1)`.
    fn fraction(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Capped exponential backoff with jitter: the n-th consecutive failure waits a random time
/// between half and all of `min(max, initial * 2^n)`.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    initial: Duration,
    max: Duration,
    failures: u32,
    jitter: Jitter,
}

impl Backoff {
    pub(crate) fn new(initial: Duration, max: Duration, salt: u64) -> Backoff {
        Backoff {
            initial,
            max,
            failures: 0,
            jitter: Jitter::new(salt),
        }
    }

    /// Records a failure and returns how long to wait before the next attempt.
    pub(crate) fn fail(&mut self) -> Duration {
        let ceiling = self
            .initial
            .saturating_mul(1u32 << self.failures.min(20))
            .min(self.max);
        self.failures = self.failures.saturating_add(1);
        ceiling.mul_f64(0.5 + 0.5 * self.jitter.fraction())
    }

    /// Consecutive failures so far.
    pub(crate) fn failures(&self) -> u32 {
        self.failures
    }

    /// Forgets past failures (after a success).
    pub(crate) fn reset(&mut self) {
        self.failures = 0;
    }
}

/// Lets one log line through per interval and counts the ones it held back.
#[derive(Debug, Clone)]
pub(crate) struct LogLimiter {
    interval: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl LogLimiter {
    pub(crate) fn new(interval: Duration) -> LogLimiter {
        LogLimiter {
            interval,
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(number of lines suppressed since the last one)` if a line may be logged now.
    pub(crate) fn allow(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self.last.is_some_and(|t| now.duration_since(t) < self.interval) {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }

    /// Starts an interval without logging a line: lines are held back until it is over.
    pub(crate) fn hold(&mut self) {
        self.last = Some(Instant::now());
        self.suppressed = 0;
    }

    /// Starts over, so the next line is logged at once (after a recovery).
    pub(crate) fn reset(&mut self) {
        self.last = None;
        self.suppressed = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        let initial = Duration::from_millis(100);
        let max = Duration::from_secs(2);
        let mut b = Backoff::new(initial, max, 7);
        for n in 0..40u32 {
            let ceiling = initial.saturating_mul(1 << n.min(20)).min(max);
            let d = b.fail();
            assert!(
                d >= ceiling / 2 && d <= ceiling,
                "attempt {n}: {d:?} vs {ceiling:?}"
            );
        }
        assert_eq!(b.failures(), 40);
        b.reset();
        assert!(b.fail() <= initial);
    }

    #[test]
    fn jitter_differs_between_generators() {
        let a: Vec<u64> = {
            let mut j = Jitter::new(1);
            (0..4).map(|_| j.next_u64()).collect()
        };
        let b: Vec<u64> = {
            let mut j = Jitter::new(1);
            (0..4).map(|_| j.next_u64()).collect()
        };
        assert_ne!(a, b, "each generator is seeded afresh");
    }

    #[test]
    fn limiter_lets_one_line_through_per_interval() {
        let mut l = LogLimiter::new(Duration::from_secs(3600));
        assert_eq!(l.allow(), Some(0));
        for _ in 0..1000 {
            assert_eq!(l.allow(), None);
        }
        l.reset();
        assert_eq!(l.allow(), Some(0));
        l.reset();
        l.hold();
        assert_eq!(l.allow(), None, "held back");
        let mut l = LogLimiter::new(Duration::ZERO);
        assert_eq!(l.allow(), Some(0));
        assert_eq!(l.allow(), Some(0));
    }
}

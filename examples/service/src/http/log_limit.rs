//! Logging what clients do wrong without letting them flood the log: at most one line per
//! [`LOG_EVERY`], carrying the count of the lines held back since the last one.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The least time between two log lines about the same kind of client misbehaviour.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// Lets one log line through per [`LOG_EVERY`], and counts the ones it holds back.
#[derive(Debug, Default)]
pub(super) struct LogLimit {
    state: Mutex<(Option<Instant>, u64)>,
}

impl LogLimit {
    /// `Some(number of lines held back since the last one)` if a line may be logged now.
    pub(super) fn allow(&self) -> Option<u64> {
        self.allow_at(Instant::now())
    }

    fn allow_at(&self, now: Instant) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let (last, held_back) = &mut *state;
        if last.is_some_and(|t| now.duration_since(t) < LOG_EVERY) {
            *held_back += 1;
            return None;
        }
        *last = Some(now);
        Some(std::mem::take(held_back))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_with_the_count_held_back() {
        let limit = LogLimit::default();
        let t = Instant::now();
        assert_eq!(limit.allow_at(t), Some(0));
        assert_eq!(limit.allow_at(t), None);
        assert_eq!(limit.allow_at(t + LOG_EVERY / 2), None);
        assert_eq!(limit.allow_at(t + LOG_EVERY), Some(2));
        assert_eq!(limit.allow_at(t + LOG_EVERY), None);
    }
}

//! Rate limit for refused-connection log lines.
//!
//! A banned peer or a flood of connections is refused at the rate it reconnects, and one
//! line per refusal would fill the log at that rate. [`RefusalLog`] lets a few lines
//! through per interval and counts the rest; the next line let through says how many were
//! left out since the last one. Ban lines never pass here: each is a line that a fail2ban
//! filter may match, so each is written. Callers pass `now`, so tests need no clock.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Refused-connection lines written per [`REFUSALS_INTERVAL`], at most.
pub(crate) const REFUSALS_PER_INTERVAL: u32 = 20;

/// The interval over which [`REFUSALS_PER_INTERVAL`] lines may be written.
pub(crate) const REFUSALS_INTERVAL: Duration = Duration::from_secs(10);

/// Counts refused-connection lines and decides which are written.
#[derive(Debug)]
pub(crate) struct RefusalLog {
    per_interval: u32,
    interval: Duration,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    interval_start: Option<Instant>,
    written: u32,
    suppressed: u64,
}

impl RefusalLog {
    pub(crate) fn new(per_interval: u32, interval: Duration) -> Self {
        Self {
            per_interval,
            interval,
            state: Mutex::new(State::default()),
        }
    }

    /// Whether to write a refusal line at `now`: `Some(n)` to write it, with `n` lines
    /// left out since the last one written; `None` to leave it out (it is counted).
    pub(crate) fn admit(&self, now: Instant) -> Option<u64> {
        // Plain counters: a panic elsewhere cannot leave them harmful.
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let over = state
            .interval_start
            .is_none_or(|start| now.saturating_duration_since(start) >= self.interval);
        if over {
            state.interval_start = Some(now);
            state.written = 0;
        }
        if state.written >= self.per_interval {
            state.suppressed = state.suppressed.saturating_add(1);
            return None;
        }
        state.written += 1;
        Some(std::mem::take(&mut state.suppressed))
    }
}

impl Default for RefusalLog {
    fn default() -> Self {
        Self::new(REFUSALS_PER_INTERVAL, REFUSALS_INTERVAL)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn a_few_lines_per_interval_then_a_count_of_the_rest() {
        let log = RefusalLog::new(3, 10 * SEC);
        let t0 = Instant::now();
        let first: Vec<_> = (0..10).map(|_| log.admit(t0)).collect();
        assert_eq!(
            first,
            [
                Some(0),
                Some(0),
                Some(0),
                None,
                None,
                None,
                None,
                None,
                None,
                None
            ]
        );
        // Still the same interval: left out and counted.
        assert_eq!(log.admit(t0 + 9 * SEC), None);
        // The next interval writes again, and its first line carries the count.
        assert_eq!(log.admit(t0 + 10 * SEC), Some(8));
        assert_eq!(log.admit(t0 + 10 * SEC), Some(0));
        assert_eq!(log.admit(t0 + 11 * SEC), Some(0));
        assert_eq!(log.admit(t0 + 11 * SEC), None);
        assert_eq!(log.admit(t0 + 30 * SEC), Some(1));
    }

    #[test]
    fn the_defaults_are_the_documented_numbers() {
        assert_eq!(REFUSALS_PER_INTERVAL, 20);
        assert_eq!(REFUSALS_INTERVAL, 10 * SEC);
    }
}

//! The idle clock of one connection: when its user last did something.
//!
//! "Idle" means no application activity: no login step, no channel opened, no request,
//! no byte of a transfer moved either way. SSH keepalives and other transport messages
//! do not count, so a client that only answers keepalives (or a stalled upload that
//! sends them) is still closed after the idle timeout. The front ends touch the clock as
//! they work; [`Activity::until_idle`] is the watchdog that the connection's task waits
//! on.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// One connection's activity clock; clones share it.
#[derive(Clone, Debug)]
pub struct Activity {
    inner: Arc<Clock>,
}

#[derive(Debug)]
struct Clock {
    /// When the clock was made; `last` counts from here.
    origin: Instant,
    /// Milliseconds from `origin` to the last activity.
    last: AtomicU64,
}

impl Default for Activity {
    fn default() -> Self {
        Activity::new()
    }
}

impl Activity {
    /// A clock that starts now, as if something just happened.
    pub fn new() -> Activity {
        Activity {
            inner: Arc::new(Clock {
                origin: Instant::now(),
                last: AtomicU64::new(0),
            }),
        }
    }

    /// Records that the user did something just now.
    pub fn touch(&self) {
        let now = self.inner.origin.elapsed().as_millis() as u64;
        // Concurrent touches race only to write nearly the same time; keep the latest.
        self.inner.last.fetch_max(now, Ordering::Relaxed);
    }

    /// How long it has been since the last activity.
    pub fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.inner.last.load(Ordering::Relaxed));
        self.inner.origin.elapsed().saturating_sub(last)
    }

    /// Completes once there has been no activity for `limit`. Sleeps until the earliest
    /// moment that could be true, looks again, and so on: one wake-up per `limit` at
    /// most while the connection is busy.
    pub async fn until_idle(&self, limit: Duration) {
        loop {
            let idle = self.idle_for();
            if idle >= limit {
                return;
            }
            tokio::time::sleep(limit - idle).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn idle_only_after_the_limit_without_touches() {
        let activity = Activity::new();
        let limit = Duration::from_secs(1);
        // Kept busy for longer than the limit, it does not count as idle.
        let watchdog = tokio::spawn({
            let activity = activity.clone();
            async move { activity.until_idle(limit).await }
        });
        for _ in 0..8 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            activity.touch();
            assert!(!watchdog.is_finished(), "idle while being touched");
        }
        // Left alone, it does.
        tokio::time::timeout(Duration::from_secs(5), watchdog)
            .await
            .expect("idle within the limit")
            .expect("watchdog ran");
        assert!(activity.idle_for() >= limit);
    }
}

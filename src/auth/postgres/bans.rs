//! [`PgBans`]: failed logins per peer, and the bans they start, shared by every node
//! through PostgreSQL (`login_failures`), so that a guesser cannot spread its attempts
//! over the nodes behind a balancer.
//!
//! Logins never wait on the database: a failure or success is queued to a task that
//! runs the statement, and bans are read from a copy that the task refreshes every
//! [`REFRESH`]. Each node keeps its own counts as well (`LoginThrottle`), so a
//! database that is away weakens bans to one node's, never lifts them. The ban's
//! arithmetic runs in SQL on the database's clock, so the nodes' clocks need not agree.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::{PgError, Target, pooled, query_failed};
use crate::auth::{SharedBans, ThrottlePolicy};

/// How often the bans are read again.
pub const REFRESH: Duration = Duration::from_secs(1);
/// How often rows that no longer count or ban are deleted.
const PRUNE: Duration = Duration::from_secs(60);
/// Reports waiting for the database; past this, more are dropped (the node's own
/// counts still hold).
const QUEUE: usize = 4096;

/// One failure, atomically: counted in the running window, or a new window begun;
/// a ban started when the count reaches the limit; nothing counted while banned.
/// Returns whether this failure started the ban.
const RECORD_FAILURE: &str = "\
INSERT INTO login_failures AS f (peer, failures, window_start, banned_until)
VALUES ($1, 1, now(),
        CASE WHEN $2::integer <= 1 THEN now() + $4::float8 * interval '1 second' END)
ON CONFLICT (peer) DO UPDATE SET
  failures = CASE
    WHEN f.banned_until > now() THEN f.failures
    WHEN f.banned_until IS NOT NULL
      OR f.window_start <= now() - $3::float8 * interval '1 second' THEN 1
    ELSE f.failures + 1 END,
  window_start = CASE
    WHEN f.banned_until > now() THEN f.window_start
    WHEN f.banned_until IS NOT NULL
      OR f.window_start <= now() - $3::float8 * interval '1 second' THEN now()
    ELSE f.window_start END,
  banned_until = CASE
    WHEN f.banned_until > now() THEN f.banned_until
    WHEN (CASE WHEN f.banned_until IS NOT NULL
                 OR f.window_start <= now() - $3::float8 * interval '1 second' THEN 1
               ELSE f.failures + 1 END) >= $2::integer
      THEN now() + $4::float8 * interval '1 second'
    ELSE NULL END
RETURNING banned_until IS NOT NULL
      AND banned_until = now() + $4::float8 * interval '1 second'";

const BANNED: &str = "\
SELECT peer, extract(epoch FROM banned_until - now())::float8 FROM login_failures
WHERE banned_until > now()";

enum Report {
    Failure(IpAddr),
    Success(IpAddr),
}

/// The cluster's bans; see the module docs.
pub struct PgBans {
    origin: String,
    /// Banned peers, and until when, as last read.
    banned: Arc<Mutex<HashMap<IpAddr, Instant>>>,
    reports: mpsc::Sender<Report>,
}

impl std::fmt::Debug for PgBans {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgBans")
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

impl PgBans {
    /// Connects, reads the bans once, and starts the task that reports and refreshes,
    /// on the current runtime. The schema must be up to date (the account store
    /// migrates it at start).
    pub async fn open(target: &Target, policy: ThrottlePolicy) -> Result<Arc<PgBans>, PgError> {
        let origin = target.to_string();
        let pool = target.pool(2)?;
        let worker = Worker {
            origin: origin.clone(),
            pool,
            policy,
            banned: Arc::default(),
        };
        worker.refresh().await?;
        let (reports, queue) = mpsc::channel(QUEUE);
        let banned = Arc::clone(&worker.banned);
        tokio::spawn(worker.run(queue));
        Ok(Arc::new(PgBans {
            origin,
            banned,
            reports,
        }))
    }
}

impl SharedBans for PgBans {
    fn banned_for(&self, peer: IpAddr, now: Instant) -> Option<Duration> {
        let banned = self.banned.lock().unwrap_or_else(PoisonError::into_inner);
        let until = *banned.get(&peer)?;
        let left = until.saturating_duration_since(now);
        (!left.is_zero()).then_some(left)
    }

    fn record_failure(&self, peer: IpAddr) {
        // A full queue means the database is far behind: the node's own count holds.
        let _ = self.reports.try_send(Report::Failure(peer));
    }

    fn record_success(&self, peer: IpAddr) {
        let _ = self.reports.try_send(Report::Success(peer));
    }
}

/// The task behind [`PgBans`].
struct Worker {
    origin: String,
    pool: Pool,
    policy: ThrottlePolicy,
    banned: Arc<Mutex<HashMap<IpAddr, Instant>>>,
}

impl Worker {
    /// Until the [`PgBans`] is dropped.
    async fn run(self, mut queue: mpsc::Receiver<Report>) {
        let mut refresh = tokio::time::interval(REFRESH);
        refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_prune = Instant::now();
        // Said once per outage, not once a second.
        let mut failing = false;
        loop {
            let done = tokio::select! {
                report = queue.recv() => match report {
                    None => return,
                    Some(report) => self.report(report).await,
                },
                _ = refresh.tick() => {
                    if last_prune.elapsed() >= PRUNE {
                        last_prune = Instant::now();
                        let _ = self.prune().await;
                    }
                    self.refresh().await
                }
            };
            match done {
                Ok(()) if failing => {
                    failing = false;
                    info!(target: "rsftpd::admin", database = %self.origin, "shared login bans reachable again");
                }
                Err(err) if !failing => {
                    failing = true;
                    warn!(target: "rsftpd::admin", database = %self.origin, error = %err, "cannot reach the shared login bans; each node bans on its own count meanwhile");
                }
                _ => {}
            }
        }
    }

    async fn report(&self, report: Report) -> Result<(), PgError> {
        let client = pooled(&self.pool, &self.origin).await?;
        match report {
            Report::Failure(peer) => {
                let max = i32::try_from(self.policy.max_failures).unwrap_or(i32::MAX);
                let row = client
                    .query_one(
                        RECORD_FAILURE,
                        &[
                            &peer.to_string(),
                            &max,
                            &self.policy.window.as_secs_f64(),
                            &self.policy.ban.as_secs_f64(),
                        ],
                    )
                    .await
                    .map_err(|e| query_failed(&self.origin, e))?;
                if row.try_get::<_, bool>(0).unwrap_or(false) {
                    self.lock().insert(peer, Instant::now() + self.policy.ban);
                    warn!(target: "rsftpd::auth", peer = %peer, "peer banned on every node after repeated login failures");
                }
            }
            Report::Success(peer) => {
                client
                    .execute(
                        "DELETE FROM login_failures WHERE peer = $1 AND banned_until IS NULL",
                        &[&peer.to_string()],
                    )
                    .await
                    .map_err(|e| query_failed(&self.origin, e))?;
            }
        }
        Ok(())
    }

    /// Reads the bans in force again.
    async fn refresh(&self) -> Result<(), PgError> {
        let client = pooled(&self.pool, &self.origin).await?;
        let rows = client
            .query(BANNED, &[])
            .await
            .map_err(|e| query_failed(&self.origin, e))?;
        let now = Instant::now();
        let mut fresh = HashMap::with_capacity(rows.len());
        for row in &rows {
            let (Ok(peer), Ok(left)) = (row.try_get::<_, String>(0), row.try_get::<_, f64>(1))
            else {
                continue;
            };
            let (Ok(peer), Ok(left)) = (peer.parse::<IpAddr>(), Duration::try_from_secs_f64(left))
            else {
                continue;
            };
            fresh.insert(peer, now + left);
        }
        let mut banned = self.lock();
        for peer in fresh.keys() {
            if !banned.contains_key(peer) {
                info!(target: "rsftpd::auth", peer = %peer, "peer banned by another node");
            }
        }
        *banned = fresh;
        Ok(())
    }

    /// Deletes the rows that neither ban nor count any more.
    async fn prune(&self) -> Result<(), PgError> {
        let client = pooled(&self.pool, &self.origin).await?;
        client
            .execute(
                "DELETE FROM login_failures WHERE coalesce(banned_until, '-infinity') < now() \
                 AND window_start < now() - $1::float8 * interval '1 second'",
                &[&self.policy.window.as_secs_f64()],
            )
            .await
            .map_err(|e| query_failed(&self.origin, e))?;
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Instant>> {
        self.banned.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

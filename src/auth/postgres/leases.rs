//! Session leases: the session limits of a cluster, counted on every node.
//!
//! Each node registers in `nodes` and renews its lease every [`HEARTBEAT`]. A session
//! that logs in takes a row in `session_leases`, in one transaction that serializes
//! the logins of the cluster (an advisory lock) and counts the live leases after
//! taking it, so no burst of logins spread over the nodes passes a limit. The node
//! renews the leases of the sessions it still holds with its heartbeat; a lease that
//! is not renewed (the node died, or lost the database) expires after [`LEASE`], and
//! its slot is free again.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use tracing::warn;

use super::PgError;
use crate::auth::store::{SessionLease, SessionRefusal};

/// How long a node's leases last without a heartbeat.
pub const LEASE: Duration = Duration::from_secs(30);
/// How often a node renews them.
pub const HEARTBEAT: Duration = Duration::from_secs(10);
/// The advisory lock that cluster-wide logins take in turn ("rsleas").
const LOGIN_LOCK: i64 = 0x7273_6c65_6173;

/// One node of the cluster, as the database knows it.
pub struct Node {
    id: String,
    /// Host name and pid, for people.
    description: String,
    pool: Pool,
    runtime: tokio::runtime::Handle,
    /// The leases this node holds now; only these are renewed.
    held: Mutex<HashSet<i64>>,
    /// When the last renewal that the database committed was sent: the node's lease,
    /// and so its reservations, hold until [`LEASE`] after that.
    renewed: Mutex<Instant>,
}

impl Node {
    /// Registers this process as a node and starts its heartbeat (on the current
    /// runtime; it stops when the node is dropped).
    pub async fn register(pool: Pool, origin: &str) -> Result<Arc<Node>, PgError> {
        let id = format!("{:016x}", rand::random::<u64>());
        let description = format!(
            "{} pid {}",
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .unwrap_or_default()
                .trim(),
            std::process::id()
        );
        let client = pool.get().await.map_err(|source| PgError::Pool {
            origin: origin.to_owned(),
            source,
        })?;
        let sent = Instant::now();
        client
            .execute(
                "INSERT INTO nodes (node_id, description, lease_until)
                 VALUES ($1, $2, now() + make_interval(secs => $3))",
                &[&id, &description, &(LEASE.as_secs_f64())],
            )
            .await
            .map_err(|source| PgError::Query {
                origin: origin.to_owned(),
                source,
            })?;
        drop(client);
        let node = Arc::new(Node {
            id,
            description,
            pool,
            runtime: tokio::runtime::Handle::current(),
            held: Mutex::new(HashSet::new()),
            renewed: Mutex::new(sent),
        });
        tokio::spawn(heartbeat(Arc::downgrade(&node), origin.to_owned()));
        Ok(node)
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub(super) fn pool(&self) -> &Pool {
        &self.pool
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashSet<i64>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether this node's lease still holds, by its own clock, with a second to
    /// spare: the database's lease began after the renewal was sent. Once it does not,
    /// the node writes nothing more against its reservations, which may be given back
    /// to others any moment.
    pub fn lease_holds(&self) -> bool {
        let renewed = *self.renewed.lock().unwrap_or_else(|p| p.into_inner());
        renewed.elapsed() + Duration::from_secs(1) < LEASE
    }

    /// Takes a lease for a session of `user`, unless the cluster already has
    /// `max_for_user` live sessions of theirs or `max_total` in all.
    pub async fn lease(
        self: &Arc<Self>,
        user: &str,
        max_for_user: Option<usize>,
        max_total: usize,
        peer: &str,
    ) -> Result<Lease, SessionRefusal> {
        let unavailable = |err: &dyn std::error::Error| {
            SessionRefusal::Unavailable(format!("cannot count the cluster's sessions: {err}"))
        };
        let mut client = self.pool.get().await.map_err(|e| unavailable(&e))?;
        let tx = client.transaction().await.map_err(|e| unavailable(&e))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOGIN_LOCK])
            .await
            .map_err(|e| unavailable(&e))?;
        // A fresh snapshot, taken after the lock: it sees every lease committed before.
        let row = tx
            .query_one(
                "SELECT count(*) FILTER (WHERE account = $1), count(*)
                   FROM session_leases WHERE expires_at > now()",
                &[&user],
            )
            .await
            .map_err(|e| unavailable(&e))?;
        let (theirs, all): (i64, i64) = (row.get(0), row.get(1));
        if let Some(limit) = max_for_user
            && theirs as usize >= limit
        {
            return Err(SessionRefusal::User {
                user: user.to_owned(),
                limit,
            });
        }
        if all as usize >= max_total {
            return Err(SessionRefusal::Total { limit: max_total });
        }
        let id: i64 = tx
            .query_one(
                "INSERT INTO session_leases (account, node_id, peer, expires_at)
                 VALUES ($1, $2, $3, now() + make_interval(secs => $4)) RETURNING id",
                &[&user, &self.id, &peer, &(LEASE.as_secs_f64())],
            )
            .await
            .map_err(|e| unavailable(&e))?
            .get(0);
        tx.commit().await.map_err(|e| unavailable(&e))?;
        self.held().insert(id);
        Ok(Lease {
            node: Arc::clone(self),
            id,
        })
    }
}

/// A session's lease; dropping it gives the slot back.
pub struct Lease {
    node: Arc<Node>,
    id: i64,
}

impl SessionLease for Lease {}

impl Drop for Lease {
    fn drop(&mut self) {
        self.node.held().remove(&self.id);
        let (pool, id) = (self.node.pool.clone(), self.id);
        // If this fails, the next heartbeat removes the lease: it is no longer held.
        self.node.runtime.spawn(async move {
            if let Ok(client) = pool.get().await {
                let _ = client
                    .execute("DELETE FROM session_leases WHERE id = $1", &[&id])
                    .await;
            }
        });
    }
}

/// Renews the node's lease and those of the sessions it holds, drops the leases it
/// no longer holds, and clears what dead nodes left long ago; until the node is gone.
async fn heartbeat(node: Weak<Node>, origin: String) {
    let mut tick = tokio::time::interval(HEARTBEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(node) = node.upgrade() else { return };
        let held: Vec<i64> = node.held().iter().copied().collect();
        let sent = Instant::now();
        let renewed = async {
            let mut client = node.pool.get().await.map_err(|e| e.to_string())?;
            let tx = client.transaction().await.map_err(|e| e.to_string())?;
            let secs = LEASE.as_secs_f64();
            // An upsert: a node that was away so long that its row was cleared
            // comes back.
            tx.execute(
                "INSERT INTO nodes (node_id, description, lease_until)
                 VALUES ($1, $3, now() + make_interval(secs => $2))
                 ON CONFLICT (node_id) DO UPDATE
                    SET heartbeat_at = now(), lease_until = EXCLUDED.lease_until",
                &[&node.id, &secs, &node.description],
            )
            .await
            .map_err(|e| e.to_string())?;
            tx.execute(
                "UPDATE session_leases SET expires_at = now() + make_interval(secs => $3)
                  WHERE node_id = $1 AND id = ANY($2)",
                &[&node.id, &held, &secs],
            )
            .await
            .map_err(|e| e.to_string())?;
            tx.execute(
                "DELETE FROM session_leases
                  WHERE (node_id = $1 AND NOT id = ANY($2))
                     OR expires_at < now() - interval '1 minute'",
                &[&node.id, &held],
            )
            .await
            .map_err(|e| e.to_string())?;
            // Reservations live as long as their node's lease; expired ones, of any
            // node, give their space back.
            tx.execute(
                "UPDATE reservations SET expires_at = now() + make_interval(secs => $2)
                  WHERE node_id = $1",
                &[&node.id, &secs],
            )
            .await
            .map_err(|e| e.to_string())?;
            tx.execute(super::ledger::EXPIRE, &[])
                .await
                .map_err(|e| e.to_string())?;
            tx.execute(
                "DELETE FROM nodes WHERE lease_until < now() - interval '1 day'",
                &[],
            )
            .await
            .map_err(|e| e.to_string())?;
            tx.commit().await.map_err(|e| e.to_string())
        };
        match tokio::time::timeout(super::CONNECT_TIMEOUT, renewed)
            .await
            .unwrap_or_else(|_| Err("no answer".to_owned()))
        {
            Ok(()) => *node.renewed.lock().unwrap_or_else(|p| p.into_inner()) = sent,
            Err(err) => {
                warn!(target: "rsftpd::admin", database = %origin, node = %node.id, error = %err, "cannot renew this node's session leases")
            }
        }
    }
}

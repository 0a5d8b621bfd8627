//! The shared quota ledger: space reserved in PostgreSQL before data flows, exact
//! across every node. These are its statements; `quota` puts them behind the storage
//! core's `ClusterQuota` seam.
//!
//! - **Reserve** is one conditional statement: `reserved` grows by `n` only where
//!   `used + reserved + n <= limit_bytes`. PostgreSQL re-checks the condition on the
//!   newest row version after waiting for a concurrent update of the same row, so no
//!   set of concurrent reservations, on any nodes, passes the quota. The reservation
//!   row carries the node id and expires with the node's lease.
//! - **Commit** moves bytes written from the reservation to `used`.
//! - **Release** gives a reservation's unused bytes back (completion, refusal,
//!   disconnect).
//! - **Expire** gives back what dead nodes held: their leases stopped being renewed.
//! - **Grow**, **settle** and **reconcile** are what a running node uses
//!   (`quota::PgQuota`): one reservation per account it serves, grown in chunks before
//!   data flows and settled into `used` in the background; and `used` set from a scan
//!   of the home while nothing of the account is in flight.

use tokio_postgres::GenericClient;

use super::Node;

/// Why space was not reserved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReserveError {
    #[error(
        "quota exceeded: {wanted} more bytes would pass the limit of {limit} \
         ({used} used, {reserved} reserved by uploads in flight)"
    )]
    OverQuota {
        wanted: u64,
        used: u64,
        reserved: u64,
        limit: u64,
    },
    #[error("no user {0:?}")]
    UnknownUser(String),
    #[error("the quota ledger is unavailable: {0}")]
    Unavailable(String),
}

/// Space held for one upload on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub id: i64,
    pub account: String,
    /// Bytes still reserved (not yet committed).
    pub bytes: u64,
}

const RESERVE: &str = "
    WITH granted AS (
        UPDATE quota SET reserved = reserved + $2
         WHERE account = $1 AND used + reserved + $2 <= limit_bytes
           -- A node whose lease has lapsed reserves nothing.
           AND EXISTS (SELECT 1 FROM nodes WHERE node_id = $3 AND lease_until > now())
        RETURNING account
    )
    INSERT INTO reservations (account, node_id, bytes, expires_at)
    SELECT g.account, n.node_id, $2, n.lease_until
      FROM granted g JOIN nodes n ON n.node_id = $3
    RETURNING id";

const COMMIT: &str = "
    WITH r AS (
        UPDATE reservations SET bytes = bytes - $2
         WHERE id = $1 AND bytes >= $2 AND expires_at > now()
        RETURNING account
    )
    UPDATE quota q SET reserved = q.reserved - $2, used = q.used + $2
      FROM r WHERE q.account = r.account
    RETURNING q.used";

const RELEASE: &str = "
    WITH gone AS (DELETE FROM reservations WHERE id = $1 RETURNING account, bytes)
    UPDATE quota q SET reserved = greatest(q.reserved - gone.bytes, 0)
      FROM gone WHERE q.account = gone.account";

/// Grows reservation `$3` of account `$1` by `$2` bytes, where they fit and the
/// reservation is live; returns its id, or no row.
pub(super) const GROW: &str = "
    WITH granted AS (
        UPDATE quota SET reserved = reserved + $2
         WHERE account = $1 AND used + reserved + $2 <= limit_bytes
           AND EXISTS (SELECT 1 FROM reservations WHERE id = $3 AND expires_at > now())
        RETURNING account
    )
    UPDATE reservations SET bytes = bytes + $2 FROM granted WHERE id = $3
    RETURNING id";

/// Whether reservation `$1` is still live.
pub(super) const LIVE: &str = "SELECT 1 FROM reservations WHERE id = $1 AND expires_at > now()";

/// Settles what a node booked for account `$1` since the last time: its reservation
/// `$2` (or none, `-1`) changes by `$3` bytes, and `used` by `$4`. Returns the
/// reservation's bytes afterwards (NULL if it is gone: it expired, and its bytes went
/// back already), then `used`.
pub(super) const SETTLE: &str = "
    WITH r AS (
        UPDATE reservations SET bytes = greatest(bytes + $3, 0) WHERE id = $2
        RETURNING bytes
    )
    UPDATE quota SET
        used = greatest(used + $4, 0),
        reserved = greatest(reserved + CASE WHEN EXISTS (SELECT 1 FROM r) THEN $3 ELSE 0 END, 0),
        changes = changes + CASE WHEN $4 <> 0 THEN 1 ELSE 0 END
     WHERE account = $1
    RETURNING (SELECT bytes FROM r), used";

/// Drops reservation `$1` once it holds nothing.
pub(super) const DROP_EMPTY: &str = "DELETE FROM reservations WHERE id = $1 AND bytes = 0";

/// An account's numbers and its settlement count.
pub(super) const NUMBERS: &str =
    "SELECT used, reserved, limit_bytes, changes FROM quota WHERE account = $1";

/// Sets account `$1`'s `used` to `$2` (what a scan found) if it has settled nothing
/// since `changes` was `$3` and no node holds space for it; returns what `used` was.
pub(super) const RECONCILE: &str = "
    WITH old AS (SELECT used FROM quota WHERE account = $1)
    UPDATE quota SET used = $2, changes = changes + 1
     WHERE account = $1 AND changes = $3
       AND NOT EXISTS (SELECT 1 FROM reservations WHERE account = $1 AND bytes > 0)
    RETURNING (SELECT used FROM old)";

/// Every expired reservation, on any node, given back in one statement.
pub(super) const EXPIRE: &str = "
    WITH gone AS (DELETE FROM reservations WHERE expires_at <= now() RETURNING account, bytes),
         sums AS (SELECT account, sum(bytes)::bigint AS bytes FROM gone GROUP BY account)
    UPDATE quota q SET reserved = greatest(q.reserved - sums.bytes, 0)
      FROM sums WHERE q.account = sums.account";

fn unavailable(err: &dyn std::error::Error) -> ReserveError {
    ReserveError::Unavailable(err.to_string())
}

pub(super) fn signed(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Node {
    /// Reserves `bytes` of `account`'s quota for an upload on this node, or says by how
    /// much it does not fit.
    pub async fn reserve(&self, account: &str, bytes: u64) -> Result<Reservation, ReserveError> {
        let client = self.pool().get().await.map_err(|e| unavailable(&e))?;
        let granted = client
            .query_opt(RESERVE, &[&account, &signed(bytes), &self.id()])
            .await
            .map_err(|e| unavailable(&e))?;
        if let Some(row) = granted {
            return Ok(Reservation {
                id: row.get(0),
                account: account.to_owned(),
                bytes,
            });
        }
        Err(refusal(&**client, account, bytes).await)
    }

    /// Moves `bytes` written from the reservation to the account's `used`. Fails if
    /// the reservation holds less, or has expired (then nothing may be written).
    pub async fn commit(
        &self,
        reservation: &mut Reservation,
        bytes: u64,
    ) -> Result<u64, ReserveError> {
        let client = self.pool().get().await.map_err(|e| unavailable(&e))?;
        let row = client
            .query_opt(COMMIT, &[&reservation.id, &signed(bytes)])
            .await
            .map_err(|e| unavailable(&e))?
            .ok_or_else(|| {
                ReserveError::Unavailable(format!(
                    "reservation {} holds less than {bytes} bytes or has expired",
                    reservation.id
                ))
            })?;
        reservation.bytes -= bytes.min(reservation.bytes);
        Ok(row.get::<_, i64>(0) as u64)
    }

    /// Gives the reservation's unused bytes back.
    pub async fn release(&self, reservation: Reservation) -> Result<(), ReserveError> {
        let client = self.pool().get().await.map_err(|e| unavailable(&e))?;
        client
            .execute(RELEASE, &[&reservation.id])
            .await
            .map_err(|e| unavailable(&e))?;
        Ok(())
    }

    /// Gives back every expired reservation of the cluster; returns how many accounts
    /// got space back. The heartbeat does this too.
    pub async fn expire_reservations(&self) -> Result<u64, ReserveError> {
        let client = self.pool().get().await.map_err(|e| unavailable(&e))?;
        client
            .execute(EXPIRE, &[])
            .await
            .map_err(|e| unavailable(&e))
    }
}

/// Why a reservation did not fit, with the numbers.
pub(super) async fn refusal(
    client: &impl GenericClient,
    account: &str,
    wanted: u64,
) -> ReserveError {
    let row = client
        .query_opt(
            "SELECT used, reserved, limit_bytes FROM quota WHERE account = $1",
            &[&account],
        )
        .await;
    match row {
        Ok(Some(row)) => ReserveError::OverQuota {
            wanted,
            used: row.get::<_, i64>(0) as u64,
            reserved: row.get::<_, i64>(1) as u64,
            limit: row.get::<_, i64>(2) as u64,
        },
        Ok(None) => ReserveError::UnknownUser(account.to_owned()),
        Err(err) => unavailable(&err),
    }
}

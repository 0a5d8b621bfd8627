//! [`PgQuota`]: the storage core's [`ClusterQuota`], kept in PostgreSQL, so that the
//! quota is exact across every node of a cluster.
//!
//! For each account it serves, a node holds one row in `reservations`. Bytes a
//! transfer needs are taken from what the row holds spare; when that is not enough,
//! the row grows by [`CHUNK`] (or, when a chunk does not fit, by exactly what is
//! missing) in one conditional statement, which no set of concurrent growths on any
//! nodes can pass. What is written, given back or freed is booked here at once and
//! settled with the database in the background, about every [`SETTLE_EVERY`] (frees
//! at once): written bytes move from the row to `used`, and spare bytes go back, so an
//! idle node holds nothing. Until it is settled, everything stays counted in
//! `reserved`, so the cluster's total is never below what is on disk or promised.
//!
//! The row lives as long as the node's lease ([`Node::lease_holds`]): a node that
//! cannot renew it takes and writes nothing more, and a killed node's rows expire and
//! give their bytes back. What it wrote but had not settled is then missing from
//! `used` until a reconcile (at the next first open of the home on a node, hourly, or
//! `rsftpd db reconcile`) counts the home again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use deadpool_postgres::Pool;
use tokio::sync::Notify;

use super::ledger::{self, ReserveError, signed};
use super::{CONNECT_TIMEOUT, Node, PgError, Target};
use crate::error_chain;
use crate::storage::object::Runner;
use crate::storage::{ClusterQuota, QuotaExceeded, Reconciled, Usage};

/// How much a node's reservation for an account grows at a time, so that a transfer
/// asks the database about once per this many bytes.
pub const CHUNK: u64 = 8 << 20;
/// How often what a node booked is settled with the database.
pub const SETTLE_EVERY: Duration = Duration::from_secs(1);
/// Connections for the ledger: growths and settlements take turns.
const POOL_SIZE: usize = 4;

/// What this node booked for one account and has not settled yet.
#[derive(Debug, Default)]
struct Account {
    /// Bytes promised to transfers in flight here.
    taken: u64,
    /// Bytes the row holds beyond those: for the next transfers, or to give back.
    spare: u64,
    /// Spare bytes no transfer may take, due to go back (the limit changed).
    returning: u64,
    /// Bytes written, still in the row, due to move to `used`.
    written: u64,
    /// Bytes freed on disk, due to come off `used`.
    freed: u64,
    /// Bytes moved from `used` back into a transfer's promise, due to grow the row.
    retaken: u64,
    /// The account's row in `reservations`, once it has one.
    row: Option<i64>,
    /// The row expired while transfers held bytes of it: they may write no more, and
    /// nothing is taken until they are gone.
    void: bool,
}

impl Account {
    fn idle(&self) -> bool {
        self.taken == 0
            && self.spare == 0
            && self.returning == 0
            && self.written == 0
            && self.freed == 0
            && self.retaken == 0
    }
}

/// What one settlement takes off an account's books.
#[derive(Clone, Copy, Debug, Default)]
struct Due {
    spare: u64,
    written: u64,
    freed: u64,
    retaken: u64,
}

/// The cluster's quota ledger in PostgreSQL; see the module docs.
pub struct PgQuota {
    node: Arc<Node>,
    origin: String,
    pool: Pool,
    runner: Runner,
    accounts: Mutex<HashMap<String, Account>>,
    /// Growths and settlements of this node take turns, so an account's row is made
    /// once and its books are settled in order.
    turns: tokio::sync::Mutex<()>,
    /// Wakes the settling early (a free).
    wake: Arc<Notify>,
    /// Whether the last settlement failed: logged once, and again when it works.
    failing: AtomicBool,
}

impl std::fmt::Debug for PgQuota {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgQuota")
            .field("origin", &self.origin)
            .field("node", &self.node.id())
            .finish_non_exhaustive()
    }
}

fn unavailable(reason: impl std::fmt::Display) -> QuotaExceeded {
    QuotaExceeded::Unavailable {
        reason: reason.to_string(),
    }
}

impl PgQuota {
    /// The ledger of `node`, on `target` (whose schema is up to date); settles in the
    /// background on the current runtime until dropped.
    pub fn open(target: &Target, node: Arc<Node>) -> Result<Arc<PgQuota>, PgError> {
        let quota = Arc::new(PgQuota {
            node,
            origin: target.to_string(),
            pool: target.pool(POOL_SIZE)?,
            runner: Runner::new().map_err(PgError::Runtime)?,
            accounts: Mutex::default(),
            turns: tokio::sync::Mutex::new(()),
            wake: Arc::default(),
            failing: AtomicBool::new(false),
        });
        tokio::spawn(settling(Arc::downgrade(&quota), Arc::clone(&quota.wake)));
        Ok(quota)
    }

    fn books(&self) -> MutexGuard<'_, HashMap<String, Account>> {
        // Numbers every critical section leaves consistent.
        self.accounts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn book(&self, user: &str, change: impl FnOnce(&mut Account)) {
        change(self.books().entry(user.to_owned()).or_default());
    }

    /// Grows `user`'s row by `missing` bytes, or by a chunk if that fits; returns by
    /// how much it grew.
    async fn grant(&self, user: &str, missing: u64) -> Result<u64, QuotaExceeded> {
        let _turn = self.turns.lock().await;
        let client = self.pool.get().await.map_err(unavailable)?;
        let mut last = None;
        for want in [missing.max(CHUNK), missing] {
            if last == Some(want) {
                break;
            }
            last = Some(want);
            let row = self.books().get(user).and_then(|a| a.row);
            let grown = match row {
                None => match self.node.reserve(user, want).await {
                    Ok(reservation) => {
                        self.book(user, |a| a.row = Some(reservation.id));
                        true
                    }
                    Err(ReserveError::OverQuota { .. }) => false,
                    Err(other) => return Err(unavailable(other)),
                },
                Some(id) => {
                    let grown = client
                        .query_opt(ledger::GROW, &[&user, &signed(want), &id])
                        .await
                        .map_err(|e| unavailable(error_chain(&e)))?;
                    if grown.is_none() && !self.still_live(&client, user, id).await? {
                        // Nothing held on it here: start a new one.
                        return Box::pin(self.grant_fresh(user, missing)).await;
                    }
                    grown.is_some()
                }
            };
            if grown {
                return Ok(want);
            }
        }
        Err(refused(ledger::refusal(&**client, user, missing).await))
    }

    /// [`Self::grant`] after the account's row was found gone while nothing here held
    /// bytes of it.
    async fn grant_fresh(&self, user: &str, missing: u64) -> Result<u64, QuotaExceeded> {
        self.book(user, |a| a.row = None);
        let reservation = self.node.reserve(user, missing).await.map_err(refused)?;
        self.book(user, |a| a.row = Some(reservation.id));
        Ok(missing)
    }

    /// Whether `user`'s row `id` still lives; if not and transfers here hold bytes of
    /// it, they are void.
    async fn still_live(
        &self,
        client: &deadpool_postgres::Object,
        user: &str,
        id: i64,
    ) -> Result<bool, QuotaExceeded> {
        let live = client
            .query_opt(ledger::LIVE, &[&id])
            .await
            .map_err(|e| unavailable(error_chain(&e)))?
            .is_some();
        if live {
            return Ok(true);
        }
        let mut books = self.books();
        let account = books.entry(user.to_owned()).or_default();
        if account.idle() {
            return Ok(false);
        }
        account.void = true;
        Err(void_error(user))
    }

    /// Settles every account's books with the database.
    async fn settle_all(&self) {
        let _turn = self.turns.lock().await;
        let due: Vec<(String, Option<i64>, Due)> = {
            let mut books = self.books();
            books.retain(|_, a| !(a.idle() && a.row.is_none() && !a.void));
            books
                .iter_mut()
                .filter(|(_, a)| !a.idle() || a.row.is_some())
                .map(|(user, a)| {
                    let due = Due {
                        spare: std::mem::take(&mut a.spare) + std::mem::take(&mut a.returning),
                        written: std::mem::take(&mut a.written),
                        freed: std::mem::take(&mut a.freed),
                        retaken: std::mem::take(&mut a.retaken),
                    };
                    (user.clone(), a.row, due)
                })
                .collect()
        };
        let mut failed = false;
        for (user, row, due) in due {
            if let Err(err) = self.settle(&user, row, due).await {
                self.book(&user, |a| {
                    a.spare += due.spare;
                    a.written += due.written;
                    a.freed += due.freed;
                    a.retaken += due.retaken;
                });
                if !failed && !self.failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        target: "rsftpd::admin",
                        database = %self.origin, user, error = %err,
                        "cannot settle the quota ledger; what this node booked waits, counted as reserved"
                    );
                }
                failed = true;
            }
        }
        if !failed && self.failing.swap(false, Ordering::Relaxed) {
            tracing::info!(target: "rsftpd::admin", database = %self.origin, "quota ledger settled again");
        }
    }

    async fn settle(&self, user: &str, row: Option<i64>, due: Due) -> Result<(), String> {
        let row_change = signed(due.retaken) - signed(due.written) - signed(due.spare);
        let used_change = signed(due.written) - signed(due.freed);
        let client = self.pool.get().await.map_err(|e| error_chain(&e))?;
        let id = row.unwrap_or(-1);
        let settled = client
            .query_opt(ledger::SETTLE, &[&user, &id, &row_change, &used_change])
            .await
            .map_err(|e| error_chain(&e))?;
        let Some(settled) = settled else {
            // The account is gone; so are its books.
            self.books().remove(user);
            return Ok(());
        };
        let left: Option<i64> = settled.get(0);
        let empty = {
            let mut books = self.books();
            let account = books.entry(user.to_owned()).or_default();
            if row.is_some() && left.is_none() {
                tracing::warn!(
                    target: "rsftpd::admin",
                    user, node = %self.node.id(),
                    "this node's quota reservation expired; a reconcile counts what it wrote"
                );
                account.row = None;
                account.void = account.taken > 0;
            }
            if account.void && account.taken == 0 {
                account.void = false;
            }
            left == Some(0) && account.idle()
        };
        if empty {
            client
                .execute(ledger::DROP_EMPTY, &[&id])
                .await
                .map_err(|e| error_chain(&e))?;
            let mut books = self.books();
            if let Some(account) = books.get_mut(user)
                && account.idle()
                && account.row == Some(id)
            {
                account.row = None;
            }
        }
        Ok(())
    }

    /// `user`'s numbers and settlement count.
    fn numbers(&self, user: &str) -> Option<(Usage, i64)> {
        self.runner.block_on(async {
            let ask = async {
                let client = self.pool.get().await.ok()?;
                let row = client.query_opt(ledger::NUMBERS, &[&user]).await.ok()??;
                let number = |i| u64::try_from(row.get::<_, i64>(i)).unwrap_or(0);
                let usage = Usage {
                    used: number(0),
                    reserved: number(1),
                    limit: number(2),
                };
                Some((usage, row.get::<_, i64>(3)))
            };
            tokio::time::timeout(CONNECT_TIMEOUT, ask).await.ok()?
        })
    }
}

/// The storage core's refusal for the ledger's: the cluster's numbers, with what other
/// uploads hold counted as used.
fn refused(err: ReserveError) -> QuotaExceeded {
    match err {
        ReserveError::OverQuota {
            wanted,
            used,
            reserved,
            limit,
        } => QuotaExceeded::Bytes {
            need: wanted,
            used: used.saturating_add(reserved),
            limit,
        },
        other => unavailable(other),
    }
}

fn void_error(user: &str) -> QuotaExceeded {
    unavailable(format!(
        "this node's reservation for {user} expired while it could not reach the \
         database; uploads that held it may write no more"
    ))
}

/// Settles every [`SETTLE_EVERY`], or at once after a free, until the ledger is gone.
async fn settling(quota: Weak<PgQuota>, wake: Arc<Notify>) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(SETTLE_EVERY) => {}
            () = wake.notified() => {}
        }
        let Some(quota) = quota.upgrade() else { return };
        let _ = tokio::time::timeout(CONNECT_TIMEOUT * 2, quota.settle_all()).await;
    }
}

impl ClusterQuota for PgQuota {
    fn take(&self, user: &str, bytes: u64) -> Result<(), QuotaExceeded> {
        // Others may take the spare between a growth and the next look: a few rounds.
        for _ in 0..4 {
            let missing = {
                let mut books = self.books();
                let account = books.entry(user.to_owned()).or_default();
                if !self.node.lease_holds() {
                    return Err(unavailable(
                        "this node cannot renew its lease on the database",
                    ));
                }
                if account.void {
                    return Err(void_error(user));
                }
                if account.spare >= bytes {
                    account.spare -= bytes;
                    account.taken += bytes;
                    return Ok(());
                }
                bytes - account.spare
            };
            let granted = self.runner.block_on(async {
                tokio::time::timeout(CONNECT_TIMEOUT, self.grant(user, missing))
                    .await
                    .unwrap_or_else(|_| Err(unavailable("the database did not answer")))
            });
            match granted {
                Ok(granted) => self.book(user, |a| a.spare += granted),
                Err(refused) => {
                    if matches!(refused, QuotaExceeded::Unavailable { .. }) {
                        tracing::warn!(
                            target: "rsftpd::admin",
                            database = %self.origin, user, error = %refused,
                            "upload refused: no reservation"
                        );
                    }
                    return Err(refused);
                }
            }
        }
        Err(unavailable("too many uploads at once; try again"))
    }

    fn give_back(&self, user: &str, bytes: u64) {
        self.book(user, |a| {
            let bytes = bytes.min(a.taken);
            a.taken -= bytes;
            a.spare += bytes;
        });
    }

    fn check_writable(&self, user: &str) -> Result<(), QuotaExceeded> {
        if !self.node.lease_holds() {
            return Err(unavailable(
                "this node cannot renew its lease on the database, so it writes nothing \
                 more against its reservations",
            ));
        }
        if self.books().get(user).is_some_and(|a| a.void) {
            return Err(void_error(user));
        }
        Ok(())
    }

    fn written(&self, user: &str, bytes: u64) {
        self.book(user, |a| {
            let bytes = bytes.min(a.taken);
            a.taken -= bytes;
            a.written += bytes;
        });
    }

    fn freed(&self, user: &str, bytes: u64) {
        self.book(user, |a| a.freed += bytes);
        self.wake.notify_one();
    }

    fn retaken(&self, user: &str, bytes: u64) {
        self.book(user, |a| {
            a.taken += bytes;
            a.freed += bytes;
            a.retaken += bytes;
        });
    }

    fn limit_changed(&self, user: &str) {
        // The spare goes back with the next settlement; until then nobody takes it.
        self.book(user, |a| a.returning += std::mem::take(&mut a.spare));
        self.wake.notify_one();
    }

    fn usage(&self, user: &str) -> Option<Usage> {
        self.numbers(user).map(|(usage, _)| usage)
    }

    fn measure_token(&self, user: &str) -> Option<i64> {
        self.numbers(user).map(|(_, changes)| changes)
    }

    fn reconcile(&self, user: &str, measured: u64, token: i64) -> Reconciled {
        self.runner.block_on(async {
            let work = async {
                let client = self.pool.get().await.map_err(|e| error_chain(&e))?;
                let was = client
                    .query_opt(ledger::RECONCILE, &[&user, &signed(measured), &token])
                    .await
                    .map_err(|e| error_chain(&e))?;
                if let Some(was) = was {
                    let was = u64::try_from(was.get::<_, i64>(0)).unwrap_or(0);
                    return Ok(Reconciled::Set { was, now: measured });
                }
                let row = client
                    .query_opt(ledger::NUMBERS, &[&user])
                    .await
                    .map_err(|e| error_chain(&e))?;
                Ok::<_, String>(match row {
                    Some(row) => Reconciled::Skipped {
                        used: u64::try_from(row.get::<_, i64>(0)).unwrap_or(0),
                        measured,
                    },
                    None => Reconciled::Unknown,
                })
            };
            tokio::time::timeout(CONNECT_TIMEOUT, work)
                .await
                .unwrap_or_else(|_| Err("the database did not answer".to_owned()))
                .unwrap_or_else(Reconciled::Unavailable)
        })
    }
}

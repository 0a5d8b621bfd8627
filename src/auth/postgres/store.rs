//! [`PgAccounts`]: the accounts a server runs with, from PostgreSQL.
//!
//! Logins read a cache. It is kept fresh three ways:
//! - a dedicated connection `LISTEN`s on `rsftpd_accounts`, which the triggers on the
//!   account tables notify, so that a change made anywhere (another node, `rsftpd
//!   user`, plain SQL) is seen at once;
//! - every [`RESYNC`] the accounts are read again anyway, in case a notification was
//!   lost;
//! - the listening connection is checked every [`HEALTH_CHECK`]. When it fails, the
//!   store says it is unavailable and the server refuses new logins (fail closed: a
//!   user deleted meanwhile must not get in from a stale cache) until the connection
//!   is back *and* the accounts have been read again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use tokio::sync::mpsc;
use tokio_postgres::AsyncMessage;
use tracing::{error, info, warn};

use super::{Node, PgError, Target, pooled};
use crate::auth::store::{AccountStore, SessionLease, SessionRefusal, StoreKind};
use crate::auth::users::{UsersConfig, UsersError};
use crate::error_chain;

/// How often the accounts are read again even without a notification.
pub const RESYNC: Duration = Duration::from_secs(30);
/// How often the listening connection is checked.
const HEALTH_CHECK: Duration = Duration::from_secs(2);
/// How long to wait before reconnecting after the connection was lost.
const RETRY: Duration = Duration::from_secs(1);
/// How often the server asks whether there is news: only an atomic flag is read.
const POLL: Duration = Duration::from_millis(100);
/// Connections in the pool (reads of the accounts now; the quota ledger later).
const POOL_SIZE: usize = 8;

/// Whether the cache can be trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Health {
    Up,
    /// The connection is lost; why.
    Down(String),
    /// The connection is back; the accounts have not been read again yet.
    Reconnected,
}

/// What the listener task and the store share.
struct Watch {
    origin: String,
    /// A notification came since the accounts were last read.
    dirty: AtomicBool,
    health: Mutex<Health>,
}

impl Watch {
    fn health(&self) -> Health {
        self.health
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set(&self, new: Health) {
        let mut health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        match (&*health, &new) {
            (Health::Up | Health::Reconnected, Health::Down(reason)) => error!(
                target: "rsftpd::admin",
                database = %self.origin,
                reason = %reason,
                "lost the connection to PostgreSQL; new logins are refused until it is back"
            ),
            (Health::Reconnected, Health::Up) => info!(
                target: "rsftpd::admin",
                database = %self.origin,
                "PostgreSQL is back and the accounts are read again; logins resume"
            ),
            _ => {}
        }
        *health = new;
    }
}

/// Accounts from PostgreSQL; see the module docs.
pub struct PgAccounts {
    origin: String,
    pool: Pool,
    runtime: tokio::runtime::Handle,
    current: RwLock<Arc<UsersConfig>>,
    /// Read by `changed`, to be put in force by the `reload` that follows.
    fetched: Mutex<Option<UsersConfig>>,
    last_sync: Mutex<Instant>,
    watch: Arc<Watch>,
    /// Held for a whole reload, so reloads run one at a time.
    reloading: Mutex<()>,
    /// This process as a node of the cluster, for session leases.
    node: Arc<Node>,
}

impl PgAccounts {
    /// Connects, applies the migrations, starts listening for changes and reads the
    /// accounts. Fails if the database cannot be reached or is newer than this binary.
    /// Must run on the tokio runtime the server runs on: the listener is spawned there.
    pub async fn open(target: &Target) -> Result<Arc<PgAccounts>, PgError> {
        let origin = target.to_string();
        super::connect_and_migrate(target).await?;
        let pool = target.pool(POOL_SIZE)?;
        // Listen before reading, so that no change falls between the two.
        let listening = Listening::open(target).await?;
        let config = fetch(&pool, &origin).await?;
        for warning in config.warnings() {
            warn!(target: "rsftpd::admin", "{warning}");
        }
        let watch = Arc::new(Watch {
            origin: origin.clone(),
            dirty: AtomicBool::new(false),
            health: Mutex::new(Health::Up),
        });
        tokio::spawn(listen(
            target.clone(),
            Arc::downgrade(&watch),
            Some(listening),
        ));
        let node = Node::register(pool.clone(), &origin).await?;
        Ok(Arc::new(PgAccounts {
            origin,
            pool,
            runtime: tokio::runtime::Handle::current(),
            current: RwLock::new(Arc::new(config)),
            fetched: Mutex::new(None),
            last_sync: Mutex::new(Instant::now()),
            watch,
            reloading: Mutex::new(()),
            node,
        }))
    }

    /// The connection pool, for the shared ledger.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// This process as a node of the cluster.
    pub fn node(&self) -> &Arc<Node> {
        &self.node
    }

    /// Reads the accounts now. Blocking.
    fn fetch_blocking(&self) -> Result<UsersConfig, PgError> {
        self.runtime.block_on(fetch(&self.pool, &self.origin))
    }

    fn synced_now(&self) {
        *self.last_sync.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }
}

/// Reads every account through the pool, bounded in time.
async fn fetch(pool: &Pool, origin: &str) -> Result<UsersConfig, PgError> {
    let read = async {
        let client = pooled(pool, origin).await?;
        super::load_accounts(&**client, origin).await
    };
    tokio::time::timeout(super::CONNECT_TIMEOUT * 2, read)
        .await
        .map_err(|_| PgError::Timeout {
            origin: origin.to_owned(),
        })?
}

impl AccountStore for PgAccounts {
    fn origin(&self) -> String {
        self.origin.clone()
    }

    fn kind(&self) -> StoreKind {
        StoreKind::Postgres
    }

    fn current(&self) -> Arc<UsersConfig> {
        Arc::clone(&self.current.read().unwrap_or_else(|p| p.into_inner()))
    }

    fn changed(&self) -> bool {
        let health = self.watch.health();
        if matches!(health, Health::Down(_)) {
            return false;
        }
        // Cleared before reading, so that a notification during the read is news next
        // time.
        let notified = self.watch.dirty.swap(false, Ordering::AcqRel);
        let due = self
            .last_sync
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .elapsed()
            >= RESYNC;
        if !(notified || due || health == Health::Reconnected) {
            return false;
        }
        match self.fetch_blocking() {
            Ok(config) => {
                self.synced_now();
                if config == **self.current.read().unwrap_or_else(|p| p.into_inner()) {
                    if health == Health::Reconnected {
                        self.watch.set(Health::Up);
                    }
                    return false;
                }
                *self.fetched.lock().unwrap_or_else(|p| p.into_inner()) = Some(config);
                true
            }
            Err(err) => {
                self.synced_now();
                warn!(target: "rsftpd::admin", database = %self.origin, error = %error_chain(&err), "cannot read the accounts; keeping the last ones read");
                false
            }
        }
    }

    fn reload(&self) -> Result<(Arc<UsersConfig>, Arc<UsersConfig>), UsersError> {
        let _one_at_a_time = self.reloading.lock().unwrap_or_else(|p| p.into_inner());
        let stashed = self
            .fetched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let config = match stashed {
            Some(config) => config,
            None => self.fetch_blocking().map_err(|err| UsersError::Io {
                path: self.origin.clone().into(),
                source: std::io::Error::other(err),
            })?,
        };
        self.synced_now();
        let config = Arc::new(config);
        let old = {
            let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
            std::mem::replace(&mut *current, Arc::clone(&config))
        };
        if self.watch.health() == Health::Reconnected {
            self.watch.set(Health::Up);
        }
        Ok((old, config))
    }

    fn poll_interval(&self) -> Duration {
        POLL
    }

    fn lease_session(
        &self,
        user: &str,
        max_for_user: Option<usize>,
        max_total: usize,
        peer: &str,
    ) -> Result<Option<Box<dyn SessionLease>>, SessionRefusal> {
        if let Some(reason) = self.unavailable() {
            return Err(SessionRefusal::Unavailable(reason));
        }
        let lease = self.runtime.block_on(tokio::time::timeout(
            super::CONNECT_TIMEOUT,
            self.node.lease(user, max_for_user, max_total, peer),
        ));
        match lease {
            Ok(Ok(lease)) => Ok(Some(Box::new(lease))),
            Ok(Err(refused)) => Err(refused),
            Err(_) => Err(SessionRefusal::Unavailable(format!(
                "PostgreSQL at {} did not answer in time",
                self.origin
            ))),
        }
    }

    fn unavailable(&self) -> Option<String> {
        match self.watch.health() {
            Health::Up => None,
            Health::Down(reason) => Some(format!("lost PostgreSQL at {}: {reason}", self.origin)),
            Health::Reconnected => Some(format!(
                "reading the accounts again from {} after a lost connection",
                self.origin
            )),
        }
    }
}

/// A connection that `LISTEN`s, and the notifications it receives. The channel yields
/// `Err` with the reason, or closes, when the connection ends.
struct Listening {
    client: tokio_postgres::Client,
    news: mpsc::UnboundedReceiver<Result<(), String>>,
}

impl Listening {
    async fn open(target: &Target) -> Result<Listening, PgError> {
        let origin = target.to_string();
        let connecting = target.config().connect(tokio_postgres::NoTls);
        let (client, mut connection) = tokio::time::timeout(super::CONNECT_TIMEOUT, connecting)
            .await
            .map_err(|_| PgError::Timeout {
                origin: origin.clone(),
            })?
            .map_err(|source| PgError::Unreachable {
                origin: origin.clone(),
                source,
            })?;
        let (tx, news) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                    Some(Ok(AsyncMessage::Notification(_))) => {
                        if tx.send(Ok(())).is_err() {
                            return;
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(err)) => {
                        let _ = tx.send(Err(error_chain(&err)));
                        return;
                    }
                    None => return,
                }
            }
        });
        client
            .batch_execute("LISTEN rsftpd_accounts")
            .await
            .map_err(|source| PgError::Query { origin, source })?;
        Ok(Listening { client, news })
    }

    /// Passes notifications on until the connection fails; returns why.
    async fn run(mut self, watch: &Weak<Watch>) -> Option<String> {
        let mut health = tokio::time::interval(HEALTH_CHECK);
        health.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                news = self.news.recv() => match news {
                    Some(Ok(())) => {
                        watch.upgrade()?.dirty.store(true, Ordering::Release);
                    }
                    Some(Err(reason)) => return Some(reason),
                    None => return Some("the connection closed".to_owned()),
                },
                _ = health.tick() => {
                    watch.upgrade()?;
                    let ping = self.client.simple_query("SELECT 1");
                    match tokio::time::timeout(super::CONNECT_TIMEOUT, ping).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(err)) => return Some(error_chain(&err)),
                        Err(_) => return Some(format!(
                            "no answer within {} s", super::CONNECT_TIMEOUT.as_secs()
                        )),
                    }
                }
            }
        }
    }
}

/// Listens for changes for as long as the store lives, reconnecting when the
/// connection is lost.
async fn listen(target: Target, watch: Weak<Watch>, mut first: Option<Listening>) {
    loop {
        let listening = match first.take() {
            Some(listening) => listening,
            None => match Listening::open(&target).await {
                Ok(listening) => {
                    let Some(shared) = watch.upgrade() else {
                        return;
                    };
                    shared.set(Health::Reconnected);
                    listening
                }
                Err(err) => {
                    let Some(shared) = watch.upgrade() else {
                        return;
                    };
                    shared.set(Health::Down(error_chain(&err)));
                    drop(shared);
                    tokio::time::sleep(RETRY).await;
                    continue;
                }
            },
        };
        let Some(reason) = listening.run(&watch).await else {
            return;
        };
        let Some(shared) = watch.upgrade() else {
            return;
        };
        shared.set(Health::Down(reason));
        drop(shared);
        tokio::time::sleep(RETRY).await;
    }
}

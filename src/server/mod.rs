//! The server: russh glue around the storage core and the account model.
//!
//! [`Server::prepare`] readies everything a first start needs (host key, starter account,
//! homes, usage recomputed from disk); [`Server::run`] serves a listener until the
//! shutdown future completes. The caller owns both, so tests bind `127.0.0.1:0`.

mod activity;
pub mod budget;
mod channels;
mod config;
mod error;
mod exec;
mod front;
mod handler;
mod logfile;
pub mod logging;
mod login;
mod op;
mod oplog;
mod privileges;
mod proxy;
mod refusals;
mod reload;
mod replies;
mod rsftp;
pub mod scp;
mod sessions;
mod sftp;
mod shared;
mod startups;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use russh::Disconnect;
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

pub use config::{BadStartupLimits, Limits, Settings, StartupLimits};
pub use error::ServerError;
pub use proxy::{BadProxyNet, ProxyNet};
pub use replies::storage_error_reply;
pub use sessions::SessionRefused;

#[doc(hidden)]
use crate::auth::{
    AccountScore, AccountStore, LoginThrottle, PasswordChecker, Secret, UserName, UsersError,
    WatchedUsersFile,
};
use crate::error_chain;
use crate::storage::{Reconciled, Storage};
/// The parsers behind the SFTP and exec front ends, public only so that the fuzz targets
/// in `fuzz/` and the corpus replay in `tests/fuzz_corpus.rs` can reach them.
#[doc(hidden)]
pub use exec::{Parsed as ExecCommand, split_words};
use handler::{LoginProgress, SshHandler};
use reload::{password_hashes, watch_users_file};
use sessions::SessionRegistry;
use shared::Shared;
use startups::{Arrival, StartupGuard, Startups};

/// A server ready to run.
pub struct Server {
    shared: Arc<Shared>,
    config: Arc<russh::server::Config>,
    settings: Settings,
}

/// What [`Server::prepare`] did that the operator should hear about.
pub struct Prepared {
    pub server: Server,
    /// The starter account created because `users.toml` was missing, with its password.
    pub starter: Option<(UserName, Secret)>,
    /// The host key was created just now.
    pub host_key_created: bool,
    /// The host key's SHA256 fingerprint, as OpenSSH shows it.
    pub fingerprint: String,
}

impl Server {
    /// Readies a server: the host key (created on first start), `users.toml` (created
    /// with a starter account if missing), the storage root, each user's home, and each
    /// user's usage recomputed from disk. Refuses a host key or `users.toml` that group
    /// or others may access, unless `settings.allow_open_permissions`.
    pub fn prepare(settings: Settings) -> Result<Prepared, ServerError> {
        Server::prepare_with_accounts(settings, None)
    }

    /// [`Server::prepare`], with the accounts from `accounts` (such as PostgreSQL)
    /// rather than `settings.users_file`, which is then neither read nor created.
    pub fn prepare_with_accounts(
        settings: Settings,
        accounts: Option<Arc<dyn AccountStore>>,
    ) -> Result<Prepared, ServerError> {
        let mut secrets = vec![config::host_key_path(&settings.keys_dir)];
        if accounts.is_none() {
            secrets.push(settings.users_file.clone());
        }
        // Before anything is created, so that a refused start makes no key and no account.
        privileges::check_secrets(&secrets, settings.allow_open_permissions)?;
        let (host_key, host_key_created) = config::load_or_create_host_key(&settings.keys_dir)?;
        let fingerprint = host_key
            .public_key()
            .fingerprint(russh::keys::HashAlg::Sha256)
            .to_string();
        let (accounts, starter) = match accounts {
            Some(accounts) => (accounts, None),
            None => {
                let starter = if settings.users_file.exists() {
                    None
                } else {
                    Some(crate::auth::create_starter_file(&settings.users_file)?)
                };
                let file: Arc<dyn AccountStore> =
                    Arc::new(WatchedUsersFile::load(&settings.users_file)?);
                (file, starter)
            }
        };
        let storage = match &settings.object_store {
            Some(store) => Storage::open_object_with(
                &settings.storage_dir,
                store,
                settings.upload_states.clone(),
            )?,
            None => Storage::open(&settings.storage_dir)?,
        };
        let storage = Arc::new(match &settings.cluster_quota {
            Some(cluster) => storage.with_cluster_quota(Arc::clone(cluster)),
            None => storage,
        });
        // One home that cannot be opened must not keep everyone else out: it is logged,
        // and that user's logins try again.
        for account in accounts.current().iter() {
            if let Err(err) = storage.home(account.name.as_str(), account.quota, account.max_files)
            {
                warn!(user = %account.name, error = %error_chain(&err), "cannot open home");
            }
        }
        privileges::warn_if_root_owns_homes(
            &settings.storage_dir,
            accounts
                .current()
                .iter()
                .map(|account| account.name.as_str()),
        );
        let limits = settings.limits.clone();
        let passwords = PasswordChecker::new(limits.max_password_checks);
        passwords.match_accounts(password_hashes(&accounts.current()));
        let shared = Arc::new(Shared {
            accounts,
            storage,
            passwords,
            throttle: LoginThrottle::with_shared(limits.throttle, settings.shared_bans.clone()),
            account_score: AccountScore::new(limits.account_throttle),
            refusals: refusals::RefusalLog::default(),
            sessions: SessionRegistry::new(limits.max_sessions),
            memory: budget::MemoryBudget::new(limits.memory_budget),
            limits,
            idle_timeout: settings.idle_timeout,
            balancers: settings.proxy_from.clone(),
        });
        let config = Arc::new(config::russh_config(&settings, host_key));
        Ok(Prepared {
            server: Server {
                shared,
                config,
                settings,
            },
            starter,
            host_key_created,
            fingerprint,
        })
    }

    /// Reads `users.toml` again and applies it: new logins see new passwords and keys at
    /// once, quotas change in the live ledgers, and a deleted user's sessions are ended.
    /// A file that does not parse keeps the last good configuration (and is logged as an
    /// error). The server also does this by itself within about a second of a change.
    pub async fn reload(&self) -> Result<(), UsersError> {
        reload::reload(&self.shared).await
    }

    /// A handle that reloads `users.toml` while the server runs (for SIGHUP).
    pub fn reloader(&self) -> Reloader {
        Reloader(Arc::clone(&self.shared))
    }

    /// Serves `listener` until `shutdown` completes. Then it drains: the listener is
    /// closed, sessions may finish by themselves for `settings.drain_timeout`, and the
    /// rest are ended, waiting a few seconds at most for them to close. An upload cut
    /// off by this stays resumable: its partial file keeps every byte received.
    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        self.run_with_cut(listener, shutdown, std::future::pending())
            .await
    }

    /// [`Server::run`], with a drain that ends early once `cut` completes (rsftpd: a
    /// second SIGTERM or Ctrl-C).
    pub async fn run_with_cut(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
        cut: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        let shared = self.shared;
        let local = listener.local_addr()?;
        info!(listen = %local, users = shared.accounts.current().len(), "rsftpd listening");
        let (stop, _) = broadcast::channel::<()>(1);
        let startups = Startups::new(shared.limits.startups);
        let mut connections = JoinSet::new();
        let watcher = tokio::spawn(watch_users_file(Arc::clone(&shared), stop.subscribe()));
        let mut cleanup_tick = tokio::time::interval(Duration::from_secs(3600));
        // Owned here, so that no cleanup still deletes files once `run` has returned.
        let mut cleanups = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                _ = cleanup_tick.tick() => {
                    cleanups.spawn(remove_stale_partials(Arc::clone(&shared), self.settings.partial_max_age));
                }
                Some(_) = cleanups.join_next(), if !cleanups.is_empty() => {}
                accepted = listener.accept() => {
                    let (socket, peer) = match accepted {
                        Ok(accepted) => accepted,
                        Err(err) => {
                            // Out of file descriptors and the like: back off, keep serving.
                            warn!(error = %err, "accept failed");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    };
                    if proxy::is_balancer(&shared.balancers, peer.ip()) {
                        // Who the client is, and so whether it is banned, is known only
                        // once the header is read, which is not done here.
                        connections.spawn(through_balancer(
                            Arc::clone(&shared),
                            Arc::clone(&self.config),
                            socket,
                            peer,
                            Arc::clone(&startups),
                            stop.subscribe(),
                        ));
                        continue;
                    }
                    let Some(arrival) = admit(&shared, &startups, peer) else {
                        continue;
                    };
                    connections.spawn(connect(
                        Arc::clone(&shared),
                        Arc::clone(&self.config),
                        socket,
                        peer,
                        arrival,
                        stop.subscribe(),
                    ));
                }
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
        // No new connection from here on: a balancer's health check fails at once and
        // sends new clients to another node.
        drop(listener);
        let open = connections.len();
        if !self.settings.drain_timeout.is_zero() {
            info!(
                connections = open,
                timeout_seconds = self.settings.drain_timeout.as_secs(),
                "draining: no new connections, open ones may finish"
            );
            let all_ended = async { while connections.join_next().await.is_some() {} };
            tokio::select! {
                _ = tokio::time::timeout(self.settings.drain_timeout, all_ended) => {}
                () = cut => info!("drain cut short"),
            }
            info!(
                finished = open - connections.len(),
                cut = connections.len(),
                "drain over"
            );
        }
        info!(sessions = connections.len(), "shutting down");
        let _ = stop.send(());
        // Let a reload under way finish rather than leave it running on its own.
        let _ = tokio::time::timeout(Duration::from_secs(10), watcher).await;
        let drained = tokio::time::timeout(Duration::from_secs(10), async {
            while connections.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            warn!("some sessions did not close in time");
        }
        let cleaned = tokio::time::timeout(Duration::from_secs(10), async {
            while cleanups.join_next().await.is_some() {}
        })
        .await;
        if cleaned.is_err() {
            warn!("the cleanup of partial uploads did not finish in time");
        }
        Ok(())
    }

    /// The address a test should connect to, from the settings (the listener decides).
    pub fn settings(&self) -> &Settings {
        &self.settings
    }
}

/// Reloads the accounts of a running server; see [`Server::reload`].
#[derive(Clone)]
pub struct Reloader(Arc<Shared>);

impl Reloader {
    pub async fn reload(&self) -> Result<(), UsersError> {
        reload::reload(&self.0).await
    }
}

/// Decides about a new connection from `peer`: a banned address is refused, and the
/// others take a startup slot, wait for one, or are refused for want of one.
fn admit(shared: &Shared, startups: &Arc<Startups>, peer: SocketAddr) -> Option<Arrival> {
    let now = std::time::Instant::now();
    if let Some(left) = shared.throttle.banned_for(peer.ip(), now) {
        if let Some(suppressed) = shared.refusals.admit(now) {
            info!(target: "rsftpd::auth", peer = %peer, seconds_left = left.as_secs(), suppressed, "connection refused: peer banned");
        }
        return None;
    }
    match startups.arrive(peer.ip()) {
        Arrival::Refused(reason) => {
            if let Some(suppressed) = shared.refusals.admit(now) {
                warn!(peer = %peer, reason, suppressed, "connection refused");
            }
            None
        }
        arrival => Some(arrival),
    }
}

/// A connection from a balancer: its PROXY header names the client, who then stands for
/// the peer in every check and log line from here on.
async fn through_balancer(
    shared: Arc<Shared>,
    config: Arc<russh::server::Config>,
    mut socket: tokio::net::TcpStream,
    balancer: SocketAddr,
    startups: Arc<Startups>,
    mut stop: broadcast::Receiver<()>,
) {
    let header = tokio::select! {
        header = proxy::read_header(&mut socket) => header,
        _ = stop.recv() => return,
    };
    let peer = match header {
        Ok(Some(client)) => client,
        // The balancer's own connection: a health check.
        Ok(None) => balancer,
        Err(proxy::HeaderRefused::Closed) => {
            debug!(balancer = %balancer, "balancer connection closed before its PROXY header");
            return;
        }
        Err(err) => {
            if let Some(suppressed) = shared.refusals.admit(std::time::Instant::now()) {
                warn!(target: "rsftpd::auth", balancer = %balancer, error = %err, suppressed, "connection refused: bad or missing PROXY header from a balancer");
            }
            return;
        }
    };
    debug!(peer = %peer, balancer = %balancer, "connection through a balancer");
    let Some(arrival) = admit(&shared, &startups, peer) else {
        return;
    };
    connect(shared, config, socket, peer, arrival, stop).await;
}

/// Takes a new connection from its slot (waiting for one if need be) to its end.
async fn connect(
    shared: Arc<Shared>,
    config: Arc<russh::server::Config>,
    socket: tokio::net::TcpStream,
    peer: SocketAddr,
    arrival: Arrival,
    mut stop: broadcast::Receiver<()>,
) {
    let startup = match arrival {
        Arrival::Admitted(startup) => startup,
        Arrival::Refused(_) => return,
        Arrival::Wait(waiting) => {
            debug!(peer = %peer, "connection waits for a slot of its address");
            // Giving up here, on either side, is no failed login: a burst of real
            // clients from one address must not ban it.
            let got = tokio::select! {
                got = tokio::time::timeout(shared.limits.max_wait, waiting.slot()) => got.ok(),
                _ = stop.recv() => None,
            };
            let Some(startup) = got else {
                if let Some(suppressed) = shared.refusals.admit(std::time::Instant::now()) {
                    info!(target: "rsftpd::auth", peer = %peer, suppressed, "connection closed: no slot free within the waiting time");
                }
                return;
            };
            let now = std::time::Instant::now();
            if shared.throttle.banned_for(peer.ip(), now).is_some() {
                if let Some(suppressed) = shared.refusals.admit(now) {
                    info!(target: "rsftpd::auth", peer = %peer, suppressed, "connection refused: peer banned");
                }
                return;
            }
            startup
        }
    };
    serve_connection(shared, config, socket, peer, startup, stop).await;
}

/// What a connection that timed out without trying to log in costs its address: the
/// same as a failed login, so that idle connections held on purpose end in a ban.
fn count_idle_timeout(shared: &Shared, peer: SocketAddr) {
    if shared
        .throttle
        .record_failure(peer.ip(), std::time::Instant::now())
    {
        warn!(target: "rsftpd::auth", peer = %peer, "peer banned after repeated login failures");
    }
}

async fn serve_connection(
    shared: Arc<Shared>,
    config: Arc<russh::server::Config>,
    socket: tokio::net::TcpStream,
    peer: SocketAddr,
    startup: StartupGuard,
    mut stop: broadcast::Receiver<()>,
) {
    let _ = socket.set_nodelay(true);
    let activity = activity::Activity::new();
    // Over its share of the memory budget, the connection is not read until its front
    // ends have drained what it sent.
    let account = shared.memory.account();
    let socket =
        proxy::SniffedStream::new(budget::ThrottledStream::new(socket, Arc::clone(&account)));
    let forged = socket.forged();
    let handler = SshHandler::new(
        Arc::clone(&shared),
        peer,
        startup,
        activity.clone(),
        account,
    );
    let progress: Arc<LoginProgress> = handler.progress();
    let started = tokio::time::Instant::now();
    let deadline = started + shared.limits.login_grace;
    // russh returns from `run_stream` once it has read the client's version line; a
    // peer that connects and says nothing keeps its slot only this long.
    let version_deadline = started + shared.limits.version_grace.min(shared.limits.login_grace);
    let setup = russh::server::run_stream(config, socket, handler);
    tokio::pin!(setup);
    let outcome = tokio::select! {
        outcome = &mut setup => Some(outcome),
        () = tokio::time::sleep_until(version_deadline) => None,
    };
    let session = match outcome {
        Some(Ok(session)) => session,
        Some(Err(_)) if forged.load(Ordering::Relaxed) => {
            if let Some(suppressed) = shared.refusals.admit(std::time::Instant::now()) {
                warn!(target: "rsftpd::auth", peer = %peer, suppressed, "connection refused: PROXY header from an address not in --proxy-from");
            }
            return;
        }
        Some(Err(err)) => {
            debug!(peer = %peer, error = %err, "connection setup failed");
            return;
        }
        None => {
            // Counted while the socket is still open (it closes when `setup` drops, on
            // return), so that whoever sees it close also sees the failure counted.
            count_idle_timeout(&shared, peer);
            info!(target: "rsftpd::auth", peer = %peer, "connection dropped: no SSH version line within the grace time");
            return;
        }
    };
    let handle = session.handle();
    tokio::pin!(session);
    let grace_over = tokio::time::sleep_until(deadline);
    tokio::pin!(grace_over);
    let mut grace_checked = false;
    loop {
        tokio::select! {
            result = &mut session => {
                if let Err(err) = result {
                    debug!(peer = %peer, error = %err, "connection ended with an error");
                }
                return;
            }
            () = &mut grace_over, if !grace_checked => {
                grace_checked = true;
                if !progress.logged_in.load(Ordering::Acquire) {
                    info!(target: "rsftpd::auth", peer = %peer, "connection dropped: not logged in within the login grace time");
                    if !progress.tried.load(Ordering::Acquire) {
                        count_idle_timeout(&shared, peer);
                    }
                    let _ = handle
                        .disconnect(Disconnect::ByApplication, "login grace time over".into(), "en".into())
                        .await;
                    let _ = tokio::time::timeout(Duration::from_secs(5), &mut session).await;
                    return;
                }
            }
            () = activity.until_idle(shared.idle_timeout) => {
                info!(peer = %peer, seconds = shared.idle_timeout.as_secs(), "connection closed: idle");
                let _ = handle
                    .disconnect(Disconnect::ByApplication, "idle timeout".into(), "en".into())
                    .await;
                let _ = tokio::time::timeout(Duration::from_secs(5), &mut session).await;
                return;
            }
            _ = stop.recv() => {
                let _ = handle
                    .disconnect(Disconnect::ByApplication, "server shutting down".into(), "en".into())
                    .await;
                let _ = tokio::time::timeout(Duration::from_secs(5), &mut session).await;
                return;
            }
        }
    }
}

async fn remove_stale_partials(shared: Arc<Shared>, max_age: Duration) {
    let accounts = shared.accounts.current();
    let storage = Arc::clone(&shared.storage);
    let work = tokio::task::spawn_blocking(move || {
        for account in accounts.iter() {
            let user = account.name.as_str();
            match storage
                .home(user, account.quota, account.max_files)
                .and_then(|home| home.remove_stale_partials(max_age))
            {
                Ok(0) => {}
                Ok(bytes) => info!(user, bytes, "removed stale partial uploads"),
                Err(err) => warn!(user, error = %err, "cleaning partial uploads failed"),
            }
            // In a cluster, the shared quota ledger is checked against the home too.
            match storage.reconcile(user) {
                Ok(Reconciled::Set { was, now }) if was != now => {
                    warn!(target: "rsftpd::admin", user, was, now, "quota ledger corrected from the home");
                }
                Ok(Reconciled::Skipped { used, measured }) if used != measured => {
                    info!(target: "rsftpd::admin", user, used, measured, "quota ledger not reconciled: an upload is in flight");
                }
                Ok(Reconciled::Unavailable(reason)) => {
                    warn!(target: "rsftpd::admin", user, reason = %reason, "quota ledger not reconciled");
                }
                Ok(_) => {}
                Err(err) => {
                    warn!(user, error = %err, "measuring the home for the quota ledger failed")
                }
            }
        }
    });
    let _ = work.await;
}

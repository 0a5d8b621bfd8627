//! The russh handler: one per connection. It stays thin: logins go to [`auth`], files to
//! [`storage`], and each subsystem runs in its own task on its own channel.
//!
//! [`auth`]: crate::auth
//! [`storage`]: crate::storage

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use russh::keys::PublicKey;
use russh::server::{Auth, ChannelOpenHandle, Msg, PublicKeyOffer, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, Disconnect, MethodKind, MethodSet};
use tracing::{Instrument, info, warn};

use super::Shared;
use super::activity::Activity;
use super::budget::{ConnectionAccount, Transit};
use super::channels::{
    CHANNEL_CLAIM_TIME, MAX_CHANNELS, Running, SharedChannels, claim, close_unclaimed,
    lock_channels,
};
use super::logging::LogText;
use super::oplog::OpLog;
use super::sessions::SessionGuard;
use super::startups::StartupGuard;
use crate::auth::Secret;
use crate::storage::HomeDir;

/// What a connection knows once its user has logged in.
struct Login {
    user: String,
    home: HomeDir,
    /// Shared with every channel; the last to drop it logs the session's summary.
    oplog: Arc<OpLog>,
    _session: SessionGuard,
    /// The session as counted by every node sharing the accounts, if they are shared.
    _lease: Option<Box<dyn crate::auth::SessionLease>>,
}

/// How far a connection got with logging in.
#[derive(Default)]
pub(super) struct LoginProgress {
    /// It sent credentials (a password, a key offer or a signature).
    pub tried: AtomicBool,
    pub logged_in: AtomicBool,
}

pub struct SshHandler {
    shared: Arc<Shared>,
    peer: SocketAddr,
    /// Held while the connection has not logged in, to cap unauthenticated connections.
    startup: Option<StartupGuard>,
    /// What the connection's grace timer looks at.
    progress: Arc<LoginProgress>,
    /// The user whose credentials were accepted, until `auth_succeeded` admits them.
    accepted: Option<String>,
    login: Option<Login>,
    /// The user a key offer was declined for; counts once against the peer if the
    /// connection never logs in (agents offer every key they hold, so a declined key is
    /// normal on the way to the right one).
    declined_key: Option<String>,
    /// A password was refused on this connection (each one is counted as it happens).
    refused_password: bool,
    channels: SharedChannels,
    /// SFTP handles open on all of this connection's channels.
    sftp_handles: super::sftp::ConnectionHandles,
    /// When the user last did something; the connection's idle watchdog reads it.
    activity: Activity,
    /// What this connection's front ends buffer, against its share of the budget.
    account: Arc<ConnectionAccount>,
    /// The SFTP channels' data queued for them and not yet taken.
    transit: HashMap<ChannelId, Arc<Transit>>,
}

impl SshHandler {
    pub(super) fn new(
        shared: Arc<Shared>,
        peer: SocketAddr,
        startup: StartupGuard,
        activity: Activity,
        account: Arc<ConnectionAccount>,
    ) -> Self {
        SshHandler {
            activity,
            shared,
            peer,
            startup: Some(startup),
            progress: Arc::default(),
            accepted: None,
            login: None,
            declined_key: None,
            refused_password: false,
            channels: Arc::default(),
            sftp_handles: super::sftp::ConnectionHandles::new(Arc::clone(&account)),
            account,
            transit: HashMap::new(),
        }
    }

    /// How far this connection got with logging in, for its grace timer.
    pub(super) fn progress(&self) -> Arc<LoginProgress> {
        Arc::clone(&self.progress)
    }

    /// Takes a pending channel to run something on it; the returned guard keeps it
    /// counted as open until dropped, after the work on it is done.
    fn claim(&self, id: ChannelId) -> Option<(Channel<Msg>, Running)> {
        claim(&self.channels, id)
    }

    /// Claims channel `id` for an exec command, answers the request, and runs what
    /// `start` makes of the channel in a task of its own, counted as open until it ends.
    fn run_command<F>(
        &self,
        id: ChannelId,
        session: &mut Session,
        user: &str,
        command: &str,
        start: impl FnOnce(Channel<Msg>) -> F,
    ) -> Result<(), russh::Error>
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let Some((channel, running)) = self.claim(id) else {
            session.channel_failure(id)?;
            return Ok(());
        };
        session.channel_success(id)?;
        let span = tracing::info_span!("session", user = %user, peer = %self.peer, exec = %LogText(command));
        let run = start(channel);
        tokio::spawn(
            async move {
                run.await;
                drop(running);
            }
            .instrument(span),
        );
        Ok(())
    }

    fn log_attempt(&self, user: &str, method: &'static str, result: &'static str) {
        info!(
            target: "rsftpd::auth",
            user = %LogText(user),
            peer = %self.peer,
            method,
            result,
            "login {result}"
        );
    }

    /// A banned peer is refused without looking at its credentials, and so is everyone
    /// while the account store is unavailable. Every real login attempt passes here
    /// first, so this also marks the connection as having tried.
    fn banned(&self, user: &str, method: &'static str) -> bool {
        self.activity.touch();
        self.progress.tried.store(true, Ordering::Release);
        let banned = self
            .shared
            .throttle
            .banned_for(self.peer.ip(), Instant::now())
            .is_some();
        if banned {
            self.log_attempt(user, method, "banned");
            return true;
        }
        // Fail closed: accounts that cannot be checked let nobody in. Not the peer's
        // fault, so not counted against it.
        if let Some(reason) = self.shared.accounts.unavailable() {
            warn!(target: "rsftpd::auth", user = %LogText(user), peer = %self.peer, method, result = "refused", reason = %reason, "login refused: the accounts are unavailable");
            return true;
        }
        false
    }

    /// An account guessed at from many addresses answers slowly, except to sources that
    /// logged in to it recently (see `AccountScore`).
    async fn wait_out_account_score(&self, user: &str) {
        let score = &self.shared.account_score;
        let delay = score.delay_for(user, self.peer.ip(), Instant::now());
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
    }

    fn reject(&mut self, user: &str, method: &'static str) -> Auth {
        self.log_attempt(user, method, "rejected");
        // Counted now, and never wiped by a later login: otherwise one account could be
        // used to guess another's password for ever.
        self.refused_password = true;
        self.count_failure(user);
        Auth::Reject {
            proceed_with_methods: Some(MethodSet::from(
                &[MethodKind::Password, MethodKind::PublicKey][..],
            )),
            partial_success: false,
        }
    }

    fn count_failure(&self, user: &str) {
        if self
            .shared
            .account_score
            .record_failure(user, Instant::now())
        {
            warn!(target: "rsftpd::auth", user = %LogText(user), "account logins slowed after repeated failures");
        }
        if self
            .shared
            .throttle
            .record_failure(self.peer.ip(), Instant::now())
        {
            warn!(target: "rsftpd::auth", peer = %self.peer, "peer banned after repeated login failures");
        }
    }

    fn decline_key(&mut self, user: &str) -> Auth {
        info!(target: "rsftpd::auth", user = %LogText(user), peer = %self.peer, method = "publickey", result = "declined", "key offer declined");
        self.declined_key = Some(user.to_owned());
        Auth::Reject {
            proceed_with_methods: Some(MethodSet::from(
                &[MethodKind::Password, MethodKind::PublicKey][..],
            )),
            partial_success: false,
        }
    }

    fn accept(&mut self, user: &str, method: &'static str) -> Auth {
        self.log_attempt(user, method, "accepted");
        let score = &self.shared.account_score;
        score.record_success(user, self.peer.ip(), Instant::now());
        self.accepted = Some(user.to_owned());
        Auth::Accept
    }

    fn key_is_authorized(&self, user: &str, key: &PublicKey) -> bool {
        let accounts = self.shared.accounts.current();
        accounts
            .get(user)
            .is_some_and(|account| account.keys.iter().any(|k| k.matches(key)))
    }

    fn login(&self) -> Option<&Login> {
        self.login.as_ref()
    }
}

impl Drop for SshHandler {
    fn drop(&mut self) {
        // A connection that only offered keys nobody accepted, and left without logging
        // in, is one failed login.
        if self.login.is_none()
            && !self.refused_password
            && let Some(user) = self.declined_key.take()
        {
            self.log_attempt(&user, "publickey", "rejected");
            self.count_failure(&user);
        }
    }
}

impl russh::server::Handler for SshHandler {
    type Error = russh::Error;

    async fn auth_none(&mut self, _user: &str) -> Result<Auth, Self::Error> {
        Ok(Auth::Reject {
            proceed_with_methods: Some(MethodSet::from(
                &[MethodKind::Password, MethodKind::PublicKey][..],
            )),
            partial_success: false,
        })
    }

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        if self.banned(user, "password") {
            return Ok(Auth::reject());
        }
        self.wait_out_account_score(user).await;
        let stored = self
            .shared
            .accounts
            .current()
            .get(user)
            .and_then(|account| account.password_hash.clone());
        let secret = Secret::new(password.to_owned());
        // Unknown users are checked against a dummy hash inside, so the answer takes as
        // long whether or not the user exists.
        let ok = self.shared.passwords.check(stored.as_ref(), secret).await;
        Ok(if ok {
            self.accept(user, "password")
        } else {
            self.reject(user, "password")
        })
    }

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        if self.banned(user, "publickey") {
            return Ok(Auth::reject());
        }
        if self.key_is_authorized(user, offer.public_key) {
            Ok(Auth::Accept)
        } else {
            Ok(self.decline_key(user))
        }
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        if self.banned(user, "publickey") {
            return Ok(Auth::reject());
        }
        self.wait_out_account_score(user).await;
        Ok(if self.key_is_authorized(user, key.public_key) {
            self.accept(user, "publickey")
        } else {
            self.reject(user, "publickey")
        })
    }

    async fn auth_succeeded(&mut self, session: &mut Session) -> Result<(), Self::Error> {
        self.activity.touch();
        self.startup = None;
        self.progress.logged_in.store(true, Ordering::Release);
        let Some(user) = self.accepted.take() else {
            session.disconnect(Disconnect::ByApplication, "internal error", "en")?;
            return Ok(());
        };
        let Some(account) = self.shared.accounts.current().get(&user).cloned() else {
            session.disconnect(Disconnect::ByApplication, "account no longer exists", "en")?;
            return Ok(());
        };
        let max_for_user = account
            .max_sessions
            .map(|n| n as usize)
            .or(self.shared.limits.max_sessions_per_user)
            .unwrap_or(usize::MAX);
        let guard = match self
            .shared
            .sessions
            .admit(&user, max_for_user, session.handle())
        {
            Ok(guard) => guard,
            Err(refused) => {
                warn!(target: "rsftpd::auth", user = %user, peer = %self.peer, reason = %refused, "session refused");
                session.disconnect(Disconnect::TooManyConnections, &refused.to_string(), "en")?;
                return Ok(());
            }
        };
        let limit = (max_for_user != usize::MAX).then_some(max_for_user);
        let lease = match super::lease_session(&self.shared, &user, limit, self.peer).await {
            Ok(lease) => lease,
            Err(refused) => {
                warn!(target: "rsftpd::auth", user = %user, peer = %self.peer, reason = %refused, "session refused");
                session.disconnect(Disconnect::TooManyConnections, &refused.to_string(), "en")?;
                return Ok(());
            }
        };
        let storage = Arc::clone(&self.shared.storage);
        let name = user.clone();
        let home = tokio::task::spawn_blocking(move || {
            storage.home(&name, account.quota, account.max_files)
        })
        .await;
        match home {
            Ok(Ok(home)) => {
                info!(target: "rsftpd::auth", user = %user, peer = %self.peer, "session started");
                self.account.admit();
                self.login = Some(Login {
                    oplog: OpLog::start(&user, self.peer),
                    user,
                    home,
                    _session: guard,
                    _lease: lease,
                });
            }
            Ok(Err(err)) => {
                warn!(user = %user, error = %err, "cannot open home");
                session.disconnect(
                    Disconnect::ByApplication,
                    "home directory unavailable",
                    "en",
                )?;
            }
            Err(join) => {
                warn!(user = %user, error = %join, "cannot open home");
                session.disconnect(
                    Disconnect::ByApplication,
                    "home directory unavailable",
                    "en",
                )?;
            }
        }
        Ok(())
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let id = channel.id();
        self.activity.touch();
        {
            let mut channels = lock_channels(&self.channels);
            if self.login.is_none() || channels.open.len() >= MAX_CHANNELS {
                // Dropping `reply` refuses the channel.
                return Ok(());
            }
            channels.open.insert(id);
            channels.pending.insert(id, channel);
        }
        reply.accept().await;
        // A channel still unclaimed after a while is closed, which also frees the
        // connection if the peer has been filling it.
        let channels = Arc::clone(&self.channels);
        tokio::spawn(async move {
            tokio::time::sleep(CHANNEL_CLAIM_TIME).await;
            close_unclaimed(&channels, id);
        });
        Ok(())
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.transit.remove(&channel);
        // A running channel stays counted until its task has finished with it.
        let mut channels = lock_channels(&self.channels);
        if channels.pending.remove(&channel).is_some() {
            channels.open.remove(&channel);
        }
        Ok(())
    }

    async fn data(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(transit) = self.transit.get(&channel) {
            transit.arrived(data.len());
        }
        Ok(())
    }

    async fn subsystem_request(
        &mut self,
        id: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.activity.touch();
        let Some(login) = self.login() else {
            session.channel_failure(id)?;
            return Ok(());
        };
        let user = login.user.clone();
        let home = login.home.clone();
        let oplog = Arc::clone(&login.oplog);
        let activity = self.activity.clone();
        if name != "rsftp" && name != "sftp" {
            info!(user = %user, subsystem = %LogText(name), "unknown subsystem refused");
            // Nobody would read it.
            session.channel_failure(id)?;
            close_unclaimed(&self.channels, id);
            return Ok(());
        }
        let Some((channel, running)) = self.claim(id) else {
            session.channel_failure(id)?;
            return Ok(());
        };
        session.channel_success(id)?;
        info!(target: "rsftpd::auth", user = %user, peer = %self.peer, subsystem = %name, "subsystem started");
        let span =
            tracing::info_span!("session", user = %user, peer = %self.peer, subsystem = %name);
        if name == "rsftp" {
            let handle = session.handle();
            let stall = self.shared.limits.stall_timeout;
            let account = Arc::clone(&self.account);
            tokio::spawn(
                async move {
                    let stream = channel.into_stream();
                    let front = super::front::Front {
                        oplog,
                        activity,
                        stall,
                        account,
                    };
                    let stream = super::rsftp::serve(stream, home, user, front).await;
                    // OpenSSH reports a missing exit status as a failure.
                    let _ = handle.exit_status_request(id, 0).await;
                    drop(stream);
                    drop(running);
                }
                .instrument(span),
            );
        } else {
            let handles = self.sftp_handles.clone();
            let transit = self.account.transit();
            self.transit.insert(id, Arc::clone(&transit));
            tokio::spawn(
                async move {
                    super::sftp::serve(channel, home, user, handles, oplog, activity, transit)
                        .await;
                    drop(running);
                }
                .instrument(span),
            );
        }
        Ok(())
    }

    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        _col_width: u32,
        _row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        // Say yes, so that the shell refusal below reaches the user as a plain message.
        session.channel_success(channel)?;
        Ok(())
    }

    async fn shell_request(
        &mut self,
        id: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.refuse_command(
            id,
            session,
            "rsftpd offers no shell. Use: ssh -s HOST rsftp, sftp, scp, or the rsftp client.\r\n",
        )
    }

    async fn exec_request(
        &mut self,
        id: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.activity.touch();
        let command = String::from_utf8_lossy(data);
        let login = self
            .login()
            .map(|l| (l.user.clone(), l.home.clone(), Arc::clone(&l.oplog)));
        let activity = self.activity.clone();
        if let Some((user, home, oplog)) = login {
            match super::exec::Parsed::from_command(data) {
                super::exec::Parsed::Hash(hash) => {
                    return self.run_command(id, session, &user, &command, |channel| {
                        super::exec::run(channel, hash, home, oplog, activity)
                    });
                }
                super::exec::Parsed::Scp(scp) => {
                    let front = super::front::Front {
                        oplog,
                        activity,
                        stall: self.shared.limits.stall_timeout,
                        account: Arc::clone(&self.account),
                    };
                    return self.run_command(id, session, &user, &command, |channel| {
                        super::scp::run(channel, scp, home, user.clone(), front)
                    });
                }
                super::exec::Parsed::Bad(message) => {
                    info!(target: "rsftpd::op", user = %user, op = "exec", command = %LogText(&command), result = "refused");
                    return self.refuse_command(id, session, format!("{message}\n"));
                }
                super::exec::Parsed::NotOurs => {
                    info!(target: "rsftpd::op", user = %user, op = "exec", command = %LogText(&command), result = "refused");
                }
            }
        }
        self.refuse_command(
            id,
            session,
            "rsftpd runs no commands but md5sum, sha1sum, sha256sum, sha512sum and scp. Use: ssh -s HOST rsftp, sftp, scp, or the rsftp client.\n",
        )
    }
}

impl SshHandler {
    /// Answers a shell or exec request with a message on stderr and exit status 1.
    fn refuse_command(
        &mut self,
        id: ChannelId,
        session: &mut Session,
        message: impl Into<String>,
    ) -> Result<(), russh::Error> {
        let message = message.into();
        let Some((channel, running)) = self.claim(id) else {
            session.channel_failure(id)?;
            return Ok(());
        };
        session.channel_success(id)?;
        tokio::spawn(async move {
            let _ = channel.extended_data(1, message.as_bytes()).await;
            let _ = channel.exit_status(1).await;
            let _ = channel.eof().await;
            let _ = channel.close().await;
            drop(running);
        });
        Ok(())
    }
}

//! The russh handler: one per connection. It stays thin: the login policy is in
//! `login`, the channel bookkeeping in `channels`, files go through each front end to
//! [`storage`], and each subsystem or command runs in its own task on its own channel.
//!
//! [`storage`]: crate::storage

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use russh::keys::PublicKey;
use russh::server::{Auth, ChannelOpenHandle, Msg, PublicKeyOffer, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, Disconnect, MethodKind, MethodSet};
use tracing::{Span, info, warn};

use super::activity::Activity;
use super::budget::{ConnectionAccount, Transit};
use super::channels::{
    CHANNEL_CLAIM_TIME, MAX_CHANNELS, SharedChannels, close_unclaimed, lock_channels, run_on,
};
use super::logging::LogText;
use super::login::{LoginAttempts, Records};
use super::oplog::OpLog;
use super::sessions::SessionGuard;
use super::shared::Shared;
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
    /// How the login attempts went, by the login policy.
    attempts: LoginAttempts,
    login: Option<Login>,
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
            attempts: LoginAttempts::new(peer),
            login: None,
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

    /// A banned peer is refused without looking at its credentials, and so is everyone
    /// while the account store is unavailable. Every real login attempt passes here
    /// first, so this also marks the connection as having tried.
    fn banned(&self, user: &str, method: &'static str) -> bool {
        self.activity.touch();
        self.progress.tried.store(true, Ordering::Release);
        self.attempts
            .banned(records(&self.shared), user, method, Instant::now())
            || self
                .attempts
                .closed(user, method, self.shared.accounts.unavailable())
    }

    async fn wait_out_account_score(&self, user: &str) {
        let delay = self
            .attempts
            .delay(records(&self.shared), user, Instant::now());
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
    }

    /// Answers a login attempt with the policy's verdict on it.
    fn verdict(&mut self, ok: bool, user: &str, method: &'static str) -> Auth {
        let records = records(&self.shared);
        if ok {
            self.attempts.accept(records, user, method, Instant::now());
            Auth::Accept
        } else {
            self.attempts.reject(records, user, method, Instant::now());
            try_again()
        }
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
        let records = records(&self.shared);
        let logged_in = self.login.is_some();
        self.attempts
            .connection_ended(records, logged_in, Instant::now());
    }
}

/// The answer to a login attempt that failed: the methods to try next.
fn try_again() -> Auth {
    Auth::Reject {
        proceed_with_methods: Some(MethodSet::from(
            &[MethodKind::Password, MethodKind::PublicKey][..],
        )),
        partial_success: false,
    }
}

impl russh::server::Handler for SshHandler {
    type Error = russh::Error;

    async fn auth_none(&mut self, _user: &str) -> Result<Auth, Self::Error> {
        Ok(try_again())
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
        Ok(self.verdict(ok, user, "password"))
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
            self.attempts.decline_key(user);
            Ok(try_again())
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
        let ok = self.key_is_authorized(user, key.public_key);
        Ok(self.verdict(ok, user, "publickey"))
    }

    async fn auth_succeeded(&mut self, session: &mut Session) -> Result<(), Self::Error> {
        self.activity.touch();
        self.startup = None;
        self.progress.logged_in.store(true, Ordering::Release);
        let Some(user) = self.attempts.take_accepted() else {
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
        let lease = match super::sessions::lease_session(
            &self.shared.accounts,
            self.shared.limits.max_sessions,
            &user,
            limit,
            self.peer,
        )
        .await
        {
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
        let span =
            tracing::info_span!("session", user = %user, peer = %self.peer, subsystem = %name);
        let peer = self.peer;
        let started = |user: &str| {
            info!(target: "rsftpd::auth", user = %user, peer = %peer, subsystem = %name, "subsystem started");
        };
        if name == "rsftp" {
            let handle = session.handle();
            let front = super::front::Front {
                oplog,
                activity,
                stall: self.shared.limits.stall_timeout,
                account: Arc::clone(&self.account),
            };
            run_on(&self.channels, id, session, span, |channel| {
                started(&user);
                async move {
                    let stream = channel.into_stream();
                    let stream = super::rsftp::serve(stream, home, user, front).await;
                    // OpenSSH reports a missing exit status as a failure.
                    let _ = handle.exit_status_request(id, 0).await;
                    drop(stream);
                }
            })
        } else {
            let handles = self.sftp_handles.clone();
            let transit_of = &mut self.transit;
            let account = &self.account;
            run_on(&self.channels, id, session, span, |channel| {
                started(&user);
                let transit = account.transit();
                transit_of.insert(id, Arc::clone(&transit));
                super::sftp::serve(channel, home, user, handles, oplog, activity, transit)
            })
        }
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
                    let span = self.command_span(&user, &command);
                    return run_on(&self.channels, id, session, span, |channel| {
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
                    let span = self.command_span(&user, &command);
                    return run_on(&self.channels, id, session, span, |channel| {
                        super::scp::run(channel, scp, home, user, front)
                    });
                }
                super::exec::Parsed::Bad(message) => {
                    log_refused(&oplog, &command);
                    return self.refuse_command(id, session, format!("{message}\n"));
                }
                super::exec::Parsed::NotOurs => log_refused(&oplog, &command),
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
        run_on(
            &self.channels,
            id,
            session,
            Span::none(),
            |channel| async move {
                let _ = channel.extended_data(1, message.as_bytes()).await;
                let _ = channel.exit_status(1).await;
                let _ = channel.eof().await;
                let _ = channel.close().await;
            },
        )
    }

    /// The span of an exec command's task.
    fn command_span(&self, user: &str, command: &str) -> Span {
        tracing::info_span!("session", user = %user, peer = %self.peer, exec = %LogText(command))
    }
}

/// An exec command that is not ours, or not in a form we run, in the operation log.
fn log_refused(oplog: &OpLog, command: &str) {
    let command = LogText(command).to_string();
    oplog.record("exec", "exec", &command, 0, Duration::ZERO, Some("refused"));
}

/// The server-wide login records, for the login policy.
fn records(shared: &Shared) -> Records<'_> {
    Records {
        throttle: &shared.throttle,
        score: &shared.account_score,
    }
}

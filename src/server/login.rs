//! The login policy of one connection: who is banned, which attempts count as failures
//! against the peer and the account, and the log line of every attempt. No SSH here:
//! the handler asks and turns the answers into russh's.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::logging::LogText;
use crate::auth::{AccountScore, LoginThrottle};

/// The server-wide records the policy reads and updates.
#[derive(Clone, Copy)]
pub(super) struct Records<'a> {
    /// Failures and bans per peer.
    pub throttle: &'a LoginThrottle,
    /// Failures per account name, and the sources each account trusts.
    pub score: &'a AccountScore,
}

/// How one connection's login attempts went.
pub(super) struct LoginAttempts {
    peer: SocketAddr,
    /// The user whose credentials were accepted, until the connection takes them.
    accepted: Option<String>,
    /// The user a key offer was declined for; counts once against the peer if the
    /// connection never logs in (agents offer every key they hold, so a declined key is
    /// normal on the way to the right one).
    declined_key: Option<String>,
    /// A password or key was refused on this connection (each one is counted as it
    /// happens).
    refused: bool,
}

impl LoginAttempts {
    pub(super) fn new(peer: SocketAddr) -> LoginAttempts {
        LoginAttempts {
            peer,
            accepted: None,
            declined_key: None,
            refused: false,
        }
    }

    fn log(&self, user: &str, method: &'static str, result: &'static str) {
        info!(
            target: "rsftpd::auth",
            user = %LogText(user),
            peer = %self.peer,
            method,
            result,
            "login {result}"
        );
    }

    /// Whether the peer is banned; a banned peer is refused without looking at its
    /// credentials, and the attempt is logged.
    pub(super) fn banned(
        &self,
        records: Records<'_>,
        user: &str,
        method: &'static str,
        now: Instant,
    ) -> bool {
        let banned = records.throttle.banned_for(self.peer.ip(), now).is_some();
        if banned {
            self.log(user, method, "banned");
        }
        banned
    }

    /// Fails closed: while the accounts cannot be checked (`unavailable` says why),
    /// nobody gets in. Not the peer's fault, so not counted against it.
    pub(super) fn closed(
        &self,
        user: &str,
        method: &'static str,
        unavailable: Option<String>,
    ) -> bool {
        let Some(reason) = unavailable else {
            return false;
        };
        warn!(target: "rsftpd::auth", user = %LogText(user), peer = %self.peer, method, result = "refused", reason = %reason, "login refused: the accounts are unavailable");
        true
    }

    /// How long to wait before answering: an account guessed at from many addresses
    /// answers slowly, except to sources that logged in to it recently.
    pub(super) fn delay(&self, records: Records<'_>, user: &str, now: Instant) -> Duration {
        records.score.delay_for(user, self.peer.ip(), now)
    }

    /// Credentials that were right.
    pub(super) fn accept(
        &mut self,
        records: Records<'_>,
        user: &str,
        method: &'static str,
        now: Instant,
    ) {
        self.log(user, method, "accepted");
        records.score.record_success(user, self.peer.ip(), now);
        self.accepted = Some(user.to_owned());
    }

    /// Credentials that were wrong. Counted now, and never wiped by a later login:
    /// otherwise one account could be used to guess another's password for ever.
    pub(super) fn reject(
        &mut self,
        records: Records<'_>,
        user: &str,
        method: &'static str,
        now: Instant,
    ) {
        self.log(user, method, "rejected");
        self.refused = true;
        self.count_failure(records, user, now);
    }

    /// A key offered that the account does not hold: not yet a failure.
    pub(super) fn decline_key(&mut self, user: &str) {
        info!(target: "rsftpd::auth", user = %LogText(user), peer = %self.peer, method = "publickey", result = "declined", "key offer declined");
        self.declined_key = Some(user.to_owned());
    }

    /// The user whose credentials were accepted, once.
    pub(super) fn take_accepted(&mut self) -> Option<String> {
        self.accepted.take()
    }

    /// The connection ends. One that only offered keys nobody accepted, and left
    /// without logging in, is one failed login.
    pub(super) fn connection_ended(&mut self, records: Records<'_>, logged_in: bool, now: Instant) {
        if logged_in || self.refused {
            return;
        }
        if let Some(user) = self.declined_key.take() {
            self.log(&user, "publickey", "rejected");
            self.count_failure(records, &user, now);
        }
    }

    fn count_failure(&self, records: Records<'_>, user: &str, now: Instant) {
        if records.score.record_failure(user, now) {
            warn!(target: "rsftpd::auth", user = %LogText(user), "account logins slowed after repeated failures");
        }
        if records.throttle.record_failure(self.peer.ip(), now) {
            warn!(target: "rsftpd::auth", peer = %self.peer, "peer banned after repeated login failures");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{AccountPolicy, ThrottlePolicy};

    struct World {
        throttle: LoginThrottle,
        score: AccountScore,
    }

    impl World {
        /// Bans after `failures` failures, slows an account after `threshold`.
        fn new(failures: u32, threshold: u32) -> World {
            World {
                throttle: LoginThrottle::new(ThrottlePolicy {
                    max_failures: failures,
                    ..ThrottlePolicy::default()
                }),
                score: AccountScore::new(AccountPolicy {
                    threshold,
                    ..AccountPolicy::default()
                }),
            }
        }

        fn records(&self) -> Records<'_> {
            Records {
                throttle: &self.throttle,
                score: &self.score,
            }
        }
    }

    fn peer(last: u8) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, last], 40000))
    }

    #[test]
    fn rejections_ban_the_peer_and_no_other() {
        let world = World::new(2, 100);
        let now = Instant::now();
        let mut attempts = LoginAttempts::new(peer(1));
        assert!(!attempts.banned(world.records(), "alice", "password", now));
        attempts.reject(world.records(), "alice", "password", now);
        assert!(!attempts.banned(world.records(), "alice", "password", now));
        attempts.reject(world.records(), "alice", "password", now);
        assert!(attempts.banned(world.records(), "alice", "password", now));
        let other = LoginAttempts::new(peer(2));
        assert!(!other.banned(world.records(), "alice", "password", now));
    }

    #[test]
    fn an_accepted_login_is_handed_over_once() {
        let world = World::new(2, 100);
        let mut attempts = LoginAttempts::new(peer(1));
        attempts.accept(world.records(), "alice", "password", Instant::now());
        assert_eq!(attempts.take_accepted().as_deref(), Some("alice"));
        assert_eq!(attempts.take_accepted(), None);
    }

    #[test]
    fn a_declined_key_counts_once_if_the_connection_never_logs_in() {
        let world = World::new(1, 100);
        let now = Instant::now();
        let mut attempts = LoginAttempts::new(peer(1));
        attempts.decline_key("alice");
        attempts.decline_key("alice");
        assert!(!attempts.banned(world.records(), "alice", "publickey", now));
        attempts.connection_ended(world.records(), false, now);
        assert!(attempts.banned(world.records(), "alice", "publickey", now));
    }

    #[test]
    fn a_declined_key_on_the_way_to_a_login_is_no_failure() {
        let world = World::new(1, 100);
        let now = Instant::now();
        let mut attempts = LoginAttempts::new(peer(1));
        attempts.decline_key("alice");
        attempts.accept(world.records(), "alice", "publickey", now);
        attempts.connection_ended(world.records(), true, now);
        assert!(!attempts.banned(world.records(), "alice", "publickey", now));
    }

    #[test]
    fn a_declined_key_after_a_rejection_is_not_counted_again() {
        let world = World::new(2, 100);
        let now = Instant::now();
        let mut attempts = LoginAttempts::new(peer(1));
        attempts.decline_key("alice");
        attempts.reject(world.records(), "alice", "password", now);
        attempts.connection_ended(world.records(), false, now);
        // One failure only: the rejection.
        assert!(!attempts.banned(world.records(), "alice", "password", now));
    }

    #[test]
    fn failures_against_an_account_slow_it_for_everyone_else() {
        let world = World::new(100, 1);
        let now = Instant::now();
        let mut first = LoginAttempts::new(peer(1));
        assert_eq!(first.delay(world.records(), "alice", now), Duration::ZERO);
        first.reject(world.records(), "alice", "password", now);
        first.reject(world.records(), "alice", "password", now);
        let second = LoginAttempts::new(peer(2));
        assert!(second.delay(world.records(), "alice", now) > Duration::ZERO);
        assert_eq!(second.delay(world.records(), "bob", now), Duration::ZERO);
    }
}

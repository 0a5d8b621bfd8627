//! Guessing spread over many addresses: failed logins counted per account name.
//!
//! The per-address [`LoginThrottle`](super::LoginThrottle) bans one peer that keeps
//! failing; an attacker with many addresses stays under it. [`AccountScore`] counts the
//! failures against each account name, from any address. Past
//! [`AccountPolicy::threshold`] failures within the window, every login attempt for
//! that name waits first, longer with each further failure, except from sources (IPv4
//! addresses, IPv6 /64 networks) that logged in to that account successfully not long
//! ago: the owner is not locked out by the attacker.
//!
//! Names are scored whether or not an account exists, so the delay does not tell a real
//! account from a made-up one. Both tables are bounded; callers pass `now`, so tests
//! drive time without sleeping.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::LoginThrottle;
use super::users::MAX_USER_NAME_LEN;

/// The most account names scored at once. Made-up names cannot grow memory beyond this.
pub const MAX_SCORED_ACCOUNTS: usize = 16_384;

/// The most (account, source) pairs remembered as recently successful.
pub const MAX_TRUSTED_SOURCES: usize = 16_384;

/// When an account's logins are slowed, and by how much.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountPolicy {
    /// Failures against one name within `window`, from anywhere, before logins slow.
    pub threshold: u32,
    /// How far back failures count.
    pub window: Duration,
    /// The wait at the first failure past the threshold; it doubles with each further one.
    pub first_delay: Duration,
    /// The longest wait.
    pub max_delay: Duration,
    /// How long a source that logged in to an account stays exempt for that account.
    pub trust: Duration,
}

impl Default for AccountPolicy {
    fn default() -> Self {
        Self {
            threshold: 20,
            window: Duration::from_secs(10 * 60),
            first_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(16),
            trust: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

impl AccountPolicy {
    /// The wait for `failures` counted in the window.
    fn delay(&self, failures: u32) -> Duration {
        let Some(past) = failures.checked_sub(self.threshold) else {
            return Duration::ZERO;
        };
        // 2^past, saturating well before any overflow.
        let factor = 1u32 << past.min(20);
        self.first_delay.saturating_mul(factor).min(self.max_delay)
    }
}

#[derive(Debug, Clone, Copy)]
struct Score {
    failures: u32,
    window_start: Instant,
}

#[derive(Debug)]
struct State {
    scores: HashMap<String, Score>,
    /// When a source group last logged in to an account.
    trusted: HashMap<(String, IpAddr), Instant>,
    /// When scores whose window is over were last swept out; about once per window.
    last_prune: Option<Instant>,
}

/// Failed logins per account name, and the sources each account trusts.
#[derive(Debug)]
pub struct AccountScore {
    policy: AccountPolicy,
    state: Mutex<State>,
}

impl AccountScore {
    /// A score that knows no account yet.
    pub fn new(policy: AccountPolicy) -> Self {
        Self {
            policy,
            state: Mutex::new(State {
                scores: HashMap::new(),
                trusted: HashMap::new(),
                last_prune: None,
            }),
        }
    }

    /// The policy applied.
    pub fn policy(&self) -> &AccountPolicy {
        &self.policy
    }

    /// How long a login attempt for `user` from `ip` waits before it is checked.
    pub fn delay_for(&self, user: &str, ip: IpAddr, now: Instant) -> Duration {
        let key = name_key(user);
        let state = self.state();
        let Some(score) = state.scores.get(key) else {
            return Duration::ZERO;
        };
        if self.window_over(score, now) {
            return Duration::ZERO;
        }
        let trusted = state
            .trusted
            .get(&(key.to_owned(), LoginThrottle::peer_group(ip)))
            .is_some_and(|&at| now.saturating_duration_since(at) < self.policy.trust);
        if trusted {
            return Duration::ZERO;
        }
        self.policy.delay(score.failures)
    }

    /// Counts a failed login for `user`, known or not. True when this failure is the
    /// one that starts slowing the account's logins.
    pub fn record_failure(&self, user: &str, now: Instant) -> bool {
        let key = name_key(user);
        let mut state = self.state();
        let prune_due = state
            .last_prune
            .is_none_or(|last| now.saturating_duration_since(last) >= self.policy.window);
        if prune_due {
            state
                .scores
                .retain(|_, score| !self.window_over(score, now));
            state.last_prune = Some(now);
        }
        if !state.scores.contains_key(key) && state.scores.len() >= MAX_SCORED_ACCOUNTS {
            self.make_room(&mut state.scores, now);
        }
        let score = state.scores.entry(key.to_owned()).or_insert(Score {
            failures: 0,
            window_start: now,
        });
        if now.saturating_duration_since(score.window_start) >= self.policy.window {
            *score = Score {
                failures: 0,
                window_start: now,
            };
        }
        score.failures = score.failures.saturating_add(1);
        score.failures == self.policy.threshold
    }

    /// Remembers that `ip` logged in to `user`, so that its logins to that account are
    /// not slowed. The failures stay counted: another source is still slowed.
    pub fn record_success(&self, user: &str, ip: IpAddr, now: Instant) {
        let pair = (name_key(user).to_owned(), LoginThrottle::peer_group(ip));
        let mut state = self.state();
        let trusted = &mut state.trusted;
        if !trusted.contains_key(&pair) && trusted.len() >= MAX_TRUSTED_SOURCES {
            let trust = self.policy.trust;
            trusted.retain(|_, &mut at| now.saturating_duration_since(at) < trust);
            if trusted.len() >= MAX_TRUSTED_SOURCES {
                // Drop the oldest eighth: those are the least likely to come back soon.
                let mut by_age: Vec<(Instant, (String, IpAddr))> =
                    trusted.iter().map(|(k, &at)| (at, k.clone())).collect();
                let evict = MAX_TRUSTED_SOURCES / 8;
                by_age.select_nth_unstable_by_key(evict - 1, |(at, _)| *at);
                for (_, k) in &by_age[..evict] {
                    trusted.remove(k);
                }
            }
        }
        trusted.insert(pair, now);
    }

    /// Number of account names currently scored.
    pub fn scored_accounts(&self) -> usize {
        self.state().scores.len()
    }

    /// Number of (account, source) pairs currently trusted.
    pub fn trusted_sources(&self) -> usize {
        self.state().trusted.len()
    }

    fn window_over(&self, score: &Score, now: Instant) -> bool {
        now.saturating_duration_since(score.window_start) >= self.policy.window
    }

    /// Drops scores whose window is over; if too few, drops the eighth closest to the
    /// end of their window, so that a flood of names pays for the scan rarely.
    fn make_room(&self, scores: &mut HashMap<String, Score>, now: Instant) {
        scores.retain(|_, score| !self.window_over(score, now));
        if scores.len() < MAX_SCORED_ACCOUNTS {
            return;
        }
        let mut by_start: Vec<(Instant, String)> = scores
            .iter()
            .map(|(name, score)| (score.window_start, name.clone()))
            .collect();
        let evict = MAX_SCORED_ACCOUNTS / 8;
        by_start.select_nth_unstable_by_key(evict - 1, |(start, _)| *start);
        for (_, name) in &by_start[..evict] {
            scores.remove(name);
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // Each entry is a few plain fields; a panic elsewhere cannot leave one harmful.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Default for AccountScore {
    fn default() -> Self {
        Self::new(AccountPolicy::default())
    }
}

/// The name an account is scored under: longer names than any account may have are cut,
/// so that one key costs a bounded amount of memory.
fn name_key(user: &str) -> &str {
    if user.len() <= MAX_USER_NAME_LEN {
        return user;
    }
    let mut end = MAX_USER_NAME_LEN;
    while !user.is_char_boundary(end) {
        end -= 1;
    }
    &user[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);
    const MIN: Duration = Duration::from_secs(60);

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn policy() -> AccountPolicy {
        AccountPolicy {
            threshold: 3,
            window: 10 * MIN,
            first_delay: SEC,
            max_delay: 8 * SEC,
            trust: 60 * MIN,
        }
    }

    /// `count` failures for `user` at `now`.
    fn fail(score: &AccountScore, user: &str, count: u32, now: Instant) {
        for _ in 0..count {
            score.record_failure(user, now);
        }
    }

    #[test]
    fn default_policy_matches_the_documented_numbers() {
        let policy = AccountPolicy::default();
        assert_eq!(policy.threshold, 20);
        assert_eq!(policy.window, 10 * MIN);
        assert_eq!(policy.first_delay, SEC);
        assert_eq!(policy.max_delay, 16 * SEC);
        assert_eq!(policy.trust, 7 * 24 * 60 * MIN);
    }

    #[test]
    fn logins_slow_past_the_threshold_with_a_growing_capped_delay() {
        let score = AccountScore::new(policy());
        let (t0, anyone) = (Instant::now(), ip("198.51.100.1"));
        assert!(!score.record_failure("alice", t0));
        assert!(!score.record_failure("alice", t0));
        assert_eq!(score.delay_for("alice", anyone, t0), Duration::ZERO);
        assert!(
            score.record_failure("alice", t0),
            "the threshold is reported"
        );
        let mut delays = vec![score.delay_for("alice", anyone, t0)];
        for _ in 0..5 {
            assert!(!score.record_failure("alice", t0));
            delays.push(score.delay_for("alice", anyone, t0));
        }
        assert_eq!(
            delays,
            [SEC, 2 * SEC, 4 * SEC, 8 * SEC, 8 * SEC, 8 * SEC],
            "doubles, up to the cap"
        );
        // Another account is not slowed.
        assert_eq!(score.delay_for("bob", anyone, t0), Duration::ZERO);
    }

    #[test]
    fn failures_outside_the_window_do_not_add_up() {
        let score = AccountScore::new(policy());
        let (t0, anyone) = (Instant::now(), ip("198.51.100.1"));
        fail(&score, "alice", 3, t0);
        assert_eq!(score.delay_for("alice", anyone, t0 + 9 * MIN), SEC);
        assert_eq!(
            score.delay_for("alice", anyone, t0 + 10 * MIN),
            Duration::ZERO
        );
        fail(&score, "alice", 2, t0 + 11 * MIN);
        assert_eq!(
            score.delay_for("alice", anyone, t0 + 11 * MIN),
            Duration::ZERO
        );
    }

    #[test]
    fn a_source_that_logged_in_recently_is_not_slowed() {
        let score = AccountScore::new(policy());
        let t0 = Instant::now();
        let (home, office) = (ip("192.0.2.10"), ip("2001:db8:1:2::5"));
        score.record_success("alice", home, t0);
        score.record_success("alice", office, t0);
        fail(&score, "alice", 6, t0 + MIN);
        let now = t0 + MIN;
        assert_eq!(score.delay_for("alice", home, now), Duration::ZERO);
        // The same /64 counts as the same source; a neighbour /64 does not.
        assert_eq!(
            score.delay_for("alice", ip("2001:db8:1:2::99"), now),
            Duration::ZERO
        );
        assert_eq!(
            score.delay_for("alice", ip("2001:db8:1:3::5"), now),
            8 * SEC
        );
        assert_eq!(score.delay_for("alice", ip("192.0.2.11"), now), 8 * SEC);
        // Trust in one account is no trust in another.
        fail(&score, "bob", 3, now);
        assert_eq!(score.delay_for("bob", home, now), SEC);
        // A login does not forgive the failures: other sources stay slowed.
        score.record_success("alice", home, t0 + 5 * MIN);
        assert_eq!(
            score.delay_for("alice", ip("192.0.2.11"), t0 + 5 * MIN),
            8 * SEC
        );
        // Trust runs out, unless renewed by a later login.
        let late = t0 + 61 * MIN;
        fail(&score, "alice", 3, late);
        assert_eq!(score.delay_for("alice", office, late), SEC);
        assert_eq!(score.delay_for("alice", home, late), Duration::ZERO);
    }

    #[test]
    fn unknown_names_are_scored_like_real_ones() {
        // The score never asks whether an account exists: two names failed alike are
        // slowed alike, whichever of them is real.
        let score = AccountScore::new(policy());
        let (t0, anyone) = (Instant::now(), ip("198.51.100.1"));
        for name in ["alice", "no-such-user"] {
            fail(&score, name, 4, t0);
        }
        assert_eq!(score.delay_for("alice", anyone, t0), 2 * SEC);
        assert_eq!(score.delay_for("no-such-user", anyone, t0), 2 * SEC);
    }

    #[test]
    fn overlong_names_share_one_bounded_key() {
        let score = AccountScore::new(policy());
        let t0 = Instant::now();
        let long = "é".repeat(MAX_USER_NAME_LEN);
        fail(&score, &format!("{long}a"), 2, t0);
        fail(&score, &format!("{long}b"), 1, t0);
        assert_eq!(score.scored_accounts(), 1);
        assert_eq!(score.delay_for(&long, ip("192.0.2.1"), t0), SEC);
    }

    #[test]
    fn a_flood_of_made_up_names_stays_bounded_and_spares_recent_scores() {
        let score = AccountScore::new(policy());
        let t0 = Instant::now();
        let anyone = ip("198.51.100.1");
        let later = t0 + MIN;
        for n in 0..(MAX_SCORED_ACCOUNTS + 1000) {
            score.record_failure(&format!("made-up-{n}"), t0);
            assert!(score.scored_accounts() <= MAX_SCORED_ACCOUNTS);
        }
        // The account attacked most recently keeps its score through the evictions.
        fail(&score, "alice", 3, later);
        for n in 0..1000 {
            score.record_failure(&format!("more-{n}"), later);
        }
        assert!(score.scored_accounts() <= MAX_SCORED_ACCOUNTS);
        assert_eq!(score.delay_for("alice", anyone, later), SEC);
        // Once the windows are over, the next new name sweeps them out.
        score.record_failure("fresh", t0 + 12 * MIN);
        assert_eq!(score.scored_accounts(), 1);

        for n in 0..(MAX_TRUSTED_SOURCES as u32 + 100) {
            score.record_success("alice", IpAddr::V4((0x0A00_0000 + n).into()), later);
            assert!(score.trusted_sources() <= MAX_TRUSTED_SOURCES);
        }
    }
}

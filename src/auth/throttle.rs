//! Failed-login throttling: a peer that fails too often in a window is banned for a time.
//!
//! Callers pass `now` explicitly, so the logic is plain arithmetic that tests can drive
//! without sleeping. Memory stays bounded: stale records are pruned, and past a hard cap
//! the records closest to expiry are dropped first.
//!
//! The counts are this process's. Nodes of a cluster also share them through a
//! [`SharedBans`] (PostgreSQL): every failure is reported there too, and a ban that
//! any node started holds here as well. Without one (users.toml), nothing changes.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The most peers remembered at once; with ~64 bytes a record, a few MiB at most.
pub const MAX_TRACKED_PEERS: usize = 65_536;

/// When a peer gets banned, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottlePolicy {
    /// Failures within `window` that start a ban.
    pub max_failures: u32,
    /// How far back failures count.
    pub window: Duration,
    /// How long a ban lasts.
    pub ban: Duration,
}

impl Default for ThrottlePolicy {
    fn default() -> Self {
        Self {
            max_failures: 10,
            window: Duration::from_secs(10 * 60),
            ban: Duration::from_secs(15 * 60),
        }
    }
}

/// Failed logins and bans that the nodes of a cluster share. Each call is quick and
/// never waits on the network: reports are sent on in the background, and bans are
/// read from a copy kept fresh within about a second.
pub trait SharedBans: std::fmt::Debug + Send + Sync {
    /// How much longer `peer` (a group, as [`LoginThrottle::peer_group`] makes them) is
    /// banned on any node, as last heard.
    fn banned_for(&self, peer: IpAddr, now: Instant) -> Option<Duration>;
    /// Counts a failed login of `peer`.
    fn record_failure(&self, peer: IpAddr);
    /// `peer` logged in: forget its failures (not a running ban).
    fn record_success(&self, peer: IpAddr);
}

/// Counts failed logins per peer and bans peers that fail too often.
///
/// IPv6 peers are counted per /64 network, the block one host usually holds, so that
/// a single machine cannot dodge the ban by stepping through its own addresses. IPv4
/// addresses mapped into IPv6 count as the IPv4 address.
#[derive(Debug)]
pub struct LoginThrottle {
    policy: ThrottlePolicy,
    state: Mutex<State>,
    /// The cluster's counts and bans, if this process is one of its nodes.
    shared: Option<Arc<dyn SharedBans>>,
}

#[derive(Debug)]
struct State {
    records: HashMap<IpAddr, Record>,
    /// When expired records were last swept out; sweeps happen about once per window.
    last_prune: Option<Instant>,
}

#[derive(Debug, Clone, Copy)]
struct Record {
    /// Failures since `window_start`.
    failures: u32,
    window_start: Instant,
    banned_at: Option<Instant>,
}

impl Record {
    fn ban_left(&self, policy: &ThrottlePolicy, now: Instant) -> Option<Duration> {
        let banned_at = self.banned_at?;
        let left = policy
            .ban
            .saturating_sub(now.saturating_duration_since(banned_at));
        (!left.is_zero()).then_some(left)
    }

    fn window_over(&self, policy: &ThrottlePolicy, now: Instant) -> bool {
        now.saturating_duration_since(self.window_start) >= policy.window
    }

    /// How long until this record means nothing any more.
    fn time_to_live(&self, policy: &ThrottlePolicy, now: Instant) -> Duration {
        let window_left = policy
            .window
            .saturating_sub(now.saturating_duration_since(self.window_start));
        self.ban_left(policy, now)
            .unwrap_or_default()
            .max(window_left)
    }
}

impl LoginThrottle {
    /// A throttle that remembers nobody yet.
    pub fn new(policy: ThrottlePolicy) -> Self {
        Self {
            policy,
            state: Mutex::new(State {
                records: HashMap::new(),
                last_prune: None,
            }),
            shared: None,
        }
    }

    /// A throttle that also reports to, and heeds the bans of, `shared`.
    pub fn with_shared(policy: ThrottlePolicy, shared: Option<Arc<dyn SharedBans>>) -> Self {
        Self {
            shared,
            ..Self::new(policy)
        }
    }

    /// The group a peer is counted in: IPv4 addresses one by one, IPv6 by /64. Other
    /// per-address limits use the same grouping.
    pub fn peer_group(ip: IpAddr) -> IpAddr {
        peer_key(ip)
    }

    /// The policy this throttle applies.
    pub fn policy(&self) -> &ThrottlePolicy {
        &self.policy
    }

    /// How much longer `ip` stays banned, or `None` if it may try to log in.
    pub fn banned_for(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        let key = peer_key(ip);
        let here = self
            .state()
            .records
            .get(&key)
            .and_then(|record| record.ban_left(&self.policy, now));
        let there = self
            .shared
            .as_ref()
            .and_then(|shared| shared.banned_for(key, now));
        here.max(there)
    }

    /// Counts a failed login from `ip`. True when this failure starts a ban.
    ///
    /// Failures while already banned are not counted: the ban is not extended, so a
    /// peer that keeps knocking is let back in on schedule and tested again.
    pub fn record_failure(&self, ip: IpAddr, now: Instant) -> bool {
        let key = peer_key(ip);
        if let Some(shared) = &self.shared {
            shared.record_failure(key);
        }
        let mut state = self.state();
        let prune_due = state
            .last_prune
            .is_none_or(|last| now.saturating_duration_since(last) >= self.policy.window);
        if prune_due {
            self.prune(&mut state.records, now);
            state.last_prune = Some(now);
        }
        if !state.records.contains_key(&key) && state.records.len() >= MAX_TRACKED_PEERS {
            self.make_room(&mut state.records, now);
        }
        let record = state.records.entry(key).or_insert(Record {
            failures: 0,
            window_start: now,
            banned_at: None,
        });
        if record.ban_left(&self.policy, now).is_some() {
            return false;
        }
        if record.banned_at.is_some() || record.window_over(&self.policy, now) {
            *record = Record {
                failures: 0,
                window_start: now,
                banned_at: None,
            };
        }
        record.failures = record.failures.saturating_add(1);
        if record.failures >= self.policy.max_failures {
            record.banned_at = Some(now);
            return true;
        }
        false
    }

    /// Forgets the failures of `ip` after it logged in. A running ban stays.
    pub fn record_success(&self, ip: IpAddr) {
        let records = &mut self.state().records;
        let key = peer_key(ip);
        if let Some(shared) = &self.shared {
            shared.record_success(key);
        }
        if records.get(&key).is_some_and(|r| r.banned_at.is_none()) {
            records.remove(&key);
        }
    }

    /// Number of peers currently remembered.
    pub fn tracked_peers(&self) -> usize {
        self.state().records.len()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock cannot leave a record half-written
        // in a harmful way (each is a few plain fields), so keep using the data.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Drops records that no longer ban or count anything.
    fn prune(&self, records: &mut HashMap<IpAddr, Record>, now: Instant) {
        records.retain(|_, record| !record.time_to_live(&self.policy, now).is_zero());
    }

    /// Drops expired records; if that frees too little, drops the eighth of the records
    /// closest to expiry, so that a flood pays for the scan once per many inserts.
    fn make_room(&self, records: &mut HashMap<IpAddr, Record>, now: Instant) {
        self.prune(records, now);
        if records.len() < MAX_TRACKED_PEERS {
            return;
        }
        let mut by_expiry: Vec<(Duration, IpAddr)> = records
            .iter()
            .map(|(ip, record)| (record.time_to_live(&self.policy, now), *ip))
            .collect();
        let evict = MAX_TRACKED_PEERS / 8;
        by_expiry.select_nth_unstable(evict - 1);
        for (_, ip) in &by_expiry[..evict] {
            records.remove(ip);
        }
    }
}

impl Default for LoginThrottle {
    fn default() -> Self {
        Self::new(ThrottlePolicy::default())
    }
}

/// The key a peer is counted under: IPv4 as is, IPv6 by its /64 network.
fn peer_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from_bits(v6.to_bits() & !0u128 >> 64 << 64)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn policy() -> ThrottlePolicy {
        ThrottlePolicy {
            max_failures: 3,
            window: 10 * MIN,
            ban: 15 * MIN,
        }
    }

    #[test]
    fn default_policy_matches_the_documented_numbers() {
        let policy = ThrottlePolicy::default();
        assert_eq!(policy.max_failures, 10);
        assert_eq!(policy.window, 10 * MIN);
        assert_eq!(policy.ban, 15 * MIN);
    }

    #[test]
    fn bans_after_max_failures_and_lifts_the_ban_on_time() {
        let throttle = LoginThrottle::new(policy());
        let (peer, t0) = (ip("192.0.2.7"), Instant::now());
        assert!(!throttle.record_failure(peer, t0));
        assert!(!throttle.record_failure(peer, t0 + MIN));
        assert_eq!(throttle.banned_for(peer, t0 + MIN), None);
        assert!(throttle.record_failure(peer, t0 + 2 * MIN));
        assert_eq!(throttle.banned_for(peer, t0 + 2 * MIN), Some(15 * MIN));
        assert_eq!(throttle.banned_for(peer, t0 + 12 * MIN), Some(5 * MIN));
        // Other peers are unaffected.
        assert_eq!(throttle.banned_for(ip("192.0.2.8"), t0 + 2 * MIN), None);
        // Knocking during the ban neither counts nor extends it.
        assert!(!throttle.record_failure(peer, t0 + 3 * MIN));
        assert_eq!(throttle.banned_for(peer, t0 + 17 * MIN), None);
        // After the ban, the count starts again from zero.
        assert!(!throttle.record_failure(peer, t0 + 18 * MIN));
        assert!(!throttle.record_failure(peer, t0 + 18 * MIN));
        assert!(throttle.record_failure(peer, t0 + 18 * MIN));
    }

    #[test]
    fn failures_outside_the_window_do_not_add_up() {
        let throttle = LoginThrottle::new(policy());
        let (peer, t0) = (ip("192.0.2.7"), Instant::now());
        assert!(!throttle.record_failure(peer, t0));
        assert!(!throttle.record_failure(peer, t0 + MIN));
        assert!(!throttle.record_failure(peer, t0 + 11 * MIN));
        assert!(!throttle.record_failure(peer, t0 + 12 * MIN));
        assert_eq!(throttle.banned_for(peer, t0 + 12 * MIN), None);
    }

    #[test]
    fn success_clears_failures_but_not_a_ban() {
        let throttle = LoginThrottle::new(policy());
        let (peer, t0) = (ip("2001:db8::1"), Instant::now());
        throttle.record_failure(peer, t0);
        throttle.record_failure(peer, t0);
        throttle.record_success(peer);
        assert_eq!(throttle.tracked_peers(), 0);
        assert!(!throttle.record_failure(peer, t0));
        assert!(!throttle.record_failure(peer, t0));
        assert!(throttle.record_failure(peer, t0));
        throttle.record_success(peer);
        assert_eq!(throttle.banned_for(peer, t0), Some(15 * MIN));
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        let throttle = LoginThrottle::new(policy());
        let t0 = Instant::now();
        throttle.record_failure(ip("2001:db8:1:2::1"), t0);
        throttle.record_failure(ip("2001:db8:1:2:ffff::9"), t0);
        assert!(throttle.record_failure(ip("2001:db8:1:2:abcd::"), t0));
        assert!(throttle.banned_for(ip("2001:db8:1:2::77"), t0).is_some());
        assert_eq!(throttle.banned_for(ip("2001:db8:1:3::1"), t0), None);

        throttle.record_failure(ip("198.51.100.1"), t0);
        throttle.record_failure(ip("::ffff:198.51.100.1"), t0);
        assert!(throttle.record_failure(ip("198.51.100.1"), t0));
        assert!(throttle.banned_for(ip("::ffff:198.51.100.1"), t0).is_some());
    }

    #[test]
    fn a_flood_of_peers_stays_bounded_and_prefers_to_drop_stale_records() {
        let throttle = LoginThrottle::new(policy());
        let t0 = Instant::now();
        // One banned peer, then many one-off failures later on.
        let banned = ip("203.0.113.1");
        for _ in 0..3 {
            throttle.record_failure(banned, t0);
        }
        let later = t0 + MIN;
        for n in 0..(MAX_TRACKED_PEERS as u32 + 1000) {
            let peer = IpAddr::V4((0x0A00_0000 + n).into());
            throttle.record_failure(peer, later);
            assert!(throttle.tracked_peers() <= MAX_TRACKED_PEERS);
        }
        // The ban had more time left than the fresh records' windows, so it survived.
        assert_eq!(throttle.banned_for(banned, later), Some(14 * MIN));

        // Once the windows and the ban are over, the next failure sweeps them all out.
        let much_later = t0 + 16 * MIN;
        throttle.record_failure(ip("198.51.100.9"), much_later);
        assert_eq!(throttle.tracked_peers(), 1);
    }
}

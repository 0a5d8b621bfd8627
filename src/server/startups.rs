//! Connections that have not logged in yet ("startups"), after OpenSSH's `MaxStartups`.
//!
//! Each counts against a total and against its address (IPv6 by /64). Past the total's
//! `begin`, new connections are dropped at random, more often as it fills, so a flood
//! cannot hold every slot while real clients still get through now and then. A
//! connection over its address's cap is not closed: it waits, in a queue capped in all
//! and per address, and takes a slot when one of its address's frees. Waiting counts
//! neither toward the total nor as grace time.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use super::config::StartupLimits;
use crate::auth::LoginThrottle;

/// The shared counts.
pub struct Startups {
    limits: StartupLimits,
    inner: Mutex<Counts>,
    /// Woken whenever a slot frees.
    freed: Notify,
}

#[derive(Default)]
struct Counts {
    total: usize,
    waiting: usize,
    by_peer: HashMap<IpAddr, PeerCounts>,
}

#[derive(Default, Clone, Copy)]
struct PeerCounts {
    slots: usize,
    waiting: usize,
}

/// What becomes of a new connection.
pub enum Arrival {
    /// It has a slot now; its grace time starts.
    Admitted(StartupGuard),
    /// Its address has every slot it may have; it waits for one of them.
    Wait(Waiting),
    /// Closed at once, for the reason given (for the log).
    Refused(&'static str),
}

impl Startups {
    pub fn new(limits: StartupLimits) -> Arc<Startups> {
        Arc::new(Startups {
            limits,
            inner: Mutex::new(Counts::default()),
            freed: Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Counts> {
        // Plain counters; a panic elsewhere cannot leave them harmful.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Decides about a new connection from `peer`.
    pub fn arrive(self: &Arc<Self>, peer: IpAddr) -> Arrival {
        self.arrive_with(peer, rand::random_bool)
    }

    /// [`Startups::arrive`] with the coin given, for tests.
    fn arrive_with(self: &Arc<Self>, peer: IpAddr, coin: impl FnOnce(f64) -> bool) -> Arrival {
        let key = LoginThrottle::peer_group(peer);
        let limits = self.limits;
        let mut counts = self.lock();
        let mine = counts.by_peer.get(&key).copied().unwrap_or_default();
        if mine.slots < limits.per_peer {
            if counts.total >= limits.full {
                return Arrival::Refused("too many connections not yet logged in");
            }
            if counts.total >= limits.begin && coin(limits.drop_probability(counts.total)) {
                return Arrival::Refused("dropped at random: many connections not yet logged in");
            }
            counts.total += 1;
            counts.by_peer.entry(key).or_default().slots += 1;
            return Arrival::Admitted(StartupGuard {
                startups: Arc::clone(self),
                key,
            });
        }
        if counts.waiting >= limits.max_waiting || mine.waiting >= limits.max_waiting_per_peer {
            return Arrival::Refused("too many connections waiting from this address");
        }
        counts.waiting += 1;
        counts.by_peer.entry(key).or_default().waiting += 1;
        Arrival::Wait(Waiting {
            startups: Arc::clone(self),
            key,
            counted: true,
        })
    }

    /// Trades a waiting place for a slot, if the address has one free again and the
    /// total is not full.
    fn take_slot(self: &Arc<Self>, waiting: &mut Waiting) -> Option<StartupGuard> {
        let limits = self.limits;
        let mut counts = self.lock();
        let mine = counts
            .by_peer
            .get(&waiting.key)
            .copied()
            .unwrap_or_default();
        if mine.slots >= limits.per_peer || counts.total >= limits.full {
            return None;
        }
        counts.total += 1;
        counts.waiting = counts.waiting.saturating_sub(1);
        let entry = counts.by_peer.entry(waiting.key).or_default();
        entry.slots += 1;
        entry.waiting = entry.waiting.saturating_sub(1);
        waiting.counted = false;
        Some(StartupGuard {
            startups: Arc::clone(self),
            key: waiting.key,
        })
    }

    fn forget_if_empty(counts: &mut Counts, key: IpAddr) {
        if counts
            .by_peer
            .get(&key)
            .is_some_and(|c| c.slots == 0 && c.waiting == 0)
        {
            counts.by_peer.remove(&key);
        }
    }
}

/// A connection waiting for one of its address's slots. Dropping it gives up the place
/// in the queue.
pub struct Waiting {
    startups: Arc<Startups>,
    key: IpAddr,
    counted: bool,
}

impl Waiting {
    /// Waits until the connection has a slot. The caller bounds how long.
    pub async fn slot(mut self) -> StartupGuard {
        let startups = Arc::clone(&self.startups);
        loop {
            let freed = startups.freed.notified();
            tokio::pin!(freed);
            // Registered before looking, so a slot freed in between is not missed.
            freed.as_mut().enable();
            if let Some(guard) = startups.take_slot(&mut self) {
                return guard;
            }
            freed.await;
        }
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if !self.counted {
            return;
        }
        let mut counts = self.startups.lock();
        counts.waiting = counts.waiting.saturating_sub(1);
        if let Some(c) = counts.by_peer.get_mut(&self.key) {
            c.waiting = c.waiting.saturating_sub(1);
        }
        Startups::forget_if_empty(&mut counts, self.key);
    }
}

/// One connection not logged in yet; dropping it (at login, or when the connection ends)
/// frees the slot.
pub struct StartupGuard {
    startups: Arc<Startups>,
    key: IpAddr,
}

impl Drop for StartupGuard {
    fn drop(&mut self) {
        {
            let mut counts = self.startups.lock();
            counts.total = counts.total.saturating_sub(1);
            if let Some(c) = counts.by_peer.get_mut(&self.key) {
                c.slots = c.slots.saturating_sub(1);
            }
            Startups::forget_if_empty(&mut counts, self.key);
        }
        self.startups.freed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn limits() -> StartupLimits {
        StartupLimits {
            begin: 3,
            rate: 50,
            full: 5,
            per_peer: 2,
            max_waiting: 3,
            max_waiting_per_peer: 2,
        }
    }

    fn ip(n: u8) -> IpAddr {
        [127, 0, 0, n].into()
    }

    fn admitted(arrival: Arrival) -> StartupGuard {
        match arrival {
            Arrival::Admitted(guard) => guard,
            Arrival::Wait(_) => panic!("waits"),
            Arrival::Refused(why) => panic!("refused: {why}"),
        }
    }

    fn waits(arrival: Arrival) -> Waiting {
        match arrival {
            Arrival::Wait(waiting) => waiting,
            Arrival::Admitted(_) => panic!("admitted"),
            Arrival::Refused(why) => panic!("refused: {why}"),
        }
    }

    fn refused(arrival: Arrival) -> bool {
        matches!(arrival, Arrival::Refused(_))
    }

    #[test]
    fn drop_probability_grows_from_the_rate_to_certainty() {
        let l = StartupLimits {
            begin: 10,
            rate: 30,
            full: 100,
            ..limits()
        };
        assert!((l.drop_probability(10) - 0.3).abs() < 1e-9);
        assert!((l.drop_probability(55) - 0.65).abs() < 1e-9);
        assert!(l.drop_probability(100) >= 1.0);
        assert_eq!("10:30:100".parse::<StartupLimits>().unwrap().full, 100);
        let hard: StartupLimits = "7".parse().unwrap();
        assert_eq!((hard.begin, hard.full), (7, 7));
        assert!("10:30".parse::<StartupLimits>().is_err());
        assert!("50:30:10".parse::<StartupLimits>().is_err());
        assert!("10:130:100".parse::<StartupLimits>().is_err());
    }

    #[test]
    fn past_begin_new_connections_are_dropped_by_the_coin_and_full_is_a_hard_cap() {
        let startups = Startups::new(limits());
        let _a = admitted(startups.arrive_with(ip(1), |_| panic!("no coin below begin")));
        let _b = admitted(startups.arrive_with(ip(2), |_| panic!("no coin below begin")));
        let _c = admitted(startups.arrive_with(ip(3), |_| panic!("no coin below begin")));
        assert!(refused(startups.arrive_with(ip(4), |p| {
            assert!((p - 0.5).abs() < 1e-9);
            true
        })));
        let _d = admitted(startups.arrive_with(ip(4), |_| false));
        let _e = admitted(startups.arrive_with(ip(5), |_| false));
        assert!(refused(startups.arrive_with(ip(6), |_| false)), "full");
    }

    #[test]
    fn over_the_peer_cap_a_connection_waits_and_waiting_is_capped() {
        let startups = Startups::new(limits());
        let first = admitted(startups.arrive(ip(1)));
        let _second = admitted(startups.arrive(ip(1)));
        let waiting = waits(startups.arrive(ip(1)));
        let _also = waits(startups.arrive(ip(1)));
        assert!(refused(startups.arrive(ip(1))), "per-peer waiting cap");
        // Waiting does not count toward the total: three more addresses fill it.
        let _c = admitted(startups.arrive_with(ip(2), |_| false));
        let _d = admitted(startups.arrive_with(ip(3), |_| false));
        let _e = admitted(startups.arrive_with(ip(4), |_| false));
        assert!(refused(startups.arrive_with(ip(5), |_| false)), "full");
        drop(_e);
        // A waiter takes its address's slot when one frees.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        runtime.block_on(async {
            let slot = tokio::spawn(waiting.slot());
            tokio::time::sleep(Duration::from_millis(50)).await;
            assert!(!slot.is_finished(), "took a slot while the peer held both");
            drop(first);
            let guard = tokio::time::timeout(Duration::from_secs(10), slot)
                .await
                .expect("a slot in time")
                .unwrap();
            drop(guard);
        });
    }

    #[test]
    fn ipv6_peers_share_the_cap_of_their_64() {
        let startups = Startups::new(limits());
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2::ffff".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        let _a = admitted(startups.arrive(a));
        let _b = admitted(startups.arrive(b));
        let _waits = waits(startups.arrive(b));
        let _c = admitted(startups.arrive(c));
    }
}

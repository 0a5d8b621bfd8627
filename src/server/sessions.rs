//! Who is connected: connections not logged in yet (capped in all and per peer), session
//! limits globally and per user, and a way to end a user's sessions (when the account is
//! deleted).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use russh::server::Handle;

/// The live sessions of the whole server.
pub struct SessionRegistry {
    max_total: usize,
    inner: Mutex<Registry>,
}

#[derive(Default)]
struct Registry {
    next_id: u64,
    total: usize,
    by_user: HashMap<String, Vec<(u64, Handle)>>,
}

/// Why a session was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionRefused {
    #[error("too many sessions on this server ({limit}); try again later")]
    Server { limit: usize },
    #[error("too many sessions for {user} ({limit}); close one and try again")]
    User { user: String, limit: usize },
}

impl SessionRegistry {
    pub fn new(max_total: usize) -> Arc<SessionRegistry> {
        Arc::new(SessionRegistry {
            max_total,
            inner: Mutex::new(Registry::default()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Registry> {
        // A panic while holding this lock leaves only counters behind; keep serving.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Counts a new session of `user`, unless that passes a limit. The session stops
    /// counting when the returned guard drops.
    pub fn admit(
        self: &Arc<Self>,
        user: &str,
        max_for_user: usize,
        handle: Handle,
    ) -> Result<SessionGuard, SessionRefused> {
        let mut inner = self.lock();
        if inner.total >= self.max_total {
            return Err(SessionRefused::Server {
                limit: self.max_total,
            });
        }
        if inner.by_user.get(user).map_or(0, Vec::len) >= max_for_user {
            return Err(SessionRefused::User {
                user: user.to_owned(),
                limit: max_for_user,
            });
        }
        let id = inner.next_id;
        inner.next_id += 1;
        inner
            .by_user
            .entry(user.to_owned())
            .or_default()
            .push((id, handle));
        inner.total += 1;
        Ok(SessionGuard {
            registry: Arc::clone(self),
            user: user.to_owned(),
            id,
        })
    }

    /// The handles of `user`'s sessions, to end them.
    pub fn handles_of(&self, user: &str) -> Vec<Handle> {
        let inner = self.lock();
        inner
            .by_user
            .get(user)
            .map(|sessions| sessions.iter().map(|(_, handle)| handle.clone()).collect())
            .unwrap_or_default()
    }

    /// Users with at least one live session.
    pub fn users(&self) -> Vec<String> {
        self.lock().by_user.keys().cloned().collect()
    }
}

/// One counted session; dropping it frees the slot.
pub struct SessionGuard {
    registry: Arc<SessionRegistry>,
    user: String,
    id: u64,
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        let mut inner = self.registry.lock();
        if let Some(sessions) = inner.by_user.get_mut(&self.user) {
            sessions.retain(|(id, _)| *id != self.id);
            if sessions.is_empty() {
                inner.by_user.remove(&self.user);
            }
            inner.total -= 1;
        }
    }
}

/// Connections that have not logged in yet, capped in all and per peer address, so that
/// one address cannot hold every slot and lock everyone else out.
pub struct Startups {
    max_total: usize,
    max_per_peer: usize,
    inner: Mutex<StartupCounts>,
}

#[derive(Default)]
struct StartupCounts {
    total: usize,
    by_peer: HashMap<IpAddr, usize>,
}

impl Startups {
    pub fn new(max_total: usize, max_per_peer: usize) -> Arc<Startups> {
        Arc::new(Startups {
            max_total,
            max_per_peer,
            inner: Mutex::new(StartupCounts::default()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, StartupCounts> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A slot for a new connection from `peer`, or `None` if a cap is reached.
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Option<StartupGuard> {
        let mut counts = self.lock();
        let from_peer = counts.by_peer.get(&peer).copied().unwrap_or(0);
        if counts.total >= self.max_total || from_peer >= self.max_per_peer {
            return None;
        }
        counts.total += 1;
        counts.by_peer.insert(peer, from_peer + 1);
        Some(StartupGuard {
            startups: Arc::clone(self),
            peer,
        })
    }
}

/// One connection not logged in yet; dropping it (at login, or when the connection ends)
/// frees the slot.
pub struct StartupGuard {
    startups: Arc<Startups>,
    peer: IpAddr,
}

impl Drop for StartupGuard {
    fn drop(&mut self) {
        let mut counts = self.startups.lock();
        counts.total = counts.total.saturating_sub(1);
        if let Some(n) = counts.by_peer.get_mut(&self.peer) {
            *n -= 1;
            if *n == 0 {
                counts.by_peer.remove(&self.peer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn startups_are_capped_in_all_and_per_peer() {
        let startups = Startups::new(3, 2);
        let a: IpAddr = [127, 0, 0, 1].into();
        let b: IpAddr = [127, 0, 0, 2].into();
        let first = startups.admit(a).unwrap();
        let _second = startups.admit(a).unwrap();
        assert!(startups.admit(a).is_none(), "per-peer cap");
        let _third = startups.admit(b).unwrap();
        assert!(startups.admit(b).is_none(), "total cap");
        drop(first);
        assert!(
            startups.admit(a).is_some(),
            "a slot comes back when a connection goes"
        );
    }
}

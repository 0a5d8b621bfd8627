//! Who is logged in: session limits globally and per user, and a way to end a user's
//! sessions (when the account is deleted). Connections not logged in yet are counted in
//! `startups`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use std::net::SocketAddr;

use russh::server::Handle;
use tracing::warn;

use crate::auth::{AccountStore, SessionLease, SessionRefusal};

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

/// Counts a session against the limits of every node sharing the accounts (PostgreSQL
/// session leases), beyond this server's own count; `None` for a store of one server.
pub(super) async fn lease_session(
    accounts: &Arc<dyn AccountStore>,
    max_total: usize,
    user: &str,
    max_for_user: Option<usize>,
    peer: SocketAddr,
) -> Result<Option<Box<dyn SessionLease>>, SessionRefusal> {
    let (accounts, user) = (Arc::clone(accounts), user.to_owned());
    let leased = tokio::task::spawn_blocking(move || {
        accounts.lease_session(&user, max_for_user, max_total, &peer.to_string())
    })
    .await
    .unwrap_or_else(|join| Err(SessionRefusal::Unavailable(join.to_string())));
    match leased {
        // The details (a database's address) are for the log, not for the client.
        Err(SessionRefusal::Unavailable(why)) => {
            warn!(target: "rsftpd::auth", peer = %peer, reason = %why, "cannot count the session");
            Err(SessionRefusal::Unavailable(
                "the server cannot count sessions now; try again later".to_owned(),
            ))
        }
        other => other,
    }
}

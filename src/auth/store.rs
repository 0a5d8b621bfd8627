//! The account-store seam: where a server finds its accounts and hears of changes.
//!
//! The server holds an `Arc<dyn AccountStore>` and asks it for the accounts in force at
//! each login; a poller asks [`AccountStore::changed`] about once a second and calls
//! [`AccountStore::reload`] when it says yes. Today's store is `users.toml`
//! ([`super::WatchedUsersFile`]). A store shared by several servers (a database) fits
//! the same shape: `current` answers from its cache, `changed` says whether the
//! database has news, `reload` refreshes the cache, and `unavailable` says when the
//! database is away, so that logins fail closed ([`crate::auth::postgres`]).
//!
//! Edits go through [`crate::admin`], whose [`crate::admin::AccountEditor`] is the
//! writing half of the same seam.

use std::sync::Arc;
use std::time::Duration;

use super::users::{UsersConfig, UsersError};

/// A session counted by the store (on every node sharing it); dropping it gives the
/// slot back.
pub trait SessionLease: Send + Sync {}

/// Why the store refused a session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionRefusal {
    #[error("too many sessions for {user} on the cluster ({limit}); close one and try again")]
    User { user: String, limit: usize },
    #[error("too many sessions on the cluster ({limit}); try again later")]
    Total { limit: usize },
    #[error("{0}")]
    Unavailable(String),
}

/// What kind of place a store keeps its accounts in, so that the server's log lines
/// about reloading them name it (an operator reading "users file reloaded" on a node
/// whose accounts are in PostgreSQL would look for a file that is not used).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreKind {
    /// `users.toml`.
    UsersFile,
    /// A PostgreSQL database.
    Postgres,
}

/// The accounts a server runs with. Implementations are shared across sessions.
pub trait AccountStore: Send + Sync {
    /// Where the accounts come from, for logs (a path, or a database without its
    /// password).
    fn origin(&self) -> String;

    /// What kind of place [`AccountStore::origin`] is.
    fn kind(&self) -> StoreKind;

    /// The accounts in force now. Cheap: called at every login.
    fn current(&self) -> Arc<UsersConfig>;

    /// Whether the accounts changed since they were last loaded or tried. Blocking.
    fn changed(&self) -> bool;

    /// Loads the accounts again. On success the new ones are in force and returned
    /// after the old ones; on failure the old ones stay in force. Blocking.
    fn reload(&self) -> Result<(Arc<UsersConfig>, Arc<UsersConfig>), UsersError>;

    /// How often the server asks [`AccountStore::changed`].
    fn poll_interval(&self) -> Duration {
        Duration::from_secs(1)
    }

    /// Why the accounts in force cannot be trusted now (a database store that lost its
    /// database), if so. The server then refuses new logins: it fails closed.
    fn unavailable(&self) -> Option<String> {
        None
    }

    /// Counts a session of `user` against limits shared with other servers, if this
    /// store is shared (`None`: only this server's own count applies). Blocking.
    fn lease_session(
        &self,
        _user: &str,
        _max_for_user: Option<usize>,
        _max_total: usize,
        _peer: &str,
    ) -> Result<Option<Box<dyn SessionLease>>, SessionRefusal> {
        Ok(None)
    }
}

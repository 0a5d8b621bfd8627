//! What every connection of a server shares: the account store, the storage root, the
//! password checker, the login records, the session registry, the limits, the memory
//! budget and the balancers allowed to name the client.

use std::sync::Arc;
use std::time::Duration;

use super::budget;
use super::config::Limits;
use super::proxy::ProxyNet;
use super::refusals;
use super::sessions::SessionRegistry;
use crate::auth::{AccountScore, AccountStore, LoginThrottle, PasswordChecker};
use crate::storage::Storage;

/// State shared by every connection.
pub(super) struct Shared {
    pub(super) accounts: Arc<dyn AccountStore>,
    pub(super) storage: Arc<Storage>,
    pub(super) passwords: PasswordChecker,
    pub(super) throttle: LoginThrottle,
    pub(super) account_score: AccountScore,
    /// Rate limit for refused-connection lines (never for ban lines).
    pub(super) refusals: refusals::RefusalLog,
    pub(super) sessions: Arc<SessionRegistry>,
    pub(super) limits: Limits,
    /// A connection with no activity (see `activity`) for this long is closed.
    pub(super) idle_timeout: Duration,
    pub(super) memory: Arc<budget::MemoryBudget>,
    /// Balancers that must, and alone may, send a PROXY header (`--proxy-from`).
    pub(super) balancers: Vec<ProxyNet>,
}

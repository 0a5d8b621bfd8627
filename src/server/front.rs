//! What a connection hands each front end it starts (rsftp, SCP): the session's
//! operation log, the connection's activity clock and memory account, and the stall
//! limit for transfers.

use std::sync::Arc;
use std::time::Duration;

use super::activity::Activity;
use super::budget::ConnectionAccount;
use super::oplog::OpLog;

pub(crate) struct Front {
    pub oplog: Arc<OpLog>,
    /// Touched by every request and every chunk of data.
    pub activity: Activity,
    /// A transfer that makes no progress for this long fails.
    pub stall: Duration,
    /// What the front end buffers is charged here.
    pub account: Arc<ConnectionAccount>,
}

//! The seam to a quota ledger shared by every node of a cluster ([`ClusterQuota`]).
//!
//! On one machine each user's [`QuotaLedger`](super::QuotaLedger) is the whole truth:
//! it checks and books under one lock. When several nodes serve the same homes, no
//! node's ledger can see what the others promise, so the byte check moves to a shared
//! ledger (PostgreSQL, in `auth::postgres`). The node's ledger still books every
//! operation as before, and tells the shared ledger four things:
//!
//! - **take**: a transfer needs bytes; the shared ledger grants them (or refuses, with
//!   the numbers) before any data flows. It may grant in larger chunks and keep the
//!   rest for this node's next transfers, but never more than the quota allows.
//! - **give back**: bytes taken but not written (an upload cut short or refused).
//! - **written**: bytes taken are now on disk.
//! - **freed** and **retaken**: bytes on disk were removed, or removed and taken again
//!   by the same transfer (an upload that starts over).
//!
//! The last three never wait: they are booked on this node and settled with the
//! shared ledger in the background, and until then they stay counted as reserved
//! there, so the cluster's total never falls below what is really on disk and
//! promised. [`ClusterQuota::check_writable`] is asked before data is written, so a
//! node that lost its lease on the shared ledger writes nothing more against what it
//! holds.
//!
//! Everything here is called from the storage core's blocking code; `take`, `usage`
//! and `reconcile` may block on the network.

use std::fmt::Debug;

use super::{QuotaExceeded, Usage};

/// A quota ledger shared by the nodes of a cluster; see the module docs.
pub trait ClusterQuota: Debug + Send + Sync {
    /// Takes `bytes` of `user`'s quota for a transfer on this node, or refuses:
    /// [`QuotaExceeded::Bytes`] with the cluster's numbers, or
    /// [`QuotaExceeded::Unavailable`] when the shared ledger cannot be asked.
    fn take(&self, user: &str, bytes: u64) -> Result<(), QuotaExceeded>;

    /// `bytes` taken are not needed after all.
    fn give_back(&self, user: &str, bytes: u64);

    /// Whether this node may still write data against what it took for `user`.
    fn check_writable(&self, user: &str) -> Result<(), QuotaExceeded>;

    /// `bytes` taken were written.
    fn written(&self, user: &str, bytes: u64);

    /// `bytes` of `user`'s on disk are gone.
    fn freed(&self, user: &str, bytes: u64);

    /// `bytes` on disk were discarded and are taken again at once by the transfer that
    /// discarded them, so nobody else can take them meanwhile.
    fn retaken(&self, user: &str, bytes: u64);

    /// The limit of `user` changed: spare bytes this node holds for them go back, so a
    /// lowered quota holds from the next write.
    fn limit_changed(&self, user: &str);

    /// `user`'s numbers as the cluster has them, if the shared ledger answers.
    fn usage(&self, user: &str) -> Option<Usage>;

    /// A token that changes whenever `user`'s `used` is settled, taken before a home
    /// is measured; `None` if the shared ledger cannot be asked.
    fn measure_token(&self, user: &str) -> Option<i64>;

    /// Sets `user`'s `used` to `measured` (what a scan of the home found), unless an
    /// upload of theirs is in flight on any node or `used` was settled since `token`
    /// was taken: then the numbers could not agree, and nothing changes.
    fn reconcile(&self, user: &str, measured: u64, token: i64) -> Reconciled;
}

/// What [`ClusterQuota::reconcile`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reconciled {
    /// `used` was `was`; it now says what the scan found.
    Set { was: u64, now: u64 },
    /// Not changed: an upload is in flight, or `used` changed during the scan.
    Skipped { used: u64, measured: u64 },
    /// The account has no row in the shared ledger.
    Unknown,
    /// The shared ledger did not answer.
    Unavailable(String),
}

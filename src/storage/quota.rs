//! The per-user quota ledger: bytes on disk, bytes promised to transfers, and the limit;
//! and the count of entries (files, folders, links) against an optional limit.
//!
//! One ledger is shared by all of a user's sessions. Space is *reserved* before data
//! flows and *committed* as it lands, so concurrent transfers can never together pass
//! the limit: the check and the booking happen under one lock.
//!
//! What an entry costs is decided here and nowhere else ([`file_cost`], [`entry_cost`]):
//! every operation that creates, grows, shrinks or removes an entry, and the scan that
//! recomputes usage after a restart, books exactly what these functions say, so the
//! ledger always equals a fresh scan.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use cap_std::fs::FileType;

use super::cluster_quota::ClusterQuota;

/// The unit of the quota rule: a file's length is rounded up to a multiple of this, and
/// a folder or a symbolic link costs one. It is what such entries really take on common
/// filesystems (a block, an inode), so many empty folders cannot fill a disk for free.
pub const QUOTA_BLOCK: u64 = 4096;

/// What a regular file of `len` bytes costs: its length rounded up to [`QUOTA_BLOCK`].
/// An empty file costs nothing but its entry (see `max_files`).
pub fn file_cost(len: u64) -> u64 {
    len.div_ceil(QUOTA_BLOCK).saturating_mul(QUOTA_BLOCK)
}

/// What an entry of type `kind` costs: [`file_cost`] of `len` for a regular file, and
/// one [`QUOTA_BLOCK`] for anything else (a folder, a symbolic link, whatever an admin
/// may have planted), whatever `len` says.
pub fn entry_cost(kind: FileType, len: u64) -> u64 {
    if kind.is_file() {
        file_cost(len)
    } else {
        QUOTA_BLOCK
    }
}

/// What a scan of the disk found: the cost of all entries, and how many there are.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub bytes: u64,
    pub entries: u64,
}

impl Tally {
    /// Counts one more entry that costs `cost`.
    pub fn add(&mut self, cost: u64) {
        self.bytes = self.bytes.saturating_add(cost);
        self.entries = self.entries.saturating_add(1);
    }

    /// Adds what another scan found.
    pub fn merge(&mut self, other: Tally) {
        self.bytes = self.bytes.saturating_add(other.bytes);
        self.entries = self.entries.saturating_add(other.entries);
    }
}

/// A snapshot of a user's ledger, in bytes as the quota rule counts them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Usage {
    /// Bytes booked for what is on disk: every entry by [`entry_cost`], partial uploads
    /// included.
    pub used: u64,
    /// Bytes promised to transfers in flight, not yet written.
    pub reserved: u64,
    /// The quota.
    pub limit: u64,
}

/// A snapshot of a user's entry count: files, folders and links, partial uploads
/// included; entries being created are counted from the moment they are allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entries {
    pub count: u64,
    /// `max_files`; `None`: no limit.
    pub limit: Option<u64>,
}

impl Usage {
    /// What can still be reserved: `limit - used - reserved`, or 0.
    pub fn free(&self) -> u64 {
        self.limit
            .saturating_sub(self.used)
            .saturating_sub(self.reserved)
    }

    /// Books `need` more bytes as reserved if they fit under the limit. Nothing at all
    /// always fits, even over a lowered limit, since it is no growth.
    fn try_reserve(&mut self, need: u64) -> Result<(), QuotaExceeded> {
        let taken = self.used.saturating_add(self.reserved);
        match taken.checked_add(need) {
            Some(total) if total <= self.limit || need == 0 => {
                self.reserved += need;
                Ok(())
            }
            _ => Err(QuotaExceeded::Bytes {
                need,
                used: taken,
                limit: self.limit,
            }),
        }
    }
}

/// A refusal: `need` more bytes do not fit (`used` counts reservations too), or the
/// user has as many entries as `max_files` allows, or the quota shared by a cluster's
/// nodes cannot be asked, so nothing that needs space is allowed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QuotaExceeded {
    #[error("quota exceeded: need {need} bytes, used {used} of {limit} bytes")]
    Bytes { need: u64, used: u64, limit: u64 },
    #[error("file limit reached: {count} of {limit} files, folders and links")]
    Entries { count: u64, limit: u64 },
    #[error("the quota ledger is unavailable, so nothing that needs space is allowed: {reason}")]
    Unavailable { reason: String },
}

/// Everything the ledger guards with one lock.
#[derive(Debug)]
struct State {
    bytes: Usage,
    entries: Entries,
}

/// One user's quota ledger.
#[derive(Debug)]
pub struct QuotaLedger {
    state: Mutex<State>,
    /// The ledger of a cluster, which checks the bytes instead of `state` (see
    /// `cluster_quota`), and the user's name there.
    cluster: Option<(Arc<dyn ClusterQuota>, String)>,
}

impl QuotaLedger {
    /// A ledger with `used` bytes already on disk, no entry limit, and nothing reserved.
    pub fn new(limit: u64, used: u64) -> Arc<Self> {
        Self::from_scan(
            limit,
            None,
            Tally {
                bytes: used,
                entries: 0,
            },
        )
    }

    /// A ledger for what a scan of the disk found.
    pub fn from_scan(limit: u64, max_files: Option<u64>, found: Tally) -> Arc<Self> {
        Self::in_cluster(limit, max_files, found, None)
    }

    /// [`QuotaLedger::from_scan`], whose bytes are checked by the ledger of a cluster
    /// (for `user`) when `cluster` is given. Entries are still counted on this node.
    pub fn in_cluster(
        limit: u64,
        max_files: Option<u64>,
        found: Tally,
        cluster: Option<(Arc<dyn ClusterQuota>, String)>,
    ) -> Arc<Self> {
        Arc::new(Self {
            cluster,
            state: Mutex::new(State {
                bytes: Usage {
                    used: found.bytes,
                    reserved: 0,
                    limit,
                },
                entries: Entries {
                    count: found.entries,
                    limit: max_files,
                },
            }),
        })
    }

    /// The user's numbers: the cluster's when the bytes are shared (if it answers),
    /// else this ledger's.
    pub fn usage(&self) -> Usage {
        let local = self.lock().bytes;
        match &self.cluster {
            Some((cluster, user)) => cluster.usage(user).unwrap_or(local),
            None => local,
        }
    }

    pub fn entries(&self) -> Entries {
        self.lock().entries
    }

    /// Changes the limits. A limit below current usage deletes nothing; it only refuses
    /// further growth.
    pub fn set_limits(&self, limit: u64, max_files: Option<u64>) {
        let mut state = self.lock();
        let changed = state.bytes.limit != limit;
        state.bytes.limit = limit;
        state.entries.limit = max_files;
        drop(state);
        if let Some((cluster, user)) = &self.cluster
            && changed
        {
            cluster.limit_changed(user);
        }
    }

    /// Promises `n` bytes to a transfer, or refuses if `used + reserved + n` would pass
    /// the limit (`n == 0` is never refused).
    pub fn reserve(self: &Arc<Self>, n: u64) -> Result<Reservation, QuotaExceeded> {
        self.book(n)?;
        Ok(Reservation {
            ledger: Arc::clone(self),
            remaining: n,
            new_entries: 0,
        })
    }

    /// Books `n` more bytes as reserved: checked here, or taken from the cluster's
    /// ledger (without holding this one's lock, since that may wait on the network).
    fn book(&self, n: u64) -> Result<(), QuotaExceeded> {
        match &self.cluster {
            None => self.lock().bytes.try_reserve(n),
            Some(_) if n == 0 => Ok(()),
            Some((cluster, user)) => {
                cluster.take(user, n)?;
                let mut state = self.lock();
                state.bytes.reserved = state.bytes.reserved.saturating_add(n);
                Ok(())
            }
        }
    }

    /// Takes `n` reserved bytes back off the books (the reverse of [`Self::book`]).
    fn unbook(&self, state: &mut State, n: u64) {
        state.bytes.reserved = state.bytes.reserved.saturating_sub(n);
        if let Some((cluster, user)) = &self.cluster
            && n > 0
        {
            cluster.give_back(user, n);
        }
    }

    /// Tells the cluster's ledger, if any, that `n` bytes on disk are gone.
    fn freed(&self, n: u64) {
        if let Some((cluster, user)) = &self.cluster
            && n > 0
        {
            cluster.freed(user, n);
        }
    }

    /// Replaces what the ledger counts as on disk with what a fresh scan found.
    pub(crate) fn set_found(&self, found: Tally) {
        let mut state = self.lock();
        state.bytes.used = found.bytes;
        state.entries.count = found.entries;
    }

    /// For an entry about to be created: counts it, and promises it `n` bytes, or
    /// refuses if either limit would be passed. The entry is given back if the
    /// reservation is dropped before [`Reservation::keep_entry`].
    pub fn reserve_entry(self: &Arc<Self>, n: u64) -> Result<Reservation, QuotaExceeded> {
        self.take_entry(n, true)
    }

    /// As [`reserve_entry`](Self::reserve_entry), for an entry that is to replace one
    /// that exists (an upload's partial, over the file it will be published onto): it
    /// is counted, but not held to `max_files`, since publishing it gives the replaced
    /// entry back. So a user at the limit can still replace their files.
    pub fn reserve_replacing_entry(self: &Arc<Self>, n: u64) -> Result<Reservation, QuotaExceeded> {
        self.take_entry(n, false)
    }

    fn take_entry(
        self: &Arc<Self>,
        n: u64,
        check_limit: bool,
    ) -> Result<Reservation, QuotaExceeded> {
        let entry_fits = |state: &State| {
            let Entries { count, limit } = state.entries;
            match limit {
                Some(limit) if count >= limit && check_limit => {
                    Err(QuotaExceeded::Entries { count, limit })
                }
                _ => Ok(()),
            }
        };
        if self.cluster.is_some() {
            // Checked first so as not to take shared bytes for nothing, and again after,
            // as another entry may have come meanwhile.
            entry_fits(&self.lock())?;
            self.book(n)?;
            let mut state = self.lock();
            if let Err(refused) = entry_fits(&state) {
                self.unbook(&mut state, n);
                return Err(refused);
            }
            state.entries.count += 1;
        } else {
            let mut state = self.lock();
            entry_fits(&state)?;
            state.bytes.try_reserve(n)?;
            state.entries.count += 1;
        }
        Ok(Reservation {
            ledger: Arc::clone(self),
            remaining: n,
            new_entries: 1,
        })
    }

    /// `n` bytes were freed on disk (a truncate, a partial cut short).
    pub fn release(&self, n: u64) {
        let mut state = self.lock();
        state.bytes.used = state.bytes.used.saturating_sub(n);
        drop(state);
        self.freed(n);
    }

    /// An entry that cost `n` bytes is gone from disk (a delete, or a rename or upload
    /// over it).
    pub fn release_entry(&self, n: u64) {
        let mut state = self.lock();
        state.bytes.used = state.bytes.used.saturating_sub(n);
        state.entries.count = state.entries.count.saturating_sub(1);
        drop(state);
        self.freed(n);
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is numbers that every critical section leaves consistent, so a panic
        // elsewhere while holding the lock cannot have left it half-updated.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Space (and perhaps a new entry) promised to one operation. Whatever is not committed
/// goes back to the ledger when this is dropped.
#[derive(Debug)]
pub struct Reservation {
    ledger: Arc<QuotaLedger>,
    remaining: u64,
    /// Entries counted for this operation that are given back unless kept.
    new_entries: u64,
}

impl Reservation {
    /// Bytes still promised and not yet written.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    /// `n` bytes were written: they move from reserved to used.
    ///
    /// Committing more than [`remaining`](Self::remaining) asks the ledger for the excess,
    /// as [`QuotaLedger::reserve`] would, and changes nothing if it does not fit.
    pub fn commit(&mut self, n: u64) -> Result<(), QuotaExceeded> {
        if n > self.remaining {
            self.ledger.book(n - self.remaining)?;
            self.remaining = n;
        }
        let mut state = self.ledger.lock();
        state.bytes.reserved = state.bytes.reserved.saturating_sub(n);
        state.bytes.used = state.bytes.used.saturating_add(n);
        self.remaining -= n;
        drop(state);
        if let Some((cluster, user)) = &self.ledger.cluster
            && n > 0
        {
            cluster.written(user, n);
        }
        Ok(())
    }

    /// Whether data may still be written against this reservation: always on one
    /// machine; in a cluster, only while this node's lease on the shared ledger holds.
    pub fn check_writable(&self) -> Result<(), QuotaExceeded> {
        match &self.ledger.cluster {
            Some((cluster, user)) => cluster.check_writable(user),
            None => Ok(()),
        }
    }

    /// The entry this was reserved for now exists: it stays counted.
    pub fn keep_entry(&mut self) {
        self.new_entries = 0;
    }

    /// `n` bytes already counted as used were discarded from disk, and are needed again
    /// by this transfer (an upload that starts over). They move from used back into this
    /// reservation, so the user's total does not change and nobody can take them meanwhile.
    pub(crate) fn reclaim(&mut self, n: u64) {
        let mut state = self.ledger.lock();
        let n = n.min(state.bytes.used);
        state.bytes.used -= n;
        state.bytes.reserved = state.bytes.reserved.saturating_add(n);
        self.remaining += n;
        drop(state);
        if let Some((cluster, user)) = &self.ledger.cluster
            && n > 0
        {
            cluster.retaken(user, n);
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut state = self.ledger.lock();
        self.ledger.unbook(&mut state, self.remaining);
        state.entries.count = state.entries.count.saturating_sub(self.new_entries);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread;

    #[test]
    fn reserve_commit_and_drop() {
        let ledger = QuotaLedger::new(100, 10);
        let mut r = ledger.reserve(50).unwrap();
        assert_eq!(
            ledger.usage(),
            Usage {
                used: 10,
                reserved: 50,
                limit: 100
            }
        );
        assert_eq!(ledger.usage().free(), 40);
        r.commit(20).unwrap();
        assert_eq!(r.remaining(), 30);
        assert_eq!((ledger.usage().used, ledger.usage().reserved), (30, 30));
        drop(r);
        assert_eq!((ledger.usage().used, ledger.usage().reserved), (30, 0));
        ledger.release(25);
        assert_eq!(ledger.usage().used, 5);
        ledger.release(1000);
        assert_eq!(ledger.usage().used, 0);
    }

    #[test]
    fn refuses_past_the_limit_with_the_numbers() {
        let ledger = QuotaLedger::new(100, 60);
        let _held = ledger.reserve(30).unwrap();
        let err = ledger.reserve(11).unwrap_err();
        assert_eq!(
            err,
            QuotaExceeded::Bytes {
                need: 11,
                used: 90,
                limit: 100
            }
        );
        assert_eq!(
            err.to_string(),
            "quota exceeded: need 11 bytes, used 90 of 100 bytes"
        );
        assert!(ledger.reserve(10).is_ok());
        assert!(ledger.reserve(u64::MAX).is_err());
    }

    #[test]
    fn commit_beyond_the_reservation_needs_free_space() {
        let ledger = QuotaLedger::new(100, 0);
        let mut r = ledger.reserve(10).unwrap();
        r.commit(15).unwrap();
        assert_eq!(r.remaining(), 0);
        assert_eq!((ledger.usage().used, ledger.usage().reserved), (15, 0));
        let _other = ledger.reserve(80).unwrap();
        assert!(r.commit(6).is_err());
        assert_eq!((ledger.usage().used, ledger.usage().reserved), (15, 80));
    }

    #[test]
    fn lowered_limit_only_refuses_growth() {
        let ledger = QuotaLedger::new(100, 80);
        ledger.set_limits(50, None);
        assert_eq!(ledger.usage().free(), 0);
        assert!(ledger.reserve(1).is_err());
        assert!(ledger.reserve(0).is_ok());
        ledger.release(40);
        assert!(ledger.reserve(10).is_ok());
    }

    #[test]
    fn reclaim_moves_used_back_to_reserved() {
        let ledger = QuotaLedger::new(100, 40);
        let mut r = ledger.reserve(60).unwrap();
        r.reclaim(40);
        assert_eq!(r.remaining(), 100);
        assert_eq!((ledger.usage().used, ledger.usage().reserved), (0, 100));
        drop(r);
        assert_eq!(ledger.usage().free(), 100);
    }

    #[test]
    fn concurrent_reservations_never_pass_the_limit() {
        let ledger = QuotaLedger::new(1000, 0);
        let granted: Vec<Vec<Reservation>> = thread::scope(|s| {
            let workers: Vec<_> = (0..16)
                .map(|_| {
                    let ledger = Arc::clone(&ledger);
                    s.spawn(move || {
                        (0..100)
                            .filter_map(|_| ledger.reserve(7).ok())
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().unwrap()).collect()
        });
        let total: u64 = granted.iter().flatten().map(Reservation::remaining).sum();
        assert_eq!(total, 1000 / 7 * 7);
        assert_eq!(ledger.usage().reserved, total);
        drop(granted);
        assert_eq!(ledger.usage().reserved, 0);
    }

    #[test]
    fn files_cost_their_length_rounded_up_and_other_entries_one_block() {
        assert_eq!(file_cost(0), 0);
        assert_eq!(file_cost(1), 4096);
        assert_eq!(file_cost(4096), 4096);
        assert_eq!(file_cost(4097), 8192);
        assert_eq!(file_cost(u64::MAX), u64::MAX);
        let tmp = tempfile::tempdir().unwrap();
        let dir =
            cap_std::fs::Dir::open_ambient_dir(tmp.path(), cap_std::ambient_authority()).unwrap();
        dir.create_dir("d").unwrap();
        dir.write("f", [0; 5000]).unwrap();
        dir.symlink("f", "link").unwrap();
        let cost = |name: &str| {
            let meta = dir.symlink_metadata(name).unwrap();
            entry_cost(meta.file_type(), meta.len())
        };
        assert_eq!((cost("d"), cost("f"), cost("link")), (4096, 8192, 4096));
    }

    #[test]
    fn entries_are_counted_against_max_files() {
        let ledger = QuotaLedger::from_scan(
            100_000,
            Some(2),
            Tally {
                bytes: 4096,
                entries: 1,
            },
        );
        let mut kept = ledger.reserve_entry(4096).unwrap();
        kept.commit(4096).unwrap();
        kept.keep_entry();
        drop(kept);
        assert_eq!(ledger.entries().count, 2);
        assert_eq!(
            ledger.reserve_entry(0).unwrap_err(),
            QuotaExceeded::Entries { count: 2, limit: 2 }
        );
        assert_eq!(
            ledger.reserve_entry(0).unwrap_err().to_string(),
            "file limit reached: 2 of 2 files, folders and links"
        );
        // Bytes alone are not entries.
        drop(ledger.reserve(10).unwrap());
        ledger.release_entry(4096);
        // A reservation dropped without keeping its entry gives it back.
        drop(ledger.reserve_entry(0).unwrap());
        assert_eq!(ledger.entries().count, 1);
        assert_eq!(ledger.usage().used, 4096);
        // Nor is an entry taken when its bytes do not fit.
        assert!(matches!(
            ledger.reserve_entry(1 << 20),
            Err(QuotaExceeded::Bytes { .. })
        ));
        assert_eq!(ledger.entries().count, 1);
        ledger.set_limits(100_000, None);
        for _ in 0..10 {
            ledger.reserve_entry(0).unwrap().keep_entry();
        }
        assert_eq!(
            ledger.entries(),
            Entries {
                count: 11,
                limit: None
            }
        );
    }
}

//! The per-user quota ledger: bytes on disk, bytes promised to transfers, and the limit.
//!
//! One ledger is shared by all of a user's sessions. Space is *reserved* before data
//! flows and *committed* as it lands, so concurrent transfers can never together pass
//! the limit: the check and the booking happen under one lock.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// A snapshot of a user's ledger, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Usage {
    /// Bytes on disk: the logical lengths of all regular files, partial uploads included.
    pub used: u64,
    /// Bytes promised to transfers in flight, not yet written.
    pub reserved: u64,
    /// The quota.
    pub limit: u64,
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
            _ => Err(QuotaExceeded {
                need,
                used: taken,
                limit: self.limit,
            }),
        }
    }
}

/// A refusal: `need` more bytes do not fit. `used` counts reservations too.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("quota exceeded: need {need} bytes, used {used} of {limit} bytes")]
pub struct QuotaExceeded {
    pub need: u64,
    pub used: u64,
    pub limit: u64,
}

/// One user's quota ledger.
#[derive(Debug)]
pub struct QuotaLedger {
    state: Mutex<Usage>,
}

impl QuotaLedger {
    /// A ledger with `used` bytes already on disk and nothing reserved.
    pub fn new(limit: u64, used: u64) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(Usage {
                used,
                reserved: 0,
                limit,
            }),
        })
    }

    pub fn usage(&self) -> Usage {
        *self.lock()
    }

    /// Changes the limit. A limit below current usage deletes nothing; it only refuses
    /// further growth.
    pub fn set_limit(&self, limit: u64) {
        self.lock().limit = limit;
    }

    /// Promises `n` bytes to a transfer, or refuses if `used + reserved + n` would pass
    /// the limit (`n == 0` is never refused).
    pub fn reserve(self: &Arc<Self>, n: u64) -> Result<Reservation, QuotaExceeded> {
        self.lock().try_reserve(n)?;
        Ok(Reservation {
            ledger: Arc::clone(self),
            remaining: n,
        })
    }

    /// Replaces what the ledger counts as used with `used`, as a fresh scan measured it.
    pub(crate) fn set_used(&self, used: u64) {
        self.lock().used = used;
    }

    /// `n` bytes were freed on disk (a delete, a truncate, an overwrite).
    pub fn release(&self, n: u64) {
        let mut state = self.lock();
        state.used = state.used.saturating_sub(n);
    }

    fn lock(&self) -> MutexGuard<'_, Usage> {
        // The state is three numbers that every critical section leaves consistent, so a
        // panic elsewhere while holding the lock cannot have left it half-updated.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Space promised to one transfer. Whatever is not committed goes back to the ledger
/// when this is dropped.
#[derive(Debug)]
pub struct Reservation {
    ledger: Arc<QuotaLedger>,
    remaining: u64,
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
        let mut state = self.ledger.lock();
        if n > self.remaining {
            state.try_reserve(n - self.remaining)?;
            self.remaining = n;
        }
        state.reserved = state.reserved.saturating_sub(n);
        state.used = state.used.saturating_add(n);
        self.remaining -= n;
        Ok(())
    }

    /// `n` bytes already counted as used were discarded from disk, and are needed again
    /// by this transfer (an upload that starts over). They move from used back into this
    /// reservation, so the user's total does not change and nobody can take them meanwhile.
    pub(crate) fn reclaim(&mut self, n: u64) {
        let mut state = self.ledger.lock();
        let n = n.min(state.used);
        state.used -= n;
        state.reserved = state.reserved.saturating_add(n);
        self.remaining += n;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut state = self.ledger.lock();
        state.reserved = state.reserved.saturating_sub(self.remaining);
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
            QuotaExceeded {
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
        ledger.set_limit(50);
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
}

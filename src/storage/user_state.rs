//! What all sessions of one user share: the quota ledger, the busy marks of uploads in
//! progress, the size lock, and whether the home could be measured.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::backend::Backend;
use super::cluster_quota::ClusterQuota;
use super::quota::Tally;
use super::scan::ScanFailure;
use super::{QuotaLedger, Result, StorageError, VirtualPath};

/// What all sessions of one user share.
#[derive(Debug)]
pub(super) struct UserState {
    pub(super) ledger: Arc<QuotaLedger>,
    /// Paths with an upload in progress, each with the name of its partial file.
    pub(super) uploads: Mutex<HashMap<VirtualPath, String>>,
    /// Held while reading a file's length and then changing it (in-place writes,
    /// truncates, deletes, renames over a file, publishing an upload), and while
    /// changing how deep folders nest (mkdir, renames), so that two of those cannot
    /// together pass the depth bound.
    sizes: Mutex<()>,
    /// Why the last usage scan failed, while it has: the ledger then knows nothing, so
    /// the user's writes are refused until a scan succeeds.
    pub(super) unmeasured: Mutex<Option<ScanFailure>>,
}

impl UserState {
    pub(super) fn new(
        quota: u64,
        max_files: Option<u64>,
        scanned: std::result::Result<Tally, ScanFailure>,
        cluster: Option<(Arc<dyn ClusterQuota>, String)>,
    ) -> UserState {
        let (found, unmeasured) = match scanned {
            Ok(found) => (found, None),
            Err(failure) => (Tally::default(), Some(failure)),
        };
        UserState {
            ledger: QuotaLedger::in_cluster(quota, max_files, found, cluster),
            uploads: Mutex::default(),
            sizes: Mutex::default(),
            unmeasured: Mutex::new(unmeasured),
        }
    }

    pub(super) fn lock_sizes(&self) -> MutexGuard<'_, ()> {
        lock(&self.sizes)
    }

    /// Refuses a write while the home could not be measured.
    pub(super) fn check_measured(&self) -> Result<()> {
        if lock(&self.unmeasured).is_some() {
            return Err(StorageError::Denied {
                path: VirtualPath::root(),
                reason: "the home could not be measured for the quota, so writes are \
                         refused until an administrator fixes it",
            });
        }
        Ok(())
    }

    /// Measures the home again after a failed scan; a success puts the ledger right.
    pub(super) fn rescan(&self, user: &str, backend: &dyn Backend) {
        let _sizes = self.lock_sizes();
        match backend.measure() {
            Ok(found) => {
                self.ledger.set_found(found);
                *lock(&self.unmeasured) = None;
                tracing::info!(
                    user,
                    used = found.bytes,
                    "home measured again; writes allowed"
                );
            }
            Err(failure) => {
                tracing::warn!(user, error = %failure, "home still cannot be measured; writes refused");
                *lock(&self.unmeasured) = Some(failure);
            }
        }
    }
}

/// Locks `mutex`, ignoring poisoning: every critical section in storage leaves its data
/// consistent before anything in it can panic, so a poisoned lock holds valid data.
pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

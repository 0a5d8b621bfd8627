//! Files opened inside a home ([`OpenFile`]), for SFTP handles and in-place writes:
//! reads and writes at offsets, booked in the quota under the owner's size lock, and
//! changes made through the descriptor rather than a path.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, MutexGuard};
use std::time::SystemTime;

use super::backend::FileHandle;
use super::entry::Entry;
use super::home::at;
use super::quota::file_cost;
use super::read::ReadHandle;
use super::user_state::UserState;
use super::{Result, StorageError, VirtualPath};

/// How to open a file with [`HomeDir::open`], as SFTP's open flags say.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpenOptions {
    pub read: bool,
    pub write: bool,
    /// Create the file if it does not exist.
    pub create: bool,
    /// Cut the file to 0 bytes on open (this implies writing).
    pub truncate: bool,
    /// Fail with `Exists` if the file exists (this implies `create`).
    pub exclusive: bool,
    /// Every write goes to the end of the file, whatever its offset (implies writing).
    pub append: bool,
}

/// A regular file opened inside a home, for SFTP handles and in-place writes.
#[derive(Debug)]
pub struct OpenFile {
    pub(super) file: Box<dyn FileHandle>,
    pub(super) path: VirtualPath,
    pub(super) state: Arc<UserState>,
    pub(super) writable: bool,
    pub(super) append: bool,
    /// A write failed: a file published at close is then not published, since it
    /// lacks what that write carried.
    pub(super) failed: AtomicBool,
}

impl OpenFile {
    pub fn path(&self) -> &VirtualPath {
        &self.path
    }

    /// Reads from `offset` until `buf` is full or the file ends; returns the count.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize> {
        self.file.read_at(offset, buf).map_err(at(&self.path))
    }

    /// Writes all of `data` at `offset` (at the end, if opened to append). Growth of the
    /// file is reserved in the quota ledger first, and refused if it does not fit. A file
    /// deleted or replaced since it was opened is refused as [`StorageError::Deleted`].
    pub fn write_at(&self, offset: u64, data: &[u8]) -> Result<()> {
        let written = self.write_booked(offset, data);
        if written.is_err() {
            self.failed.store(true, Ordering::Relaxed);
        }
        written
    }

    fn write_booked(&self, offset: u64, data: &[u8]) -> Result<()> {
        self.check_writable()?;
        let sizes = self.state.lock_sizes();
        let len = self.named_len(&sizes)?;
        let offset = if self.append { len } else { offset };
        let end = offset
            .checked_add(data.len() as u64)
            .ok_or_else(|| StorageError::BadOffset {
                path: self.path.clone(),
                offset,
                held: len,
            })?;
        let growth = file_cost(end.max(len)) - file_cost(len);
        let mut reservation = self.state.ledger.reserve(growth)?;
        if let Err(e) = self.file.write_all_at(offset, data) {
            // Part of `data` may have landed: count whatever the file grew by.
            if let Ok(now) = self.len() {
                reservation.commit((file_cost(now).saturating_sub(file_cost(len))).min(growth))?;
            }
            return Err(StorageError::from_io(&self.path, e));
        }
        reservation.commit(growth)?;
        Ok(())
    }

    /// Cuts or extends the file to `len` bytes; shrinking gives its cost back, growing
    /// reserves it first. Refused, as `write_at` is, once the file has lost its name.
    pub fn set_len(&self, len: u64) -> Result<()> {
        self.check_writable()?;
        let sizes = self.state.lock_sizes();
        let old = self.named_len(&sizes)?;
        let (old_cost, new_cost) = (file_cost(old), file_cost(len));
        if new_cost <= old_cost {
            self.file.set_len(len).map_err(at(&self.path))?;
            self.state.ledger.release(old_cost - new_cost);
        } else {
            let mut reservation = self.state.ledger.reserve(new_cost - old_cost)?;
            self.file.set_len(len).map_err(at(&self.path))?;
            reservation.commit(new_cost - old_cost)?;
        }
        Ok(())
    }

    /// Describes the open file; `name` is its path.
    pub fn stat(&self) -> Result<Entry> {
        self.file.stat(self.path.as_str()).map_err(at(&self.path))
    }

    /// Sets the permission bits of the open file itself (fchmod), whatever name it has
    /// now: the path it was opened by may name another file since. Only `0o777` is
    /// honoured, as for [`HomeDir::set_permissions`].
    pub fn set_permissions(&self, mode: u32) -> Result<()> {
        self.state.check_measured()?;
        self.file
            .set_permissions(mode & 0o777)
            .map_err(at(&self.path))
    }

    /// Sets the modification time of the open file itself (futimens), leaving its
    /// access time alone.
    pub fn set_mtime(&self, mtime: SystemTime) -> Result<()> {
        self.state.check_measured()?;
        self.file.set_mtime(mtime).map_err(at(&self.path))
    }

    /// Flushes the file's data and metadata to disk.
    pub fn sync(&self) -> Result<()> {
        self.file.sync().map_err(at(&self.path))
    }

    /// A reader on the same file, for a streaming download.
    pub fn reader(&self) -> Result<ReadHandle> {
        self.file.reader().map_err(at(&self.path))
    }

    /// Closes the file: one published when it is closed (an upload to an object store)
    /// is published now, atomically; a file it replaced gives its space back.
    /// One whose writes did not all land is not published: it stays a partial upload.
    pub fn close(&self) -> Result<()> {
        if self.failed.load(Ordering::Relaxed) && self.file.kept_if_dropped().is_some() {
            return Err(StorageError::Incomplete {
                path: self.path.clone(),
            });
        }
        let _sizes = self.state.lock_sizes();
        if let Some(published) = self.file.finish()? {
            if let Some(replaced) = published.replaced {
                self.state.ledger.release_entry(replaced.cost());
            }
            published.durable.map_err(at(&self.path))?;
        }
        Ok(())
    }

    fn len(&self) -> Result<u64> {
        Ok(self
            .file
            .stat(self.path.as_str())
            .map_err(at(&self.path))?
            .size)
    }

    /// The file's length, if it still has a name; `Deleted` once its last name is gone.
    ///
    /// Deletes, renames and published uploads give a file's length back as they take its
    /// last name, under the size lock, which the caller proves it holds. Checked under
    /// that same lock, a file with a name here keeps it until the caller's change is
    /// booked, and one without was already given back: changing it would book bytes (or
    /// give them back a second time) for a file the user can neither see nor delete.
    fn named_len(&self, _sizes: &MutexGuard<'_, ()>) -> Result<u64> {
        self.file
            .named_len()
            .map_err(at(&self.path))?
            .ok_or_else(|| StorageError::Deleted {
                path: self.path.clone(),
            })
    }

    fn check_writable(&self) -> Result<()> {
        if !self.writable {
            return Err(StorageError::Denied {
                path: self.path.clone(),
                reason: "not opened for writing",
            });
        }
        Ok(())
    }
}

impl Drop for OpenFile {
    /// A file published at close that never was keeps only what its backend kept (whole
    /// parts, on a store), counted as a partial upload: the booking of the rest goes back.
    fn drop(&mut self) {
        let Some(kept) = self.file.kept_if_dropped() else {
            return;
        };
        let _sizes = self.state.lock_sizes();
        if let Ok(Some(len)) = self.file.named_len()
            && len > kept
        {
            self.state.ledger.release(file_cost(len) - file_cost(kept));
        }
    }
}

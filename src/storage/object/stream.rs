//! A new file written through an SFTP handle on the object store: its writes stream into
//! a multipart upload to the final key ([`StagedUpload`]), and it is published when the
//! handle is closed, atomically: nothing is under the key before that.
//!
//! Writes are expected in order from offset 0. One that arrives ahead of the bytes
//! received so far (a client that pipelines its writes may have them run out of order)
//! is held in memory, up to [`REORDER_BOUND`] bytes per handle, and applied as soon as
//! the gap before it is filled. A write beyond that bound, or one into bytes already
//! received, is refused as unsupported: the store cannot write in place.

use std::collections::BTreeMap;
use std::io;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use super::multipart::StagedUpload;
use crate::storage::backend::{FileHandle, Published, Replace, StagedFile};
use crate::storage::error::Declined;
use crate::storage::read::ReadHandle;
use crate::storage::{Entry, EntryKind, Result, StorageError, VirtualPath};

/// Bytes one handle may hold ahead of a gap. OpenSSH `sftp` keeps up to 64 writes of
/// 32 KiB in flight, 2 MiB; twice that leaves room for other pipelining clients.
pub const REORDER_BOUND: usize = 4 << 20;

/// An SFTP upload to the object store, as [`Backend::open`](crate::storage::Backend::open)
/// creates it.
#[derive(Debug)]
pub(super) struct StreamFile {
    upload: StagedUpload,
    path: VirtualPath,
    inner: Mutex<Order>,
}

#[derive(Debug, Default)]
struct Order {
    /// Bytes received in order, sent to the upload (or pending in it).
    next: u64,
    /// Writes ahead of `next`, by offset; never overlapping.
    ahead: BTreeMap<u64, Vec<u8>>,
    /// Bytes in `ahead`.
    held: usize,
    /// The end of the furthest write received: the file's length so far.
    end: u64,
    /// Published, or refused for good: nothing more may change it.
    closed: bool,
}

fn declined(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::Unsupported, Declined(what))
}

fn lock(mutex: &Mutex<Order>) -> MutexGuard<'_, Order> {
    // Every change leaves the order whole before anything can panic.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl StreamFile {
    pub(super) fn new(upload: StagedUpload, path: VirtualPath) -> StreamFile {
        StreamFile {
            upload,
            path,
            inner: Mutex::default(),
        }
    }

    /// Sends the held writes that now follow on from `next`.
    fn drain(&self, order: &mut Order) -> io::Result<()> {
        while let Some(entry) = order.ahead.first_entry() {
            if *entry.key() != order.next {
                break;
            }
            let data = entry.remove();
            order.held -= data.len();
            self.upload.write_at(order.next, &data)?;
            order.next += data.len() as u64;
        }
        Ok(())
    }
}

impl FileHandle for StreamFile {
    fn read_at(&self, _offset: u64, _buf: &mut [u8]) -> io::Result<usize> {
        Err(declined(
            "reading a file on the object store before its upload is closed",
        ))
    }

    fn write_all_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        let mut order = lock(&self.inner);
        if order.closed {
            return Err(declined("writing to an upload that is already closed"));
        }
        if data.is_empty() {
            return Ok(());
        }
        let end = offset.saturating_add(data.len() as u64);
        if offset < order.next {
            return Err(declined(
                "writing again over bytes already sent to the object store",
            ));
        }
        if offset > order.next {
            let overlaps = order
                .ahead
                .range(..end)
                .next_back()
                .is_some_and(|(at, d)| at.saturating_add(d.len() as u64) > offset);
            if overlaps {
                return Err(declined(
                    "overlapping writes ahead of the data received so far",
                ));
            }
            if order.held + data.len() > REORDER_BOUND {
                return Err(declined(
                    "a write this far ahead of the data received so far on the object store",
                ));
            }
            order.ahead.insert(offset, data.to_vec());
            order.held += data.len();
            order.end = order.end.max(end);
            return Ok(());
        }
        if let Some((&at, _)) = order.ahead.first_key_value()
            && at < end
        {
            return Err(declined(
                "overlapping writes ahead of the data received so far",
            ));
        }
        self.upload.write_at(offset, data)?;
        order.next = end;
        order.end = order.end.max(end);
        self.drain(&mut order)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        if len == lock(&self.inner).end {
            return Ok(());
        }
        Err(declined(
            "changing the length of an upload to the object store",
        ))
    }

    fn stat(&self, name: &str) -> io::Result<Entry> {
        let end = lock(&self.inner).end;
        let mtime = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        Ok(Entry::new(name, EntryKind::File, end, mtime))
    }

    fn named_len(&self) -> io::Result<Option<u64>> {
        let order = lock(&self.inner);
        Ok((!order.closed).then_some(order.end))
    }

    fn set_permissions(&self, _mode: u32) -> io::Result<()> {
        // An object store keeps no permission bits.
        Ok(())
    }

    fn set_mtime(&self, _mtime: SystemTime) -> io::Result<()> {
        Err(declined("setting times on the object store"))
    }

    fn sync(&self) -> io::Result<()> {
        // Each part is durable once the store answered; the rest goes at close.
        Ok(())
    }

    fn reader(&self) -> io::Result<ReadHandle> {
        Err(declined(
            "reading a file on the object store before its upload is closed",
        ))
    }

    fn finish(&self) -> Result<Option<Published>> {
        let mut order = lock(&self.inner);
        if order.closed {
            return Ok(None);
        }
        if !order.ahead.is_empty() {
            return Err(StorageError::Unsupported {
                path: self.path.clone(),
                what: "closing an upload to the object store with a gap in its data",
            });
        }
        let published = self.upload.publish(&self.path, Replace::Never)?;
        order.closed = true;
        Ok(Some(published))
    }

    fn kept_if_dropped(&self) -> Option<u64> {
        if lock(&self.inner).closed {
            return None;
        }
        Some(self.upload.held().unwrap_or(0))
    }
}

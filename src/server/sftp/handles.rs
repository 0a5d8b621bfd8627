//! The handles of an SFTP session: open files, open directories read in READDIR-sized
//! batches, and the slots that cap handles across all the channels of a connection.

use std::collections::{HashMap, VecDeque};
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use super::codec::{self, MAX_PACKET, NameEntry, StatusCode};
use super::longname::longname;
use super::ops::attrs_of;
use crate::server::budget::{self, Charge, ConnectionAccount, Kind};
use crate::storage::{DirStream, Entry, HomeDir, OpenFile, StorageError, VirtualPath};

/// Handles one SFTP channel may hold open at once.
pub const MAX_HANDLES: usize = 256;
/// Handles all the SFTP channels of one connection may hold open at once. A directory
/// handle holds two descriptors, a file one.
pub const MAX_HANDLES_PER_CONNECTION: usize = 256;
/// Entries in one READDIR reply, as OpenSSH's server sends.
const READDIR_BATCH: usize = 100;

/// An open file, shared by the requests running on it.
pub(super) struct FileHandle {
    pub(super) file: OpenFile,
    pub(super) opened: Instant,
    pub(super) read: AtomicU64,
    pub(super) written: AtomicU64,
}

/// An open directory, read from the directory itself in READDIR-sized batches, so that
/// a handle costs one read buffer however large the directory is.
pub(super) struct DirHandle {
    pub(super) path: VirtualPath,
    /// `.` and `..` at first; later, the entry that did not fit in the last reply.
    pub(super) held: VecDeque<Entry>,
    /// `None` once the directory has been read to its end.
    pub(super) stream: Option<DirStream>,
}

impl DirHandle {
    pub(super) fn next_entry(&mut self) -> Result<Option<Entry>, StorageError> {
        if let Some(entry) = self.held.pop_front() {
            return Ok(Some(entry));
        }
        let Some(stream) = &mut self.stream else {
            return Ok(None);
        };
        match stream.next() {
            Some(entry) => entry.map(Some),
            None => {
                // Give the descriptor back now rather than at CLOSE.
                self.stream = None;
                Ok(None)
            }
        }
    }
}

pub(super) enum Handle {
    File(Arc<FileHandle>),
    Dir(Arc<Mutex<DirHandle>>),
}

/// An open handle, with the connection-wide slot it takes.
pub(super) struct Held {
    pub(super) handle: Handle,
    pub(super) _slot: HandleSlot,
}

#[derive(Default)]
pub(super) struct Handles {
    pub(super) next: u32,
    pub(super) open: HashMap<Vec<u8>, Held>,
}

/// Handles open on all the SFTP channels of one connection, so that a client cannot
/// multiply [`MAX_HANDLES`] (and the descriptors behind it) by opening more channels;
/// and the connection's memory account, which every channel charges.
#[derive(Clone, Debug)]
pub struct ConnectionHandles {
    open: Arc<AtomicUsize>,
    account: Arc<ConnectionAccount>,
}

/// One handle counted in [`ConnectionHandles`], until dropped; a directory handle's read
/// buffer is charged to the connection's account with it.
pub(super) struct HandleSlot {
    open: Arc<AtomicUsize>,
    memory: Option<Charge>,
}

impl ConnectionHandles {
    pub fn new(account: Arc<ConnectionAccount>) -> ConnectionHandles {
        ConnectionHandles {
            open: Arc::default(),
            account,
        }
    }

    pub fn account(&self) -> &Arc<ConnectionAccount> {
        &self.account
    }

    pub(super) fn take(&self) -> Option<HandleSlot> {
        let taken = self
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_HANDLES_PER_CONNECTION).then_some(n + 1)
            })
            .is_ok();
        taken.then(|| HandleSlot {
            open: Arc::clone(&self.open),
            memory: None,
        })
    }

    /// Charges a directory handle's read buffer to `slot`; `None` if the connection's
    /// memory share has no room for it.
    pub(super) fn charge_dir(&self, slot: &mut HandleSlot) -> Option<()> {
        slot.memory = Some(self.account.try_charge(Kind::Held, budget::DIR_HANDLE)?);
        Some(())
    }
}

impl Drop for HandleSlot {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
    }
}

impl DirHandle {
    /// Opens a directory for READDIR, `.` and `..` first, as `ls -a` expects.
    pub(super) fn open(home: &HomeDir, path: &VirtualPath) -> Result<DirHandle, StorageError> {
        let stream = home.open_dir(path)?;
        Ok(DirHandle {
            path: path.clone(),
            held: VecDeque::from(home.dots(path)?),
            stream: Some(stream),
        })
    }

    /// The reply to one READDIR: the next entries, or EOF at the end.
    pub(super) fn read_batch(
        &mut self,
        id: u32,
        user: &str,
        now: i64,
    ) -> Result<Vec<u8>, StorageError> {
        let mut batch = Vec::new();
        let mut size = 0;
        while batch.len() < READDIR_BATCH {
            let Some(entry) = self.next_entry()? else {
                break;
            };
            let line = longname(entry.name.as_bytes(), &entry, user, now);
            size += entry.name.len() + line.len() + 64;
            if size > MAX_PACKET / 2 && !batch.is_empty() {
                self.held.push_front(entry);
                break;
            }
            batch.push((entry, line));
        }
        if batch.is_empty() {
            return Ok(codec::status(id, StatusCode::Eof, "End of file"));
        }
        let names: Vec<NameEntry<'_>> = batch
            .iter()
            .map(|(entry, line)| NameEntry {
                filename: entry.name.as_bytes(),
                longname: line,
                attrs: attrs_of(entry),
            })
            .collect();
        Ok(codec::names(id, &names))
    }
}

//! What a listing or a `stat` reports of one entry: what every backend knows (kind,
//! size, modification time), and the POSIX details that only a filesystem has.

use std::ffi::OsString;

use super::quota::{QUOTA_BLOCK, file_cost};

/// What a directory entry or a `stat` reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The final component in a listing; the path as asked for `stat`.
    pub name: OsString,
    pub kind: EntryKind,
    /// Length in bytes.
    pub size: u64,
    /// Last modification, in Unix seconds.
    pub mtime: i64,
    /// What a POSIX filesystem adds; `None` on a backend that has no such thing (an
    /// object store), where [`Entry::mode`] and the others give defaults.
    pub posix: Option<PosixDetails>,
}

/// The details of an entry that only a POSIX filesystem keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PosixDetails {
    /// `st_mode`: the file type and permission bits, as SFTP wants them.
    pub mode: u32,
    /// Hard links (for a directory, 2 plus its subdirectories), as `ls -l` shows.
    pub nlink: u64,
    /// The owner and group ids on disk (the server's account, not the user's).
    pub uid: u32,
    pub gid: u32,
    /// Last access, in Unix seconds.
    pub atime: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    Dir,
    File,
    Symlink,
    Other,
}

/// The `st_mode` file-type bits of each kind.
const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;

impl Entry {
    /// An entry with no POSIX details.
    pub fn new(name: impl Into<OsString>, kind: EntryKind, size: u64, mtime: i64) -> Entry {
        Entry {
            name: name.into(),
            kind,
            size,
            mtime,
            posix: None,
        }
    }

    /// `st_mode`: the POSIX one where there is one, otherwise the kind's type bits with
    /// `0o755` for a folder, `0o777` for a link and `0o644` for anything else.
    pub fn mode(&self) -> u32 {
        if let Some(posix) = &self.posix {
            return posix.mode;
        }
        match self.kind {
            EntryKind::Dir => S_IFDIR | 0o755,
            EntryKind::File => S_IFREG | 0o644,
            EntryKind::Symlink => S_IFLNK | 0o777,
            EntryKind::Other => 0o644,
        }
    }

    /// Hard links, or 1 (2 for a folder) without POSIX details.
    pub fn nlink(&self) -> u64 {
        match (&self.posix, self.kind) {
            (Some(posix), _) => posix.nlink,
            (None, EntryKind::Dir) => 2,
            (None, _) => 1,
        }
    }

    /// The owner and group ids, if the backend has them.
    pub fn owner(&self) -> Option<(u32, u32)> {
        self.posix.map(|p| (p.uid, p.gid))
    }

    /// Last access, or the modification time without POSIX details.
    pub fn atime(&self) -> i64 {
        self.posix.map_or(self.mtime, |p| p.atime)
    }

    /// What the entry costs by the quota rule: a regular file its length rounded up to
    /// whole blocks, anything else one block.
    pub fn cost(&self) -> u64 {
        match self.kind {
            EntryKind::File => file_cost(self.size),
            _ => QUOTA_BLOCK,
        }
    }
}

//! What a listing or a `stat` reports of one entry.

use std::ffi::OsString;

use cap_std::fs::{Metadata, MetadataExt as _};

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
    /// `st_mode`: the file type and permission bits, as SFTP wants them.
    pub mode: u32,
    /// Last access, in Unix seconds.
    pub atime: i64,
    /// Hard links (for a directory, 2 plus its subdirectories), as `ls -l` shows.
    pub nlink: u64,
    /// The owner and group ids on disk (the server's account, not the user's).
    pub uid: u32,
    pub gid: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    Dir,
    File,
    Symlink,
    Other,
}

impl Entry {
    pub(super) fn new(name: impl Into<OsString>, meta: &Metadata) -> Entry {
        let kind = meta.file_type();
        let kind = if kind.is_dir() {
            EntryKind::Dir
        } else if kind.is_file() {
            EntryKind::File
        } else if kind.is_symlink() {
            EntryKind::Symlink
        } else {
            EntryKind::Other
        };
        Entry {
            name: name.into(),
            kind,
            size: meta.len(),
            mtime: meta.mtime(),
            mode: meta.mode(),
            atime: meta.atime(),
            nlink: meta.nlink(),
            uid: meta.uid(),
            gid: meta.gid(),
        }
    }
}

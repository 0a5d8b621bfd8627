//! The local-disk [`Backend`](super::Backend): each home is a cap-std [`Dir`] opened on
//! the user's folder, so the kernel resolves every path *beneath* it and symbolic links
//! that lead out are refused; partial uploads wait in the user's staging folder outside
//! the home, and are published by one `renameat` into it.

use cap_std::fs::{Metadata, MetadataExt as _};

use super::{Entry, EntryKind, PosixDetails};

/// Describes the entry `meta` under `name`.
pub(super) fn entry_of(name: impl Into<std::ffi::OsString>, meta: &Metadata) -> Entry {
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
        posix: Some(PosixDetails {
            mode: meta.mode(),
            nlink: meta.nlink(),
            uid: meta.uid(),
            gid: meta.gid(),
            atime: meta.atime(),
        }),
    }
}

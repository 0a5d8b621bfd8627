//! Between SFTP's wire values and the storage core's: open flags as [`OpenOptions`],
//! an [`Entry`] as [`Attrs`].

use super::codec::{Attrs, pflags};
use crate::storage::{Entry, OpenOptions};

pub(super) fn open_options(flags: u32) -> OpenOptions {
    OpenOptions {
        read: flags & pflags::READ != 0,
        write: flags & pflags::WRITE != 0,
        create: flags & pflags::CREAT != 0,
        truncate: flags & pflags::TRUNC != 0,
        // O_EXCL means something only with O_CREAT.
        exclusive: flags & pflags::EXCL != 0 && flags & pflags::CREAT != 0,
        append: flags & pflags::APPEND != 0,
    }
}

pub(super) fn attrs_of(entry: &Entry) -> Attrs {
    let clamp = |t: i64| u32::try_from(t.max(0)).unwrap_or(u32::MAX);
    Attrs {
        size: Some(entry.size),
        uid_gid: entry.owner(),
        permissions: Some(entry.mode()),
        times: Some((clamp(entry.atime()), clamp(entry.mtime))),
    }
}

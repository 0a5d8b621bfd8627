//! What can go wrong in the storage core, in words fit for the user.
//!
//! Every error names the path as the user sees it ([`VirtualPath`]), never the server's
//! real path, so messages can be sent to clients as they are.

use std::io;

use super::{QuotaExceeded, VirtualPath};
use crate::protocol::Md5Digest;

/// A failed storage operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The path has a control character, or a name or the whole is too long.
    #[error("bad path: {reason}")]
    BadPath { reason: &'static str },

    #[error("no such file or directory: {path}")]
    NotFound { path: VirtualPath },

    #[error("already exists: {path}")]
    Exists { path: VirtualPath },

    #[error("not a directory: {path}")]
    NotADirectory { path: VirtualPath },

    #[error("is a directory: {path}")]
    IsADirectory { path: VirtualPath },

    #[error("directory not empty: {path}")]
    NotEmpty { path: VirtualPath },

    /// Outside the home (a symbolic link that leads out), a reserved name, or not
    /// permitted by the filesystem.
    #[error("permission denied: {path} ({reason})")]
    Denied {
        path: VirtualPath,
        reason: &'static str,
    },

    /// Not something the filesystem can do, such as moving a folder into itself.
    #[error("not possible for {path}: {reason}")]
    Invalid {
        path: VirtualPath,
        reason: &'static str,
    },

    /// An open file lost its last name (it was deleted, or another file was renamed or
    /// published over it), so its handle may no longer change it.
    #[error("deleted or replaced since it was opened: {path}")]
    Deleted { path: VirtualPath },

    #[error(transparent)]
    Quota(#[from] QuotaExceeded),

    /// Another session is uploading the same file right now.
    #[error("an upload of {path} is already in progress")]
    Busy { path: VirtualPath },

    /// The uploaded bytes do not have the MD5 the client announced; nothing was published.
    #[error("checksum mismatch for {path}: expected {expected}, got {actual}; not published")]
    Checksum {
        path: VirtualPath,
        expected: Md5Digest,
        actual: Md5Digest,
    },

    /// A resumed upload asked to start somewhere other than 0 or what the server holds.
    #[error("bad offset {offset} for {path}: the server holds {held} bytes")]
    BadOffset {
        path: VirtualPath,
        offset: u64,
        held: u64,
    },

    /// An upload received more, or finished with fewer, bytes than it announced.
    #[error("size mismatch for {path}: announced {size} bytes, got {received}")]
    SizeMismatch {
        path: VirtualPath,
        size: u64,
        received: u64,
    },

    /// Not something this home's storage can do, such as a write into the middle of a
    /// file on an object store.
    #[error("not supported by this storage: {what} ({path})")]
    Unsupported {
        path: VirtualPath,
        what: &'static str,
    },

    /// An upload published at close lost a write that was refused or failed, so it was
    /// not published: nothing is under its name.
    #[error("not published, since a write to it failed: {path}")]
    Incomplete { path: VirtualPath },

    /// The filesystem holding the homes is full (ENOSPC): the server's disk, not the
    /// user's quota. What was written before stays, so an upload can resume.
    #[error("no space left on the server's disk: {path}")]
    NoSpace { path: VirtualPath },

    /// Anything else the filesystem refused; the details are in `source`, for the log.
    #[error("i/o error on {path}")]
    Io {
        path: VirtualPath,
        #[source]
        source: io::Error,
    },
}

/// What a backend cannot do, carried in an [`io::Error`] of kind `Unsupported` so that
/// [`StorageError::from_io`] makes it [`StorageError::Unsupported`] with this text.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Declined(pub &'static str);

impl StorageError {
    /// Classifies an I/O error from an operation on `path`.
    pub fn from_io(path: &VirtualPath, err: io::Error) -> StorageError {
        let path = path.clone();
        if let Some(Declined(what)) = err.get_ref().and_then(|e| e.downcast_ref::<Declined>()) {
            return StorageError::Unsupported { path, what };
        }
        match err.kind() {
            io::ErrorKind::NotFound => StorageError::NotFound { path },
            io::ErrorKind::AlreadyExists => StorageError::Exists { path },
            io::ErrorKind::NotADirectory => StorageError::NotADirectory { path },
            io::ErrorKind::IsADirectory => StorageError::IsADirectory { path },
            io::ErrorKind::DirectoryNotEmpty => StorageError::NotEmpty { path },
            // cap-std reports an escape from the home as a PermissionDenied of its own
            // making, with no OS error code behind it.
            io::ErrorKind::PermissionDenied if err.raw_os_error().is_none() => {
                StorageError::Denied {
                    path,
                    reason: "leads outside the home",
                }
            }
            io::ErrorKind::PermissionDenied => StorageError::Denied {
                path,
                reason: "not permitted",
            },
            // EINVAL: a request the filesystem can never carry out, however often it is
            // tried; the user's doing, not the server's, so not an I/O error for the log.
            io::ErrorKind::InvalidInput => StorageError::Invalid {
                path,
                reason: "invalid argument",
            },
            io::ErrorKind::StorageFull => StorageError::NoSpace { path },
            _ if is_symlink_loop(&err) => StorageError::Denied {
                path,
                reason: "too many levels of symbolic links",
            },
            _ => StorageError::Io { path, source: err },
        }
    }
}

/// `ErrorKind::FilesystemLoop` (ELOOP) is not stable yet, and ELOOP's number differs
/// between architectures, so recognise the kind by its name.
fn is_symlink_loop(err: &io::Error) -> bool {
    format!("{:?}", err.kind()) == "FilesystemLoop"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_io_kinds_to_variants() {
        let p = VirtualPath::resolve(&VirtualPath::root(), "/a/b").unwrap();
        let map = |kind| StorageError::from_io(&p, io::Error::from(kind));
        assert!(matches!(
            map(io::ErrorKind::NotFound),
            StorageError::NotFound { .. }
        ));
        assert!(matches!(
            map(io::ErrorKind::AlreadyExists),
            StorageError::Exists { .. }
        ));
        assert!(matches!(
            map(io::ErrorKind::DirectoryNotEmpty),
            StorageError::NotEmpty { .. }
        ));
        assert!(matches!(
            map(io::ErrorKind::InvalidInput),
            StorageError::Invalid { .. }
        ));
        // EINVAL, as rename(2) returns it for a folder moved into itself, is 22 on Linux.
        #[cfg(target_os = "linux")]
        assert!(matches!(
            StorageError::from_io(&p, io::Error::from_raw_os_error(22)),
            StorageError::Invalid { .. }
        ));
        assert!(matches!(
            map(io::ErrorKind::StorageFull),
            StorageError::NoSpace { .. }
        ));
        // ENOSPC is 28 on Linux.
        #[cfg(target_os = "linux")]
        assert_eq!(
            StorageError::from_io(&p, io::Error::from_raw_os_error(28)).to_string(),
            "no space left on the server's disk: /a/b"
        );
        // ELOOP is 40 on the common Linux targets.
        #[cfg(all(
            target_os = "linux",
            any(target_arch = "x86_64", target_arch = "aarch64")
        ))]
        assert!(matches!(
            StorageError::from_io(&p, io::Error::from_raw_os_error(40)),
            StorageError::Denied { .. }
        ));
    }

    #[test]
    fn messages_name_the_virtual_path() {
        let p = VirtualPath::resolve(&VirtualPath::root(), "/a/b").unwrap();
        let err = StorageError::from_io(&p, io::Error::from(io::ErrorKind::NotFound));
        assert_eq!(err.to_string(), "no such file or directory: /a/b");
        let escape = io::Error::new(io::ErrorKind::PermissionDenied, "a path led outside");
        assert_eq!(
            StorageError::from_io(&p, escape).to_string(),
            "permission denied: /a/b (leads outside the home)"
        );
        let quota = StorageError::from(QuotaExceeded::Bytes {
            need: 1048576,
            used: 524288,
            limit: 1048576,
        });
        assert_eq!(
            quota.to_string(),
            "quota exceeded: need 1048576 bytes, used 524288 of 1048576 bytes"
        );
    }
}

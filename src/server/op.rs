//! The operation layer: what every front end (rsftp, SFTP, SCP and the hash commands)
//! goes through to act on a user's home.
//!
//! - [`resolve`] turns a path the user sent into a [`VirtualPath`] in their view, the
//!   one way every front end does it;
//! - [`Ops::blocking`] runs storage work off the reactor;
//! - [`classify`] sorts a [`StorageError`] once into a [`Fault`], a storage-level kind
//!   that each protocol maps to its own code (`replies`: rsftp `ERR <code>`, SFTP
//!   status; SCP sends the message as its error line; the hash commands answer with
//!   coreutils' wording and exit status 1), and warns about an I/O error, whose details
//!   only the log may see;
//! - [`Ops::log`] writes the one operation line, with the same fields for every front
//!   end, through the session's [`OpLog`].
//!
//! A new front end plugs in here: it resolves, calls storage, classifies and logs
//! through these, and maps [`Fault`] to its own codes.

use std::sync::Arc;
use std::time::Instant;

use tracing::warn;

use super::oplog::OpLog;
use crate::storage::{HomeDir, StorageError, VirtualPath};

/// What kind of failure a storage error is, whichever protocol reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    BadPath,
    NotFound,
    Exists,
    NotADirectory,
    IsADirectory,
    NotEmpty,
    Denied,
    Quota,
    Busy,
    Checksum,
    /// The request itself does not fit the file (a bad offset, a size that does not
    /// match, an argument storage refuses).
    BadRequest,
    /// The storage backend cannot do this (an object store declines in-place writes, for
    /// one); SFTP has a code for it, rsftp treats it as a bad request.
    Unsupported,
    /// The disk is full: the server could not do it, and the message says why.
    NoSpace,
    /// The server could not do it; the details are in the log only.
    Io,
}

impl Fault {
    /// The kind of `err`. Deliberately exhaustive: a new storage error must choose.
    pub(crate) fn of(err: &StorageError) -> Fault {
        match err {
            StorageError::BadPath { .. } => Fault::BadPath,
            StorageError::NotFound { .. } | StorageError::Deleted { .. } => Fault::NotFound,
            StorageError::Exists { .. } => Fault::Exists,
            StorageError::NotADirectory { .. } => Fault::NotADirectory,
            StorageError::IsADirectory { .. } => Fault::IsADirectory,
            StorageError::NotEmpty { .. } => Fault::NotEmpty,
            StorageError::Denied { .. } => Fault::Denied,
            StorageError::Quota(_) => Fault::Quota,
            StorageError::Busy { .. } => Fault::Busy,
            StorageError::Checksum { .. } => Fault::Checksum,
            StorageError::Invalid { .. }
            | StorageError::BadOffset { .. }
            | StorageError::SizeMismatch { .. }
            | StorageError::Incomplete { .. } => Fault::BadRequest,
            StorageError::Unsupported { .. } => Fault::Unsupported,
            StorageError::NoSpace { .. } => Fault::NoSpace,
            StorageError::Io { .. } => Fault::Io,
        }
    }
}

/// A storage error, classified: its kind and what the user may read of it. The message
/// carries only the user's view of paths; the server's real paths never leave it.
pub(crate) struct Refusal {
    pub fault: Fault,
    pub message: String,
}

/// What the user may read about `err`, without logging anything.
pub(crate) fn describe(err: &StorageError) -> Refusal {
    let message = match err {
        // The io::Error may name things the user should not see; it goes to the log.
        StorageError::Io { path, .. } => format!("input/output error: {path}"),
        other => other.to_string(),
    };
    Refusal {
        fault: Fault::of(err),
        message,
    }
}

/// Classifies a storage error that is about to be reported to the user, and warns
/// about it in the log if it is an I/O error: the one place that does.
pub(crate) fn classify(err: &StorageError) -> Refusal {
    if let StorageError::Io { source, .. } = err {
        warn!(error = %source, "storage I/O error");
    }
    describe(err)
}

/// A path the user sent, resolved in their view from `cwd`.
pub(crate) fn resolve(cwd: &VirtualPath, input: &str) -> Result<VirtualPath, StorageError> {
    VirtualPath::resolve(cwd, input)
}

/// A path the user sent, from `/` (their home).
pub(crate) fn resolve_from_root(input: &str) -> Result<VirtualPath, StorageError> {
    resolve(&VirtualPath::root(), input)
}

/// What one front end's session acts through: the user's home and the session's
/// operation log, with the front end's name for the log.
#[derive(Clone)]
pub(crate) struct Ops {
    home: HomeDir,
    oplog: Arc<OpLog>,
    proto: &'static str,
}

impl Ops {
    pub(crate) fn new(home: HomeDir, oplog: Arc<OpLog>, proto: &'static str) -> Ops {
        Ops { home, oplog, proto }
    }

    pub(crate) fn home(&self) -> &HomeDir {
        &self.home
    }

    /// Runs blocking storage work off the reactor. The outer error is the task's own
    /// failure (a panic), which each front end treats as the channel's.
    pub(crate) async fn blocking<T, F>(
        &self,
        work: F,
    ) -> Result<Result<T, StorageError>, tokio::task::JoinError>
    where
        F: FnOnce(&HomeDir) -> Result<T, StorageError> + Send + 'static,
        T: Send + 'static,
    {
        let home = self.home.clone();
        tokio::task::spawn_blocking(move || work(&home)).await
    }

    /// The one operation line of a finished request: `error` is `None` for success.
    /// `path` is in the user's view ("" for none).
    pub(crate) fn log(
        &self,
        op: &str,
        path: &str,
        bytes: u64,
        started: Instant,
        error: Option<&str>,
    ) {
        self.oplog
            .record(self.proto, op, path, bytes, started.elapsed(), error);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_name_only_the_users_path() {
        let path = VirtualPath::resolve(&VirtualPath::root(), "a/b").expect("a valid path");
        let err = StorageError::Io {
            path: path.clone(),
            source: std::io::Error::other("/srv/storage/alice/a/b: disk on fire"),
        };
        let refusal = describe(&err);
        assert_eq!(refusal.fault, Fault::Io);
        assert_eq!(refusal.message, "input/output error: /a/b");
        assert!(!refusal.message.contains("/srv"));
    }

    #[test]
    fn other_errors_keep_their_message() {
        let path = VirtualPath::resolve(&VirtualPath::root(), "x").expect("a valid path");
        let err = StorageError::NotFound { path };
        let refusal = describe(&err);
        assert_eq!(refusal.fault, Fault::NotFound);
        assert_eq!(refusal.message, err.to_string());
    }

    #[test]
    fn resolving_stays_in_the_home() {
        let path = resolve_from_root("../../etc/passwd").expect("clamped at /");
        assert_eq!(path.as_str(), "/etc/passwd");
        let cwd = resolve_from_root("/a").expect("a valid path");
        assert_eq!(resolve(&cwd, "b").expect("relative").as_str(), "/a/b");
    }
}

//! What can go wrong while editing `users.toml`.

use std::io;
use std::path::PathBuf;

use crate::auth::keys::KeyError;
use crate::auth::size::SizeError;
use crate::auth::users::{UserNameError, UsersError};

/// Why an edit of `users.toml` was refused or failed. In every case the file on disk is
/// left as it was.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EditError {
    #[error("{}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "{} is held by another `rsftpd user` command; try again when it has finished",
        path.display()
    )]
    Locked { path: PathBuf },
    #[error("{} does not exist", path.display())]
    Missing { path: PathBuf },
    /// The file as found on disk does not parse; nothing is changed until it is fixed.
    #[error("the accounts file is invalid; fix it first")]
    Invalid(#[source] UsersError),
    /// The change would make the file invalid (a safeguard: the checks below come first).
    #[error("the change was not made, because the file would then be invalid")]
    Rejected(#[source] UsersError),
    #[error("this copy of the accounts file was opened read-only")]
    ReadOnly,
    #[error(transparent)]
    BadName(#[from] UserNameError),
    #[error("no user {0:?}")]
    UnknownUser(String),
    #[error("user {0:?} already exists")]
    UserExists(String),
    #[error(
        "user {name:?} differs from the existing user {existing:?} only in letter case; \
         their homes would clash on a case-insensitive file system"
    )]
    NameClash { name: String, existing: String },
    #[error("quota {value:?}")]
    BadQuota {
        value: String,
        #[source]
        source: SizeError,
    },
    #[error("max sessions must be at least 1")]
    BadMaxSessions,
    #[error("max files must be from 1 to {max}, not {0}", max = i64::MAX)]
    BadMaxFiles(u64),
    #[error("{origin}:{line}")]
    BadKey {
        origin: String,
        line: usize,
        #[source]
        source: KeyError,
    },
    #[error("{origin}: no public key in it")]
    NoKey { origin: String },
    #[error("user {user:?} already has the key {fingerprint}")]
    DuplicateKey { user: String, fingerprint: String },
    #[error("user {user:?} has no key {fingerprint}")]
    UnknownKey { user: String, fingerprint: String },
    #[error(
        "the key {fingerprint} of user {user:?} comes from {}; remove it from that file",
        file.display()
    )]
    KeyInFile {
        user: String,
        fingerprint: String,
        file: PathBuf,
    },
    /// The file is valid, but written in a shape this editor does not change (for
    /// example an account given as something other than a table).
    #[error("cannot edit {what} of user {user:?} as written; edit the file by hand")]
    Unsupported { user: String, what: &'static str },
}

//! Why the server could not start.

use std::path::PathBuf;

use crate::auth::UsersError;
use crate::storage::StorageError;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("host key {path}: {message}")]
    HostKey { path: PathBuf, message: String },
    #[error(
        "{path}{}: mode {mode:04o} lets group or others read or write it; fix it with \
         `chmod 600 {path}` (or start with --allow-open-permissions)",
        link_note(.target)
    )]
    OpenPermissions {
        path: PathBuf,
        /// The file behind `path`, when `path` is a symbolic link.
        target: Option<PathBuf>,
        mode: u32,
    },
    #[error(transparent)]
    Users(#[from] UsersError),
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// How [`ServerError::OpenPermissions`] names a file reached through a link.
fn link_note(target: &Option<PathBuf>) -> String {
    match target {
        Some(real) => format!(" (a link to {})", real.display()),
        None => String::new(),
    }
}

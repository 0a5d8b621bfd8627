//! The object store's errors, as the storage core reports them.

use crate::storage::{StorageError, VirtualPath};

/// Why the object store could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ObjectError {
    /// The configuration is wrong: a bad URL, flag or environment variable.
    #[error("object store configuration: {0}")]
    Config(String),
    /// The store did not answer, or refused the credentials.
    #[error("the object store cannot be reached or refused the request: {0}")]
    Unreachable(String),
}

/// Maps an object_store error on `path` to the storage core's; for `map_err`.
pub(super) fn store_error(
    path: &VirtualPath,
) -> impl FnOnce(object_store::Error) -> StorageError + '_ {
    move |err| classify(path, err)
}

pub(super) fn classify(path: &VirtualPath, err: object_store::Error) -> StorageError {
    let path = path.clone();
    match err {
        object_store::Error::NotFound { .. } => StorageError::NotFound { path },
        object_store::Error::AlreadyExists { .. } => StorageError::Exists { path },
        // The store's own words stay in the log; the user gets a plain I/O error.
        other => StorageError::Io {
            path,
            source: std::io::Error::other(other),
        },
    }
}

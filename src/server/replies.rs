//! The one mapping from storage errors to rsftp/1 error codes.

use crate::protocol::ErrorCode;
use crate::storage::StorageError;

/// The code and message that answer `err` on the wire. Messages carry only the user's
/// view of paths; the server's real paths never leave it.
pub fn storage_error_reply(err: &StorageError) -> (ErrorCode, String) {
    let code = match err {
        StorageError::BadPath { .. } => ErrorCode::BadPath,
        StorageError::NotFound { .. } => ErrorCode::NotFound,
        StorageError::Exists { .. } => ErrorCode::Exists,
        StorageError::NotADirectory { .. } => ErrorCode::NotADirectory,
        StorageError::IsADirectory { .. } => ErrorCode::IsADirectory,
        StorageError::NotEmpty { .. } => ErrorCode::NotEmpty,
        StorageError::Denied { .. } => ErrorCode::Denied,
        StorageError::Quota(_) => ErrorCode::Quota,
        StorageError::Busy { .. } => ErrorCode::Busy,
        StorageError::Checksum { .. } => ErrorCode::Checksum,
        StorageError::BadOffset { .. } | StorageError::SizeMismatch { .. } => ErrorCode::BadRequest,
        StorageError::Io { path, .. } => {
            // The io::Error may name things the user should not see; it goes to the log.
            return (ErrorCode::Io, format!("input/output error: {path}"));
        }
    };
    (code, err.to_string())
}

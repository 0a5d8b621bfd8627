//! The one mapping from storage errors to protocol error codes: rsftp/1 and SFTP.

use crate::protocol::ErrorCode;
use crate::protocol::sftp::StatusCode;
use crate::storage::StorageError;

/// The code and message that answer `err` on the wire. Messages carry only the user's
/// view of paths; the server's real paths never leave it.
pub fn storage_error_reply(err: &StorageError) -> (ErrorCode, String) {
    let code = match err {
        StorageError::BadPath { .. } => ErrorCode::BadPath,
        StorageError::NotFound { .. } | StorageError::Deleted { .. } => ErrorCode::NotFound,
        StorageError::Exists { .. } => ErrorCode::Exists,
        StorageError::NotADirectory { .. } => ErrorCode::NotADirectory,
        StorageError::IsADirectory { .. } => ErrorCode::IsADirectory,
        StorageError::NotEmpty { .. } => ErrorCode::NotEmpty,
        StorageError::Denied { .. } => ErrorCode::Denied,
        StorageError::Quota(_) => ErrorCode::Quota,
        StorageError::Busy { .. } => ErrorCode::Busy,
        StorageError::Checksum { .. } => ErrorCode::Checksum,
        StorageError::Invalid { .. }
        | StorageError::BadOffset { .. }
        | StorageError::SizeMismatch { .. }
        | StorageError::Unsupported { .. } => ErrorCode::BadRequest,
        // The server could not complete it, as with `io`, but the message says why: it
        // names no real path, and the user can act on it (resume later).
        StorageError::NoSpace { .. } => ErrorCode::Io,
        StorageError::Io { path, .. } => {
            // The io::Error may name things the user should not see; it goes to the log.
            return (ErrorCode::Io, format!("input/output error: {path}"));
        }
    };
    (code, err.to_string())
}

/// The SFTP v3 status that answers `err`. v3 has few codes: whatever is neither a
/// missing file nor a refusal is a `FAILURE`, and the message says which failure (the
/// quota's numbers among them), as OpenSSH's server does for errno values.
pub fn sftp_status(err: &StorageError) -> (StatusCode, String) {
    let code = match err {
        StorageError::NotFound { .. } | StorageError::Deleted { .. } => StatusCode::NoSuchFile,
        StorageError::Denied { .. } => StatusCode::PermissionDenied,
        StorageError::Unsupported { .. } => StatusCode::OpUnsupported,
        StorageError::BadPath { .. }
        | StorageError::Exists { .. }
        | StorageError::NotADirectory { .. }
        | StorageError::IsADirectory { .. }
        | StorageError::NotEmpty { .. }
        | StorageError::Invalid { .. }
        | StorageError::Quota(_)
        | StorageError::Busy { .. }
        | StorageError::Checksum { .. }
        | StorageError::BadOffset { .. }
        | StorageError::SizeMismatch { .. }
        | StorageError::NoSpace { .. } => StatusCode::Failure,
        StorageError::Io { path, .. } => {
            return (StatusCode::Failure, format!("input/output error: {path}"));
        }
    };
    (code, err.to_string())
}

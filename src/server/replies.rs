//! Each protocol's code for a storage-level [`Fault`]: rsftp/1 and SFTP. SCP sends the
//! message alone, and the hash commands their coreutils wording (in `exec`).

use super::op::{self, Fault, Refusal};
use crate::protocol::ErrorCode;
use crate::protocol::sftp::StatusCode;
use crate::storage::StorageError;

/// The code and message that answer `err` on the wire. Messages carry only the user's
/// view of paths; the server's real paths never leave it.
pub fn storage_error_reply(err: &StorageError) -> (ErrorCode, String) {
    let Refusal { fault, message } = op::describe(err);
    (rsftp_code(fault), message)
}

/// The rsftp/1 code of a fault.
pub(crate) fn rsftp_code(fault: Fault) -> ErrorCode {
    match fault {
        Fault::BadPath => ErrorCode::BadPath,
        Fault::NotFound => ErrorCode::NotFound,
        Fault::Exists => ErrorCode::Exists,
        Fault::NotADirectory => ErrorCode::NotADirectory,
        Fault::IsADirectory => ErrorCode::IsADirectory,
        Fault::NotEmpty => ErrorCode::NotEmpty,
        Fault::Denied => ErrorCode::Denied,
        Fault::Quota => ErrorCode::Quota,
        Fault::Busy => ErrorCode::Busy,
        Fault::Checksum => ErrorCode::Checksum,
        Fault::BadRequest | Fault::Unsupported => ErrorCode::BadRequest,
        // The server could not complete it, as with `io`, but the message says why: it
        // names no real path, and the user can act on it (resume later).
        Fault::NoSpace | Fault::Io => ErrorCode::Io,
    }
}

/// The SFTP v3 status of a fault. v3 has few codes: whatever is neither a missing file
/// nor a refusal is a `FAILURE`, and the message says which failure (the quota's
/// numbers among them), as OpenSSH's server does for errno values.
pub(crate) fn sftp_code(fault: Fault) -> StatusCode {
    match fault {
        Fault::NotFound => StatusCode::NoSuchFile,
        Fault::Denied => StatusCode::PermissionDenied,
        Fault::Unsupported => StatusCode::OpUnsupported,
        Fault::BadPath
        | Fault::Exists
        | Fault::NotADirectory
        | Fault::IsADirectory
        | Fault::NotEmpty
        | Fault::BadRequest
        | Fault::Quota
        | Fault::Busy
        | Fault::Checksum
        | Fault::NoSpace
        | Fault::Io => StatusCode::Failure,
    }
}

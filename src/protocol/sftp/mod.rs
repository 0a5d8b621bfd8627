//! The SFTP v3 wire format (draft-ietf-secsh-filexfer-02, plus OpenSSH's extensions),
//! in both directions: requests are decoded and encoded in `request`, replies encoded
//! and decoded in `reply`, file attributes in `attrs`, and the primitive types and
//! packet framing in `wire`. The server decodes requests and encodes replies; a client
//! does the reverse with the same types, and every message round-trips in the tests.
//! No I/O.
//!
//! Every length the peer sends is checked against what is actually there before
//! anything is allocated, and unknown packet types and extensions are kept as values so
//! that they can be answered with their own id.
//!
//! Bytes after the last field of a request are ignored (the decoder reports how many,
//! for the caller to log), as OpenSSH's sftp-server does: widely deployed clients,
//! rclone 1.60 among them, send WRITE packets that run past the data they declare. Only
//! that is lenient: a field that claims more than the packet holds, and an over-long
//! handle, are still refused.

mod attrs;
mod reply;
mod request;
mod wire;

pub use attrs::Attrs;
pub use reply::{
    Name, NameEntry, Reply, attrs, data_with, extended_strings, extended_u64s, handle, names,
    status, version,
};
pub use request::{BadPacket, Incoming, Payload, Request};
pub use wire::{PacketWriter, Reader, put_string, put_u32, put_u64};

/// The largest packet we accept or send, length field excluded: OpenSSH's own limit.
pub const MAX_PACKET: usize = 256 * 1024;
/// The most data one READ answers, and the most one WRITE should carry; what
/// `limits@openssh.com` advertises, so that clients fill packets without passing them.
pub const MAX_DATA: u32 = (MAX_PACKET - 1024) as u32;
/// Handles we give out are short; a longer one cannot be ours.
pub const MAX_HANDLE: usize = 256;
/// The protocol version we speak.
pub const VERSION: u32 = 3;

/// Packet types (draft-02 §3).
pub mod kind {
    pub const INIT: u8 = 1;
    pub const VERSION: u8 = 2;
    pub const OPEN: u8 = 3;
    pub const CLOSE: u8 = 4;
    pub const READ: u8 = 5;
    pub const WRITE: u8 = 6;
    pub const LSTAT: u8 = 7;
    pub const FSTAT: u8 = 8;
    pub const SETSTAT: u8 = 9;
    pub const FSETSTAT: u8 = 10;
    pub const OPENDIR: u8 = 11;
    pub const READDIR: u8 = 12;
    pub const REMOVE: u8 = 13;
    pub const MKDIR: u8 = 14;
    pub const RMDIR: u8 = 15;
    pub const REALPATH: u8 = 16;
    pub const STAT: u8 = 17;
    pub const RENAME: u8 = 18;
    pub const READLINK: u8 = 19;
    pub const SYMLINK: u8 = 20;
    pub const STATUS: u8 = 101;
    pub const HANDLE: u8 = 102;
    pub const DATA: u8 = 103;
    pub const NAME: u8 = 104;
    pub const ATTRS: u8 = 105;
    pub const EXTENDED: u8 = 200;
    pub const EXTENDED_REPLY: u8 = 201;
}

/// Status codes (draft-02 §7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusCode {
    Ok = 0,
    Eof = 1,
    NoSuchFile = 2,
    PermissionDenied = 3,
    Failure = 4,
    BadMessage = 5,
    NoConnection = 6,
    ConnectionLost = 7,
    OpUnsupported = 8,
}

impl StatusCode {
    /// The code a STATUS reply carries, if it is one the draft defines.
    pub fn from_u32(code: u32) -> Option<StatusCode> {
        Some(match code {
            0 => StatusCode::Ok,
            1 => StatusCode::Eof,
            2 => StatusCode::NoSuchFile,
            3 => StatusCode::PermissionDenied,
            4 => StatusCode::Failure,
            5 => StatusCode::BadMessage,
            6 => StatusCode::NoConnection,
            7 => StatusCode::ConnectionLost,
            8 => StatusCode::OpUnsupported,
            _ => return None,
        })
    }
}

/// Open flags (draft-02 §6.3).
pub mod pflags {
    pub const READ: u32 = 0x01;
    pub const WRITE: u32 = 0x02;
    pub const APPEND: u32 = 0x04;
    pub const CREAT: u32 = 0x08;
    pub const TRUNC: u32 = 0x10;
    pub const EXCL: u32 = 0x20;
}

/// Attribute flags (draft-02 §5).
mod attr_flags {
    pub const SIZE: u32 = 0x01;
    pub const UIDGID: u32 = 0x02;
    pub const PERMISSIONS: u32 = 0x04;
    pub const ACMODTIME: u32 = 0x08;
    pub const EXTENDED: u32 = 0x8000_0000;
}

/// Why a packet could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    #[error("packet too short: {0} missing")]
    Truncated(&'static str),
    #[error("handle longer than {MAX_HANDLE} bytes")]
    HandleTooLong,
    /// A reply of a type that no request is answered with.
    #[error("not a reply: packet type {0}")]
    NotAReply(u8),
}

/// Where a packet's length field says it ends, once 4 bytes of it are there.
pub fn frame_len(buf: &[u8]) -> Option<usize> {
    let bytes: [u8; 4] = buf.get(..4)?.try_into().ok()?;
    Some(u32::from_be_bytes(bytes) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_round_trip() {
        for code in 0..=8 {
            let status = StatusCode::from_u32(code).unwrap();
            assert_eq!(status as u32, code);
        }
        assert_eq!(StatusCode::from_u32(9), None);
    }

    #[test]
    fn frame_len_waits_for_four_bytes() {
        assert_eq!(frame_len(&[0, 0, 1]), None);
        assert_eq!(frame_len(&[0, 0, 1, 2, 9]), Some(258));
    }
}

//! The SFTP v3 wire format (draft-ietf-secsh-filexfer-02, plus OpenSSH's extensions):
//! framing, request decoding, and (in `reply`) reply encoding. No I/O.
//!
//! Every length the peer sends is checked against what is actually there before
//! anything is allocated, and unknown packet types and extensions are kept as values so
//! that they can be answered with their own id.
//!
//! Bytes after the last field of a request are ignored (and logged at debug level), as
//! OpenSSH's sftp-server does: widely deployed clients, rclone 1.60 among them, send
//! WRITE packets that run past the data they declare. Only that is lenient: a field
//! that claims more than the packet holds, and an over-long handle, are still refused.

use std::ops::Range;

use tracing::debug;

mod reply;
pub use reply::*;

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
    OpUnsupported = 8,
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
}

/// A checked cursor over a packet body.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.buf.len())
            .ok_or(DecodeError::Truncated(what))?;
        let bytes = &self.buf[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    pub fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        let bytes = self.take(4, what)?;
        Ok(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    pub fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        let hi = u64::from(self.u32(what)?);
        let lo = u64::from(self.u32(what)?);
        Ok(hi << 32 | lo)
    }

    /// A `string`: its declared length is checked against the bytes that are there.
    pub fn string(&mut self, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let len = self.u32(what)? as usize;
        self.take(len, what)
    }

    /// Like [`Reader::string`], but returns where the bytes are in the packet.
    fn string_range(&mut self, what: &'static str) -> Result<Range<usize>, DecodeError> {
        let len = self.u32(what)? as usize;
        let start = self.pos;
        self.take(len, what)?;
        Ok(start..self.pos)
    }

    fn handle(&mut self) -> Result<Vec<u8>, DecodeError> {
        let handle = self.string("handle")?;
        if handle.len() > MAX_HANDLE {
            return Err(DecodeError::HandleTooLong);
        }
        Ok(handle.to_vec())
    }

    fn path(&mut self, what: &'static str) -> Result<Vec<u8>, DecodeError> {
        // Bounded by the packet, itself capped at MAX_PACKET.
        Ok(self.string(what)?.to_vec())
    }

    /// How many bytes are left after the fields read so far.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
}

/// File attributes (draft-02 §5). Absent fields are `None`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attrs {
    pub size: Option<u64>,
    pub uid_gid: Option<(u32, u32)>,
    pub permissions: Option<u32>,
    /// (atime, mtime), in Unix seconds.
    pub times: Option<(u32, u32)>,
}

impl Attrs {
    fn decode(r: &mut Reader<'_>) -> Result<Attrs, DecodeError> {
        let flags = r.u32("attribute flags")?;
        let mut attrs = Attrs::default();
        if flags & attr_flags::SIZE != 0 {
            attrs.size = Some(r.u64("size")?);
        }
        if flags & attr_flags::UIDGID != 0 {
            attrs.uid_gid = Some((r.u32("uid")?, r.u32("gid")?));
        }
        if flags & attr_flags::PERMISSIONS != 0 {
            attrs.permissions = Some(r.u32("permissions")?);
        }
        if flags & attr_flags::ACMODTIME != 0 {
            attrs.times = Some((r.u32("atime")?, r.u32("mtime")?));
        }
        if flags & attr_flags::EXTENDED != 0 {
            // Each pair takes at least 8 bytes, so the packet bounds the count; nothing
            // is allocated for them.
            let count = r.u32("extended count")?;
            for _ in 0..count {
                r.string("extended type")?;
                r.string("extended data")?;
            }
        }
        Ok(attrs)
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut flags = 0;
        if self.size.is_some() {
            flags |= attr_flags::SIZE;
        }
        if self.uid_gid.is_some() {
            flags |= attr_flags::UIDGID;
        }
        if self.permissions.is_some() {
            flags |= attr_flags::PERMISSIONS;
        }
        if self.times.is_some() {
            flags |= attr_flags::ACMODTIME;
        }
        put_u32(out, flags);
        if let Some(size) = self.size {
            put_u64(out, size);
        }
        if let Some((uid, gid)) = self.uid_gid {
            put_u32(out, uid);
            put_u32(out, gid);
        }
        if let Some(permissions) = self.permissions {
            put_u32(out, permissions);
        }
        if let Some((atime, mtime)) = self.times {
            put_u32(out, atime);
            put_u32(out, mtime);
        }
    }
}

/// The data of a WRITE, left in its packet rather than copied out.
#[derive(Debug, PartialEq, Eq)]
pub struct Payload {
    packet: Vec<u8>,
    range: Range<usize>,
}

impl Payload {
    pub fn bytes(&self) -> &[u8] {
        &self.packet[self.range.clone()]
    }
}

/// One request from the client. Paths and names are raw bytes as sent; whether they
/// are UTF-8 is the caller's decision.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    Open {
        path: Vec<u8>,
        pflags: u32,
        attrs: Attrs,
    },
    Close {
        handle: Vec<u8>,
    },
    Read {
        handle: Vec<u8>,
        offset: u64,
        len: u32,
    },
    Write {
        handle: Vec<u8>,
        offset: u64,
        data: Payload,
    },
    Lstat {
        path: Vec<u8>,
    },
    Fstat {
        handle: Vec<u8>,
    },
    Setstat {
        path: Vec<u8>,
        attrs: Attrs,
    },
    Fsetstat {
        handle: Vec<u8>,
        attrs: Attrs,
    },
    Opendir {
        path: Vec<u8>,
    },
    Readdir {
        handle: Vec<u8>,
    },
    Remove {
        path: Vec<u8>,
    },
    Mkdir {
        path: Vec<u8>,
        attrs: Attrs,
    },
    Rmdir {
        path: Vec<u8>,
    },
    Realpath {
        path: Vec<u8>,
    },
    Stat {
        path: Vec<u8>,
    },
    Rename {
        from: Vec<u8>,
        to: Vec<u8>,
    },
    Readlink {
        path: Vec<u8>,
    },
    Symlink {
        link: Vec<u8>,
        target: Vec<u8>,
    },
    PosixRename {
        from: Vec<u8>,
        to: Vec<u8>,
    },
    Statvfs {
        path: Vec<u8>,
    },
    Fstatvfs {
        handle: Vec<u8>,
    },
    Hardlink {
        from: Vec<u8>,
        to: Vec<u8>,
    },
    Fsync {
        handle: Vec<u8>,
    },
    Limits,
    ExpandPath {
        path: Vec<u8>,
    },
    /// Names for numeric owners and groups, so clients can format `ls -l` themselves.
    UsersGroupsById {
        uids: Vec<u32>,
        gids: Vec<u32>,
    },
    /// An extension we do not implement, by name.
    UnknownExtension {
        name: Vec<u8>,
    },
    /// A packet type that is not a request we know (including reply types).
    Unknown {
        kind: u8,
    },
}

/// A whole packet, as framed on the channel (without its length field).
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    Init { version: u32 },
    Request { id: u32, request: Request },
}

/// A packet that is framed correctly but cannot be decoded. `id` is its request id when
/// the packet was long enough to carry one, so the error can be answered.
#[derive(Debug, PartialEq, Eq)]
pub struct BadPacket {
    pub id: Option<u32>,
    pub kind: u8,
    pub error: DecodeError,
}

impl Incoming {
    /// Decodes one packet: its type byte, then its body.
    pub fn decode(packet: Vec<u8>) -> Result<Incoming, BadPacket> {
        let Some(&kind) = packet.first() else {
            return Err(BadPacket {
                id: None,
                kind: 0,
                error: DecodeError::Truncated("packet type"),
            });
        };
        let mut r = Reader::new(&packet[1..]);
        let bad = |id, error| BadPacket { id, kind, error };
        if kind == kind::INIT {
            let version = r.u32("version").map_err(|e| bad(None, e))?;
            // Extension pairs may follow the version in INIT; they carry nothing for us.
            return Ok(Incoming::Init { version });
        }
        let id = r.u32("request id").map_err(|e| bad(None, e))?;
        if kind == kind::WRITE {
            // The data stays in its packet: it is the bulk of every upload.
            let (handle, offset, range) = decode_write(&mut r).map_err(|e| bad(Some(id), e))?;
            note_trailing(kind, id, r.remaining());
            // +1: the reader works on the packet without its type byte.
            let range = range.start + 1..range.end + 1;
            let data = Payload { packet, range };
            return Ok(Incoming::Request {
                id,
                request: Request::Write {
                    handle,
                    offset,
                    data,
                },
            });
        }
        let request = decode_request(kind, &mut r).map_err(|e| bad(Some(id), e))?;
        note_trailing(kind, id, r.remaining());
        Ok(Incoming::Request { id, request })
    }
}

/// Bytes after a request's fields carry nothing we read; they are dropped, not refused.
fn note_trailing(kind: u8, id: u32, bytes: usize) {
    if bytes > 0 {
        debug!(
            kind,
            id, bytes, "ignoring bytes after the fields of an sftp request"
        );
    }
}

fn decode_request(kind: u8, r: &mut Reader<'_>) -> Result<Request, DecodeError> {
    Ok(match kind {
        kind::OPEN => Request::Open {
            path: r.path("filename")?,
            pflags: r.u32("pflags")?,
            attrs: Attrs::decode(r)?,
        },
        kind::CLOSE => Request::Close {
            handle: r.handle()?,
        },
        kind::READ => Request::Read {
            handle: r.handle()?,
            offset: r.u64("offset")?,
            len: r.u32("length")?,
        },
        kind::LSTAT => Request::Lstat {
            path: r.path("path")?,
        },
        kind::FSTAT => Request::Fstat {
            handle: r.handle()?,
        },
        kind::SETSTAT => Request::Setstat {
            path: r.path("path")?,
            attrs: Attrs::decode(r)?,
        },
        kind::FSETSTAT => Request::Fsetstat {
            handle: r.handle()?,
            attrs: Attrs::decode(r)?,
        },
        kind::OPENDIR => Request::Opendir {
            path: r.path("path")?,
        },
        kind::READDIR => Request::Readdir {
            handle: r.handle()?,
        },
        kind::REMOVE => Request::Remove {
            path: r.path("filename")?,
        },
        kind::MKDIR => Request::Mkdir {
            path: r.path("path")?,
            attrs: Attrs::decode(r)?,
        },
        kind::RMDIR => Request::Rmdir {
            path: r.path("path")?,
        },
        kind::REALPATH => Request::Realpath {
            path: r.path("path")?,
        },
        kind::STAT => Request::Stat {
            path: r.path("path")?,
        },
        kind::RENAME => Request::Rename {
            from: r.path("oldpath")?,
            to: r.path("newpath")?,
        },
        kind::READLINK => Request::Readlink {
            path: r.path("path")?,
        },
        // OpenSSH sends (target, link), the reverse of the draft; we refuse either way.
        kind::SYMLINK => Request::Symlink {
            target: r.path("targetpath")?,
            link: r.path("linkpath")?,
        },
        kind::EXTENDED => decode_extended(r)?,
        other => {
            // Not a request we know: its body means nothing to us, so skip it whole.
            r.pos = r.buf.len();
            Request::Unknown { kind: other }
        }
    })
}

/// A packed list of 32-bit ids; a partial last one is ignored. Bounded by the packet.
fn ids(packed: &[u8]) -> Vec<u32> {
    packed
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn decode_write(r: &mut Reader<'_>) -> Result<(Vec<u8>, u64, Range<usize>), DecodeError> {
    let handle = r.handle()?;
    let offset = r.u64("offset")?;
    let range = r.string_range("data")?;
    Ok((handle, offset, range))
}

fn decode_extended(r: &mut Reader<'_>) -> Result<Request, DecodeError> {
    let name = r.string("extension name")?;
    Ok(match name {
        b"posix-rename@openssh.com" => Request::PosixRename {
            from: r.path("oldpath")?,
            to: r.path("newpath")?,
        },
        b"statvfs@openssh.com" => Request::Statvfs {
            path: r.path("path")?,
        },
        b"fstatvfs@openssh.com" => Request::Fstatvfs {
            handle: r.handle()?,
        },
        b"hardlink@openssh.com" => Request::Hardlink {
            from: r.path("oldpath")?,
            to: r.path("newpath")?,
        },
        b"fsync@openssh.com" => Request::Fsync {
            handle: r.handle()?,
        },
        b"limits@openssh.com" => Request::Limits,
        b"expand-path@openssh.com" => Request::ExpandPath {
            path: r.path("path")?,
        },
        b"users-groups-by-id@openssh.com" => Request::UsersGroupsById {
            uids: ids(r.string("uids")?),
            gids: ids(r.string("gids")?),
        },
        _ => {
            r.pos = r.buf.len();
            Request::UnknownExtension {
                name: name.to_vec(),
            }
        }
    })
}

impl Request {
    /// The most bytes the reply to this request can take.
    pub fn reply_bound(&self) -> usize {
        match self {
            Request::Read { len, .. } => (*len).min(MAX_DATA) as usize + 16,
            Request::Readdir { .. } => MAX_PACKET / 2 + 1024,
            Request::UsersGroupsById { .. } => MAX_PACKET / 2 + 64,
            Request::Open { .. }
            | Request::Close { .. }
            | Request::Write { .. }
            | Request::Lstat { .. }
            | Request::Fstat { .. }
            | Request::Setstat { .. }
            | Request::Fsetstat { .. }
            | Request::Opendir { .. }
            | Request::Remove { .. }
            | Request::Mkdir { .. }
            | Request::Rmdir { .. }
            | Request::Realpath { .. }
            | Request::Stat { .. }
            | Request::Rename { .. }
            | Request::Readlink { .. }
            | Request::Symlink { .. }
            | Request::PosixRename { .. }
            | Request::Statvfs { .. }
            | Request::Fstatvfs { .. }
            | Request::Hardlink { .. }
            | Request::Fsync { .. }
            | Request::Limits
            | Request::ExpandPath { .. }
            | Request::UnknownExtension { .. }
            | Request::Unknown { .. } => 16 * 1024,
        }
    }

    /// The operation's name, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Request::Open { .. } => "open",
            Request::Close { .. } => "close",
            Request::Read { .. } => "read",
            Request::Write { .. } => "write",
            Request::Lstat { .. } => "lstat",
            Request::Fstat { .. } => "fstat",
            Request::Setstat { .. } => "setstat",
            Request::Fsetstat { .. } => "fsetstat",
            Request::Opendir { .. } => "opendir",
            Request::Readdir { .. } => "readdir",
            Request::Remove { .. } => "remove",
            Request::Mkdir { .. } => "mkdir",
            Request::Rmdir { .. } => "rmdir",
            Request::Realpath { .. } => "realpath",
            Request::Stat { .. } => "stat",
            Request::Rename { .. } => "rename",
            Request::Readlink { .. } => "readlink",
            Request::Symlink { .. } => "symlink",
            Request::PosixRename { .. } => "posix-rename",
            Request::Statvfs { .. } => "statvfs",
            Request::Fstatvfs { .. } => "fstatvfs",
            Request::Hardlink { .. } => "hardlink",
            Request::Fsync { .. } => "fsync",
            Request::Limits => "limits",
            Request::ExpandPath { .. } => "expand-path",
            Request::UsersGroupsById { .. } => "users-groups-by-id",
            Request::UnknownExtension { .. } => "extended",
            Request::Unknown { .. } => "unknown",
        }
    }
}

/// Where a packet's length field says it ends, once 4 bytes of it are there.
pub fn frame_len(buf: &[u8]) -> Option<usize> {
    let bytes: [u8; 4] = buf.get(..4)?.try_into().ok()?;
    Some(u32::from_be_bytes(bytes) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(kind: u8, id: u32, body: &[u8]) -> Vec<u8> {
        let mut p = vec![kind];
        p.extend_from_slice(&id.to_be_bytes());
        p.extend_from_slice(body);
        p
    }

    fn string(s: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        put_string(&mut out, s);
        out
    }

    #[test]
    fn decodes_init_and_requests() {
        let mut init = vec![kind::INIT];
        init.extend_from_slice(&3u32.to_be_bytes());
        assert_eq!(Incoming::decode(init), Ok(Incoming::Init { version: 3 }));

        let mut body = string(b"/a/b");
        put_u32(&mut body, pflags::READ | pflags::WRITE);
        let mut attrs = Attrs {
            size: Some(7),
            permissions: Some(0o644),
            ..Attrs::default()
        };
        attrs.encode(&mut body);
        assert_eq!(
            Incoming::decode(packet(kind::OPEN, 9, &body)),
            Ok(Incoming::Request {
                id: 9,
                request: Request::Open {
                    path: b"/a/b".to_vec(),
                    pflags: 3,
                    attrs: attrs.clone()
                }
            })
        );
        attrs.times = Some((1, 2));
        attrs.uid_gid = Some((3, 4));
        let mut encoded = Vec::new();
        attrs.encode(&mut encoded);
        let mut r = Reader::new(&encoded);
        assert_eq!(Attrs::decode(&mut r).unwrap(), attrs);
        assert_eq!(r.remaining(), 0);

        let mut body = string(b"h");
        put_u64(&mut body, 1 << 40);
        body.extend(string(b"data!"));
        let Ok(Incoming::Request {
            id: 5,
            request:
                Request::Write {
                    handle,
                    offset,
                    data,
                },
        }) = Incoming::decode(packet(kind::WRITE, 5, &body))
        else {
            panic!("write");
        };
        assert_eq!(
            (handle.as_slice(), offset, data.bytes()),
            (&b"h"[..], 1 << 40, &b"data!"[..])
        );

        let mut body = string(b"posix-rename@openssh.com");
        body.extend(string(b"a"));
        body.extend(string(b"b"));
        assert_eq!(
            Incoming::decode(packet(kind::EXTENDED, 1, &body)),
            Ok(Incoming::Request {
                id: 1,
                request: Request::PosixRename {
                    from: b"a".to_vec(),
                    to: b"b".to_vec()
                }
            })
        );
    }

    #[test]
    fn keeps_unknown_types_and_extensions_with_their_id() {
        assert_eq!(
            Incoming::decode(packet(77, 42, b"whatever")),
            Ok(Incoming::Request {
                id: 42,
                request: Request::Unknown { kind: 77 }
            })
        );
        let mut body = string(b"copy-data");
        body.extend_from_slice(b"junk");
        assert_eq!(
            Incoming::decode(packet(kind::EXTENDED, 43, &body)),
            Ok(Incoming::Request {
                id: 43,
                request: Request::UnknownExtension {
                    name: b"copy-data".to_vec()
                }
            })
        );
    }

    /// A well-formed body for every request type and extension we decode.
    fn every_request() -> Vec<(u8, Vec<u8>)> {
        let handle = string(b"h1");
        let path = string(b"/p");
        let mut attrs = Vec::new();
        Attrs {
            size: Some(1),
            permissions: Some(0o600),
            ..Attrs::default()
        }
        .encode(&mut attrs);
        let mut read = handle.clone();
        put_u64(&mut read, 7);
        put_u32(&mut read, 100);
        let mut write = handle.clone();
        put_u64(&mut write, 7);
        write.extend(string(b"data"));
        let mut open = path.clone();
        put_u32(&mut open, pflags::READ);
        open.extend(&attrs);
        let two_paths = [path.clone(), string(b"/q")].concat();
        let ext = |name: &[u8], rest: &[u8]| [string(name), rest.to_vec()].concat();
        vec![
            (kind::OPEN, open),
            (kind::CLOSE, handle.clone()),
            (kind::READ, read),
            (kind::WRITE, write),
            (kind::LSTAT, path.clone()),
            (kind::FSTAT, handle.clone()),
            (kind::SETSTAT, [path.clone(), attrs.clone()].concat()),
            (kind::FSETSTAT, [handle.clone(), attrs.clone()].concat()),
            (kind::OPENDIR, path.clone()),
            (kind::READDIR, handle.clone()),
            (kind::REMOVE, path.clone()),
            (kind::MKDIR, [path.clone(), attrs.clone()].concat()),
            (kind::RMDIR, path.clone()),
            (kind::REALPATH, path.clone()),
            (kind::STAT, path.clone()),
            (kind::RENAME, two_paths.clone()),
            (kind::READLINK, path.clone()),
            (kind::SYMLINK, two_paths.clone()),
            (kind::EXTENDED, ext(b"posix-rename@openssh.com", &two_paths)),
            (kind::EXTENDED, ext(b"statvfs@openssh.com", &path)),
            (kind::EXTENDED, ext(b"fstatvfs@openssh.com", &handle)),
            (kind::EXTENDED, ext(b"hardlink@openssh.com", &two_paths)),
            (kind::EXTENDED, ext(b"fsync@openssh.com", &handle)),
            (kind::EXTENDED, ext(b"limits@openssh.com", b"")),
            (kind::EXTENDED, ext(b"expand-path@openssh.com", &path)),
            (
                kind::EXTENDED,
                ext(
                    b"users-groups-by-id@openssh.com",
                    &[string(&[0, 0, 0, 1]), string(&[0, 0, 0, 2])].concat(),
                ),
            ),
        ]
    }

    /// What a WRITE decodes to, with its data copied out so it compares.
    fn decoded(packet: Vec<u8>) -> Result<(u32, String), BadPacket> {
        Incoming::decode(packet).map(|incoming| match incoming {
            Incoming::Request {
                id,
                request:
                    Request::Write {
                        handle,
                        offset,
                        data,
                    },
            } => (id, format!("write {handle:?} {offset} {:?}", data.bytes())),
            Incoming::Request { id, request } => (id, format!("{request:?}")),
            Incoming::Init { version } => (0, format!("init {version}")),
        })
    }

    #[test]
    fn ignores_trailing_bytes_after_every_request_type() {
        for (kind, body) in every_request() {
            let exact = decoded(packet(kind, 3, &body)).unwrap();
            for junk in [&b"\0"[..], b"extra", &[0xff; 300]] {
                let padded = [body.clone(), junk.to_vec()].concat();
                assert_eq!(
                    decoded(packet(kind, 3, &padded)),
                    Ok(exact.clone()),
                    "{exact:?}"
                );
            }
        }
    }

    #[test]
    fn a_write_longer_than_its_data_keeps_only_the_declared_data() {
        // What rclone 1.60 sends for files over 32 KiB: a data string of 32768 bytes
        // in a packet that runs 32767 bytes further.
        let declared = vec![7u8; 32768];
        let mut body = string(b"h");
        put_u64(&mut body, 32768);
        body.extend(string(&declared));
        body.extend(vec![9u8; 32767]);
        let Ok(Incoming::Request {
            id: 4,
            request: Request::Write { offset, data, .. },
        }) = Incoming::decode(packet(kind::WRITE, 4, &body))
        else {
            panic!("write refused");
        };
        assert_eq!((offset, data.bytes()), (32768, &declared[..]));
    }

    #[test]
    fn rejects_a_string_longer_than_the_packet() {
        // Nothing is allocated for the length it claims.
        let mut body = Vec::new();
        put_u32(&mut body, u32::MAX);
        body.extend_from_slice(b"abc");
        let err = Incoming::decode(packet(kind::STAT, 7, &body)).unwrap_err();
        assert_eq!(
            (err.id, err.error),
            (Some(7), DecodeError::Truncated("path"))
        );
    }

    #[test]
    fn rejects_write_data_longer_than_the_packet() {
        let mut body = string(b"h");
        put_u64(&mut body, 0);
        put_u32(&mut body, 10);
        body.extend_from_slice(b"short");
        let err = Incoming::decode(packet(kind::WRITE, 8, &body)).unwrap_err();
        assert_eq!(
            (err.id, err.error),
            (Some(8), DecodeError::Truncated("data"))
        );
    }

    #[test]
    fn rejects_every_request_cut_short_with_its_id() {
        for (kind, body) in every_request() {
            // limits@openssh.com has no fields after its name, so cut into the name.
            for cut in [1, 4] {
                let short = &body[..body.len() - cut];
                let err = Incoming::decode(packet(kind, 11, short)).unwrap_err();
                assert_eq!(err.id, Some(11), "type {kind}");
                assert!(
                    matches!(err.error, DecodeError::Truncated(_)),
                    "type {kind}"
                );
            }
        }
    }

    #[test]
    fn rejects_a_packet_too_short_for_an_id() {
        let err = Incoming::decode(vec![kind::READ, 0, 0]).unwrap_err();
        assert_eq!(err.id, None);
        assert!(Incoming::decode(Vec::new()).is_err());
    }

    #[test]
    fn rejects_an_over_long_handle() {
        let mut body = string(&[b'h'; MAX_HANDLE + 1]);
        put_u64(&mut body, 0);
        put_u32(&mut body, 1);
        let err = Incoming::decode(packet(kind::READ, 9, &body)).unwrap_err();
        assert_eq!((err.id, err.error), (Some(9), DecodeError::HandleTooLong));
    }

    #[test]
    fn rejects_attributes_missing_their_extended_pairs() {
        // A huge count with no pairs behind it: nothing is allocated for the count.
        let mut body = string(b"p");
        put_u32(&mut body, attr_flags::EXTENDED);
        put_u32(&mut body, u32::MAX);
        let err = Incoming::decode(packet(kind::SETSTAT, 10, &body)).unwrap_err();
        assert_eq!(err.id, Some(10));
    }

    #[test]
    fn encodes_replies() {
        let s = status(3, StatusCode::NoSuchFile, "no");
        assert_eq!(frame_len(&s), Some(s.len() - 4));
        assert_eq!(s[4], kind::STATUS);
        assert_eq!(&s[5..9], &3u32.to_be_bytes());
        assert_eq!(&s[9..13], &2u32.to_be_bytes());

        let (d, n) = data_with::<()>(4, 10, |buf| {
            buf[..3].copy_from_slice(b"abc");
            Ok(3)
        })
        .unwrap();
        assert_eq!(n, 3);
        assert_eq!(frame_len(&d), Some(d.len() - 4));
        assert_eq!(
            &d[4..],
            &[kind::DATA, 0, 0, 0, 4, 0, 0, 0, 3, b'a', b'b', b'c']
        );

        let v = version(&[("a@b", "1")]);
        assert_eq!(frame_len(&v), Some(v.len() - 4));
        assert_eq!(&v[4..9], &[kind::VERSION, 0, 0, 0, 3]);

        let n = names(
            1,
            &[NameEntry {
                filename: b"f",
                longname: b"l",
                attrs: Attrs::default(),
            }],
        );
        assert_eq!(frame_len(&n), Some(n.len() - 4));
        assert_eq!(n.len(), 4 + 1 + 4 + 4 + 5 + 5 + 4);
    }
}

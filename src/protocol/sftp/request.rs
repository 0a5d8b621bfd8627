//! Requests (draft-02 §6 and OpenSSH's extensions): decoded by the server, encoded by
//! a client.

use std::ops::Range;

use super::attrs::Attrs;
use super::wire::{PacketWriter, Reader, put_string, put_u32, put_u64};
use super::{DecodeError, MAX_DATA, MAX_PACKET, kind};

/// The data of a WRITE or a DATA reply, left in its packet rather than copied out. Two
/// payloads are equal when their bytes are.
#[derive(Debug)]
pub struct Payload {
    packet: Vec<u8>,
    range: Range<usize>,
}

impl Payload {
    pub fn bytes(&self) -> &[u8] {
        &self.packet[self.range.clone()]
    }

    /// Data within a packet already read: `range` of `packet`. Out of range is empty.
    pub(super) fn within(packet: Vec<u8>, range: Range<usize>) -> Payload {
        let range = if range.end <= packet.len() && range.start <= range.end {
            range
        } else {
            0..0
        };
        Payload { packet, range }
    }
}

impl PartialEq for Payload {
    fn eq(&self, other: &Payload) -> bool {
        self.bytes() == other.bytes()
    }
}

impl Eq for Payload {}

impl From<Vec<u8>> for Payload {
    /// Data to send, such as a client's WRITE.
    fn from(data: Vec<u8>) -> Payload {
        let range = 0..data.len();
        Payload {
            packet: data,
            range,
        }
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
    /// Decodes one packet (without its length field): its type byte, then its body.
    pub fn decode(packet: Vec<u8>) -> Result<Incoming, BadPacket> {
        Incoming::decode_with_trailing(packet).map(|(incoming, _)| incoming)
    }

    /// As [`Incoming::decode`], and how many bytes after the request's fields were
    /// ignored, for the caller to log.
    pub fn decode_with_trailing(packet: Vec<u8>) -> Result<(Incoming, usize), BadPacket> {
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
            return Ok((Incoming::Init { version }, 0));
        }
        let id = r.u32("request id").map_err(|e| bad(None, e))?;
        if kind == kind::WRITE {
            // The data stays in its packet: it is the bulk of every upload.
            let (handle, offset, range) = decode_write(&mut r).map_err(|e| bad(Some(id), e))?;
            let trailing = r.remaining();
            // +1: the reader works on the packet without its type byte.
            let range = range.start + 1..range.end + 1;
            let data = Payload { packet, range };
            let request = Request::Write {
                handle,
                offset,
                data,
            };
            return Ok((Incoming::Request { id, request }, trailing));
        }
        let request = decode_request(kind, &mut r).map_err(|e| bad(Some(id), e))?;
        Ok((Incoming::Request { id, request }, r.remaining()))
    }

    /// The packet, length field included, as a client sends it.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Incoming::Init { version } => {
                let mut p = PacketWriter::without_id(kind::INIT, 4);
                put_u32(p.buf(), *version);
                p.finish()
            }
            Incoming::Request { id, request } => request.encode(*id),
        }
    }
}

fn decode_request(kind: u8, r: &mut Reader<'_>) -> Result<Request, DecodeError> {
    Ok(match kind {
        kind::OPEN => Request::Open {
            path: r.bytes("filename")?,
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
            path: r.bytes("path")?,
        },
        kind::FSTAT => Request::Fstat {
            handle: r.handle()?,
        },
        kind::SETSTAT => Request::Setstat {
            path: r.bytes("path")?,
            attrs: Attrs::decode(r)?,
        },
        kind::FSETSTAT => Request::Fsetstat {
            handle: r.handle()?,
            attrs: Attrs::decode(r)?,
        },
        kind::OPENDIR => Request::Opendir {
            path: r.bytes("path")?,
        },
        kind::READDIR => Request::Readdir {
            handle: r.handle()?,
        },
        kind::REMOVE => Request::Remove {
            path: r.bytes("filename")?,
        },
        kind::MKDIR => Request::Mkdir {
            path: r.bytes("path")?,
            attrs: Attrs::decode(r)?,
        },
        kind::RMDIR => Request::Rmdir {
            path: r.bytes("path")?,
        },
        kind::REALPATH => Request::Realpath {
            path: r.bytes("path")?,
        },
        kind::STAT => Request::Stat {
            path: r.bytes("path")?,
        },
        kind::RENAME => Request::Rename {
            from: r.bytes("oldpath")?,
            to: r.bytes("newpath")?,
        },
        kind::READLINK => Request::Readlink {
            path: r.bytes("path")?,
        },
        // OpenSSH sends (target, link), the reverse of the draft; we refuse either way.
        kind::SYMLINK => Request::Symlink {
            target: r.bytes("targetpath")?,
            link: r.bytes("linkpath")?,
        },
        kind::EXTENDED => decode_extended(r)?,
        other => {
            // Not a request we know: its body means nothing to us, so skip it whole.
            r.skip_rest();
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
            from: r.bytes("oldpath")?,
            to: r.bytes("newpath")?,
        },
        b"statvfs@openssh.com" => Request::Statvfs {
            path: r.bytes("path")?,
        },
        b"fstatvfs@openssh.com" => Request::Fstatvfs {
            handle: r.handle()?,
        },
        b"hardlink@openssh.com" => Request::Hardlink {
            from: r.bytes("oldpath")?,
            to: r.bytes("newpath")?,
        },
        b"fsync@openssh.com" => Request::Fsync {
            handle: r.handle()?,
        },
        b"limits@openssh.com" => Request::Limits,
        b"expand-path@openssh.com" => Request::ExpandPath {
            path: r.bytes("path")?,
        },
        b"users-groups-by-id@openssh.com" => Request::UsersGroupsById {
            uids: ids(r.string("uids")?),
            gids: ids(r.string("gids")?),
        },
        _ => {
            r.skip_rest();
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

/// How each request is written: its type, and the extension name for EXTENDED ones.
enum Shape<'a> {
    Plain(u8),
    Extended(&'a [u8]),
}

impl Request {
    fn shape(&self) -> Shape<'_> {
        match self {
            Request::Open { .. } => Shape::Plain(kind::OPEN),
            Request::Close { .. } => Shape::Plain(kind::CLOSE),
            Request::Read { .. } => Shape::Plain(kind::READ),
            Request::Write { .. } => Shape::Plain(kind::WRITE),
            Request::Lstat { .. } => Shape::Plain(kind::LSTAT),
            Request::Fstat { .. } => Shape::Plain(kind::FSTAT),
            Request::Setstat { .. } => Shape::Plain(kind::SETSTAT),
            Request::Fsetstat { .. } => Shape::Plain(kind::FSETSTAT),
            Request::Opendir { .. } => Shape::Plain(kind::OPENDIR),
            Request::Readdir { .. } => Shape::Plain(kind::READDIR),
            Request::Remove { .. } => Shape::Plain(kind::REMOVE),
            Request::Mkdir { .. } => Shape::Plain(kind::MKDIR),
            Request::Rmdir { .. } => Shape::Plain(kind::RMDIR),
            Request::Realpath { .. } => Shape::Plain(kind::REALPATH),
            Request::Stat { .. } => Shape::Plain(kind::STAT),
            Request::Rename { .. } => Shape::Plain(kind::RENAME),
            Request::Readlink { .. } => Shape::Plain(kind::READLINK),
            Request::Symlink { .. } => Shape::Plain(kind::SYMLINK),
            Request::PosixRename { .. } => Shape::Extended(b"posix-rename@openssh.com"),
            Request::Statvfs { .. } => Shape::Extended(b"statvfs@openssh.com"),
            Request::Fstatvfs { .. } => Shape::Extended(b"fstatvfs@openssh.com"),
            Request::Hardlink { .. } => Shape::Extended(b"hardlink@openssh.com"),
            Request::Fsync { .. } => Shape::Extended(b"fsync@openssh.com"),
            Request::Limits => Shape::Extended(b"limits@openssh.com"),
            Request::ExpandPath { .. } => Shape::Extended(b"expand-path@openssh.com"),
            Request::UsersGroupsById { .. } => Shape::Extended(b"users-groups-by-id@openssh.com"),
            Request::UnknownExtension { name } => Shape::Extended(name),
            Request::Unknown { kind } => Shape::Plain(*kind),
        }
    }

    /// The packet for this request with id `id`, length field included.
    pub fn encode(&self, id: u32) -> Vec<u8> {
        let (kind, extension) = match self.shape() {
            Shape::Plain(kind) => (kind, None),
            Shape::Extended(name) => (kind::EXTENDED, Some(name)),
        };
        let data_len = match self {
            Request::Write { data, .. } => data.bytes().len(),
            _ => 0,
        };
        let mut p = PacketWriter::new(kind, id, 64 + data_len);
        let out = p.buf();
        if let Some(name) = extension {
            put_string(out, name);
        }
        match self {
            Request::Open {
                path,
                pflags,
                attrs,
            } => {
                put_string(out, path);
                put_u32(out, *pflags);
                attrs.encode(out);
            }
            Request::Read {
                handle,
                offset,
                len,
            } => {
                put_string(out, handle);
                put_u64(out, *offset);
                put_u32(out, *len);
            }
            Request::Write {
                handle,
                offset,
                data,
            } => {
                put_string(out, handle);
                put_u64(out, *offset);
                put_string(out, data.bytes());
            }
            Request::Setstat { path, attrs } | Request::Mkdir { path, attrs } => {
                put_string(out, path);
                attrs.encode(out);
            }
            Request::Fsetstat { handle, attrs } => {
                put_string(out, handle);
                attrs.encode(out);
            }
            Request::Close { handle }
            | Request::Fstat { handle }
            | Request::Readdir { handle }
            | Request::Fstatvfs { handle }
            | Request::Fsync { handle } => put_string(out, handle),
            Request::Lstat { path }
            | Request::Opendir { path }
            | Request::Remove { path }
            | Request::Rmdir { path }
            | Request::Realpath { path }
            | Request::Stat { path }
            | Request::Readlink { path }
            | Request::Statvfs { path }
            | Request::ExpandPath { path } => put_string(out, path),
            Request::Rename { from, to }
            | Request::PosixRename { from, to }
            | Request::Hardlink { from, to } => {
                put_string(out, from);
                put_string(out, to);
            }
            // In OpenSSH's order, (target, link), which is what the decoder reads.
            Request::Symlink { link, target } => {
                put_string(out, target);
                put_string(out, link);
            }
            Request::UsersGroupsById { uids, gids } => {
                for ids in [uids, gids] {
                    let packed: Vec<u8> = ids.iter().flat_map(|id| id.to_be_bytes()).collect();
                    put_string(out, &packed);
                }
            }
            Request::Limits | Request::UnknownExtension { .. } | Request::Unknown { .. } => {}
        }
        p.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::sftp::{MAX_HANDLE, attr_flags, frame_len, pflags};

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

    fn some_attrs() -> Attrs {
        Attrs {
            size: Some(1),
            permissions: Some(0o600),
            ..Attrs::default()
        }
    }

    /// Every request type and extension: its bytes written out by hand, and the value
    /// they stand for.
    fn every_request() -> Vec<(u8, Vec<u8>, Request)> {
        let handle = string(b"h1");
        let path = string(b"/p");
        let mut attrs = Vec::new();
        some_attrs().encode(&mut attrs);
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
        let (h, p, q) = (b"h1".to_vec(), b"/p".to_vec(), b"/q".to_vec());
        let with_attrs = |lead: &Vec<u8>| [lead.clone(), attrs.clone()].concat();
        vec![
            (
                kind::OPEN,
                open,
                Request::Open {
                    path: p.clone(),
                    pflags: pflags::READ,
                    attrs: some_attrs(),
                },
            ),
            (
                kind::CLOSE,
                handle.clone(),
                Request::Close { handle: h.clone() },
            ),
            (
                kind::READ,
                read,
                Request::Read {
                    handle: h.clone(),
                    offset: 7,
                    len: 100,
                },
            ),
            (
                kind::WRITE,
                write,
                Request::Write {
                    handle: h.clone(),
                    offset: 7,
                    data: Payload::from(b"data".to_vec()),
                },
            ),
            (
                kind::LSTAT,
                path.clone(),
                Request::Lstat { path: p.clone() },
            ),
            (
                kind::FSTAT,
                handle.clone(),
                Request::Fstat { handle: h.clone() },
            ),
            (
                kind::SETSTAT,
                with_attrs(&path),
                Request::Setstat {
                    path: p.clone(),
                    attrs: some_attrs(),
                },
            ),
            (
                kind::FSETSTAT,
                with_attrs(&handle),
                Request::Fsetstat {
                    handle: h.clone(),
                    attrs: some_attrs(),
                },
            ),
            (
                kind::OPENDIR,
                path.clone(),
                Request::Opendir { path: p.clone() },
            ),
            (
                kind::READDIR,
                handle.clone(),
                Request::Readdir { handle: h.clone() },
            ),
            (
                kind::REMOVE,
                path.clone(),
                Request::Remove { path: p.clone() },
            ),
            (
                kind::MKDIR,
                with_attrs(&path),
                Request::Mkdir {
                    path: p.clone(),
                    attrs: some_attrs(),
                },
            ),
            (
                kind::RMDIR,
                path.clone(),
                Request::Rmdir { path: p.clone() },
            ),
            (
                kind::REALPATH,
                path.clone(),
                Request::Realpath { path: p.clone() },
            ),
            (kind::STAT, path.clone(), Request::Stat { path: p.clone() }),
            (
                kind::RENAME,
                two_paths.clone(),
                Request::Rename {
                    from: p.clone(),
                    to: q.clone(),
                },
            ),
            (
                kind::READLINK,
                path.clone(),
                Request::Readlink { path: p.clone() },
            ),
            // OpenSSH's order: target first.
            (
                kind::SYMLINK,
                two_paths.clone(),
                Request::Symlink {
                    target: p.clone(),
                    link: q.clone(),
                },
            ),
            (
                kind::EXTENDED,
                ext(b"posix-rename@openssh.com", &two_paths),
                Request::PosixRename {
                    from: p.clone(),
                    to: q.clone(),
                },
            ),
            (
                kind::EXTENDED,
                ext(b"statvfs@openssh.com", &path),
                Request::Statvfs { path: p.clone() },
            ),
            (
                kind::EXTENDED,
                ext(b"fstatvfs@openssh.com", &handle),
                Request::Fstatvfs { handle: h.clone() },
            ),
            (
                kind::EXTENDED,
                ext(b"hardlink@openssh.com", &two_paths),
                Request::Hardlink {
                    from: p.clone(),
                    to: q.clone(),
                },
            ),
            (
                kind::EXTENDED,
                ext(b"fsync@openssh.com", &handle),
                Request::Fsync { handle: h.clone() },
            ),
            (
                kind::EXTENDED,
                ext(b"limits@openssh.com", b""),
                Request::Limits,
            ),
            (
                kind::EXTENDED,
                ext(b"expand-path@openssh.com", &path),
                Request::ExpandPath { path: p.clone() },
            ),
            (
                kind::EXTENDED,
                ext(
                    b"users-groups-by-id@openssh.com",
                    &[string(&[0, 0, 0, 1]), string(&[0, 0, 0, 2, 0, 0, 0, 3])].concat(),
                ),
                Request::UsersGroupsById {
                    uids: vec![1],
                    gids: vec![2, 3],
                },
            ),
        ]
    }

    #[test]
    fn every_request_decodes_from_its_bytes_and_encodes_to_them() {
        for (kind, body, request) in every_request() {
            let bytes = packet(kind, 3, &body);
            let encoded = request.encode(3);
            assert_eq!(frame_len(&encoded), Some(encoded.len() - 4));
            assert_eq!(&encoded[4..], &bytes[..], "{request:?}");
            assert_eq!(
                Incoming::decode_with_trailing(bytes),
                Ok((Incoming::Request { id: 3, request }, 0))
            );
        }
    }

    #[test]
    fn init_round_trips() {
        let init = Incoming::Init { version: 3 };
        let encoded = init.encode();
        assert_eq!(&encoded, &[0, 0, 0, 5, kind::INIT, 0, 0, 0, 3]);
        assert_eq!(Incoming::decode(encoded[4..].to_vec()), Ok(init));
    }

    #[test]
    fn unknown_types_and_extensions_round_trip_with_their_id() {
        for request in [
            Request::Unknown { kind: 77 },
            Request::UnknownExtension {
                name: b"copy-data".to_vec(),
            },
        ] {
            let encoded = request.encode(42);
            assert_eq!(
                Incoming::decode(encoded[4..].to_vec()),
                Ok(Incoming::Request { id: 42, request })
            );
        }
    }

    #[test]
    fn unknown_types_and_extensions_keep_their_id_whatever_their_body() {
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

    #[test]
    fn ignores_trailing_bytes_after_every_request_type_and_counts_them() {
        for junk in [&b"\0"[..], b"extra", &[0xff; 300]] {
            for (kind, body, request) in every_request() {
                let padded = [body.clone(), junk.to_vec()].concat();
                let (incoming, trailing) =
                    Incoming::decode_with_trailing(packet(kind, 3, &padded)).unwrap();
                assert_eq!(trailing, junk.len(), "{request:?}");
                assert_eq!(incoming, Incoming::Request { id: 3, request });
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
            (err.id, err.kind, err.error),
            (Some(7), kind::STAT, DecodeError::Truncated("path"))
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
        for (kind, body, request) in every_request() {
            // limits@openssh.com has no fields after its name, so cut into the name.
            for cut in [1, 4] {
                let short = &body[..body.len() - cut];
                let err = Incoming::decode(packet(kind, 11, short)).unwrap_err();
                assert_eq!(err.id, Some(11), "{request:?}");
                assert!(
                    matches!(err.error, DecodeError::Truncated(_)),
                    "{request:?}"
                );
            }
        }
    }

    #[test]
    fn rejects_a_packet_too_short_for_an_id() {
        let err = Incoming::decode(vec![kind::READ, 0, 0]).unwrap_err();
        assert_eq!(
            (err.id, err.error),
            (None, DecodeError::Truncated("request id"))
        );
    }

    #[test]
    fn rejects_an_empty_packet() {
        let err = Incoming::decode(Vec::new()).unwrap_err();
        assert_eq!(
            (err.id, err.error),
            (None, DecodeError::Truncated("packet type"))
        );
    }

    #[test]
    fn rejects_an_init_without_a_version() {
        let err = Incoming::decode(vec![kind::INIT, 0, 0]).unwrap_err();
        assert_eq!(
            (err.id, err.error),
            (None, DecodeError::Truncated("version"))
        );
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
        let mut body = string(b"p");
        put_u32(&mut body, attr_flags::EXTENDED);
        put_u32(&mut body, u32::MAX);
        let err = Incoming::decode(packet(kind::SETSTAT, 10, &body)).unwrap_err();
        assert_eq!(
            (err.id, err.error),
            (Some(10), DecodeError::Truncated("extended type"))
        );
    }

    #[test]
    fn rejects_an_extended_request_without_a_name() {
        let err = Incoming::decode(packet(kind::EXTENDED, 12, &[0, 0, 0])).unwrap_err();
        assert_eq!(
            (err.id, err.error),
            (Some(12), DecodeError::Truncated("extension name"))
        );
    }

    #[test]
    fn a_reply_bound_covers_the_largest_read() {
        let read = Request::Read {
            handle: Vec::new(),
            offset: 0,
            len: u32::MAX,
        };
        assert_eq!(read.reply_bound(), MAX_DATA as usize + 16);
        assert!(Request::Limits.reply_bound() < MAX_PACKET);
    }
}

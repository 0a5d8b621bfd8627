//! Replies (draft-02 §7 and OpenSSH's extensions): one builder per reply for the
//! server, and [`Reply::decode`] for a client.

use super::attrs::Attrs;
use super::request::Payload;
use super::wire::{PacketWriter, Reader, put_string, put_u32, put_u64};
use super::{DecodeError, StatusCode, VERSION, kind};

pub fn status(id: u32, code: StatusCode, message: &str) -> Vec<u8> {
    let mut p = PacketWriter::new(kind::STATUS, id, message.len() + 12);
    put_u32(p.buf(), code as u32);
    put_string(p.buf(), message.as_bytes());
    put_string(p.buf(), b"en");
    p.finish()
}

pub fn handle(id: u32, handle: &[u8]) -> Vec<u8> {
    let mut p = PacketWriter::new(kind::HANDLE, id, handle.len() + 4);
    put_string(p.buf(), handle);
    p.finish()
}

pub fn attrs(id: u32, attrs: &Attrs) -> Vec<u8> {
    let mut p = PacketWriter::new(kind::ATTRS, id, 32);
    attrs.encode(p.buf());
    p.finish()
}

/// One entry of a NAME reply.
pub struct NameEntry<'a> {
    pub filename: &'a [u8],
    pub longname: &'a [u8],
    pub attrs: Attrs,
}

impl NameEntry<'_> {
    pub fn encoded_len(&self) -> usize {
        4 + self.filename.len() + 4 + self.longname.len() + 36
    }
}

pub fn names(id: u32, entries: &[NameEntry<'_>]) -> Vec<u8> {
    let size: usize = entries.iter().map(NameEntry::encoded_len).sum();
    let mut p = PacketWriter::new(kind::NAME, id, size + 4);
    put_u32(p.buf(), entries.len() as u32);
    for entry in entries {
        put_string(p.buf(), entry.filename);
        put_string(p.buf(), entry.longname);
        entry.attrs.encode(p.buf());
    }
    p.finish()
}

/// The VERSION reply, with the extensions we implement.
pub fn version(extensions: &[(&str, &str)]) -> Vec<u8> {
    let mut p = PacketWriter::without_id(kind::VERSION, 64);
    put_u32(p.buf(), VERSION);
    for (name, data) in extensions {
        put_string(p.buf(), name.as_bytes());
        put_string(p.buf(), data.as_bytes());
    }
    p.finish()
}

/// An EXTENDED_REPLY made of 64-bit numbers (limits, statvfs).
pub fn extended_u64s(id: u32, values: &[u64]) -> Vec<u8> {
    let mut p = PacketWriter::new(kind::EXTENDED_REPLY, id, values.len() * 8);
    for &v in values {
        put_u64(p.buf(), v);
    }
    p.finish()
}

/// An EXTENDED_REPLY made of strings, each given as raw bytes already encoded.
pub fn extended_strings(id: u32, strings: &[&[u8]]) -> Vec<u8> {
    let size: usize = strings.iter().map(|s| s.len() + 4).sum();
    let mut p = PacketWriter::new(kind::EXTENDED_REPLY, id, size);
    for s in strings {
        put_string(p.buf(), s);
    }
    p.finish()
}

/// A DATA reply read straight into its packet: `fill` gets the space for up to `max`
/// bytes and returns how many it filled.
pub fn data_with<E>(
    id: u32,
    max: usize,
    fill: impl FnOnce(&mut [u8]) -> Result<usize, E>,
) -> Result<(Vec<u8>, usize), E> {
    const HEADER: usize = 4 + 1 + 4 + 4;
    let mut buf = vec![0u8; HEADER + max];
    let n = fill(&mut buf[HEADER..])?.min(max);
    buf.truncate(HEADER + n);
    let len = (buf.len() - 4) as u32;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    buf[4] = kind::DATA;
    buf[5..9].copy_from_slice(&id.to_be_bytes());
    buf[9..13].copy_from_slice(&(n as u32).to_be_bytes());
    Ok((buf, n))
}

/// One entry of a NAME reply, as a client reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Name {
    pub filename: Vec<u8>,
    pub longname: Vec<u8>,
    pub attrs: Attrs,
}

/// One reply from the server. Names and messages are as sent: filenames are raw bytes,
/// texts are decoded leniently.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    /// The answer to INIT; it carries no request id.
    Version {
        version: u32,
        extensions: Vec<(Vec<u8>, Vec<u8>)>,
    },
    Status {
        id: u32,
        /// As sent; [`StatusCode::from_u32`] names the ones the draft defines.
        code: u32,
        message: String,
        language: String,
    },
    Handle {
        id: u32,
        handle: Vec<u8>,
    },
    Data {
        id: u32,
        data: Payload,
    },
    Name {
        id: u32,
        names: Vec<Name>,
    },
    Attrs {
        id: u32,
        attrs: Attrs,
    },
    /// An EXTENDED_REPLY: its body, which only the request it answers gives a meaning.
    Extended {
        id: u32,
        data: Payload,
    },
}

impl Reply {
    /// Decodes one packet (without its length field). Servers older than OpenSSH 4.4
    /// send STATUS without message and language; those decode as empty.
    pub fn decode(packet: Vec<u8>) -> Result<Reply, DecodeError> {
        let Some(&kind) = packet.first() else {
            return Err(DecodeError::Truncated("packet type"));
        };
        let mut r = Reader::new(&packet[1..]);
        if kind == kind::VERSION {
            let version = r.u32("version")?;
            let mut extensions = Vec::new();
            while r.remaining() > 0 {
                extensions.push((r.bytes("extension name")?, r.bytes("extension data")?));
            }
            return Ok(Reply::Version {
                version,
                extensions,
            });
        }
        let id = r.u32("request id")?;
        Ok(match kind {
            kind::STATUS => {
                let code = r.u32("status code")?;
                let (message, language) = if r.remaining() == 0 {
                    (String::new(), String::new())
                } else {
                    (r.text("message")?, r.text("language tag")?)
                };
                Reply::Status {
                    id,
                    code,
                    message,
                    language,
                }
            }
            kind::HANDLE => Reply::Handle {
                id,
                handle: r.handle()?,
            },
            kind::DATA => {
                // +1: the reader works on the packet without its type byte.
                let range = r.string_range("data")?;
                let data = Payload::within(packet, range.start + 1..range.end + 1);
                Reply::Data { id, data }
            }
            kind::NAME => {
                let count = r.u32("name count")? as usize;
                // Each entry takes at least 12 bytes: the packet bounds the allocation.
                let mut names = Vec::with_capacity(count.min(r.remaining() / 12));
                for _ in 0..count {
                    names.push(Name {
                        filename: r.bytes("filename")?,
                        longname: r.bytes("longname")?,
                        attrs: Attrs::decode(&mut r)?,
                    });
                }
                Reply::Name { id, names }
            }
            kind::ATTRS => Reply::Attrs {
                id,
                attrs: Attrs::decode(&mut r)?,
            },
            kind::EXTENDED_REPLY => {
                // +5: the type byte and the id.
                let end = packet.len();
                Reply::Extended {
                    id,
                    data: Payload::within(packet, 5..end),
                }
            }
            other => return Err(DecodeError::NotAReply(other)),
        })
    }

    /// The request id this answers; VERSION answers INIT, which has none.
    pub fn id(&self) -> Option<u32> {
        match self {
            Reply::Version { .. } => None,
            Reply::Status { id, .. }
            | Reply::Handle { id, .. }
            | Reply::Data { id, .. }
            | Reply::Name { id, .. }
            | Reply::Attrs { id, .. }
            | Reply::Extended { id, .. } => Some(*id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::sftp::{MAX_HANDLE, frame_len};

    /// Decodes a packet as sent, checking its length field on the way.
    fn decode(sent: Vec<u8>) -> Result<Reply, DecodeError> {
        assert_eq!(frame_len(&sent), Some(sent.len() - 4));
        Reply::decode(sent[4..].to_vec())
    }

    #[test]
    fn status_round_trips() {
        assert_eq!(
            decode(status(3, StatusCode::NoSuchFile, "no such file")),
            Ok(Reply::Status {
                id: 3,
                code: StatusCode::NoSuchFile as u32,
                message: "no such file".to_owned(),
                language: "en".to_owned(),
            })
        );
    }

    #[test]
    fn a_status_without_message_decodes_as_empty() {
        let mut p = PacketWriter::new(kind::STATUS, 4, 4);
        put_u32(p.buf(), 1);
        let Ok(Reply::Status { code, message, .. }) = decode(p.finish()) else {
            panic!("status");
        };
        assert_eq!((code, message.as_str()), (1, ""));
    }

    #[test]
    fn handle_attrs_and_data_round_trip() {
        assert_eq!(
            decode(handle(5, b"h7")),
            Ok(Reply::Handle {
                id: 5,
                handle: b"h7".to_vec()
            })
        );
        let a = Attrs {
            size: Some(9),
            uid_gid: Some((1, 2)),
            permissions: Some(0o40755),
            times: Some((3, 4)),
        };
        assert_eq!(decode(attrs(6, &a)), Ok(Reply::Attrs { id: 6, attrs: a }));
        let (sent, n) = data_with::<()>(7, 10, |buf| {
            buf[..3].copy_from_slice(b"abc");
            Ok(3)
        })
        .unwrap();
        assert_eq!(n, 3);
        let Ok(Reply::Data { id: 7, data }) = decode(sent) else {
            panic!("data");
        };
        assert_eq!(data.bytes(), b"abc");
    }

    #[test]
    fn names_round_trip() {
        let sent = names(
            8,
            &[
                NameEntry {
                    filename: b"a b",
                    longname: b"-rw-r--r-- 1 u g 1 Jan 1 00:00 a b",
                    attrs: Attrs {
                        size: Some(1),
                        ..Attrs::default()
                    },
                },
                NameEntry {
                    filename: b"\xff",
                    longname: b"",
                    attrs: Attrs::default(),
                },
            ],
        );
        assert_eq!(
            decode(sent),
            Ok(Reply::Name {
                id: 8,
                names: vec![
                    Name {
                        filename: b"a b".to_vec(),
                        longname: b"-rw-r--r-- 1 u g 1 Jan 1 00:00 a b".to_vec(),
                        attrs: Attrs {
                            size: Some(1),
                            ..Attrs::default()
                        },
                    },
                    Name {
                        filename: vec![0xff],
                        longname: Vec::new(),
                        attrs: Attrs::default(),
                    },
                ],
            })
        );
    }

    #[test]
    fn version_round_trips() {
        assert_eq!(
            decode(version(&[("a@b", "1"), ("c@d", "2")])),
            Ok(Reply::Version {
                version: VERSION,
                extensions: vec![
                    (b"a@b".to_vec(), b"1".to_vec()),
                    (b"c@d".to_vec(), b"2".to_vec())
                ],
            })
        );
    }

    #[test]
    fn extended_replies_keep_their_body() {
        let Ok(Reply::Extended { id: 9, data }) = decode(extended_u64s(9, &[1, 2])) else {
            panic!("extended");
        };
        assert_eq!(
            data.bytes(),
            &[0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2]
        );
        let Ok(Reply::Extended { id: 10, data }) = decode(extended_strings(10, &[b"u", b""]))
        else {
            panic!("extended");
        };
        assert_eq!(data.bytes(), &[0, 0, 0, 1, b'u', 0, 0, 0, 0]);
    }

    #[test]
    fn rejects_a_name_count_larger_than_the_packet() {
        // Nothing is allocated for the count it claims.
        let mut p = PacketWriter::new(kind::NAME, 1, 4);
        put_u32(p.buf(), u32::MAX);
        assert_eq!(decode(p.finish()), Err(DecodeError::Truncated("filename")));
    }

    #[test]
    fn rejects_data_longer_than_the_packet() {
        let mut p = PacketWriter::new(kind::DATA, 1, 8);
        put_u32(p.buf(), 100);
        p.buf().extend_from_slice(b"short");
        assert_eq!(decode(p.finish()), Err(DecodeError::Truncated("data")));
    }

    #[test]
    fn rejects_an_over_long_handle() {
        assert_eq!(
            decode(handle(1, &[b'h'; MAX_HANDLE + 1])),
            Err(DecodeError::HandleTooLong)
        );
    }

    #[test]
    fn rejects_a_request_type_as_a_reply() {
        let p = PacketWriter::new(kind::OPEN, 1, 0);
        assert_eq!(decode(p.finish()), Err(DecodeError::NotAReply(kind::OPEN)));
    }

    #[test]
    fn rejects_a_reply_too_short_for_an_id() {
        assert_eq!(
            Reply::decode(vec![kind::STATUS, 0]),
            Err(DecodeError::Truncated("request id"))
        );
        assert_eq!(
            Reply::decode(Vec::new()),
            Err(DecodeError::Truncated("packet type"))
        );
    }

    #[test]
    fn rejects_a_version_with_a_cut_extension() {
        let mut sent = version(&[("a@b", "1")]);
        sent.pop();
        let len = (sent.len() - 4) as u32;
        sent[..4].copy_from_slice(&len.to_be_bytes());
        assert_eq!(decode(sent), Err(DecodeError::Truncated("extension data")));
    }
}

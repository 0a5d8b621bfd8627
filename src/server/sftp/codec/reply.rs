//! Encoding of the packets we send: the primitive types, and one builder per reply.

use super::{Attrs, StatusCode, VERSION, kind};

pub fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

pub fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_be_bytes());
}

pub fn put_string(out: &mut Vec<u8>, s: &[u8]) {
    // Every string we send is far below 4 GiB: packets are capped at MAX_PACKET.
    put_u32(out, s.len() as u32);
    out.extend_from_slice(s);
}

/// Builds one outgoing packet: reserves the length field, then fills it in.
pub struct PacketWriter {
    buf: Vec<u8>,
}

impl PacketWriter {
    pub fn new(kind: u8, id: u32, capacity: usize) -> Self {
        let mut buf = Vec::with_capacity(capacity + 9);
        buf.extend_from_slice(&[0; 4]);
        buf.push(kind);
        put_u32(&mut buf, id);
        PacketWriter { buf }
    }

    pub fn buf(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    pub fn finish(mut self) -> Vec<u8> {
        let len = (self.buf.len() - 4) as u32;
        self.buf[..4].copy_from_slice(&len.to_be_bytes());
        self.buf
    }
}

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
    let mut buf = vec![0; 4];
    buf.push(kind::VERSION);
    put_u32(&mut buf, VERSION);
    for (name, data) in extensions {
        put_string(&mut buf, name.as_bytes());
        put_string(&mut buf, data.as_bytes());
    }
    let len = (buf.len() - 4) as u32;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    buf
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

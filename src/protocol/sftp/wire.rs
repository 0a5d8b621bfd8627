//! The primitive types of the wire (draft-02 §3): a checked reader, and the writers.

use std::ops::Range;

use super::{DecodeError, MAX_HANDLE};

/// A checked cursor over a packet body: every length is checked against the bytes that
/// are there before anything is taken or allocated.
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

    /// Like [`Reader::string`], but returns where the bytes are in the buffer.
    pub(super) fn string_range(&mut self, what: &'static str) -> Result<Range<usize>, DecodeError> {
        let len = self.u32(what)? as usize;
        let start = self.pos;
        self.take(len, what)?;
        Ok(start..self.pos)
    }

    pub(super) fn handle(&mut self) -> Result<Vec<u8>, DecodeError> {
        let handle = self.string("handle")?;
        if handle.len() > MAX_HANDLE {
            return Err(DecodeError::HandleTooLong);
        }
        Ok(handle.to_vec())
    }

    /// A path or other string field, copied out. Bounded by the packet, itself capped.
    pub(super) fn bytes(&mut self, what: &'static str) -> Result<Vec<u8>, DecodeError> {
        Ok(self.string(what)?.to_vec())
    }

    /// A text field such as a status message; bytes that are not UTF-8 are replaced.
    pub(super) fn text(&mut self, what: &'static str) -> Result<String, DecodeError> {
        Ok(String::from_utf8_lossy(self.string(what)?).into_owned())
    }

    /// Skips whatever is left: the body of a message we do not know.
    pub(super) fn skip_rest(&mut self) {
        self.pos = self.buf.len();
    }

    /// How many bytes are left after the fields read so far.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
}

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
    /// A packet of type `kind` that starts with the request id `id`.
    pub fn new(kind: u8, id: u32, capacity: usize) -> Self {
        let mut p = PacketWriter::without_id(kind, capacity + 4);
        put_u32(&mut p.buf, id);
        p
    }

    /// A packet whose body does not start with a request id (INIT and VERSION).
    pub fn without_id(kind: u8, capacity: usize) -> Self {
        let mut buf = Vec::with_capacity(capacity + 5);
        buf.extend_from_slice(&[0; 4]);
        buf.push(kind);
        PacketWriter { buf }
    }

    pub fn buf(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    /// The packet, with its length field filled in.
    pub fn finish(mut self) -> Vec<u8> {
        let len = (self.buf.len() - 4) as u32;
        self.buf[..4].copy_from_slice(&len.to_be_bytes());
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::sftp::frame_len;

    #[test]
    fn reads_what_it_writes() {
        let mut out = Vec::new();
        put_u32(&mut out, 7);
        put_u64(&mut out, 1 << 40 | 5);
        put_string(&mut out, b"name");
        let mut r = Reader::new(&out);
        assert_eq!(r.u32("a"), Ok(7));
        assert_eq!(r.u64("b"), Ok(1 << 40 | 5));
        assert_eq!(r.string("c"), Ok(&b"name"[..]));
        assert_eq!(r.remaining(), 0);
    }

    #[test]
    fn rejects_a_string_longer_than_what_is_left() {
        let mut out = Vec::new();
        put_u32(&mut out, u32::MAX);
        out.extend_from_slice(b"abc");
        assert_eq!(
            Reader::new(&out).string("path"),
            Err(DecodeError::Truncated("path"))
        );
    }

    #[test]
    fn rejects_a_number_cut_short() {
        assert_eq!(
            Reader::new(&[0, 0, 0, 1, 2]).u64("offset"),
            Err(DecodeError::Truncated("offset"))
        );
    }

    #[test]
    fn a_packet_knows_its_length() {
        let mut p = PacketWriter::new(3, 9, 0);
        put_string(p.buf(), b"x");
        let packet = p.finish();
        assert_eq!(frame_len(&packet), Some(packet.len() - 4));
        assert_eq!(&packet[4..9], &[3, 0, 0, 0, 9]);
    }
}

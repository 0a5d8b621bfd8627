//! Cutting an SFTP channel's bytes into packets, and decoding each.

use tracing::debug;

use super::codec::{self, BadPacket, Incoming, MAX_PACKET};

/// Received bytes not yet cut into packets.
#[derive(Default)]
pub(super) struct Inbox {
    buf: Vec<u8>,
    start: usize,
}

pub(super) enum Frame {
    Incomplete,
    Packet(Vec<u8>),
    /// Too large to trust: what we know of it, to answer before closing.
    TooLarge {
        len: usize,
        kind: Option<u8>,
        id: Option<u32>,
    },
    /// Too short to hold even a type and an id.
    Garbled,
}

impl Inbox {
    pub(super) fn push(&mut self, data: &[u8]) {
        if self.start > 0 && self.start * 2 >= self.buf.len() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(data);
    }

    pub(super) fn unparsed(&self) -> usize {
        self.buf.len() - self.start
    }

    pub(super) fn next(&mut self) -> Frame {
        let pending = &self.buf[self.start..];
        let Some(len) = codec::frame_len(pending) else {
            return Frame::Incomplete;
        };
        if len > MAX_PACKET {
            let kind = pending.get(4).copied();
            let id = pending
                .get(5..9)
                .and_then(|b| b.try_into().ok())
                .map(u32::from_be_bytes)
                .filter(|_| kind != Some(codec::kind::INIT));
            return Frame::TooLarge { len, kind, id };
        }
        if len < 5 {
            return Frame::Garbled;
        }
        let Some(packet) = pending.get(4..4 + len) else {
            return Frame::Incomplete;
        };
        let packet = packet.to_vec();
        self.start += 4 + len;
        Frame::Packet(packet)
    }
}

/// Decodes one packet. Bytes after a request's fields are dropped, as OpenSSH's server
/// drops them, and noted at debug level.
pub(super) fn decode(packet: Vec<u8>) -> Result<Incoming, BadPacket> {
    Incoming::decode_with_trailing(packet).map(|(incoming, trailing)| {
        if trailing > 0
            && let Incoming::Request { id, request } = &incoming
        {
            debug!(
                id,
                request = request.name(),
                bytes = trailing,
                "ignoring bytes after the fields of an sftp request"
            );
        }
        incoming
    })
}

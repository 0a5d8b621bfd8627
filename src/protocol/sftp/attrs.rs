//! File attributes (draft-02 §5), as requests and replies carry them.

use super::wire::{Reader, put_u32, put_u64};
use super::{DecodeError, attr_flags};

/// File attributes. Absent fields are `None`; extended pairs are skipped on decode and
/// never sent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attrs {
    pub size: Option<u64>,
    pub uid_gid: Option<(u32, u32)>,
    pub permissions: Option<u32>,
    /// (atime, mtime), in Unix seconds.
    pub times: Option<(u32, u32)>,
}

impl Attrs {
    pub fn decode(r: &mut Reader<'_>) -> Result<Attrs, DecodeError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::sftp::put_string;

    fn round_trip(attrs: &Attrs) -> Attrs {
        let mut encoded = Vec::new();
        attrs.encode(&mut encoded);
        let mut r = Reader::new(&encoded);
        let decoded = Attrs::decode(&mut r).unwrap();
        assert_eq!(r.remaining(), 0);
        decoded
    }

    #[test]
    fn every_combination_of_fields_round_trips() {
        for mask in 0..16u8 {
            let attrs = Attrs {
                size: (mask & 1 != 0).then_some(1 << 40),
                uid_gid: (mask & 2 != 0).then_some((1000, 1001)),
                permissions: (mask & 4 != 0).then_some(0o100644),
                times: (mask & 8 != 0).then_some((1, u32::MAX)),
            };
            assert_eq!(round_trip(&attrs), attrs, "mask {mask}");
        }
    }

    #[test]
    fn extended_pairs_are_skipped() {
        let mut encoded = Vec::new();
        put_u32(&mut encoded, attr_flags::SIZE | attr_flags::EXTENDED);
        put_u64(&mut encoded, 5);
        put_u32(&mut encoded, 2);
        for s in [&b"a@b"[..], b"1", b"c@d", b""] {
            put_string(&mut encoded, s);
        }
        let mut r = Reader::new(&encoded);
        let attrs = Attrs::decode(&mut r).unwrap();
        assert_eq!((attrs.size, r.remaining()), (Some(5), 0));
    }

    #[test]
    fn rejects_attributes_missing_their_extended_pairs() {
        // A huge count with no pairs behind it: nothing is allocated for the count.
        let mut encoded = Vec::new();
        put_u32(&mut encoded, attr_flags::EXTENDED);
        put_u32(&mut encoded, u32::MAX);
        assert_eq!(
            Attrs::decode(&mut Reader::new(&encoded)),
            Err(DecodeError::Truncated("extended type"))
        );
    }

    #[test]
    fn rejects_a_flagged_field_that_is_not_there() {
        let mut encoded = Vec::new();
        put_u32(&mut encoded, attr_flags::ACMODTIME);
        put_u32(&mut encoded, 1);
        assert_eq!(
            Attrs::decode(&mut Reader::new(&encoded)),
            Err(DecodeError::Truncated("mtime"))
        );
    }
}

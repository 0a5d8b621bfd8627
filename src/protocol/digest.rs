//! MD5 digests as they travel on the wire: 32 hex digits.

use std::fmt;
use std::str::FromStr;

use md5::{Digest, Md5};

/// An MD5 digest. Shown and sent as 32 lowercase hex digits; parsed in either case.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Md5Digest(pub [u8; 16]);

impl Md5Digest {
    /// The digest of no bytes at all (`d41d8cd98f00b204e9800998ecf8427e`).
    pub fn empty() -> Self {
        Self::from_hasher(Md5::new())
    }

    /// Finishes `hasher` into a digest.
    pub fn from_hasher(hasher: Md5) -> Self {
        Self(hasher.finalize().into())
    }

    /// The digest of `data`.
    pub fn of(data: &[u8]) -> Self {
        Self(Md5::digest(data).into())
    }
}

impl fmt::Display for Md5Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Md5Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Md5Digest({self})")
    }
}

/// The text was not 32 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an MD5 digest (32 hex digits)")]
pub struct BadDigest;

impl FromStr for Md5Digest {
    type Err = BadDigest;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = s.as_bytes();
        if bytes.len() != 32 {
            return Err(BadDigest);
        }
        let mut out = [0u8; 16];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            let hi = hex_value(pair[0]).ok_or(BadDigest)?;
            let lo = hex_value(pair[1]).ok_or(BadDigest)?;
            out[i] = hi << 4 | lo;
        }
        Ok(Self(out))
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_matches_known_values() {
        assert_eq!(
            Md5Digest::empty().to_string(),
            "d41d8cd98f00b204e9800998ecf8427e"
        );
        let d = Md5Digest::of(b"hello\n");
        assert_eq!(d.to_string(), "b1946ac92492d2347c6235b4d2611184");
        assert_eq!(
            "B1946AC92492D2347C6235B4D2611184".parse::<Md5Digest>(),
            Ok(d)
        );
    }

    #[test]
    fn rejects_wrong_length_and_non_hex() {
        assert!("abc".parse::<Md5Digest>().is_err());
        assert!(
            "g1946ac92492d2347c6235b4d2611184"
                .parse::<Md5Digest>()
                .is_err()
        );
        assert!(
            "b1946ac92492d2347c6235b4d26111844"
                .parse::<Md5Digest>()
                .is_err()
        );
    }
}

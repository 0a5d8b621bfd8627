//! Hashing file data over a range, in [`CHUNK`]s: the one loop that every hash of stored
//! bytes goes through (a resumed prefix, `md5`, the hash commands).

use std::io;

use md5::Md5;
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha512};

use super::read::{CHUNK, ReadAt, read_full};

/// Which hash to compute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HashAlgorithm {
    Md5,
    Sha1,
    Sha256,
    Sha512,
}

/// A running hash of one of the [`HashAlgorithm`]s.
#[derive(Clone, Debug)]
pub enum Hasher {
    Md5(Md5),
    Sha1(Sha1),
    Sha256(Sha256),
    Sha512(Sha512),
}

impl Hasher {
    pub fn new(algorithm: HashAlgorithm) -> Hasher {
        match algorithm {
            HashAlgorithm::Md5 => Hasher::Md5(Md5::new()),
            HashAlgorithm::Sha1 => Hasher::Sha1(Sha1::new()),
            HashAlgorithm::Sha256 => Hasher::Sha256(Sha256::new()),
            HashAlgorithm::Sha512 => Hasher::Sha512(Sha512::new()),
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Md5(h) => h.update(data),
            Hasher::Sha1(h) => h.update(data),
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
        }
    }

    /// The digest's bytes.
    pub fn finish(self) -> Vec<u8> {
        match self {
            Hasher::Md5(h) => h.finalize().to_vec(),
            Hasher::Sha1(h) => h.finalize().to_vec(),
            Hasher::Sha256(h) => h.finalize().to_vec(),
            Hasher::Sha512(h) => h.finalize().to_vec(),
        }
    }

    /// The digest in lower-case hex, as `md5sum` and friends print it.
    pub fn hex(self) -> String {
        self.finish().iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// Feeds up to `len` bytes of `source` from `offset` to `update`, chunk by chunk,
/// stopping at the end of the data; returns how many bytes it fed.
pub fn hash_range_with<R: ReadAt + ?Sized>(
    source: &R,
    offset: u64,
    len: u64,
    mut update: impl FnMut(&[u8]),
) -> io::Result<u64> {
    let mut buf = vec![0u8; CHUNK.min(usize::try_from(len).unwrap_or(CHUNK))];
    let mut done = 0u64;
    while done < len {
        let want = usize::try_from(len - done).map_or(buf.len(), |n| n.min(buf.len()));
        let n = read_full(source, offset.saturating_add(done), &mut buf[..want])?;
        update(&buf[..n]);
        done += n as u64;
        if n < want {
            break;
        }
    }
    Ok(done)
}

/// [`hash_range_with`] into an MD5.
pub fn md5_range<R: ReadAt + ?Sized>(
    source: &R,
    offset: u64,
    len: u64,
    hasher: &mut Md5,
) -> io::Result<u64> {
    hash_range_with(source, offset, len, |data| hasher.update(data))
}

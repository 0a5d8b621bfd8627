//! The rsftp/1 wire format: request lines, quoting, status lines and entry lines.
//!
//! This module parses and encodes; it touches no socket and no file. `docs/PROTOCOL.md`
//! is the reference for everything here.

mod digest;

pub use digest::{BadDigest, Md5Digest};

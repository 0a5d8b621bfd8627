//! SSH transport settings that both ends use, tuned for bulk transfer.

use russh::cipher;

/// Ciphers, fastest first: AES-GCM runs several times faster than ChaCha20 on CPUs with
/// AES instructions; ChaCha20 stays for peers without them.
pub const CIPHERS: &[cipher::Name] = &[
    cipher::AES_128_GCM,
    cipher::AES_256_GCM,
    cipher::CHACHA20_POLY1305,
    cipher::AES_256_CTR,
    cipher::AES_128_CTR,
];

/// The SSH channel window: large enough to keep a fast link busy across a round trip.
pub const WINDOW_SIZE: u32 = 16 * 1024 * 1024;

/// The largest SSH packet either end accepts (the most russh takes).
pub const MAX_PACKET: u32 = 65535;

/// Queued channel messages per channel before back-pressure.
pub const CHANNEL_BUFFER: usize = 256;

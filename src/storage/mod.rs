//! The storage core: each user's home jail, their quota ledger, atomic resumable uploads
//! and hashing.
//!
//! Blocking std code that knows nothing of SSH; the server calls it from
//! `spawn_blocking`, and both subsystems (rsftp and SFTP) share it.

mod quota;

pub use quota::{QuotaExceeded, QuotaLedger, Reservation, Usage};

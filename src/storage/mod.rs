//! The storage core: each user's home jail, their quota ledger, atomic resumable uploads
//! and hashing.
//!
//! Blocking std code that knows nothing of SSH; the server calls it from
//! `spawn_blocking`, and both subsystems (rsftp and SFTP) share it. Users name files by
//! [`VirtualPath`], rooted at their home; every access then goes through a cap-std
//! directory handle opened on that home, so the kernel resolves paths *beneath* it and
//! symbolic links that lead out are refused. Partial uploads wait outside every home, in
//! `<root>/.partials/<user>/`, where no user path can reach them.

mod beneath;
mod error;
mod home;
mod links;
mod listing;
mod path;
mod quota;
mod scan;
mod staging;
pub mod stream;
#[cfg(test)]
mod test_support;
mod upload;

pub use error::StorageError;
pub use home::{Entry, EntryKind, HomeDir, OpenFile, OpenOptions, Storage};
pub use listing::{DirStream, ListedEntry, SortedListing};
pub use path::VirtualPath;
pub use quota::{
    Entries, QUOTA_BLOCK, QuotaExceeded, QuotaLedger, Reservation, Tally, Usage, entry_cost,
    file_cost,
};
pub use scan::{MAX_DEPTH, ScanFailure};
pub use staging::{LEGACY_STAGING_DIR, STAGING_ROOT};
pub use upload::{Upload, UploadStart};

/// The result of a storage operation.
pub type Result<T> = std::result::Result<T, StorageError>;

//! The storage core: each user's home jail, their quota ledger, atomic resumable uploads
//! and hashing.
//!
//! Std code that knows nothing of SSH: blocking, called from `spawn_blocking`, apart
//! from `stream`, which moves file data between an async peer and short blocking calls.
//! Every front end shares it. Users name files by
//! [`VirtualPath`], rooted at their home; every access then goes through a cap-std
//! directory handle opened on that home, so the kernel resolves paths *beneath* it and
//! symbolic links that lead out are refused. Partial uploads wait outside every home, in
//! `<root>/.partials/<user>/`, where no user path can reach them.
//!
//! - `root`: [`Storage`], the folder of all homes and the per-user state they share.
//! - `home`: [`HomeDir`], the jail and the operations on paths inside it.
//! - `open_file`: [`OpenFile`], a file opened inside a home; `entry`: what `stat` says.
//! - `links`: making and reading symbolic links that stay inside.
//! - `upload` and `staging`: resumable, verified, atomic uploads, and where they wait.
//! - `quota`: the one quota rule and the ledger; `scan`: measuring a home by handle.
//! - `listing`: directory listings read as they go out; `stream`: file data in chunks,
//!   with MD5 in the same pass. `path`: [`VirtualPath`]; `beneath`: the `O_PATH`
//!   descriptors that changes of mode go through.

pub mod backend;
mod beneath;
mod entry;
mod error;
pub mod hash;
mod home;
mod links;
mod listing;
pub mod object;
mod open_file;
mod path;
mod posix;
mod quota;
mod read;
mod root;
mod scan;
mod staging;
pub mod stream;
#[cfg(test)]
mod test_support;
mod upload;
mod user_state;

pub use backend::{Backend, Capabilities, FileHandle, OpenHow, Replace, StagedFile};
pub use entry::{Entry, EntryKind, PosixDetails};
pub use error::StorageError;
pub use hash::{HashAlgorithm, Hasher};
pub use home::HomeDir;
pub use listing::{DirStream, ListedEntry, SortedListing};
pub use open_file::{OpenFile, OpenOptions};
pub use path::VirtualPath;
pub use quota::{
    Entries, QUOTA_BLOCK, QuotaExceeded, QuotaLedger, Reservation, Tally, Usage, entry_cost,
    file_cost,
};
pub use read::{CHUNK, ReadAt, ReadHandle};
pub use root::Storage;
pub use scan::{MAX_DEPTH, ScanFailure};
pub use staging::{LEGACY_STAGING_DIR, STAGING_ROOT};
pub use upload::{Upload, UploadStart};

/// The result of a storage operation.
pub type Result<T> = std::result::Result<T, StorageError>;

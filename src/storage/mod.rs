//! The storage core: each user's home jail, their quota ledger, atomic resumable uploads
//! and hashing. It knows nothing of SSH.
//!
//! Two layers. [`HomeDir`] is the policy: users name files by [`VirtualPath`], rooted at
//! their home; it books the quota, marks paths busy while they are uploaded, names the
//! partial uploads and bounds how deep folders nest. Below it, a [`Backend`] keeps the
//! bytes, and every access inside the home. Its one implementation, `posix`, holds a
//! cap-std directory handle on the home, so the kernel resolves paths *beneath* it and
//! symbolic links that lead out are refused; partial uploads wait outside every home, in
//! `<root>/.partials/<user>/`, where no user path can reach them. The trait is shaped so
//! that an object store fits (see its documentation).
//!
//! Everything is blocking std code, called from `spawn_blocking`, except `stream`,
//! which is async: it moves file data between a peer and short blocking calls.
//!
//! - `root`: [`Storage`], the folder of all homes and the per-user state they share
//!   (`user_state`: the ledger, busy marks and size lock).
//! - `home`: [`HomeDir`], the policy layer; `backend`: the [`Backend`] trait, with
//!   [`FileHandle`] (open files) and [`StagedFile`] (partial uploads); `posix`: its
//!   cap-std implementation (`posix::files`: open files and partials on disk).
//! - `open_file`: [`OpenFile`], a file opened inside a home; `entry`: what `stat` says,
//!   with the POSIX details apart.
//! - `links`: making and reading symbolic links that stay inside.
//! - `upload` and `staging`: resumable, verified, atomic uploads, and where they wait.
//! - `quota`: the one quota rule and the ledger; `scan`: measuring a home by handle;
//!   `cluster_quota`: [`ClusterQuota`], the seam to a ledger shared by a cluster's
//!   nodes, which then checks the bytes.
//! - `listing`: directory listings read as they go out; `read`: [`ReadHandle`], what
//!   every read goes through, and [`CHUNK`], the one chunk size; `hash`: hashing a range
//!   by [`HashAlgorithm`]; `stream`: file data in chunks, with MD5 in the same pass.
//!   `path`: [`VirtualPath`]; `beneath`: the `O_PATH` descriptors that changes of mode
//!   go through.

pub mod backend;
mod beneath;
mod cluster_quota;
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
pub use cluster_quota::{ClusterQuota, Reconciled};
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

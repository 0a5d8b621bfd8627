//! Homes on an S3-compatible object store (AWS S3, Garage, MinIO, Ceph, ...), through
//! the `object_store` crate.
//!
//! Each user's home is the key prefix `prefix/<user>/`; a key is built only from the
//! user's resolved [`VirtualPath`](crate::storage::VirtualPath) (`key`). Folders are
//! zero-byte `name/` markers, or just common prefixes of keys. Uploads are multipart
//! uploads straight to the final key, completed only once the whole file's MD5 matches;
//! what a resume needs is saved after each part (`state`).
//!
//! - `bucket`: the configuration and the connection, and the marker requests.
//! - `key`: keys from virtual paths. `state`: saved upload states.
//! - `backend`: [`ObjectBackend`], the storage core's `Backend` on the store, and
//!   [`ObjectHomes`], which makes one per user; `runner`: the runtime its requests run on.
//! - `namespace`: [`ObjectHome`], what is at a path, listings, folders, deletes, moves
//!   and ranged reads. `multipart`: partial uploads as multipart uploads; `stream`:
//!   SFTP uploads into one, with writes put back in order.
//! - `errors`: the store's errors as the storage core's.

mod backend;
mod bucket;
mod errors;
mod key;
mod multipart;
mod namespace;
mod runner;
mod state;
mod stream;

pub use backend::{ObjectBackend, ObjectHomes, READ_AHEAD};
pub use bucket::{Bucket, MAX_RETRIES, ObjectStoreConfig, RETRY_TIMEOUT};
pub use errors::ObjectError;
pub use key::{HomeKeys, MAX_KEY_LEN};
pub use multipart::{MAX_PARTS, PART_SIZE};
pub use namespace::{Found, LIST_PAGE, ListCursor, ObjectHome, ObjectInfo};
pub use runner::Runner;
pub use state::{DiskStateStore, UploadState, UploadStateStore, decode_md5, encode_md5};
pub use stream::REORDER_BOUND;

//! The seam between the policy of a home ([`HomeDir`](super::HomeDir): virtual paths,
//! quota bookings, busy marks, the hidden staging area) and where the bytes live.
//!
//! [`Backend`] is what a home's storage must do; `posix` (cap-std, beneath a directory
//! handle) is its implementation for local disk. An object store is the next one.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::SystemTime;

use md5::Md5;

use super::read::ReadHandle;
use super::scan::ScanFailure;
use super::{Entry, Result, Tally, VirtualPath};

/// The entries of one folder, in the backend's order, without `.` and `..`; read as
/// they are taken, never all at once.
pub type Listing = Box<dyn Iterator<Item = Result<Entry>> + Send>;

/// The partial uploads a backend holds for a home.
pub type StagedListing = Box<dyn Iterator<Item = Result<StagedInfo>> + Send>;

/// What a backend can do beyond the core every backend has. The home refuses what a
/// backend cannot do with [`StorageError::Unsupported`](super::StorageError::Unsupported)
/// before calling it, and a backend that is called anyway answers the same.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// Writes into an existing file at any offset ([`Backend::open`] with `write`), as
    /// SFTP clients do; and `set_len` on an open file.
    pub in_place_writes: bool,
    /// Symbolic links ([`Backend::symlink`], [`Backend::read_link`]).
    pub symlinks: bool,
    /// Renaming a folder that is not empty.
    pub rename_full_dirs: bool,
}

/// Whether a rename or a publish may replace what is at the target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Replace {
    /// As POSIX `rename`: a file, a link or an empty folder at the target is replaced.
    Allow,
    /// Only if nothing is at the target, decided in one step with the rename
    /// (`renameat2(RENAME_NOREPLACE)`, or a conditional write): otherwise `Exists`.
    Never,
}

/// How to open a file with [`Backend::open`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpenHow {
    pub read: bool,
    pub write: bool,
    /// Create the file, failing with `Exists` if it is there; without it, the file must
    /// exist.
    pub create_new: bool,
}

/// A partial upload in the staging area, as [`Backend::staged`] lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StagedInfo {
    /// The name the home gave it at [`Backend::stage`].
    pub name: String,
    /// What it holds now, as the quota counts it.
    pub size: u64,
    /// When it was last written to.
    pub modified: SystemTime,
}

/// What publishing an upload did.
#[derive(Debug)]
pub struct Published {
    /// The entry the upload replaced, whose cost the home gives back.
    pub replaced: Option<Entry>,
    /// Whether the publish is durable: a failure here means the file is published (its
    /// name is taken, and `replaced` is gone) but might not survive a power loss.
    pub durable: io::Result<()>,
}

/// Where a home's files live. Synchronous: every call is made from a blocking thread
/// (`spawn_blocking`), so an implementation may block, and one over an async client (an
/// object store) runs its requests with a runtime handle's `block_on` there.
///
/// # The contract
///
/// Paths are [`VirtualPath`]s, already checked by the home: rooted at the user's home,
/// with no `.`, `..` or empty segment, no NUL or control byte, and within the length
/// bounds. The backend must keep every access inside the home: on disk, symbolic links
/// that lead out are refused (`Denied`); on an object store, a key is only ever the
/// home's prefix followed by the path. Errors are [`StorageError`]s that name the
/// user's path, never a real path or key.
///
/// The home holds its size lock around each call that changes what entries exist or how
/// long a file is, reads what it needs to book (`lstat` of what a call replaces or
/// removes) and books the quota; the backend books nothing and counts nothing except in
/// [`Backend::measure`]. The home also marks a path busy while it is being uploaded, and
/// names the partials itself.
///
/// # Fitting an object store
///
/// The trait asks for nothing a store cannot give:
/// - **Uploads publish on completion.** [`Backend::stage`] begins (or resumes) an upload
///   that is invisible until [`StagedFile::publish`]: on a store, a multipart upload to
///   the final key whose `held` is the last complete part boundary and whose MD5 state
///   at that boundary is kept with it ([`StagedFile::hash_held`]).
/// - **No rename without a copy.** [`Backend::rename`] of a file may be a copy and a
///   delete; renaming a folder that is not empty may be refused with `Unsupported`
///   (see [`Capabilities::rename_full_dirs`]).
/// - **Folders may be only prefixes.** `stat` of a prefix that holds objects reports a
///   folder; [`Backend::mkdir`] may write a marker; [`Backend::rmdir`] removes the marker
///   and refuses with `NotEmpty` while objects remain below.
/// - **Listings stream.** [`Backend::list`] returns an iterator: a store fetches one page
///   per request as it is drained, so a folder of any size never sits in memory whole.
/// - **In-place writes may be declined** ([`Capabilities::in_place_writes`]): SFTP then
///   answers `SSH_FX_OP_UNSUPPORTED`. New files written from offset 0 in order go
///   through staging instead.
/// - POSIX details ([`Entry::posix`]), modes and times are optional: a store leaves
///   `posix` empty and may ignore `set_permissions`.
///
/// [`StorageError`]: super::StorageError
pub trait Backend: Send + Sync + fmt::Debug + 'static {
    /// What this backend can do beyond the core.
    fn capabilities(&self) -> Capabilities;

    /// Describes `path`, following links that stay inside; `name` is the path.
    fn stat(&self, path: &VirtualPath) -> Result<Entry>;

    /// Describes `path` itself: a link is reported as a link.
    fn lstat(&self, path: &VirtualPath) -> Result<Entry>;

    /// The entries of the folder `dir`, as they come; `NotADirectory` for anything else.
    /// Entries deleted while the listing is read are left out, not errors.
    fn list(&self, dir: &VirtualPath) -> Result<Listing>;

    /// Creates the folder `path` with permission bits `mode` (already masked by the
    /// home), set as it is made; its parent must exist. `Exists` if anything is there.
    fn mkdir(&self, path: &VirtualPath, mode: u32) -> Result<()>;

    /// Removes the empty folder `path`: `NotEmpty` if it holds anything,
    /// `NotADirectory` if it is not a folder.
    fn rmdir(&self, path: &VirtualPath) -> Result<()>;

    /// Removes the file or link `path` (never what a link points to). The home has
    /// refused folders already.
    fn remove_file(&self, path: &VirtualPath) -> Result<()>;

    /// Renames `from` to `to`, returning the entry it replaced (`None` when nothing was
    /// there, or `to` was another name of the same file). With [`Replace::Never`] the
    /// check and the rename are one step. A folder moved into itself is `Invalid`.
    fn rename(
        &self,
        from: &VirtualPath,
        to: &VirtualPath,
        replace: Replace,
    ) -> Result<Option<Entry>>;

    /// How deep the folder `dir` really is below the home (`/` is 0), after the links on
    /// the way: the home bounds nesting with it.
    fn depth_of(&self, dir: &VirtualPath) -> io::Result<usize>;

    /// How many levels of folders `dir` holds below itself (0 for none), or `None` if
    /// that is more than `limit` or cannot be told.
    fn levels_below(&self, dir: &VirtualPath, limit: usize) -> Option<usize>;

    /// Sets the modification time of `path` (following links inside).
    fn set_mtime(&self, path: &VirtualPath, mtime: SystemTime) -> Result<()>;

    /// Sets the permission bits of `path` (already masked to `0o777` by the home); a
    /// folder keeps `0o700` for the server. Checked and changed through one handle.
    fn set_permissions(&self, path: &VirtualPath, mode: u32) -> Result<()>;

    /// Makes `link` a symbolic link to `target`, which the home has checked stays
    /// inside.
    fn symlink(&self, target: &str, link: &VirtualPath) -> Result<()>;

    /// The target of the link `path`, as stored; `Denied` if `path` is not a link.
    fn read_link(&self, path: &VirtualPath) -> Result<PathBuf>;

    /// Opens the regular file `path` to read (a ranged reader on a store), and describes
    /// it. A folder is `IsADirectory`; anything else that is not a regular file is
    /// `Denied`, and is never opened (a FIFO would block).
    fn open_read(&self, path: &VirtualPath) -> Result<(ReadHandle, Entry)>;

    /// Opens the regular file `path` as [`OpenHow`] says, for SFTP handles and in-place
    /// writes. Opening an existing file to write is `Unsupported` without
    /// [`Capabilities::in_place_writes`]. Refuses what is not a regular file as
    /// [`Backend::open_read`] does.
    fn open(&self, path: &VirtualPath, how: OpenHow) -> Result<Box<dyn FileHandle>>;

    /// Refuses, before any data is sent, an upload into the folder `dir` that could not
    /// be published (on disk: a folder on another filesystem than the staging area).
    fn check_publishable(&self, dir: &VirtualPath) -> Result<()>;

    /// Opens the partial upload `name` for the target `path`, creating it if `create`;
    /// `None` if it does not exist and `create` is false. The home names partials and
    /// holds `path`'s busy mark; no user path can name a partial.
    fn stage(
        &self,
        name: &str,
        path: &VirtualPath,
        create: bool,
    ) -> Result<Option<Box<dyn StagedFile>>>;

    /// The partial uploads of this home.
    fn staged(&self) -> Result<StagedListing>;

    /// Deletes the partial `name` (aborts it, on a store); `false` if it was gone.
    fn remove_staged(&self, name: &str) -> io::Result<bool>;

    /// What everything in the home and its staging area costs by the quota rule, for
    /// the ledger at start; without following links.
    fn measure(&self) -> std::result::Result<Tally, ScanFailure>;
}

/// An open file, for SFTP handles and in-place writes. The home books every change.
pub trait FileHandle: Send + Sync + fmt::Debug {
    /// Reads from `offset` until `buf` is full or the file ends.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize>;

    /// Writes all of `data` at `offset`.
    fn write_all_at(&self, offset: u64, data: &[u8]) -> io::Result<()>;

    /// Cuts or extends the file to `len` bytes.
    fn set_len(&self, len: u64) -> io::Result<()>;

    /// Describes the open file, named `name`.
    fn stat(&self, name: &str) -> io::Result<Entry>;

    /// The file's length, or `None` once it has no name left (deleted, or replaced by a
    /// rename or a publish): the home then refuses to change it.
    fn named_len(&self) -> io::Result<Option<u64>>;

    /// Sets the permission bits of the open file itself, whatever its name is now.
    fn set_permissions(&self, mode: u32) -> io::Result<()>;

    /// Sets the modification time of the open file itself, leaving its access time.
    fn set_mtime(&self, mtime: SystemTime) -> io::Result<()>;

    /// Makes what was written durable.
    fn sync(&self) -> io::Result<()>;

    /// A reader on the same file, for a streaming download.
    fn reader(&self) -> io::Result<ReadHandle>;

    /// For a file that is published when it is closed (an upload to an object store):
    /// publishes it, atomically, as [`StagedFile::publish`] with [`Replace::Never`].
    /// `None` for a file that was there all along, or was published already.
    fn finish(&self) -> Result<Option<Published>> {
        Ok(None)
    }

    /// For a file published when it is closed and not published yet: the bytes kept if
    /// it is dropped now (a store keeps whole parts), so the home gives back the rest.
    fn kept_if_dropped(&self) -> Option<u64> {
        None
    }
}

/// A partial upload, invisible under any user path until it is published.
pub trait StagedFile: Send + Sync + fmt::Debug {
    /// The bytes kept from earlier attempts, from which the upload may resume: on disk
    /// the partial's length, on a store the last complete part boundary.
    fn held(&self) -> io::Result<u64>;

    /// The MD5 state after the first `held` bytes: read back from disk, or the state a
    /// store kept at that part boundary.
    fn hash_held(&self, held: u64) -> io::Result<Md5>;

    /// Cuts what is kept to `len` bytes; 0 starts over. A store may support only 0 and
    /// `held`.
    fn truncate(&self, len: u64) -> io::Result<()>;

    /// Writes `data` at `offset`, which is always what was written so far: uploads are
    /// sequential. A store buffers up to a part and sends it when full.
    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()>;

    /// Sets the permission bits the file is published with.
    fn set_permissions(&self, mode: u32) -> io::Result<()>;

    /// Makes what was written durable before a publish.
    fn sync(&self) -> io::Result<()>;

    /// Publishes what was written under `path`, atomically: a reader sees the old entry
    /// or the whole new file, never part of it. With [`Replace::Never`], `Exists` if
    /// anything is there. The home holds its size lock, and has verified the MD5.
    fn publish(&self, path: &VirtualPath, replace: Replace) -> Result<Published>;
}

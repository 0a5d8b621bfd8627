//! Users' homes: the policy every access goes through, over the home's [`Backend`].
//!
//! A [`HomeDir`] takes paths as the user sees them ([`VirtualPath`]) and hands them to
//! its backend, which keeps every access inside the home (on disk, cap-std resolves
//! each path beneath a handle on the home, so symbolic links that lead out fail).
//!
//! Quota: every operation that creates or removes an entry, or changes a regular file's
//! length, books what that costs by the one quota rule ([`Entry::cost`]) in the user's
//! [`QuotaLedger`], and takes the user's size lock while it reads the old state and
//! changes it, so concurrent writers never count the same bytes twice. The ledger counts
//! what the user's named entries hold: a file's cost is given back when its last name
//! goes (a delete, or a rename or upload over it), so an [`OpenFile`] whose file has no
//! name left refuses to change it, rather than book bytes nobody can see or delete.

use std::sync::Arc;
use std::time::SystemTime;

use md5::{Digest, Md5};

use super::backend::{Backend, Capabilities, OpenHow, Replace};
use super::entry::Entry;
use super::hash::{HashAlgorithm, Hasher, hash_range_with, md5_range};
use super::open_file::{OpenFile, OpenOptions};
use super::quota::{QUOTA_BLOCK, file_cost};
use super::read::ReadHandle;
use super::scan::{MAX_DEPTH, ScanFailure};
use super::user_state::{UserState, lock};
use super::{Entries, EntryKind, QuotaLedger, Result, StorageError, Usage, VirtualPath};
use crate::protocol::Md5Digest;

/// One user's home, for one session. Cheap to clone; clones share everything.
#[derive(Clone, Debug)]
pub struct HomeDir {
    pub(super) backend: Arc<dyn Backend>,
    pub(super) state: Arc<UserState>,
}

/// Turns an I/O error on `path` into a typed error; for `map_err`.
pub(super) fn at(path: &VirtualPath) -> impl FnOnce(std::io::Error) -> StorageError + '_ {
    move |err| StorageError::from_io(path, err)
}

/// Only regular files can be opened: a directory is refused as such, and a device or a
/// FIFO as not permitted.
fn check_regular(path: &VirtualPath, entry: &Entry) -> Result<()> {
    match entry.kind {
        EntryKind::File => Ok(()),
        EntryKind::Dir => Err(StorageError::IsADirectory { path: path.clone() }),
        EntryKind::Symlink | EntryKind::Other => Err(StorageError::Denied {
            path: path.clone(),
            reason: "not a regular file",
        }),
    }
}

fn too_deep(path: &VirtualPath) -> StorageError {
    StorageError::Invalid {
        path: path.clone(),
        reason: "folders may nest at most 128 levels deep",
    }
}

pub(super) fn refuse_root(path: &VirtualPath) -> Result<()> {
    if path.is_root() {
        return Err(StorageError::Denied {
            path: path.clone(),
            reason: "the home itself",
        });
    }
    Ok(())
}

impl HomeDir {
    pub fn ledger(&self) -> &Arc<QuotaLedger> {
        &self.state.ledger
    }

    pub fn usage(&self) -> Usage {
        self.state.ledger.usage()
    }

    /// What this home's backend can do beyond the core.
    pub fn capabilities(&self) -> Capabilities {
        self.backend.capabilities()
    }

    /// Why the home could not be measured, if its last scan failed (writes are refused
    /// meanwhile).
    pub fn unmeasured(&self) -> Option<ScanFailure> {
        lock(&self.state.unmeasured).clone()
    }

    /// How many files, folders and links the user has, against `max_files`.
    pub fn entries(&self) -> Entries {
        self.state.ledger.entries()
    }

    /// Describes `path`, following symbolic links (as long as they stay inside the home).
    pub fn stat(&self, path: &VirtualPath) -> Result<Entry> {
        self.backend.stat(path)
    }

    /// Describes `path` itself: a symbolic link is reported as a link.
    pub fn lstat(&self, path: &VirtualPath) -> Result<Entry> {
        self.backend.lstat(path)
    }

    /// The entries of a directory, sorted by name bytes, with symbolic links shown as
    /// links; or, for anything else, that one entry.
    ///
    /// This holds the whole folder at once, outside any memory budget: it is for tests
    /// and small folders. A front end reads a folder as it goes ([`HomeDir::open_dir`]),
    /// or in its compact sorted form ([`HomeDir::sorted_listing`]).
    pub fn list(&self, path: &VirtualPath) -> Result<Vec<Entry>> {
        if self.backend.stat(path)?.kind != EntryKind::Dir {
            let entry = self.backend.lstat(path)?;
            let name = path.file_name().unwrap_or(path.as_str());
            return Ok(vec![Entry {
                name: name.into(),
                ..entry
            }]);
        }
        let mut entries = self.backend.list(path)?.collect::<Result<Vec<_>>>()?;
        entries.sort_by(|a, b| {
            use std::os::unix::ffi::OsStrExt as _;
            a.name.as_bytes().cmp(b.name.as_bytes())
        });
        Ok(entries)
    }

    /// What a listing of the folder `path` starts with, as `ls -a` expects: `.` (the
    /// folder) and `..` (its parent; above the home is the home again, as in a chroot).
    pub fn dots(&self, path: &VirtualPath) -> Result<[Entry; 2]> {
        let this = self.stat(path)?;
        let parent = match path.parent() {
            Some(parent) => self.stat(&parent)?,
            None => this.clone(),
        };
        Ok([
            Entry {
                name: ".".into(),
                ..this
            },
            Entry {
                name: "..".into(),
                ..parent
            },
        ])
    }

    /// Creates a directory; its parent must exist, and be less than [`MAX_DEPTH`] levels
    /// deep on disk. It costs one quota block and one entry, refused with the numbers if
    /// they do not fit.
    pub fn mkdir(&self, path: &VirtualPath) -> Result<()> {
        self.create_dir(path, 0o777)
    }

    /// [`HomeDir::mkdir`] with the permission bits a client asked for, masked as under
    /// the usual umask of 022 (never writable by group or others), and always with
    /// `0o700` for the server. They are set as the folder is made: a later chmod by
    /// path could change whatever was renamed into its place meanwhile.
    pub fn mkdir_with_mode(&self, path: &VirtualPath, mode: u32) -> Result<()> {
        self.create_dir(path, mode & 0o755)
    }

    /// Creates a directory with the permission bits `mode` (less the process umask, and
    /// always with `0o700` for the server).
    fn create_dir(&self, path: &VirtualPath, mode: u32) -> Result<()> {
        self.state.check_measured()?;
        let parent = path
            .parent()
            .ok_or_else(|| StorageError::Exists { path: path.clone() })?;
        let _sizes = self.state.lock_sizes();
        let depth = self.backend.depth_of(&parent).map_err(at(&parent))?;
        if depth >= MAX_DEPTH {
            return Err(too_deep(path));
        }
        let mut booked = self.state.ledger.reserve_entry(QUOTA_BLOCK)?;
        self.backend.mkdir(path, (mode & 0o777) | 0o700)?;
        booked.commit(QUOTA_BLOCK)?;
        booked.keep_entry();
        Ok(())
    }

    /// Removes an empty directory, giving its block and entry back.
    pub fn rmdir(&self, path: &VirtualPath) -> Result<()> {
        refuse_root(path)?;
        let _sizes = self.state.lock_sizes();
        self.backend.rmdir(path)?;
        self.state.ledger.release_entry(QUOTA_BLOCK);
        Ok(())
    }

    /// Removes a file or a symbolic link (not what it points to), giving its cost back.
    pub fn remove_file(&self, path: &VirtualPath) -> Result<()> {
        let _sizes = self.state.lock_sizes();
        let entry = self.backend.lstat(path)?;
        if entry.kind == EntryKind::Dir {
            return Err(StorageError::IsADirectory { path: path.clone() });
        }
        self.backend.remove_file(path)?;
        self.state.ledger.release_entry(entry.cost());
        Ok(())
    }

    /// Renames `from` to `to` as POSIX `rename` does: an entry at `to` (a file, a link,
    /// an empty folder) is replaced, and its cost given back.
    pub fn rename(&self, from: &VirtualPath, to: &VirtualPath) -> Result<()> {
        self.rename_as(from, to, Replace::Allow)
    }

    /// Renames `from` to `to` only if nothing is at `to`, in one step: a check first and
    /// a rename after could replace whatever appeared in between. SFTP v3's rename means
    /// this.
    pub fn rename_new(&self, from: &VirtualPath, to: &VirtualPath) -> Result<()> {
        self.rename_as(from, to, Replace::Never)
    }

    fn rename_as(&self, from: &VirtualPath, to: &VirtualPath, replace: Replace) -> Result<()> {
        refuse_root(from)?;
        refuse_root(to)?;
        self.state.check_measured()?;
        let _sizes = self.state.lock_sizes();
        if self.backend.lstat(from)?.kind == EntryKind::Dir {
            if !self.capabilities().rename_full_dirs && self.backend.list(from)?.next().is_some() {
                return Err(StorageError::Unsupported {
                    path: from.clone(),
                    what: "moving a folder that is not empty",
                });
            }
            self.check_move_depth(from, to)?;
        }
        if let Some(replaced) = self.backend.rename(from, to, replace)? {
            self.state.ledger.release_entry(replaced.cost());
        }
        Ok(())
    }

    /// Refuses to move the folder `from` to `to` if it, or a folder it holds, would then
    /// nest deeper than [`MAX_DEPTH`]. The caller holds the size lock.
    fn check_move_depth(&self, from: &VirtualPath, to: &VirtualPath) -> Result<()> {
        let Some(parent) = to.parent() else {
            return Ok(());
        };
        let depth = match self.backend.depth_of(&parent) {
            Ok(depth) => depth,
            // The rename itself reports a missing or odd destination better.
            Err(_) => return Ok(()),
        };
        let room = MAX_DEPTH
            .checked_sub(depth + 1)
            .ok_or_else(|| too_deep(to))?;
        match self.backend.levels_below(from, room) {
            Some(_) => Ok(()),
            None => Err(too_deep(to)),
        }
    }

    /// Opens a regular file, for SFTP handles and in-place writes. Creating one takes an
    /// entry from the quota ledger, refused if `max_files` has been reached. Opening an
    /// existing file to write is `Unsupported` on a backend without in-place writes.
    pub fn open(&self, path: &VirtualPath, options: OpenOptions) -> Result<OpenFile> {
        // Look before opening: opening a FIFO would block.
        let exists = match self.backend.stat(path) {
            Ok(entry) => {
                check_regular(path, &entry)?;
                true
            }
            Err(StorageError::NotFound { .. }) if options.create || options.exclusive => false,
            Err(e) => return Err(e),
        };
        let writable = options.write || options.truncate || options.append;
        if writable || options.create || options.exclusive {
            self.state.check_measured()?;
        }
        // Creating needs write access from the OS even when the user only reads;
        // `writable` is what the user asked for, and what `write_at` checks.
        let how = OpenHow {
            read: options.read || !writable,
            write: writable || options.create || options.exclusive,
            create_new: false,
        };
        let file = if exists && options.exclusive {
            return Err(StorageError::Exists { path: path.clone() });
        } else if exists {
            if writable && !self.capabilities().in_place_writes {
                return Err(StorageError::Unsupported {
                    path: path.clone(),
                    what: "writing into an existing file",
                });
            }
            self.backend.open(path, how)?
        } else {
            self.create_file(path, how, options.exclusive)?
        };
        let file = OpenFile {
            file,
            path: path.clone(),
            state: Arc::clone(&self.state),
            writable,
            append: options.append,
            failed: Default::default(),
        };
        if options.truncate {
            file.set_len(0)?;
        }
        Ok(file)
    }

    /// Creates the regular file `path` and counts it; if another session created it
    /// first, opens that one instead, unless `exclusive`.
    fn create_file(
        &self,
        path: &VirtualPath,
        how: OpenHow,
        exclusive: bool,
    ) -> Result<Box<dyn super::FileHandle>> {
        let _sizes = self.state.lock_sizes();
        let mut entry = self.state.ledger.reserve_entry(0)?;
        let new = OpenHow {
            create_new: true,
            ..how
        };
        match self.backend.open(path, new) {
            Ok(file) => {
                entry.keep_entry();
                Ok(file)
            }
            Err(StorageError::Exists { .. }) if !exclusive => {
                drop(entry);
                self.backend.open(path, how)
            }
            Err(e) => Err(e),
        }
    }

    /// Opens `path` to write `len` bytes at `offset` in place, creating it if needed, but
    /// only if what the file would grow by fits the quota now: a write refused for space
    /// leaves no new empty file behind, and is refused before any of it lands. Each
    /// write is still booked as it lands ([`OpenFile::write_at`]), so space that other
    /// sessions take meanwhile can still stop it part way.
    ///
    /// Refused as `Unsupported` on a backend without in-place writes: there a new file
    /// is only an upload, published when it is closed.
    pub fn open_for_write(&self, path: &VirtualPath, offset: u64, len: u64) -> Result<OpenFile> {
        if !self.capabilities().in_place_writes {
            return Err(StorageError::Unsupported {
                path: path.clone(),
                what: "writing into a file in place (upload it instead)",
            });
        }
        let size = match self.backend.stat(path) {
            Ok(entry) => {
                check_regular(path, &entry)?;
                Some(entry.size)
            }
            Err(StorageError::NotFound { .. }) => None,
            Err(e) => return Err(e),
        };
        let old = size.unwrap_or(0);
        let growth = file_cost(offset.saturating_add(len).max(old)) - file_cost(old);
        // The ledger's own check, and its numbers in a refusal; the space is taken for
        // real, chunk by chunk, as the data lands.
        drop(match size {
            Some(_) => self.state.ledger.reserve(growth)?,
            None => self.state.ledger.reserve_entry(growth)?,
        });
        let options = OpenOptions {
            write: true,
            create: true,
            ..OpenOptions::default()
        };
        self.open(path, options)
    }

    /// Writes `data` at `offset` in place, creating the file if needed (not atomic; see
    /// [`HomeDir::begin_upload`] for that).
    pub fn write_at(&self, path: &VirtualPath, offset: u64, data: &[u8]) -> Result<()> {
        self.open_for_write(path, offset, data.len() as u64)?
            .write_at(offset, data)
    }

    /// Opens a regular file for a streaming download.
    pub fn open_read(&self, path: &VirtualPath) -> Result<(ReadHandle, Entry)> {
        self.backend.open_read(path)
    }

    /// The MD5 of up to `len` bytes of `path` from `offset` (less at the end of the
    /// file), and how many bytes that was.
    pub fn md5_range(&self, path: &VirtualPath, offset: u64, len: u64) -> Result<(Md5Digest, u64)> {
        let (file, _) = self.open_read(path)?;
        let mut hasher = Md5::new();
        let hashed = md5_range(&file, offset, len, &mut hasher).map_err(at(path))?;
        Ok((Md5Digest::from_hasher(hasher), hashed))
    }

    /// The digest by `algorithm` of up to `len` bytes of `path` from `offset` (less at
    /// the end of the file), and how many bytes that was. A folder is `IsADirectory`.
    pub fn hash_range(
        &self,
        path: &VirtualPath,
        algorithm: HashAlgorithm,
        offset: u64,
        len: u64,
    ) -> Result<(Vec<u8>, u64)> {
        let (file, _) = self.open_read(path)?;
        let mut hasher = Hasher::new(algorithm);
        let hashed =
            hash_range_with(&file, offset, len, |data| hasher.update(data)).map_err(at(path))?;
        Ok((hasher.finish(), hashed))
    }

    /// Sets the modification time of `path` (following links inside the home).
    pub fn set_mtime(&self, path: &VirtualPath, mtime: SystemTime) -> Result<()> {
        self.state.check_measured()?;
        self.backend.set_mtime(path, mtime)
    }

    /// Sets the permission bits of `path`. Only `0o777` is honoured: never setuid,
    /// setgid or sticky. A directory keeps `0o700` for its owner, the server, so that it
    /// can always scan usage, clean up and delete inside the home.
    pub fn set_permissions(&self, path: &VirtualPath, mode: u32) -> Result<()> {
        self.state.check_measured()?;
        self.backend.set_permissions(path, mode & 0o777)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::test_support::{Fixture, fixture, vp};
    use crate::storage::{CHUNK as HASH_CHUNK, Storage};

    fn names(entries: &[Entry]) -> Vec<&str> {
        entries.iter().map(|e| e.name.to_str().unwrap()).collect()
    }

    #[test]
    fn homes_are_shareable_between_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Storage>();
        send_sync::<HomeDir>();
        send_sync::<OpenFile>();
    }

    #[test]
    fn directories_files_and_listing() {
        let f = fixture(1 << 20);
        let h = &f.home;
        h.mkdir(&vp("/docs")).unwrap();
        h.write_at(&vp("/docs/b.txt"), 0, b"bee").unwrap();
        h.write_at(&vp("/a.txt"), 0, b"hello").unwrap();
        h.write_at(&vp("/B.txt"), 0, b"").unwrap();
        assert!(matches!(
            h.mkdir(&vp("/docs")),
            Err(StorageError::Exists { .. })
        ));
        assert!(matches!(
            h.mkdir(&vp("/no/such")),
            Err(StorageError::NotFound { .. })
        ));

        let root = h.list(&VirtualPath::root()).unwrap();
        assert_eq!(names(&root), ["B.txt", "a.txt", "docs"]);
        assert_eq!(root[1].kind, EntryKind::File);
        assert_eq!(root[1].size, 5);
        assert_eq!(root[2].kind, EntryKind::Dir);
        // Listing a file gives that file.
        assert_eq!(names(&h.list(&vp("/docs/b.txt")).unwrap()), ["b.txt"]);

        let st = h.stat(&vp("/docs/b.txt")).unwrap();
        assert_eq!(
            (st.name.to_str(), st.kind, st.size),
            (Some("/docs/b.txt"), EntryKind::File, 3)
        );
        assert_eq!(st.mode() & 0o170000, 0o100000);
        assert!(matches!(
            h.stat(&vp("/nope")),
            Err(StorageError::NotFound { .. })
        ));

        assert!(matches!(
            h.rmdir(&vp("/docs")),
            Err(StorageError::NotEmpty { .. })
        ));
        assert!(matches!(
            h.rmdir(&VirtualPath::root()),
            Err(StorageError::Denied { .. })
        ));
        assert!(matches!(
            h.remove_file(&vp("/docs")),
            Err(StorageError::IsADirectory { .. })
        ));
        assert!(matches!(
            h.rmdir(&vp("/a.txt")),
            Err(StorageError::NotADirectory { .. })
        ));
        h.remove_file(&vp("/docs/b.txt")).unwrap();
        h.rmdir(&vp("/docs")).unwrap();
        assert!(matches!(
            h.list(&vp("/docs")),
            Err(StorageError::NotFound { .. })
        ));
    }

    #[test]
    fn planted_links_that_escape_are_refused() {
        let f = fixture(1 << 20);
        f.plant_links();
        let h = &f.home;
        for link in Fixture::ESCAPES {
            let link = vp(link);
            let inner = vp(&format!("{link}/s.txt"));
            let denied = |r: Result<()>, what: &str| {
                assert!(
                    matches!(r, Err(StorageError::Denied { .. })),
                    "{what} {link}: {r:?}"
                );
            };
            denied(h.stat(&link).map(drop), "stat");
            denied(h.stat(&inner).map(drop), "stat inner");
            denied(h.list(&link).map(drop), "list");
            denied(
                h.open(
                    &link,
                    OpenOptions {
                        read: true,
                        ..Default::default()
                    },
                )
                .map(drop),
                "open",
            );
            denied(h.open_read(&inner).map(drop), "open_read");
            denied(h.md5_range(&link, 0, 10).map(drop), "md5");
            denied(h.write_at(&inner, 0, b"x"), "write_at");
            denied(
                h.write_at(&vp(&format!("{link}/new")), 0, b"x"),
                "write_at new",
            );
            denied(h.mkdir(&vp(&format!("{link}/new"))), "mkdir");
            denied(h.rename(&inner, &vp("/stolen")), "rename from");
            denied(
                h.rename(&vp("/docs/d.txt"), &vp(&format!("{link}/d.txt"))),
                "rename to",
            );
            denied(h.set_permissions(&link, 0o777), "chmod");
            denied(h.set_mtime(&link, SystemTime::UNIX_EPOCH), "set_mtime");
            denied(h.remove_file(&inner), "remove through");
            // The link itself is there to see, as a link.
            assert_eq!(h.lstat(&link).unwrap().kind, EntryKind::Symlink);
        }
        let listed = h.list(&VirtualPath::root()).unwrap();
        assert!(
            listed
                .iter()
                .filter(|e| e.name != "docs")
                .all(|e| e.kind == EntryKind::Symlink)
        );

        // Nothing outside was read, changed or created.
        let secret = f.tmp.path().join("secret");
        assert_eq!(std::fs::read(secret.join("s.txt")).unwrap(), b"secret");
        assert_eq!(std::fs::read_dir(&secret).unwrap().count(), 1);
        assert_eq!(
            std::fs::read_dir(f.tmp.path().join("storage/bob"))
                .unwrap()
                .count(),
            1
        );
        assert!(!f.real("stolen").exists());
        // Planted behind the ledger's back, and nothing from outside was counted either.
        assert_eq!(h.usage().used, 0);
    }

    #[test]
    fn links_that_stay_inside_work() {
        let f = fixture(1 << 20);
        f.plant_links();
        let h = &f.home;
        assert_eq!(h.stat(&vp("/inside")).unwrap().kind, EntryKind::Dir);
        assert_eq!(names(&h.list(&vp("/inside")).unwrap()), ["d.txt"]);
        let (mut file, entry) = h.open_read(&vp("/inside_file")).unwrap();
        assert_eq!(entry.size, 3);
        let mut text = String::new();
        std::io::Read::read_to_string(&mut file, &mut text).unwrap();
        assert_eq!(text, "doc");
        h.write_at(&vp("/inside/new.txt"), 0, b"new").unwrap();
        assert_eq!(std::fs::read(f.real("docs/new.txt")).unwrap(), b"new");

        // A link to the home root lists it; partial uploads are not there to see.
        std::os::unix::fs::symlink(".", f.real("self")).unwrap();
        let mut up = match h.begin_upload(&vp("/partial"), 10, None).unwrap() {
            crate::storage::UploadStart::Ready(up) => up,
            crate::storage::UploadStart::UpToDate => panic!("up to date"),
        };
        up.write(b"half").unwrap();
        drop(up);
        let via_link = h.list(&vp("/self")).unwrap();
        assert_eq!(
            names(&h.list(&VirtualPath::root()).unwrap()),
            names(&via_link)
        );
        assert!(via_link.iter().any(|e| e.name == "docs"));
        assert!(!via_link.iter().any(|e| e.name == "partial"));
    }

    #[test]
    fn regular_files_only() {
        let f = fixture(1 << 20);
        let h = &f.home;
        h.mkdir(&vp("/d")).unwrap();
        let read = OpenOptions {
            read: true,
            ..Default::default()
        };
        let write = OpenOptions {
            write: true,
            create: true,
            ..Default::default()
        };
        assert!(matches!(
            h.open(&vp("/d"), read),
            Err(StorageError::IsADirectory { .. })
        ));
        assert!(matches!(
            h.open(&vp("/d"), write),
            Err(StorageError::IsADirectory { .. })
        ));
        assert!(matches!(
            h.open(&VirtualPath::root(), read),
            Err(StorageError::IsADirectory { .. })
        ));
        assert!(matches!(
            h.open_read(&vp("/missing")),
            Err(StorageError::NotFound { .. })
        ));
        assert!(matches!(
            h.write_at(&vp("/d/x/y"), 0, b"x"),
            Err(StorageError::NotFound { .. })
        ));

        let excl = OpenOptions {
            write: true,
            exclusive: true,
            ..Default::default()
        };
        h.open(&vp("/e"), excl).unwrap();
        assert!(matches!(
            h.open(&vp("/e"), excl),
            Err(StorageError::Exists { .. })
        ));

        // A handle opened to read cannot write, even one that had to create its file.
        let created = h
            .open(
                &vp("/c"),
                OpenOptions {
                    read: true,
                    create: true,
                    ..Default::default()
                },
            )
            .unwrap();
        assert!(matches!(
            created.write_at(0, b"x"),
            Err(StorageError::Denied { .. })
        ));
    }

    #[test]
    fn open_file_reads_writes_and_appends() {
        let f = fixture(100_000);
        let h = &f.home;
        let rw = OpenOptions {
            read: true,
            write: true,
            create: true,
            ..Default::default()
        };
        let file = h.open(&vp("/f"), rw).unwrap();
        file.write_at(0, b"hello world").unwrap();
        file.write_at(6, b"there").unwrap();
        let mut buf = [0u8; 32];
        let n = file.read_at(0, &mut buf).unwrap();
        assert_eq!(&buf[..n], b"hello there");
        assert_eq!(file.read_at(100, &mut buf).unwrap(), 0);
        assert_eq!(file.stat().unwrap().size, 11);
        file.sync().unwrap();
        assert_eq!(file.path(), &vp("/f"));

        let append = OpenOptions {
            write: true,
            append: true,
            ..Default::default()
        };
        h.open(&vp("/f"), append)
            .unwrap()
            .write_at(0, b"!")
            .unwrap();
        assert_eq!(std::fs::read(f.real("f")).unwrap(), b"hello there!");
        assert_eq!(h.usage().used, 4096);
    }

    #[test]
    fn writes_past_the_quota_are_refused_and_change_nothing() {
        let f = fixture(10_000);
        let h = &f.home;
        // 5000 bytes cost two blocks.
        h.write_at(&vp("/a"), 0, &[7; 5000]).unwrap();
        assert_eq!(h.usage().used, 8192);
        let err = h.write_at(&vp("/a"), 8192, b"abc").unwrap_err();
        assert_eq!(
            err.to_string(),
            "quota exceeded: need 4096 bytes, used 8192 of 10000 bytes"
        );
        // A write far past the end would make a 1 MiB file: refused too.
        assert!(matches!(
            h.write_at(&vp("/a"), 1 << 20, b"x"),
            Err(StorageError::Quota(_))
        ));
        assert!(matches!(
            h.write_at(&vp("/b"), 0, b"abc"),
            Err(StorageError::Quota(_))
        ));
        // Refused before the file was created, so nothing is left behind.
        assert!(!f.real("b").exists());
        assert!(matches!(
            h.open_for_write(&vp("/b"), 1, 2),
            Err(StorageError::Quota(_))
        ));
        assert!(!f.real("b").exists());
        // A folder costs a block too.
        assert!(matches!(h.mkdir(&vp("/d")), Err(StorageError::Quota(_))));
        assert!(!f.real("d").exists());
        assert_eq!(std::fs::read(f.real("a")).unwrap(), [7; 5000]);
        assert_eq!(
            h.usage(),
            Usage {
                used: 8192,
                reserved: 0,
                limit: 10_000
            }
        );
        // Overwriting inside the file needs no new space, nor does growing inside its
        // last block, nor an empty new file.
        h.open_for_write(&vp("/a"), 2, 6).unwrap();
        h.write_at(&vp("/a"), 5000, &[8; 3192]).unwrap();
        h.open_for_write(&vp("/empty"), 0, 0).unwrap();
        assert_eq!(h.stat(&vp("/empty")).unwrap().size, 0);
        assert_eq!(h.usage().used, 8192);
        assert_eq!(h.entries().count, 2);
        assert_eq!(h.usage().used, on_disk(&f));
    }

    /// What a fresh scan of the disk finds, as after a restart: what the ledger must say.
    fn on_disk(f: &Fixture) -> u64 {
        f.restart(u64::MAX).usage().used
    }

    #[test]
    fn deletes_overwrites_and_truncates_give_space_back() {
        let f = fixture(100_000);
        let h = &f.home;
        h.write_at(&vp("/a"), 0, &[1; 9000]).unwrap();
        h.write_at(&vp("/b"), 0, &[2; 5000]).unwrap();
        h.write_at(&vp("/c"), 0, &[3; 20]).unwrap();
        assert_eq!(h.usage().used, 12_288 + 8192 + 4096);

        h.remove_file(&vp("/c")).unwrap();
        assert_eq!(h.usage().used, 12_288 + 8192);
        h.rename(&vp("/b"), &vp("/a")).unwrap();
        assert_eq!(h.usage().used, 8192);
        let trunc = OpenOptions {
            write: true,
            truncate: true,
            ..Default::default()
        };
        let file = h.open(&vp("/a"), trunc).unwrap();
        assert_eq!(h.usage().used, 0);
        file.set_len(60).unwrap();
        assert_eq!(h.usage().used, 4096);
        assert!(matches!(file.set_len(100_001), Err(StorageError::Quota(_))));
        file.set_len(10_000).unwrap();
        assert_eq!(h.usage().used, 12_288);
        file.set_len(10).unwrap();
        assert_eq!(h.usage().used, 4096);

        // A link costs a block, and removing it gives it back; renaming a file onto
        // itself changes nothing.
        std::os::unix::fs::symlink("a", f.real("link")).unwrap();
        let f = &f;
        let h = f.restart(100_000);
        assert_eq!((h.usage().used, h.entries().count), (8192, 2));
        h.remove_file(&vp("/link")).unwrap();
        assert_eq!((h.usage().used, h.entries().count), (4096, 1));
        std::fs::hard_link(f.real("a"), f.real("same")).unwrap();
        let h = f.restart(100_000);
        h.rename(&vp("/a"), &vp("/same")).unwrap();
        assert_eq!(h.usage().used, 8192);
        // A link, and an empty folder, replaced by a rename give their block back.
        std::os::unix::fs::symlink("same", f.real("link")).unwrap();
        let h = f.restart(100_000);
        h.rename(&vp("/same"), &vp("/link")).unwrap();
        h.mkdir(&vp("/d1")).unwrap();
        h.mkdir(&vp("/d2")).unwrap();
        h.rename(&vp("/d1"), &vp("/d2")).unwrap();
        assert_eq!(h.usage().used, on_disk(f));
        assert_eq!(h.entries(), f.restart(100_000).entries());
        assert!(matches!(
            h.rename(&vp("/link"), &VirtualPath::root()),
            Err(StorageError::Denied { .. })
        ));
        assert!(matches!(
            h.rename(&vp("/gone"), &vp("/x")),
            Err(StorageError::NotFound { .. })
        ));
    }

    #[test]
    fn a_handle_on_a_deleted_file_changes_nothing_and_books_nothing() {
        let f = fixture(100_000);
        let h = &f.home;
        let rw = OpenOptions {
            read: true,
            write: true,
            ..Default::default()
        };
        // Each round once gave tmp's bytes back twice: the delete freed them, then the
        // truncate through the handle freed them again.
        for i in 0..5 {
            h.write_at(&vp(&format!("/keep{i}")), 0, &[1; 100]).unwrap();
            h.write_at(&vp("/tmp"), 0, &[2; 500]).unwrap();
            let file = h.open(&vp("/tmp"), rw).unwrap();
            h.remove_file(&vp("/tmp")).unwrap();
            assert!(matches!(file.set_len(0), Err(StorageError::Deleted { .. })));
            let err = file.write_at(0, b"more").unwrap_err();
            assert_eq!(
                err.to_string(),
                "deleted or replaced since it was opened: /tmp"
            );
            assert!(matches!(
                file.set_len(10_000),
                Err(StorageError::Deleted { .. })
            ));
            // What was written before the delete can still be read back.
            let mut buf = [0u8; 4];
            assert_eq!(file.read_at(0, &mut buf).unwrap(), 4);
            assert_eq!(h.usage().used, 4096 * (i + 1));
        }
        assert_eq!(h.usage().used, on_disk(&f));
        assert_eq!(h.usage().reserved, 0);
    }

    #[test]
    fn a_handle_on_a_replaced_file_changes_nothing_and_books_nothing() {
        let f = fixture(100_000);
        let h = &f.home;
        let write = OpenOptions {
            write: true,
            ..Default::default()
        };
        h.write_at(&vp("/old"), 0, &[1; 9000]).unwrap();
        h.write_at(&vp("/new"), 0, &[2; 5000]).unwrap();
        let old = h.open(&vp("/old"), write).unwrap();
        h.rename(&vp("/new"), &vp("/old")).unwrap();
        assert_eq!(h.usage().used, 8192);
        assert!(matches!(old.set_len(0), Err(StorageError::Deleted { .. })));
        assert!(matches!(
            old.write_at(0, &[3; 20_000]),
            Err(StorageError::Deleted { .. })
        ));
        assert_eq!(std::fs::read(f.real("old")).unwrap(), [2; 5000]);
        assert_eq!(h.usage().used, 8192);

        // Renamed away, the file keeps a name, and its handle keeps working.
        let moved = h.open(&vp("/old"), write).unwrap();
        h.rename(&vp("/old"), &vp("/moved")).unwrap();
        moved.write_at(5000, &[4; 4000]).unwrap();
        assert_eq!(h.usage().used, 12_288);
        moved.set_len(5500).unwrap();
        assert_eq!(h.usage().used, 8192);
        assert_eq!(h.usage().used, on_disk(&f));
    }

    #[test]
    fn writes_racing_a_delete_leave_the_ledger_equal_to_the_disk() {
        let f = fixture(1 << 30);
        let h = &f.home;
        let write = OpenOptions {
            write: true,
            create: true,
            ..Default::default()
        };
        for round in 0..20 {
            let file = h.open(&vp("/f"), write).unwrap();
            let started = std::sync::Barrier::new(2);
            std::thread::scope(|s| {
                let writer = s.spawn(|| {
                    started.wait();
                    let mut offset = 0u64;
                    while file.write_at(offset, &[0; 4096]).is_ok() {
                        offset += 4096;
                        if offset > 64 << 20 {
                            panic!("the delete never stopped the writer");
                        }
                    }
                });
                started.wait();
                std::thread::sleep(std::time::Duration::from_micros(200 * round));
                h.remove_file(&vp("/f")).unwrap();
                writer.join().unwrap();
            });
            assert_eq!(h.usage().used, 0, "round {round}");
        }
        assert_eq!(on_disk(&f), 0);
    }

    #[test]
    fn a_folder_cannot_be_moved_into_itself() {
        let f = fixture(100_000);
        let h = &f.home;
        h.mkdir(&vp("/a")).unwrap();
        h.mkdir(&vp("/a/b")).unwrap();
        h.write_at(&vp("/a/f"), 0, b"data").unwrap();
        for to in ["/a/c", "/a/b/c"] {
            let err = h.rename(&vp("/a"), &vp(to)).unwrap_err();
            assert!(matches!(err, StorageError::Invalid { .. }), "{to}: {err:?}");
            assert_eq!(
                err.to_string(),
                "not possible for /a: a folder cannot be moved into itself"
            );
        }
        // Through a link that stays inside, too.
        std::os::unix::fs::symlink("a", f.real("link")).unwrap();
        assert!(matches!(
            h.rename(&vp("/a"), &vp("/link/c")),
            Err(StorageError::Invalid { .. })
        ));
        assert_eq!(names(&h.list(&vp("/a")).unwrap()), ["b", "f"]);
        // Two folders and a file; the link was planted behind the ledger's back.
        assert_eq!(h.usage().used, 3 * 4096);
    }

    #[test]
    fn usage_is_recomputed_after_a_restart() {
        let f = fixture(100_000);
        let h = &f.home;
        h.mkdir(&vp("/d")).unwrap();
        h.mkdir(&vp("/d/e")).unwrap();
        h.write_at(&vp("/d/e/deep"), 0, &[0; 100]).unwrap();
        h.write_at(&vp("/top"), 0, &[0; 4097]).unwrap();
        h.write_at(&vp("/empty"), 0, &[]).unwrap();
        let before = h.usage();
        // Two folders at a block each, one block for `deep`, two for `top`, none for
        // `empty`: and five entries.
        assert_eq!(before.used, 5 * 4096);
        assert_eq!(h.entries().count, 5);
        assert_eq!(
            f.restart(50_000).usage(),
            Usage {
                limit: 50_000,
                ..before
            }
        );
        // A link counts a block, whatever it leads to.
        std::os::unix::fs::symlink("top", f.real("link")).unwrap();
        std::os::unix::fs::symlink("nowhere", f.real("d/dangling")).unwrap();
        let rescanned = f.restart(50_000);
        assert_eq!(rescanned.usage().used, 7 * 4096);
        assert_eq!(
            rescanned.entries(),
            Entries {
                count: 7,
                limit: None
            }
        );
        // Another session of a running server shares the ledger, with the new limits.
        let again = f.storage.home("alice", 60_000, Some(9)).unwrap();
        assert_eq!(h.usage().limit, 60_000);
        assert_eq!(h.entries().limit, Some(9));
        assert!(Arc::ptr_eq(again.ledger(), h.ledger()));
        assert_eq!(f.storage.usage_of("alice").unwrap().used, 5 * 4096);
        assert_eq!(f.storage.usage_of("carol"), None);
        f.storage.forget("alice");
        assert_eq!(f.storage.usage_of("alice"), None);
    }

    #[test]
    fn max_files_refuses_new_files_and_folders_but_not_growth() {
        let f = fixture(1 << 20);
        let h = f.storage.home("alice", 1 << 20, Some(3)).unwrap();
        h.mkdir(&vp("/d")).unwrap();
        h.write_at(&vp("/d/a"), 0, b"a").unwrap();
        let create = OpenOptions {
            write: true,
            create: true,
            ..Default::default()
        };
        h.open(&vp("/b"), create).unwrap();
        let full = "file limit reached: 3 of 3 files, folders and links";
        for refused in [
            h.mkdir(&vp("/e")).unwrap_err(),
            h.write_at(&vp("/c"), 0, b"c").unwrap_err(),
            h.open(&vp("/c"), create).map(drop).unwrap_err(),
        ] {
            assert!(matches!(refused, StorageError::Quota(_)), "{refused:?}");
            assert_eq!(refused.to_string(), full);
        }
        assert!(!f.real("e").exists() && !f.real("c").exists());
        // What exists can still be opened, written and grown.
        h.open(&vp("/b"), create).unwrap();
        h.write_at(&vp("/d/a"), 1, &[1; 5000]).unwrap();
        // Deleting gives an entry back.
        h.remove_file(&vp("/b")).unwrap();
        h.mkdir(&vp("/e")).unwrap();
        h.rmdir(&vp("/e")).unwrap();
        h.write_at(&vp("/c"), 0, b"c").unwrap();
        assert_eq!(h.entries().count, 3);
        assert_eq!(h.usage().used, 4 * 4096);
        assert_eq!(
            h.entries(),
            f.storage.home("alice", 1, Some(3)).unwrap().entries()
        );
        f.storage.forget("alice");
        let rescanned = f.storage.home("alice", 1 << 20, Some(3)).unwrap();
        assert_eq!(
            (rescanned.usage().used, rescanned.entries().count),
            (4 * 4096, 3)
        );
    }

    #[test]
    fn folders_made_with_a_mode_are_never_writable_by_others() {
        use std::os::unix::fs::PermissionsExt as _;
        let f = fixture(1 << 20);
        let h = &f.home;
        let mode = |p| std::fs::metadata(f.real(p)).unwrap().permissions().mode() & 0o7777;
        h.mkdir_with_mode(&vp("/open"), 0o7777).unwrap();
        assert_eq!(mode("open"), 0o755);
        h.mkdir_with_mode(&vp("/shut"), 0o000).unwrap();
        assert_eq!(mode("shut"), 0o700);
        h.mkdir_with_mode(&vp("/group"), 0o750).unwrap();
        assert_eq!(mode("group"), 0o750);
    }

    #[test]
    fn new_homes_are_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let f = fixture(1);
        let mode = std::fs::metadata(f.real("")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        for bad in ["", ".", "..", "a/b", "x\0"] {
            assert!(f.storage.home(bad, 1, None).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn hashes_ranges() {
        let f = fixture(1 << 20);
        let h = &f.home;
        let data: Vec<u8> = (0..600u32).map(|i| (i % 251) as u8).collect();
        h.write_at(&vp("/f"), 0, &data).unwrap();
        assert_eq!(
            h.md5_range(&vp("/f"), 0, 600).unwrap(),
            (Md5Digest::of(&data), 600)
        );
        assert_eq!(
            h.md5_range(&vp("/f"), 100, 50).unwrap(),
            (Md5Digest::of(&data[100..150]), 50)
        );
        assert_eq!(
            h.md5_range(&vp("/f"), 500, u64::MAX).unwrap(),
            (Md5Digest::of(&data[500..]), 100)
        );
        assert_eq!(
            h.md5_range(&vp("/f"), 700, 10).unwrap(),
            (Md5Digest::empty(), 0)
        );
    }

    #[test]
    fn hashes_across_chunks() {
        let f = fixture(1 << 20);
        let data: Vec<u8> = (0..HASH_CHUNK * 2 + 10).map(|i| (i % 253) as u8).collect();
        f.home.write_at(&vp("/big"), 0, &data).unwrap();
        assert_eq!(
            f.home.md5_range(&vp("/big"), 5, u64::MAX).unwrap(),
            (Md5Digest::of(&data[5..]), data.len() as u64 - 5)
        );
    }

    #[test]
    fn permissions_and_times() {
        use std::os::unix::fs::PermissionsExt as _;
        let f = fixture(1 << 20);
        let h = &f.home;
        h.write_at(&vp("/f"), 0, b"x").unwrap();
        h.mkdir(&vp("/d")).unwrap();
        h.set_permissions(&vp("/f"), 0o7644).unwrap();
        h.set_permissions(&vp("/d"), 0o055).unwrap();
        let mode = |p| std::fs::metadata(f.real(p)).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode("f"), 0o644);
        assert_eq!(mode("d"), 0o755);
        let when = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
        h.set_mtime(&vp("/f"), when).unwrap();
        assert_eq!(h.stat(&vp("/f")).unwrap().mtime, 1_000_000_000);
    }

    /// Two threads set `/X` to mode 0 while a third swaps a folder in and out of that
    /// name: checked by path and changed by path again, the folder once got mode 000.
    #[test]
    fn a_chmod_racing_renames_never_leaves_a_folder_unusable() {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::time::{Duration, Instant};
        let f = fixture(1 << 20);
        let h = &f.home;
        h.mkdir(&vp("/D")).unwrap();
        h.write_at(&vp("/X"), 0, b"file").unwrap();
        let done = AtomicBool::new(false);
        let deadline = Instant::now() + Duration::from_secs(10);
        let mode = |p: &str| {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::metadata(f.real(p)).unwrap().permissions().mode() & 0o777
        };
        let (rounds, worst) = std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    for _ in 0..5_000_000 {
                        if done.load(Ordering::Relaxed) {
                            break;
                        }
                        let _ = h.set_permissions(&vp("/X"), 0);
                    }
                });
            }
            let mut rounds = 0;
            let mut worst = None;
            while Instant::now() < deadline && rounds < 200_000 {
                rounds += 1;
                // Renamed directly, as fast as the kernel can: the window is small.
                for (from, to) in [("X", "F"), ("D", "X"), ("X", "D"), ("F", "X")] {
                    std::fs::rename(f.real(from), f.real(to)).unwrap();
                }
                if mode("D") & 0o700 != 0o700 {
                    worst = Some(mode("D"));
                    break;
                }
            }
            done.store(true, Ordering::Relaxed);
            (rounds, worst)
        });
        assert_eq!(
            worst, None,
            "the folder lost its rights after {rounds} rounds"
        );
    }

    #[test]
    fn rename_new_never_replaces() {
        let f = fixture(1 << 20);
        let h = &f.home;
        std::fs::write(f.real("a"), b"a").unwrap();
        std::fs::write(f.real("b"), b"b").unwrap();
        h.mkdir(&vp("/d")).unwrap();
        assert!(matches!(
            h.rename_new(&vp("/a"), &vp("/b")),
            Err(StorageError::Exists { .. })
        ));
        assert!(matches!(
            h.rename_new(&vp("/a"), &vp("/d")),
            Err(StorageError::Exists { .. })
        ));
        assert_eq!(std::fs::read(f.real("b")).unwrap(), b"b");
        let before = h.usage();
        h.rename_new(&vp("/a"), &vp("/d/a")).unwrap();
        assert_eq!(std::fs::read(f.real("d/a")).unwrap(), b"a");
        h.rename_new(&vp("/d/a"), &vp("/c")).unwrap();
        assert_eq!(h.usage(), before);
        assert!(matches!(
            h.rename_new(&vp("/d"), &vp("/d/e")),
            Err(StorageError::Invalid { .. })
        ));
        assert!(matches!(
            h.rename_new(&vp("/none"), &vp("/x")),
            Err(StorageError::NotFound { .. })
        ));
        assert!(matches!(
            h.rename_new(&vp("/c"), &vp("/")),
            Err(StorageError::Denied { .. })
        ));
    }

    #[test]
    fn rename_new_resolves_both_folders_beneath_the_home() {
        let f = fixture(1 << 20);
        f.plant_links();
        let h = &f.home;
        std::fs::write(f.real("a"), b"a").unwrap();
        for link in Fixture::ESCAPES {
            let to = format!("{link}/a");
            assert!(h.rename_new(&vp("/a"), &vp(&to)).is_err(), "{to}");
        }
        assert_eq!(std::fs::read(f.real("a")).unwrap(), b"a");
    }
}

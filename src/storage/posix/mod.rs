//! The local-disk [`Backend`](super::Backend): each home is a cap-std [`Dir`] opened on
//! the user's folder, so the kernel resolves every path *beneath* it and symbolic links
//! that lead out are refused; partial uploads wait in the user's staging folder outside
//! the home, and are published by one `renameat` into it.
//!
//! A home that is its own mount point holds its staging folder instead (see
//! `storage::staging`): every path is then resolved through [`place::Place`], which
//! refuses that folder by its identity, and listings leave it out.

mod files;
mod place;

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use cap_fs_ext::SystemTimeSpec;
use cap_std::fs::{Dir, DirBuilderExt as _, Metadata, MetadataExt as _, ReadDir};

use super::backend::{
    Backend, Capabilities, FileHandle, Listing, OpenHow, Replace, StagedFile, StagedListing,
};
use super::beneath::{self, Identity};
use super::scan::{self, ScanFailure};
use super::staging::StagingFolder;
use super::{Entry, EntryKind, PosixDetails, ReadHandle, Result, StorageError, Tally, VirtualPath};
use place::{Final, Place};

/// Describes the entry `meta` under `name`.
pub(super) fn entry_of(name: impl Into<std::ffi::OsString>, meta: &Metadata) -> Entry {
    let kind = meta.file_type();
    let kind = if kind.is_dir() {
        EntryKind::Dir
    } else if kind.is_file() {
        EntryKind::File
    } else if kind.is_symlink() {
        EntryKind::Symlink
    } else {
        EntryKind::Other
    };
    Entry {
        name: name.into(),
        kind,
        size: meta.len(),
        mtime: meta.mtime(),
        posix: Some(PosixDetails {
            mode: meta.mode(),
            nlink: meta.nlink(),
            uid: meta.uid(),
            gid: meta.gid(),
            atime: meta.atime(),
        }),
    }
}

/// A home on local disk: the home's folder and the user's staging folder, both opened
/// by handle.
#[derive(Debug)]
pub struct PosixBackend {
    pub(super) dir: Arc<Dir>,
    /// The user's staging folder for partial uploads, outside the home.
    pub(super) staging: Arc<Dir>,
    /// The staging folder's identity when it is inside the home, where no path may
    /// reach it; `None` in the ordinary case, where it is outside.
    pub(super) reserved: Option<Identity>,
}

/// Turns an I/O error on `path` into a typed error; for `map_err`.
fn at(path: &VirtualPath) -> impl FnOnce(io::Error) -> StorageError + '_ {
    move |err| {
        if beneath::is_reserved(&err) {
            StorageError::Denied {
                path: path.clone(),
                reason: "reserved for the server's partial uploads",
            }
        } else {
            StorageError::from_io(path, err)
        }
    }
}

fn same_file(a: &Metadata, b: &Metadata) -> bool {
    a.dev() == b.dev() && a.ino() == b.ino()
}

/// Only regular files can be opened: a directory is refused as such, and a device or a
/// FIFO (which could block the opener forever) as not permitted.
fn check_regular(path: &VirtualPath, meta: &Metadata) -> Result<()> {
    if meta.is_dir() {
        Err(StorageError::IsADirectory { path: path.clone() })
    } else if !meta.is_file() {
        Err(StorageError::Denied {
            path: path.clone(),
            reason: "not a regular file",
        })
    } else {
        Ok(())
    }
}

impl PosixBackend {
    pub(super) fn new(dir: Dir, staging: StagingFolder) -> PosixBackend {
        PosixBackend {
            dir: Arc::new(dir),
            staging: Arc::new(staging.dir),
            reserved: staging.in_home,
        }
    }

    /// Where `path` leads, its final name followed if it is a link or not.
    fn place(&self, path: &VirtualPath, last: Final) -> Result<Place> {
        Place::of(&self.dir, self.reserved, path, last).map_err(at(path))
    }

    /// The folder holding `path`, opened beneath the home (`None`: the home itself), and
    /// the final name.
    fn folder_of<'p>(&self, path: &'p VirtualPath) -> Result<(Option<Dir>, &'p str)> {
        let name = path.file_name().ok_or_else(|| StorageError::Denied {
            path: path.clone(),
            reason: "the home itself",
        })?;
        match path.parent() {
            Some(parent) if !parent.is_root() => {
                let dir = self
                    .dir
                    .open_dir(parent.to_relative())
                    .map_err(at(&parent))?;
                Ok((Some(dir), name))
            }
            _ => Ok((None, name)),
        }
    }

    /// Refuses a link whose `target`, read from the folder of `link`, leads to the staging
    /// folder in the home, as it stands now. (One made dangling and completed later is
    /// refused when it is used.)
    fn check_link_target(&self, target: &str, link: &VirtualPath) -> Result<()> {
        let (Some(reserved), Some(folder)) = (self.reserved, link.parent()) else {
            return Ok(());
        };
        let through = folder.to_relative().join(target);
        match beneath::resolve(&self.dir, &through, true, reserved) {
            Err(e) if beneath::is_reserved(&e) => Err(at(link)(e)),
            _ => Ok(()),
        }
    }

    /// Renames as `rename(2)` does, replacing what is at `to`.
    fn rename_replacing(&self, from: &VirtualPath, to: &VirtualPath) -> Result<Option<Entry>> {
        let (from_at, to_at) = (self.place(from, Final::AsIs)?, self.place(to, Final::AsIs)?);
        let (from_rel, to_rel) = (from_at.rel(), to_at.rel());
        let source = from_at.symlink_metadata().map_err(at(from))?;
        let replaced = match to_at.symlink_metadata() {
            // Renaming a file onto another link to itself changes nothing.
            Ok(meta) if same_file(&meta, &source) => None,
            Ok(meta) => Some(entry_of(to.as_str(), &meta)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(at(to)(e)),
        };
        // `from` resolved a moment ago, so a failure now is about `to`; except EINVAL,
        // which rename(2) gives for a folder moved into itself or below itself.
        from_at
            .dir
            .rename(from_rel, &to_at.dir, to_rel)
            .map_err(|e| match e.kind() {
                io::ErrorKind::InvalidInput => StorageError::Invalid {
                    path: from.clone(),
                    reason: "a folder cannot be moved into itself",
                },
                _ => StorageError::from_io(to, e),
            })?;
        Ok(replaced)
    }

    /// Renames only if nothing is at `to`, in one step (`renameat2` with
    /// `RENAME_NOREPLACE`): a check first and a rename after could replace whatever
    /// appeared in between.
    fn rename_new(&self, from: &VirtualPath, to: &VirtualPath) -> Result<()> {
        // Each side's folder is opened beneath the home; the final names are single
        // components, which renameat never follows.
        let renamed = if self.reserved.is_some() {
            let (from_at, to_at) = (self.place(from, Final::AsIs)?, self.place(to, Final::AsIs)?);
            from_at.symlink_metadata().map_err(at(from))?;
            match to_at.symlink_metadata() {
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(at(to)(e)),
                Ok(_) => return Err(StorageError::Exists { path: to.clone() }),
            }
            rustix::fs::renameat_with(
                &*from_at.dir,
                from_at.rel(),
                &*to_at.dir,
                to_at.rel(),
                rustix::fs::RenameFlags::NOREPLACE,
            )
        } else {
            let (from_dir, from_name) = self.folder_of(from)?;
            let (to_dir, to_name) = self.folder_of(to)?;
            rustix::fs::renameat_with(
                from_dir.as_ref().unwrap_or(&self.dir),
                from_name,
                to_dir.as_ref().unwrap_or(&self.dir),
                to_name,
                rustix::fs::RenameFlags::NOREPLACE,
            )
        };
        match renamed {
            Ok(()) => Ok(()),
            Err(rustix::io::Errno::EXIST) => Err(StorageError::Exists { path: to.clone() }),
            Err(rustix::io::Errno::INVAL) if to.as_str().starts_with(&format!("{from}/")) => {
                Err(StorageError::Invalid {
                    path: from.clone(),
                    reason: "a folder cannot be moved into itself",
                })
            }
            Err(e) => Err(StorageError::from_io(to, e.into())),
        }
    }
}

impl Backend for PosixBackend {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            in_place_writes: true,
            symlinks: true,
            rename_full_dirs: true,
        }
    }

    fn stat(&self, path: &VirtualPath) -> Result<Entry> {
        let meta = self
            .place(path, Final::Follow)?
            .metadata()
            .map_err(at(path))?;
        Ok(entry_of(path.as_str(), &meta))
    }

    fn lstat(&self, path: &VirtualPath) -> Result<Entry> {
        let meta = self
            .place(path, Final::AsIs)?
            .symlink_metadata()
            .map_err(at(path))?;
        Ok(entry_of(path.as_str(), &meta))
    }

    fn list(&self, dir: &VirtualPath) -> Result<Listing> {
        let listed = self
            .place(dir, Final::Follow)?
            .open_dir()
            .map_err(at(dir))?;
        // The stream holds its own descriptor; `listed` closes here.
        let entries = listed.entries().map_err(at(dir))?;
        Ok(Box::new(Entries {
            path: dir.clone(),
            entries,
            hidden: self.reserved,
        }))
    }

    fn mkdir(&self, path: &VirtualPath, mode: u32) -> Result<()> {
        let mut builder = cap_std::fs::DirBuilder::new();
        builder.mode(mode);
        let place = self.place(path, Final::AsIs)?;
        place
            .dir
            .create_dir_with(place.rel(), &builder)
            .map_err(at(path))
    }

    fn rmdir(&self, path: &VirtualPath) -> Result<()> {
        let place = self.place(path, Final::AsIs)?;
        place.dir.remove_dir(place.rel()).map_err(at(path))
    }

    fn remove_file(&self, path: &VirtualPath) -> Result<()> {
        let place = self.place(path, Final::AsIs)?;
        place.dir.remove_file(place.rel()).map_err(at(path))
    }

    fn rename(
        &self,
        from: &VirtualPath,
        to: &VirtualPath,
        replace: Replace,
    ) -> Result<Option<Entry>> {
        match replace {
            Replace::Allow => self.rename_replacing(from, to),
            Replace::Never => self.rename_new(from, to).map(|()| None),
        }
    }

    fn depth_of(&self, dir: &VirtualPath) -> io::Result<usize> {
        // Only a count: what is then done there refuses the staging folder, if need be.
        scan::depth_of(&self.dir, dir.to_relative())
    }

    fn levels_below(&self, dir: &VirtualPath, limit: usize) -> Option<usize> {
        let place = Place::of(&self.dir, self.reserved, dir, Final::AsIs).ok()?;
        let moved = place.open_dir_nofollow().ok()?;
        scan::levels_below(&moved, limit)
    }

    fn set_mtime(&self, path: &VirtualPath, mtime: SystemTime) -> Result<()> {
        let mtime = SystemTimeSpec::Absolute(cap_std::time::SystemTime::from_std(mtime));
        self.place(path, Final::Follow)?
            .set_mtime(mtime)
            .map_err(at(path))
    }

    fn set_permissions(&self, path: &VirtualPath, mode: u32) -> Result<()> {
        // Checked and changed through one descriptor: by path twice, a folder renamed
        // in between could get a file's mode, even 000.
        let target = self
            .place(path, Final::Follow)?
            .handle()
            .map_err(at(path))?;
        let mut mode = mode & 0o777;
        if target.is_dir().map_err(at(path))? {
            mode |= 0o700;
        }
        target.set_mode(mode).map_err(at(path))
    }

    fn symlink(&self, target: &str, link: &VirtualPath) -> Result<()> {
        let place = self.place(link, Final::AsIs)?;
        if self.reserved.is_some() {
            self.check_link_target(target, link)?;
        }
        place.dir.symlink(target, place.rel()).map_err(at(link))
    }

    fn read_link(&self, path: &VirtualPath) -> Result<PathBuf> {
        let place = self.place(path, Final::AsIs)?;
        if !place.symlink_metadata().map_err(at(path))?.is_symlink() {
            return Err(StorageError::Denied {
                path: path.clone(),
                reason: "not a symbolic link",
            });
        }
        place.dir.read_link_contents(place.rel()).map_err(at(path))
    }

    fn open_read(&self, path: &VirtualPath) -> Result<(ReadHandle, Entry)> {
        let how = OpenHow {
            read: true,
            ..OpenHow::default()
        };
        let file = files::open(self, path, how)?;
        let entry = file.stat(path.as_str()).map_err(at(path))?;
        Ok((ReadHandle::new(file.into_file(), entry.size), entry))
    }

    fn open(&self, path: &VirtualPath, how: OpenHow) -> Result<Box<dyn FileHandle>> {
        Ok(Box::new(files::open(self, path, how)?))
    }

    fn check_publishable(&self, dir: &VirtualPath) -> Result<()> {
        let folder = self
            .place(dir, Final::Follow)?
            .metadata()
            .map_err(at(dir))?;
        if !folder.is_dir() {
            return Err(StorageError::NotADirectory { path: dir.clone() });
        }
        // Publishing is a rename from the staging folder, which cannot cross filesystems:
        // refused now, before any data is sent, rather than after all of it.
        if folder.dev() != self.staging.dir_metadata().map_err(at(dir))?.dev() {
            return Err(StorageError::Invalid {
                path: dir.clone(),
                reason: "uploads need the folder on the same filesystem as the server's \
                         staging area",
            });
        }
        Ok(())
    }

    fn stage(
        &self,
        name: &str,
        path: &VirtualPath,
        create: bool,
    ) -> Result<Option<Box<dyn StagedFile>>> {
        let staged = files::stage(self, name, path, create)?;
        Ok(staged.map(|s| Box::new(s) as Box<dyn StagedFile>))
    }

    fn staged(&self) -> Result<StagedListing> {
        files::staged(self)
    }

    fn remove_staged(&self, name: &str) -> io::Result<bool> {
        match self.staging.remove_file(name) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn measure(&self) -> std::result::Result<Tally, ScanFailure> {
        scan::usage(&self.dir, &self.staging, self.reserved)
    }
}

/// The entries of one open directory, as the filesystem hands them out, but for the
/// staging folder `hidden` if the home holds it.
struct Entries {
    path: VirtualPath,
    entries: ReadDir,
    hidden: Option<Identity>,
}

impl Iterator for Entries {
    type Item = Result<Entry>;

    fn next(&mut self) -> Option<Result<Entry>> {
        loop {
            let item = match self.entries.next()? {
                Ok(item) => item,
                Err(err) => return Some(Err(StorageError::from_io(&self.path, err))),
            };
            let name = item.file_name();
            match item.metadata() {
                Ok(meta) if self.hidden == Some(Identity::of(&meta)) => {}
                Ok(meta) => return Some(Ok(entry_of(name, &meta))),
                // Deleted while we listed.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Some(Err(StorageError::from_io(&self.path, e))),
            }
        }
    }
}

//! The local-disk [`Backend`](super::Backend): each home is a cap-std [`Dir`] opened on
//! the user's folder, so the kernel resolves every path *beneath* it and symbolic links
//! that lead out are refused; partial uploads wait in the user's staging folder outside
//! the home, and are published by one `renameat` into it.

mod files;

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use cap_fs_ext::{DirExt as _, SystemTimeSpec};
use cap_std::fs::{Dir, DirBuilderExt as _, Metadata, MetadataExt as _, ReadDir};

use super::backend::{
    Backend, Capabilities, FileHandle, Listing, OpenHow, Replace, StagedFile, StagedListing,
};
use super::beneath::PathHandle;
use super::scan::{self, ScanFailure};
use super::{Entry, EntryKind, PosixDetails, ReadHandle, Result, StorageError, Tally, VirtualPath};

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
}

/// Turns an I/O error on `path` into a typed error; for `map_err`.
fn at(path: &VirtualPath) -> impl FnOnce(io::Error) -> StorageError + '_ {
    move |err| StorageError::from_io(path, err)
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
    pub(super) fn new(dir: Dir, staging: Dir) -> PosixBackend {
        PosixBackend {
            dir: Arc::new(dir),
            staging: Arc::new(staging),
        }
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

    /// Renames as `rename(2)` does, replacing what is at `to`.
    fn rename_replacing(&self, from: &VirtualPath, to: &VirtualPath) -> Result<Option<Entry>> {
        let (from_rel, to_rel) = (from.to_relative(), to.to_relative());
        let source = self.dir.symlink_metadata(from_rel).map_err(at(from))?;
        let replaced = match self.dir.symlink_metadata(to_rel) {
            // Renaming a file onto another link to itself changes nothing.
            Ok(meta) if same_file(&meta, &source) => None,
            Ok(meta) => Some(entry_of(to.as_str(), &meta)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(StorageError::from_io(to, e)),
        };
        // `from` resolved a moment ago, so a failure now is about `to`; except EINVAL,
        // which rename(2) gives for a folder moved into itself or below itself.
        self.dir
            .rename(from_rel, &self.dir, to_rel)
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
        let (from_dir, from_name) = self.folder_of(from)?;
        let (to_dir, to_name) = self.folder_of(to)?;
        let renamed = rustix::fs::renameat_with(
            from_dir.as_ref().unwrap_or(&self.dir),
            from_name,
            to_dir.as_ref().unwrap_or(&self.dir),
            to_name,
            rustix::fs::RenameFlags::NOREPLACE,
        );
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
        let meta = self.dir.metadata(path.to_relative()).map_err(at(path))?;
        Ok(entry_of(path.as_str(), &meta))
    }

    fn lstat(&self, path: &VirtualPath) -> Result<Entry> {
        let meta = self
            .dir
            .symlink_metadata(path.to_relative())
            .map_err(at(path))?;
        Ok(entry_of(path.as_str(), &meta))
    }

    fn list(&self, dir: &VirtualPath) -> Result<Listing> {
        let listed = self.dir.open_dir(dir.to_relative()).map_err(at(dir))?;
        // The stream holds its own descriptor; `listed` closes here.
        let entries = listed.entries().map_err(at(dir))?;
        Ok(Box::new(Entries {
            path: dir.clone(),
            entries,
        }))
    }

    fn mkdir(&self, path: &VirtualPath, mode: u32) -> Result<()> {
        let mut builder = cap_std::fs::DirBuilder::new();
        builder.mode(mode);
        self.dir
            .create_dir_with(path.to_relative(), &builder)
            .map_err(at(path))
    }

    fn rmdir(&self, path: &VirtualPath) -> Result<()> {
        self.dir.remove_dir(path.to_relative()).map_err(at(path))
    }

    fn remove_file(&self, path: &VirtualPath) -> Result<()> {
        self.dir.remove_file(path.to_relative()).map_err(at(path))
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
        scan::depth_of(&self.dir, dir.to_relative())
    }

    fn levels_below(&self, dir: &VirtualPath, limit: usize) -> Option<usize> {
        let moved = self.dir.open_dir_nofollow(dir.to_relative()).ok()?;
        scan::levels_below(&moved, limit)
    }

    fn set_mtime(&self, path: &VirtualPath, mtime: SystemTime) -> Result<()> {
        let mtime = SystemTimeSpec::Absolute(cap_std::time::SystemTime::from_std(mtime));
        self.dir
            .set_mtime(path.to_relative(), mtime)
            .map_err(at(path))
    }

    fn set_permissions(&self, path: &VirtualPath, mode: u32) -> Result<()> {
        // Checked and changed through one descriptor: by path twice, a folder renamed
        // in between could get a file's mode, even 000.
        let target = PathHandle::open(&self.dir, path.to_relative()).map_err(at(path))?;
        let mut mode = mode & 0o777;
        if target.is_dir().map_err(at(path))? {
            mode |= 0o700;
        }
        target.set_mode(mode).map_err(at(path))
    }

    fn symlink(&self, target: &str, link: &VirtualPath) -> Result<()> {
        self.dir
            .symlink(target, link.to_relative())
            .map_err(at(link))
    }

    fn read_link(&self, path: &VirtualPath) -> Result<PathBuf> {
        let rel = path.to_relative();
        if !self
            .dir
            .symlink_metadata(rel)
            .map_err(at(path))?
            .is_symlink()
        {
            return Err(StorageError::Denied {
                path: path.clone(),
                reason: "not a symbolic link",
            });
        }
        self.dir.read_link_contents(rel).map_err(at(path))
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
        let folder = self.dir.metadata(dir.to_relative()).map_err(at(dir))?;
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
        scan::usage(&self.dir, &self.staging)
    }
}

/// The entries of one open directory, as the filesystem hands them out.
struct Entries {
    path: VirtualPath,
    entries: ReadDir,
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
                Ok(meta) => return Some(Ok(entry_of(name, &meta))),
                // Deleted while we listed.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Some(Err(StorageError::from_io(&self.path, e))),
            }
        }
    }
}

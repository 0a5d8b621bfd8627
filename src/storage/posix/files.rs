//! Files on local disk: files opened in a home ([`PosixFile`]) and partial uploads in the
//! staging folder ([`PosixStaged`]), each held by its descriptor.

use std::io;
use std::sync::Arc;
use std::time::SystemTime;

use cap_std::fs::{Dir, File, FileExt as _, MetadataExt as _, OpenOptions};
use md5::Md5;

use super::place::{Final, Place};
use super::{PosixBackend, at, check_regular, entry_of};
use crate::storage::backend::{OpenHow, Published, Replace, StagedFile, StagedInfo, StagedListing};
use crate::storage::beneath::Identity;
use crate::storage::hash::md5_range;
use crate::storage::read::read_full;
use crate::storage::staging::sync_dir;
use crate::storage::{Entry, FileHandle, ReadHandle, Result, StorageError, VirtualPath};

/// Opens the regular file `path` as `how` says. An existing file is looked at before it
/// is opened: opening a FIFO would block.
pub(super) fn open(backend: &PosixBackend, path: &VirtualPath, how: OpenHow) -> Result<PosixFile> {
    let mut cap = OpenOptions::new();
    cap.read(how.read).write(how.write);
    let file = if how.create_new {
        // As `O_EXCL` does, a link at the final name is not followed: it exists.
        let place = backend.place(path, Final::AsIs)?;
        place.open_with(cap.create_new(true)).map_err(at(path))?
    } else {
        let place = backend.place(path, Final::Follow)?;
        check_regular(path, &place.metadata().map_err(at(path))?)?;
        place.open_with(&cap).map_err(at(path))?
    };
    check_regular(path, &file.metadata().map_err(at(path))?)?;
    Ok(PosixFile { file })
}

/// A regular file opened inside a home.
#[derive(Debug)]
pub(super) struct PosixFile {
    file: File,
}

impl PosixFile {
    pub(super) fn into_file(self) -> File {
        self.file
    }
}

fn set_mode(file: &File, mode: u32) -> io::Result<()> {
    rustix::fs::fchmod(file, rustix::fs::Mode::from_raw_mode(mode & 0o777)).map_err(Into::into)
}

impl FileHandle for PosixFile {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        read_full(&self.file, offset, buf)
    }

    fn write_all_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.file.write_all_at(data, offset)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }

    fn stat(&self, name: &str) -> io::Result<Entry> {
        Ok(entry_of(name, &self.file.metadata()?))
    }

    fn named_len(&self) -> io::Result<Option<u64>> {
        let meta = self.file.metadata()?;
        Ok((meta.nlink() != 0).then_some(meta.len()))
    }

    fn set_permissions(&self, mode: u32) -> io::Result<()> {
        set_mode(&self.file, mode)
    }

    fn set_mtime(&self, mtime: SystemTime) -> io::Result<()> {
        let since = mtime
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let times = rustix::fs::Timestamps {
            last_access: rustix::fs::Timespec {
                tv_sec: 0,
                tv_nsec: rustix::fs::UTIME_OMIT,
            },
            last_modification: rustix::fs::Timespec {
                tv_sec: i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
                tv_nsec: i64::from(since.subsec_nanos()),
            },
        };
        rustix::fs::futimens(&self.file, &times).map_err(Into::into)
    }

    fn sync(&self) -> io::Result<()> {
        self.file.sync_all()
    }

    fn reader(&self) -> io::Result<ReadHandle> {
        let len = self.file.metadata()?.len();
        Ok(ReadHandle::new(self.file.try_clone()?, len))
    }
}

/// Opens the partial `name` in the staging folder, creating it if `create`.
pub(super) fn stage(
    backend: &PosixBackend,
    name: &str,
    path: &VirtualPath,
    create: bool,
) -> Result<Option<PosixStaged>> {
    let mut options = OpenOptions::new();
    options.read(true).write(true);
    let file = match backend.staging.open_with(name, &options) {
        Ok(file) => {
            if !file.metadata().map_err(at(path))?.is_file() {
                return Err(StorageError::Denied {
                    path: path.clone(),
                    reason: "the partial upload is not a regular file",
                });
            }
            file
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound && !create => return Ok(None),
        Err(e) if e.kind() == io::ErrorKind::NotFound => backend
            .staging
            .open_with(name, options.create(true))
            .map_err(at(path))?,
        Err(e) => return Err(StorageError::from_io(path, e)),
    };
    Ok(Some(PosixStaged {
        file,
        name: name.to_owned(),
        home: Arc::clone(&backend.dir),
        staging: Arc::clone(&backend.staging),
        reserved: backend.reserved,
    }))
}

/// The regular files in the staging folder whose names are UTF-8, as partials are.
pub(super) fn staged(backend: &PosixBackend) -> Result<StagedListing> {
    // Errors name no user path: the staging area has none.
    let root = VirtualPath::root();
    let entries = backend.staging.entries().map_err(at(&root))?;
    Ok(Box::new(entries.filter_map(move |entry| {
        let root = VirtualPath::root();
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => return Some(Err(StorageError::from_io(&root, e))),
        };
        let name = entry.file_name().into_string().ok()?;
        let meta = match entry.metadata() {
            Ok(meta) if meta.is_file() => meta,
            Ok(_) => return None,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
            Err(e) => return Some(Err(StorageError::from_io(&root, e))),
        };
        let modified = match meta.modified() {
            Ok(when) => when.into_std(),
            Err(e) => return Some(Err(StorageError::from_io(&root, e))),
        };
        Some(Ok(StagedInfo {
            name,
            size: meta.len(),
            modified,
        }))
    })))
}

/// A partial upload: a file in the user's staging folder, published by one `renameat`
/// into the home.
#[derive(Debug)]
pub(super) struct PosixStaged {
    file: File,
    name: String,
    home: Arc<Dir>,
    staging: Arc<Dir>,
    /// The staging folder's identity, if it is inside the home.
    reserved: Option<Identity>,
}

impl PosixStaged {
    /// Flushes the folder that now holds the published name, and the staging folder
    /// that no longer holds the partial.
    fn sync_folders(&self, path: &VirtualPath) -> io::Result<()> {
        match path.parent() {
            Some(parent) if !parent.is_root() => {
                sync_dir(&self.home.open_dir(parent.to_relative())?)?;
            }
            _ => sync_dir(&self.home)?,
        }
        sync_dir(&self.staging)
    }
}

impl PosixStaged {
    /// [`StagedFile::publish`] in a home that holds its staging folder: the target is
    /// resolved step by step, refusing that folder, and renamed into by its final name.
    fn publish_inside(&self, path: &VirtualPath, replace: Replace) -> Result<Published> {
        let place = Place::of(&self.home, self.reserved, path, Final::AsIs).map_err(at(path))?;
        let replaced = match place.symlink_metadata() {
            Ok(_) if replace == Replace::Never => {
                return Err(StorageError::Exists { path: path.clone() });
            }
            Ok(meta) => Some(entry_of(path.as_str(), &meta)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(at(path)(e)),
        };
        let flags = match replace {
            Replace::Allow => rustix::fs::RenameFlags::empty(),
            Replace::Never => rustix::fs::RenameFlags::NOREPLACE,
        };
        rustix::fs::renameat_with(
            &*self.staging,
            self.name.as_str(),
            &*place.dir,
            place.rel(),
            flags,
        )
        .map_err(|e| StorageError::from_io(path, e.into()))?;
        let durable = sync_dir(&place.dir).and_then(|()| sync_dir(&self.staging));
        Ok(Published { replaced, durable })
    }
}

impl StagedFile for PosixStaged {
    fn held(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn hash_held(&self, held: u64) -> io::Result<Md5> {
        let mut hasher = <Md5 as md5::Digest>::new();
        md5_range(&self.file, 0, held, &mut hasher)?;
        Ok(hasher)
    }

    fn truncate(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.file.write_all_at(data, offset)
    }

    fn set_permissions(&self, mode: u32) -> io::Result<()> {
        set_mode(&self.file, mode)
    }

    fn sync(&self) -> io::Result<()> {
        self.file.sync_all()
    }

    fn publish(&self, path: &VirtualPath, replace: Replace) -> Result<Published> {
        if self.reserved.is_some() {
            return self.publish_inside(path, replace);
        }
        let target = path.to_relative();
        let replaced = match self.home.symlink_metadata(target) {
            Ok(_) if replace == Replace::Never => {
                return Err(StorageError::Exists { path: path.clone() });
            }
            Ok(meta) => Some(entry_of(path.as_str(), &meta)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(StorageError::from_io(path, e)),
        };
        match replace {
            Replace::Allow => self
                .staging
                .rename(&self.name, &self.home, target)
                .map_err(at(path))?,
            Replace::Never => {
                let parent = path.parent().filter(|p| !p.is_root());
                let folder = match &parent {
                    Some(parent) => {
                        Some(self.home.open_dir(parent.to_relative()).map_err(at(path))?)
                    }
                    None => None,
                };
                let name = path
                    .file_name()
                    .ok_or_else(|| StorageError::IsADirectory { path: path.clone() })?;
                rustix::fs::renameat_with(
                    &*self.staging,
                    self.name.as_str(),
                    folder.as_ref().unwrap_or(&self.home),
                    name,
                    rustix::fs::RenameFlags::NOREPLACE,
                )
                .map_err(|e| StorageError::from_io(path, e.into()))?;
            }
        }
        // The rename is durable only once both folders it changed are on disk: without
        // this, a power loss can leave the old file (or none) under the name, and the
        // partial back in staging.
        Ok(Published {
            replaced,
            durable: self.sync_folders(path),
        })
    }
}

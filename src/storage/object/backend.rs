//! [`ObjectBackend`]: the [`Backend`] of a home on the object store, and
//! [`ObjectHomes`], which makes one for each user from one bucket.
//!
//! Every call runs its requests on the [`Runner`] and blocks until they are done, as
//! the storage core's contract allows. What an object store cannot do is declined as
//! [`StorageError::Unsupported`]: writes into an existing file, symbolic links, moving
//! a folder that is not empty, and setting times.

use std::io;
use std::path::{Path as FsPath, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use object_store::ObjectStore as _;
use object_store::{GetOptions, GetRange};

use super::bucket::{Bucket, ObjectStoreConfig};
use super::errors::ObjectError;
use super::key::MARKER_NAME;
use super::multipart::UploadContext;
use super::namespace::{ListCursor, ObjectHome, ObjectInfo};
use super::runner::Runner;
use super::state::{DiskStateStore, UploadStateStore};
use super::stream::StreamFile;
use crate::storage::backend::{
    Backend, Capabilities, FileHandle, Listing, OpenHow, Replace, StagedFile, StagedInfo,
    StagedListing,
};
use crate::storage::read::{ReadAt, ReadHandle};
use crate::storage::{
    Entry, EntryKind, QUOTA_BLOCK, Result, ScanFailure, StorageError, Tally, VirtualPath, file_cost,
};

/// A sequential reader fetches this much per ranged GET.
pub const READ_AHEAD: u64 = 4 << 20;

/// The homes of all users on one bucket, with the saved states of their uploads.
#[derive(Clone, Debug)]
pub struct ObjectHomes {
    bucket: Bucket,
    states: Arc<dyn UploadStateStore>,
    runner: Arc<Runner>,
}

impl ObjectHomes {
    /// Connects to the bucket, checks with one listing that it answers and takes the
    /// credentials (a clear error at start, not at a user's first command), and keeps
    /// the states of uploads in `state_dir`.
    pub fn open(
        config: &ObjectStoreConfig,
        state_dir: &FsPath,
    ) -> std::result::Result<ObjectHomes, ObjectError> {
        let states = DiskStateStore::open(state_dir)
            .map_err(|e| ObjectError::Config(format!("upload states in {state_dir:?}: {e}")))?;
        ObjectHomes::open_with_states(config, Arc::new(states))
    }

    /// [`ObjectHomes::open`], with the states of uploads kept in `states` (a database
    /// the nodes of a cluster share, so that an upload begun on one resumes on another).
    pub fn open_with_states(
        config: &ObjectStoreConfig,
        states: Arc<dyn UploadStateStore>,
    ) -> std::result::Result<ObjectHomes, ObjectError> {
        let runner = Runner::new().map_err(|e| ObjectError::Config(e.to_string()))?;
        let bucket = Bucket::connect(config)?;
        runner.block_on(bucket.check())?;
        Ok(ObjectHomes {
            bucket,
            states,
            runner: Arc::new(runner),
        })
    }

    /// The backend of `user`'s home, `prefix/<user>/`.
    pub fn backend(&self, user: &str) -> Result<ObjectBackend> {
        let home = ObjectHome::new(self.bucket.clone(), user)?;
        Ok(ObjectBackend {
            cx: UploadContext {
                home,
                states: Arc::clone(&self.states),
                runner: Arc::clone(&self.runner),
                user: user.to_owned(),
            },
        })
    }
}

/// One user's home on the object store.
#[derive(Clone, Debug)]
pub struct ObjectBackend {
    cx: UploadContext,
}

fn entry(info: ObjectInfo) -> Entry {
    let kind = if info.is_dir {
        EntryKind::Dir
    } else {
        EntryKind::File
    };
    Entry::new(info.name, kind, info.size, info.mtime)
}

/// A new partial for an SFTP upload of `path`, beside an rsftp `put`'s (which end in a
/// size). Each open gets its own: one cut off before its close can never complete, and
/// is counted, and aborted, as any stale partial is.
fn stream_name(path: &VirtualPath) -> String {
    static OPENED: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let n = OPENED.fetch_add(1, Ordering::Relaxed);
    format!(
        "{}-sftp-{now:x}-{n}",
        crate::protocol::Md5Digest::of(path.as_str().as_bytes())
    )
}

fn unsupported(path: &VirtualPath, what: &'static str) -> StorageError {
    StorageError::Unsupported {
        path: path.clone(),
        what,
    }
}

impl ObjectBackend {
    fn run<T: Send>(&self, future: impl Future<Output = T> + Send) -> T {
        self.cx.runner.block_on(future)
    }

    fn home(&self) -> &ObjectHome {
        &self.cx.home
    }

    fn stat_named(&self, path: &VirtualPath) -> Result<Entry> {
        let mut found = entry(self.run(self.home().stat(path))?);
        found.name = path.as_str().into();
        Ok(found)
    }

    fn reader(&self, path: &VirtualPath) -> Result<(ReadHandle, Entry)> {
        let info = self.run(self.home().stat(path))?;
        if info.is_dir {
            return Err(StorageError::IsADirectory { path: path.clone() });
        }
        let len = info.size;
        let reader = ObjectReader {
            home: self.home().clone(),
            runner: Arc::clone(&self.cx.runner),
            path: path.clone(),
            e_tag: info.e_tag.clone(),
            window: Mutex::default(),
        };
        let mut found = entry(info);
        found.name = path.as_str().into();
        Ok((ReadHandle::new(reader, len), found))
    }
}

impl Backend for ObjectBackend {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            in_place_writes: false,
            symlinks: false,
            rename_full_dirs: false,
        }
    }

    fn stat(&self, path: &VirtualPath) -> Result<Entry> {
        self.stat_named(path)
    }

    fn lstat(&self, path: &VirtualPath) -> Result<Entry> {
        self.stat_named(path)
    }

    fn list(&self, dir: &VirtualPath) -> Result<Listing> {
        let mut pages = Pages {
            backend: self.clone(),
            dir: dir.clone(),
            cursor: ListCursor::default(),
            page: Vec::new().into_iter(),
        };
        // The first page now, so that a missing folder or a file fails the call.
        pages.fetch()?;
        Ok(Box::new(pages))
    }

    fn mkdir(&self, path: &VirtualPath, _mode: u32) -> Result<()> {
        self.run(self.home().mkdir(path))
    }

    fn rmdir(&self, path: &VirtualPath) -> Result<()> {
        self.run(self.home().rmdir(path))
    }

    fn remove_file(&self, path: &VirtualPath) -> Result<()> {
        self.run(self.home().remove_file(path)).map(|_| ())
    }

    fn rename(
        &self,
        from: &VirtualPath,
        to: &VirtualPath,
        replace: Replace,
    ) -> Result<Option<Entry>> {
        let home = self.home();
        self.run(async {
            let target = home.stat(to).await;
            let replaced = match target {
                Ok(info) if replace == Replace::Never => {
                    let _ = info;
                    return Err(StorageError::Exists { path: to.clone() });
                }
                Ok(info) => Some(entry(info)),
                Err(StorageError::NotFound { .. }) => None,
                Err(e) => return Err(e),
            };
            home.rename(from, to).await?;
            Ok(replaced.filter(|_| from != to))
        })
    }

    fn depth_of(&self, dir: &VirtualPath) -> io::Result<usize> {
        // No links: a folder is as deep as its path.
        Ok(dir.as_str().split('/').filter(|s| !s.is_empty()).count())
    }

    fn levels_below(&self, _dir: &VirtualPath, _limit: usize) -> Option<usize> {
        // Only empty folders move on this backend.
        Some(0)
    }

    fn set_mtime(&self, path: &VirtualPath, _mtime: SystemTime) -> Result<()> {
        Err(unsupported(path, "setting times on the object store"))
    }

    fn set_permissions(&self, _path: &VirtualPath, _mode: u32) -> Result<()> {
        // An object store keeps no permission bits: accepted, and nothing changes.
        Ok(())
    }

    fn symlink(&self, _target: &str, link: &VirtualPath) -> Result<()> {
        Err(unsupported(link, "symbolic links"))
    }

    fn read_link(&self, path: &VirtualPath) -> Result<PathBuf> {
        Err(unsupported(path, "symbolic links"))
    }

    fn open_read(&self, path: &VirtualPath) -> Result<(ReadHandle, Entry)> {
        self.reader(path)
    }

    fn open(&self, path: &VirtualPath, how: OpenHow) -> Result<Box<dyn FileHandle>> {
        if how.create_new {
            // A new file: an upload streamed into a multipart upload, published at close.
            let name = stream_name(path);
            let staged = self
                .run(self.cx.stage(&name, path, true))?
                .ok_or_else(|| StorageError::NotFound { path: path.clone() })?;
            return Ok(Box::new(StreamFile::new(staged, path.clone())));
        }
        if how.write {
            return Err(unsupported(
                path,
                "writing a file in place on the object store (upload it instead)",
            ));
        }
        let (reader, found) = self.reader(path)?;
        Ok(Box::new(ObjectFile {
            reader,
            entry: found,
        }))
    }

    fn check_publishable(&self, dir: &VirtualPath) -> Result<()> {
        let info = self.run(self.home().stat(dir))?;
        if !info.is_dir {
            return Err(StorageError::NotADirectory { path: dir.clone() });
        }
        Ok(())
    }

    fn stage(
        &self,
        name: &str,
        path: &VirtualPath,
        create: bool,
    ) -> Result<Option<Box<dyn StagedFile>>> {
        let staged = self.run(self.cx.stage(name, path, create))?;
        Ok(staged.map(|s| Box::new(s) as Box<dyn StagedFile>))
    }

    fn staged(&self) -> Result<StagedListing> {
        let states = self.cx.states.list(&self.cx.user)?;
        let listed = states.into_iter().map(|(name, state)| {
            Ok(StagedInfo {
                name,
                size: state.held(),
                modified: UNIX_EPOCH + Duration::from_secs(state.updated),
            })
        });
        Ok(Box::new(listed.collect::<Vec<_>>().into_iter()))
    }

    fn remove_staged(&self, name: &str) -> io::Result<bool> {
        self.run(self.cx.abort(name))
            .map_err(|e| io::Error::other(e.to_string()))
    }

    fn measure(&self) -> std::result::Result<Tally, ScanFailure> {
        let mut tally = Tally::default();
        let home = self.home();
        let prefix = home.keys().home_prefix();
        self.run(async {
            let mut token = None;
            // Bounded: a page per request, until the store says there is no more.
            loop {
                let page = home
                    .list_all_page(&prefix, token.take())
                    .await
                    .map_err(|e| ScanFailure::new(format!("listing the home: {e}")))?;
                for meta in &page.result.objects {
                    let key = meta.location.as_ref();
                    let is_marker =
                        key.ends_with(&format!("/{MARKER_NAME}")) || key.len() + 1 == prefix.len();
                    if is_marker {
                        tally.add(QUOTA_BLOCK);
                    } else {
                        tally.add(file_cost(meta.size));
                    }
                }
                match page.page_token {
                    Some(next) => token = Some(next),
                    None => break,
                }
            }
            Ok::<_, ScanFailure>(())
        })?;
        let states = self
            .cx
            .states
            .list(&self.cx.user)
            .map_err(|e| ScanFailure::new(format!("partial uploads: {e}")))?;
        for (_, state) in states {
            tally.add(file_cost(state.held()));
        }
        Ok(tally)
    }
}

/// A listing that fetches one page per request as it is read.
struct Pages {
    backend: ObjectBackend,
    dir: VirtualPath,
    cursor: ListCursor,
    page: std::vec::IntoIter<ObjectInfo>,
}

impl Pages {
    /// The next page; `false` once the listing is done.
    fn fetch(&mut self) -> Result<bool> {
        let home = self.backend.home().clone();
        let next = self
            .backend
            .run(home.list_page(&self.dir, &mut self.cursor))?;
        match next {
            Some(page) => {
                self.page = page.into_iter();
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

impl Iterator for Pages {
    type Item = Result<Entry>;

    fn next(&mut self) -> Option<Result<Entry>> {
        // Bounded by the pages the store has: each fetch moves its cursor on, and an
        // empty page that is not the last one is skipped.
        loop {
            if let Some(info) = self.page.next() {
                return Some(Ok(entry(info)));
            }
            match self.fetch() {
                Ok(true) => {}
                Ok(false) => return None,
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

/// Ranged GETs of one object, with a window fetched ahead for sequential readers. Every
/// GET asks for the ETag seen at open, so a file replaced meanwhile fails the read
/// instead of mixing two versions.
struct ObjectReader {
    home: ObjectHome,
    runner: Arc<Runner>,
    path: VirtualPath,
    e_tag: Option<String>,
    /// The last range fetched: its offset and bytes.
    window: Mutex<(u64, bytes::Bytes)>,
}

impl ReadAt for ObjectReader {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let mut window = self.window.lock().unwrap_or_else(PoisonError::into_inner);
        let (start, bytes) = &*window;
        let end = start + bytes.len() as u64;
        if offset < *start || offset >= end {
            // A reader that goes on where the last window ended reads ahead; one that
            // jumps about fetches only what it asked for.
            let want = if offset == end && end > 0 {
                READ_AHEAD.max(buf.len() as u64)
            } else {
                buf.len() as u64
            };
            let fetched = self
                .runner
                .block_on(self.fetch(offset, want))
                .map_err(|e| io::Error::other(e.to_string()))?;
            *window = (offset, fetched);
        }
        let (start, bytes) = &*window;
        let from = (offset - start) as usize;
        let n = buf.len().min(bytes.len().saturating_sub(from));
        buf[..n].copy_from_slice(&bytes[from..from + n]);
        Ok(n)
    }
}

impl ObjectReader {
    async fn fetch(&self, offset: u64, len: u64) -> Result<bytes::Bytes> {
        if len == 0 {
            return Ok(bytes::Bytes::new());
        }
        let key = self.home.keys().object(&self.path)?;
        let options = GetOptions {
            range: Some(GetRange::Bounded(offset..offset.saturating_add(len))),
            if_match: self.e_tag.clone(),
            ..GetOptions::default()
        };
        let s3 = &self.home.bucket.s3;
        match s3.get_opts(&key, options).await {
            Ok(result) => result
                .bytes()
                .await
                .map_err(super::errors::store_error(&self.path)),
            Err(object_store::Error::Precondition { .. }) => Err(StorageError::Io {
                path: self.path.clone(),
                source: io::Error::other("the file was replaced while it was read"),
            }),
            Err(e) if super::namespace::is_range_past_end(&e) => Ok(bytes::Bytes::new()),
            Err(e) => Err(super::errors::classify(&self.path, e)),
        }
    }
}

/// A file opened to read, for an SFTP handle.
#[derive(Debug)]
struct ObjectFile {
    reader: ReadHandle,
    entry: Entry,
}

fn declined() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "not supported on the object store",
    )
}

impl FileHandle for ObjectFile {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        self.reader.read_at(offset, buf)
    }

    fn write_all_at(&self, _offset: u64, _data: &[u8]) -> io::Result<()> {
        Err(declined())
    }

    fn set_len(&self, _len: u64) -> io::Result<()> {
        Err(declined())
    }

    fn stat(&self, name: &str) -> io::Result<Entry> {
        let mut found = self.entry.clone();
        found.name = name.into();
        Ok(found)
    }

    fn named_len(&self) -> io::Result<Option<u64>> {
        Ok(Some(self.entry.size))
    }

    fn set_permissions(&self, _mode: u32) -> io::Result<()> {
        Ok(())
    }

    fn set_mtime(&self, _mtime: SystemTime) -> io::Result<()> {
        Err(declined())
    }

    fn sync(&self) -> io::Result<()> {
        Ok(())
    }

    fn reader(&self) -> io::Result<ReadHandle> {
        Ok(self.reader.clone())
    }
}

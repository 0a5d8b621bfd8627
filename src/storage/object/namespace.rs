//! One user's home on the object store: what is at a path, listings page by page, and
//! the changes to the namespace (folders, deletes, moves) that an object store can make.
//!
//! A path is a file when an object has its key, and a folder when any key starts with
//! `name/`: its marker (`name/.rsftp-folder`, or the S3 convention's `name/` written by
//! other tools), or anything in it. A folder made here has a marker, so it stays
//! when emptied, until `rmdir`; a folder that is only the common prefix of objects made
//! by other tools goes with its last object. An object store renames by copying, so a
//! file moves by a server-side copy and a delete, an empty folder by moving its marker,
//! and a folder with anything in it is refused.

use object_store::list::{PaginatedListOptions, PaginatedListStore as _};
use object_store::path::Path;
use object_store::{
    GetOptions, GetRange, ObjectMeta, ObjectStore as _, ObjectStoreExt as _, PutPayload,
};

use super::bucket::Bucket;
use super::errors::{classify, store_error};
use super::key::{HomeKeys, MARKER_NAME};
use crate::storage::{Result, StorageError, VirtualPath};

/// Keys per listing page; S3's own maximum.
pub const LIST_PAGE: usize = 1000;

/// What a path names on the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Found {
    File(ObjectInfo),
    /// A folder: its marker's mtime if it has one, else 0.
    Dir {
        mtime: i64,
    },
    Nothing,
}

/// One entry of a listing, or what `stat` says of a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectInfo {
    /// The final component, as the user named it.
    pub name: String,
    pub is_dir: bool,
    pub size: u64,
    /// Unix seconds; 0 for a folder known only as a prefix.
    pub mtime: i64,
    pub e_tag: Option<String>,
}

impl ObjectInfo {
    fn file(name: &str, meta: &ObjectMeta) -> ObjectInfo {
        ObjectInfo {
            name: name.to_owned(),
            is_dir: false,
            size: meta.size,
            mtime: meta.last_modified.timestamp(),
            e_tag: meta.e_tag.clone(),
        }
    }
}

/// A listing under way: the page token for the next page, if any.
#[derive(Clone, Debug, Default)]
pub struct ListCursor {
    token: Option<String>,
    started: bool,
}

/// One user's home on one bucket. Cheap to clone.
#[derive(Clone, Debug)]
pub struct ObjectHome {
    pub(super) bucket: Bucket,
    pub(super) keys: HomeKeys,
}

impl ObjectHome {
    pub fn new(bucket: Bucket, user: &str) -> Result<ObjectHome> {
        let keys = HomeKeys::new(&bucket.prefix, user)?;
        Ok(ObjectHome { bucket, keys })
    }

    pub fn keys(&self) -> &HomeKeys {
        &self.keys
    }

    /// What `path` is: an object, a folder (marker or prefix), or nothing.
    pub async fn find(&self, path: &VirtualPath) -> Result<Found> {
        if path.is_root() {
            return Ok(Found::Dir { mtime: 0 });
        }
        // One listing with the key itself as the prefix answers both questions: the
        // object `name` lists first (a prefix sorts before all that extend it), and the
        // folder as the common prefix `name/`. A HEAD would answer only the first, and
        // some servers answer it with an error when `name/` is a folder.
        let key = self.keys.object(path)?;
        let folder = self.keys.folder(path)?;
        let options = PaginatedListOptions {
            delimiter: Some("/".into()),
            max_keys: Some(LIST_PAGE),
            ..PaginatedListOptions::default()
        };
        let page = self
            .bucket
            .s3
            .list_paginated(Some(key.as_ref()), options)
            .await
            .map_err(store_error(path))?;
        let name = path.file_name().unwrap_or_default();
        if let Some(meta) = page.result.objects.iter().find(|m| m.location == key) {
            return Ok(Found::File(ObjectInfo::file(name, meta)));
        }
        let is_folder = |p: &Path| folder.strip_suffix('/') == Some(p.as_ref());
        if page.result.common_prefixes.iter().any(is_folder) {
            return Ok(Found::Dir { mtime: 0 });
        }
        // More than a page of names that extend this one and sort before `name/`
        // (`name-1`, `name.txt`, ...): ask about the folder itself.
        if page.page_token.is_some() && !self.first_keys(path, &folder, 1).await?.is_empty() {
            return Ok(Found::Dir { mtime: 0 });
        }
        Ok(Found::Nothing)
    }

    /// Like [`ObjectHome::find`], with nothing there as [`StorageError::NotFound`].
    pub async fn stat(&self, path: &VirtualPath) -> Result<ObjectInfo> {
        let name = path.file_name().unwrap_or("/").to_owned();
        match self.find(path).await? {
            Found::File(info) => Ok(info),
            Found::Dir { .. } => Ok(ObjectInfo {
                name,
                is_dir: true,
                size: 0,
                mtime: self.marker_mtime(path).await?,
                e_tag: None,
            }),
            Found::Nothing => Err(StorageError::NotFound { path: path.clone() }),
        }
    }

    /// The next page of the folder `path`, sorted by name bytes; `None` once the listing
    /// is done. The folder's own marker is left out. A folder that does not exist is
    /// [`StorageError::NotFound`], a file [`StorageError::NotADirectory`].
    pub async fn list_page(
        &self,
        path: &VirtualPath,
        cursor: &mut ListCursor,
    ) -> Result<Option<Vec<ObjectInfo>>> {
        if cursor.started && cursor.token.is_none() {
            return Ok(None);
        }
        let folder = self.keys.folder(path)?;
        let options = PaginatedListOptions {
            delimiter: Some("/".into()),
            max_keys: Some(LIST_PAGE),
            page_token: cursor.token.take(),
            ..PaginatedListOptions::default()
        };
        let page = self
            .bucket
            .s3
            .list_paginated(Some(&folder), options)
            .await
            .map_err(store_error(path))?;
        let first = !cursor.started;
        cursor.started = true;
        cursor.token = page.page_token;
        let result = page.result;
        let mut entries = Vec::with_capacity(result.objects.len() + result.common_prefixes.len());
        for meta in &result.objects {
            if let Some(name) = HomeKeys::name_in(&folder, meta.location.as_ref()) {
                entries.push(ObjectInfo::file(name, meta));
            }
        }
        for prefix in &result.common_prefixes {
            // object_store drops the prefix's trailing slash.
            let key = format!("{prefix}/");
            if let Some(name) = HomeKeys::name_in(&folder, &key) {
                entries.push(ObjectInfo {
                    name: name.to_owned(),
                    is_dir: true,
                    size: 0,
                    mtime: 0,
                    e_tag: None,
                });
            }
        }
        entries.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
        if first && result.objects.is_empty() && result.common_prefixes.is_empty() {
            match self.find(path).await? {
                Found::Dir { .. } => {}
                Found::File(_) => return Err(StorageError::NotADirectory { path: path.clone() }),
                Found::Nothing => return Err(StorageError::NotFound { path: path.clone() }),
            }
        }
        Ok(Some(entries))
    }

    /// When the folder's marker was written; 0 for a folder that has none.
    async fn marker_mtime(&self, path: &VirtualPath) -> Result<i64> {
        if path.is_root() {
            return Ok(0);
        }
        match self.bucket.s3.head(&self.keys.marker(path)?).await {
            Ok(meta) => Ok(meta.last_modified.timestamp()),
            Err(object_store::Error::NotFound { .. }) => Ok(0),
            Err(e) => Err(classify(path, e)),
        }
    }

    /// Makes the folder `path` as a zero-byte marker object. Its parent must be a
    /// folder, and nothing may be at `path`.
    pub async fn mkdir(&self, path: &VirtualPath) -> Result<()> {
        let parent = path
            .parent()
            .ok_or_else(|| StorageError::Exists { path: path.clone() })?;
        self.require_folder(&parent).await?;
        if self.find(path).await? != Found::Nothing {
            return Err(StorageError::Exists { path: path.clone() });
        }
        self.put_marker(path).await
    }

    async fn put_marker(&self, path: &VirtualPath) -> Result<()> {
        let marker = self.keys.marker(path)?;
        self.bucket
            .s3
            .put(&marker, PutPayload::new())
            .await
            .map(|_| ())
            .map_err(store_error(path))
    }

    async fn delete_marker(&self, path: &VirtualPath) -> Result<()> {
        let marker = self.keys.marker(path)?;
        match self.bucket.s3.delete(&marker).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(classify(path, e)),
        }
    }

    /// Removes the empty folder `path`: its marker. A folder with anything in it is
    /// [`StorageError::NotEmpty`].
    pub async fn rmdir(&self, path: &VirtualPath) -> Result<()> {
        if path.is_root() {
            return Err(StorageError::Denied {
                path: path.clone(),
                reason: "the home itself",
            });
        }
        match self.find(path).await? {
            Found::Dir { .. } => {}
            Found::File(_) => return Err(StorageError::NotADirectory { path: path.clone() }),
            Found::Nothing => return Err(StorageError::NotFound { path: path.clone() }),
        }
        let folder = self.keys.folder(path)?;
        if !self.is_empty_folder(path, &folder).await? {
            return Err(StorageError::NotEmpty { path: path.clone() });
        }
        self.delete_marker(path).await
    }

    /// Deletes the file `path`.
    pub async fn remove_file(&self, path: &VirtualPath) -> Result<u64> {
        let info = match self.find(path).await? {
            Found::File(info) => info,
            Found::Dir { .. } => return Err(StorageError::IsADirectory { path: path.clone() }),
            Found::Nothing => return Err(StorageError::NotFound { path: path.clone() }),
        };
        let key = self.keys.object(path)?;
        self.bucket
            .s3
            .delete(&key)
            .await
            .map_err(store_error(path))?;
        Ok(info.size)
    }

    /// Moves `from` to `to`: a file by a server-side copy and then a delete (replacing a
    /// file at `to`), an empty folder by moving its marker. A folder with anything in it
    /// is refused: the store would copy every object one by one, and a failure half way
    /// would leave it split in two.
    pub async fn rename(&self, from: &VirtualPath, to: &VirtualPath) -> Result<Option<u64>> {
        for path in [from, to] {
            if path.is_root() {
                return Err(StorageError::Denied {
                    path: path.clone(),
                    reason: "the home itself",
                });
            }
        }
        if from == to {
            return Ok(None);
        }
        if let Some(parent) = to.parent() {
            self.require_folder(&parent).await?;
        }
        let target = self.find(to).await?;
        match self.find(from).await? {
            Found::Nothing => Err(StorageError::NotFound { path: from.clone() }),
            Found::File(_) => {
                let replaced = match target {
                    Found::Dir { .. } => {
                        return Err(StorageError::IsADirectory { path: to.clone() });
                    }
                    Found::File(info) => Some(info.size),
                    Found::Nothing => None,
                };
                let (from_key, to_key) = (self.keys.object(from)?, self.keys.object(to)?);
                self.bucket
                    .s3
                    .copy(&from_key, &to_key)
                    .await
                    .map_err(store_error(to))?;
                self.bucket
                    .s3
                    .delete(&from_key)
                    .await
                    .map_err(store_error(from))?;
                Ok(replaced)
            }
            Found::Dir { .. } => {
                if to.as_str().starts_with(&format!("{from}/")) {
                    return Err(StorageError::Invalid {
                        path: from.clone(),
                        reason: "a folder cannot be moved into itself",
                    });
                }
                let from_folder = self.keys.folder(from)?;
                if !self.is_empty_folder(from, &from_folder).await? {
                    return Err(StorageError::Invalid {
                        path: from.clone(),
                        reason: "a folder with files in it cannot be moved on the object \
                                 store; move its files one by one, or make a new folder",
                    });
                }
                match target {
                    Found::File(_) => return Err(StorageError::NotADirectory { path: to.clone() }),
                    Found::Dir { .. } => {
                        let to_folder = self.keys.folder(to)?;
                        if !self.is_empty_folder(to, &to_folder).await? {
                            return Err(StorageError::NotEmpty { path: to.clone() });
                        }
                    }
                    Found::Nothing => {}
                }
                self.put_marker(to).await?;
                self.delete_marker(from).await?;
                Ok(None)
            }
        }
    }

    /// Up to `len` bytes of the file `path` from `offset`, by one ranged GET; fewer only
    /// at the end of the file, none past it.
    pub async fn read_range(
        &self,
        path: &VirtualPath,
        offset: u64,
        len: u64,
    ) -> Result<bytes::Bytes> {
        if len == 0 {
            return Ok(bytes::Bytes::new());
        }
        let key = self.keys.object(path)?;
        let options = GetOptions {
            range: Some(GetRange::Bounded(offset..offset.saturating_add(len))),
            ..GetOptions::default()
        };
        match self.bucket.s3.get_opts(&key, options).await {
            Ok(result) => result.bytes().await.map_err(store_error(path)),
            // A range that starts at or past the end: nothing more to read.
            Err(object_store::Error::NotModified { .. }) => Ok(bytes::Bytes::new()),
            Err(e) if is_range_past_end(&e) => Ok(bytes::Bytes::new()),
            Err(e) => Err(classify(path, e)),
        }
    }

    /// Refuses unless `path` is a folder.
    async fn require_folder(&self, path: &VirtualPath) -> Result<()> {
        match self.find(path).await? {
            Found::Dir { .. } => Ok(()),
            Found::File(_) => Err(StorageError::NotADirectory { path: path.clone() }),
            Found::Nothing => Err(StorageError::NotFound { path: path.clone() }),
        }
    }

    /// Whether nothing but its markers (ours, and the S3 convention's `name/`) is under
    /// the folder prefix `folder`.
    async fn is_empty_folder(&self, path: &VirtualPath, folder: &str) -> Result<bool> {
        let first = self.first_keys(path, folder, 3).await?;
        Ok(first.iter().all(|meta| is_marker(folder, &meta.location)))
    }

    /// One page of every key under `prefix`, with no delimiter: for measuring a home.
    pub(super) async fn list_all_page(
        &self,
        prefix: &str,
        page_token: Option<String>,
    ) -> std::result::Result<object_store::list::PaginatedListResult, object_store::Error> {
        let options = PaginatedListOptions {
            max_keys: Some(LIST_PAGE),
            page_token,
            ..PaginatedListOptions::default()
        };
        self.bucket.s3.list_paginated(Some(prefix), options).await
    }

    /// The first `n` keys under `prefix`, with no delimiter.
    async fn first_keys(
        &self,
        path: &VirtualPath,
        prefix: &str,
        n: usize,
    ) -> Result<Vec<ObjectMeta>> {
        let options = PaginatedListOptions {
            max_keys: Some(n),
            ..PaginatedListOptions::default()
        };
        let page = self
            .bucket
            .s3
            .list_paginated(Some(prefix), options)
            .await
            .map_err(store_error(path))?;
        Ok(page.result.objects)
    }
}

/// Whether a listed location is a marker of the folder prefix `folder`: ours, or the S3
/// convention's `name/` (whose trailing slash object_store drops).
fn is_marker(folder: &str, location: &Path) -> bool {
    let location = location.as_ref();
    folder.strip_suffix('/') == Some(location) || location.strip_prefix(folder) == Some(MARKER_NAME)
}

/// S3 answers 416 for a range that starts past the end of an object.
pub(super) fn is_range_past_end(err: &object_store::Error) -> bool {
    let text = err.to_string();
    text.contains("416") || text.contains("InvalidRange") || text.contains("Range Not Satisfiable")
}

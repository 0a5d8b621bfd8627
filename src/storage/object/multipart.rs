//! Partial uploads on the object store: a multipart upload straight to the final key, in
//! parts of [`PART_SIZE`], completed only when the home publishes it, which it does only
//! once the MD5 of the whole file matches.
//!
//! Nothing is visible under the key before CompleteMultipartUpload. After each part the
//! upload id, the parts' ETags and the MD5 state at that part boundary are saved
//! ([`UploadStateStore`]), so a later upload of the same path and size, after a broken
//! connection or a restart of the server, resumes at the last part boundary. Parts are
//! numbered 1..N and sent in order; ListParts and ListMultipartUploads are never needed
//! (some S3-compatible servers lack them, or answer ListParts without ETags). The bytes
//! of a part are hashed once, from memory, as the part goes out.

use std::io;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use md5::{Digest as _, Md5};
use object_store::multipart::{MultipartStore as _, PartId};
use object_store::path::Path;
use object_store::{ObjectStoreExt as _, PutPayload};

use super::errors::store_error;
use super::namespace::{Found, ObjectHome};
use super::runner::Runner;
use super::state::{UploadState, UploadStateStore};
use crate::storage::backend::{Published, Replace, StagedFile};
use crate::storage::{Entry, EntryKind, Result, StorageError, VirtualPath};

/// Bytes in every part but the last. S3 wants at least 5 MiB.
pub const PART_SIZE: u64 = 8 << 20;
/// S3's most parts in one upload: files up to 80,000 MiB.
pub const MAX_PARTS: u64 = 10_000;

/// What a partial upload needs to reach the store and its saved state.
#[derive(Clone, Debug)]
pub(super) struct UploadContext {
    pub home: ObjectHome,
    pub states: Arc<dyn UploadStateStore>,
    pub runner: Arc<Runner>,
    pub user: String,
}

/// One partial upload, as [`Backend::stage`](crate::storage::Backend::stage) opens it.
#[derive(Debug)]
pub(super) struct StagedUpload {
    cx: UploadContext,
    name: String,
    path: VirtualPath,
    key: Path,
    inner: Mutex<Progress>,
}

#[derive(Clone, Debug)]
struct Progress {
    state: UploadState,
    /// The MD5 of the bytes in the parts sent so far.
    hasher: Md5,
    /// Bytes received past the last part, fewer than a part.
    pending: Vec<u8>,
}

impl Progress {
    fn written(&self) -> u64 {
        self.state.held() + self.pending.len() as u64
    }
}

impl UploadContext {
    /// Opens the saved upload `name` of `path`, or begins a new one if `create`.
    pub(super) async fn stage(
        &self,
        name: &str,
        path: &VirtualPath,
        create: bool,
    ) -> Result<Option<StagedUpload>> {
        let key = self.home.keys.object(path)?;
        let state = match self.states.load(&self.user, name)? {
            // Saved for another path under this name: not this upload's.
            Some(state) if state.path != path.as_str() => None,
            Some(state) => Some(state),
            None => None,
        };
        let state = match state {
            Some(state) => state,
            None if create => {
                let state = self.create(path, &key).await?;
                self.states.save(&self.user, name, &state)?;
                state
            }
            None => return Ok(None),
        };
        let hasher = state.hasher()?;
        Ok(Some(StagedUpload {
            cx: self.clone(),
            name: name.to_owned(),
            path: path.clone(),
            key,
            inner: Mutex::new(Progress {
                state,
                hasher,
                pending: Vec::new(),
            }),
        }))
    }

    async fn create(&self, path: &VirtualPath, key: &Path) -> Result<UploadState> {
        let id = self
            .home
            .bucket
            .s3
            .create_multipart(key)
            .await
            .map_err(store_error(path))?;
        Ok(UploadState::new(path, id, PART_SIZE))
    }

    /// Aborts the saved upload `name` and forgets it; `false` if nothing was saved. An
    /// abort the store refuses is logged: its own lifecycle rules drop incomplete uploads
    /// too, and the state is gone either way, so the space is given back.
    pub(super) async fn abort(&self, name: &str) -> Result<bool> {
        let Some(state) = self.states.load(&self.user, name)? else {
            return Ok(false);
        };
        self.abort_state(&state).await;
        self.states.remove(&self.user, name)
    }

    async fn abort_state(&self, state: &UploadState) {
        let key = VirtualPath::resolve(&VirtualPath::root(), &state.path)
            .and_then(|path| self.home.keys.object(&path));
        if let Ok(key) = key
            && let Err(e) = self
                .home
                .bucket
                .s3
                .abort_multipart(&key, &state.upload_id)
                .await
        {
            tracing::warn!(user = self.user, path = state.path, error = %e,
                "could not abort a multipart upload");
        }
    }
}

fn lock(mutex: &Mutex<Progress>) -> MutexGuard<'_, Progress> {
    // Every change leaves the progress whole before anything can panic.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn to_io(err: StorageError) -> io::Error {
    match err {
        StorageError::Io { source, .. } => source,
        StorageError::NotFound { .. } => io::Error::from(io::ErrorKind::NotFound),
        other => io::Error::other(other.to_string()),
    }
}

impl StagedUpload {
    /// Sends the pending bytes as the next part and, unless it is the last, saves the
    /// state with it: a last part, shorter than the others, is no boundary to resume at.
    async fn send_part(&self, progress: &mut Progress, last: bool) -> Result<()> {
        let bytes = std::mem::take(&mut progress.pending);
        let mut hasher = progress.hasher.clone();
        hasher.update(&bytes);
        let index = progress.state.parts.len();
        let sent = self
            .cx
            .home
            .bucket
            .s3
            .put_part(
                &self.key,
                &progress.state.upload_id,
                index,
                PutPayload::from(bytes),
            )
            .await;
        let part = match sent {
            Ok(part) => part,
            Err(object_store::Error::NotFound { .. }) => {
                // The store no longer has the upload (aborted, or expired by its
                // lifecycle rules): it can never complete, so the next attempt starts
                // afresh.
                let _ = self.cx.states.remove(&self.cx.user, &self.name);
                return Err(StorageError::Io {
                    path: self.path.clone(),
                    source: io::Error::other(
                        "the object store no longer has this upload; send the file again",
                    ),
                });
            }
            Err(e) => return Err(store_error(&self.path)(e)),
        };
        progress.state.add_part(part.content_id, &hasher);
        progress.hasher = hasher;
        if last {
            return Ok(());
        }
        self.cx
            .states
            .save(&self.cx.user, &self.name, &progress.state)
    }

    async fn write(&self, progress: &mut Progress, mut data: &[u8]) -> Result<()> {
        let part = PART_SIZE as usize;
        while !data.is_empty() {
            let take = (part - progress.pending.len()).min(data.len());
            progress.pending.extend_from_slice(&data[..take]);
            data = &data[take..];
            if progress.pending.len() == part {
                self.send_part(progress, false).await?;
            }
        }
        Ok(())
    }

    async fn publish(&self, replace: Replace) -> Result<Published> {
        let replaced = match self.cx.home.find(&self.path).await? {
            Found::Dir { .. } => {
                return Err(StorageError::IsADirectory {
                    path: self.path.clone(),
                });
            }
            Found::File(_) if replace == Replace::Never => {
                return Err(StorageError::Exists {
                    path: self.path.clone(),
                });
            }
            Found::File(info) => Some(Entry::new(
                info.name.as_str(),
                EntryKind::File,
                info.size,
                info.mtime,
            )),
            Found::Nothing => None,
        };
        // A copy: the progress kept is the one before the last part, so a publish that
        // fails is tried again from there, and `held` stays what was received.
        let mut progress = lock(&self.inner).clone();
        if progress.written() == 0 {
            // No part to complete with: an empty file is one PUT.
            self.cx.abort_state(&progress.state).await;
            self.cx
                .home
                .bucket
                .s3
                .put(&self.key, PutPayload::new())
                .await
                .map_err(store_error(&self.path))?;
        } else {
            if !progress.pending.is_empty() {
                self.send_part(&mut progress, true).await?;
            }
            let parts = progress
                .state
                .parts
                .iter()
                .map(|etag| PartId {
                    content_id: etag.clone(),
                })
                .collect();
            self.cx
                .home
                .bucket
                .s3
                .complete_multipart(&self.key, &progress.state.upload_id, parts)
                .await
                .map_err(store_error(&self.path))?;
        }
        self.cx.states.remove(&self.cx.user, &self.name)?;
        Ok(Published {
            replaced,
            durable: Ok(()),
        })
    }
}

impl StagedFile for StagedUpload {
    fn held(&self) -> io::Result<u64> {
        let progress = lock(&self.inner);
        // Kept across a disconnect are the parts sent, not the bytes after the last one.
        // Once published or aborted nothing is saved any more, and nothing was lost.
        match self.cx.states.load(&self.cx.user, &self.name) {
            Ok(Some(_)) => Ok(progress.state.held()),
            Ok(None) => Ok(progress.written()),
            Err(e) => Err(to_io(e)),
        }
    }

    fn hash_held(&self, held: u64) -> io::Result<Md5> {
        let progress = lock(&self.inner);
        if held == 0 {
            return Ok(Md5::new());
        }
        if held != progress.state.held() {
            return Err(io::Error::other(
                "the object store keeps the MD5 only at part boundaries",
            ));
        }
        Ok(progress.hasher.clone())
    }

    fn truncate(&self, len: u64) -> io::Result<()> {
        let mut progress = lock(&self.inner);
        let held = progress.state.held();
        if len == progress.written() {
            return Ok(());
        }
        if len >= held && len < progress.written() {
            // Only bytes not sent yet: cut them.
            progress.pending.truncate((len - held) as usize);
            return Ok(());
        }
        if len != 0 {
            return Err(io::Error::other(
                "an upload to the object store can only start over or resume at a part boundary",
            ));
        }
        let old = progress.state.clone();
        let fresh = self.cx.runner.block_on(async {
            self.cx.abort_state(&old).await;
            self.cx.create(&self.path, &self.key).await
        });
        let fresh = fresh.map_err(to_io)?;
        self.cx
            .states
            .save(&self.cx.user, &self.name, &fresh)
            .map_err(to_io)?;
        *progress = Progress {
            state: fresh,
            hasher: Md5::new(),
            pending: Vec::new(),
        };
        Ok(())
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        let mut progress = lock(&self.inner);
        if offset != progress.written() {
            return Err(io::Error::other(
                "uploads to the object store are written in order",
            ));
        }
        // All or nothing: on a failure the parts this call sent are forgotten (they are
        // sent again, under the same numbers), so the upload stays what the home has seen.
        let before = progress.clone();
        let result = self.cx.runner.block_on(self.write(&mut progress, data));
        if let Err(e) = result {
            if progress.state.parts.len() != before.state.parts.len() {
                let _ = self
                    .cx
                    .states
                    .save(&self.cx.user, &self.name, &before.state);
            }
            *progress = before;
            return Err(to_io(e));
        }
        Ok(())
    }

    fn set_permissions(&self, _mode: u32) -> io::Result<()> {
        // An object store keeps no permission bits.
        Ok(())
    }

    fn sync(&self) -> io::Result<()> {
        // Each part is durable once the store answered; the rest is sent by `publish`.
        Ok(())
    }

    fn publish(&self, path: &VirtualPath, replace: Replace) -> Result<Published> {
        if path != &self.path {
            return Err(StorageError::Invalid {
                path: path.clone(),
                reason: "an upload to the object store publishes only under its own key",
            });
        }
        self.cx.runner.block_on(self.publish(replace))
    }
}

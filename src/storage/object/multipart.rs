//! Uploads to the object store: a multipart upload straight to the final key, in parts of
//! [`PART_SIZE`], completed only once the MD5 of the whole file matches.
//!
//! Nothing is visible under the key before CompleteMultipartUpload. After each part the
//! upload id, the parts' ETags and the MD5 state at that part boundary are saved
//! ([`UploadStateStore`]), so a later upload of the same path and size, after a broken
//! connection or a restart of the server, resumes at the last part boundary. Parts are
//! sent numbered 1..N in order, and ListParts and ListMultipartUploads are never needed:
//! some S3-compatible servers lack them, or answer ListParts without ETags.
//!
//! Each byte is hashed once, as its part goes out: the MD5 state saved is exactly that
//! of the bytes the store holds.

use std::sync::Arc;

use md5::{Digest as _, Md5};
use object_store::multipart::{MultipartStore as _, PartId};
use object_store::path::Path;
use object_store::{
    Attribute, AttributeValue, Attributes, GetOptions, ObjectStore as _, PutMultipartOptions,
    PutOptions, PutPayload,
};

use super::errors::{classify, store_error};
use super::namespace::{Found, ObjectHome};
use super::state::{UploadState, UploadStateStore};
use crate::protocol::Md5Digest;
use crate::storage::{Result, StorageError, VirtualPath};

/// Bytes in every part but the last. S3 wants at least 5 MiB.
pub const PART_SIZE: u64 = 8 << 20;
/// S3's most parts in one upload: files up to 80,000 MiB.
pub const MAX_PARTS: u64 = 10_000;
/// The user metadata that holds a file's MD5 (`x-amz-meta-rsftp-md5`), since the ETag
/// of a multipart upload is not one.
pub const MD5_METADATA: &str = "rsftp-md5";

/// An upload in progress. Dropping it unfinished keeps its parts and saved state for a
/// later resume.
#[derive(Debug)]
pub struct MultipartUpload {
    home: ObjectHome,
    states: Arc<dyn UploadStateStore>,
    user: String,
    path: VirtualPath,
    key: Path,
    state: UploadState,
    /// What the store held when this upload began.
    held: u64,
    prefix_md5: Md5Digest,
    /// The MD5 of the bytes in the parts sent so far.
    hasher: Md5,
    /// Bytes received past the last part, fewer than a part.
    pending: Vec<u8>,
    /// The MD5 the client announced when the upload began, set as the object's metadata.
    announced: Option<Md5Digest>,
}

impl ObjectHome {
    /// The size and MD5 stored with the file `path`, where the upload that made it knew
    /// the MD5; `None` if there is no such file or no MD5 with it.
    pub async fn stored_md5(&self, path: &VirtualPath) -> Result<Option<(u64, Md5Digest)>> {
        let key = self.keys.object(path)?;
        let options = GetOptions {
            head: true,
            ..GetOptions::default()
        };
        let result = match self.bucket.s3.get_opts(&key, options).await {
            Ok(result) => result,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(classify(path, e)),
        };
        let md5 = result
            .attributes
            .get(&Attribute::Metadata(MD5_METADATA.into()))
            .and_then(|v| v.as_ref().parse::<Md5Digest>().ok());
        Ok(md5.map(|md5| (result.meta.size, md5)))
    }

    /// Prepares an upload of `size` bytes to `path`, resuming the one saved for the same
    /// path and size if there is one; saved uploads of the path at other sizes are
    /// aborted, since they can never resume into this one.
    ///
    /// `announced`, the MD5 the client says the file has, goes into the object's
    /// metadata, so a later `put` of the same file finds it up to date.
    pub async fn begin_multipart(
        &self,
        states: Arc<dyn UploadStateStore>,
        user: &str,
        path: &VirtualPath,
        size: u64,
        announced: Option<Md5Digest>,
    ) -> Result<MultipartUpload> {
        let key = self.keys.object(path)?;
        if size.div_ceil(PART_SIZE) > MAX_PARTS {
            return Err(StorageError::Invalid {
                path: path.clone(),
                reason: "larger than the object store takes in one upload (80,000 MiB)",
            });
        }
        let parent = path.parent().unwrap_or_else(VirtualPath::root);
        match self.find(&parent).await? {
            Found::Dir { .. } => {}
            Found::File(_) => return Err(StorageError::NotADirectory { path: parent }),
            Found::Nothing => return Err(StorageError::NotFound { path: parent }),
        }
        if let Found::Dir { .. } = self.find(path).await? {
            return Err(StorageError::IsADirectory { path: path.clone() });
        }
        for other in states.list(user)? {
            if other.path == path.as_str() && other.size != size {
                self.abort_saved(states.as_ref(), user, path, &other).await;
            }
        }
        let saved = states.load(user, path, size)?;
        // A saved upload announced with another MD5 is another file: start over.
        let saved = match saved {
            Some(state) if state.expected_md5 != announced.map(|m| m.to_string()) => {
                self.abort_saved(states.as_ref(), user, path, &state).await;
                None
            }
            other => other,
        };
        let state = match saved {
            Some(state) => state,
            None => {
                let state = self.create(path, &key, size, announced).await?;
                states.save(user, &state)?;
                state
            }
        };
        let hasher = state.hasher()?;
        let held = state.held();
        Ok(MultipartUpload {
            home: self.clone(),
            states,
            user: user.to_owned(),
            path: path.clone(),
            key,
            prefix_md5: Md5Digest::from_hasher(hasher.clone()),
            hasher,
            held,
            state,
            pending: Vec::new(),
            announced,
        })
    }

    /// Starts a new multipart upload, with the announced MD5 as metadata.
    async fn create(
        &self,
        path: &VirtualPath,
        key: &Path,
        size: u64,
        announced: Option<Md5Digest>,
    ) -> Result<UploadState> {
        let id = self
            .bucket
            .s3
            .create_multipart_opts(key, PutMultipartOptions::from(md5_attributes(announced)))
            .await
            .map_err(store_error(path))?;
        let mut state = UploadState::new(path, size, id, PART_SIZE);
        state.expected_md5 = announced.map(|m| m.to_string());
        Ok(state)
    }

    /// Aborts a saved upload and forgets it; a failure is only logged, since the store
    /// drops incomplete uploads by its own lifecycle rules too.
    pub(super) async fn abort_saved(
        &self,
        states: &dyn UploadStateStore,
        user: &str,
        path: &VirtualPath,
        state: &UploadState,
    ) {
        if let Ok(key) = self.keys.object(path)
            && let Err(e) = self.bucket.s3.abort_multipart(&key, &state.upload_id).await
        {
            tracing::warn!(user, path = %path, error = %e, "could not abort a multipart upload");
        }
        if let Err(e) = states.remove(user, path, state.size) {
            tracing::warn!(user, path = %path, error = %e, "could not forget an upload's state");
        }
    }
}

fn md5_attributes(md5: Option<Md5Digest>) -> Attributes {
    let mut attributes = Attributes::new();
    if let Some(md5) = md5 {
        attributes.insert(
            Attribute::Metadata(MD5_METADATA.into()),
            AttributeValue::from(md5.to_string()),
        );
    }
    attributes
}

impl MultipartUpload {
    /// Bytes the store held from an earlier attempt when this upload began: a whole
    /// number of parts.
    pub fn held(&self) -> u64 {
        self.held
    }

    /// The MD5 of those bytes, for the client to compare with its own prefix.
    pub fn prefix_md5(&self) -> Md5Digest {
        self.prefix_md5
    }

    pub fn size(&self) -> u64 {
        self.state.size
    }

    pub fn path(&self) -> &VirtualPath {
        &self.path
    }

    /// Bytes received so far, held ones included.
    pub fn written(&self) -> u64 {
        self.state.held() + self.pending.len() as u64
    }

    /// Where the client's data starts: what the store holds (resume), or 0 (start over,
    /// aborting the parts held). Anything else is [`StorageError::BadOffset`].
    pub async fn start_from(&mut self, start: u64) -> Result<()> {
        if start == self.written() {
            return Ok(());
        }
        if start != 0 {
            return Err(StorageError::BadOffset {
                path: self.path.clone(),
                offset: start,
                held: self.written(),
            });
        }
        let old = self.state.clone();
        self.home
            .abort_saved(self.states.as_ref(), &self.user, &self.path, &old)
            .await;
        self.state = self
            .home
            .create(&self.path, &self.key, old.size, self.announced)
            .await?;
        self.states.save(&self.user, &self.state)?;
        self.hasher = Md5::new();
        self.pending.clear();
        Ok(())
    }

    /// Takes `data`, sending each part as it fills and saving the state after it. More
    /// than the announced size in all is refused.
    pub async fn write(&mut self, mut data: &[u8]) -> Result<()> {
        let end = self.written().saturating_add(data.len() as u64);
        if end > self.state.size {
            return Err(StorageError::SizeMismatch {
                path: self.path.clone(),
                size: self.state.size,
                received: end,
            });
        }
        let part = PART_SIZE as usize;
        while !data.is_empty() {
            let take = (part - self.pending.len()).min(data.len());
            self.pending.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.pending.len() == part {
                self.send_part().await?;
            }
        }
        Ok(())
    }

    /// Sends the pending bytes as the next part, then saves the state with it.
    async fn send_part(&mut self) -> Result<()> {
        let bytes = std::mem::take(&mut self.pending);
        let mut hasher = self.hasher.clone();
        hasher.update(&bytes);
        let index = self.state.parts.len();
        let sent = self
            .home
            .bucket
            .s3
            .put_part(
                &self.key,
                &self.state.upload_id,
                index,
                PutPayload::from(bytes.clone()),
            )
            .await;
        let part = match sent {
            Ok(part) => part,
            Err(e) => {
                // Kept, so that a retry of this write sends them again.
                self.pending = bytes;
                return Err(self.part_failed(e).await);
            }
        };
        self.state.add_part(part.content_id, &hasher);
        self.hasher = hasher;
        self.states.save(&self.user, &self.state)
    }

    /// A part the store refused. An upload it no longer knows (aborted, or expired by
    /// its lifecycle rules) can never complete: its state is forgotten, so the next
    /// attempt starts afresh.
    async fn part_failed(&self, err: object_store::Error) -> StorageError {
        if matches!(err, object_store::Error::NotFound { .. }) {
            let _ = self.states.remove(&self.user, &self.path, self.state.size);
            return StorageError::Io {
                path: self.path.clone(),
                source: std::io::Error::other(
                    "the object store no longer has this upload; send the file again",
                ),
            };
        }
        classify(&self.path, err)
    }

    /// Sends the last part, checks the MD5 of the whole file against `expected`, and only
    /// then completes the upload, which makes the file appear under its key. On a
    /// mismatch the upload is aborted and nothing is published. Returns the MD5.
    pub async fn finish(mut self, expected: Option<Md5Digest>) -> Result<Md5Digest> {
        if self.written() != self.state.size {
            return Err(StorageError::SizeMismatch {
                path: self.path.clone(),
                size: self.state.size,
                received: self.written(),
            });
        }
        if self.state.size == 0 {
            return self.finish_empty(expected).await;
        }
        if !self.pending.is_empty() {
            self.send_part().await?;
        }
        let actual = Md5Digest::from_hasher(self.hasher.clone());
        if let Some(expected) = expected
            && actual != expected
        {
            let path = self.path.clone();
            self.abandon().await?;
            return Err(StorageError::Checksum {
                path,
                expected,
                actual,
            });
        }
        let parts = self
            .state
            .parts
            .iter()
            .map(|etag| PartId {
                content_id: etag.clone(),
            })
            .collect();
        self.home
            .bucket
            .s3
            .complete_multipart(&self.key, &self.state.upload_id, parts)
            .await
            .map_err(store_error(&self.path))?;
        self.states
            .remove(&self.user, &self.path, self.state.size)?;
        Ok(actual)
    }

    /// An empty file has no part to send: it is one PUT, after the multipart upload
    /// begun for it is aborted.
    async fn finish_empty(self, expected: Option<Md5Digest>) -> Result<Md5Digest> {
        let actual = Md5Digest::empty();
        let checked = expected.is_none_or(|e| e == actual);
        let state = self.state.clone();
        self.home
            .abort_saved(self.states.as_ref(), &self.user, &self.path, &state)
            .await;
        if let Some(expected) = expected.filter(|_| !checked) {
            return Err(StorageError::Checksum {
                path: self.path,
                expected,
                actual,
            });
        }
        let options = PutOptions::from(md5_attributes(Some(actual)));
        self.home
            .bucket
            .s3
            .put_opts(&self.key, PutPayload::new(), options)
            .await
            .map_err(store_error(&self.path))?;
        Ok(actual)
    }

    /// Aborts the upload and forgets it: for an upload that can never resume.
    pub async fn abandon(self) -> Result<()> {
        let result = self
            .home
            .bucket
            .s3
            .abort_multipart(&self.key, &self.state.upload_id)
            .await
            .map_err(store_error(&self.path));
        self.states
            .remove(&self.user, &self.path, self.state.size)?;
        result
    }
}

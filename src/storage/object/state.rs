//! What a multipart upload to the object store needs to resume after a disconnect or a
//! restart of the server: the upload id, the ETag of each part sent, and the running
//! MD5 at the last part boundary.
//!
//! Neither half can be asked of the store later. S3's ListParts is paged and optional
//! in S3-compatible servers (some return no ETags), and the bytes of an incomplete
//! multipart upload cannot be read back to hash them again. So both are kept here,
//! saved after every part. [`UploadStateStore`] is the seam: [`DiskStateStore`] keeps
//! one small file per upload on local disk, written atomically; a database can keep the
//! same records for a cluster of servers.

use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use md5::Md5;
use md5::digest::common::hazmat::{SerializableState, SerializedState};
use serde::{Deserialize, Serialize};

use crate::protocol::Md5Digest;
use crate::storage::{Result, StorageError, VirtualPath};

/// One multipart upload in progress: enough to send the next part and to complete it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadState {
    /// The user's path the upload will publish, as they named it.
    pub path: String,
    /// The announced size of the whole file.
    pub size: u64,
    /// The store's id for the multipart upload.
    pub upload_id: String,
    /// Bytes in every part but the last.
    pub part_size: u64,
    /// The ETags of parts 1..N, in order: all the parts sent so far.
    pub parts: Vec<String>,
    /// The MD5 state after the first `parts.len() * part_size` bytes, hex.
    pub md5_state: String,
    /// The MD5 of the whole file, where the client announced it and it was set as the
    /// object's metadata when the upload was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_md5: Option<String>,
    /// When a part was last added, in Unix seconds: stale uploads are aborted by age.
    pub updated: u64,
}

impl UploadState {
    /// A fresh upload with no parts yet.
    pub fn new(path: &VirtualPath, size: u64, upload_id: String, part_size: u64) -> UploadState {
        UploadState {
            path: path.as_str().to_owned(),
            size,
            upload_id,
            part_size,
            parts: Vec::new(),
            md5_state: encode_md5(&Md5::default()),
            expected_md5: None,
            updated: now(),
        }
    }

    /// The bytes the store holds: the parts sent, up to the announced size.
    pub fn held(&self) -> u64 {
        (self.parts.len() as u64)
            .saturating_mul(self.part_size)
            .min(self.size)
    }

    /// Records one more part, sent with the MD5 of all bytes so far being `hasher`.
    pub fn add_part(&mut self, etag: String, hasher: &Md5) {
        self.parts.push(etag);
        self.md5_state = encode_md5(hasher);
        self.updated = now();
    }

    /// The running MD5 at [`UploadState::held`] bytes, to go on hashing from there.
    pub fn hasher(&self) -> Result<Md5> {
        decode_md5(&self.md5_state).ok_or(StorageError::Invalid {
            path: VirtualPath::root(),
            reason: "the saved state of an upload is damaged",
        })
    }

    /// The MD5 of the held bytes, for the client's prefix check.
    pub fn prefix_md5(&self) -> Result<Md5Digest> {
        Ok(Md5Digest::from_hasher(self.hasher()?))
    }
}

/// Saves an MD5's internal state as hex: the four state words, the block count and the
/// unprocessed tail, as `md-5` serialises them.
pub fn encode_md5(hasher: &Md5) -> String {
    hasher
        .serialize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The MD5 that [`encode_md5`] saved; `None` for anything it could not have written.
pub fn decode_md5(hex: &str) -> Option<Md5> {
    if !hex.is_ascii() || !hex.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
        .collect::<Option<_>>()?;
    let state = SerializedState::<Md5>::try_from(bytes.as_slice()).ok()?;
    Md5::deserialize(&state).ok()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Where the states of uploads in progress are kept, per user and per (path, size): an
/// upload of the same path at another size is another upload.
pub trait UploadStateStore: std::fmt::Debug + Send + Sync {
    /// The state of `user`'s upload of `path` at `size`, if one was saved.
    fn load(&self, user: &str, path: &VirtualPath, size: u64) -> Result<Option<UploadState>>;
    /// Saves `state`, replacing what was saved for its path and size; durable when this
    /// returns.
    fn save(&self, user: &str, state: &UploadState) -> Result<()>;
    /// Forgets the upload of `path` at `size`; nothing saved is not an error.
    fn remove(&self, user: &str, path: &VirtualPath, size: u64) -> Result<()>;
    /// All of `user`'s saved uploads.
    fn list(&self, user: &str) -> Result<Vec<UploadState>>;
}

/// [`UploadStateStore`] on local disk: `<dir>/<user>/<md5 of path>-<size>.toml`, each
/// written to a temporary file, flushed, and renamed into place.
#[derive(Debug, Clone)]
pub struct DiskStateStore {
    dir: PathBuf,
}

impl DiskStateStore {
    /// Keeps states under `dir`, creating it (mode 0700) if needed.
    pub fn open(dir: &Path) -> Result<DiskStateStore> {
        create_private_dir(dir).map_err(state_error)?;
        Ok(DiskStateStore {
            dir: dir.to_owned(),
        })
    }

    fn user_dir(&self, user: &str) -> Result<PathBuf> {
        if user.is_empty() || user.starts_with('.') || user.contains(['/', '\0']) {
            return Err(StorageError::BadPath {
                reason: "not a valid user name",
            });
        }
        Ok(self.dir.join(user))
    }

    fn file(&self, user: &str, path: &str, size: u64) -> Result<PathBuf> {
        let name = format!("{}-{size}.toml", Md5Digest::of(path.as_bytes()));
        Ok(self.user_dir(user)?.join(name))
    }
}

impl UploadStateStore for DiskStateStore {
    fn load(&self, user: &str, path: &VirtualPath, size: u64) -> Result<Option<UploadState>> {
        let file = self.file(user, path.as_str(), size)?;
        let text = match std::fs::read_to_string(&file) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(state_error(e)),
        };
        let state: UploadState = toml::from_str(&text).map_err(|_| damaged())?;
        // A file under another path's name is not this upload's.
        if state.path != path.as_str() || state.size != size {
            return Err(damaged());
        }
        Ok(Some(state))
    }

    fn save(&self, user: &str, state: &UploadState) -> Result<()> {
        let dir = self.user_dir(user)?;
        create_private_dir(&dir).map_err(state_error)?;
        let file = self.file(user, &state.path, state.size)?;
        let text = toml::to_string(state).map_err(|_| damaged())?;
        let tmp = file.with_extension("toml.tmp");
        let written = (|| {
            let mut out = std::fs::File::create(&tmp)?;
            out.write_all(text.as_bytes())?;
            out.sync_all()?;
            std::fs::rename(&tmp, &file)?;
            std::fs::File::open(&dir)?.sync_all()
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written.map_err(state_error)
    }

    fn remove(&self, user: &str, path: &VirtualPath, size: u64) -> Result<()> {
        match std::fs::remove_file(self.file(user, path.as_str(), size)?) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(state_error(e)),
        }
    }

    fn list(&self, user: &str) -> Result<Vec<UploadState>> {
        let dir = self.user_dir(user)?;
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(state_error(e)),
        };
        let mut states = Vec::new();
        for entry in entries {
            let entry = entry.map_err(state_error)?;
            if entry.path().extension().is_none_or(|e| e != "toml") {
                continue;
            }
            match std::fs::read_to_string(entry.path()) {
                Ok(text) => match toml::from_str::<UploadState>(&text) {
                    Ok(state) => states.push(state),
                    Err(_) => tracing::warn!(
                        user,
                        file = %entry.path().display(),
                        "ignoring a damaged upload state"
                    ),
                },
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(state_error(e)),
            }
        }
        Ok(states)
    }
}

fn create_private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// The state store is the server's, not the user's: its errors name no user path.
fn state_error(err: io::Error) -> StorageError {
    StorageError::Io {
        path: VirtualPath::root(),
        source: err,
    }
}

fn damaged() -> StorageError {
    StorageError::Invalid {
        path: VirtualPath::root(),
        reason: "the saved state of an upload is damaged",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use md5::Digest as _;

    fn vp(s: &str) -> VirtualPath {
        VirtualPath::resolve(&VirtualPath::root(), s).unwrap()
    }

    #[test]
    fn the_md5_state_survives_a_round_trip() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        for cut in [0, 1, 63, 64, 65, 8192, 99_999] {
            let mut hasher = Md5::new();
            hasher.update(&data[..cut]);
            let mut resumed = decode_md5(&encode_md5(&hasher)).unwrap();
            resumed.update(&data[cut..]);
            assert_eq!(
                Md5Digest::from_hasher(resumed),
                Md5Digest::of(&data),
                "cut at {cut}"
            );
        }
        for bad in ["", "zz", "abc", "00", &"0".repeat(200)] {
            assert!(decode_md5(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn states_are_saved_loaded_listed_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskStateStore::open(&dir.path().join("uploads")).unwrap();
        let path = vp("/big.bin");
        assert_eq!(store.load("alice", &path, 100).unwrap(), None);

        let mut state = UploadState::new(&path, 100, "id-1".into(), 40);
        assert_eq!(state.held(), 0);
        assert_eq!(state.prefix_md5().unwrap(), Md5Digest::empty());
        let mut hasher = Md5::new();
        hasher.update([7u8; 40]);
        state.add_part("\"etag-1\"".into(), &hasher);
        state.expected_md5 = Some("0123".into());
        store.save("alice", &state).unwrap();
        assert_eq!(state.held(), 40);
        assert_eq!(state.prefix_md5().unwrap(), Md5Digest::of(&[7u8; 40]));

        let loaded = store.load("alice", &path, 100).unwrap().unwrap();
        assert_eq!(loaded, state);
        // Another size, another user: another upload.
        assert_eq!(store.load("alice", &path, 101).unwrap(), None);
        assert_eq!(store.load("bob", &path, 100).unwrap(), None);
        assert_eq!(store.list("alice").unwrap(), vec![state.clone()]);
        assert!(store.list("bob").unwrap().is_empty());

        // The last part is shorter: held stops at the size.
        state.add_part("\"etag-2\"".into(), &hasher);
        state.add_part("\"etag-3\"".into(), &hasher);
        assert_eq!(state.held(), 100);

        store.remove("alice", &path, 100).unwrap();
        store.remove("alice", &path, 100).unwrap();
        assert_eq!(store.load("alice", &path, 100).unwrap(), None);
        assert!(bad_user(&store, ""));
        assert!(bad_user(&store, "../x"));
        assert!(bad_user(&store, ".partials"));
    }

    fn bad_user(store: &DiskStateStore, user: &str) -> bool {
        matches!(
            store.load(user, &vp("/x"), 1),
            Err(StorageError::BadPath { .. })
        )
    }

    #[test]
    fn a_damaged_state_is_refused_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskStateStore::open(dir.path()).unwrap();
        let path = vp("/f");
        let state = UploadState::new(&path, 10, "id".into(), 8);
        store.save("alice", &state).unwrap();
        let file = store.file("alice", "/f", 10).unwrap();
        std::fs::write(&file, "not toml [").unwrap();
        assert!(matches!(
            store.load("alice", &path, 10),
            Err(StorageError::Invalid { .. })
        ));
        // A state saved for another path under this one's name.
        let other = UploadState::new(&vp("/g"), 10, "id".into(), 8);
        std::fs::write(&file, toml::to_string(&other).unwrap()).unwrap();
        assert!(store.load("alice", &path, 10).is_err());
    }
}

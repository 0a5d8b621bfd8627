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
    pub fn new(path: &VirtualPath, upload_id: String, part_size: u64) -> UploadState {
        UploadState {
            path: path.as_str().to_owned(),
            upload_id,
            part_size,
            parts: Vec::new(),
            md5_state: encode_md5(&Md5::default()),
            expected_md5: None,
            updated: now(),
        }
    }

    /// The bytes the store holds: the full parts sent (the last, shorter part is sent
    /// only when the upload completes).
    pub fn held(&self) -> u64 {
        (self.parts.len() as u64).saturating_mul(self.part_size)
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

/// Where the states of uploads in progress are kept, per user and per partial-upload
/// name (which the home derives from the path and the size: another size is another
/// upload).
pub trait UploadStateStore: std::fmt::Debug + Send + Sync {
    /// The state saved as `name` for `user`, if any.
    fn load(&self, user: &str, name: &str) -> Result<Option<UploadState>>;
    /// Saves `state` as `name`, replacing what was saved; durable when this returns.
    fn save(&self, user: &str, name: &str, state: &UploadState) -> Result<()>;
    /// Forgets `name`; whether there was something to forget.
    fn remove(&self, user: &str, name: &str) -> Result<bool>;
    /// All of `user`'s saved uploads, with their names.
    fn list(&self, user: &str) -> Result<Vec<(String, UploadState)>>;
}

/// [`UploadStateStore`] on local disk: `<dir>/<user>/<name>.toml`, each written to a
/// temporary file, flushed, and renamed into place.
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
        if !is_plain_name(user) {
            return Err(StorageError::BadPath {
                reason: "not a valid user name",
            });
        }
        Ok(self.dir.join(user))
    }

    fn file(&self, user: &str, name: &str) -> Result<PathBuf> {
        if !is_plain_name(name) {
            return Err(StorageError::BadPath {
                reason: "not a valid name for an upload",
            });
        }
        Ok(self.user_dir(user)?.join(format!("{name}.toml")))
    }
}

/// One file name, which cannot lead anywhere else.
fn is_plain_name(name: &str) -> bool {
    !name.is_empty() && !name.starts_with('.') && !name.contains(['/', '\0'])
}

impl UploadStateStore for DiskStateStore {
    fn load(&self, user: &str, name: &str) -> Result<Option<UploadState>> {
        let file = self.file(user, name)?;
        let text = match std::fs::read_to_string(&file) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(state_error(e)),
        };
        toml::from_str(&text).map(Some).map_err(|_| damaged())
    }

    fn save(&self, user: &str, name: &str, state: &UploadState) -> Result<()> {
        let dir = self.user_dir(user)?;
        create_private_dir(&dir).map_err(state_error)?;
        let file = self.file(user, name)?;
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

    fn remove(&self, user: &str, name: &str) -> Result<bool> {
        match std::fs::remove_file(self.file(user, name)?) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(state_error(e)),
        }
    }

    fn list(&self, user: &str) -> Result<Vec<(String, UploadState)>> {
        let dir = self.user_dir(user)?;
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(state_error(e)),
        };
        let mut states = Vec::new();
        for entry in entries {
            let entry = entry.map_err(state_error)?;
            let file_name = entry.file_name();
            let Some(name) = file_name.to_str().and_then(|n| n.strip_suffix(".toml")) else {
                continue;
            };
            match std::fs::read_to_string(entry.path()) {
                Ok(text) => match toml::from_str::<UploadState>(&text) {
                    Ok(state) => states.push((name.to_owned(), state)),
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
        assert_eq!(store.load("alice", "abc-100").unwrap(), None);

        let mut state = UploadState::new(&path, "id-1".into(), 40);
        assert_eq!(state.held(), 0);
        assert_eq!(state.prefix_md5().unwrap(), Md5Digest::empty());
        let mut hasher = Md5::new();
        hasher.update([7u8; 40]);
        state.add_part("\"etag-1\"".into(), &hasher);
        state.expected_md5 = Some("0123".into());
        store.save("alice", "abc-100", &state).unwrap();
        assert_eq!(state.held(), 40);
        assert_eq!(state.prefix_md5().unwrap(), Md5Digest::of(&[7u8; 40]));

        let loaded = store.load("alice", "abc-100").unwrap().unwrap();
        assert_eq!(loaded, state);
        // Another name, another user: another upload.
        assert_eq!(store.load("alice", "abc-101").unwrap(), None);
        assert_eq!(store.load("bob", "abc-100").unwrap(), None);
        assert_eq!(
            store.list("alice").unwrap(),
            vec![("abc-100".to_owned(), state.clone())]
        );
        assert!(store.list("bob").unwrap().is_empty());

        assert!(store.remove("alice", "abc-100").unwrap());
        assert!(!store.remove("alice", "abc-100").unwrap());
        assert_eq!(store.load("alice", "abc-100").unwrap(), None);
        for (user, name) in [
            ("", "n"),
            ("../x", "n"),
            (".partials", "n"),
            ("a", "../n"),
            ("a", ""),
            ("a", ".n"),
        ] {
            assert!(
                matches!(store.load(user, name), Err(StorageError::BadPath { .. })),
                "{user:?} {name:?}"
            );
        }
    }

    #[test]
    fn a_damaged_state_is_refused_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskStateStore::open(dir.path()).unwrap();
        let state = UploadState::new(&vp("/f"), "id".into(), 8);
        store.save("alice", "f-10", &state).unwrap();
        std::fs::write(store.file("alice", "f-10").unwrap(), "not toml [").unwrap();
        assert!(matches!(
            store.load("alice", "f-10"),
            Err(StorageError::Invalid { .. })
        ));
        // Left out of a listing, with a warning.
        assert!(store.list("alice").unwrap().is_empty());
    }
}

//! [`WatchedUsersFile`]: the accounts a server runs with from `users.toml`, reloaded when
//! it changes. The first [`AccountStore`].
//!
//! A change is noticed by content, not by timestamps. Each check hashes the file and every
//! `authorized_keys_file` it names (they are small). That way the server catches editors
//! that write in place or by rename, two edits within one timestamp tick that keep the
//! length, a file replaced by an older copy, and a changed keys file.
//!
//! A file is loaded only once it holds still: it is read until two reads [`SETTLE`] apart
//! agree, and those very bytes are parsed. A file caught while being written in place
//! (truncated, then filled) could otherwise parse, minus some accounts, and end their
//! sessions. For the same reason an empty file is not loaded on reload. Reloads run one
//! at a time, so one that read the file earlier can never replace a newer one's result.
//!
//! A reload that fails to parse keeps the last good configuration, so a typo in an editor
//! never locks everyone out.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use sha2::{Digest, Sha256};
use toml_edit::Document;

use super::store::{AccountStore, StoreKind};
use super::users::{UsersConfig, UsersError};

/// One version of the accounts: a hash of `users.toml` and the keys files it names, as
/// they are on disk (a missing or unreadable file counts as a version too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version([u8; 32]);

/// How long a changed file must hold still before it is loaded.
pub const SETTLE: Duration = Duration::from_millis(200);

/// Reads of a file that keeps changing before the latest is loaded anyway (about 2 s).
const MAX_SETTLE_READS: usize = 10;

impl Version {
    /// Reads and hashes the files now.
    pub fn of(users_file: &Path) -> Version {
        read(users_file).0
    }
}

/// The version of the accounts now, with the text of `users.toml` it was made from.
fn read(users_file: &Path) -> (Version, io::Result<String>) {
    let mut hasher = Sha256::new();
    let bytes = hash_file(&mut hasher, users_file);
    let text = bytes.and_then(|bytes| {
        String::from_utf8(bytes).map_err(|err| io::Error::new(io::ErrorKind::InvalidData, err))
    });
    if let Ok(text) = &text {
        for keys_file in keys_files(text, users_file) {
            let _ = hash_file(&mut hasher, &keys_file);
        }
    }
    (Version(hasher.finalize().into()), text)
}

/// Reads until two reads [`SETTLE`] apart agree (at most [`MAX_SETTLE_READS`] times).
/// Blocking.
fn read_settled(users_file: &Path) -> (Version, io::Result<String>) {
    let mut last = read(users_file);
    for _ in 0..MAX_SETTLE_READS {
        std::thread::sleep(SETTLE);
        let now = read(users_file);
        if now.0 == last.0 {
            return now;
        }
        last = now;
    }
    // Still changing: load what is there. The next change is noticed as usual.
    last
}

/// Feeds a file's contents (or why it could not be read) into `hasher`, length first so
/// that no two sequences of files hash alike; returns the contents.
fn hash_file(hasher: &mut Sha256, path: &Path) -> io::Result<Vec<u8>> {
    let read = fs::read(path);
    match &read {
        Ok(bytes) => {
            hasher.update(b"F");
            hasher.update((bytes.len() as u64).to_le_bytes());
            hasher.update(bytes);
        }
        Err(err) => {
            let kind = format!("{:?}", err.kind());
            hasher.update(b"E");
            hasher.update((kind.len() as u64).to_le_bytes());
            hasher.update(kind.as_bytes());
        }
    }
    read
}

/// The `authorized_keys_file`s named in the text of a users file, found as the server
/// finds them: relative to its folder. Best effort: a file that does not parse names none.
fn keys_files(text: &str, users_file: &Path) -> Vec<PathBuf> {
    let Ok(doc) = Document::parse(text) else {
        return Vec::new();
    };
    let folder = users_file.parent().unwrap_or(Path::new(""));
    let Some(users) = doc.get("users").and_then(|u| u.as_table_like()) else {
        return Vec::new();
    };
    users
        .iter()
        .filter_map(|(_, account)| {
            let file = account.as_table_like()?.get("authorized_keys_file")?;
            Some(folder.join(file.as_str()?))
        })
        .collect()
}

/// `users.toml` and the keys files it names, watched for changes.
pub struct WatchedUsersFile {
    path: PathBuf,
    current: RwLock<Arc<UsersConfig>>,
    /// The version last loaded, or last tried and found broken.
    seen: Mutex<Version>,
    /// Held for a whole reload, so reloads (the watcher's, SIGHUP's) run one at a time.
    reloading: Mutex<()>,
}

impl WatchedUsersFile {
    pub fn load(path: &Path) -> Result<WatchedUsersFile, UsersError> {
        // Hashed before reading: if the file changes in between, the next check sees a
        // difference and reads it again.
        let seen = Version::of(path);
        let config = UsersConfig::load(path)?;
        for warning in config.warnings() {
            tracing::warn!(target: "rsftpd::admin", "{warning}");
        }
        Ok(WatchedUsersFile {
            path: path.to_owned(),
            current: RwLock::new(Arc::new(config)),
            seen: Mutex::new(seen),
            reloading: Mutex::new(()),
        })
    }

    /// The accounts file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The configuration in force now.
    pub fn current(&self) -> Arc<UsersConfig> {
        // A poisoned lock still holds a whole Arc; use it.
        Arc::clone(&self.current.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// The version on disk now, if it is not the one last loaded or tried. Blocking.
    pub fn changed_on_disk(&self) -> Option<Version> {
        let now = Version::of(&self.path);
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        (*seen != now).then_some(now)
    }

    /// Reads the file again, once it holds still (see the module docs). On success the new
    /// configuration is in force and returned with the old one; on failure the old one
    /// stays in force. Blocking: takes at least [`SETTLE`].
    pub fn reload(&self) -> Result<(Arc<UsersConfig>, Arc<UsersConfig>), UsersError> {
        let _one_at_a_time = self.reloading.lock().unwrap_or_else(|p| p.into_inner());
        let (version, text) = read_settled(&self.path);
        // Remember this version even if it fails, so a broken file is reported once,
        // not every second until someone fixes it.
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = version;
        let io_error = |source| UsersError::Io {
            path: self.path.clone(),
            source,
        };
        let text = text.map_err(io_error)?;
        if text.is_empty() {
            return Err(io_error(io::Error::new(
                io::ErrorKind::InvalidData,
                "the file is empty (to remove every account, leave a comment in it)",
            )));
        }
        let config = Arc::new(UsersConfig::parse(&text, &self.path)?);
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        let old = std::mem::replace(&mut *current, Arc::clone(&config));
        Ok((old, config))
    }
}

impl AccountStore for WatchedUsersFile {
    fn origin(&self) -> String {
        self.path.display().to_string()
    }

    fn kind(&self) -> StoreKind {
        StoreKind::UsersFile
    }

    fn current(&self) -> Arc<UsersConfig> {
        WatchedUsersFile::current(self)
    }

    fn changed(&self) -> bool {
        self.changed_on_disk().is_some()
    }

    fn reload(&self) -> Result<(Arc<UsersConfig>, Arc<UsersConfig>), UsersError> {
        WatchedUsersFile::reload(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_change_of_content_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.toml");
        fs::write(&path, "[users.a]\nquota = \"1GiB\"\n").unwrap();
        let accounts = WatchedUsersFile::load(&path).unwrap();
        assert_eq!(accounts.changed_on_disk(), None);

        // Same length, same second: only the content differs.
        fs::write(&path, "[users.b]\nquota = \"1GiB\"\n").unwrap();
        let changed = accounts.changed_on_disk().expect("a change");
        assert_eq!(accounts.changed_on_disk(), Some(changed));
        let (old, new) = accounts.reload().unwrap();
        assert!(old.get("a").is_some() && new.get("b").is_some());
        assert_eq!(accounts.changed_on_disk(), None);

        // Replaced by rename, as many editors do.
        let temp = dir.path().join("users.toml.new");
        fs::write(&temp, "[users.c]\nquota = \"1GiB\"\n").unwrap();
        fs::rename(&temp, &path).unwrap();
        assert!(accounts.changed_on_disk().is_some());
        accounts.reload().unwrap();

        // Gone for a moment: a change, which fails to load and keeps the accounts.
        fs::remove_file(&path).unwrap();
        assert!(accounts.changed_on_disk().is_some());
        assert!(accounts.reload().is_err());
        assert!(accounts.current().get("c").is_some());
        assert_eq!(accounts.changed_on_disk(), None, "reported once");
    }

    #[test]
    fn a_changed_keys_file_is_a_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.toml");
        fs::write(
            &path,
            "[users.a]\nquota = \"1GiB\"\nauthorized_keys_file = \"a.keys\"\n",
        )
        .unwrap();
        fs::write(dir.path().join("a.keys"), "# none yet\n").unwrap();
        let accounts = WatchedUsersFile::load(&path).unwrap();
        assert_eq!(accounts.changed_on_disk(), None);
        fs::write(dir.path().join("a.keys"), "# none yet!\n").unwrap();
        assert!(accounts.changed_on_disk().is_some());
    }

    #[test]
    fn an_empty_file_is_not_loaded_but_a_comment_is() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.toml");
        fs::write(&path, "[users.a]\nquota = \"1GiB\"\n").unwrap();
        let accounts = WatchedUsersFile::load(&path).unwrap();
        fs::write(&path, "").unwrap();
        let err = accounts.reload().unwrap_err();
        let UsersError::Io { source, .. } = &err else {
            panic!("{err:?}")
        };
        assert!(
            source.to_string().starts_with("the file is empty"),
            "{source}"
        );
        assert_eq!(accounts.current().len(), 1);
        fs::write(&path, "# nobody for now\n").unwrap();
        let (_, new) = accounts.reload().unwrap();
        assert!(new.is_empty());
    }

    #[test]
    fn a_file_is_loaded_once_it_holds_still() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.toml");
        fs::write(&path, "[users.a]\nquota = \"1GiB\"\n").unwrap();
        let accounts = WatchedUsersFile::load(&path).unwrap();
        // A writer that goes on for a while: the reload waits and loads its last word.
        let writer = {
            let path = path.clone();
            std::thread::spawn(move || {
                for i in 0..8 {
                    fs::write(&path, format!("[users.w{i}]\nquota = \"1GiB\"\n")).unwrap();
                    std::thread::sleep(SETTLE / 4);
                }
            })
        };
        std::thread::sleep(SETTLE / 4);
        let (_, new) = accounts.reload().unwrap();
        writer.join().unwrap();
        assert!(new.get("w7").is_some(), "{new:?}");
        assert_eq!(accounts.changed_on_disk(), None);
    }

    #[test]
    fn a_broken_file_keeps_the_last_good_accounts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.toml");
        fs::write(&path, "[users.a]\nquota = \"1GiB\"\n").unwrap();
        let accounts = WatchedUsersFile::load(&path).unwrap();
        fs::write(&path, "[users.a]\nquota = \"12 parsecs\"\n").unwrap();
        let err = accounts.reload().unwrap_err();
        assert!(err.to_string().contains("users.toml:2"), "{err}");
        assert_eq!(accounts.current().get("a").unwrap().quota, 1 << 30);
    }
}

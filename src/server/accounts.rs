//! The accounts the server runs with: `users.toml`, reloaded when it changes.
//!
//! A reload that fails to parse keeps the last good configuration, so a typo in an editor
//! never locks everyone out.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use crate::auth::{UsersConfig, UsersError};

/// What identifies one version of the file on disk, cheaply.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some(Stamp {
        modified: meta.modified().ok(),
        len: meta.len(),
        inode: meta.ino(),
    })
}

pub struct Accounts {
    path: PathBuf,
    current: RwLock<Arc<UsersConfig>>,
    seen: Mutex<Option<Stamp>>,
}

impl Accounts {
    pub fn load(path: &Path) -> Result<Accounts, UsersError> {
        let seen = stamp(path);
        let config = UsersConfig::load(path)?;
        Ok(Accounts {
            path: path.to_owned(),
            current: RwLock::new(Arc::new(config)),
            seen: Mutex::new(seen),
        })
    }

    /// The configuration in force now.
    pub fn current(&self) -> Arc<UsersConfig> {
        // A poisoned lock still holds a whole Arc; use it.
        Arc::clone(&self.current.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Whether the file changed since it was last read.
    pub fn changed_on_disk(&self) -> bool {
        let now = stamp(&self.path);
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        *seen != now
    }

    /// Reads the file again. On success the new configuration is in force and returned
    /// with the old one; on failure the old one stays in force.
    pub fn reload(&self) -> Result<(Arc<UsersConfig>, Arc<UsersConfig>), UsersError> {
        let before = stamp(&self.path);
        // Remember this version even if it fails, so a broken file is reported once,
        // not every second until someone fixes it.
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = before;
        let config = Arc::new(UsersConfig::load(&self.path)?);
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        let old = std::mem::replace(&mut *current, Arc::clone(&config));
        Ok((old, config))
    }
}

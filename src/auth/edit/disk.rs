//! The file side of an edit: the lock next to `users.toml`, reading it through its
//! links, and replacing it atomically with its mode and owner kept.

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::EditError;

/// The lock file of a users file: `users.toml.lock` next to it.
pub fn users_lock_path(users_file: &Path) -> PathBuf {
    let mut name = users_file.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

pub(super) fn io_error(path: &Path) -> impl FnOnce(io::Error) -> EditError + '_ {
    move |source| EditError::Io {
        path: path.to_owned(),
        source,
    }
}

/// `path` with symbolic links resolved, so that saving replaces the file a link points
/// to rather than the link. A missing file resolves through its folder.
pub(super) fn real_path(path: &Path) -> Result<PathBuf, EditError> {
    match fs::canonicalize(path) {
        Ok(real) => Ok(real),
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            let name = path.file_name().ok_or_else(|| EditError::Io {
                path: path.to_owned(),
                source: io::Error::new(io::ErrorKind::InvalidInput, "not a file name"),
            })?;
            let folder = match path.parent() {
                Some(folder) if !folder.as_os_str().is_empty() => folder,
                _ => Path::new("."),
            };
            Ok(fs::canonicalize(folder)
                .map_err(io_error(folder))?
                .join(name))
        }
        Err(err) => Err(io_error(path)(err)),
    }
}

/// The file's text, or `None` if there is no file.
pub(super) fn read_text(path: &Path, real: &Path) -> Result<Option<String>, EditError> {
    match fs::read_to_string(real) {
        Ok(text) => Ok(Some(text)),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(io_error(path)(err)),
    }
}

/// Opens (creating, mode 0600) and exclusively locks `path`, polling until `wait` ends.
pub(super) fn take_lock(path: &Path, wait: Duration) -> Result<File, EditError> {
    let deadline = Instant::now() + wait;
    loop {
        let file = open_lock_file(path)?;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(fs::TryLockError::WouldBlock) => return Err(locked(path)),
                Err(fs::TryLockError::Error(err)) => return Err(io_error(path)(err)),
            }
        }
        // An editor that removes its lock file (an export's, once written) does so while
        // holding it, so a lock got on that file excludes nobody: whoever comes next
        // creates a new one. Only the file still at `path` is the lock.
        if is_at(&file, path) {
            return Ok(file);
        }
        if Instant::now() >= deadline {
            return Err(locked(path));
        }
    }
}

fn open_lock_file(path: &Path) -> Result<File, EditError> {
    fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .or_else(|err| match err.kind() {
            // Another account made it; a lock needs no write access.
            io::ErrorKind::PermissionDenied => File::open(path),
            _ => Err(err),
        })
        .map_err(io_error(path))
}

/// Whether `file` is the file at `path` now.
fn is_at(file: &File, path: &Path) -> bool {
    match (file.metadata(), fs::metadata(path)) {
        (Ok(open), Ok(named)) => open.dev() == named.dev() && open.ino() == named.ino(),
        _ => false,
    }
}

fn locked(path: &Path) -> EditError {
    EditError::Locked {
        path: path.to_owned(),
    }
}

/// Replaces `path` with `bytes` so that readers see the old file or the new one, never
/// a mix, and a crash leaves one of the two.
pub(super) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), EditError> {
    let folder = path.parent().unwrap_or(Path::new("."));
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(path.file_name().unwrap_or_default());
    temp_name.push(".tmp");
    let temp = folder.join(temp_name);
    let old = match fs::metadata(path) {
        Ok(meta) => Some(meta),
        Err(err) if err.kind() == io::ErrorKind::NotFound => None,
        Err(err) => return Err(io_error(path)(err)),
    };
    // Only one editor holds the lock, so a temporary file left here is from one that
    // crashed. Remove it rather than open it, which could follow a planted link.
    match fs::remove_file(&temp) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(io_error(&temp)(err)),
        _ => {}
    }
    let written = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)?;
        file.write_all(bytes)?;
        // The server may run as another account than the admin (root, say): the file
        // keeps its owner, or a new one gets its folder's, so the server can still read it.
        let owner = match &old {
            Some(old) => (old.uid(), old.gid()),
            None => {
                let folder = fs::metadata(folder)?;
                (folder.uid(), folder.gid())
            }
        };
        let ours = file.metadata()?;
        if owner != (ours.uid(), ours.gid()) {
            std::os::unix::fs::fchown(&file, Some(owner.0), Some(owner.1))?;
        }
        if let Some(old) = &old {
            file.set_permissions(fs::Permissions::from_mode(old.mode() & 0o7777))?;
        }
        file.sync_all()
    })();
    if let Err(err) = written.and_then(|()| fs::rename(&temp, path)) {
        let _ = fs::remove_file(&temp);
        return Err(io_error(path)(err));
    }
    // Make the rename itself durable.
    File::open(folder)
        .and_then(|dir| dir.sync_all())
        .map_err(io_error(folder))
}

//! What the server checks about its own privileges before it starts: that its secrets
//! (the host key, and `users.toml` with its password hashes) are private to their owner,
//! and whether it runs as root over homes that root owns.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tracing::warn;

use super::error::ServerError;

/// Refuses a file that its group or others may read, write or execute, as OpenSSH does
/// for host keys. A symbolic link is followed: what counts is the file that is read. A
/// missing file passes, because the server creates it with mode 0600.
pub fn check_private(path: &Path) -> Result<(), ServerError> {
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(ServerError::Io {
                path: path.to_owned(),
                source,
            });
        }
    };
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 == 0 {
        return Ok(());
    }
    let target = std::fs::canonicalize(path)
        .ok()
        .filter(|real| real != path && path.is_symlink());
    Err(ServerError::OpenPermissions {
        path: path.to_owned(),
        target,
        mode,
    })
}

/// [`check_private`] on each of `secrets`. With `allow_open`, an open file is logged as a
/// warning instead of refused.
pub fn check_secrets(secrets: &[PathBuf], allow_open: bool) -> Result<(), ServerError> {
    for secret in secrets {
        match check_private(secret) {
            Err(ServerError::OpenPermissions { path, mode, .. }) if allow_open => {
                warn!(
                    path = %path.display(),
                    mode = %format_args!("{mode:04o}"),
                    "group or others may read or write this secret; starting anyway, as \
                     --allow-open-permissions asks (fix: chmod 600 FILE)"
                );
            }
            checked => checked?,
        }
    }
    Ok(())
}

/// Warns when the process runs as root and some of the `users`' homes in `storage`
/// belong to root: then a flaw in the server, or in a library it uses, reaches every home
/// on the machine and the rest of it. Run as its own user instead, as the systemd unit
/// in docs/OPERATIONS.md does.
pub fn warn_if_root_owns_homes<'a>(storage: &Path, users: impl IntoIterator<Item = &'a str>) {
    if !rustix::process::geteuid().is_root() {
        return;
    }
    let root_owned: Vec<PathBuf> = users
        .into_iter()
        .map(|user| storage.join(user))
        .filter(|home| std::fs::metadata(home).is_ok_and(|meta| meta.uid() == 0))
        .collect();
    let Some(first) = root_owned.first() else {
        return;
    };
    warn!(
        homes = root_owned.len(),
        example = %first.display(),
        "running as root with homes owned by root: a compromise of this process reaches \
         every home; run rsftpd as its own user, as in \"Running under systemd\" in \
         docs/OPERATIONS.md"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_with_mode(dir: &Path, name: &str, mode: u32) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, b"secret").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn only_owner_access_passes() {
        let dir = tempfile::tempdir().unwrap();
        for mode in [0o600, 0o400, 0o700] {
            let path = file_with_mode(dir.path(), "f", mode);
            assert!(check_private(&path).is_ok(), "{mode:o}");
        }
        assert!(check_private(&dir.path().join("missing")).is_ok());
    }

    #[test]
    fn rejects_group_or_other_access() {
        let dir = tempfile::tempdir().unwrap();
        for mode in [0o644, 0o640, 0o604, 0o620, 0o602, 0o610, 0o601, 0o666] {
            let path = file_with_mode(dir.path(), "f", mode);
            let err = check_private(&path).unwrap_err().to_string();
            assert!(err.contains(&format!("mode {mode:04o}")), "{err}");
            assert!(
                err.contains(&format!("chmod 600 {}", path.display())),
                "{err}"
            );
        }
    }

    #[test]
    fn rejects_a_link_to_an_open_file_and_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let real = file_with_mode(dir.path(), "real", 0o644);
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let err = check_private(&link).unwrap_err().to_string();
        let canonical = std::fs::canonicalize(&real).unwrap();
        assert!(
            err.contains(&format!("a link to {}", canonical.display())),
            "{err}"
        );
        // The link's own mode (0777) does not count.
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(check_private(&link).is_ok());
    }
}

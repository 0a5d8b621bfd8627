//! Accounts written out as a users.toml, by the same editor `rsftpd user` uses on the
//! file: the result is checked as the server reads it, and written atomically with
//! mode 0600 (it holds password hashes). The editor's lock file is removed afterwards,
//! so the export is the only file left.

use std::path::Path;

use crate::auth::edit::{EditError, NewAccount, UsersFile};
use crate::auth::size::{format_size, parse_size};
use crate::auth::users::UserAccount;

/// A size as people write it when that is exact (`"1 GiB"`), else the byte count.
fn exact_size(bytes: u64) -> String {
    let shown = format_size(bytes);
    if parse_size(&shown) == Ok(bytes) {
        shown
    } else {
        bytes.to_string()
    }
}

fn new_account(account: &UserAccount) -> NewAccount {
    NewAccount {
        password: account.password_hash.clone(),
        keys: account.keys.clone(),
        quota: Some(exact_size(account.quota)),
        max_sessions: account.max_sessions,
        max_files: account.max_files,
    }
}

/// Writes `accounts` to a new users.toml at `path`; refuses to replace a file.
pub fn write_users_file(accounts: &[UserAccount], path: &Path) -> Result<(), EditError> {
    if path.exists() {
        return Err(EditError::Io {
            path: path.to_owned(),
            source: std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "it exists already; export writes a new file only",
            ),
        });
    }
    let mut file = UsersFile::open_or_create(path)?;
    // Nobody edits an export in place, and a stray `FILE.lock` beside it, which a
    // copy or a backup would pick up, is clutter.
    file.remove_lock_when_done();
    for account in accounts {
        file.add_user(account.name.as_str(), new_account(account))?;
    }
    file.save()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_written_exactly() {
        assert_eq!(exact_size(1 << 30), "1 GiB");
        assert_eq!(exact_size(5 << 29), "2.5 GiB");
        assert_eq!(exact_size(1_000_001), "1000001");
    }

    #[test]
    fn an_export_leaves_only_the_file_and_refuses_to_replace_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("export.toml");
        write_users_file(&[], &path).unwrap();
        let names = || -> Vec<String> {
            std::fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        };
        assert_eq!(names(), ["export.toml"]);
        let err = write_users_file(&[], &path).unwrap_err();
        let err = crate::error_chain(&err);
        assert!(err.contains("exists already"), "{err}");
        assert_eq!(names(), ["export.toml"]);
    }
}

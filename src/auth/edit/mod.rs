//! Safe edits of `users.toml`, for `rsftpd user ...`.
//!
//! A running server reads the same file and reloads it when it changes, so an edit must
//! never leave it half-written, invalid, or missing another admin's change:
//!
//! - **Exclusive.** [`UsersFile::open`] takes an exclusive lock on `users.toml.lock`
//!   next to the file and holds it until the editor is dropped, so two `rsftpd user`
//!   commands run one after the other and neither loses the other's change. The lock
//!   file stays (removing it would race with the next editor), except after an export,
//!   which removes it while holding it; a lock got on a removed file is let go and the
//!   one now at the path taken.
//! - **Layout kept.** The file is edited as a TOML document (`toml_edit`): comments,
//!   blank lines, key order and quoting outside the changed values stay as they were.
//! - **Validated.** After every change the whole text is checked with
//!   [`UsersConfig::parse`], exactly as the server will read it; a change that would
//!   make it invalid is refused and undone.
//! - **Atomic.** [`UsersFile::save`] writes a temporary file in the same folder, syncs
//!   it, gives it the old file's mode and owner (a new file: mode 0600, owned like its
//!   folder), and renames it over the old one, so the server sees either the old file or
//!   the new one.

mod disk;
mod error;
mod layout;

use std::fmt;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml_edit::{Array, DocumentMut, Item, Table, TableLike, Value};

use super::keys::{self, AuthorizedKey};
use super::password::PasswordHash;
use super::size::parse_size;
use super::users::{UserAccount, UserName, UsersConfig, UsersError};
pub use disk::users_lock_path;
use disk::{read_text, real_path, take_lock, write_atomically};
pub use error::EditError;
use layout::{inline, last_position, push_line, raw, remove_line, set_value, user_table_mut};

/// The quota of a new account when none is given.
pub const DEFAULT_QUOTA: &str = "1GiB";

/// How long [`UsersFile::open`] waits for another admin's edit to finish.
pub const LOCK_WAIT: Duration = Duration::from_secs(10);

/// What a file created by [`UsersFile::open_or_create`] starts with.
const NEW_FILE_HEADER: &str = "\
# rsftpd accounts: one [users.<name>] table each, with the fields password (an Argon2id
# PHC hash), keys (authorized_keys lines), authorized_keys_file, quota (required),
# max_sessions and max_files. `rsftpd user ...` edits this file and keeps its
# comments; a running server picks up changes without a restart. See
# docs/OPERATIONS.md.
";

/// An account to add with [`UsersFile::add_user`].
#[derive(Debug, Clone, Default)]
pub struct NewAccount {
    pub password: Option<PasswordHash>,
    pub keys: Vec<AuthorizedKey>,
    /// A size such as `"1GiB"`, written to the file as given. `None`: [`DEFAULT_QUOTA`].
    pub quota: Option<String>,
    pub max_sessions: Option<u32>,
    pub max_files: Option<u64>,
}

/// Where a key of an account is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// In the account's `keys` list in `users.toml`.
    Inline,
    /// In the account's `authorized_keys_file`.
    File(PathBuf),
}

/// `users.toml` open for reading or editing. See the module docs for the guarantees.
pub struct UsersFile {
    /// As given: messages name it, and `authorized_keys_file` is relative to its folder
    /// (as the server reads it).
    path: PathBuf,
    /// With symbolic links resolved: the file that is replaced on save.
    real: PathBuf,
    doc: DocumentMut,
    config: UsersConfig,
    /// Held until drop; `None` when opened read-only.
    lock: Option<File>,
    /// Whether the lock file is removed at drop; see [`UsersFile::remove_lock_when_done`].
    remove_lock: bool,
}

impl Drop for UsersFile {
    fn drop(&mut self) {
        // Removed while still held (the fields drop after this), so that an editor
        // waiting on it then finds it stale and takes the one at the path instead.
        if self.remove_lock && self.lock.is_some() {
            // A lock file left behind is harmless: the next editor locks it.
            let _ = std::fs::remove_file(users_lock_path(&self.real));
        }
    }
}

impl fmt::Debug for UsersFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UsersFile")
            .field("path", &self.path)
            .field("users", &self.config.len())
            .field("locked", &self.lock.is_some())
            .finish()
    }
}

impl UsersFile {
    /// Locks and reads `path` for editing. Waits up to [`LOCK_WAIT`] for another
    /// `rsftpd user` command to finish. The file must exist and be valid.
    pub fn open(path: &Path) -> Result<UsersFile, EditError> {
        Self::open_locked(path, false, LOCK_WAIT)
    }

    /// As [`UsersFile::open`], but a missing file is started empty (with a comment that
    /// explains the format); it is created on [`UsersFile::save`].
    pub fn open_or_create(path: &Path) -> Result<UsersFile, EditError> {
        Self::open_locked(path, true, LOCK_WAIT)
    }

    /// As [`UsersFile::open`], waiting at most `wait` for the lock.
    pub fn open_with_wait(path: &Path, wait: Duration) -> Result<UsersFile, EditError> {
        Self::open_locked(path, false, wait)
    }

    /// Reads `path` without locking it, to look but not change: [`UsersFile::save`] is
    /// refused.
    pub fn read(path: &Path) -> Result<UsersFile, EditError> {
        let real = real_path(path)?;
        let text = read_text(path, &real)?.ok_or_else(|| EditError::Missing {
            path: path.to_owned(),
        })?;
        Self::from_text(path, real, &text, None)
    }

    fn open_locked(path: &Path, create: bool, wait: Duration) -> Result<UsersFile, EditError> {
        let real = real_path(path)?;
        let lock = take_lock(&users_lock_path(&real), wait)?;
        let text = match read_text(path, &real)? {
            Some(text) => text,
            None if create => NEW_FILE_HEADER.to_owned(),
            None => {
                return Err(EditError::Missing {
                    path: path.to_owned(),
                });
            }
        };
        Self::from_text(path, real, &text, Some(lock))
    }

    fn from_text(
        path: &Path,
        real: PathBuf,
        text: &str,
        lock: Option<File>,
    ) -> Result<UsersFile, EditError> {
        let config = UsersConfig::parse(text, path).map_err(EditError::Invalid)?;
        // It parsed as a users file just now, so it parses as a TOML document; the error
        // is mapped anyway rather than trusted away.
        let doc = text.parse::<DocumentMut>().map_err(|err| {
            EditError::Invalid(UsersError::Io {
                path: path.to_owned(),
                source: io::Error::new(io::ErrorKind::InvalidData, err.to_string()),
            })
        })?;
        Ok(UsersFile {
            path: path.to_owned(),
            real,
            doc,
            config,
            lock,
            remove_lock: false,
        })
    }

    /// Removes the lock file once this editor is done with it, saved or not: for a file
    /// written once and not edited in place (an export), beside which a lock file would
    /// only be clutter. Editors waiting for it meanwhile are safe: each checks that the
    /// lock it got is still the file at the lock's path, and takes that one if not.
    pub fn remove_lock_when_done(&mut self) {
        self.remove_lock = true;
    }

    /// The file's path, as given.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The accounts as the file stands now, edits included.
    pub fn config(&self) -> &UsersConfig {
        &self.config
    }

    /// The account called `name`.
    pub fn account(&self, name: &str) -> Result<&UserAccount, EditError> {
        self.config
            .get(name)
            .ok_or_else(|| EditError::UnknownUser(name.to_owned()))
    }

    /// The file as it will be written.
    pub fn text(&self) -> String {
        self.doc.to_string()
    }

    /// The account's `authorized_keys_file`, relative to the current folder.
    pub fn keys_file_of(&self, name: &str) -> Option<PathBuf> {
        let relative = self
            .user_table(name)?
            .get("authorized_keys_file")?
            .as_str()?;
        Some(self.path.parent().unwrap_or(Path::new("")).join(relative))
    }

    /// The account's keys, each with where it is written.
    pub fn keys_of(&self, name: &str) -> Result<Vec<(AuthorizedKey, KeySource)>, EditError> {
        let account = self.account(name)?;
        // The parser takes the account's `keys` and its `authorized_keys_file` in the
        // order the fields are written; follow the same order to tell which is which.
        let inline = self.inline_keys(name).len();
        let from_file = account.keys.len().saturating_sub(inline);
        let mut sources = Vec::with_capacity(account.keys.len());
        for (field, _) in self.user_table(name).into_iter().flat_map(|t| t.iter()) {
            match (field, self.keys_file_of(name)) {
                ("keys", _) => sources.extend(std::iter::repeat_n(KeySource::Inline, inline)),
                ("authorized_keys_file", Some(file)) => {
                    sources.extend(std::iter::repeat_n(KeySource::File(file), from_file));
                }
                _ => {}
            }
        }
        Ok(account.keys.iter().cloned().zip(sources).collect())
    }

    /// Adds an account, after checking its name, quota, limits and keys.
    pub fn add_user(&mut self, name: &str, account: NewAccount) -> Result<UserName, EditError> {
        let name = UserName::try_from(name)?;
        if self.config.get(name.as_str()).is_some() {
            return Err(EditError::UserExists(name.to_string()));
        }
        if let Some(existing) = self
            .config
            .iter()
            .find(|a| a.name.as_str().eq_ignore_ascii_case(name.as_str()))
        {
            return Err(EditError::NameClash {
                name: name.to_string(),
                existing: existing.name.to_string(),
            });
        }
        let quota = account.quota.as_deref().unwrap_or(DEFAULT_QUOTA).trim();
        check_quota(quota)?;
        check_max_sessions(account.max_sessions)?;
        let max_files = check_max_files(account.max_files)?;
        let mut keys: Vec<&AuthorizedKey> = Vec::new();
        for key in &account.keys {
            if !keys.iter().any(|k| k.matches(key.public_key())) {
                keys.push(key);
            }
        }

        let mut table = Table::new();
        if let Some(hash) = &account.password {
            table.insert("password", toml_edit::value(hash.as_str()));
        }
        if !keys.is_empty() {
            let mut array = Array::new();
            for key in keys {
                push_line(&mut array, &key.to_openssh_line());
            }
            table.insert("keys", toml_edit::value(array));
        }
        table.insert("quota", toml_edit::value(quota));
        if let Some(n) = account.max_sessions {
            table.insert("max_sessions", toml_edit::value(i64::from(n)));
        }
        if let Some(n) = max_files {
            table.insert("max_files", toml_edit::value(n));
        }
        table.set_position(Some(last_position(self.doc.as_table()) + 1));

        self.change(|doc| {
            // A file of comments alone holds them after its (no) tables: keep them above
            // the first account rather than let them follow it.
            let mut prefix = String::from("\n");
            if doc.as_table().is_empty() {
                prefix = format!("{}\n", raw(Some(doc.trailing())));
                doc.set_trailing("");
            }
            table.decor_mut().set_prefix(prefix);
            let users = doc.as_table_mut().entry("users").or_insert_with(|| {
                let mut users = Table::new();
                users.set_implicit(true);
                Item::Table(users)
            });
            match users {
                Item::Table(users) => {
                    users.insert(name.as_str(), Item::Table(table));
                }
                Item::Value(Value::InlineTable(users)) => {
                    users.insert(name.as_str(), Value::InlineTable(inline(table)));
                }
                _ => {
                    return Err(EditError::Unsupported {
                        user: name.to_string(),
                        what: "the users table",
                    });
                }
            }
            Ok(())
        })?;
        Ok(name)
    }

    /// Removes an account. Its home and any `authorized_keys_file` are left alone.
    pub fn remove_user(&mut self, name: &str) -> Result<UserAccount, EditError> {
        let account = self.account(name)?.clone();
        self.change(|doc| {
            doc.get_mut("users")
                .and_then(Item::as_table_like_mut)
                .and_then(|users| users.remove(name))
                .map(drop)
                .ok_or_else(|| EditError::Unsupported {
                    user: name.to_owned(),
                    what: "the account",
                })
        })?;
        Ok(account)
    }

    /// Sets the account's password hash.
    pub fn set_password(&mut self, name: &str, hash: &PasswordHash) -> Result<(), EditError> {
        self.account(name)?;
        self.change(|doc| {
            set_value(user_table_mut(doc, name)?, "password", hash.as_str().into());
            Ok(())
        })
    }

    /// Sets the account's quota, written as given (`"2GiB"`). Returns it in bytes.
    pub fn set_quota(&mut self, name: &str, quota: &str) -> Result<u64, EditError> {
        self.account(name)?;
        let quota = quota.trim();
        let bytes = check_quota(quota)?;
        self.change(|doc| {
            set_value(user_table_mut(doc, name)?, "quota", quota.into());
            Ok(())
        })?;
        Ok(bytes)
    }

    /// Sets the account's own session limit; `None` leaves only the server-wide one.
    pub fn set_max_sessions(&mut self, name: &str, max: Option<u32>) -> Result<(), EditError> {
        self.account(name)?;
        check_max_sessions(max)?;
        self.change(|doc| {
            let table = user_table_mut(doc, name)?;
            match max {
                Some(n) => set_value(table, "max_sessions", i64::from(n).into()),
                None => {
                    table.remove("max_sessions");
                }
            }
            Ok(())
        })
    }

    /// Sets the account's limit on files, folders and links; `None` removes it.
    pub fn set_max_files(&mut self, name: &str, max: Option<u64>) -> Result<(), EditError> {
        self.account(name)?;
        let max = check_max_files(max)?;
        self.change(|doc| {
            let table = user_table_mut(doc, name)?;
            match max {
                Some(n) => set_value(table, "max_files", n.into()),
                None => {
                    table.remove("max_files");
                }
            }
            Ok(())
        })
    }

    /// Adds keys to the account's `keys` list. A key the account already has, in
    /// `users.toml` or its `authorized_keys_file`, is refused.
    pub fn add_keys(&mut self, name: &str, keys: &[AuthorizedKey]) -> Result<(), EditError> {
        let account = self.account(name)?;
        for (i, key) in keys.iter().enumerate() {
            let known = account.keys.iter().chain(&keys[..i]);
            if known.into_iter().any(|k| k.matches(key.public_key())) {
                return Err(EditError::DuplicateKey {
                    user: name.to_owned(),
                    fingerprint: key.fingerprint(),
                });
            }
        }
        self.change(|doc| {
            let table = user_table_mut(doc, name)?;
            if table.get("keys").is_none() {
                table.insert("keys", toml_edit::value(Array::new()));
            }
            let array = table
                .get_mut("keys")
                .and_then(Item::as_array_mut)
                .ok_or_else(|| EditError::Unsupported {
                    user: name.to_owned(),
                    what: "the keys",
                })?;
            for key in keys {
                push_line(array, &key.to_openssh_line());
            }
            Ok(())
        })
    }

    /// Removes the key with this SHA256 fingerprint (with or without the `SHA256:`
    /// prefix) from the account's `keys` list, and returns it.
    pub fn remove_key(
        &mut self,
        name: &str,
        fingerprint: &str,
    ) -> Result<AuthorizedKey, EditError> {
        let account = self.account(name)?;
        let wanted = fingerprint.trim();
        let wanted = wanted.strip_prefix("SHA256:").unwrap_or(wanted);
        let is_wanted = |key: &AuthorizedKey| {
            key.fingerprint()
                .strip_prefix("SHA256:")
                .is_some_and(|fp| fp == wanted)
        };
        let inline: Vec<(usize, AuthorizedKey)> = self
            .inline_keys(name)
            .into_iter()
            .filter(|(_, key)| is_wanted(key))
            .collect();
        let Some((_, removed)) = inline.first().cloned() else {
            let fingerprint = format!("SHA256:{wanted}");
            return Err(
                match (account.keys.iter().any(is_wanted), self.keys_file_of(name)) {
                    (true, Some(file)) => EditError::KeyInFile {
                        user: name.to_owned(),
                        fingerprint,
                        file,
                    },
                    _ => EditError::UnknownKey {
                        user: name.to_owned(),
                        fingerprint,
                    },
                },
            );
        };
        self.change(|doc| {
            let array = user_table_mut(doc, name)?
                .get_mut("keys")
                .and_then(Item::as_array_mut)
                .ok_or_else(|| EditError::Unsupported {
                    user: name.to_owned(),
                    what: "the keys",
                })?;
            // From the back, so the indexes still hold.
            for &(index, _) in inline.iter().rev() {
                remove_line(array, index);
            }
            Ok(())
        })?;
        Ok(removed)
    }

    /// Writes the file: a temporary file in the same folder, synced, then renamed over
    /// the old one, with its mode and owner.
    pub fn save(self) -> Result<(), EditError> {
        if self.lock.is_none() {
            return Err(EditError::ReadOnly);
        }
        write_atomically(&self.real, self.doc.to_string().as_bytes())
        // The lock is released as `self` drops, after the rename.
    }

    /// The account's inline keys, each with its index in the `keys` array.
    fn inline_keys(&self, name: &str) -> Vec<(usize, AuthorizedKey)> {
        let Some(array) = self
            .user_table(name)
            .and_then(|t| t.get("keys"))
            .and_then(Item::as_array)
        else {
            return Vec::new();
        };
        array
            .iter()
            .enumerate()
            .filter_map(|(i, value)| {
                let key = AuthorizedKey::parse_line(value.as_str()?).ok()??;
                Some((i, key))
            })
            .collect()
    }

    fn user_table(&self, name: &str) -> Option<&dyn TableLike> {
        self.doc
            .get("users")?
            .as_table_like()?
            .get(name)?
            .as_table_like()
    }

    /// Applies `edit` to the document, then checks the whole text as the server will.
    /// If either fails, the document is as it was before.
    fn change(
        &mut self,
        edit: impl FnOnce(&mut DocumentMut) -> Result<(), EditError>,
    ) -> Result<(), EditError> {
        let before = self.doc.clone();
        let checked = edit(&mut self.doc).and_then(|()| {
            UsersConfig::parse(&self.doc.to_string(), &self.path).map_err(EditError::Rejected)
        });
        match checked {
            Ok(config) => {
                self.config = config;
                Ok(())
            }
            Err(err) => {
                self.doc = before;
                Err(err)
            }
        }
    }
}

/// Reads `authorized_keys` text (a `.pub` file, or several lines) named `origin` in
/// messages. Blank lines and `#` comments are skipped; there must be at least one key.
pub fn parse_keys(text: &str, origin: &str) -> Result<Vec<AuthorizedKey>, EditError> {
    let keys = keys::parse_file_text(text).map_err(|(line, source)| EditError::BadKey {
        origin: origin.to_owned(),
        line,
        source,
    })?;
    if keys.is_empty() {
        return Err(EditError::NoKey {
            origin: origin.to_owned(),
        });
    }
    Ok(keys)
}

pub(crate) fn check_quota(quota: &str) -> Result<u64, EditError> {
    parse_size(quota).map_err(|source| EditError::BadQuota {
        value: quota.to_owned(),
        source,
    })
}

pub(crate) fn check_max_sessions(max: Option<u32>) -> Result<(), EditError> {
    if max == Some(0) {
        return Err(EditError::BadMaxSessions);
    }
    Ok(())
}

/// A `max_files` as TOML can hold it (a positive `i64`).
pub(crate) fn check_max_files(max: Option<u64>) -> Result<Option<i64>, EditError> {
    max.map(|n| {
        i64::try_from(n)
            .ok()
            .filter(|&n| n > 0)
            .ok_or(EditError::BadMaxFiles(n))
    })
    .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{Secret, hash_password};
    use crate::error_chain;
    use std::fs;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn key(comment: &str) -> AuthorizedKey {
        let public = crate::auth::keys::new_key(comment);
        AuthorizedKey::parse_line(&public.to_openssh().unwrap())
            .unwrap()
            .unwrap()
    }

    /// A users file in a fresh folder.
    fn file(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.toml");
        fs::write(&path, text).unwrap();
        (dir, path)
    }

    const COMMENTED: &str = "\
# Accounts of the lab.

# alice runs the backups
[users.alice] # since 2024
quota = \"2GiB\" # raised in March
max_sessions = 3

# the end
";

    #[test]
    fn adding_a_user_keeps_comments_and_layout() {
        let (_dir, path) = file(COMMENTED);
        let mut users = UsersFile::open(&path).unwrap();
        let k = key("bob@laptop");
        let name = users
            .add_user(
                "bob",
                NewAccount {
                    keys: vec![k.clone()],
                    max_sessions: Some(2),
                    max_files: Some(300),
                    ..NewAccount::default()
                },
            )
            .unwrap();
        assert_eq!(name.as_str(), "bob");
        users.save().unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with(COMMENTED.trim_end_matches("# the end\n")),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "\n[users.bob]\nkeys = [\n    \"{}\",\n]\nquota = \"1GiB\"\nmax_sessions = 2\nmax_files = 300\n",
                k.to_openssh_line()
            )),
            "{text}"
        );
        let config = UsersConfig::load(&path).unwrap();
        let bob = config.get("bob").unwrap();
        assert_eq!(
            (bob.quota, bob.max_sessions, bob.max_files),
            (1 << 30, Some(2), Some(300))
        );
        assert!(bob.keys[0].matches(k.public_key()));
    }

    #[test]
    fn setting_values_keeps_their_comments() {
        let (_dir, path) = file(COMMENTED);
        let mut users = UsersFile::open(&path).unwrap();
        assert_eq!(users.set_quota("alice", " 500 MiB ").unwrap(), 500 << 20);
        users.set_max_sessions("alice", None).unwrap();
        users.set_max_files("alice", Some(10)).unwrap();
        assert_eq!(users.config().get("alice").unwrap().max_files, Some(10));
        assert!(matches!(
            users.set_max_files("alice", Some(0)),
            Err(EditError::BadMaxFiles(0))
        ));
        assert!(matches!(
            users.set_max_files("alice", Some(u64::MAX)),
            Err(EditError::BadMaxFiles(_))
        ));
        users.set_max_files("alice", Some(20)).unwrap();
        let hash = hash_password(&Secret::new("pw")).unwrap();
        users.set_password("alice", &hash).unwrap();
        users.save().unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("quota = \"500 MiB\" # raised in March\n"),
            "{text}"
        );
        assert!(!text.contains("max_sessions"), "{text}");
        assert!(text.contains("max_files = 20\n"), "{text}");
        assert!(text.contains("# alice runs the backups\n[users.alice] # since 2024\n"));
        assert!(text.contains(&format!("password = \"{}\"", hash.as_str())));
        assert!(text.ends_with("# the end\n"), "{text}");
    }

    #[test]
    fn keys_are_added_and_removed_line_by_line() {
        let (a, b, c) = (key("a"), key("b"), key("c"));
        let text = format!(
            "[users.alice]\nquota = \"1GiB\"\nkeys = [\n  \"{}\",  # laptop\n  # the phone\n  \"{}\",  # phone\n]\n",
            a.to_openssh_line(),
            b.to_openssh_line()
        );
        let (_dir, path) = file(&text);
        let mut users = UsersFile::open(&path).unwrap();
        users.add_keys("alice", std::slice::from_ref(&c)).unwrap();
        assert_eq!(
            users.text(),
            format!(
                "[users.alice]\nquota = \"1GiB\"\nkeys = [\n  \"{}\",  # laptop\n  # the phone\n  \"{}\",  # phone\n  \"{}\",\n]\n",
                a.to_openssh_line(),
                b.to_openssh_line(),
                c.to_openssh_line()
            )
        );
        let removed = users.remove_key("alice", &b.fingerprint()).unwrap();
        assert!(removed.matches(b.public_key()));
        assert_eq!(
            users.text(),
            format!(
                "[users.alice]\nquota = \"1GiB\"\nkeys = [\n  \"{}\",  # laptop\n  \"{}\",\n]\n",
                a.to_openssh_line(),
                c.to_openssh_line()
            )
        );
        // Without the "SHA256:" prefix too; the last one.
        let bare = c.fingerprint().trim_start_matches("SHA256:").to_owned();
        users.remove_key("alice", &bare).unwrap();
        users.remove_key("alice", &a.fingerprint()).unwrap();
        assert_eq!(
            users.text(),
            "[users.alice]\nquota = \"1GiB\"\nkeys = [\n]\n"
        );
        assert!(users.config().get("alice").unwrap().keys.is_empty());
        users.add_keys("alice", std::slice::from_ref(&a)).unwrap();
        assert_eq!(
            users.text(),
            format!(
                "[users.alice]\nquota = \"1GiB\"\nkeys = [\n    \"{}\",\n]\n",
                a.to_openssh_line()
            )
        );
    }

    #[test]
    fn one_line_arrays_stay_on_one_line() {
        let (a, b) = (key("a"), key("b"));
        let text = format!(
            "[users.x]\nkeys = [\"{}\"]\nquota = \"1GiB\"\n",
            a.to_openssh_line()
        );
        let (_dir, path) = file(&text);
        let mut users = UsersFile::open(&path).unwrap();
        users.add_keys("x", std::slice::from_ref(&b)).unwrap();
        let two = format!(
            "keys = [\"{}\", \"{}\"]\n",
            a.to_openssh_line(),
            b.to_openssh_line()
        );
        assert!(users.text().contains(&two), "{}", users.text());
        users.remove_key("x", &a.fingerprint()).unwrap();
        let one = format!("keys = [\"{}\"]\n", b.to_openssh_line());
        assert!(users.text().contains(&one), "{}", users.text());
    }

    #[test]
    fn a_multi_line_array_without_a_trailing_comma_gets_one() {
        let (a, b) = (key("a"), key("b"));
        let text = format!(
            "[users.x]\nquota = \"1GiB\"\nkeys = [\n  \"{}\"  # only\n]\n",
            a.to_openssh_line()
        );
        let (_dir, path) = file(&text);
        let mut users = UsersFile::open(&path).unwrap();
        users.add_keys("x", std::slice::from_ref(&b)).unwrap();
        assert!(
            users.text().ends_with(&format!(
                "keys = [\n  \"{}\",  # only\n  \"{}\",\n]\n",
                a.to_openssh_line(),
                b.to_openssh_line()
            )),
            "{}",
            users.text()
        );
    }

    #[test]
    fn removing_a_user_takes_its_comment_and_leaves_the_rest() {
        let (_dir, path) = file(
            "# head\n[users.a]\nquota = \"1GiB\"\n\n# b is temporary\n[users.b]\nquota = \"1GiB\"\n\n[users.c]\nquota = \"1GiB\"\n",
        );
        let mut users = UsersFile::open(&path).unwrap();
        let removed = users.remove_user("b").unwrap();
        assert_eq!(removed.name.as_str(), "b");
        assert_eq!(
            users.text(),
            "# head\n[users.a]\nquota = \"1GiB\"\n\n[users.c]\nquota = \"1GiB\"\n"
        );
        assert!(matches!(
            users.remove_user("b"),
            Err(EditError::UnknownUser(name)) if name == "b"
        ));
    }

    #[test]
    fn other_shapes_of_the_file_are_edited_too() {
        // An inline table, dotted keys, names that need quotes.
        let (_dir, path) = file("users.carol = { quota = \"2GiB\" }\n");
        let mut users = UsersFile::open(&path).unwrap();
        users.set_quota("carol", "3GiB").unwrap();
        users.add_user("x.y", NewAccount::default()).unwrap();
        users.add_keys("carol", &[key("k")]).unwrap();
        users.save().unwrap();
        let config = UsersConfig::load(&path).unwrap();
        assert_eq!(config.get("carol").unwrap().quota, 3 << 30);
        assert_eq!(config.get("carol").unwrap().keys.len(), 1);
        assert_eq!(config.get("x.y").unwrap().quota, 1 << 30);
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.contains("[users.\"x.y\"]"), "{text}");

        let (_dir, path) = file("users = { dave = { quota = \"1GiB\" } }\n");
        let mut users = UsersFile::open(&path).unwrap();
        users.add_user("erin", NewAccount::default()).unwrap();
        users.save().unwrap();
        assert_eq!(UsersConfig::load(&path).unwrap().len(), 2);
    }

    #[test]
    fn bad_input_is_refused_and_changes_nothing() {
        let (_dir, path) = file(COMMENTED);
        let mut users = UsersFile::open(&path).unwrap();
        let before = users.text();
        let refusals = [
            users.add_user("alice", NewAccount::default()).unwrap_err(),
            users.add_user("ALICE", NewAccount::default()).unwrap_err(),
            users.add_user("../etc", NewAccount::default()).unwrap_err(),
            users
                .add_user(
                    "bob",
                    NewAccount {
                        quota: Some("12 parsecs".into()),
                        ..NewAccount::default()
                    },
                )
                .unwrap_err(),
            users
                .add_user(
                    "bob",
                    NewAccount {
                        max_sessions: Some(0),
                        ..NewAccount::default()
                    },
                )
                .unwrap_err(),
            users.set_quota("nobody", "1GiB").unwrap_err(),
            users.set_quota("alice", "-5").unwrap_err(),
            users.remove_key("alice", "SHA256:nope").unwrap_err(),
        ];
        let messages: Vec<String> = refusals.iter().map(|e| error_chain(e)).collect();
        assert_eq!(
            messages,
            [
                "user \"alice\" already exists",
                "user \"ALICE\" differs from the existing user \"alice\" only in letter case; \
                 their homes would clash on a case-insensitive file system",
                "user name \"../etc\" must not start with '.' or '-'",
                "quota \"12 parsecs\": unknown unit \"parsecs\" (use B, KiB, MiB, GiB, TiB, KB, MB, GB or TB)",
                "max sessions must be at least 1",
                "no user \"nobody\"",
                "quota \"-5\": size cannot be negative",
                "user \"alice\" has no key SHA256:nope",
            ]
        );
        let k = key("k");
        users.add_keys("alice", std::slice::from_ref(&k)).unwrap();
        let with_key = users.text();
        assert!(matches!(
            users.add_keys("alice", std::slice::from_ref(&k)),
            Err(EditError::DuplicateKey { .. })
        ));
        let twice = [key("t"), key("t")];
        let twice = [twice[0].clone(), twice[0].clone()];
        assert!(matches!(
            users.add_keys("alice", &twice),
            Err(EditError::DuplicateKey { .. })
        ));
        assert_eq!(users.text(), with_key);
        users.remove_key("alice", &k.fingerprint()).unwrap();
        assert_eq!(
            users.text(),
            before.replace("max_sessions = 3\n", "max_sessions = 3\nkeys = [\n]\n")
        );
        drop(users);
        assert_eq!(fs::read_to_string(&path).unwrap(), COMMENTED);
    }

    #[test]
    fn keys_from_a_file_are_listed_but_not_removed() {
        let (inline, in_file) = (key("inline"), key("file"));
        let (dir, path) = file(&format!(
            "[users.a]\nquota = \"1GiB\"\nauthorized_keys_file = \"a.keys\"\nkeys = [\"{}\"]\n",
            inline.to_openssh_line()
        ));
        let keys_file = dir.path().join("a.keys");
        fs::write(&keys_file, format!("{}\n", in_file.to_openssh_line())).unwrap();
        let mut users = UsersFile::open(&path).unwrap();
        let listed = users.keys_of("a").unwrap();
        assert_eq!(listed.len(), 2);
        assert_eq!(listed[0].1, KeySource::File(keys_file.clone()));
        assert!(listed[0].0.matches(in_file.public_key()));
        assert_eq!(listed[1].1, KeySource::Inline);
        assert!(listed[1].0.matches(inline.public_key()));
        let err = users.remove_key("a", &in_file.fingerprint()).unwrap_err();
        assert!(
            matches!(&err, EditError::KeyInFile { file, .. } if *file == keys_file),
            "{err:?}"
        );
        assert!(matches!(
            users.add_keys("a", std::slice::from_ref(&in_file)),
            Err(EditError::DuplicateKey { .. })
        ));
        assert!(matches!(users.keys_of("b"), Err(EditError::UnknownUser(_))));
    }

    #[test]
    fn parse_keys_names_the_bad_line() {
        let good = key("good").to_openssh_line();
        assert_eq!(
            parse_keys(&format!("# mine\n{good}\n"), "k.pub")
                .unwrap()
                .len(),
            1
        );
        let err = error_chain(&parse_keys(&format!("{good}\nnot a key\n"), "k.pub").unwrap_err());
        assert!(err.starts_with("k.pub:2: not a public key line"), "{err}");
        let err =
            error_chain(&parse_keys("-----BEGIN OPENSSH PRIVATE KEY-----\n", "id").unwrap_err());
        assert_eq!(
            err,
            "id:1: this is a private key; give the public key (the .pub file) instead"
        );
        let err = parse_keys("\n# nothing\n", "-").unwrap_err();
        assert_eq!(err.to_string(), "-: no public key in it");
    }

    #[test]
    fn an_invalid_or_missing_file_is_not_edited() {
        let (_dir, path) = file("[users.a]\nquota = \"12 parsecs\"\n");
        let err = error_chain(&UsersFile::open(&path).unwrap_err());
        assert!(
            err.starts_with("the accounts file is invalid; fix it first: ")
                && err.contains("users.toml:2: user \"a\": quota"),
            "{err}"
        );
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("users.toml");
        assert!(matches!(
            UsersFile::open(&missing),
            Err(EditError::Missing { .. })
        ));
        assert!(matches!(
            UsersFile::read(&missing),
            Err(EditError::Missing { .. })
        ));
        // ...unless asked to create it.
        let mut users = UsersFile::open_or_create(&missing).unwrap();
        users.add_user("first", NewAccount::default()).unwrap();
        users.save().unwrap();
        let text = fs::read_to_string(&missing).unwrap();
        assert!(text.starts_with(NEW_FILE_HEADER), "{text}");
        assert!(
            text.ends_with("\n[users.first]\nquota = \"1GiB\"\n"),
            "{text}"
        );
        let mode = fs::metadata(&missing).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn save_replaces_the_file_keeping_its_mode_and_links() {
        let (dir, path) = file(COMMENTED);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        let link = dir.path().join("link.toml");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        let inode = fs::metadata(&path).unwrap().ino();
        let mut users = UsersFile::open(&link).unwrap();
        users.add_user("bob", NewAccount::default()).unwrap();
        users.save().unwrap();
        assert!(
            fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        let meta = fs::metadata(&path).unwrap();
        assert_ne!(meta.ino(), inode, "replaced, not rewritten in place");
        assert_eq!(meta.permissions().mode() & 0o777, 0o640);
        assert!(UsersConfig::load(&path).unwrap().get("bob").is_some());
        let mut names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["link.toml", "users.toml", "users.toml.lock"]);
    }

    #[test]
    fn the_file_keeps_its_owner_and_a_new_one_takes_its_folders() {
        // Only root can give files away; elsewhere there is nothing to check.
        let dir = tempfile::tempdir().unwrap();
        if std::os::unix::fs::chown(dir.path(), Some(4321), Some(4321)).is_err() {
            return;
        }
        let path = dir.path().join("users.toml");
        let mut users = UsersFile::open_or_create(&path).unwrap();
        users.add_user("a", NewAccount::default()).unwrap();
        users.save().unwrap();
        let meta = fs::metadata(&path).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (4321, 4321));

        std::os::unix::fs::chown(&path, Some(1234), Some(1234)).unwrap();
        let mut users = UsersFile::open(&path).unwrap();
        users.add_user("b", NewAccount::default()).unwrap();
        users.save().unwrap();
        let meta = fs::metadata(&path).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (1234, 1234));
    }

    #[test]
    fn a_read_only_copy_cannot_be_saved() {
        let (_dir, path) = file(COMMENTED);
        let mut users = UsersFile::read(&path).unwrap();
        users.set_quota("alice", "1GiB").unwrap();
        assert!(matches!(users.save(), Err(EditError::ReadOnly)));
        assert_eq!(fs::read_to_string(&path).unwrap(), COMMENTED);
    }

    #[test]
    fn a_second_editor_waits_for_the_first() {
        let (_dir, path) = file(COMMENTED);
        let first = UsersFile::open(&path).unwrap();
        let err = UsersFile::open_with_wait(&path, Duration::from_millis(50)).unwrap_err();
        assert!(matches!(err, EditError::Locked { .. }), "{err:?}");
        assert!(err.to_string().ends_with("users.toml.lock is held by another `rsftpd user` command; try again when it has finished"), "{err}");
        // A reader does not wait.
        assert_eq!(UsersFile::read(&path).unwrap().config().len(), 1);
        drop(first);
        UsersFile::open_with_wait(&path, Duration::from_millis(50)).unwrap();
    }

    #[test]
    fn a_lock_removed_when_done_leaves_no_file_and_excludes_as_before() {
        let (dir, path) = file(COMMENTED);
        let lock = users_lock_path(&path);
        let mut first = UsersFile::open(&path).unwrap();
        first.remove_lock_when_done();
        // Waiting on the lock file that is about to be removed (or, if it starts late,
        // on the one made after): either way it ends up holding the lock at the path.
        let waiting_path = path.clone();
        let waiter = std::thread::spawn(move || {
            UsersFile::open_with_wait(&waiting_path, Duration::from_secs(10))
        });
        std::thread::sleep(Duration::from_millis(100));
        first.set_quota("alice", "1GiB").unwrap();
        first.save().unwrap();
        let second = waiter.join().unwrap().unwrap();
        assert!(lock.exists(), "the waiter holds a lock file at the path");
        let err = UsersFile::open_with_wait(&path, Duration::from_millis(50)).unwrap_err();
        assert!(matches!(err, EditError::Locked { .. }), "{err:?}");
        drop(second);
        // Without the request, the lock file stays, as it always has.
        assert!(lock.exists());
        let mut third = UsersFile::open(&path).unwrap();
        third.remove_lock_when_done();
        drop(third);
        let names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["users.toml"]);
    }
}

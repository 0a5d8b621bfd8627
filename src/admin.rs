//! The account use cases behind `rsftpd user ...`: add, delete (with or without the
//! home), password, quota, keys, list and show.
//!
//! They act on an [`AccountEditor`], the writing half of the account-store seam (the
//! reading half, for servers, is [`crate::auth::AccountStore`]), and on the storage
//! root where homes live. Any store that implements the editor reuses them unchanged;
//! today's is `users.toml` ([`UsersToml`]). The binary only parses arguments, asks for
//! passwords, reads key files and prints what these return.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::auth::{
    AuthorizedKey, EditError, KeySource, NewAccount, PasswordHash, UserAccount, UserName, UsersFile,
};
use crate::storage::{ScanFailure, Storage, StorageError};

/// Changes to accounts, each one atomic: it is made whole or not at all, and never
/// loses a change made at the same time by another admin.
pub trait AccountEditor {
    /// Where the accounts are kept, as messages name it.
    fn origin(&self) -> String;
    /// Every account, in the store's order.
    fn accounts(&self) -> Result<Vec<UserAccount>, EditError>;
    fn account(&self, name: &str) -> Result<UserAccount, EditError>;
    /// An account's keys, and where each is written.
    fn keys_of(&self, name: &str) -> Result<Vec<(AuthorizedKey, KeySource)>, EditError>;
    /// Adds an account; returns it as stored (its quota parsed).
    fn add_user(&mut self, name: &str, account: NewAccount) -> Result<UserAccount, EditError>;
    /// Removes an account; returns it, and the keys file it named, which is kept.
    fn remove_user(&mut self, name: &str) -> Result<(UserAccount, Option<PathBuf>), EditError>;
    fn set_password(&mut self, name: &str, hash: &PasswordHash) -> Result<(), EditError>;
    /// Sets the quota and, when `max_files` is given, the entry limit (`Some(None)`: no
    /// limit). Returns the account as stored.
    fn set_quota(
        &mut self,
        name: &str,
        quota: &str,
        max_files: Option<Option<u64>>,
    ) -> Result<UserAccount, EditError>;
    fn add_keys(&mut self, name: &str, keys: &[AuthorizedKey]) -> Result<(), EditError>;
    /// Removes the key with this SHA256 fingerprint; returns it.
    fn remove_key(&mut self, name: &str, fingerprint: &str) -> Result<AuthorizedKey, EditError>;
}

/// `users.toml`, edited with [`UsersFile`]: every change locks the file, is checked,
/// and is written atomically, keeping the file's comments.
pub struct UsersToml {
    path: PathBuf,
}

impl UsersToml {
    pub fn new(path: &Path) -> UsersToml {
        UsersToml {
            path: path.to_owned(),
        }
    }

    /// Opens the file locked, applies `change`, and saves it.
    fn edit<T>(
        &self,
        create: bool,
        change: impl FnOnce(&mut UsersFile) -> Result<T, EditError>,
    ) -> Result<T, EditError> {
        let mut file = if create {
            UsersFile::open_or_create(&self.path)?
        } else {
            UsersFile::open(&self.path)?
        };
        let result = change(&mut file)?;
        file.save()?;
        Ok(result)
    }
}

impl AccountEditor for UsersToml {
    fn origin(&self) -> String {
        self.path.display().to_string()
    }

    fn accounts(&self) -> Result<Vec<UserAccount>, EditError> {
        Ok(UsersFile::read(&self.path)?
            .config()
            .iter()
            .cloned()
            .collect())
    }

    fn account(&self, name: &str) -> Result<UserAccount, EditError> {
        UsersFile::read(&self.path)?.account(name).cloned()
    }

    fn keys_of(&self, name: &str) -> Result<Vec<(AuthorizedKey, KeySource)>, EditError> {
        UsersFile::read(&self.path)?.keys_of(name)
    }

    fn add_user(&mut self, name: &str, account: NewAccount) -> Result<UserAccount, EditError> {
        self.edit(true, |file| {
            let name = file.add_user(name, account)?;
            file.account(name.as_str()).cloned()
        })
    }

    fn remove_user(&mut self, name: &str) -> Result<(UserAccount, Option<PathBuf>), EditError> {
        self.edit(false, |file| {
            let keys_file = file.keys_file_of(name);
            Ok((file.remove_user(name)?, keys_file))
        })
    }

    fn set_password(&mut self, name: &str, hash: &PasswordHash) -> Result<(), EditError> {
        self.edit(false, |file| file.set_password(name, hash))
    }

    fn set_quota(
        &mut self,
        name: &str,
        quota: &str,
        max_files: Option<Option<u64>>,
    ) -> Result<UserAccount, EditError> {
        self.edit(false, |file| {
            file.set_quota(name, quota)?;
            if let Some(max_files) = max_files {
                file.set_max_files(name, max_files)?;
            }
            file.account(name).cloned()
        })
    }

    fn add_keys(&mut self, name: &str, keys: &[AuthorizedKey]) -> Result<(), EditError> {
        self.edit(false, |file| file.add_keys(name, keys))
    }

    fn remove_key(&mut self, name: &str, fingerprint: &str) -> Result<AuthorizedKey, EditError> {
        self.edit(false, |file| file.remove_key(name, fingerprint))
    }
}

/// Why an account use case failed. An account change that was made is said so.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdminError {
    #[error(transparent)]
    Edit(#[from] EditError),
    #[error(
        "user {user} is added, but their home {} could not be created \
         (the server creates it when it loads the account)",
        path.display()
    )]
    HomeNotCreated {
        user: String,
        path: PathBuf,
        #[source]
        source: StorageError,
    },
    #[error("cannot give {} to the owner of {}", path.display(), storage.display())]
    HomeNotOwned {
        path: PathBuf,
        storage: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("user {user} is deleted, but their home {} could not be removed", path.display())]
    HomeNotRemoved {
        user: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "user {user} is deleted, but their partial uploads in {} could not be removed",
        path.display()
    )]
    PartialsNotRemoved {
        user: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot open the storage folder {}", path.display())]
    Storage {
        path: PathBuf,
        #[source]
        source: StorageError,
    },
    #[error("cannot measure the home of {user}")]
    Measure {
        user: String,
        #[source]
        source: StorageError,
    },
}

/// What the storage core measures of a user's home.
#[derive(Debug)]
pub enum Usage {
    /// They have no home yet (nothing is created to find out).
    NoHome,
    /// It cannot be measured; the server refuses their writes until it can.
    Unknown(ScanFailure),
    /// Bytes by the quota rule, and entries (files, folders and links).
    Measured { used: u64, entries: u64 },
}

impl Usage {
    /// The bytes used, if known.
    pub fn used(&self) -> Option<u64> {
        match self {
            Usage::Measured { used, .. } => Some(*used),
            Usage::NoHome | Usage::Unknown(_) => None,
        }
    }
}

/// What became of a deleted user's home.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HomeFate {
    Removed,
    /// `--purge`, but there was none.
    Absent,
    /// Kept, as asked.
    Kept {
        exists: bool,
    },
}

/// A deleted account.
#[derive(Debug)]
pub struct Deleted {
    pub account: UserAccount,
    pub home: PathBuf,
    pub fate: HomeFate,
    /// The keys file the account named, which is never deleted.
    pub keys_file: Option<PathBuf>,
    /// With `purge`: where their partial uploads were, if they had any.
    pub partials_removed: Option<PathBuf>,
}

/// Everything `show` reports of one account.
#[derive(Debug)]
pub struct Report {
    pub account: UserAccount,
    pub home: PathBuf,
    pub usage: Usage,
    pub keys: Vec<(AuthorizedKey, KeySource)>,
}

/// The use cases, on one account store and one storage root.
pub struct Admin<E> {
    accounts: E,
    storage: PathBuf,
}

impl<E: AccountEditor> Admin<E> {
    pub fn new(accounts: E, storage: &Path) -> Admin<E> {
        Admin {
            accounts,
            storage: storage.to_owned(),
        }
    }

    pub fn accounts(&self) -> &E {
        &self.accounts
    }

    /// Where a user's home is.
    pub fn home_of(&self, user: &str) -> PathBuf {
        self.storage.join(user)
    }

    /// Adds an account and creates its home (mode 0700) as the server would, owned like
    /// the storage folder, so that a home made by root is still the server's to write.
    pub fn add(
        &mut self,
        name: &str,
        account: NewAccount,
    ) -> Result<(UserAccount, PathBuf), AdminError> {
        let account = self.accounts.add_user(name, account)?;
        let user = account.name.as_str();
        let path = self.home_of(user);
        Storage::open(&self.storage)
            .and_then(|storage| storage.home(user, account.quota, account.max_files))
            .map_err(|source| AdminError::HomeNotCreated {
                user: user.to_owned(),
                path: path.clone(),
                source,
            })?;
        let not_owned = |source| AdminError::HomeNotOwned {
            path: path.clone(),
            storage: self.storage.clone(),
            source,
        };
        let parent = std::fs::metadata(&self.storage).map_err(not_owned)?;
        let home = std::fs::metadata(&path).map_err(not_owned)?;
        if (parent.uid(), parent.gid()) != (home.uid(), home.gid()) {
            std::os::unix::fs::chown(&path, Some(parent.uid()), Some(parent.gid()))
                .map_err(not_owned)?;
        }
        Ok((account, path))
    }

    /// Deletes an account; a running server ends their sessions. With `purge`, their
    /// home and every file in it go too, and their partial uploads, which are kept
    /// outside the home.
    pub fn delete(&mut self, name: &str, purge: bool) -> Result<Deleted, AdminError> {
        let (account, keys_file) = self.accounts.remove_user(name)?;
        let user = account.name.as_str().to_owned();
        let home = self.home_of(&user);
        let mut partials_removed = None;
        let fate = if purge {
            let fate = match std::fs::remove_dir_all(&home) {
                Ok(()) => HomeFate::Removed,
                Err(err) if err.kind() == io::ErrorKind::NotFound => HomeFate::Absent,
                Err(source) => {
                    return Err(AdminError::HomeNotRemoved {
                        user: name.to_owned(),
                        path: home,
                        source,
                    });
                }
            };
            let storage = Storage::open(&self.storage).map_err(|source| AdminError::Storage {
                path: self.storage.clone(),
                source,
            })?;
            let staging = storage.staging_path(&user);
            let removed =
                storage
                    .remove_staging(&user)
                    .map_err(|source| AdminError::PartialsNotRemoved {
                        user: user.clone(),
                        path: staging.clone(),
                        source,
                    })?;
            partials_removed = removed.then_some(staging);
            fate
        } else {
            HomeFate::Kept {
                exists: home.exists(),
            }
        };
        Ok(Deleted {
            account,
            home,
            fate,
            keys_file,
            partials_removed,
        })
    }

    pub fn set_password(&mut self, name: &str, hash: &PasswordHash) -> Result<(), AdminError> {
        Ok(self.accounts.set_password(name, hash)?)
    }

    /// Sets the quota (and maybe the entry limit); returns the account and its usage.
    pub fn set_quota(
        &mut self,
        name: &str,
        quota: &str,
        max_files: Option<Option<u64>>,
    ) -> Result<(UserAccount, Usage), AdminError> {
        let account = self.accounts.set_quota(name, quota, max_files)?;
        let usage = self.usage(&account)?;
        Ok((account, usage))
    }

    pub fn add_keys(&mut self, name: &str, keys: &[AuthorizedKey]) -> Result<(), AdminError> {
        Ok(self.accounts.add_keys(name, keys)?)
    }

    pub fn remove_key(
        &mut self,
        name: &str,
        fingerprint: &str,
    ) -> Result<AuthorizedKey, AdminError> {
        Ok(self.accounts.remove_key(name, fingerprint)?)
    }

    pub fn keys(&self, name: &str) -> Result<Vec<(AuthorizedKey, KeySource)>, AdminError> {
        Ok(self.accounts.keys_of(name)?)
    }

    /// Every account with its usage, measured on disk.
    pub fn list(&self) -> Result<Vec<(UserAccount, Usage)>, AdminError> {
        self.accounts
            .accounts()?
            .into_iter()
            .map(|account| {
                let usage = self.usage(&account)?;
                Ok((account, usage))
            })
            .collect()
    }

    pub fn show(&self, name: &str) -> Result<Report, AdminError> {
        let account = self.accounts.account(name)?;
        Ok(Report {
            home: self.home_of(account.name.as_str()),
            usage: self.usage(&account)?,
            keys: self.accounts.keys_of(name)?,
            account,
        })
    }

    /// What the storage core measures of the account's home, by the quota rule.
    pub fn usage(&self, account: &UserAccount) -> Result<Usage, AdminError> {
        measure(
            &self.storage,
            &account.name,
            account.quota,
            account.max_files,
        )
    }
}

fn measure(
    storage: &Path,
    user: &UserName,
    quota: u64,
    max_files: Option<u64>,
) -> Result<Usage, AdminError> {
    if !storage.join(user.as_str()).is_dir() {
        return Ok(Usage::NoHome);
    }
    let home = Storage::open(storage)
        .and_then(|storage| storage.home(user.as_str(), quota, max_files))
        .map_err(|source| AdminError::Measure {
            user: user.to_string(),
            source,
        })?;
    Ok(match home.unmeasured() {
        Some(failure) => Usage::Unknown(failure),
        None => Usage::Measured {
            used: home.usage().used,
            entries: home.entries().count,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admin() -> (tempfile::TempDir, Admin<UsersToml>) {
        let dir = tempfile::tempdir().unwrap();
        let storage = dir.path().join("storage");
        std::fs::create_dir(&storage).unwrap();
        let admin = Admin::new(UsersToml::new(&dir.path().join("users.toml")), &storage);
        (dir, admin)
    }

    fn account(quota: &str) -> NewAccount {
        NewAccount {
            quota: Some(quota.to_owned()),
            ..NewAccount::default()
        }
    }

    #[test]
    fn add_creates_the_account_and_its_home() {
        let (_dir, mut admin) = admin();
        let (added, home) = admin.add("alice", account("1MiB")).unwrap();
        assert_eq!((added.name.as_str(), added.quota), ("alice", 1 << 20));
        assert!(home.is_dir());
        let listed = admin.list().unwrap();
        assert_eq!(listed.len(), 1);
        assert!(matches!(
            listed[0].1,
            Usage::Measured {
                used: 0,
                entries: 0
            }
        ));
    }

    #[test]
    fn add_refuses_an_existing_user_and_changes_nothing() {
        let (_dir, mut admin) = admin();
        admin.add("alice", account("1MiB")).unwrap();
        let err = admin.add("alice", account("2MiB")).unwrap_err();
        assert!(
            matches!(err, AdminError::Edit(EditError::UserExists(_))),
            "{err}"
        );
        assert_eq!(admin.show("alice").unwrap().account.quota, 1 << 20);
    }

    #[test]
    fn delete_keeps_the_home_unless_purged() {
        let (_dir, mut admin) = admin();
        let (_, home) = admin.add("alice", account("1MiB")).unwrap();
        std::fs::write(home.join("f"), b"x").unwrap();
        let kept = admin.delete("alice", false).unwrap();
        assert_eq!(kept.fate, HomeFate::Kept { exists: true });
        assert!(home.join("f").exists());

        admin.add("alice", account("1MiB")).unwrap();
        assert_eq!(admin.delete("alice", true).unwrap().fate, HomeFate::Removed);
        assert!(!home.exists());
        admin.add("bob", account("1MiB")).unwrap();
        std::fs::remove_dir(admin.home_of("bob")).unwrap();
        assert_eq!(admin.delete("bob", true).unwrap().fate, HomeFate::Absent);
    }

    #[test]
    fn delete_refuses_an_unknown_user() {
        let (_dir, mut admin) = admin();
        admin.add("alice", account("1MiB")).unwrap();
        let err = admin.delete("bob", true).unwrap_err();
        assert!(
            matches!(err, AdminError::Edit(EditError::UnknownUser(_))),
            "{err}"
        );
        assert!(admin.home_of("alice").is_dir());
    }

    #[test]
    fn quota_changes_report_what_is_used_by_the_quota_rule() {
        let (_dir, mut admin) = admin();
        let (_, home) = admin.add("alice", account("1MiB")).unwrap();
        std::fs::write(home.join("f"), vec![0u8; 5000]).unwrap();
        let (account, usage) = admin.set_quota("alice", "4KiB", Some(Some(10))).unwrap();
        assert_eq!((account.quota, account.max_files), (4096, Some(10)));
        assert_eq!(usage.used(), Some(8192));
        let (account, _) = admin.set_quota("alice", "4KiB", Some(None)).unwrap();
        assert_eq!(account.max_files, None);
        assert!(matches!(
            admin.set_quota("alice", "lots", None),
            Err(AdminError::Edit(EditError::BadQuota { .. }))
        ));
    }

    #[test]
    fn show_says_when_there_is_no_home_yet() {
        let (_dir, mut admin) = admin();
        admin.add("alice", account("1MiB")).unwrap();
        std::fs::remove_dir(admin.home_of("alice")).unwrap();
        assert!(matches!(admin.show("alice").unwrap().usage, Usage::NoHome));
        assert!(matches!(
            admin.show("nobody"),
            Err(AdminError::Edit(EditError::UnknownUser(_)))
        ));
    }
}

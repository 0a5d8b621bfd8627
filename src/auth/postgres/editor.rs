//! [`PgEditor`]: the account changes of `rsftpd user ...`, made in PostgreSQL.
//!
//! Each change is one transaction that locks the account's row, so two admins never
//! lose each other's change. The checks and their messages are the users.toml editor's
//! (a duplicate user, a name that differs only in case, a bad size, a key the account
//! already has); the triggers on the tables tell every running server.

use std::path::PathBuf;

use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, GenericClient};

use super::{PgError, Target};
use crate::admin::AccountEditor;
use crate::auth::edit::{
    DEFAULT_QUOTA, EditError, KeySource, NewAccount, check_max_files, check_max_sessions,
    check_quota,
};
use crate::auth::keys::AuthorizedKey;
use crate::auth::password::PasswordHash;
use crate::auth::users::{UserAccount, UserName, UsersConfig};

/// Accounts in PostgreSQL, edited from a command. Blocking: it runs its own small
/// runtime, so it must not be used from inside an async task.
pub struct PgEditor {
    origin: String,
    runtime: tokio::runtime::Runtime,
    client: Client,
}

impl PgEditor {
    /// Connects, and brings the schema up to date.
    pub fn open(target: &Target) -> Result<PgEditor, PgError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(PgError::Runtime)?;
        let client = runtime.block_on(async {
            super::connect_and_migrate(target).await?;
            super::connect(target).await
        })?;
        Ok(PgEditor {
            origin: target.to_string(),
            runtime,
            client,
        })
    }

    /// Copies every account of a users.toml in, in one transaction: all or none. An
    /// account that exists already (or differs from one only in case) stops it.
    /// Returns how many were copied.
    pub fn import(&mut self, accounts: &UsersConfig) -> Result<usize, EditError> {
        let origin = self.origin.clone();
        let db = |source| db_error(&origin, source);
        self.runtime.block_on(async {
            let tx = self.client.transaction().await.map_err(db)?;
            for account in accounts.iter() {
                check_free(&tx, &account.name, &origin).await?;
                insert(&tx, account, &origin).await?;
            }
            tx.commit().await.map_err(db)?;
            Ok(accounts.len())
        })
    }

    fn load(&self) -> Result<UsersConfig, EditError> {
        self.runtime
            .block_on(super::load_accounts(&self.client, &self.origin))
            .map_err(|err| EditError::Io {
                path: PathBuf::from(&self.origin),
                source: std::io::Error::other(err),
            })
    }
}

/// A database failure, as an edit error that names the database (never its password).
fn db_error(origin: &str, source: tokio_postgres::Error) -> EditError {
    EditError::Io {
        path: PathBuf::from(origin),
        source: std::io::Error::other(source),
    }
}

/// Refuses a name taken already, or one that differs from a taken one only in case.
async fn check_free(
    client: &impl GenericClient,
    name: &UserName,
    origin: &str,
) -> Result<(), EditError> {
    let row = client
        .query_opt(
            "SELECT name FROM accounts WHERE name_folded = lower($1)",
            &[&name.as_str()],
        )
        .await
        .map_err(|e| db_error(origin, e))?;
    match row {
        None => Ok(()),
        Some(row) => {
            let existing: String = row.get(0);
            Err(if existing == name.as_str() {
                EditError::UserExists(existing)
            } else {
                EditError::NameClash {
                    name: name.to_string(),
                    existing,
                }
            })
        }
    }
}

/// Inserts a checked account with its quota row and keys.
async fn insert(
    client: &impl GenericClient,
    account: &UserAccount,
    origin: &str,
) -> Result<(), EditError> {
    let name = account.name.as_str();
    let inserted = client
        .execute(
            "INSERT INTO accounts (name, password_hash, max_sessions, max_files)
             VALUES ($1, $2, $3, $4)",
            &[
                &name,
                &account.password_hash.as_ref().map(PasswordHash::as_str),
                &account.max_sessions.map(|n| n as i32),
                &account.max_files.map(|n| n as i64),
            ],
        )
        .await;
    match inserted {
        Ok(_) => {}
        // Another admin added the same name since the check.
        Err(err) if err.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
            return Err(EditError::UserExists(name.to_owned()));
        }
        Err(err) => return Err(db_error(origin, err)),
    }
    let limit = i64::try_from(account.quota).map_err(|_| EditError::BadQuota {
        value: account.quota.to_string(),
        source: crate::auth::SizeError::Overflow,
    })?;
    client
        .execute(
            "INSERT INTO quota (account, limit_bytes) VALUES ($1, $2)",
            &[&name, &limit],
        )
        .await
        .map_err(|e| db_error(origin, e))?;
    add_key_rows(client, name, &account.keys, 0, origin).await
}

async fn add_key_rows(
    client: &impl GenericClient,
    name: &str,
    keys: &[AuthorizedKey],
    after: i32,
    origin: &str,
) -> Result<(), EditError> {
    for (i, key) in keys.iter().enumerate() {
        let position = after + 1 + i as i32;
        client
            .execute(
                "INSERT INTO account_keys (account, position, fingerprint, line)
                 VALUES ($1, $2, $3, $4)",
                &[&name, &position, &key.fingerprint(), &key.to_openssh_line()],
            )
            .await
            .map_err(|e| db_error(origin, e))?;
    }
    Ok(())
}

/// Locks an account's row for the rest of the transaction; refuses an unknown one.
async fn lock_account(
    client: &impl GenericClient,
    name: &str,
    origin: &str,
) -> Result<(), EditError> {
    client
        .query_opt(
            "SELECT 1 FROM accounts WHERE name = $1 FOR UPDATE",
            &[&name],
        )
        .await
        .map_err(|e| db_error(origin, e))?
        .map(drop)
        .ok_or_else(|| EditError::UnknownUser(name.to_owned()))
}

impl AccountEditor for PgEditor {
    fn origin(&self) -> String {
        self.origin.clone()
    }

    fn accounts(&self) -> Result<Vec<UserAccount>, EditError> {
        Ok(self.load()?.users.into_values().collect())
    }

    fn account(&self, name: &str) -> Result<UserAccount, EditError> {
        self.load()?
            .users
            .remove(name)
            .ok_or_else(|| EditError::UnknownUser(name.to_owned()))
    }

    fn keys_of(&self, name: &str) -> Result<Vec<(AuthorizedKey, KeySource)>, EditError> {
        let account = self.account(name)?;
        Ok(account
            .keys
            .into_iter()
            .map(|key| (key, KeySource::Inline))
            .collect())
    }

    fn add_user(&mut self, name: &str, account: NewAccount) -> Result<UserAccount, EditError> {
        let name = UserName::try_from(name)?;
        let origin = self.origin.clone();
        let db = |source| db_error(&origin, source);
        self.runtime.block_on(async {
            let tx = self.client.transaction().await.map_err(db)?;
            check_free(&tx, &name, &origin).await?;
            let quota = check_quota(account.quota.as_deref().unwrap_or(DEFAULT_QUOTA).trim())?;
            check_max_sessions(account.max_sessions)?;
            let max_files = check_max_files(account.max_files)?;
            let mut keys: Vec<AuthorizedKey> = Vec::new();
            for key in account.keys {
                if !keys.iter().any(|k| k.matches(key.public_key())) {
                    keys.push(key);
                }
            }
            let stored = UserAccount {
                name: name.clone(),
                password_hash: account.password,
                keys,
                quota,
                max_sessions: account.max_sessions,
                max_files: max_files.map(|n| n as u64),
            };
            insert(&tx, &stored, &origin).await?;
            tx.commit().await.map_err(db)?;
            Ok(stored)
        })
    }

    fn remove_user(&mut self, name: &str) -> Result<(UserAccount, Option<PathBuf>), EditError> {
        let account = self.account(name)?;
        let origin = self.origin.clone();
        let deleted = self
            .runtime
            .block_on(
                self.client
                    .execute("DELETE FROM accounts WHERE name = $1", &[&name]),
            )
            .map_err(|e| db_error(&origin, e))?;
        if deleted == 0 {
            return Err(EditError::UnknownUser(name.to_owned()));
        }
        Ok((account, None))
    }

    fn set_password(&mut self, name: &str, hash: &PasswordHash) -> Result<(), EditError> {
        let changed = self
            .runtime
            .block_on(self.client.execute(
                "UPDATE accounts SET password_hash = $2, updated_at = now() WHERE name = $1",
                &[&name, &hash.as_str()],
            ))
            .map_err(|e| db_error(&self.origin, e))?;
        if changed == 0 {
            return Err(EditError::UnknownUser(name.to_owned()));
        }
        Ok(())
    }

    fn set_quota(
        &mut self,
        name: &str,
        quota: &str,
        max_files: Option<Option<u64>>,
    ) -> Result<UserAccount, EditError> {
        let origin = self.origin.clone();
        let db = |source| db_error(&origin, source);
        self.runtime.block_on(async {
            let tx = self.client.transaction().await.map_err(db)?;
            lock_account(&tx, name, &origin).await?;
            let bytes = check_quota(quota.trim())?;
            let limit = i64::try_from(bytes).map_err(|_| EditError::BadQuota {
                value: quota.trim().to_owned(),
                source: crate::auth::SizeError::Overflow,
            })?;
            tx.execute(
                "INSERT INTO quota (account, limit_bytes) VALUES ($1, $2)
                 ON CONFLICT (account) DO UPDATE SET limit_bytes = EXCLUDED.limit_bytes",
                &[&name, &limit],
            )
            .await
            .map_err(db)?;
            if let Some(max_files) = max_files {
                let max_files = check_max_files(max_files)?;
                tx.execute(
                    "UPDATE accounts SET max_files = $2, updated_at = now() WHERE name = $1",
                    &[&name, &max_files],
                )
                .await
                .map_err(db)?;
            }
            tx.commit().await.map_err(db)
        })?;
        self.account(name)
    }

    fn add_keys(&mut self, name: &str, keys: &[AuthorizedKey]) -> Result<(), EditError> {
        let origin = self.origin.clone();
        let db = |source| db_error(&origin, source);
        self.runtime.block_on(async {
            let tx = self.client.transaction().await.map_err(db)?;
            lock_account(&tx, name, &origin).await?;
            let rows = tx
                .query(
                    "SELECT fingerprint, position FROM account_keys WHERE account = $1",
                    &[&name],
                )
                .await
                .map_err(db)?;
            let known: Vec<String> = rows.iter().map(|row| row.get(0)).collect();
            let last = rows
                .iter()
                .map(|row| row.get::<_, i32>(1))
                .max()
                .unwrap_or(0);
            for (i, key) in keys.iter().enumerate() {
                let fingerprint = key.fingerprint();
                let earlier = keys[..i].iter().any(|k| k.matches(key.public_key()));
                if earlier || known.contains(&fingerprint) {
                    return Err(EditError::DuplicateKey {
                        user: name.to_owned(),
                        fingerprint,
                    });
                }
            }
            add_key_rows(&tx, name, keys, last, &origin).await?;
            tx.commit().await.map_err(db)
        })
    }

    fn remove_key(&mut self, name: &str, fingerprint: &str) -> Result<AuthorizedKey, EditError> {
        let wanted = fingerprint.trim();
        let wanted = format!(
            "SHA256:{}",
            wanted.strip_prefix("SHA256:").unwrap_or(wanted)
        );
        let origin = self.origin.clone();
        let db = |source| db_error(&origin, source);
        self.runtime.block_on(async {
            let tx = self.client.transaction().await.map_err(db)?;
            lock_account(&tx, name, &origin).await?;
            let removed = tx
                .query_opt(
                    "DELETE FROM account_keys WHERE account = $1 AND fingerprint = $2
                     RETURNING line",
                    &[&name, &wanted],
                )
                .await
                .map_err(db)?;
            let Some(row) = removed else {
                return Err(EditError::UnknownKey {
                    user: name.to_owned(),
                    fingerprint: wanted,
                });
            };
            let line: String = row.get(0);
            let key = AuthorizedKey::parse_line(&line)
                .ok()
                .flatten()
                .ok_or_else(|| EditError::UnknownKey {
                    user: name.to_owned(),
                    fingerprint: wanted.clone(),
                })?;
            tx.commit().await.map_err(db)?;
            Ok(key)
        })
    }
}

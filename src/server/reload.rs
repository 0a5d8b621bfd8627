//! Live reload of the accounts: `users.toml` (and the keys files it names) watched for
//! changes, or a database store's news, and applied to the running server: quotas to
//! the live ledgers, homes for new users, and the sessions of deleted accounts ended.
//! The log lines name what was reloaded: the users file, or the accounts in PostgreSQL.

use std::sync::Arc;

use russh::Disconnect;
use tokio::sync::broadcast;
use tracing::{error, info, warn};

use super::shared::Shared;
use crate::auth::{StoreKind, UsersConfig, UsersError};
use crate::error_chain;

/// Reloads `users.toml` whenever its content (or that of a keys file it names) changes,
/// until `stop`.
pub(super) async fn watch_users_file(shared: Arc<Shared>, mut stop: broadcast::Receiver<()>) {
    let mut tick = tokio::time::interval(shared.accounts.poll_interval());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.recv() => return,
        }
        let checking = Arc::clone(&shared);
        let changed = tokio::task::spawn_blocking(move || checking.accounts.changed())
            .await
            .unwrap_or(false);
        if changed {
            // A failure is logged inside; the last good configuration stays.
            let _ = reload(&shared).await;
        }
    }
}

/// The password hashes of `accounts`, which the dummy hash for unknown users matches.
pub(super) fn password_hashes(
    accounts: &UsersConfig,
) -> impl Iterator<Item = &crate::auth::PasswordHash> {
    accounts
        .iter()
        .filter_map(|account| account.password_hash.as_ref())
}

/// Reads the accounts again (`users.toml`, or the database) and applies them; see
/// [`Server::reload`]. Logs the outcome,
/// a failure at error level: the server then runs on with the last good configuration.
pub(super) async fn reload(shared: &Arc<Shared>) -> Result<(), UsersError> {
    let origin = shared.accounts.origin();
    let loading = Arc::clone(shared);
    let loaded = tokio::task::spawn_blocking(move || {
        let loaded = loading.accounts.reload();
        if let Ok((_, new)) = &loaded {
            loading.passwords.match_accounts(password_hashes(new));
        }
        loaded
    })
    .await
    .unwrap_or_else(|join| {
        Err(UsersError::Io {
            path: origin.clone().into(),
            source: std::io::Error::other(join.to_string()),
        })
    });
    let (old, new) = match loaded {
        Ok(loaded) => loaded,
        Err(err) => {
            match shared.accounts.kind() {
                StoreKind::UsersFile => error!(
                    target: "rsftpd::admin",
                    file = %origin,
                    error = %error_chain(&err),
                    "users file not reloaded; keeping the last good configuration"
                ),
                StoreKind::Postgres => error!(
                    target: "rsftpd::admin",
                    database = %origin,
                    error = %error_chain(&err),
                    "accounts not reloaded from PostgreSQL; keeping the last good ones"
                ),
            }
            return Err(err);
        }
    };
    for warning in new.warnings() {
        warn!(target: "rsftpd::admin", "{warning}");
    }
    let names = |from: &UsersConfig, missing_in: &UsersConfig| -> Vec<String> {
        from.iter()
            .filter(|account| missing_in.get(account.name.as_str()).is_none())
            .map(|account| account.name.to_string())
            .collect()
    };
    let (added, removed) = (names(&new, &old), names(&old, &new));

    // Apply quotas to the live ledgers and create homes for new users. A user added
    // again after being deleted is measured afresh: their home may have been purged.
    let storage = Arc::clone(&shared.storage);
    let fresh: Vec<String> = added
        .iter()
        .filter(|user| shared.sessions.handles_of(user).is_empty())
        .cloned()
        .collect();
    let quotas: Vec<(String, u64, Option<u64>)> = new
        .iter()
        .map(|account| {
            let name = account.name.as_str().to_owned();
            (name, account.quota, account.max_files)
        })
        .collect();
    let applied = tokio::task::spawn_blocking(move || {
        for user in fresh {
            storage.forget(&user);
        }
        for (user, quota, max_files) in quotas {
            if let Err(err) = storage.home(&user, quota, max_files) {
                warn!(user = %user, error = %err, "cannot open home");
            }
        }
    })
    .await;
    if let Err(err) = applied {
        warn!(error = %err, "applying quotas failed");
    }

    // A deleted account's sessions end now, not when they next log in.
    let mut ended = 0;
    for user in shared.sessions.users() {
        if new.get(&user).is_none() {
            for handle in shared.sessions.handles_of(&user) {
                ended += 1;
                let _ = handle
                    .disconnect(
                        Disconnect::ByApplication,
                        "account deleted".into(),
                        "en".into(),
                    )
                    .await;
            }
        }
    }
    let reloaded = match shared.accounts.kind() {
        StoreKind::UsersFile => "users file reloaded",
        StoreKind::Postgres => "accounts reloaded from PostgreSQL",
    };
    info!(
        target: "rsftpd::admin",
        users = new.len(),
        added = %added.join(","),
        removed = %removed.join(","),
        sessions_ended = ended,
        "{reloaded}"
    );
    Ok(())
}

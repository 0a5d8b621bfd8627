//! Reading the accounts: one query, every account with its keys and quota, checked as
//! strictly as `users.toml` is.

use tokio_postgres::GenericClient;
use tokio_postgres::Row;

use super::{PgError, query_failed};
use crate::auth::keys::AuthorizedKey;
use crate::auth::password::PasswordHash;
use crate::auth::users::{UserAccount, UserName, UsersConfig};

/// Every account with its keys in order; names in byte order, as users.toml lists them.
const ACCOUNTS: &str = "
    SELECT a.name, a.password_hash, a.max_sessions, a.max_files,
           coalesce(q.limit_bytes, 0) AS limit_bytes,
           coalesce(array_agg(k.line ORDER BY k.position, k.fingerprint)
                    FILTER (WHERE k.line IS NOT NULL), '{}') AS keys
      FROM accounts a
      LEFT JOIN quota q ON q.account = a.name
      LEFT JOIN account_keys k ON k.account = a.name
     GROUP BY a.name, q.limit_bytes
     ORDER BY a.name COLLATE \"C\"";

/// Every account. A row that does not make a valid account fails the whole load, as a
/// broken users.toml does: a server then keeps the accounts it has.
pub async fn load(client: &impl GenericClient, origin: &str) -> Result<UsersConfig, PgError> {
    let rows = client
        .query(ACCOUNTS, &[])
        .await
        .map_err(|e| query_failed(origin, e))?;
    let mut config = UsersConfig::default();
    for row in rows {
        let account = account(&row, origin)?;
        config.users.insert(account.name.clone(), account);
    }
    Ok(config)
}

fn account(row: &Row, origin: &str) -> Result<UserAccount, PgError> {
    let query = |source| query_failed(origin, source);
    let raw: String = row.try_get("name").map_err(query)?;
    let invalid = |problem: String| PgError::Invalid {
        origin: origin.to_owned(),
        user: raw.clone(),
        problem,
    };
    let name = UserName::try_from(raw.as_str()).map_err(|e| invalid(e.to_string()))?;
    let hash: Option<String> = row.try_get("password_hash").map_err(query)?;
    let password_hash = hash
        .map(|h| PasswordHash::parse(&h))
        .transpose()
        .map_err(|e| invalid(format!("password: {e}")))?;
    let lines: Vec<String> = row.try_get("keys").map_err(query)?;
    let mut keys = Vec::with_capacity(lines.len());
    for (index, line) in lines.iter().enumerate() {
        match AuthorizedKey::parse_line(line) {
            Ok(Some(key)) => keys.push(key),
            Ok(None) => {}
            Err(e) => return Err(invalid(format!("keys[{index}]: {e}"))),
        }
    }
    let limit: i64 = row.try_get("limit_bytes").map_err(query)?;
    let max_sessions: Option<i32> = row.try_get("max_sessions").map_err(query)?;
    let max_files: Option<i64> = row.try_get("max_files").map_err(query)?;
    Ok(UserAccount {
        name,
        password_hash,
        keys,
        quota: u64::try_from(limit).map_err(|_| invalid(format!("quota {limit} < 0")))?,
        max_sessions: max_sessions
            .map(|n| u32::try_from(n).map_err(|_| invalid(format!("max_sessions {n}"))))
            .transpose()?,
        max_files: max_files
            .map(|n| u64::try_from(n).map_err(|_| invalid(format!("max_files {n}"))))
            .transpose()?,
    })
}

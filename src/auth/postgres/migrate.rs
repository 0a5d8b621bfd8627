//! The schema, as versioned SQL migrations built into the binary.
//!
//! [`migrate`] takes a session-level advisory lock, so that nodes starting together
//! apply each migration once, in order, each in its own transaction, recorded in
//! `schema_version`. A database that has migrations this binary does not know was
//! set up by a newer rsftpd: it is left alone and start-up stops.

use tokio_postgres::Client;

use super::PgError;

/// One step of the schema.
pub struct Migration {
    pub version: i32,
    pub name: &'static str,
    pub sql: &'static str,
}

/// Every migration, oldest first. Versions are consecutive from 1.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "accounts",
        sql: include_str!("../../../migrations/001_accounts.sql"),
    },
    Migration {
        version: 2,
        name: "nodes",
        sql: include_str!("../../../migrations/002_nodes.sql"),
    },
    Migration {
        version: 3,
        name: "uploads",
        sql: include_str!("../../../migrations/003_uploads.sql"),
    },
    Migration {
        version: 4,
        name: "quota_settling",
        sql: include_str!("../../../migrations/004_quota_settling.sql"),
    },
];

/// The advisory lock that migrations run under ("rsftpd" in ASCII).
const MIGRATION_LOCK: i64 = 0x7273_6674_7064;

/// The schema version this binary was built for.
pub fn latest() -> i32 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// What [`migrate`] found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migrated {
    /// The version before.
    pub from: i32,
    /// The migrations applied now, by version and name.
    pub applied: Vec<(i32, &'static str)>,
}

impl Migrated {
    pub fn to(&self) -> i32 {
        self.applied.last().map_or(self.from, |&(v, _)| v)
    }
}

/// Brings the schema up to [`latest`], under the migration lock. Refuses a database
/// newer than this binary.
pub async fn migrate(client: &mut Client, origin: &str) -> Result<Migrated, PgError> {
    let db = |source| PgError::Query {
        origin: origin.to_owned(),
        source,
    };
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(db)?;
    let result = apply(client, origin).await;
    // Also released when the connection closes, which follows soon.
    let _ = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await;
    result
}

async fn apply(client: &mut Client, origin: &str) -> Result<Migrated, PgError> {
    let db = |source| PgError::Query {
        origin: origin.to_owned(),
        source,
    };
    // Quiet: "relation already exists, skipping" is the usual case, not news.
    client
        .batch_execute(
            "SET client_min_messages = warning;
             CREATE TABLE IF NOT EXISTS schema_version (
                 version integer PRIMARY KEY,
                 name text NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now()
             );
             RESET client_min_messages",
        )
        .await
        .map_err(db)?;
    let from: i32 = client
        .query_one("SELECT coalesce(max(version), 0) FROM schema_version", &[])
        .await
        .map_err(db)?
        .get(0);
    if from > latest() {
        return Err(PgError::NewerSchema {
            origin: origin.to_owned(),
            database: from,
            binary: latest(),
        });
    }
    let mut applied = Vec::new();
    for migration in MIGRATIONS.iter().filter(|m| m.version > from) {
        let failed = |source| PgError::Migration {
            origin: origin.to_owned(),
            version: migration.version,
            name: migration.name,
            source,
        };
        let tx = client.transaction().await.map_err(failed)?;
        tx.batch_execute(migration.sql).await.map_err(failed)?;
        tx.execute(
            "INSERT INTO schema_version (version, name) VALUES ($1, $2)",
            &[&migration.version, &migration.name],
        )
        .await
        .map_err(failed)?;
        tx.commit().await.map_err(failed)?;
        tracing::info!(
            target: "rsftpd::admin",
            database = %origin,
            version = migration.version,
            name = migration.name,
            "schema migration applied"
        );
        applied.push((migration.version, migration.name));
    }
    Ok(Migrated { from, applied })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_consecutive_and_match_the_file_names() {
        for (i, migration) in MIGRATIONS.iter().enumerate() {
            assert_eq!(migration.version as usize, i + 1);
            assert!(!migration.sql.trim().is_empty());
        }
        assert_eq!(latest(), MIGRATIONS.len() as i32);
    }
}

//! Accounts in PostgreSQL, shared by every rsftpd node of a cluster.
//!
//! - `target`: [`Target`], the connection string and password file, shown without the
//!   password;
//! - `migrate`: the schema as versioned SQL migrations (`migrations/NNN_name.sql`),
//!   applied under an advisory lock;
//! - `load`: one query that reads every account into a [`UsersConfig`];
//! - `store`: [`PgAccounts`], the [`AccountStore`](super::AccountStore) a server runs
//!   with: a cache kept fresh by `LISTEN/NOTIFY` and a periodic resync, and a watch on
//!   the connection so that logins fail closed while the database is away;
//! - `editor`: [`PgEditor`], the [`AccountEditor`](crate::admin::AccountEditor) behind
//!   `rsftpd user ...`, with `import` from a users.toml;
//! - `export`: any accounts written out as a users.toml;
//! - `leases`: [`Node`], this process in the cluster, and the session leases that
//!   make the session limits count every node;
//! - `ledger`: the statements of the shared quota ledger (reserve, grow, settle,
//!   reconcile, expire); `quota`: [`PgQuota`], the storage core's `ClusterQuota` over
//!   them, which grows one reservation per account in chunks and settles in the
//!   background;
//! - `uploads`: [`PgUploadStates`], the states of multipart uploads to the object
//!   store, behind the storage core's `UploadStateStore` seam, so that any node
//!   resumes an upload another began;
//! - `bans`: [`PgBans`], failed logins per peer and the bans they start, shared by
//!   every node (behind `auth::SharedBans`).
//!
//! The driver is `tokio-postgres` with a `deadpool-postgres` pool; this build speaks no
//! TLS to the database (`sslmode=disable` or `prefer`).

mod bans;
mod editor;
mod export;
mod leases;
mod ledger;
mod load;
mod migrate;
mod quota;
mod store;
mod target;
mod uploads;

use std::path::PathBuf;

use deadpool_postgres::Pool;

pub use bans::PgBans;
pub use editor::PgEditor;
pub use export::write_users_file;
pub use leases::{HEARTBEAT, LEASE, Lease, Node};
pub use ledger::{Reservation, ReserveError};
pub use migrate::{MIGRATIONS, Migrated, Migration, latest as latest_schema};
pub use quota::{CHUNK as QUOTA_CHUNK, PgQuota, SETTLE_EVERY};
pub use store::{PgAccounts, RESYNC};
pub use target::{CONNECT_TIMEOUT, Target};
pub use uploads::PgUploadStates;

use super::users::UsersConfig;

/// What went wrong with the database. Never shows a password.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PgError {
    #[error("cannot start the database client's runtime")]
    Runtime(#[source] std::io::Error),
    #[error("bad PostgreSQL connection string: {0}")]
    BadUrl(String),
    #[error("cannot read the database password file {}", path.display())]
    PasswordFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path}: mode {mode:04o} lets group or others read it; fix it with `chmod 600 {path}`",
        path = path.display()
    )]
    OpenPasswordFile { path: PathBuf, mode: u32 },
    #[error("cannot connect to PostgreSQL at {origin}")]
    Unreachable {
        origin: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("no connection to PostgreSQL at {origin}")]
    Pool {
        origin: String,
        #[source]
        source: deadpool_postgres::PoolError,
    },
    #[error("PostgreSQL at {origin} did not answer within {} s", CONNECT_TIMEOUT.as_secs())]
    Timeout { origin: String },
    #[error("query failed on PostgreSQL at {origin}")]
    Query {
        origin: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("migration {version:03}_{name} failed on {origin}")]
    Migration {
        origin: String,
        version: i32,
        name: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error(
        "the database {origin} has schema version {database}, newer than this rsftpd \
         knows (version {binary}): upgrade rsftpd, or point it at another database"
    )]
    NewerSchema {
        origin: String,
        database: i32,
        binary: i32,
    },
    #[error(
        "the database {origin} has schema version {database}, older than this rsftpd \
         needs (version {binary}): run `rsftpd db migrate`"
    )]
    OlderSchema {
        origin: String,
        database: i32,
        binary: i32,
    },
    #[error("{origin}: user {user:?}: {problem}")]
    Invalid {
        origin: String,
        user: String,
        problem: String,
    },
}

/// Opens one connection (not pooled), its driver task spawned on the current runtime.
async fn connect(target: &Target) -> Result<tokio_postgres::Client, PgError> {
    let origin = target.to_string();
    let connecting = target.config().connect(tokio_postgres::NoTls);
    let (client, connection) = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
        .await
        .map_err(|_| PgError::Timeout {
            origin: origin.clone(),
        })?
        .map_err(|source| PgError::Unreachable { origin, source })?;
    tokio::spawn(async move {
        // Ends when the client is dropped or the server goes away; the next use of
        // the client reports it.
        let _ = connection.await;
    });
    Ok(client)
}

/// A connection from `pool`, or why there is none, naming the database at `origin`.
async fn pooled(pool: &Pool, origin: &str) -> Result<deadpool_postgres::Object, PgError> {
    pool.get().await.map_err(|source| PgError::Pool {
        origin: origin.to_owned(),
        source,
    })
}

/// A statement (or the reading of its rows) that failed on the database at `origin`.
fn query_failed(origin: &str, source: tokio_postgres::Error) -> PgError {
    PgError::Query {
        origin: origin.to_owned(),
        source,
    }
}

/// Connects and brings the schema up to date: what a server does at start, and
/// `rsftpd db migrate`.
pub async fn connect_and_migrate(target: &Target) -> Result<Migrated, PgError> {
    let mut client = connect(target).await?;
    migrate::migrate(&mut client, &target.to_string()).await
}

/// Every account, read in one query.
pub async fn load_accounts(
    client: &impl tokio_postgres::GenericClient,
    origin: &str,
) -> Result<UsersConfig, PgError> {
    load::load(client, origin).await
}

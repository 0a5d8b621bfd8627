//! [`PgUploadStates`]: the states of multipart uploads to the object store, in
//! PostgreSQL (`upload_states`), so that an upload begun on one node of a cluster
//! resumes on any other, even after the first was killed.
//!
//! The storage core calls the [`UploadStateStore`] seam from blocking code, so each
//! call runs its statement on a small runtime of its own ([`Runner`]) and waits. A
//! save is one upsert, durable once PostgreSQL has committed it.

use std::sync::Arc;

use deadpool_postgres::Pool;
use tokio_postgres::Row;

use super::{PgError, Target, pooled, query_failed};
use crate::error_chain;
use crate::storage::object::{Runner, UploadState, UploadStateStore};
use crate::storage::{Result, StorageError, VirtualPath};

/// Connections kept for upload states: one per part saved at a time is plenty.
const POOL_SIZE: usize = 4;

/// Upload states in PostgreSQL; see the module docs.
pub struct PgUploadStates {
    origin: String,
    pool: Pool,
    runner: Runner,
}

impl std::fmt::Debug for PgUploadStates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgUploadStates")
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

impl PgUploadStates {
    /// Connects to `target`, whose schema must be up to date (the account store
    /// migrates it at start), and checks that the table answers.
    pub fn open(target: &Target) -> std::result::Result<Arc<PgUploadStates>, PgError> {
        let origin = target.to_string();
        let runner = Runner::new().map_err(PgError::Runtime)?;
        let pool = target.pool(POOL_SIZE)?;
        let states = PgUploadStates {
            origin,
            pool,
            runner,
        };
        states.runner.block_on(async {
            let client = pooled(&states.pool, &states.origin).await?;
            client
                .execute("SELECT 1 FROM upload_states LIMIT 1", &[])
                .await
                .map_err(|e| query_failed(&states.origin, e))
        })?;
        Ok(Arc::new(states))
    }

    /// Runs one statement's worth of work, its error as the storage core's.
    fn run<T: Send>(
        &self,
        work: impl Future<Output = std::result::Result<T, PgError>> + Send,
    ) -> Result<T> {
        self.runner.block_on(work).map_err(|err| {
            tracing::warn!(
                target: "rsftpd::admin",
                database = %self.origin,
                error = %error_chain(&err),
                "cannot reach the upload states in PostgreSQL"
            );
            StorageError::Io {
                path: VirtualPath::root(),
                source: std::io::Error::other(err),
            }
        })
    }
}

/// A row of `upload_states` as a state; `None` for one no server could have written.
fn state_of(row: &Row) -> Option<UploadState> {
    Some(UploadState {
        path: row.try_get("path").ok()?,
        upload_id: row.try_get("upload_id").ok()?,
        part_size: u64::try_from(row.try_get::<_, i64>("part_size").ok()?).ok()?,
        parts: row.try_get("parts").ok()?,
        md5_state: row.try_get("md5_state").ok()?,
        expected_md5: row.try_get("expected_md5").ok()?,
        updated: u64::try_from(row.try_get::<_, i64>("updated").ok()?).ok()?,
    })
}

const COLUMNS: &str = "path, upload_id, part_size, parts, md5_state, expected_md5, updated";

fn damaged() -> StorageError {
    StorageError::Invalid {
        path: VirtualPath::root(),
        reason: "the saved state of an upload is damaged",
    }
}

impl UploadStateStore for PgUploadStates {
    fn load(&self, user: &str, name: &str) -> Result<Option<UploadState>> {
        let row = self.run(async {
            let client = pooled(&self.pool, &self.origin).await?;
            client
                .query_opt(
                    &format!(
                        "SELECT {COLUMNS} FROM upload_states WHERE account = $1 AND name = $2"
                    ),
                    &[&user, &name],
                )
                .await
                .map_err(|e| query_failed(&self.origin, e))
        })?;
        match row {
            None => Ok(None),
            Some(row) => state_of(&row).map(Some).ok_or_else(damaged),
        }
    }

    fn save(&self, user: &str, name: &str, state: &UploadState) -> Result<()> {
        let part_size = i64::try_from(state.part_size).map_err(|_| damaged())?;
        let updated = i64::try_from(state.updated).map_err(|_| damaged())?;
        self.run(async {
            let client = pooled(&self.pool, &self.origin).await?;
            client
                .execute(
                    "INSERT INTO upload_states (account, name, path, upload_id, part_size, \
                     parts, md5_state, expected_md5, updated) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                     ON CONFLICT (account, name) DO UPDATE SET path = EXCLUDED.path, \
                     upload_id = EXCLUDED.upload_id, part_size = EXCLUDED.part_size, \
                     parts = EXCLUDED.parts, md5_state = EXCLUDED.md5_state, \
                     expected_md5 = EXCLUDED.expected_md5, updated = EXCLUDED.updated",
                    &[
                        &user,
                        &name,
                        &state.path,
                        &state.upload_id,
                        &part_size,
                        &state.parts,
                        &state.md5_state,
                        &state.expected_md5,
                        &updated,
                    ],
                )
                .await
                .map_err(|e| query_failed(&self.origin, e))
        })?;
        Ok(())
    }

    fn remove(&self, user: &str, name: &str) -> Result<bool> {
        let removed = self.run(async {
            let client = pooled(&self.pool, &self.origin).await?;
            client
                .execute(
                    "DELETE FROM upload_states WHERE account = $1 AND name = $2",
                    &[&user, &name],
                )
                .await
                .map_err(|e| query_failed(&self.origin, e))
        })?;
        Ok(removed > 0)
    }

    fn list(&self, user: &str) -> Result<Vec<(String, UploadState)>> {
        let rows = self.run(async {
            let client = pooled(&self.pool, &self.origin).await?;
            client
                .query(
                    &format!(
                        "SELECT name, {COLUMNS} FROM upload_states WHERE account = $1 \
                         ORDER BY name"
                    ),
                    &[&user],
                )
                .await
                .map_err(|e| query_failed(&self.origin, e))
        })?;
        let mut states = Vec::new();
        for row in &rows {
            match (row.try_get::<_, String>("name"), state_of(row)) {
                (Ok(name), Some(state)) => states.push((name, state)),
                _ => tracing::warn!(
                    target: "rsftpd::admin",
                    user,
                    database = %self.origin,
                    "ignoring a damaged upload state"
                ),
            }
        }
        Ok(states)
    }
}

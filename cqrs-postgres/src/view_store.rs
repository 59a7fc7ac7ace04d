//! [`PgViewStore`]: views and checkpoints on PostgreSQL.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use cqrs_core::{DeadLetter, Error as CoreError, Position, ViewCommit, ViewStore};
use deadpool_postgres::Pool;
use tokio_postgres::error::SqlState;
use tracing::Instrument;

use crate::PgEventStore;
use crate::connect::unavailable;
use crate::schema::Sql;

/// A [`ViewStore`] on PostgreSQL: views as `jsonb` rows, and a batch's views written in the same
/// transaction as the projection's checkpoint, after checking the checkpoint and the fencing
/// token (one round-trip).
///
/// # Examples
///
/// ```no_run
/// use cqrs_core::{Projector, ViewReader};
/// use cqrs_postgres::{PgConfig, PgEventStore, PgViewStore};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let store = PgEventStore::connect(PgConfig::from_url("postgres://localhost/app")?).await?;
/// store.migrate().await?;
/// let views = PgViewStore::new(&store);
/// let projector = Projector::new(store.clone(), views.clone());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PgViewStore {
    pool: Pool,
    sql: Arc<Sql>,
}

impl std::fmt::Debug for PgViewStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgViewStore").field("schema", &self.sql.schema).finish()
    }
}

impl PgViewStore {
    /// Views in the schema of `store`, on its pool.
    pub fn new(store: &PgEventStore) -> Self {
        PgViewStore { pool: store.pool().clone(), sql: store.sql().clone() }
    }
}

fn pg(e: tokio_postgres::Error) -> CoreError {
    if matches!(e.code(), Some(c) if *c == SqlState::INVALID_TEXT_REPRESENTATION || *c == SqlState::UNTRANSLATABLE_CHARACTER)
    {
        return CoreError::InvalidEvent {
            reason: e.as_db_error().map(|d| d.message().to_owned()).unwrap_or_else(|| e.to_string()),
        };
    }
    crate::connect::pg_error(e)
}

fn position(tx: Option<&str>, sequence: Option<i64>) -> cqrs_core::Result<Option<Position>> {
    match (tx, sequence) {
        (Some(tx), Some(sequence)) => {
            let bad = || CoreError::unavailable_msg(format!("corrupt checkpoint {tx}.{sequence}"));
            Ok(Some(Position::new(tx.parse().map_err(|_| bad())?, u64::try_from(sequence).map_err(|_| bad())?)))
        }
        _ => Ok(None),
    }
}

fn parts(position: Option<Position>) -> cqrs_core::Result<(Option<String>, Option<i64>)> {
    match position {
        None => Ok((None, None)),
        Some(p) => Ok((
            Some(p.transaction().to_string()),
            Some(i64::try_from(p.sequence()).map_err(|_| CoreError::InvalidPosition(p.to_string()))?),
        )),
    }
}

fn token(value: u64) -> cqrs_core::Result<i64> {
    i64::try_from(value).map_err(|_| CoreError::InvalidId { what: "fencing token", reason: "out of range".into() })
}

#[async_trait]
impl ViewStore for PgViewStore {
    async fn load_views(&self, projection: &str, ids: &[String]) -> cqrs_core::Result<Vec<Option<String>>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let client = self.pool.get().await.map_err(unavailable)?;
        let stmt = client.prepare_cached(&self.sql.load_views).await.map_err(pg)?;
        let rows = client.query(&stmt, &[&projection, &ids]).await.map_err(pg)?;
        let mut found: HashMap<String, String> = HashMap::with_capacity(rows.len());
        for row in rows {
            found.insert(row.try_get(0).map_err(pg)?, row.try_get(1).map_err(pg)?);
        }
        Ok(ids.iter().map(|id| found.get(id).cloned()).collect())
    }

    async fn checkpoint(&self, projection: &str) -> cqrs_core::Result<Option<Position>> {
        let client = self.pool.get().await.map_err(unavailable)?;
        let stmt = client.prepare_cached(&self.sql.checkpoint).await.map_err(pg)?;
        match client.query_opt(&stmt, &[&projection]).await.map_err(pg)? {
            None => Ok(None),
            Some(row) => position(row.try_get(0).map_err(pg)?, row.try_get(1).map_err(pg)?),
        }
    }

    async fn commit(&self, projection: &str, commit: ViewCommit) -> cqrs_core::Result<()> {
        let span =
            tracing::debug_span!("projection_commit", store = "postgres", projection, views = commit.views.len());
        self.commit_inner(projection, commit).instrument(span).await
    }

    async fn dead_letters(&self, projection: &str) -> cqrs_core::Result<Vec<DeadLetter>> {
        let client = self.pool.get().await.map_err(unavailable)?;
        let stmt = client.prepare_cached(&self.sql.dead_letters).await.map_err(pg)?;
        let rows = client.query(&stmt, &[&projection]).await.map_err(pg)?;
        rows.iter()
            .map(|row| {
                let json: &str = row.try_get(0).map_err(pg)?;
                serde_json::from_str(json).map_err(|source| CoreError::Serde { what: "dead letter".into(), source })
            })
            .collect()
    }

    async fn reset(&self, projection: &str, fencing_token: u64) -> cqrs_core::Result<()> {
        let client = self.pool.get().await.map_err(unavailable)?;
        let stmt = client.prepare_cached(&self.sql.reset_views).await.map_err(pg)?;
        let row = client.query_one(&stmt, &[&projection, &token(fencing_token)?]).await.map_err(pg)?;
        match row.try_get::<_, i32>(0).map_err(pg)? {
            0 => Ok(()),
            _ => Err(CoreError::Fenced {
                projection: projection.to_owned(),
                token: fencing_token,
                highest: u64::try_from(row.try_get::<_, i64>(1).map_err(pg)?).unwrap_or(0),
            }),
        }
    }
}

impl PgViewStore {
    async fn commit_inner(&self, projection: &str, commit: ViewCommit) -> cqrs_core::Result<()> {
        let (expected_tx, expected_seq) = parts(commit.expected)?;
        let (checkpoint_tx, checkpoint_seq) = parts(Some(commit.checkpoint))?;
        let fencing = token(commit.fencing_token)?;
        let (ids, views): (Vec<String>, Vec<Option<String>>) = commit.views.into_iter().unzip();
        let dead_letters = commit
            .dead_letters
            .iter()
            .map(serde_json::to_string)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| CoreError::Serde { what: "dead letter".into(), source })?;
        let client = self.pool.get().await.map_err(unavailable)?;
        let stmt = client.prepare_cached(&self.sql.commit_views).await.map_err(pg)?;
        let row = client
            .query_one(
                &stmt,
                &[
                    &projection,
                    &expected_tx,
                    &expected_seq,
                    &checkpoint_tx,
                    &checkpoint_seq,
                    &fencing,
                    &ids,
                    &views,
                    &dead_letters,
                ],
            )
            .await
            .map_err(pg)?;
        match row.try_get::<_, i32>(0).map_err(pg)? {
            0 => Ok(()),
            1 => Err(CoreError::CheckpointMoved {
                projection: projection.to_owned(),
                expected: commit.expected,
                actual: position(row.try_get(1).map_err(pg)?, row.try_get(2).map_err(pg)?)?,
            }),
            _ => Err(CoreError::Fenced {
                projection: projection.to_owned(),
                token: commit.fencing_token,
                highest: u64::try_from(row.try_get::<_, i64>(3).map_err(pg)?).unwrap_or(0),
            }),
        }
    }
}

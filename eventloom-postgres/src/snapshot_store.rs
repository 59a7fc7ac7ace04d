//! [`PgSnapshotStore`]: snapshots on PostgreSQL.

use async_trait::async_trait;
use deadpool_postgres::Pool;
use eventloom_core::{Error as CoreError, Snapshot, SnapshotStore, StreamId};

use crate::PgEventStore;
use crate::connect::{pg_error as pg, unavailable};
use crate::schema::Sql;

/// A [`SnapshotStore`] on PostgreSQL, in the event store's schema (one row per stream; a
/// snapshot at a lower version never replaces a higher one).
///
/// # Examples
///
/// ```no_run
/// use eventloom_core::{Cqrs, SnapshotPolicy};
/// use eventloom_postgres::{PgConfig, PgEventStore, PgSnapshotStore};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let store = PgEventStore::connect(PgConfig::from_url("postgres://localhost/app")?).await?;
/// store.migrate().await?;
/// let snapshots = PgSnapshotStore::new(&store);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PgSnapshotStore {
    pool: Pool,
    sql: std::sync::Arc<Sql>,
}

impl std::fmt::Debug for PgSnapshotStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgSnapshotStore").field("schema", &self.sql.schema).finish()
    }
}

impl PgSnapshotStore {
    /// Snapshots in the schema of `store`, on its pool.
    pub fn new(store: &PgEventStore) -> Self {
        PgSnapshotStore { pool: store.pool().clone(), sql: store.sql().clone() }
    }
}

#[async_trait]
impl SnapshotStore for PgSnapshotStore {
    async fn load_snapshot(&self, stream: &StreamId) -> eventloom_core::Result<Option<Snapshot>> {
        let client = self.pool.get().await.map_err(unavailable)?;
        let stmt = client.prepare_cached(&self.sql.load_snapshot).await.map_err(pg)?;
        let Some(row) = client.query_opt(&stmt, &[&stream.category(), &stream.id()]).await.map_err(pg)? else {
            return Ok(None);
        };
        let at = || format!("snapshot of stream {stream}");
        let bad = |reason: String| CoreError::Corrupt { location: at(), reason };
        let get = |index: usize| {
            let name = row.columns().get(index).map_or("?", |c| c.name()).to_owned();
            move |e: tokio_postgres::Error| bad(format!("column {name}: {e}"))
        };
        let version: i64 = row.try_get(0).map_err(get(0))?;
        let tx: &str = row.try_get(1).map_err(get(1))?;
        let sequence: i64 = row.try_get(2).map_err(get(2))?;
        let snapshot_version: i32 = row.try_get(3).map_err(get(3))?;
        Ok(Some(Snapshot {
            stream: stream.clone(),
            version: u64::try_from(version).map_err(|_| bad(format!("negative version {version}")))?,
            position: eventloom_core::Position::new(
                tx.parse().map_err(|_| bad(format!("unparsable transaction id {tx:?}")))?,
                u64::try_from(sequence).map_err(|_| bad(format!("negative sequence {sequence}")))?,
            ),
            snapshot_version: u32::try_from(snapshot_version)
                .map_err(|_| bad(format!("negative snapshot version {snapshot_version}")))?,
            state: row.try_get(4).map_err(get(4))?,
        }))
    }

    async fn save_snapshot(&self, snapshot: Snapshot) -> eventloom_core::Result<()> {
        let client = self.pool.get().await.map_err(unavailable)?;
        let stmt = client.prepare_cached(&self.sql.save_snapshot).await.map_err(pg)?;
        let out_of_range = |what| CoreError::InvalidId { what, reason: "out of range".into() };
        let version = i64::try_from(snapshot.version).map_err(|_| out_of_range("snapshot version"))?;
        let sequence = i64::try_from(snapshot.position.sequence()).map_err(|_| out_of_range("position"))?;
        let snapshot_version =
            i32::try_from(snapshot.snapshot_version).map_err(|_| out_of_range("snapshot version"))?;
        client
            .execute(
                &stmt,
                &[
                    &snapshot.stream.category(),
                    &snapshot.stream.id(),
                    &version,
                    &snapshot.position.transaction().to_string(),
                    &sequence,
                    &snapshot_version,
                    &snapshot.state,
                ],
            )
            .await
            .map_err(pg)?;
        Ok(())
    }
}

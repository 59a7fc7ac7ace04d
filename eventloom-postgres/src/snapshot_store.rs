//! [`PgSnapshotStore`]: snapshots on PostgreSQL.

use eventloom_core::store::BoxFuture;
use eventloom_core::{
    Error as CoreError, StreamId,
    store::{Snapshot, SnapshotStore},
};

use crate::PgEventStore;
use crate::db::{Db, Fields};
use crate::schema::Sql;

/// A [`SnapshotStore`] on PostgreSQL, in the event store's schema (one row per stream; a
/// snapshot at a lower version never replaces a higher one).
///
/// # Examples
///
/// ```no_run
/// use eventloom_core::{write::{Cqrs, SnapshotPolicy}};
/// use eventloom_postgres::{PgConfig, PgEventStore, PgSnapshotStore};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let store = PgEventStore::connect(PgConfig::from_url("postgres://localhost/app")?).await?;
/// store.migrate().await?;
/// let snapshots = PgSnapshotStore::new(&store);
/// # Ok(()) }
/// ```
///
/// With a read replica ([`PgConfig::read_replica`](crate::PgConfig::read_replica)) snapshots
/// are loaded from the replica and saved on the primary (where the check that keeps the newer
/// one runs). A snapshot is saved after the events it covers committed, so the replica, which
/// replays in commit order, never shows a snapshot newer than its events.
#[derive(Clone)]
pub struct PgSnapshotStore {
    /// Where snapshots are saved: the primary.
    db: Db,
    /// Where snapshots are loaded: the read replica, or the primary without one.
    reader: Db,
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
        PgSnapshotStore { db: store.db().clone(), reader: store.reader().clone(), sql: store.sql().clone() }
    }
}

impl SnapshotStore for PgSnapshotStore {
    fn load_snapshot<'a>(&'a self, stream: &'a StreamId) -> BoxFuture<'a, eventloom_core::Result<Option<Snapshot>>> {
        Box::pin(async move {
            let Some(row) = self.reader.query_opt(&self.sql.load_snapshot, &[&stream.category(), &stream.id()]).await?
            else {
                return Ok(None);
            };
            let row = Fields::new(&row, || format!("snapshot of stream {stream}"));
            Ok(Some(Snapshot {
                stream: stream.clone(),
                version: row.unsigned("version")?,
                position: row.position("transaction_id", "sequence")?,
                snapshot_version: row.unsigned_int("snapshot_version")?,
                state: row.get("state")?,
            }))
        })
    }

    fn save_snapshot<'a>(&'a self, snapshot: Snapshot) -> BoxFuture<'a, eventloom_core::Result<()>> {
        Box::pin(async move {
            let out_of_range = |what| CoreError::InvalidId { what, reason: "out of range".into() };
            let version = i64::try_from(snapshot.version).map_err(|_| out_of_range("snapshot version"))?;
            let sequence = i64::try_from(snapshot.position.sequence()).map_err(|_| out_of_range("position"))?;
            let snapshot_version =
                i32::try_from(snapshot.snapshot_version).map_err(|_| out_of_range("snapshot version"))?;
            self.db
                .execute(
                    &self.sql.save_snapshot,
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
                .await?;
            Ok(())
        })
    }
}

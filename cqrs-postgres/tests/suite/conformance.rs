use cqrs_core::testing::{event_store, snapshot_store};
use cqrs_postgres::PgSnapshotStore;

use crate::support::store;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pg_event_store_conforms() {
    event_store::run(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pg_snapshot_store_conforms() {
    snapshot_store::run(|| async { PgSnapshotStore::new(&store().await) }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pg_stores_refuse_non_finite_floats() {
    let events = store().await;
    cqrs_core::testing::encoding::run(events.clone(), PgSnapshotStore::new(&events)).await;
}

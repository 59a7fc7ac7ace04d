use eventloom_core::testing::{event_store, lease, snapshot_store};
use eventloom_postgres::{PgLeases, PgSnapshotStore};

use crate::support::{database_url, raw, store};

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
    eventloom_core::testing::encoding::run(events.clone(), PgSnapshotStore::new(&events)).await;
}

/// The advisory lock key of a lease, as `PgLeases` computes it (FNV-1a of `schema/name`), as
/// the two halves `pg_locks` shows.
fn lock_key(schema: &str, name: &str) -> (i64, i64) {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in schema.bytes().chain(std::iter::once(b'/')).chain(name.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (i64::from(u32::try_from(hash >> 32).unwrap()), i64::from(u32::try_from(hash & 0xffff_ffff).unwrap()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pg_leases_conform() {
    // One schema for every case (their lease names differ); a lease is lost as when its
    // session ends: the holder's backend is terminated.
    let events = store().await;
    let schema = events.config().schema_name().to_owned();
    let make = || {
        let leases = PgLeases::new(&events).with_check_interval(std::time::Duration::from_millis(100));
        async move { leases }
    };
    let lose = |_: PgLeases, name: String| {
        let schema = schema.clone();
        async move {
            let (high, low) = lock_key(&schema, &name);
            let ended: i64 = raw(&database_url())
                .await
                .query_one(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_locks WHERE locktype = 'advisory' AND granted \
                     AND classid::bigint = $1 AND objid::bigint = $2 AND objsubid = 1",
                    &[&high, &low],
                )
                .await
                .unwrap()
                .get(0);
            assert_eq!(ended, 1, "one session held the lease {name:?}");
        }
    };
    lease::run(make, lose).await;
}

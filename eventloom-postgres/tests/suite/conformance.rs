use eventloom_core::store::LeaseManager;
use eventloom_core::testing::{event_store, lease, snapshot_store};
use eventloom_postgres::{PgLeases, PgSnapshotStore};

use crate::support::{database_url, raw, store};

async fn pg_event_store_conforms(combining: bool) {
    event_store::run(|| crate::support::store_with(combining)).await;
}
with_and_without_combining!(pg_event_store_conforms, flavor = "multi_thread", worker_threads = 4);

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

/// The sessions of the server whose `application_name` is `name`.
async fn sessions_named(admin: &tokio_postgres::Client, name: &str) -> i64 {
    admin.query_one("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", &[&name]).await.unwrap().get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_try_acquire_that_finds_the_lease_held_closes_its_connection() {
    // Every connection of this store, and of its leases, carries a name of its own.
    let name = format!("try_{}", crate::support::fresh_schema());
    let url =
        format!("{}{}application_name={name}", database_url(), if database_url().contains('?') { '&' } else { '?' });
    let events = crate::support::store_at(&url).await;
    let leases = PgLeases::new(&events);
    let admin = raw(&database_url()).await;
    let held = leases.acquire("busy").await.unwrap();
    let before = sessions_named(&admin, &name).await;
    for _ in 0..5 {
        assert!(leases.try_acquire("busy").await.unwrap().is_none(), "held");
    }
    // A closed session leaves pg_stat_activity within moments.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while sessions_named(&admin, &name).await > before {
        assert!(std::time::Instant::now() < deadline, "the sessions of the tries that found the lease held stayed");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(!held.is_lost(), "a try takes nothing from the holder");
    let token = held.token();
    drop(held);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let taken = loop {
        if let Some(lease) = leases.try_acquire("busy").await.unwrap() {
            break lease;
        }
        assert!(std::time::Instant::now() < deadline, "the released lease was never free");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert!(taken.token() > token);
    assert_eq!(sessions_named(&admin, &name).await, before, "the try that took the lease holds its session");
}

use cqrs_core::testing::{event_store, lease, snapshot_store, view_store};
use cqrs_core::{MemoryEventStore, MemoryLeases, MemorySnapshotStore, MemoryViewStore};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_event_store_conforms() {
    event_store::run(|| async { MemoryEventStore::new() }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_snapshot_store_conforms() {
    snapshot_store::run(|| async { MemorySnapshotStore::default() }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_view_store_conforms() {
    view_store::run(|| async { MemoryViewStore::default() }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_leases_conform() {
    lease::run(
        || async { MemoryLeases::default() },
        |leases: MemoryLeases, name: String| async move { leases.revoke(&name) },
    )
    .await;
}

#[tokio::test]
async fn memory_event_store_refuses_oversized_events() {
    use cqrs_core::{Error, EventStore, ExpectedVersion, StreamId};
    let store = MemoryEventStore::with_max_event_size(100);
    let stream = StreamId::new("t", "1").unwrap();
    let mut big = cqrs_core::testing::test_event(1);
    big.payload = format!(r#"{{"s":"{}"}}"#, "x".repeat(200));
    let small = cqrs_core::testing::test_event(2);
    match store.append(&stream, ExpectedVersion::Any, vec![small, big]).await {
        Err(Error::PayloadTooLarge { limit: 100, size }) => assert!(size > 200),
        other => panic!("expected PayloadTooLarge, got {other:?}"),
    }
    assert!(store.is_empty(), "nothing of the refused append was written");
}

use cqrs_core::testing::{encoding, event_store, lease, projector, snapshot_store, view_store};
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
async fn memory_stores_refuse_non_finite_floats() {
    encoding::run(MemoryEventStore::new(), MemorySnapshotStore::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn projector_over_memory_views_conforms() {
    projector::run(|| async { MemoryViewStore::default() }).await;
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

/// A store that keeps `EventStore::count_after`'s default (paging through `read_all`).
#[derive(Clone)]
struct DefaultCount(MemoryEventStore);

#[cqrs_core::async_trait]
impl cqrs_core::EventStore for DefaultCount {
    async fn append(
        &self,
        stream: &cqrs_core::StreamId,
        expected: cqrs_core::ExpectedVersion,
        events: Vec<cqrs_core::NewEvent>,
    ) -> cqrs_core::Result<cqrs_core::AppendOutcome> {
        self.0.append(stream, expected, events).await
    }
    async fn read_stream(
        &self,
        stream: &cqrs_core::StreamId,
        from: u64,
        limit: usize,
    ) -> cqrs_core::Result<Vec<cqrs_core::RecordedEvent>> {
        self.0.read_stream(stream, from, limit).await
    }
    async fn read_all(
        &self,
        after: cqrs_core::Position,
        limit: usize,
    ) -> cqrs_core::Result<Vec<cqrs_core::RecordedEvent>> {
        self.0.read_all(after, limit).await
    }
    async fn stream_version(&self, stream: &cqrs_core::StreamId) -> cqrs_core::Result<u64> {
        self.0.stream_version(stream).await
    }
    async fn head(&self) -> cqrs_core::Result<Option<cqrs_core::Position>> {
        self.0.head().await
    }
    async fn command_outcome(&self, id: &str) -> cqrs_core::Result<Option<cqrs_core::AppendOutcome>> {
        self.0.command_outcome(id).await
    }
    async fn record_command(&self, id: &str, outcome: cqrs_core::AppendOutcome) -> cqrs_core::Result<()> {
        self.0.record_command(id, outcome).await
    }
}

#[tokio::test]
async fn the_default_count_after_counts_up_to_its_cap_across_pages() {
    use cqrs_core::{EventStore, ExpectedVersion, Position, StreamId};
    let store = DefaultCount(MemoryEventStore::new());
    event_store::head_and_count(store.clone()).await;
    let stream = StreamId::new("t", "many").unwrap();
    store
        .append(&stream, ExpectedVersion::Any, (0..2_500).map(cqrs_core::testing::test_event).collect())
        .await
        .unwrap();
    assert_eq!(store.count_after(Position::ZERO, 10_000).await.unwrap(), 2_505, "over several pages");
    assert_eq!(store.count_after(Position::ZERO, 1_001).await.unwrap(), 1_001);
}

use eventloom_core::memory::{MemoryEventStore, MemoryLeases, MemorySnapshotStore, MemoryViewStore};
use eventloom_core::store::BoxFuture;
use eventloom_core::testing::{encoding, event_store, lease, projector, snapshot_store, view_store};

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
    use eventloom_core::{Error, StreamId, model::ExpectedVersion, store::EventStore};
    let store = MemoryEventStore::with_max_event_size(100);
    let stream = StreamId::new("t", "1").unwrap();
    let mut big = eventloom_core::testing::test_event(1);
    big.payload = format!(r#"{{"s":"{}"}}"#, "x".repeat(200));
    let small = eventloom_core::testing::test_event(2);
    match store.append(&stream, ExpectedVersion::Any, vec![small, big]).await {
        Err(Error::PayloadTooLarge { limit: 100, size }) => assert!(size > 200),
        other => panic!("expected PayloadTooLarge, got {other:?}"),
    }
    assert!(store.is_empty(), "nothing of the refused append was written");
}

/// A store that keeps `EventStore::count_after`'s default (paging through `read_all`).
#[derive(Clone)]
struct DefaultCount(MemoryEventStore);

impl eventloom_core::store::EventStore for DefaultCount {
    fn append<'a>(
        &'a self,
        stream: &'a eventloom_core::StreamId,
        expected: eventloom_core::model::ExpectedVersion,
        events: Vec<eventloom_core::model::NewEvent>,
    ) -> BoxFuture<'a, eventloom_core::Result<eventloom_core::store::Appended>> {
        Box::pin(async move { self.0.append(stream, expected, events).await })
    }
    fn append_command<'a>(
        &'a self,
        stream: &'a eventloom_core::StreamId,
        expected: eventloom_core::model::ExpectedVersion,
        events: Vec<eventloom_core::model::NewEvent>,
        print: &'a eventloom_core::store::CommandEntry,
    ) -> BoxFuture<'a, eventloom_core::Result<eventloom_core::store::Appended>> {
        Box::pin(async move { self.0.append_command(stream, expected, events, print).await })
    }
    fn read_stream<'a>(
        &'a self,
        stream: &'a eventloom_core::StreamId,
        from: u64,
        limit: usize,
    ) -> BoxFuture<'a, eventloom_core::Result<Vec<eventloom_core::model::RecordedEvent>>> {
        Box::pin(async move { self.0.read_stream(stream, from, limit).await })
    }
    fn read_all<'a>(
        &'a self,
        after: eventloom_core::Position,
        limit: usize,
    ) -> BoxFuture<'a, eventloom_core::Result<Vec<eventloom_core::model::RecordedEvent>>> {
        Box::pin(async move { self.0.read_all(after, limit).await })
    }
    fn stream_version<'a>(
        &'a self,
        stream: &'a eventloom_core::StreamId,
    ) -> BoxFuture<'a, eventloom_core::Result<u64>> {
        Box::pin(async move { self.0.stream_version(stream).await })
    }
    fn head<'a>(&'a self) -> BoxFuture<'a, eventloom_core::Result<Option<eventloom_core::Position>>> {
        Box::pin(async move { self.0.head().await })
    }
    fn command_outcome<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, eventloom_core::Result<Option<eventloom_core::store::CommandRecord>>> {
        Box::pin(async move { self.0.command_outcome(id).await })
    }
    fn record_command<'a>(
        &'a self,
        id: &'a str,
        record: eventloom_core::store::CommandRecord,
    ) -> BoxFuture<'a, eventloom_core::Result<Option<eventloom_core::store::CommandRecord>>> {
        Box::pin(async move { self.0.record_command(id, record).await })
    }
    fn expire_commands<'a>(
        &'a self,
        before: eventloom_core::model::Timestamp,
        limit: usize,
    ) -> eventloom_core::store::BoxFuture<'a, eventloom_core::Result<u64>> {
        self.0.expire_commands(before, limit)
    }
    fn forget_commands<'a>(
        &'a self,
        ids: &'a [String],
    ) -> eventloom_core::store::BoxFuture<'a, eventloom_core::Result<u64>> {
        self.0.forget_commands(ids)
    }
}

#[tokio::test]
async fn the_default_count_after_counts_up_to_its_cap_across_pages() {
    use eventloom_core::{Position, StreamId, model::ExpectedVersion, store::EventStore};
    let store = DefaultCount(MemoryEventStore::new());
    event_store::head_and_count(store.clone()).await;
    let stream = StreamId::new("t", "many").unwrap();
    store
        .append(&stream, ExpectedVersion::Any, (0..2_500).map(eventloom_core::testing::test_event).collect())
        .await
        .unwrap();
    assert_eq!(store.count_after(Position::ZERO, 10_000).await.unwrap(), 2_505, "over several pages");
    assert_eq!(store.count_after(Position::ZERO, 1_001).await.unwrap(), 1_001);
}

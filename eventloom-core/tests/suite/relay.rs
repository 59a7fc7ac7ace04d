//! Relays: another service's events appended here once each, resumed after a restart, and
//! refused when they would join this service's own streams; their lease, position and lag in
//! the status; feeds whose sequences go back, repeat or skip.

use std::sync::Arc;
use std::time::Duration;

use eventloom_core::app::{LeaseState, RELAYED_FROM, RunState, SOURCE_SEQUENCE};
use eventloom_core::memory::{MemoryEventStore, MemoryLeases, MemoryViewStore};
use eventloom_core::model::{ExpectedVersion, NewEvent, RecordedEvent, Timestamp};
use eventloom_core::prelude::*;
use eventloom_core::read::{Feed, FeedReader};
use eventloom_core::store::{BoxFuture, EventStore};
use eventloom_core::{App, Error, MemoryStores, Position, Stores};
use tokio::sync::watch;

use crate::saga::{Order, Stock};

fn added(qty: u64) -> NewEvent {
    let metadata = Metadata::default().with_command_id(format!("add-{qty}")).with_correlation_id("c-1");
    NewEvent {
        event_type: "Added".into(),
        schema_version: 1,
        payload: format!(r#"{{"Added":{{"qty":{qty}}}}}"#),
        metadata,
    }
}

async fn local_events(stores: &MemoryStores, id: &str) -> Vec<eventloom_core::model::RecordedEvent> {
    stores.events.read_stream(&StreamId::new("stock", id).unwrap(), 1, 100).await.unwrap()
}

async fn until_local(stores: &MemoryStores, id: &str, n: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while local_events(stores, id).await.len() < n {
        assert!(std::time::Instant::now() < deadline, "stock/{id} has fewer than {n} events after 10 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn a_relay_appends_each_event_once_across_restarts() {
    let source = MemoryEventStore::new();
    let apple = StreamId::new("stock", "apple").unwrap();
    for qty in 1..=3 {
        source.append(&apple, ExpectedVersion::Any, vec![added(qty)]).await.unwrap();
    }
    let stores = MemoryStores::new();
    let app =
        App::builder(stores.clone()).aggregate::<Order>().relay("inventory", source.clone()).start().await.unwrap();
    until_local(&stores, "apple", 3).await;
    app.shutdown().await.unwrap();
    drop(app);
    for qty in 4..=5 {
        source.append(&apple, ExpectedVersion::Any, vec![added(qty)]).await.unwrap();
    }
    let again =
        App::builder(stores.clone()).aggregate::<Order>().relay("inventory", source.clone()).start().await.unwrap();
    until_local(&stores, "apple", 5).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let local = local_events(&stores, "apple").await;
    assert_eq!(local.len(), 5, "each once");
    for (n, event) in local.iter().enumerate() {
        let metadata = event.metadata.get().unwrap();
        assert_eq!(metadata.headers.get(RELAYED_FROM).map(String::as_str), Some("inventory"));
        assert_eq!(metadata.headers.get(SOURCE_SEQUENCE).map(String::as_str), Some((n + 1).to_string().as_str()));
        assert_eq!(metadata.correlation_id.as_deref(), Some("c-1"), "the chain of causes crosses services");
        assert_eq!(metadata.command_id, None, "the source's command id means nothing here");
        assert!(event.payload.contains(&format!(r#""qty":{}"#, n + 1)), "in order");
    }
    assert_eq!(stores.events.relayed("inventory").await.unwrap(), 5);
    assert!(again.status().relays[0].state.is_running());
    again.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_relayed_event_of_an_own_category_stops_the_relay() {
    let source = MemoryEventStore::new();
    source.append(&StreamId::new("stock", "pear").unwrap(), ExpectedVersion::Any, vec![added(1)]).await.unwrap();
    let stores = MemoryStores::new();
    let app = App::builder(stores.clone()).aggregate::<Stock>().relay("inventory", source).start().await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let RunState::Failed(error) = &app.status().relays[0].state {
            assert!(error.to_string().contains("own aggregates"), "{error}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the relay did not stop");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(!app.status().is_healthy());
    assert!(local_events(&stores, "pear").await.is_empty(), "nothing joined the own stream");
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_source_relayed_twice_or_badly_named_is_refused() {
    let source = MemoryEventStore::new();
    let twice = App::builder(MemoryStores::new()).relay("a", source.clone()).relay("a", source.clone()).start().await;
    assert!(matches!(twice, Err(eventloom_core::Error::InvalidConfig { .. })));
    let bad = App::builder(MemoryStores::new()).relay("", source).start().await;
    assert!(matches!(bad, Err(eventloom_core::Error::InvalidConfig { .. })));
}

/// A source's messages as a bus consumer gives them: positions `Position::new(0, sequence)`, in
/// the batches scripted (whatever position a read starts after, as a feed that misbehaves
/// might), each written at `written`. Readers give only the batches `open` lets through, then
/// wait.
#[derive(Clone)]
struct Scripted {
    batches: Arc<Vec<Vec<u64>>>,
    written: Timestamp,
    open: watch::Receiver<usize>,
}

impl Scripted {
    /// A feed of `batches`, `open` of them readable at once; the sender opens more.
    fn new(batches: Vec<Vec<u64>>, open: usize, age: Duration) -> (Self, watch::Sender<usize>) {
        let (opener, open) = watch::channel(open);
        let age = i64::try_from(age.as_micros()).unwrap();
        let written = Timestamp::from_micros(Timestamp::now().as_micros() - age);
        (Scripted { batches: Arc::new(batches), written, open }, opener)
    }

    fn message(&self, sequence: u64) -> RecordedEvent {
        let mut metadata = Metadata::default();
        metadata.timestamp = self.written;
        RecordedEvent {
            stream: StreamId::new("parcel", "p-1").unwrap(),
            version: sequence,
            position: Position::new(0, sequence),
            event_type: "Scanned".into(),
            schema_version: 1,
            payload: format!(r#"{{"n":{sequence}}}"#).into(),
            metadata: metadata.into(),
        }
    }

    fn sequences(&self) -> impl Iterator<Item = u64> + '_ {
        self.batches.iter().flatten().copied()
    }
}

struct ScriptedReader {
    feed: Scripted,
    next: usize,
}

impl Feed for Scripted {
    type Reader = ScriptedReader;

    fn read_after(&self, _after: Position, _batch_size: usize, _batch_bytes: usize) -> ScriptedReader {
        ScriptedReader { feed: self.clone(), next: 0 }
    }

    fn count_after<'a>(&'a self, after: Position, cap: u64) -> BoxFuture<'a, eventloom_core::Result<u64>> {
        let count = self.sequences().filter(|&s| s > after.sequence()).count() as u64;
        Box::pin(async move { Ok(count.min(cap)) })
    }

    fn first_written_after<'a>(&'a self, after: Position) -> BoxFuture<'a, eventloom_core::Result<Option<Timestamp>>> {
        let any = self.sequences().any(|s| s > after.sequence());
        let written = self.written;
        Box::pin(async move { Ok(any.then_some(written)) })
    }
}

impl FeedReader for ScriptedReader {
    fn try_next_batch<'a>(&'a mut self) -> BoxFuture<'a, eventloom_core::Result<Option<Vec<RecordedEvent>>>> {
        Box::pin(async move {
            if self.next >= (*self.feed.open.borrow()).min(self.feed.batches.len()) {
                return Ok(None);
            }
            let batch = self.feed.batches[self.next].iter().map(|&s| self.feed.message(s)).collect();
            self.next += 1;
            Ok(Some(batch))
        })
    }

    fn next_batch<'a>(&'a mut self) -> BoxFuture<'a, eventloom_core::Result<Vec<RecordedEvent>>> {
        Box::pin(async move {
            loop {
                if let Some(batch) = self.try_next_batch().await? {
                    return Ok(batch);
                }
                let next = self.next + 1;
                let mut open = self.feed.open.clone();
                // Past the script: wait for good (the relay's shutdown ends the wait).
                if next > self.feed.batches.len() || open.wait_for(|&open| open >= next).await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        })
    }

    fn is_behind(&self) -> bool {
        false
    }
}

async fn parcels(stores: &MemoryStores) -> Vec<u64> {
    let local = stores.events.read_stream(&StreamId::new("parcel", "p-1").unwrap(), 1, 100).await.unwrap();
    local.iter().map(|e| e.metadata.get().unwrap().headers[SOURCE_SEQUENCE].parse().unwrap()).collect()
}

/// Waits until the source's record reaches `sequence`.
async fn until_relayed(events: &MemoryEventStore, source: &str, sequence: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while events.relayed(source).await.unwrap() < sequence {
        assert!(std::time::Instant::now() < deadline, "{source} not relayed up to {sequence} after 10 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits until the relay stops, and returns its error.
async fn until_failed(app: &App) -> Arc<Error> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let RunState::Failed(error) = &app.status().relays[0].state {
            return error.clone();
        }
        assert!(std::time::Instant::now() < deadline, "the relay did not stop: {:?}", app.status().relays);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn the_health_of_a_relay_tells_its_lease_its_position_and_its_lag_in_events_and_time() {
    let (feed, opener) = Scripted::new(vec![vec![1, 2], vec![3, 4, 5]], 1, Duration::from_secs(90));
    let stores = MemoryStores::new();
    let app = App::builder(stores.clone()).relay("parcels", feed).start().await.unwrap();
    until_relayed(&stores.events, "parcels", 2).await;

    let status = app.status();
    let relay = &status.relays[0];
    assert!(relay.state.is_running(), "{relay:?}");
    assert!(matches!(relay.lease, LeaseState::Leading { token } if token > 0), "it holds its lease: {relay:?}");
    assert!(relay.relay.is_none() && relay.lag.is_none(), "status reads no store: {relay:?}");

    let health = app.health(2).await;
    let relay = &health.relays[0];
    assert!(relay.lag.is_none(), "a relay has no views: {relay:?}");
    let lag = relay.relay.clone().expect("read by health").expect("the memory store answers");
    assert_eq!(lag.relayed, 2, "its position: the last sequence recorded");
    let behind = lag.unrelayed.clone().expect("the feed answers");
    assert_eq!((behind.events, behind.more), (2, true), "3 messages ahead, counted up to the cap of 2");
    let oldest = behind.oldest.expect("the feed tells when they were written");
    assert!((Duration::from_secs(89)..Duration::from_secs(120)).contains(&oldest), "{oldest:?}");
    assert!(!lag.caught_up());

    opener.send(2).unwrap();
    until_relayed(&stores.events, "parcels", 5).await;
    let health = app.health(10).await;
    let lag = health.relays[0].relay.clone().unwrap().unwrap();
    assert_eq!(lag.relayed, 5);
    assert!(lag.caught_up(), "{lag:?}");
    assert_eq!(lag.unrelayed.unwrap().oldest, None, "nothing left to be old");
    app.shutdown().await.unwrap();
    let status = app.status();
    assert!(matches!(status.relays[0].state, RunState::Stopped));
    assert_eq!(status.relays[0].lease, LeaseState::NotHeld, "a stopped relay holds no lease");
}

#[tokio::test]
async fn the_lag_of_a_relay_fed_by_an_event_store_counts_from_what_it_relayed() {
    // An event store's positions have a transaction part: the relay reads it from its start,
    // and the count goes from the last position it relayed.
    let source = MemoryEventStore::new();
    let apple = StreamId::new("stock", "apple").unwrap();
    for qty in 1..=3 {
        source.append(&apple, ExpectedVersion::Any, vec![added(qty)]).await.unwrap();
    }
    let stores = MemoryStores::new();
    let app = App::builder(stores.clone()).relay("inventory", source.clone()).start().await.unwrap();
    until_local(&stores, "apple", 3).await;
    let lag = app.health(100).await.relays[0].relay.clone().unwrap().unwrap();
    assert_eq!(lag.relayed, 3);
    assert!(lag.caught_up(), "nothing after the last relayed: {lag:?}");
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_feed_whose_sequence_goes_back_after_an_earlier_batch_stops_the_relay_and_nothing_is_appended_twice() {
    // 2 after 3, in the next batch of the same read: the store's record (3) would take it for
    // a duplicate, and lose it, if the relay did not stop.
    let (feed, _opener) = Scripted::new(vec![vec![1, 2, 3], vec![2, 4]], 2, Duration::ZERO);
    let stores = MemoryStores::new();
    let app = App::builder(stores.clone()).relay("parcels", feed).start().await.unwrap();
    let error = until_failed(&app).await;
    assert!(matches!(&*error, Error::Corrupt { .. }), "{error}");
    assert!(error.to_string().contains("2 after 3"), "{error}");
    assert_eq!(parcels(&stores).await, [1, 2, 3], "each once, none after the one that went back");
    assert_eq!(stores.events.relayed("parcels").await.unwrap(), 3);
    assert!(!app.status().is_healthy());
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_feed_that_repeats_a_sequence_within_a_batch_stops_the_relay() {
    let (feed, _opener) = Scripted::new(vec![vec![1, 2, 2, 3]], 1, Duration::ZERO);
    let stores = MemoryStores::new();
    let app = App::builder(stores.clone()).relay("parcels", feed).start().await.unwrap();
    let error = until_failed(&app).await;
    assert!(matches!(&*error, Error::Corrupt { .. }) && error.to_string().contains("2 after 2"), "{error}");
    assert_eq!(parcels(&stores).await, [1, 2]);
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_read_that_starts_at_or_below_the_record_skips_what_was_relayed_and_goes_on() {
    // Relayed up to 3 before (by another process, say); this feed reads from its start.
    let stores = MemoryStores::new();
    let parcel = StreamId::new("parcel", "p-1").unwrap();
    let (feed, _opener) = Scripted::new(vec![vec![1, 2], vec![3, 4, 5]], 2, Duration::ZERO);
    for sequence in 1..=3 {
        let event = NewEvent {
            event_type: "Scanned".into(),
            schema_version: 1,
            payload: "{}".into(),
            metadata: Metadata::default().with_header(SOURCE_SEQUENCE, sequence.to_string()),
        };
        stores.events.append_relayed("parcels", sequence, &parcel, vec![event]).await.unwrap();
    }
    let app = App::builder(stores.clone()).relay("parcels", feed).start().await.unwrap();
    until_relayed(&stores.events, "parcels", 5).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(parcels(&stores).await, [1, 2, 3, 4, 5], "1 to 3 not again");
    assert!(app.status().relays[0].state.is_running());
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_feed_that_skips_sequences_is_relayed_as_it_comes() {
    let (feed, _opener) = Scripted::new(vec![vec![1, 2, 5], vec![9]], 2, Duration::ZERO);
    let stores = MemoryStores::new();
    let app = App::builder(stores.clone()).relay("parcels", feed).start().await.unwrap();
    until_relayed(&stores.events, "parcels", 9).await;
    assert_eq!(parcels(&stores).await, [1, 2, 5, 9], "the gaps are the feed's: nothing is made up");
    let health = app.health(10).await;
    assert!(health.relays[0].state.is_running());
    assert!(health.relays[0].relay.clone().unwrap().unwrap().caught_up());
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_message_the_store_refuses_as_it_is_is_skipped_and_the_relay_goes_on() {
    // One message too large for this store: skipped, the record moved past it.
    let source = MemoryEventStore::new();
    let apple = StreamId::new("stock", "apple").unwrap();
    let big = NewEvent { payload: format!(r#"{{"pad":"{}"}}"#, "x".repeat(2_000)), ..added(2) };
    for event in [added(1), big, added(3)] {
        source.append(&apple, ExpectedVersion::Any, vec![event]).await.unwrap();
    }
    let events = MemoryEventStore::with_max_event_size(1_000);
    let stores = Stores::new(events.clone(), MemoryViewStore::default()).with_leases(MemoryLeases::default());
    let app = App::builder(stores).relay("inventory", source).start().await.unwrap();
    until_relayed(&events, "inventory", 3).await;
    let local = events.read_stream(&apple, 1, 10).await.unwrap();
    let payloads: Vec<String> = local.iter().map(|e| e.payload.to_string()).collect();
    assert_eq!(payloads, [added(1).payload, added(3).payload], "the large one skipped, the rest in order");
    assert!(app.status().relays[0].state.is_running());
    app.shutdown().await.unwrap();
}

/// The memory event store, without relays (the trait's default refusal).
struct NoRelays(MemoryEventStore);

impl EventStore for NoRelays {
    fn append<'a>(
        &'a self,
        stream: &'a StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> BoxFuture<'a, eventloom_core::Result<eventloom_core::store::Appended>> {
        self.0.append(stream, expected, events)
    }
    fn append_command<'a>(
        &'a self,
        stream: &'a StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
        command: &'a eventloom_core::store::CommandEntry,
    ) -> BoxFuture<'a, eventloom_core::Result<eventloom_core::store::Appended>> {
        self.0.append_command(stream, expected, events, command)
    }
    fn read_stream<'a>(
        &'a self,
        stream: &'a StreamId,
        from: u64,
        limit: usize,
    ) -> BoxFuture<'a, eventloom_core::Result<Vec<RecordedEvent>>> {
        self.0.read_stream(stream, from, limit)
    }
    fn read_all<'a>(
        &'a self,
        after: Position,
        limit: usize,
    ) -> BoxFuture<'a, eventloom_core::Result<Vec<RecordedEvent>>> {
        self.0.read_all(after, limit)
    }
    fn stream_version<'a>(&'a self, stream: &'a StreamId) -> BoxFuture<'a, eventloom_core::Result<u64>> {
        self.0.stream_version(stream)
    }
    fn command_outcome<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, eventloom_core::Result<Option<eventloom_core::store::CommandRecord>>> {
        self.0.command_outcome(id)
    }
    fn record_command<'a>(
        &'a self,
        id: &'a str,
        record: eventloom_core::store::CommandRecord,
    ) -> BoxFuture<'a, eventloom_core::Result<Option<eventloom_core::store::CommandRecord>>> {
        self.0.record_command(id, record)
    }
    fn expire_commands<'a>(&'a self, before: Timestamp, limit: usize) -> BoxFuture<'a, eventloom_core::Result<u64>> {
        self.0.expire_commands(before, limit)
    }
    fn forget_commands<'a>(&'a self, ids: &'a [String]) -> BoxFuture<'a, eventloom_core::Result<u64>> {
        self.0.forget_commands(ids)
    }
    fn head<'a>(&'a self) -> BoxFuture<'a, eventloom_core::Result<Option<Position>>> {
        self.0.head()
    }
}

#[tokio::test]
async fn a_relay_into_an_event_store_that_cannot_relay_stops_with_the_stores_refusal() {
    // Not retried for good: no retry mends a store without relays.
    let (feed, _opener) = Scripted::new(vec![vec![1]], 1, Duration::ZERO);
    let stores = Stores::new(NoRelays(MemoryEventStore::new()), MemoryViewStore::default());
    let app = App::builder(stores).relay("parcels", feed).start().await.unwrap();
    let error = until_failed(&app).await;
    assert!(matches!(&*error, Error::InvalidConfig { reason } if reason.contains("cannot relay")), "{error}");
    let health = app.health(10).await;
    assert!(matches!(&health.relays[0].relay, Some(Err(e)) if e.to_string().contains("cannot relay")), "{health:?}");
    app.shutdown().await.unwrap();
}

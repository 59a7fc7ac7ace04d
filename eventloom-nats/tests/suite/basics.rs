//! Publishing and consuming against the shared server: subjects and headers, a projection fed by
//! the bus, fencing, max_payload, malformed messages, expired history.

use std::time::Duration;

use eventloom_core::memory::{MemoryEventStore, MemoryViewStore};
use eventloom_core::model::{ExpectedVersion, NewEvent};
use eventloom_core::prelude::*;
use eventloom_core::read::{Feed, FeedReader, MemberState, PoisonPolicy, Projector, ViewReader};
use eventloom_core::store::{EventStore, ViewStore};
use eventloom_core::{ErrorKind, ProjectionOptions};
use eventloom_nats::async_nats::{self, jetstream};
use eventloom_nats::{
    DeadLetterPolicy, Error, JetStreamFeed, JetStreamFeedConfig, Publisher, PublisherConfig, encode_token,
};

use crate::*;

fn publisher(client: &async_nats::Client, names: &Names) -> Publisher {
    Publisher::new(client.clone(), PublisherConfig::new(&names.stream, &names.prefix).category("tally")).unwrap()
}

async fn feed(client: &async_nats::Client, names: &Names, durable: &str) -> JetStreamFeed {
    JetStreamFeed::open(
        client.clone(),
        JetStreamFeedConfig::new(&names.stream, &names.prefix, durable).wait(Duration::from_millis(500)),
    )
    .await
    .unwrap()
}

async fn counts(views: &MemoryViewStore, streams: u64) -> Vec<Count> {
    let reader = ViewReader::<Count>::new(views.clone(), Counts::NAME);
    let ids: Vec<String> = (0..streams).map(|s| format!("t{s}")).collect();
    reader.get_many(&ids).await.unwrap().into_iter().map(Option::unwrap_or_default).collect()
}

fn expect_counts(counts: &[Count], each: u64) {
    for (s, count) in counts.iter().enumerate() {
        assert_eq!(
            (count.applied, count.version, count.twice, count.skipped, count.sum),
            (each, each, 0, 0, each * (each + 1) / 2),
            "stream t{s}: each event once, in order"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chosen_events_are_published_once_and_a_projection_folds_each_once_in_order() {
    let names = names("folds");
    let client = connect(&nats_url()).await;
    let log = MemoryEventStore::new();
    fill(&log, 5, 40).await;
    // Events of a category nobody chose stay inside.
    let secret = StreamId::new("secret", "s").unwrap();
    let raw =
        NewEvent { event_type: "Kept".into(), schema_version: 1, payload: "{}".into(), metadata: fresh_metadata() };
    log.append(&secret, ExpectedVersion::Any, vec![raw]).await.unwrap();

    let nothing = Publisher::new(client.clone(), PublisherConfig::new(&names.stream, &names.prefix)).unwrap();
    nothing.catch_up(&log).await.unwrap();
    assert_eq!(stored_positions(&client, &names.stream).await.len(), 0, "nothing is published by default");

    let publisher = publisher(&client, &names);
    publisher.catch_up(&log).await.unwrap();
    let stored = stored_positions(&client, &names.stream).await;
    let expected: Vec<Position> = all_positions(&log).await.into_iter().take(200).collect();
    assert_eq!(lost_and_duplicated(&stored, &expected), (0, 0));
    assert_eq!(stored.len(), 200);
    assert_eq!(publisher.status().published, 200);
    // A second catch-up finds nothing new.
    publisher.catch_up(&log).await.unwrap();
    assert_eq!(stored_positions(&client, &names.stream).await.len(), 200);

    // Live: the publisher follows the log while a projection follows the bus.
    let (stop_publishing, stopped) = tokio::sync::oneshot::channel::<()>();
    let live = tokio::spawn({
        let (publisher, log) = (publisher.clone(), log.clone());
        async move { publisher.run(&log, async { stopped.await.unwrap_or(()) }).await }
    });
    let feed = feed(&client, &names, "folds").await;
    let views = MemoryViewStore::default();
    let projector = Projector::new(MemoryEventStore::new(), views.clone()).with_batch_size(64);
    let mut group = projector.group_fed_by(feed.clone());
    let member = group.add(Counts);
    let (stop, stop_group) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(group.run(async { stop_group.await.unwrap_or(()) }));
    fill(&log, 5, 10).await;
    let reader = ViewReader::<Count>::new(views.clone(), Counts::NAME);
    // Sequence 1 is the stream-start marker, the 250 events follow it.
    reader.wait_for(Position::new(0, 251), Duration::from_secs(30)).await.unwrap();
    expect_counts(&counts(&views, 5).await, 50);
    assert_eq!(member.lag(1000).await.unwrap(), 0);
    assert_eq!(feed.count_after(Position::new(0, 201), 1000).await.unwrap(), 50);
    assert_eq!(feed.count_after(Position::ZERO, 1000).await.unwrap(), 250, "the marker is no event");
    // When the first message after a position was stored: the marker skipped, none after the last.
    let first = feed.first_written_after(Position::ZERO).await.unwrap().expect("the first event's time");
    let now = eventloom_core::model::Timestamp::now().as_micros();
    assert!((0..600_000_000).contains(&(now - first.as_micros())), "{first:?} is not a moment ago");
    let later = feed.first_written_after(Position::new(0, 200)).await.unwrap().expect("a later event's time");
    assert!(later.as_micros() >= first.as_micros());
    assert_eq!(feed.first_written_after(Position::new(0, 251)).await.unwrap(), None, "nothing after the last");
    // The durable consumer is acknowledged up to the checkpoint committed.
    assert!(eventually(Duration::from_secs(10), || async { feed.acknowledged().await.unwrap() == 251 }).await);

    stop.send(()).unwrap();
    running.await.unwrap().unwrap();
    stop_publishing.send(()).unwrap();
    live.await.unwrap().unwrap();

    // A rebuild (a fresh view store) reads the stream from its start.
    let fresh = MemoryViewStore::default();
    Projector::new(MemoryEventStore::new(), fresh.clone()).with_batch_size(17).catch_up_from(&feed, &Counts).await;
    expect_counts(&counts(&fresh, 5).await, 50);
    delete_stream(&client, &names.stream).await;
}

/// `Projector::catch_up` over a feed: a group run until the member caught up.
trait CatchUpFrom {
    async fn catch_up_from(&self, feed: &JetStreamFeed, projection: &Counts);
}

impl CatchUpFrom for Projector<MemoryEventStore> {
    async fn catch_up_from(&self, feed: &JetStreamFeed, _: &Counts) {
        let (_, last) = feed.bounds().await.unwrap();
        let mut group = self.group_fed_by(feed.clone());
        let member = group.add(Counts);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn(group.run(async { stopped.await.unwrap_or(()) }));
        let status = member
            .wait_until(|s| {
                (s.checkpoint >= Some(Position::new(0, last)) && s.state == MemberState::Running)
                    || s.state == MemberState::Failed
            })
            .await;
        assert_ne!(status.state, MemberState::Failed, "{status:?}");
        stop.send(()).unwrap();
        running.await.unwrap().unwrap();
    }
}

/// A header's value by name, whatever the case (a parsed map may spell standard names apart).
fn header_of(headers: &async_nats::HeaderMap, name: &str) -> Option<String> {
    headers
        .iter()
        .find(|(n, _)| AsRef::<str>::as_ref(*n).eq_ignore_ascii_case(name))
        .and_then(|(_, values)| values.first())
        .map(|v| v.as_str().to_owned())
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
pub enum HostileEvent {
    #[event(name = "Type.with *>")]
    Happened { text: String },
    #[event(name = "_")]
    Nameless,
}

#[derive(Debug, Default)]
pub struct Hostile;

impl Aggregate for Hostile {
    const TYPE: &'static str = "or.der *> é";
    type Event = HostileEvent;
    type Error = std::convert::Infallible;
    fn apply(&mut self, _: &HostileEvent) {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_names_make_safe_subjects_and_every_header_round_trips() {
    let names = names("headers");
    let client = connect(&nats_url()).await;
    let log = MemoryEventStore::new();
    let stream = StreamId::new(Hostile::TYPE, " id with spaces/and slash é ").unwrap();
    let mut metadata =
        Metadata::new(uuid::Uuid::new_v4(), eventloom_core::model::Timestamp::from_micros(1_700_000_000_123_456));
    metadata.correlation_id = Some("corr 1".into());
    metadata.causation_id = Some("cause-é".into());
    metadata.headers.insert("traceparent".into(), "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into());
    metadata.headers.insert("tracestate".into(), "congo=t61rcWkgMzE".into());
    metadata.headers.insert("user".into(), "not published".into());
    let events = vec![
        NewEvent::encode(&HostileEvent::Happened { text: "a\nb".into() }, metadata.clone()).unwrap(),
        NewEvent::encode(&HostileEvent::Nameless, Metadata::new(uuid::Uuid::new_v4(), metadata.timestamp)).unwrap(),
    ];
    log.append(&stream, ExpectedVersion::Any, events).await.unwrap();
    let publisher =
        Publisher::new(client.clone(), PublisherConfig::new(&names.stream, &names.prefix).category(Hostile::TYPE))
            .unwrap();
    publisher.catch_up(&log).await.unwrap();

    let context = jetstream::new(client.clone());
    let js_stream = context.get_stream(&names.stream).await.unwrap();
    let marker = js_stream.get_raw_message(1).await.unwrap();
    assert_eq!(marker.subject.as_str(), format!("{}.eventloom-stream-start", names.prefix));
    assert_eq!(header_of(&marker.headers, "Eventloom-Marker").as_deref(), Some(eventloom_nats::headers::MARKER));
    let first = js_stream.get_raw_message(2).await.unwrap();
    let second = js_stream.get_raw_message(3).await.unwrap();
    let category = encode_token(Hostile::TYPE);
    assert_eq!(first.subject.as_str(), format!("{}.{category}.{}", names.prefix, encode_token("Type.with *>")));
    assert_eq!(second.subject.as_str(), format!("{}.{category}._5F", names.prefix));
    let header = |name: &str| header_of(&first.headers, name);
    assert_eq!(header("Nats-Msg-Id"), Some(metadata.event_id.to_string()));
    assert_eq!(header("Eventloom-Event-Id"), Some(metadata.event_id.to_string()));
    assert_eq!(header("Content-Type").as_deref(), Some("application/json"));
    assert_eq!(header("Eventloom-Schema-Version").as_deref(), Some("1"));
    assert_eq!(header("Eventloom-Version").as_deref(), Some("1"));
    assert!(header("Eventloom-Position").unwrap().parse::<Position>().is_ok());
    assert_eq!(header("traceparent"), metadata.headers.get("traceparent").cloned());
    assert_eq!(header("user"), None, "the user's own headers stay inside");

    // The consumer rebuilds each event as stored.
    let feed = feed(&client, &names, "headers").await;
    let mut reader = feed.read_after(Position::ZERO, 10, 1 << 20);
    let read = reader.try_next_batch().await.unwrap().unwrap();
    let stored = log.read_stream(&stream, 1, 10).await.unwrap();
    assert_eq!(read.len(), 2);
    for (i, (got, want)) in read.iter().zip(&stored).enumerate() {
        assert_eq!(got.position, Position::new(0, i as u64 + 2), "after the marker");
        assert_eq!(
            (&got.stream, got.version, &got.event_type, got.schema_version),
            (&want.stream, want.version, &want.event_type, want.schema_version)
        );
        assert_eq!(got.payload, want.payload);
        let (got, want) = (got.metadata.get().unwrap(), want.metadata.get().unwrap());
        assert_eq!(
            (got.event_id, got.timestamp, &got.correlation_id, &got.causation_id),
            (want.event_id, want.timestamp, &want.correlation_id, &want.causation_id)
        );
        // A trace context in the metadata headers (an event stored before `Metadata::trace`)
        // travels too, and arrives as the event's trace context; the other headers stay home.
        assert!(got.headers.is_empty(), "{:?}", got.headers);
        let legacy = want.headers.get("traceparent").map(|tp| {
            eventloom_core::trace::TraceContext::from_headers(tp, want.headers.get("tracestate").map(String::as_str))
                .unwrap()
        });
        assert_eq!(got.trace, legacy);
    }
    assert!(reader.try_next_batch().await.unwrap().is_none());
    delete_stream(&client, &names.stream).await;
}

/// Publishes a message the way another writer would, expecting the stream's last sequence.
async fn foreign_publish(client: &async_nats::Client, names: &Names) -> u64 {
    let context = jetstream::new(client.clone());
    let last = context.get_stream(&names.stream).await.unwrap().info().await.unwrap().state.last_sequence;
    let publish = jetstream::message::PublishMessage::build()
        .payload("{}".into())
        .message_id(uuid::Uuid::new_v4().to_string())
        .expected_last_sequence(last);
    context.send_publish(format!("{}.tally.Counted", names.prefix), publish).await.unwrap().await.unwrap().sequence
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_of_another_log_is_refused_and_a_second_writer_fences_the_publisher() {
    let names = names("fence");
    let client = connect(&nats_url()).await;
    let log = MemoryEventStore::new();
    fill(&log, 1, 10).await;
    let a = publisher(&client, &names);
    a.catch_up(&log).await.unwrap();
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let live = tokio::spawn({
        let (a, log) = (a.clone(), log.clone());
        async move { a.run(&log, async { stopped.await.unwrap_or(()) }).await }
    });
    assert!(eventually(Duration::from_secs(10), || async { a.status().active }).await);
    tokio::time::sleep(Duration::from_millis(200)).await;
    // A publisher of another log does not resume after a's last message: the event at its
    // position is another one there, or there is none.
    let other_log = MemoryEventStore::new();
    fill(&other_log, 2, 10).await;
    let error = publisher(&client, &names).catch_up(&other_log).await.unwrap_err();
    assert!(matches!(&error, Error::LogMismatch { .. }), "{error:?}");
    assert_eq!(error.kind(), ErrorKind::Corrupt);
    assert!(error.to_string().contains("has id"), "{error}");
    // An empty log (a store wiped) is not waited for: it is not the log that published.
    let empty =
        tokio::time::timeout(Duration::from_secs(20), publisher(&client, &names).catch_up(&MemoryEventStore::new()))
            .await
            .expect("an empty log is refused at once, not waited for")
            .unwrap_err();
    assert!(matches!(&empty, Error::LogMismatch { .. }) && empty.to_string().contains("empty"), "{empty:?}");
    // A log that does not reach the last message's position may be behind (a replica): its
    // publisher waits for it, and once it gets there finds another event.
    let short_log = MemoryEventStore::new();
    fill(&short_log, 1, 3).await;
    let short = publisher(&client, &names);
    let waiting = tokio::spawn({
        let (short, short_log) = (short.clone(), short_log.clone());
        async move { short.catch_up(&short_log).await }
    });
    let behind = eventually(Duration::from_secs(10), || async {
        short.status().last_error.is_some_and(|error| error.contains("past the head of the local log"))
    });
    assert!(behind.await, "{:?}", short.status());
    assert!(!waiting.is_finished(), "a log behind the stream is waited for");
    fill(&short_log, 1, 7).await;
    let error = tokio::time::timeout(Duration::from_secs(20), waiting).await.unwrap().unwrap().unwrap_err();
    assert!(matches!(&error, Error::LogMismatch { .. }), "{error:?}");
    assert_eq!(stored_positions(&client, &names.stream).await.len(), 10, "neither wrote anything");

    // Another writer extends the stream: a's next event is refused, and it stops, fenced, writing
    // nothing more.
    let foreign = foreign_publish(&client, &names).await;
    fill(&log, 1, 1).await;
    let ended = tokio::time::timeout(Duration::from_secs(20), live).await.unwrap().unwrap();
    assert!(matches!(ended, Err(Error::Fenced { .. })), "{ended:?}");
    assert_eq!(ended.unwrap_err().kind(), ErrorKind::Conflict);
    let context = jetstream::new(client.clone());
    let last = context.get_stream(&names.stream).await.unwrap().info().await.unwrap().state.last_sequence;
    assert_eq!(last, foreign, "nothing was written after the other writer's message");
    delete_stream(&client, &names.stream).await;
}

/// `n` new tally events after `version`.
fn tally_batch(version: u64, n: u64) -> Vec<NewEvent> {
    (0..n).map(|i| NewEvent::encode(&TallyEvent::Counted { n: version + i + 1 }, fresh_metadata()).unwrap()).collect()
}

/// A publisher whose local log trails the one that published (a replica behind, or a horizon
/// trailing) is not refused as of another log: it waits until its log holds the stream's last
/// event, then goes on after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_log_behind_the_stream_is_waited_for_not_refused() {
    let names = names("behind");
    let client = connect(&nats_url()).await;
    let (primary, replica) = (MemoryEventStore::new(), MemoryEventStore::new());
    let t0 = StreamId::new("tally", "t0").unwrap();
    // The same events (the same ids) in both, as a replica holds them; the replica lacks the
    // second batch until later.
    let (first, second, third) = (tally_batch(0, 5), tally_batch(5, 5), tally_batch(10, 1));
    for log in [&primary, &replica] {
        log.append(&t0, ExpectedVersion::Exact(0), first.clone()).await.unwrap();
    }
    primary.append(&t0, ExpectedVersion::Exact(5), second.clone()).await.unwrap();
    publisher(&client, &names).catch_up(&primary).await.unwrap();
    let on_replica = publisher(&client, &names);
    let waiting = tokio::spawn({
        let (on_replica, replica) = (on_replica.clone(), replica.clone());
        async move { on_replica.catch_up(&replica).await }
    });
    let behind = eventually(Duration::from_secs(10), || async {
        on_replica.status().last_error.is_some_and(|error| error.contains("past the head of the local log"))
    });
    assert!(behind.await, "{:?}", on_replica.status());
    assert!(!waiting.is_finished(), "{:?}", on_replica.status());
    replica.append(&t0, ExpectedVersion::Exact(5), second).await.unwrap();
    let done = tokio::time::timeout(Duration::from_secs(20), waiting).await.unwrap().unwrap();
    assert!(done.is_ok(), "{done:?} {:?}", on_replica.status());
    replica.append(&t0, ExpectedVersion::Exact(10), third).await.unwrap();
    on_replica.catch_up(&replica).await.unwrap();
    assert_eq!(all_positions(&replica).await[..10], all_positions(&primary).await[..]);
    let stored = stored_positions(&client, &names.stream).await;
    assert_eq!(lost_and_duplicated(&stored, &all_positions(&replica).await), (0, 0));
    assert_eq!(stored.len(), 11);
    delete_stream(&client, &names.stream).await;
}

/// On a server that ignores `Nats-Expected-Last-Sequence: 0`, a publisher that found the stream
/// empty would, without the stream-start marker, append its first event after anything another
/// writer stored meanwhile. (The standalone nats-server 2.9.10 these tests run on checks an
/// expected 0, so here this holds without the marker too; the marker keeps it on any server.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_publish_into_an_empty_stream_is_guarded_too() {
    let names = names("first");
    let client = connect(&nats_url()).await;
    let log = MemoryEventStore::new();
    let publisher = publisher(&client, &names);
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let live = tokio::spawn({
        let (publisher, log) = (publisher.clone(), log.clone());
        async move { publisher.run(&log, async { stopped.await.unwrap_or(()) }).await }
    });
    // The publisher found the stream empty (it made it) and waits for the log's first event.
    assert!(eventually(Duration::from_secs(10), || async { publisher.status().active }).await);
    let foreign = foreign_publish(&client, &names).await;
    fill(&log, 1, 1).await;
    let ended = tokio::time::timeout(Duration::from_secs(20), live).await.unwrap().unwrap();
    assert!(matches!(ended, Err(Error::Fenced { .. })), "{ended:?}");
    let context = jetstream::new(client.clone());
    let last = context.get_stream(&names.stream).await.unwrap().info().await.unwrap().state.last_sequence;
    assert_eq!(last, foreign, "the event was not stored after the other writer's message");
    delete_stream(&client, &names.stream).await;
}

/// Two publishers of one log at once (a handover's overlap, or a pass abandoned with publishes
/// in flight that the server stores after the next pass read the stream): each fence by the
/// other is by an event of this log, so both go on after it, and the stream holds each event
/// once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_publishers_of_one_log_at_once_store_each_event_once_in_order() {
    let client = connect(&nats_url()).await;
    for round in 0..3 {
        let names = names("twins");
        let log = MemoryEventStore::new();
        fill(&log, 10, 100).await;
        let config =
            || PublisherConfig::new(&names.stream, &names.prefix).category("tally").in_flight(64).batch_size(50);
        let (a, b) =
            (Publisher::new(client.clone(), config()).unwrap(), Publisher::new(client.clone(), config()).unwrap());
        let (ra, rb) = tokio::join!(a.catch_up(&log), b.catch_up(&log));
        assert!(ra.is_ok() && rb.is_ok(), "round {round}: {ra:?} {rb:?}");
        let stored = stored_positions(&client, &names.stream).await;
        assert_eq!(lost_and_duplicated(&stored, &all_positions(&log).await), (0, 0), "round {round}");
        assert_eq!(stored.len(), 1000);
        assert_eq!(a.status().published + b.status().published, 1000, "round {round}");
        delete_stream(&client, &names.stream).await;
    }
}

/// A second writer's message lands while the publisher has hundreds of publishes in flight:
/// the one expecting the sequence before it is refused, the ones after it (each expecting the
/// one before) are stored. The publisher must not resume after the last of them, which would
/// leave the refused event out of the stream for good: it stops fenced, or publishes every
/// event; it never skips one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_message_amid_publishes_in_flight_never_makes_the_publisher_skip_an_event() {
    let client = connect(&nats_url()).await;
    let context = jetstream::new(client.clone());
    let mut skipped_past = 0;
    for round in 0..3 {
        let names = names("amid");
        let log = MemoryEventStore::new();
        fill(&log, 10, 400).await;
        let all = all_positions(&log).await;
        let publisher = Publisher::new(
            client.clone(),
            PublisherConfig::new(&names.stream, &names.prefix).category("tally").in_flight(512).batch_size(500),
        )
        .unwrap();
        let running = tokio::spawn({
            let (publisher, log) = (publisher.clone(), log.clone());
            async move { publisher.catch_up(&log).await }
        });
        // The injection, once a few hundred events are stored: no expectation, as a careless
        // second writer publishes.
        assert!(eventually(Duration::from_secs(20), || async { publisher.status().published >= 300 }).await);
        let foreign = context
            .publish(format!("{}.tally.Counted", names.prefix), "{}".into())
            .await
            .unwrap()
            .await
            .unwrap()
            .sequence;
        let ended = tokio::time::timeout(Duration::from_secs(60), running).await.unwrap().unwrap();
        let stored = stored_positions_but(&client, &names.stream, foreign).await;
        let last = context.get_stream(&names.stream).await.unwrap().info().await.unwrap().state.last_sequence;
        skipped_past += u64::from(last > foreign);
        let (lost, duplicated) = lost_and_duplicated(&stored, &all);
        println!("round {round}: foreign message at {foreign}, stream's last {last}, lost {lost}: {ended:?}");
        assert_eq!(duplicated, 0, "round {round}");
        match ended {
            Ok(()) => assert_eq!(lost, 0, "round {round}: caught up, so every event is in the stream"),
            Err(Error::Fenced { expected_last_sequence, ref event_id, position, .. }) => {
                // The refused publish is one the stream does not hold.
                assert!(event_id.is_some() && position.is_some(), "{ended:?}");
                assert!(expected_last_sequence < last, "{ended:?}");
                assert!(lost > 0, "round {round}: stopped fenced with events left to publish");
            }
            Err(error) => panic!("round {round}: {error:?}"),
        }
        delete_stream(&client, &names.stream).await;
    }
    println!("{skipped_past} of 3 rounds stored events of the pass after the foreign message");
}

/// The local log read through a slow link (each batch read waits `delay` first), whose next
/// read of a single event fails as an outage would once `fail_one` is set: what a replica that
/// trails and is briefly unreachable does to a publisher.
#[derive(Clone)]
struct Slow {
    log: MemoryEventStore,
    delay: Duration,
    fail_one: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

struct SlowReader {
    reader: <MemoryEventStore as Feed>::Reader,
    single: bool,
    slow: Slow,
}

impl Feed for Slow {
    type Reader = SlowReader;
    fn read_after(&self, after: Position, batch_size: usize, batch_bytes: usize) -> SlowReader {
        let reader = Feed::read_after(&self.log, after, batch_size, batch_bytes);
        SlowReader { reader, single: batch_size == 1, slow: self.clone() }
    }
    fn count_after<'a>(
        &'a self,
        after: Position,
        cap: u64,
    ) -> eventloom_core::store::BoxFuture<'a, eventloom_core::Result<u64>> {
        Feed::count_after(&self.log, after, cap)
    }
}

impl SlowReader {
    /// Fails the read when it is of one event and a failure is asked for; else waits the delay.
    async fn before_read(&self) -> eventloom_core::Result<()> {
        if self.single {
            if self.slow.fail_one.swap(false, std::sync::atomic::Ordering::SeqCst) {
                return Err(eventloom_core::Error::unavailable_msg("the local log is briefly unreachable"));
            }
        } else {
            tokio::time::sleep(self.slow.delay).await;
        }
        Ok(())
    }
}

type Events = Vec<eventloom_core::model::RecordedEvent>;

impl FeedReader for SlowReader {
    fn try_next_batch<'a>(
        &'a mut self,
    ) -> eventloom_core::store::BoxFuture<'a, eventloom_core::Result<Option<Events>>> {
        Box::pin(async move {
            self.before_read().await?;
            self.reader.try_next_batch().await
        })
    }
    fn next_batch<'a>(&'a mut self) -> eventloom_core::store::BoxFuture<'a, eventloom_core::Result<Events>> {
        Box::pin(async move {
            let batch = self.reader.next_batch().await?;
            self.before_read().await?;
            Ok(batch)
        })
    }
    fn is_behind(&self) -> bool {
        self.reader.is_behind()
    }
}

/// A second publisher of the same log stores the next events while the first, reading its log
/// through a slow link, publishes them only after the duplicate window: the first is fenced by
/// this very log, and the local log is briefly unreachable while it checks the fence. That
/// outage is retried like any other: the publisher goes on, and each event is stored once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_while_a_fence_is_checked_is_retried_not_fatal() {
    let names = names("fencecheck");
    let client = connect(&nats_url()).await;
    let log = MemoryEventStore::new();
    fill(&log, 1, 10).await;
    let config = || {
        PublisherConfig::new(&names.stream, &names.prefix)
            .category("tally")
            .duplicate_window(Duration::from_millis(100))
    };
    let slow = Slow { log: log.clone(), delay: Duration::from_secs(1), fail_one: Default::default() };
    let a = Publisher::new(client.clone(), config()).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn({
        let (a, slow) = (a.clone(), slow.clone());
        async move { a.run(&slow, async { stopped.await.unwrap_or(()) }).await }
    });
    assert!(eventually(Duration::from_secs(20), || async { a.status().published == 10 }).await, "{:?}", a.status());
    // The next read of one event (the fence check's read of the local log) fails.
    slow.fail_one.store(true, std::sync::atomic::Ordering::SeqCst);
    fill(&log, 1, 5).await;
    Publisher::new(client.clone(), config()).unwrap().catch_up(&log).await.unwrap();
    // a sees the 5 events a second later and publishes them, expecting the stream where it was.
    let retried = eventually(Duration::from_secs(20), || async {
        !slow.fail_one.load(std::sync::atomic::Ordering::SeqCst) && a.status().last_error.is_some()
    });
    assert!(retried.await, "the fence was checked: {:?}", a.status());
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!running.is_finished(), "the outage in the fence check stopped it: {:?}", running.await);
    assert!(a.status().active, "{:?}", a.status());
    fill(&log, 1, 1).await;
    assert!(eventually(Duration::from_secs(20), || async { event_count(&client, &names.stream).await == 16 }).await);
    stop.send(()).unwrap();
    running.await.unwrap().unwrap();
    let stored = stored_positions(&client, &names.stream).await;
    assert_eq!(lost_and_duplicated(&stored, &all_positions(&log).await), (0, 0));
    delete_stream(&client, &names.stream).await;
}

/// More publishes in flight than the client's own limit of unacknowledged publishes (5000).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_than_5000_in_flight_publishes_without_hanging() {
    let names = names("inflight");
    let client = connect(&nats_url()).await;
    let log = MemoryEventStore::new();
    fill(&log, 13, 500).await;
    let publisher = Publisher::new(
        client.clone(),
        PublisherConfig::new(&names.stream, &names.prefix).category("tally").in_flight(6000).batch_size(1000),
    )
    .unwrap();
    let done = tokio::time::timeout(Duration::from_secs(60), publisher.catch_up(&log)).await;
    assert!(matches!(done, Ok(Ok(()))), "published within 60 s: {done:?} {:?}", publisher.status());
    assert_eq!(stored_positions(&client, &names.stream).await.len(), 6500);
    delete_stream(&client, &names.stream).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_over_max_payload_stops_the_publisher_or_is_dead_lettered() {
    let names = names("payload");
    let client = connect(&nats_url()).await;
    let max = client.server_info().max_payload;
    let log = MemoryEventStore::new();
    fill(&log, 1, 3).await;
    let big = serde_json::to_string(&serde_json::json!({ "n": 1, "pad": "x".repeat(max - 300) })).unwrap();
    let stream = StreamId::new("tally", "t0").unwrap();
    let raw = NewEvent { event_type: "Counted".into(), schema_version: 1, payload: big, metadata: fresh_metadata() };
    let huge = log.append(&stream, ExpectedVersion::Exact(3), vec![raw]).await.unwrap().into_outcome().position;
    fill(&log, 1, 2).await;

    let stops = publisher(&client, &names);
    let error = stops.catch_up(&log).await.unwrap_err();
    assert!(
        matches!(&error, Error::TooLarge { position, max_payload, .. } if *position == huge && *max_payload == max),
        "{error}"
    );
    assert_eq!(error.kind(), ErrorKind::InvalidInput);
    assert_eq!(stored_positions(&client, &names.stream).await.len(), 3, "the events before it are published");
    // Stopping again at once, never retrying forever.
    assert!(matches!(stops.catch_up(&log).await, Err(Error::TooLarge { .. })));

    let skips = Publisher::new(
        client.clone(),
        PublisherConfig::new(&names.stream, &names.prefix).category("tally").dead_letters(DeadLetterPolicy::Skip),
    )
    .unwrap();
    skips.catch_up(&log).await.unwrap();
    let letters = skips.dead_letters();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].position, huge);
    let stored = stored_positions(&client, &names.stream).await;
    assert_eq!(stored.len(), 5, "the events after it are published");
    assert!(stored.iter().all(|(_, p)| *p != huge));
    delete_stream(&client, &names.stream).await;
}

/// Events of every size up to just over the server's limit, a byte apart near it: each is
/// published or dead-lettered, and none is retried forever (a size check that left out a header
/// the publish adds let the last few through to a server that refuses them on the wire).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_at_the_edge_of_max_payload_are_published_or_dead_lettered_never_retried() {
    let names = names("edge");
    let client = connect(&nats_url()).await;
    let max = client.server_info().max_payload;
    let log = MemoryEventStore::with_max_event_size(2 * max);
    let stream = StreamId::new("tally", "edge").unwrap();
    let sizes: Vec<usize> = (0..48).map(|n| max - 400 + n * 8).chain([max - 60, max - 40, max - 20, max]).collect();
    for size in &sizes {
        let payload = serde_json::to_string(&serde_json::json!({ "pad": "x".repeat(size - 11) })).unwrap();
        let raw = NewEvent { event_type: "Counted".into(), schema_version: 1, payload, metadata: fresh_metadata() };
        log.append(&stream, ExpectedVersion::Any, vec![raw]).await.unwrap();
    }
    let publisher = Publisher::new(
        client.clone(),
        PublisherConfig::new(&names.stream, &names.prefix).category("tally").dead_letters(DeadLetterPolicy::Skip),
    )
    .unwrap();
    let done = tokio::time::timeout(std::time::Duration::from_secs(60), publisher.catch_up(&log)).await;
    assert!(matches!(done, Ok(Ok(()))), "published or dead-lettered every one within 60 s: {done:?}");
    let published = stored_positions(&client, &names.stream).await.len();
    let letters = publisher.dead_letters().len();
    assert_eq!(published + letters, sizes.len(), "{published} published, {letters} dead-lettered");
    assert!(letters > 0 && published > 0, "{published} published, {letters} dead-lettered");
    delete_stream(&client, &names.stream).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_message_is_a_poison_event_for_the_projection_policy() {
    let names = names("poison");
    let client = connect(&nats_url()).await;
    let log = MemoryEventStore::new();
    fill(&log, 1, 2).await;
    publisher(&client, &names).catch_up(&log).await.unwrap();
    // A message with a version that is not a number, as another writer might send.
    let context = jetstream::new(client.clone());
    let good = context.get_stream(&names.stream).await.unwrap().get_raw_message(3).await.unwrap();
    let mut headers = async_nats::HeaderMap::new();
    for (name, values) in good.headers.iter() {
        let name: &str = name.as_ref();
        if !name.to_ascii_lowercase().starts_with("nats-") && !name.eq_ignore_ascii_case("Eventloom-Version") {
            headers.insert(name, values[0].as_str());
        }
    }
    headers.insert("Eventloom-Version", "three");
    headers.insert("Nats-Msg-Id", uuid::Uuid::new_v4().to_string().as_str());
    context
        .publish_with_headers(format!("{}.tally.Counted", names.prefix), headers, good.payload.clone())
        .await
        .unwrap()
        .await
        .unwrap();
    // Then a good one again, by a publisher that resumes after the malformed message's position.
    fill(&log, 1, 1).await;
    publisher(&client, &names).catch_up(&log).await.unwrap();
    assert_eq!(stored_positions(&client, &names.stream).await.len(), 4);

    for (policy, state, applied) in
        [(PoisonPolicy::Stop, MemberState::Failed, 2), (PoisonPolicy::DeadLetter, MemberState::Running, 3)]
    {
        let feed = feed(&client, &names, &format!("poison-{}", applied)).await;
        let views = MemoryViewStore::default();
        let mut group = Projector::new(MemoryEventStore::new(), views.clone()).group_fed_by(feed);
        let member = group.add_with(Counts, ProjectionOptions::new().poison_policy(policy));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn(group.run(async { stopped.await.unwrap_or(()) }));
        let status = member
            .wait_until(|s| {
                s.state == MemberState::Failed
                    || (s.checkpoint == Some(Position::new(0, 5)) && s.state == MemberState::Running)
            })
            .await;
        assert_eq!(status.state, state, "{policy:?}: {status:?}");
        if policy == PoisonPolicy::Stop {
            // Stopped on the malformed message (its first build never went live).
            assert!(status.checkpoint <= Some(Position::new(0, applied + 1)), "{status:?}");
            assert!(status.last_error.unwrap_or_default().contains("position 0.4"));
        } else {
            assert_eq!(counts(&views, 1).await[0].applied, applied, "{policy:?}");
            let letters = views.dead_letters(Counts::NAME).await.unwrap();
            assert_eq!(letters.len(), 1);
            assert_eq!(letters[0].position, Position::new(0, 4));
        }
        // A group whose only member failed has ended by itself.
        let _ = stop.send(());
        let _ = running.await.unwrap();
    }
    delete_stream(&client, &names.stream).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_whose_history_expired_is_refused() {
    let names = names("expired");
    let client = connect(&nats_url()).await;
    let log = MemoryEventStore::new();
    fill(&log, 1, 10).await;
    publisher(&client, &names).catch_up(&log).await.unwrap();
    let context = jetstream::new(client.clone());
    context.get_stream(&names.stream).await.unwrap().purge().sequence(6).await.unwrap();

    let feed = feed(&client, &names, "expired").await;
    let error = feed.read_after(Position::ZERO, 100, 1 << 20).try_next_batch().await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Corrupt, "{error}");
    assert!(error.to_string().contains("history expired"), "{error}");
    // Reading on from a checkpoint the stream still holds works.
    let batch = feed.read_after(Position::new(0, 5), 100, 1 << 20).try_next_batch().await.unwrap().unwrap();
    assert_eq!(batch.first().map(|e| e.position), Some(Position::new(0, 6)));
    // A checkpoint past the stream's end: the stream was recreated.
    let error = feed.read_after(Position::new(0, 99), 100, 1 << 20).try_next_batch().await.unwrap_err();
    assert!(error.to_string().contains("recreated"), "{error}");
    delete_stream(&client, &names.stream).await;
}

/// The stream-start marker aging out (by `max_messages` here) loses no event: a rebuild reads
/// every event from sequence 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_start_marker_that_aged_out_loses_nothing() {
    let client = connect(&nats_url()).await;
    let context = jetstream::new(client.clone());
    let names = names("markergone");
    let log = MemoryEventStore::new();
    fill(&log, 1, 10).await;
    let config = PublisherConfig::new(&names.stream, &names.prefix).category("tally").max_messages(10);
    Publisher::new(client.clone(), config).unwrap().catch_up(&log).await.unwrap();
    let info = context.get_stream(&names.stream).await.unwrap().info().await.unwrap().state.clone();
    assert_eq!((info.first_sequence, info.last_sequence), (2, 11), "the marker went, every event stayed");
    let feed = feed(&client, &names, "markergone").await;
    let mut reader = feed.read_after(Position::ZERO, 100, 1 << 20);
    let read: Vec<u64> =
        reader.try_next_batch().await.unwrap().unwrap().iter().map(|e| e.position.sequence()).collect();
    assert_eq!(read, (2..=11).collect::<Vec<_>>());
    delete_stream(&client, &names.stream).await;
}

/// A stream that held only the stream-start marker, after it aged out (by `max_age`), is
/// resumed from the start, not refused as foreign.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_whose_only_marker_aged_out_is_resumed_from_the_start() {
    let client = connect(&nats_url()).await;
    let context = jetstream::new(client.clone());
    let names = names("markeronly");
    let config = || {
        PublisherConfig::new(&names.stream, &names.prefix)
            .category("tally")
            .max_age(Duration::from_secs(1))
            .duplicate_window(Duration::from_secs(1))
    };
    let empty = MemoryEventStore::new();
    Publisher::new(client.clone(), config()).unwrap().catch_up(&empty).await.unwrap();
    let expired = eventually(Duration::from_secs(20), || async {
        context.get_stream(&names.stream).await.unwrap().info().await.unwrap().state.messages == 0
    });
    assert!(expired.await, "the marker aged out");
    let log = MemoryEventStore::new();
    fill(&log, 1, 3).await;
    Publisher::new(client.clone(), config()).unwrap().catch_up(&log).await.unwrap();
    let stored = stored_positions_from(&client, &names.stream, 2).await;
    assert_eq!(lost_and_duplicated(&stored, &all_positions(&log).await), (0, 0));
    assert_eq!(stored.iter().map(|(sequence, _)| *sequence).collect::<Vec<_>>(), vec![2, 3, 4]);
    delete_stream(&client, &names.stream).await;
}

/// Messages that expire from the front while a reader waits at the stream's end are history
/// lost, not messages deleted from the middle to skip.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_that_expires_while_a_reader_waits_is_refused_not_skipped() {
    let names = names("gap");
    let client = connect(&nats_url()).await;
    let log = MemoryEventStore::new();
    fill(&log, 1, 3).await;
    publisher(&client, &names).catch_up(&log).await.unwrap();
    let feed = feed(&client, &names, "gap").await;
    // The reader is at the end (sequence 4 is the third event): nothing to read, bounds checked.
    let mut reader = feed.read_after(Position::new(0, 4), 100, 1 << 20);
    assert!(reader.try_next_batch().await.unwrap().is_none());
    fill(&log, 1, 6).await;
    publisher(&client, &names).catch_up(&log).await.unwrap();
    // Sequences 5 to 7 go before the reader reads them.
    let context = jetstream::new(client.clone());
    context.get_stream(&names.stream).await.unwrap().purge().sequence(8).await.unwrap();
    let read = reader.try_next_batch().await;
    let error = read.as_ref().map(|b| b.as_ref().map(|b| b.len())).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Corrupt, "{error}");
    assert!(error.to_string().contains("history expired"), "{error}");
    // A message deleted from the middle is skipped.
    let mut from_eight = feed.read_after(Position::new(0, 7), 100, 1 << 20);
    context.get_stream(&names.stream).await.unwrap().delete_message(9).await.unwrap();
    let batch = from_eight.try_next_batch().await.unwrap().unwrap();
    let read: Vec<u64> = batch.iter().map(|e| e.position.sequence()).collect();
    assert_eq!(read, vec![8, 10]);
    delete_stream(&client, &names.stream).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_lease_one_publisher_runs_and_a_standby_takes_over() {
    let names = names("lease");
    let client = connect(&nats_url()).await;
    let log = MemoryEventStore::new();
    fill(&log, 2, 20).await;
    let leases: std::sync::Arc<dyn eventloom_core::store::LeaseManager> =
        std::sync::Arc::new(eventloom_core::memory::MemoryLeases::default());
    let leased = || {
        Publisher::new(
            client.clone(),
            PublisherConfig::new(&names.stream, &names.prefix).category("tally").lease(leases.clone(), "publisher"),
        )
        .unwrap()
    };
    let (a, b) = (leased(), leased());
    let start = |publisher: &Publisher| {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (publisher, log) = (publisher.clone(), log.clone());
        (stop, tokio::spawn(async move { publisher.run(&log, async { stopped.await.unwrap_or(()) }).await }))
    };
    let (stop_a, running_a) = start(&a);
    assert!(eventually(Duration::from_secs(10), || async { a.status().published == 40 }).await);
    let (stop_b, running_b) = start(&b);
    fill(&log, 2, 5).await;
    assert!(eventually(Duration::from_secs(10), || async { a.status().published == 50 }).await);
    assert!(!b.status().active, "the standby waits for the lease");
    // The leader stops: the standby takes over and goes on after the stream's last message.
    stop_a.send(()).unwrap();
    running_a.await.unwrap().unwrap();
    fill(&log, 2, 5).await;
    assert!(eventually(Duration::from_secs(10), || async { b.status().published == 10 }).await, "{:?}", b.status());
    stop_b.send(()).unwrap();
    running_b.await.unwrap().unwrap();
    let stored = stored_positions(&client, &names.stream).await;
    assert_eq!(lost_and_duplicated(&stored, &all_positions(&log).await), (0, 0));
    assert_eq!(stored.len(), 60);
    delete_stream(&client, &names.stream).await;
}

/// The lease taken away from each holder in turn while up to 2000 of its publishes are in flight:
/// the new holder resumes after whatever of them the server stores (an event of its own log),
/// the old one stands by; neither stops, and every event is stored once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_handovers_with_publishes_in_flight_neither_fence_nor_stop_a_publisher() {
    let names = names("handover");
    let client = connect(&nats_url()).await;
    let log = MemoryEventStore::new();
    let leases = eventloom_core::memory::MemoryLeases::default();
    let shared: std::sync::Arc<dyn eventloom_core::store::LeaseManager> = std::sync::Arc::new(leases.clone());
    // Each with a connection of its own, as two processes would have.
    let leased = async || {
        let config = PublisherConfig::new(&names.stream, &names.prefix)
            .category("tally")
            .in_flight(2000)
            .batch_size(500)
            .lease(shared.clone(), "publisher");
        Publisher::new(connect(&nats_url()).await, config).unwrap()
    };
    let start = |publisher: Publisher| {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let log = log.clone();
        (stop, tokio::spawn(async move { publisher.run(&log, async { stopped.await.unwrap_or(()) }).await }))
    };
    let (a, b) = (leased().await, leased().await);
    let (stop_a, running_a) = start(a.clone());
    let (stop_b, running_b) = start(b.clone());
    let mut handovers = 0;
    for _ in 0..6 {
        // 3000 events more; the lease goes once the holder has published a few hundred of them,
        // while it has many more in flight.
        let before = a.status().published + b.status().published;
        fill(&log, 20, 150).await;
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while a.status().published + b.status().published < before + 300 {
            assert!(
                std::time::Instant::now() < deadline,
                "publishing goes on after {handovers} handovers: {:?} {:?}",
                a.status(),
                b.status()
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        leases.revoke("publisher");
        handovers += 1;
    }
    fill(&log, 2, 10).await;
    let all = all_positions(&log).await;
    let done =
        eventually(Duration::from_secs(60), || async { event_count(&client, &names.stream).await >= all.len() as u64 })
            .await;
    assert!(
        !running_a.is_finished() && !running_b.is_finished(),
        "a publisher stopped: {:?} {:?}",
        a.status(),
        b.status()
    );
    assert!(done, "caught up after {handovers} handovers: {:?} {:?}", a.status(), b.status());
    stop_a.send(()).unwrap();
    stop_b.send(()).unwrap();
    running_a.await.unwrap().unwrap();
    running_b.await.unwrap().unwrap();
    let stored = stored_positions(&client, &names.stream).await;
    println!("{handovers} lease handovers mid-publish: {} events, stored {}", all.len(), stored.len());
    assert_eq!(lost_and_duplicated(&stored, &all), (0, 0));
    assert_eq!(stored.len(), all.len());
    delete_stream(&client, &names.stream).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_started_before_its_stream_exists_waits_for_it() {
    let names = names("early");
    let client = connect(&nats_url()).await;
    let feed = feed(&client, &names, "early").await;
    let error = feed.read_after(Position::ZERO, 10, 1 << 20).try_next_batch().await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unavailable, "{error}");
    assert!(error.to_string().contains("does not exist"), "{error}");
    let views = MemoryViewStore::default();
    let mut group = Projector::new(MemoryEventStore::new(), views.clone())
        .with_retry_delay(Duration::from_millis(50))
        .group_fed_by(feed.clone());
    group.add(Counts);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(group.run(async { stopped.await.unwrap_or(()) }));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = MemoryEventStore::new();
    fill(&log, 2, 10).await;
    publisher(&client, &names).catch_up(&log).await.unwrap();
    let reader = ViewReader::<Count>::new(views.clone(), Counts::NAME);
    reader.wait_for(Position::new(0, 21), Duration::from_secs(30)).await.unwrap();
    expect_counts(&counts(&views, 2).await, 10);
    assert!(eventually(Duration::from_secs(10), || async { feed.acknowledged().await.is_ok_and(|a| a == 21) }).await);
    stop.send(()).unwrap();
    running.await.unwrap().unwrap();
    delete_stream(&client, &names.stream).await;
}

/// A member named in the feed's config that has not committed yet holds the durable consumer's
/// acknowledgements back, however far the others are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledgements_wait_for_a_named_member_that_has_not_committed() {
    let names = names("members");
    let client = connect(&nats_url()).await;
    let log = MemoryEventStore::new();
    fill(&log, 2, 10).await;
    publisher(&client, &names).catch_up(&log).await.unwrap();
    let config = JetStreamFeedConfig::new(&names.stream, &names.prefix, "members")
        .wait(Duration::from_millis(500))
        .members([Counts::NAME, "late"]);
    let feed = JetStreamFeed::open(client.clone(), config).await.unwrap();
    let views = MemoryViewStore::default();
    let mut group = Projector::new(MemoryEventStore::new(), views.clone()).group_fed_by(feed.clone());
    group.add(Counts);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(group.run(async { stopped.await.unwrap_or(()) }));
    let reader = ViewReader::<Count>::new(views.clone(), Counts::NAME);
    reader.wait_for(Position::new(0, 21), Duration::from_secs(30)).await.unwrap();
    // Counts committed everything; "late" nothing yet.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(feed.acknowledged().await.unwrap(), 0, "nothing acknowledged past the late member");
    feed.acknowledge("late", Position::new(0, 11));
    assert!(eventually(Duration::from_secs(10), || async { feed.acknowledged().await.is_ok_and(|a| a == 11) }).await);
    feed.acknowledge("late", Position::new(0, 21));
    assert!(eventually(Duration::from_secs(10), || async { feed.acknowledged().await.is_ok_and(|a| a == 21) }).await);
    stop.send(()).unwrap();
    running.await.unwrap().unwrap();
    delete_stream(&client, &names.stream).await;
}

/// A stream deleted and made again, longer than before, while a consumer runs: its checkpoint
/// names other messages in the new stream, which the feed refuses to read on from.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_recreated_past_the_checkpoint_is_refused() {
    let names = names("recreated");
    let client = connect(&nats_url()).await;
    let log = MemoryEventStore::new();
    fill(&log, 1, 5).await;
    publisher(&client, &names).catch_up(&log).await.unwrap();
    let feed = feed(&client, &names, "recreated").await;
    let mut reader = feed.read_after(Position::ZERO, 100, 1 << 20);
    assert_eq!(reader.try_next_batch().await.unwrap().unwrap().len(), 5);
    // Deleted, and made again from another log with more events than the checkpoint's sequence.
    delete_stream(&client, &names.stream).await;
    let other_log = MemoryEventStore::new();
    fill(&other_log, 2, 10).await;
    // nats-server may still be removing the old stream's files: making one of the same name at
    // once can fail with "error creating store for stream" (10049) for a moment.
    let mut tries = 0;
    while let Err(error) = publisher(&client, &names).catch_up(&other_log).await {
        tries += 1;
        assert!(tries < 50 && error.to_string().contains("10049"), "{error}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut error = reader.try_next_batch().await.unwrap_err();
    if error.is_transient() {
        // The reading consumer went with the old stream: an outage, retried (as a runner does).
        error = reader.try_next_batch().await.unwrap_err();
    }
    assert_eq!(error.kind(), ErrorKind::Corrupt, "{error}");
    assert!(error.to_string().contains("made again"), "{error}");
    // A reader from the checkpoint (a restart of the member) is refused too.
    let error = feed.read_after(Position::new(0, 6), 100, 1 << 20).try_next_batch().await.unwrap_err();
    assert!(error.to_string().contains("made again"), "{error}");
    // Nor does its acker acknowledge the new stream by the old one's checkpoint.
    feed.acknowledge("member", Position::new(0, 6));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let floor = feed.acknowledged().await.unwrap_or(0);
    assert_eq!(floor, 0, "the new stream is not acknowledged by a checkpoint of the old one");
    delete_stream(&client, &names.stream).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_events_trace_context_travels_in_the_traceparent_header_into_the_consumed_metadata() {
    use eventloom_core::trace::TraceContext;
    let names = names("trace");
    let client = connect(&nats_url()).await;
    let log = MemoryEventStore::new();
    let stream = StreamId::new(Hostile::TYPE, "traced").unwrap();
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let trace = TraceContext::from_headers(tp, Some("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7")).unwrap();
    let at = eventloom_core::model::Timestamp::from_micros(1_700_000_000_000_000);
    let traced = Metadata::new(uuid::Uuid::new_v4(), at).with_trace(trace.clone());
    let events = vec![
        NewEvent::encode(&HostileEvent::Nameless, traced).unwrap(),
        NewEvent::encode(&HostileEvent::Nameless, Metadata::new(uuid::Uuid::new_v4(), at)).unwrap(),
    ];
    log.append(&stream, ExpectedVersion::Any, events).await.unwrap();
    let publisher =
        Publisher::new(client.clone(), PublisherConfig::new(&names.stream, &names.prefix).category(Hostile::TYPE))
            .unwrap();
    publisher.catch_up(&log).await.unwrap();

    let js_stream = jetstream::new(client.clone()).get_stream(&names.stream).await.unwrap();
    let (first, second) = (js_stream.get_raw_message(2).await.unwrap(), js_stream.get_raw_message(3).await.unwrap());
    assert_eq!(header_of(&first.headers, "traceparent").as_deref(), Some(tp));
    assert!(header_of(&first.headers, "tracestate").is_some_and(|s| s.contains("congo=t61rcWkgMzE")));
    assert_eq!(header_of(&second.headers, "traceparent"), None, "no trace, no header");

    let feed = feed(&client, &names, "trace").await;
    let read = feed.read_after(Position::ZERO, 10, 1 << 20).try_next_batch().await.unwrap().unwrap();
    assert_eq!(read.len(), 2);
    assert_eq!(read[0].metadata.get().unwrap().trace.as_ref(), Some(&trace), "the consumer keeps it");
    assert_eq!(read[1].metadata.get().unwrap().trace, None);
    delete_stream(&client, &names.stream).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bus_counts_what_it_publishes_and_reads_by_its_jetstream_stream() {
    // Installed before this test's publisher and feed take their handles; the stream's name is
    // this test's own, so the counts are exact while other tests publish.
    let rec = eventloom_core::testing::metrics::TestRecorder::install();
    eventloom_nats::metrics::describe();
    let names = names("metrics");
    let client = connect(&nats_url()).await;
    let log = MemoryEventStore::new();
    fill(&log, 2, 10).await;
    let publisher = publisher(&client, &names);
    publisher.catch_up(&log).await.unwrap();
    let by = [("jetstream", names.stream.as_str())];
    assert_eq!(rec.counter("eventloom_bus_published_total", &by), 20);
    assert_eq!(rec.counter("eventloom_bus_publish_duplicates_total", &by), 0);
    let latencies = rec.samples("eventloom_bus_publish_duration_seconds", &by);
    assert_eq!(latencies.len(), 20, "one sample per publish acked");
    assert!(latencies.iter().all(|s| (0.0..30.0).contains(s)), "{latencies:?}");
    publisher.catch_up(&log).await.unwrap();
    assert_eq!(rec.counter("eventloom_bus_published_total", &by), 20, "nothing new to publish");

    let feed = feed(&client, &names, "metrics").await;
    let views = MemoryViewStore::default();
    Projector::new(MemoryEventStore::new(), views.clone()).with_batch_size(7).catch_up_from(&feed, &Counts).await;
    expect_counts(&counts(&views, 2).await, 10);
    // Each event read once (the stream-start marker is no event), none delivered again.
    assert_eq!(rec.counter("eventloom_bus_read_total", &by), 20);
    assert_eq!(rec.counter("eventloom_bus_redeliveries_total", &by), 0);
    assert!(rec.described().iter().any(|(name, _)| name == "eventloom_bus_published_total"));
    delete_stream(&client, &names.stream).await;
}

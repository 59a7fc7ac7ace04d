//! Reading from a streaming replica (a hot standby): gap-free reads, wake-ups, conflicts after a
//! stale load, snapshots, read-your-writes and the replica's lag. The tests that pause replay or
//! hold a transaction open run on a private primary and standby of their own; the one on the
//! shared replica (DATABASE_REPLICA_URL, which scripts/test.sh starts) only reads and writes.

use std::time::Duration;

use eventloom_core::ExecuteOptions;
use eventloom_core::testing::test_event;
use eventloom_core::write::Cqrs;
use eventloom_core::{
    Position, StreamId,
    model::{ExpectedVersion, RecordedEvent},
    store::{EventStore, Snapshot, SnapshotStore},
};
use eventloom_postgres::{PgConfig, PgEventStore, PgSnapshotStore};

use crate::domain::{Account, Deposit, Open};
use crate::support::{PrivateServer, database_replica_url, database_url, fresh_schema, raw, store_at};

fn stream(id: &str) -> StreamId {
    StreamId::new("conformance", id).unwrap()
}

fn n(e: &RecordedEvent) -> u64 {
    serde_json::from_str::<serde_json::Value>(&e.payload).unwrap()["n"].as_u64().unwrap()
}

/// A primary and its hot standby, a store on the primary alone (`writer`: another process,
/// whose appends this process learns of only through the log) and one that reads from the
/// standby (`reader`), in one schema.
struct Pair {
    primary: PrivateServer,
    standby: PrivateServer,
    writer: PgEventStore,
    reader: PgEventStore,
}

impl Pair {
    async fn start() -> Self {
        let primary = PrivateServer::start();
        let standby = primary.standby();
        let writer = store_at(&primary.url()).await;
        let reader = replicated(&primary.url(), &standby.url(), writer.config().schema_name()).await;
        let pair = Pair { primary, standby, writer, reader };
        pair.replayed().await;
        pair
    }

    /// Waits until the standby has replayed everything the primary has flushed.
    async fn replayed(&self) {
        replayed(&self.reader).await;
    }

    async fn pause_replay(&self) {
        raw(&self.standby.url()).await.batch_execute("SELECT pg_wal_replay_pause()").await.unwrap();
    }

    async fn resume_replay(&self) {
        raw(&self.standby.url()).await.batch_execute("SELECT pg_wal_replay_resume()").await.unwrap();
    }

    /// The newest version of `stream` on the standby, read there directly.
    async fn version_on_standby(&self, stream_id: &str) -> i64 {
        let schema = self.writer.config().schema_name();
        let sql = format!(
            "SELECT coalesce(max(version), 0) FROM \"{schema}\".events WHERE category = 'conformance' AND stream_id = $1"
        );
        raw(&self.standby.url()).await.query_one(&sql, &[&stream_id]).await.unwrap().get(0)
    }
}

/// A store on `primary` in `schema`, reading from `replica`.
async fn replicated(primary: &str, replica: &str, schema: &str) -> PgEventStore {
    let config =
        PgConfig::from_url(primary).unwrap().schema(schema).unwrap().pool_size(8).read_replica(replica).unwrap();
    PgEventStore::connect(config).await.unwrap_or_else(|e| panic!("cannot connect to the primary or its replica: {e}"))
}

async fn replayed(store: &PgEventStore) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let lag = store.replica_lag().await.unwrap().expect("a store with a replica reports its lag");
        if lag.bytes == 0 {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "the replica did not catch up: {lag:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `BEGIN` and an append of event `n` to `stream_id`, left uncommitted.
async fn begin_append(client: &tokio_postgres::Client, schema: &str, stream_id: &str, n: u64) {
    let call = format!(
        "BEGIN; SELECT * FROM \"{schema}\".append('conformance', '{stream_id}', NULL, ARRAY['Tested'], ARRAY[1], \
         ARRAY['{{\"n\":{n}}}'], ARRAY['{{\"event_id\":\"00000000-0000-0000-0000-000000000000\",\"timestamp\":0}}'], NULL)"
    );
    client.batch_execute(&call).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_transaction_held_open_on_the_primary_holds_readers_of_the_replica_back_until_it_commits() {
    let pair = Pair::start().await;
    let schema = pair.writer.config().schema_name().to_owned();
    let held = raw(&pair.primary.url()).await;
    let held_pid: i32 = held.query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get(0);
    begin_append(&held, &schema, "held", 0).await;
    for i in 1..=4 {
        pair.writer.append(&stream(&format!("later-{i}")), ExpectedVersion::Any, vec![test_event(i)]).await.unwrap();
    }
    pair.replayed().await;
    // The standby has the four later commits, and has seen the held transaction write (its
    // transaction id is in the WAL) but not end: it counts it as running.
    let mut subscription = pair.reader.subscribe(Position::ZERO).with_poll_interval(Duration::from_millis(20));
    assert!(
        tokio::time::timeout(Duration::from_millis(400), subscription.next_batch()).await.is_err(),
        "nothing is read on the replica past a transaction still open on the primary"
    );
    assert_eq!(pair.reader.head().await.unwrap(), None);
    assert_eq!(pair.reader.count_after(Position::ZERO, 100).await.unwrap(), 0);
    assert_eq!(pair.reader.held_back(100).await.unwrap(), 4, "the replica's subscribers are held back from 4");
    let holdback = pair.reader.holdback().await.unwrap();
    assert_eq!(holdback.hidden_events, 4);
    let oldest = holdback.oldest.expect("the holder is named, from the primary");
    assert_eq!(oldest.pid, Some(held_pid));
    held.batch_execute("COMMIT").await.unwrap();
    let mut seen = Vec::new();
    while seen.len() < 5 {
        let batch = tokio::time::timeout(Duration::from_secs(20), subscription.next_batch()).await.unwrap().unwrap();
        seen.extend(batch);
    }
    assert_eq!(seen.iter().map(n).collect::<Vec<_>>(), [0, 1, 2, 3, 4], "the held event first, then the rest");
    let on_primary = pair.writer.read_all(Position::ZERO, 100).await.unwrap();
    assert_eq!(seen, on_primary, "the replica's order is the primary's");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_subscriber_of_the_replica_is_woken_once_the_notified_commit_has_replayed() {
    let pair = Pair::start().await;
    let refused = raw(&pair.standby.url()).await.batch_execute("LISTEN anything").await.unwrap_err();
    let message = refused.as_db_error().map(|e| e.message().to_owned()).unwrap_or_default();
    assert!(message.contains("LISTEN during recovery"), "a standby refuses LISTEN: {refused:?}");
    // Only a wake-up can deliver within the test: the poll interval is far longer.
    let mut subscription = pair.reader.subscribe(Position::ZERO).with_poll_interval(Duration::from_secs(120));
    assert!(tokio::time::timeout(Duration::from_millis(300), subscription.next_batch()).await.is_err());
    // One wait, from before the append until the event arrives: a wake-up while the standby
    // has not replayed would find nothing, and the next would come with the poll.
    let waiting = tokio::spawn(async move { subscription.next_batch().await });
    pair.pause_replay().await;
    // Another process appends: its NOTIFY reaches this one's LISTEN on the primary (a standby
    // refuses LISTEN), while the standby has not replayed the commit.
    pair.writer.append(&stream("woken"), ExpectedVersion::Any, vec![test_event(7)]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiting.is_finished(), "nothing to read on a standby that has not replayed");
    pair.resume_replay().await;
    let started = std::time::Instant::now();
    let batch = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the wake-up waited for the replay and then woke the subscriber")
        .unwrap()
        .unwrap();
    assert_eq!(batch.iter().map(n).collect::<Vec<_>>(), [7]);
    println!("delivered {:?} after replay resumed", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_conflict_after_a_load_from_a_lagging_replica_reads_the_newer_events_from_the_primary() {
    let pair = Pair::start().await;
    let s = stream("raced");
    pair.writer.append(&s, ExpectedVersion::NoStream, vec![test_event(1)]).await.unwrap();
    pair.replayed().await;
    pair.pause_replay().await;
    pair.writer.append(&s, ExpectedVersion::Exact(1), vec![test_event(2), test_event(3)]).await.unwrap();
    // A load on the replica is behind (nothing in this process knew better).
    let stale = pair.reader.read_stream(&s, 1, 100).await.unwrap();
    assert_eq!(stale.iter().map(|e| e.version).collect::<Vec<_>>(), [1]);
    let conflict = pair.reader.append(&s, ExpectedVersion::Exact(1), vec![test_event(9)]).await.unwrap_err();
    assert!(matches!(conflict, eventloom_core::Error::Conflict { actual: 3, .. }), "{conflict:?}");
    // The retry's read gets the newer events, from the primary, while the replica still lags.
    let newer = pair.reader.read_stream(&s, 2, 100).await.unwrap();
    assert_eq!(newer.iter().map(|e| (e.version, n(e))).collect::<Vec<_>>(), [(2, 2), (3, 3)]);
    assert_eq!(pair.version_on_standby("raced").await, 1, "the standby is still behind");
    pair.reader.append(&s, ExpectedVersion::Exact(3), vec![test_event(4)]).await.unwrap();
    // The engine: a fresh one (nothing cached) loads from the replica, conflicts once, and
    // decides again on the primary's events instead of failing on the same stale state.
    // Loads from the replica read each page whole (and from the primary what it lacks).
    assert!(!pair.reader.folds_row_by_row() && pair.writer.folds_row_by_row());
    let engine = Cqrs::<Account, _>::new(pair.reader.clone());
    let writer = Cqrs::<Account, _>::new(pair.writer.clone());
    writer.execute(Open { id: "acc".into() }).await.unwrap();
    writer.execute(Deposit { id: "acc".into(), amount: 5 }).await.unwrap();
    let done =
        engine.execute(Deposit { id: "acc".into(), amount: 7 }).await.expect("one retry on the primary's events");
    assert_eq!(done.version, 3);
    // A refusal is decided on the latest state, not the replica's (where the account is not
    // open yet), and so is a required version (If-Match) that only the primary has reached.
    // (A store of its own: nothing learnt of the stream from the appends above.)
    let schema = pair.writer.config().schema_name();
    let fresh = Cqrs::<Account, _>::new(replicated(&pair.primary.url(), &pair.standby.url(), schema).await);
    let required = ExecuteOptions::default().expect_version(3);
    let done = fresh.execute_with(Deposit { id: "acc".into(), amount: 1 }, required).await.expect("at version 3");
    assert_eq!(done.version, 4);
    let (state, version) = writer.load("acc").await.unwrap();
    assert_eq!((state.balance, version), (13, 4));
    pair.resume_replay().await;
    pair.replayed().await;
    assert_eq!(pair.version_on_standby("raced").await, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_snapshot_read_from_the_replica_is_never_newer_than_the_replicas_events() {
    let pair = Pair::start().await;
    let s = stream("snapped");
    let on_primary = PgSnapshotStore::new(&pair.writer);
    let on_replica = PgSnapshotStore::new(&pair.reader);
    let snapshot = |version: u64, position: Position| Snapshot {
        stream: s.clone(),
        version,
        position,
        snapshot_version: 1,
        state: format!("{{\"v\":{version}}}"),
    };
    let first = pair.writer.append(&s, ExpectedVersion::NoStream, vec![test_event(1)]).await.unwrap().into_outcome();
    on_primary.save_snapshot(snapshot(1, first.position)).await.unwrap();
    pair.replayed().await;
    pair.pause_replay().await;
    let later = pair
        .writer
        .append(&s, ExpectedVersion::Exact(1), vec![test_event(2), test_event(3)])
        .await
        .unwrap()
        .into_outcome();
    on_primary.save_snapshot(snapshot(3, later.position)).await.unwrap();
    assert_eq!(on_primary.load_snapshot(&s).await.unwrap().unwrap().version, 3);
    let loaded = on_replica.load_snapshot(&s).await.unwrap().expect("the replica's snapshot");
    assert_eq!(loaded.version, 1, "the replica's snapshot, not the primary's newer one");
    assert!(i64::try_from(loaded.version).unwrap() <= pair.version_on_standby("snapped").await);
    pair.resume_replay().await;
    // While events and snapshots keep coming, every snapshot the replica shows has its events
    // there too (they committed before it, and the standby replays in commit order).
    let mut position = later.position;
    for version in 4..=40u64 {
        position = pair
            .writer
            .append(&s, ExpectedVersion::Exact(version - 1), vec![test_event(version)])
            .await
            .unwrap()
            .into_outcome()
            .position;
        on_primary.save_snapshot(snapshot(version, position)).await.unwrap();
        if let Some(seen) = on_replica.load_snapshot(&s).await.unwrap() {
            let events = pair.version_on_standby("snapped").await;
            assert!(
                i64::try_from(seen.version).unwrap() <= events,
                "snapshot {} with events to {events}",
                seen.version
            );
        }
    }
    pair.replayed().await;
    assert_eq!(on_replica.load_snapshot(&s).await.unwrap().unwrap().position, position);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn read_your_writes_waits_for_the_commands_position_on_the_replica_and_the_lag_is_reported() {
    let pair = Pair::start().await;
    let lag = pair.reader.replica_lag().await.unwrap().unwrap();
    assert!(!lag.paused && lag.bytes == 0, "{lag:?}");
    assert_eq!(pair.writer.replica_lag().await.unwrap(), None, "no replica, no lag");
    pair.pause_replay().await;
    let done = pair.writer.append(&stream("ryw"), ExpectedVersion::Any, vec![test_event(1)]).await.unwrap();
    let position = done.into_outcome().position;
    pair.writer.wait_readable(position, Duration::from_secs(5)).await.expect("readable on the primary at once");
    let waited = pair.reader.wait_readable(position, Duration::from_millis(300)).await.unwrap_err();
    assert!(matches!(waited, eventloom_core::Error::Timeout(_)), "{waited:?}");
    assert!(pair.reader.read_all(Position::ZERO, 10).await.unwrap().is_empty());
    let lag = pair.reader.replica_lag().await.unwrap().unwrap();
    assert!(lag.paused && lag.bytes > 0, "a paused replica behind its primary: {lag:?}");
    pair.resume_replay().await;
    pair.reader.wait_readable(position, Duration::from_secs(10)).await.expect("readable once replayed");
    let read = pair.reader.read_all(Position::ZERO, 10).await.unwrap();
    assert_eq!(read.last().map(|e| e.position), Some(position));
}

/// On the shared primary and its replica: an engine, a subscription and read-your-writes on a
/// store that reads from the replica, with nothing paused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn commands_and_subscriptions_run_on_the_shared_replica() {
    let primary = store_at(&database_url()).await;
    let schema = primary.config().schema_name().to_owned();
    let store = replicated(&database_url(), &database_replica_url(), &schema).await;
    replayed(&store).await;
    let engine = Cqrs::<Account, _>::new(store.clone()).with_cache_capacity(0);
    let id = fresh_schema();
    engine.execute(Open { id: id.clone() }).await.unwrap();
    let mut last = None;
    for amount in 1..=20 {
        // No cache: every command loads the stream, from the replica, right after the last append.
        last = Some(engine.execute(Deposit { id: id.clone(), amount }).await.unwrap());
    }
    let last = last.unwrap();
    assert_eq!(last.version, 21);
    store.wait_readable(last.position, Duration::from_secs(10)).await.unwrap();
    let mut subscription = store.subscribe(Position::ZERO);
    let mut seen = Vec::new();
    while seen.len() < 21 {
        seen.extend(tokio::time::timeout(Duration::from_secs(20), subscription.next_batch()).await.unwrap().unwrap());
    }
    assert_eq!(seen.last().map(|e| e.position), Some(last.position));
    assert_eq!(seen.iter().map(|e| e.version).collect::<Vec<_>>(), (1..=21).collect::<Vec<_>>());

    // An App over it reports the replica's lag in its health, apart; one over the primary alone
    // reports none.
    let views = eventloom_core::memory::MemoryViewStore::default();
    let app =
        eventloom_core::App::builder(eventloom_core::Stores::new(store.clone(), views.clone())).start().await.unwrap();
    let lag = app.health(10).await.replica.expect("a replica's lag").expect("read");
    assert!(!lag.paused, "{lag:?}");
    app.shutdown().await.unwrap();
    let app = eventloom_core::App::builder(eventloom_core::Stores::new(primary.clone(), views)).start().await.unwrap();
    assert!(app.health(10).await.replica.is_none(), "no replica, no lag");
    app.shutdown().await.unwrap();
}

/// Migrations on a pool of one connection with a replica: the wait for the replica to replay
/// them needs the connection the migrations used, given back first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_on_a_pool_of_one_wait_for_the_replica_without_hanging() {
    let config = PgConfig::from_url(&database_url())
        .unwrap()
        .schema(fresh_schema())
        .unwrap()
        .pool_size(1)
        .read_replica(&database_replica_url())
        .unwrap();
    let connected = tokio::time::timeout(Duration::from_secs(60), eventloom_postgres::PgStores::connect_with(config));
    connected.await.expect("migrate returned").expect("connected and migrated");
}

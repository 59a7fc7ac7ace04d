//! Write combining (`PgConfig::write_combining`): appends of concurrent commands share one
//! statement and one commit, and each keeps its own answer.
//!
//! The deterministic tests hold the store's one statement (`write_combining_in_flight(1)`) with
//! an append that waits for a row lock of an open transaction, queue the appends under test
//! behind it, and release it: the queued appends then go as one combined statement. They run on
//! private servers (an open write transaction holds back every subscriber of its cluster).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use eventloom_core::testing::{TestRng, test_event, test_event_for_command};
use eventloom_core::{
    Error, StreamId,
    model::{ExpectedVersion, NewEvent},
    store::{AppendOutcome, Appended, EventStore},
};
use eventloom_postgres::{PgConfig, PgEventStore};
use tokio::task::JoinHandle;

use crate::support::{PrivateServer, database_url, fresh_schema, raw, raw_listener, statement_calls as calls};

fn stream(id: &str) -> StreamId {
    StreamId::new("combining", id).unwrap()
}

async fn combining_store(url: &str, in_flight: usize) -> PgEventStore {
    let config = PgConfig::from_url(url)
        .unwrap()
        .schema(fresh_schema())
        .unwrap()
        .pool_size(20)
        .write_combining_in_flight(in_flight);
    let store = PgEventStore::connect(config).await.unwrap();
    store.migrate().await.unwrap();
    store
}

/// Inserts `version` of `stream_id` on `client` in a transaction left open.
async fn hold_version(client: &tokio_postgres::Client, schema: &str, stream_id: &str, version: i64) {
    client
        .batch_execute(&format!(
            "BEGIN; INSERT INTO \"{schema}\".events (category, stream_id, version, event_type, schema_version, payload, \
             metadata) VALUES ('combining', '{stream_id}', {version}, 'Tested', 1, '{{\"n\":-1}}', '{{}}')"
        ))
        .await
        .unwrap();
}

/// How many sessions of the server wait for a lock.
async fn lock_waits(admin: &tokio_postgres::Client) -> i64 {
    admin.query_one("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'", &[]).await.unwrap().get(0)
}

async fn await_lock_waits(admin: &tokio_postgres::Client, at_least: i64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while lock_waits(admin).await < at_least {
        assert!(std::time::Instant::now() < deadline, "no append waits for the held row");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

type Pending = JoinHandle<eventloom_core::Result<Appended>>;

fn spawn_append(store: &PgEventStore, id: &str, expected: ExpectedVersion, events: Vec<NewEvent>) -> Pending {
    let (store, s) = (store.clone(), stream(id));
    tokio::spawn(async move { store.append(&s, expected, events).await })
}

/// The store's one statement, held by an append to stream `blocker` that waits for `blocker`'s
/// open transaction.
struct Blocked {
    blocker: tokio_postgres::Client,
    append: Pending,
}

async fn block(store: &PgEventStore, url: &str, admin: &tokio_postgres::Client) -> Blocked {
    let schema = store.config().schema_name().to_owned();
    let blocker = raw(url).await;
    let before = lock_waits(admin).await;
    hold_version(&blocker, &schema, "blocker", 1).await;
    let append = spawn_append(store, "blocker", ExpectedVersion::NoStream, vec![test_event(0)]);
    await_lock_waits(admin, before + 1).await;
    Blocked { blocker, append }
}

impl Blocked {
    /// Lets the blocking append through (its held row rolls back) once the appends spawned
    /// meanwhile have queued.
    async fn release(self) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        self.blocker.batch_execute("ROLLBACK").await.unwrap();
        self.append.await.unwrap().unwrap();
    }
}

/// The transactions of the events of `streams`, by stream.
async fn transactions(client: &tokio_postgres::Client, schema: &str) -> HashMap<String, Vec<String>> {
    let rows = client
        .query(
            &format!("SELECT stream_id, transaction_id::text FROM \"{schema}\".events ORDER BY stream_id, version"),
            &[],
        )
        .await
        .unwrap();
    let mut by_stream: HashMap<String, Vec<String>> = HashMap::new();
    for row in rows {
        by_stream.entry(row.get(0)).or_default().push(row.get(1));
    }
    by_stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn queued_appends_share_one_transaction_and_each_gets_its_own_answer() {
    let server = PrivateServer::start();
    let store = combining_store(&server.url(), 1).await;
    let schema = store.config().schema_name().to_owned();
    let admin = raw(&server.url()).await;
    store.append(&stream("behind"), ExpectedVersion::NoStream, vec![test_event(1), test_event(2)]).await.unwrap();
    let blocked = block(&store, &server.url(), &admin).await;
    let a = spawn_append(&store, "a", ExpectedVersion::NoStream, vec![test_event(10), test_event(11)]);
    let b = spawn_append(&store, "b", ExpectedVersion::NoStream, vec![test_event_for_command(20, "cmd-b")]);
    // Stale: the stream is at 2.
    let stale = spawn_append(&store, "behind", ExpectedVersion::Exact(1), vec![test_event(30)]);
    let c = spawn_append(&store, "c", ExpectedVersion::NoStream, vec![test_event(40)]);
    blocked.release().await;
    let a = a.await.unwrap().unwrap().into_outcome();
    let b = b.await.unwrap().unwrap().into_outcome();
    let c = c.await.unwrap().unwrap().into_outcome();
    match stale.await.unwrap() {
        Err(Error::Conflict { expected: ExpectedVersion::Exact(1), actual: 2, .. }) => {}
        other => panic!("not the stale append's conflict: {other:?}"),
    }
    assert_eq!((a.first_version, a.last_version, b.last_version, c.last_version), (1, 2, 1, 1));
    assert_eq!(a.position.transaction(), b.position.transaction(), "one transaction");
    assert_eq!(a.position.transaction(), c.position.transaction(), "one transaction");
    assert!(a.position < b.position && b.position < c.position, "streams in (category, id) order");
    let record = store.command_outcome("cmd-b").await.unwrap().expect("the command id is recorded");
    assert_eq!(record.outcome, b);
    let by_stream = transactions(&admin, &schema).await;
    assert_eq!(by_stream["behind"].len(), 2, "the stale append wrote nothing");
    let read = store.read_stream(&stream("a"), 1, 10).await.unwrap();
    assert_eq!(read.iter().map(|e| e.version).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(read[1].position, a.position);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stream_partly_taken_after_the_snapshot_refuses_only_its_own_append() {
    let server = PrivateServer::start();
    let store = combining_store(&server.url(), 1).await;
    let schema = store.config().schema_name().to_owned();
    let admin = raw(&server.url()).await;
    store.append(&stream("x"), ExpectedVersion::NoStream, vec![test_event(1)]).await.unwrap();
    // Another writer takes version 2 of x, not yet committed.
    let writer = raw(&server.url()).await;
    hold_version(&writer, &schema, "x", 2).await;
    let blocked = block(&store, &server.url(), &admin).await;
    let x = spawn_append(&store, "x", ExpectedVersion::Exact(1), vec![test_event(2), test_event(3)]);
    let y = spawn_append(&store, "y", ExpectedVersion::NoStream, vec![test_event(4)]);
    blocked.release().await;
    // The blocking append is done: the one session waiting now runs the combined statement.
    // The combined statement checked x at version 1 and waits on version 2; the writer commits:
    // the statement skips version 2, inserts version 3, and must roll back.
    await_lock_waits(&admin, 1).await;
    writer.batch_execute("COMMIT").await.unwrap();
    match x.await.unwrap() {
        Err(Error::Conflict { expected: ExpectedVersion::Exact(1), actual: 2, .. }) => {}
        other => panic!("not x's conflict: {other:?}"),
    }
    let y = y.await.unwrap().unwrap().into_outcome();
    assert_eq!(y.last_version, 1);
    let by_stream = transactions(&admin, &schema).await;
    assert_eq!(by_stream["x"].len(), 2, "x holds the writer's version 2 and nothing of the refused append");
    assert_eq!(by_stream["y"], [y.position.transaction().to_string()]);
}

/// Makes each stream, with one event (version 1).
async fn made(store: &PgEventStore, streams: &[&str]) {
    for (n, id) in (100..).zip(streams) {
        store.append(&stream(id), ExpectedVersion::NoStream, vec![test_event(n)]).await.unwrap();
    }
}

/// The first line of the statement of the session that waits for a lock.
async fn waiting_statement(admin: &tokio_postgres::Client) -> String {
    admin
        .query_one("SELECT split_part(query, E'\\n', 1) FROM pg_stat_activity WHERE wait_event_type = 'Lock'", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn queued_single_events_to_made_streams_share_the_lean_statement_and_each_gets_its_own_answer() {
    let server = PrivateServer::start();
    let store = combining_store(&server.url(), 1).await;
    let schema = store.config().schema_name().to_owned();
    let admin = raw(&server.url()).await;
    made(&store, &["a", "b", "c", "behind"]).await;
    store.append(&stream("behind"), ExpectedVersion::Exact(1), vec![test_event(1)]).await.unwrap();
    // The lean statement waits on version 2 of c, held by another writer (rolled back after).
    let writer = raw(&server.url()).await;
    hold_version(&writer, &schema, "c", 2).await;
    let blocked = block(&store, &server.url(), &admin).await;
    let a = spawn_append(&store, "a", ExpectedVersion::Exact(1), vec![test_event(10)]);
    let b = spawn_append(&store, "b", ExpectedVersion::Exact(1), vec![test_event(20)]);
    // Stale: the stream is at 2.
    let stale = spawn_append(&store, "behind", ExpectedVersion::Exact(1), vec![test_event(30)]);
    let c = spawn_append(&store, "c", ExpectedVersion::Exact(1), vec![test_event(40)]);
    blocked.release().await;
    await_lock_waits(&admin, 1).await;
    assert!(
        waiting_statement(&admin).await.starts_with("-- The common case of `append_combined.sql`"),
        "the lean statement runs"
    );
    writer.batch_execute("ROLLBACK").await.unwrap();
    let a = a.await.unwrap().unwrap().into_outcome();
    let b = b.await.unwrap().unwrap().into_outcome();
    let c = c.await.unwrap().unwrap().into_outcome();
    match stale.await.unwrap() {
        Err(Error::Conflict { expected: ExpectedVersion::Exact(1), actual: 2, .. }) => {}
        other => panic!("not the stale append's conflict: {other:?}"),
    }
    assert_eq!((a.first_version, a.last_version, b.last_version, c.last_version), (2, 2, 2, 2));
    assert_eq!(a.position.transaction(), b.position.transaction(), "one transaction");
    assert_eq!(a.position.transaction(), c.position.transaction(), "one transaction");
    assert!(a.position < b.position && b.position < c.position, "streams in (category, id) order");
    let by_stream = transactions(&admin, &schema).await;
    assert_eq!(by_stream["behind"].len(), 2, "the stale append wrote nothing");
    let read = store.read_stream(&stream("c"), 2, 10).await.unwrap();
    assert_eq!(read.iter().map(|e| (e.version, e.position)).collect::<Vec<_>>(), [(2, c.position)]);
}

/// The lean statement carries the wake-up NOTIFY of other processes' subscribers: it is
/// heard, and none goes alone for its appends.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_lean_statement_carries_the_wake_up() {
    let server = PrivateServer::init().with_options("-c shared_preload_libraries=pg_stat_statements").start_now();
    let admin = raw(&server.url()).await;
    admin.batch_execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements").await.unwrap();
    let store = combining_store(&server.url(), 1).await;
    let channel = format!("cqrs_events_{}", store.config().schema_name());
    let (_listening, mut heard) = raw_listener(&server.url(), &channel).await;
    let streams = ["a", "b", "c"];
    made(&store, &streams).await;
    // The wake-ups of those first writes are out.
    tokio::time::sleep(Duration::from_millis(200)).await;
    while heard.try_recv().is_ok() {}
    let (alone, lean) = ("-- One coalesced wake-up", "-- The common case of `append_combined.sql`");
    let (notifies, leans) = (calls(&admin, alone).await, calls(&admin, lean).await);
    let blocked = block(&store, &server.url(), &admin).await;
    let appends: Vec<Pending> =
        streams.iter().map(|id| spawn_append(&store, id, ExpectedVersion::Exact(1), vec![test_event(1)])).collect();
    blocked.release().await;
    for append in appends {
        append.await.unwrap().unwrap();
    }
    // Time for a NOTIFY alone to go out, if one were needed.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(calls(&admin, lean).await - leans, 1, "the appends went as one lean statement");
    assert_eq!(calls(&admin, alone).await - notifies, 0, "a NOTIFY went alone for the lean statement's appends");
    let mut told = 0;
    while heard.try_recv().is_ok() {
        told += 1;
    }
    assert_eq!(told, 2, "one notification for the blocker's append, one for the lean statement's commit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_version_taken_after_the_lean_statements_snapshot_refuses_only_its_own_append() {
    let server = PrivateServer::start();
    let store = combining_store(&server.url(), 1).await;
    let schema = store.config().schema_name().to_owned();
    let admin = raw(&server.url()).await;
    made(&store, &["x", "y"]).await;
    // Another writer takes version 2 of x, not yet committed.
    let writer = raw(&server.url()).await;
    hold_version(&writer, &schema, "x", 2).await;
    let blocked = block(&store, &server.url(), &admin).await;
    let x = spawn_append(&store, "x", ExpectedVersion::Exact(1), vec![test_event(2)]);
    let y = spawn_append(&store, "y", ExpectedVersion::Exact(1), vec![test_event(3)]);
    blocked.release().await;
    // The lean statement checked x at version 1 and waits on version 2; the writer commits:
    // the statement skips x (ON CONFLICT DO NOTHING) and writes y.
    await_lock_waits(&admin, 1).await;
    assert!(waiting_statement(&admin).await.starts_with("-- The common case of `append_combined.sql`"));
    writer.batch_execute("COMMIT").await.unwrap();
    match x.await.unwrap() {
        Err(Error::Conflict { expected: ExpectedVersion::Exact(1), actual: 2, .. }) => {}
        other => panic!("not x's conflict: {other:?}"),
    }
    let y = y.await.unwrap().unwrap().into_outcome();
    assert_eq!(y.last_version, 2);
    let by_stream = transactions(&admin, &schema).await;
    assert_eq!(by_stream["x"].len(), 2, "x holds the writer's version 2 and nothing of the refused append");
    assert_eq!(by_stream["y"][1], y.position.transaction().to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_event_the_server_refuses_in_the_lean_statement_fails_only_its_own_append() {
    let server = PrivateServer::start();
    let store = combining_store(&server.url(), 1).await;
    let admin = raw(&server.url()).await;
    made(&store, &["bad", "good", "fine"]).await;
    let blocked = block(&store, &server.url(), &admin).await;
    let mut not_json = test_event(1);
    not_json.payload = "{not json".into();
    let bad = spawn_append(&store, "bad", ExpectedVersion::Exact(1), vec![not_json]);
    let good = spawn_append(&store, "good", ExpectedVersion::Exact(1), vec![test_event(2)]);
    let fine = spawn_append(&store, "fine", ExpectedVersion::Exact(1), vec![test_event(3)]);
    blocked.release().await;
    assert!(matches!(bad.await.unwrap(), Err(Error::InvalidEvent { .. })));
    assert_eq!(good.await.unwrap().unwrap().into_outcome().last_version, 2);
    assert_eq!(fine.await.unwrap().unwrap().into_outcome().last_version, 2);
    assert_eq!(store.stream_version(&stream("bad")).await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_command_id_recorded_after_the_snapshot_answers_its_append_as_a_duplicate() {
    let server = PrivateServer::start();
    let store = combining_store(&server.url(), 1).await;
    let schema = store.config().schema_name().to_owned();
    let admin = raw(&server.url()).await;
    // Another process runs command k on stream "other", not yet committed.
    let writer = raw(&server.url()).await;
    writer
        .batch_execute(&format!(
            "BEGIN; SELECT * FROM \"{schema}\".append('combining', 'other', NULL, ARRAY['Tested'], ARRAY[1], \
             ARRAY['{{\"n\":-2}}'], ARRAY['{{\"event_id\":\"00000000-0000-0000-0000-000000000009\",\"timestamp\":0,\
             \"command_id\":\"k\"}}'], 'k')"
        ))
        .await
        .unwrap();
    let blocked = block(&store, &server.url(), &admin).await;
    let x = spawn_append(&store, "x", ExpectedVersion::NoStream, vec![test_event_for_command(1, "k")]);
    let y = spawn_append(&store, "y", ExpectedVersion::NoStream, vec![test_event(2)]);
    blocked.release().await;
    // The blocking append is done: the one session waiting now runs the combined statement.
    await_lock_waits(&admin, 1).await;
    writer.batch_execute("COMMIT").await.unwrap();
    match x.await.unwrap().unwrap() {
        Appended::Duplicate { command_id, first } => {
            assert_eq!(command_id, "k");
            assert_eq!(first.outcome.stream, stream("other"));
        }
        other => panic!("not a duplicate: {other:?}"),
    }
    y.await.unwrap().unwrap();
    let by_stream = transactions(&admin, &schema).await;
    assert!(!by_stream.contains_key("x"), "the duplicate wrote nothing");
    assert_eq!(by_stream["y"].len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_command_id_twice_in_one_batch_is_answered_by_the_first_outcome() {
    let server = PrivateServer::start();
    let store = combining_store(&server.url(), 1).await;
    let admin = raw(&server.url()).await;
    let blocked = block(&store, &server.url(), &admin).await;
    let p = spawn_append(&store, "p", ExpectedVersion::NoStream, vec![test_event_for_command(1, "twice")]);
    let q = spawn_append(&store, "q", ExpectedVersion::NoStream, vec![test_event_for_command(2, "twice")]);
    let other = spawn_append(&store, "r", ExpectedVersion::NoStream, vec![test_event(3)]);
    blocked.release().await;
    // Whichever queued first is written; the other waits for its outcome and replays it.
    let (p, q) = (p.await.unwrap().unwrap(), q.await.unwrap().unwrap());
    let (written, duplicate, unwritten) = match (&p, &q) {
        (Appended::Written(w), d @ Appended::Duplicate { .. }) => (w, d, "q"),
        (d @ Appended::Duplicate { .. }, Appended::Written(w)) => (w, d, "p"),
        other => panic!("not one written and one duplicate: {other:?}"),
    };
    match duplicate {
        Appended::Duplicate { command_id, first } => {
            assert_eq!(command_id, "twice");
            assert_eq!(&first.outcome, written);
        }
        _ => unreachable!(),
    }
    other.await.unwrap().unwrap();
    assert_eq!(store.stream_version(&stream(unwritten)).await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_event_the_server_refuses_fails_only_its_own_append() {
    let server = PrivateServer::start();
    let store = combining_store(&server.url(), 1).await;
    let admin = raw(&server.url()).await;
    let blocked = block(&store, &server.url(), &admin).await;
    let mut not_json = test_event(1);
    not_json.payload = "{not json".into();
    let mut nul = test_event(2);
    nul.payload = "{\"text\":\"a\0b\"}".into();
    let bad = spawn_append(&store, "bad", ExpectedVersion::NoStream, vec![test_event(0), not_json]);
    let nul = spawn_append(&store, "nul", ExpectedVersion::NoStream, vec![nul]);
    let good = spawn_append(&store, "good", ExpectedVersion::NoStream, vec![test_event_for_command(3, "good-1")]);
    blocked.release().await;
    assert!(matches!(bad.await.unwrap(), Err(Error::InvalidEvent { .. })));
    assert!(matches!(nul.await.unwrap(), Err(Error::InvalidEvent { .. })));
    assert_eq!(good.await.unwrap().unwrap().into_outcome().last_version, 1);
    assert_eq!(store.stream_version(&stream("bad")).await.unwrap(), 0);
    assert!(store.command_outcome("good-1").await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_combined_statement_whose_connection_is_lost_reports_an_unknown_outcome_to_each_append() {
    let server = PrivateServer::start();
    let store = combining_store(&server.url(), 1).await;
    let schema = store.config().schema_name().to_owned();
    let admin = raw(&server.url()).await;
    let writer = raw(&server.url()).await;
    hold_version(&writer, &schema, "x", 1).await;
    let blocked = block(&store, &server.url(), &admin).await;
    let x = spawn_append(&store, "x", ExpectedVersion::NoStream, vec![test_event_for_command(1, "lost-x")]);
    let y = spawn_append(&store, "y", ExpectedVersion::NoStream, vec![test_event_for_command(2, "lost-y")]);
    blocked.release().await;
    // The blocking append is done: the one session waiting now runs the combined statement.
    await_lock_waits(&admin, 1).await;
    let ended: i64 = admin
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE wait_event_type = 'Lock' \
             AND query LIKE '-- Write combining%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(ended, 1, "one combined statement waited");
    for append in [x, y] {
        let err = append.await.unwrap().unwrap_err();
        assert!(err.is_transient(), "an unknown outcome, to retry: {err:?}");
    }
    writer.batch_execute("ROLLBACK").await.unwrap();
    // The command ids tell what happened: nothing.
    assert!(store.command_outcome("lost-x").await.unwrap().is_none());
    assert!(store.command_outcome("lost-y").await.unwrap().is_none());
    store.append(&stream("y"), ExpectedVersion::NoStream, vec![test_event_for_command(2, "lost-y")]).await.unwrap();
}

/// What one attempt of the race did.
struct Attempt {
    stream: String,
    expected: u64,
    ns: Vec<u64>,
    command_id: Option<String>,
    bad: bool,
    result: eventloom_core::Result<Appended>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn combined_appends_racing_with_conflicts_and_repeated_command_ids_keep_every_promise() {
    race(Shape::Mixed).await;
}

/// The race with one event per append and no command ids: the batches that find their streams
/// made go as `append_combined_one.sql`, the others as the general statement.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn combined_single_event_appends_racing_with_conflicts_keep_every_promise() {
    race(Shape::SingleEvents).await;
}

/// The appends of a race.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// 1 to 3 events, a command id (often one shared with other tasks) 6 times in 10.
    Mixed,
    /// One event, no command id.
    SingleEvents,
}

async fn race(shape: Shape) {
    const TASKS: u64 = 32;
    const ROUNDS: u64 = 25;
    const STREAMS: u64 = 6;
    const SHARED_IDS: u64 = 12;
    let rng = TestRng::from_env("CQRS_TEST_SEED");
    let seed = rng.seed();
    println!("seed {seed} (replay with CQRS_TEST_SEED={seed})");
    let store = combining_store(&database_url(), 2).await;
    let schema = store.config().schema_name().to_owned();
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let store = store.clone();
        let mut rng = rng.derive(t);
        tasks.push(tokio::spawn(async move {
            let mut attempts = Vec::new();
            for round in 0..ROUNDS {
                let id = format!("s{}", rng.below(STREAMS));
                let s = stream(&id);
                let version = store.stream_version(&s).await.unwrap();
                let expected = if version > 0 && rng.one_in(4) { version - 1 } else { version };
                let count = if shape == Shape::Mixed { 1 + rng.below(3) } else { 1 };
                let command_id = match rng.below(10) {
                    _ if shape == Shape::SingleEvents => None,
                    0..=3 => Some(format!("rep-{seed}-{}", rng.below(SHARED_IDS))),
                    4 | 5 => Some(format!("one-{seed}-{t}-{round}")),
                    _ => None,
                };
                let ns: Vec<u64> = (0..count).map(|j| t * 1_000_000 + round * 10 + j).collect();
                let mut events: Vec<NewEvent> = ns
                    .iter()
                    .map(|&n| match &command_id {
                        Some(c) => test_event_for_command(n, c),
                        None => test_event(n),
                    })
                    .collect();
                let bad = rng.one_in(20);
                if bad {
                    events[0].payload = "{not json".into();
                }
                let expected_version =
                    if expected == 0 { ExpectedVersion::NoStream } else { ExpectedVersion::Exact(expected) };
                let result = store.append(&s, expected_version, events).await;
                attempts.push(Attempt { stream: id, expected, ns, command_id, bad, result });
                if rng.one_in(3) {
                    tokio::task::yield_now().await;
                }
            }
            attempts
        }));
    }
    let mut attempts = Vec::new();
    for task in tasks {
        attempts.extend(task.await.unwrap());
    }

    // The log, in (transaction id, sequence) order.
    let admin = raw(&database_url()).await;
    let rows = admin
        .query(
            &format!(
                "SELECT stream_id, version, transaction_id::text, sequence, payload::text FROM \"{schema}\".events \
                 ORDER BY transaction_id, sequence"
            ),
            &[],
        )
        .await
        .unwrap();
    let mut next: BTreeMap<String, u64> = BTreeMap::new();
    let mut stored: HashMap<u64, (String, u64, String, i64)> = HashMap::new();
    for row in &rows {
        let (id, version, tx, sequence): (String, i64, String, i64) = (row.get(0), row.get(1), row.get(2), row.get(3));
        let version = u64::try_from(version).unwrap();
        let expected_next = next.entry(id.clone()).or_insert(1);
        assert_eq!(version, *expected_next, "stream {id}: versions gap-free and in (transaction id, sequence) order");
        *expected_next += 1;
        let payload: serde_json::Value = serde_json::from_str(row.get::<_, &str>(4)).unwrap();
        stored.insert(payload["n"].as_u64().unwrap(), (id, version, tx, sequence));
    }

    let (mut written, mut conflicts, mut duplicates, mut refused) = (0, 0, 0, 0);
    let mut firsts: HashMap<&str, Vec<&AppendOutcome>> = HashMap::new();
    let mut repeats: Vec<(&str, &AppendOutcome)> = Vec::new();
    let mut written_events = 0;
    for a in &attempts {
        match &a.result {
            Ok(Appended::Written(outcome)) => {
                written += 1;
                assert!(!a.bad, "an append with a refused event was written");
                assert_eq!(
                    (outcome.first_version, outcome.last_version),
                    (a.expected + 1, a.expected + a.ns.len() as u64)
                );
                for (i, n) in a.ns.iter().enumerate() {
                    let (id, version, tx, sequence) = stored.get(n).unwrap_or_else(|| panic!("event {n} is missing"));
                    assert_eq!(
                        (id, *version),
                        (&a.stream, a.expected + 1 + i as u64),
                        "event {n} where it was written"
                    );
                    assert_eq!(tx, &outcome.position.transaction().to_string());
                    if i + 1 == a.ns.len() {
                        assert_eq!(*sequence as u64, outcome.position.sequence(), "the position of the last event");
                    }
                }
                written_events += a.ns.len();
                if let Some(c) = &a.command_id {
                    firsts.entry(c).or_default().push(outcome);
                }
            }
            Ok(Appended::Duplicate { command_id, first }) => {
                duplicates += 1;
                assert_eq!(Some(command_id), a.command_id.as_ref());
                repeats.push((command_id, &first.outcome));
            }
            Err(Error::Conflict { expected, actual, .. }) => {
                conflicts += 1;
                let asked =
                    if a.expected == 0 { ExpectedVersion::NoStream } else { ExpectedVersion::Exact(a.expected) };
                assert_eq!(*expected, asked);
                assert!(*actual > a.expected, "a conflict means another writer was ahead: {actual} vs {}", a.expected);
                assert!(*actual < next[&a.stream], "the version reported exists");
                assert!(a.ns.iter().all(|n| !stored.contains_key(n)), "a refused append wrote nothing");
            }
            Err(Error::InvalidEvent { .. }) => {
                refused += 1;
                assert!(a.bad, "only an append with a refused event is refused as invalid");
                assert!(a.ns.iter().all(|n| !stored.contains_key(n)));
            }
            Err(other) => panic!("unexpected answer: {other:?}"),
        }
        if !matches!(a.result, Ok(Appended::Written(_))) {
            assert!(a.ns.iter().all(|n| !stored.contains_key(n)), "only written appends are stored");
        }
    }
    assert_eq!(written_events, rows.len(), "the store holds the written appends and nothing else");
    for (command_id, outcomes) in &firsts {
        assert_eq!(outcomes.len(), 1, "command {command_id} written once");
        let record = store.command_outcome(command_id).await.unwrap().unwrap();
        assert_eq!(&record.outcome, outcomes[0]);
    }
    for (command_id, outcome) in &repeats {
        let first = firsts.get(command_id).unwrap_or_else(|| panic!("duplicate of {command_id}, never written"));
        assert_eq!(&first[0], outcome, "a duplicate answers with the first outcome");
    }
    let shared: i64 = admin
        .query_one(
            &format!(
                "SELECT count(*) FROM (SELECT transaction_id FROM \"{schema}\".events GROUP BY transaction_id \
                 HAVING count(DISTINCT stream_id) > 1) t"
            ),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    println!(
        "{} attempts: {written} written, {conflicts} conflicts, {duplicates} duplicates, {refused} refused; \
         {shared} transactions shared by several streams",
        attempts.len()
    );
    assert!(conflicts > 0, "the race had conflicts");
    assert!(duplicates > 0 || shape == Shape::SingleEvents, "the race had repeated command ids");
    assert!(shared > 0, "appends shared transactions");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refused_event_among_many_appends_costs_a_few_statements_not_one_per_append() {
    const APPENDS: u64 = 32;
    let server = PrivateServer::start();
    let store = combining_store(&server.url(), 1).await;
    let schema = store.config().schema_name().to_owned();
    let admin = raw(&server.url()).await;
    let blocked = block(&store, &server.url(), &admin).await;
    let appends: Vec<(u64, Pending)> = (0..APPENDS)
        .map(|k| {
            let mut event = test_event(k);
            if k == 13 {
                event.payload = "{not json".into();
            }
            (k, spawn_append(&store, &format!("many-{k:02}"), ExpectedVersion::NoStream, vec![event]))
        })
        .collect();
    blocked.release().await;
    for (k, append) in appends {
        match append.await.unwrap() {
            Err(Error::InvalidEvent { .. }) if k == 13 => {}
            Ok(Appended::Written(_)) if k != 13 => {}
            other => panic!("append {k}: {other:?}"),
        }
    }
    let by_stream = transactions(&admin, &schema).await;
    let good: std::collections::HashSet<&String> =
        by_stream.iter().filter(|(id, _)| id.starts_with("many-")).flat_map(|(_, txs)| txs).collect();
    assert_eq!(by_stream.keys().filter(|id| id.starts_with("many-")).count(), APPENDS as usize - 1);
    // Halves: 16 go at once, then 8, 4, 2 and 1 beside the refused one.
    assert!(good.len() <= 6, "the 31 good appends took {} transactions", good.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_queue_sends_further_appends_alone_at_once() {
    // One statement in flight: the queue holds 128 appends.
    const QUEUED: usize = 128;
    const MORE: usize = 20;
    let server = PrivateServer::start();
    let store = combining_store(&server.url(), 1).await;
    let admin = raw(&server.url()).await;
    let blocked = block(&store, &server.url(), &admin).await;
    let queued: Vec<Pending> = (0..QUEUED)
        .map(|k| spawn_append(&store, &format!("queued-{k}"), ExpectedVersion::NoStream, vec![test_event(k as u64)]))
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let more: Vec<Pending> = (0..MORE)
        .map(|k| spawn_append(&store, &format!("more-{k}"), ExpectedVersion::NoStream, vec![test_event(k as u64)]))
        .collect();
    // The appends past the queue's bound do not wait for the held statement.
    for append in more {
        let done = tokio::time::timeout(Duration::from_secs(10), append).await;
        let outcome = done.expect("an append past the full queue waits for the held statement");
        assert_eq!(outcome.unwrap().unwrap().into_outcome().last_version, 1);
    }
    assert!(queued.iter().all(|a| !a.is_finished()), "the queued appends wait for the held statement");
    blocked.release().await;
    for append in queued {
        assert_eq!(append.await.unwrap().unwrap().into_outcome().last_version, 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_schema_without_the_combined_statement_turns_combining_off_and_every_append_goes_alone() {
    let server = PrivateServer::start();
    let store = combining_store(&server.url(), 1).await;
    let schema = store.config().schema_name().to_owned();
    let admin = raw(&server.url()).await;
    // As on a schema that an older release migrated: no migration 13.
    admin
        .batch_execute(&format!("DROP FUNCTION \"{schema}\".combined_append_refused(integer[], integer[])"))
        .await
        .unwrap();
    // First queued behind a held statement, so that they meet the combined statement; then,
    // with combining off, concurrent appends that go alone at once.
    for round in 0..2 {
        let blocked = if round == 0 { Some(block(&store, &server.url(), &admin).await) } else { None };
        let appends: Vec<Pending> = (0..3)
            .map(|k| {
                let id = format!("old-{round}-{k}");
                let event = test_event_for_command(k, &format!("old-cmd-{round}-{k}"));
                spawn_append(&store, &id, ExpectedVersion::NoStream, vec![event])
            })
            .collect();
        if let Some(blocked) = blocked {
            blocked.release().await;
        }
        for append in appends {
            assert_eq!(append.await.unwrap().unwrap().into_outcome().last_version, 1, "round {round}");
        }
    }
    let by_stream = transactions(&admin, &schema).await;
    let txs: std::collections::HashSet<&String> =
        by_stream.iter().filter(|(id, _)| id.starts_with("old-")).flat_map(|(_, txs)| txs).collect();
    assert_eq!(txs.len(), 6, "each append alone");
}

#[test]
fn appends_queued_when_their_runtime_shuts_down_leave_the_store_usable() {
    let server = PrivateServer::start();
    let url = server.url();
    let first = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (store, queued) = first.block_on(async {
        let store = combining_store(&url, 1).await;
        let admin = raw(&url).await;
        let blocked = block(&store, &url, &admin).await;
        let queued: Vec<Pending> = (0..4)
            .map(|k| spawn_append(&store, &format!("dropped-{k}"), ExpectedVersion::NoStream, vec![test_event(k)]))
            .collect();
        tokio::time::sleep(Duration::from_millis(200)).await;
        // The blocker's connection ends with the runtime, which rolls its row back.
        std::mem::forget(blocked.blocker);
        (store, queued)
    });
    // Every task of the runtime is dropped: the statement in flight and the queued appends.
    drop(first);
    drop(queued);
    let second = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    second.block_on(async {
        for k in 0..3 {
            let s = stream(&format!("after-{k}"));
            let append = store.append(&s, ExpectedVersion::NoStream, vec![test_event(k)]);
            let appended = tokio::time::timeout(Duration::from_secs(20), append)
                .await
                .expect("an append after the runtime shut down waits for a place that was never given back");
            assert_eq!(appended.unwrap().into_outcome().last_version, 1);
        }
    });
}

/// The combined statement keeps its generic plan: its arrays, read through scalar subqueries,
/// do not make each custom plan look cheaper (before, the server planned it at every
/// execution, more CPU than running it). Counted by `pg_stat_statements` with planning tracked.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_combined_statement_is_not_planned_at_every_execution() {
    const ROUNDS: i64 = 30;
    let server = PrivateServer::init()
        .with_options("-c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track_planning=on")
        .start_now();
    let admin = raw(&server.url()).await;
    admin.batch_execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements").await.unwrap();
    // Two connections (the blocker's and the combined statement's): each plans a statement
    // anew for its first five executions, then keeps the generic plan if it is not dearer.
    let config = PgConfig::from_url(&server.url())
        .unwrap()
        .schema(fresh_schema())
        .unwrap()
        .pool_size(2)
        .write_combining_in_flight(1);
    let store = PgEventStore::connect(config).await.unwrap();
    store.migrate().await.unwrap();
    let schema = store.config().schema_name().to_owned();
    let lean = ["l0", "l1", "l2"];
    made(&store, &lean).await;
    for round in 0..ROUNDS {
        // New streams (the general statement), then one event to each made stream (the lean one).
        let batches: [Vec<(String, ExpectedVersion)>; 2] = [
            (0..3).map(|k| (format!("r{round}-{k}"), ExpectedVersion::NoStream)).collect(),
            lean.iter().map(|id| (id.to_string(), ExpectedVersion::Exact(round.unsigned_abs() + 1))).collect(),
        ];
        for batch in batches {
            let blocked = block(&store, &server.url(), &admin).await;
            let appends: Vec<Pending> =
                batch.iter().map(|(id, expected)| spawn_append(&store, id, *expected, vec![test_event(1)])).collect();
            blocked.release().await;
            for append in appends {
                append.await.unwrap().unwrap();
            }
            // The next blocker is a stream of its own.
            admin.batch_execute(&format!("DELETE FROM \"{schema}\".events WHERE stream_id = 'blocker'")).await.unwrap();
            admin
                .batch_execute(&format!("DELETE FROM \"{schema}\".streams WHERE stream_id = 'blocker'"))
                .await
                .unwrap();
        }
    }
    for (name, first_line) in
        [("general", "-- Write combining%"), ("lean", "-- The common case of `append_combined.sql`%")]
    {
        let row = admin
            .query_one(
                "SELECT coalesce(sum(calls), 0)::int8, coalesce(sum(plans), 0)::int8 FROM pg_stat_statements \
                 WHERE query LIKE $1",
                &[&first_line],
            )
            .await
            .unwrap();
        let (calls, plans): (i64, i64) = (row.get(0), row.get(1));
        println!("the {name} combined statement: {calls} executions, {plans} plans");
        assert!(calls >= ROUNDS, "{calls} {name} combined statements for {ROUNDS} rounds");
        assert!(plans * 2 < calls, "{plans} plans for {calls} executions: planned anew at every execution");
    }
}

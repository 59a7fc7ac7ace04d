//! Wake-ups across stores by NOTIFY: the subscriber's store and the appender's store share
//! nothing but the server (two pools, two notifiers, two listeners), and the subscriber polls
//! only every ten minutes, so only a NOTIFY can wake it in time. Each test runs on a private
//! server: a transaction held open by another test would hold the event back past the wake-up.

use std::time::{Duration, Instant};

use eventloom_core::read::Subscription;
use eventloom_core::testing::{test_event, test_event_for_command};
use eventloom_core::{Position, StreamId, model::ExpectedVersion, store::EventStore};
use eventloom_postgres::{PgConfig, PgEventStore};

use crate::support::{PrivateServer, raw, statement_calls as calls, store_at};

/// Long enough that a subscriber woken in time was woken by a NOTIFY.
const POLL: Duration = Duration::from_secs(600);

/// A second store on `store`'s schema with a pool, notifier and listener of its own: another
/// process, as far as wake-ups go.
async fn other_instance(url: &str, store: &PgEventStore) -> PgEventStore {
    let config = PgConfig::from_url(url).unwrap().schema(store.config().schema_name()).unwrap();
    PgEventStore::connect(config).await.unwrap()
}

/// Waits until `count` sessions LISTEN on the schema's channel (cut to the 63 bytes PostgreSQL
/// keeps of a name).
async fn listening(url: &str, store: &PgEventStore, count: i64) {
    let admin = raw(url).await;
    let mut channel = format!("cqrs_events_{}", store.config().schema_name());
    while channel.len() > 63 {
        channel.pop();
    }
    let listen = format!("LISTEN \"{channel}\"");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let n: i64 = admin
            .query_one("SELECT count(*) FROM pg_stat_activity WHERE query = $1 AND state = 'idle'", &[&listen])
            .await
            .unwrap()
            .get(0);
        if n >= count {
            return;
        }
        assert!(Instant::now() < deadline, "{n} of {count} listeners after 20 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A subscriber of `subscriber`, caught up and waiting, gets event `n` appended through
/// `appender` within 5 s: how long it took.
async fn woken_by_notify(url: &str, subscriber: &PgEventStore, appender: &PgEventStore, n: u64) -> Duration {
    let after = subscriber.head().await.unwrap().unwrap_or(Position::ZERO);
    let mut subscription = subscriber.subscribe(after).with_poll_interval(POLL);
    let reader = tokio::spawn(async move {
        let batch = subscription.next_batch().await.unwrap();
        (Instant::now(), batch)
    });
    // Both listeners are up (the appender's too, when it has subscribed before), and the
    // subscriber has read once and waits.
    listening(url, subscriber, 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stream = StreamId::new("wake", "w").unwrap();
    let start = Instant::now();
    appender.append(&stream, ExpectedVersion::Any, vec![test_event(n)]).await.unwrap();
    let (at, batch) = tokio::time::timeout(Duration::from_secs(5), reader)
        .await
        .unwrap_or_else(|_| panic!("the subscriber was not woken within 5 s (it polls every {POLL:?})"))
        .unwrap();
    assert_eq!(batch.len(), 1);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&batch[0].payload).unwrap()["n"], n);
    at - start
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_append_through_another_store_wakes_a_subscriber_by_notify() {
    let server = PrivateServer::start();
    let subscriber = store_at(&server.url()).await;
    let appender = other_instance(&server.url(), &subscriber).await;
    for n in 0..3 {
        let took = woken_by_notify(&server.url(), &subscriber, &appender, n).await;
        println!("woken by NOTIFY {took:?} after the append began");
    }
}

#[test]
fn a_store_used_on_a_second_runtime_after_the_first_ended_still_notifies_and_listens() {
    let server = PrivateServer::start();
    let url = server.url();
    let runtime = || tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    // The first runtime starts both stores' notifiers and listeners, then ends.
    let first = runtime();
    let (a, b) = first.block_on(async {
        let a = store_at(&url).await;
        let b = other_instance(&url, &a).await;
        woken_by_notify(&url, &a, &b, 0).await;
        woken_by_notify(&url, &b, &a, 1).await;
        (a, b)
    });
    drop(first);
    let second = runtime();
    second.block_on(async {
        // Both directions: each store's listener and each store's notifier run again.
        let took = woken_by_notify(&url, &a, &b, 2).await;
        println!("second runtime: b -> a woken in {took:?}");
        let took = woken_by_notify(&url, &b, &a, 3).await;
        println!("second runtime: a -> b woken in {took:?}");
    });
}

/// WAL flushes the server counted (`pg_stat_wal.wal_sync`), once every other session has
/// ended (a backend reports its counts when it exits).
async fn wal_syncs(url: &str) -> i64 {
    let admin = raw(url).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let others: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if others == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{others} sessions still open");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    admin.query_one("SELECT wal_sync FROM pg_stat_wal", &[]).await.unwrap().get(0)
}

/// A `NOTIFY` transaction writes only its commit record, which PostgreSQL commits without a
/// WAL flush even under `synchronous_commit = on`: wake-ups cost a durable server no flush.
/// (Measured here: 30 appends, each followed by its own NOTIFY, 32 flushes; the same with
/// `synchronous_commit = off` set in the NOTIFY's transaction, 34.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notify_does_not_wait_for_the_wal_on_a_durable_server() {
    const APPENDS: i64 = 30;
    let server = PrivateServer::init().with_options("-c fsync=on -c synchronous_commit=on").start_now();
    let url = server.url();
    let store = store_at(&url).await;
    let subscriber = other_instance(&url, &store).await;
    let mut subscription = subscriber.subscribe(Position::ZERO).with_poll_interval(POLL);
    let stream = StreamId::new("wake", "durable").unwrap();
    store.append(&stream, ExpectedVersion::Any, vec![test_event(0)]).await.unwrap();
    listening(&url, &subscriber, 1).await;
    let config = PgConfig::from_url(&url).unwrap().schema(store.config().schema_name()).unwrap();
    drop(store);
    // A store of its own whose every append is a burst of its own: one NOTIFY each.
    let store = PgEventStore::connect(config).await.unwrap();
    let before = wal_syncs_now(&url).await;
    for n in 1..=APPENDS {
        store.append(&stream, ExpectedVersion::Any, vec![test_event(n as u64)]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut seen = 0;
    while seen < APPENDS as usize + 1 {
        seen += tokio::time::timeout(Duration::from_secs(5), subscription.next_batch()).await.unwrap().unwrap().len();
    }
    drop((store, subscription, subscriber));
    let syncs = wal_syncs(&url).await - before;
    println!("{APPENDS} appends, each followed by its NOTIFY: {syncs} WAL flushes");
    assert!(syncs >= APPENDS, "every append flushed the WAL ({syncs} flushes): is fsync on?");
    assert!(syncs < APPENDS * 3 / 2, "{syncs} WAL flushes for {APPENDS} appends: the NOTIFYs waited for the WAL too");
}

/// `pg_stat_wal.wal_sync` as the server has it now.
async fn wal_syncs_now(url: &str) -> i64 {
    raw(url).await.query_one("SELECT wal_sync FROM pg_stat_wal", &[]).await.unwrap().get(0)
}

/// `append` runs while `subscription` waits (it has read everything before): the one event it
/// gets within 5 s, and the subscription back.
async fn next_woken(
    subscription: Subscription<PgEventStore>,
    append: impl std::future::Future<Output = ()>,
) -> Subscription<PgEventStore> {
    // The reader has looked once and waits for a wake-up.
    woken_after(subscription, append, Duration::from_millis(50)).await
}

/// As [`next_woken`], with `append` sent once `settle` has passed since the reader started
/// (zero: at once, the reader may not wait yet).
async fn woken_after(
    mut subscription: Subscription<PgEventStore>,
    append: impl std::future::Future<Output = ()>,
    settle: Duration,
) -> Subscription<PgEventStore> {
    let reader = tokio::spawn(async move {
        let batch = subscription.next_batch().await.unwrap();
        (subscription, batch)
    });
    tokio::time::sleep(settle).await;
    append.await;
    let (subscription, batch) = tokio::time::timeout(Duration::from_secs(5), reader)
        .await
        .unwrap_or_else(|_| panic!("the append woke nobody within 5 s (the subscriber polls every {POLL:?})"))
        .unwrap();
    assert_eq!(batch.len(), 1);
    subscription
}

/// `stream`'s first event appended through `appender`, and a subscription of `subscriber`
/// that has read it and waits, its store listening.
async fn subscribed_after_first(
    url: &str,
    subscriber: &PgEventStore,
    appender: &PgEventStore,
    stream: &StreamId,
) -> Subscription<PgEventStore> {
    appender.append(stream, ExpectedVersion::NoStream, vec![test_event(0)]).await.unwrap();
    let mut subscription = subscriber.subscribe(Position::ZERO).with_poll_interval(POLL);
    assert_eq!(subscription.next_batch().await.unwrap().len(), 1);
    listening(url, subscriber, 1).await;
    subscription
}

/// Events `versions` of `stream`, each appended with its exact expected version (so carrying
/// the NOTIFY: each comes more than the debounce after the last) while `subscription` waits,
/// each woken within 5 s.
async fn exact_appends_woken(
    appender: &PgEventStore,
    stream: &StreamId,
    versions: std::ops::RangeInclusive<u64>,
    mut subscription: Subscription<PgEventStore>,
) -> Subscription<PgEventStore> {
    for n in versions {
        let append = async {
            appender.append(stream, ExpectedVersion::Exact(n), vec![test_event(n)]).await.unwrap();
        };
        subscription = next_woken(subscription, append).await;
    }
    subscription
}

/// An append with an exact version carries the wake-up in its own statement, delivered at its
/// commit (one event to a stream that exists: `append_one.sql`; a first write, or one under a
/// command id: `append_exact.sql`): appends spaced more than the debounce apart each wake the
/// other store's subscriber, and no NOTIFY goes alone. An append that cannot carry one
/// (`ExpectedVersion::Any`) is told by one NOTIFY alone, which does not keep the next exact
/// append from carrying its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_appends_carry_their_notify_and_others_get_one_alone() {
    const APPENDS: u64 = 10;
    let server = PrivateServer::init().with_options("-c shared_preload_libraries=pg_stat_statements").start_now();
    let url = server.url();
    let admin = raw(&url).await;
    admin.batch_execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements").await.unwrap();
    let subscriber = store_at(&url).await;
    let appender = other_instance(&url, &subscriber).await;
    let stream = StreamId::new("wake", "carried").unwrap();
    let subscription = subscribed_after_first(&url, &subscriber, &appender, &stream).await;
    // The first append's NOTIFY (alone: a new stream goes through append_exact.sql) is out.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (alone, one) = ("-- One coalesced wake-up", "-- The common case of `append_exact`");
    let (notifies, ones) = (calls(&admin, alone).await, calls(&admin, one).await);
    let mut subscription = exact_appends_woken(&appender, &stream, 1..=APPENDS, subscription).await;
    assert_eq!(calls(&admin, one).await - ones, APPENDS as i64);
    let exact = "-- An append with an exact expected version";
    let exacts = calls(&admin, exact).await;
    let fresh = StreamId::new("wake", "fresh").unwrap();
    for (expected, event) in
        [(ExpectedVersion::NoStream, test_event(50)), (ExpectedVersion::Exact(1), test_event_for_command(51, "c-51"))]
    {
        let append = async {
            appender.append(&fresh, expected, vec![event]).await.unwrap();
        };
        subscription = next_woken(subscription, append).await;
    }
    assert_eq!(calls(&admin, exact).await - exacts, 2, "a first write and a command id go as append_exact.sql");
    assert_eq!(calls(&admin, alone).await - notifies, 0, "a NOTIFY went alone although every append carried one");
    let append = async {
        appender.append(&stream, ExpectedVersion::Any, vec![test_event(99)]).await.unwrap();
    };
    let subscription = next_woken(subscription, append).await;
    assert_eq!(calls(&admin, alone).await - notifies, 1, "the append that carried none was told by one NOTIFY alone");
    // At once after that NOTIFY alone (well within a debounce of it), an exact append carries
    // its own: none goes alone for it.
    let append = async {
        appender.append(&stream, ExpectedVersion::Exact(APPENDS + 2), vec![test_event(100)]).await.unwrap();
    };
    drop(woken_after(subscription, append, Duration::ZERO).await);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        calls(&admin, alone).await - notifies,
        1,
        "a NOTIFY went alone for the exact append right after one: it did not carry its own"
    );
}

/// A schema name of 63 bytes (the longest PostgreSQL keeps) makes a channel name past 63:
/// `pg_notify` refuses such a name, so the channel is cut as `LISTEN` cuts it, and exact
/// appends (which carry the NOTIFY) still succeed and wake another store's subscriber.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_of_the_longest_name_still_appends_and_wakes() {
    let server = PrivateServer::start();
    let url = server.url();
    let mut schema = crate::support::fresh_schema();
    while schema.len() < 63 {
        schema.push('x');
    }
    let config = PgConfig::from_url(&url).unwrap().schema(schema.as_str()).unwrap();
    let subscriber = PgEventStore::connect(config).await.unwrap();
    subscriber.migrate().await.unwrap();
    let appender = other_instance(&url, &subscriber).await;
    let stream = StreamId::new("wake", "long").unwrap();
    let subscription = subscribed_after_first(&url, &subscriber, &appender, &stream).await;
    drop(exact_appends_woken(&appender, &stream, 1..=3, subscription).await);
}

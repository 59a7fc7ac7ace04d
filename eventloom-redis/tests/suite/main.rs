//! The integration tests of eventloom-redis, in one binary, against a real Redis: the one
//! `REDIS_URL` names (scripts/test.sh starts a throwaway one), and private servers that tests
//! start, restart and stop themselves.
#![allow(clippy::unwrap_used)]

mod auth;
mod cluster;
mod cluster_faults;
mod eviction;
mod generations;
mod indexes;
mod kills;
mod partitioned;
mod private;
mod private_cluster;
mod view_notices;

use eventloom_core::model::{ExpectedVersion, NewEvent};
use std::sync::atomic::{AtomicU32, Ordering};

use eventloom_core::testing::view_store;
use eventloom_core::{
    IndexEntry, Position,
    store::{ViewCommit, ViewStore, ViewWrite},
};
use eventloom_redis::RedisViewStore;

use private::PrivateRedis;

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| {
        panic!(
            "REDIS_URL is not set. Run the suite with `bash scripts/test.sh`, which starts a throwaway Redis, \
             or set REDIS_URL to a server whose keys under the `test:` prefix may be written."
        )
    })
}

static PREFIXES: AtomicU32 = AtomicU32::new(0);

/// A key prefix no other test uses.
fn fresh_prefix() -> String {
    format!("test:{}:{}:", std::process::id(), PREFIXES.fetch_add(1, Ordering::Relaxed))
}

/// A store whose keys no other test uses, and its prefix.
async fn store_and_prefix() -> (RedisViewStore, String) {
    let prefix = fresh_prefix();
    let store =
        RedisViewStore::connect(&redis_url(), &prefix).await.unwrap_or_else(|e| panic!("cannot connect to Redis: {e}"));
    (store, prefix)
}

async fn store() -> RedisViewStore {
    store_and_prefix().await.0
}

/// A plain connection, for looking at (and tampering with) keys.
async fn raw_connection(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url).unwrap().get_multiplexed_async_connection().await.unwrap()
}

/// Every key that starts with `prefix` (glob characters escaped), by `SCAN`.
async fn keys_under(connection: &mut redis::aio::MultiplexedConnection, prefix: &str) -> Vec<String> {
    let mut pattern = String::new();
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('*');
    let mut cursor = 0u64;
    let mut keys = Vec::new();
    loop {
        let (next, page): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1_000)
            .query_async(connection)
            .await
            .unwrap();
        keys.extend(page);
        if next == 0 {
            keys.sort();
            return keys;
        }
        cursor = next;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_view_store_conforms() {
    view_store::run(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn projector_over_redis_views_conforms() {
    eventloom_core::testing::projector::run(store).await;
}

#[tokio::test]
async fn a_key_of_another_type_refuses_the_whole_batch_and_writes_nothing() {
    let (store, prefix) = store_and_prefix().await;
    let mut raw = raw_connection(&redis_url()).await;
    let generation = store.begin_generation("p", 1, 0).await.unwrap().unwrap();
    store.go_live("p", generation.id, 0).await.unwrap().unwrap();
    let g = generation.id;
    let first = ViewCommit {
        generation: g,
        expected: None,
        checkpoint: Position::new(1, 1),
        fencing_token: 0,
        views: vec![ViewWrite::set("a", "1").joining(vec![IndexEntry::new("s", "x")])],
        dead_letters: Vec::new(),
        resolved: Vec::new(),
    };
    store.commit("p", first).await.unwrap().unwrap();
    let batch = |views| ViewCommit {
        generation: g,
        expected: Some(Position::new(1, 1)),
        checkpoint: Position::new(2, 2),
        fencing_token: 0,
        views,
        dead_letters: Vec::new(),
        resolved: Vec::new(),
    };
    // Someone wrote a list where a view goes, and a string where an index list goes.
    let view_key = format!("{prefix}{{p:p}}:g{g}:v:b");
    let _: () = redis::cmd("RPUSH").arg(&view_key).arg("x").query_async(&mut raw).await.unwrap();
    let err = store.commit("p", batch(vec![ViewWrite::set("a", "2"), ViewWrite::set("b", "2")])).await.unwrap_err();
    assert!(matches!(err, eventloom_core::Error::Backend { .. }), "{err:?}");
    assert!(err.to_string().contains(&view_key), "{err}");
    let index_key = format!("{prefix}{{p:p}}:g{g}:i:s=y");
    let _: () = redis::cmd("SET").arg(&index_key).arg("x").query_async(&mut raw).await.unwrap();
    let err = store
        .commit(
            "p",
            batch(vec![
                ViewWrite::set("a", "2")
                    .leaving(vec![IndexEntry::new("s", "x")])
                    .joining(vec![IndexEntry::new("s", "y")]),
            ]),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, eventloom_core::Error::Backend { .. }), "{err:?}");

    assert_eq!(store.read_views("p", &["a".into()]).await.unwrap(), vec![Some("1".into())], "nothing written");
    assert_eq!(store.count("p", &[eventloom_core::store::IndexKey::new("s", "x")]).await.unwrap(), vec![1]);
    assert_eq!(store.status("p").await.unwrap().checkpoint(), Some(Position::new(1, 1)));
}

/// Removing dead letters of a projection the store never saw removes none and creates no key
/// (not even its fencing token's); of a projection it holds, it raises the token as before.
#[tokio::test]
async fn removing_dead_letters_of_a_projection_never_seen_creates_no_key() {
    use eventloom_core::store::DeadLetterSelection::{All, At};
    let (store, prefix) = store_and_prefix().await;
    let mut raw = raw_connection(&redis_url()).await;
    assert_eq!(store.remove_dead_letters("never-seen", &All, 7).await.unwrap(), Ok(0));
    assert_eq!(store.remove_dead_letters("never-seen", &At(vec![Position::new(1, 1)]), 7).await.unwrap(), Ok(0));
    assert_eq!(keys_under(&mut raw, &prefix).await, Vec::<String>::new(), "no key under {prefix}");
    assert!(store.projections().await.unwrap().is_empty());

    let generation = store.begin_generation("p", 1, 1).await.unwrap().unwrap();
    store.go_live("p", generation.id, 1).await.unwrap().unwrap();
    assert_eq!(store.remove_dead_letters("p", &All, 7).await.unwrap(), Ok(0));
    match store.begin_generation("p", 1, 6).await.unwrap() {
        Err(eventloom_core::store::Refusal::Fenced { token: 6, highest: 7 }) => {}
        other => panic!("a removal in a projection the store holds raises its token, got {other:?}"),
    }
}

#[tokio::test]
async fn credentials_stay_out_of_debug_output_and_bad_prefixes_are_refused() {
    assert!(RedisViewStore::check_prefix("a{b").is_err());
    assert!(RedisViewStore::check_prefix("ok:").is_ok());
    // A server without a password accepts AUTH with any password for the default user.
    let url = redis_url().replace("redis://", "redis://default:hunter2@");
    let store = RedisViewStore::connect(&url, "test:auth:").await.unwrap();
    assert!(!format!("{store:?}").contains("hunter2"));
    let err = RedisViewStore::connect("redis://default:hunter2@127.0.0.1:notaport/", "x:").await.unwrap_err();
    assert!(!err.to_string().contains("hunter2"));
}

/// The calls of each command a server has run, but `INFO` (how they are counted).
async fn command_calls(raw: &mut redis::aio::MultiplexedConnection) -> std::collections::BTreeMap<String, u64> {
    let info: String = redis::cmd("INFO").arg("commandstats").query_async(raw).await.unwrap();
    info.lines()
        .filter_map(|line| {
            let (name, rest) = line.strip_prefix("cmdstat_")?.split_once(":calls=")?;
            let calls = rest.split(',').next()?.parse().ok()?;
            (name != "info").then(|| (name.to_owned(), calls))
        })
        .collect()
}

/// Queries find the live generation without a round-trip of their own: `read_views` is one
/// `MGET` (the pointer and the views) once the store has seen the live generation, `count` one
/// script, and `list` one once the store has listed that page (two the first time: its members,
/// then their views, whose keys a cluster needs in the script's KEYS); and they follow a switch
/// made by another store (another process) at once.
#[tokio::test]
async fn queries_pay_one_round_trip_and_follow_a_switch_made_elsewhere() {
    use eventloom_core::store::IndexKey;
    let redis = PrivateRedis::volatile();
    let ours = RedisViewStore::connect(&redis.url(), "t:").await.unwrap();
    let theirs = RedisViewStore::connect(&redis.url(), "t:").await.unwrap();
    let write = |generation: u64, json: &str| ViewCommit {
        generation,
        expected: None,
        checkpoint: Position::new(1, 1),
        fencing_token: 0,
        views: vec![ViewWrite::set("a", json).joining(vec![IndexEntry::new("s", "x")])],
        dead_letters: Vec::new(),
        resolved: Vec::new(),
    };
    let first = theirs.begin_generation("p", 1, 0).await.unwrap().unwrap();
    theirs.commit("p", write(first.id, "1")).await.unwrap().unwrap();
    theirs.go_live("p", first.id, 0).await.unwrap().unwrap();
    assert_eq!(ours.read_views("p", &["a".into()]).await.unwrap(), vec![Some("1".into())]);

    let key = IndexKey::new("s", "x");
    // Loads the scripts (the first EVALSHA of each finds none, and loads it).
    ours.list("p", &key, &eventloom_core::read::OrderRange::all(), None, 10).await.unwrap();
    ours.count("p", std::slice::from_ref(&key)).await.unwrap();
    let mut raw = raw_connection(&redis.url()).await;
    let before = command_calls(&mut raw).await;
    for _ in 0..10 {
        assert_eq!(ours.read_views("p", &["a".into()]).await.unwrap(), vec![Some("1".into())]);
        assert_eq!(
            ours.list("p", &key, &eventloom_core::read::OrderRange::all(), None, 10).await.unwrap().views,
            vec![("a".to_owned(), "1".to_owned())]
        );
        assert_eq!(ours.count("p", std::slice::from_ref(&key)).await.unwrap(), vec![1]);
    }
    let after = command_calls(&mut raw).await;
    let delta: std::collections::BTreeMap<&str, u64> = after
        .iter()
        .map(|(name, calls)| (name.as_str(), calls - before.get(name).copied().unwrap_or(0)))
        .filter(|(_, calls)| *calls > 0)
        .collect();
    // Commands a script calls count too: only GET, ZRANGEBYLEX and ZCARD may appear besides.
    assert_eq!((delta.get("evalsha"), delta.get("mget")), (Some(&20), Some(&10)), "one command per query: {delta:?}");
    assert!(delta.keys().all(|name| ["evalsha", "mget", "get", "zrangebylex", "zcard"].contains(name)), "{delta:?}");

    let second = theirs.begin_generation("p", 2, 0).await.unwrap().unwrap();
    theirs.commit("p", write(second.id, "2")).await.unwrap().unwrap();
    assert_eq!(ours.read_views("p", &["a".into()]).await.unwrap(), vec![Some("1".into())], "still the live one");
    theirs.go_live("p", second.id, 0).await.unwrap().unwrap();
    assert_eq!(ours.read_views("p", &["a".into()]).await.unwrap(), vec![Some("2".into())], "switched");
    assert_eq!(
        ours.list("p", &key, &eventloom_core::read::OrderRange::all(), None, 10).await.unwrap().views,
        vec![("a".to_owned(), "2".to_owned())]
    );
    // The page ours remembers changes (another store writes): ours reads the new page.
    let more = ViewCommit {
        generation: second.id,
        expected: Some(Position::new(1, 1)),
        checkpoint: Position::new(2, 2),
        fencing_token: 0,
        views: vec![ViewWrite::set("b", "3").joining(vec![IndexEntry::new("s", "x")])],
        dead_letters: Vec::new(),
        resolved: Vec::new(),
    };
    theirs.commit("p", more).await.unwrap().unwrap();
    assert_eq!(
        ours.list("p", &key, &eventloom_core::read::OrderRange::all(), None, 10).await.unwrap().views,
        vec![("a".to_owned(), "2".to_owned()), ("b".to_owned(), "3".to_owned())]
    );
}

/// A projector's commits into one generation cost one script call each after the first: the
/// first reads the pointers and its sample of views to check (the peek script) before it builds
/// its KEYS; each leaves what the next one needs in its reply.
#[tokio::test]
async fn commits_after_the_first_pay_one_round_trip() {
    let redis = PrivateRedis::volatile();
    let store = RedisViewStore::connect(&redis.url(), "t:").await.unwrap();
    let generation = store.begin_generation("p", 1, 0).await.unwrap().unwrap();
    let write = |n: u64| ViewCommit {
        generation: generation.id,
        expected: (n > 1).then(|| Position::new(n - 1, n - 1)),
        checkpoint: Position::new(n, n),
        fencing_token: 0,
        views: vec![ViewWrite::set(format!("v{n}"), "{}").joining(vec![IndexEntry::new("s", "x")])],
        dead_letters: Vec::new(),
        resolved: Vec::new(),
    };
    store.commit("p", write(1)).await.unwrap().unwrap();
    let mut raw = raw_connection(&redis.url()).await;
    let before = command_calls(&mut raw).await;
    for n in 2..=11 {
        store.commit("p", write(n)).await.unwrap().unwrap();
    }
    let after = command_calls(&mut raw).await;
    let calls = |name: &str| after.get(name).copied().unwrap_or(0) - before.get(name).copied().unwrap_or(0);
    assert_eq!((calls("evalsha"), calls("mget")), (10, 0), "one script per commit: {after:?}");
    // Another store switched generations meanwhile: the next commit reads the pointers again.
    let other = RedisViewStore::connect(&redis.url(), "t:").await.unwrap();
    other.go_live("p", generation.id, 0).await.unwrap().unwrap();
    store.commit("p", write(12)).await.unwrap().unwrap();
    assert_eq!(store.status("p").await.unwrap().checkpoint(), Some(Position::new(12, 12)));
}

mod domain {
    use eventloom_core::prelude::*;
    use eventloom_core::{BoxError, Projection};

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
    pub enum CounterEvent {
        Incremented,
    }

    #[derive(Debug, Default)]
    pub struct Counter;

    impl Aggregate for Counter {
        const TYPE: &'static str = "counter";
        type Event = CounterEvent;
        type Error = std::convert::Infallible;
        fn apply(&mut self, _: &CounterEvent) {}
    }

    /// Counts the events applied per counter: `applied == version` exactly when none was
    /// applied twice or skipped.
    #[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
    pub struct Count {
        pub applied: u64,
        pub version: u64,
    }

    pub struct Counts;

    impl Projection for Counts {
        const NAME: &'static str = "counts";
        type Events = Counter;
        type View = Count;
        fn apply(&self, view: &mut Option<Count>, e: &EventEnvelope<CounterEvent>) -> Result<(), BoxError> {
            let view = view.get_or_insert_with(Count::default);
            view.applied += 1;
            view.version = e.version;
            Ok(())
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_down_for_seconds_mid_projection_resumes_with_nothing_lost_or_doubled() {
    use domain::*;
    use eventloom_core::prelude::*;
    use eventloom_core::{
        Projection,
        memory::MemoryEventStore,
        read::{Projector, ViewReader},
        store::EventStore,
    };
    use std::time::Duration;

    const COUNTERS: u64 = 20;
    const EACH: u64 = 200;
    let mut redis = PrivateRedis::persistent();
    let views = RedisViewStore::connect(&redis.url(), "t:").await.unwrap();
    let events = MemoryEventStore::new();
    let append_rounds = |rounds: std::ops::Range<u64>| {
        let events = events.clone();
        async move {
            for round in rounds {
                for c in 0..COUNTERS {
                    let event = NewEvent::encode(&CounterEvent::Incremented, Metadata::default()).unwrap();
                    let stream = StreamId::new("counter", format!("c{c}")).unwrap();
                    events.append(&stream, ExpectedVersion::Exact(round), vec![event]).await.unwrap();
                }
            }
            events.read_all(Position::ZERO, usize::MAX).await.unwrap().last().unwrap().position
        }
    };
    let half = append_rounds(0..EACH / 2).await;
    let projector =
        Projector::new(events.clone(), views.clone()).with_batch_size(50).with_retry_delay(Duration::from_millis(50));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(async move { projector.run(Counts, async { stopped.await.unwrap_or(()) }).await });
    let reader = ViewReader::<Count>::new(views.clone(), Counts::NAME);
    reader.wait_for(half, Duration::from_secs(20)).await.unwrap();
    // Redis goes down for five seconds while new events keep coming: every write fails.
    redis.stop();
    let last = append_rounds(EACH / 2..EACH).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(!running.is_finished(), "the projector waits for Redis instead of failing");
    redis.run();
    reader.wait_for(last, Duration::from_secs(60)).await.expect("the projection resumes and catches up");
    stop.send(()).unwrap();
    running.await.unwrap().unwrap();
    let ids: Vec<String> = (0..COUNTERS).map(|c| format!("c{c}")).collect();
    for (id, count) in ids.iter().zip(reader.get_many(&ids).await.unwrap()) {
        let count = count.unwrap_or_else(|| panic!("no view for {id}"));
        assert_eq!(count, Count { applied: EACH, version: EACH }, "{id}: every event applied exactly once");
    }
}

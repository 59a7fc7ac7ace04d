//! The integration tests of cqrs-redis, in one binary, against a real Redis: the one
//! `REDIS_URL` names (scripts/test.sh starts a throwaway one).
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicU32, Ordering};

use cqrs_core::testing::view_store;
use cqrs_core::{Position, ViewCommit, ViewStore};
use cqrs_redis::RedisViewStore;

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| {
        panic!(
            "REDIS_URL is not set. Run the suite with `bash scripts/test.sh`, which starts a throwaway Redis, \
             or set REDIS_URL to a server whose keys under the `test:` prefix may be written."
        )
    })
}

static PREFIXES: AtomicU32 = AtomicU32::new(0);

/// A store whose keys no other test uses, and its prefix.
async fn store_and_prefix() -> (RedisViewStore, String) {
    let prefix = format!("test:{}:{}:", std::process::id(), PREFIXES.fetch_add(1, Ordering::Relaxed));
    let store =
        RedisViewStore::connect(&redis_url(), &prefix).await.unwrap_or_else(|e| panic!("cannot connect to Redis: {e}"));
    (store, prefix)
}

async fn store() -> RedisViewStore {
    store_and_prefix().await.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_view_store_conforms() {
    view_store::run(store).await;
}

#[tokio::test]
async fn a_key_of_another_type_refuses_the_whole_batch_and_writes_nothing() {
    let (store, prefix) = store_and_prefix().await;
    let client = redis::Client::open(redis_url().as_str()).unwrap();
    let mut raw = client.get_multiplexed_async_connection().await.unwrap();
    let first = ViewCommit {
        expected: None,
        checkpoint: Position::new(1, 1),
        fencing_token: 0,
        views: vec![("a".into(), Some("1".into()))],
        dead_letters: Vec::new(),
    };
    store.commit("p", first).await.unwrap();
    // Someone wrote a list where a view goes.
    let list_key = format!("{prefix}{{p:p}}:v:b");
    let _: () = redis::cmd("RPUSH").arg(&list_key).arg("x").query_async(&mut raw).await.unwrap();
    let batch = ViewCommit {
        expected: Some(Position::new(1, 1)),
        checkpoint: Position::new(2, 2),
        fencing_token: 0,
        views: vec![("a".into(), Some("2".into())), ("b".into(), Some("2".into()))],
        dead_letters: Vec::new(),
    };
    let err = store.commit("p", batch).await.unwrap_err();
    assert!(matches!(err, cqrs_core::Error::Backend { .. }), "{err:?}");
    assert_eq!(store.load_views("p", &["a".into()]).await.unwrap(), vec![Some("1".into())], "nothing written");
    assert_eq!(store.checkpoint("p").await.unwrap(), Some(Position::new(1, 1)));
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

/// A Redis of a test's own (it stops and restarts it), persisting to an append-only file so
/// that a restart keeps the data. Killed and deleted on drop.
struct PrivateRedis {
    dir: std::path::PathBuf,
    port: u16,
    child: Option<std::process::Child>,
}

impl PrivateRedis {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dir = std::env::temp_dir().join(format!("cqrs-private-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut redis = PrivateRedis { dir, port, child: None };
        redis.run();
        redis
    }

    fn run(&mut self) {
        let child = std::process::Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes"])
            .args(["--appendfsync", "always", "--dir"])
            .arg(&self.dir)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start redis-server ({e}): install Debian's redis-server"));
        self.child = Some(child);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Stops the server gracefully (the append-only file is complete).
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = std::process::Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
            let _ = child.wait();
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

mod domain {
    use cqrs_core::prelude::*;
    use cqrs_core::{BoxError, Projection};

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
        type Aggregate = Counter;
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
    use cqrs_core::prelude::*;
    use cqrs_core::{EventStore, MemoryEventStore, Projection, Projector, ViewReader};
    use domain::*;
    use std::time::Duration;

    const COUNTERS: u64 = 20;
    const EACH: u64 = 200;
    let mut redis = PrivateRedis::start();
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

//! eventloom-nats against real nats-servers: the shared one of `NATS_URL` (each test with its
//! own stream and subject prefix, deleted at its end), and private ones for the fault, TLS and
//! credential tests.

#![allow(missing_docs, clippy::unwrap_used)]

mod auth;
mod basics;
mod faults;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use eventloom_core::model::{ExpectedVersion, NewEvent};
use eventloom_core::prelude::*;
use eventloom_core::store::EventStore;
use eventloom_core::{BoxError, Projection};
use eventloom_nats::async_nats;
use eventloom_nats::async_nats::jetstream;

pub fn nats_url() -> String {
    std::env::var("NATS_URL").unwrap_or_else(|_| {
        panic!(
            "NATS_URL is not set. Run the suite with `bash scripts/test.sh`, which starts a throwaway \
             `nats-server -js`, or start one (`nats-server -js -p 4222`) and set NATS_URL=nats://127.0.0.1:4222."
        )
    })
}

pub fn unique(what: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{what}_{}_{}_{nanos}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// A stream name and subject prefix of one test.
pub struct Names {
    pub stream: String,
    pub prefix: String,
}

pub fn names(what: &str) -> Names {
    let id = unique(what);
    Names { stream: format!("T_{id}"), prefix: format!("test.{id}") }
}

pub async fn connect(url: &str) -> async_nats::Client {
    eventloom_nats::NatsConfig::new(url)
        .unwrap()
        .connect()
        .await
        .unwrap_or_else(|e| panic!("cannot connect to NATS at {url}: {e}"))
}

pub async fn delete_stream(client: &async_nats::Client, stream: &str) {
    let _ = jetstream::new(client.clone()).delete_stream(stream).await;
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
pub enum TallyEvent {
    Counted {
        n: u64,
    },
    #[event(name = "Counted.v2 *>")]
    Odd {
        n: u64,
    },
}

#[derive(Debug, Default)]
pub struct Tally;

impl Aggregate for Tally {
    const TYPE: &'static str = "tally";
    type Event = TallyEvent;
    type Error = std::convert::Infallible;
    fn apply(&mut self, _: &TallyEvent) {}
}

/// Counts the events applied per stream, and every one out of turn: `applied == version` and
/// `twice == skipped == 0` exactly when each event was applied once and in order.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Count {
    pub applied: u64,
    pub version: u64,
    pub twice: u64,
    pub skipped: u64,
    pub sum: u64,
}

pub struct Counts;

impl Projection for Counts {
    const NAME: &'static str = "nats_counts";
    type Events = Tally;
    type View = Count;
    fn apply(&self, view: &mut Option<Count>, e: &EventEnvelope<TallyEvent>) -> Result<(), BoxError> {
        let view = view.get_or_insert_with(Count::default);
        if e.version <= view.version {
            view.twice += 1;
        } else if e.version > view.version + 1 {
            view.skipped += 1;
        }
        view.applied += 1;
        view.version = view.version.max(e.version);
        let (TallyEvent::Counted { n } | TallyEvent::Odd { n }) = &e.event;
        view.sum += n;
        Ok(())
    }
}

/// Metadata with a fresh event id, as the engine makes.
pub fn fresh_metadata() -> Metadata {
    Metadata::new(uuid::Uuid::new_v4(), eventloom_core::model::Timestamp::now())
}

/// Appends `per_stream` events to each of `streams` tally streams (ids `t0`, `t1`, ...), up to 50
/// per append; returns the last position.
pub async fn fill<S: EventStore>(store: &S, streams: u64, per_stream: u64) -> Position {
    let mut last = Position::ZERO;
    for s in 0..streams {
        let stream = StreamId::new("tally", format!("t{s}")).unwrap();
        let mut version = store.stream_version(&stream).await.unwrap();
        let end = version + per_stream;
        while version < end {
            let n = (end - version).min(50);
            let batch: Vec<NewEvent> = (0..n)
                .map(|i| NewEvent::encode(&TallyEvent::Counted { n: version + i + 1 }, fresh_metadata()).unwrap())
                .collect();
            last = store.append(&stream, ExpectedVersion::Exact(version), batch).await.unwrap().into_outcome().position;
            version += n;
        }
    }
    last
}

/// The stream's events in order (the stream-start marker left out): (stream sequence, the
/// position header).
pub async fn stored_positions(client: &async_nats::Client, stream: &str) -> Vec<(u64, Position)> {
    stored_positions_but(client, stream, 0).await
}

/// [`stored_positions`] without the message at sequence `foreign` (another writer's).
pub async fn stored_positions_but(client: &async_nats::Client, stream: &str, foreign: u64) -> Vec<(u64, Position)> {
    stored_positions_of(client, stream, 1, foreign).await
}

/// [`stored_positions`] from sequence `first` (the ones before are gone).
pub async fn stored_positions_from(client: &async_nats::Client, stream: &str, first: u64) -> Vec<(u64, Position)> {
    stored_positions_of(client, stream, first, 0).await
}

async fn stored_positions_of(
    client: &async_nats::Client,
    stream: &str,
    first: u64,
    foreign: u64,
) -> Vec<(u64, Position)> {
    let context = jetstream::new(client.clone());
    let mut stream = context.get_stream(stream).await.unwrap();
    let last = stream.info().await.unwrap().state.last_sequence;
    let mut out = Vec::new();
    for sequence in first..=last {
        let message = stream.get_raw_message(sequence).await.unwrap();
        if sequence == foreign || message.headers.get("Eventloom-Marker").is_some() {
            continue;
        }
        let position = message.headers.get("Eventloom-Position").unwrap().as_str().parse().unwrap();
        out.push((sequence, position));
    }
    out
}

/// How many events the stream holds (its messages but the stream-start marker); 0 when it
/// does not exist yet.
pub async fn event_count(client: &async_nats::Client, stream: &str) -> u64 {
    let context = jetstream::new(client.clone());
    match context.get_stream(stream).await {
        Ok(mut stream) => stream.info().await.map(|i| i.state.messages.saturating_sub(1)).unwrap_or(0),
        Err(_) => 0,
    }
}

/// Lost and duplicated events of a stream against the positions expected, in order.
pub fn lost_and_duplicated(stored: &[(u64, Position)], expected: &[Position]) -> (usize, usize) {
    let mut seen = std::collections::BTreeMap::new();
    for (_, position) in stored {
        *seen.entry(*position).or_insert(0usize) += 1;
    }
    let lost = expected.iter().filter(|p| !seen.contains_key(p)).count();
    let duplicated = seen.values().map(|n| n - 1).sum();
    let in_order = stored.windows(2).all(|w| w[0].1 < w[1].1);
    assert!(in_order, "the stream holds a later event before an earlier one");
    (lost, duplicated)
}

/// The positions of every tally event in `store`, in order.
pub async fn all_positions<S: EventStore + Clone>(store: &S) -> Vec<Position> {
    use eventloom_core::read::Feed;
    let mut reader = Feed::read_after(store, Position::ZERO, 1000, 1 << 24);
    let mut out = Vec::new();
    while let Some(batch) = reader.try_next_batch().await.unwrap() {
        out.extend(batch.iter().map(|e| e.position));
    }
    out
}

/// A nats-server of a test's own, with a store folder of its own, on a free loopback port.
pub struct PrivateNats {
    child: Option<Child>,
    pub port: u16,
    pub dir: PathBuf,
    config: PathBuf,
}

fn nats_server_binary() -> String {
    let out = Command::new("sh").args(["-c", "command -v nats-server"]).output().unwrap();
    let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(
        !path.is_empty(),
        "nats-server is not installed: install Debian's nats-server package (scripts/test.sh does when it can)"
    );
    path
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl PrivateNats {
    /// Starts one with `extra` added to its configuration file.
    pub fn start(extra: &str) -> Self {
        let dir = std::env::temp_dir().join(unique("eventloom-nats-private"));
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_port();
        let config = dir.join("nats.conf");
        let store = dir.join("store");
        std::fs::write(
            &config,
            format!(
                "listen: 127.0.0.1:{port}\njetstream {{ store_dir: {:?} }}\n{extra}\n",
                store.display().to_string()
            ),
        )
        .unwrap();
        let mut server = PrivateNats { child: None, port, dir, config };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let log_path = self.dir.join(format!("nats-{}.log", unique("run")));
        let log = std::fs::File::create(&log_path).unwrap();
        let child = Command::new(nats_server_binary())
            .args(["-c", &self.config.display().to_string()])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if Instant::now() >= deadline || self.child.as_mut().is_some_and(|c| c.try_wait().ok().flatten().is_some())
            {
                panic!(
                    "the private nats-server did not start: {}",
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// SIGKILLs it (JetStream's files stay).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills it and starts it again on the same port and store.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for PrivateNats {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Waits until `done` holds, up to `timeout`.
pub async fn eventually<F: std::future::Future<Output = bool>>(timeout: Duration, mut done: impl FnMut() -> F) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if done().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

//! Faults, each reporting the events lost and duplicated (0 and 0): the nats-server restarted
//! mid-publish; the publisher SIGKILLed and restarted after the duplicate window; the consumer
//! SIGKILLed mid-projection and restarted.
//!
//! The SIGKILL cases run the publisher or consumer in a separate process: this test binary
//! itself, started with `--ignored --exact faults::child_...` and its settings in the
//! environment. Their local stores are in PostgreSQL (`DATABASE_URL`), each test in its own
//! schema.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use eventloom_core::memory::MemoryEventStore;
use eventloom_core::prelude::*;
use eventloom_core::read::{Projector, ViewReader};
use eventloom_core::store::ViewStore;
use eventloom_core::testing::TestRng;
use eventloom_nats::{JetStreamFeed, JetStreamFeedConfig, Publisher, PublisherConfig};
use eventloom_postgres::{PgConfig, PgStores};

use crate::*;

fn database_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| {
        panic!(
            "DATABASE_URL is not set. Run the suite with `bash scripts/test.sh`, which starts a throwaway \
             PostgreSQL, or set DATABASE_URL to a server where this test may create schemas."
        )
    })
}

async fn pg(schema: &str) -> PgStores {
    let config = PgConfig::from_url(&database_url()).unwrap().schema(schema).unwrap().pool_size(4);
    PgStores::connect_with(config).await.unwrap_or_else(|e| panic!("cannot connect to PostgreSQL: {e}"))
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: this is a child of a fault test"))
}

fn publisher_config(stream: &str, prefix: &str) -> PublisherConfig {
    PublisherConfig::new(stream, prefix)
        .category("tally")
        .duplicate_window(Duration::from_secs(1))
        .batch_size(50)
        .in_flight(16)
}

/// The publisher process a fault test starts and SIGKILLs. Not a test on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "started by the fault tests as a separate publisher process"]
async fn child_publisher() {
    let stores = pg(&env("CQRS_CHILD_SCHEMA")).await;
    let client = connect(&env("CQRS_CHILD_NATS")).await;
    let publisher =
        Publisher::new(client, publisher_config(&env("CQRS_CHILD_STREAM"), &env("CQRS_CHILD_PREFIX"))).unwrap();
    println!("READY {}", std::process::id());
    publisher.run(&stores.events, std::future::pending()).await.expect("the child publisher failed");
}

/// The consumer process a fault test starts and SIGKILLs. Not a test on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "started by the fault tests as a separate consumer process"]
async fn child_consumer() {
    let stores = pg(&env("CQRS_CHILD_SCHEMA")).await;
    let client = connect(&env("CQRS_CHILD_NATS")).await;
    let config = JetStreamFeedConfig::new(env("CQRS_CHILD_STREAM"), env("CQRS_CHILD_PREFIX"), "child");
    let feed = JetStreamFeed::open(client, config).await.unwrap();
    let batch = env("CQRS_CHILD_BATCH").parse().unwrap();
    let projector = Projector::new(stores.events.clone(), stores.views.clone())
        .with_leases(stores.leases.clone())
        .with_batch_size(batch);
    let mut group = projector.group_fed_by(feed);
    group.add(Counts);
    println!("READY {}", std::process::id());
    group.run(std::future::pending()).await.expect("the child consumer failed");
}

/// A child process of this test binary, and the lines it prints.
struct ChildProcess {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl ChildProcess {
    fn start(test: &str, settings: &[(&str, &str)]) -> Self {
        let exe = std::env::current_exe().unwrap();
        let mut command = Command::new(exe);
        command.args(["--ignored", "--exact", test, "--nocapture", "--test-threads=1"]);
        for (name, value) in settings {
            command.env(name, value);
        }
        let mut child = command.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        ChildProcess { child, lines }
    }

    fn wait_for(&self, word: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else { return false };
            let Ok(line) = self.lines.recv_timeout(left) else { return false };
            if line.split_whitespace().any(|field| field == word) {
                return true;
            }
        }
    }

    fn sigkill(&mut self) {
        // `Child::kill` sends SIGKILL on Unix: no destructor, no graceful close.
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn stored_count(client: &async_nats::Client, stream: &str) -> u64 {
    let context = async_nats::jetstream::new(client.clone());
    match context.get_stream(stream).await {
        // The stream-start marker is no event.
        Ok(mut stream) => stream.info().await.map(|i| i.state.messages.saturating_sub(1)).unwrap_or(0),
        Err(_) => 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nats_server_restarted_mid_publish_loses_and_duplicates_nothing() {
    let mut server = PrivateNats::start("");
    let names = names("restart");
    let client = connect(&server.url()).await;
    let log = MemoryEventStore::new();
    fill(&log, 10, 200).await;
    let publisher = Publisher::new(client.clone(), publisher_config(&names.stream, &names.prefix)).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn({
        let (publisher, log) = (publisher.clone(), log.clone());
        async move { publisher.run(&log, async { stopped.await.unwrap_or(()) }).await }
    });
    // A consumer folds the stream meanwhile, through the same restarts.
    let feed = JetStreamFeed::open(client.clone(), JetStreamFeedConfig::new(&names.stream, &names.prefix, "restarts"))
        .await
        .unwrap();
    let views = eventloom_core::memory::MemoryViewStore::default();
    let mut group = Projector::new(MemoryEventStore::new(), views.clone())
        .with_retry_delay(Duration::from_millis(50))
        .with_batch_size(100)
        .group_fed_by(feed);
    group.add(Counts);
    let (stop_group, group_stopped) = tokio::sync::oneshot::channel::<()>();
    let consuming = tokio::spawn(group.run(async { group_stopped.await.unwrap_or(()) }));
    let mut restarts = 0;
    for round in 1..=3u64 {
        let published = publisher.status().published;
        assert!(
            eventually(Duration::from_secs(60), || async { publisher.status().published > published + 100 }).await,
            "publishing goes on after restart {restarts}: {:?}",
            publisher.status()
        );
        // More events while the server is down.
        server.kill();
        fill(&log, 10, 20 * round).await;
        server.restart();
        restarts += 1;
    }
    let expected = all_positions(&log).await;
    let last = *expected.last().unwrap();
    assert!(
        eventually(Duration::from_secs(120), || async { publisher.status().last_position == Some(last) }).await,
        "the publisher catches up: {:?}",
        publisher.status()
    );
    stop.send(()).unwrap();
    running.await.unwrap().unwrap();
    let stored = stored_positions(&client, &names.stream).await;
    let (lost, duplicated) = lost_and_duplicated(&stored, &expected);
    println!(
        "nats-server restarted {restarts} times mid-publish: {} events, lost {lost}, duplicated {duplicated}",
        expected.len()
    );
    assert_eq!((lost, duplicated), (0, 0));
    assert_eq!(stored.len(), expected.len());

    // The consumer's views hold every event once, in order.
    let reader = ViewReader::<Count>::new(views.clone(), Counts::NAME);
    reader.wait_for(Position::new(0, expected.len() as u64 + 1), Duration::from_secs(60)).await.unwrap();
    stop_group.send(()).unwrap();
    consuming.await.unwrap().unwrap();
    let ids: Vec<String> = (0..10).map(|s| format!("t{s}")).collect();
    let counts: Vec<Count> = reader.get_many(&ids).await.unwrap().into_iter().map(Option::unwrap_or_default).collect();
    let each = expected.len() as u64 / 10;
    let twice: u64 = counts.iter().map(|c| c.twice).sum();
    let lost: u64 = counts.iter().map(|c| each.saturating_sub(c.applied - c.twice) + c.skipped).sum();
    println!("the consumer through the restarts: lost {lost}, duplicated {twice}");
    for count in &counts {
        assert_eq!((count.applied, count.version, count.twice, count.skipped), (each, each, 0, 0));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_publisher_sigkilled_and_restarted_after_the_duplicate_window_loses_and_duplicates_nothing() {
    let mut rng = TestRng::from_env("CQRS_KILL_SEED");
    let schema = unique("nats_pub_kill");
    let names = names("pubkill");
    let url = nats_url();
    let client = connect(&url).await;
    let stores = pg(&schema).await;
    fill(&stores.events, 20, 100).await;
    let settings = [
        ("CQRS_CHILD_SCHEMA", schema.as_str()),
        ("CQRS_CHILD_NATS", url.as_str()),
        ("CQRS_CHILD_STREAM", names.stream.as_str()),
        ("CQRS_CHILD_PREFIX", names.prefix.as_str()),
    ];
    let mut kills = 0;
    for _ in 0..4 {
        let mut child = ChildProcess::start("faults::child_publisher", &settings);
        assert!(child.wait_for("READY", Duration::from_secs(60)), "the child publisher starts");
        let before = stored_count(&client, &names.stream).await;
        let deadline = Instant::now() + Duration::from_secs(30);
        while stored_count(&client, &names.stream).await < before + 50 + rng.below(200) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(rng.below(20))).await;
        }
        child.sigkill();
        kills += 1;
        // Restarted only after JetStream's duplicate window (1 s) has forgotten every id.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        fill(&stores.events, 20, 5).await;
    }
    let expected = all_positions(&stores.events).await;
    assert!((stored_count(&client, &names.stream).await as usize) < expected.len(), "the kills came before the end");
    let child = ChildProcess::start("faults::child_publisher", &settings);
    assert!(child.wait_for("READY", Duration::from_secs(60)));
    let done = eventually(Duration::from_secs(120), || async {
        stored_count(&client, &names.stream).await as usize >= expected.len()
    })
    .await;
    assert!(done, "the last publisher catches up");
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(child);
    let stored = stored_positions(&client, &names.stream).await;
    let (lost, duplicated) = lost_and_duplicated(&stored, &expected);
    println!("publisher SIGKILLed {kills} times: {} events, lost {lost}, duplicated {duplicated}", expected.len());
    assert_eq!((lost, duplicated), (0, 0));
    delete_stream(&client, &names.stream).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_consumer_sigkilled_mid_projection_folds_every_event_once_and_in_order() {
    const STREAMS: u64 = 20;
    const EACH: u64 = 150;
    let mut rng = TestRng::from_env("CQRS_KILL_SEED");
    let schema = unique("nats_con_kill");
    let names = names("conkill");
    let url = nats_url();
    let client = connect(&url).await;
    let log = MemoryEventStore::new();
    fill(&log, STREAMS, EACH).await;
    Publisher::new(client.clone(), publisher_config(&names.stream, &names.prefix))
        .unwrap()
        .catch_up(&log)
        .await
        .unwrap();
    let total = STREAMS * EACH;
    let stores = pg(&schema).await;
    let reader = ViewReader::<Count>::new(stores.views.clone(), Counts::NAME);
    let progress = || async {
        let status = stores.views.status(Counts::NAME).await.unwrap();
        status.building.or(status.live).and_then(|g| g.checkpoint)
    };
    let mut kills = 0;
    for _ in 0..5 {
        let batch = (2 + rng.below(10)).to_string();
        let settings = [
            ("CQRS_CHILD_SCHEMA", schema.as_str()),
            ("CQRS_CHILD_NATS", url.as_str()),
            ("CQRS_CHILD_STREAM", names.stream.as_str()),
            ("CQRS_CHILD_PREFIX", names.prefix.as_str()),
            ("CQRS_CHILD_BATCH", batch.as_str()),
        ];
        let mut child = ChildProcess::start("faults::child_consumer", &settings);
        assert!(child.wait_for("READY", Duration::from_secs(60)), "the child consumer starts");
        let before = progress().await;
        let deadline = Instant::now() + Duration::from_secs(30);
        while progress().await <= before && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(rng.below(100))).await;
        child.sigkill();
        kills += 1;
    }
    let after_kills = progress().await;
    // The stream-start marker is sequence 1: the last event's is `total + 1`.
    assert!(after_kills < Some(Position::new(0, total + 1)), "the kills came before the end: {after_kills:?}");
    let settings = [
        ("CQRS_CHILD_SCHEMA", schema.as_str()),
        ("CQRS_CHILD_NATS", url.as_str()),
        ("CQRS_CHILD_STREAM", names.stream.as_str()),
        ("CQRS_CHILD_PREFIX", names.prefix.as_str()),
        ("CQRS_CHILD_BATCH", "100"),
    ];
    let child = ChildProcess::start("faults::child_consumer", &settings);
    assert!(child.wait_for("READY", Duration::from_secs(60)));
    reader.wait_for(Position::new(0, total + 1), Duration::from_secs(120)).await.expect("the consumer finishes");
    drop(child);
    let ids: Vec<String> = (0..STREAMS).map(|s| format!("t{s}")).collect();
    let counts: Vec<Count> = reader.get_many(&ids).await.unwrap().into_iter().map(Option::unwrap_or_default).collect();
    let lost: u64 = counts.iter().map(|c| EACH.saturating_sub(c.applied - c.twice)).sum::<u64>()
        + counts.iter().map(|c| c.skipped).sum::<u64>();
    let duplicated: u64 = counts.iter().map(|c| c.twice).sum();
    println!(
        "consumer SIGKILLed {kills} times (checkpoint after the kills {after_kills:?}): {total} events, lost {lost}, duplicated {duplicated}"
    );
    assert_eq!((lost, duplicated), (0, 0));
    for count in &counts {
        assert_eq!((count.applied, count.version, count.sum), (EACH, EACH, EACH * (EACH + 1) / 2), "in order, once");
    }
    delete_stream(&client, &names.stream).await;
}

/// The server SIGKILLed and restarted while up to 2000 publishes are in flight, from a second
/// connection's point of view too: publishes of the pass that failed which the server stores
/// late never stop the publisher as fenced, and every event is stored once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_with_thousands_of_publishes_in_flight_never_fence_the_publisher() {
    let mut server = PrivateNats::start("");
    let names = names("inflight_restart");
    let client = connect(&server.url()).await;
    let log = MemoryEventStore::new();
    let publisher = Publisher::new(
        client.clone(),
        PublisherConfig::new(&names.stream, &names.prefix).category("tally").in_flight(2000).batch_size(500),
    )
    .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn({
        let (publisher, log) = (publisher.clone(), log.clone());
        async move { publisher.run(&log, async { stopped.await.unwrap_or(()) }).await }
    });
    let mut restarts = 0;
    for _ in 0..4 {
        let before = publisher.status().published;
        fill(&log, 20, 200).await;
        let deadline = Instant::now() + Duration::from_secs(60);
        while publisher.status().published < before + 500 {
            assert!(!running.is_finished(), "the publisher stopped: {:?}", publisher.status());
            assert!(
                Instant::now() < deadline,
                "publishing goes on after {restarts} restarts: {:?}",
                publisher.status()
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        server.restart();
        restarts += 1;
    }
    let expected = all_positions(&log).await;
    let last = *expected.last().unwrap();
    let caught_up =
        eventually(Duration::from_secs(120), || async { publisher.status().last_position == Some(last) }).await;
    assert!(!running.is_finished(), "the publisher stopped: {:?}", publisher.status());
    assert!(caught_up, "the publisher catches up: {:?}", publisher.status());
    stop.send(()).unwrap();
    running.await.unwrap().unwrap();
    let stored = stored_positions(&client, &names.stream).await;
    let (lost, duplicated) = lost_and_duplicated(&stored, &expected);
    println!(
        "nats-server restarted {restarts} times with publishes in flight: {} events, lost {lost}, duplicated {duplicated}",
        expected.len()
    );
    assert_eq!((lost, duplicated), (0, 0));
}

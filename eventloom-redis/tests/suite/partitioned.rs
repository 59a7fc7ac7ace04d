//! A partitioned projection on the shared Redis Cluster, run by three projector processes
//! (this test binary, started with `--ignored --exact partitioned::child_partitioned_projector`)
//! that share its six partitions out by `PgLeases`, while events keep coming and processes are
//! killed with SIGKILL and started again.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use eventloom_core::ProjectionOptions;
use eventloom_core::model::{ExpectedVersion, NewEvent};
use eventloom_core::prelude::*;
use eventloom_core::read::Projector;
use eventloom_core::store::{BoxFuture, EventStore, Lease, LeaseManager};
use eventloom_core::testing::TestRng;
use eventloom_postgres::{PgConfig, PgEventStore, PgLeases};
use eventloom_redis::{RedisConfig, RedisViewStore};

use crate::cluster::cluster_urls;
use crate::kills::{Count, Counts, TallyEvent};

const PARTITIONS: u32 = 6;

fn database_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| {
        panic!(
            "DATABASE_URL is not set. Run the suite with `bash scripts/test.sh`, which starts a throwaway \
             PostgreSQL, or set DATABASE_URL to a server where this test may create schemas."
        )
    })
}

async fn events_in(schema: &str) -> PgEventStore {
    let config = PgConfig::from_url(&database_url()).unwrap().schema(schema).unwrap().pool_size(8);
    let store = PgEventStore::connect(config).await.unwrap_or_else(|e| panic!("cannot connect to PostgreSQL: {e}"));
    store.migrate().await.unwrap();
    store
}

async fn cluster_views(prefix: &str) -> RedisViewStore {
    let config = RedisConfig::from_cluster_urls(&cluster_urls()).unwrap().prefix(prefix.to_owned()).unwrap();
    RedisViewStore::connect_with(config).await.unwrap_or_else(|e| panic!("cannot connect to the Redis Cluster: {e}"))
}

/// Leases that say on stdout which partition this process leads: `LEADS <pid> <name> <token>`.
struct Announcing(PgLeases);

impl eventloom_core::store::DelegateLeaseManager for Announcing {
    type Inner = PgLeases;
    fn inner(&self) -> &PgLeases {
        &self.0
    }
    fn acquire<'a>(&'a self, name: &'a str) -> BoxFuture<'a, eventloom_core::Result<Lease>> {
        Box::pin(async move {
            let lease = self.0.acquire(name).await?;
            println!("LEADS {} {name} {}", std::process::id(), lease.token());
            Ok(lease)
        })
    }
}

/// The projector process the test starts and kills. Not a test on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "started by the partitioned projection test as a projector process"]
async fn child_partitioned_projector() {
    let schema = std::env::var("CQRS_CHILD_SCHEMA").expect("CQRS_CHILD_SCHEMA");
    let prefix = std::env::var("CQRS_CHILD_PREFIX").expect("CQRS_CHILD_PREFIX");
    let events = events_in(&schema).await;
    let views = cluster_views(&prefix).await;
    let leases = PgLeases::new(&events).with_check_interval(Duration::from_millis(200));
    let projector = Projector::new(events.clone(), views)
        .with_leases(Announcing(leases))
        .with_batch_size(50)
        .with_retry_delay(Duration::from_millis(20));
    let mut group = projector.group();
    group.add_with(Counts, ProjectionOptions::new().partitions(PARTITIONS));
    println!("READY {}", std::process::id());
    group.run(std::future::pending()).await.expect("the child projector failed");
}

/// A projector process.
struct ProjectorProcess {
    child: Child,
    pid: u32,
}

/// Starts a projector process; its `LEADS` lines go to `leads` as (pid, partition, token).
fn start(schema: &str, prefix: &str, leads: &mpsc::Sender<(u32, String, u64)>) -> ProjectorProcess {
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args(["--ignored", "--exact", "partitioned::child_partitioned_projector", "--nocapture", "--test-threads=1"])
        .env("CQRS_CHILD_SCHEMA", schema)
        .env("CQRS_CHILD_PREFIX", prefix)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let stdout = child.stdout.take().unwrap();
    let leads = leads.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            // libtest may print "test partitioned::child_partitioned_projector ... " first.
            let mut fields = line.split_whitespace().skip_while(|field| *field != "LEADS").skip(1);
            let (Some(pid), Some(name), Some(token)) = (fields.next(), fields.next(), fields.next()) else { continue };
            let (Ok(pid), Ok(token)) = (pid.parse(), token.parse()) else { continue };
            if leads.send((pid, name.to_owned(), token)).is_err() {
                break;
            }
        }
    });
    ProjectorProcess { child, pid }
}

impl ProjectorProcess {
    fn sigkill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for ProjectorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Who leads each partition (the last `LEADS` line of each), and the highest token seen.
#[derive(Default)]
struct Leaders {
    by_partition: BTreeMap<String, (u32, u64)>,
}

impl Leaders {
    fn take(&mut self, leads: &mpsc::Receiver<(u32, String, u64)>) {
        while let Ok((pid, name, token)) = leads.try_recv() {
            let known = self.by_partition.entry(name).or_insert((pid, token));
            if token >= known.1 {
                *known = (pid, token);
            }
        }
    }

    /// How many partitions each of `pids` leads.
    fn shares(&self, pids: &[u32]) -> Vec<usize> {
        pids.iter().map(|pid| self.by_partition.values().filter(|(p, _)| p == pid).count()).collect()
    }
}

/// Appends one event to each of `streams` streams per round, from `round` on, until told to stop;
/// returns the rounds written.
async fn write_rounds(events: PgEventStore, streams: u64, from: u64, stop: tokio::sync::watch::Receiver<bool>) -> u64 {
    let mut round = from;
    while !*stop.borrow() {
        for s in 0..streams {
            let stream = StreamId::new("tally", format!("t{s}")).unwrap();
            let event = NewEvent::encode(&TallyEvent::Counted, Metadata::default()).unwrap();
            events.append(&stream, ExpectedVersion::Exact(round), vec![event]).await.unwrap();
        }
        round += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    round
}

/// Waits until the three processes lead two partitions each; how long it took.
fn balanced(leaders: &mut Leaders, leads: &mpsc::Receiver<(u32, String, u64)>, pids: &[u32]) -> Duration {
    let started = Instant::now();
    let want = vec![(PARTITIONS as usize) / pids.len(); pids.len()];
    loop {
        leaders.take(leads);
        if leaders.shares(pids) == want {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the partitions are not shared out within 10 s: {:?} over {pids:?}",
            leaders.by_partition
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_projector_processes_share_six_partitions_on_the_cluster_through_repeated_sigkills() {
    const STREAMS: u64 = 60;
    let mut rng = TestRng::from_env("CQRS_PARTITION_SEED");
    let name = crate::fresh_prefix().replace(':', "_");
    let schema = format!("partitioned{}", name.trim_matches('_'));
    let prefix = crate::fresh_prefix();
    let events = events_in(&schema).await;
    let views = cluster_views(&prefix).await;
    let (leads_tx, leads) = mpsc::channel();
    let mut children: Vec<ProjectorProcess> = (0..3).map(|_| start(&schema, &prefix, &leads_tx)).collect();
    let (stop_writing, stop) = tokio::sync::watch::channel(false);
    let writer = tokio::spawn(write_rounds(events.clone(), STREAMS, 0, stop));
    let mut leaders = Leaders::default();
    let pids: Vec<u32> = children.iter().map(|c| c.pid).collect();
    let took = balanced(&mut leaders, &leads, &pids);
    println!("3 processes lead 2 partitions each {took:?} after they started");

    for round in 0..4 {
        let victim = rng.below(3) as usize;
        std::thread::sleep(Duration::from_millis(300 + rng.below(1200)));
        leaders.take(&leads);
        let held: Vec<String> = leaders
            .by_partition
            .iter()
            .filter(|(_, (pid, _))| *pid == children[victim].pid)
            .map(|(name, _)| name.clone())
            .collect();
        children[victim].sigkill();
        let killed_at = Instant::now();
        // Its partitions are taken over by the two left.
        loop {
            leaders.take(&leads);
            let dead = children[victim].pid;
            if held.iter().all(|name| leaders.by_partition.get(name).is_some_and(|(pid, _)| *pid != dead)) {
                break;
            }
            assert!(
                killed_at.elapsed() < Duration::from_secs(10),
                "not taken over within 10 s: {:?}",
                leaders.by_partition
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        println!(
            "round {round}: the {} partitions of the killed process taken over in {:?}",
            held.len(),
            killed_at.elapsed()
        );
        let left: Vec<u32> = (0..3).filter(|&i| i != victim).map(|i| children[i].pid).collect();
        let took = balanced(&mut leaders, &leads, &left);
        println!("round {round}: 2 processes lead 3 partitions each {took:?} after the takeover");
        // It comes back: the three share the partitions out again.
        children[victim] = start(&schema, &prefix, &leads_tx);
        let pids: Vec<u32> = children.iter().map(|c| c.pid).collect();
        let took = balanced(&mut leaders, &leads, &pids);
        println!("round {round}: a new process joined; 3 lead 2 each {took:?} after it started");
    }
    stop_writing.send_replace(true);
    let rounds = writer.await.unwrap();
    let last = events.head().await.unwrap().unwrap();
    let reader = Reader::<Counts>::new(views.clone()).partitioned();
    reader.wait_for(last, Duration::from_secs(60)).await.expect("the partitions catch up");
    let ids: Vec<String> = (0..STREAMS).map(|s| format!("t{s}")).collect();
    let counted: Vec<Count> = reader.get_many(&ids).await.unwrap().into_iter().map(Option::unwrap).collect();
    for (id, count) in ids.iter().zip(&counted) {
        assert_eq!(count, &Count { applied: rounds, version: rounds, twice: 0, skipped: 0 }, "{id}: each event once");
    }
    // The views equal a from-scratch fold of the whole projection.
    let fresh = cluster_views(&crate::fresh_prefix()).await;
    Projector::new(events.clone(), fresh.clone()).catch_up(&Counts).await.unwrap();
    let whole = Reader::<Counts>::new(fresh);
    assert_eq!(whole.get_many(&ids).await.unwrap().into_iter().map(Option::unwrap).collect::<Vec<_>>(), counted);
    println!("{} events in {rounds} rounds over {STREAMS} streams, each applied once", rounds * STREAMS);
    drop(children);
}

//! Faults of a private Redis Cluster (`cluster-node-timeout` 1 s) while a projection projects into
//! it: the shard holding the projection fails over (a `CLUSTER FAILOVER` on its replica, or its
//! master SIGKILLed), or the projection's slot is migrated to another master key batch by key
//! batch (`MOVED`, `ASK` and `TRYAGAIN` on the way). Each time no event is lost or applied twice,
//! and queries answer again.

use std::time::{Duration, Instant};

use eventloom_core::model::{ExpectedVersion, NewEvent};
use eventloom_core::prelude::*;
use eventloom_core::{
    Projection,
    memory::MemoryEventStore,
    read::{Projector, ViewReader},
    store::EventStore,
};
use eventloom_redis::{RedisConfig, RedisViewStore};

use crate::domain::{Count, CounterEvent, Counts};
use crate::private_cluster::PrivateCluster;

const COUNTERS: u64 = 20;
const EACH: u64 = 150;

#[derive(Debug, Clone, Copy)]
enum Fault {
    /// `CLUSTER FAILOVER` on the replica of the projection's master: no acknowledged write lost.
    Failover,
    /// The projection's master SIGKILLed while its replica is stalled (`DEBUG SLEEP`), so that
    /// the replica takes over after the node timeout without the master's last writes: commits
    /// acknowledged to the projector are lost (replication is asynchronous), and the views go
    /// back to an older checkpoint, from which the projector folds again.
    KillMaster,
    /// The projection's slot moved to another master, two keys at a time.
    MigrateSlot,
}

async fn append_rounds(events: &MemoryEventStore, rounds: std::ops::Range<u64>, pause: Duration) -> Position {
    for round in rounds {
        for c in 0..COUNTERS {
            let event = NewEvent::encode(&CounterEvent::Incremented, Metadata::default()).unwrap();
            let stream = StreamId::new("counter", format!("c{c}")).unwrap();
            events.append(&stream, ExpectedVersion::Exact(round), vec![event]).await.unwrap();
        }
        tokio::time::sleep(pause).await;
    }
    events.read_all(Position::ZERO, usize::MAX).await.unwrap().last().unwrap().position
}

async fn project_through(fault: Fault) {
    let mut cluster = PrivateCluster::start(1_000, &["--enable-debug-command", "local"], &[], false);
    let config = RedisConfig::from_cluster_urls(&cluster.urls())
        .unwrap()
        .prefix("t:")
        .unwrap()
        .response_timeout(Duration::from_secs(2));
    let views = RedisViewStore::connect_with(config).await.unwrap();
    let events = MemoryEventStore::new();
    let half = append_rounds(&events, 0..EACH / 2, Duration::ZERO).await;
    let projector =
        Projector::new(events.clone(), views.clone()).with_batch_size(20).with_retry_delay(Duration::from_millis(50));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(async move { projector.run(Counts, async { stopped.await.unwrap_or(()) }).await });
    let reader = ViewReader::<Count>::new(views.clone(), Counts::NAME);
    reader.wait_for(half, Duration::from_secs(30)).await.unwrap();

    // New events keep coming while the fault happens: the projection is projecting through it.
    let appender = {
        let events = events.clone();
        tokio::spawn(async move { append_rounds(&events, EACH / 2..EACH, Duration::from_millis(10)).await })
    };
    let slot = cluster.slot("t:{p:counts}:live").await;
    let master = cluster.master_of(slot).await;
    let started = Instant::now();
    match fault {
        Fault::Failover => {
            let replica = cluster.replica_of(&master.id).await;
            PrivateCluster::cluster_command(replica.port, &["FAILOVER"]).await;
            cluster.wait_until_master(replica.port, Duration::from_secs(30)).await;
        }
        Fault::KillMaster => {
            let replica = cluster.replica_of(&master.id).await;
            let replicated = replication_offset(replica.port, "slave_repl_offset").await;
            let sleeping = stall(replica.port, "1.5");
            tokio::time::sleep(Duration::from_millis(500)).await;
            let written = replication_offset(master.port, "master_repl_offset").await;
            cluster.kill(master.port);
            assert!(written > replicated, "the master wrote what its replica never got ({written} > {replicated})");
            println!("KillMaster: the replica lacks {} bytes of the master's writes", written - replicated);
            sleeping.await.unwrap();
            cluster.wait_until_master(replica.port, Duration::from_secs(30)).await;
        }
        Fault::MigrateSlot => migrate(&cluster, slot, &master, &views).await,
    }
    println!("{fault:?}: the cluster settled {:?} after the fault began", started.elapsed());
    let last = appender.await.unwrap();
    reader.wait_for(last, Duration::from_secs(60)).await.expect("the projection resumes and catches up");
    println!("{fault:?}: caught up {:?} after the fault began", started.elapsed());
    stop.send(()).unwrap();
    running.await.unwrap().unwrap();

    let ids: Vec<String> = (0..COUNTERS).map(|c| format!("c{c}")).collect();
    for (id, count) in ids.iter().zip(reader.get_many(&ids).await.unwrap()) {
        let count = count.unwrap_or_else(|| panic!("no view for {id}"));
        assert_eq!(count, Count { applied: EACH, version: EACH }, "{id}: every event applied exactly once ({fault:?})");
    }
}

/// Stalls the node on `port` for `seconds` (`DEBUG SLEEP`, by redis-cli: it waits longer than a
/// connection's response timeout).
fn stall(port: u16, seconds: &str) -> tokio::task::JoinHandle<()> {
    let (port, seconds) = (port.to_string(), seconds.to_owned());
    tokio::task::spawn_blocking(move || {
        let status = std::process::Command::new("redis-cli")
            .args(["-p", &port, "debug", "sleep", &seconds])
            .stdout(std::process::Stdio::null())
            .status();
        assert!(status.unwrap().success(), "DEBUG SLEEP on {port}");
    })
}

/// A replication offset (`field`) of `INFO replication` on the node on `port`.
async fn replication_offset(port: u16, field: &str) -> u64 {
    let mut connection = PrivateCluster::node(port).await;
    let info: String = redis::cmd("INFO").arg("replication").query_async(&mut connection).await.unwrap();
    let line = info.lines().find_map(|line| line.strip_prefix(&format!("{field}:")));
    line.unwrap_or_else(|| panic!("no {field} in {info}")).trim().parse().unwrap()
}

/// Moves `slot` from `from` to another master, two keys per `MIGRATE`, with pauses between in
/// which the projector's scripts meet the slot half moved (`ASK`, then `TRYAGAIN` from the
/// importing node while some of a script's keys are still on the other).
async fn migrate(cluster: &PrivateCluster, slot: u16, from: &crate::private_cluster::Node, views: &RedisViewStore) {
    let nodes = PrivateCluster::nodes_seen_by(from.port).await;
    let to = nodes.iter().find(|n| n.master && n.id != from.id).unwrap().clone();
    let slot_arg = slot.to_string();
    PrivateCluster::cluster_command(to.port, &["SETSLOT", &slot_arg, "IMPORTING", &from.id]).await;
    PrivateCluster::cluster_command(from.port, &["SETSLOT", &slot_arg, "MIGRATING", &to.id]).await;
    let mut source = PrivateCluster::node(from.port).await;
    let mut moved = 0;
    loop {
        let keys: Vec<String> =
            redis::cmd("CLUSTER").arg("GETKEYSINSLOT").arg(slot).arg(2).query_async(&mut source).await.unwrap();
        if keys.is_empty() {
            // Every key is on the new node, the slot still in migration. A query whose keys all
            // exist is sent there with ASK and answered; a script that names a key that does
            // not exist (yet) is refused with TRYAGAIN, since it may still be on the old node,
            // until the slot is handed over: retried, then unavailable.
            let ids: Vec<String> = (0..COUNTERS).map(|c| format!("c{c}")).collect();
            let reader = ViewReader::<Count>::new(views.clone(), Counts::NAME);
            let read = reader.get_many(&ids).await.expect("a query during the migration");
            assert!(read.iter().all(Option::is_some), "every view, read on the new node");
            let status = eventloom_core::store::ViewStore::status(views, Counts::NAME).await;
            assert!(matches!(status, Err(eventloom_core::Error::Unavailable { .. })), "{status:?}");
            break;
        }
        moved += keys.len();
        let _: redis::Value = redis::cmd("MIGRATE")
            .arg("127.0.0.1")
            .arg(to.port)
            .arg("")
            .arg(0)
            .arg(5_000)
            .arg("KEYS")
            .arg(&keys)
            .query_async(&mut source)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    for node in cluster.running() {
        let seen = PrivateCluster::nodes_seen_by(node).await;
        if seen.iter().any(|n| n.port == node && n.master) {
            PrivateCluster::cluster_command(node, &["SETSLOT", &slot_arg, "NODE", &to.id]).await;
        }
    }
    cluster.wait_ok(Duration::from_secs(10)).await;
    println!("migrated {moved} keys of slot {slot} from {} to {}", from.port, to.port);
    assert!(moved > 10, "the slot held the projection's keys");
    // The projector and the queries met the slot in migration: scripts were refused whole
    // (TRYAGAIN) while their keys were split between the nodes, and a query sent to the new node
    // with ASKING (after an ASK) once its keys had all moved.
    let try_again = errors(from.port, "TRYAGAIN").await + errors(to.port, "TRYAGAIN").await;
    let asking = calls(to.port, "asking").await;
    println!("MigrateSlot: {try_again} TRYAGAIN, {asking} ASKING");
    assert!(try_again > 0, "no script met the slot half moved");
    assert!(asking > 0, "no query was sent to the new node while the slot was moving");
}

/// How many calls of `command` the node on `port` has run (`INFO commandstats`).
async fn calls(port: u16, command: &str) -> u64 {
    let mut connection = PrivateCluster::node(port).await;
    let info: String = redis::cmd("INFO").arg("commandstats").query_async(&mut connection).await.unwrap();
    let line = info.lines().find_map(|line| line.strip_prefix(&format!("cmdstat_{command}:calls=")));
    line.map_or(0, |rest| rest.split(',').next().unwrap().parse().unwrap())
}

/// How many replies of the error `prefix` the node on `port` has sent (`INFO errorstats`).
async fn errors(port: u16, prefix: &str) -> u64 {
    let mut connection = PrivateCluster::node(port).await;
    let info: String = redis::cmd("INFO").arg("errorstats").query_async(&mut connection).await.unwrap();
    let line = info.lines().find_map(|line| line.strip_prefix(&format!("errorstat_{prefix}:count=")));
    line.map_or(0, |count| count.trim().parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_manual_failover_of_the_projections_shard_loses_and_doubles_nothing() {
    project_through(Fault::Failover).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_master_of_the_projections_shard_loses_and_doubles_nothing() {
    project_through(Fault::KillMaster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_projections_slot_migrated_mid_projection_loses_and_doubles_nothing() {
    project_through(Fault::MigrateSlot).await;
}

/// With `wait_for_replicas`, a commit waits for the replica of the projection's master (routed to
/// that master in the cluster): at once while the replica keeps up, the whole timeout while it
/// is stalled (and the commit still stands); without it, a commit never waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_wait_for_a_replica_when_asked() {
    use eventloom_core::store::{ViewCommit, ViewStore, ViewWrite};
    let cluster = PrivateCluster::start(1_000, &["--enable-debug-command", "local"], &[], false);
    let config = RedisConfig::from_cluster_urls(&cluster.urls()).unwrap().prefix("w:").unwrap();
    let timeout = Duration::from_millis(700);
    let waiting = RedisViewStore::connect_with(config.clone().wait_for_replicas(1, timeout)).await.unwrap();
    let plain = RedisViewStore::connect_with(config).await.unwrap();
    let generation = waiting.begin_generation("p", 1, 1).await.unwrap().unwrap();
    let commit = |n: u64| ViewCommit {
        generation: generation.id,
        expected: (n > 1).then(|| Position::new(n - 1, n - 1)),
        checkpoint: Position::new(n, n),
        fencing_token: 1,
        views: vec![ViewWrite::set("a", n.to_string())],
        dead_letters: vec![],
        resolved: Vec::new(),
    };
    let slot = cluster.slot("w:{p:p}:live").await;
    let master = cluster.master_of(slot).await;
    let replica = cluster.replica_of(&master.id).await;

    let started = Instant::now();
    waiting.commit("p", commit(1)).await.unwrap().unwrap();
    let kept_up = started.elapsed();
    let sleeping = stall(replica.port, "2");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    waiting.commit("p", commit(2)).await.unwrap().unwrap();
    let stalled = started.elapsed();
    let started = Instant::now();
    plain.commit("p", commit(3)).await.unwrap().unwrap();
    let unasked = started.elapsed();
    sleeping.await.unwrap();
    println!(
        "WAIT 1 replica: {kept_up:?} while it keeps up, {stalled:?} while it is stalled; {unasked:?} without WAIT"
    );
    assert!(kept_up < Duration::from_millis(500), "{kept_up:?}");
    assert!(stalled >= timeout - Duration::from_millis(50), "waited for the stalled replica: {stalled:?}");
    assert!(unasked < Duration::from_millis(500), "{unasked:?}");
    assert_eq!(plain.status("p").await.unwrap().building.unwrap().checkpoint, Some(Position::new(3, 3)));
}

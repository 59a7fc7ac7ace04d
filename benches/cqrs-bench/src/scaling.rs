//! The `scaling` scenarios: a partitioned projection catching up on a Redis Cluster in one and in
//! three projector processes (children of this binary, `cqrs-bench scaling-child ...`, sharing
//! the partitions out by `PgLeases`), view queries on the cluster against one Redis node, and the
//! lag of a PostgreSQL streaming replica under an append load (see `scaling_reads.rs` for the
//! last two).
//!
//! The catch-up runs on events copied into a fresh schema in one transaction *after* the
//! projector processes have started, shared the partitions out and caught up on a few seed
//! events: what is timed is the catch-up alone, not the processes' start, nor the moves of
//! partitions while they find each other.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use eventloom_core::model::ExpectedVersion;
use eventloom_core::prelude::*;
use eventloom_core::read::{Projector, partition_of};
use eventloom_core::store::{BoxFuture, EventStore, Lease, LeaseManager};
use eventloom_core::{BoxError, IndexEntry, Position, Projection, ProjectionOptions};
use eventloom_postgres::{PgConfig, PgEventStore, PgLeases};
use eventloom_redis::{RedisConfig, RedisViewStore};
use redis::cluster_async::ClusterConnection;
use tokio_postgres::Client;

use crate::Result;
use crate::cpu::{Reading, Server};
use crate::domain::{Account, AccountEvent, EventMaker};
use crate::load::{self, Budget, Rate};
use crate::read_model::CatchUpLoad;
use crate::report::{Record, Unit};

/// The first argument of a child projector process.
pub const CHILD: &str = "scaling-child";
/// Partitions of the partitioned projection.
pub const PARTITIONS: u32 = 6;
/// Streams of the catch-up, with ids `sc-0` .. `sc-999`.
pub const STREAMS: usize = 1_000;
/// The id prefix of the catch-up's streams.
pub const IDS: &str = "sc-";
/// Events per `EventStore::append` when filling the store.
const PER_APPEND: usize = 100;
/// Appends per stream.
const APPENDS_PER_STREAM: usize = 2;
/// Events per stream.
pub const PER_STREAM: usize = PER_APPEND * APPENDS_PER_STREAM;
/// Events the catch-up projects.
pub const EVENTS: usize = STREAMS * PER_STREAM;
/// Tasks appending (a divisor of [`STREAMS`]).
const LOAD_TASKS: usize = 4;
/// Events per batch of the projectors (and per page of the raw baseline).
pub const BATCH: usize = 2_000;
/// Seed streams, one event each, that the processes catch up on before the copy.
const SEEDS: usize = 24;
/// How long the processes may take to start, share the partitions out and catch up on the seeds.
const READY_TIMEOUT: Duration = Duration::from_secs(90);
/// How long to wait once they have: past the partition set's switch grace (5 s) and a look at
/// the member slots (every second), so that nothing moves during the catch-up.
const SETTLE: Duration = Duration::from_secs(7);
/// How long a catch-up may take.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(300);
/// How often the partitions' checkpoints are read during a catch-up.
const POLL: Duration = Duration::from_millis(20);

/// One view of the task-like projection: one per stream, listed by creation order.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Card {
    /// The sum of the deposits.
    pub balance: u64,
    /// The version of the stream's last event folded in.
    pub version: u64,
    /// The sort key of the stream's first event's position: the card's place in the list.
    pub created: String,
}

/// The projection: a [`Card`] per account stream, in the list `status=open` in creation order
/// (as the task manager lists tasks).
#[derive(Debug, Clone, Copy, Default)]
pub struct Cards;

impl Projection for Cards {
    // Letters and `_` only, so the name is its own encoding in Redis keys (see `card_key`).
    const NAME: &'static str = "task_cards";
    type Events = Account;
    type View = Card;

    fn index(&self, _id: &str, view: &Card) -> Vec<IndexEntry> {
        vec![IndexEntry::new("status", "open").ordered_by(view.created.clone())]
    }

    fn apply(&self, view: &mut Option<Card>, event: &EventEnvelope<AccountEvent>) -> std::result::Result<(), BoxError> {
        let AccountEvent::Deposited { amount } = event.event;
        let view = view.get_or_insert_with(|| Card { created: event.position.sort_key(), ..Card::default() });
        view.balance += amount;
        view.version = event.version;
        Ok(())
    }
}

/// The Redis key of a card of the whole projection in `generation` under `prefix`.
pub fn card_key(prefix: &str, generation: u64, id: &str) -> String {
    format!("{prefix}{{p:{}}}:g{generation}:v:{id}", Cards::NAME)
}

/// The name partition `index` of [`PARTITIONS`] is stored and leased under.
fn partition_name(index: u32) -> String {
    format!("{}~{index}of{PARTITIONS}", Cards::NAME)
}

/// A view store on the cluster under `prefix`.
pub async fn cluster_views(cluster_urls: &str, prefix: &str) -> Result<RedisViewStore> {
    let config = RedisConfig::from_cluster_urls(cluster_urls)?.prefix(prefix.to_owned())?;
    Ok(RedisViewStore::connect_with(config).await?)
}

/// A raw cluster connection of redis-rs.
pub async fn cluster_connection(cluster_urls: &str) -> Result<ClusterConnection> {
    let nodes: Vec<&str> = cluster_urls.split(',').map(str::trim).filter(|u| !u.is_empty()).collect();
    Ok(redis::cluster::ClusterClient::new(nodes)?.get_async_connection().await?)
}

/// Runs the `scaling` scenarios: PostgreSQL at `pg_url` with its streaming replica at
/// `replica_url`, one Redis node at `redis_url` and a Redis Cluster of `cluster_urls`
/// (comma-separated node URLs), printing one JSON line per scenario. Works in schemas
/// `bench_scaling_<pid>*` and under a key prefix `cqrs-bench:<pid>:<ms>:` of its own, dropped and
/// deleted at the end.
pub async fn run(pg_url: &str, replica_url: &str, redis_url: &str, cluster_urls: &str) -> Result<()> {
    let monitor = crate::scenarios::monitor(pg_url).await?;
    let source = crate::scenarios::fresh_schema(&monitor, "bench_scaling").await?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis();
    let prefix = format!("cqrs-bench:{}:{now}:", std::process::id());
    eprintln!("Redis key prefix: {prefix} (deleted at the end, on the node and the cluster)");
    let nodes = describe_cluster(cluster_urls).await?;
    let catch_ups = CatchUps {
        pg_url,
        cluster_urls,
        monitor: &monitor,
        source: &source,
        prefix: &prefix,
        server: Server::find(&monitor).await,
        redis_pids: nodes.iter().filter_map(|n| n.pid).collect(),
    };
    // `CQRS_BENCH_SCALING=catch_up,queries,lag` (the default: all three) picks the parts run;
    // the queries read the catch-up's views.
    let parts = std::env::var("CQRS_BENCH_SCALING").unwrap_or_else(|_| "catch_up,queries,lag".to_owned());
    let part = |name: &str| parts.split(',').any(|p| p.trim() == name);
    let outcome = async {
        if part("catch_up") || part("queries") {
            catch_ups.fill().await?;
            let raw = catch_ups.raw().await?;
            for setup in &SETUPS {
                catch_ups.catch_up(setup, &raw).await?.print();
            }
        }
        if part("queries") {
            for record in crate::scaling_reads::view_queries(&catch_ups, redis_url).await? {
                record.print();
            }
        }
        if part("lag") {
            crate::scaling_reads::replica_lag(pg_url, replica_url, &format!("{source}_lag"), &monitor).await?.print();
        }
        Ok::<_, crate::BoxError>(())
    }
    .await;
    let mut schemas = vec![source.clone(), format!("{source}_lag")];
    schemas.extend(SETUPS.iter().map(|s| catch_ups.schema_of(s)));
    let mut dropped = Ok(());
    for schema in &schemas {
        if let Err(error) = monitor.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE")).await {
            dropped = Err(error);
        }
    }
    let deleted = delete_everywhere(redis_url, &nodes, &prefix).await;
    if let Ok(deleted) = &deleted {
        eprintln!("cleanup: dropped schemas {schemas:?}, deleted {deleted} Redis keys under {prefix}");
    }
    outcome?;
    dropped?;
    deleted?;
    Ok(())
}

/// Deletes the keys under `prefix` on the Redis node and on each master of the cluster (one
/// key per `UNLINK` there: a cluster refuses keys of several slots in one command).
async fn delete_everywhere(redis_url: &str, nodes: &[Node], prefix: &str) -> Result<usize> {
    let mut node = redis::aio::ConnectionManager::new(redis::Client::open(redis_url)?).await?;
    let mut deleted = crate::read_model::delete_keys(&mut node, prefix).await?;
    for master in nodes.iter().filter(|n| n.master) {
        let mut connection = redis::Client::open(master.url.as_str())?.get_multiplexed_async_connection().await?;
        let pattern = format!("{prefix}*");
        let keys: Vec<String> = {
            let mut iter: redis::AsyncIter<'_, String> = redis::cmd("SCAN")
                .cursor_arg(0)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1_000)
                .clone()
                .iter_async(&mut connection)
                .await?;
            let mut keys = Vec::new();
            while let Some(key) = futures_util::StreamExt::next(&mut iter).await {
                keys.push(key?);
            }
            keys
        };
        for chunk in keys.chunks(1_000) {
            let mut pipe = redis::pipe();
            for key in chunk {
                pipe.cmd("UNLINK").arg(key).ignore();
            }
            pipe.exec_async(&mut connection).await?;
        }
        deleted += keys.len();
    }
    Ok(deleted)
}

/// One node of the cluster.
struct Node {
    url: String,
    master: bool,
    /// Its process id, when it runs on this machine.
    pid: Option<u32>,
}

/// Says which cluster this is: each node's role, the slots of the masters and where the
/// durability settings stand; returns the nodes.
async fn describe_cluster(cluster_urls: &str) -> Result<Vec<Node>> {
    let mut nodes = Vec::new();
    for url in cluster_urls.split(',').map(str::trim).filter(|u| !u.is_empty()) {
        let mut connection = redis::Client::open(url)?.get_multiplexed_async_connection().await?;
        let info: String = redis::cmd("INFO").arg("server").query_async(&mut connection).await?;
        let field = |name: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(':')))
                .map(str::trim)
                .map(str::to_owned)
        };
        let pid = field("process_id")
            .and_then(|p| p.parse().ok())
            .filter(|p| std::path::Path::new(&format!("/proc/{p}")).exists());
        let role: Vec<redis::Value> = redis::cmd("ROLE").query_async(&mut connection).await?;
        let master = matches!(role.first(), Some(redis::Value::BulkString(b)) if b == b"master");
        let aof: Vec<String> = redis::cmd("CONFIG").arg("GET").arg("appendfsync").query_async(&mut connection).await?;
        let on: Vec<String> = redis::cmd("CONFIG").arg("GET").arg("appendonly").query_async(&mut connection).await?;
        eprintln!(
            "Redis Cluster node {url}: Redis {}, {}, appendonly {}, appendfsync {}",
            field("redis_version").unwrap_or_default(),
            if master { "master" } else { "replica" },
            on.get(1).map_or("?", String::as_str),
            aof.get(1).map_or("?", String::as_str)
        );
        nodes.push(Node { url: url.to_owned(), master, pid });
    }
    Ok(nodes)
}

// ---------------------------------------------------------------------------------------------
// The child projector process.

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

/// A projector process: runs [`Cards`] (in `partitions` partitions, whole when 1) from the
/// events of `schema` into views under `prefix` on the cluster, with `PgLeases`, until its
/// standard input ends (or it is killed).
pub async fn child(pg_url: &str, cluster_urls: &str, schema: &str, prefix: &str, partitions: &str) -> Result<()> {
    let partitions: u32 = partitions.parse().map_err(|_| format!("partitions: not a number: {partitions:?}"))?;
    let config = PgConfig::from_url(pg_url)?.schema(schema)?.pool_size(4);
    let events = PgEventStore::connect(config).await?;
    let views = cluster_views(cluster_urls, prefix).await?;
    let leases = Announcing(PgLeases::new(&events));
    let projector = Projector::new(events, views).with_leases(leases).with_batch_size(BATCH);
    let mut group = projector.group();
    if partitions > 1 {
        group.add_with(Cards, ProjectionOptions::new().partitions(partitions));
    } else {
        group.add(Cards);
    }
    let stdin_closed = async {
        let _ = tokio::task::spawn_blocking(|| std::io::stdin().lines().count()).await;
    };
    group.run(stdin_closed).await?;
    Ok(())
}

/// A child projector process, killed when dropped.
struct ProjectorProcess {
    child: Child,
    pid: u32,
}

impl Drop for ProjectorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a projector process; its `LEADS` lines go to `leads` as (pid, partition, token).
fn start_child(
    schema: &str,
    prefix: &str,
    partitions: u32,
    leads: &mpsc::Sender<(u32, String, u64)>,
) -> Result<ProjectorProcess> {
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .args([CHILD, schema, prefix, &partitions.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let pid = child.id();
    let stdout = child.stdout.take().ok_or("the child's stdout")?;
    let leads = leads.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(std::result::Result::ok) {
            let mut fields = line.split_whitespace();
            if fields.next() != Some("LEADS") {
                continue;
            }
            let (Some(pid), Some(name), Some(token)) = (fields.next(), fields.next(), fields.next()) else { continue };
            let (Ok(pid), Ok(token)) = (pid.parse(), token.parse()) else { continue };
            if leads.send((pid, name.to_owned(), token)).is_err() {
                break;
            }
        }
    });
    Ok(ProjectorProcess { child, pid })
}

/// Who leads each partition: the process of the highest token seen.
#[derive(Default)]
struct Leaders {
    by_name: BTreeMap<String, (u32, u64)>,
}

impl Leaders {
    fn take(&mut self, leads: &mpsc::Receiver<(u32, String, u64)>) -> bool {
        let mut changed = false;
        while let Ok((pid, name, token)) = leads.try_recv() {
            let known = self.by_name.entry(name).or_insert((pid, 0));
            if token >= known.1 {
                changed |= known.0 != pid || known.1 != token;
                *known = (pid, token);
            }
        }
        changed
    }

    fn leader(&self, name: &str) -> Option<u32> {
        self.by_name.get(name).map(|(pid, _)| *pid)
    }
}

// ---------------------------------------------------------------------------------------------
// The parent: the catch-up scenarios.

/// One way of running the projection.
#[derive(Debug, Clone, Copy)]
pub struct Setup {
    /// The scenario's name.
    pub scenario: &'static str,
    /// The part of schema names and key prefixes.
    pub label: &'static str,
    /// Partitions (1: whole).
    pub partitions: u32,
    /// Projector processes.
    pub processes: usize,
}

/// The three runs of the catch-up.
pub const SETUPS: [Setup; 3] = [
    Setup { scenario: "partitioned_catch_up_whole", label: "whole", partitions: 1, processes: 1 },
    Setup { scenario: "partitioned_catch_up_1_process", label: "p1", partitions: PARTITIONS, processes: 1 },
    Setup { scenario: "partitioned_catch_up_3_processes", label: "p3", partitions: PARTITIONS, processes: 3 },
];

impl Setup {
    /// The names the runners of this setup are stored (and leased) under.
    fn names(&self) -> Vec<String> {
        if self.partitions > 1 {
            (0..self.partitions).map(partition_name).collect()
        } else {
            vec![Cards::NAME.to_owned()]
        }
    }

    /// The reader of the projection as queries read it.
    pub fn reader(&self, views: RedisViewStore) -> Reader<Cards> {
        let reader = Reader::<Cards>::new(views);
        if self.partitions > 1 { reader.partitioned() } else { reader }
    }
}

/// A deposit's payload as stored (the event type is a column of its own).
#[derive(Deserialize)]
struct DepositPayload {
    amount: u64,
}

/// The raw baseline's figures.
#[derive(Debug, Clone, Copy)]
pub struct RawRun {
    /// The rate.
    pub rate: Rate,
    /// This process's CPU time per event, in microseconds.
    pub cpu_us_per_event: Option<f64>,
}

/// What the catch-up scenarios share.
pub struct CatchUps<'a> {
    /// The PostgreSQL server's URL.
    pub pg_url: &'a str,
    /// The cluster's node URLs.
    pub cluster_urls: &'a str,
    /// The benchmark's connection (schemas, the copies).
    pub monitor: &'a Client,
    /// The schema holding the events copied into each run's.
    pub source: &'a str,
    /// The run's key prefix.
    pub prefix: &'a str,
    /// The PostgreSQL server, when it runs on this machine.
    pub server: Option<Server>,
    /// The pids of the cluster's Redis servers, when on this machine.
    pub redis_pids: Vec<u32>,
}

impl CatchUps<'_> {
    /// The schema of one setup's run.
    pub fn schema_of(&self, setup: &Setup) -> String {
        format!("{}_{}", self.source, setup.label)
    }

    /// The key prefix of one setup's run.
    pub fn prefix_of(&self, label: &str) -> String {
        format!("{}{label}:", self.prefix)
    }

    /// Fills the source schema with [`EVENTS`] events: [`STREAMS`] streams of [`PER_STREAM`]
    /// deposits, [`PER_APPEND`] per append, from [`LOAD_TASKS`] tasks.
    pub async fn fill(&self) -> Result<()> {
        let config = PgConfig::from_url(self.pg_url)?.schema(self.source)?;
        let store = PgEventStore::connect(config).await?;
        store.migrate().await?;
        let appends = STREAMS * APPENDS_PER_STREAM;
        let workers = (0..LOAD_TASKS).map(|_| CatchUpLoad::new(store.clone(), STREAMS, PER_APPEND, IDS)).collect();
        let rate = load::throughput(workers, Budget::new(appends, 600)).await?;
        if rate.ops != appends {
            return Err(format!("filling the store: only {} of {appends} appends in the time allowed", rate.ops).into());
        }
        eprintln!(
            "scaling: appended {EVENTS} events ({STREAMS} streams x {PER_STREAM}, {PER_APPEND} per append, {LOAD_TASKS} \
             tasks) in {:.1} s",
            rate.elapsed.as_secs_f64()
        );
        Ok(())
    }

    /// The raw baseline: the events read from the source schema with tokio-postgres in pages of
    /// [`BATCH`] in log order, each payload decoded and one `SET` of its card's JSON per event,
    /// pipelined per page and hash tag (one tag per partition, as the partitioned projection's
    /// keys have), the six pipelines of a page sent at once on one cluster connection.
    pub async fn raw(&self) -> Result<RawRun> {
        let mut connection = cluster_connection(self.cluster_urls).await?;
        let prefix = self.prefix_of("raw");
        let read = self
            .monitor
            .prepare(&format!(
                // The casts get names of their own: `ORDER BY transaction_id` would otherwise sort
                // by the text.
                "SELECT e.transaction_id::text AS transaction_text, e.sequence, e.stream_id, e.version, \
                 e.payload::text AS payload_text FROM \"{}\".events e \
                 WHERE (e.transaction_id, e.sequence) > ($1::text::xid8, $2) \
                 ORDER BY e.transaction_id, e.sequence LIMIT $3",
                self.source
            ))
            .await?;
        let before = Reading::now(None);
        let started = Instant::now();
        let (mut transaction, mut sequence, mut events) = ("0".to_owned(), 0i64, 0usize);
        // Each card so far: its creation sort key and balance.
        let mut cards: HashMap<String, (String, u64)> = HashMap::new();
        loop {
            let limit = i64::try_from(BATCH)?;
            let rows = self.monitor.query(&read, &[&transaction, &sequence, &limit]).await?;
            let Some(last) = rows.last() else { break };
            (transaction, sequence) = (last.try_get(0)?, last.try_get(1)?);
            let mut pipes: Vec<redis::Pipeline> = (0..PARTITIONS).map(|_| redis::pipe()).collect();
            for row in &rows {
                let id: &str = row.try_get(2)?;
                let version: i64 = row.try_get(3)?;
                let payload: &str = row.try_get(4)?;
                let DepositPayload { amount } = serde_json::from_str(payload)?;
                let position =
                    Position::new(row.try_get::<_, &str>(0)?.parse()?, u64::try_from(row.try_get::<_, i64>(1)?)?);
                let (created, balance) = cards.entry(id.to_owned()).or_insert_with(|| (position.sort_key(), 0));
                *balance += amount;
                let card = Card { balance: *balance, version: u64::try_from(version)?, created: created.clone() };
                let partition = partition_of(id, PARTITIONS);
                let key = format!("{prefix}{{raw~{partition}}}:v:{id}");
                pipes[partition as usize].set(key, serde_json::to_string(&card)?).ignore();
            }
            events += rows.len();
            let sends = pipes.iter().filter(|pipe| !pipe.is_empty()).map(|pipe| {
                let mut connection = connection.clone();
                async move { pipe.exec_async(&mut connection).await }
            });
            for sent in futures_util::future::join_all(sends).await {
                sent?;
            }
        }
        let elapsed = started.elapsed();
        let (cpu, _) = Reading::now(None).since(&before);
        let _: () = redis::cmd("PING").query_async(&mut connection).await?;
        if events != EVENTS {
            return Err(format!("the raw baseline read {events} events, expected {EVENTS}").into());
        }
        let rate = Rate { ops: events, elapsed };
        let cpu_us_per_event = cpu.map(|c| c.time.as_secs_f64() * 1e6 / events as f64);
        eprintln!(
            "scaling: raw = the {events} events read from PostgreSQL in pages of {BATCH} (tokio-postgres), each \
             payload decoded, one SET per event of its card's JSON into the cluster, pipelined per page and \
             partition hash tag: {:.2} s = {:.0} events/s, this process's CPU {} us/event",
            elapsed.as_secs_f64(),
            rate.per_second(),
            cpu_us_per_event.map_or("-".to_owned(), |c| format!("{c:.2}"))
        );
        Ok(RawRun { rate, cpu_us_per_event })
    }

    /// One catch-up: a fresh schema with seed events, the setup's projector processes started
    /// on it and settled, then the source's events copied in in one transaction; timed from the
    /// copy's commit until every partition's checkpoint has reached the log's head.
    pub async fn catch_up(&self, setup: &Setup, raw: &RawRun) -> Result<Record> {
        let schema = self.schema_of(setup);
        let prefix = self.prefix_of(setup.label);
        let config = PgConfig::from_url(self.pg_url)?.schema(&schema)?;
        let store = PgEventStore::connect(config).await?;
        store.migrate().await?;
        seed(&store).await?;
        let seeded = store.head().await?.ok_or("no seed event")?;
        let views = cluster_views(self.cluster_urls, &prefix).await?;
        let (leads_tx, leads) = mpsc::channel();
        let mut children = Vec::with_capacity(setup.processes);
        for _ in 0..setup.processes {
            children.push(start_child(&schema, &prefix, setup.partitions, &leads_tx)?);
        }
        let pids: Vec<u32> = children.iter().map(|c| c.pid).collect();
        let mut leaders = Leaders::default();
        let ready = self.settle(setup, &views, &leads, &mut leaders, &pids, seeded).await?;
        let names = setup.names();
        let settled = leaders.by_name.clone();
        let owner: Vec<u32> = names.iter().map(|n| leaders.leader(n).unwrap_or(0)).collect();
        let owned: Vec<usize> = pids.iter().map(|pid| owner.iter().filter(|o| *o == pid).count()).collect();
        // The events each process's partitions project.
        let own_events: Vec<usize> = pids
            .iter()
            .map(|pid| {
                (0..STREAMS)
                    .filter(|s| {
                        let id = format!("{IDS}{s}");
                        let index = if setup.partitions > 1 { partition_of(&id, setup.partitions) as usize } else { 0 };
                        owner[index] == *pid
                    })
                    .count()
                    * PER_STREAM
            })
            .collect();

        let before: Vec<Reading> = pids.iter().map(|pid| Reading::of_processes(&[*pid])).collect();
        let server_before = Reading::now(self.server.as_ref());
        let redis_before = Reading::of_processes(&self.redis_pids);
        let copy_started = Instant::now();
        self.copy_into(&schema).await?;
        let started = Instant::now();
        let copy = started - copy_started;
        self.monitor.execute("SELECT pg_notify($1, '')", &[&format!("cqrs_events_{schema}")]).await?;
        let head = store.head().await?.ok_or("no events after the copy")?;

        // Until every runner has reached the head: each one's finish time, each process's CPU
        // once all its runners have.
        let readers: Vec<Reader<Cards>> =
            names.iter().map(|n| Reader::<Cards>::named(views.clone(), n.clone())).collect();
        let mut finished: Vec<Option<Duration>> = vec![None; names.len()];
        let mut spent: Vec<Option<Duration>> = vec![None; pids.len()];
        while finished.iter().any(Option::is_none) {
            if started.elapsed() > CATCH_UP_TIMEOUT {
                return Err(
                    format!("{}: not caught up within {CATCH_UP_TIMEOUT:?}: {finished:?}", setup.scenario).into()
                );
            }
            for (i, reader) in readers.iter().enumerate() {
                if finished[i].is_none() && reader.status().await?.checkpoint().is_some_and(|c| c >= head) {
                    finished[i] = Some(started.elapsed());
                }
            }
            for (p, pid) in pids.iter().enumerate() {
                let done = owner.iter().zip(&finished).filter(|(o, _)| *o == pid).all(|(_, f)| f.is_some());
                if spent[p].is_none() && done {
                    let (cpu, _) = Reading::of_processes(&[*pid]).since(&before[p]);
                    spent[p] = Some(cpu.ok_or("a projector process is gone")?.time);
                }
            }
            tokio::time::sleep(POLL).await;
        }
        let finish: Vec<Duration> = finished.into_iter().flatten().collect();
        let wall = finish.iter().copied().max().ok_or("no runner")?;
        let server = Reading::now(self.server.as_ref()).since(&server_before).1;
        let redis = Reading::of_processes(&self.redis_pids).since(&redis_before).0;
        check_cards(&setup.reader(views.clone())).await?;
        // Runners whose lease changed hands (or was taken again) during the catch-up.
        leaders.take(&leads);
        let lease_changes = names.iter().filter(|n| leaders.by_name.get(*n) != settled.get(*n)).count();
        if lease_changes > 0 {
            eprintln!(
                "{}: {lease_changes} runner(s) took their lease again during the catch-up (pid, token): before {settled:?}, \
                 after {:?}",
                setup.scenario, leaders.by_name
            );
        }
        for child in children.iter_mut() {
            drop(child.child.stdin.take());
        }
        drop(children);

        let rate = Rate { ops: EVENTS, elapsed: wall };
        let per_event = |d: Duration, events: usize| d.as_secs_f64() * 1e6 / events.max(1) as f64;
        let spent: Vec<Duration> = spent.into_iter().flatten().collect();
        let cpu: Vec<f64> = spent.iter().map(|d| per_event(*d, EVENTS)).collect();
        let cpu_own: Vec<f64> = spent.iter().zip(&own_events).map(|(d, n)| per_event(*d, *n)).collect();
        let total_cpu: Duration = spent.iter().sum();
        let finish_ms: Vec<f64> = finish.iter().map(|d| round1(d.as_secs_f64() * 1e3)).collect();
        let spread =
            finish.iter().max().copied().unwrap_or_default() - finish.iter().min().copied().unwrap_or_default();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        eprintln!(
            "{}: {} partition(s) on {} process(es) (partitions per process {owned:?}, ready after {:.1} s); copied \
             {EVENTS} events in {:.1} s; caught up in {:.2} s = {:.0} events/s (raw {:.0}/s); per partition finished at \
             {finish_ms:?} ms (spread {:.0} ms); CPU per process {:?} ms = {:?} us per event of the log, {:?} us per \
             event of its partitions; all processes {:.2} us/event; PostgreSQL {} us/event, Redis (6 nodes) {} \
             us/event",
            setup.scenario,
            setup.partitions,
            setup.processes,
            ready.as_secs_f64(),
            copy.as_secs_f64(),
            wall.as_secs_f64(),
            rate.per_second(),
            raw.rate.per_second(),
            ms(spread),
            spent.iter().map(|d| round1(ms(*d))).collect::<Vec<_>>(),
            cpu.iter().map(|c| round2(*c)).collect::<Vec<_>>(),
            cpu_own.iter().map(|c| round2(*c)).collect::<Vec<_>>(),
            per_event(total_cpu, EVENTS),
            server.map_or("-".to_owned(), |s| format!("{:.2}", per_event(s.time, EVENTS))),
            redis.map_or("-".to_owned(), |s| format!("{:.2}", per_event(s.time, EVENTS))),
        );
        let mut record = Record::new(setup.scenario, Unit::PerSecond, rate.per_second(), raw.rate.per_second())
            .with("partitions", setup.partitions)
            .with("processes", setup.processes)
            .with("partitions_per_process", owned)
            .with("wall_ms", ms(wall))
            .with("finish_ms", finish_ms)
            .with("finish_spread_ms", ms(spread))
            .with("lease_changes", lease_changes)
            .with("cpu_us_per_event", cpu.iter().map(|c| round3(*c)).collect::<Vec<_>>())
            .with("cpu_us_per_own_event", cpu_own.iter().map(|c| round3(*c)).collect::<Vec<_>>())
            .with("cpu_us_per_event_max", cpu.iter().copied().fold(0.0, f64::max))
            .with("cpu_us_per_event_all", per_event(total_cpu, EVENTS));
        if let Some(raw_cpu) = raw.cpu_us_per_event {
            record = record.with("raw_cpu_us_per_event", raw_cpu);
        }
        if let Some(server) = server {
            record = record.with("server_cpu_us_per_event", per_event(server.time, EVENTS));
        }
        if let Some(redis) = redis {
            record = record.with("redis_cpu_us_per_event", per_event(redis.time, EVENTS));
        }
        Ok(record)
    }

    /// Waits until the processes lead their share of the runners and the projection has caught
    /// up with the seeds, then for [`SETTLE`] more with no runner changing hands; how long it
    /// took.
    async fn settle(
        &self,
        setup: &Setup,
        views: &RedisViewStore,
        leads: &mpsc::Receiver<(u32, String, u64)>,
        leaders: &mut Leaders,
        pids: &[u32],
        seeded: Position,
    ) -> Result<Duration> {
        let started = Instant::now();
        let names = setup.names();
        let reader = setup.reader(views.clone());
        let balanced = |leaders: &Leaders| {
            let want = names.len() / pids.len();
            pids.iter().all(|pid| names.iter().filter(|n| leaders.leader(n) == Some(*pid)).count() == want)
        };
        loop {
            leaders.take(leads);
            if balanced(leaders) && reader.status().await?.checkpoint().is_some_and(|c| c >= seeded) {
                tokio::time::sleep(SETTLE).await;
                if !leaders.take(leads) && balanced(leaders) {
                    return Ok(started.elapsed());
                }
                continue;
            }
            if started.elapsed() > READY_TIMEOUT {
                return Err(format!(
                    "{}: the processes did not share the runners out and catch up on the seeds within \
                     {READY_TIMEOUT:?}: {:?}",
                    setup.scenario, leaders.by_name
                )
                .into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Copies the source's streams and events into `schema` in one transaction (new positions
    /// in the same order).
    async fn copy_into(&self, schema: &str) -> Result<()> {
        let source = self.source;
        self.monitor
            .batch_execute(&format!(
                "BEGIN; \
                 INSERT INTO \"{schema}\".streams (category, stream_id) SELECT category, stream_id FROM \"{source}\".streams; \
                 INSERT INTO \"{schema}\".events (category, stream_id, version, event_type, schema_version, payload, metadata) \
                   SELECT category, stream_id, version, event_type, schema_version, payload, metadata \
                   FROM \"{source}\".events ORDER BY transaction_id, sequence; \
                 COMMIT"
            ))
            .await?;
        Ok(())
    }
}

/// One deposit in each of [`SEEDS`] streams `seed-<n>` (over every partition, most likely).
async fn seed(store: &PgEventStore) -> Result<()> {
    let events = EventMaker::default();
    for n in 0..SEEDS {
        let stream = StreamId::new(<Account as eventloom_core::Aggregate>::TYPE, format!("seed-{n}"))?;
        store.append(&stream, ExpectedVersion::NoStream, vec![events.deposit()]).await?;
    }
    Ok(())
}

/// Checks that every card holds its stream's deposits.
async fn check_cards(reader: &Reader<Cards>) -> Result<()> {
    let ids: Vec<String> = (0..STREAMS).map(|n| format!("{IDS}{n}")).collect();
    let length = u64::try_from(PER_STREAM)?;
    for (id, card) in ids.iter().zip(reader.get_many(&ids).await?) {
        if card.as_ref().map(|c| (c.balance, c.version)) != Some((length, length)) {
            return Err(format!("card {id} is {card:?} after the catch-up, expected {length} deposits").into());
        }
    }
    Ok(())
}

fn round1(value: f64) -> f64 {
    (value * 10.0).round() / 10.0
}

fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_keys_follow_the_view_store_layout() {
        assert_eq!(partition_name(2), "task_cards~2of6");
        assert_eq!(card_key("x:", 3, "sc-1"), "x:{p:task_cards}:g3:v:sc-1");
        assert_eq!(SETUPS[2].names().len(), 6);
        assert_eq!(SETUPS[0].names(), vec!["task_cards".to_owned()]);
    }

    #[test]
    fn leaders_follow_the_highest_token() {
        let (tx, rx) = mpsc::channel();
        let mut leaders = Leaders::default();
        tx.send((1, "a".to_owned(), 1)).unwrap();
        tx.send((2, "a".to_owned(), 2)).unwrap();
        tx.send((1, "a".to_owned(), 1)).unwrap();
        assert!(leaders.take(&rx));
        assert_eq!(leaders.leader("a"), Some(2));
        assert!(!leaders.take(&rx), "nothing new");
    }
}

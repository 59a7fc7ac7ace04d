//! The task manager scaled out: 2 command, 2 query and 3 projector processes, the events on a
//! PostgreSQL primary whose hot standby the log is read from, the views on a Redis Cluster of
//! the test's own (3 masters with a replica each, `cluster-node-timeout` 1 s, on free loopback
//! ports). A steady load of commands goes through both command processes for the whole run,
//! each effect read back through both query processes (read-your-writes, `min_position`).
//! Mid-run the shard holding the task views fails over (`CLUSTER FAILOVER` on its replica), the
//! leading projector is SIGKILLed (and started again later), and the shard's new master is
//! SIGKILLed (its replica takes over after the node timeout). At the end every task's view,
//! read through both query processes, equals what the commands did, and `/stats` counts what
//! they made. The projection itself refuses an event that does not follow its view's version
//! (see `TaskViews::apply`): an event lost or applied twice stops the projector, and the test.
//!
//! Needs `DATABASE_URL` and `DATABASE_REPLICA_URL` (a streaming replica of it): `bash
//! scripts/test.sh` provides both (starting a throwaway primary and hot standby when they are
//! unset); and `redis-server` and `redis-cli` on the PATH. Without them the test fails; it never
//! skips.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::client::{Client, Response};
use crate::private_cluster::PrivateCluster;
use crate::scenarios::unique;
use crate::server::{Env, Server};

/// The task views' partitions, shared out among the 3 projector processes.
const PARTITIONS: u32 = 6;
/// Load workers, each driving tasks one after another.
const WORKERS: usize = 4;
/// How long a read may wait for its `min_position` before the query process answers 504.
const READ_WAIT_MS: u64 = 3_000;
/// How long a read or a command may keep failing before the test fails.
const GIVE_UP: Duration = Duration::from_secs(30);

fn env(cluster: &PrivateCluster) -> (Env, String) {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let (Some(database), Some(replica)) = (var("DATABASE_URL"), var("DATABASE_REPLICA_URL")) else {
        panic!(
            "DATABASE_URL and DATABASE_REPLICA_URL (a streaming replica of it) must be set for the scaled \
             end-to-end test: run `bash scripts/test.sh`, which starts a throwaway PostgreSQL primary and hot \
             standby (scripts/services.sh: ensure_postgres, ensure_postgres_replica)"
        );
    };
    let name = unique("tms").replace('-', "_");
    let prefix = format!("{name}:");
    let env = Env {
        set: vec![
            ("DATABASE_URL".into(), database),
            ("EVENTLOOM_READ_REPLICA_URL".into(), replica),
            ("REDIS_URL".into(), cluster.urls()),
            ("TASK_MANAGER_SCHEMA".into(), name),
            ("TASK_MANAGER_PREFIX".into(), prefix.clone()),
            ("TASK_MANAGER_VIEW_PARTITIONS".into(), PARTITIONS.to_string()),
        ],
        remove: Vec::new(),
    };
    (env, prefix)
}

/// What the commands did to one task, from their answers.
#[derive(Debug, Clone)]
struct Expected {
    title: String,
    assignee: Option<String>,
    completed: bool,
    version: u64,
    /// The position of its last command.
    position: String,
}

impl Expected {
    fn json(&self, id: &str) -> Value {
        json!({ "id": id, "title": self.title, "description": "", "assignee": self.assignee,
                "status": if self.completed { "completed" } else { "open" }, "version": self.version })
    }
}

/// The phase of the run, for the figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Steady,
    Failover,
    ProjectorKilled,
    MasterKilled,
}

/// One read of the probe (a task read without waiting, over and over).
#[derive(Debug, Clone, Copy)]
struct Probe {
    phase: Phase,
    started: Instant,
    took: Duration,
    ok: bool,
}

/// What the load and the probe share with the test.
struct Shared {
    stop: AtomicBool,
    phase: Mutex<Phase>,
    expected: Mutex<BTreeMap<String, Expected>>,
    commands: AtomicU64,
    reads: AtomicU64,
    /// Reads answered other than 200 (then retried), by phase.
    failed_reads: Mutex<BTreeMap<Phase, u64>>,
    /// The times from a command's answer to the read that showed it, by phase.
    read_your_writes: Mutex<BTreeMap<Phase, Vec<Duration>>>,
    probes: Mutex<Vec<Probe>>,
}

impl Shared {
    fn phase(&self) -> Phase {
        *self.phase.lock().unwrap()
    }

    fn set_phase(&self, phase: Phase) {
        *self.phase.lock().unwrap() = phase;
    }
}

/// The processes' addresses.
#[derive(Clone, Copy)]
struct Clients {
    commands: [Client; 2],
    queries: [Client; 2],
}

/// Sends a command with an Idempotency-Key, retrying it (same key: applied once) while the
/// command process answers 5xx or cannot be reached. The answer's (version, position).
async fn command(shared: &Shared, cmd: Client, path: &str, body: &str, created: bool) -> (Value, u64, String) {
    let key = unique("k");
    let headers = [("Idempotency-Key", key.as_str())];
    let started = Instant::now();
    loop {
        match cmd.try_send("POST", path, &headers, Some(body.as_bytes())).await {
            Ok(response) if response.status == if created { 201 } else { 200 } => {
                shared.commands.fetch_add(1, Ordering::Relaxed);
                let json = response.json();
                let version = json["version"].as_u64().unwrap_or_else(|| panic!("no version in {json}"));
                let position = json["position"].as_str().unwrap_or_else(|| panic!("no position in {json}")).to_owned();
                return (json, version, position);
            }
            Ok(response) if response.status >= 500 => {}
            Ok(response) => panic!("POST {path} to {}: {} {}", cmd.addr, response.status, response.body),
            Err(_) => {}
        }
        assert!(started.elapsed() < GIVE_UP, "POST {path} to {} kept failing for {GIVE_UP:?}", cmd.addr);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reads a task through `query` once the views include `position`, retrying what is not a 200
/// (503 while a store is down, 504 while the views are behind); asserts that it shows what the
/// commands did.
async fn read_back(shared: &Shared, query: Client, id: &str, expected: &Expected, since: Instant) {
    let path = format!("/tasks/{id}?min_position={}&timeout_ms={READ_WAIT_MS}", expected.position);
    loop {
        shared.reads.fetch_add(1, Ordering::Relaxed);
        match query.try_send("GET", &path, &[], None).await {
            Ok(response) if response.status == 200 => {
                assert_eq!(response.json(), expected.json(id), "GET {path} from {}", query.addr);
                let waited = since.elapsed();
                let phase = shared.phase();
                shared.read_your_writes.lock().unwrap().entry(phase).or_default().push(waited);
                return;
            }
            Ok(response) if matches!(response.status, 503 | 504) => {}
            Ok(response) => panic!("GET {path} from {}: {} {}", query.addr, response.status, response.body),
            Err(_) => {}
        }
        *shared.failed_reads.lock().unwrap().entry(shared.phase()).or_default() += 1;
        assert!(since.elapsed() < GIVE_UP, "GET {path} from {} kept failing for {GIVE_UP:?}", query.addr);
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// One worker: task after task, each created, assigned and (mostly) completed, some reopened and
/// assigned again, the commands spread over both command processes and every effect read back
/// through both query processes.
async fn worker(shared: Arc<Shared>, clients: Clients, w: usize) {
    let mut step = w;
    for k in 0usize.. {
        if shared.stop.load(Ordering::Relaxed) {
            return;
        }
        let title = format!("w{w} task {k}");
        // The next command process and query process: every pair in turn.
        let mut next = || {
            step += 1;
            (clients.commands[step % 2], clients.queries[(step / 2) % 2])
        };

        let (cmd, query) = next();
        let (body, version, position) =
            command(&shared, cmd, "/tasks", &json!({ "title": title }).to_string(), true).await;
        let id = body["id"].as_str().unwrap().to_owned();
        let since = Instant::now();
        let mut task = Expected { title, assignee: None, completed: false, version, position };
        assert_eq!(version, 1);
        shared.expected.lock().unwrap().insert(id.clone(), task.clone());
        read_back(&shared, query, &id, &task, since).await;

        let mut actions = vec![format!("assign u{}", k % 3)];
        if k % 3 != 2 {
            actions.push("complete".into());
        }
        if k % 4 == 0 && k % 3 != 2 {
            actions.push("reopen".into());
            actions.push("assign again".into());
        }
        for action in actions {
            let (cmd, query) = next();
            let (path, body) = match action.as_str() {
                "complete" => (format!("/tasks/{id}/complete"), String::new()),
                "reopen" => (format!("/tasks/{id}/reopen"), String::new()),
                assign => {
                    let assignee = assign.replace("assign ", "");
                    (format!("/tasks/{id}/assign"), json!({ "assignee": assignee }).to_string())
                }
            };
            let (_, version, position) = command(&shared, cmd, &path, &body, false).await;
            let since = Instant::now();
            match action.as_str() {
                "complete" => task.completed = true,
                "reopen" => task.completed = false,
                assign => task.assignee = Some(assign.replace("assign ", "")),
            }
            assert_eq!(version, task.version + 1, "{action} of {id}: one event");
            task.version = version;
            task.position = position;
            shared.expected.lock().unwrap().insert(id.clone(), task.clone());
            read_back(&shared, query, &id, &task, since).await;
        }
    }
}

/// Reads `id` through both query processes without waiting, every 20 ms, noting what failed.
async fn probe(shared: Arc<Shared>, clients: Clients, id: String) {
    let path = format!("/tasks/{id}");
    for n in 0usize.. {
        if shared.stop.load(Ordering::Relaxed) {
            return;
        }
        let query = clients.queries[n % 2];
        let started = Instant::now();
        let phase = shared.phase();
        let answer = tokio::time::timeout(GIVE_UP, query.try_send("GET", &path, &[], None)).await;
        let ok = matches!(answer, Ok(Ok(Response { status: 200, .. })));
        shared.probes.lock().unwrap().push(Probe { phase, started, took: started.elapsed(), ok });
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The probe's figures of one phase: how long reads were unavailable (from the start of the first
/// failed probe to the end of the first good one after the last failed one; zero when none
/// failed), how many failed, and the longest probe.
fn outage(probes: &[Probe], phase: Phase) -> (Duration, usize, Duration) {
    let of_phase: Vec<&Probe> = probes.iter().filter(|p| p.phase == phase).collect();
    let longest = of_phase.iter().map(|p| p.took).max().unwrap_or_default();
    let failed = of_phase.iter().filter(|p| !p.ok).count();
    let (Some(first), Some(last)) = (of_phase.iter().find(|p| !p.ok), of_phase.iter().rev().find(|p| !p.ok)) else {
        return (Duration::ZERO, 0, longest);
    };
    let back = probes
        .iter()
        .find(|p| p.ok && p.started > last.started)
        .map_or(last.started + last.took, |p| p.started + p.took);
    (back - first.started, failed, longest)
}

/// `/health` of a process.
async fn health(client: Client) -> Value {
    client.get("/health").await.ok(200)
}

fn lease(health: &Value) -> Option<&str> {
    health["projector"]["lease"].as_str()
}

/// Waits until one of `projectors` leads; its index and token.
async fn leader(projectors: &[Client], within: Duration) -> (usize, u64) {
    let started = Instant::now();
    loop {
        for (i, p) in projectors.iter().enumerate() {
            let h = health(*p).await;
            assert_eq!(h["projector"]["state"], "running", "a projector failed: {h}");
            if lease(&h) == Some("leading") {
                return (i, h["projector"]["token"].as_u64().unwrap_or_else(|| panic!("no token: {h}")));
            }
        }
        assert!(started.elapsed() < within, "no projector took the lease within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The name the task views (or partition `i` of them) are stored and leased under.
fn stored_name(i: u32) -> String {
    if PARTITIONS > 1 { format!("tasks~{i}of{PARTITIONS}") } else { "tasks".to_owned() }
}

/// The partitions a projector process leads, from its log: of each, whether its last word was
/// "lease acquired" or "lease lost".
fn held(server: &Server) -> BTreeSet<u32> {
    let mut held = BTreeSet::new();
    for line in server.log().lines() {
        for i in 0..PARTITIONS {
            if line.contains(&format!("lease acquired lease=\"{}\"", stored_name(i))) {
                held.insert(i);
            } else if line.contains("lease lost")
                && (PARTITIONS == 1 || line.contains(&format!("partition={i} partitions={PARTITIONS}}}")))
            {
                held.remove(&i);
            }
        }
    }
    held
}

/// Waits until `projectors` share every partition out, each ⌊N/P⌋ or ⌈N/P⌉, none twice (or, on
/// a whole projection, one leads); how long that took.
async fn shared_out(projectors: &[Server], within: Duration) -> Duration {
    let started = Instant::now();
    let (fewest, most) = (PARTITIONS / projectors.len() as u32, PARTITIONS.div_ceil(projectors.len() as u32));
    loop {
        let shares: Vec<BTreeSet<u32>> = projectors.iter().map(held).collect();
        let total: usize = shares.iter().map(BTreeSet::len).sum();
        let union: BTreeSet<u32> = shares.iter().flatten().copied().collect();
        let even = PARTITIONS == 1 || shares.iter().all(|s| (fewest..=most).contains(&(s.len() as u32)));
        if union.len() == PARTITIONS as usize && total == PARTITIONS as usize && even {
            return started.elapsed();
        }
        assert!(started.elapsed() < within, "the partitions were not shared out within {within:?}: {shares:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `projectors` together lead every partition.
async fn all_held(projectors: &[Server], within: Duration) {
    let started = Instant::now();
    loop {
        let union: BTreeSet<u32> = projectors.iter().flat_map(held).collect();
        if union.len() == PARTITIONS as usize {
            return;
        }
        assert!(started.elapsed() < within, "partitions {union:?} of {PARTITIONS} led after {within:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Starts the processes, each on its own task, and waits for all.
async fn start_all(roles: &[(&str, &str)], env: &Env) -> Vec<Server> {
    let handles: Vec<_> = roles
        .iter()
        .map(|&(name, role)| {
            let (name, role, env) = (name.to_owned(), role.to_owned(), env.clone());
            tokio::spawn(async move { Server::start(&name, &role, true, &env).await })
        })
        .collect();
    let mut servers = Vec::new();
    for handle in handles {
        servers.push(handle.await.expect("a process started"));
    }
    servers
}

/// Waits until `query`'s `/health` shows views caught up with the event store.
async fn caught_up(query: Client, within: Duration) {
    let started = Instant::now();
    loop {
        let h = health(query).await;
        if h["views"]["caught_up"] == true {
            return;
        }
        assert!(started.elapsed() < within, "the views never caught up: {h}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaled_out_on_a_redis_cluster_and_a_postgres_replica_through_a_failover_and_kills() {
    let test_started = Instant::now();
    let mut cluster = tokio::task::spawn_blocking(|| PrivateCluster::start(1_000, &[], &[], false)).await.unwrap();
    let (env, prefix) = env(&cluster);
    println!("scaled: the Redis Cluster is up after {:?}", test_started.elapsed());

    // One projector first (it applies the migrations), then the other six processes at once.
    let mut projectors = start_all(&[("projector-1", "projector")], &env).await;
    let rest = start_all(
        &[
            ("projector-2", "projector"),
            ("projector-3", "projector"),
            ("query-1", "query"),
            ("query-2", "query"),
            ("command-1", "command"),
            ("command-2", "command"),
        ],
        &env,
    )
    .await;
    let mut rest = rest.into_iter();
    projectors.extend(rest.by_ref().take(2));
    let (query_1, query_2, command_1, command_2) =
        (rest.next().unwrap(), rest.next().unwrap(), rest.next().unwrap(), rest.next().unwrap());
    println!("scaled: 7 processes up after {:?}", test_started.elapsed());
    let clients =
        Clients { commands: [command_1.client(), command_2.client()], queries: [query_1.client(), query_2.client()] };

    // Every process reads the log from the replica; the views are on the cluster.
    for server in projectors.iter().chain([&query_1, &query_2]) {
        let h = health(server.client()).await;
        let stores = &h["stores"];
        assert_eq!(
            (stores["events"].as_str(), stores["replica"].as_bool(), stores["views"].as_str()),
            (Some("postgres"), Some(true), Some("redis-cluster")),
            "{}: {h}",
            server.name
        );
        assert!(h["replica"]["bytes"].is_u64(), "{}: the replica's lag is shown: {h}", server.name);
    }
    for server in [&command_1, &command_2] {
        let h = health(server.client()).await;
        assert_eq!((h["stores"]["replica"].as_bool(), &h["stores"]["views"]), (Some(true), &Value::Null), "{h}");
    }
    assert_eq!(health(query_1.client()).await["views"]["partitions"], PARTITIONS, "the views' partitions");
    let projector_clients: Vec<Client> = projectors.iter().map(Server::client).collect();
    let (first_leader, _) = leader(&projector_clients, Duration::from_secs(30)).await;
    let spread = shared_out(&projectors, Duration::from_secs(10)).await;
    let shares: Vec<BTreeSet<u32>> = projectors.iter().map(held).collect();
    println!("scaled: {PARTITIONS} partitions shared out as {shares:?} {:?} after the processes were up", spread);

    let shared = Arc::new(Shared {
        stop: AtomicBool::new(false),
        phase: Mutex::new(Phase::Steady),
        expected: Mutex::new(BTreeMap::new()),
        commands: AtomicU64::new(0),
        reads: AtomicU64::new(0),
        failed_reads: Mutex::new(BTreeMap::new()),
        read_your_writes: Mutex::new(BTreeMap::new()),
        probes: Mutex::new(Vec::new()),
    });
    // The probe's task, read back once before it starts.
    let (body, _, position) =
        command(&shared, clients.commands[0], "/tasks", &json!({ "title": "probe" }).to_string(), true).await;
    let probe_id = body["id"].as_str().unwrap().to_owned();
    let probe_task =
        Expected { title: "probe".into(), assignee: None, completed: false, version: 1, position: position.clone() };
    read_back(&shared, clients.queries[1], &probe_id, &probe_task, Instant::now()).await;
    shared.expected.lock().unwrap().insert(probe_id.clone(), probe_task);

    let mut load: Vec<_> = (0..WORKERS).map(|w| tokio::spawn(worker(shared.clone(), clients, w))).collect();
    load.push(tokio::spawn(probe(shared.clone(), clients, probe_id)));
    tokio::time::sleep(Duration::from_secs(3)).await;

    // (a) The shard holding the task views (of a partitioned projection: the most partitions)
    // fails over: CLUSTER FAILOVER on its replica.
    let mut slots = Vec::new();
    for i in 0..PARTITIONS {
        let tag = stored_name(i).replace('~', "%7E");
        let slot = cluster.slot(&format!("{prefix}{{p:{tag}}}:live")).await;
        slots.push((slot, cluster.master_of(slot).await));
    }
    let mut on_masters: BTreeMap<u16, Vec<u16>> = BTreeMap::new();
    for (slot, master) in &slots {
        on_masters.entry(master.port).or_default().push(*slot);
    }
    let (_, (slot, master)) = slots
        .iter()
        .enumerate()
        .max_by_key(|(i, (_, m))| (on_masters[&m.port].len(), usize::MAX - i))
        .map(|(i, pair)| (i, pair.clone()))
        .unwrap();
    let on_master = on_masters[&master.port].len();
    let mut connection = PrivateCluster::node(master.port).await;
    let keys: u64 = redis::cmd("CLUSTER").arg("COUNTKEYSINSLOT").arg(slot).query_async(&mut connection).await.unwrap();
    assert!(keys > 3, "the shard on {} holds the views' slot {slot} ({keys} keys)", master.port);
    let replica = cluster.replica_of(&master.id).await;
    shared.set_phase(Phase::Failover);
    let failover = Instant::now();
    PrivateCluster::cluster_command(replica.port, &["FAILOVER"]).await;
    cluster.wait_until_master(replica.port, Duration::from_secs(30)).await;
    let settled = failover.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;

    // (b) A leading projector is SIGKILLed: the others take its partitions over from their
    // checkpoints, and share them out evenly.
    shared.set_phase(Phase::ProjectorKilled);
    let killed = projectors.remove(first_leader);
    let (killed_name, killed_held) = (killed.name.clone(), held(&killed));
    assert!(!killed_held.is_empty(), "{killed_name} leads");
    let kill = Instant::now();
    killed.kill().await;
    all_held(&projectors, Duration::from_secs(30)).await;
    let takeover = kill.elapsed();
    shared_out(&projectors, Duration::from_secs(10)).await;
    let rebalanced = kill.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Started again, it stands by (a whole projection) or takes its share back.
    let again = start_all(&[("projector-1-again", "projector")], &env).await.remove(0);
    projectors.push(again);
    let rejoined = shared_out(&projectors, Duration::from_secs(10)).await;
    if PARTITIONS == 1 {
        assert_eq!(lease(&health(projectors[2].client()).await), Some("standby"));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;

    // (c) The shard's new master is SIGKILLed: its replica (the old master) takes over after the
    // node timeout, without the writes it had not received yet.
    shared.set_phase(Phase::MasterKilled);
    let master_kill = Instant::now();
    cluster.kill(replica.port);
    cluster.wait_until_master(master.port, Duration::from_secs(30)).await;
    let promoted = master_kill.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;

    // The load stops; a last task marks the end.
    shared.stop.store(true, Ordering::Relaxed);
    for handle in load {
        handle.await.expect("a load task ended well");
    }
    let (body, _, last) =
        command(&shared, clients.commands[1], "/tasks", &json!({ "title": "last" }).to_string(), true).await;
    let last_task =
        Expected { title: "last".into(), assignee: None, completed: false, version: 1, position: last.clone() };
    shared.expected.lock().unwrap().insert(body["id"].as_str().unwrap().to_owned(), last_task);
    for query in clients.queries {
        let seen = query.get(&format!("/stats?min_position={last}&timeout_ms=30000")).await;
        assert_eq!(seen.status, 200, "{}", seen.body);
        caught_up(query, Duration::from_secs(30)).await;
    }

    // Every task as the commands left it, through both query processes: none lost, none doubled.
    let expected = shared.expected.lock().unwrap().clone();
    for (id, task) in &expected {
        for query in clients.queries {
            let path = format!("/tasks/{id}?min_position={}", task.position);
            assert_eq!(query.get(&path).await.ok(200), task.json(id), "GET {path} from {}", query.addr);
        }
    }
    let completed = expected.values().filter(|t| t.completed).count() as u64;
    let total = expected.len() as u64;
    for query in clients.queries {
        let stats = query.get(&format!("/stats?min_position={last}")).await.ok(200);
        assert_eq!(
            (stats["open"].as_u64(), stats["completed"].as_u64(), stats["total"].as_u64()),
            (Some(total - completed), Some(completed), Some(total)),
            "{stats}"
        );
    }
    // The lists hold each task once, in its status's list.
    for (status, done) in [("open", false), ("completed", true)] {
        let body =
            clients.queries[0].get(&format!("/tasks?status={status}&limit=1000&min_position={last}")).await.ok(200);
        let mut listed: Vec<&str> =
            body["tasks"].as_array().unwrap().iter().map(|t| t["id"].as_str().unwrap()).collect();
        listed.sort_unstable();
        let wanted: Vec<&str> =
            expected.iter().filter(|(_, t)| t.completed == done).map(|(id, _)| id.as_str()).collect();
        assert_eq!(listed, wanted, "the {status} list");
    }
    let events: u64 = expected.values().map(|t| t.version).sum();
    assert_eq!(events, shared.commands.load(Ordering::Relaxed), "one event per command");
    // No projector failed (an event lost or applied twice stops one).
    for p in &projectors {
        let h = health(p.client()).await;
        assert_eq!(h["projector"]["state"], "running", "{}: {h}", p.name);
    }

    let probes = shared.probes.lock().unwrap().clone();
    let failed_reads = shared.failed_reads.lock().unwrap().clone();
    let mut waits = shared.read_your_writes.lock().unwrap().clone();
    println!(
        "scaled: {total} tasks, {events} commands, {} reads through 2 query processes; views on slot {slot}",
        shared.reads.load(Ordering::Relaxed)
    );
    for phase in [Phase::Steady, Phase::Failover, Phase::ProjectorKilled, Phase::MasterKilled] {
        let (unavailable, failed, longest) = outage(&probes, phase);
        let waited = waits.entry(phase).or_default();
        waited.sort_unstable();
        let at = |q: f64| waited.get(((waited.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or_default();
        println!(
            "scaled: {phase:?}: queries unavailable {unavailable:?} ({failed} failed probes, longest probe \
             {longest:?}); {} reads retried; read-your-writes of {} commands: median {:?}, max {:?}",
            failed_reads.get(&phase).copied().unwrap_or(0),
            waited.len(),
            at(0.5),
            at(1.0),
        );
    }
    println!(
        "scaled: the failed-over master held {on_master} of {PARTITIONS} partitions' slots; CLUSTER FAILOVER settled \
         in {settled:?}; the killed master's replica took over in {promoted:?}"
    );
    println!(
        "scaled: {killed_name} (partitions {killed_held:?}) SIGKILLed: all partitions led again after {takeover:?}, \
         shared out evenly after {rebalanced:?}; started again, it had its share {rejoined:?} after it was up"
    );

    for server in projectors.into_iter().chain([query_1, query_2, command_1, command_2]) {
        let name = server.name.clone();
        let status = server.stop(Duration::from_secs(30)).await;
        assert!(status.success(), "{name} exit status {status}");
    }
    drop(cluster);
    println!("scaled: the test took {:?}", test_started.elapsed());
}

//! A Redis Cluster of a test's own (3 masters with a replica each, on free loopback ports), with
//! a low `cluster-node-timeout`, whose nodes the test fails over, kills and migrates slots
//! between. Only the processes it started are ever signalled, by their pids.
//!
//! Self-contained (std, tokio and the `redis` crate only): the end-to-end tests of
//! examples/task-manager include this file too (`#[path]`), for their cluster of their own.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use redis::Value;

/// A free loopback port (free when asked).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A free loopback port at most 55535 whose cluster bus port (10000 above) is free too.
fn free_cluster_port(taken: &[u16]) -> u16 {
    loop {
        let port = free_port();
        if port > 55_535 || taken.iter().any(|&t| t == port || t + 10_000 == port || port + 10_000 == t) {
            continue;
        }
        if std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

pub struct PrivateCluster {
    dir: PathBuf,
    nodes: Vec<(u16, Option<Child>)>,
}

/// One node as `CLUSTER NODES` lists it.
#[derive(Debug, Clone)]
pub struct Node {
    pub id: String,
    pub port: u16,
    pub master: bool,
    /// The id of its master, for a replica.
    pub of: Option<String>,
    pub slots: Vec<(u16, u16)>,
}

impl PrivateCluster {
    /// Six nodes with `cluster-node-timeout` `node_timeout_ms` and `args` added, joined by
    /// `redis-cli --cluster create` with one replica per master. `cli` are the arguments
    /// redis-cli needs to reach them (credentials, TLS); with `tls` the nodes listen on TLS
    /// ports only (`args` name the certificates).
    pub fn start(node_timeout_ms: u32, args: &[&str], cli: &[&str], tls: bool) -> Self {
        let dir = std::env::temp_dir().join(format!("cqrs-private-cluster-{}-{}", std::process::id(), free_port()));
        std::fs::create_dir_all(&dir).unwrap();
        // Another test may take a port between its choice and the server's bind (its cluster
        // bus port, 10000 above, too): a node that exits at once makes a new choice of ports.
        let mut cluster = PrivateCluster { dir, nodes: Vec::new() };
        let mut ports = Vec::new();
        for attempt in 1.. {
            ports = Vec::new();
            while ports.len() < 6 {
                let port = free_cluster_port(&ports);
                ports.push(port);
            }
            for &port in &ports {
                let child = cluster.spawn(port, node_timeout_ms, args, tls);
                cluster.nodes.push((port, Some(child)));
            }
            // The nodes may also fail to meet (a bus port of a cluster that ended, still known to
            // another cluster's nodes): redis-cli then waits for the join forever, so it gets 30 s.
            if cluster.all_listening() && create(cli, &ports) {
                break;
            }
            assert!(attempt < 5, "could not start and join 6 cluster nodes on free ports");
            for (_, child) in &mut cluster.nodes {
                if let Some(mut child) = child.take() {
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
            cluster.nodes.clear();
        }
        // A replica that has not finished its first sync cannot take over: wait for all.
        let deadline = Instant::now() + Duration::from_secs(20);
        for &port in &ports {
            loop {
                let output = Command::new("redis-cli")
                    .args(cli)
                    .args(["-p", &port.to_string(), "info", "replication"])
                    .output()
                    .unwrap();
                let text = String::from_utf8_lossy(&output.stdout);
                if text.contains("role:master") || text.contains("master_link_status:up") {
                    break;
                }
                assert!(Instant::now() < deadline, "the replica on {port} did not sync: {text}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        // Gossip spreads the roles after `--cluster create` returns: until every node sees 3
        // masters with slots and a replica of each, one may answer CLUSTER NODES without them.
        for &port in &ports {
            loop {
                let run = |args: &[&str]| {
                    let output =
                        Command::new("redis-cli").args(cli).args(["-p", &port.to_string()]).args(args).output();
                    String::from_utf8_lossy(&output.unwrap().stdout).into_owned()
                };
                let (info, nodes) = (run(&["cluster", "info"]), parse_nodes(&run(&["cluster", "nodes"])));
                let masters: Vec<&Node> = nodes.iter().filter(|n| n.master && !n.slots.is_empty()).collect();
                let replicated = masters.iter().all(|m| nodes.iter().any(|n| n.of.as_deref() == Some(&m.id)));
                if info.contains("cluster_state:ok") && masters.len() == 3 && replicated {
                    break;
                }
                assert!(Instant::now() < deadline, "node {port} does not see 3 replicated masters: {nodes:?}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        cluster
    }

    /// Starts one node on `port`, in a folder of its own.
    fn spawn(&self, port: u16, node_timeout_ms: u32, args: &[&str], tls: bool) -> Child {
        let node_dir = self.dir.join(port.to_string());
        std::fs::create_dir_all(&node_dir).unwrap();
        let mut command = Command::new("redis-server");
        if tls {
            command.args(["--port", "0", "--tls-port", &port.to_string(), "--tls-cluster", "yes"]);
            command.args(["--tls-replication", "yes"]);
        } else {
            command.args(["--port", &port.to_string()]);
        }
        command
            .args(["--bind", "127.0.0.1", "--cluster-enabled", "yes"])
            .args(["--cluster-node-timeout", &node_timeout_ms.to_string()])
            .args(["--save", "", "--appendonly", "no", "--shutdown-timeout", "0", "--repl-diskless-sync-delay", "0"])
            .args(args)
            .arg("--dir")
            .arg(&node_dir)
            .current_dir(&node_dir)
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start redis-server ({e}): install Debian's redis-server"))
    }

    /// Whether every node listens (and none exited: a port another test took).
    fn all_listening(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        for (port, child) in &mut self.nodes {
            let child = child.as_mut().unwrap();
            loop {
                if child.try_wait().unwrap().is_some() {
                    return false;
                }
                if std::net::TcpStream::connect(("127.0.0.1", *port)).is_ok() {
                    break;
                }
                assert!(Instant::now() < deadline, "redis-server on {port} did not start");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        // A node whose cluster bus port was taken exits just after it listens.
        std::thread::sleep(Duration::from_millis(100));
        self.nodes.iter_mut().all(|(_, child)| child.as_mut().unwrap().try_wait().unwrap().is_none())
    }

    pub fn urls_with(&self, userinfo: &str) -> String {
        self.nodes.iter().map(|(port, _)| format!("redis://{userinfo}127.0.0.1:{port}/")).collect::<Vec<_>>().join(",")
    }

    pub fn urls(&self) -> String {
        self.urls_with("")
    }

    pub fn url(port: u16) -> String {
        format!("redis://127.0.0.1:{port}/")
    }

    /// The ports of the nodes still running.
    pub fn running(&self) -> Vec<u16> {
        self.nodes.iter().filter(|(_, child)| child.is_some()).map(|(port, _)| *port).collect()
    }

    /// A plain connection to one node (not following redirections), with timeouts long enough
    /// for a loaded machine (the crate's defaults, 1 s to connect and 500 ms per answer, ran out
    /// while a node was failing over).
    pub async fn node(port: u16) -> redis::aio::MultiplexedConnection {
        let patient = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(10)))
            .set_response_timeout(Some(Duration::from_secs(10)));
        let client = redis::Client::open(Self::url(port)).unwrap();
        client
            .get_multiplexed_async_connection_with_config(&patient)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to the cluster node on {port}: {e}"))
    }

    /// The nodes as the node on `port` sees them.
    pub async fn nodes_seen_by(port: u16) -> Vec<Node> {
        let mut connection = Self::node(port).await;
        let text: String = redis::cmd("CLUSTER").arg("NODES").query_async(&mut connection).await.unwrap();
        parse_nodes(&text)
    }

    /// The slot of `key`.
    pub async fn slot(&self, key: &str) -> u16 {
        let mut connection = Self::node(self.running()[0]).await;
        redis::cmd("CLUSTER").arg("KEYSLOT").arg(key).query_async(&mut connection).await.unwrap()
    }

    /// The master that serves `slot`, as a running node sees it.
    pub async fn master_of(&self, slot: u16) -> Node {
        let nodes = Self::nodes_seen_by(self.running()[0]).await;
        nodes
            .into_iter()
            .find(|n| n.master && n.slots.iter().any(|&(a, b)| a <= slot && slot <= b))
            .unwrap_or_else(|| panic!("no master serves slot {slot}"))
    }

    /// A replica of the master `id`.
    pub async fn replica_of(&self, id: &str) -> Node {
        let nodes = Self::nodes_seen_by(self.running()[0]).await;
        nodes.into_iter().find(|n| n.of.as_deref() == Some(id)).unwrap_or_else(|| panic!("no replica of {id}"))
    }

    /// SIGKILLs the node on `port` (the child this cluster started).
    pub fn kill(&mut self, port: u16) {
        let (_, child) = self.nodes.iter_mut().find(|(p, _)| *p == port).unwrap();
        if let Some(mut child) = child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// Waits until every running node says `cluster_state:ok` and sees `port` as a master.
    pub async fn wait_until_master(&self, port: u16, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let mut settled = true;
            for node in self.running() {
                let mut connection = Self::node(node).await;
                let info: String = redis::cmd("CLUSTER").arg("INFO").query_async(&mut connection).await.unwrap();
                let masters = Self::nodes_seen_by(node).await;
                let promoted = masters.iter().any(|n| n.port == port && n.master && !n.slots.is_empty());
                settled &= info.contains("cluster_state:ok") && promoted;
            }
            if settled {
                return;
            }
            assert!(Instant::now() < deadline, "node {port} did not become a master within {within:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until every running node says `cluster_state:ok`.
    pub async fn wait_ok(&self, within: Duration) {
        let deadline = Instant::now() + within;
        'retry: loop {
            assert!(Instant::now() < deadline, "the cluster is not ok within {within:?}");
            for node in self.running() {
                let mut connection = Self::node(node).await;
                let info: String = redis::cmd("CLUSTER").arg("INFO").query_async(&mut connection).await.unwrap();
                if !info.contains("cluster_state:ok") {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue 'retry;
                }
            }
            return;
        }
    }

    /// Runs `CLUSTER <args>` on the node on `port`.
    pub async fn cluster_command(port: u16, args: &[&str]) -> Value {
        let mut connection = Self::node(port).await;
        let mut command = redis::cmd("CLUSTER");
        for arg in args {
            command.arg(*arg);
        }
        command.query_async(&mut connection).await.unwrap_or_else(|e| panic!("CLUSTER {args:?} on {port}: {e}"))
    }
}

/// Joins the nodes on `ports` with `redis-cli --cluster create`, one replica per master; whether
/// they joined within 30 s (a failure to create is the test's failure).
fn create(cli: &[&str], ports: &[u16]) -> bool {
    let mut create = Command::new("redis-cli");
    create.args(cli).arg("--cluster").arg("create");
    for port in ports {
        create.arg(format!("127.0.0.1:{port}"));
    }
    let mut child = create
        .args(["--cluster-replicas", "1", "--cluster-yes"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run redis-cli ({e}): install Debian's redis-tools"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            eprintln!("redis-cli --cluster create on {ports:?}: the nodes did not join within 30 s; new ports");
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "redis-cli --cluster create: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    true
}

/// The nodes a `CLUSTER NODES` answer lists.
fn parse_nodes(text: &str) -> Vec<Node> {
    text.lines()
        .filter(|line| !line.is_empty())
        .map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let port = fields[1].split(['@', ':']).nth(1).unwrap().parse().unwrap();
            let slots = fields[8..]
                .iter()
                .filter(|range| !range.starts_with('['))
                .map(|range| match range.split_once('-') {
                    Some((a, b)) => (a.parse().unwrap(), b.parse().unwrap()),
                    None => (range.parse().unwrap(), range.parse().unwrap()),
                })
                .collect();
            Node {
                id: fields[0].to_owned(),
                port,
                master: fields[2].contains("master") && !fields[2].contains("fail"),
                of: (fields[3] != "-").then(|| fields[3].to_owned()),
                slots,
            }
        })
        .collect()
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        for (_, child) in &mut self.nodes {
            if let Some(mut child) = child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

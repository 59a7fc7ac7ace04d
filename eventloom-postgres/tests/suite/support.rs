//! Test servers and fresh stores.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use eventloom_postgres::{PgConfig, PgEventStore};

/// The shared server's URL; a clear failure when there is none.
pub fn database_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| {
        panic!(
            "DATABASE_URL is not set. Run the suite with `bash scripts/test.sh`, which starts a throwaway \
             PostgreSQL, or set DATABASE_URL to a server where this user may create schemas."
        )
    })
}

/// The shared server's streaming replica; a clear failure when there is none.
pub fn database_replica_url() -> String {
    std::env::var("DATABASE_REPLICA_URL").unwrap_or_else(|_| {
        panic!(
            "DATABASE_REPLICA_URL is not set. Run the suite with `bash scripts/test.sh`, which starts a hot \
             standby of its throwaway PostgreSQL; with a DATABASE_URL of your own, set DATABASE_REPLICA_URL to a \
             streaming replica (hot standby) of that server."
        )
    })
}

static SCHEMAS: AtomicU32 = AtomicU32::new(0);

/// A schema name no other test uses.
pub fn fresh_schema() -> String {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("t{}_{}_{}", std::process::id(), nanos % 100_000, SCHEMAS.fetch_add(1, Ordering::Relaxed))
}

/// A migrated store in a fresh schema on the server at `url`.
pub async fn store_at(url: &str) -> PgEventStore {
    store_at_with(url, false).await
}

/// [`store_at`], with write combining when `combining` (one statement in flight at a time, so
/// that racing appends share statements as often as they can).
pub async fn store_at_with(url: &str, combining: bool) -> PgEventStore {
    let mut config = PgConfig::from_url(url).unwrap().schema(fresh_schema()).unwrap().pool_size(20);
    if combining {
        config = config.write_combining_in_flight(1);
    }
    let store = PgEventStore::connect(config).await.unwrap_or_else(|e| panic!("cannot connect to PostgreSQL: {e}"));
    store.migrate().await.unwrap();
    store
}

/// A migrated store in a fresh schema on the shared server.
pub async fn store() -> PgEventStore {
    store_at(&database_url()).await
}

/// [`store`], with write combining when `combining` (see [`store_at_with`]).
pub async fn store_with(combining: bool) -> PgEventStore {
    store_at_with(&database_url(), combining).await
}

/// A raw connection for what the store must not be able to do (hold transactions, corrupt rows).
pub async fn raw(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

fn pg_bin() -> PathBuf {
    if let Ok(dir) = std::env::var("CQRS_PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| entries.filter_map(|e| e.ok()).map(|e| e.path().join("bin")).filter(|p| p.exists()).collect())
        .unwrap_or_default();
    dirs.sort();
    dirs.pop().unwrap_or_else(|| {
        panic!("no PostgreSQL binaries: install Debian's postgresql (scripts/test.sh does) or set CQRS_PG_BIN")
    })
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0")).unwrap_or(false)
}

fn run_as_postgres(program: &Path, args: &[&str]) -> std::process::Output {
    let mut command = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    };
    command.args(args).output().unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()))
}

/// A PostgreSQL server of a test's own, for what would disturb other tests: holding write
/// transactions open (which holds back every subscriber of the cluster), killing connections,
/// restarting. Stopped and deleted on drop.
pub struct PrivateServer {
    dir: PathBuf,
    bin: PathBuf,
    pub port: u16,
    extra: std::sync::Mutex<String>,
}

impl PrivateServer {
    pub fn start() -> Self {
        let server = Self::init();
        server.pg_ctl_start();
        server
    }

    /// A new cluster, not started yet: for tests that configure it first.
    pub fn init() -> Self {
        let bin = pg_bin();
        let dir = std::env::temp_dir().join(format!("cqrs-private-pg-{}", fresh_schema()));
        std::fs::create_dir_all(&dir).unwrap();
        if is_root() {
            let ok = Command::new("chown").args(["-R", "postgres:"]).arg(&dir).status().unwrap();
            assert!(ok.success(), "chown of the private server's folder failed");
        }
        let data = dir.join("data");
        let out = run_as_postgres(
            &bin.join("initdb"),
            &["-D", data.to_str().unwrap(), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"],
        );
        assert!(out.status.success(), "initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        PrivateServer { dir, bin, port, extra: std::sync::Mutex::new(String::new()) }
    }

    /// The cluster's data folder.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Writes a file into the data folder, owned by the server's user, readable by it alone.
    pub fn write_private_file(&self, name: &str, contents: &[u8]) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = self.data_dir().join(name);
        std::fs::write(&path, contents).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        if is_root() {
            assert!(Command::new("chown").arg("postgres:").arg(&path).status().unwrap().success());
        }
        path
    }

    /// Adds server options (`-c name=value ...`) for the next start.
    pub fn with_options(self, options: &str) -> Self {
        self.extra.lock().unwrap().push_str(&format!(" {options}"));
        self
    }

    pub fn start_now(self) -> Self {
        self.pg_ctl_start();
        self
    }

    fn pg_ctl_start(&self) {
        let data = self.dir.join("data");
        let log = self.dir.join("server.log");
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100 -c max_prepared_transactions=10{}",
            self.port,
            self.dir.display(),
            self.extra.lock().unwrap()
        );
        let out = run_as_postgres(
            &self.bin.join("pg_ctl"),
            &["-D", data.to_str().unwrap(), "-l", log.to_str().unwrap(), "-w", "-t", "60", "-o", &options, "start"],
        );
        assert!(
            out.status.success(),
            "pg_ctl start failed: {} {}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// Stops the server (fast shutdown: connections are closed) and starts it again on the
    /// same port.
    pub fn restart(&self) {
        let data = self.dir.join("data");
        let out =
            run_as_postgres(&self.bin.join("pg_ctl"), &["-D", data.to_str().unwrap(), "-m", "fast", "-w", "stop"]);
        assert!(out.status.success(), "pg_ctl stop failed: {}", String::from_utf8_lossy(&out.stderr));
        self.pg_ctl_start();
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// A hot standby of this (started) server, on a port of its own: `pg_basebackup -R` of it,
    /// started with the same settings (a standby refuses lower connection limits than its
    /// primary's). Stopped and deleted on drop, like its primary.
    pub fn standby(&self) -> PrivateServer {
        let dir = std::env::temp_dir().join(format!("cqrs-private-standby-{}", fresh_schema()));
        std::fs::create_dir_all(&dir).unwrap();
        if is_root() {
            let ok = Command::new("chown").args(["-R", "postgres:"]).arg(&dir).status().unwrap();
            assert!(ok.success(), "chown of the standby's folder failed");
        }
        let data = dir.join("data");
        let out = run_as_postgres(
            &self.bin.join("pg_basebackup"),
            &["-d", &self.url(), "-D", data.to_str().unwrap(), "-R", "-X", "stream", "-c", "fast", "--no-sync"],
        );
        assert!(out.status.success(), "pg_basebackup failed: {}", String::from_utf8_lossy(&out.stderr));
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let extra = format!("{} -c hot_standby=on", self.extra.lock().unwrap());
        let standby = PrivateServer { dir, bin: self.bin.clone(), port, extra: std::sync::Mutex::new(extra) };
        standby.pg_ctl_start();
        standby
    }

    pub fn url_for(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        let _ = run_as_postgres(
            &self.bin.join("pg_ctl"),
            &["-D", data.to_str().unwrap_or(""), "-m", "immediate", "-w", "stop"],
        );
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A TCP proxy to `127.0.0.1:target` that can stop forwarding: once frozen it keeps every
/// connection open (its kernel still acknowledges both sides) but passes nothing on, as a hung
/// middlebox would. Stops with the test's runtime.
pub struct FreezingProxy {
    pub port: u16,
    frozen: tokio::sync::watch::Sender<bool>,
}

impl FreezingProxy {
    pub async fn start(target: u16) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (frozen, _) = tokio::sync::watch::channel(false);
        let watch = frozen.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await else { continue };
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::spawn(forward(client_read, server_write, watch.subscribe()));
                tokio::spawn(forward(server_read, client_write, watch.subscribe()));
            }
        });
        FreezingProxy { port, frozen }
    }

    /// Stops forwarding, for good.
    pub fn freeze(&self) {
        self.frozen.send_replace(true);
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

async fn forward(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    frozen: tokio::sync::watch::Receiver<bool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if *frozen.borrow() {
            // Hold both sockets open and pass nothing on.
            std::future::pending::<()>().await;
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
}

/// Drops every packet of one TCP connection on the loopback interface (an iptables DROP rule
/// in INPUT for each direction, matching both ports), as a network that stopped delivering
/// would: neither kernel sees an acknowledgement again. The rules go when this is dropped.
/// Needs root and iptables (scripts/services.sh installs it).
pub struct Blackhole {
    rules: Vec<Vec<String>>,
}

impl Blackhole {
    pub fn cut(client_port: u16, server_port: u16) -> Self {
        let rule = |from: u16, to: u16| -> Vec<String> {
            [
                "-p",
                "tcp",
                "-s",
                "127.0.0.1",
                "-d",
                "127.0.0.1",
                "--sport",
                &from.to_string(),
                "--dport",
                &to.to_string(),
            ]
            .into_iter()
            .map(str::to_owned)
            .chain(["-j".to_owned(), "DROP".to_owned()])
            .collect()
        };
        let mut cut = Blackhole { rules: Vec::new() };
        for spec in [rule(client_port, server_port), rule(server_port, client_port)] {
            let out = Command::new("iptables").args(["-w", "-I", "INPUT"]).args(&spec).output().unwrap_or_else(|e| {
                panic!("this test drops packets with iptables, which cannot run ({e}): run it as root with iptables installed (scripts/services.sh installs it)")
            });
            assert!(
                out.status.success(),
                "iptables refused the DROP rule (this test needs root): {}",
                String::from_utf8_lossy(&out.stderr)
            );
            cut.rules.push(spec);
        }
        cut
    }
}

impl Drop for Blackhole {
    fn drop(&mut self) {
        for spec in &self.rules {
            let _ = Command::new("iptables").args(["-w", "-D", "INPUT"]).args(spec).status();
        }
    }
}

/// Whether this machine has a TCP socket from local port `local` to remote port `remote` on
/// the loopback address (in any state), from /proc/net/tcp.
pub fn tcp_socket_exists(local: u16, remote: u16) -> bool {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let (local, remote) = (format!("0100007F:{local:04X}"), format!("0100007F:{remote:04X}"));
    table.lines().skip(1).any(|line| {
        let mut fields = line.split_whitespace().skip(1);
        fields.next() == Some(local.as_str()) && fields.next() == Some(remote.as_str())
    })
}

/// A raw session LISTENing on `channel`, and the payloads it receives.
pub async fn raw_listener(
    url: &str,
    channel: &str,
) -> (tokio_postgres::Client, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let (client, mut connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            if let Ok(tokio_postgres::AsyncMessage::Notification(n)) = message {
                let _ = tx.send(n.payload().to_owned());
            }
        }
    });
    client.batch_execute(&format!("LISTEN \"{channel}\"")).await.unwrap();
    (client, rx)
}

/// Calls of the statements whose text starts with `start` (`pg_stat_statements`).
pub async fn statement_calls(admin: &tokio_postgres::Client, start: &str) -> i64 {
    let pattern = format!("{start}%");
    admin
        .query_one("SELECT coalesce(sum(calls), 0)::int8 FROM pg_stat_statements WHERE query LIKE $1", &[&pattern])
        .await
        .unwrap()
        .get(0)
}

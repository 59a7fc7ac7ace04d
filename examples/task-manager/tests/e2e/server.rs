//! Starting the built `task-manager` binary as a child process, waiting until it answers
//! `/health`, and stopping it (only the processes these tests started, by their id).

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use crate::client::Client;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_task-manager");
/// How long a process may take to answer `/health` (it may apply migrations first).
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A free loopback port (free when asked; the server retries another if it is taken meanwhile).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

/// A log file for one child process.
fn log_path(name: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    std::env::temp_dir().join(format!("task-manager-e2e-{}-{name}-{nanos}.log", std::process::id()))
}

/// The environment of a process: `set` on top of the test's, without `remove`.
#[derive(Debug, Clone, Default)]
pub struct Env {
    pub set: Vec<(String, String)>,
    pub remove: Vec<String>,
}

impl Env {
    /// Memory stores: no DATABASE_URL nor REDIS_URL, whatever the test's environment holds.
    pub fn memory() -> Self {
        Env { set: Vec::new(), remove: vec!["DATABASE_URL".into(), "REDIS_URL".into()] }
    }

    pub fn apply(&self, command: &mut Command) {
        for name in &self.remove {
            command.env_remove(name);
        }
        for (name, value) in &self.set {
            command.env(name, value);
        }
        command.env("RUST_LOG", "info,task_manager=debug");
    }
}

/// A running `task-manager` (killed when dropped).
pub struct Server {
    pub name: String,
    pub addr: Option<SocketAddr>,
    child: Child,
    log: PathBuf,
}

/// Runs the binary with `args` to completion (for command-line checks).
pub async fn run_to_end(args: &[&str], env: &Env) -> (ExitStatus, String, String) {
    let mut command = Command::new(BIN);
    command.args(args).stdin(Stdio::null()).kill_on_drop(true);
    env.apply(&mut command);
    let output = tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .expect("the process ended in time")
        .expect("the process ran");
    (
        output.status,
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

impl Server {
    /// Starts `--role role` on a free port (when `serve`) and waits until `/health` answers.
    pub async fn start(name: &str, role: &str, serve: bool, env: &Env) -> Server {
        for _ in 0..5 {
            let addr: Option<SocketAddr> = serve.then(|| SocketAddr::from(([127, 0, 0, 1], free_port())));
            let log = log_path(name);
            let file = std::fs::File::create(&log).expect("create a log file");
            let mut command = Command::new(BIN);
            command.arg("--role").arg(role);
            if let Some(addr) = addr {
                command.arg("--addr").arg(addr.to_string());
            }
            env.apply(&mut command);
            command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::from(file)).kill_on_drop(true);
            let child = command.spawn().expect("start task-manager");
            let mut server = Server { name: name.to_owned(), addr, child, log };
            match server.wait_ready().await {
                Ok(()) => return server,
                Err(log) if log.contains("cannot listen") => continue,
                Err(log) => panic!("{name} ({role}) did not start:\n{log}"),
            }
        }
        panic!("{name} ({role}) found no free port");
    }

    /// Waits until `/health` answers 200 (or, without an address, a moment), or the process
    /// ends; the error is the process's log.
    async fn wait_ready(&mut self) -> Result<(), String> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("poll the child") {
                return Err(format!("exited with {status}\n{}", self.log()));
            }
            match self.addr {
                None if started.elapsed() > Duration::from_millis(500) => return Ok(()),
                None => {}
                Some(addr) => {
                    if let Ok(response) = Client::new(addr).try_send("GET", "/health", &[], None).await {
                        if response.status == 200 {
                            return Ok(());
                        }
                    }
                }
            }
            if started.elapsed() > READY_TIMEOUT {
                return Err(format!("no answer on /health within {READY_TIMEOUT:?}\n{}", self.log()));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A client of its HTTP address.
    pub fn client(&self) -> Client {
        Client::new(self.addr.expect("this process serves HTTP"))
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("the process is running")
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM (with the system's `kill`, to this process only).
    pub async fn sigterm(&self) {
        let status = Command::new("kill").arg("-TERM").arg(self.pid().to_string()).status().await.expect("run kill");
        assert!(status.success(), "kill -TERM {} failed", self.pid());
    }

    /// SIGTERM, then waits for the exit (at most `within`).
    pub async fn stop(mut self, within: Duration) -> ExitStatus {
        self.sigterm().await;
        match tokio::time::timeout(within, self.child.wait()).await {
            Ok(status) => status.expect("wait for the process"),
            Err(_) => panic!("{} did not stop within {within:?} of SIGTERM:\n{}", self.name, self.log()),
        }
    }

    /// SIGKILL: no chance to clean up.
    #[cfg_attr(not(all(feature = "postgres", feature = "redis")), allow(dead_code))]
    pub async fn kill(mut self) {
        self.child.kill().await.expect("kill the process");
    }
}

impl Drop for Server {
    /// Keeps the log of a failed test (and says where it is); removes it otherwise.
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("log of {}: {}", self.name, self.log.display());
        } else {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

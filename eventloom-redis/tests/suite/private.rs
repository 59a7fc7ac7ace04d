//! Redis servers of a test's own: stopped, restarted, with TLS or ACL users.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `redis-server` on a free loopback port, started by a test and killed (and its directory
/// deleted) on drop. Only the process it started is ever signalled, by its pid.
pub struct PrivateRedis {
    dir: PathBuf,
    port: u16,
    args: Vec<String>,
    tls: bool,
    child: Option<Child>,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl PrivateRedis {
    /// Persisting to an append-only file, so that a restart keeps the data.
    pub fn persistent() -> Self {
        Self::start(&["--appendonly", "yes", "--appendfsync", "always"], false)
    }

    /// Without persistence: a restart comes back empty, as a cache would.
    pub fn volatile() -> Self {
        Self::start(&["--appendonly", "no"], false)
    }

    /// With `args` added. With `tls`, the port is the TLS port and plain connections are off:
    /// `args` must name the certificates (files in [`dir`](Self::dir)).
    pub fn start(args: &[&str], tls: bool) -> Self {
        let (dir, port) = Self::prepare();
        Self::start_in(dir, port, args, tls)
    }

    /// An empty directory for the server's files, before it starts.
    pub fn prepare() -> (PathBuf, u16) {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("cqrs-private-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        (dir, port)
    }

    /// Starts a server in `dir` (from [`prepare`](Self::prepare)) on `port`.
    pub fn start_in(dir: PathBuf, port: u16, args: &[&str], tls: bool) -> Self {
        let mut redis =
            PrivateRedis { dir, port, args: args.iter().map(|a| (*a).to_owned()).collect(), tls, child: None };
        redis.run();
        redis
    }

    /// Starts the server (again).
    pub fn run(&mut self) {
        let port = self.port.to_string();
        let mut command = Command::new("redis-server");
        if self.tls {
            command.args(["--port", "0", "--tls-port", &port]);
        } else {
            command.args(["--port", &port]);
        }
        command
            .args(["--bind", "127.0.0.1", "--save", ""])
            .args(&self.args)
            .arg("--dir")
            .arg(&self.dir)
            .current_dir(&self.dir)
            .stdout(Stdio::null());
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start redis-server ({e}): install Debian's redis-server"));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("redis-server exited at once ({status}) with {:?}", self.args);
            }
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the server gracefully (an append-only file is complete; without one, the data is
    /// gone).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
            let _ = child.wait();
        }
    }

    /// Stops and starts it again.
    pub fn restart(&mut self) {
        self.stop();
        self.run();
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
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

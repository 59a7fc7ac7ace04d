//! CPU time from `/proc`: this process's, and a local PostgreSQL server's (its postmaster and
//! every process it started). The workspace forbids `unsafe`, so no `getrusage`. Two sources:
//!
//! - `/proc/<pid>/task/<tid>/schedstat` (or `/proc/<pid>/schedstat` for a process), whose first
//!   field is the time the thread has run, in nanoseconds: exact, but only for threads (and
//!   processes) still there when read;
//! - `/proc/<pid>/stat`, user plus system time in clock ticks of 10 ms (`USER_HZ`, 100 per second
//!   whatever the kernel's own tick rate), of the threads still there and those gone, and of
//!   the children waited for.
//!
//! A difference between two readings uses the nanoseconds when every thread (or server process)
//! of the first reading is still there in the second, so that nothing ran and vanished between
//! them, and the clock ticks otherwise.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio_postgres::Client;

/// The length of one clock tick of `/proc/<pid>/stat` (`USER_HZ` = 100).
const TICK: Duration = Duration::from_millis(10);

/// The fields of `/proc/<pid>/stat` this module reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stat {
    /// The parent's process id.
    ppid: u32,
    /// User plus system time of the process itself, in ticks (all its threads, live or gone).
    own: u64,
    /// User plus system time of its children that ended and were waited for, in ticks.
    children: u64,
}

/// Parses the text of `/proc/<pid>/stat`; `None` unless its command is `command` (any command
/// when `None`) and the fields parse.
fn parse_stat(text: &str, command: Option<&str>) -> Option<Stat> {
    // The command sits in parentheses and may hold spaces and parentheses itself.
    let (head, rest) = text.rsplit_once(')')?;
    let (_, comm) = head.split_once('(')?;
    if command.is_some_and(|c| c != comm) {
        return None;
    }
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the command: state (0), ppid (1), ..., utime (11), stime (12), cutime (13), cstime (14).
    let number = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    Some(Stat {
        ppid: u32::try_from(number(1)?).ok()?,
        own: number(11)? + number(12)?,
        children: number(13)? + number(14)?,
    })
}

fn read_stat(pid: &str, command: Option<&str>) -> Option<Stat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?, command)
}

/// The first field of a `schedstat` file: nanoseconds on the CPU.
fn read_schedstat(path: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.split_whitespace().next()?.parse().ok()
}

/// The numeric entries of a `/proc` directory.
fn ids(dir: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries.flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).collect()
}

/// CPU time of a set of threads or processes, read at one moment both ways.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Usage {
    /// Clock ticks, the gone included.
    ticks: u64,
    /// Nanoseconds of each thread or process there.
    nanos: BTreeMap<u32, u64>,
}

/// CPU time spent between two readings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spent {
    /// How much.
    pub time: Duration,
    /// Whether it is exact (from `schedstat`), or in clock ticks of 10 ms (from `stat`, because a
    /// thread or process of the first reading was gone by the second).
    pub exact: bool,
}

impl Usage {
    /// The CPU time spent since `before`: in nanoseconds when nothing of `before` is gone, in
    /// ticks otherwise.
    fn since(&self, before: &Usage) -> Spent {
        if before.nanos.keys().all(|id| self.nanos.contains_key(id)) {
            let spent =
                self.nanos.iter().map(|(id, now)| now.saturating_sub(before.nanos.get(id).copied().unwrap_or(0))).sum();
            Spent { time: Duration::from_nanos(spent), exact: true }
        } else {
            let ticks = u32::try_from(self.ticks.saturating_sub(before.ticks)).unwrap_or(u32::MAX);
            Spent { time: TICK * ticks, exact: false }
        }
    }
}

/// This process's CPU time so far, every thread; `None` without `/proc`.
fn process() -> Option<Usage> {
    let ticks = read_stat("self", None)?.own;
    let nanos = ids("/proc/self/task")
        .into_iter()
        .filter_map(|tid| Some((tid, read_schedstat(&format!("/proc/self/task/{tid}/schedstat"))?)))
        .collect();
    Some(Usage { ticks, nanos })
}

/// The CPU time so far of the processes `pids` on this machine (every thread of each, keyed by
/// thread id); `None` when one of them is gone or `/proc` cannot be read.
fn processes(pids: &[u32]) -> Option<Usage> {
    let mut usage = Usage::default();
    for pid in pids {
        usage.ticks += read_stat(&pid.to_string(), None)?.own;
        for tid in ids(&format!("/proc/{pid}/task")) {
            if let Some(nanos) = read_schedstat(&format!("/proc/{pid}/task/{tid}/schedstat")) {
                usage.nanos.insert(tid, nanos);
            }
        }
    }
    Some(usage)
}

/// A PostgreSQL server on this machine, found through a connection's backend.
#[derive(Debug, Clone, Copy)]
pub struct Server {
    postmaster: u32,
}

impl Server {
    /// The server `monitor` is connected to, when it runs on this machine and its processes can
    /// be read: the parent of the connection's backend, both named `postgres`.
    pub async fn find(monitor: &Client) -> Option<Self> {
        let backend: i32 = monitor.query_one("SELECT pg_backend_pid()", &[]).await.ok()?.try_get(0).ok()?;
        let stat = read_stat(&backend.to_string(), Some("postgres"))?;
        read_stat(&stat.ppid.to_string(), Some("postgres"))?;
        Some(Server { postmaster: stat.ppid })
    }

    /// The server's CPU time so far: the postmaster and every child still running (backends,
    /// WAL writer, checkpointer, ...), and, in ticks, the children it has waited for, so that a
    /// backend that ends between two readings still counts. `None` when the postmaster is gone.
    fn usage(&self) -> Option<Usage> {
        let postmaster = read_stat(&self.postmaster.to_string(), Some("postgres"))?;
        let mut usage = Usage { ticks: postmaster.own + postmaster.children, nanos: BTreeMap::new() };
        let schedstat = |pid: u32| read_schedstat(&format!("/proc/{pid}/schedstat"));
        usage.nanos.insert(self.postmaster, schedstat(self.postmaster)?);
        for pid in ids("/proc") {
            if let Some(stat) = read_stat(&pid.to_string(), None).filter(|s| s.ppid == self.postmaster) {
                usage.ticks += stat.own;
                if let Some(nanos) = schedstat(pid) {
                    usage.nanos.insert(pid, nanos);
                }
            }
        }
        Some(usage)
    }
}

/// CPU read at one moment: this process's, and the server's when it can be read.
#[derive(Debug, Clone)]
pub struct Reading {
    process: Option<Usage>,
    server: Option<Usage>,
}

impl Reading {
    /// Reads both now.
    pub fn now(server: Option<&Server>) -> Self {
        Reading { process: process(), server: server.and_then(Server::usage) }
    }

    /// The CPU time of other processes of this machine (child projector processes, Redis
    /// servers), read now as a reading's process part (its server part is `None`).
    pub fn of_processes(pids: &[u32]) -> Self {
        Reading { process: processes(pids), server: None }
    }

    /// The CPU time spent since `before`: the process's and the server's.
    pub fn since(&self, before: &Reading) -> (Option<Spent>, Option<Spent>) {
        let delta = |now: &Option<Usage>, then: &Option<Usage>| Some(now.as_ref()?.since(then.as_ref()?));
        (delta(&self.process, &before.process), delta(&self.server, &before.server))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_parse() {
        let line = "4242 (postgres) S 4000 4242 4242 0 -1 4194560 1000 0 0 0 120 30 7 3 20 0 1 0 100 0 0";
        assert_eq!(parse_stat(line, Some("postgres")), Some(Stat { ppid: 4000, own: 150, children: 10 }));
        assert_eq!(parse_stat(line, Some("redis-server")), None);
        let odd = "7 (a (b) c) R 1 7 7 0 -1 0 0 0 0 0 5 6 0 0 20";
        assert_eq!(parse_stat(odd, None), Some(Stat { ppid: 1, own: 11, children: 0 }));
        assert_eq!(parse_stat("7 (x) R 1", None), None);
    }

    #[test]
    fn differences_use_nanoseconds_unless_something_is_gone() {
        let usage = |ticks, nanos: &[(u32, u64)]| Usage { ticks, nanos: nanos.iter().copied().collect() };
        let before = usage(10, &[(1, 1_000), (2, 5_000)]);
        let after = usage(12, &[(1, 4_000), (2, 5_500), (3, 700)]);
        let spent = Spent { time: Duration::from_nanos(3_000 + 500 + 700), exact: true };
        assert_eq!(after.since(&before), spent, "a new thread counts whole");
        let gone = usage(13, &[(1, 4_000)]);
        assert_eq!(gone.since(&before), Spent { time: Duration::from_millis(30), exact: false }, "thread 2 is gone");
    }

    #[test]
    fn other_processes_are_read_by_pid() {
        let me = std::process::id();
        let before = Reading::of_processes(&[me]);
        assert!(before.process.as_ref().is_some_and(|u| !u.nanos.is_empty()), "this process read by its pid");
        assert!(Reading::of_processes(&[me, u32::MAX]).process.is_none(), "a process that is not there");
    }

    #[test]
    fn this_process_cpu_moves_as_it_works() {
        let before = process().expect("Linux has /proc/self");
        assert!(!before.nanos.is_empty(), "schedstat is readable");
        let start = std::time::Instant::now();
        let mut spin = 0u64;
        while process().is_some_and(|now| now.since(&before).time < Duration::from_millis(20)) {
            spin = spin.wrapping_add(1);
            assert!(start.elapsed() < Duration::from_secs(10), "20 ms of CPU not seen in 10 s of spinning");
        }
        assert!(spin > 0);
    }
}

//! The `ryw` scenarios: read-your-writes, the time from a command's return until a query that
//! waits for its position (`Reader::wait_for`, then `get` of the view) has its answer.
//!
//! Commands run one at a time, each deposit into one of 100 accounts, and the query waits for
//! the command's position and reads the account's view; the next command is sent once the
//! query has answered. With `processes` 3 the command runs in one child process of this binary
//! (`cqrs-bench ryw-child command ...`), the projector in another (`... projector ...`), and the
//! query in this process: the command's process reports each position with the wall-clock time
//! (`SystemTime`, the same clock for every process of the machine) at which `execute` returned,
//! and the query's time is taken the same way once `get` answered. In one process the three
//! share the stores (the query's wait is woken by the store's own signal).
//!
//! - `ryw_memory`: memory event and view stores, one process;
//! - `ryw_postgres_1_process`, `ryw_postgres_3_processes`: PostgreSQL events and views;
//! - `ryw_postgres_3_processes_no_debounce`: the same with the views' NOTIFY debounce at zero
//!   (`PgViewStore::with_notify_debounce`): what the debounce contributes;
//! - `ryw_redis_1_process`, `ryw_redis_3_processes`: PostgreSQL events, Redis views.
//!
//! Each line has the median as `ours` and the 99th percentile as `p99`, in milliseconds.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use eventloom_core::memory::{MemoryEventStore, MemoryViewStore};
use eventloom_core::read::Projector;
use eventloom_core::store::{EventStore, ViewStore};
use eventloom_core::write::Cqrs;
use eventloom_core::{Position, Reader};
use eventloom_postgres::{PgConfig, PgEventStore, PgViewStore};
use eventloom_redis::RedisViewStore;
use redis::aio::ConnectionManager;

use crate::Result;
use crate::domain::{Account, Deposit};
use crate::read_model::AccountViews;
use crate::report::{Latency, Record, Unit};

/// The first argument of a child process.
pub const CHILD: &str = "ryw-child";

/// Accounts the commands cycle through.
const ACCOUNTS: usize = 100;

/// Commands measured per scenario (after [`WARM_UP`] unmeasured ones).
const COMMANDS: usize = 1_000;
const WARM_UP: usize = 100;

/// How long one query may wait.
const WAIT: Duration = Duration::from_secs(10);

fn account(i: usize) -> String {
    format!("ryw-{}", i % ACCOUNTS)
}

/// Microseconds since the epoch, now.
fn wall_micros() -> Result<u64> {
    Ok(u64::try_from(SystemTime::now().duration_since(UNIX_EPOCH)?.as_micros())?)
}

/// Runs every `ryw` scenario against the servers at `pg_url` and `redis_url`.
pub async fn run(pg_url: &str, redis_url: &str) -> Result<()> {
    let monitor = crate::scenarios::monitor(pg_url).await?;
    let mut redis = ConnectionManager::new(redis::Client::open(redis_url)?).await?;
    let schema = crate::scenarios::fresh_schema(&monitor, "bench_ryw").await?;
    let prefix = crate::redis_scenarios::fresh_prefix(&mut redis).await?;
    eprintln!("Redis key prefix: {prefix} (deleted at the end)");
    let outcome = async {
        memory().await?.print();
        let config = PgConfig::from_url(pg_url)?.schema(&schema)?;
        let events = PgEventStore::connect(config.clone()).await?;
        events.migrate().await?;
        one_process("ryw_postgres_1_process", events.clone(), PgViewStore::new(&events)).await?.print();
        let views = RedisViewStore::connect(redis_url, &format!("{prefix}1:")).await?;
        one_process("ryw_redis_1_process", events.clone(), views).await?.print();
        let pg_views = PgViewStore::new(&events);
        three_processes("ryw_postgres_3_processes", &schema, "postgres", "1000", events.clone(), pg_views.clone())
            .await?
            .print();
        let views = PgViewStore::new(&events);
        three_processes("ryw_postgres_3_processes_no_debounce", &schema, "postgres", "0", events.clone(), views)
            .await?
            .print();
        let views = RedisViewStore::connect(redis_url, &format!("{prefix}3:")).await?;
        three_processes("ryw_redis_3_processes", &schema, &format!("{prefix}3:"), "0", events.clone(), views)
            .await?
            .print();
        Ok::<_, crate::BoxError>(())
    }
    .await;
    let dropped = monitor.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE")).await;
    let deleted = crate::read_model::delete_keys(&mut redis, &prefix).await;
    if let Ok(keys) = &deleted {
        eprintln!("cleanup: dropped schema {schema}, deleted {keys} Redis keys under {prefix}");
    }
    outcome?;
    dropped?;
    deleted?;
    Ok(())
}

/// A projector of [`AccountViews`] running live on a task of its own until dropped.
struct Running {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<eventloom_core::Result<()>>,
}

impl Running {
    fn start<S: EventStore + Clone>(events: S, views: impl ViewStore) -> Self {
        let projector = Projector::new(events, views);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            projector
                .run(AccountViews, async move {
                    let _ = stopped.await;
                })
                .await
        });
        Running { stop: Some(stop), task }
    }

    async fn stop(mut self) -> Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        Ok((&mut self.task).await??)
    }
}

/// Command, wait and read in one loop, on stores shared by the three.
async fn measure_here<S: EventStore + Clone>(
    scenario: &'static str,
    events: S,
    views: impl ViewStore + Clone,
) -> Result<Record> {
    let running = Running::start(events.clone(), views.clone());
    let cqrs = Cqrs::<Account, S>::new(events);
    let reader = Reader::<AccountViews>::new(views);
    let mut took = Vec::with_capacity(COMMANDS);
    for i in 0..WARM_UP + COMMANDS {
        let id = account(i);
        let done = cqrs.execute(Deposit { id: id.clone(), amount: 1 }).await?;
        let returned = Instant::now();
        reader.wait_for(&done, WAIT).await?;
        let view = reader.get(&id).await?.ok_or_else(|| format!("{scenario}: no view of {id}"))?;
        if view.version < done.version {
            return Err(format!("{scenario}: the view of {id} is at {} after {}", view.version, done.version).into());
        }
        if i >= WARM_UP {
            took.push(returned.elapsed());
        }
    }
    running.stop().await?;
    record(scenario, took)
}

fn record(scenario: &'static str, took: Vec<Duration>) -> Result<Record> {
    let latency = Latency::of(took).ok_or("no samples")?;
    eprintln!("{scenario}: median {:.3} ms, p99 {:.3} ms over {}", latency.median_ms, latency.p99_ms, latency.samples);
    Ok(Record::without_raw(scenario, Unit::Millis, latency.median_ms).p99(latency.p99_ms))
}

async fn memory() -> Result<Record> {
    measure_here("ryw_memory", MemoryEventStore::default(), MemoryViewStore::default()).await
}

async fn one_process(scenario: &'static str, events: PgEventStore, views: impl ViewStore + Clone) -> Result<Record> {
    measure_here(scenario, events, views).await
}

/// A child process of this binary, killed when dropped.
struct ChildProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl ChildProcess {
    fn start(args: &[&str]) -> Result<Self> {
        let mut child = Command::new(std::env::current_exe()?)
            .arg(CHILD)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdin = child.stdin.take().ok_or("the child's stdin")?;
        let stdout = BufReader::new(child.stdout.take().ok_or("the child's stdout")?);
        Ok(ChildProcess { child, stdin: Some(stdin), stdout })
    }

    /// Sends one line, and reads the answer's line.
    fn ask(&mut self, line: &str) -> Result<String> {
        let stdin = self.stdin.as_mut().ok_or("the child's stdin is closed")?;
        writeln!(stdin, "{line}")?;
        stdin.flush()?;
        let mut answer = String::new();
        if self.stdout.read_line(&mut answer)? == 0 {
            return Err("the child process ended".into());
        }
        Ok(answer)
    }

    /// Closes its standard input (it stops) and waits for it.
    fn finish(mut self) -> Result<()> {
        drop(self.stdin.take());
        let status = self.child.wait()?;
        if !status.success() {
            return Err(format!("a child process failed: {status}").into());
        }
        Ok(())
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        if self.stdin.is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The command in one child process, the projector in another, the query here.
async fn three_processes(
    scenario: &'static str,
    schema: &str,
    views_at: &str,
    debounce_micros: &str,
    events: PgEventStore,
    views: impl ViewStore + Clone,
) -> Result<Record> {
    // (A projector of an earlier scenario on the same views left a checkpoint: this one goes on
    // from it, and the warm-up covers its catching up.)
    let mut projector = ChildProcess::start(&["projector", schema, views_at, debounce_micros])?;
    let mut command = ChildProcess::start(&["command", schema])?;
    tokio::task::block_in_place(|| projector.ask("ready"))?;
    let reader = Reader::<AccountViews>::new(views);
    let mut took = Vec::with_capacity(COMMANDS);
    for i in 0..WARM_UP + COMMANDS {
        let answer = tokio::task::block_in_place(|| command.ask(&account(i)))?;
        let mut fields = answer.split_whitespace();
        let (Some(position), Some(version), Some(returned)) = (fields.next(), fields.next(), fields.next()) else {
            return Err(format!("{scenario}: the command process answered {answer:?}").into());
        };
        let (position, version, returned): (Position, u64, u64) =
            (position.parse()?, version.parse()?, returned.parse()?);
        reader.wait_for(position, WAIT).await?;
        let id = account(i);
        let view = reader.get(&id).await?.ok_or_else(|| format!("{scenario}: no view of {id}"))?;
        let answered = wall_micros()?;
        if view.version < version {
            return Err(format!("{scenario}: the view of {id} is at {} after {version}", view.version).into());
        }
        if i >= WARM_UP {
            took.push(Duration::from_micros(answered.saturating_sub(returned)));
        }
    }
    command.finish()?;
    projector.finish()?;
    drop(events);
    record(scenario, took)
}

/// A child process: `command <schema>` executes a deposit into each account named on standard
/// input and answers `<position> <version> <µs since the epoch when execute returned>`;
/// `projector <schema> <views> <debounce µs>` runs [`AccountViews`] live into PostgreSQL views
/// (`<views>` = `postgres`, with that NOTIFY debounce) or into Redis views under the key prefix
/// `<views>` (with `REDIS_URL`), answering `ready` once, until its standard input ends.
pub async fn child(pg_url: &str, args: &[&str]) -> Result<()> {
    match args {
        ["command", schema] => {
            let events = PgEventStore::connect(PgConfig::from_url(pg_url)?.schema(*schema)?.pool_size(2)).await?;
            let cqrs = Cqrs::<Account, PgEventStore>::new(events);
            let (ids, mut asked) = tokio::sync::mpsc::unbounded_channel::<String>();
            let reading = tokio::task::spawn_blocking(move || {
                for line in std::io::stdin().lines().map_while(std::result::Result::ok) {
                    if ids.send(line).is_err() {
                        break;
                    }
                }
            });
            let mut out = std::io::stdout();
            while let Some(id) = asked.recv().await {
                let done = cqrs.execute(Deposit { id, amount: 1 }).await?;
                let returned = wall_micros()?;
                writeln!(out, "{} {} {returned}", done.position, done.version)?;
                out.flush()?;
            }
            reading.await?;
            Ok(())
        }
        ["projector", schema, views_at, debounce] => {
            let events = PgEventStore::connect(PgConfig::from_url(pg_url)?.schema(*schema)?.pool_size(4)).await?;
            let debounce = Duration::from_micros(debounce.parse()?);
            let running = if *views_at == "postgres" {
                Running::start(events.clone(), PgViewStore::new(&events).with_notify_debounce(debounce))
            } else {
                let redis_url = std::env::var("REDIS_URL").map_err(|_| "REDIS_URL is not set")?;
                Running::start(events.clone(), RedisViewStore::connect(&redis_url, views_at).await?)
            };
            tokio::task::spawn_blocking(|| {
                let mut lines = std::io::stdin().lines();
                // The first line asks whether it runs; it runs until the input ends.
                if lines.next().is_some() {
                    let mut out = std::io::stdout();
                    let _ = writeln!(out, "ready").and_then(|()| out.flush());
                }
                lines.count()
            })
            .await?;
            running.stop().await
        }
        _ => Err(format!("{CHILD}: unknown arguments {args:?}").into()),
    }
}

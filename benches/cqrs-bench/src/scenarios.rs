//! The scenarios: each measured on this framework (`ours`), on the raw baseline and, when
//! built in, on cqrs-es, side by side in one run, in a schema of its own that is dropped at
//! the end.

use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use eventloom_core::{
    Aggregate,
    store::{Snapshot, SnapshotStore},
    write::{Cqrs, SnapshotPolicy},
};
use eventloom_postgres::{PgConfig, PgEventStore, PgSnapshotStore};
use tokio_postgres::{Client, NoTls};

use crate::Result;
use crate::cpu::{Reading, Server, Spent};
use crate::domain::{Account, account_ids};
use crate::load::{self, Budget, Rate};
use crate::long;
use crate::notify_cost::{self, Listener, Notifier, Notify};
use crate::ours::{AppendBatch, Commands, Engine, OneStream, Subscriber, build_stream};
use crate::raw::{self, RawBatch, RawInsert};
use crate::report::{Latency, Record, Unit};
use crate::round_trips::RoundTrips;
use crate::theirs::Theirs;

/// Commands from one task.
const ONE_TASK: Budget = Budget::new(5_000, 20);
/// Commands from eight tasks.
const EIGHT_TASKS: Budget = Budget::new(10_000, 20);
/// Commands from sixty-four tasks.
const SIXTY_FOUR_TASKS: Budget = Budget::new(20_000, 20);
/// Loads of each side in `soak_load` (for a profiler).
const SOAK_LOADS: usize = 600;
/// Commands of a `soak_*` run (for a profiler).
const SOAK: Budget = Budget::new(60_000, 60);
/// The pool of the store with write combining (the commands of 64 tasks load their streams
/// at once).
const COMBINED_POOL: usize = 64;
/// Appends of [`BATCH`] events.
const BATCHES: Budget = Budget::new(300, 20);
/// Events per append in `append_batch_100`.
const BATCH: usize = 100;
/// Single commands timed one at a time.
const LATENCY: Budget = Budget::new(200, 10).at_least(20);
/// Single commands that replay a whole long stream.
const SLOW_LATENCY: Budget = Budget::new(100, 5).at_least(20);
/// How many times each throughput is measured; the fastest run counts.
const ROUNDS: usize = 2;
/// Commands whose allocations are counted in `allocations_per_command`.
const ALLOCATION_OPS: usize = 2_000;
/// Commands (and loads) on the long stream whose allocations are counted.
const LONG_ALLOCATION_OPS: usize = 10;
/// How long appends get to settle (the coalesced NOTIFY) before round-trips are read.
const SETTLE: Duration = Duration::from_millis(200);

/// One long-stream latency scenario.
struct LongStream {
    scenario: &'static str,
    id: &'static str,
    length: u64,
    snapshot: bool,
    budget: Budget,
}

/// The long streams, each built once for each system.
const LONG_STREAMS: [LongStream; 3] = [
    LongStream {
        scenario: "command_10k_stream_no_snapshot",
        id: "long-10k",
        length: 10_000,
        snapshot: false,
        budget: SLOW_LATENCY,
    },
    LongStream {
        scenario: "command_10k_stream_snapshot",
        id: "long-10k-snap",
        length: 10_000,
        snapshot: true,
        budget: LATENCY,
    },
    LongStream {
        scenario: "command_100k_stream_snapshot",
        id: "long-100k-snap",
        length: 100_000,
        snapshot: true,
        budget: LATENCY,
    },
];

/// Runs every scenario against the server at `url`, printing one JSON line per scenario.
pub async fn run(url: &str) -> Result<()> {
    let (monitor, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            eprintln!("monitoring connection failed: {error}");
        }
    });
    describe_server(&monitor).await?;
    let schema = fresh_schema(&monitor, "bench").await?;
    let outcome = async {
        let bench = Bench::setup(url, &schema, &monitor).await?;
        let result = bench.run_all().await;
        bench.close().await;
        result
    }
    .await;
    let dropped = monitor.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE")).await;
    outcome?;
    dropped?;
    Ok(())
}

/// A schema name of this process's, `<prefix>_<pid>`, that no earlier run left behind.
pub async fn fresh_schema(monitor: &Client, prefix: &str) -> Result<String> {
    let schema = format!("{prefix}_{}", std::process::id());
    let exists = monitor.query_opt("SELECT 1 FROM pg_namespace WHERE nspname = $1", &[&schema]).await?.is_some();
    if exists {
        return Err(format!("schema {schema} already exists (left by an earlier run?): drop it first").into());
    }
    eprintln!("schema: {schema} (dropped at the end)");
    Ok(schema)
}

/// A connection to the PostgreSQL at `url` for the benchmark's own queries (schemas, counts),
/// its server described on stderr first.
pub async fn monitor(url: &str) -> Result<Client> {
    let (monitor, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            eprintln!("monitoring connection failed: {error}");
        }
    });
    describe_server(&monitor).await?;
    Ok(monitor)
}

/// Says which server this is and whether it is durable.
pub async fn describe_server(monitor: &Client) -> Result<()> {
    let row = monitor
        .query_one(
            "SELECT current_setting('server_version'), current_setting('fsync'), current_setting('synchronous_commit'), \
                    current_setting('full_page_writes')",
            &[],
        )
        .await?;
    let (version, fsync, synchronous_commit, full_page_writes): (String, String, String, String) =
        (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?, row.try_get(3)?);
    eprintln!(
        "PostgreSQL {version}, fsync={fsync}, synchronous_commit={synchronous_commit}, \
         full_page_writes={full_page_writes}"
    );
    if fsync == "off" || synchronous_commit == "off" || full_page_writes == "off" {
        eprintln!(
            "note: this server does not wait for the disk, so absolute figures are higher than on a durable one; \
             ours, raw and cqrs-es run on the same server in the same run, so the ratios compare like with like"
        );
    }
    Ok(())
}

/// Everything the scenarios share.
struct Bench<'a> {
    url: &'a str,
    schema: &'a str,
    config: PgConfig,
    store: PgEventStore,
    engine: Engine,
    /// An engine on a store of its own with write combining on (same schema), and its accounts
    /// (others than `ids`, so that neither engine's cache goes stale).
    combined: Engine,
    combined_ids: Arc<[String]>,
    raw: Pool,
    monitor: &'a Client,
    /// The server's processes, for the CPU it spends per command (`None` when it runs
    /// elsewhere).
    server: Option<Server>,
    theirs: Option<Theirs>,
    ids: Arc<[String]>,
}

impl<'a> Bench<'a> {
    /// Migrates the store into `schema`, creates the raw and cqrs-es tables, and warms the
    /// engine (and cqrs-es) with one deposit into every account.
    async fn setup(url: &'a str, schema: &'a str, monitor: &'a Client) -> Result<Self> {
        let config = PgConfig::from_url(url)?.schema(schema)?;
        let store = PgEventStore::connect(config.clone()).await?;
        store.migrate().await?;
        raw::create_table(monitor, schema).await?;
        // One connection per raw worker, up to 64 tasks.
        let raw = raw::pool(url.parse()?, 64)?;
        let ids = account_ids();
        let engine = Cqrs::new(store.clone());
        let combining = config.clone().pool_size(COMBINED_POOL).write_combining(true);
        let combined = Cqrs::new(PgEventStore::connect(combining).await?);
        let started = Instant::now();
        Commands::new(engine.clone(), ids.clone()).warm().await?;
        let combined_ids: Arc<[String]> = ids.iter().map(|id| format!("combined-{id}")).collect();
        Commands::new(combined.clone(), combined_ids.clone()).warm().await?;
        let theirs = Theirs::setup(url, schema, ids.clone()).await?;
        eprintln!(
            "setup: 1,000 accounts with one deposit each in every system, {:.1} s",
            started.elapsed().as_secs_f64()
        );
        let server = Server::find(monitor).await;
        Ok(Bench { url, schema, config, store, engine, combined, combined_ids, raw, monitor, server, theirs, ids })
    }

    /// Every scenario, in order.
    async fn run_all(&self) -> Result<()> {
        if let Ok(only) = std::env::var("CQRS_BENCH_ONLY") {
            return self.run_only(&only).await;
        }
        let counter = RoundTrips::new(self.monitor).await;
        self.commands("commands_1_task", 1, ONE_TASK, counter.as_ref()).await?.print();
        self.commands("commands_8_tasks", 8, EIGHT_TASKS, counter.as_ref()).await?.print();
        self.combined_commands("commands_1_task_combined", 1, ONE_TASK).await?.print();
        self.combined_commands("commands_8_tasks_combined", 8, EIGHT_TASKS).await?.print();
        self.combined_commands("commands_64_tasks", 64, SIXTY_FOUR_TASKS).await?.print();
        for in_flight in [2, 4, 8] {
            self.in_flight_sweep(in_flight).await?.print();
        }
        self.subscribed().await?.print();
        self.notify_cost().await?.print();
        self.append_batch().await?.print();
        self.run_only("allocations,long,big").await
    }

    /// The parts named in `only` (comma-separated; `CQRS_BENCH_ONLY` names them for a short
    /// run): `allocations` (`allocations_per_command`), `long` (the long-stream latencies),
    /// `ladder` (where one task's command goes, layer by layer: [`crate::ladder`]), `big` (the
    /// memory of big loads), in that order; then `soak_load`
    /// ([`soak_load`](Self::soak_load)) and `soak_<tasks>[_combined[_<in flight>]]`
    /// ([`soak`](Self::soak)), for a profiler.
    async fn run_only(&self, only: &str) -> Result<()> {
        let wanted = |part: &str| only.split(',').any(|p| p.trim() == part);
        if wanted("allocations") {
            self.allocations_per_command().await?.print();
        }
        if wanted("long") {
            self.long_streams().await?;
        }
        if wanted("ladder") {
            crate::ladder::run(&self.store, &self.engine, &self.raw, self.schema, self.ids.clone()).await?;
        }
        if wanted("big") {
            for stream in &long::BIG_STREAMS {
                long::big_load(&self.store, stream).await?.print();
            }
        }
        for part in only.split(',').map(str::trim).filter(|part| part.starts_with("soak_")) {
            if part == "soak_load" {
                self.soak_load().await?;
            } else {
                self.soak(part).await?;
            }
        }
        Ok(())
    }

    /// `soak_load`: the 10,000-event stream of `command_10k_stream_no_snapshot` loaded
    /// [`SOAK_LOADS`] times each, one load of each in turn: by the raw read and fold, by the same
    /// read with the store's other columns (schema version, transaction id and sequence; or
    /// each `;`-separated column list of `CQRS_BENCH_COLUMNS`), and by the engine without cache
    /// or snapshot: a steady load to attach a profiler to, the medians on stderr.
    async fn soak_load(&self) -> Result<()> {
        let stream = &LONG_STREAMS[0];
        build_stream(&self.store, stream.id, stream.length).await?;
        let columns = std::env::var("CQRS_BENCH_COLUMNS")
            .unwrap_or_else(|_| "schema_version, transaction_id, sequence".to_owned());
        let mut raw = long::RawLoad::new(&self.raw, self.schema, stream.id).await?;
        let mut wide = Vec::new();
        for list in columns.split(';') {
            wide.push((list, long::RawLoad::wide(&self.raw, self.schema, stream.id, list).await?));
        }
        let mut ours = long::OursLoad::new(self.long_stream_engine(false), stream.id);
        eprintln!("soak_load: loads of {} events (pid {})", stream.length, std::process::id());
        let mut times = vec![Vec::with_capacity(SOAK_LOADS); wide.len() + 2];
        let started = Instant::now();
        for _ in 0..SOAK_LOADS {
            times[0].push(timed_op(&mut raw, 0).await?);
            for (i, (_, worker)) in wide.iter_mut().enumerate() {
                times[i + 1].push(timed_op(worker, 0).await?);
            }
            times[wide.len() + 1].push(timed_op(&mut ours, 0).await?);
            if started.elapsed() > Duration::from_secs(300) {
                break;
            }
        }
        let medians: Vec<f64> = times.into_iter().map(|t| Latency::of(t).map_or(f64::NAN, |l| l.median_ms)).collect();
        let names = std::iter::once("raw").chain(wide.iter().map(|(list, _)| *list)).chain(["ours"]);
        for (name, median) in names.zip(&medians) {
            eprintln!("soak_load: {median:.3} ms median, {:.2} of raw's speed: {name}", medians[0] / median);
        }
        Ok(())
    }

    /// `soak_<tasks>[_combined[_<in flight>]]`: raw INSERTs, then deposits through the warm
    /// engine (the combining one when asked; with `<in flight>`, a combining store of its own
    /// with that many statements in flight, warmed first), [`SOAK`] of each from `tasks` tasks, their rates and CPU on
    /// stderr: a steady load to attach a profiler to (`perf record -p`), no figure of the report.
    async fn soak(&self, part: &str) -> Result<()> {
        let expected = || format!("{part}: expected soak_<tasks>[_combined[_<statements in flight>]]");
        let mut words = part.trim_start_matches("soak_").split('_');
        let tasks: usize = words.next().and_then(|n| n.parse().ok()).ok_or_else(expected)?;
        let combined = match (words.next(), words.next()) {
            (None, _) => None,
            (Some("combined"), None) => Some(None),
            (Some("combined"), Some(n)) => Some(Some(n.parse::<usize>().map_err(|_| expected())?)),
            _ => return Err(expected().into()),
        };
        let raw = self.costed(load::throughput(self.raw_workers(&format!("raw_{part}"), tasks).await?, SOAK)).await?;
        let engine = match combined {
            None => self.engine.clone(),
            Some(None) => self.combined.clone(),
            Some(Some(in_flight)) => {
                let config = self.config.clone().pool_size(COMBINED_POOL).write_combining_in_flight(in_flight);
                Cqrs::new(PgEventStore::connect(config).await?)
            }
        };
        let ids: Arc<[String]> = match combined {
            None => self.ids.clone(),
            Some(None) => self.combined_ids.clone(),
            Some(Some(_)) => {
                let ids: Arc<[String]> = self.ids.iter().map(|id| format!("{part}-{id}")).collect();
                Commands::new(engine.clone(), ids.clone()).warm().await?;
                ids
            }
        };
        eprintln!("{part}: raw done; ours starts (pid {})", std::process::id());
        let workers = (0..tasks).map(|_| Commands::new(engine.clone(), ids.clone())).collect();
        let ours = self.costed(load::throughput(workers, SOAK)).await?;
        for (who, run) in [("raw", &raw), ("ours", &ours)] {
            eprintln!(
                "{part}: {who} {:.0}/s over {} commands, client {:?} and server {:?} µs of CPU per command",
                run.rate.per_second(),
                run.rate.ops,
                run.per_op(run.client),
                run.per_op(run.server)
            );
        }
        Ok(())
    }

    /// `allocations_per_command`: the allocations of deposits through the warm engine (one
    /// task, the cache on), counted by the process's allocator ([`crate::alloc`]), against
    /// those of the raw single-row INSERT; bytes allocated per command beside them.
    async fn allocations_per_command(&self) -> Result<Record> {
        let scenario = "allocations_per_command";
        let mut ours = Commands::new(self.engine.clone(), self.ids.clone());
        let mut raw = RawInsert::new(&self.raw, self.schema, "raw_allocations", self.ids.clone()).await?;
        // Warm both first (the raw statement is prepared; the engine's accounts are cached).
        long::allocations(&mut raw, 0, 100).await?;
        let ours_counted = long::allocations(&mut ours, 0, ALLOCATION_OPS).await?;
        let raw_counted = long::allocations(&mut raw, 100, ALLOCATION_OPS).await?;
        eprintln!(
            "{scenario}: ours {:.1} allocations and {:.0} bytes per command; raw INSERT {:.1} and {:.0} \
             ({ALLOCATION_OPS} each, every thread of the process counted)",
            ours_counted.per(ALLOCATION_OPS),
            ours_counted.bytes_per(ALLOCATION_OPS),
            raw_counted.per(ALLOCATION_OPS),
            raw_counted.bytes_per(ALLOCATION_OPS)
        );
        Ok(Record::new(scenario, Unit::Allocations, ours_counted.per(ALLOCATION_OPS), raw_counted.per(ALLOCATION_OPS))
            .with("bytes_per_command", ours_counted.bytes_per(ALLOCATION_OPS))
            .with("raw_bytes_per_command", raw_counted.bytes_per(ALLOCATION_OPS)))
    }

    /// Closes the pools that would otherwise linger until the process ends.
    async fn close(&self) {
        if let Some(theirs) = &self.theirs {
            theirs.close().await;
        }
        self.raw.close();
    }

    /// Deposits round-robin over the 1,000 accounts from `tasks` tasks, on each system, the
    /// fastest of [`ROUNDS`] runs each; for ours also the server round-trips per command.
    async fn commands(
        &self,
        scenario: &'static str,
        tasks: usize,
        budget: Budget,
        counter: Option<&RoundTrips<'_>>,
    ) -> Result<Record> {
        let (mut ours, mut raw, mut theirs) = (Vec::new(), Vec::new(), Vec::new());
        let mut round_trips = None;
        for round in 0..ROUNDS {
            let before = match counter {
                Some(counter) if round == 0 => Some((counter, counter.before(self.store.pool()).await?)),
                _ => None,
            };
            let run = self.costed(load::throughput(self.command_workers(tasks), budget)).await?;
            if let Some((counter, before)) = before {
                tokio::time::sleep(SETTLE).await;
                let statements = counter.since(before, self.store.pool()).await?;
                eprintln!("{scenario}: ours: {statements} round-trips for {} commands", run.rate.ops);
                round_trips = Some(statements as f64 / run.rate.ops as f64);
            }
            ours.push(run);
            let workers = self.raw_workers(&format!("raw_{tasks}_{round}"), tasks).await?;
            raw.push(self.costed(load::throughput(workers, budget)).await?);
            if let Some(cqrs_es) = &self.theirs {
                theirs.push(cqrs_es.commands(tasks, budget).await?);
            }
        }
        let (ours, raw, theirs) = (fastest_costed(&ours)?, fastest_costed(&raw)?, fastest(&theirs).ok());
        note_rates(scenario, "commands", &ours.rate, &raw.rate, theirs.as_ref());
        let record = Record::new(scenario, Unit::PerSecond, ours.rate.per_second(), raw.rate.per_second())
            .cqrs_es(theirs.map(|t| t.per_second()))
            .round_trips(round_trips);
        Ok(note_costs(scenario, &ours, &raw, record))
    }

    /// Deposits as [`commands`](Self::commands) does, through the engine whose store combines
    /// writes ([`PgConfig::write_combining`]), against the raw single-row INSERTs that commit
    /// one by one from as many tasks (cqrs-es is not run: its figures are in the other
    /// scenarios).
    async fn combined_commands(&self, scenario: &'static str, tasks: usize, budget: Budget) -> Result<Record> {
        let (mut ours, mut raw) = (Vec::new(), Vec::new());
        let timer = crate::phases::PhaseTimer::shared();
        for round in 0..ROUNDS {
            let workers = (0..tasks).map(|_| Commands::new(self.combined.clone(), self.combined_ids.clone())).collect();
            if let Some(timer) = timer {
                timer.start();
            }
            let run = self.costed(load::throughput(workers, budget)).await?;
            if let Some(timer) = timer {
                let statements = timer.stop().get("append_combined");
                eprintln!(
                    "{scenario}: round {round}: {} commands, {} of them in {} combined statements ({:.1} appends each, \
                     {:.2} ms mean, {:.1} ms max), the others alone",
                    run.rate.ops,
                    statements.views,
                    statements.count,
                    statements.views as f64 / statements.count.max(1) as f64,
                    statements.mean_ms(),
                    statements.max.as_secs_f64() * 1_000.0,
                );
            }
            ours.push(run);
            let workers = self.raw_workers(&format!("raw_combined_{tasks}_{round}"), tasks).await?;
            raw.push(self.costed(load::throughput(workers, budget)).await?);
        }
        let (ours, raw) = (fastest_costed(&ours)?, fastest_costed(&raw)?);
        note_rates(scenario, "commands", &ours.rate, &raw.rate, None);
        let record = Record::new(scenario, Unit::PerSecond, ours.rate.per_second(), raw.rate.per_second());
        Ok(note_costs(scenario, &ours, &raw, record))
    }

    /// `commands_64_tasks_in_flight_<n>`: `commands_64_tasks` through a store whose combiner
    /// has `in_flight` statements (`PgConfig::write_combining_in_flight`; the default is 1),
    /// one round each against one raw round, for choosing the default.
    async fn in_flight_sweep(&self, in_flight: usize) -> Result<Record> {
        let scenario = match in_flight {
            2 => "commands_64_tasks_in_flight_2",
            4 => "commands_64_tasks_in_flight_4",
            _ => "commands_64_tasks_in_flight_8",
        };
        let config = self.config.clone().pool_size(COMBINED_POOL).write_combining_in_flight(in_flight);
        let engine = Cqrs::new(PgEventStore::connect(config).await?);
        let ids: Arc<[String]> = self.ids.iter().map(|id| format!("f{in_flight}-{id}")).collect();
        Commands::new(engine.clone(), ids.clone()).warm().await?;
        let timer = crate::phases::PhaseTimer::shared();
        if let Some(timer) = timer {
            timer.start();
        }
        let workers = (0..64).map(|_| Commands::new(engine.clone(), ids.clone())).collect();
        let ours = load::throughput(workers, SIXTY_FOUR_TASKS).await?;
        if let Some(timer) = timer {
            let statements = timer.stop().get("append_combined");
            eprintln!(
                "{scenario}: {} commands, {} of them in {} combined statements ({:.1} appends each, {:.2} ms mean)",
                ours.ops,
                statements.views,
                statements.count,
                statements.views as f64 / statements.count.max(1) as f64,
                statements.mean_ms(),
            );
        }
        let raw =
            load::throughput(self.raw_workers(&format!("raw_in_flight_{in_flight}"), 64).await?, SIXTY_FOUR_TASKS)
                .await?;
        note_rates(scenario, "commands", &ours, &raw, None);
        Ok(Record::new(scenario, Unit::PerSecond, ours.per_second(), raw.per_second()))
    }

    /// Runs `run`, reading the CPU this process and the server spent meanwhile.
    async fn costed(&self, run: impl std::future::Future<Output = Result<Rate>>) -> Result<Costed> {
        let before = Reading::now(self.server.as_ref());
        let rate = run.await?;
        let (client, server) = Reading::now(self.server.as_ref()).since(&before);
        Ok(Costed { rate, client, server })
    }

    /// `tasks` raw INSERT workers writing rows of `category`, which no other run uses.
    async fn raw_workers(&self, category: &str, tasks: usize) -> Result<Vec<RawInsert>> {
        let mut workers = Vec::with_capacity(tasks);
        for _ in 0..tasks {
            workers.push(RawInsert::new(&self.raw, self.schema, category, self.ids.clone()).await?);
        }
        Ok(workers)
    }

    /// Workers that send deposits through clones of the warm engine.
    fn command_workers(&self, tasks: usize) -> Vec<Commands> {
        (0..tasks).map(|_| Commands::new(self.engine.clone(), self.ids.clone())).collect()
    }

    /// The eight-task run without, then with, a live subscription to everything on a store of
    /// its own (as a projector in another process would have), the fastest of [`ROUNDS`] runs
    /// each: `raw` is the run without.
    async fn subscribed(&self) -> Result<Record> {
        let scenario = "commands_8_tasks_subscribed";
        let (mut without, mut with) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            without.push(load::throughput(self.command_workers(8), EIGHT_TASKS).await?);
            let subscriber = Subscriber::start(PgEventStore::connect(self.config.clone()).await?).await?;
            let run = load::throughput(self.command_workers(8), EIGHT_TASKS).await?;
            let deadline = Instant::now() + Duration::from_secs(10);
            while subscriber.seen() < u64::try_from(run.ops)? && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            eprintln!("{scenario}: the subscriber received {} of the {} events appended", subscriber.seen(), run.ops);
            subscriber.stop().await?;
            with.push(run);
        }
        let (without, with) = (fastest(&without)?, fastest(&with)?);
        eprintln!(
            "{scenario}: without a subscriber {:.0}/s, with one {:.0}/s",
            without.per_second(),
            with.per_second()
        );
        Ok(Record::new(scenario, Unit::PerSecond, with.per_second(), without.per_second()))
    }

    /// `notify_cost` (see [`crate::notify_cost`]): the NOTIFYs ours sends per command under the
    /// eight-task load, the latency of one NOTIFY against `SELECT 1`, and raw INSERTs from
    /// eight tasks with a notifier beside them (`ours`) against without (`raw`), the fastest
    /// of [`ROUNDS`] runs each, alternating.
    async fn notify_cost(&self) -> Result<Record> {
        let scenario = "notify_cost";
        let channel = notify_cost::channel(self.schema);
        let listener = Listener::start(self.url, &channel).await?;
        let run = load::throughput(self.command_workers(8), EIGHT_TASKS).await?;
        tokio::time::sleep(SETTLE).await;
        let notifies = listener.count();
        listener.stop();
        let per_command = notifies as f64 / run.ops as f64;
        eprintln!(
            "{scenario}: ours sent {notifies} NOTIFYs for {} commands in {:.2} s ({:.0} commands/s): {per_command:.4} \
             per command, {:.0} per second",
            run.ops,
            run.elapsed.as_secs_f64(),
            run.per_second(),
            notifies as f64 / run.elapsed.as_secs_f64()
        );
        let (notify, select) = {
            let mut notify = Notify::new(&self.raw, Some(&channel)).await?;
            let mut select = Notify::new(&self.raw, None).await?;
            let (mut notifies, mut selects) = (Vec::new(), Vec::new());
            notify.publish_stats().await?;
            let (xid_before, syncs_before) = notify_cost::wal_reading(self.monitor).await?;
            for _ in 0..4 {
                notifies.extend(load::latencies(&mut notify, 0, LATENCY).await?);
                selects.extend(load::latencies(&mut select, 0, LATENCY).await?);
            }
            notify.publish_stats().await?;
            let (xid_after, syncs_after) = notify_cost::wal_reading(self.monitor).await?;
            let sent = notifies.len() as f64;
            eprintln!(
                "{scenario}: {sent} NOTIFYs alone took {:.2} transaction ids and {:.3} WAL syncs each \
                 (pg_stat_wal.wal_sync of the whole cluster: {} in all)",
                (xid_after - xid_before - 1) as f64 / sent,
                (syncs_after - syncs_before) as f64 / sent,
                syncs_after - syncs_before
            );
            // The control: single-row INSERTs, whose commits wait for the WAL.
            let mut insert = RawInsert::new(&self.raw, self.schema, "raw_wal_control", self.ids.clone()).await?;
            insert.publish_stats().await?;
            let (xid_before, syncs_before) = notify_cost::wal_reading(self.monitor).await?;
            let inserts = load::latencies(&mut insert, 0, LATENCY).await?.len();
            insert.publish_stats().await?;
            let (xid_after, syncs_after) = notify_cost::wal_reading(self.monitor).await?;
            eprintln!(
                "{scenario}: the control, {inserts} single-row INSERTs alone, took {:.2} transaction ids and {:.3} WAL \
                 syncs each ({} in all)",
                (xid_after - xid_before - 1) as f64 / inserts as f64,
                (syncs_after - syncs_before) as f64 / inserts as f64,
                syncs_after - syncs_before
            );
            (Latency::of(notifies).ok_or("no NOTIFY timed")?, Latency::of(selects).ok_or("no SELECT 1 timed")?)
        };
        eprintln!(
            "{scenario}: one NOTIFY alone: median {:.3} ms, p99 {:.3} ms; SELECT 1: median {:.3} ms, p99 {:.3} ms \
             ({} each)",
            notify.median_ms, notify.p99_ms, select.median_ms, select.p99_ms, notify.samples
        );
        let side = raw::pool(self.url.parse()?, 1)?;
        let (mut without, mut with) = (Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            let workers = self.raw_workers(&format!("raw_notify_off_{round}"), 8).await?;
            without.push(load::throughput(workers, EIGHT_TASKS).await?);
            let workers = self.raw_workers(&format!("raw_notify_on_{round}"), 8).await?;
            let notifier = Notifier::start(&side, &channel).await?;
            let rate = load::throughput(workers, EIGHT_TASKS).await?;
            let sent = notifier.stop().await?;
            eprintln!(
                "{scenario}: raw with a notifier beside: {} INSERTs and {sent} NOTIFYs in {:.2} s ({:.0} NOTIFYs/s)",
                rate.ops,
                rate.elapsed.as_secs_f64(),
                sent as f64 / rate.elapsed.as_secs_f64()
            );
            with.push(rate);
        }
        side.close();
        let (without, with) = (fastest(&without)?, fastest(&with)?);
        eprintln!(
            "{scenario}: raw INSERTs from 8 tasks without a notifier {:.0}/s, with one {:.0}/s",
            without.per_second(),
            with.per_second()
        );
        Ok(Record::new(scenario, Unit::PerSecond, with.per_second(), without.per_second()).notify(
            per_command,
            notify.median_ms,
            select.median_ms,
        ))
    }

    /// Events per second appended [`BATCH`] at a time from one task, the fastest of [`ROUNDS`]
    /// runs each: one `EventStore::append` per new stream, against one multi-row INSERT per
    /// statement.
    async fn append_batch(&self) -> Result<Record> {
        let scenario = "append_batch_100";
        let (mut ours, mut raw) = (Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            let prefix = format!("r{round}-");
            ours.push(load::throughput(vec![AppendBatch::new(self.store.clone(), BATCH, &prefix)], BATCHES).await?);
            let worker = RawBatch::new(&self.raw, self.schema, BATCH, &prefix).await?;
            raw.push(load::throughput(vec![worker], BATCHES).await?);
        }
        let (ours, raw) = (fastest(&ours)?, fastest(&raw)?);
        note_rates(scenario, "batches of 100", &ours, &raw, None);
        let events = BATCH as f64;
        Ok(Record::new(scenario, Unit::PerSecond, ours.per_second() * events, raw.per_second() * events))
    }

    /// The latency of one command on long streams, with the engine's cache off so that each
    /// command loads; `raw` is the latency of one single-row INSERT, the floor of any command.
    async fn long_streams(&self) -> Result<()> {
        let mut insert = RawInsert::new(&self.raw, self.schema, "raw_latency", self.ids.clone()).await?;
        let floor = Latency::of(load::latencies(&mut insert, 0, LATENCY).await?).ok_or("no raw INSERT timed")?;
        eprintln!("raw single-row INSERT: median {:.3} ms, p99 {:.3} ms", floor.median_ms, floor.p99_ms);
        self.build_long_streams().await?;
        for stream in &LONG_STREAMS {
            let engine = self.long_stream_engine(stream.snapshot);
            check_load(&engine, stream).await?;
            if !stream.snapshot {
                self.long_stream_vs_raw(stream, engine).await?.print();
                continue;
            }
            let mut probe = OneStream::new(engine, stream.id);
            let ours = Latency::of(load::latencies(&mut probe, 0, stream.budget).await?).ok_or("no command timed")?;
            let theirs = match &self.theirs {
                Some(theirs) => theirs.latency(stream.id, stream.snapshot, stream.budget).await?,
                None => None,
            };
            eprintln!(
                "{}: ours median {:.3} ms, p99 {:.3} ms ({} commands){}",
                stream.scenario,
                ours.median_ms,
                ours.p99_ms,
                ours.samples,
                theirs.map_or(String::new(), |t| format!(
                    "; cqrs-es median {:.3} ms, p99 {:.3} ms ({} commands)",
                    t.median_ms, t.p99_ms, t.samples
                ))
            );
            Record::new(stream.scenario, Unit::Millis, ours.median_ms, floor.median_ms)
                .cqrs_es(theirs.map(|t| t.median_ms))
                .p99(ours.p99_ms)
                .print();
        }
        Ok(())
    }

    /// A long stream without snapshot against the raw baseline (see [`crate::long`]): commands
    /// (load, decide, append) against the raw read and fold plus one single-row INSERT, and
    /// loads alone against the raw read and fold alone, one of each in turn (so that both read
    /// the stream at the same lengths, on a machine at the same pace), the budget's time for
    /// each of the six; cqrs-es beside, and the allocations of each (counted apart from the
    /// timed runs).
    async fn long_stream_vs_raw(&self, stream: &LongStream, engine: Engine) -> Result<Record> {
        let mut probe = OneStream::new(engine.clone(), stream.id);
        let mut raw = long::RawLongCommand::new(&self.raw, self.schema, stream.id, self.ids.clone()).await?;
        let mut ours_load = long::OursLoad::new(engine, stream.id);
        let mut collected_load = long::OursLoad::new(long::collecting(&self.store), stream.id);
        let mut paged_load = long::OursLoad::new(long::paged(&self.store), stream.id);
        let mut raw_load = long::RawLoad::new(&self.raw, self.schema, stream.id).await?;
        let (mut ours_ms, mut raw_ms, mut ours_load_ms, mut raw_load_ms) = (vec![], vec![], vec![], vec![]);
        let (mut collected_load_ms, mut paged_load_ms) = (vec![], vec![]);
        // One of each in turn, so that the machine's changes of pace (tens of percent within a
        // minute, some days) fall on all of them alike.
        let started = Instant::now();
        for i in 0..stream.budget.ops {
            if ours_ms.len() >= stream.budget.min_ops && started.elapsed() >= stream.budget.time * 6 {
                break;
            }
            ours_ms.push(timed_op(&mut probe, i).await?);
            raw_ms.push(timed_op(&mut raw, i).await?);
            ours_load_ms.push(timed_op(&mut ours_load, i).await?);
            raw_load_ms.push(timed_op(&mut raw_load, i).await?);
            collected_load_ms.push(timed_op(&mut collected_load, i).await?);
            paged_load_ms.push(timed_op(&mut paged_load, i).await?);
        }
        let paged_load = Latency::of(paged_load_ms).ok_or("no paged load timed")?;
        let collected_allocs = long::allocations(&mut collected_load, 0, LONG_ALLOCATION_OPS).await?;
        let collected_load = Latency::of(collected_load_ms).ok_or("no collecting load timed")?;
        let first = ours_ms.len();
        let ours_allocs = long::allocations(&mut probe, first, LONG_ALLOCATION_OPS).await?;
        let raw_allocs = long::allocations(&mut raw, first, LONG_ALLOCATION_OPS).await?;
        let ours_load_allocs = long::allocations(&mut ours_load, first, LONG_ALLOCATION_OPS).await?;
        let raw_load_allocs = long::allocations(&mut raw_load, first, LONG_ALLOCATION_OPS).await?;
        let ours = Latency::of(ours_ms).ok_or("no command timed")?;
        let raw = Latency::of(raw_ms).ok_or("no raw command timed")?;
        let ours_load = Latency::of(ours_load_ms).ok_or("no load timed")?;
        let raw_load = Latency::of(raw_load_ms).ok_or("no raw load timed")?;
        let theirs = match &self.theirs {
            Some(theirs) => theirs.latency(stream.id, stream.snapshot, stream.budget).await?,
            None => None,
        };
        let n = LONG_ALLOCATION_OPS;
        eprintln!(
            "{}: ours median {:.3} ms, p99 {:.3} ms ({} commands); raw (read + decode + fold + INSERT) median {:.3} ms, \
             p99 {:.3} ms ({}); loads alone: ours median {:.3} ms, raw {:.3} ms ({} each){}",
            stream.scenario,
            ours.median_ms,
            ours.p99_ms,
            ours.samples,
            raw.median_ms,
            raw.p99_ms,
            raw.samples,
            ours_load.median_ms,
            raw_load.median_ms,
            ours_load.samples,
            theirs.map_or(String::new(), |t| format!(
                "; cqrs-es median {:.3} ms, p99 {:.3} ms ({} commands)",
                t.median_ms, t.p99_ms, t.samples
            ))
        );
        eprintln!(
            "{}: allocations per command: ours {:.0} ({:.2} MB), raw {:.0} ({:.2} MB); per load: ours {:.0}, raw {:.0} \
             ({n} each); the load reading each page whole before folding it (as before fold_stream): median {:.3} ms, \
             {:.0} allocations; in pages of 10,000 events (as before the whole stream was asked for): median {:.3} ms",
            stream.scenario,
            ours_allocs.per(n),
            ours_allocs.bytes_per(n) / 1e6,
            raw_allocs.per(n),
            raw_allocs.bytes_per(n) / 1e6,
            ours_load_allocs.per(n),
            raw_load_allocs.per(n),
            collected_load.median_ms,
            collected_allocs.per(n),
            paged_load.median_ms
        );
        Ok(Record::new(stream.scenario, Unit::Millis, ours.median_ms, raw.median_ms)
            .cqrs_es(theirs.map(|t| t.median_ms))
            .p99(ours.p99_ms)
            .with("raw_p99", raw.p99_ms)
            .with("load_ms", ours_load.median_ms)
            .with("raw_load_ms", raw_load.median_ms)
            .with("load_ratio", raw_load.median_ms / ours_load.median_ms)
            .with("allocations_per_command", ours_allocs.per(n))
            .with("raw_allocations_per_command", raw_allocs.per(n))
            .with("allocations_per_load", ours_load_allocs.per(n))
            .with("raw_allocations_per_load", raw_load_allocs.per(n))
            .with("collected_load_ms", collected_load.median_ms)
            .with("paged_load_ms", paged_load.median_ms)
            .with("collected_allocations_per_load", collected_allocs.per(n)))
    }

    /// Writes the long streams: ours through `EventStore::append`, 1,000 events per call, then
    /// one snapshot at the end where the scenario has snapshots; cqrs-es likewise through its
    /// repository.
    async fn build_long_streams(&self) -> Result<()> {
        let snapshots = PgSnapshotStore::new(&self.store);
        let started = Instant::now();
        for stream in &LONG_STREAMS {
            let last = build_stream(&self.store, stream.id, stream.length).await?;
            if stream.snapshot {
                let state = Account { balance: stream.length, folded: 0 };
                snapshots
                    .save_snapshot(Snapshot {
                        stream: last.stream,
                        version: last.last_version,
                        position: last.position,
                        snapshot_version: Account::SNAPSHOT_VERSION,
                        state: serde_json::to_string(&state)?,
                    })
                    .await?;
            }
        }
        eprintln!("long streams: ours built in {:.1} s", started.elapsed().as_secs_f64());
        // The planner's statistics of the table that grew, as autovacuum would gather them on a
        // server in use: without them, the raw read's time moved by a third from one run to
        // the next (2026-12-04), ours (which reads in version order with a limit) did not.
        self.monitor.batch_execute(&format!("ANALYZE \"{}\".events", self.schema)).await?;
        if let Some(theirs) = &self.theirs {
            let started = Instant::now();
            for stream in &LONG_STREAMS {
                let length = usize::try_from(stream.length)?;
                theirs.build_stream(stream.id, length, stream.snapshot).await?;
                theirs.check_stream(stream.id, length, stream.snapshot).await?;
            }
            eprintln!("long streams: cqrs-es built (one INSERT per event) in {:.1} s", started.elapsed().as_secs_f64());
        }
        Ok(())
    }

    /// An engine without a cache, so every command loads; with snapshots every 100 events
    /// when `snapshot`.
    fn long_stream_engine(&self, snapshot: bool) -> Engine {
        let engine = Cqrs::new(self.store.clone()).with_cache_capacity(0);
        if snapshot {
            engine.with_snapshots(PgSnapshotStore::new(&self.store), SnapshotPolicy::every(100))
        } else {
            engine
        }
    }
}

/// Checks that loading `stream` gives the right balance, and that it starts from the snapshot
/// (folds fewer than 100 events) exactly when the scenario has snapshots.
async fn check_load(engine: &Engine, stream: &LongStream) -> Result<()> {
    let (account, version) = engine.load(stream.id).await?;
    let folded_ok = if stream.snapshot { account.folded < 100 } else { account.folded == version };
    if account.balance != version || version < stream.length || !folded_ok {
        return Err(format!(
            "{}: loaded balance {} at version {version} after folding {} events (snapshot: {})",
            stream.scenario, account.balance, account.folded, stream.snapshot
        )
        .into());
    }
    Ok(())
}

/// A throughput run with the CPU spent meanwhile: by this process (the client: the engine,
/// the driver, the runtime) and by the PostgreSQL server (every backend, the WAL writer, ...).
/// What is left of the wall time is waiting: for the disk (the commit's fsync), the network
/// and the scheduler.
#[derive(Debug, Clone, Copy)]
struct Costed {
    rate: Rate,
    client: Option<Spent>,
    server: Option<Spent>,
}

impl Costed {
    /// Microseconds of `spent` per operation.
    fn per_op(&self, spent: Option<Spent>) -> Option<f64> {
        spent.map(|s| s.time.as_secs_f64() * 1e6 / self.rate.ops.max(1) as f64)
    }
}

/// How long operation `i` of `worker` took.
async fn timed_op<W: load::Worker>(worker: &mut W, i: usize) -> Result<Duration> {
    let start = Instant::now();
    worker.op(i).await?;
    Ok(start.elapsed())
}

/// The fastest of `runs`.
fn fastest_costed(runs: &[Costed]) -> Result<Costed> {
    let run = runs.iter().copied().max_by(|a, b| a.rate.per_second().total_cmp(&b.rate.per_second()));
    Ok(run.ok_or("nothing was measured")?)
}

/// Notes where a command's time goes, ours against raw's (CPU here, CPU on the server, per
/// command), on stderr and in `record`.
fn note_costs(scenario: &str, ours: &Costed, raw: &Costed, record: Record) -> Record {
    let show = |us: Option<f64>| us.map_or_else(|| "?".to_owned(), |us| format!("{us:.0}"));
    let exact = [ours.client, ours.server, raw.client, raw.server].iter().flatten().all(|s| s.exact);
    eprintln!(
        "{scenario}: CPU per command (µs): ours {} here and {} on the server; raw {} here and {} on the server{}",
        show(ours.per_op(ours.client)),
        show(ours.per_op(ours.server)),
        show(raw.per_op(raw.client)),
        show(raw.per_op(raw.server)),
        if exact { "" } else { " (some in 10 ms ticks)" }
    );
    record
        .with("cpu_us_per_command", ours.per_op(ours.client))
        .with("server_cpu_us_per_command", ours.per_op(ours.server))
        .with("raw_cpu_us_per_command", raw.per_op(raw.client))
        .with("raw_server_cpu_us_per_command", raw.per_op(raw.server))
}

/// The fastest of `rates`.
fn fastest(rates: &[Rate]) -> Result<Rate> {
    let rate = rates.iter().copied().max_by(|a, b| a.per_second().total_cmp(&b.per_second()));
    Ok(rate.ok_or("nothing was measured")?)
}

/// Notes a throughput comparison on stderr.
fn note_rates(scenario: &str, what: &str, ours: &Rate, raw: &Rate, theirs: Option<&Rate>) {
    let show = |r: &Rate| format!("{} {what} in {:.2} s = {:.0}/s", r.ops, r.elapsed.as_secs_f64(), r.per_second());
    let theirs = theirs.map_or(String::new(), |t| format!("; cqrs-es {}", show(t)));
    eprintln!("{scenario}: ours {}; raw {}{theirs}", show(ours), show(raw));
}

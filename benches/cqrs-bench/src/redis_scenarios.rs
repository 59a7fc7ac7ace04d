//! The Redis scenarios: a projector on PostgreSQL events writing views to Redis, measured in
//! one run in a PostgreSQL schema and under a Redis key prefix of its own, both deleted at the
//! end.

use std::sync::Arc;
use std::time::{Duration, Instant};

use eventloom_core::{
    Projection,
    read::{Projector, ViewReader},
    store::ViewStore,
    write::Cqrs,
};
use eventloom_postgres::{PgConfig, PgEventStore};
use eventloom_redis::RedisViewStore;
use redis::aio::ConnectionManager;

use crate::Result;
use crate::domain::{Deposit, account_ids};
use crate::live_lag::{LiveProjector, Outliers, Poller, Seen, Sent, lags, paced_deposits};
use crate::load::{self, Budget, Rate};
use crate::ours::{Commands, Engine};
use crate::phases::{PhaseTimer, Totals};
use crate::read_model::{
    AccountView, AccountViews, CatchUpLoad, RawCatchUp, RawGet, RawViewWrites, ViewGet, any_keys, delete_keys, view_key,
};
use crate::report::{Latency, Record, Unit};

/// Streams the catch-up reads, with ids `cu-0` .. `cu-999`.
const STREAMS: usize = 1_000;
/// The id prefix of the catch-up's streams.
const CATCH_UP_IDS: &str = "cu-";
/// Events per `EventStore::append` when filling the store.
const PER_APPEND: usize = 100;
/// Appends per stream: each stream gets `PER_APPEND * APPENDS_PER_STREAM` events.
const APPENDS_PER_STREAM: usize = 2;
/// Events the catch-up projects.
const EVENTS: usize = STREAMS * PER_APPEND * APPENDS_PER_STREAM;
/// Tasks appending (a divisor of [`STREAMS`], so that each stream's appends stay in order).
const LOAD_TASKS: usize = 4;
/// The projector batch sizes tried.
const BATCH_SIZES: [usize; 3] = [500, 2_000, 5_000];
/// How many times each throughput is measured; the fastest run counts.
const ROUNDS: usize = 2;
/// Live deposits, their rate per second and the tasks sending them.
const LIVE_COMMANDS: usize = 5_000;
const LIVE_RATE: f64 = 1_000.0;
const LIVE_TASKS: usize = 4;
/// The lag aimed at; the notes explain the lags above it.
const LAG_AIM: Duration = Duration::from_millis(20);
/// How long a view may take to catch up before the run fails.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(30);
/// Queries timed per system, in blocks that alternate between the two.
const QUERIES: usize = 20_000;
const QUERY_BLOCK: usize = 1_000;
/// The view queried.
const QUERIED: &str = "cu-0";

/// Runs the Redis scenarios against PostgreSQL at `pg_url` and Redis at `redis_url`, printing
/// one JSON line per scenario.
pub async fn run(pg_url: &str, redis_url: &str) -> Result<()> {
    let timer = PhaseTimer::install();
    if timer.is_none() {
        eprintln!("phases: not timed (another tracing subscriber is installed)");
    }
    let monitor = crate::scenarios::monitor(pg_url).await?;
    let mut redis = ConnectionManager::new(redis::Client::open(redis_url)?).await?;
    describe_redis(&mut redis).await?;
    let schema = crate::scenarios::fresh_schema(&monitor, "bench_redis").await?;
    let prefix = fresh_prefix(&mut redis).await?;
    eprintln!("Redis key prefix: {prefix} (deleted at the end)");
    let outcome = async {
        let bench = RedisBench::setup(pg_url, &schema, redis_url, &prefix, redis.clone(), timer).await?;
        bench.run_all().await
    }
    .await;
    let dropped = monitor.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE")).await;
    let deleted = delete_keys(&mut redis, &prefix).await;
    if let Ok(keys) = &deleted {
        eprintln!("cleanup: dropped schema {schema}, deleted {keys} Redis keys under {prefix}");
    }
    outcome?;
    dropped?;
    deleted?;
    Ok(())
}

/// A key prefix of this run's own, `cqrs-bench:<pid>:<ms since the epoch>:`, checked to hold
/// no key.
pub(crate) async fn fresh_prefix(redis: &mut ConnectionManager) -> Result<String> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis();
    let prefix = format!("cqrs-bench:{}:{now}:", std::process::id());
    if any_keys(redis, &prefix).await? {
        return Err(format!("Redis already holds keys under {prefix:?}").into());
    }
    Ok(prefix)
}

/// Says which Redis this is.
async fn describe_redis(redis: &mut ConnectionManager) -> Result<()> {
    let info: String = redis::cmd("INFO").arg("server").query_async(redis).await?;
    let version = info.lines().find_map(|line| line.strip_prefix("redis_version:")).unwrap_or("of unknown version");
    eprintln!("Redis {}", version.trim());
    Ok(())
}

/// One live run: the deposits, how long sending them took, what the poller saw, and the
/// projector's phases meanwhile.
struct LiveRun {
    sent: Vec<Sent>,
    sending: Duration,
    seen: Seen,
    phases: Option<Totals>,
}

/// One catch-up measured.
struct CatchUp {
    batch: usize,
    rate: Rate,
    phases: Option<Totals>,
}

/// Everything the scenarios share.
struct RedisBench<'a> {
    pg_url: &'a str,
    config: PgConfig,
    store: PgEventStore,
    redis_url: &'a str,
    prefix: &'a str,
    redis: ConnectionManager,
    timer: Option<PhaseTimer>,
}

impl<'a> RedisBench<'a> {
    /// Migrates the store into `schema`.
    async fn setup(
        pg_url: &'a str,
        schema: &str,
        redis_url: &'a str,
        prefix: &'a str,
        redis: ConnectionManager,
        timer: Option<PhaseTimer>,
    ) -> Result<Self> {
        let config = PgConfig::from_url(pg_url)?.schema(schema)?;
        let store = PgEventStore::connect(config.clone()).await?;
        store.migrate().await?;
        Ok(RedisBench { pg_url, config, store, redis_url, prefix, redis, timer })
    }

    /// Every scenario, in order: the live projector reads the catch-up's events too, and the
    /// query reads a view it wrote.
    async fn run_all(&self) -> Result<()> {
        self.catch_up().await?.print();
        self.catch_up_allocations().await?.print();
        self.live_lag("live_lag", "live", false).await?.print();
        self.live_lag("live_lag_combined", "live_combined", true).await?.print();
        self.view_query().await?.print();
        Ok(())
    }

    /// The key prefix of one part of the run.
    fn prefix_of(&self, part: &str) -> String {
        format!("{}{part}:", self.prefix)
    }

    /// A view store under the key prefix of `part`.
    async fn views(&self, part: &str) -> Result<RedisViewStore> {
        Ok(RedisViewStore::connect(self.redis_url, &self.prefix_of(part)).await?)
    }

    /// `projection_catch_up`: events per second that `Projector::catch_up` folds from
    /// PostgreSQL into fresh Redis views, at each batch size (the fastest counts), against
    /// pipelined raw `SET`s of every event's view.
    async fn catch_up(&self) -> Result<Record> {
        let scenario = "projection_catch_up";
        self.fill().await?;
        let mut best: Option<CatchUp> = None;
        for batch in BATCH_SIZES {
            let mut runs = Vec::with_capacity(ROUNDS);
            for round in 0..ROUNDS {
                runs.push(self.catch_up_once(batch, round).await?);
            }
            let fastest = runs.into_iter().max_by(|a, b| a.rate.per_second().total_cmp(&b.rate.per_second()));
            let fastest = fastest.ok_or("no catch-up was measured")?;
            eprintln!("{scenario}: batch {batch}: {:.0} events/s (fastest of {ROUNDS})", fastest.rate.per_second());
            if best.as_ref().is_none_or(|b| fastest.rate.per_second() > b.rate.per_second()) {
                best = Some(fastest);
            }
        }
        let best = best.ok_or("no catch-up was measured")?;
        let raw = self.raw_catch_up(best.batch).await?;
        let sets = self.raw_view_writes().await?;
        eprintln!(
            "{scenario}: best batch size {}: {EVENTS} events in {:.2} s = {:.0} events/s; raw read and SETs {:.2} s = \
             {:.0}/s ({:.2}x); SETs alone {} in {:.2} s = {:.0}/s ({:.2}x)",
            best.batch,
            best.rate.elapsed.as_secs_f64(),
            best.rate.per_second(),
            raw.elapsed.as_secs_f64(),
            raw.per_second(),
            best.rate.per_second() / raw.per_second(),
            sets.ops,
            sets.elapsed.as_secs_f64(),
            sets.per_second(),
            best.rate.per_second() / sets.per_second(),
        );
        if let Some(phases) = &best.phases {
            note_phases(scenario, best.rate.elapsed, phases);
        }
        Ok(Record::new(scenario, Unit::PerSecond, best.rate.per_second(), raw.per_second())
            .with("batch", best.batch)
            .with("sets_alone_per_second", sets.per_second())
            .with("ratio_to_sets_alone", best.rate.per_second() / sets.per_second()))
    }

    /// `allocations_per_projected_event`: one more catch-up of the same events (untimed, the
    /// projector's default batch size) with the process's allocator counting
    /// ([`crate::alloc`]), against the raw `SET`s of every event's view.
    async fn catch_up_allocations(&self) -> Result<Record> {
        let views = self.views("alloc").await?;
        let projector = Projector::new(self.store.clone(), views.clone());
        let measure = crate::alloc::Measure::start();
        let checkpoint = projector.catch_up(&AccountViews).await?;
        let ours = measure.stop();
        if checkpoint.is_none() {
            return Err("the catch-up processed nothing".into());
        }
        check_views(views).await?;
        let prefix = self.prefix_of("rawalloc");
        let mut raw = RawViewWrites::new(self.redis.clone(), &prefix, CATCH_UP_IDS, STREAMS, PER_APPEND);
        let measure = crate::alloc::Measure::start();
        raw.write(EVENTS).await?;
        let raw = measure.stop();
        eprintln!(
            "allocations_per_projected_event: ours {:.1} allocations and {:.0} bytes per event; raw SETs {:.1} and {:.0} \
             ({EVENTS} events, every thread of the process counted)",
            ours.per(EVENTS),
            ours.bytes_per(EVENTS),
            raw.per(EVENTS),
            raw.bytes_per(EVENTS)
        );
        Ok(Record::new("allocations_per_projected_event", Unit::Allocations, ours.per(EVENTS), raw.per(EVENTS))
            .with("bytes_per_event", ours.bytes_per(EVENTS))
            .with("raw_bytes_per_event", raw.bytes_per(EVENTS)))
    }

    /// Appends the catch-up's events: [`STREAMS`] account streams of [`PER_APPEND`] deposits
    /// per `EventStore::append`, round-robin, from [`LOAD_TASKS`] tasks.
    async fn fill(&self) -> Result<()> {
        let appends = STREAMS * APPENDS_PER_STREAM;
        let workers =
            (0..LOAD_TASKS).map(|_| CatchUpLoad::new(self.store.clone(), STREAMS, PER_APPEND, CATCH_UP_IDS)).collect();
        let rate = load::throughput(workers, Budget::new(appends, 300)).await?;
        if rate.ops != appends {
            return Err(format!("filling the store: only {} of {appends} appends in the time allowed", rate.ops).into());
        }
        eprintln!(
            "projection_catch_up: appended {EVENTS} events ({STREAMS} streams x {} events, {PER_APPEND} per append, \
             {LOAD_TASKS} tasks) in {:.1} s",
            PER_APPEND * APPENDS_PER_STREAM,
            rate.elapsed.as_secs_f64()
        );
        Ok(())
    }

    /// One catch-up from scratch (fresh views under a prefix of its own) with `batch` events
    /// per batch, timed and checked.
    async fn catch_up_once(&self, batch: usize, round: usize) -> Result<CatchUp> {
        let views = self.views(&format!("cu{batch}-{round}")).await?;
        let projector = Projector::new(self.store.clone(), views.clone()).with_batch_size(batch);
        if let Some(timer) = &self.timer {
            timer.start();
        }
        let started = Instant::now();
        let checkpoint = projector.catch_up(&AccountViews).await?;
        let elapsed = started.elapsed();
        let phases = self.timer.as_ref().map(PhaseTimer::stop);
        if checkpoint.is_none() {
            return Err("the catch-up processed nothing".into());
        }
        check_views(views).await?;
        Ok(CatchUp { batch, rate: Rate { ops: EVENTS, elapsed }, phases })
    }

    /// The raw baseline ([`RawCatchUp`]): the same events read from PostgreSQL with
    /// tokio-postgres by the same ordered query in pages of `batch`, decoded and folded, one
    /// pipelined `SET` per event; the fastest of [`ROUNDS`] runs, each on a connection of its
    /// own, checked.
    async fn raw_catch_up(&self, batch: usize) -> Result<Rate> {
        let mut runs = Vec::with_capacity(ROUNDS);
        for round in 0..ROUNDS {
            let prefix = self.prefix_of(&format!("rawcu{round}"));
            let client = crate::scenarios::monitor(self.pg_url).await?;
            let schema = self.config.schema_name();
            let mut raw = RawCatchUp::new(client, schema, self.redis.clone(), &prefix, batch).await?;
            let started = Instant::now();
            let events = raw.run().await?;
            let elapsed = started.elapsed();
            if events != EVENTS {
                return Err(format!("the raw catch-up read {events} events, expected {EVENTS}").into());
            }
            runs.push(Rate { ops: events, elapsed });
        }
        eprintln!(
            "projection_catch_up: raw = the {EVENTS} events read from PostgreSQL by the event store's read_all.sql \
             (tokio-postgres, pages of {batch}), each payload decoded with serde_json and folded into its account's \
             view, one SET of the view's JSON per event pipelined per page (each page's pipeline sent before the \
             next page is read)"
        );
        let fastest = runs.into_iter().max_by(|a, b| a.per_second().total_cmp(&b.per_second()));
        Ok(fastest.ok_or("no raw run")?)
    }

    /// The SETs alone: one pipelined `SET` of the view's JSON per event, the fastest of
    /// [`ROUNDS`] runs.
    async fn raw_view_writes(&self) -> Result<Rate> {
        let mut runs = Vec::with_capacity(ROUNDS);
        let mut bytes = 0;
        for round in 0..ROUNDS {
            let prefix = self.prefix_of(&format!("raw{round}"));
            let mut raw = RawViewWrites::new(self.redis.clone(), &prefix, CATCH_UP_IDS, STREAMS, PER_APPEND);
            let started = Instant::now();
            bytes = raw.write(EVENTS).await?;
            runs.push(Rate { ops: EVENTS, elapsed: started.elapsed() });
        }
        eprintln!(
            "projection_catch_up: raw = one SET per event of that event's view JSON to the view's key ({EVENTS} SETs \
             over {STREAMS} keys, {bytes} bytes of values), pipelines of 1,000 on a ConnectionManager, no \
             PostgreSQL read; ours reads the events from PostgreSQL and writes each view once per batch it appears in"
        );
        let fastest = runs.into_iter().max_by(|a, b| a.per_second().total_cmp(&b.per_second()));
        Ok(fastest.ok_or("no raw run")?)
    }

    /// `live_lag`: the time from a deposit's return until the view store's checkpoint reaches
    /// its position, with `Projector::run` live on a PostgreSQL store of its own (as a
    /// projector in another process would have) and deposits paced at [`LIVE_RATE`].
    /// `live_lag_combined`: the same with the commands' store combining writes
    /// (`PgConfig::write_combining`), whose bigger transactions hold the subscribers back
    /// longer.
    async fn live_lag(&self, scenario: &'static str, part: &str, combining: bool) -> Result<Record> {
        let views = self.views(part).await?;
        let reader = ViewReader::<AccountView>::new(views.clone(), AccountViews::NAME);
        let projector = Projector::new(PgEventStore::connect(self.config.clone()).await?, views);
        projector.catch_up(&AccountViews).await?;
        let ids = account_ids();
        let store = if combining {
            PgEventStore::connect(self.config.clone().write_combining(true)).await?
        } else {
            self.store.clone()
        };
        let engine = Cqrs::new(store);
        Commands::new(engine.clone(), ids.clone()).warm().await?;
        let live = LiveProjector::start(projector);
        let run = self.paced_run(&engine, &ids, &reader).await;
        // The projector's own failure, if any, says more than a timeout waiting for it.
        live.stop().await?;
        let run = run?;
        let lags = lags(&run.sent, &run.seen)?;
        let outliers = Outliers::of(&run.sent, &lags, &run.seen, LAG_AIM);
        let lag = Latency::of(lags).ok_or("no lag measured")?;
        note_live(scenario, &lag, &run, outliers);
        Ok(Record::without_raw(scenario, Unit::Millis, lag.median_ms).p99(lag.p99_ms))
    }

    /// With the projector live: waits until it is past the warm-up, then sends the paced
    /// deposits while a poller watches the checkpoint, and waits until the last is visible.
    async fn paced_run(
        &self,
        engine: &Engine,
        ids: &Arc<[String]>,
        reader: &ViewReader<AccountView>,
    ) -> Result<LiveRun> {
        let outcome = engine.execute(Deposit { id: ids[0].clone(), amount: 1 }).await?;
        reader.wait_for(outcome.position, CATCH_UP_TIMEOUT).await?;
        if let Some(timer) = &self.timer {
            timer.start();
        }
        let poller = Poller::start(reader.clone());
        let started = Instant::now();
        let sent = paced_deposits(engine, ids, LIVE_COMMANDS, LIVE_RATE, LIVE_TASKS).await?;
        let sending = started.elapsed();
        let last = sent.iter().map(|s| s.position).max().ok_or("no deposit was sent")?;
        reader.wait_for(last, CATCH_UP_TIMEOUT).await?;
        let seen = poller.finish().await?;
        let phases = self.timer.as_ref().map(PhaseTimer::stop);
        Ok(LiveRun { sent, sending, seen, phases })
    }

    /// `view_query`: the latency of `ViewReader::get` of one view against a raw `GET` of its
    /// key, each on a `ConnectionManager` of its own, in alternating blocks.
    async fn view_query(&self) -> Result<Record> {
        let scenario = "view_query";
        let prefix = self.prefix_of("live");
        let views = self.views("live").await?;
        let live = views.status(AccountViews::NAME).await?.live.ok_or("the live_lag scenario built no views")?;
        let reader = ViewReader::<AccountView>::new(views, AccountViews::NAME);
        let mut ours = ViewGet { reader, id: QUERIED.to_owned() };
        let connection = ConnectionManager::new(redis::Client::open(self.redis_url)?).await?;
        let mut raw = RawGet { connection, key: view_key(&prefix, live.id, QUERIED) };
        check_same_view(&mut ours, &mut raw).await?;
        let block = Budget::new(QUERY_BLOCK, 30);
        // Warm-up, not counted.
        load::latencies(&mut ours, 0, block).await?;
        load::latencies(&mut raw, 0, block).await?;
        let (mut ours_samples, mut raw_samples) = (Vec::with_capacity(QUERIES), Vec::with_capacity(QUERIES));
        for _ in 0..QUERIES / QUERY_BLOCK {
            ours_samples.extend(load::latencies(&mut ours, 0, block).await?);
            raw_samples.extend(load::latencies(&mut raw, 0, block).await?);
        }
        let ours = Latency::of(ours_samples).ok_or("no query timed")?;
        let raw = Latency::of(raw_samples).ok_or("no GET timed")?;
        eprintln!(
            "{scenario}: ViewReader::get median {:.3} ms, p99 {:.3} ms; raw GET median {:.3} ms, p99 {:.3} ms \
             ({} queries each, alternating blocks of {QUERY_BLOCK})",
            ours.median_ms, ours.p99_ms, raw.median_ms, raw.p99_ms, ours.samples
        );
        Ok(Record::new(scenario, Unit::Millis, ours.median_ms, raw.median_ms).p99(ours.p99_ms))
    }
}

/// Checks that every catch-up view holds its stream's deposits.
async fn check_views(views: RedisViewStore) -> Result<()> {
    let reader = ViewReader::<AccountView>::new(views, AccountViews::NAME);
    let ids: Vec<String> = (0..STREAMS).map(|n| format!("{CATCH_UP_IDS}{n}")).collect();
    let length = u64::try_from(PER_APPEND * APPENDS_PER_STREAM)?;
    let expected = AccountView { balance: length, version: length };
    for (id, view) in ids.iter().zip(reader.get_many(&ids).await?) {
        if view.as_ref() != Some(&expected) {
            return Err(format!("view {id} is {view:?} after the catch-up, expected {expected:?}").into());
        }
    }
    Ok(())
}

/// Checks that the raw `GET` reads the view `ViewReader::get` reads (the key layout matches).
async fn check_same_view(ours: &mut ViewGet, raw: &mut RawGet) -> Result<()> {
    let view = ours.reader.get(&ours.id).await?;
    let json: Option<String> = redis::cmd("GET").arg(&raw.key).query_async(&mut raw.connection).await?;
    let parsed = json.as_deref().map(serde_json::from_str::<AccountView>).transpose()?;
    if view.is_none() || parsed != view {
        return Err(format!(
            "key {} holds {json:?} but ViewReader::get returns {view:?}: has the key layout of eventloom-redis changed?",
            raw.key
        )
        .into());
    }
    Ok(())
}

/// Notes where a catch-up's wall time went, phase by phase.
fn note_phases(scenario: &str, wall: Duration, phases: &Totals) {
    let (read, query) = (phases.get("subscription"), phases.get("read_all"));
    let (mget, commit) = (phases.get("load_views"), phases.get("projection_commit"));
    if commit.count == 0 {
        eprintln!("{scenario}: phases not seen (the framework's spans were renamed?)");
        return;
    }
    let ms = |d: Duration| d.as_secs_f64() * 1_000.0;
    let share = |d: Duration| 100.0 * d.as_secs_f64() / wall.as_secs_f64();
    let rest = wall.saturating_sub(read.time + mget.time + commit.time);
    let rows = read.time.saturating_sub(query.time);
    eprintln!(
        "{scenario}: where the time goes ({} batches, {:.0} ms): PostgreSQL read_all query {:.0} ms ({:.0}%); \
         rows to events (pool checkout, metadata JSON) {:.0} ms ({:.0}%); MGET of {} views {:.0} ms ({:.0}%); Lua \
         commit of {} views {:.0} ms ({:.0}%); payload decode, fold, view JSON and the rest {:.0} ms ({:.0}%)",
        commit.count,
        ms(wall),
        ms(query.time),
        share(query.time),
        ms(rows),
        share(rows),
        mget.views,
        ms(mget.time),
        share(mget.time),
        commit.views,
        ms(commit.time),
        share(commit.time),
        ms(rest),
        share(rest),
    );
}

/// Notes the live run: the rate achieved, the poller's resolution, the projector's batches, and
/// what explains the worst lags.
fn note_live(scenario: &str, lag: &Latency, run: &LiveRun, outliers: Option<Outliers>) {
    let (commands, sending, seen) = (run.sent.len(), run.sending, &run.seen);
    eprintln!(
        "{scenario}: {commands} deposits in {:.2} s ({:.0}/s, {LIVE_TASKS} tasks, projector on a PostgreSQL pool of \
         its own woken by NOTIFY); lag median {:.3} ms, p99 {:.3} ms; checkpoint polled {} times ({:.0}/s, one \
         status script in flight)",
        sending.as_secs_f64(),
        commands as f64 / sending.as_secs_f64(),
        lag.median_ms,
        lag.p99_ms,
        seen.polls,
        seen.polls as f64 / seen.elapsed.as_secs_f64(),
    );
    let ms = |d: Duration| d.as_secs_f64() * 1_000.0;
    let s = |d: Duration| d.as_secs_f64();
    if let Some(phases) = &run.phases {
        let (read, query) = (phases.get("subscription"), phases.get("read_all"));
        let (mget, commit) = (phases.get("load_views"), phases.get("projection_commit"));
        eprintln!(
            "{scenario}: projector {} batches ({:.1} views each); per batch mean (max): read_all call {:.3} ({:.1}) ms, \
             of which the query {:.3} ({:.1}) ms; MGET {:.3} ({:.1}) ms; Lua commit {:.3} ({:.1}) ms",
            commit.count,
            commit.views as f64 / commit.count.max(1) as f64,
            read.mean_ms(),
            ms(read.max),
            query.mean_ms(),
            ms(query.max),
            mget.mean_ms(),
            ms(mget.max),
            commit.mean_ms(),
            ms(commit.max),
        );
    }
    if let Some(o) = outliers {
        eprintln!(
            "{scenario}: {} lags over {} ms; worst {:.1} ms (command returned at {:.2} s); slowest command {:.1} ms \
             (issued at {:.2} s; until it commits, reads stop below it and every later event waits); longest \
             checkpoint pause {:.1} ms (from {:.2} s)",
            o.over,
            LAG_AIM.as_millis(),
            ms(o.worst.0),
            s(o.worst.1),
            ms(o.slowest.0),
            s(o.slowest.1),
            ms(o.pause.0),
            s(o.pause.1),
        );
    }
}

//! `cqrs-bench projections`: what one [`ProjectionGroup`] costs against one
//! [`Projector::run`] per projection, for 1 and for 8 projections of the same events, on the
//! PostgreSQL event store with PostgreSQL views and leases (what an `App` on `PgStores` runs: its
//! projections share one group; before groups each had a runner), in one process, in a schema of
//! its own that is dropped at the end.
//!
//! The projectors read the log through [`Counted`], which counts their reads, and write through
//! [`Watched`], which tells when the last of them has its live views at the head. The log is
//! [`PART`] deposits over [`STREAMS`] account streams, then as many again:
//!
//! - `projections_{1,8}_build`: new projections (no views yet) build their views from the first
//!   part of the log and go live;
//! - `projections_{1,8}_resume`: the same projections, stopped while the second part was
//!   appended, start again and catch up on it;
//! - `projections_8_idle`: the 8 live and caught up, nothing appended, for [`IDLE`];
//! - `projections_8_live`: the 8 live while [`LIVE_COMMANDS`] deposits go through the engine at
//!   [`LIVE_RATE`] per second, until the last is in every projection's views.
//!
//! Each scenario runs both ways in the same run, on the same log: `ours` is the group, `raw` the
//! separate runners.

use std::time::{Duration, Instant};

use eventloom_core::model::ExpectedVersion;
use eventloom_core::prelude::*;
use eventloom_core::read::{MemberHandle, MemberState, ProjectionGroup, Projector, ViewReader};
use eventloom_core::store::{EventStore, ViewStore};
use eventloom_core::write::Cqrs;
use eventloom_postgres::{PgConfig, PgEventStore, PgLeases, PgViewStore};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::Result;
use crate::counted::{Counted, Reads, Watched};
use crate::cpu::{Reading, Server, Spent};
use crate::domain::{Account, AccountEvent, EventMaker, account_ids};
use crate::live_lag::paced_deposits;
use crate::load::{self, Budget, Worker};
use crate::ours::{Commands, Engine};
use crate::read_model::{AccountView, AccountViews};
use crate::report::{Compared, GroupFigures, Record, Unit};

/// Account streams of the log, `pg-0` .. `pg-399`.
const STREAMS: usize = 400;
/// Their id prefix.
const IDS: &str = "pg-";
/// Events per `EventStore::append` when filling the log.
const PER_APPEND: usize = 25;
/// Appends per stream in each part of the log.
const APPENDS_PER_PART: usize = 2;
/// Events in each part of the log: 20,000.
const PART: usize = STREAMS * PER_APPEND * APPENDS_PER_PART;
/// Tasks appending (a divisor of [`STREAMS`], so that each stream's appends stay in order).
const FILL_TASKS: usize = 4;
/// The many projections.
const MANY: usize = 8;
/// How long a catch-up may take before the run fails.
const TIMEOUT: Duration = Duration::from_secs(120);
/// The pause before each measurement, for the previous one's connections and writes to settle.
const SETTLE: Duration = Duration::from_secs(2);
/// How long the idle measurement lasts.
const IDLE: Duration = Duration::from_secs(5);
/// Live deposits, their rate per second and the tasks sending them.
const LIVE_COMMANDS: usize = 2_000;
const LIVE_RATE: f64 = 200.0;
const LIVE_TASKS: usize = 4;

/// The projections' names: one row per way of running them (each builds its own views), and
/// one for the warm-up.
const NAMES: [[&str; MANY]; 5] = [
    ["sep1_0", "sep1_1", "sep1_2", "sep1_3", "sep1_4", "sep1_5", "sep1_6", "sep1_7"],
    ["grp1_0", "grp1_1", "grp1_2", "grp1_3", "grp1_4", "grp1_5", "grp1_6", "grp1_7"],
    ["sep8_0", "sep8_1", "sep8_2", "sep8_3", "sep8_4", "sep8_5", "sep8_6", "sep8_7"],
    ["grp8_0", "grp8_1", "grp8_2", "grp8_3", "grp8_4", "grp8_5", "grp8_6", "grp8_7"],
    ["warm_0", "warm_1", "warm_2", "warm_3", "warm_4", "warm_5", "warm_6", "warm_7"],
];

/// The projection [`AccountViews`] under the name `NAMES[C][N]`: the same fold, views of its own.
struct Balances<const C: usize, const N: usize>;

impl<const C: usize, const N: usize> Projection for Balances<C, N> {
    const NAME: &'static str = NAMES[C][N];
    type Events = Account;
    type View = AccountView;

    fn apply(&self, view: &mut Option<AccountView>, event: &EventEnvelope<AccountEvent>) -> Result<(), BoxError> {
        AccountViews.apply(view, event)
    }
}

/// Resolves once `stop` says so (or its sender is gone).
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// One projection, started either way.
trait Member: Send + Sync {
    fn name(&self) -> &'static str;
    /// On a `Projector::run` of its own, on a task of its own.
    fn spawn(&self, projector: &Projector<Counted>, stop: &watch::Receiver<bool>) -> ProjectorTask;
    /// As a member of `group`.
    fn join(&self, group: &mut ProjectionGroup<Counted>) -> MemberHandle;
}

type ProjectorTask = JoinHandle<eventloom_core::Result<()>>;

impl<const C: usize, const N: usize> Member for Balances<C, N> {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn spawn(&self, projector: &Projector<Counted>, stop: &watch::Receiver<bool>) -> ProjectorTask {
        let (projector, stop) = (projector.clone(), stop.clone());
        tokio::spawn(async move { projector.run(Balances::<C, N>, stopped(stop)).await })
    }

    fn join(&self, group: &mut ProjectionGroup<Counted>) -> MemberHandle {
        group.add(Balances::<C, N>)
    }
}

/// The first `count` projections of row `C` of [`NAMES`].
fn members<const C: usize>(count: usize) -> Vec<Box<dyn Member>> {
    let all: [Box<dyn Member>; MANY] = [
        Box::new(Balances::<C, 0>),
        Box::new(Balances::<C, 1>),
        Box::new(Balances::<C, 2>),
        Box::new(Balances::<C, 3>),
        Box::new(Balances::<C, 4>),
        Box::new(Balances::<C, 5>),
        Box::new(Balances::<C, 6>),
        Box::new(Balances::<C, 7>),
    ];
    all.into_iter().take(count).collect()
}

/// How the projections run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Way {
    /// Each on a `Projector::run` of its own (how the App ran projections before groups).
    Separate,
    /// All in one `ProjectionGroup` (what the App does).
    Group,
}

/// Some projections and the way they run.
struct Config {
    way: Way,
    members: Vec<Box<dyn Member>>,
}

impl Config {
    fn names(&self) -> Vec<&'static str> {
        self.members.iter().map(|m| m.name()).collect()
    }

    fn describe(&self) -> String {
        let n = self.members.len();
        match self.way {
            Way::Separate => format!("{n} separate runner(s)"),
            Way::Group => format!("one group of {n}"),
        }
    }
}

/// Projections running, until stopped.
enum Running {
    Separate { stop: watch::Sender<bool>, tasks: Vec<ProjectorTask> },
    Group { stop: watch::Sender<bool>, task: ProjectorTask, handles: Vec<MemberHandle>, watchers: Vec<Watcher> },
}

/// Notes what a group member does (its state, and when it joins and leaves the shared read), as
/// offsets from the group's start.
type Watcher = JoinHandle<Vec<(Duration, String)>>;

fn watch_membership(handle: MemberHandle, started: Instant) -> Watcher {
    tokio::spawn(async move {
        let (mut shared, mut state) = (false, MemberState::Starting);
        let mut changes = Vec::new();
        loop {
            let status = handle.wait_until(|s| s.shared != shared || s.state != state).await;
            if status.shared == shared && status.state == state {
                // The last status: the group is gone.
                return changes;
            }
            if status.state != state {
                changes.push((started.elapsed(), format!("{:?}", status.state).to_lowercase()));
            }
            if status.shared != shared {
                changes.push((started.elapsed(), (if status.shared { "joined" } else { "left" }).to_owned()));
            }
            (shared, state) = (status.shared, status.state);
            if matches!(state, MemberState::Stopped | MemberState::Failed) {
                return changes;
            }
        }
    })
}

/// What a member did, shortly: its first changes, and how often it left the shared read.
fn describe_changes(changes: &[(Duration, String)]) -> String {
    const SHOWN: usize = 6;
    let mut text: Vec<String> =
        changes.iter().take(SHOWN).map(|(at, what)| format!("{what} {:.0} ms", ms(*at))).collect();
    if changes.len() > SHOWN {
        let left = changes.iter().filter(|(_, what)| what == "left").count();
        text.push(format!("... ({} changes, left the shared read {left} times)", changes.len()));
    }
    if !changes.iter().any(|(_, what)| what == "joined") {
        text.push("never joined".to_owned());
    }
    text.join(", ")
}

impl Running {
    fn start(config: &Config, projector: &Projector<Counted>) -> Self {
        let (stop, stopping) = watch::channel(false);
        match config.way {
            Way::Separate => {
                let tasks = config.members.iter().map(|m| m.spawn(projector, &stopping)).collect();
                Running::Separate { stop, tasks }
            }
            Way::Group => {
                let started = Instant::now();
                let mut group = projector.group();
                let handles: Vec<MemberHandle> = config.members.iter().map(|m| m.join(&mut group)).collect();
                let watchers = handles.iter().map(|h| watch_membership(h.clone(), started)).collect();
                let task = tokio::spawn(group.run(stopped(stopping)));
                Running::Group { stop, task, handles, watchers }
            }
        }
    }

    /// In a group: how many members the shared read feeds now.
    fn shared(&self) -> Option<usize> {
        match self {
            Running::Separate { .. } => None,
            Running::Group { handles, .. } => Some(handles.iter().filter(|h| h.status().shared).count()),
        }
    }

    /// In a group: waits (up to `timeout`) until every member is live on the shared read; returns
    /// how many are.
    async fn all_shared(&self, timeout: Duration) -> Option<usize> {
        let Running::Group { handles, .. } = self else { return None };
        let _ = tokio::time::timeout(timeout, async {
            for handle in handles {
                handle.wait_until(|s| s.shared && s.state == MemberState::Running).await;
            }
        })
        .await;
        self.shared()
    }

    /// Stops every runner after the batch it is writing; fails if one failed. In a group, says
    /// when each member joined and left the shared read.
    async fn stop(self) -> Result<Option<String>> {
        match self {
            Running::Separate { stop, tasks } => {
                stop.send_replace(true);
                for task in tasks {
                    task.await??;
                }
                Ok(None)
            }
            Running::Group { stop, task, handles, watchers } => {
                stop.send_replace(true);
                task.await??;
                let mut notes = Vec::new();
                for (handle, watcher) in handles.iter().zip(watchers) {
                    notes.push(format!("{}: {}", handle.name(), describe_changes(&watcher.await?)));
                }
                Ok(Some(notes.join("; ")))
            }
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The counters at one moment.
#[derive(Debug, Clone)]
struct Snapshot {
    reads: Reads,
    commits: u64,
    cpu: Reading,
}

/// One measurement of one configuration.
#[derive(Debug, Clone, Copy)]
struct Measured {
    reads: Reads,
    commits: u64,
    wall: Duration,
    cpu: Option<Spent>,
    server_cpu: Option<Spent>,
    /// In a group, the members on the shared read at the end.
    shared: Option<usize>,
}

fn secs(cpu: Option<Spent>) -> String {
    cpu.map_or_else(
        || "unknown".to_owned(),
        |cpu| format!("{:.3} s{}", cpu.time.as_secs_f64(), if cpu.exact { "" } else { " (in 10 ms ticks)" }),
    )
}

impl Measured {
    /// A note on stderr: everything measured.
    fn note(&self, scenario: &str, config: &Config, what: &str, events: usize) {
        let n = config.members.len();
        let wall = self.wall.as_secs_f64();
        let per_event = |cpu: Option<Spent>| {
            cpu.map_or_else(String::new, |c| {
                format!(" = {:.1} µs per event", c.time.as_secs_f64() * 1e6 / events as f64)
            })
        };
        let shared = self.shared.map_or_else(String::new, |s| format!("; {s} of {n} on the shared read at the end"));
        eprintln!(
            "{scenario}: {}: {what} {events} events in {wall:.3} s ({:.0} events/s, {:.0} projected/s); {} reads of \
             the log ({:.1} per projection), {} rows ({:.2} MB), {} other calls; {} view commits; process CPU {}{}; \
             server CPU {}{}{shared}",
            config.describe(),
            events as f64 / wall,
            (n * events) as f64 / wall,
            self.reads.reads,
            self.reads.reads as f64 / n as f64,
            self.reads.rows,
            self.reads.bytes as f64 / 1e6,
            self.reads.other,
            self.commits,
            secs(self.cpu),
            per_event(self.cpu),
            secs(self.server_cpu),
            per_event(self.server_cpu),
        );
    }
}

/// Appends the log: operation `i` appends [`PER_APPEND`] deposits to stream `i % STREAMS`, in
/// round `first_round + i / STREAMS` of that stream.
struct Fill {
    store: PgEventStore,
    first_round: usize,
    events: EventMaker,
}

impl Worker for Fill {
    async fn op(&mut self, i: usize) -> Result<()> {
        let stream = StreamId::new(<Account as Aggregate>::TYPE, format!("{IDS}{}", i % STREAMS))?;
        let before = u64::try_from((self.first_round + i / STREAMS) * PER_APPEND)?;
        let expected = if before == 0 { ExpectedVersion::NoStream } else { ExpectedVersion::Exact(before) };
        let events = (0..PER_APPEND).map(|_| self.events.deposit()).collect();
        self.store.append(&stream, expected, events).await?;
        Ok(())
    }
}

/// Runs the scenarios against the server at `url`, printing one JSON line per scenario.
pub async fn run(url: &str) -> Result<()> {
    let monitor = crate::scenarios::monitor(url).await?;
    let server = Server::find(&monitor).await;
    match &server {
        Some(_) => eprintln!(
            "server CPU: read from /proc (the postmaster and all its processes, whoever they serve: exact on the \
             servers scripts/bench.sh starts for this run alone)"
        ),
        None => eprintln!("server CPU: not measured (the server's processes are not on this machine or not readable)"),
    }
    let schema = crate::scenarios::fresh_schema(&monitor, "bench_projections").await?;
    let outcome = async {
        let bench = Bench::setup(url, &schema, server).await?;
        bench.run_all().await
    }
    .await;
    let dropped = monitor.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE")).await;
    outcome?;
    dropped?;
    Ok(())
}

/// Everything the scenarios share.
struct Bench {
    /// The writer's store (the log is filled and read for its head through it, uncounted).
    store: PgEventStore,
    /// The projectors' store, counted.
    counted: Counted,
    views: Watched,
    projector: Projector<Counted>,
    server: Option<Server>,
}

impl Bench {
    /// Migrates the store into `schema`; the projectors get a pool of their own (as in a
    /// process of their own), with the views and leases on it.
    async fn setup(url: &str, schema: &str, server: Option<Server>) -> Result<Self> {
        let config = PgConfig::from_url(url)?.schema(schema)?;
        let store = PgEventStore::connect(config.clone()).await?;
        store.migrate().await?;
        let theirs = PgEventStore::connect(config).await?;
        let counted = Counted::new(theirs.clone());
        let views = Watched::new(PgViewStore::new(&theirs));
        let projector = Projector::new(counted.clone(), views.clone()).with_leases(PgLeases::new(&theirs));
        Ok(Bench { store, counted, views, projector, server })
    }

    async fn run_all(&self) -> Result<()> {
        let separate_1 = Config { way: Way::Separate, members: members::<0>(1) };
        let group_1 = Config { way: Way::Group, members: members::<1>(1) };
        let separate_8 = Config { way: Way::Separate, members: members::<2>(MANY) };
        let group_8 = Config { way: Way::Group, members: members::<3>(MANY) };
        let (one, many) =
            (("projections_1_build", "projections_1_resume"), ("projections_8_build", "projections_8_resume"));
        self.fill(0).await?;
        // Not measured: opens the projectors' pool and prepares its statements.
        let warm_up = Config { way: Way::Separate, members: members::<4>(MANY) };
        self.catch_up("warm-up", &warm_up, "built their views (not measured) from").await?;
        let build = "built their views from";
        let separate_1_build = self.catch_up(one.0, &separate_1, build).await?;
        let group_1_build = self.catch_up(one.0, &group_1, build).await?;
        let separate_8_build = self.catch_up(many.0, &separate_8, build).await?;
        let group_8_build = self.catch_up(many.0, &group_8, build).await?;
        self.fill(APPENDS_PER_PART).await?;
        // In the reverse order, so that neither way always goes first.
        let resume = "started again and caught up on";
        let group_8_resume = self.catch_up(many.1, &group_8, resume).await?;
        let separate_8_resume = self.catch_up(many.1, &separate_8, resume).await?;
        let group_1_resume = self.catch_up(one.1, &group_1, resume).await?;
        let separate_1_resume = self.catch_up(one.1, &separate_1, resume).await?;
        catch_up_record(one.0, 1, &group_1_build, &separate_1_build).print();
        catch_up_record(many.0, MANY, &group_8_build, &separate_8_build).print();
        catch_up_record(one.1, 1, &group_1_resume, &separate_1_resume).print();
        catch_up_record(many.1, MANY, &group_8_resume, &separate_8_resume).print();
        // The engine's cache warm, so that both live runs send the same commands.
        let engine = Cqrs::new(self.store.clone());
        Commands::new(engine.clone(), account_ids()).warm().await?;
        let (separate_idle, separate_live) = self.live(&separate_8, &engine).await?;
        let (group_idle, group_live) = self.live(&group_8, &engine).await?;
        idle_record(&group_idle, &separate_idle).print();
        live_record(&group_live, &separate_live).print();
        Ok(())
    }

    /// Appends one part of the log, from round `first_round` of every stream on.
    async fn fill(&self, first_round: usize) -> Result<()> {
        let appends = STREAMS * APPENDS_PER_PART;
        let workers = (0..FILL_TASKS)
            .map(|_| Fill { store: self.store.clone(), first_round, events: EventMaker::default() })
            .collect();
        let rate = load::throughput(workers, Budget::new(appends, 300)).await?;
        if rate.ops != appends {
            return Err(format!("filling the log: only {} of {appends} appends in the time allowed", rate.ops).into());
        }
        eprintln!(
            "projections: appended {PART} events ({STREAMS} streams x {} events, {PER_APPEND} per append, {FILL_TASKS} \
             tasks) in {:.1} s",
            PER_APPEND * APPENDS_PER_PART,
            rate.elapsed.as_secs_f64()
        );
        Ok(())
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot { reads: self.counted.reads(), commits: self.views.commits(), cpu: Reading::now(self.server.as_ref()) }
    }

    fn since(&self, before: &Snapshot, wall: Duration, shared: Option<usize>) -> Measured {
        let now = self.snapshot();
        let (cpu, server_cpu) = now.cpu.since(&before.cpu);
        Measured {
            reads: now.reads - before.reads,
            commits: now.commits - before.commits,
            wall,
            cpu,
            server_cpu,
            shared,
        }
    }

    async fn head(&self) -> Result<Position> {
        Ok(self.store.head().await?.ok_or("the log is empty")?)
    }

    /// Starts the projections of `config` and measures until the last has its live views at the
    /// head, then stops them and checks their views.
    async fn catch_up(&self, scenario: &str, config: &Config, what: &str) -> Result<Measured> {
        let names = config.names();
        self.views.track(&names).await?;
        let head = self.head().await?;
        tokio::time::sleep(SETTLE).await;
        let before = self.snapshot();
        let started = Instant::now();
        let running = Running::start(config, &self.projector);
        let done = self.views.caught_up(&names, head, TIMEOUT).await;
        let shared = running.shared();
        let measured = done.map(|done| self.since(&before, done.saturating_duration_since(started), shared));
        let membership = running.stop().await?;
        let measured = measured?;
        measured.note(scenario, config, what, PART);
        if let Some(membership) = membership {
            eprintln!("{scenario}: the members, from the group's start: {membership}");
        }
        self.check_views(&names, head).await?;
        Ok(measured)
    }

    /// Checks that every projection's live views are at `head` and that the first and last
    /// streams' views hold every deposit stored up to it.
    async fn check_views(&self, names: &[&'static str], head: Position) -> Result<()> {
        for &name in names {
            let status = self.views.inner().status(name).await?;
            if status.checkpoint().is_none_or(|c| c < head) {
                return Err(
                    format!("{name}: live checkpoint {:?} short of the head {head}", status.checkpoint()).into()
                );
            }
            let reader = ViewReader::<AccountView>::new(self.views.inner().clone(), name);
            for id in [format!("{IDS}0"), format!("{IDS}{}", STREAMS - 1)] {
                let stream = StreamId::new(<Account as Aggregate>::TYPE, id.as_str())?;
                let version = self.store.stream_version(&stream).await?;
                let view = reader.get(&id).await?;
                if view != Some(AccountView { balance: version, version }) {
                    return Err(
                        format!("{name}: the view of {id} is {view:?}, its stream has {version} deposits").into()
                    );
                }
            }
        }
        Ok(())
    }

    /// The projections of `config` live: caught up, then idle for [`IDLE`], then following
    /// [`LIVE_COMMANDS`] paced deposits until the last is in all their views.
    async fn live(&self, config: &Config, engine: &Engine) -> Result<(Measured, Measured)> {
        let names = config.names();
        self.views.track(&names).await?;
        let running = Running::start(config, &self.projector);
        let measured = async {
            let head = self.head().await?;
            self.views.caught_up(&names, head, TIMEOUT).await?;
            if let Some(shared) = running.all_shared(TIMEOUT).await {
                eprintln!("projections_8_live: {shared} of {} members on the shared read", names.len());
            }
            tokio::time::sleep(SETTLE).await;
            let before = self.snapshot();
            let started = Instant::now();
            tokio::time::sleep(IDLE).await;
            let idle = self.since(&before, started.elapsed(), running.shared());
            let before = self.snapshot();
            let started = Instant::now();
            let sent = paced_deposits(engine, &account_ids(), LIVE_COMMANDS, LIVE_RATE, LIVE_TASKS).await?;
            let last = sent.iter().map(|s| s.position).max().ok_or("no deposit was sent")?;
            let done = self.views.caught_up(&names, last, TIMEOUT).await?;
            let live = self.since(&before, done.saturating_duration_since(started), running.shared());
            Ok::<_, crate::BoxError>((idle, live))
        }
        .await;
        let membership = running.stop().await?;
        let (idle, live) = measured?;
        if let Some(membership) = membership {
            eprintln!("projections_8_live: the members, from the group's start: {membership}");
        }
        let wall = idle.wall.as_secs_f64();
        eprintln!(
            "projections_8_idle: {}: {} reads of the log in {wall:.1} s idle ({:.1}/s), {} other calls; process CPU {}, \
             server CPU {}",
            config.describe(),
            idle.reads.reads,
            idle.reads.reads as f64 / wall,
            idle.reads.other,
            secs(idle.cpu),
            secs(idle.server_cpu),
        );
        live.note("projections_8_live", config, &format!("followed {LIVE_RATE}/s deposits, wrote"), LIVE_COMMANDS);
        Ok((idle, live))
    }
}

fn us_per_event(cpu: Option<Spent>, events: usize) -> Option<f64> {
    cpu.map(|c| c.time.as_secs_f64() * 1e6 / events as f64)
}

fn ms_per_s(cpu: Option<Spent>, wall: Duration) -> Option<f64> {
    cpu.map(|c| c.time.as_secs_f64() * 1e3 / wall.as_secs_f64())
}

/// The figures every projection record has.
fn figures(n: usize, group: &Measured, separate: &Measured) -> GroupFigures {
    let ms = |m: &Measured| m.wall.as_secs_f64() * 1e3;
    GroupFigures {
        projections: n,
        reads: Compared::new(group.reads.reads as f64, separate.reads.reads as f64),
        rows: Compared::new(group.reads.rows as f64, separate.reads.rows as f64),
        wall_ms: Compared::new(ms(group), ms(separate)),
        cpu_us_per_event: None,
        server_cpu_us_per_event: None,
        cpu_ms_per_s: None,
        server_cpu_ms_per_s: None,
    }
}

/// A catch-up both ways: events of the log per second, and what they cost.
fn catch_up_record(scenario: &'static str, n: usize, group: &Measured, separate: &Measured) -> Record {
    let rate = |m: &Measured| PART as f64 / m.wall.as_secs_f64();
    let per_event = |cpu| us_per_event(cpu, PART);
    Record::new(scenario, Unit::PerSecond, rate(group), rate(separate)).groups(GroupFigures {
        cpu_us_per_event: Compared::of(per_event(group.cpu), per_event(separate.cpu)),
        server_cpu_us_per_event: Compared::of(per_event(group.server_cpu), per_event(separate.server_cpu)),
        ..figures(n, group, separate)
    })
}

/// Idle, both ways: reads of the log per second, and the CPU they keep busy.
fn idle_record(group: &Measured, separate: &Measured) -> Record {
    let rate = |m: &Measured| m.reads.reads as f64 / m.wall.as_secs_f64();
    Record::new("projections_8_idle", Unit::ReadsPerSecond, rate(group), rate(separate)).groups(GroupFigures {
        cpu_ms_per_s: Compared::of(ms_per_s(group.cpu, group.wall), ms_per_s(separate.cpu, separate.wall)),
        server_cpu_ms_per_s: Compared::of(
            ms_per_s(group.server_cpu, group.wall),
            ms_per_s(separate.server_cpu, separate.wall),
        ),
        ..figures(MANY, group, separate)
    })
}

/// Live, both ways: reads of the log per second, and the CPU per deposit (the engine's
/// included: it runs in this process).
fn live_record(group: &Measured, separate: &Measured) -> Record {
    let rate = |m: &Measured| m.reads.reads as f64 / m.wall.as_secs_f64();
    let per_event = |cpu| us_per_event(cpu, LIVE_COMMANDS);
    Record::new("projections_8_live", Unit::ReadsPerSecond, rate(group), rate(separate)).groups(GroupFigures {
        cpu_us_per_event: Compared::of(per_event(group.cpu), per_event(separate.cpu)),
        server_cpu_us_per_event: Compared::of(per_event(group.server_cpu), per_event(separate.server_cpu)),
        ..figures(MANY, group, separate)
    })
}

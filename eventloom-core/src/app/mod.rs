//! The application layer: one [`App`] that runs aggregates, projections and event handlers on
//! a bundle of [`Stores`], in every [`Role`].

mod health;
mod operations;
mod options;
mod relay;
mod retention;
mod signal;
mod stores;

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use health::{Lag, LeaseState, RelayLag, Unprojected, Unrelayed};
pub use operations::{
    AggregateState, GenerationReport, LAG_CAP, LeaseWait, Operations, ProjectionInfo, ProjectionReport,
    RebuildProgress, RetryOutcome, ShownEvent, UnfinishedPartition,
};
pub use options::{AggregateOptions, HandlerOptions, ProcessOptions, ProjectionOptions, Role, StartFrom};
pub use relay::{RELAYED_FROM, SOURCE_COMMAND_ID, SOURCE_SEQUENCE, SOURCE_VERSION};
pub use stores::{MemoryStores, Stores};

use self::health::{LeaseStates, TrackedLeases};
use self::signal::{SignallingViews, Signals};
use crate::memory::lock;
use crate::process::ProcessManager;
use crate::process::dispatch::{Dispatcher, Engines};
use crate::process::job::ProcessJob;
use crate::read::partition::ViewKey;
use crate::{
    Aggregate, Command, CommandError, CommandOutcome, Cqrs, Error, EventHandler, EventStore, ExecuteOptions, Handle,
    MemberHandle, MemberState, Projection, ProjectionGroup, Projector, Reader, Result, Upcasters, ViewStore,
};

/// The start of the categories eventloom keeps for its own streams: no aggregate may have one.
const RESERVED_PREFIX: &str = "eventloom.";

impl App {
    /// How long [`App::shutdown`] waits for commands in flight and projectors' batches by default.
    pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

    /// How long the records of command ids are kept by default
    /// ([`AppBuilder::command_retention`]): 7 days.
    pub const DEFAULT_COMMAND_RETENTION: Duration = Duration::from_secs(7 * 24 * 3_600);
}

/// The engine of one aggregate type as the App keeps it.
type Engine<A> = Cqrs<A, Arc<dyn EventStore>>;
/// Adds a projection, an event handler or a process manager to the process's group, with its
/// options (a process manager issues its commands through the dispatcher).
type JoinGroup = Box<dyn FnOnce(&mut ProjectionGroup<Arc<dyn EventStore>>, &Dispatcher) -> MemberHandle + Send>;
type BuildEngine = Box<dyn FnOnce(&Stores) -> Result<Box<dyn Any + Send + Sync>> + Send>;

/// Starts a relay: given the event store, the leases, this service's own categories and the
/// shutdown signal, the relay's run.
type StartRelay = Box<
    dyn FnOnce(
            Arc<dyn EventStore>,
            Option<Arc<dyn crate::LeaseManager>>,
            Vec<&'static str>,
            Shutdown,
        ) -> Pin<Box<dyn Future<Output = Result<()>> + Send>>
        + Send,
>;

/// A relay registered and not started yet.
struct PendingRelay {
    source: String,
    start: StartRelay,
    /// Its feed, for its lag.
    probe: Arc<dyn relay::Probe>,
    /// The feed position it last relayed, told by its run.
    read_to: Arc<Mutex<Option<crate::Position>>>,
}

/// A relay as the App keeps it: its source, how its run stands, and what its lag is read from.
struct RelayEntry {
    source: String,
    state: Arc<Mutex<RunState>>,
    probe: Arc<dyn relay::Probe>,
    read_to: Arc<Mutex<Option<crate::Position>>>,
}

/// Resolves when the App shuts down (or is dropped).
type Shutdown = Pin<Box<dyn Future<Output = ()> + Send>>;

struct PendingAggregate {
    type_id: TypeId,
    category: &'static str,
    upcasters: Upcasters,
    /// Shows its state to the admin operations ([`AggregateOptions::inspectable`]).
    inspect: Option<options::InspectState>,
    build: BuildEngine,
}

/// A projection or an event handler: what it is, and how it joins the group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Projection,
    Handler,
    Process,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Projection => "projection",
            Kind::Handler => "event handler",
            Kind::Process => "process manager",
        }
    }
}

/// A projection or event handler registered and not started yet.
struct PendingMember {
    kind: Kind,
    type_id: TypeId,
    type_name: &'static str,
    name: String,
    join: JoinGroup,
    /// A process manager that starts at the log's head ([`StartFrom::Now`]), with its clock.
    starts_now: Option<Arc<dyn crate::model::Clock>>,
    /// How a partitioned projection places its views; `None` when it is whole.
    partitioned: Option<ViewKey>,
    /// Its [`Projection::VERSION`] (projections only).
    version: Option<u32>,
    /// How many partitions it runs in.
    partitions: u32,
    /// What [`Operations`] run of a projection, with its poison policy.
    ops: Option<(Arc<dyn operations::ProjectionOps>, Option<crate::PoisonPolicy>)>,
}

/// Builds an [`App`]: register aggregates, projections and event handlers, pick a [`Role`],
/// then [`start`](Self::start). Setters never fail; `start` checks the whole (duplicate
/// registrations and names, a split role on stores that live in one process, snapshots without
/// a snapshot store) and reports the first problem as [`Error::InvalidConfig`].
///
/// See [`App`] for an example.
pub struct AppBuilder {
    stores: Stores,
    role: Role,
    drain_timeout: Duration,
    command_retention: Duration,
    aggregates: Vec<PendingAggregate>,
    members: Vec<PendingMember>,
    relays: Vec<PendingRelay>,
}

impl std::fmt::Debug for AppBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names = |kind| self.members.iter().filter(|m| m.kind == kind).map(|m| &m.name).collect::<Vec<_>>();
        f.debug_struct("AppBuilder")
            .field("stores", &self.stores)
            .field("role", &self.role)
            .field("aggregates", &self.aggregates.iter().map(|a| a.category).collect::<Vec<_>>())
            .field("projections", &names(Kind::Projection))
            .field("handlers", &names(Kind::Handler))
            .finish_non_exhaustive()
    }
}

impl AppBuilder {
    /// Registers aggregate `A` with the engine's defaults: commands for it are routed to its
    /// engine.
    pub fn aggregate<A: Aggregate>(self) -> Self {
        self.aggregate_with::<A>(AggregateOptions::new())
    }

    /// Registers aggregate `A` with `options` (snapshots, cache, upcasters, retries).
    pub fn aggregate_with<A: Aggregate>(mut self, options: AggregateOptions<A>) -> Self {
        let upcasters = options.upcasters.clone();
        let inspect = options.inspect;
        let build: BuildEngine = Box::new(move |stores: &Stores| {
            let mut engine: Engine<A> = Cqrs::new(stores.events().clone()).with_upcasters(options.upcasters);
            if let Some(capacity) = options.cache_capacity {
                engine = engine.with_cache_capacity(capacity);
            }
            if let Some(retry) = options.retry {
                engine = engine.with_retry(retry);
            }
            if let Some((policy, attach)) = options.snapshots {
                let Some(snapshots) = stores.snapshots() else {
                    return Err(Error::InvalidConfig {
                        reason: format!(
                            "aggregate {} asks for snapshots, but the {} stores have no snapshot store",
                            A::TYPE,
                            stores.description()
                        ),
                    });
                };
                engine = attach(engine, snapshots.clone(), policy);
            }
            Ok(Box::new(engine))
        });
        self.aggregates.push(PendingAggregate {
            type_id: TypeId::of::<A>(),
            category: A::TYPE,
            upcasters,
            inspect,
            build,
        });
        self
    }

    /// Registers projection `projection` under its [`name`](Projection::name), run by the
    /// projectors of this app with the defaults. Register one type several times under
    /// different names to run it as several instances (read each with
    /// [`App::reader_named`]).
    pub fn projection<P: Projection>(self, projection: P) -> Self {
        self.projection_with(projection, ProjectionOptions::new())
    }

    /// Registers projection `projection` with `options` (poison policy, batch size). It joins
    /// the process's group all the same: the group honours every option.
    pub fn projection_with<P: Projection>(mut self, projection: P, options: ProjectionOptions) -> Self {
        let name = projection.name().to_owned();
        let partitions = options.partition_count();
        let poison = options.poison;
        let partitioned = (partitions > 1).then_some(P::view_partition_key as ViewKey);
        // Shared with the operations (`AppBuilder::operations`), which run it too.
        let shared = Arc::new(projection);
        let ops: Arc<dyn operations::ProjectionOps> = Arc::new(operations::Shared(shared.clone()));
        let join: JoinGroup = Box::new(move |group, _| group.add_with(operations::Shared(shared), options));
        self.members.push(PendingMember {
            kind: Kind::Projection,
            type_id: TypeId::of::<P>(),
            type_name: std::any::type_name::<P>(),
            name,
            join,
            starts_now: None,
            partitioned,
            version: Some(P::VERSION),
            partitions,
            ops: Some((ops, poison)),
        });
        self
    }

    /// Registers event handler `handler` under its [`name`](EventHandler::name), run by the
    /// projectors of this app with the defaults: at least once per event, with its own
    /// checkpoint, lease, retries and dead letters (see [`EventHandler`]), fed by the same
    /// shared read of the log as the projections.
    ///
    /// # Examples
    ///
    /// ```
    /// # use eventloom_core::prelude::*;
    /// # use eventloom_core::{BoxError, EventHandler};
    /// # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)] enum UserEvent { Registered }
    /// # #[derive(Debug, Default)] struct User;
    /// # impl Aggregate for User { const TYPE: &'static str = "user"; type Event = UserEvent;
    /// #   type Error = std::convert::Infallible; fn apply(&mut self, _: &UserEvent) {} }
    /// struct Welcome;
    ///
    /// impl EventHandler for Welcome {
    ///     const NAME: &'static str = "welcome_mail";
    ///     type Events = User;
    ///     async fn handle(&self, _: &EventEnvelope<UserEvent>) -> Result<(), BoxError> {
    ///         Ok(()) // send the mail
    ///     }
    /// }
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
    /// let app = App::builder(MemoryStores::new()).aggregate::<User>().handler(Welcome).start().await.unwrap();
    /// assert_eq!(app.status().handlers[0].name, "welcome_mail");
    /// app.shutdown().await.unwrap();
    /// # });
    /// ```
    pub fn handler<H: EventHandler>(self, handler: H) -> Self {
        self.handler_with(handler, HandlerOptions::new())
    }

    /// Registers event handler `handler` with `options` (poison policy, batch size); it joins
    /// the process's group all the same.
    pub fn handler_with<H: EventHandler>(mut self, handler: H, options: HandlerOptions) -> Self {
        let name = handler.name().to_owned();
        let join: JoinGroup = Box::new(move |group, _| group.add_handler_with(handler, options));
        self.members.push(PendingMember {
            kind: Kind::Handler,
            type_id: TypeId::of::<H>(),
            type_name: std::any::type_name::<H>(),
            name,
            join,
            starts_now: None,
            partitioned: None,
            version: None,
            partitions: 1,
            ops: None,
        });
        self
    }

    /// Registers process manager `process` under its [`name`](ProcessManager::name), run by the
    /// projectors of this app with the defaults (see [`ProcessOptions`]): fed by the same shared
    /// read of the log as the projections, it issues its commands to this app's aggregates
    /// (register each aggregate its commands go to).
    ///
    /// # Examples
    ///
    /// See [`ProcessManager`].
    pub fn process_manager<P: ProcessManager>(self, process: P) -> Self {
        self.process_manager_with(process, ProcessOptions::new())
    }

    /// Registers process manager `process` with `options` (poison policy, batch size, clock,
    /// how often it looks for due timers).
    pub fn process_manager_with<P: ProcessManager>(mut self, process: P, options: ProcessOptions) -> Self {
        let name = process.name().to_owned();
        let starts_now = (options.start == StartFrom::Now).then(|| options.clock.clone());
        let join: JoinGroup = Box::new(move |group, dispatcher| {
            let job = ProcessJob::new(process, dispatcher.clone(), &options);
            group.add_job(job, options.settings())
        });
        self.members.push(PendingMember {
            kind: Kind::Process,
            type_id: TypeId::of::<P>(),
            type_name: std::any::type_name::<P>(),
            name,
            join,
            starts_now,
            partitioned: None,
            version: None,
            partitions: 1,
            ops: None,
        });
        self
    }

    /// Relays another service's events into this one's event store: every event `feed` gives
    /// (a bus consumer, such as `eventloom_nats::JetStreamFeed`) is appended once, under its own
    /// stream, category and type, by [`EventStore::append_relayed`] with the feed position's
    /// [`sequence`](crate::Position::sequence) as the message's sequence in `source`, so that this
    /// service's projections and process managers read it in one order with its own events (and
    /// a rebuild reads it here, whatever the source still keeps). The feed's positions must
    /// grow in sequence in the order it reads (a JetStream stream's do): a sequence at or below
    /// one the same read gave before, in its batch or an earlier one, stops the relay with
    /// [`Error::Corrupt`], since the source's record would take the message for a duplicate.
    /// Messages at or below the record that a read starts with (relayed before, by a process
    /// that led meanwhile, or re-read by a feed that reads from its start) append nothing, and
    /// gaps in the sequence are relayed as they come. The event keeps its metadata; its command
    /// id moves to the [`SOURCE_COMMAND_ID`] header, and [`RELAYED_FROM`], [`SOURCE_SEQUENCE`]
    /// and [`SOURCE_VERSION`] say where it came from. An event in the category of one of this
    /// App's aggregates, or in a category `eventloom.*`, stops the relay
    /// ([`Error::InvalidConfig`]); one the store refuses as it is (a payload that is not JSON,
    /// or too large) is skipped with an error in the log, the source's record moved past it;
    /// an event store that cannot relay stops it with its [`Error::InvalidConfig`].
    ///
    /// It runs in a role that runs the projectors, holding the lease `eventloom.relay/<source>`
    /// so that one process relays at a time, and stops when the App shuts down. `source` is 1
    /// to 255 bytes with no control characters. Its state, lease, position and lag are in
    /// [`AppStatus::relays`] (the last two from [`App::health`], as a [`RelayLag`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use eventloom_core::{App, MemoryStores, memory::MemoryEventStore};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
    /// // Another store stands in for a bus consumer here.
    /// let elsewhere = MemoryEventStore::new();
    /// let app = App::builder(MemoryStores::new()).relay("inventory", elsewhere).start().await.unwrap();
    /// assert_eq!(app.status().relays[0].name, "inventory");
    /// app.shutdown().await.unwrap();
    /// # });
    /// ```
    pub fn relay<F: crate::read::Feed>(mut self, source: impl Into<String>, feed: F) -> Self {
        let source = source.into();
        let name = source.clone();
        let feed = Arc::new(feed);
        let probe: Arc<dyn relay::Probe> = feed.clone();
        let read_to = Arc::new(Mutex::new(None));
        let told = read_to.clone();
        let start: StartRelay = Box::new(move |events, leases, own, shutdown| {
            let metrics = crate::metrics::RelayMetrics::new(&name, relay::lease_name(&name));
            let relay = relay::Relay { source: name, feed, events, leases, own, read_to: told, metrics };
            Box::pin(relay.run(shutdown))
        });
        self.relays.push(PendingRelay { source, start, probe, read_to });
        self
    }

    /// What this process does (default [`Role::All`]).
    pub fn role(mut self, role: Role) -> Self {
        self.role = role;
        self
    }

    /// How long [`App::shutdown`] waits for commands in flight and for projectors to finish
    /// their batch before it gives up on them (default [`App::DEFAULT_DRAIN_TIMEOUT`]).
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = timeout;
        self
    }

    /// How long the event store keeps the record of a command id (an idempotency key) after the
    /// command executed; default [`App::DEFAULT_COMMAND_RETENTION`], 7 days. `Duration::MAX`
    /// keeps them forever; zero is refused at [`start`](Self::start).
    ///
    /// A process of a role that runs the projectors ([`Role::All`], [`Role::Projector`]) runs
    /// the janitor: every quarter of the retention (at most hourly) it deletes the records older
    /// than the retention in batches of 1,000
    /// ([`EventStore::expire_commands`]), holding a lease of the bundle's lease manager
    /// (`eventloom.command-retention`, a name no projection may take) so that one process trims
    /// at a time. Records kept by
    /// [`ExecuteOptions::keep_command_id`](crate::ExecuteOptions::keep_command_id) never expire;
    /// those of process managers' commands do (a process manager issues nothing again on a
    /// replay, and stops rather than run a command that waited past half the retention). The events keep their command id in their metadata;
    /// a request sent again after its id expired executes again.
    ///
    /// # Examples
    ///
    /// ```
    /// use eventloom_core::{App, MemoryStores};
    /// use std::time::Duration;
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
    /// // Clients retry for a day at most: keep their keys for two.
    /// let app = App::builder(MemoryStores::new())
    ///     .command_retention(Duration::from_secs(2 * 24 * 3_600))
    ///     .start()
    ///     .await
    ///     .unwrap();
    /// app.shutdown().await.unwrap();
    /// # });
    /// ```
    pub fn command_retention(mut self, retention: Duration) -> Self {
        self.command_retention = retention;
        self
    }

    fn check(&self) -> Result<()> {
        let invalid = |reason: String| Err(Error::InvalidConfig { reason });
        if self.command_retention.is_zero() {
            return invalid(
                "a command retention of zero would forget every idempotency key at once: \
                 use Duration::MAX to keep them forever"
                    .to_owned(),
            );
        }
        for (i, relay) in self.relays.iter().enumerate() {
            if let Err(error) = crate::store::validate_relay(&relay.source, 1) {
                return invalid(format!("relay {:?}: {error}", relay.source));
            }
            if self.relays[..i].iter().any(|r| r.source == relay.source) {
                return invalid(format!("source {} is relayed twice", relay.source));
            }
        }
        if self.role != Role::All && !self.stores.is_shared() {
            return invalid(format!(
                "role {} runs apart from the other roles, but the {} stores live in this process only: \
                 use Role::All, or stores shared between processes (PostgreSQL, Redis)",
                self.role,
                self.stores.description()
            ));
        }
        for (i, a) in self.aggregates.iter().enumerate() {
            if self.aggregates[..i].iter().any(|b| b.type_id == a.type_id || b.category == a.category) {
                return invalid(format!("aggregate {} is registered twice", a.category));
            }
            if a.category.starts_with(RESERVED_PREFIX) {
                return invalid(format!(
                    "aggregate {} has a category in {RESERVED_PREFIX}*, which eventloom keeps for its own streams \
                     (process managers' journals): give it another Aggregate::TYPE",
                    a.category
                ));
            }
        }
        for (i, m) in self.members.iter().enumerate() {
            if let Some(problem) = crate::read::projection::name_problem(&m.name) {
                return invalid(format!("{} {} has a name that {problem}", m.kind.as_str(), m.type_name));
            }
            if m.name.starts_with(RESERVED_PREFIX) {
                return invalid(format!(
                    "{} {} is named {}: names in {RESERVED_PREFIX}* are eventloom's own (the leases of the command \
                     janitor, {}, and of relays)",
                    m.kind.as_str(),
                    m.type_name,
                    m.name,
                    retention::JANITOR_LEASE
                ));
            }
            // Projections and handlers keep everything in the view store by name.
            if let Some(first) = self.members[..i].iter().find(|n| n.name == m.name) {
                let what = if first.kind == m.kind { m.kind.as_str().to_owned() } else { "name".to_owned() };
                return invalid(format!(
                    "{what} {} is registered twice (by {} {} and {} {})",
                    m.name,
                    first.kind.as_str(),
                    first.type_name,
                    m.kind.as_str(),
                    m.type_name
                ));
            }
        }
        Ok(())
    }

    /// Builds the engines and, in a role that runs them, starts the projectors: every
    /// projection and event handler is a member of the process's one [`ProjectionGroup`], fed
    /// by one shared read of the log, on a task of its own. Must be called within a tokio
    /// runtime.
    pub async fn start(self) -> Result<App> {
        self.check()?;
        let AppBuilder { stores, role, drain_timeout, command_retention, aggregates, members, relays } = self;
        // The leases this process takes name it by its role.
        crate::store::LeaseHolder::set_process_role(role.as_str());
        let own: Vec<&'static str> = aggregates.iter().map(|a| a.category).collect();
        let mut engines: Engines = HashMap::new();
        let mut upcasters = HashMap::new();
        for aggregate in aggregates {
            engines.insert(aggregate.type_id, ((aggregate.build)(&stores)?, aggregate.category));
            upcasters.insert(aggregate.category, aggregate.upcasters);
        }
        let engines = Arc::new(engines);
        // Before `start` returns, in every role: a command executed after it is one to act on.
        for member in &members {
            if let Some(clock) = &member.starts_now {
                let (events, views) = (stores.events().as_ref(), stores.views().as_ref());
                crate::process::job::record_first_start(events, views, &member.name, clock.now()).await?;
            }
        }
        let dispatcher = Dispatcher::new(engines.clone(), command_retention);
        let (stopping, _) = watch::channel(false);
        let (drained, _) = watch::channel(false);
        let signals = Arc::new(Signals::default());
        let runs_here = role.runs_projectors();
        let lease_states = LeaseStates::default();
        // The App's readers are woken by the writes of this process's runners; with stores shared
        // between processes another process's runner may lead, so they poll as well.
        let readers = members
            .iter()
            .filter(|m| m.kind == Kind::Projection)
            .map(|m| Registered {
                type_id: m.type_id,
                name: m.name.clone(),
                wake_ups: runs_here.then(|| signals.subscribe(&m.name)),
                partitioned: m.partitioned,
            })
            .collect();
        let mut runners = Vec::with_capacity(members.len());
        let mut tasks = Vec::new();
        if runs_here {
            let views: Arc<dyn ViewStore> =
                Arc::new(SignallingViews { inner: stores.views().clone(), signals: signals.clone() });
            let mut base = Projector::new(stores.events().clone(), views);
            if let Some(leases) = stores.leases() {
                base = base.with_leases(TrackedLeases::new(leases.clone(), lease_states.clone()));
            }
            for (category, upcasters) in upcasters {
                base = base.with_upcasters_for(category, upcasters);
            }
            let mut group = base.group();
            for member in members {
                let handle = (member.join)(&mut group, &dispatcher);
                runners.push(Runner { kind: member.kind, name: member.name, handle: Some(handle) });
            }
            if !runners.is_empty() {
                tasks.push(spawn_group(group, &drained));
            }
        } else {
            runners.extend(members.into_iter().map(|m| Runner { kind: m.kind, name: m.name, handle: None }));
        }
        let mut relay_states = Vec::with_capacity(relays.len());
        for relay in relays {
            let state = Arc::new(Mutex::new(if runs_here { RunState::Running } else { RunState::Elsewhere }));
            if runs_here {
                // Tracked as the projectors' are, so that the status tells whether this process leads.
                let leases = stores.leases().map(|leases| {
                    Arc::new(TrackedLeases::new(leases.clone(), lease_states.clone())) as Arc<dyn crate::LeaseManager>
                });
                let run = (relay.start)(stores.events().clone(), leases, own.clone(), shutdown_of(&stopping));
                tasks.push(spawn_relay(relay.source.clone(), run, state.clone()));
            }
            relay_states.push(RelayEntry { source: relay.source, state, probe: relay.probe, read_to: relay.read_to });
        }
        if runs_here && command_retention != Duration::MAX {
            let janitor = retention::Janitor {
                events: stores.events().clone(),
                leases: stores.leases().cloned(),
                retention: command_retention,
            };
            tasks.push(spawn_janitor(janitor, &stopping));
        }
        tracing::info!(%role, stores = stores.description(), members = runners.len(), "app started");
        Ok(App {
            inner: Arc::new(Inner {
                stores,
                role,
                drain_timeout,
                engines,
                readers,
                runners,
                lease_states,
                relays: relay_states,
                tasks: Mutex::new(tasks),
                stopping,
                drained,
                in_flight: watch::channel(0).0,
            }),
        })
    }
}

/// Resolves when the App shuts down; a dropped App counts as a shutdown.
fn shutdown_of(stopping: &watch::Sender<bool>) -> Shutdown {
    let mut stop = stopping.subscribe();
    Box::pin(async move {
        let _ = stop.wait_for(|stopping| *stopping).await;
    })
}

/// Runs the process's group (every projection and event handler, fed by one shared read of the
/// log) on a task of its own. Each member's status is in its handle.
fn spawn_group(group: ProjectionGroup<Arc<dyn EventStore>>, stopping: &watch::Sender<bool>) -> JoinHandle<()> {
    let shutdown = shutdown_of(stopping);
    tokio::spawn(async move {
        if let Err(error) = group.run(shutdown).await {
            tracing::error!(%error, "the projections' group stopped");
        }
    })
}

/// Runs a relay on a task of its own, telling how it ended in `state`.
fn spawn_relay(
    source: String,
    run: Pin<Box<dyn Future<Output = Result<()>> + Send>>,
    state: Arc<Mutex<RunState>>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let ended = match run.await {
            Ok(()) => RunState::Stopped,
            Err(error) => {
                tracing::error!(%error, %source, "the relay stopped");
                RunState::Failed(Arc::new(error))
            }
        };
        *lock(&state) = ended;
    })
}

/// Runs the command janitor on a task of its own until the App shuts down.
fn spawn_janitor(janitor: retention::Janitor, stopping: &watch::Sender<bool>) -> JoinHandle<()> {
    let shutdown = shutdown_of(stopping);
    tokio::spawn(async move {
        tokio::select! {
            () = shutdown => {}
            () = janitor.run() => {}
        }
    })
}

/// How one projection's or event handler's runner in this process stands.
///
/// # Examples
///
/// ```
/// use eventloom_core::app::RunState;
///
/// assert!(RunState::Running.is_running());
/// assert!(!RunState::Stopped.is_running());
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum RunState {
    /// Running (or standing by for its lease, as [`ProjectionHealth::lease`] tells, or retrying
    /// a store that is unavailable).
    Running,
    /// Stopped by a shutdown.
    Stopped,
    /// Stopped on an error it cannot get past (a poison event, corrupt data, a newer version
    /// in the store, a panic): see the error. The other projections and handlers go on.
    Failed(Arc<Error>),
    /// Not run in this process: its [`Role`] runs no projectors.
    Elsewhere,
}

impl RunState {
    /// Whether the runner is running.
    pub fn is_running(&self) -> bool {
        matches!(self, RunState::Running)
    }
}

/// One projection or event handler in [`AppStatus`].
///
/// # Examples
///
/// ```
/// use eventloom_core::app::{LeaseState, ProjectionHealth, RunState};
///
/// let health = ProjectionHealth::new("account_summaries", RunState::Running);
/// assert_eq!(health.name, "account_summaries");
/// assert_eq!((health.lease, health.lag.is_none()), (LeaseState::NotHeld, true));
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ProjectionHealth {
    /// Its name ([`Projection::name`] or [`EventHandler::name`]).
    pub name: String,
    /// How its runner in this process stands.
    pub state: RunState,
    /// Whether this process's runner holds the projection's lease or stands by while another
    /// process does ([`LeaseState::NotHeld`] when it is not running here).
    pub lease: LeaseState,
    /// How far the live views are behind the event store, or why the stores could not tell:
    /// read by [`App::health`]; `None` from [`App::status`], which reads no store, and for a
    /// relay, which has no views (see [`relay`](Self::relay)).
    pub lag: Option<std::result::Result<Lag, Arc<Error>>>,
    /// A relay's position (the last message of its source recorded as relayed) and how far its
    /// feed is ahead of it, or why the event store could not tell: read by [`App::health`];
    /// `None` from [`App::status`] and for the other members.
    pub relay: Option<std::result::Result<RelayLag, Arc<Error>>>,
}

impl ProjectionHealth {
    /// A projection's or handler's health, holding no lease, its lag not read.
    pub fn new(name: impl Into<String>, state: RunState) -> Self {
        ProjectionHealth { name: name.into(), state, lease: LeaseState::NotHeld, lag: None, relay: None }
    }
}

/// What [`App::status`] reports, for a health check.
///
/// # Examples
///
/// ```
/// use eventloom_core::{Role, app::{AppStatus, ProjectionHealth, RunState}};
///
/// let status = AppStatus::new(Role::All, false, vec![ProjectionHealth::new("p", RunState::Running)])
///     .with_handlers(vec![ProjectionHealth::new("h", RunState::Running)]);
/// assert!(status.is_healthy());
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AppStatus {
    /// The process's role.
    pub role: Role,
    /// Whether a shutdown has begun.
    pub stopping: bool,
    /// Each registered projection, in the order registered.
    pub projections: Vec<ProjectionHealth>,
    /// Each registered event handler, in the order registered.
    pub handlers: Vec<ProjectionHealth>,
    /// Each registered process manager, in the order registered.
    pub process_managers: Vec<ProjectionHealth>,
    /// Each relay (another service's events appended here), by source, in the order registered:
    /// its state, whether this process holds its lease `eventloom.relay/<source>`, and from
    /// [`App::health`] its [`relay`](ProjectionHealth::relay) position and lag.
    pub relays: Vec<ProjectionHealth>,
    /// From [`App::health`]: how far the copy of the log the App reads is behind the one it
    /// writes ([`EventStore::replica_lag`]), apart from the projectors' lag (which counts what
    /// the read copy holds). `None` from [`App::status`], and when the App reads what it
    /// writes (no read replica).
    pub replica: Option<std::result::Result<crate::store::ReplicaLag, Arc<Error>>>,
}

impl AppStatus {
    /// A status, with no event handlers.
    pub fn new(role: Role, stopping: bool, projections: Vec<ProjectionHealth>) -> Self {
        AppStatus {
            role,
            stopping,
            projections,
            handlers: Vec::new(),
            process_managers: Vec::new(),
            relays: Vec::new(),
            replica: None,
        }
    }

    /// The status with these event handlers.
    pub fn with_handlers(mut self, handlers: Vec<ProjectionHealth>) -> Self {
        self.handlers = handlers;
        self
    }

    /// The status with these process managers.
    pub fn with_process_managers(mut self, process_managers: Vec<ProjectionHealth>) -> Self {
        self.process_managers = process_managers;
        self
    }

    /// Not stopping, and no projection, event handler or process manager of this process failed.
    pub fn is_healthy(&self) -> bool {
        let failed = |p: &ProjectionHealth| matches!(p.state, RunState::Failed(_));
        let members = self.projections.iter().chain(&self.handlers).chain(&self.process_managers).chain(&self.relays);
        !self.stopping && !members.into_iter().any(failed)
    }
}

/// A projection the App's readers read: its type, its name, and the signal of its runner here,
/// if it runs here.
struct Registered {
    type_id: TypeId,
    name: String,
    wake_ups: Option<watch::Receiver<u64>>,
    /// How a partitioned projection places its views; `None` when it is whole.
    partitioned: Option<ViewKey>,
}

/// A projection's or event handler's runner: its status handle, when it runs here.
struct Runner {
    kind: Kind,
    name: String,
    handle: Option<MemberHandle>,
}

struct Inner {
    stores: Stores,
    role: Role,
    drain_timeout: Duration,
    /// Each aggregate's [`Engine`], by the aggregate's type, with its category.
    engines: Arc<Engines>,
    /// The registered projections, in the order registered.
    readers: Vec<Registered>,
    /// Every projection's and event handler's runner, in the order registered.
    runners: Vec<Runner>,
    /// Whether this process holds each projection's or handler's lease, as its runners last
    /// took or gave it.
    lease_states: LeaseStates,
    /// Each relay, in the order registered.
    relays: Vec<RelayEntry>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// Turns `true` when a shutdown began: new commands are refused.
    stopping: watch::Sender<bool>,
    /// Turns `true` once the commands in flight finished (or the drain timed out): the runners
    /// stop after their batch, so that they project what the last commands appended.
    drained: watch::Sender<bool>,
    in_flight: watch::Sender<usize>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Projectors of a dropped App stop after their batch.
        self.stopping.send_replace(true);
        self.drained.send_replace(true);
    }
}

/// Counts a command in flight until dropped.
struct InFlight<'a>(&'a watch::Sender<usize>);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// An application: the engines of its aggregates, the runners of its projections and typed
/// readers of their views, on one bundle of [`Stores`], in one [`Role`].
///
/// Commands go to [`execute`](Self::execute), routed to their aggregate's engine; reads go
/// through [`reader`](Self::reader); [`shutdown`](Self::shutdown) stops it gracefully. Clones
/// share everything.
///
/// # Examples
///
/// ```
/// use eventloom_core::prelude::*;
/// use eventloom_core::{App, BoxError, MemoryStores, Projection};
/// use std::time::Duration;
///
/// #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
/// enum CounterEvent { Incremented { by: u64 } }
///
/// #[derive(Debug, Default)]
/// struct Counter;
///
/// impl Aggregate for Counter {
///     const TYPE: &'static str = "counter";
///     type Event = CounterEvent;
///     type Error = std::convert::Infallible;
///     fn apply(&mut self, _: &CounterEvent) {}
/// }
///
/// #[derive(Debug, Serialize, Command)]
/// #[command(aggregate = Counter)]
/// struct Increment { #[command(id)] id: String, by: u64 }
///
/// impl Handle<Increment> for Counter {
///     fn handle(&self, cmd: &Increment) -> Result<Vec<CounterEvent>, std::convert::Infallible> {
///         Ok(vec![CounterEvent::Incremented { by: cmd.by }])
///     }
/// }
///
/// struct Totals;
///
/// impl Projection for Totals {
///     const NAME: &'static str = "totals";
///     type Events = Counter;
///     type View = u64;
///     fn apply(&self, total: &mut Option<u64>, e: &EventEnvelope<CounterEvent>) -> Result<(), BoxError> {
///         let CounterEvent::Incremented { by } = &e.event;
///         *total.get_or_insert(0) += by;
///         Ok(())
///     }
/// }
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let app = App::builder(MemoryStores::new()).aggregate::<Counter>().projection(Totals).start().await.unwrap();
/// let done = app.execute(Increment { id: "c-1".into(), by: 4 }).await.unwrap();
/// let totals = app.reader::<Totals>().unwrap();
/// totals.wait_for(&done, Duration::from_secs(5)).await.unwrap();
/// assert_eq!(totals.get("c-1").await.unwrap(), Some(4));
/// app.shutdown().await.unwrap();
/// # });
/// ```
#[derive(Clone)]
pub struct App {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("role", &self.inner.role)
            .field("stores", &self.inner.stores)
            .field("aggregates", &self.inner.engines.values().map(|(_, category)| category).collect::<Vec<_>>())
            .field("projections", &self.inner.readers.iter().map(|r| &r.name).collect::<Vec<_>>())
            .field(
                "handlers",
                &self.inner.runners.iter().filter(|r| r.kind == Kind::Handler).map(|r| &r.name).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl App {
    /// Starts building an app on `stores` ([`MemoryStores`], `PgStores`, or any [`Stores`]).
    pub fn builder(stores: impl Into<Stores>) -> AppBuilder {
        AppBuilder {
            stores: stores.into(),
            role: Role::All,
            drain_timeout: App::DEFAULT_DRAIN_TIMEOUT,
            command_retention: App::DEFAULT_COMMAND_RETENTION,
            aggregates: Vec::new(),
            members: Vec::new(),
            relays: Vec::new(),
        }
    }

    /// Executes a command on its aggregate's engine (see [`Cqrs::execute`]).
    ///
    /// Fails with [`Error::NotRegistered`] (in [`CommandError::Store`]) when the aggregate was not
    /// registered, [`Error::WrongRole`] in a role without commands, and [`Error::Shutdown`] once
    /// a shutdown has begun.
    pub async fn execute<C>(
        &self,
        command: C,
    ) -> Result<CommandOutcome, CommandError<<C::Aggregate as Aggregate>::Error>>
    where
        C: Command + serde::Serialize,
        C::Aggregate: Handle<C>,
    {
        self.execute_with(command, ExecuteOptions::default()).await
    }

    /// Executes a command with options: an idempotency id, a required version, metadata (see
    /// [`Cqrs::execute_with`]).
    pub async fn execute_with<C>(
        &self,
        command: C,
        options: ExecuteOptions,
    ) -> Result<CommandOutcome, CommandError<<C::Aggregate as Aggregate>::Error>>
    where
        C: Command + serde::Serialize,
        C::Aggregate: Handle<C>,
    {
        let engine = self.engine::<C::Aggregate>()?;
        if !self.inner.role.runs_commands() {
            return Err(Error::WrongRole { role: self.inner.role, action: "execute commands" }.into());
        }
        let _in_flight = self.enter()?;
        engine.execute_with(command, options).await
    }

    /// Counts a command in flight, unless a shutdown has begun.
    fn enter(&self) -> Result<InFlight<'_>> {
        let in_flight = &self.inner.in_flight;
        in_flight.send_modify(|n| *n += 1);
        let guard = InFlight(in_flight);
        // Checked after counting, so that a shutdown either sees this command or refuses it.
        if *self.inner.stopping.borrow() {
            return Err(Error::Shutdown);
        }
        Ok(guard)
    }

    /// The engine of aggregate `A`, for what `execute` does not cover (loading an aggregate's
    /// state). Commands executed on it directly bypass the role check and the shutdown's drain.
    pub fn engine<A: Aggregate>(&self) -> Result<&Cqrs<A, Arc<dyn EventStore>>> {
        self.inner
            .engines
            .get(&TypeId::of::<A>())
            .and_then(|(engine, _)| engine.downcast_ref::<Engine<A>>())
            .ok_or_else(|| Error::NotRegistered { kind: "aggregate", name: A::TYPE.to_owned() })
    }

    /// A typed reader of projection `P`'s views. When `P`'s runner is in this process (a role
    /// that runs projectors), waits are woken by its writes; with stores shared between
    /// processes they also poll, since another process's runner may hold the lease. Fails with
    /// [`Error::NotRegistered`] for a projection type the app was not built with, and with
    /// [`Error::Ambiguous`] when `P` is registered under several names: ask for one with
    /// [`reader_named`](Self::reader_named).
    pub fn reader<P: Projection>(&self) -> Result<Reader<P>> {
        let mut of_type = self.inner.readers.iter().filter(|r| r.type_id == TypeId::of::<P>());
        match (of_type.next(), of_type.next()) {
            (None, _) => Err(Error::NotRegistered { kind: "projection", name: P::NAME.to_owned() }),
            (Some(registered), None) => Ok(self.reader_of(registered)),
            (Some(_), Some(_)) => Err(Error::Ambiguous {
                kind: "projection",
                type_name: std::any::type_name::<P>(),
                names: self
                    .inner
                    .readers
                    .iter()
                    .filter(|r| r.type_id == TypeId::of::<P>())
                    .map(|r| r.name.clone())
                    .collect(),
            }),
        }
    }

    /// A typed reader of the instance of projection `P` registered under `name` (see
    /// [`Projection::name`]); as [`reader`](Self::reader) otherwise. Fails with
    /// [`Error::NotRegistered`] when no projection of type `P` is registered under that name.
    ///
    /// # Examples
    ///
    /// ```
    /// # use eventloom_core::prelude::*;
    /// # use eventloom_core::{BoxError, Error, Projection};
    /// # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)] enum SaleEvent { Sold { cents: u64 } }
    /// # #[derive(Debug, Default)] struct Sale;
    /// # impl Aggregate for Sale { const TYPE: &'static str = "sale"; type Event = SaleEvent;
    /// #   type Error = std::convert::Infallible; fn apply(&mut self, _: &SaleEvent) {} }
    /// /// Takings in cents, or in whole units.
    /// struct Takings { name: &'static str, divisor: u64 }
    ///
    /// impl Projection for Takings {
    ///     const NAME: &'static str = "takings";
    ///     type Events = Sale;
    ///     type View = u64;
    ///     fn name(&self) -> &str { self.name }
    ///     fn apply(&self, total: &mut Option<u64>, e: &EventEnvelope<SaleEvent>) -> Result<(), BoxError> {
    ///         let SaleEvent::Sold { cents } = &e.event;
    ///         *total.get_or_insert(0) += cents / self.divisor;
    ///         Ok(())
    ///     }
    /// }
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
    /// let app = App::builder(MemoryStores::new())
    ///     .projection(Takings { name: "takings_cents", divisor: 1 })
    ///     .projection(Takings { name: "takings_units", divisor: 100 })
    ///     .start()
    ///     .await
    ///     .unwrap();
    /// let cents = app.reader_named::<Takings>("takings_cents").unwrap();
    /// # let _ = cents;
    /// assert!(matches!(app.reader::<Takings>(), Err(Error::Ambiguous { .. })));
    /// assert!(matches!(app.reader_named::<Takings>("takings"), Err(Error::NotRegistered { .. })));
    /// app.shutdown().await.unwrap();
    /// # });
    /// ```
    pub fn reader_named<P: Projection>(&self, name: &str) -> Result<Reader<P>> {
        let registered = self.inner.readers.iter().find(|r| r.name == name);
        match registered {
            Some(registered) if registered.type_id == TypeId::of::<P>() => Ok(self.reader_of(registered)),
            Some(_) => Err(Error::NotRegistered {
                kind: "projection",
                name: format!("{name} of type {}", std::any::type_name::<P>()),
            }),
            None => Err(Error::NotRegistered { kind: "projection", name: name.to_owned() }),
        }
    }

    fn reader_of<P: Projection>(&self, registered: &Registered) -> Reader<P> {
        let wake_ups = registered.wake_ups.clone();
        let poll_too = wake_ups.is_none() || self.inner.stores.is_shared();
        let reader = Reader::shared(self.inner.stores.views().clone(), registered.name.clone(), wake_ups, poll_too);
        if registered.partitioned.is_some() { reader.partitioned() } else { reader }
    }

    /// The stores the app runs on.
    pub fn stores(&self) -> &Stores {
        &self.inner.stores
    }

    /// The process's role.
    pub fn role(&self) -> Role {
        self.inner.role
    }

    /// Each projection's and event handler's runner in this process: running, stopped, or
    /// failed with its error (a failure stays one after a shutdown, even one met on the last
    /// batch of the drain), and whether it leads (holds its lease, not known to be lost) or
    /// stands by (waits for the lease, or gave it up after another runner wrote). Reads no
    /// store: see [`health`](Self::health) for the lag.
    pub fn status(&self) -> AppStatus {
        let stopping = *self.inner.stopping.borrow();
        let health = |runner: &Runner| {
            // A member that says it stands by (it gave the lease up, or waits for it) does.
            let (state, standing_by) = match &runner.handle {
                None => (RunState::Elsewhere, false),
                Some(member) => {
                    let status = member.status();
                    let state = match status.state {
                        MemberState::Failed => RunState::Failed(Arc::new(Error::Backend {
                            message: status.last_error.unwrap_or_default(),
                            source: None,
                        })),
                        MemberState::Stopped => RunState::Stopped,
                        _ => RunState::Running,
                    };
                    (state, status.state == MemberState::StandingBy)
                }
            };
            let mut health = ProjectionHealth::new(runner.name.clone(), state);
            if health.state.is_running() {
                // A partitioned projection leads here when one of its partitions does.
                let parts = runner.handle.iter().flat_map(|member| member.parts());
                let leading = parts
                    .map(|part| self.inner.lease_states.get(part.name()))
                    .find(|lease| matches!(lease, LeaseState::Leading { .. }));
                health.lease = match leading.unwrap_or_else(|| self.inner.lease_states.get(&runner.name)) {
                    LeaseState::Leading { .. } if standing_by => LeaseState::StandingBy,
                    lease => lease,
                };
            }
            health
        };
        let of = |kind| self.inner.runners.iter().filter(|r| r.kind == kind).map(health).collect();
        let relays = self
            .inner
            .relays
            .iter()
            .map(|relay| {
                let mut health = ProjectionHealth::new(relay.source.clone(), lock(&relay.state).clone());
                if health.state.is_running() {
                    health.lease = self.inner.lease_states.get(&relay::lease_name(&relay.source));
                }
                health
            })
            .collect();
        let mut status = AppStatus::new(self.inner.role, stopping, of(Kind::Projection))
            .with_handlers(of(Kind::Handler))
            .with_process_managers(of(Kind::Process));
        status.relays = relays;
        status
    }

    /// The [`status`](Self::status), with each projection's and event handler's [`Lag`] read
    /// from the stores, in any role (the view store holds the checkpoint whichever process
    /// writes it): how many events the live views (a handler: its checkpoint) lack, counted
    /// exactly up to `cap` so that a probe costs the same however far behind they are, and how
    /// old the first of them is. A few bounded reads per projection (its status, a count, one
    /// event) and one for the events held back. A view store that fails leaves that
    /// projection's `lag` an error; an event store that fails leaves its [`Lag::unprojected`]
    /// an error, with the views' status still told. Each relay's [`RelayLag`]: the last message
    /// of its source recorded as relayed, and what its feed holds after it (counted up to `cap`,
    /// and how old the first is where the feed can tell): one read of the event store and two
    /// of the feed. A health check should bound the call with a timeout, as a store that is down
    /// may take its time to say so.
    ///
    /// # Examples
    ///
    /// ```
    /// # use eventloom_core::prelude::*;
    /// # use eventloom_core::{BoxError, Projection};
    /// # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)] enum CounterEvent { Incremented { by: u64 } }
    /// # #[derive(Debug, Default)] struct Counter;
    /// # impl Aggregate for Counter { const TYPE: &'static str = "counter"; type Event = CounterEvent;
    /// #   type Error = std::convert::Infallible; fn apply(&mut self, _: &CounterEvent) {} }
    /// # #[derive(Debug, Serialize, Command)] #[command(aggregate = Counter)]
    /// # struct Increment { #[command(id)] id: String, by: u64 }
    /// # impl Handle<Increment> for Counter {
    /// #   fn handle(&self, cmd: &Increment) -> Result<Vec<CounterEvent>, std::convert::Infallible> {
    /// #     Ok(vec![CounterEvent::Incremented { by: cmd.by }]) } }
    /// # struct Totals;
    /// # impl Projection for Totals { const NAME: &'static str = "totals"; type Events = Counter; type View = u64;
    /// #   fn apply(&self, v: &mut Option<u64>, e: &EventEnvelope<CounterEvent>) -> Result<(), BoxError> {
    /// #     let CounterEvent::Incremented { by } = &e.event; *v.get_or_insert(0) += by; Ok(()) } }
    /// use eventloom_core::app::LeaseState;
    /// use std::time::Duration;
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
    /// let app = App::builder(MemoryStores::new()).aggregate::<Counter>().projection(Totals).start().await.unwrap();
    /// let done = app.execute(Increment { id: "c-1".into(), by: 4 }).await.unwrap();
    /// app.reader::<Totals>().unwrap().wait_for(&done, Duration::from_secs(5)).await.unwrap();
    /// let health = app.health(10_000).await;
    /// let totals = &health.projections[0];
    /// assert!(matches!(totals.lease, LeaseState::Leading { .. }), "memory stores have leases too");
    /// let lag = totals.lag.clone().unwrap().unwrap();
    /// assert!(lag.caught_up() && lag.checkpoint() == Some(done.position));
    /// app.shutdown().await.unwrap();
    /// # });
    /// ```
    pub async fn health(&self, cap: u64) -> AppStatus {
        let mut status = self.status();
        let (events, views) = (self.inner.stores.events(), self.inner.stores.views());
        let held_back = events.held_back(cap).await.map_err(Arc::new);
        let members = status.projections.iter_mut().chain(status.handlers.iter_mut());
        for member in members.chain(status.process_managers.iter_mut()) {
            let partitioned = self.inner.readers.iter().any(|r| r.name == member.name && r.partitioned.is_some());
            let lag = health::lag(&**events, &**views, &member.name, partitioned, cap, &held_back).await;
            member.lag = Some(lag.map_err(Arc::new));
        }
        for (member, relay) in status.relays.iter_mut().zip(&self.inner.relays) {
            let read_to = *lock(&relay.read_to);
            let lag = health::relay_lag(&**events, &*relay.probe, &relay.source, read_to, cap).await;
            member.relay = Some(lag.map_err(Arc::new));
        }
        status.replica = events.replica_lag().await.map_err(Arc::new).transpose();
        crate::metrics::health(&status, held_back.as_ref().ok().copied());
        status
    }

    /// Resolves once a shutdown has begun (by [`shutdown`](Self::shutdown) on any clone): for a
    /// server's graceful shutdown, e.g. axum's `with_graceful_shutdown(app.stopped())`.
    pub fn stopped(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut stopping = self.inner.stopping.subscribe();
        async move {
            let _ = stopping.wait_for(|stopping| *stopping).await;
        }
    }

    /// Stops gracefully: new commands are refused with [`Error::Shutdown`], commands in flight
    /// finish, then each projector stops after the batch it is writing. Waits at most the
    /// [drain timeout](AppBuilder::drain_timeout) in all, then aborts what is left and fails with
    /// [`Error::Timeout`]. A projector's own failure is not an error of the shutdown: see
    /// [`status`](Self::status), which still tells it afterwards (a process whose only job is
    /// projecting should exit with an error then). Calling it again returns at once.
    pub async fn shutdown(&self) -> Result<()> {
        let deadline = tokio::time::Instant::now() + self.inner.drain_timeout;
        self.inner.stopping.send_replace(true);
        let mut in_flight = self.inner.in_flight.subscribe();
        let drained = tokio::time::timeout_at(deadline, in_flight.wait_for(|n| *n == 0)).await.is_ok();
        self.inner.drained.send_replace(true);
        let tasks = std::mem::take(&mut *lock(&self.inner.tasks));
        let mut finished = drained;
        for mut task in tasks {
            if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
                task.abort();
                finished = false;
            }
        }
        if finished {
            tracing::info!("app shut down");
            Ok(())
        } else {
            tracing::warn!(timeout = ?self.inner.drain_timeout, "app shut down before everything drained");
            Err(Error::Timeout(self.inner.drain_timeout))
        }
    }
}

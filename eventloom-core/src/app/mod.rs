//! The application layer: one [`App`] that runs aggregates and projections on a bundle of
//! [`Stores`], in every [`Role`].

mod options;
mod signal;
mod stores;

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::store::BoxFuture;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use options::{AggregateOptions, ProjectionOptions, Role};
pub use stores::{MemoryStores, Stores};

use self::signal::{SignallingViews, Signals};
use crate::memory::lock;
use crate::{
    Aggregate, Command, CommandError, CommandOutcome, Cqrs, Error, EventStore, ExecuteOptions, Handle, Lease,
    LeaseManager, MemberHandle, MemberState, Projection, ProjectionGroup, Projector, Reader, Result, Upcasters,
    ViewStore,
};

impl App {
    /// How long [`App::shutdown`] waits for commands in flight and projectors' batches by default.
    pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
}

/// The engine of one aggregate type as the App keeps it.
type Engine<A> = Cqrs<A, Arc<dyn EventStore>>;
type RunFuture = Pin<Box<dyn Future<Output = Result<()>> + Send>>;
type RunProjection = Box<dyn FnOnce(Projector<Arc<dyn EventStore>>, Shutdown) -> RunFuture + Send>;
type JoinGroup = Box<dyn FnOnce(&mut ProjectionGroup<Arc<dyn EventStore>>) -> MemberHandle + Send>;

/// Where a projection runs: with the projector's defaults, as a member of the process's one
/// group, fed by one shared read of the log; with options of its own, on a runner of its own.
enum Placement {
    Alone(RunProjection),
    Group(JoinGroup),
}

/// Where the App learns how a projection's runner in this process stands.
enum Runner {
    Alone(Arc<Mutex<RunState>>),
    Member(MemberHandle),
}
type BuildEngine = Box<dyn FnOnce(&Stores) -> Result<Box<dyn Any + Send + Sync>> + Send>;

/// Resolves when the App shuts down (or is dropped).
type Shutdown = Pin<Box<dyn Future<Output = ()> + Send>>;

struct PendingAggregate {
    type_id: TypeId,
    category: &'static str,
    upcasters: Upcasters,
    build: BuildEngine,
}

struct PendingProjection {
    type_id: TypeId,
    name: &'static str,
    options: ProjectionOptions,
    placement: Placement,
}

/// Builds an [`App`]: register aggregates and projections, pick a [`Role`], then
/// [`start`](Self::start). Setters never fail; `start` checks the whole (duplicate
/// registrations, a split role on stores that live in one process, snapshots without a snapshot
/// store) and reports the first problem as [`Error::InvalidConfig`].
///
/// See [`App`] for an example.
pub struct AppBuilder {
    stores: Stores,
    role: Role,
    drain_timeout: Duration,
    aggregates: Vec<PendingAggregate>,
    projections: Vec<PendingProjection>,
}

impl std::fmt::Debug for AppBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppBuilder")
            .field("stores", &self.stores)
            .field("role", &self.role)
            .field("aggregates", &self.aggregates.iter().map(|a| a.category).collect::<Vec<_>>())
            .field("projections", &self.projections.iter().map(|p| p.name).collect::<Vec<_>>())
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
        self.aggregates.push(PendingAggregate { type_id: TypeId::of::<A>(), category: A::TYPE, upcasters, build });
        self
    }

    /// Registers projection `projection`, run by the projectors of this app with the defaults.
    pub fn projection<P: Projection>(self, projection: P) -> Self {
        self.projection_with(projection, ProjectionOptions::new())
    }

    /// Registers projection `projection` with `options` (poison policy, batch size).
    pub fn projection_with<P: Projection>(mut self, projection: P, options: ProjectionOptions) -> Self {
        let placement = if options.is_default() {
            Placement::Group(Box::new(move |group| group.add(projection)))
        } else {
            Placement::Alone(Box::new(move |projector, shutdown| {
                Box::pin(async move { projector.run(projection, shutdown).await })
            }))
        };
        self.projections.push(PendingProjection { type_id: TypeId::of::<P>(), name: P::NAME, options, placement });
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

    fn check(&self) -> Result<()> {
        let invalid = |reason: String| Err(Error::InvalidConfig { reason });
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
        }
        for (i, p) in self.projections.iter().enumerate() {
            if self.projections[..i].iter().any(|q| q.type_id == p.type_id || q.name == p.name) {
                return invalid(format!("projection {} is registered twice", p.name));
            }
        }
        Ok(())
    }

    /// Builds the engines and, in a role that runs them, starts the projectors (each on a task
    /// of its own). Must be called within a tokio runtime.
    pub async fn start(self) -> Result<App> {
        self.check()?;
        let AppBuilder { stores, role, drain_timeout, aggregates, projections } = self;
        let mut engines = HashMap::new();
        let mut upcasters = HashMap::new();
        for aggregate in aggregates {
            engines.insert(aggregate.type_id, ((aggregate.build)(&stores)?, aggregate.category));
            upcasters.insert(aggregate.category, aggregate.upcasters);
        }
        let (stopping, _) = watch::channel(false);
        let signals = Arc::new(Signals::default());
        let mut registered = HashMap::new();
        let mut states = Vec::new();
        let mut tasks = Vec::new();
        let runs_here = role.runs_projectors();
        // The App's readers are woken by the writes of this process's runners; with stores shared
        // between processes another process's runner may lead, so they poll as well.
        for projection in &projections {
            let wake_ups = runs_here.then(|| signals.subscribe(projection.name));
            registered.insert(projection.type_id, wake_ups);
        }
        if runs_here {
            let views: Arc<dyn ViewStore> =
                Arc::new(SignallingViews { inner: stores.views().clone(), signals: signals.clone() });
            let mut base = Projector::new(stores.events().clone(), views);
            if let Some(leases) = stores.leases() {
                base = base.with_leases(SharedLeases(leases.clone()));
            }
            for (category, upcasters) in upcasters {
                base = base.with_upcasters_for(category, upcasters);
            }
            let mut group = base.group();
            let mut members = 0;
            for projection in projections {
                match projection.placement {
                    Placement::Group(join) => {
                        members += 1;
                        states.push((projection.name, Some(Runner::Member(join(&mut group)))));
                    }
                    Placement::Alone(run) => {
                        let state = Arc::new(Mutex::new(RunState::Running));
                        states.push((projection.name, Some(Runner::Alone(state.clone()))));
                        tasks.push(spawn_alone(&base, projection.name, projection.options, run, state, &stopping));
                    }
                }
            }
            if members > 0 {
                tasks.push(spawn_group(group, &stopping));
            }
        } else {
            states.extend(projections.iter().map(|p| (p.name, None)));
        }
        tracing::info!(%role, stores = stores.description(), projections = states.len(), "app started");
        Ok(App {
            inner: Arc::new(Inner {
                stores,
                role,
                drain_timeout,
                engines,
                registered,
                states,
                tasks: Mutex::new(tasks),
                stopping,
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

/// Runs the process's group (every projection with the projector's defaults, fed by one shared
/// read of the log) on a task of its own. Each member's status is in its handle.
fn spawn_group(group: ProjectionGroup<Arc<dyn EventStore>>, stopping: &watch::Sender<bool>) -> JoinHandle<()> {
    let shutdown = shutdown_of(stopping);
    tokio::spawn(async move {
        if let Err(error) = group.run(shutdown).await {
            tracing::error!(%error, "the projections' group stopped");
        }
    })
}

/// Starts one projection with options of its own on a runner of its own.
fn spawn_alone(
    base: &Projector<Arc<dyn EventStore>>,
    name: &'static str,
    options: ProjectionOptions,
    run: RunProjection,
    state: Arc<Mutex<RunState>>,
    stopping: &watch::Sender<bool>,
) -> JoinHandle<()> {
    let mut projector = base.clone();
    if let Some(policy) = options.poison {
        projector = projector.with_poison_policy(policy);
    }
    if let Some(events) = options.batch_size {
        projector = projector.with_batch_size(events);
    }
    let run = run(projector, shutdown_of(stopping));
    tokio::spawn(async move {
        let mut guard = PanicGuard { state: state.clone(), armed: true };
        let result = run.await;
        guard.armed = false;
        *lock(&state) = match result {
            Ok(()) => RunState::Stopped,
            Err(error) => {
                tracing::error!(projection = name, %error, "projection stopped");
                RunState::Failed(Arc::new(error))
            }
        };
    })
}

/// Marks a projection failed when its runner panics.
struct PanicGuard {
    state: Arc<Mutex<RunState>>,
    armed: bool,
}

impl Drop for PanicGuard {
    fn drop(&mut self) {
        if self.armed {
            *lock(&self.state) = RunState::Failed(Arc::new(Error::Backend {
                message: "the projection's runner panicked or was aborted".to_owned(),
                source: None,
            }));
        }
    }
}

/// The bundle's lease manager, shared by the App's projectors.
struct SharedLeases(Arc<dyn LeaseManager>);

impl LeaseManager for SharedLeases {
    fn acquire<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Lease>> {
        Box::pin(async move { self.0.acquire(name).await })
    }
}

/// How one projection's runner in this process stands.
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
    /// Running (or standing by for its lease, or retrying a store that is unavailable).
    Running,
    /// Stopped by a shutdown.
    Stopped,
    /// Stopped on an error it cannot get past (a poison event, corrupt data, a newer version
    /// in the store): see the error. Other projections go on.
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

/// One projection in [`AppStatus`].
///
/// # Examples
///
/// ```
/// use eventloom_core::{app::{ProjectionHealth, RunState}};
///
/// let health = ProjectionHealth::new("account_summaries", RunState::Running);
/// assert_eq!(health.name, "account_summaries");
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ProjectionHealth {
    /// The projection's name.
    pub name: &'static str,
    /// How its runner in this process stands.
    pub state: RunState,
}

impl ProjectionHealth {
    /// A projection's health.
    pub fn new(name: &'static str, state: RunState) -> Self {
        ProjectionHealth { name, state }
    }
}

/// What [`App::status`] reports, for a health check.
///
/// # Examples
///
/// ```
/// use eventloom_core::{Role, app::{AppStatus, ProjectionHealth, RunState}};
///
/// let status = AppStatus::new(Role::All, false, vec![ProjectionHealth::new("p", RunState::Running)]);
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
}

impl AppStatus {
    /// A status.
    pub fn new(role: Role, stopping: bool, projections: Vec<ProjectionHealth>) -> Self {
        AppStatus { role, stopping, projections }
    }

    /// Not stopping, and no projection of this process failed.
    pub fn is_healthy(&self) -> bool {
        !self.stopping && !self.projections.iter().any(|p| matches!(p.state, RunState::Failed(_)))
    }
}

struct Inner {
    stores: Stores,
    role: Role,
    drain_timeout: Duration,
    /// Each aggregate's [`Engine`], by the aggregate's type, with its category.
    engines: HashMap<TypeId, (Box<dyn Any + Send + Sync>, &'static str)>,
    /// The registered projections, with the signal of their runner here, if it runs here.
    registered: HashMap<TypeId, Option<watch::Receiver<u64>>>,
    states: Vec<(&'static str, Option<Runner>)>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    stopping: watch::Sender<bool>,
    in_flight: watch::Sender<usize>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Projectors of a dropped App stop after their batch.
        self.stopping.send_replace(true);
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
            .field("projections", &self.inner.states.iter().map(|(name, _)| name).collect::<Vec<_>>())
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
            aggregates: Vec::new(),
            projections: Vec::new(),
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
    /// [`Error::NotRegistered`] for a projection the app was not built with.
    pub fn reader<P: Projection>(&self) -> Result<Reader<P>> {
        let wake_ups = self
            .inner
            .registered
            .get(&TypeId::of::<P>())
            .ok_or_else(|| Error::NotRegistered { kind: "projection", name: P::NAME.to_owned() })?;
        let poll_too = wake_ups.is_none() || self.inner.stores.is_shared();
        Ok(Reader::shared(self.inner.stores.views().clone(), wake_ups.clone(), poll_too))
    }

    /// The stores the app runs on.
    pub fn stores(&self) -> &Stores {
        &self.inner.stores
    }

    /// The process's role.
    pub fn role(&self) -> Role {
        self.inner.role
    }

    /// Each projection's runner in this process: running, stopped, or failed with its error.
    pub fn status(&self) -> AppStatus {
        let projections = self
            .inner
            .states
            .iter()
            .map(|(name, state)| {
                let state = match state {
                    None => RunState::Elsewhere,
                    Some(Runner::Alone(state)) => lock(state).clone(),
                    Some(Runner::Member(member)) => {
                        let status = member.status();
                        match (status.state, status.last_error) {
                            (MemberState::Stopped, Some(error)) if !*self.inner.stopping.borrow() => {
                                RunState::Failed(Arc::new(Error::Backend { message: error, source: None }))
                            }
                            (MemberState::Stopped, _) => RunState::Stopped,
                            _ => RunState::Running,
                        }
                    }
                };
                ProjectionHealth::new(name, state)
            })
            .collect();
        AppStatus::new(self.inner.role, *self.inner.stopping.borrow(), projections)
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
    /// [`status`](Self::status). Calling it again returns at once.
    pub async fn shutdown(&self) -> Result<()> {
        let deadline = tokio::time::Instant::now() + self.inner.drain_timeout;
        self.inner.stopping.send_replace(true);
        let mut in_flight = self.inner.in_flight.subscribe();
        let drained = tokio::time::timeout_at(deadline, in_flight.wait_for(|n| *n == 0)).await.is_ok();
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

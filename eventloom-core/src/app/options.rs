//! Per-registration options: [`AggregateOptions`], [`ProjectionOptions`], [`HandlerOptions`],
//! and the [`Role`].

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::model::{Clock, SystemClock};
use crate::read::group::MemberSettings;
use crate::{Aggregate, Cqrs, Error, EventStore, PoisonPolicy, RetryPolicy, SnapshotPolicy, SnapshotStore, Upcasters};

/// Attaches a snapshot store to an engine; a plain function so that the `Serialize` bound is
/// checked where snapshots are asked for, not on every aggregate.
type AttachSnapshots<A> =
    fn(Cqrs<A, Arc<dyn EventStore>>, Arc<dyn SnapshotStore>, SnapshotPolicy) -> Cqrs<A, Arc<dyn EventStore>>;

/// How an [`App`](crate::App) runs one aggregate's engine: snapshots (in the bundle's snapshot
/// store), the cache of loaded aggregates, upcasters and the conflict retry policy. The
/// upcasters are registered once here and used by the engine and by every projector that reads
/// the aggregate's events.
///
/// # Examples
///
/// ```
/// # use eventloom_core::prelude::*;
/// # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)] enum CounterEvent { Incremented { by: u64 } }
/// # #[derive(Debug, Default, Serialize, Deserialize)] struct Counter;
/// # impl Aggregate for Counter { const TYPE: &'static str = "counter"; type Event = CounterEvent;
/// #   type Error = std::convert::Infallible; fn apply(&mut self, _: &CounterEvent) {} }
/// use eventloom_core::{AggregateOptions, write::{RetryPolicy, SnapshotPolicy}};
///
/// let options = AggregateOptions::<Counter>::new()
///     .snapshots(SnapshotPolicy::every(100))
///     .cache_capacity(1_000)
///     .retry(RetryPolicy::default().max_attempts(5));
/// ```
pub struct AggregateOptions<A: Aggregate> {
    pub(crate) cache_capacity: Option<usize>,
    pub(crate) upcasters: Upcasters,
    pub(crate) retry: Option<RetryPolicy>,
    pub(crate) snapshots: Option<(SnapshotPolicy, AttachSnapshots<A>)>,
    pub(crate) inspect: Option<InspectState>,
}

/// Loads an aggregate's state (its stream's id) as of a point, as JSON with its version, from
/// the events of a store through upcasters: what [`AggregateOptions::inspectable`] registers.
pub(crate) type InspectState = fn(
    Arc<dyn EventStore>,
    Upcasters,
    String,
    crate::write::AsOf,
) -> crate::store::BoxFuture<'static, crate::Result<(serde_json::Value, u64)>>;

/// [`InspectState`] for `A`: a load through an engine without cache or snapshots
/// ([`Cqrs::load_as_of`]), the state serialized.
fn inspect_state<A: Aggregate + Serialize>(
    events: Arc<dyn EventStore>,
    upcasters: Upcasters,
    id: String,
    as_of: crate::write::AsOf,
) -> crate::store::BoxFuture<'static, crate::Result<(serde_json::Value, u64)>> {
    Box::pin(async move {
        let engine: Cqrs<A, Arc<dyn EventStore>> = Cqrs::new(events).with_upcasters(upcasters).with_cache_capacity(0);
        let (state, version) = engine.load_as_of(&id, as_of).await?;
        let state = serde_json::to_value(&state)
            .map_err(|source| Error::Serde { what: format!("the state of aggregate {}", A::TYPE), source })?;
        Ok((state, version))
    })
}

impl<A: Aggregate> Default for AggregateOptions<A> {
    fn default() -> Self {
        AggregateOptions {
            cache_capacity: None,
            upcasters: Upcasters::new(),
            retry: None,
            snapshots: None,
            inspect: None,
        }
    }
}

impl<A: Aggregate> fmt::Debug for AggregateOptions<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AggregateOptions")
            .field("aggregate", &A::TYPE)
            .field("cache_capacity", &self.cache_capacity)
            .field("retry", &self.retry)
            .field("snapshots", &self.snapshots.as_ref().map(|(policy, _)| policy))
            .field("inspectable", &self.inspect.is_some())
            .finish_non_exhaustive()
    }
}

impl<A: Aggregate> AggregateOptions<A> {
    /// The engine's defaults: see [`Cqrs::new`].
    pub fn new() -> Self {
        AggregateOptions::default()
    }

    /// Stores snapshots in the bundle's snapshot store by `policy` (the app refuses to start
    /// when the bundle has none).
    pub fn snapshots(mut self, policy: SnapshotPolicy) -> Self
    where
        A: Serialize + DeserializeOwned,
    {
        self.snapshots = Some((policy, |engine, store, policy| engine.with_snapshots(store, policy)));
        self
    }

    /// Keeps up to `capacity` aggregates loaded (0: none; see [`Cqrs::with_cache_capacity`]).
    pub fn cache_capacity(mut self, capacity: usize) -> Self {
        self.cache_capacity = Some(capacity);
        self
    }

    /// Upcasts the aggregate's stored events, for its engine and for the projectors reading them.
    pub fn upcasters(mut self, upcasters: Upcasters) -> Self {
        self.upcasters = upcasters;
        self
    }

    /// Retries conflicts by `policy` (see [`Cqrs::with_retry`]).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = Some(policy);
        self
    }

    /// Lets the admin operations show the aggregate's state, as JSON, as of a version or a
    /// time ([`Operations::state`](crate::app::Operations::state), `eventloom-admin state`):
    /// time travel, folding the stream's first events as the engine folds them
    /// ([`Cqrs::load_as_of`]).
    ///
    /// # Examples
    ///
    /// ```
    /// # use eventloom_core::prelude::*;
    /// # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)] enum CounterEvent { Incremented }
    /// # impl Aggregate for Counter { const TYPE: &'static str = "counter"; type Event = CounterEvent;
    /// #   type Error = std::convert::Infallible; fn apply(&mut self, _: &CounterEvent) { self.value += 1 } }
    /// use eventloom_core::AggregateOptions;
    ///
    /// #[derive(Debug, Default, Serialize)]
    /// struct Counter {
    ///     value: u64,
    /// }
    ///
    /// let options = AggregateOptions::<Counter>::new().inspectable();
    /// # let _ = options;
    /// ```
    pub fn inspectable(mut self) -> Self
    where
        A: Serialize,
    {
        self.inspect = Some(inspect_state::<A>);
        self
    }
}

/// How an [`App`](crate::App) (or a [`ProjectionGroup`](crate::ProjectionGroup)) runs one
/// projection: what to do with an event it cannot process, and how many events it folds per
/// atomic write.
///
/// The group honours every option: a projection registered with options is still fed by the
/// group's one read of the log. A batch of that read longer than the projection's batch size is
/// written in several; the read's batches are as large as the largest member's batch size.
///
/// # Examples
///
/// ```
/// use eventloom_core::{ProjectionOptions, read::PoisonPolicy};
///
/// let options = ProjectionOptions::new().poison_policy(PoisonPolicy::DeadLetter).batch_size(500);
/// # let _ = options;
/// ```
#[derive(Debug, Clone, Default)]
pub struct ProjectionOptions {
    pub(crate) poison: Option<PoisonPolicy>,
    pub(crate) batch_size: Option<usize>,
    pub(crate) partitions: u32,
}

impl ProjectionOptions {
    /// The projector's defaults: stop on a poison event, batches of
    /// [`read::DEFAULT_PROJECTOR_BATCH`](crate::read::DEFAULT_PROJECTOR_BATCH) events.
    pub fn new() -> Self {
        ProjectionOptions::default()
    }

    /// What to do with an event the projection cannot process (default: stop).
    pub fn poison_policy(mut self, policy: PoisonPolicy) -> Self {
        self.poison = Some(policy);
        self
    }

    /// Folds up to `events` per atomic write (at least 1).
    pub fn batch_size(mut self, events: usize) -> Self {
        self.batch_size = Some(events.max(1));
        self
    }

    /// Splits the projection into `n` partitions by a hash of each event's stream id (1, the
    /// default, keeps it whole; at most [`read::MAX_PARTITIONS`](crate::read::MAX_PARTITIONS)).
    /// Each partition keeps its own lease, fencing token, checkpoint and generations under the
    /// name `<name>~<i>of<n>` (so on Redis its own hash tag, and a shard of its own), and the
    /// projector processes share the partitions out; queries read them all and merge lists and
    /// counts. Every view must be written by the events of one partition (see
    /// [`Projection::view_partition_key`](crate::Projection::view_partition_key)); totals over
    /// many streams are kept as one view per partition, summed on read, or in a projection that
    /// stays whole. Changing `n` builds the views again under the new partitioning, while
    /// queries read the old one until the new one has caught up. See the guide's chapter on
    /// scaling out.
    ///
    /// # Examples
    ///
    /// ```
    /// use eventloom_core::ProjectionOptions;
    ///
    /// let options = ProjectionOptions::new().partitions(6);
    /// # let _ = options;
    /// ```
    pub fn partitions(mut self, n: u32) -> Self {
        self.partitions = n;
        self
    }

    /// The number of partitions: 1 when not partitioned.
    pub(crate) fn partition_count(&self) -> u32 {
        self.partitions.max(1)
    }

    pub(crate) fn settings(&self) -> MemberSettings {
        MemberSettings { poison: self.poison, batch_size: self.batch_size, leases: None, share: None }
    }
}

/// How an [`App`](crate::App) (or a [`ProjectionGroup`](crate::ProjectionGroup)) runs one
/// [`EventHandler`](crate::EventHandler): what to do with an event whose `handle` still fails
/// once its retries ran out (the retries themselves are the handler's
/// [`retry`](crate::EventHandler::retry)), and how many events it handles per write of its
/// checkpoint. As for projections, the group honours every option: the handler is still fed by
/// the group's one read of the log.
///
/// # Examples
///
/// ```
/// use eventloom_core::{app::HandlerOptions, read::PoisonPolicy};
///
/// // Skip (and record) what keeps failing; after a crash, at most 50 events come again.
/// let options = HandlerOptions::new().poison_policy(PoisonPolicy::DeadLetter).batch_size(50);
/// # let _ = options;
/// ```
#[derive(Debug, Clone, Default)]
pub struct HandlerOptions {
    poison: Option<PoisonPolicy>,
    batch_size: Option<usize>,
}

impl HandlerOptions {
    /// The projector's defaults: stop at an event that still fails after its retries, and
    /// write the checkpoint every [`read::DEFAULT_PROJECTOR_BATCH`](crate::read::DEFAULT_PROJECTOR_BATCH)
    /// events (and before each retry's wait).
    pub fn new() -> Self {
        HandlerOptions::default()
    }

    /// What to do with an event that still fails after its retries, or does not decode
    /// (default: stop; [`PoisonPolicy::DeadLetter`] records it in the handler's dead letters
    /// and goes on).
    pub fn poison_policy(mut self, policy: PoisonPolicy) -> Self {
        self.poison = Some(policy);
        self
    }

    /// Handles up to `events` per write of its checkpoint (at least 1): fewer events come again
    /// after a crash, at the cost of more writes.
    pub fn batch_size(mut self, events: usize) -> Self {
        self.batch_size = Some(events.max(1));
        self
    }

    pub(crate) fn settings(&self) -> MemberSettings {
        MemberSettings { poison: self.poison, batch_size: self.batch_size, leases: None, share: None }
    }
}

/// How an [`App`](crate::App) runs one process manager: its poison policy and batch size (as a
/// projection's), the clock its timers are due by, and how often it looks for due timers and
/// for commands left in its outbox while no event comes.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use eventloom_core::app::ProcessOptions;
/// use eventloom_core::model::{ManualClock, Timestamp};
///
/// let clock = Arc::new(ManualClock::new(Timestamp::from_micros(0)));
/// let options = ProcessOptions::new().clock(clock.clone()).tick(Duration::from_millis(20));
/// # let _ = options;
/// ```
#[derive(Clone)]
pub struct ProcessOptions {
    pub(crate) poison: Option<PoisonPolicy>,
    pub(crate) batch_size: Option<usize>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) tick: Duration,
    pub(crate) concurrency: usize,
    pub(crate) start: StartFrom,
}

/// Which events a process manager issues commands for when it first starts: every event of the
/// log ([`Beginning`](Self::Beginning), the default), or only those after the log's head at
/// that moment ([`Now`](Self::Now)), for a process manager added to a system whose past it must
/// not act on again.
///
/// Either way its states (and timers) are decided from every event of the log, so that an
/// instance begun before it started goes on from where it is. Where it started is recorded (in
/// its origin stream, category [`ORIGIN_CATEGORY`](crate::process::ORIGIN_CATEGORY)) at the
/// first [`App::start`](crate::AppBuilder::start) that finds no generation of it, and holds from
/// then on: a later change of this option changes nothing, and a rebuild issues nothing for
/// events before it either.
///
/// # Examples
///
/// ```
/// use eventloom_core::app::{ProcessOptions, StartFrom};
///
/// // Added to a running system: orders placed before today get no reminder.
/// let options = ProcessOptions::new().start_from(StartFrom::Now);
/// # let _ = options;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum StartFrom {
    /// Issues what it decides on every event, from the log's first.
    #[default]
    Beginning,
    /// Issues nothing for the events up to the log's head when it first starts; a timer one of
    /// them set fires when due and issues what its reaction decides if it falls due after the
    /// start (one already past due then fires without issuing anything).
    Now,
}

impl fmt::Debug for ProcessOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessOptions")
            .field("poison", &self.poison)
            .field("batch_size", &self.batch_size)
            .field("tick", &self.tick)
            .field("concurrency", &self.concurrency)
            .field("start", &self.start)
            .finish_non_exhaustive()
    }
}

impl Default for ProcessOptions {
    fn default() -> Self {
        ProcessOptions {
            poison: None,
            batch_size: None,
            clock: Arc::new(SystemClock),
            tick: Self::DEFAULT_TICK,
            concurrency: Self::DEFAULT_CONCURRENCY,
            start: StartFrom::Beginning,
        }
    }
}

impl ProcessOptions {
    /// How often a process manager looks for due timers and for commands left in its outbox by
    /// default: a timer fires up to this late.
    pub const DEFAULT_TICK: Duration = Duration::from_secs(1);

    /// How many instances' commands run at a time by default: half of `eventloom-postgres`'s
    /// default pool of 16 connections.
    pub const DEFAULT_CONCURRENCY: usize = 8;

    /// The defaults: stop on a poison event, the projector's batch size, the system clock, a
    /// look every [`DEFAULT_TICK`](Self::DEFAULT_TICK), the commands of up to
    /// [`DEFAULT_CONCURRENCY`](Self::DEFAULT_CONCURRENCY) instances at a time.
    pub fn new() -> Self {
        ProcessOptions::default()
    }

    /// What to do with an event (or timer, or refusal) its reaction fails on, or that does not
    /// decode (default: stop; [`PoisonPolicy::DeadLetter`] records it and goes on, deciding
    /// nothing for it).
    pub fn poison_policy(mut self, policy: PoisonPolicy) -> Self {
        self.poison = Some(policy);
        self
    }

    /// Decides on up to `events` per write (at least 1).
    pub fn batch_size(mut self, events: usize) -> Self {
        self.batch_size = Some(events.max(1));
        self
    }

    /// The clock timers come due by (tests replace it with a
    /// [`ManualClock`](crate::model::ManualClock)). A timer's due time is counted from its
    /// trigger's time, which the engine's clock wrote.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// How often it looks for due timers and commands left in its outbox (at least 1 ms).
    pub fn tick(mut self, every: Duration) -> Self {
        self.tick = every.max(Duration::from_millis(1));
        self
    }

    /// Executes the commands of up to `instances` instances at a time (at least 1). The commands
    /// of one instance always run one after the other, in the order they were decided; those of
    /// different instances run side by side, so that their commits overlap, and may finish in
    /// any order. 1 runs every command in the order of the log (a command to be tried again then
    /// holds back all that follow it, not only its instance's).
    pub fn concurrency(mut self, instances: usize) -> Self {
        self.concurrency = instances.max(1);
        self
    }

    /// Which events it issues commands for when it first starts (default:
    /// [`StartFrom::Beginning`], every event).
    pub fn start_from(mut self, start: StartFrom) -> Self {
        self.start = start;
        self
    }

    pub(crate) fn settings(&self) -> MemberSettings {
        MemberSettings { poison: self.poison, batch_size: self.batch_size, leases: None, share: None }
    }
}

/// What one process of an [`App`](crate::App) does. The same program runs every role: all in
/// one process ([`Role::All`], the default), or one role per process on stores shared between
/// processes (PostgreSQL, Redis), each scaled on its own.
///
/// # Examples
///
/// ```
/// use eventloom_core::Role;
///
/// let role: Role = "projector".parse().unwrap();
/// assert_eq!(role, Role::Projector);
/// assert!(role.runs_projectors() && !role.runs_commands());
/// assert!("web".parse::<Role>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Role {
    /// Commands, queries and projectors in one process.
    #[default]
    All,
    /// Only commands (and reads of views, such as read-your-writes after a command).
    Command,
    /// Only reads of views; commands are refused.
    Query,
    /// Only the projectors; commands are refused.
    Projector,
}

impl Role {
    /// Its name: `all`, `command`, `query` or `projector`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::All => "all",
            Role::Command => "command",
            Role::Query => "query",
            Role::Projector => "projector",
        }
    }

    /// Whether a process of this role executes commands.
    pub fn runs_commands(self) -> bool {
        matches!(self, Role::All | Role::Command)
    }

    /// Whether a process of this role runs the projectors.
    pub fn runs_projectors(self) -> bool {
        matches!(self, Role::All | Role::Projector)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self, Error> {
        match text {
            "all" => Ok(Role::All),
            "command" => Ok(Role::Command),
            "query" => Ok(Role::Query),
            "projector" => Ok(Role::Projector),
            other => Err(Error::InvalidConfig {
                reason: format!("unknown role {other:?}: expected all, command, query or projector"),
            }),
        }
    }
}

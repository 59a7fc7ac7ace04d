//! [`Operations`]: what the admin commands do with an application's own definitions
//! (projections, upcasters), built from the [`AppBuilder`] the application starts, without
//! starting anything.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::{AppBuilder, Kind};
use crate::read::partition::{Partition, member_of};
use crate::read::partitioned::{PartitionOf, Rebuilt, SwitchSeen, refuse_other_versions, settle_named_build};
use crate::read::projector::Progress;
use crate::store::{BoxFuture, DeadLetterSelection, Lease, LeaseInfo, superseded};
use crate::write::AsOf;
use crate::{
    DeadLetter, Error, EventStore, Position, Projection, Projector, RecordedEvent, Result, StreamId, Upcasters,
};

use super::Stores;

/// How long an operation waits for a projection's lease (with the lease manager's own
/// `acquire`) before it looks who holds it and says so.
const LEASE_FIRST_LOOK: Duration = Duration::from_millis(200);
/// How often, while it waits on, it looks again (and says so when the holder changed).
const LEASE_LOOK: Duration = Duration::from_secs(1);
/// The most events a report counts for a lag, and a rebuild for its estimate.
///
/// # Examples
///
/// ```
/// assert_eq!(eventloom_core::app::LAG_CAP, 10_000_000);
/// ```
pub const LAG_CAP: u64 = 10_000_000;

/// What an operation on a projection can run of it: the typed projection, erased.
pub(super) trait ProjectionOps: Send + Sync {
    fn rebuild<'a>(
        &'a self,
        projector: &'a Projector<Arc<dyn EventStore>>,
        token: u64,
        after: Option<Position>,
        progress: &'a Progress,
    ) -> BoxFuture<'a, Result<Option<Position>>>;

    fn rebuild_partitions<'a>(
        &'a self,
        projector: &'a Projector<Arc<dyn EventStore>>,
        tokens: &'a [u64],
        after: Option<Position>,
        progress: &'a Progress,
    ) -> BoxFuture<'a, Result<Rebuilt>>;

    /// The projection's version ([`Projection::VERSION`]).
    fn version(&self) -> u32;

    /// Retries `events` in the projection's views, or (`partition`: its stored name) in those
    /// of one of its partitions.
    fn retry<'a>(
        &'a self,
        projector: &'a Projector<Arc<dyn EventStore>>,
        partition: Option<&'a str>,
        token: u64,
        events: &'a [RecordedEvent],
    ) -> BoxFuture<'a, Result<Vec<DeadLetter>>>;
}

/// A projection shared between the App's group (which runs it) and [`Operations`].
pub(super) struct Shared<P>(pub(super) Arc<P>);

impl<P: Projection> Projection for Shared<P> {
    const NAME: &'static str = P::NAME;
    const VERSION: u32 = P::VERSION;
    type Events = P::Events;
    type View = P::View;

    fn name(&self) -> &str {
        self.0.name()
    }
    fn handles(&self, category: &str, event_type: &str) -> bool {
        self.0.handles(category, event_type)
    }
    fn view_id(&self, event: &crate::EventEnvelope<crate::EventOf<Self>>) -> Option<String> {
        self.0.view_id(event)
    }
    fn view_partition_key(view_id: &str) -> std::borrow::Cow<'_, str> {
        P::view_partition_key(view_id)
    }
    fn index(&self, id: &str, view: &Self::View) -> Vec<crate::IndexEntry> {
        self.0.index(id, view)
    }
    fn apply(
        &self,
        view: &mut Option<Self::View>,
        event: &crate::EventEnvelope<crate::EventOf<Self>>,
    ) -> std::result::Result<(), crate::BoxError> {
        self.0.apply(view, event)
    }
}

impl<P: Projection> ProjectionOps for Shared<P> {
    fn rebuild<'a>(
        &'a self,
        projector: &'a Projector<Arc<dyn EventStore>>,
        token: u64,
        after: Option<Position>,
        progress: &'a Progress,
    ) -> BoxFuture<'a, Result<Option<Position>>> {
        Box::pin(projector.rebuild_held(self.0.as_ref(), token, after, progress))
    }

    fn rebuild_partitions<'a>(
        &'a self,
        projector: &'a Projector<Arc<dyn EventStore>>,
        tokens: &'a [u64],
        after: Option<Position>,
        progress: &'a Progress,
    ) -> BoxFuture<'a, Result<Rebuilt>> {
        Box::pin(projector.rebuild_partitions_held(self.0.clone(), tokens, after, progress))
    }

    fn version(&self) -> u32 {
        P::VERSION
    }

    fn retry<'a>(
        &'a self,
        projector: &'a Projector<Arc<dyn EventStore>>,
        partition: Option<&'a str>,
        token: u64,
        events: &'a [RecordedEvent],
    ) -> BoxFuture<'a, Result<Vec<DeadLetter>>> {
        match partition {
            None => Box::pin(projector.retry_held(self.0.as_ref(), token, events)),
            Some(name) => Box::pin(async move {
                let member = PartitionOf { inner: self.0.clone(), name: name.to_owned() };
                projector.retry_held(&member, token, events).await
            }),
        }
    }
}

/// A registered projection, event handler or process manager, as [`Operations::projections`]
/// lists it.
///
/// # Examples
///
/// ```
/// # use eventloom_core::prelude::*;
/// # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)] enum CounterEvent { Incremented }
/// # #[derive(Debug, Default)] struct Counter;
/// # impl Aggregate for Counter { const TYPE: &'static str = "counter"; type Event = CounterEvent;
/// #   type Error = std::convert::Infallible; fn apply(&mut self, _: &CounterEvent) {} }
/// struct Totals;
/// impl Projection for Totals {
///     const NAME: &'static str = "totals";
///     const VERSION: u32 = 3;
///     type Events = Counter;
///     type View = u64;
///     fn apply(&self, view: &mut Option<u64>, _: &EventEnvelope<CounterEvent>) -> Result<(), eventloom_core::BoxError> {
///         *view.get_or_insert(0) += 1;
///         Ok(())
///     }
/// }
///
/// let ops = App::builder(MemoryStores::new()).aggregate::<Counter>().projection(Totals).operations().unwrap();
/// let info = &ops.projections()[0];
/// assert_eq!((info.name.as_str(), info.kind, info.version, info.partitions), ("totals", "projection", Some(3), 1));
/// ```
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProjectionInfo {
    /// Its name.
    pub name: String,
    /// `"projection"`, `"event handler"` or `"process manager"`.
    pub kind: &'static str,
    /// Its [`Projection::VERSION`] (projections only).
    pub version: Option<u32>,
    /// How many partitions it runs in (1: whole).
    pub partitions: u32,
}

/// One generation of a projection's views, as [`Operations::report`] shows it.
///
/// # Examples
///
/// ```
/// use eventloom_core::{app::GenerationReport, store::Generation};
///
/// let report = GenerationReport::from(Generation { id: 4, version: 2, checkpoint: None });
/// assert_eq!((report.id, report.version), (4, 2));
/// ```
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GenerationReport {
    /// Its id.
    pub id: u64,
    /// The projection version that builds it.
    pub version: u32,
    /// The position of the last event folded into it.
    pub checkpoint: Option<Position>,
}

impl From<crate::Generation> for GenerationReport {
    fn from(g: crate::Generation) -> Self {
        GenerationReport { id: g.id, version: g.version, checkpoint: g.checkpoint }
    }
}

/// How one projection stands (see [`Operations::report`]).
#[non_exhaustive]
#[derive(Debug, Clone, Serialize)]
pub struct ProjectionReport {
    /// The projection.
    pub name: String,
    /// What the application registers under that name (`None`: only in the store).
    pub registered: Option<ProjectionInfo>,
    /// The generation queries read (`None` for a partitioned projection: each partition has its
    /// own).
    pub live: Option<GenerationReport>,
    /// The generation being built to replace it (`None` for a partitioned projection).
    pub building: Option<GenerationReport>,
    /// The live generation's checkpoint (a partitioned projection's: its slowest partition's;
    /// `None` while one has none).
    pub checkpoint: Option<Position>,
    /// The position of the last event in the log.
    pub head: Option<Position>,
    /// How many events of the log lie past the checkpoint, at most [`LAG_CAP`].
    pub lag_events: u64,
    /// Whether `lag_events` reached the cap (there may be more).
    pub lag_capped: bool,
    /// How old the first event past the checkpoint is, in seconds (by its timestamp and this
    /// machine's clock); 0 when caught up.
    pub lag_seconds: f64,
    /// The projection's lease: its last token, holder, and whether it is held now (`None` for a
    /// partitioned projection: each partition has its own).
    pub lease: Option<LeaseInfo>,
    /// How many dead letters the live generation holds (a partitioned projection's: every
    /// partition's).
    pub dead_letters: u64,
    /// Why the projection's runner stopped, while that holds (a partitioned projection's: the
    /// first stopped partition's, after its name).
    pub stopped: Option<String>,
}

/// A wait for a lease that another process holds, as [`Operations`] tells it (see
/// [`Operations::retry_dead_letters_with`]; a rebuild tells it as
/// [`RebuildProgress::WaitingForLease`]).
///
/// # Examples
///
/// ```
/// use eventloom_core::app::LeaseWait;
///
/// fn show(wait: &LeaseWait) -> String {
///     let holder = wait.holder.as_ref().and_then(|l| l.holder.as_ref());
///     format!("waiting for the lease of {} (held by {})", wait.lease, holder.map_or("?".into(), ToString::to_string))
/// }
/// # let _ = show;
/// ```
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LeaseWait {
    /// The lease waited for: the projection's name, or one of its partitions' (`tasks~1of3`).
    pub lease: String,
    /// The lease as its manager lists it: its holder (host, pid, role), token and whether it is
    /// held (`None`: the manager lists nothing of that name, or could not be asked).
    pub holder: Option<LeaseInfo>,
}

/// What [`Operations::rebuild`] and [`Operations::reset`] tell their progress callback.
///
/// # Examples
///
/// ```
/// use eventloom_core::app::RebuildProgress;
///
/// fn show(progress: RebuildProgress) -> String {
///     match progress {
///         RebuildProgress::WaitingForLease { lease, holder } => {
///             format!("waiting for {lease}, held by {:?}", holder.and_then(|l| l.holder))
///         }
///         RebuildProgress::Started { total, .. } => format!("{total} events to fold"),
///         RebuildProgress::Batch { done, total, .. } => format!("{done}/{total}"),
///         RebuildProgress::Switched { partitions, .. } => format!("{partitions} partitions switched"),
///         _ => String::new(),
///     }
/// }
/// let waiting = RebuildProgress::WaitingForLease { lease: "tasks~1of3".into(), holder: None };
/// assert_eq!(show(waiting), "waiting for tasks~1of3, held by None");
/// ```
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum RebuildProgress {
    /// Waiting for the projection's lease (a partitioned projection's: one of its partitions'),
    /// held by another process.
    WaitingForLease {
        /// The lease waited for: the projection's name, or its partition's (`tasks~1of3`).
        lease: String,
        /// The lease as its manager lists it (`None`: not known).
        holder: Option<LeaseInfo>,
    },
    /// The lease is held (a partitioned projection's: every partition's): building starts.
    Started {
        /// The fencing token this rebuild writes with (a partitioned projection's: its first
        /// partition's; see `tokens`).
        token: u64,
        /// Each partition's fencing token, in partition order (one for a whole projection).
        tokens: Vec<u64>,
        /// The position the new generation starts after (`None`: the first event).
        after: Option<Position>,
        /// The last event in the log when it started.
        head: Option<Position>,
        /// How many events it has to fold (at most [`LAG_CAP`]).
        total: u64,
    },
    /// One batch written into the new generation (a partitioned projection's: into every
    /// partition's, each folding the events of its own streams).
    Batch {
        /// The new generation's checkpoint (every partition's: one read feeds them all).
        checkpoint: Option<Position>,
        /// The last event in the log when it started.
        head: Option<Position>,
        /// How many events it has read so far (of the whole log: the partitions' shares summed).
        done: u64,
        /// How many it had to read when it started (an estimate: more may come).
        total: u64,
    },
    /// A partitioned projection only: its partitions have caught up and the partition set
    /// switched to their new generations at once; queries read them from now on. Each partition
    /// makes its new generation live (dropping the old one) a grace after this.
    Switched {
        /// How many partitions switched.
        partitions: u32,
        /// The checkpoint they switched at.
        checkpoint: Option<Position>,
    },
}

/// What [`Operations::retry_dead_letters`] did.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RetryOutcome {
    /// How many dead letters were retried.
    pub retried: u64,
    /// How many of them went through (and left the dead letters).
    pub succeeded: u64,
    /// Those that failed again, recorded again with the new reason.
    pub failed: Vec<DeadLetter>,
    /// The partitions of a partitioned projection whose retry did not go through (their dead
    /// letters are as they were; run the retry again for them), while others' did. Empty for
    /// a projection of one partition, whose failure is the call's error.
    pub unfinished: Vec<UnfinishedPartition>,
}

/// A partition whose dead letters [`Operations::retry_dead_letters`] could not retry, while it
/// retried those of other partitions.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnfinishedPartition {
    /// The partition's stored name (`tasks~1of3`).
    pub partition: String,
    /// Why: the error, as it displays.
    pub reason: String,
    /// Whether the error was a transient one ([`Error::is_transient`]): the same retry may go
    /// through later.
    pub transient: bool,
}

/// One stored event as [`Operations::events`] shows it: upcast, its payload and metadata as JSON.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShownEvent {
    /// Its stream.
    pub stream: StreamId,
    /// Its version in the stream.
    pub version: u64,
    /// Its position in the log.
    pub position: Position,
    /// Its type, once upcast.
    pub event_type: String,
    /// Its schema version, once upcast.
    pub schema_version: u32,
    /// Whether an upcaster changed it.
    pub upcast: bool,
    /// Its payload.
    pub payload: serde_json::Value,
    /// Its metadata (event id, timestamp, command id, correlation, causation, headers).
    pub metadata: serde_json::Value,
}

/// An aggregate's state as [`Operations::state`] shows it: as JSON, as of a version or a time.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AggregateState {
    /// Its stream.
    pub stream: StreamId,
    /// The version of the last event folded into it (0: none).
    pub version: u64,
    /// The state, serialized.
    pub state: serde_json::Value,
}

/// A projection's own projector (with its poison policy) and what runs it.
type Runnable = (Projector<Arc<dyn EventStore>>, Arc<dyn ProjectionOps>);

/// A registered member, as operations know it.
struct Member {
    info: ProjectionInfo,
    /// A projection's own projector (its poison policy) and what runs it.
    ops: Option<Runnable>,
}

/// The admin operations on an application's definitions (see [`AppBuilder::operations`]).
///
/// # Examples
///
/// ```
/// # use eventloom_core::prelude::*;
/// # use eventloom_core::{BoxError, ProjectionOptions, read::PoisonPolicy, store::DeadLetterSelection};
/// # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)] enum CounterEvent { Incremented { by: u64 } }
/// # #[derive(Debug, Default)] struct Counter;
/// # impl Aggregate for Counter { const TYPE: &'static str = "counter"; type Event = CounterEvent;
/// #   type Error = std::convert::Infallible; fn apply(&mut self, _: &CounterEvent) {} }
/// # #[derive(Debug, Clone, Serialize, Command)] #[command(aggregate = Counter)]
/// # struct Add { #[command(id)] id: String, by: u64 }
/// # impl Handle<Add> for Counter { fn handle(&self, c: &Add) -> Result<Vec<CounterEvent>, std::convert::Infallible> {
/// #   Ok(vec![CounterEvent::Incremented { by: c.by }]) } }
/// /// Refuses increments above 10 (a bug, say).
/// struct Totals;
/// impl Projection for Totals {
///     const NAME: &'static str = "totals";
///     type Events = Counter;
///     type View = u64;
///     fn apply(&self, view: &mut Option<u64>, e: &EventEnvelope<CounterEvent>) -> Result<(), BoxError> {
///         let CounterEvent::Incremented { by } = e.event;
///         if by > 10 { return Err("too much".into()) }
///         *view.get_or_insert(0) += by;
///         Ok(())
///     }
/// }
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let stores = MemoryStores::new();
/// let app = App::builder(stores.clone()).aggregate::<Counter>().start().await.unwrap();
/// for by in [1, 20, 3] {
///     app.execute(Add { id: "c".into(), by }).await.unwrap();
/// }
/// let options = ProjectionOptions::new().poison_policy(PoisonPolicy::DeadLetter);
/// let ops = App::builder(stores.clone())
///     .aggregate::<Counter>()
///     .projection_with(Totals, options)
///     .operations()
///     .unwrap();
/// ops.rebuild("totals", |_| {}).await.unwrap();
/// let report = ops.report("totals").await.unwrap();
/// assert_eq!((report.dead_letters, report.lag_events), (1, 0));
/// // Still failing: the retry keeps it. Skipped: it goes without applying.
/// let retry = ops.retry_dead_letters("totals", &DeadLetterSelection::All).await.unwrap();
/// assert_eq!((retry.retried, retry.succeeded), (1, 0));
/// assert_eq!(ops.skip_dead_letters("totals", &DeadLetterSelection::All).await.unwrap(), 1);
/// // A new generation from the second event on.
/// let first = ops.events(&StreamId::new("counter", "c").unwrap(), None, 1).await.unwrap()[0].position;
/// ops.reset("totals", first, |_| {}).await.unwrap();
/// assert_eq!(ops.report("totals").await.unwrap().dead_letters, 1, "the 20 failed again");
/// app.shutdown().await.unwrap();
/// # });
/// ```
pub struct Operations {
    stores: Stores,
    members: Vec<Member>,
    upcasters: HashMap<&'static str, Upcasters>,
    /// The aggregates whose state can be shown, by category.
    inspect: HashMap<&'static str, super::options::InspectState>,
}

impl std::fmt::Debug for Operations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Operations")
            .field("stores", &self.stores)
            .field("members", &self.members.iter().map(|m| &m.info.name).collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl AppBuilder {
    /// The admin operations on this application's projections and streams, with its stores and
    /// upcasters, without starting anything (no projector runs, nothing is written). Makes the
    /// same checks as [`start`](Self::start).
    ///
    /// # Examples
    ///
    /// ```
    /// use eventloom_core::{App, MemoryStores};
    ///
    /// let ops = App::builder(MemoryStores::new()).operations().unwrap();
    /// assert!(ops.projections().is_empty());
    /// ```
    pub fn operations(self) -> Result<Operations> {
        self.check()?;
        let AppBuilder { stores, aggregates, members, .. } = self;
        let mut upcasters = HashMap::new();
        let mut inspect = HashMap::new();
        let mut projector = Projector::new(stores.events().clone(), stores.views().clone());
        for aggregate in aggregates {
            if let Some(show) = aggregate.inspect {
                inspect.insert(aggregate.category, show);
            }
            projector = projector.with_upcasters_for(aggregate.category, aggregate.upcasters.clone());
            upcasters.insert(aggregate.category, aggregate.upcasters);
        }
        let members: Vec<Member> = members
            .into_iter()
            .map(|m| Member {
                info: ProjectionInfo {
                    name: m.name,
                    kind: m.kind.as_str(),
                    version: m.version,
                    partitions: m.partitions,
                },
                ops: m.ops.filter(|_| m.kind == Kind::Projection).map(|(ops, poison)| {
                    let projector = match poison {
                        Some(policy) => projector.clone().with_poison_policy(policy),
                        None => projector.clone(),
                    };
                    (projector, ops)
                }),
            })
            .collect();
        Ok(Operations { stores, members, upcasters, inspect })
    }
}

impl Operations {
    /// The stores the operations act on.
    pub fn stores(&self) -> &Stores {
        &self.stores
    }

    /// The registered projections, event handlers and process managers, in the order
    /// registered.
    pub fn projections(&self) -> Vec<ProjectionInfo> {
        self.members.iter().map(|m| m.info.clone()).collect()
    }

    fn member(&self, name: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.info.name == name)
    }

    /// How the projection `name` stands: registered with the app, or only held by the view store
    /// (a partition member `name~0of6`, or one no longer deployed). Unknown to both:
    /// [`Error::UnknownProjection`]. A partitioned projection registered with the app is reported
    /// as its partitions sum up: the slowest one's checkpoint and lag, every partition's dead
    /// letters, the first stop; its generations and leases are its partitions' (report each by
    /// its name).
    ///
    /// # Examples
    ///
    /// ```
    /// use eventloom_core::{App, Error, MemoryStores};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
    /// let ops = App::builder(MemoryStores::new()).operations().unwrap();
    /// assert!(matches!(ops.report("nope").await, Err(Error::UnknownProjection { .. })));
    /// # });
    /// ```
    pub async fn report(&self, name: &str) -> Result<ProjectionReport> {
        let registered = self.member(name).map(|m| m.info.clone());
        if registered.is_none() && !self.stores.views().projections().await?.iter().any(|p| p == name) {
            return Err(Error::UnknownProjection { name: name.to_owned() });
        }
        let views = self.stores.views();
        let partitions = registered.as_ref().map_or(1, |info| info.partitions);
        let (live, building, checkpoint, stopped, dead_letters) = if partitions <= 1 {
            let status = views.status(name).await?;
            let stopped = status.active_stop().map(ToString::to_string);
            let dead_letters = views.dead_letters(name).await?.len() as u64;
            (status.live.map(Into::into), status.building.map(Into::into), status.checkpoint(), stopped, dead_letters)
        } else {
            // Its partitions', summed up: the slowest one's checkpoint, every dead letter.
            let (mut checkpoint, mut stopped, mut dead_letters) = (None, None, 0);
            for (index, partition) in partition_names(name, partitions).iter().enumerate() {
                let status = views.status(partition).await?;
                checkpoint = if index == 0 { status.checkpoint() } else { checkpoint.min(status.checkpoint()) };
                if stopped.is_none() {
                    stopped = status.active_stop().map(|stop| format!("{partition}: {stop}"));
                }
                dead_letters += views.dead_letters(partition).await?.len() as u64;
            }
            (None, None, checkpoint, stopped, dead_letters)
        };
        let events = self.stores.events();
        let head = events.head().await?;
        let lag_events = events.count_after(checkpoint.unwrap_or(Position::ZERO), LAG_CAP).await?;
        let lag_seconds = match events.read_all(checkpoint.unwrap_or(Position::ZERO), 1).await?.first() {
            Some(first) => {
                let at = first.metadata.get()?.timestamp.as_micros();
                let now = crate::Timestamp::now().as_micros();
                (now.saturating_sub(at).max(0) as f64) / 1e6
            }
            None => 0.0,
        };
        let lease = match self.stores.leases() {
            Some(leases) if partitions <= 1 => leases.leases(name).await?.into_iter().find(|l| l.name == name),
            _ => None,
        };
        Ok(ProjectionReport {
            name: name.to_owned(),
            registered,
            live,
            building,
            checkpoint,
            head,
            lag_events,
            lag_capped: lag_events >= LAG_CAP,
            lag_seconds,
            lease,
            dead_letters,
            stopped,
        })
    }

    /// The registered projection `name` an operation runs, with the names (stored and leased)
    /// it acts on: its own; each of its partitions', in order, for a partitioned one; or, with
    /// `one_partition`, the one partition `name` is (`tasks~1of3` of `tasks` registered with
    /// 3 partitions), and whether they are partitions. Or why not.
    fn runnable(
        &self,
        name: &str,
        operation: &'static str,
        one_partition: bool,
    ) -> Result<(Runnable, Vec<String>, bool)> {
        let found = match self.member(name) {
            Some(member) => Some((member, None)),
            None => member_of(name).filter(|_| one_partition).and_then(|(whole, partition)| {
                self.member(whole).filter(|m| m.info.partitions == partition.count).map(|m| (m, Some(name)))
            }),
        };
        let Some((member, partition)) = found else {
            return Err(Error::UnknownProjection { name: name.to_owned() });
        };
        let runnable = member.ops.clone().ok_or_else(|| Error::Unsupported {
            operation,
            name: name.to_owned(),
            reason: format!("it is an {}, not a projection with views to rebuild", member.info.kind),
        })?;
        let partitioned = partition.is_some() || member.info.partitions > 1;
        let names = match partition {
            Some(partition) => vec![partition.to_owned()],
            None => partition_names(name, member.info.partitions),
        };
        Ok((runnable, names, partitioned))
    }

    /// Takes the lease `name` (none without a lease manager: token 0), waiting with the
    /// manager's own [`acquire`](crate::store::LeaseManager::acquire) (PostgreSQL: one lease
    /// connection, whatever the wait). While it waits, it looks who holds the lease (a read
    /// through the manager's [`leases`](crate::store::LeaseManager::leases)) and tells `waiting`,
    /// after a moment and again whenever the holder changes. A look that fails is only logged
    /// (the holder unknown, if nothing was told yet): the wait goes on.
    async fn lease(&self, name: &str, waiting: &mut (dyn FnMut(LeaseWait) + Send)) -> Result<Option<Lease>> {
        let Some(leases) = self.stores.leases() else { return Ok(None) };
        let acquire = leases.acquire(name);
        tokio::pin!(acquire);
        let mut look = tokio::time::Instant::now() + LEASE_FIRST_LOOK;
        let mut told: Option<Option<LeaseInfo>> = None;
        loop {
            tokio::select! {
                biased;
                lease = &mut acquire => return lease.map(Some),
                () = tokio::time::sleep_until(look) => {
                    let holder = match leases.leases(name).await {
                        Ok(listed) => listed.into_iter().find(|l| l.name == name),
                        Err(error) => {
                            tracing::warn!(lease = name, %error, "cannot look who holds the lease; waiting on");
                            told.clone().flatten()
                        }
                    };
                    if told.as_ref() != Some(&holder) {
                        waiting(LeaseWait { lease: name.to_owned(), holder: holder.clone() });
                        told = Some(holder);
                    }
                    look = tokio::time::Instant::now() + LEASE_LOOK;
                }
            }
        }
    }

    /// Takes the leases `names` in their order (a partitioned projection's partitions: in
    /// partition order, so that two operations never wait for each other), telling `waiting`
    /// while another process holds one.
    async fn leases(
        &self,
        names: &[String],
        waiting: &mut (dyn FnMut(LeaseWait) + Send),
    ) -> Result<Vec<Option<Lease>>> {
        let mut leases = Vec::with_capacity(names.len());
        for name in names {
            leases.push(self.lease(name, waiting).await?);
        }
        Ok(leases)
    }

    /// Rebuilds the registered projection `name` from the first event into a new generation,
    /// behind the live views (queries go on reading them), and makes it live once caught up.
    /// Under the projection's lease: while another runner holds it, `progress` hears
    /// [`RebuildProgress::WaitingForLease`] with the holder, and the rebuild waits; then
    /// [`Started`](RebuildProgress::Started), and [`Batch`](RebuildProgress::Batch) after each
    /// batch. Answers the new checkpoint. An event handler or a process manager:
    /// [`Error::Unsupported`]; a name not registered: [`Error::UnknownProjection`]; a store that
    /// holds views of a newer version of the projection (live, or being built by a newer
    /// release): [`Error::NewerVersion`], and nothing changes.
    ///
    /// A partitioned projection ([`ProjectionOptions::partitions`](crate::ProjectionOptions::partitions))
    /// is rebuilt whole: it takes every partition's lease, in partition order (telling
    /// `WaitingForLease`, with the partition's lease name, while another process holds one);
    /// begins a new generation in every partition and folds one read of the log into all of
    /// them (`Batch` counts the events of the whole log, against its head); then, once they
    /// have caught up, switches the partition set to all the new generations at once, as the
    /// running partitions switch it, so that queries never read some partitions rebuilt and
    /// others not ([`Switched`](RebuildProgress::Switched)). Each partition's new generation is
    /// made live in its own status a grace (5 s) after the switch, when queries that read the set
    /// before can no longer hold the old ones; the leases are let go after that.
    ///
    /// # Examples
    ///
    /// ```
    /// # use eventloom_core::prelude::*;
    /// # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)] enum CounterEvent { Incremented }
    /// # #[derive(Debug, Default)] struct Counter;
    /// # impl Aggregate for Counter { const TYPE: &'static str = "counter"; type Event = CounterEvent;
    /// #   type Error = std::convert::Infallible; fn apply(&mut self, _: &CounterEvent) {} }
    /// # struct Totals;
    /// # impl Projection for Totals { const NAME: &'static str = "totals"; type Events = Counter; type View = u64;
    /// #   fn apply(&self, view: &mut Option<u64>, _: &EventEnvelope<CounterEvent>) -> Result<(), eventloom_core::BoxError> {
    /// #     *view.get_or_insert(0) += 1; Ok(()) } }
    /// use eventloom_core::app::RebuildProgress;
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
    /// let ops = App::builder(MemoryStores::new()).aggregate::<Counter>().projection(Totals).operations().unwrap();
    /// let mut batches = 0;
    /// ops.rebuild("totals", |p| if matches!(p, RebuildProgress::Batch { .. }) { batches += 1 }).await.unwrap();
    /// # });
    /// ```
    pub async fn rebuild(&self, name: &str, progress: impl FnMut(RebuildProgress) + Send) -> Result<Option<Position>> {
        self.rebuild_after(name, None, progress).await
    }

    /// Like [`rebuild`](Self::rebuild), but the new generation (a partitioned projection's:
    /// every partition's) starts after `to`: the events up to it are not applied. A position
    /// past the head of the log: [`Error::InvalidConfig`], and nothing changes.
    ///
    /// # Examples
    ///
    /// ```
    /// # use eventloom_core::prelude::*;
    /// # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)] enum CounterEvent { Incremented }
    /// # #[derive(Debug, Default)] struct Counter;
    /// # impl Aggregate for Counter { const TYPE: &'static str = "counter"; type Event = CounterEvent;
    /// #   type Error = std::convert::Infallible; fn apply(&mut self, _: &CounterEvent) {} }
    /// # struct Totals;
    /// # impl Projection for Totals { const NAME: &'static str = "totals"; type Events = Counter; type View = u64;
    /// #   fn apply(&self, view: &mut Option<u64>, _: &EventEnvelope<CounterEvent>) -> Result<(), eventloom_core::BoxError> {
    /// #     *view.get_or_insert(0) += 1; Ok(()) } }
    /// use eventloom_core::{Error, Position};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
    /// let ops = App::builder(MemoryStores::new()).aggregate::<Counter>().projection(Totals).operations().unwrap();
    /// // An empty log: every position is past its head.
    /// assert!(matches!(ops.reset("totals", Position::new(7, 1), |_| {}).await, Err(Error::InvalidConfig { .. })));
    /// # });
    /// ```
    pub async fn reset(
        &self,
        name: &str,
        to: Position,
        progress: impl FnMut(RebuildProgress) + Send,
    ) -> Result<Option<Position>> {
        self.rebuild_after(name, Some(to), progress).await
    }

    async fn rebuild_after(
        &self,
        name: &str,
        after: Option<Position>,
        mut progress: impl FnMut(RebuildProgress) + Send,
    ) -> Result<Option<Position>> {
        let operation = if after.is_some() { "reset" } else { "rebuild" };
        let ((projector, ops), names, partitioned) = self.runnable(name, operation, false)?;
        let events = self.stores.events();
        if let Some(after) = after
            && events.head().await?.is_none_or(|head| after > head)
        {
            // Views that start past the head would silently miss every event until the log
            // reaches it.
            return Err(Error::InvalidConfig {
                reason: format!("cannot reset {name} to {after}: the log's head is before it"),
            });
        }
        let mut waiting =
            |wait: LeaseWait| progress(RebuildProgress::WaitingForLease { lease: wait.lease, holder: wait.holder });
        let leases = self.leases(&names, &mut waiting).await?;
        let tokens: Vec<u64> = leases.iter().map(|lease| lease.as_ref().map_or(0, Lease::token)).collect();
        let token = tokens.first().copied().unwrap_or(0);
        let head = events.head().await?;
        let total = events.count_after(after.unwrap_or(Position::ZERO), LAG_CAP).await?;
        progress(RebuildProgress::Started { token, tokens: tokens.clone(), after, head, total });
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let result = if !partitioned {
            follow(ops.rebuild(&projector, token, after, &tx), rx, head, total, &mut progress).await
        } else {
            match follow(ops.rebuild_partitions(&projector, &tokens, after, &tx), rx, head, total, &mut progress).await
            {
                Ok(Rebuilt { generations, checkpoint }) => {
                    let partitions = names.len() as u32;
                    progress(RebuildProgress::Switched { partitions, checkpoint });
                    projector.make_partitions_live(name, &generations, &tokens).await.map(|()| checkpoint)
                }
                Err(error) => Err(error),
            }
        };
        drop(leases);
        result
    }

    /// The dead letters of `name`'s live generation that `which` selects, with their events.
    async fn letters(&self, name: &str, which: &DeadLetterSelection) -> Result<Vec<RecordedEvent>> {
        let letters = self.stores.views().dead_letters(name).await?;
        let mut events = Vec::new();
        for letter in letters.iter().filter(|l| which.selects(l.position)) {
            let read = self.stores.events().read_stream(&letter.stream, letter.version, 1).await?;
            match read.into_iter().next() {
                Some(event) if event.position == letter.position => events.push(event),
                _ => {
                    return Err(Error::Corrupt {
                        location: format!("dead letter {} of projection {name}", letter.position),
                        reason: format!("no event {} of stream {} at that position", letter.version, letter.stream),
                    });
                }
            }
        }
        Ok(events)
    }

    /// The dead letters of projection `name`'s live generation, oldest first: of every
    /// partition's, for a partitioned one registered with the app (else of the projection the
    /// store holds under that name, a partition `tasks~1of3` among them).
    ///
    /// # Examples
    ///
    /// ```
    /// use eventloom_core::{App, MemoryStores};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
    /// let ops = App::builder(MemoryStores::new()).operations().unwrap();
    /// assert!(ops.dead_letters("totals").await.unwrap().is_empty());
    /// # });
    /// ```
    pub async fn dead_letters(&self, name: &str) -> Result<Vec<DeadLetter>> {
        let names = partition_names(name, self.member(name).map_or(1, |m| m.info.partitions));
        let mut letters = Vec::new();
        for name in &names {
            letters.extend(self.stores.views().dead_letters(name).await?);
        }
        letters.sort_by_key(|l| l.position);
        Ok(letters)
    }

    /// Under the projection's lease (waiting for it), applies the dead-lettered events
    /// `which` selects again to the live views, in order: those that go through leave the dead
    /// letters, those that fail again stay (with the new reason). The checkpoint stays where it
    /// is.
    ///
    /// The retry is one atomic write with the views: the commit of its views names the dead
    /// letters it resolves ([`ViewCommit::resolved`](crate::store::ViewCommit::resolved)), so a
    /// retry whose write fails (the store is down, the process dies) or is refused (another
    /// runner took the lease) changes no view and keeps every dead letter, and can be run again.
    ///
    /// A retry applies old events on top of views that later events have already changed: out of
    /// order. Retry only when the projection's `apply` gives the same views that way, because the
    /// views a dead letter's event touches were not changed since, or because `apply` commutes
    /// (adding to a total, say); otherwise [`rebuild`](Self::rebuild) (or [`reset`](Self::reset)),
    /// which applies every event in order, once the projection is fixed.
    ///
    /// A partitioned projection keeps its dead letters in its partitions: each is retried in
    /// turn, under its own lease (taken, then let go, in partition order), and the outcome
    /// sums theirs. A partition whose retry fails keeps its dead letters and is named in
    /// [`RetryOutcome::unfinished`] while the others go on; when no dead letter went through
    /// anywhere, the first failing partition's error is answered. A partition left by a runner
    /// that stopped within the grace of a switch (the partition set names the generation it
    /// built, its status still has the old one live) is first made live, once the grace has
    /// passed since the retry first saw that switch (one wait for all partitions): the retry
    /// changes the views queries read. Views of a newer projection version than the
    /// registered one (a rolling upgrade's newer release wrote them) are refused with
    /// [`Error::NewerVersion`], and live views of an older one with [`Error::Unsupported`],
    /// before anything changes. One partition's name (`tasks~1of3`) retries that partition's alone. See
    /// [`retry_dead_letters_with`](Self::retry_dead_letters_with) to hear of a wait for a lease.
    pub async fn retry_dead_letters(&self, name: &str, which: &DeadLetterSelection) -> Result<RetryOutcome> {
        self.retry_dead_letters_with(name, which, |_| {}).await
    }

    /// [`retry_dead_letters`](Self::retry_dead_letters), telling `waiting` who holds a lease it
    /// waits for (after a moment, and again when the holder changes).
    ///
    /// # Examples
    ///
    /// ```
    /// # use eventloom_core::prelude::*;
    /// # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)] enum CounterEvent { Incremented }
    /// # #[derive(Debug, Default)] struct Counter;
    /// # impl Aggregate for Counter { const TYPE: &'static str = "counter"; type Event = CounterEvent;
    /// #   type Error = std::convert::Infallible; fn apply(&mut self, _: &CounterEvent) {} }
    /// # struct Totals;
    /// # impl Projection for Totals { const NAME: &'static str = "totals"; type Events = Counter; type View = u64;
    /// #   fn apply(&self, view: &mut Option<u64>, _: &EventEnvelope<CounterEvent>) -> Result<(), eventloom_core::BoxError> {
    /// #     *view.get_or_insert(0) += 1; Ok(()) } }
    /// use eventloom_core::{ProjectionOptions, store::DeadLetterSelection};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
    /// let ops = App::builder(MemoryStores::new())
    ///     .aggregate::<Counter>()
    ///     .projection_with(Totals, ProjectionOptions::new().partitions(2))
    ///     .operations()
    ///     .unwrap();
    /// let outcome = ops
    ///     .retry_dead_letters_with("totals", &DeadLetterSelection::All, |wait| {
    ///         eprintln!("waiting for the lease of {}: {:?}", wait.lease, wait.holder)
    ///     })
    ///     .await
    ///     .unwrap();
    /// assert_eq!(outcome.retried, 0);
    /// # });
    /// ```
    pub async fn retry_dead_letters_with(
        &self,
        name: &str,
        which: &DeadLetterSelection,
        mut waiting: impl FnMut(LeaseWait) + Send,
    ) -> Result<RetryOutcome> {
        let ((projector, ops), names, partitioned) = self.runnable(name, "retry dead letters of", true)?;
        let mut outcome = RetryOutcome { retried: 0, succeeded: 0, failed: Vec::new(), unfinished: Vec::new() };
        // Views of another version in any partition: refused before any lease is taken.
        refuse_other_versions(&**self.stores.views(), &names, ops.version()).await?;
        let mut first_error = None;
        let mut went_through = 0;
        let mut seen = SwitchSeen::default();
        for stored in &names {
            let retried = async {
                let lease = self.lease(stored, &mut waiting).await?;
                let token = lease.as_ref().map_or(0, Lease::token);
                let version = Some(ops.version());
                settle_named_build(&**self.stores.views(), stored, lease.as_ref(), version, &mut seen).await?;
                let events = self.letters(stored, which).await?;
                if events.is_empty() {
                    return Ok((0, Vec::new()));
                }
                let partition = partitioned.then_some(stored.as_str());
                let failed = ops.retry(&projector, partition, token, &events).await?;
                drop(lease);
                Ok::<_, Error>((events.len() as u64, failed))
            }
            .await;
            match retried {
                Ok((retried, failed)) => {
                    went_through += u64::from(retried > 0);
                    outcome.retried += retried;
                    outcome.succeeded += retried - failed.len() as u64;
                    outcome.failed.extend(failed);
                }
                // A partition's failure leaves its dead letters as they were: the others go on,
                // each under its own lease, and the outcome names it.
                Err(error) => {
                    tracing::warn!(partition = %stored, %error, "the retry of a partition's dead letters failed");
                    outcome.unfinished.push(UnfinishedPartition {
                        partition: stored.clone(),
                        reason: error.to_string(),
                        transient: error.is_transient(),
                    });
                    first_error.get_or_insert(error);
                }
            }
        }
        match first_error {
            // No dead letter went through anywhere: the error, as for one partition.
            Some(error) if went_through == 0 => Err(error),
            _ => Ok(outcome),
        }
    }

    /// Under the projection's lease (waiting for it), removes the dead letters `which` selects
    /// without applying them; answers how many went. For a projection registered or held by the
    /// store (else [`Error::UnknownProjection`]). A partitioned projection's are removed from
    /// each partition in turn, under its lease (a partition left within the grace of a switch
    /// made live first, as [`retry_dead_letters`](Self::retry_dead_letters) does); an error
    /// stops it, the partitions before keeping what was removed (run it again for the rest).
    /// One partition's name (`tasks~1of3`) removes that partition's alone. See [`skip_dead_letters_with`](Self::skip_dead_letters_with) to
    /// hear of a wait for a lease.
    pub async fn skip_dead_letters(&self, name: &str, which: &DeadLetterSelection) -> Result<u64> {
        self.skip_dead_letters_with(name, which, |_| {}).await
    }

    /// [`skip_dead_letters`](Self::skip_dead_letters), telling `waiting` who holds a lease it
    /// waits for (after a moment, and again when the holder changes).
    ///
    /// # Examples
    ///
    /// ```
    /// use eventloom_core::{App, Error, MemoryStores, store::DeadLetterSelection};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
    /// let ops = App::builder(MemoryStores::new()).operations().unwrap();
    /// let skipped = ops.skip_dead_letters_with("nope", &DeadLetterSelection::All, |wait| eprintln!("{wait:?}")).await;
    /// assert!(matches!(skipped, Err(Error::UnknownProjection { .. })));
    /// # });
    /// ```
    pub async fn skip_dead_letters_with(
        &self,
        name: &str,
        which: &DeadLetterSelection,
        mut waiting: impl FnMut(LeaseWait) + Send,
    ) -> Result<u64> {
        if crate::read::is_partition_record(name) {
            return Err(Error::Unsupported {
                operation: "skip dead letters of",
                name: name.to_owned(),
                reason: "it is the partition set that the partitions keep for themselves".to_owned(),
            });
        }
        if self.member(name).is_none() && !self.stores.views().projections().await?.iter().any(|p| p == name) {
            return Err(Error::UnknownProjection { name: name.to_owned() });
        }
        let mut removed = 0;
        let mut seen = SwitchSeen::default();
        for stored in partition_names(name, self.member(name).map_or(1, |m| m.info.partitions)) {
            let lease = self.lease(&stored, &mut waiting).await?;
            let token = lease.as_ref().map_or(0, Lease::token);
            // No user code runs: a newer release's named build is made live as its runner would.
            settle_named_build(&**self.stores.views(), &stored, lease.as_ref(), None, &mut seen).await?;
            let written = self.stores.views().remove_dead_letters(&stored, which, token).await?;
            drop(lease);
            removed += superseded(&stored, written)?;
        }
        Ok(removed)
    }

    /// The state of the aggregate whose stream is `stream`, as of a version or a time
    /// ([`AsOf`]; `None`: now), as JSON: its first events folded as its engine folds them
    /// ([`Cqrs::load_as_of`](crate::Cqrs::load_as_of), through the registered upcasters,
    /// without cache or snapshots). For an aggregate registered with
    /// [`AggregateOptions::inspectable`](crate::AggregateOptions::inspectable) (else
    /// [`Error::Unsupported`]); a stream that holds no event: [`Error::UnknownStream`].
    ///
    /// # Examples
    ///
    /// ```
    /// # use eventloom_core::prelude::*;
    /// # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)] enum CounterEvent { Incremented }
    /// # #[derive(Debug, Clone, Serialize, Command)] #[command(aggregate = Counter)]
    /// # struct Increment { #[command(id)] id: String }
    /// # impl Handle<Increment> for Counter { fn handle(&self, _: &Increment) -> Result<Vec<CounterEvent>, std::convert::Infallible> {
    /// #   Ok(vec![CounterEvent::Incremented]) } }
    /// # impl Aggregate for Counter { const TYPE: &'static str = "counter"; type Event = CounterEvent;
    /// #   type Error = std::convert::Infallible; fn apply(&mut self, _: &CounterEvent) { self.value += 1 } }
    /// use eventloom_core::{AggregateOptions, StreamId, write::AsOf};
    ///
    /// #[derive(Debug, Default, Serialize)]
    /// struct Counter {
    ///     value: u64,
    /// }
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
    /// let stores = MemoryStores::new();
    /// let builder = || App::builder(stores.clone()).aggregate_with(AggregateOptions::<Counter>::new().inspectable());
    /// let app = builder().start().await.unwrap();
    /// for _ in 0..3 {
    ///     app.execute(Increment { id: "c".into() }).await.unwrap();
    /// }
    /// let ops = builder().operations().unwrap();
    /// let stream = StreamId::new("counter", "c").unwrap();
    /// let then = ops.state(&stream, Some(AsOf::Version(2))).await.unwrap();
    /// assert_eq!((then.version, then.state["value"].as_u64()), (2, Some(2)));
    /// assert_eq!(ops.state(&stream, None).await.unwrap().version, 3);
    /// app.shutdown().await.unwrap();
    /// # });
    /// ```
    pub async fn state(&self, stream: &StreamId, as_of: Option<AsOf>) -> Result<AggregateState> {
        let Some(show) = self.inspect.get(stream.category()) else {
            return Err(Error::Unsupported {
                operation: "show the state of",
                name: stream.to_string(),
                reason: format!(
                    "aggregate {} is not registered as inspectable: register it with \
                     AggregateOptions::inspectable() (its state must be Serialize)",
                    stream.category()
                ),
            });
        };
        if self.stores.events().stream_version(stream).await? == 0 {
            return Err(Error::UnknownStream { stream: stream.clone() });
        }
        let upcasters = self.upcasters.get(stream.category()).cloned().unwrap_or_default();
        let as_of = as_of.unwrap_or(AsOf::Version(u64::MAX));
        let (state, version) = show(self.stores.events().clone(), upcasters, stream.id().to_owned(), as_of).await?;
        Ok(AggregateState { stream: stream.clone(), version, state })
    }

    /// Up to `limit` events of `stream` from its first, as of a version or a time
    /// ([`AsOf`]: those up to it; `None`: all), upcast with the registered upcasters of its
    /// category. A stream that holds no event: [`Error::UnknownStream`].
    ///
    /// # Examples
    ///
    /// ```
    /// use eventloom_core::{App, Error, MemoryStores, StreamId};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
    /// let ops = App::builder(MemoryStores::new()).operations().unwrap();
    /// let none = StreamId::new("task", "t-9").unwrap();
    /// assert!(matches!(ops.events(&none, None, 10).await, Err(Error::UnknownStream { .. })));
    /// # });
    /// ```
    pub async fn events(&self, stream: &StreamId, as_of: Option<AsOf>, limit: usize) -> Result<Vec<ShownEvent>> {
        let events = self.stores.events();
        let mut shown = Vec::new();
        let mut from = 1;
        let no_upcasters = Upcasters::new();
        let upcasters = self.upcasters.get(stream.category()).unwrap_or(&no_upcasters);
        let mut any = false;
        'read: while shown.len() < limit {
            let page = events.read_stream(stream, from, (limit - shown.len()).clamp(1, 1000)).await?;
            let Some(last) = page.last() else { break };
            from = last.version + 1;
            for event in page {
                any = true;
                let metadata = event.metadata.get()?;
                let within = match as_of {
                    None => true,
                    Some(AsOf::Version(n)) => event.version <= n,
                    Some(AsOf::Time(t)) => metadata.timestamp <= t,
                };
                if !within {
                    break 'read;
                }
                shown.push(show(event, upcasters)?);
            }
        }
        if !any && events.stream_version(stream).await? == 0 {
            return Err(Error::UnknownStream { stream: stream.clone() });
        }
        Ok(shown)
    }
}

/// The names projection `name` of `count` partitions is stored (and leased) under: its own
/// when whole, else its partitions', in order.
fn partition_names(name: &str, count: u32) -> Vec<String> {
    if count <= 1 {
        return vec![name.to_owned()];
    }
    (0..count).map(|index| Partition::member_name(name, index, count)).collect()
}

/// Runs a rebuild (`run`), telling `progress` of each batch it reports on `batches`, and
/// answers what it answered.
async fn follow<T>(
    run: impl std::future::Future<Output = Result<T>>,
    mut batches: tokio::sync::mpsc::UnboundedReceiver<(Option<Position>, usize)>,
    head: Option<Position>,
    total: u64,
    progress: &mut (impl FnMut(RebuildProgress) + Send),
) -> Result<T> {
    tokio::pin!(run);
    let mut done = 0u64;
    let mut tell = |(checkpoint, n): (Option<Position>, usize), progress: &mut dyn FnMut(RebuildProgress)| {
        done += n as u64;
        progress(RebuildProgress::Batch { checkpoint, head, done, total });
    };
    let result = loop {
        tokio::select! {
            result = &mut run => break result,
            Some(batch) = batches.recv() => tell(batch, progress),
        }
    };
    while let Ok(batch) = batches.try_recv() {
        tell(batch, progress);
    }
    result
}

/// One event, upcast, as JSON.
fn show(event: RecordedEvent, upcasters: &Upcasters) -> Result<ShownEvent> {
    let corrupt = |reason: String| Error::Corrupt { location: format!("{} {}", event.stream, event.version), reason };
    let upcast =
        upcasters.apply(&event.event_type, event.schema_version, &event.payload).map_err(|source| Error::Upcast {
            stream: event.stream.clone(),
            version: event.version,
            position: event.position,
            event_type: event.event_type.to_string(),
            schema_version: event.schema_version,
            source,
        })?;
    let (event_type, schema_version, payload) = match upcast {
        Some((t, v, payload)) => (t.to_owned(), v, payload),
        None => (event.event_type.to_string(), event.schema_version, event.payload.to_string()),
    };
    let payload = serde_json::from_str(&payload).map_err(|e| corrupt(format!("payload: {e}")))?;
    let metadata = serde_json::to_value(event.metadata.get()?).map_err(|e| corrupt(format!("metadata: {e}")))?;
    Ok(ShownEvent {
        upcast: event_type != event.event_type || schema_version != event.schema_version,
        stream: event.stream,
        version: event.version,
        position: event.position,
        event_type,
        schema_version,
        payload,
        metadata,
    })
}

//! [`Operations`]: what the admin commands do with an application's own definitions
//! (projections, upcasters), built from the [`AppBuilder`] the application starts, without
//! starting anything.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::{AppBuilder, Kind};
use crate::read::projector::Progress;
use crate::store::{BoxFuture, DeadLetterSelection, Lease, LeaseInfo, superseded};
use crate::write::AsOf;
use crate::{
    DeadLetter, Error, EventStore, Position, Projection, Projector, RecordedEvent, Result, StreamId, Upcasters,
};

use super::Stores;

/// How often a rebuild waiting for a projection's lease tries it again.
const LEASE_POLL: Duration = Duration::from_millis(200);
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

    fn retry<'a>(
        &'a self,
        projector: &'a Projector<Arc<dyn EventStore>>,
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

    fn retry<'a>(
        &'a self,
        projector: &'a Projector<Arc<dyn EventStore>>,
        token: u64,
        events: &'a [RecordedEvent],
    ) -> BoxFuture<'a, Result<Vec<DeadLetter>>> {
        Box::pin(projector.retry_held(self.0.as_ref(), token, events))
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
    /// The generation queries read.
    pub live: Option<GenerationReport>,
    /// The generation being built to replace it.
    pub building: Option<GenerationReport>,
    /// The live generation's checkpoint.
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
    /// The projection's lease: its last token, holder, and whether it is held now.
    pub lease: Option<LeaseInfo>,
    /// How many dead letters the live generation holds.
    pub dead_letters: u64,
    /// Why the projection's runner stopped, while that holds.
    pub stopped: Option<String>,
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
///         RebuildProgress::WaitingForLease { holder } => format!("waiting for {:?}", holder.and_then(|l| l.holder)),
///         RebuildProgress::Started { total, .. } => format!("{total} events to fold"),
///         RebuildProgress::Batch { done, total, .. } => format!("{done}/{total}"),
///         _ => String::new(),
///     }
/// }
/// assert_eq!(show(RebuildProgress::WaitingForLease { holder: None }), "waiting for None");
/// ```
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum RebuildProgress {
    /// Waiting for the projection's lease, held by another runner (`None`: not known).
    WaitingForLease {
        /// The lease as its manager lists it.
        holder: Option<LeaseInfo>,
    },
    /// The lease is held: building starts.
    Started {
        /// The fencing token this rebuild writes with.
        token: u64,
        /// The position the new generation starts after (`None`: the first event).
        after: Option<Position>,
        /// The last event in the log when it started.
        head: Option<Position>,
        /// How many events it has to fold (at most [`LAG_CAP`]).
        total: u64,
    },
    /// One batch written into the new generation.
    Batch {
        /// The new generation's checkpoint.
        checkpoint: Option<Position>,
        /// The last event in the log when it started.
        head: Option<Position>,
        /// How many events it has read so far.
        done: u64,
        /// How many it had to read when it started (an estimate: more may come).
        total: u64,
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
        let mut projector = Projector::new(stores.events().clone(), stores.views().clone());
        for aggregate in aggregates {
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
        Ok(Operations { stores, members, upcasters })
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
    /// [`Error::UnknownProjection`].
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
        let status = views.status(name).await?;
        let checkpoint = status.checkpoint();
        let stopped = status.active_stop().map(ToString::to_string);
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
            Some(leases) => leases.leases(name).await?.into_iter().find(|l| l.name == name),
            None => None,
        };
        let dead_letters = views.dead_letters(name).await?.len() as u64;
        Ok(ProjectionReport {
            name: name.to_owned(),
            registered,
            live: status.live.map(Into::into),
            building: status.building.map(Into::into),
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

    /// The registered projection `name` an operation runs, or why not.
    fn runnable(&self, name: &str, operation: &'static str) -> Result<Runnable> {
        let Some(member) = self.member(name) else {
            return Err(Error::UnknownProjection { name: name.to_owned() });
        };
        if member.info.partitions > 1 {
            return Err(Error::Unsupported {
                operation,
                name: name.to_owned(),
                reason: format!(
                    "it runs in {} partitions, each under a lease of its own; this operation runs whole \
                     projections only (register it with one partition to {operation} it)",
                    member.info.partitions
                ),
            });
        }
        member.ops.clone().ok_or_else(|| Error::Unsupported {
            operation,
            name: name.to_owned(),
            reason: format!("it is an {}, not a projection with views to rebuild", member.info.kind),
        })
    }

    /// Takes the projection's lease (none without a lease manager: token 0), telling `progress`
    /// who holds it while another does.
    async fn lease(&self, name: &str, progress: &mut (impl FnMut(RebuildProgress) + Send)) -> Result<Option<Lease>> {
        let Some(leases) = self.stores.leases() else { return Ok(None) };
        let mut told: Option<Option<LeaseInfo>> = None;
        loop {
            if let Some(lease) = leases.try_acquire(name).await? {
                return Ok(Some(lease));
            }
            let holder = leases.leases(name).await?.into_iter().find(|l| l.name == name);
            if told.as_ref() != Some(&holder) {
                progress(RebuildProgress::WaitingForLease { holder: holder.clone() });
                told = Some(holder);
            }
            tokio::time::sleep(LEASE_POLL).await;
        }
    }

    /// Rebuilds the registered projection `name` from the first event into a new generation,
    /// behind the live views (queries go on reading them), and makes it live once caught up.
    /// Under the projection's lease: while another runner holds it, `progress` hears
    /// [`RebuildProgress::WaitingForLease`] with the holder, and the rebuild waits; then
    /// [`Started`](RebuildProgress::Started), and [`Batch`](RebuildProgress::Batch) after each
    /// batch. Answers the new checkpoint. A partitioned projection, an event handler or a process
    /// manager: [`Error::Unsupported`]; a name not registered: [`Error::UnknownProjection`].
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

    /// Like [`rebuild`](Self::rebuild), but the new generation starts after `to`: the events up
    /// to it are not applied.
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
        let (projector, ops) = self.runnable(name, if after.is_some() { "reset" } else { "rebuild" })?;
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
        let lease = self.lease(name, &mut progress).await?;
        let token = lease.as_ref().map_or(0, Lease::token);
        let head = events.head().await?;
        let total = events.count_after(after.unwrap_or(Position::ZERO), LAG_CAP).await?;
        progress(RebuildProgress::Started { token, after, head, total });
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let run = ops.rebuild(&projector, token, after, &tx);
        tokio::pin!(run);
        let mut done = 0u64;
        let mut tell = |(checkpoint, n): (Option<Position>, usize), progress: &mut dyn FnMut(RebuildProgress)| {
            done += n as u64;
            progress(RebuildProgress::Batch { checkpoint, head, done, total });
        };
        let result = loop {
            tokio::select! {
                result = &mut run => break result,
                Some(batch) = rx.recv() => tell(batch, &mut progress),
            }
        };
        while let Ok(batch) = rx.try_recv() {
            tell(batch, &mut progress);
        }
        drop(lease);
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
    pub async fn retry_dead_letters(&self, name: &str, which: &DeadLetterSelection) -> Result<RetryOutcome> {
        let (projector, ops) = self.runnable(name, "retry dead letters of")?;
        let lease = self.lease(name, &mut |_| {}).await?;
        let token = lease.as_ref().map_or(0, Lease::token);
        let events = self.letters(name, which).await?;
        if events.is_empty() {
            return Ok(RetryOutcome { retried: 0, succeeded: 0, failed: Vec::new() });
        }
        let failed = ops.retry(&projector, token, &events).await?;
        drop(lease);
        let retried = events.len() as u64;
        Ok(RetryOutcome { retried, succeeded: retried - failed.len() as u64, failed })
    }

    /// Under the projection's lease (waiting for it), removes the dead letters `which` selects
    /// without applying them; answers how many went. For a projection registered or held by the
    /// store (else [`Error::UnknownProjection`]).
    pub async fn skip_dead_letters(&self, name: &str, which: &DeadLetterSelection) -> Result<u64> {
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
        let lease = self.lease(name, &mut |_| {}).await?;
        let token = lease.as_ref().map_or(0, Lease::token);
        let removed = self.stores.views().remove_dead_letters(name, which, token).await?;
        drop(lease);
        superseded(name, removed)
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

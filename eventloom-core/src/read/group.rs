//! A [`ProjectionGroup`]: many projections and event handlers of one process fed by one read of
//! the log.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tracing::Instrument;

use super::balance::BalancedLeases;
use super::feed::{Feed, FeedReader};
use super::partition::{MAX_PARTITIONS, Partition};
use super::partitioned::PartitionJob;
use super::projector::Projector;
use super::projector::handler::HandlerJob;
use super::run::{Job, ProjectionJob, Runner};
use crate::{
    Error, EventHandler, EventStore, HandlerOptions, Position, Projection, ProjectionOptions, RecordedEvent, Result,
};

/// The default buffer of each member of a group, in full batches: the shared read keeps for a
/// member at most this many batches' worth of events (and of bytes), however it splits them; a
/// member further behind is let go and reads on its own.
pub const DEFAULT_MEMBER_BUFFER: usize = 4;

/// A batch of the shared read, handed to every member that follows it.
type Batch = Arc<Vec<RecordedEvent>>;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Runs many projections and event handlers from one read of a [`Feed`] (by default the
/// projector's event store): made by [`Projector::group`].
///
/// Each member keeps its own checkpoint, generation and lease, and writes its own batches, with
/// its own poison policy and batch size when added with options
/// ([`add_with`](ProjectionGroup::add_with), [`add_handler_with`](ProjectionGroup::add_handler_with)):
/// a batch of the shared read longer than a member's batch size is written in several. A
/// member that is behind the group's read (just started, rebuilding, recovering after an
/// outage or a lost lease) reads on its own from its checkpoint until it reaches the shared
/// read, then joins it: from then on the log is read once for all the members that follow it.
/// The shared read keeps at most a few full batches' worth of events for each member
/// ([`with_member_buffer`](ProjectionGroup::with_member_buffer)), however small the batches it
/// reads while live, and goes at the pace of the fastest one: a member whose buffer is full is let go and catches up on its own, so a slow or
/// failed member never stalls the others, and memory stays bounded.
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
/// # struct Totals;
/// # impl Projection for Totals { const NAME: &'static str = "totals"; type Events = Counter; type View = u64;
/// #   fn apply(&self, v: &mut Option<u64>, e: &EventEnvelope<CounterEvent>) -> Result<(), BoxError> {
/// #     let CounterEvent::Incremented { by } = &e.event; *v.get_or_insert(0) += by; Ok(()) } }
/// # struct Counts;
/// # impl Projection for Counts { const NAME: &'static str = "counts"; type Events = Counter; type View = u64;
/// #   fn apply(&self, v: &mut Option<u64>, _: &EventEnvelope<CounterEvent>) -> Result<(), BoxError> {
/// #     *v.get_or_insert(0) += 1; Ok(()) } }
/// use eventloom_core::{read::{MemberState, Projector}, memory::{MemoryEventStore, MemoryViewStore}};
///
/// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
/// let projector = Projector::new(MemoryEventStore::new(), MemoryViewStore::default());
/// let mut group = projector.group();
/// let totals = group.add(Totals);
/// group.add(Counts);
/// let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
/// let running = tokio::spawn(group.run(async { stopped.await.ok(); }));
/// totals.wait_until(|s| s.state == MemberState::Running).await;
/// assert_eq!(totals.lag(100).await.unwrap(), 0);
/// stop.send(()).unwrap();
/// running.await.unwrap().unwrap();
/// assert_eq!(totals.status().state, MemberState::Stopped);
/// # });
/// ```
pub struct ProjectionGroup<S, F = S> {
    projector: Projector<S>,
    feed: Arc<F>,
    buffer: usize,
    members: Vec<Pending<S, F>>,
    /// Why the group cannot run, found while members were added.
    invalid: Option<Error>,
}

impl<S, F> std::fmt::Debug for ProjectionGroup<S, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProjectionGroup")
            .field("members", &self.members.iter().map(|m| &*m.name).collect::<Vec<_>>())
            .field("buffer", &self.buffer)
            .finish_non_exhaustive()
    }
}

/// A member added and not started yet: its name, its status, its batch size, and how to run it.
struct Pending<S, F> {
    name: Arc<str>,
    status: Arc<watch::Sender<MemberStatus>>,
    batch_size: usize,
    start: Start<S, F>,
}

/// Starts a member's run.
type Start<S, F> = Box<dyn FnOnce(Context<S, F>) -> BoxFuture<Result<()>> + Send>;

/// What a member runs with: the group's projector with the member's own settings.
struct Context<S, F> {
    projector: Projector<S>,
    feed: Arc<F>,
    membership: Membership,
    shutdown: watch::Receiver<bool>,
}

/// How one member's projector differs from the group's.
#[derive(Clone, Default)]
pub(crate) struct MemberSettings {
    pub(crate) poison: Option<crate::PoisonPolicy>,
    pub(crate) batch_size: Option<usize>,
    /// Leases of its own (a partition's, taken while it is in this process's share).
    pub(crate) leases: Option<Arc<dyn crate::LeaseManager>>,
    /// The share a partition's process gives up when the partition stops at a newer version.
    pub(crate) share: Option<Arc<BalancedLeases>>,
}

impl MemberSettings {
    fn apply<S: EventStore + Clone>(self, mut projector: Projector<S>) -> Projector<S> {
        if let Some(leases) = self.leases {
            projector.leases = Some(leases);
        }
        if let Some(policy) = self.poison {
            projector = projector.with_poison_policy(policy);
        }
        if let Some(events) = self.batch_size {
            projector = projector.with_batch_size(events);
        }
        projector
    }
}

impl<S: EventStore + Clone> Projector<S> {
    /// A group of projections fed by one read of this projector's event store, with its
    /// settings (leases, batch sizes, poison policy, upcasters). See [`ProjectionGroup`].
    pub fn group(&self) -> ProjectionGroup<S> {
        self.group_fed_by(self.events.clone())
    }

    /// A group of projections fed by one read of another [`Feed`] (a bus consumer): their
    /// checkpoints are the feed's positions.
    ///
    /// # Examples
    ///
    /// ```
    /// use eventloom_core::{memory::{MemoryEventStore, MemoryViewStore}, read::Projector};
    ///
    /// let log = MemoryEventStore::new();
    /// let projector = Projector::new(MemoryEventStore::new(), MemoryViewStore::default());
    /// let group = projector.group_fed_by(log);
    /// # drop(group);
    /// ```
    pub fn group_fed_by<F: Feed>(&self, feed: F) -> ProjectionGroup<S, F> {
        ProjectionGroup {
            projector: self.clone(),
            feed: Arc::new(feed),
            buffer: DEFAULT_MEMBER_BUFFER,
            members: Vec::new(),
            invalid: None,
        }
    }
}

impl<S: EventStore + Clone, F: Feed> ProjectionGroup<S, F> {
    /// How many full batches' worth the shared read keeps for each member (at least 1; default
    /// [`read::DEFAULT_MEMBER_BUFFER`](crate::read::DEFAULT_MEMBER_BUFFER)): at most
    /// `batches` × the batch size events and `batches` × the batch bound in bytes, counted by
    /// event, so that the many small batches of a live log (often one event each) do not fill a
    /// member's buffer. Memory holds at most that much, shared by the members; a member further
    /// behind is let go to read on its own.
    ///
    /// # Examples
    ///
    /// ```
    /// use eventloom_core::{memory::{MemoryEventStore, MemoryViewStore}, read::Projector};
    ///
    /// let projector = Projector::new(MemoryEventStore::new(), MemoryViewStore::default());
    /// let group = projector.group().with_member_buffer(8);
    /// # drop(group);
    /// ```
    pub fn with_member_buffer(mut self, batches: usize) -> Self {
        self.buffer = batches.max(1);
        self
    }

    /// Adds a projection to the group, run with the group's settings; the handle tells its
    /// status and lag.
    pub fn add<P: Projection>(&mut self, projection: P) -> MemberHandle {
        self.add_with(projection, ProjectionOptions::new())
    }

    /// Adds a projection to the group with a poison policy or batch size of its own. It is fed
    /// by the group's shared read all the same (the options change how it folds and writes, not
    /// what it reads).
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
    /// # struct Totals;
    /// # impl Projection for Totals { const NAME: &'static str = "totals"; type Events = Counter; type View = u64;
    /// #   fn apply(&self, v: &mut Option<u64>, _: &EventEnvelope<CounterEvent>) -> Result<(), BoxError> { Ok(()) } }
    /// use eventloom_core::ProjectionOptions;
    /// use eventloom_core::memory::{MemoryEventStore, MemoryViewStore};
    /// use eventloom_core::read::{PoisonPolicy, Projector};
    ///
    /// let projector = Projector::new(MemoryEventStore::new(), MemoryViewStore::default());
    /// let mut group = projector.group();
    /// let options = ProjectionOptions::new().poison_policy(PoisonPolicy::DeadLetter).batch_size(100);
    /// let totals = group.add_with(Totals, options);
    /// assert_eq!(totals.name(), "totals");
    /// ```
    ///
    /// A projection split into partitions ([`ProjectionOptions::partitions`]) joins as one
    /// member per partition, each with its own lease; the handle tells them together (and
    /// [`MemberHandle::parts`] each).
    pub fn add_with<P: Projection>(&mut self, projection: P, options: ProjectionOptions) -> MemberHandle {
        let count = options.partition_count();
        if count == 1 {
            return self.push(ProjectionJob(projection), options.settings());
        }
        let name: Arc<str> = projection.name().into();
        if count > MAX_PARTITIONS {
            self.invalid.get_or_insert_with(|| Error::InvalidConfig {
                reason: format!("projection {name} has {count} partitions; at most {MAX_PARTITIONS} are allowed"),
            });
        }
        let projection = Arc::new(projection);
        let mut settings = options.settings();
        // With leases, the partitions are shared out among the processes that run them.
        if let Some(leases) = &self.projector.leases {
            let balanced = Arc::new(BalancedLeases::new(leases.clone(), &name, P::VERSION, count));
            settings.leases = Some(balanced.clone());
            settings.share = Some(balanced);
        }
        let parts = (0..count.min(MAX_PARTITIONS))
            .map(|index| {
                let job = PartitionJob::new(projection.clone(), Partition { index, count });
                self.push(job, settings.clone())
            })
            .collect();
        MemberHandle::of_parts(name, parts)
    }

    /// Adds an event handler to the group, run with the group's settings; the handle tells its
    /// status and lag. It is fed by the shared read as projections are (reading alone while
    /// behind), and handles each event at least once (see [`EventHandler`]).
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
    /// # struct Welcome;
    /// # impl EventHandler for Welcome { const NAME: &'static str = "welcome"; type Events = User;
    /// #   async fn handle(&self, _: &EventEnvelope<UserEvent>) -> Result<(), BoxError> { Ok(()) } }
    /// use eventloom_core::memory::{MemoryEventStore, MemoryViewStore};
    /// use eventloom_core::read::Projector;
    ///
    /// let projector = Projector::new(MemoryEventStore::new(), MemoryViewStore::default());
    /// let mut group = projector.group();
    /// let welcome = group.add_handler(Welcome);
    /// assert_eq!(welcome.name(), "welcome");
    /// ```
    pub fn add_handler<H: EventHandler>(&mut self, handler: H) -> MemberHandle {
        self.add_handler_with(handler, HandlerOptions::new())
    }

    /// Adds an event handler to the group with a poison policy or batch size of its own (see
    /// [`HandlerOptions`]), fed by the group's shared read all the same.
    pub fn add_handler_with<H: EventHandler>(&mut self, handler: H, options: HandlerOptions) -> MemberHandle {
        self.push(HandlerJob::new(handler), options.settings())
    }

    /// Adds any job the runner runs (a process manager) to the group.
    pub(crate) fn add_job<J: Job>(&mut self, job: J, settings: MemberSettings) -> MemberHandle {
        self.push(job, settings)
    }

    fn push<J: Job>(&mut self, job: J, settings: MemberSettings) -> MemberHandle {
        let name: Arc<str> = job.name().into();
        let (status, watch) = watch::channel(MemberStatus::starting());
        let status = Arc::new(status);
        let feed = self.feed.clone();
        let lag: LagProbe = Arc::new(move |after, cap| {
            let feed = feed.clone();
            Box::pin(async move { feed.count_after(after, cap).await })
        });
        self.members.push(Pending {
            name: name.clone(),
            status: status.clone(),
            batch_size: settings.batch_size.unwrap_or(self.projector.batch_size),
            start: Box::new(move |mut context| {
                let share = settings.share.clone();
                context.projector = settings.apply(context.projector);
                Box::pin(async move {
                    let ran = context.run(job).await;
                    // An older release: the processes of the newer one take its partitions.
                    if let (Err(Error::NewerVersion { .. }), Some(share)) = (&ran, share) {
                        share.retire();
                    }
                    ran
                })
            }),
        });
        MemberHandle { name, watched: Watched::One { status: watch, lag } }
    }

    /// Runs every member until `shutdown` resolves, each stopping after the batch it is writing.
    /// A member that fails (a poison event) stops alone and tells it in its handle's status; the
    /// others go on. Returns `Ok` once shut down, or the first member's error when every member
    /// stopped on its own. Two members of one name are refused with [`Error::InvalidConfig`], a
    /// name that is empty, longer than 255 bytes or holds a control character with
    /// [`Error::InvalidId`].
    ///
    /// The shared read reads batches as large as the largest member's batch size; a member
    /// with a smaller one writes each in several.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<()> {
        let ProjectionGroup { projector, feed, buffer, members, invalid } = self;
        if let Some(error) = invalid {
            return Err(error);
        }
        for member in &members {
            super::projection::check_name(&member.name)?;
        }
        let mut names: Vec<&str> = members.iter().map(|m| &*m.name).collect();
        names.sort_unstable();
        if let Some(twice) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(Error::InvalidConfig {
                reason: format!(
                    "name {} is in the group twice (projections and event handlers are kept by name)",
                    twice[0]
                ),
            });
        }
        let (stop, stopped) = watch::channel(false);
        let (joins, asked) = mpsc::channel(members.len().max(1));
        let mut reader = JoinSet::new();
        let batch_size = members.iter().map(|m| m.batch_size).max().unwrap_or(projector.batch_size);
        let shared = SharedRead::new(feed.clone(), batch_size, projector.batch_bytes, buffer);
        reader.spawn(shared.run(asked, stopped.clone()).instrument(tracing::info_span!("shared read")));
        let mut tasks = JoinSet::new();
        for member in members {
            let membership =
                Membership { joins: joins.clone(), status: member.status.clone(), name: member.name.clone() };
            let context =
                Context { projector: projector.clone(), feed: feed.clone(), membership, shutdown: stopped.clone() };
            let run = (member.start)(context);
            let mut ended = Ended { status: member.status, result: None };
            tasks.spawn(async move {
                let result = run.await;
                ended.result = Some(match &result {
                    Ok(()) => Ok(()),
                    Err(error) => Err(error.to_string()),
                });
                drop(ended);
                result
            });
        }
        drop(joins);
        tokio::pin!(shutdown);
        let mut first_error = None;
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                joined = tasks.join_next() => match joined {
                    Some(Ok(Ok(()))) => {}
                    Some(Ok(Err(error))) => { first_error.get_or_insert(error); }
                    Some(Err(panicked)) => {
                        first_error.get_or_insert(Error::Backend { message: format!("a projection panicked: {panicked}"), source: None });
                    }
                    // Every member stopped on its own.
                    None => return first_error.map_or(Ok(()), Err),
                },
            }
        }
        stop.send_replace(true);
        while tasks.join_next().await.is_some() {}
        while reader.join_next().await.is_some() {}
        Ok(())
    }
}

/// Tells a member's end in its status when its run ends: stopped, failed with its error, or
/// failed because it panicked or was aborted (dropped before it ended).
struct Ended {
    status: Arc<watch::Sender<MemberStatus>>,
    result: Option<std::result::Result<(), String>>,
}

impl Drop for Ended {
    fn drop(&mut self) {
        let result = self.result.take();
        self.status.send_modify(|s| {
            s.shared = false;
            s.state = match result {
                Some(Ok(())) => MemberState::Stopped,
                Some(Err(error)) => {
                    s.last_error = Some(error);
                    MemberState::Failed
                }
                None => {
                    s.last_error = Some("the projection's runner panicked or was aborted".to_owned());
                    MemberState::Failed
                }
            };
        });
    }
}

impl<S: EventStore + Clone, F: Feed> Context<S, F> {
    async fn run<J: Job>(self, job: J) -> Result<()> {
        let Context { projector, feed, membership, mut shutdown } = self;
        let shutdown = async move {
            // A group that is gone shuts its members down too.
            let _ = shutdown.wait_for(|stop| *stop).await;
        };
        tokio::pin!(shutdown);
        let span = job.span();
        Runner::new(&projector, &*feed, job, shutdown).in_group(membership).run().instrument(span).await
    }
}

type LagProbe = Arc<dyn Fn(Position, u64) -> BoxFuture<Result<u64>> + Send + Sync>;

/// Tells a group member's status and lag: returned by [`ProjectionGroup::add`].
///
/// # Examples
///
/// See [`ProjectionGroup`].
#[derive(Clone)]
pub struct MemberHandle {
    name: Arc<str>,
    watched: Watched,
}

/// What a handle tells of: one member, or the partitions of a partitioned projection.
#[derive(Clone)]
enum Watched {
    One { status: watch::Receiver<MemberStatus>, lag: LagProbe },
    Parts(Arc<[MemberHandle]>),
}

impl std::fmt::Debug for MemberHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemberHandle").field("name", &self.name).field("status", &self.status()).finish()
    }
}

impl MemberHandle {
    fn of_parts(name: Arc<str>, parts: Vec<MemberHandle>) -> Self {
        MemberHandle { name, watched: Watched::Parts(parts.into()) }
    }

    /// The member's name ([`Projection::name`] or [`EventHandler::name`]).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The handles of a partitioned projection's partitions, by index (named
    /// `<name>~<i>of<n>`); none for a member that is not partitioned.
    pub fn parts(&self) -> &[MemberHandle] {
        match &self.watched {
            Watched::One { .. } => &[],
            Watched::Parts(parts) => parts,
        }
    }

    /// What the member is doing now, its checkpoint and its last error. Of a partitioned
    /// projection: the partitions together — failed when one failed, building while one
    /// builds, running when one runs here (the others may run in other processes), the least
    /// checkpoint of those that run here.
    pub fn status(&self) -> MemberStatus {
        match &self.watched {
            Watched::One { status, .. } => status.borrow().clone(),
            Watched::Parts(parts) => MemberStatus::of_parts(parts.iter().map(MemberHandle::status)),
        }
    }

    /// How many events the member has yet to read after its checkpoint, counted up to `cap`
    /// (see [`EventStore::count_after`]): 0 when caught up. Of a partitioned projection: the
    /// most of the partitions that run here.
    pub async fn lag(&self, cap: u64) -> Result<u64> {
        match &self.watched {
            Watched::One { status, lag } => {
                let checkpoint = status.borrow().checkpoint.unwrap_or(Position::ZERO);
                lag(checkpoint, cap).await
            }
            Watched::Parts(parts) => {
                let mut most = 0;
                for part in parts.iter().filter(|p| p.status().runs_here()) {
                    most = most.max(Box::pin(part.lag(cap)).await?);
                }
                Ok(most)
            }
        }
    }

    /// Waits until the member's status satisfies `ready`, and returns it (at once if it does
    /// now; the last status when the group is gone).
    pub async fn wait_until(&self, mut ready: impl FnMut(&MemberStatus) -> bool) -> MemberStatus {
        match &self.watched {
            Watched::One { status, .. } => {
                let mut status = status.clone();
                let waited = status.wait_for(|s| ready(s)).await.map(|status| status.clone());
                waited.unwrap_or_else(|_| status.borrow().clone())
            }
            Watched::Parts(parts) => {
                let mut watches: Vec<_> = parts
                    .iter()
                    .filter_map(|p| match &p.watched {
                        Watched::One { status, .. } => Some(status.clone()),
                        Watched::Parts(_) => None,
                    })
                    .collect();
                loop {
                    let now = self.status();
                    if ready(&now) {
                        return now;
                    }
                    // Until any partition's status changes; a partition whose runner ended
                    // changes no more (all ended: the last status).
                    watches.retain(|w| w.has_changed().is_ok());
                    if watches.is_empty() {
                        return now;
                    }
                    let changes = watches.iter_mut().map(|w| w.changed());
                    let _ = super::partition::first_of(changes).await;
                }
            }
        }
    }
}

/// A group member's status, as its [`MemberHandle`] tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MemberStatus {
    /// What it is doing.
    pub state: MemberState,
    /// The position of the last event it wrote (in the generation it writes).
    pub checkpoint: Option<Position>,
    /// Whether the group's shared read feeds it (otherwise it reads on its own, behind it).
    pub shared: bool,
    /// The last error it met: an outage it retries, or why it failed.
    pub last_error: Option<String>,
}

impl MemberStatus {
    fn starting() -> Self {
        MemberStatus { state: MemberState::Starting, checkpoint: None, shared: false, last_error: None }
    }

    /// Whether the member runs in this process (builds or follows the log).
    fn runs_here(&self) -> bool {
        matches!(self.state, MemberState::Building | MemberState::Running)
    }

    /// The statuses of a partitioned projection's partitions together (see
    /// [`MemberHandle::status`]).
    fn of_parts(parts: impl Iterator<Item = MemberStatus>) -> Self {
        let parts: Vec<MemberStatus> = parts.collect();
        let any = |state: MemberState| parts.iter().any(|p| p.state == state);
        let state = if any(MemberState::Failed) {
            MemberState::Failed
        } else if any(MemberState::Starting) {
            MemberState::Starting
        } else if any(MemberState::Building) {
            MemberState::Building
        } else if any(MemberState::Running) {
            MemberState::Running
        } else if parts.iter().all(|p| p.state == MemberState::Stopped) {
            MemberState::Stopped
        } else {
            MemberState::StandingBy
        };
        let here: Vec<&MemberStatus> = parts.iter().filter(|p| p.runs_here()).collect();
        MemberStatus {
            state,
            checkpoint: here.iter().map(|p| p.checkpoint).min().flatten(),
            shared: !here.is_empty() && here.iter().all(|p| p.shared),
            last_error: parts.iter().find_map(|p| p.last_error.clone()),
        }
    }
}

/// What a group member is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MemberState {
    /// Not started yet.
    Starting,
    /// Waiting for its lease (another runner holds it), or after another runner wrote.
    StandingBy,
    /// Building a new generation of its views (made live once caught up).
    Building,
    /// Live: following the log as events commit.
    Running,
    /// Stopped by a shutdown.
    Stopped,
    /// Stopped on an error it cannot get past (a poison event, a newer projection version in
    /// the store), or its runner panicked: see [`MemberStatus::last_error`]. Stays so after the
    /// group shuts down.
    Failed,
}

/// A member's link to its group's shared read, and to its handle.
pub(super) struct Membership {
    joins: mpsc::Sender<Join>,
    status: Arc<watch::Sender<MemberStatus>>,
    name: Arc<str>,
}

impl Membership {
    pub(super) fn report(&self, change: impl FnOnce(&mut MemberStatus)) {
        self.status.send_if_modified(|status| {
            let before = status.clone();
            change(status);
            *status != before
        });
    }

    /// Asks the shared read to feed the member the events after `after`: `None` when the shared
    /// read is past it (or gone).
    pub(super) async fn join(&self, after: Position) -> Option<Attached> {
        let (reply, replied) = oneshot::channel();
        self.joins.send(Join { name: self.name.clone(), after, reply }).await.ok()?;
        replied.await.ok().flatten()
    }
}

/// A member asking to join the shared read after its checkpoint.
struct Join {
    name: Arc<str>,
    after: Position,
    reply: oneshot::Sender<Option<Attached>>,
}

/// A member's share of the shared read: the batches kept for it.
pub(super) struct Attached {
    batches: mpsc::UnboundedReceiver<(Batch, usize)>,
    queued: Arc<Queued>,
    taken: Arc<Notify>,
}

impl Attached {
    /// The next batch; `None` once the shared read let the member go (its buffer was full).
    pub(super) async fn next(&mut self) -> Option<Batch> {
        let (batch, bytes) = self.batches.recv().await?;
        self.queued.take(batch.len(), bytes);
        self.taken.notify_one();
        Some(batch)
    }
}

/// What a member's buffer holds: events and their stored bytes, handed over and not yet taken.
#[derive(Default)]
struct Queued {
    events: AtomicUsize,
    bytes: AtomicUsize,
}

impl Queued {
    fn put(&self, events: usize, bytes: usize) {
        self.events.fetch_add(events, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    fn take(&self, events: usize, bytes: usize) {
        self.events.fetch_sub(events, Ordering::Relaxed);
        self.bytes.fetch_sub(bytes, Ordering::Relaxed);
    }
}

/// How much a member's buffer may hold.
#[derive(Clone, Copy)]
struct Budget {
    events: usize,
    bytes: usize,
}

impl Budget {
    /// Whether a batch of `events` and `bytes` fits beside what `queued` holds: it does when the
    /// buffer is empty, whatever its size, so that one large batch never lets a member go.
    fn fits(self, queued: &Queued, events: usize, bytes: usize) -> bool {
        let (held, held_bytes) = (queued.events.load(Ordering::Relaxed), queued.bytes.load(Ordering::Relaxed));
        held == 0 || (held.saturating_add(events) <= self.events && held_bytes.saturating_add(bytes) <= self.bytes)
    }

    /// Whether `queued` has room for more.
    fn has_room(self, queued: &Queued) -> bool {
        queued.events.load(Ordering::Relaxed) < self.events && queued.bytes.load(Ordering::Relaxed) < self.bytes
    }
}

/// A member the shared read feeds.
struct Follower {
    name: Arc<str>,
    batches: mpsc::UnboundedSender<(Batch, usize)>,
    queued: Arc<Queued>,
}

impl Follower {
    /// Hands `batch` over if it fits the member's budget; `false` when it does not, or when the
    /// member is gone.
    fn offer(&self, budget: Budget, batch: &Batch, bytes: usize) -> bool {
        if !budget.fits(&self.queued, batch.len(), bytes) {
            return false;
        }
        self.queued.put(batch.len(), bytes);
        self.batches.send((batch.clone(), bytes)).is_ok()
    }
}

/// The group's one read of the feed, handed to the members that follow it.
struct SharedRead<F: Feed> {
    feed: Arc<F>,
    batch_size: usize,
    batch_bytes: usize,
    budget: Budget,
    followers: Vec<Follower>,
    /// The last batches handed over (a budget's worth), each with the position it starts after
    /// and its stored bytes: a member that asks to join a little behind gets them.
    recent: VecDeque<(Position, Batch, usize)>,
    /// The events and bytes `recent` holds.
    recent_held: (usize, usize),
    /// The position of the last event read.
    at: Position,
    /// Signalled when a member takes a batch.
    taken: Arc<Notify>,
}

impl<F: Feed> SharedRead<F> {
    fn new(feed: Arc<F>, batch_size: usize, batch_bytes: usize, buffer: usize) -> Self {
        let budget = Budget { events: buffer.saturating_mul(batch_size), bytes: buffer.saturating_mul(batch_bytes) };
        SharedRead {
            feed,
            batch_size,
            batch_bytes,
            budget,
            followers: Vec::new(),
            recent: VecDeque::new(),
            recent_held: (0, 0),
            at: Position::ZERO,
            taken: Arc::new(Notify::new()),
        }
    }

    /// Reads while some member follows, at the pace of the fastest; idle otherwise. Ends when
    /// told to stop, or when every member is gone.
    async fn run(mut self, mut joins: mpsc::Receiver<Join>, mut stop: watch::Receiver<bool>) {
        let mut reader: Option<F::Reader> = None;
        loop {
            self.followers.retain(|f| !f.batches.is_closed());
            let reading = match reader.as_mut() {
                Some(reader) if !self.followers.is_empty() => reader,
                _ => {
                    // Nobody follows: read nothing until a member joins, then start at it.
                    self.recent.clear();
                    self.recent_held = (0, 0);
                    let join = tokio::select! {
                        biased;
                        _ = stop.wait_for(|stop| *stop) => return,
                        join = joins.recv() => join,
                    };
                    let Some(join) = join else { return };
                    self.at = join.after;
                    reader = Some(self.feed.read_after(join.after, self.batch_size, self.batch_bytes));
                    self.join(join);
                    continue;
                }
            };
            if !self.followers.iter().any(|f| self.budget.has_room(&f.queued)) {
                // Every follower's buffer is full: wait for the fastest to take a batch.
                let taken = self.taken.clone();
                tokio::select! {
                    biased;
                    _ = stop.wait_for(|stop| *stop) => return,
                    join = joins.recv() => match join {
                        Some(join) => self.join(join),
                        None => return,
                    },
                    () = taken.notified() => {}
                }
                continue;
            }
            let read = {
                let fetch = reading.next_batch();
                tokio::pin!(fetch);
                loop {
                    tokio::select! {
                        biased;
                        _ = stop.wait_for(|stop| *stop) => return,
                        join = joins.recv() => match join {
                            Some(join) => self.join(join),
                            None => return,
                        },
                        read = &mut fetch => break read,
                    }
                }
            };
            match read {
                Ok(batch) => self.hand_over(batch),
                Err(error) => {
                    tracing::warn!(%error, "the shared read failed; its members read on their own");
                    self.followers.clear();
                    reader = None;
                }
            }
        }
    }

    /// Takes a member on if it asks at or after the oldest batch kept, handing it the kept
    /// batches it has not seen.
    fn join(&mut self, join: Join) {
        let kept_from = self.recent.front().map_or(self.at, |(after, _, _)| *after);
        if join.after < kept_from {
            let _ = join.reply.send(None);
            return;
        }
        let (batches, received) = mpsc::unbounded_channel();
        let follower = Follower { name: join.name, batches, queued: Arc::default() };
        for (_, batch, bytes) in &self.recent {
            if batch.last().is_some_and(|e| e.position > join.after) {
                // Fits: what is kept is at most a budget's worth.
                follower.queued.put(batch.len(), *bytes);
                let _ = follower.batches.send((batch.clone(), *bytes));
            }
        }
        let attached = Attached { batches: received, queued: follower.queued.clone(), taken: self.taken.clone() };
        if join.reply.send(Some(attached)).is_ok() {
            tracing::debug!(member = &*follower.name, after = %join.after, "a member joined the shared read");
            self.followers.push(follower);
        }
    }

    /// Hands a batch to every follower; one whose buffer is full is let go to read on its own.
    fn hand_over(&mut self, batch: Vec<RecordedEvent>) {
        let Some(last) = batch.last().map(|e| e.position) else { return };
        let bytes = batch.iter().map(RecordedEvent::stored_size).sum::<usize>();
        let batch = Arc::new(batch);
        self.recent.push_back((self.at, batch.clone(), bytes));
        self.recent_held = (self.recent_held.0 + batch.len(), self.recent_held.1 + bytes);
        while self.recent.len() > 1
            && (self.recent_held.0 > self.budget.events || self.recent_held.1 > self.budget.bytes)
        {
            if let Some((_, dropped, dropped_bytes)) = self.recent.pop_front() {
                self.recent_held = (self.recent_held.0 - dropped.len(), self.recent_held.1 - dropped_bytes);
            }
        }
        self.at = last;
        let budget = self.budget;
        self.followers.retain(|follower| {
            if follower.batches.is_closed() {
                return false;
            }
            let kept = follower.offer(budget, &batch, bytes);
            if !kept {
                tracing::info!(member = &*follower.name, "a member fell behind the shared read; it goes on alone");
            }
            kept
        });
    }
}

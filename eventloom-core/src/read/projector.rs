//! The [`Projector`]: runs projections, one atomic write of views and checkpoint per batch.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tracing::Instrument;

// The event handlers' runner, in a file of its own beside this one (it reads the projector's
// fields).
#[path = "handler.rs"]
pub(crate) mod handler;

use super::fold::{CategoryUpcasters, Fold, Folded, dead_letter};
use super::partition::Partition;
use super::projection::check_name;
use super::run::{Job, ProjectionJob, Runner};
use crate::store::{Refusal, superseded};
use crate::{
    DeadLetter, Error, EventStore, Lease, LeaseManager, PoisonPolicy, Position, Projection, ProjectionStop,
    RecordedEvent, Result, StopKind, Subscription, Upcasters, ViewCommit, ViewStore,
};

/// Runs projections: reads events after each projection's checkpoint, folds them into views,
/// and writes views and checkpoint together.
///
/// With a [`LeaseManager`], only the holder of a projection's lease runs it; the others stand
/// by, and every write carries the lease's fencing token. A restart resumes from the checkpoint;
/// [`rebuild`](Projector::rebuild) starts from zero.
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
/// use eventloom_core::{memory::{MemoryEventStore, MemoryViewStore}, read::{Projector, ViewReader}};
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let events = MemoryEventStore::new();
/// let views = MemoryViewStore::default();
/// let projector = Projector::new(events.clone(), views.clone());
/// // ... commands append events ...
/// projector.catch_up(&Totals).await.unwrap();
/// let reader = ViewReader::<u64>::new(views, Totals::NAME);
/// assert_eq!(reader.get("c-1").await.unwrap(), None);
/// # });
/// ```
pub struct Projector<S> {
    pub(crate) events: S,
    pub(crate) views: Arc<dyn ViewStore>,
    pub(super) leases: Option<Arc<dyn LeaseManager>>,
    upcasters: CategoryUpcasters,
    pub(super) batch_size: usize,
    pub(super) batch_bytes: usize,
    pub(super) retry_delay: Duration,
    poison: PoisonPolicy,
    pub(super) verify_interval: Duration,
}

impl<S: Clone> Clone for Projector<S> {
    fn clone(&self) -> Self {
        Projector {
            events: self.events.clone(),
            views: self.views.clone(),
            leases: self.leases.clone(),
            upcasters: self.upcasters.clone(),
            batch_size: self.batch_size,
            batch_bytes: self.batch_bytes,
            retry_delay: self.retry_delay,
            poison: self.poison,
            verify_interval: self.verify_interval,
        }
    }
}

impl<S> std::fmt::Debug for Projector<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Projector")
            .field("leases", &self.leases.is_some())
            .field("batch_size", &self.batch_size)
            .finish_non_exhaustive()
    }
}

/// Refuses a retry of dead letters of `name` by code of projection version `running` among
/// views of version `stored` (those queries read): a newer release's with
/// [`Error::NewerVersion`], an older one's with [`Error::Unsupported`]. A retry runs `apply`
/// among views that only the code of their own version may write.
pub(crate) fn refuse_other_version(name: &str, stored: u32, running: u32) -> Result<()> {
    if stored > running {
        return Err(Error::NewerVersion { projection: name.to_owned(), running, stored });
    }
    if stored < running {
        return Err(Error::Unsupported {
            operation: "retry dead letters of",
            name: name.to_owned(),
            reason: format!(
                "its live views are of version {stored}, this release's projection of version {running}: its \
                 apply would write among views of the older one (their dead letters go with them once the \
                 rebuild to version {running} is live; retry what remains then)"
            ),
        });
    }
    Ok(())
}

impl<S: EventStore + Clone> Projector<S> {
    /// A projector reading `events` and writing `views`, without leadership.
    pub fn new(events: S, views: impl ViewStore) -> Self {
        Projector {
            events,
            views: Arc::new(views),
            leases: None,
            upcasters: CategoryUpcasters::default(),
            batch_size: crate::read::DEFAULT_PROJECTOR_BATCH,
            batch_bytes: crate::read::DEFAULT_BATCH_BYTES,
            retry_delay: Duration::from_millis(100),
            poison: PoisonPolicy::Stop,
            verify_interval: Duration::from_secs(1),
        }
    }

    /// What to do with an event the projection cannot process (default: stop).
    pub fn with_poison_policy(mut self, policy: PoisonPolicy) -> Self {
        self.poison = policy;
        self
    }

    /// Runs each projection only while holding its lease from `leases`.
    pub fn with_leases(mut self, leases: impl LeaseManager) -> Self {
        self.leases = Some(Arc::new(leases));
        self
    }

    /// Upcasts stored events before decoding them: the events of every category (aggregate
    /// type) without upcasters of its own ([`with_upcasters_for`](Projector::with_upcasters_for)).
    pub fn with_upcasters(mut self, upcasters: Upcasters) -> Self {
        self.upcasters.set_fallback(upcasters);
        self
    }

    /// Upcasts the stored events of one category (an aggregate's [`TYPE`](crate::Aggregate::TYPE))
    /// with `upcasters`, and with them alone: type names and versions are an aggregate's own, so
    /// each aggregate's upcasters apply only to its events. A later call for the same category
    /// replaces the earlier.
    ///
    /// # Examples
    ///
    /// ```
    /// use eventloom_core::{memory::{MemoryEventStore, MemoryViewStore}, read::Projector, write::Upcasters};
    ///
    /// // Tasks once stored `TaskMade`; users keep their own names.
    /// let tasks = Upcasters::new().add(("TaskMade", 1), ("Created", 1), Ok);
    /// let projector = Projector::new(MemoryEventStore::new(), MemoryViewStore::default())
    ///     .with_upcasters_for("task", tasks);
    /// ```
    pub fn with_upcasters_for(mut self, category: impl Into<String>, upcasters: Upcasters) -> Self {
        self.upcasters.set(category, upcasters);
        self
    }

    /// Folds up to `events` per atomic write (at least 1).
    pub fn with_batch_size(mut self, events: usize) -> Self {
        self.batch_size = events.max(1);
        self
    }

    /// Reads batches of at most about `bytes` of events (a batch ends with the event that reaches
    /// it; default [`read::DEFAULT_BATCH_BYTES`](crate::read::DEFAULT_BATCH_BYTES)). A running projector
    /// holds at most two batches at once: the one it folds and the one it reads ahead.
    pub fn with_batch_bytes(mut self, bytes: usize) -> Self {
        self.batch_bytes = bytes.max(1);
        self
    }

    /// The first delay before retrying after the store was unavailable (doubles up to 5 s).
    pub fn with_retry_delay(mut self, delay: Duration) -> Self {
        self.retry_delay = delay;
        self
    }

    /// Every this often while idle, a running projector checks that the generation it writes is
    /// still there (a Redis that restarted empty is noticed without waiting for an event).
    /// Default 1 s.
    pub fn with_verify_interval(mut self, interval: Duration) -> Self {
        self.verify_interval = interval.max(Duration::from_millis(10));
        self
    }

    /// Processes every event stored now and returns the checkpoint. With leases, it first takes
    /// the projection's lease (waiting while another runner holds it) and writes with its token.
    /// When the views need building (none yet, a new [`Projection::VERSION`], or a store that
    /// lost them), it builds a new generation and makes it live once caught up.
    pub async fn catch_up<P: Projection>(&self, projection: &P) -> Result<Option<Position>> {
        check_name(projection.name())?;
        let lease = self.lease(projection.name()).await?;
        let token = lease.as_ref().map_or(0, Lease::token);
        let target = self.target(projection.name(), P::VERSION, token).await?;
        self.catch_up_with(projection, target, token, None).await
    }

    async fn catch_up_with<P: Projection>(
        &self,
        projection: &P,
        target: Target,
        token: u64,
        progress: Option<&Progress>,
    ) -> Result<Option<Position>> {
        let (stopped, generation) = (target.stopped, target.generation);
        match self.catch_up_from(projection, target, token, progress).await {
            Ok(checkpoint) => {
                if stopped {
                    self.note_running(projection.name(), token).await;
                }
                Ok(checkpoint)
            }
            Err(error) => {
                self.note_stop(projection.name(), &error, generation, token).await;
                Err(error)
            }
        }
    }

    async fn catch_up_from<P: Projection>(
        &self,
        projection: &P,
        mut target: Target,
        token: u64,
        progress: Option<&Progress>,
    ) -> Result<Option<Position>> {
        let metrics = crate::metrics::RunnerMetrics::new(projection.name());
        let mut subscription = self.subscribe(target.checkpoint);
        let mut next = subscription.try_next_batch().await?;
        while let Some(batch) = next {
            let started = std::time::Instant::now();
            if !subscription.is_behind() {
                // Caught up when it was read: nothing to read ahead.
                target.checkpoint = self.process(projection, &batch, &target, token).await?;
                metrics.batch(batch.len(), started.elapsed());
                metrics.lag(batch.last(), 0, true);
                if let Some(progress) = progress {
                    let _ = progress.send((target.checkpoint, batch.len()));
                }
                next = subscription.try_next_batch().await?;
                continue;
            }
            // Behind: the next batch is read while this one is folded and written.
            let process = async {
                let written = self.process(projection, &batch, &target, token).await;
                (written, started.elapsed())
            };
            let ((written, took), ahead) = tokio::join!(process, subscription.try_next_batch());
            target.checkpoint = written?;
            if let Some(progress) = progress {
                let _ = progress.send((target.checkpoint, batch.len()));
            }
            next = ahead?;
            metrics.batch(batch.len(), took);
            let known = next.as_ref().map_or(0, Vec::len);
            metrics.lag(batch.last(), known, known == 0 && !subscription.is_behind());
        }
        if target.building {
            let name = projection.name();
            superseded(name, self.views.go_live(name, target.generation, token).await?)?;
            tracing::info!(projection = name, generation = target.generation, "new generation of views is live");
        }
        Ok(target.checkpoint)
    }

    /// Rebuilds the projection's views from the first event into a new generation, while queries
    /// go on reading the live one, and makes it live once caught up (under the projection's
    /// lease, with leases). A store holding views of a newer version of the projection (live or
    /// being built): [`Error::NewerVersion`], and nothing changes.
    pub async fn rebuild<P: Projection>(&self, projection: &P) -> Result<Option<Position>> {
        let name = projection.name();
        check_name(name)?;
        let lease = self.lease(name).await?;
        let token = lease.as_ref().map_or(0, Lease::token);
        let target = self.begin_after(name, P::VERSION, token, None).await?;
        self.catch_up_with(projection, target, token, None).await
    }

    /// [`rebuild`](Self::rebuild) by a caller that holds the projection's lease already (its
    /// `token`): into a new generation that starts after `after` (from the first event when
    /// `None`), telling `progress` the checkpoint and the number of events after each batch.
    pub(crate) async fn rebuild_held<P: Projection>(
        &self,
        projection: &P,
        token: u64,
        after: Option<Position>,
        progress: &Progress,
    ) -> Result<Option<Position>> {
        let name = projection.name();
        check_name(name)?;
        let target = self.begin_after(name, P::VERSION, token, after).await?;
        self.catch_up_with(projection, target, token, Some(progress)).await
    }

    /// Begins a new generation of `name` at `version` with `token`, its checkpoint at `after`
    /// (the events up to it are not applied): the target a rebuild writes into. Refused with
    /// [`Error::NewerVersion`] while the store holds a generation of a newer version (live, or
    /// being built by a newer release): a rebuild by an older release would take the views
    /// backwards, or drop the newer build.
    pub(super) async fn begin_after(
        &self,
        name: &str,
        version: u32,
        token: u64,
        after: Option<Position>,
    ) -> Result<Target> {
        let status = self.views.status(name).await?;
        if let Some(newer) = [status.live, status.building].into_iter().flatten().find(|g| g.version > version) {
            return Err(Error::NewerVersion { projection: name.to_owned(), running: version, stored: newer.version });
        }
        let generation = superseded(name, self.views.begin_generation(name, version, token).await?)?;
        if let Some(after) = after {
            // An empty batch that moves the new generation's checkpoint to `after`.
            let start = ViewCommit {
                generation: generation.id,
                expected: None,
                checkpoint: after,
                fencing_token: token,
                views: Vec::new(),
                dead_letters: Vec::new(),
                resolved: Vec::new(),
            };
            superseded(name, self.views.commit(name, start).await?)?;
        }
        let stopped = self.views.status(name).await?.stopped.is_some();
        Ok(Target { generation: generation.id, checkpoint: after, building: true, stopped })
    }

    /// Applies `events` (the events of dead letters of the live generation) again to the live
    /// views, by a caller that holds the projection's lease (its `token`), leaving the checkpoint
    /// where it is, in one commit: the dead letters at their positions leave with it
    /// ([`ViewCommit::resolved`]), and those that fail again are recorded again in it with the
    /// new reason, and answered. A commit that fails or is refused leaves every dead letter.
    /// Live views of another version than `P`'s are refused before anything is read: a newer
    /// one's with [`Error::NewerVersion`], an older one's with [`Error::Unsupported`].
    ///
    /// The commit expects the checkpoint it read, so a runner's commit that moved it first
    /// refuses the retry; a runner's commit that follows it, of views loaded before it, would
    /// write over what it changed, which the lease rules out (the runner is fenced while the
    /// retry holds it). Without a lease manager, run retries while no runner writes.
    pub(crate) async fn retry_held<P: Projection>(
        &self,
        projection: &P,
        token: u64,
        events: &[RecordedEvent],
    ) -> Result<Vec<DeadLetter>> {
        let name = projection.name();
        let status = self.views.status(name).await?;
        let live = status.live.ok_or_else(|| Error::NotBuilt { projection: name.to_owned() })?;
        refuse_other_version(name, live.version, P::VERSION)?;
        let Some(checkpoint) = live.checkpoint else { return Ok(Vec::new()) };
        let target = Target { generation: live.id, checkpoint: live.checkpoint, building: false, stopped: false };
        let mut fold = Fold::select(projection, events, &self.upcasters, PoisonPolicy::DeadLetter, None);
        if let Some((_, error)) = fold.stop.take() {
            return Err(error);
        }
        if !fold.ids.is_empty() {
            fold.stored = self.views.load_views(name, live.id, &fold.ids).await?;
        }
        let Folded { writes, dead_letters, stop } = fold.fold_each(projection, PoisonPolicy::DeadLetter)?;
        if let Some((_, error)) = stop {
            return Err(error);
        }
        let mut commit = fold.commit(&target, token, writes, dead_letters.clone());
        commit.checkpoint = checkpoint;
        commit.resolved = events.iter().map(|e| e.position).collect();
        commit.resolved.sort_unstable();
        commit.resolved.dedup();
        commit.validate()?;
        superseded(name, self.views.commit(name, commit).await?)?;
        Ok(dead_letters)
    }

    async fn lease(&self, name: &str) -> Result<Option<Lease>> {
        match &self.leases {
            Some(leases) => Ok(Some(leases.acquire(name).await?)),
            None => Ok(None),
        }
    }

    /// The generation of projection `name` at `version` to write: the one being built for this
    /// version, else the live one of this version, else a new one.
    pub(super) async fn target(&self, name: &str, version: u32, token: u64) -> Result<Target> {
        let status = self.views.status(name).await?;
        let stopped = status.stopped.is_some();
        if let Some(newer) = [status.live, status.building].into_iter().flatten().find(|g| g.version > version) {
            return Err(Error::NewerVersion { projection: name.to_owned(), running: version, stored: newer.version });
        }
        if let Some(g) = status.building.filter(|g| g.version == version) {
            tracing::info!(generation = g.id, checkpoint = ?g.checkpoint, "resuming the build of a new generation");
            return Ok(Target { generation: g.id, checkpoint: g.checkpoint, building: true, stopped });
        }
        if let Some(g) = status.live.filter(|g| g.version == version) {
            return Ok(Target { generation: g.id, checkpoint: g.checkpoint, building: false, stopped });
        }
        match status.live {
            Some(live) => tracing::info!(from = live.version, to = version, "new projection version; rebuilding"),
            None => tracing::info!("no live views (a first build, or the store lost them); building"),
        }
        let g = superseded(name, self.views.begin_generation(name, version, token).await?)?;
        Ok(Target { generation: g.id, checkpoint: None, building: true, stopped })
    }

    /// Whether `target` is still a generation of `name` in the store.
    pub(super) async fn still_there(&self, name: &str, target: &Target) -> Result<bool> {
        let status = self.views.status(name).await?;
        Ok([status.live, status.building].into_iter().flatten().any(|g| g.id == target.generation))
    }

    /// Runs a projection until `shutdown` resolves (after the batch in progress) or it fails on
    /// an event (a poison event: the error names its position and the checkpoint stays before
    /// it). A store that is unavailable is retried with backoff, keeping the lease; a lease that
    /// is lost, or a write refused because another runner moved on, stands by and starts over;
    /// views the store lost (it restarted empty, or was flushed) are rebuilt into a new
    /// generation, made live once caught up.
    pub async fn run<P: Projection>(&self, projection: P, shutdown: impl Future<Output = ()> + Send) -> Result<()> {
        let job = ProjectionJob(projection);
        let span = job.span();
        // Boxed here, where the lifetimes are known: spawning the future of a generic state
        // machine otherwise trips the compiler's check that it is `Send` for every lifetime.
        let run: std::pin::Pin<Box<dyn Future<Output = Result<()>> + Send + '_>> = Box::pin(async move {
            tokio::pin!(shutdown);
            Runner::new(self, &self.events, job, shutdown).run().await
        });
        run.instrument(span).await
    }

    /// Sorts a failed step: `Ok(true)` to start over at once (the views are gone), `Ok(false)` to
    /// back off and start over (a transient failure, or another runner wrote), `Err` to stop.
    pub(super) async fn on_error(
        &self,
        name: &str,
        error: Error,
        lease: &mut Option<Lease>,
        generation: u64,
        token: u64,
    ) -> Result<bool> {
        match error {
            Error::NewerSchema { .. } => {
                tracing::warn!(%error, "an event from a newer release; standing by for a runner of that release");
                self.note_stop(name, &error, generation, token).await;
                drop(lease.take());
                Ok(false)
            }
            Error::Superseded { refusal: Refusal::GenerationGone { .. }, .. } => {
                tracing::warn!(%error, "the views are gone (the store lost them, or a newer build began); starting over");
                Ok(true)
            }
            Error::Superseded { .. } => {
                tracing::warn!(%error, "another runner wrote; standing by and starting over from the stored checkpoint");
                drop(lease.take());
                Ok(false)
            }
            error if error.is_transient() => {
                tracing::warn!(%error, "store unavailable; retrying");
                Ok(false)
            }
            error => {
                tracing::error!(%error, "projection stopped");
                self.note_stop(name, &error, generation, token).await;
                Err(error)
            }
        }
    }

    /// Records in the view store why the projection stopped, for queries and health checks, with
    /// the checkpoint `generation` holds now (the events before the one to blame are written):
    /// once a runner writes past it, readers know the stop no longer holds.
    pub(super) async fn note_stop(&self, name: &str, error: &Error, generation: u64, token: u64) {
        let Some(stop) = stop_of(error) else { return };
        let recorded = async {
            let status = self.views.status(name).await?;
            let checkpoint = [status.live, status.building]
                .into_iter()
                .flatten()
                .find(|g| g.id == generation)
                .and_then(|g| g.checkpoint);
            superseded(name, self.views.record_stop(name, Some(&stop.at(generation, checkpoint)), token).await?)
        };
        if let Err(error) = recorded.await {
            tracing::warn!(%error, "cannot record why the projection stopped");
        }
    }

    /// Clears a recorded stop once the projection has written past it; whether it did (a stop
    /// left in place after a failure is stale anyway: see `ProjectionStatus::active_stop`).
    pub(super) async fn note_running(&self, name: &str, token: u64) -> bool {
        match self.views.record_stop(name, None, token).await.and_then(|written| superseded(name, written)) {
            Ok(()) => {
                tracing::info!("the projection runs again past its recorded stop");
                true
            }
            Err(error) => {
                tracing::warn!(%error, "cannot clear the projection's recorded stop; trying after the next batch");
                false
            }
        }
    }

    /// Routes a stored event to a reader of `E` with the projector's upcasters (see
    /// `CategoryUpcasters::route`).
    pub(crate) fn route<E: crate::EventSet>(
        &self,
        raw: &RecordedEvent,
        handles: impl FnOnce(&str, &str) -> bool,
    ) -> Option<Result<crate::EventEnvelope<E::Event>>> {
        self.upcasters.route::<E>(raw, handles)
    }

    /// What its runners do with an event they cannot process.
    pub(crate) fn poison(&self) -> PoisonPolicy {
        self.poison
    }

    pub(super) fn subscribe(&self, checkpoint: Option<Position>) -> Subscription<S> {
        Subscription::new(self.events.clone(), checkpoint.unwrap_or(Position::ZERO))
            .with_batch_size(self.batch_size)
            .with_batch_bytes(self.batch_bytes)
    }

    /// Folds one batch and writes the changed views, their index entries and the new checkpoint
    /// into the target generation, atomically.
    ///
    /// The usual batch is folded once and checked once. When anything in it fails — an event
    /// that does not decode, `apply` returning an error, a view that does not encode, a write the
    /// store refuses as it is — the batch is folded again event by event from the stored views
    /// to find the culprit: under [`PoisonPolicy::DeadLetter`] it is skipped, its view kept as it
    /// was before it, and recorded; under [`PoisonPolicy::Stop`] the events before it are
    /// written and the projection stops with its position. An event written by a newer release
    /// ([`Error::NewerSchema`]) is never skipped: the events before it are written and the error
    /// returned, whatever the policy.
    pub(super) async fn process<P: Projection>(
        &self,
        projection: &P,
        batch: &[RecordedEvent],
        target: &Target,
        token: u64,
    ) -> Result<Option<Position>> {
        self.process_in(projection, batch, target, token, None).await
    }

    /// [`process`](Self::process) for one partition: the events of its streams alone are
    /// folded, and the checkpoint moves past the whole batch.
    pub(super) async fn process_in<P: Projection>(
        &self,
        projection: &P,
        batch: &[RecordedEvent],
        target: &Target,
        token: u64,
        partition: Option<Partition>,
    ) -> Result<Option<Position>> {
        if batch.is_empty() {
            return Ok(target.checkpoint);
        }
        // Without a trace propagation hook: one atomic load, no span, no metadata decoded.
        match crate::trace::BatchTrace::start("projection", projection.name(), batch) {
            None => self.fold_and_write(projection, batch, target, token, partition).await,
            Some(trace) => {
                let span = trace.batch.clone();
                let written = self.fold_and_write(projection, batch, target, token, partition).instrument(span).await;
                // The events' spans end here, once their batch is written.
                drop(trace);
                written
            }
        }
    }

    /// Writes the views and checkpoint of a batch, in the span `eventloom.view_write` when a
    /// trace propagation hook is installed.
    async fn commit_views(&self, name: &str, commit: ViewCommit) -> Result<()> {
        let written = self.views.commit(name, commit).instrument(crate::trace::view_write(name)).await;
        written.and_then(|w| superseded(name, w))
    }

    /// [`process_in`](Self::process_in) inside the batch's span.
    async fn fold_and_write<P: Projection>(
        &self,
        projection: &P,
        batch: &[RecordedEvent],
        target: &Target,
        token: u64,
        partition: Option<Partition>,
    ) -> Result<Option<Position>> {
        let expected = target.checkpoint;
        if batch.is_empty() {
            return Ok(expected);
        }
        let name = projection.name();
        let mut fold = Fold::select(projection, batch, &self.upcasters, self.poison, partition);
        // An event that stops the projection ends the batch: the ones before it are written.
        let stopped = fold.stop.take();
        if !fold.ids.is_empty() {
            fold.stored = self.views.load_views(name, target.generation, &fold.ids).await?;
        }
        if stopped.is_none() {
            match fold.fold_all(projection) {
                Ok(writes) => {
                    let commit = fold.commit(target, token, writes, fold.undecodable.clone());
                    match commit.validate() {
                        Ok(()) => match self.commit_views(name, commit).await {
                            Ok(()) => {
                                crate::metrics::dead_letters(name, fold.undecodable.len());
                                return Ok(Some(fold.checkpoint));
                            }
                            Err(error) if !refused_as_written(&error) => return Err(error),
                            Err(error) => tracing::warn!(%error, "the store refused the batch; finding the event"),
                        },
                        Err(error) => tracing::warn!(%error, "the batch breaks a store limit; finding the event"),
                    }
                }
                Err(error) => tracing::debug!(%error, "an event of the batch failed; folding it event by event"),
            }
        }
        let Folded { writes, dead_letters, stop: failed } = fold.fold_each(projection, self.poison)?;
        // A failure found by folding event by event comes before any stop found by reading.
        let stop = failed.or(stopped);
        let checkpoint = match &stop {
            Some((at, _)) => batch.iter().take_while(|e| e.position < *at).last().map(|e| e.position),
            None => Some(fold.checkpoint),
        };
        if let Some(checkpoint) = checkpoint.filter(|c| Some(*c) > expected) {
            let skipped = dead_letters.len();
            let mut commit = fold.commit(target, token, writes, dead_letters);
            commit.checkpoint = checkpoint;
            let written = match commit.validate() {
                Ok(()) => self.commit_views(name, commit).await,
                Err(error) => Err(error),
            };
            match written {
                Ok(()) => crate::metrics::dead_letters(name, skipped),
                Err(error) if refused_as_written(&error) => {
                    // The store refuses what no check here finds (its own limits): write the
                    // events one at a time to find the one it refuses.
                    let upto = batch.iter().take_while(|e| e.position <= checkpoint).count();
                    self.process_one_by_one(projection, &batch[..upto], target, token, error, partition).await?;
                }
                Err(error) => return Err(error),
            }
        }
        match stop {
            Some((_, error)) => Err(error),
            None => Ok(Some(fold.checkpoint)),
        }
    }

    /// Writes `batch` one event at a time, after the store refused it whole with `refused`; a
    /// single event it refuses is dead-lettered (its views left as they were) or stops the
    /// projection, by the poison policy. Rare and slow: one commit per event.
    fn process_one_by_one<'a, P: Projection>(
        &'a self,
        projection: &'a P,
        batch: &'a [RecordedEvent],
        target: &'a Target,
        token: u64,
        refused: Error,
        partition: Option<Partition>,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<Option<Position>>> + Send + 'a>>
    where
        S: Sync,
    {
        Box::pin(async move {
            if let [raw] = batch {
                let reason = refused.to_string();
                if self.poison == PoisonPolicy::Stop {
                    let (projection, source) = (projection.name().to_owned(), Box::new(refused));
                    return Err(Error::Projection { projection, position: raw.position, source });
                }
                tracing::warn!(%reason, position = %raw.position, "skipping an event whose writes the store refuses");
                let commit = ViewCommit {
                    generation: target.generation,
                    expected: target.checkpoint,
                    checkpoint: raw.position,
                    fencing_token: token,
                    views: Vec::new(),
                    dead_letters: vec![dead_letter(raw, reason)],
                    resolved: Vec::new(),
                };
                self.commit_views(projection.name(), commit).await?;
                crate::metrics::dead_letters(projection.name(), 1);
                return Ok(Some(raw.position));
            }
            let mut at = *target;
            for raw in batch {
                let one = std::slice::from_ref(raw);
                at.checkpoint = self.fold_and_write(projection, one, &at, token, partition).await?;
            }
            Ok(at.checkpoint)
        })
    }
}

/// The stop an error ends a projection with, if it does: not for an outage, a shutdown, or
/// another runner moving on, after which the projection goes on.
fn stop_of(error: &Error) -> Option<ProjectionStop> {
    let position = match error {
        Error::NewerSchema { position, .. } => {
            return Some(ProjectionStop::new(StopKind::NeedsNewerRelease, Some(*position), error.to_string()));
        }
        _ if error.is_transient() => return None,
        Error::Superseded { .. } | Error::Shutdown => return None,
        Error::Projection { position, .. }
        | Error::Decode { position, .. }
        | Error::UnknownEvent { position, .. }
        | Error::Upcast { position, .. } => Some(*position),
        _ => None,
    };
    Some(ProjectionStop::new(StopKind::Failed, position, error.to_string()))
}

/// Whether a store refused a commit for what it holds (a limit, text it cannot keep) rather
/// than for where the projection stands or an outage: folding the batch event by event finds
/// the event that caused it.
fn refused_as_written(error: &Error) -> bool {
    matches!(
        error,
        Error::InvalidId { .. } | Error::PayloadTooLarge { .. } | Error::InvalidEvent { .. } | Error::Serde { .. }
    )
}

/// Where a rebuild tells its progress: the checkpoint after each batch, and the batch's size.
pub(crate) type Progress = tokio::sync::mpsc::UnboundedSender<(Option<Position>, usize)>;

/// The generation a runner writes into.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Target {
    pub(crate) generation: u64,
    pub(crate) checkpoint: Option<Position>,
    /// Not live yet: made live once caught up.
    pub(crate) building: bool,
    /// The store holds a recorded stop, cleared once a batch is written.
    pub(crate) stopped: bool,
}

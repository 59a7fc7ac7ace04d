//! The run loop of one projection or event handler (a [`Job`]), as a state machine: each state
//! is one method that does one step and returns the state to go to.
//!
//! ```text
//!            +--> BackOff --+          (an outage, another runner wrote: wait, start over)
//!            |              v
//! start --> Acquire --> Resolve --+--> Build --(caught up: go live)--> Live
//!             ^                   |      |                              |
//!             |                   +------|------------------------------+
//!             +----------(lease lost, views gone, a failed batch)------+
//! ```
//!
//! Every state that waits also waits for the shutdown signal (then `Done`), and every state that
//! holds a lease leaves for `Acquire` when it is lost. An error no retry can mend (a poison
//! event, a newer projection version in the store) ends the run with that error. An event
//! handler never builds: its one generation is live from the start.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use super::feed::{Feed, FeedReader};
use super::group::{Attached, MemberState, Membership};
use super::projector::{Projector, Target};
use crate::metrics::RunnerMetrics;
use crate::store::{Refusal, superseded};
use crate::{Error, EventStore, Lease, Position, Projection, RecordedEvent, Result};

/// What a [`Runner`] runs: a projection (views in generations, rebuilt when the store lost
/// them) or an event handler (side effects, its checkpoint kept for good). Everything it keeps
/// in the view store is under its [`name`](Job::name).
pub(crate) trait Job: Send + Sync + 'static {
    /// The name its checkpoint, lease, views, dead letters and stop are kept under.
    fn name(&self) -> &str;

    /// The span its run is traced in.
    fn span(&self) -> tracing::Span;

    /// The generation to write and where it stands. `known` is the generation this runner wrote
    /// before, if any: a projection builds a new one when it is gone, a handler stops.
    fn target<'a, S: EventStore + Clone>(
        &'a self,
        projector: &'a Projector<S>,
        token: u64,
        known: Option<u64>,
    ) -> impl Future<Output = Result<Target>> + Send + 'a;

    /// Processes one batch (the events after `target`'s checkpoint), writes the new checkpoint
    /// with what the batch changed, and says where it stands. A handler checks `lease` before
    /// each event and stops waiting in a retry when it is lost, with [`Error::Superseded`] and
    /// nothing more written; it checks `shutdown` before each event and in a retry's wait, and
    /// then writes what it handled before and returns [`Processed::ShutDown`].
    fn process<'a, S: EventStore + Clone, X: Future<Output = ()> + Send + Unpin>(
        &'a self,
        projector: &'a Projector<S>,
        batch: &'a [RecordedEvent],
        target: &'a Target,
        token: u64,
        shutdown: &'a mut X,
        lease: Option<&'a Lease>,
    ) -> impl Future<Output = Result<Processed>> + Send + 'a;

    /// A build has caught up with the log: makes its generation live. `Ok(true)` once it is;
    /// `Ok(false)` when the job makes it live later, from [`check`](Job::check) (a partition
    /// waits for the others). By default, the store's `go_live`.
    fn go_live<'a, S: EventStore + Clone>(
        &'a self,
        projector: &'a Projector<S>,
        target: &'a Target,
        token: u64,
    ) -> impl Future<Output = Result<bool>> + Send + 'a {
        async move {
            let name = self.name();
            superseded(name, projector.views.go_live(name, target.generation, token).await?)?;
            Ok(true)
        }
    }

    /// Every verify interval while live, once the store has shown the generation still there:
    /// where it stands beyond that. `pending` is `Some` while the generation waits to be made
    /// live (after [`go_live`](Job::go_live) answered `false`); the job sets it back to `None`
    /// once it made it live, and to `Some` when it must be offered again. Nothing by default.
    fn check<'a, S: EventStore + Clone>(
        &'a self,
        projector: &'a Projector<S>,
        target: &'a Target,
        token: u64,
        pending: &'a mut Option<Pending>,
    ) -> impl Future<Output = Result<Checked>> + Send + 'a {
        let _ = (projector, target, token, pending);
        std::future::ready(Ok(Checked::Fine))
    }

    /// How often a live runner that waits for events calls [`idle`](Job::idle): never by
    /// default. A process manager looks for due timers and commands left in its outbox.
    fn tick(&self) -> Option<Duration> {
        None
    }

    /// Work of the job's own while live and waiting for events (see [`tick`](Job::tick)); it
    /// leaves the checkpoint where it is.
    fn idle<'a, S: EventStore + Clone>(
        &'a self,
        projector: &'a Projector<S>,
        target: &'a Target,
        token: u64,
        lease: Option<&'a Lease>,
    ) -> impl Future<Output = Result<()>> + Send + 'a {
        let _ = (projector, target, token, lease);
        std::future::ready(Ok(()))
    }
}

/// A generation that has caught up and waits to be made live (see [`Job::check`]).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Pending {
    /// When the runner first saw queries switched to it: it is made live a grace after.
    pub(crate) named_at: Option<tokio::time::Instant>,
}

/// What [`Job::check`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Checked {
    /// Go on as before.
    Fine,
    /// The generation it was building is live now.
    Live,
    /// Another runner's work replaced this one's: stand by.
    Displaced,
}

/// How a batch [`Job::process`] took ended short of an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Processed {
    /// The whole batch went through: the checkpoint now (`None` only before the first event,
    /// for an empty batch).
    Written(Option<Position>),
    /// Shut down within the batch: the checkpoint written before it stopped.
    ShutDown(Option<Position>),
}

/// A projection as a runner runs it.
pub(super) struct ProjectionJob<P>(pub(super) P);

impl<P: Projection> Job for ProjectionJob<P> {
    fn name(&self) -> &str {
        self.0.name()
    }

    fn span(&self) -> tracing::Span {
        tracing::info_span!("projection", projection = self.0.name())
    }

    fn target<'a, S: EventStore + Clone>(
        &'a self,
        projector: &'a Projector<S>,
        token: u64,
        _known: Option<u64>,
    ) -> impl Future<Output = Result<Target>> + Send + 'a {
        projector.target(self.0.name(), P::VERSION, token)
    }

    fn process<'a, S: EventStore + Clone, X: Future<Output = ()> + Send + Unpin>(
        &'a self,
        projector: &'a Projector<S>,
        batch: &'a [RecordedEvent],
        target: &'a Target,
        token: u64,
        _shutdown: &'a mut X,
        _lease: Option<&'a Lease>,
    ) -> impl Future<Output = Result<Processed>> + Send + 'a {
        let processed = projector.process(&self.0, batch, target, token);
        async move { processed.await.map(Processed::Written) }
    }
}

/// Where a runner is.
enum State<R> {
    /// Take the projection's lease unless it holds one (waiting while another runner does).
    Acquire,
    /// Read the projection's status and pick the generation to write.
    Resolve,
    /// Build a new generation: fold what is stored, then make it live.
    Build(Run<R>),
    /// Follow the log as events commit, checking now and then that the views are still there.
    Live(Run<R>),
    /// Wait (the delay doubles up to 5 s, and is reset by a batch written), then start over.
    BackOff,
    /// Give the lease up (another runner leads), then back off.
    StandBy,
    /// Shut down.
    Done,
    /// Stopped on an error no retry mends.
    Failed(Error),
}

/// A run into one generation, under one fencing token.
struct Run<R> {
    target: Target,
    token: u64,
    /// Reads the feed on the runner's own.
    reader: R,
    /// A batch read while the one before was written.
    ahead: Option<Vec<RecordedEvent>>,
    /// A group member's share of the group's read, once it joined it.
    shared: Option<Attached>,
    /// What is left of a batch of the shared read longer than the runner's batch size, and
    /// where it starts.
    rest: Option<(Arc<Vec<RecordedEvent>>, usize)>,
    /// Caught up, waiting for the job to make the generation live.
    pending: Option<Pending>,
}

impl<R> Run<R> {
    /// Building or live, as the target says (a build that caught up and waits to be made live
    /// follows the log as live runs do).
    fn into_state(self) -> State<R> {
        if self.target.building && self.pending.is_none() { State::Build(self) } else { State::Live(self) }
    }
}

/// Runs one projection or event handler until shutdown or an error no retry can mend.
pub(super) struct Runner<'a, S, F, J, X> {
    projector: &'a Projector<S>,
    feed: &'a F,
    job: J,
    shutdown: Pin<&'a mut X>,
    lease: Option<Lease>,
    /// The next back-off.
    delay: Duration,
    /// Its group, when it runs in one.
    member: Option<Membership>,
    /// The generation it last found to write.
    known: Option<u64>,
    /// When the job's idle work is due next (never for a job without any).
    next_idle: Option<tokio::time::Instant>,
    /// Its metrics' handles, and whether the loss of the lease it holds was counted.
    metrics: RunnerMetrics,
    lost_counted: bool,
}

impl<'a, S, F, J, X> Runner<'a, S, F, J, X>
where
    S: EventStore + Clone,
    F: Feed,
    J: Job,
    X: Future<Output = ()> + Send,
{
    pub(super) fn new(projector: &'a Projector<S>, feed: &'a F, job: J, shutdown: Pin<&'a mut X>) -> Self {
        let delay = projector.retry_delay;
        let next_idle = job.tick().map(|tick| tokio::time::Instant::now() + tick);
        let metrics = RunnerMetrics::new(job.name());
        metrics.not_running();
        Runner {
            projector,
            feed,
            job,
            shutdown,
            lease: None,
            delay,
            member: None,
            known: None,
            next_idle,
            metrics,
            lost_counted: false,
        }
    }

    /// A member of a group: it joins the group's shared read once caught up.
    pub(super) fn in_group(mut self, member: Membership) -> Self {
        self.member = Some(member);
        self
    }

    /// Tells the member's handle, in a group.
    fn report(&self, change: impl FnOnce(&mut super::group::MemberStatus)) {
        if let Some(member) = &self.member {
            member.report(change);
        }
    }

    fn reader(&self, checkpoint: Option<Position>) -> F::Reader {
        let projector = self.projector;
        self.feed.read_after(checkpoint.unwrap_or(Position::ZERO), projector.batch_size, projector.batch_bytes)
    }

    pub(super) async fn run(mut self) -> Result<()> {
        let ended = self.run_states().await;
        self.metrics.not_running();
        ended
    }

    async fn run_states(&mut self) -> Result<()> {
        super::projection::check_name(self.job.name())?;
        let mut state = State::Acquire;
        loop {
            state = match state {
                State::Acquire => self.acquire().await?,
                State::Resolve => self.resolve().await?,
                State::Build(run) => self.build(run).await?,
                State::Live(run) if self.member.is_some() => self.live_in_group(run).await?,
                State::Live(run) => self.live(run).await?,
                State::BackOff => self.back_off().await,
                State::StandBy => {
                    self.report(|s| s.state = MemberState::StandingBy);
                    self.metrics.not_running();
                    drop(self.lease.take());
                    State::BackOff
                }
                State::Done => return Ok(()),
                State::Failed(error) => return Err(error),
            };
        }
    }

    fn token(&self) -> u64 {
        self.lease.as_ref().map_or(0, Lease::token)
    }

    async fn acquire(&mut self) -> Step<F::Reader> {
        if self.lease.as_ref().is_some_and(|lease| !lease.is_lost()) {
            return Ok(State::Resolve);
        }
        if self.lease.is_some() && !self.lost_counted {
            self.metrics.lease_lost.increment(1);
            self.metrics.not_running();
            self.lost_counted = true;
        }
        let Some(leases) = self.projector.leases.as_ref() else {
            self.lease = None;
            return Ok(State::Resolve);
        };
        self.report(|s| s.state = MemberState::StandingBy);
        // A lost lease is kept until the new one comes.
        tokio::select! {
            lease = leases.acquire(self.job.name()) => match lease {
                Ok(lease) => {
                    self.lease = Some(lease);
                    self.lost_counted = false;
                    self.metrics.lease_acquired.increment(1);
                    Ok(State::Resolve)
                }
                Err(error) if error.is_transient() => {
                    tracing::warn!(%error, delay = ?self.delay, "cannot take the lease; retrying");
                    self.report(|s| s.last_error = Some(error.to_string()));
                    Ok(State::BackOff)
                }
                Err(error) => Err(error),
            },
            () = &mut self.shutdown => Ok(State::Done),
        }
    }

    async fn resolve(&mut self) -> Step<F::Reader> {
        let token = self.token();
        match self.job.target(self.projector, token, self.known).await {
            Ok(target) => {
                tracing::info!(token, generation = target.generation, building = target.building, "running");
                self.metrics.running();
                self.known = Some(target.generation);
                self.report(|s| s.checkpoint = target.checkpoint);
                let reader = self.reader(target.checkpoint);
                Ok(Run { target, token, reader, ahead: None, shared: None, rest: None, pending: None }.into_state())
            }
            Err(error) if error.is_transient() => {
                tracing::warn!(%error, delay = ?self.delay, "cannot read the projection's status; retrying");
                self.report(|s| s.last_error = Some(error.to_string()));
                Ok(State::BackOff)
            }
            // As `on_error` sorts them: views gone (or a newer build began) start over at once,
            // any other refusal means another runner leads.
            Err(error @ Error::Superseded { refusal: Refusal::GenerationGone { .. }, .. }) => {
                tracing::warn!(%error, "the generation is gone; starting over");
                Ok(State::Acquire)
            }
            Err(error @ Error::Superseded { .. }) => {
                tracing::warn!(%error, "another runner leads; standing by");
                Ok(State::StandBy)
            }
            Err(error) => Err(error),
        }
    }

    /// One batch of a build; once a read finds nothing more, the generation goes live.
    async fn build(&mut self, mut run: Run<F::Reader>) -> Step<F::Reader> {
        self.report(|s| s.state = MemberState::Building);
        let batch = match run.ahead.take() {
            Some(batch) => match self.between_batches().await {
                Some(state) => return Ok(state),
                None => Ok(batch),
            },
            None => tokio::select! {
                next = run.reader.try_next_batch() => match next {
                    Ok(Some(batch)) => Ok(batch),
                    Ok(None) => return self.go_live(run).await,
                    Err(error) => Err(error),
                },
                () = &mut self.shutdown => return Ok(State::Done),
                () = lease_lost(&mut self.lease) => return Ok(State::Acquire),
            },
        };
        self.fold(run, batch).await
    }

    async fn go_live(&mut self, mut run: Run<F::Reader>) -> Step<F::Reader> {
        match self.job.go_live(self.projector, &run.target, run.token).await {
            Ok(true) => {
                tracing::info!(generation = run.target.generation, "new generation of views is live");
                run.target.building = false;
                Ok(State::Live(run))
            }
            Ok(false) => {
                tracing::info!(generation = run.target.generation, "caught up; waiting to be made live");
                run.pending = Some(Pending::default());
                match self.verify(&mut run.target, &mut run.pending, run.token).await {
                    Some(state) => Ok(state),
                    None => Ok(State::Live(run)),
                }
            }
            Err(error) => self.failed(run.target.generation, run.token, error).await,
        }
    }

    /// What a live runner checks every verify interval: that its generation is still in the
    /// store, then the job's own [`check`](Job::check). `None` to go on; the state to go to
    /// otherwise.
    async fn verify(
        &mut self,
        target: &mut Target,
        pending: &mut Option<Pending>,
        token: u64,
    ) -> Option<State<F::Reader>> {
        let projector = self.projector;
        if !views_still_there(projector, self.job.name(), target).await {
            return Some(State::Acquire);
        }
        match self.job.check(projector, target, token, pending).await {
            Ok(Checked::Fine) => None,
            Ok(Checked::Live) => {
                tracing::info!(generation = target.generation, "new generation of views is live");
                target.building = false;
                None
            }
            Ok(Checked::Displaced) => {
                tracing::warn!(generation = target.generation, "another runner's views replaced these; standing by");
                Some(State::StandBy)
            }
            Err(error) if error.is_transient() => {
                tracing::warn!(%error, "cannot check the views; trying again");
                None
            }
            Err(error) => Some(match self.failed(target.generation, token, error).await {
                Ok(state) => state,
                Err(error) => State::Failed(error),
            }),
        }
    }

    /// Live on its own: waits for the next batch and folds it.
    async fn live(&mut self, mut run: Run<F::Reader>) -> Step<F::Reader> {
        match run.ahead.take() {
            Some(batch) => match self.between_batches().await {
                Some(state) => Ok(state),
                None => self.fold(run, Ok(batch)).await,
            },
            None => self.wait_alone(run).await,
        }
    }

    /// Waits for the next batch on its own reader and folds it. While waiting, it checks every
    /// verify interval that the views are still there; the read in flight is kept across
    /// checks, so a read slower than the interval still completes.
    async fn wait_alone(&mut self, mut run: Run<F::Reader>) -> Step<F::Reader> {
        let batch = {
            let projector = self.projector;
            let fetch = run.reader.next_batch();
            tokio::pin!(fetch);
            // A deadline, not a sleep made again each turn: the idle work must not starve it.
            let mut verify = tokio::time::Instant::now() + projector.verify_interval;
            loop {
                tokio::select! {
                    batch = &mut fetch => break batch,
                    () = &mut self.shutdown => return Ok(State::Done),
                    () = lease_lost(&mut self.lease) => return Ok(State::Acquire),
                    () = tokio::time::sleep_until(verify) => {
                        verify = tokio::time::Instant::now() + projector.verify_interval;
                        if let Some(state) = self.verify(&mut run.target, &mut run.pending, run.token).await {
                            return Ok(state);
                        }
                    }
                    () = sleep_or_never(self.next_idle) => {
                        if let Some(step) = self.idle(&run.target, run.token).await {
                            return step;
                        }
                    }
                }
            }
        };
        self.fold(run, batch).await
    }

    /// The job's own work while it waits for events (see [`Job::idle`]): `None` to go on
    /// waiting, or the step a failure leads to (an outage is only logged: the next tick tries
    /// again).
    async fn idle(&mut self, target: &Target, token: u64) -> Option<Step<F::Reader>> {
        self.next_idle = self.job.tick().map(|tick| tokio::time::Instant::now() + tick);
        match self.job.idle(self.projector, target, token, self.lease.as_ref()).await {
            Ok(()) => None,
            Err(error) if error.is_transient() => {
                tracing::warn!(%error, "the idle work failed; trying again at the next tick");
                self.report(|s| s.last_error = Some(error.to_string()));
                None
            }
            Err(error) => Some(self.failed(target.generation, token, error).await),
        }
    }

    /// Live in a group: fed by the group's shared read once it joined it; until then (and
    /// after being detached for falling behind) it reads on its own, asking to join before
    /// each read.
    async fn live_in_group(&mut self, mut run: Run<F::Reader>) -> Step<F::Reader> {
        self.report(|s| s.state = MemberState::Running);
        if let Some(batch) = run.ahead.take() {
            return match self.between_batches().await {
                Some(state) => Ok(state),
                None => self.fold(run, Ok(batch)).await,
            };
        }
        if run.shared.is_some() || run.rest.is_some() {
            return self.live_shared(run).await;
        }
        match self.join(run.target.checkpoint).await {
            Joined::Yes(shared) => {
                tracing::debug!(checkpoint = ?run.target.checkpoint, "joined the group's shared read");
                run.shared = Some(shared);
                self.report(|s| s.shared = true);
                return Ok(State::Live(run));
            }
            Joined::Done => return Ok(State::Done),
            Joined::No => {}
        }
        // Behind the shared read: one batch on its own.
        let next = tokio::select! {
            next = run.reader.try_next_batch() => next,
            () = &mut self.shutdown => return Ok(State::Done),
            () = lease_lost(&mut self.lease) => return Ok(State::Acquire),
        };
        match next {
            Ok(Some(batch)) => self.fold(run, Ok(batch)).await,
            // Caught up, yet behind the shared read (a read that returned before the shared
            // one's): wait on its own.
            Ok(None) => self.wait_alone(run).await,
            Err(error) => self.fold(run, Err(error)).await,
        }
    }

    /// Asks the group's shared read to take it on at `checkpoint`.
    async fn join(&mut self, checkpoint: Option<Position>) -> Joined {
        let Some(member) = &self.member else { return Joined::No };
        let asked = member.join(checkpoint.unwrap_or(Position::ZERO));
        tokio::select! {
            joined = asked => joined.map_or(Joined::No, Joined::Yes),
            () = &mut self.shutdown => Joined::Done,
        }
    }

    /// Folds the next batch of the group's shared read (the events after its checkpoint), at
    /// most the runner's batch size at a time (the rest is folded next); when the shared read
    /// has let it go (its buffer was full), goes on alone from its checkpoint.
    async fn live_shared(&mut self, mut run: Run<F::Reader>) -> Step<F::Reader> {
        let projector = self.projector;
        let (batch, from) = match run.rest.take() {
            Some(rest) => match self.between_batches().await {
                Some(state) => return Ok(state),
                None => rest,
            },
            None => {
                let Some(shared) = run.shared.as_mut() else { return Ok(State::Live(run)) };
                let mut verify = tokio::time::Instant::now() + projector.verify_interval;
                let batch = loop {
                    tokio::select! {
                        batch = shared.next() => break batch,
                        () = &mut self.shutdown => return Ok(State::Done),
                        () = lease_lost(&mut self.lease) => return Ok(State::Acquire),
                        () = tokio::time::sleep_until(verify) => {
                            verify = tokio::time::Instant::now() + projector.verify_interval;
                            if let Some(state) = self.verify(&mut run.target, &mut run.pending, run.token).await {
                                return Ok(state);
                            }
                        }
                        () = sleep_or_never(self.next_idle) => {
                            if let Some(step) = self.idle(&run.target, run.token).await {
                                return step;
                            }
                        }
                    }
                };
                let Some(batch) = batch else {
                    tracing::info!(checkpoint = ?run.target.checkpoint, "left behind by the group's shared read; reading on its own");
                    run.shared = None;
                    run.reader = self.reader(run.target.checkpoint);
                    self.report(|s| s.shared = false);
                    return Ok(State::Live(run));
                };
                let from = batch.partition_point(|e| Some(e.position) <= run.target.checkpoint);
                (batch, from)
            }
        };
        if from == batch.len() {
            return Ok(State::Live(run));
        }
        let upto = batch.len().min(from.saturating_add(projector.batch_size));
        if upto < batch.len() {
            run.rest = Some((batch.clone(), upto));
        }
        let (written, took) = {
            let (target, token) = (&run.target, run.token);
            timed(self.job.process(
                projector,
                &batch[from..upto],
                target,
                token,
                &mut self.shutdown,
                self.lease.as_ref(),
            ))
            .await
        };
        let ahead = batch.len() - upto;
        self.metrics.after_batch(&written, &batch[from..upto], took, ahead, ahead == 0);
        self.written(run, written).await
    }

    /// Between two batches read back to back: stops when asked, as when waiting for one.
    async fn between_batches(&mut self) -> Option<State<F::Reader>> {
        tokio::select! {
            biased;
            () = &mut self.shutdown => Some(State::Done),
            () = lease_lost(&mut self.lease) => Some(State::Acquire),
            () = std::future::ready(()) => None,
        }
    }

    /// Folds and writes a batch read on its own (or sorts the failure to read it).
    async fn fold(&mut self, mut run: Run<F::Reader>, batch: Result<Vec<RecordedEvent>>) -> Step<F::Reader> {
        let projector = self.projector;
        let written = match batch {
            // A batch short of the batch size (in events and bytes) was the end of the log when
            // it was read: reading ahead would only cost a read that finds nothing.
            Ok(batch) if !run.reader.is_behind() => {
                let lease = self.lease.as_ref();
                let (written, took) =
                    timed(self.job.process(projector, &batch, &run.target, run.token, &mut self.shutdown, lease)).await;
                self.metrics.after_batch(&written, &batch, took, 0, true);
                written
            }
            Ok(batch) => {
                // Behind (catching up, or a backlog): read the next batch while this one is
                // folded and written. A read that fails or finds nothing is left to the next
                // turn; a batch whose write failed is dropped with it.
                let lease = self.lease.as_ref();
                let ((written, took), next) = tokio::join!(
                    timed(self.job.process(projector, &batch, &run.target, run.token, &mut self.shutdown, lease)),
                    run.reader.try_next_batch()
                );
                if written.is_ok() {
                    run.ahead = next.ok().flatten();
                }
                let ahead = run.ahead.as_ref().map_or(0, Vec::len);
                self.metrics.after_batch(&written, &batch, took, ahead, ahead == 0 && !run.reader.is_behind());
                written
            }
            Err(error) => Err(error),
        };
        self.written(run, written).await
    }

    /// Moves the checkpoint after a batch written, or sorts the failure. A handler shut down
    /// while it retried an event has written what it handled before it: that checkpoint is
    /// reported, and the run is done. Every error, [`Error::Shutdown`] from a store or feed
    /// included, is sorted by `failed`.
    async fn written(&mut self, mut run: Run<F::Reader>, written: Result<Processed>) -> Step<F::Reader> {
        let projector = self.projector;
        match written {
            Ok(Processed::Written(position)) => {
                if let Some(position) = position {
                    run.target.checkpoint = Some(position);
                    self.report(|s| s.checkpoint = Some(position));
                    self.feed.acknowledge(self.job.name(), position);
                }
                self.delay = projector.retry_delay;
                if run.target.stopped {
                    run.target.stopped = !projector.note_running(self.job.name(), run.token).await;
                }
                // A steady flow of events must not keep the idle work from its turn.
                if !run.target.building
                    && self.next_idle.is_some_and(|at| at <= tokio::time::Instant::now())
                    && let Some(step) = self.idle(&run.target, run.token).await
                {
                    return step;
                }
                Ok(run.into_state())
            }
            Ok(Processed::ShutDown(position)) => {
                if let Some(position) = position {
                    self.report(|s| s.checkpoint = Some(position));
                    self.feed.acknowledge(self.job.name(), position);
                }
                Ok(State::Done)
            }
            Err(error) => self.failed(run.target.generation, run.token, error).await,
        }
    }

    /// Starts over from the stored status after a failed step (a write whose reply was lost may
    /// have committed): at once when the views are gone, after a back-off otherwise; or stops.
    async fn failed(&mut self, generation: u64, token: u64, error: Error) -> Step<F::Reader> {
        self.report(|s| s.last_error = Some(error.to_string()));
        let at_once = self.projector.on_error(self.job.name(), error, &mut self.lease, generation, token).await?;
        Ok(if at_once { State::Acquire } else { State::BackOff })
    }

    /// Sleeps the delay, doubling it up to 5 s; `Done` when shut down meanwhile.
    async fn back_off(&mut self) -> State<F::Reader> {
        let stop = tokio::select! {
            () = tokio::time::sleep(self.delay) => false,
            () = &mut self.shutdown => true,
        };
        self.delay = (self.delay * 2).min(Duration::from_secs(5));
        if stop { State::Done } else { State::Acquire }
    }
}

/// What a state method returns: the next state, or an error that ends the run.
type Step<R> = Result<State<R>>;

/// What asking to join the shared read came to.
enum Joined {
    Yes(Attached),
    /// Behind the shared read (or no group to join).
    No,
    /// Shut down while asking.
    Done,
}

/// Whether the generation a live runner writes is still in the store (an error to read it
/// counts as yes: the next check tells).
async fn views_still_there<S: EventStore + Clone>(projector: &Projector<S>, name: &str, target: &Target) -> bool {
    match projector.still_there(name, target).await {
        Ok(true) => true,
        Ok(false) => {
            tracing::warn!(
                generation = target.generation,
                "the views are gone (the store restarted empty or was flushed); rebuilding"
            );
            false
        }
        Err(error) => {
            tracing::warn!(%error, "cannot check the views' generation");
            true
        }
    }
}

/// `fut`'s output, and how long it took.
async fn timed<T>(fut: impl Future<Output = T>) -> (T, Duration) {
    let started = std::time::Instant::now();
    let out = fut.await;
    (out, started.elapsed())
}

impl RunnerMetrics {
    /// After a batch: its size and time once written, and where the runner stands (`ahead`
    /// events read after it; `caught_up` when the read reached the end of the log).
    fn after_batch(
        &self,
        written: &Result<Processed>,
        batch: &[RecordedEvent],
        took: Duration,
        ahead: usize,
        caught_up: bool,
    ) {
        if let Ok(Processed::Written(_)) = written {
            self.batch(batch.len(), took);
            self.lag(batch.last(), ahead, caught_up);
        }
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_or_never(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Resolves when the lease is lost (never without one).
pub(crate) async fn lease_lost(lease: &mut Option<Lease>) {
    match lease {
        Some(lease) => {
            lease.lost().await;
            tracing::warn!("lease lost; standing by");
        }
        None => std::future::pending().await,
    }
}

//! The run loop of one projection, as a state machine: each state is one method that does one
//! step and returns the state to go to.
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
//! event, a newer projection version in the store) ends the run with that error.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use super::projector::{Projector, Target};
use crate::{Error, EventStore, Lease, Projection, RecordedEvent, Result, Subscription};

/// Where a runner is.
enum State<S> {
    /// Take the projection's lease unless it holds one (waiting while another runner does).
    Acquire,
    /// Read the projection's status and pick the generation to write.
    Resolve,
    /// Build a new generation: fold what is stored, then make it live.
    Build(Run<S>),
    /// Follow the log as events commit, checking now and then that the views are still there.
    Live(Run<S>),
    /// Wait (the delay doubles up to 5 s, and is reset by a batch written), then start over.
    BackOff,
    /// Give the lease up (another runner leads), then back off.
    StandBy,
    /// Shut down.
    Done,
}

/// A run into one generation, under one fencing token.
struct Run<S> {
    target: Target,
    token: u64,
    subscription: Subscription<S>,
    /// A batch read while the one before was written.
    ahead: Option<Vec<RecordedEvent>>,
}

impl<S> Run<S> {
    /// Building or live, as the target says.
    fn into_state(self) -> State<S> {
        if self.target.building { State::Build(self) } else { State::Live(self) }
    }
}

/// Runs one projection until shutdown or an error no retry can mend.
pub(super) struct Runner<'a, S, P, F> {
    projector: &'a Projector<S>,
    projection: P,
    shutdown: Pin<&'a mut F>,
    lease: Option<Lease>,
    /// The next back-off.
    delay: Duration,
}

impl<'a, S, P, F> Runner<'a, S, P, F>
where
    S: EventStore + Clone,
    P: Projection,
    F: Future<Output = ()> + Send,
{
    pub(super) fn new(projector: &'a Projector<S>, projection: P, shutdown: Pin<&'a mut F>) -> Self {
        Runner { projector, projection, shutdown, lease: None, delay: projector.retry_delay }
    }

    pub(super) async fn run(mut self) -> Result<()> {
        let mut state = State::Acquire;
        loop {
            state = match state {
                State::Acquire => self.acquire().await?,
                State::Resolve => self.resolve().await?,
                State::Build(run) => self.build(run).await?,
                State::Live(run) => self.live(run).await?,
                State::BackOff => self.back_off().await,
                State::StandBy => {
                    drop(self.lease.take());
                    State::BackOff
                }
                State::Done => return Ok(()),
            };
        }
    }

    fn token(&self) -> u64 {
        self.lease.as_ref().map_or(0, Lease::token)
    }

    async fn acquire(&mut self) -> Result<State<S>> {
        if self.lease.as_ref().is_some_and(|lease| !lease.is_lost()) {
            return Ok(State::Resolve);
        }
        let Some(leases) = self.projector.leases.as_ref() else {
            self.lease = None;
            return Ok(State::Resolve);
        };
        // A lost lease is kept until the new one comes.
        tokio::select! {
            lease = leases.acquire(P::NAME) => match lease {
                Ok(lease) => {
                    self.lease = Some(lease);
                    Ok(State::Resolve)
                }
                Err(error) if error.is_transient() => {
                    tracing::warn!(%error, delay = ?self.delay, "cannot take the lease; retrying");
                    Ok(State::BackOff)
                }
                Err(error) => Err(error),
            },
            () = &mut self.shutdown => Ok(State::Done),
        }
    }

    async fn resolve(&mut self) -> Result<State<S>> {
        let token = self.token();
        match self.projector.target::<P>(token).await {
            Ok(target) => {
                tracing::info!(token, generation = target.generation, building = target.building, "running");
                let subscription = self.projector.subscribe(target.checkpoint);
                Ok(Run { target, token, subscription, ahead: None }.into_state())
            }
            Err(error) if error.is_transient() => {
                tracing::warn!(%error, delay = ?self.delay, "cannot read the projection's status; retrying");
                Ok(State::BackOff)
            }
            Err(error @ Error::Fenced { .. }) => {
                tracing::warn!(%error, "another runner leads; standing by");
                Ok(State::StandBy)
            }
            Err(error) => Err(error),
        }
    }

    /// One batch of a build; once a read finds nothing more, the generation goes live.
    async fn build(&mut self, mut run: Run<S>) -> Result<State<S>> {
        let batch = match run.ahead.take() {
            Some(batch) => match self.between_batches().await {
                Some(state) => return Ok(state),
                None => Ok(batch),
            },
            None => tokio::select! {
                next = run.subscription.try_next_batch() => match next {
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

    async fn go_live(&mut self, mut run: Run<S>) -> Result<State<S>> {
        match self.projector.views.go_live(P::NAME, run.target.generation, run.token).await {
            Ok(()) => {
                tracing::info!(generation = run.target.generation, "new generation of views is live");
                run.target.building = false;
                Ok(State::Live(run))
            }
            Err(error) => self.failed(&run, error).await,
        }
    }

    /// Waits for the next batch and folds it. While waiting, it checks every verify interval
    /// that the views are still there; the read in flight is kept across checks, so a read
    /// slower than the interval still completes.
    async fn live(&mut self, mut run: Run<S>) -> Result<State<S>> {
        let batch = match run.ahead.take() {
            Some(batch) => match self.between_batches().await {
                Some(state) => return Ok(state),
                None => Ok(batch),
            },
            None => {
                let projector = self.projector;
                let fetch = run.subscription.next_batch();
                tokio::pin!(fetch);
                loop {
                    tokio::select! {
                        batch = &mut fetch => break batch,
                        () = &mut self.shutdown => return Ok(State::Done),
                        () = lease_lost(&mut self.lease) => return Ok(State::Acquire),
                        () = tokio::time::sleep(projector.verify_interval) => {
                            match projector.still_there::<P>(&run.target).await {
                                Ok(true) => {}
                                Ok(false) => {
                                    tracing::warn!(generation = run.target.generation,
                                        "the views are gone (the store restarted empty or was flushed); rebuilding");
                                    return Ok(State::Acquire);
                                }
                                Err(error) => tracing::warn!(%error, "cannot check the views' generation"),
                            }
                        }
                    }
                }
            }
        };
        self.fold(run, batch).await
    }

    /// Between two batches read back to back: stops when asked, as when waiting for one.
    async fn between_batches(&mut self) -> Option<State<S>> {
        tokio::select! {
            biased;
            () = &mut self.shutdown => Some(State::Done),
            () = lease_lost(&mut self.lease) => Some(State::Acquire),
            () = std::future::ready(()) => None,
        }
    }

    /// Folds and writes a batch (or sorts the failure to read it).
    async fn fold(&mut self, mut run: Run<S>, batch: Result<Vec<RecordedEvent>>) -> Result<State<S>> {
        let projector = self.projector;
        let outcome = match batch {
            // A batch short of the batch size (in events and bytes) was the end of the log when
            // it was read: reading ahead would only cost a read that finds nothing.
            Ok(batch) if !run.subscription.is_behind() => {
                projector.process(&self.projection, &batch, &run.target, run.token).await
            }
            Ok(batch) => {
                // Behind (catching up, or a backlog): read the next batch while this one is
                // folded and written. A read that fails or finds nothing is left to the next
                // turn; a batch whose write failed is dropped with it.
                let (written, next) = tokio::join!(
                    projector.process(&self.projection, &batch, &run.target, run.token),
                    run.subscription.try_next_batch()
                );
                if written.is_ok() {
                    run.ahead = next.ok().flatten();
                }
                written
            }
            Err(error) => Err(error),
        };
        match outcome {
            Ok(position) => {
                run.target.checkpoint = Some(position);
                self.delay = projector.retry_delay;
                if run.target.stopped {
                    run.target.stopped = !projector.note_running(P::NAME, run.token).await;
                }
                Ok(run.into_state())
            }
            Err(error) => self.failed(&run, error).await,
        }
    }

    /// Starts over from the stored status after a failed step (a write whose reply was lost may
    /// have committed): at once when the views are gone, after a back-off otherwise; or stops.
    async fn failed(&mut self, run: &Run<S>, error: Error) -> Result<State<S>> {
        let at_once =
            self.projector.on_error(P::NAME, error, &mut self.lease, run.target.generation, run.token).await?;
        Ok(if at_once { State::Acquire } else { State::BackOff })
    }

    /// Sleeps the delay, doubling it up to 5 s; `Done` when shut down meanwhile.
    async fn back_off(&mut self) -> State<S> {
        let stop = tokio::select! {
            () = tokio::time::sleep(self.delay) => false,
            () = &mut self.shutdown => true,
        };
        self.delay = (self.delay * 2).min(Duration::from_secs(5));
        if stop { State::Done } else { State::Acquire }
    }
}

/// Resolves when the lease is lost (never without one).
async fn lease_lost(lease: &mut Option<Lease>) {
    match lease {
        Some(lease) => {
            lease.lost().await;
            tracing::warn!("lease lost; standing by");
        }
        None => std::future::pending().await,
    }
}

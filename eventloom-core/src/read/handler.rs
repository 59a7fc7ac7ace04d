//! Event handlers: side effects (an e-mail, a call to another service) run at least once per
//! event, each handler with its own checkpoint, lease, retries and dead letters.
//!
//! A handler is kept in the view store as a projection with no views: one live generation whose
//! checkpoint is the handler's, fenced by its lease's token, with its dead letters beside it.

use std::future::Future;
use std::time::{Duration, Instant};

use tracing::Instrument;

use super::super::fold::dead_letter;
use super::super::projection::check_name;
use super::super::run::{Job, Processed, Runner};
use super::{Projector, Target};
use crate::store::{Refusal, superseded};
use crate::write::retry::Jitter;
use crate::{
    BoxError, DeadLetter, Error, EventEnvelope, EventSet, EventStore, Lease, PoisonPolicy, Position, RecordedEvent,
    Result, RetryPolicy, Subscription, ViewCommit,
};

/// The version an event handler's generation is stored under: it has no views to rebuild.
const HANDLER_VERSION: u32 = 1;

/// A side effect of events: send an e-mail, call an API, publish a message.
///
/// The [`Projector`] runs it ([`run_handler`](Projector::run_handler),
/// [`catch_up_handler`](Projector::catch_up_handler)) over the events of its
/// [`Events`](EventHandler::Events), in the store's order, **at least once** per event: its
/// checkpoint moves only after `handle` returned `Ok` for the events before it, so a crash, a
/// lost lease or an outage between a side effect and the checkpoint's write delivers the event
/// again. Make `handle` idempotent, for example by keeping the event's id
/// (`event.metadata.get()?.event_id`, see [`Metadata::event_id`](crate::Metadata::event_id))
/// with what it did or passing it as the receiving service's idempotency key.
///
/// An `Err` is retried with backoff by [`retry`](EventHandler::retry) (the event's later ones
/// wait); once the retries run out, the projector's [`PoisonPolicy`] applies: `Stop` (the
/// default) stops the handler there, its checkpoint before the event, and `DeadLetter` records
/// the event in the handler's dead letters and goes on.
///
/// Its checkpoint, lease and dead letters are kept under its [`name`](EventHandler::name)
/// ([`NAME`](EventHandler::NAME) by default) in the view store, like a projection's (so the
/// name must differ from every projection's), and its status is read with
/// [`ViewStore::status`](crate::ViewStore::status). An [`App`](crate::App) runs it with
/// [`AppBuilder::handler`](crate::AppBuilder::handler). Keep it in a durable
/// view store: a handler whose stored checkpoint vanishes while it runs stops instead of
/// delivering every event again, but one that starts on a store that lost its checkpoint
/// starts from the first event.
///
/// # Examples
///
/// ```
/// use std::sync::Mutex;
/// use eventloom_core::prelude::*;
/// use eventloom_core::{BoxError, EventHandler, memory::{MemoryEventStore, MemoryViewStore}, read::Projector};
/// # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)] enum UserEvent { Registered { email: String } }
/// # #[derive(Debug, Default)] struct User;
/// # impl Aggregate for User { const TYPE: &'static str = "user"; type Event = UserEvent;
/// #   type Error = std::convert::Infallible; fn apply(&mut self, _: &UserEvent) {} }
///
/// #[derive(Default)]
/// struct Welcome {
///     sent: Mutex<Vec<String>>,
/// }
///
/// impl EventHandler for Welcome {
///     const NAME: &'static str = "welcome_mail";
///     type Events = User;
///
///     async fn handle(&self, e: &EventEnvelope<UserEvent>) -> Result<(), BoxError> {
///         let UserEvent::Registered { email } = &e.event;
///         // A real one sends the mail, keyed by e.metadata.get()?.event_id.
///         self.sent.lock().map_err(|_| "poisoned")?.push(email.clone());
///         Ok(())
///     }
/// }
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let projector = Projector::new(MemoryEventStore::new(), MemoryViewStore::default());
/// let welcome = Welcome::default();
/// assert_eq!(projector.catch_up_handler(&welcome).await.unwrap(), None);
/// # });
/// ```
pub trait EventHandler: Send + Sync + 'static {
    /// The name under which its checkpoint, lease and dead letters are kept, unless
    /// [`name`](EventHandler::name) says otherwise.
    const NAME: &'static str;
    /// The events it reads: an aggregate, or an enum with `#[derive(EventSet)]`.
    type Events: EventSet;

    /// The name of this instance: [`NAME`](EventHandler::NAME) by default. Return another to run
    /// one handler type under several names (the same side effect towards two services), each
    /// with its own checkpoint, lease, dead letters and stop. As for
    /// [`Projection::name`](crate::Projection::name), it must stay the same for the life of the
    /// value and be 1 to 255 bytes long with no control characters (no NUL byte); any other is
    /// refused with [`Error::InvalidId`] (by an [`App`](crate::App), [`Error::InvalidConfig`]).
    fn name(&self) -> &str {
        Self::NAME
    }

    /// Whether it handles events of this type (the name once upcast) in this category; others
    /// are skipped without being decoded. By default, every type its events know.
    fn handles(&self, category: &str, event_type: &str) -> bool {
        <Self::Events as EventSet>::knows(category, event_type)
    }

    /// How a failed `handle` is retried: by default up to 5 attempts, waiting up to 100 ms
    /// before the first retry and doubling up to 10 s, with full jitter and no time budget.
    fn retry(&self) -> RetryPolicy {
        RetryPolicy::new()
            .max_attempts(5)
            .time_budget(Duration::MAX)
            .initial_delay(Duration::from_millis(100))
            .max_delay(Duration::from_secs(10))
    }

    /// Runs the side effect of one event. At least once: the same event may come again.
    /// Implement it as an `async fn`; the future must be `Send`.
    fn handle(
        &self,
        event: &EventEnvelope<<Self::Events as EventSet>::Event>,
    ) -> impl Future<Output = Result<(), BoxError>> + Send;
}

/// How a batch ended short of an error.
enum Handled {
    /// Every event of the batch handled, skipped or dead-lettered, and the checkpoint written.
    All,
    /// Shut down between two events or while retrying; what was handled before is written.
    ShutDown,
    /// The lease was lost before an event or while retrying one: stand by. What was handled
    /// before the loss is not written (another runner may lead: the write would be fenced).
    LeaseLost,
}

impl<S: EventStore + Clone> Projector<S> {
    /// Runs `handler` on every event stored now, from its checkpoint, and returns the new
    /// checkpoint. With leases, it first takes the handler's lease (waiting while another runner
    /// holds it). A `handle` that fails past its retries stops it with [`Error::Projection`]
    /// (its checkpoint before the event) or is dead-lettered, by the poison policy.
    ///
    /// # Examples
    ///
    /// See [`EventHandler`].
    pub async fn catch_up_handler<H: EventHandler>(&self, handler: &H) -> Result<Option<Position>> {
        let name = handler.name();
        check_name(name)?;
        let lease = self.lease_for_handler(name).await?;
        let token = lease.as_ref().map_or(0, Lease::token);
        let mut cursor = self.handler_cursor(name, token, None).await?;
        let jitter = Jitter::new(None);
        let mut never = std::future::pending::<()>();
        let mut subscription = self.handler_subscription(cursor.checkpoint);
        loop {
            let batch = match subscription.try_next_batch().await {
                Ok(Some(batch)) => batch,
                Ok(None) => return Ok(cursor.checkpoint),
                Err(error) => return Err(error),
            };
            let handled = self.handle_batch(handler, &batch, &mut cursor, token, &jitter, &mut never, lease.as_ref());
            match handled.await {
                Ok(Handled::All) => self.handler_ran(name, &mut cursor, token).await,
                Ok(Handled::ShutDown) => return Ok(cursor.checkpoint),
                Ok(Handled::LeaseLost) => return Err(lost_lease(name, token)),
                Err(error) => {
                    self.note_stop(name, &error, cursor.generation, token).await;
                    return Err(error);
                }
            }
        }
    }

    /// Runs `handler` until `shutdown` resolves (after the event in progress: a retry's wait is
    /// cut short, with what was handled before written) or it stops on an event (past its
    /// retries, under [`PoisonPolicy::Stop`]: the error names its position and the checkpoint
    /// stays before it). A store that is unavailable is retried with backoff; a lease that is
    /// lost, or a write refused because another runner moved on, stands by and starts over from
    /// the stored checkpoint (delivering again what was handled since). An event of a newer
    /// release stops it standing by, for a runner of that release. While idle it checks now and
    /// then that its checkpoint is still in the view store, and stops if it is gone.
    ///
    /// # Examples
    ///
    /// ```
    /// # use eventloom_core::prelude::*;
    /// # use eventloom_core::{BoxError, EventHandler, memory::{MemoryEventStore, MemoryViewStore}, read::Projector};
    /// # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)] enum UserEvent { Registered { email: String } }
    /// # #[derive(Debug, Default)] struct User;
    /// # impl Aggregate for User { const TYPE: &'static str = "user"; type Event = UserEvent;
    /// #   type Error = std::convert::Infallible; fn apply(&mut self, _: &UserEvent) {} }
    /// # struct Welcome;
    /// # impl EventHandler for Welcome { const NAME: &'static str = "welcome"; type Events = User;
    /// #   async fn handle(&self, _: &EventEnvelope<UserEvent>) -> Result<(), BoxError> { Ok(()) } }
    /// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
    /// let projector = Projector::new(MemoryEventStore::new(), MemoryViewStore::default());
    /// let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    /// let running = tokio::spawn(async move {
    ///     projector.run_handler(Welcome, async { let _ = stopped.await; }).await
    /// });
    /// // ... later, on SIGTERM:
    /// let _ = stop.send(());
    /// running.await.unwrap().unwrap();
    /// # });
    /// ```
    pub async fn run_handler<H: EventHandler>(
        &self,
        handler: H,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<()> {
        let job = HandlerJob::new(handler);
        let span = job.span();
        // Boxed here, where the lifetimes are known (see `run`).
        let run: std::pin::Pin<Box<dyn Future<Output = Result<()>> + Send + '_>> = Box::pin(async move {
            tokio::pin!(shutdown);
            Runner::new(self, &self.events, job, shutdown).run().await
        });
        run.instrument(span).await
    }

    async fn lease_for_handler(&self, name: &str) -> Result<Option<Lease>> {
        match &self.leases {
            Some(leases) => Ok(Some(leases.acquire(name).await?)),
            None => Ok(None),
        }
    }

    fn handler_subscription(&self, checkpoint: Option<Position>) -> Subscription<S> {
        Subscription::new(self.events.clone(), checkpoint.unwrap_or(Position::ZERO))
            .with_batch_size(self.batch_size)
            .with_batch_bytes(self.batch_bytes)
    }

    /// The live generation and checkpoint of handler `name`, made on its first run. `known` is
    /// the generation this runner found before: one that is gone means the store lost the
    /// checkpoint, and the handler stops rather than deliver every event again.
    async fn handler_cursor(&self, name: &str, token: u64, known: Option<u64>) -> Result<Target> {
        let status = self.views.status(name).await?;
        let stopped = status.stopped.is_some();
        if let Some(live) = status.live {
            return match known {
                Some(known) if known != live.id => Err(checkpoint_gone(name, known)),
                _ => Ok(Target { generation: live.id, checkpoint: live.checkpoint, building: false, stopped }),
            };
        }
        if let Some(known) = known {
            return Err(checkpoint_gone(name, known));
        }
        // A handler has no views to build: its first generation goes live at once (one left
        // building by a first start that was cut short is made live as it is).
        let generation = match status.building {
            Some(building) => building,
            None => superseded(name, self.views.begin_generation(name, HANDLER_VERSION, token).await?)?,
        };
        superseded(name, self.views.go_live(name, generation.id, token).await?)?;
        tracing::info!(generation = generation.id, "the event handler's checkpoint is made");
        Ok(Target { generation: generation.id, checkpoint: generation.checkpoint, building: false, stopped })
    }

    /// After a batch went through: clears a recorded stop the handler has moved past.
    async fn handler_ran(&self, name: &str, cursor: &mut Target, token: u64) {
        if cursor.stopped {
            cursor.stopped = !self.note_running(name, token).await;
        }
    }

    /// Hands each event of `batch` the handler reads to it, in order, retrying each failure by
    /// the handler's retry policy, then writes the checkpoint (and any dead letters). What was
    /// handled is written before the first wait of a retry, and before any stop.
    #[allow(clippy::too_many_arguments)]
    async fn handle_batch<H: EventHandler>(
        &self,
        handler: &H,
        batch: &[RecordedEvent],
        cursor: &mut Target,
        token: u64,
        jitter: &Jitter,
        shutdown: &mut (impl Future<Output = ()> + Send + Unpin),
        lease: Option<&Lease>,
    ) -> Result<Handled> {
        let name = handler.name();
        let policy = handler.retry();
        // The last event done with (handled, skipped or dead-lettered), and the dead letters
        // not written yet.
        let mut done: Option<Position> = cursor.checkpoint;
        let mut dead_letters: Vec<DeadLetter> = Vec::new();
        for raw in batch {
            // A lost lease ends the batch before the next side effect: another runner may lead
            // already, and a write would be fenced.
            if lease.is_some_and(Lease::is_lost) {
                return Ok(Handled::LeaseLost);
            }
            // A shutdown waits for the event in progress, not for the rest of the batch.
            let stop = tokio::select! {
                biased;
                () = &mut *shutdown => true,
                () = std::future::ready(()) => false,
            };
            if stop {
                self.write_handled(name, cursor, token, done, &mut dead_letters).await?;
                return Ok(Handled::ShutDown);
            }
            let Some(decoded) = self.upcasters.route::<H::Events>(raw, |c, t| handler.handles(c, t)) else {
                done = Some(raw.position);
                continue;
            };
            let envelope = match decoded {
                Ok(envelope) => envelope,
                Err(error) if matches!(error, Error::NewerSchema { .. }) || self.poison == PoisonPolicy::Stop => {
                    self.write_handled(name, cursor, token, done, &mut dead_letters).await?;
                    return Err(error);
                }
                Err(error) => {
                    tracing::warn!(%error, position = %raw.position, "skipping an event that does not decode");
                    dead_letters.push(dead_letter(raw, error.to_string()));
                    done = Some(raw.position);
                    continue;
                }
            };
            let started = Instant::now();
            let mut attempt: u32 = 1;
            // A child of the event's trace (with a trace propagation hook installed and an event
            // that carries a trace context); what the handler does in it, commands it executes
            // included, is part of that trace.
            let span = crate::trace::event("event_handler", name, raw).unwrap_or_else(tracing::Span::none);
            let failure = loop {
                let error = match handler.handle(&envelope).instrument(span.clone()).await {
                    Ok(()) => break None,
                    Err(error) => error,
                };
                let elapsed = started.elapsed();
                if attempt >= policy.max_attempts || elapsed >= policy.time_budget {
                    break Some((attempt, error));
                }
                if attempt == 1 {
                    // A long retry must not cost a crash the events handled before it.
                    self.write_handled(name, cursor, token, done, &mut dead_letters).await?;
                }
                let wait = policy.backoff(attempt, jitter.next()).min(policy.time_budget - elapsed);
                tracing::warn!(%error, attempt, ?wait, position = %raw.position, "the event handler failed; retrying");
                let lost = async {
                    match lease {
                        Some(lease) => lease.lost().await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = &mut *shutdown => return Ok(Handled::ShutDown),
                    () = lost => return Ok(Handled::LeaseLost),
                }
                attempt += 1;
            };
            if let Some((attempts, source)) = failure {
                if self.poison == PoisonPolicy::Stop {
                    self.write_handled(name, cursor, token, done, &mut dead_letters).await?;
                    tracing::error!(error = %source, attempts, position = %raw.position, "the event handler failed past its retries");
                    return Err(Error::Projection { projection: name.to_owned(), position: raw.position, source });
                }
                let reason = format!("failed {attempts} time(s), the last: {source}");
                tracing::warn!(%reason, position = %raw.position, "dead-lettering an event the handler failed on");
                dead_letters.push(DeadLetter {
                    position: raw.position,
                    stream: raw.stream.clone(),
                    version: raw.version,
                    event_type: H::Events::event_type(&envelope.event).name.to_owned(),
                    reason,
                });
            }
            done = Some(raw.position);
        }
        self.write_handled(name, cursor, token, done, &mut dead_letters).await?;
        Ok(Handled::All)
    }

    /// Writes the handler's checkpoint at `done` with `dead_letters` (taken), if it moved.
    async fn write_handled(
        &self,
        name: &str,
        cursor: &mut Target,
        token: u64,
        done: Option<Position>,
        dead_letters: &mut Vec<DeadLetter>,
    ) -> Result<()> {
        let Some(checkpoint) = done.filter(|done| Some(*done) > cursor.checkpoint) else {
            return Ok(());
        };
        let commit = ViewCommit {
            generation: cursor.generation,
            expected: cursor.checkpoint,
            checkpoint,
            fencing_token: token,
            views: Vec::new(),
            dead_letters: std::mem::take(dead_letters),
            resolved: Vec::new(),
        };
        let skipped = commit.dead_letters.len();
        superseded(name, self.views.commit(name, commit).await?)?;
        crate::metrics::dead_letters(name, skipped);
        cursor.checkpoint = Some(checkpoint);
        Ok(())
    }
}

/// An event handler as a runner runs it, with the jitter of its retries.
pub(crate) struct HandlerJob<H> {
    handler: H,
    jitter: Jitter,
}

impl<H: EventHandler> HandlerJob<H> {
    pub(crate) fn new(handler: H) -> Self {
        HandlerJob { handler, jitter: Jitter::new(None) }
    }
}

impl<H: EventHandler> Job for HandlerJob<H> {
    fn name(&self) -> &str {
        self.handler.name()
    }

    fn span(&self) -> tracing::Span {
        tracing::info_span!("event_handler", handler = self.handler.name())
    }

    fn target<'a, S: EventStore + Clone>(
        &'a self,
        projector: &'a Projector<S>,
        token: u64,
        known: Option<u64>,
    ) -> impl Future<Output = Result<Target>> + Send + 'a {
        projector.handler_cursor(self.handler.name(), token, known)
    }

    async fn process<'a, S: EventStore + Clone, X: Future<Output = ()> + Send + Unpin>(
        &'a self,
        projector: &'a Projector<S>,
        batch: &'a [RecordedEvent],
        target: &'a Target,
        token: u64,
        shutdown: &'a mut X,
        lease: Option<&'a Lease>,
    ) -> Result<Processed> {
        let name = self.handler.name();
        let mut cursor = *target;
        let handled = projector.handle_batch(&self.handler, batch, &mut cursor, token, &self.jitter, shutdown, lease);
        match handled.await {
            Ok(Handled::All) => Ok(Processed::Written(cursor.checkpoint)),
            Ok(Handled::ShutDown) => Ok(Processed::ShutDown(cursor.checkpoint)),
            Ok(Handled::LeaseLost) => {
                tracing::warn!("lease lost within a batch; standing by");
                Err(lost_lease(name, token))
            }
            // Its checkpoint is gone: it stops rather than deliver every event again.
            Err(Error::Superseded { refusal: Refusal::GenerationGone { .. }, .. }) => {
                Err(checkpoint_gone(name, cursor.generation))
            }
            Err(error) => Err(error),
        }
    }
}

/// The error of a handler whose stored checkpoint vanished under it.
fn checkpoint_gone(name: &str, generation: u64) -> Error {
    Error::Corrupt {
        location: format!("the checkpoint of event handler {name} (generation {generation})"),
        reason: "it is gone from the view store (restarted empty, or flushed): the handler stops rather than \
                 deliver every event again; restore the store, or clear the handler's status to start over"
            .to_owned(),
    }
}

/// The error of a batch whose lease was lost before an event or while retrying one.
fn lost_lease(name: &str, token: u64) -> Error {
    Error::Superseded { projection: name.to_owned(), refusal: Refusal::LeaseLost { token } }
}

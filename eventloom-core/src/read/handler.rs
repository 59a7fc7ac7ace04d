//! Event handlers: side effects (an e-mail, a call to another service) run at least once per
//! event, each handler with its own checkpoint, lease, retries and dead letters.
//!
//! A handler is kept in the view store as a projection with no views: one live generation whose
//! checkpoint is the handler's, fenced by its lease's token, with its dead letters beside it.

use std::future::Future;
use std::time::{Duration, Instant};

use tracing::Instrument;

use super::super::fold::dead_letter;
use super::Projector;
use crate::read::run::lease_lost;
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
/// Its checkpoint, lease and dead letters are kept under [`NAME`](EventHandler::NAME) in the
/// view store, like a projection's (so the name must differ from every projection's), and its
/// status is read with [`ViewStore::status`](crate::ViewStore::status). Keep it in a durable
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
    /// The name under which its checkpoint, lease and dead letters are kept.
    const NAME: &'static str;
    /// The events it reads: an aggregate, or an enum with `#[derive(EventSet)]`.
    type Events: EventSet;

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

/// Where a handler stands: the generation its checkpoint lives in, and the checkpoint.
#[derive(Debug, Clone, Copy)]
struct Cursor {
    generation: u64,
    checkpoint: Option<Position>,
    /// The store holds a recorded stop, cleared once the handler moves past it.
    stopped: bool,
}

/// How a batch ended short of an error.
enum Handled {
    /// Every event of the batch handled, skipped or dead-lettered, and the checkpoint written.
    All,
    /// Shut down while retrying; what was handled before is written.
    ShutDown,
    /// The lease was lost while retrying: stand by.
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
        let lease = self.lease_for_handler(H::NAME).await?;
        let token = lease.as_ref().map_or(0, Lease::token);
        let mut cursor = self.handler_cursor::<H>(token, None).await?;
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
                Ok(Handled::All) => self.handler_ran(H::NAME, &mut cursor, token).await,
                Ok(Handled::ShutDown) => return Ok(cursor.checkpoint),
                Ok(Handled::LeaseLost) => return Err(lost_lease(H::NAME, token)),
                Err(error) => {
                    self.note_stop(H::NAME, &error, cursor.generation, token).await;
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
    /// release stops it standing by, for a runner of that release.
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
        let span = tracing::info_span!("event_handler", handler = H::NAME);
        self.run_handler_inner(handler, shutdown).instrument(span).await
    }

    async fn run_handler_inner<H: EventHandler>(
        &self,
        handler: H,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<()> {
        let mut shutdown = std::pin::pin!(shutdown);
        let jitter = Jitter::new(None);
        let mut delay = self.retry_delay;
        let mut lease: Option<Lease> = None;
        // The generation this runner found its checkpoint in: if it vanishes, the handler stops
        // rather than deliver every event again.
        let mut known: Option<u64> = None;
        loop {
            // Standing by, or backing off after a failure, before starting (over).
            let mut back_off = false;
            if lease.as_ref().is_none_or(Lease::is_lost) {
                if let Some(leases) = &self.leases {
                    tokio::select! {
                        acquired = leases.acquire(H::NAME) => match acquired {
                            Ok(acquired) => lease = Some(acquired),
                            Err(error) if error.is_transient() => {
                                tracing::warn!(%error, ?delay, "cannot take the lease; retrying");
                                back_off = true;
                            }
                            Err(error) => return Err(error),
                        },
                        () = &mut shutdown => return Ok(()),
                    }
                }
            }
            let token = lease.as_ref().map_or(0, Lease::token);
            let cursor = if back_off { None } else { Some(self.handler_cursor::<H>(token, known).await) };
            let mut cursor = match cursor {
                None => None,
                Some(Ok(cursor)) => Some(cursor),
                Some(Err(error)) if error.is_transient() => {
                    tracing::warn!(%error, ?delay, "cannot read the handler's checkpoint; retrying");
                    None
                }
                Some(Err(error @ Error::Fenced { .. })) => {
                    tracing::warn!(%error, "another runner leads; standing by");
                    drop(lease.take());
                    None
                }
                Some(Err(error)) => return Err(error),
            };
            if let Some(cursor) = cursor.as_mut() {
                known = Some(cursor.generation);
                tracing::info!(token, generation = cursor.generation, "running");
                let mut subscription = self.handler_subscription(cursor.checkpoint);
                loop {
                    let batch = tokio::select! {
                        biased;
                        () = &mut shutdown => return Ok(()),
                        () = lease_lost(&mut lease) => {
                            tracing::warn!("lease lost; standing by");
                            break;
                        }
                        batch = subscription.next_batch() => batch,
                    };
                    let handled = match batch {
                        Ok(batch) => {
                            self.handle_batch(&handler, &batch, cursor, token, &jitter, &mut shutdown, lease.as_ref())
                                .await
                        }
                        Err(error) => Err(error),
                    };
                    match handled {
                        Ok(Handled::All) => {
                            delay = self.retry_delay;
                            self.handler_ran(H::NAME, cursor, token).await;
                        }
                        Ok(Handled::ShutDown) => return Ok(()),
                        Ok(Handled::LeaseLost) => {
                            tracing::warn!("lease lost while retrying; standing by");
                            break;
                        }
                        Err(error) => {
                            self.on_handler_error(H::NAME, error, &mut lease, cursor, token).await?;
                            break;
                        }
                    }
                }
            }
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = &mut shutdown => return Ok(()),
            }
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }

    /// Sorts a failed step of a running handler: `Ok` to back off and start over from the
    /// stored checkpoint, `Err` to stop.
    async fn on_handler_error(
        &self,
        name: &str,
        error: Error,
        lease: &mut Option<Lease>,
        cursor: &Cursor,
        token: u64,
    ) -> Result<()> {
        match error {
            Error::NewerSchema { .. } => {
                tracing::warn!(%error, "an event from a newer release; standing by for a runner of that release");
                self.note_stop(name, &error, cursor.generation, token).await;
                drop(lease.take());
                Ok(())
            }
            Error::CheckpointMoved { .. } | Error::Fenced { .. } => {
                tracing::warn!(%error, "another runner wrote; standing by and starting over from the stored checkpoint");
                drop(lease.take());
                Ok(())
            }
            Error::GenerationGone { .. } => Err(checkpoint_gone(name, cursor.generation)),
            error if error.is_transient() => {
                tracing::warn!(%error, "store unavailable; retrying");
                Ok(())
            }
            error => {
                tracing::error!(%error, "event handler stopped");
                self.note_stop(name, &error, cursor.generation, token).await;
                Err(error)
            }
        }
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

    /// The handler's live generation and checkpoint, made on its first run. `known` is the
    /// generation this runner found before: one that is gone means the store lost the
    /// checkpoint, and the handler stops rather than deliver every event again.
    async fn handler_cursor<H: EventHandler>(&self, token: u64, known: Option<u64>) -> Result<Cursor> {
        let status = self.views.status(H::NAME).await?;
        let stopped = status.stopped.is_some();
        if let Some(live) = status.live {
            return match known {
                Some(known) if known != live.id => Err(checkpoint_gone(H::NAME, known)),
                _ => Ok(Cursor { generation: live.id, checkpoint: live.checkpoint, stopped }),
            };
        }
        if let Some(known) = known {
            return Err(checkpoint_gone(H::NAME, known));
        }
        // A handler has no views to build: its first generation goes live at once (one left
        // building by a first start that was cut short is made live as it is).
        let generation = match status.building {
            Some(building) => building,
            None => self.views.begin_generation(H::NAME, HANDLER_VERSION, token).await?,
        };
        self.views.go_live(H::NAME, generation.id, token).await?;
        tracing::info!(generation = generation.id, "the event handler's checkpoint is made");
        Ok(Cursor { generation: generation.id, checkpoint: generation.checkpoint, stopped })
    }

    /// After a batch went through: clears a recorded stop the handler has moved past.
    async fn handler_ran(&self, name: &str, cursor: &mut Cursor, token: u64) {
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
        cursor: &mut Cursor,
        token: u64,
        jitter: &Jitter,
        shutdown: &mut (impl Future<Output = ()> + Send + Unpin),
        lease: Option<&Lease>,
    ) -> Result<Handled> {
        let policy = handler.retry();
        // The last event done with (handled, skipped or dead-lettered), and the dead letters
        // not written yet.
        let mut done: Option<Position> = cursor.checkpoint;
        let mut dead_letters: Vec<DeadLetter> = Vec::new();
        for raw in batch {
            let Some(decoded) = self.upcasters.route::<H::Events>(raw, |c, t| handler.handles(c, t)) else {
                done = Some(raw.position);
                continue;
            };
            let envelope = match decoded {
                Ok(envelope) => envelope,
                Err(error) if matches!(error, Error::NewerSchema { .. }) || self.poison == PoisonPolicy::Stop => {
                    self.write_handled(H::NAME, cursor, token, done, &mut dead_letters).await?;
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
            let failure = loop {
                let error = match handler.handle(&envelope).await {
                    Ok(()) => break None,
                    Err(error) => error,
                };
                let elapsed = started.elapsed();
                if attempt >= policy.max_attempts || elapsed >= policy.time_budget {
                    break Some(format!("failed {attempt} time(s), the last: {error}"));
                }
                if attempt == 1 {
                    // A long retry must not cost a crash the events handled before it.
                    self.write_handled(H::NAME, cursor, token, done, &mut dead_letters).await?;
                }
                let wait = policy.backoff(attempt, jitter.next()).min(policy.time_budget - elapsed);
                tracing::warn!(%error, attempt, ?wait, position = %raw.position, "the event handler failed; retrying");
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = &mut *shutdown => return Ok(Handled::ShutDown),
                }
                if lease.is_some_and(Lease::is_lost) {
                    return Ok(Handled::LeaseLost);
                }
                attempt += 1;
            };
            if let Some(reason) = failure {
                if self.poison == PoisonPolicy::Stop {
                    self.write_handled(H::NAME, cursor, token, done, &mut dead_letters).await?;
                    return Err(Error::Projection { projection: H::NAME.to_owned(), position: raw.position, reason });
                }
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
        self.write_handled(H::NAME, cursor, token, done, &mut dead_letters).await?;
        Ok(Handled::All)
    }

    /// Writes the handler's checkpoint at `done` with `dead_letters` (taken), if it moved.
    async fn write_handled(
        &self,
        name: &str,
        cursor: &mut Cursor,
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
        };
        self.views.commit(name, commit).await?;
        cursor.checkpoint = Some(checkpoint);
        Ok(())
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

/// The error of a catch-up whose lease was lost while retrying.
fn lost_lease(name: &str, token: u64) -> Error {
    Error::Fenced { projection: name.to_owned(), token, highest: token }
}

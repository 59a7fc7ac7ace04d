//! Catch-up and live subscriptions to the store-wide order of events.

use std::time::Duration;

use tokio::sync::watch;
use tracing::Instrument;

use crate::store::{ReadAhead, may_have_more};
use crate::{EventStore, Position, RecordedEvent, Result};

/// The default number of events a subscription hands over at a time.
pub const DEFAULT_SUBSCRIPTION_BATCH: usize = 500;
/// The default bound, in bytes, of one batch that subscriptions, projectors and stream loads
/// read: a batch ends with the event that reaches it (see
/// [`EventStore::read_all_bounded`](crate::EventStore::read_all_bounded)).
pub const DEFAULT_BATCH_BYTES: usize = 16 * 1024 * 1024;
/// The default time between polls when the store gives no wake-up (or as a fallback).
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(250);

/// Reads every event after a position, in the store's order: first what is already stored
/// (catch-up), then new events as they are committed (live).
///
/// Catch-up and live are one loop over [`EventStore::read_all`], so the hand-over between them
/// can neither skip nor repeat an event. When caught up, it waits for the store's wake-up
/// signal, polling as a fallback. It holds at most one batch: a slow subscriber slows only
/// itself.
///
/// # Examples
///
/// ```
/// use eventloom_core::prelude::*;
/// use eventloom_core::{store::EventStore, memory::MemoryEventStore, read::Subscription};
/// use eventloom_core::model::{ExpectedVersion, NewEvent};
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let store = MemoryEventStore::new();
/// let mut sub = store.subscribe(Position::ZERO);
/// let stream = StreamId::new("task", "1").unwrap();
/// let event = NewEvent { event_type: "Created".into(), schema_version: 1, payload: "{}".into(), metadata: Metadata::default() };
/// store.append(&stream, ExpectedVersion::Any, vec![event]).await.unwrap();
/// let batch = sub.next_batch().await.unwrap();
/// assert_eq!(batch.len(), 1);
/// assert_eq!(sub.position(), batch[0].position);
/// # });
/// ```
#[derive(Debug)]
pub struct Subscription<S> {
    store: S,
    after: Position,
    batch_size: usize,
    batch_bytes: usize,
    /// The limit of the next read (below `batch_size` after large events).
    ahead: ReadAhead,
    /// Whether the last batch was full (in events or bytes): more may follow at once.
    behind: bool,
    poll_interval: Duration,
    wake: Option<watch::Receiver<u64>>,
}

impl<S: EventStore> Subscription<S> {
    /// A subscription to every event after `after` (use [`Position::ZERO`] for all).
    pub fn new(store: S, after: Position) -> Self {
        let wake = store.wake_ups();
        Subscription {
            store,
            after,
            batch_size: DEFAULT_SUBSCRIPTION_BATCH,
            batch_bytes: DEFAULT_BATCH_BYTES,
            ahead: ReadAhead::new(DEFAULT_SUBSCRIPTION_BATCH),
            behind: false,
            poll_interval: DEFAULT_POLL_INTERVAL,
            wake,
        }
    }

    /// Hands over at most `events` at a time (at least 1).
    pub fn with_batch_size(mut self, events: usize) -> Self {
        self.batch_size = events.max(1);
        self.ahead = ReadAhead::new(self.batch_size);
        self
    }

    /// Hands over batches of at most about `bytes` (a batch ends with the event that reaches it;
    /// default [`DEFAULT_BATCH_BYTES`]), so that large events cannot fill memory.
    pub fn with_batch_bytes(mut self, bytes: usize) -> Self {
        self.batch_bytes = bytes.max(1);
        self
    }

    /// Polls every `interval` when no wake-up comes.
    pub fn with_poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// Whether the last batch was full, in events or in bytes, so that more may be read at once
    /// (a short batch was the end of the log when it was read).
    pub fn is_behind(&self) -> bool {
        self.behind
    }

    /// The position of the last event handed over.
    pub fn position(&self) -> Position {
        self.after
    }

    /// The next events, waiting for new ones when caught up. Never empty.
    ///
    /// A store that is unavailable (a dropped connection, a restarting server) is retried with
    /// backoff, from the same position: the subscription resumes with nothing lost or doubled.
    /// Other errors are returned.
    pub async fn next_batch(&mut self) -> Result<Vec<RecordedEvent>> {
        let mut delay = Duration::from_millis(50);
        loop {
            match self.try_next_batch().await {
                Ok(Some(batch)) => return Ok(batch),
                Ok(None) => {}
                Err(error) if error.is_transient() => {
                    tracing::warn!(%error, ?delay, after = %self.after, "subscription read failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                    continue;
                }
                Err(error) => return Err(error),
            }
            match &mut self.wake {
                Some(wake) => {
                    tokio::select! {
                        changed = wake.changed() => match changed {
                            Ok(()) => crate::metrics::subscription_wakeup(),
                            Err(_) => self.wake = None,
                        },
                        () = tokio::time::sleep(self.poll_interval) => {}
                    }
                }
                None => tokio::time::sleep(self.poll_interval).await,
            }
        }
    }

    /// The next events if there are any now; `None` when caught up.
    pub async fn try_next_batch(&mut self) -> Result<Option<Vec<RecordedEvent>>> {
        if let Some(wake) = &mut self.wake {
            // Seen before reading: an append after this read wakes the next wait.
            wake.borrow_and_update();
        }
        let span = tracing::trace_span!("subscription", after = %self.after);
        let limit = self.ahead.limit();
        crate::metrics::subscription_poll();
        let batch = self.store.read_all_bounded(self.after, limit, self.batch_bytes).instrument(span).await?;
        self.behind = may_have_more(&batch, limit, self.batch_bytes);
        self.ahead.observe(&batch, self.batch_bytes);
        Ok(batch.last().map(|last| last.position).map(|last| {
            self.after = last;
            batch
        }))
    }
}

//! Where a projection's events come from: a [`Feed`] of events in one total order, read from any
//! position by a [`FeedReader`].

use crate::store::BoxFuture;

use crate::{EventStore, Position, RecordedEvent, Result, Subscription, Timestamp};

/// A source of events in one total order, each with its [`Position`] in it, that projections
/// can read from any position: the event store's log (every [`EventStore`] is a feed), or another
/// source with positions of its own (a bus consumer).
///
/// A [`ProjectionGroup`](crate::ProjectionGroup) reads a feed once for all its members, and
/// each member that is behind reads it on its own from its checkpoint until it catches up. A
/// feed's positions are what members' checkpoints hold, so a projection reads one feed for
/// good.
///
/// # Examples
///
/// ```
/// use eventloom_core::{Position, read::{Feed, FeedReader}, memory::MemoryEventStore};
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let store = MemoryEventStore::new();
/// let mut reader = Feed::read_after(&store, Position::ZERO, 100, 1 << 20);
/// assert!(reader.try_next_batch().await.unwrap().is_none(), "nothing stored yet");
/// assert_eq!(Feed::count_after(&store, Position::ZERO, 10).await.unwrap(), 0);
/// # });
/// ```
pub trait Feed: Send + Sync + 'static {
    /// What reads it.
    type Reader: FeedReader;

    /// A reader of every event after `after`, in batches of at most `batch_size` events and
    /// about `batch_bytes` (a batch ends with the event that reaches it).
    fn read_after(&self, after: Position, batch_size: usize, batch_bytes: usize) -> Self::Reader;

    /// How many events a reader can read now after `after`, counted up to `cap` (see
    /// [`EventStore::count_after`]): a member's lag.
    fn count_after<'a>(&'a self, after: Position, cap: u64) -> BoxFuture<'a, Result<u64>>;

    /// When the first event after `after` was written, if the feed can tell: the age of a
    /// relay's lag ([`RelayLag`](crate::app::RelayLag)). `None` when no event follows `after`,
    /// or when the feed cannot tell (the default); an event store tells its event's
    /// [`Metadata::timestamp`](crate::Metadata::timestamp).
    fn first_written_after<'a>(&'a self, after: Position) -> BoxFuture<'a, Result<Option<Timestamp>>> {
        let _ = after;
        Box::pin(async { Ok(None) })
    }

    /// Told by a projector's runner after `member` committed its views and checkpoint up to
    /// `up_to` (in the feed's positions): a feed that acknowledges its source (a bus consumer)
    /// may acknowledge up to the lowest position its members committed. Never blocks; the
    /// default does nothing (the event store needs no acknowledgement).
    fn acknowledge(&self, member: &str, up_to: Position) {
        let _ = (member, up_to);
    }
}

/// Reads a [`Feed`] in order, batch by batch, with no gap and no duplicate.
///
/// # Examples
///
/// ```
/// use eventloom_core::prelude::*;
/// use eventloom_core::{store::EventStore, read::{Feed, FeedReader}, memory::MemoryEventStore};
/// use eventloom_core::model::{ExpectedVersion, NewEvent};
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let store = MemoryEventStore::new();
/// let stream = StreamId::new("task", "1").unwrap();
/// let event = NewEvent { event_type: "Created".into(), schema_version: 1, payload: "{}".into(), metadata: Metadata::default() };
/// store.append(&stream, ExpectedVersion::Any, vec![event]).await.unwrap();
/// let mut reader = store.read_after(Position::ZERO, 100, 1 << 20);
/// assert_eq!(FeedReader::next_batch(&mut reader).await.unwrap().len(), 1);
/// assert!(!FeedReader::is_behind(&reader), "a short batch was the end of the log");
/// # });
/// ```
pub trait FeedReader: Send + 'static {
    /// The next events if there are any now; `None` when caught up.
    fn try_next_batch<'a>(&'a mut self) -> BoxFuture<'a, Result<Option<Vec<RecordedEvent>>>>;

    /// The next events, waiting for new ones when caught up; never empty. Outages are retried
    /// from the same position; other errors are returned.
    fn next_batch<'a>(&'a mut self) -> BoxFuture<'a, Result<Vec<RecordedEvent>>>;

    /// Whether the last batch was full, so that more may be read at once.
    fn is_behind(&self) -> bool;
}

impl<S: EventStore + Clone> Feed for S {
    type Reader = Subscription<S>;

    fn read_after(&self, after: Position, batch_size: usize, batch_bytes: usize) -> Subscription<S> {
        Subscription::new(self.clone(), after).with_batch_size(batch_size).with_batch_bytes(batch_bytes)
    }

    fn count_after<'a>(&'a self, after: Position, cap: u64) -> BoxFuture<'a, Result<u64>> {
        EventStore::count_after(self, after, cap)
    }

    fn first_written_after<'a>(&'a self, after: Position) -> BoxFuture<'a, Result<Option<Timestamp>>> {
        Box::pin(async move {
            match self.read_all(after, 1).await?.first() {
                Some(event) => Ok(Some(event.metadata.get()?.timestamp)),
                None => Ok(None),
            }
        })
    }
}

impl<S: EventStore> FeedReader for Subscription<S> {
    fn try_next_batch<'a>(&'a mut self) -> BoxFuture<'a, Result<Option<Vec<RecordedEvent>>>> {
        Box::pin(async move { Subscription::try_next_batch(self).await })
    }

    fn next_batch<'a>(&'a mut self) -> BoxFuture<'a, Result<Vec<RecordedEvent>>> {
        Box::pin(async move { Subscription::next_batch(self).await })
    }

    fn is_behind(&self) -> bool {
        Subscription::is_behind(self)
    }
}

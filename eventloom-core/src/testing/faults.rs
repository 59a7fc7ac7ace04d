//! Event stores that fail on purpose, for tests of what a crash at one point leaves behind.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::watch;

use crate::model::{ExpectedVersion, NewEvent, RecordedEvent, Timestamp};
use crate::store::{Appended, BoxFuture, CommandEntry, CommandRecord, EventStore};
use crate::{Error, Position, Result, StreamId};

/// An event store whose next `n` plain appends to streams of one category fail with
/// [`Error::Unavailable`] before reaching the store, as if the process died just before them;
/// everything else goes to the inner store. Clones share the count.
///
/// # Examples
///
/// ```
/// use eventloom_core::prelude::*;
/// use eventloom_core::memory::MemoryEventStore;
/// use eventloom_core::model::{ExpectedVersion, NewEvent};
/// use eventloom_core::store::EventStore;
/// use eventloom_core::testing::FailingAppends;
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store = FailingAppends::new(MemoryEventStore::new(), "journal");
/// store.fail_next(1);
/// let stream = StreamId::new("journal", "j-1").unwrap();
/// let event = || NewEvent { event_type: "Noted".into(), schema_version: 1, payload: "{}".into(),
///     metadata: Metadata::default() };
/// assert!(store.append(&stream, ExpectedVersion::Any, vec![event()]).await.is_err());
/// assert!(store.append(&stream, ExpectedVersion::Any, vec![event()]).await.is_ok());
/// assert_eq!(store.failed(), 1);
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct FailingAppends<S> {
    inner: S,
    category: Arc<str>,
    left: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
}

impl<S: EventStore> FailingAppends<S> {
    /// Wraps `inner`, failing no append until [`fail_next`](Self::fail_next).
    pub fn new(inner: S, category: &str) -> Self {
        FailingAppends {
            inner,
            category: category.into(),
            left: Arc::new(AtomicUsize::new(0)),
            failed: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Fails the next `n` appends to the category.
    pub fn fail_next(&self, n: usize) {
        self.left.store(n, Ordering::SeqCst);
    }

    /// How many appends it failed.
    pub fn failed(&self) -> usize {
        self.failed.load(Ordering::SeqCst)
    }

    fn fails(&self, stream: &StreamId) -> bool {
        if stream.category() != &*self.category {
            return false;
        }
        let took = self.left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
        if took {
            self.failed.fetch_add(1, Ordering::SeqCst);
        }
        took
    }
}

impl<S: EventStore> EventStore for FailingAppends<S> {
    fn append<'a>(
        &'a self,
        stream: &'a StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> BoxFuture<'a, Result<Appended>> {
        if self.fails(stream) {
            return Box::pin(std::future::ready(Err(Error::unavailable_msg(format!(
                "an append to {stream} failed on purpose"
            )))));
        }
        self.inner.append(stream, expected, events)
    }
    fn append_command<'a>(
        &'a self,
        stream: &'a StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
        command: &'a CommandEntry,
    ) -> BoxFuture<'a, Result<Appended>> {
        self.inner.append_command(stream, expected, events, command)
    }
    fn read_stream<'a>(
        &'a self,
        stream: &'a StreamId,
        from_version: u64,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<RecordedEvent>>> {
        self.inner.read_stream(stream, from_version, limit)
    }
    fn read_all<'a>(&'a self, after: Position, limit: usize) -> BoxFuture<'a, Result<Vec<RecordedEvent>>> {
        self.inner.read_all(after, limit)
    }
    fn read_stream_bounded<'a>(
        &'a self,
        stream: &'a StreamId,
        from_version: u64,
        limit: usize,
        max_bytes: usize,
    ) -> BoxFuture<'a, Result<Vec<RecordedEvent>>> {
        self.inner.read_stream_bounded(stream, from_version, limit, max_bytes)
    }
    fn read_all_bounded<'a>(
        &'a self,
        after: Position,
        limit: usize,
        max_bytes: usize,
    ) -> BoxFuture<'a, Result<Vec<RecordedEvent>>> {
        self.inner.read_all_bounded(after, limit, max_bytes)
    }
    fn stream_version<'a>(&'a self, stream: &'a StreamId) -> BoxFuture<'a, Result<u64>> {
        self.inner.stream_version(stream)
    }
    fn head<'a>(&'a self) -> BoxFuture<'a, Result<Option<Position>>> {
        self.inner.head()
    }
    fn count_after<'a>(&'a self, after: Position, cap: u64) -> BoxFuture<'a, Result<u64>> {
        self.inner.count_after(after, cap)
    }
    fn held_back<'a>(&'a self, cap: u64) -> BoxFuture<'a, Result<u64>> {
        self.inner.held_back(cap)
    }
    fn command_outcome<'a>(&'a self, command_id: &'a str) -> BoxFuture<'a, Result<Option<CommandRecord>>> {
        self.inner.command_outcome(command_id)
    }
    fn record_command<'a>(
        &'a self,
        command_id: &'a str,
        record: CommandRecord,
    ) -> BoxFuture<'a, Result<Option<CommandRecord>>> {
        self.inner.record_command(command_id, record)
    }
    fn expire_commands<'a>(&'a self, recorded_before: Timestamp, limit: usize) -> BoxFuture<'a, Result<u64>> {
        self.inner.expire_commands(recorded_before, limit)
    }
    fn forget_commands<'a>(&'a self, ids: &'a [String]) -> BoxFuture<'a, Result<u64>> {
        self.inner.forget_commands(ids)
    }
    fn wake_ups(&self) -> Option<watch::Receiver<u64>> {
        self.inner.wake_ups()
    }
    fn append_relayed<'a>(
        &'a self,
        source: &'a str,
        sequence: u64,
        stream: &'a StreamId,
        events: Vec<NewEvent>,
    ) -> BoxFuture<'a, Result<crate::store::Relayed>> {
        self.inner.append_relayed(source, sequence, stream, events)
    }
    fn relayed<'a>(&'a self, source: &'a str) -> BoxFuture<'a, Result<u64>> {
        self.inner.relayed(source)
    }
}

//! Wrappers that change one or two methods of a store and hand every other to the store they
//! wrap: [`DelegateEventStore`], [`DelegateViewStore`] and [`DelegateLeaseManager`].
//!
//! Each trait has one required method, `inner`, and every method of the store trait with a
//! default that calls the same method of the inner store; a blanket impl makes every
//! implementation a store ([`EventStore`], [`ViewStore`], [`LeaseManager`]). A wrapper overrides
//! only the methods it changes.
//!
//! A new method of a store trait gets a forwarding default here and a line in the blanket impl
//! below it, so that wrappers keep forwarding everything they do not change.

use tokio::sync::watch;

use crate::store::{
    Appended, BoxFuture, CommandEntry, CommandRecord, DeadLetter, DeadLetterSelection, EventStore, Generation,
    IndexKey, IndexedView, Lease, LeaseInfo, LeaseManager, ListCursor, OrderRange, ProjectionStatus, ProjectionStop,
    Relayed, ReplicaLag, ViewCommit, ViewPage, ViewStore, Written,
};
use crate::{ExpectedVersion, NewEvent, Position, RecordedEvent, Result, StreamId, Timestamp};

/// An event store that wraps another and forwards to it every method it does not override: the
/// blanket impl makes every implementation an [`EventStore`] whose methods are these.
///
/// A test or a benchmark that changes how a store behaves in one respect (fails some appends,
/// counts reads, slows one method down) implements [`inner`](Self::inner) and the methods it
/// changes; the others reach the inner store, the defaulted ones too (a store's own
/// `read_all_bounded` or `count_after`, not the trait's default built on `read_all`).
///
/// In a module that imports both this trait and [`EventStore`], a method call on the wrapper
/// names a method of each: implement this one by path (as below), or call the store's method as
/// `EventStore::read_all(&wrapper, ..)`.
///
/// # Examples
///
/// ```
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use eventloom_core::prelude::*;
/// use eventloom_core::memory::MemoryEventStore;
/// use eventloom_core::model::{ExpectedVersion, NewEvent, RecordedEvent};
/// use eventloom_core::store::{self, BoxFuture, EventStore};
///
/// /// Counts the reads of the whole log; everything else is the memory store's.
/// struct CountedReads {
///     inner: MemoryEventStore,
///     reads: AtomicUsize,
/// }
///
/// impl store::DelegateEventStore for CountedReads {
///     type Inner = MemoryEventStore;
///     fn inner(&self) -> &MemoryEventStore {
///         &self.inner
///     }
///     fn read_all<'a>(&'a self, after: Position, limit: usize) -> BoxFuture<'a, eventloom_core::Result<Vec<RecordedEvent>>> {
///         self.reads.fetch_add(1, Ordering::SeqCst);
///         self.inner.read_all(after, limit)
///     }
/// }
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let counted = CountedReads { inner: MemoryEventStore::new(), reads: AtomicUsize::new(0) };
/// let stream = StreamId::new("task", "1").unwrap();
/// let event = NewEvent { event_type: "Created".into(), schema_version: 1, payload: "{}".into(),
///     metadata: Metadata::default() };
/// counted.append(&stream, ExpectedVersion::NoStream, vec![event]).await.unwrap();
/// assert_eq!(counted.read_all(Position::ZERO, 10).await.unwrap().len(), 1);
/// assert_eq!(counted.stream_version(&stream).await.unwrap(), 1, "forwarded");
/// assert_eq!(counted.reads.load(Ordering::SeqCst), 1);
/// # });
/// ```
pub trait DelegateEventStore: Send + Sync + 'static {
    /// The store it wraps.
    type Inner: EventStore + ?Sized;

    /// The store every method not overridden goes to.
    fn inner(&self) -> &Self::Inner;

    /// [`EventStore::append`], forwarded.
    fn append<'a>(
        &'a self,
        stream: &'a StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> BoxFuture<'a, Result<Appended>> {
        self.inner().append(stream, expected, events)
    }

    /// [`EventStore::append_command`], forwarded.
    fn append_command<'a>(
        &'a self,
        stream: &'a StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
        command: &'a CommandEntry,
    ) -> BoxFuture<'a, Result<Appended>> {
        self.inner().append_command(stream, expected, events, command)
    }

    /// [`EventStore::read_stream`], forwarded.
    fn read_stream<'a>(
        &'a self,
        stream: &'a StreamId,
        from_version: u64,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<RecordedEvent>>> {
        self.inner().read_stream(stream, from_version, limit)
    }

    /// [`EventStore::read_all`], forwarded.
    fn read_all<'a>(&'a self, after: Position, limit: usize) -> BoxFuture<'a, Result<Vec<RecordedEvent>>> {
        self.inner().read_all(after, limit)
    }

    /// [`EventStore::read_stream_bounded`], forwarded.
    fn read_stream_bounded<'a>(
        &'a self,
        stream: &'a StreamId,
        from_version: u64,
        limit: usize,
        max_bytes: usize,
    ) -> BoxFuture<'a, Result<Vec<RecordedEvent>>> {
        self.inner().read_stream_bounded(stream, from_version, limit, max_bytes)
    }

    /// [`EventStore::fold_stream`], as the trait's default does it: through this wrapper's
    /// [`read_stream_bounded`](Self::read_stream_bounded), so that a wrapper that changes how
    /// streams are read changes how aggregates load too. A wrapper that leaves reads alone can
    /// override it with `self.inner().fold_stream(..)`, for the inner store's own fold (on
    /// PostgreSQL, rows folded as they arrive).
    fn fold_stream<'a>(
        &'a self,
        stream: &'a StreamId,
        from_version: u64,
        limit: usize,
        max_bytes: usize,
        fold: &'a mut (dyn FnMut(crate::store::EventRef<'_>) -> Result<()> + Send),
    ) -> BoxFuture<'a, Result<crate::store::FoldedPage>>
    where
        Self: Sized,
    {
        Box::pin(crate::store::fold_read_stream(self, stream, from_version, limit, max_bytes, fold))
    }

    /// [`EventStore::folds_row_by_row`]: `false`, as this trait's
    /// [`fold_stream`](Self::fold_stream) reads each page whole. A wrapper that forwards
    /// `fold_stream` to the inner store forwards this too.
    fn folds_row_by_row(&self) -> bool {
        false
    }

    /// [`EventStore::read_all_bounded`], forwarded.
    fn read_all_bounded<'a>(
        &'a self,
        after: Position,
        limit: usize,
        max_bytes: usize,
    ) -> BoxFuture<'a, Result<Vec<RecordedEvent>>> {
        self.inner().read_all_bounded(after, limit, max_bytes)
    }

    /// [`EventStore::stream_version`], forwarded.
    fn stream_version<'a>(&'a self, stream: &'a StreamId) -> BoxFuture<'a, Result<u64>> {
        self.inner().stream_version(stream)
    }

    /// [`EventStore::command_outcome`], forwarded.
    fn command_outcome<'a>(&'a self, command_id: &'a str) -> BoxFuture<'a, Result<Option<CommandRecord>>> {
        self.inner().command_outcome(command_id)
    }

    /// [`EventStore::record_command`], forwarded.
    fn record_command<'a>(
        &'a self,
        command_id: &'a str,
        record: CommandRecord,
    ) -> BoxFuture<'a, Result<Option<CommandRecord>>> {
        self.inner().record_command(command_id, record)
    }

    /// [`EventStore::expire_commands`], forwarded.
    fn expire_commands<'a>(&'a self, recorded_before: Timestamp, limit: usize) -> BoxFuture<'a, Result<u64>> {
        self.inner().expire_commands(recorded_before, limit)
    }

    /// [`EventStore::forget_commands`], forwarded.
    fn forget_commands<'a>(&'a self, ids: &'a [String]) -> BoxFuture<'a, Result<u64>> {
        self.inner().forget_commands(ids)
    }

    /// [`EventStore::head`], forwarded.
    fn head<'a>(&'a self) -> BoxFuture<'a, Result<Option<Position>>> {
        self.inner().head()
    }

    /// [`EventStore::held_back`], forwarded.
    fn held_back<'a>(&'a self, cap: u64) -> BoxFuture<'a, Result<u64>> {
        self.inner().held_back(cap)
    }

    /// [`EventStore::count_after`], forwarded.
    fn count_after<'a>(&'a self, after: Position, cap: u64) -> BoxFuture<'a, Result<u64>> {
        self.inner().count_after(after, cap)
    }

    /// [`EventStore::wake_ups`], forwarded.
    fn wake_ups(&self) -> Option<watch::Receiver<u64>> {
        self.inner().wake_ups()
    }

    /// [`EventStore::loads_may_lag`], forwarded.
    fn loads_may_lag(&self) -> bool {
        self.inner().loads_may_lag()
    }

    /// [`EventStore::replica_lag`], forwarded.
    fn replica_lag<'a>(&'a self) -> BoxFuture<'a, Result<Option<ReplicaLag>>> {
        self.inner().replica_lag()
    }

    /// [`EventStore::append_relayed`], forwarded.
    fn append_relayed<'a>(
        &'a self,
        source: &'a str,
        sequence: u64,
        stream: &'a StreamId,
        events: Vec<NewEvent>,
    ) -> BoxFuture<'a, Result<Relayed>> {
        self.inner().append_relayed(source, sequence, stream, events)
    }

    /// [`EventStore::relayed`], forwarded.
    fn relayed<'a>(&'a self, source: &'a str) -> BoxFuture<'a, Result<u64>> {
        self.inner().relayed(source)
    }
}

// `subscribe` keeps the trait's default: a subscription reads through the wrapper.
impl<T: DelegateEventStore> EventStore for T {
    fn append<'a>(
        &'a self,
        stream: &'a StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> BoxFuture<'a, Result<Appended>> {
        DelegateEventStore::append(self, stream, expected, events)
    }
    fn append_command<'a>(
        &'a self,
        stream: &'a StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
        command: &'a CommandEntry,
    ) -> BoxFuture<'a, Result<Appended>> {
        DelegateEventStore::append_command(self, stream, expected, events, command)
    }
    fn read_stream<'a>(
        &'a self,
        stream: &'a StreamId,
        from_version: u64,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<RecordedEvent>>> {
        DelegateEventStore::read_stream(self, stream, from_version, limit)
    }
    fn read_all<'a>(&'a self, after: Position, limit: usize) -> BoxFuture<'a, Result<Vec<RecordedEvent>>> {
        DelegateEventStore::read_all(self, after, limit)
    }
    fn read_stream_bounded<'a>(
        &'a self,
        stream: &'a StreamId,
        from_version: u64,
        limit: usize,
        max_bytes: usize,
    ) -> BoxFuture<'a, Result<Vec<RecordedEvent>>> {
        DelegateEventStore::read_stream_bounded(self, stream, from_version, limit, max_bytes)
    }
    fn fold_stream<'a>(
        &'a self,
        stream: &'a StreamId,
        from_version: u64,
        limit: usize,
        max_bytes: usize,
        fold: &'a mut (dyn FnMut(crate::store::EventRef<'_>) -> Result<()> + Send),
    ) -> BoxFuture<'a, Result<crate::store::FoldedPage>> {
        DelegateEventStore::fold_stream(self, stream, from_version, limit, max_bytes, fold)
    }
    fn folds_row_by_row(&self) -> bool {
        DelegateEventStore::folds_row_by_row(self)
    }
    fn read_all_bounded<'a>(
        &'a self,
        after: Position,
        limit: usize,
        max_bytes: usize,
    ) -> BoxFuture<'a, Result<Vec<RecordedEvent>>> {
        DelegateEventStore::read_all_bounded(self, after, limit, max_bytes)
    }
    fn stream_version<'a>(&'a self, stream: &'a StreamId) -> BoxFuture<'a, Result<u64>> {
        DelegateEventStore::stream_version(self, stream)
    }
    fn command_outcome<'a>(&'a self, command_id: &'a str) -> BoxFuture<'a, Result<Option<CommandRecord>>> {
        DelegateEventStore::command_outcome(self, command_id)
    }
    fn record_command<'a>(
        &'a self,
        command_id: &'a str,
        record: CommandRecord,
    ) -> BoxFuture<'a, Result<Option<CommandRecord>>> {
        DelegateEventStore::record_command(self, command_id, record)
    }
    fn expire_commands<'a>(&'a self, recorded_before: Timestamp, limit: usize) -> BoxFuture<'a, Result<u64>> {
        DelegateEventStore::expire_commands(self, recorded_before, limit)
    }
    fn forget_commands<'a>(&'a self, ids: &'a [String]) -> BoxFuture<'a, Result<u64>> {
        DelegateEventStore::forget_commands(self, ids)
    }
    fn head<'a>(&'a self) -> BoxFuture<'a, Result<Option<Position>>> {
        DelegateEventStore::head(self)
    }
    fn held_back<'a>(&'a self, cap: u64) -> BoxFuture<'a, Result<u64>> {
        DelegateEventStore::held_back(self, cap)
    }
    fn count_after<'a>(&'a self, after: Position, cap: u64) -> BoxFuture<'a, Result<u64>> {
        DelegateEventStore::count_after(self, after, cap)
    }
    fn wake_ups(&self) -> Option<watch::Receiver<u64>> {
        DelegateEventStore::wake_ups(self)
    }
    fn loads_may_lag(&self) -> bool {
        DelegateEventStore::loads_may_lag(self)
    }
    fn replica_lag<'a>(&'a self) -> BoxFuture<'a, Result<Option<ReplicaLag>>> {
        DelegateEventStore::replica_lag(self)
    }
    fn append_relayed<'a>(
        &'a self,
        source: &'a str,
        sequence: u64,
        stream: &'a StreamId,
        events: Vec<NewEvent>,
    ) -> BoxFuture<'a, Result<Relayed>> {
        DelegateEventStore::append_relayed(self, source, sequence, stream, events)
    }
    fn relayed<'a>(&'a self, source: &'a str) -> BoxFuture<'a, Result<u64>> {
        DelegateEventStore::relayed(self, source)
    }
}

/// A view store that wraps another and forwards to it every method it does not override: the
/// blanket impl makes every implementation a [`ViewStore`] whose methods are these.
///
/// In a module that imports both this trait and [`ViewStore`], a method call on the wrapper
/// names a method of each: implement this one by path (as below), or call the store's method as
/// `ViewStore::commit(&wrapper, ..)`.
///
/// # Examples
///
/// ```
/// use std::sync::atomic::{AtomicBool, Ordering};
/// use eventloom_core::{Error, Position, memory::MemoryViewStore};
/// use eventloom_core::store::{self, BoxFuture, ViewCommit, ViewStore, ViewWrite, Written};
///
/// /// Fails its next commit, as a store whose connection drops; everything else is the memory
/// /// store's.
/// #[derive(Default)]
/// struct FailingCommit {
///     inner: MemoryViewStore,
///     fail_next: AtomicBool,
/// }
///
/// impl store::DelegateViewStore for FailingCommit {
///     type Inner = MemoryViewStore;
///     fn inner(&self) -> &MemoryViewStore {
///         &self.inner
///     }
///     fn commit<'a>(&'a self, projection: &'a str, commit: ViewCommit) -> BoxFuture<'a, eventloom_core::Result<Written>> {
///         if self.fail_next.swap(false, Ordering::SeqCst) {
///             return Box::pin(std::future::ready(Err(Error::unavailable_msg("the connection dropped"))));
///         }
///         self.inner.commit(projection, commit)
///     }
/// }
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let views = FailingCommit::default();
/// let generation = views.begin_generation("tasks", 1, 0).await.unwrap().unwrap();
/// let commit = ViewCommit { generation: generation.id, expected: None, checkpoint: Position::new(1, 1),
///     fencing_token: 0, views: vec![ViewWrite::set("t-1", "{}")], dead_letters: Vec::new(), resolved: Vec::new() };
/// views.fail_next.store(true, Ordering::SeqCst);
/// assert!(views.commit("tasks", commit.clone()).await.is_err());
/// assert_eq!(views.commit("tasks", commit).await.unwrap(), Ok(()));
/// views.go_live("tasks", generation.id, 0).await.unwrap().unwrap();
/// assert_eq!(views.read_views("tasks", &["t-1".into()]).await.unwrap(), vec![Some("{}".into())]);
/// # });
/// ```
pub trait DelegateViewStore: Send + Sync + 'static {
    /// The store it wraps.
    type Inner: ViewStore + ?Sized;

    /// The store every method not overridden goes to.
    fn inner(&self) -> &Self::Inner;

    /// [`ViewStore::status`], forwarded.
    fn status<'a>(&'a self, projection: &'a str) -> BoxFuture<'a, Result<ProjectionStatus>> {
        self.inner().status(projection)
    }

    /// [`ViewStore::begin_generation`], forwarded.
    fn begin_generation<'a>(
        &'a self,
        projection: &'a str,
        version: u32,
        fencing_token: u64,
    ) -> BoxFuture<'a, Result<Written<Generation>>> {
        self.inner().begin_generation(projection, version, fencing_token)
    }

    /// [`ViewStore::load_views`], forwarded.
    fn load_views<'a>(
        &'a self,
        projection: &'a str,
        generation: u64,
        ids: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Option<String>>>> {
        self.inner().load_views(projection, generation, ids)
    }

    /// [`ViewStore::commit`], forwarded.
    fn commit<'a>(&'a self, projection: &'a str, commit: ViewCommit) -> BoxFuture<'a, Result<Written>> {
        self.inner().commit(projection, commit)
    }

    /// [`ViewStore::go_live`], forwarded.
    fn go_live<'a>(
        &'a self,
        projection: &'a str,
        generation: u64,
        fencing_token: u64,
    ) -> BoxFuture<'a, Result<Written>> {
        self.inner().go_live(projection, generation, fencing_token)
    }

    /// [`ViewStore::read_views`], forwarded.
    fn read_views<'a>(&'a self, projection: &'a str, ids: &'a [String]) -> BoxFuture<'a, Result<Vec<Option<String>>>> {
        self.inner().read_views(projection, ids)
    }

    /// [`ViewStore::list`], forwarded.
    fn list<'a>(
        &'a self,
        projection: &'a str,
        key: &'a IndexKey,
        range: &'a OrderRange,
        after: Option<&'a ListCursor>,
        limit: usize,
    ) -> BoxFuture<'a, Result<ViewPage>> {
        self.inner().list(projection, key, range, after, limit)
    }

    /// [`ViewStore::count`], forwarded.
    fn count<'a>(&'a self, projection: &'a str, keys: &'a [IndexKey]) -> BoxFuture<'a, Result<Vec<u64>>> {
        self.inner().count(projection, keys)
    }

    /// [`ViewStore::list_generation`], forwarded.
    fn list_generation<'a>(
        &'a self,
        projection: &'a str,
        generation: u64,
        key: &'a IndexKey,
        range: &'a OrderRange,
        after: Option<&'a ListCursor>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<IndexedView>>> {
        self.inner().list_generation(projection, generation, key, range, after, limit)
    }

    /// [`ViewStore::count_generation`], forwarded.
    fn count_generation<'a>(
        &'a self,
        projection: &'a str,
        generation: u64,
        keys: &'a [IndexKey],
    ) -> BoxFuture<'a, Result<Vec<u64>>> {
        self.inner().count_generation(projection, generation, keys)
    }

    /// [`ViewStore::dead_letters`], forwarded.
    fn dead_letters<'a>(&'a self, projection: &'a str) -> BoxFuture<'a, Result<Vec<DeadLetter>>> {
        self.inner().dead_letters(projection)
    }

    /// [`ViewStore::record_stop`], forwarded.
    fn record_stop<'a>(
        &'a self,
        projection: &'a str,
        stop: Option<&'a ProjectionStop>,
        fencing_token: u64,
    ) -> BoxFuture<'a, Result<Written>> {
        self.inner().record_stop(projection, stop, fencing_token)
    }

    /// [`ViewStore::projections`], forwarded.
    fn projections<'a>(&'a self) -> BoxFuture<'a, Result<Vec<String>>> {
        self.inner().projections()
    }

    /// [`ViewStore::remove_dead_letters`], forwarded.
    fn remove_dead_letters<'a>(
        &'a self,
        projection: &'a str,
        which: &'a DeadLetterSelection,
        fencing_token: u64,
    ) -> BoxFuture<'a, Result<Written<u64>>> {
        self.inner().remove_dead_letters(projection, which, fencing_token)
    }

    /// [`ViewStore::changes`], forwarded: a wrapper's readers are woken by the inner store's
    /// signal (the inner store sees the commits that pass through the wrapper).
    fn changes(&self, projection: &str) -> Option<crate::store::ViewChanges> {
        self.inner().changes(projection)
    }
}

impl<T: DelegateViewStore> ViewStore for T {
    fn status<'a>(&'a self, projection: &'a str) -> BoxFuture<'a, Result<ProjectionStatus>> {
        DelegateViewStore::status(self, projection)
    }
    fn begin_generation<'a>(
        &'a self,
        projection: &'a str,
        version: u32,
        fencing_token: u64,
    ) -> BoxFuture<'a, Result<Written<Generation>>> {
        DelegateViewStore::begin_generation(self, projection, version, fencing_token)
    }
    fn load_views<'a>(
        &'a self,
        projection: &'a str,
        generation: u64,
        ids: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Option<String>>>> {
        DelegateViewStore::load_views(self, projection, generation, ids)
    }
    fn commit<'a>(&'a self, projection: &'a str, commit: ViewCommit) -> BoxFuture<'a, Result<Written>> {
        DelegateViewStore::commit(self, projection, commit)
    }
    fn go_live<'a>(
        &'a self,
        projection: &'a str,
        generation: u64,
        fencing_token: u64,
    ) -> BoxFuture<'a, Result<Written>> {
        DelegateViewStore::go_live(self, projection, generation, fencing_token)
    }
    fn read_views<'a>(&'a self, projection: &'a str, ids: &'a [String]) -> BoxFuture<'a, Result<Vec<Option<String>>>> {
        DelegateViewStore::read_views(self, projection, ids)
    }
    fn list<'a>(
        &'a self,
        projection: &'a str,
        key: &'a IndexKey,
        range: &'a OrderRange,
        after: Option<&'a ListCursor>,
        limit: usize,
    ) -> BoxFuture<'a, Result<ViewPage>> {
        DelegateViewStore::list(self, projection, key, range, after, limit)
    }
    fn count<'a>(&'a self, projection: &'a str, keys: &'a [IndexKey]) -> BoxFuture<'a, Result<Vec<u64>>> {
        DelegateViewStore::count(self, projection, keys)
    }
    fn list_generation<'a>(
        &'a self,
        projection: &'a str,
        generation: u64,
        key: &'a IndexKey,
        range: &'a OrderRange,
        after: Option<&'a ListCursor>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<IndexedView>>> {
        DelegateViewStore::list_generation(self, projection, generation, key, range, after, limit)
    }
    fn count_generation<'a>(
        &'a self,
        projection: &'a str,
        generation: u64,
        keys: &'a [IndexKey],
    ) -> BoxFuture<'a, Result<Vec<u64>>> {
        DelegateViewStore::count_generation(self, projection, generation, keys)
    }
    fn dead_letters<'a>(&'a self, projection: &'a str) -> BoxFuture<'a, Result<Vec<DeadLetter>>> {
        DelegateViewStore::dead_letters(self, projection)
    }
    fn record_stop<'a>(
        &'a self,
        projection: &'a str,
        stop: Option<&'a ProjectionStop>,
        fencing_token: u64,
    ) -> BoxFuture<'a, Result<Written>> {
        DelegateViewStore::record_stop(self, projection, stop, fencing_token)
    }
    fn projections<'a>(&'a self) -> BoxFuture<'a, Result<Vec<String>>> {
        DelegateViewStore::projections(self)
    }
    fn remove_dead_letters<'a>(
        &'a self,
        projection: &'a str,
        which: &'a DeadLetterSelection,
        fencing_token: u64,
    ) -> BoxFuture<'a, Result<Written<u64>>> {
        DelegateViewStore::remove_dead_letters(self, projection, which, fencing_token)
    }
    fn changes(&self, projection: &str) -> Option<crate::store::ViewChanges> {
        DelegateViewStore::changes(self, projection)
    }
}

/// A lease manager that wraps another and forwards to it every method it does not override: the
/// blanket impl makes every implementation a [`LeaseManager`] whose methods are these.
///
/// In a module that imports both this trait and [`LeaseManager`], a method call on the wrapper
/// names a method of each: implement this one by path (as below), or call the manager's method
/// as `LeaseManager::acquire(&wrapper, ..)`.
///
/// # Examples
///
/// ```
/// use std::sync::Mutex;
/// use eventloom_core::{memory::MemoryLeases, store::{self, BoxFuture, Lease, LeaseManager}};
///
/// /// Remembers the names it was asked for; the memory manager hands the leases out.
/// #[derive(Default)]
/// struct Announcing {
///     inner: MemoryLeases,
///     asked: Mutex<Vec<String>>,
/// }
///
/// impl store::DelegateLeaseManager for Announcing {
///     type Inner = MemoryLeases;
///     fn inner(&self) -> &MemoryLeases {
///         &self.inner
///     }
///     fn acquire<'a>(&'a self, name: &'a str) -> BoxFuture<'a, eventloom_core::Result<Lease>> {
///         self.asked.lock().unwrap().push(name.to_owned());
///         self.inner.acquire(name)
///     }
/// }
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let leases = Announcing::default();
/// let lease = leases.acquire("tasks").await.unwrap();
/// assert!(leases.try_acquire("tasks").await.unwrap().is_none(), "forwarded: held");
/// assert_eq!(leases.leases("").await.unwrap().len(), 1);
/// assert_eq!(*leases.asked.lock().unwrap(), ["tasks"]);
/// drop(lease);
/// # });
/// ```
pub trait DelegateLeaseManager: Send + Sync + 'static {
    /// The manager it wraps.
    type Inner: LeaseManager + ?Sized;

    /// The manager every method not overridden goes to.
    fn inner(&self) -> &Self::Inner;

    /// [`LeaseManager::acquire`], forwarded.
    fn acquire<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Lease>> {
        self.inner().acquire(name)
    }

    /// [`LeaseManager::try_acquire`], forwarded.
    fn try_acquire<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<Lease>>> {
        self.inner().try_acquire(name)
    }

    /// [`LeaseManager::leases`], forwarded.
    fn leases<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<LeaseInfo>>> {
        self.inner().leases(prefix)
    }
}

impl<T: DelegateLeaseManager> LeaseManager for T {
    fn acquire<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Lease>> {
        DelegateLeaseManager::acquire(self, name)
    }
    fn try_acquire<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<Lease>>> {
        DelegateLeaseManager::try_acquire(self, name)
    }
    fn leases<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<LeaseInfo>>> {
        DelegateLeaseManager::leases(self, prefix)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::store::{AppendOutcome, ViewWrite};
    use crate::{Error, Fingerprint};

    /// A store of every kind that notes each call by name and fails it (answers `None` or
    /// `true` where a method cannot fail), so that a test sees where a call went.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<&'static str>>);

    impl Recorder {
        fn note<'a, T: Send + 'a>(&self, name: &'static str) -> BoxFuture<'a, Result<T>> {
            self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(name);
            Box::pin(std::future::ready(Err(Error::Shutdown)))
        }

        fn calls(&self) -> Vec<&'static str> {
            self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
        }
    }

    impl EventStore for Recorder {
        fn append<'a>(
            &'a self,
            _: &'a StreamId,
            _: ExpectedVersion,
            _: Vec<NewEvent>,
        ) -> BoxFuture<'a, Result<Appended>> {
            self.note("append")
        }
        fn append_command<'a>(
            &'a self,
            _: &'a StreamId,
            _: ExpectedVersion,
            _: Vec<NewEvent>,
            _: &'a CommandEntry,
        ) -> BoxFuture<'a, Result<Appended>> {
            self.note("append_command")
        }
        fn read_stream<'a>(&'a self, _: &'a StreamId, _: u64, _: usize) -> BoxFuture<'a, Result<Vec<RecordedEvent>>> {
            self.note("read_stream")
        }
        fn read_all<'a>(&'a self, _: Position, _: usize) -> BoxFuture<'a, Result<Vec<RecordedEvent>>> {
            self.note("read_all")
        }
        fn read_stream_bounded<'a>(
            &'a self,
            _: &'a StreamId,
            _: u64,
            _: usize,
            _: usize,
        ) -> BoxFuture<'a, Result<Vec<RecordedEvent>>> {
            self.note("read_stream_bounded")
        }
        fn read_all_bounded<'a>(
            &'a self,
            _: Position,
            _: usize,
            _: usize,
        ) -> BoxFuture<'a, Result<Vec<RecordedEvent>>> {
            self.note("read_all_bounded")
        }
        fn stream_version<'a>(&'a self, _: &'a StreamId) -> BoxFuture<'a, Result<u64>> {
            self.note("stream_version")
        }
        fn command_outcome<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<Option<CommandRecord>>> {
            self.note("command_outcome")
        }
        fn record_command<'a>(&'a self, _: &'a str, _: CommandRecord) -> BoxFuture<'a, Result<Option<CommandRecord>>> {
            self.note("record_command")
        }
        fn expire_commands<'a>(&'a self, _: Timestamp, _: usize) -> BoxFuture<'a, Result<u64>> {
            self.note("expire_commands")
        }
        fn forget_commands<'a>(&'a self, _: &'a [String]) -> BoxFuture<'a, Result<u64>> {
            self.note("forget_commands")
        }
        fn head<'a>(&'a self) -> BoxFuture<'a, Result<Option<Position>>> {
            self.note("head")
        }
        fn held_back<'a>(&'a self, _: u64) -> BoxFuture<'a, Result<u64>> {
            self.note("held_back")
        }
        fn count_after<'a>(&'a self, _: Position, _: u64) -> BoxFuture<'a, Result<u64>> {
            self.note("count_after")
        }
        fn wake_ups(&self) -> Option<watch::Receiver<u64>> {
            drop(self.note::<()>("wake_ups"));
            None
        }
        fn loads_may_lag(&self) -> bool {
            drop(self.note::<()>("loads_may_lag"));
            true
        }
        fn replica_lag<'a>(&'a self) -> BoxFuture<'a, Result<Option<ReplicaLag>>> {
            self.note("replica_lag")
        }
        fn append_relayed<'a>(
            &'a self,
            _: &'a str,
            _: u64,
            _: &'a StreamId,
            _: Vec<NewEvent>,
        ) -> BoxFuture<'a, Result<Relayed>> {
            self.note("append_relayed")
        }
        fn relayed<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<u64>> {
            self.note("relayed")
        }
    }

    impl ViewStore for Recorder {
        fn status<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<ProjectionStatus>> {
            self.note("status")
        }
        fn begin_generation<'a>(&'a self, _: &'a str, _: u32, _: u64) -> BoxFuture<'a, Result<Written<Generation>>> {
            self.note("begin_generation")
        }
        fn load_views<'a>(&'a self, _: &'a str, _: u64, _: &'a [String]) -> BoxFuture<'a, Result<Vec<Option<String>>>> {
            self.note("load_views")
        }
        fn commit<'a>(&'a self, _: &'a str, _: ViewCommit) -> BoxFuture<'a, Result<Written>> {
            self.note("commit")
        }
        fn go_live<'a>(&'a self, _: &'a str, _: u64, _: u64) -> BoxFuture<'a, Result<Written>> {
            self.note("go_live")
        }
        fn read_views<'a>(&'a self, _: &'a str, _: &'a [String]) -> BoxFuture<'a, Result<Vec<Option<String>>>> {
            self.note("read_views")
        }
        fn list<'a>(
            &'a self,
            _: &'a str,
            _: &'a IndexKey,
            _: &'a OrderRange,
            _: Option<&'a ListCursor>,
            _: usize,
        ) -> BoxFuture<'a, Result<ViewPage>> {
            self.note("list")
        }
        fn count<'a>(&'a self, _: &'a str, _: &'a [IndexKey]) -> BoxFuture<'a, Result<Vec<u64>>> {
            self.note("count")
        }
        fn list_generation<'a>(
            &'a self,
            _: &'a str,
            _: u64,
            _: &'a IndexKey,
            _: &'a OrderRange,
            _: Option<&'a ListCursor>,
            _: usize,
        ) -> BoxFuture<'a, Result<Vec<IndexedView>>> {
            self.note("list_generation")
        }
        fn count_generation<'a>(&'a self, _: &'a str, _: u64, _: &'a [IndexKey]) -> BoxFuture<'a, Result<Vec<u64>>> {
            self.note("count_generation")
        }
        fn dead_letters<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<Vec<DeadLetter>>> {
            self.note("dead_letters")
        }
        fn record_stop<'a>(
            &'a self,
            _: &'a str,
            _: Option<&'a ProjectionStop>,
            _: u64,
        ) -> BoxFuture<'a, Result<Written>> {
            self.note("record_stop")
        }
        fn projections<'a>(&'a self) -> BoxFuture<'a, Result<Vec<String>>> {
            self.note("projections")
        }
        fn remove_dead_letters<'a>(
            &'a self,
            _: &'a str,
            _: &'a DeadLetterSelection,
            _: u64,
        ) -> BoxFuture<'a, Result<Written<u64>>> {
            self.note("remove_dead_letters")
        }
    }

    impl LeaseManager for Recorder {
        fn acquire<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<Lease>> {
            self.note("acquire")
        }
        fn try_acquire<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<Option<Lease>>> {
            self.note("try_acquire")
        }
        fn leases<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<Vec<LeaseInfo>>> {
            self.note("leases")
        }
    }

    /// Wraps a recorder and overrides nothing.
    struct Through(Recorder);

    impl DelegateEventStore for Through {
        type Inner = Recorder;
        fn inner(&self) -> &Recorder {
            &self.0
        }
    }

    impl DelegateViewStore for Through {
        type Inner = dyn ViewStore;
        fn inner(&self) -> &dyn ViewStore {
            &self.0
        }
    }

    impl DelegateLeaseManager for Through {
        type Inner = Recorder;
        fn inner(&self) -> &Recorder {
            &self.0
        }
    }

    #[tokio::test]
    async fn every_event_store_method_reaches_the_inner_store_as_itself() {
        let through = Through(Recorder::default());
        let s = StreamId::new("s", "1").expect("a stream id");
        let at = Position::ZERO;
        let print: Fingerprint = "ab".repeat(32).parse().expect("a fingerprint");
        let entry = CommandEntry::new(print, Timestamp::from_micros(1));
        let record =
            CommandRecord::new(AppendOutcome { stream: s.clone(), first_version: 1, last_version: 0, position: at });
        let store: &dyn EventStore = &through;
        let failed = [
            store.append(&s, ExpectedVersion::Any, Vec::new()).await.is_err(),
            store.append_command(&s, ExpectedVersion::Any, Vec::new(), &entry).await.is_err(),
            store.read_stream(&s, 1, 10).await.is_err(),
            store.read_all(at, 10).await.is_err(),
            store.read_stream_bounded(&s, 1, 10, 100).await.is_err(),
            store.read_all_bounded(at, 10, 100).await.is_err(),
            store.stream_version(&s).await.is_err(),
            store.command_outcome("c").await.is_err(),
            store.record_command("c", record).await.is_err(),
            store.expire_commands(Timestamp::from_micros(1), 10).await.is_err(),
            store.forget_commands(&["c".to_owned()]).await.is_err(),
            store.head().await.is_err(),
            store.held_back(10).await.is_err(),
            store.count_after(at, 10).await.is_err(),
            store.wake_ups().is_none(),
            store.loads_may_lag(),
            store.replica_lag().await.is_err(),
            store.append_relayed("src", 1, &s, Vec::new()).await.is_err(),
            store.relayed("src").await.is_err(),
            store.fold_stream(&s, 1, 10, 100, &mut |_| Ok(())).await.is_err(),
        ];
        assert!(failed.iter().all(|f| *f), "every answer is the recorder's: {failed:?}");
        let calls = [
            "append",
            "append_command",
            "read_stream",
            "read_all",
            "read_stream_bounded",
            "read_all_bounded",
            "stream_version",
            "command_outcome",
            "record_command",
            "expire_commands",
            "forget_commands",
            "head",
            "held_back",
            "count_after",
            "wake_ups",
            "loads_may_lag",
            "replica_lag",
            "append_relayed",
            "relayed",
            // Through the wrapper's own bounded read.
            "read_stream_bounded",
        ];
        assert_eq!(through.0.calls(), calls);
    }

    #[tokio::test]
    async fn every_view_store_method_reaches_the_inner_store_as_itself() {
        let through = Through(Recorder::default());
        let views: &dyn ViewStore = &through;
        let ids = ["v".to_owned()];
        let key = IndexKey::new("i", "x");
        let range = OrderRange::all();
        let commit = ViewCommit {
            generation: 1,
            expected: None,
            checkpoint: Position::new(1, 1),
            fencing_token: 0,
            views: vec![ViewWrite::set("v", "{}")],
            dead_letters: Vec::new(),
            resolved: Vec::new(),
        };
        let failed = [
            views.status("p").await.is_err(),
            views.begin_generation("p", 1, 0).await.is_err(),
            views.load_views("p", 1, &ids).await.is_err(),
            views.commit("p", commit).await.is_err(),
            views.go_live("p", 1, 0).await.is_err(),
            views.read_views("p", &ids).await.is_err(),
            views.list("p", &key, &range, None, 10).await.is_err(),
            views.count("p", std::slice::from_ref(&key)).await.is_err(),
            views.list_generation("p", 1, &key, &range, None, 10).await.is_err(),
            views.count_generation("p", 1, std::slice::from_ref(&key)).await.is_err(),
            views.dead_letters("p").await.is_err(),
            views.record_stop("p", None, 0).await.is_err(),
            views.projections().await.is_err(),
            views.remove_dead_letters("p", &DeadLetterSelection::All, 0).await.is_err(),
        ];
        assert!(failed.iter().all(|f| *f), "every answer is the recorder's: {failed:?}");
        let calls = [
            "status",
            "begin_generation",
            "load_views",
            "commit",
            "go_live",
            "read_views",
            "list",
            "count",
            "list_generation",
            "count_generation",
            "dead_letters",
            "record_stop",
            "projections",
            "remove_dead_letters",
        ];
        assert_eq!(through.0.calls(), calls);
    }

    #[tokio::test]
    async fn every_lease_manager_method_reaches_the_inner_manager() {
        let through = Through(Recorder::default());
        let leases: &dyn LeaseManager = &through;
        assert!(leases.acquire("l").await.is_err());
        assert!(leases.try_acquire("l").await.is_err());
        assert!(leases.leases("").await.is_err());
        assert_eq!(through.0.calls(), ["acquire", "try_acquire", "leases"]);
    }

    /// A wrapper over `Arc<dyn ViewStore>` is a store, and so is an `Arc` of it (the blanket
    /// impl and the one for `Arc` do not overlap).
    #[tokio::test]
    async fn a_wrapper_over_a_shared_store_is_a_store_and_so_is_an_arc_of_it() {
        struct Shared(std::sync::Arc<dyn ViewStore>);
        impl DelegateViewStore for Shared {
            type Inner = dyn ViewStore;
            fn inner(&self) -> &dyn ViewStore {
                &*self.0
            }
        }
        let recorder = std::sync::Arc::new(Recorder::default());
        let shared = std::sync::Arc::new(Shared(recorder.clone()));
        assert!(ViewStore::status(&shared, "p").await.is_err(), "Arc<Shared>: ViewStore");
        let picked: std::sync::Arc<dyn ViewStore> = shared;
        assert!(picked.projections().await.is_err());
        assert_eq!(recorder.calls(), ["status", "projections"]);
    }
}

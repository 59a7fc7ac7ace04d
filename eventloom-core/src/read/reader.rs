//! The read side's read path: typed views, read-your-writes.
//!
//! A query is a plain `async fn` over a [`Reader`]: the `Query`/`QueryHandler` traits of 0.1
//! are gone, since nothing in the framework used them (a type per question and a trait to answer
//! it added ceremony, and a handler typed by its query could not be routed by the App any better
//! than a method call).

use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::de::DeserializeOwned;
use tokio::sync::watch;

use super::partition::ViewKey;
use super::partition_reads;

use crate::{
    CommandOutcome, Error, IndexKey, ListCursor, OrderRange, Position, Projection, ProjectionStatus, ProjectionStop,
    Result, StopKind, ViewStore,
};

/// Typed reads of one projection's live views: by id, by index list with paging, counts, and
/// waiting for them to catch up (read-your-writes).
///
/// Every read answers from the live generation; while there is none (the first build, or a
/// rebuild after the store lost its data) reads fail with [`Error::NotBuilt`] and
/// [`wait_for`](Self::wait_for) waits.
///
/// # Examples
///
/// ```
/// use eventloom_core::{Position, memory::MemoryViewStore, store::{ViewCommit, ViewStore, ViewWrite}, read::ViewReader};
/// use std::time::Duration;
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let store = MemoryViewStore::default();
/// let generation = store.begin_generation("answers", 1, 0).await.unwrap().unwrap();
/// let commit = ViewCommit { generation: generation.id, expected: None, checkpoint: Position::new(1, 1),
///     fencing_token: 0, views: vec![ViewWrite::set("a", "41")], dead_letters: Vec::new(), resolved: Vec::new() };
/// store.commit("answers", commit).await.unwrap().unwrap();
/// store.go_live("answers", generation.id, 0).await.unwrap().unwrap();
/// let reader = ViewReader::<u32>::new(store, "answers");
/// reader.wait_for(Position::new(1, 1), Duration::from_secs(1)).await.unwrap();
/// assert_eq!(reader.get("a").await.unwrap(), Some(41));
/// assert!(reader.wait_for(Position::new(2, 2), Duration::from_millis(10)).await.is_err());
/// # });
/// ```
pub struct ViewReader<V> {
    store: Arc<dyn ViewStore>,
    projection: String,
    watch: Arc<CheckpointWatch>,
    /// Bumped by the projection's runner in this process after each write (installed by the
    /// [`App`](crate::App)): waits re-read the status once per bump.
    wake_ups: Option<watch::Receiver<u64>>,
    /// Whether waits also heed writes of other processes (always without wake-ups; with them,
    /// when a runner in another process may be the one that writes): woken by the store's
    /// [`changes`](ViewStore::changes), polling every [`safety_poll`](Self::with_safety_poll)
    /// while it listens, and every [`WATCH_INTERVAL`] otherwise.
    poll_too: bool,
    /// How often waits read the status while the store's change signal listens.
    safety_poll: Duration,
    /// How a partitioned projection places a view id in a partition; `None` when it is whole.
    partitioned: Option<ViewKey>,
    _view: PhantomData<fn() -> V>,
}

impl<V> Clone for ViewReader<V> {
    fn clone(&self) -> Self {
        ViewReader {
            store: self.store.clone(),
            projection: self.projection.clone(),
            watch: self.watch.clone(),
            wake_ups: self.wake_ups.clone(),
            poll_too: self.poll_too,
            safety_poll: self.safety_poll,
            partitioned: self.partitioned,
            _view: PhantomData,
        }
    }
}

/// How often the shared poller reads the checkpoint while queries wait for it, when the store
/// tells no changes (or its change signal does not listen now).
const WATCH_INTERVAL: Duration = Duration::from_millis(2);

/// How often the shared poller reads the checkpoint while the store's change signal listens:
/// a change whose notification was lost is seen this late.
pub const SAFETY_POLL: Duration = Duration::from_millis(500);

/// One poller of the live checkpoint for every query of a reader (and its clones) that waits
/// for it: a thousand waiting queries cost one status read per interval, not a thousand.
#[derive(Debug)]
struct CheckpointWatch {
    checkpoint: watch::Sender<Seen>,
    polling: AtomicBool,
}

/// What the poller last read of a projection's status.
#[derive(Debug, Clone, Default, PartialEq)]
struct Seen {
    checkpoint: Option<Position>,
    /// A stop that needs a fix ([`StopKind::Failed`]); a runner waiting for a newer release is
    /// expected to be replaced, so waits go on then.
    failed: Option<ProjectionStop>,
}

impl Seen {
    fn of(status: &ProjectionStatus) -> Self {
        Seen {
            checkpoint: status.checkpoint(),
            failed: status.active_stop().filter(|stop| stop.kind == StopKind::Failed).cloned(),
        }
    }
}

impl CheckpointWatch {
    fn new() -> Self {
        CheckpointWatch { checkpoint: watch::Sender::new(Seen::default()), polling: AtomicBool::new(false) }
    }

    /// Starts the poller unless it runs; it stops by itself when no query waits. It reads the
    /// status once, then again after each bump of `wake_ups` (the runner in this process wrote)
    /// and, when `poll_too`, after each change the store tells ([`ViewStore::changes`]), every
    /// `safety_poll` while the store's signal listens, and every [`WATCH_INTERVAL`] while it
    /// does not (or the store has none).
    fn ensure_polling(
        self: &Arc<Self>,
        store: &Arc<dyn ViewStore>,
        projection: &str,
        mut wake_ups: Option<watch::Receiver<u64>>,
        poll_too: bool,
        safety_poll: Duration,
        partitioned: bool,
    ) {
        if self.polling.swap(true, Ordering::AcqRel) {
            return;
        }
        let (watch, store, projection) = (self.clone(), store.clone(), projection.to_owned());
        // Subscribed before the first read, so that no change after it goes untold.
        let mut changes = if poll_too { store.changes(&projection) } else { None };
        tokio::spawn(async move {
            loop {
                if watch.checkpoint.receiver_count() == 0 {
                    watch.polling.store(false, Ordering::Release);
                    // A query that began waiting just now, after seeing the poller running,
                    // must not be left without one.
                    if watch.checkpoint.receiver_count() == 0 || watch.polling.swap(true, Ordering::AcqRel) {
                        return;
                    }
                }
                // Marked seen before the read, so that a write landing during it wakes the next.
                if let Some(wake_ups) = &mut wake_ups {
                    wake_ups.borrow_and_update();
                }
                if let Some(changes) = &mut changes {
                    changes.mark_seen();
                }
                let mut retry_soon = false;
                match partition_reads::status_of(&*store, &projection, partitioned).await {
                    Ok(status) => {
                        let now = Seen::of(&status);
                        watch.checkpoint.send_if_modified(|seen| {
                            let changed = *seen != now;
                            *seen = now;
                            changed
                        });
                    }
                    Err(error) => {
                        tracing::debug!(%error, projection, "cannot read the checkpoint; retrying");
                        retry_soon = true;
                    }
                }
                let poll = if retry_soon {
                    Some(WATCH_INTERVAL)
                } else if !poll_too {
                    None
                } else {
                    match &changes {
                        Some(changes) if changes.listening() => Some(safety_poll),
                        _ => Some(WATCH_INTERVAL),
                    }
                };
                let woken = async {
                    if let Some(wake_ups) = &mut wake_ups {
                        if wake_ups.changed().await.is_ok() {
                            return;
                        }
                    }
                    // No runner here, or its side is gone: only the clock wakes the poller.
                    std::future::pending::<()>().await
                };
                let told = async {
                    match &mut changes {
                        Some(changes) => changes.changed().await.is_ok(),
                        None => std::future::pending().await,
                    }
                };
                // Waiters that all gave up stop the poller without waiting for a write.
                let abandoned = async {
                    while watch.checkpoint.receiver_count() > 0 {
                        tokio::time::sleep(WATCH_INTERVAL * 50).await;
                    }
                };
                let store_gone = tokio::select! {
                    () = woken => false,
                    open = told => !open,
                    () = tokio::time::sleep(poll.unwrap_or(Duration::ZERO)), if poll.is_some() => false,
                    () = abandoned => false,
                };
                if store_gone {
                    // The store's signal closed: polling alone from now on.
                    changes = None;
                }
            }
        });
    }
}

impl<V> std::fmt::Debug for ViewReader<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ViewReader").field("projection", &self.projection).finish_non_exhaustive()
    }
}

/// One page of typed views from [`ViewReader::list`].
///
/// # Examples
///
/// ```
/// let page = eventloom_core::read::Page::new(vec![("a".to_string(), 1)], None);
/// assert_eq!(page.views[0].1, 1);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Page<V> {
    /// The views, by id, in the list's order.
    pub views: Vec<(String, V)>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<ListCursor>,
}

impl<V> Page<V> {
    /// A page of `views` (by id, in the list's order), the next one starting at `next`.
    pub fn new(views: Vec<(String, V)>, next: Option<ListCursor>) -> Self {
        Page { views, next }
    }
}

impl<V: DeserializeOwned> ViewReader<V> {
    /// Reads the views of `projection` from `store`.
    pub fn new(store: impl ViewStore, projection: impl Into<String>) -> Self {
        ViewReader {
            store: Arc::new(store),
            projection: projection.into(),
            watch: Arc::new(CheckpointWatch::new()),
            wake_ups: None,
            poll_too: true,
            safety_poll: SAFETY_POLL,
            partitioned: None,
            _view: PhantomData,
        }
    }

    /// Reads from an already shared store, woken by `wake_ups` when given, and polling too
    /// when `poll_too` (or without wake-ups).
    pub(crate) fn shared(
        store: Arc<dyn ViewStore>,
        projection: impl Into<String>,
        wake_ups: Option<watch::Receiver<u64>>,
        poll_too: bool,
    ) -> Self {
        ViewReader {
            store,
            projection: projection.into(),
            watch: Arc::new(CheckpointWatch::new()),
            poll_too: poll_too || wake_ups.is_none(),
            safety_poll: SAFETY_POLL,
            wake_ups,
            partitioned: None,
            _view: PhantomData,
        }
    }

    /// Waits poll the status every `every` (instead of [`SAFETY_POLL`]) while the store's
    /// change signal listens ([`ViewStore::changes`]): how late a change whose notification
    /// was lost is seen, against one status read per interval while queries wait. A store
    /// without a change signal is polled every 2 ms whatever this says, and no interval is
    /// shorter than those 2 ms. Clones of a reader share their waits' watcher: the interval of
    /// the clone whose wait started it holds for all.
    ///
    /// # Examples
    ///
    /// ```
    /// use eventloom_core::{Position, memory::MemoryViewStore, read::ViewReader};
    /// use std::time::Duration;
    ///
    /// let reader = ViewReader::<u32>::new(MemoryViewStore::default(), "answers")
    ///     .with_safety_poll(Duration::from_secs(2));
    /// ```
    pub fn with_safety_poll(mut self, every: Duration) -> Self {
        // Never faster than the poll without a signal: zero would read the status back to back.
        self.safety_poll = every.max(WATCH_INTERVAL);
        self
    }

    /// Reads a partitioned projection, placing view ids in partitions with `key`.
    pub(crate) fn partitioned(mut self, key: ViewKey) -> Self {
        self.partitioned = Some(key);
        self
    }

    fn decode(&self, id: &str, json: &str) -> Result<V> {
        serde_json::from_str(json)
            .map_err(|source| Error::Serde { what: format!("view {id:?} of projection {}", self.projection), source })
    }

    /// One view. An id over [`StreamId::MAX_ID_LEN`](crate::StreamId::MAX_ID_LEN) bytes, or with a NUL byte, is
    /// looked up as the projector stored it ([`stored_view_id`](crate::stored_view_id)).
    pub async fn get(&self, id: &str) -> Result<Option<V>> {
        Ok(self.get_many(&[id.to_owned()]).await?.pop().flatten())
    }

    /// Several views in one round-trip, in the order asked.
    pub async fn get_many(&self, ids: &[String]) -> Result<Vec<Option<V>>> {
        // Ids over the store's limits are kept as digests (see `stored_view_id`).
        let fitted: Option<Vec<String>> = ids
            .iter()
            .any(|id| matches!(crate::stored_view_id(id), std::borrow::Cow::Owned(_)))
            .then(|| ids.iter().map(|id| crate::stored_view_id(id).into_owned()).collect());
        let stored_ids = fitted.as_deref().unwrap_or(ids);
        let stored = match self.partitioned {
            Some(key) => partition_reads::get_many(&*self.store, &self.projection, key, stored_ids, ids).await?,
            None => self.store.read_views(&self.projection, stored_ids).await?,
        };
        ids.iter().zip(stored).map(|(id, json)| json.map(|json| self.decode(id, &json)).transpose()).collect()
    }

    /// Up to `limit` views of one index list, in its order, starting after `after` (the `next`
    /// of the page before). The key is [fitted](IndexKey::fitted) as the projector stored it,
    /// so a value over the store's limit still finds its views. Views are listed under their
    /// stored ids: an id over [`StreamId::MAX_ID_LEN`](crate::StreamId::MAX_ID_LEN) bytes (or with a NUL byte) is its
    /// digest form ([`stored_view_id`](crate::stored_view_id)), which [`get`](Self::get) does not
    /// take back; keep the id in the view when a projection's ids can be that long.
    pub async fn list(&self, key: &IndexKey, after: Option<&ListCursor>, limit: usize) -> Result<Page<V>> {
        self.list_range(key, &OrderRange::all(), after, limit).await
    }

    /// Up to `limit` views of one index list whose sort keys lie in `range` ("stock below 10":
    /// `OrderRange::ints(..10)` over a list ordered with
    /// [`IndexEntry::ordered_by_int`](crate::IndexEntry::ordered_by_int)), in the list's order,
    /// starting after `after`; as [`list`](Self::list) otherwise.
    ///
    /// # Examples
    ///
    /// ```
    /// use eventloom_core::{IndexEntry, Position, store::{IndexKey, ViewCommit, ViewStore, ViewWrite}, memory::MemoryViewStore, read::{OrderRange, ViewReader}};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
    /// let store = MemoryViewStore::default();
    /// let generation = store.begin_generation("stock", 1, 0).await.unwrap().unwrap();
    /// let views = [("bolts", 4), ("nuts", 40), ("washers", 9)].map(|(id, n)| {
    ///     ViewWrite::set(id, n.to_string()).joining(vec![IndexEntry::new("stock", "all").ordered_by_int(n)])
    /// });
    /// let commit = ViewCommit { generation: generation.id, expected: None, checkpoint: Position::new(1, 1),
    ///     fencing_token: 0, views: views.to_vec(), dead_letters: Vec::new(), resolved: Vec::new() };
    /// store.commit("stock", commit).await.unwrap().unwrap();
    /// store.go_live("stock", generation.id, 0).await.unwrap().unwrap();
    /// let reader = ViewReader::<i64>::new(store, "stock");
    /// let low = reader.list_range(&IndexKey::new("stock", "all"), &OrderRange::ints(..10), None, 10).await.unwrap();
    /// assert_eq!(low.views, vec![("bolts".to_owned(), 4), ("washers".to_owned(), 9)]);
    /// # });
    /// ```
    pub async fn list_range(
        &self,
        key: &IndexKey,
        range: &OrderRange,
        after: Option<&ListCursor>,
        limit: usize,
    ) -> Result<Page<V>> {
        let key = key.fitted();
        let page = match self.partitioned {
            Some(_) => partition_reads::list(&*self.store, &self.projection, &key, range, after, limit).await?,
            None => self.store.list(&self.projection, &key, range, after, limit).await?,
        };
        let views = page
            .views
            .into_iter()
            .map(|(id, json)| {
                let view = self.decode(&id, &json)?;
                Ok((id, view))
            })
            .collect::<Result<_>>()?;
        Ok(Page { views, next: page.next })
    }

    /// How many views each index list holds, read at one instant.
    pub async fn count(&self, keys: &[IndexKey]) -> Result<Vec<u64>> {
        let keys: Vec<IndexKey> = keys.iter().map(IndexKey::fitted).collect();
        match self.partitioned {
            Some(_) => partition_reads::count(&*self.store, &self.projection, &keys).await,
            None => self.store.count(&self.projection, &keys).await,
        }
    }

    /// The live generation and any being built. Of a partitioned projection: its partition set
    /// as live (the set's epoch as id) at the least checkpoint of its partitions, and a stop
    /// one of them recorded.
    pub async fn status(&self) -> Result<ProjectionStatus> {
        partition_reads::status_of(&*self.store, &self.projection, self.partitioned.is_some()).await
    }

    /// The live views' checkpoint (`None` before any is live).
    pub async fn checkpoint(&self) -> Result<Option<Position>> {
        Ok(self.status().await?.checkpoint())
    }

    /// Waits until the live views have processed `position` (read-your-writes: pass the
    /// position a command returned), or fails with [`Error::Timeout`]. The waits of a reader
    /// (and its clones) share one watch of the projection's status, woken by the store's
    /// notifications ([`ViewStore::changes`]) whichever process wrote, with a slow safety poll
    /// ([`with_safety_poll`](Self::with_safety_poll)); a store without them is polled every 2 ms.
    /// While views are being
    /// built it waits for them to go live, and a store that is unavailable meanwhile is asked
    /// again until the deadline. When the projection's runner stopped on an event it cannot
    /// process ([`StopKind::Failed`], recorded in the view store by a runner in any process), it
    /// fails at once with [`Error::Stopped`]; a runner that waits for a newer release is expected
    /// to be replaced, so it waits on.
    pub async fn wait_for(&self, position: Position, timeout: Duration) -> Result<()> {
        if position == Position::ZERO {
            return Ok(());
        }
        let deadline = tokio::time::Instant::now() + timeout;
        // Asked directly first: the common case (already there) costs one read, and an error
        // that retrying will not fix reaches the caller.
        let stopped =
            |projection: &str, stop: ProjectionStop| Error::Stopped { projection: projection.to_owned(), stop };
        match self.status().await.map(|status| Seen::of(&status)) {
            Ok(seen) if seen.checkpoint.is_some_and(|c| c >= position) => return Ok(()),
            Ok(Seen { failed: Some(stop), .. }) => return Err(stopped(&self.projection, stop)),
            Ok(_) => {}
            // A store that is restarting may be back before the deadline.
            Err(error) if error.is_transient() => tracing::debug!(%error, "waiting for the views"),
            Err(error) => return Err(error),
        }
        let mut checkpoint = self.watch.checkpoint.subscribe();
        let partitioned = self.partitioned.is_some();
        self.watch.ensure_polling(
            &self.store,
            &self.projection,
            self.wake_ups.clone(),
            self.poll_too,
            self.safety_poll,
            partitioned,
        );
        loop {
            let seen = checkpoint.borrow_and_update().clone();
            if seen.checkpoint.is_some_and(|c| c >= position) {
                return Ok(());
            }
            if let Some(stop) = seen.failed {
                return Err(stopped(&self.projection, stop));
            }
            match tokio::time::timeout_at(deadline, checkpoint.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(Error::Shutdown),
                Err(_) => return Err(Error::Timeout(timeout)),
            }
        }
    }
}

impl From<&CommandOutcome> for Position {
    /// The position a query waits for to see the command's effect.
    fn from(outcome: &CommandOutcome) -> Self {
        outcome.position
    }
}

impl From<CommandOutcome> for Position {
    /// The position a query waits for to see the command's effect.
    fn from(outcome: CommandOutcome) -> Self {
        outcome.position
    }
}

/// Typed reads of one projection's live views: [`ViewReader`] typed by the projection itself, so
/// no name string can be wrong. Get one from [`App::reader`](crate::App::reader) (whose waits
/// are woken by the projector's commits when it runs in the same process), or with
/// [`Reader::new`] over any view store (whose waits are woken by the store's notifications,
/// [`ViewStore::changes`], or poll the status every 2 ms when it has none).
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
/// use eventloom_core::{Reader, memory::MemoryViewStore};
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let totals = Reader::<Totals>::new(MemoryViewStore::default());
/// assert!(totals.get("c-1").await.is_err(), "not built yet");
/// # });
/// ```
pub struct Reader<P: Projection> {
    views: ViewReader<P::View>,
}

impl<P: Projection> Clone for Reader<P> {
    fn clone(&self) -> Self {
        Reader { views: self.views.clone() }
    }
}

impl<P: Projection> std::fmt::Debug for Reader<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("projection", &self.views.projection)
            .field("woken", &self.views.wake_ups.is_some())
            .finish_non_exhaustive()
    }
}

impl<P: Projection> Reader<P> {
    /// Reads `P`'s views from `store` under [`P::NAME`](Projection::NAME); waits are woken by
    /// the store's change signal ([`ViewStore::changes`]), or poll.
    pub fn new(store: impl ViewStore) -> Self {
        Reader::named(store, P::NAME)
    }

    /// Reads the views of the instance of `P` named `name` (see [`Projection::name`]) from
    /// `store`; waits as [`new`](Self::new)'s.
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
    /// use eventloom_core::Reader;
    /// use eventloom_core::memory::MemoryViewStore;
    ///
    /// let eu = Reader::<Totals>::named(MemoryViewStore::default(), "totals_eu");
    /// assert_eq!(eu.name(), "totals_eu");
    /// ```
    pub fn named(store: impl ViewStore, name: impl Into<String>) -> Self {
        Reader { views: ViewReader::new(store, name) }
    }

    pub(crate) fn shared(
        store: Arc<dyn ViewStore>,
        name: String,
        wake_ups: Option<watch::Receiver<u64>>,
        poll_too: bool,
    ) -> Self {
        Reader { views: ViewReader::shared(store, name, wake_ups, poll_too) }
    }

    /// Reads `P` as a partitioned projection ([`ProjectionOptions::partitions`](crate::ProjectionOptions::partitions)):
    /// the partition set first, then the partitions' views; lists merged in order, counts
    /// summed. An [`App`](crate::App)'s readers know it already.
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
    /// use eventloom_core::{Error, Reader, memory::MemoryViewStore};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
    /// let totals = Reader::<Totals>::new(MemoryViewStore::default()).partitioned();
    /// assert!(matches!(totals.get("c-1").await, Err(Error::NotBuilt { .. })), "no partition set yet");
    /// # });
    /// ```
    pub fn partitioned(mut self) -> Self {
        self.views = self.views.partitioned(P::view_partition_key);
        self
    }

    /// The name of the projection it reads.
    pub fn name(&self) -> &str {
        &self.views.projection
    }

    /// One view (see [`ViewReader::get`]).
    pub async fn get(&self, id: &str) -> Result<Option<P::View>> {
        self.views.get(id).await
    }

    /// Several views in one round-trip, in the order asked (see [`ViewReader::get_many`]).
    pub async fn get_many(&self, ids: &[String]) -> Result<Vec<Option<P::View>>> {
        self.views.get_many(ids).await
    }

    /// One page of an index list (see [`ViewReader::list`]).
    pub async fn list(&self, key: &IndexKey, after: Option<&ListCursor>, limit: usize) -> Result<Page<P::View>> {
        self.views.list(key, after, limit).await
    }

    /// How many views each index list holds (see [`ViewReader::count`]).
    pub async fn count(&self, keys: &[IndexKey]) -> Result<Vec<u64>> {
        self.views.count(keys).await
    }

    /// The live generation and any being built.
    pub async fn status(&self) -> Result<ProjectionStatus> {
        self.views.status().await
    }

    /// Waits until the live views include `position`: pass a command's outcome (`&outcome`) or
    /// a [`Position`] (read-your-writes). See [`ViewReader::wait_for`] for the errors.
    pub async fn wait_for(&self, position: impl Into<Position>, timeout: Duration) -> Result<()> {
        self.views.wait_for(position.into(), timeout).await
    }

    /// How often waits poll while the store's change signal listens (see
    /// [`ViewReader::with_safety_poll`]).
    pub fn with_safety_poll(mut self, every: Duration) -> Self {
        self.views = self.views.with_safety_poll(every);
        self
    }

    /// The untyped reader underneath.
    pub fn view_reader(&self) -> &ViewReader<P::View> {
        &self.views
    }
}

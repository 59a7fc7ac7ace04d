//! The interface store adapters implement: [`EventStore`], [`SnapshotStore`], [`ViewStore`] and
//! [`LeaseManager`]; and, for wrappers that change one or two methods of a store and forward the
//! rest, [`DelegateEventStore`], [`DelegateViewStore`] and [`DelegateLeaseManager`].

pub(crate) mod changes;
pub(crate) mod delegate;
pub(crate) mod lease;
pub(crate) mod view;

pub use changes::{ChangesClosed, Listening, ViewChangeHub, ViewChanges};
pub use delegate::{DelegateEventStore, DelegateLeaseManager, DelegateViewStore};
pub use lease::{Lease, LeaseHolder, LeaseInfo, LeaseManager, MAX_LEASE_NAME_LEN, validate_lease_name};
pub(crate) use view::superseded;
pub use view::{
    DeadLetter, DeadLetterSelection, Generation, IndexEntry, IndexKey, IndexedView, ListCursor, OrderRange,
    ProjectionStatus, ProjectionStop, Refusal, StopKind, ViewCommit, ViewPage, ViewStore, ViewWrite, Written,
    stored_view_id,
};

/// The future a store method returns: boxed, `Send`, borrowing the store and the arguments for
/// `'a`. The store traits are written with it rather than `async fn` so that they stay usable
/// as `dyn EventStore` (and read plainly here); an implementation wraps its body in
/// `Box::pin(async move { ... })`.
///
/// # Examples
///
/// ```
/// use eventloom_core::Result;
/// use eventloom_core::store::{BoxFuture, Lease, LeaseInfo, LeaseManager};
///
/// /// Leadership that is never contended: every caller leads at once, with token 1.
/// struct AlwaysLead;
///
/// impl LeaseManager for AlwaysLead {
///     fn acquire<'a>(&'a self, _name: &'a str) -> BoxFuture<'a, Result<Lease>> {
///         Box::pin(async move {
///             let (keep, lost) = tokio::sync::watch::channel(false);
///             Ok(Lease::new(1, lost, keep))
///         })
///     }
///
///     fn try_acquire<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<Lease>>> {
///         Box::pin(async move { Ok(Some(self.acquire(name).await?)) })
///     }
///
///     fn leases<'a>(&'a self, _prefix: &'a str) -> BoxFuture<'a, Result<Vec<LeaseInfo>>> {
///         Box::pin(async move { Ok(Vec::new()) })
///     }
/// }
/// ```
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::model::EventRef;
use crate::{
    ExpectedVersion, Fingerprint, NewEvent, Position, RecordedEvent, Result, StreamId, Subscription, Timestamp,
};

/// What an append wrote.
///
/// # Examples
///
/// ```
/// use eventloom_core::{Position, StreamId, store::AppendOutcome};
///
/// let o = AppendOutcome {
///     stream: StreamId::new("task", "1").unwrap(),
///     first_version: 3,
///     last_version: 4,
///     position: Position::new(9, 12),
/// };
/// assert_eq!(o.appended(), 2);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppendOutcome {
    /// The stream appended to.
    pub stream: StreamId,
    /// The version of the first event written.
    pub first_version: u64,
    /// The stream's version after the append: the version of the last event written.
    pub last_version: u64,
    /// The position of the last event written; a query that waits for it reads this write.
    pub position: Position,
}

impl AppendOutcome {
    /// How many events the append wrote.
    pub fn appended(&self) -> u64 {
        (self.last_version + 1).saturating_sub(self.first_version)
    }
}

/// The longest refusal reason a [`CommandRecord`] keeps, in bytes of UTF-8: a longer one is cut
/// at the last character boundary within it (see [`bounded_refusal`]).
pub const MAX_REFUSAL_BYTES: usize = 1024;

/// `reason` cut to at most [`MAX_REFUSAL_BYTES`] bytes, at a character boundary.
///
/// # Examples
///
/// ```
/// use eventloom_core::store::{MAX_REFUSAL_BYTES, bounded_refusal};
///
/// assert_eq!(bounded_refusal("insufficient funds"), "insufficient funds");
/// let long = "é".repeat(MAX_REFUSAL_BYTES); // two bytes each
/// assert_eq!(bounded_refusal(&long).len(), MAX_REFUSAL_BYTES);
/// let odd = format!("x{long}");
/// assert_eq!(bounded_refusal(&odd).len(), MAX_REFUSAL_BYTES - 1, "never inside a character");
/// ```
pub fn bounded_refusal(reason: &str) -> &str {
    if reason.len() <= MAX_REFUSAL_BYTES {
        return reason;
    }
    let mut end = MAX_REFUSAL_BYTES;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

/// What a command id did the first time: the outcome of the command's append (or, for a no-op
/// or a recorded refusal, the stream as the command found it), the fingerprint of the request
/// it was used for, the refusal when the aggregate refused it, when it was recorded, and whether
/// it is kept until forgotten (see [`EventStore::expire_commands`]).
///
/// Marked `#[non_exhaustive]`: build one with [`new`](Self::new) and the `with_*` methods.
///
/// # Examples
///
/// ```
/// use eventloom_core::{Position, StreamId, store::{AppendOutcome, CommandRecord}};
///
/// let outcome = AppendOutcome {
///     stream: StreamId::new("task", "1").unwrap(),
///     first_version: 1,
///     last_version: 1,
///     position: Position::new(7, 1),
/// };
/// let record = CommandRecord::new(outcome);
/// assert!(record.fingerprint.is_none(), "recorded before fingerprints were kept");
/// assert!(record.refusal.is_none(), "not a refusal");
/// assert!(!record.kept, "expires with the retention");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CommandRecord {
    /// What the command appended, or, for a no-op or a refusal, the stream as it found it.
    pub outcome: AppendOutcome,
    /// The [`Fingerprint`] of the command's request; `None` for an outcome recorded without one
    /// (by a plain [`EventStore::append`], or before the store kept fingerprints).
    pub fingerprint: Option<Fingerprint>,
    /// Why the aggregate refused the command (the rejection's `Display` text, at most
    /// [`MAX_REFUSAL_BYTES`]), when the refusal was recorded
    /// ([`ExecuteOptions::record_refusal`](crate::ExecuteOptions::record_refusal)); `None` for
    /// an append or a no-op. A refusal appended nothing: its outcome has no events.
    #[serde(default)]
    pub refusal: Option<String>,
    /// When the record was made: by the engine's clock for the commands it executes, by the
    /// store's for a plain [`EventStore::append`] carrying a command id (on PostgreSQL, rows from
    /// before migration 10 have the time of that migration).
    #[serde(default)]
    pub recorded_at: Timestamp,
    /// Kept until [forgotten](EventStore::forget_commands), never
    /// [expired](EventStore::expire_commands)
    /// ([`ExecuteOptions::keep_command_id`](crate::ExecuteOptions::keep_command_id)).
    #[serde(default)]
    pub kept: bool,
}

impl CommandRecord {
    /// The record of `outcome`, made now (by the system clock), with no fingerprint and no
    /// refusal, not kept.
    pub fn new(outcome: AppendOutcome) -> Self {
        CommandRecord { outcome, fingerprint: None, refusal: None, recorded_at: Timestamp::now(), kept: false }
    }

    /// The record of `outcome` as [`append_command`](EventStore::append_command) keeps it
    /// under `entry`.
    pub fn of_entry(outcome: AppendOutcome, entry: &CommandEntry) -> Self {
        CommandRecord {
            outcome,
            fingerprint: Some(entry.fingerprint),
            refusal: None,
            recorded_at: entry.recorded_at,
            kept: entry.kept,
        }
    }

    /// The record, made at `at`.
    pub fn with_recorded_at(mut self, at: Timestamp) -> Self {
        self.recorded_at = at;
        self
    }

    /// The record, kept until forgotten.
    pub fn keep(mut self) -> Self {
        self.kept = true;
        self
    }

    /// The record with the request's fingerprint.
    pub fn with_fingerprint(mut self, fingerprint: Fingerprint) -> Self {
        self.fingerprint = Some(fingerprint);
        self
    }

    /// The record of a refusal for `reason`, cut to [`MAX_REFUSAL_BYTES`] (see
    /// [`bounded_refusal`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use eventloom_core::{Position, StreamId, store::{AppendOutcome, CommandRecord}};
    ///
    /// let as_found = AppendOutcome {
    ///     stream: StreamId::new("account", "1").unwrap(),
    ///     first_version: 4,
    ///     last_version: 3,
    ///     position: Position::new(7, 3),
    /// };
    /// let record = CommandRecord::new(as_found).with_refusal("insufficient funds");
    /// assert_eq!(record.refusal.as_deref(), Some("insufficient funds"));
    /// ```
    pub fn with_refusal(mut self, reason: impl Into<String>) -> Self {
        let mut reason = reason.into();
        let bound = bounded_refusal(&reason).len();
        reason.truncate(bound);
        self.refusal = Some(reason);
        self
    }
}

/// What [`append_command`](EventStore::append_command) keeps with a command id besides the
/// outcome: the request's [`Fingerprint`], when the command was executed, and whether the record
/// is kept until forgotten.
///
/// Marked `#[non_exhaustive]`: build one with [`new`](Self::new).
///
/// # Examples
///
/// ```
/// use eventloom_core::{model::Timestamp, store::CommandEntry, write::Fingerprint};
///
/// let print: Fingerprint = "ab".repeat(32).parse().unwrap();
/// let entry = CommandEntry::new(print, Timestamp::from_micros(1_000)).keep();
/// assert!(entry.kept && entry.fingerprint == print);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CommandEntry {
    /// The fingerprint of the command's request.
    pub fingerprint: Fingerprint,
    /// When the command was executed: the record's [`CommandRecord::recorded_at`].
    pub recorded_at: Timestamp,
    /// Whether the record is kept until forgotten ([`CommandRecord::kept`]).
    pub kept: bool,
}

impl CommandEntry {
    /// The entry of a request with `fingerprint` executed at `recorded_at`, not kept.
    pub fn new(fingerprint: Fingerprint, recorded_at: Timestamp) -> Self {
        CommandEntry { fingerprint, recorded_at, kept: false }
    }

    /// The entry, kept until forgotten.
    pub fn keep(mut self) -> Self {
        self.kept = true;
        self
    }
}

/// What an append came to when the store answered: the events written, or, for events carrying
/// a command id an earlier append (or [`record_command`](EventStore::record_command)) carried,
/// nothing written and what that id did the first time. Failures (a conflict, an outage) are
/// the [`Result`]'s.
///
/// # Examples
///
/// ```
/// use eventloom_core::prelude::*;
/// use eventloom_core::{memory::MemoryEventStore, store::{Appended, EventStore}};
/// use eventloom_core::model::{ExpectedVersion, NewEvent};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store = MemoryEventStore::new();
/// let stream = StreamId::new("task", "1").unwrap();
/// let event = || NewEvent { event_type: "Created".into(), schema_version: 1, payload: "{}".into(),
///     metadata: Metadata::default().with_command_id("req-1") };
/// let first = store.append(&stream, ExpectedVersion::NoStream, vec![event()]).await.unwrap();
/// assert!(matches!(first, Appended::Written(_)));
/// match store.append(&stream, ExpectedVersion::Any, vec![event()]).await.unwrap() {
///     Appended::Duplicate { command_id, first: record } => {
///         assert_eq!((command_id.as_str(), &record.outcome), ("req-1", first.outcome()));
///     }
///     Appended::Written(_) => unreachable!("the command id was used"),
/// }
/// assert_eq!(store.stream_version(&stream).await.unwrap(), 1, "nothing written the second time");
/// # });
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Appended {
    /// The events were written (for no events: the expected version held).
    Written(AppendOutcome),
    /// The events carry a command id that was used before: nothing was written.
    Duplicate {
        /// The command id.
        command_id: String,
        /// What it did the first time, with the fingerprint recorded then.
        first: CommandRecord,
    },
}

impl Appended {
    /// The outcome of this append, or, for a duplicate, of the first one under its command id.
    pub fn outcome(&self) -> &AppendOutcome {
        match self {
            Appended::Written(outcome) => outcome,
            Appended::Duplicate { first, .. } => &first.outcome,
        }
    }

    /// [`outcome`](Self::outcome), by value.
    pub fn into_outcome(self) -> AppendOutcome {
        match self {
            Appended::Written(outcome) => outcome,
            Appended::Duplicate { first, .. } => first.outcome,
        }
    }

    /// What this append wrote; `None` for a duplicate.
    pub fn written(self) -> Option<AppendOutcome> {
        match self {
            Appended::Written(outcome) => Some(outcome),
            Appended::Duplicate { .. } => None,
        }
    }
}

/// How far the copy of the log a store reads is behind the copy it writes
/// ([`EventStore::replica_lag`]): a PostgreSQL streaming replica behind its primary.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use eventloom_core::store::ReplicaLag;
///
/// let lag = ReplicaLag::new(4096, Some(Duration::from_millis(20)), false);
/// assert!(!lag.paused && lag.bytes == 4096);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReplicaLag {
    /// Bytes of the log the writing copy has flushed (and so may send) that the read copy has
    /// not replayed yet.
    pub bytes: u64,
    /// How long ago the last transaction the read copy replayed committed (`None` before it
    /// replayed any). While nothing is written this grows without the copy being behind.
    pub last_replayed: Option<std::time::Duration>,
    /// Whether replay is paused: the read copy falls behind until it is resumed.
    pub paused: bool,
}

impl ReplicaLag {
    /// A lag of `bytes`, the last replay `last_replayed` ago, paused or not.
    pub fn new(bytes: u64, last_replayed: Option<std::time::Duration>, paused: bool) -> Self {
        ReplicaLag { bytes, last_replayed, paused }
    }
}

/// The page size of the default [`EventStore::count_after`].
const COUNT_PAGE: usize = 1000;

/// An append-only log of event streams with one total order over all of them.
///
/// Every implementation holds the invariants that the conformance suite
/// (`eventloom_core::testing::event_store`, feature `testing`) checks:
///
/// - **No lost writes.** An append whose [`ExpectedVersion`] does not hold fails with
///   [`Error::Conflict`](crate::Error::Conflict) and writes nothing; of racing writers on one
///   stream exactly one wins each version.
/// - **Atomic appends.** All events of one append commit together or not at all.
/// - **Total, gap-free order.** [`read_all`](EventStore::read_all) returns events in increasing
///   [`Position`], and never returns an event after a later one was already returned.
/// - **Idempotency.** An append whose events carry a `command_id` that an earlier append (or a
///   [`record_command`](EventStore::record_command)) carried writes nothing and answers
///   [`Appended::Duplicate`], which holds the first outcome and the fingerprint recorded with
///   it; this holds across processes. The
///   fingerprint given to [`append_command`](EventStore::append_command) or `record_command` is
///   kept with the outcome and returned by [`command_outcome`](EventStore::command_outcome).
/// - **Retention.** [`expire_commands`](EventStore::expire_commands) deletes only records older
///   than its bound and not kept, at most its limit per call;
///   [`forget_commands`](EventStore::forget_commands) deletes the records named. Events keep
///   their command id in their metadata: only the record goes, and the id is free again.
///
/// The trait is object safe: `Arc<dyn EventStore>` picks a store at runtime.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use eventloom_core::prelude::*;
/// use eventloom_core::{store::EventStore, memory::MemoryEventStore};
/// use eventloom_core::model::{ExpectedVersion, NewEvent};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// // Picked at runtime:
/// let store: Arc<dyn EventStore> = Arc::new(MemoryEventStore::new());
/// let stream = StreamId::new("task", "1").unwrap();
/// let event = NewEvent { event_type: "Created".into(), schema_version: 1, payload: "{}".into(), metadata: Metadata::default() };
/// store.append(&stream, ExpectedVersion::NoStream, vec![event]).await.unwrap();
/// let all = store.read_all(Position::ZERO, 100).await.unwrap();
/// assert_eq!(all.len(), 1);
/// assert_eq!(store.stream_version(&stream).await.unwrap(), 1);
/// # });
/// ```
// A new method here gets a forwarding default in `DelegateEventStore` and a line in its blanket impl
// (store/delegate.rs), so that wrappers forward it.
pub trait EventStore: Send + Sync + 'static {
    /// Appends `events` to `stream` if `expected` holds, atomically. An empty `events` writes
    /// nothing and only checks `expected`.
    fn append<'a>(
        &'a self,
        stream: &'a StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> BoxFuture<'a, Result<Appended>>;

    /// The append of a command executed under a command id: as [`append`](Self::append) (the id
    /// is the one the events' metadata carry), and the store keeps `command` (the request's
    /// fingerprint, when it was executed, whether it is kept) with the outcome, in the same atomic
    /// write ([`CommandRecord::of_entry`]). The engine appends through it, so that a command id
    /// sent again with a different request can be told from a retry.
    ///
    /// The fingerprint travels beside the events rather than in their metadata: it is about the
    /// command, not about any one event, and readers of the log have no use for it.
    ///
    /// # Examples
    ///
    /// ```
    /// use eventloom_core::prelude::*;
    /// use eventloom_core::{store::{CommandEntry, CommandRecord, EventStore}, write::Fingerprint};
    /// use eventloom_core::{memory::MemoryEventStore, model::{ExpectedVersion, NewEvent, Timestamp}};
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let store = MemoryEventStore::new();
    /// let stream = StreamId::new("task", "1").unwrap();
    /// let metadata = Metadata::default().with_command_id("req-1");
    /// let event = NewEvent { event_type: "Created".into(), schema_version: 1, payload: "{}".into(), metadata };
    /// let print: Fingerprint = "ab".repeat(32).parse().unwrap();
    /// let entry = CommandEntry::new(print, Timestamp::now());
    /// let out = store.append_command(&stream, ExpectedVersion::NoStream, vec![event], &entry).await.unwrap();
    /// let out = out.written().expect("a command id not used before");
    /// let first = store.command_outcome("req-1").await.unwrap().unwrap();
    /// assert_eq!(first, CommandRecord::of_entry(out, &entry));
    /// # });
    /// ```
    fn append_command<'a>(
        &'a self,
        stream: &'a StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
        command: &'a CommandEntry,
    ) -> BoxFuture<'a, Result<Appended>>;

    /// Up to `limit` events of `stream` with versions from `from_version` on, in order.
    fn read_stream<'a>(
        &'a self,
        stream: &'a StreamId,
        from_version: u64,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<RecordedEvent>>>;

    /// Up to `limit` events of every stream with positions after `after`, in position order.
    fn read_all<'a>(&'a self, after: Position, limit: usize) -> BoxFuture<'a, Result<Vec<RecordedEvent>>>;

    /// [`read_stream`](Self::read_stream) bounded in bytes too: it stops after the event whose
    /// [stored size](RecordedEvent::stored_size) brings the batch to `max_bytes` or more, so a
    /// batch holds less than `max_bytes` plus one event. A batch shorter than `limit` whose sizes
    /// add up to less than `max_bytes` is the end of the stream.
    ///
    /// The default reads `limit` events and keeps those; stores override it to read no more
    /// than they return.
    ///
    /// # Examples
    ///
    /// ```
    /// use eventloom_core::prelude::*;
    /// use eventloom_core::{store::EventStore, memory::MemoryEventStore};
    /// use eventloom_core::model::{ExpectedVersion, NewEvent};
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let store = MemoryEventStore::new();
    /// let stream = StreamId::new("doc", "1").unwrap();
    /// let big = || NewEvent { event_type: "Written".into(), schema_version: 1,
    ///     payload: format!("{:?}", "x".repeat(1000)).into(), metadata: Metadata::default() };
    /// store.append(&stream, ExpectedVersion::Any, vec![big(), big(), big()]).await.unwrap();
    /// let batch = store.read_stream_bounded(&stream, 1, 100, 1500).await.unwrap();
    /// assert_eq!(batch.len(), 2, "the second event brought it past 1,500 bytes");
    /// # });
    /// ```
    fn read_stream_bounded<'a>(
        &'a self,
        stream: &'a StreamId,
        from_version: u64,
        limit: usize,
        max_bytes: usize,
    ) -> BoxFuture<'a, Result<Vec<RecordedEvent>>> {
        Box::pin(async move {
            let mut events = self.read_stream(stream, from_version, limit).await?;
            events.truncate(within_bytes(&events, max_bytes));
            Ok(events)
        })
    }

    /// Folds one page of `stream`'s events, versions from `from_version` on, in order: calls
    /// `fold` with each, lent rather than copied ([`EventRef`], without metadata), and returns
    /// what the page went through ([`FoldedPage`]). A page holds at most `limit` events. A
    /// store that reads a page before folding it also ends the page with the event that brings
    /// it to `max_bytes` or more, as [`read_stream_bounded`](Self::read_stream_bounded) does (the
    /// default, [`fold_read_stream`]); a store that folds rows as they arrive, holding one at a
    /// time, need not. A page that stops short of both bounds
    /// ([`FoldedPage::may_have_more`]) is the end of the stream. An error from `fold` ends the
    /// page and is returned. Each event may be lent without its position
    /// ([`EventRef::position`]), but the page's last one is lent with it: the engine keeps
    /// the position of the last event it folded (for snapshots and outcomes).
    ///
    /// The engine loads aggregates through it, so that a store that overrides it (the
    /// PostgreSQL store does) loads in flat memory whatever the page's size, without copying
    /// each event out of its read buffer first.
    ///
    /// # Examples
    ///
    /// ```
    /// use eventloom_core::prelude::*;
    /// use eventloom_core::{store::EventStore, memory::MemoryEventStore};
    /// use eventloom_core::model::{ExpectedVersion, NewEvent};
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let store = MemoryEventStore::new();
    /// let stream = StreamId::new("doc", "1").unwrap();
    /// let event = |n: u32| NewEvent { event_type: "Written".into(), schema_version: 1,
    ///     payload: format!("{n}").into(), metadata: Metadata::default() };
    /// store.append(&stream, ExpectedVersion::Any, vec![event(1), event(2), event(3)]).await.unwrap();
    /// let mut sum = 0;
    /// let page = store
    ///     .fold_stream(&stream, 2, 100, usize::MAX, &mut |e| {
    ///         sum += e.payload.parse::<u32>().unwrap();
    ///         Ok(())
    ///     })
    ///     .await
    ///     .unwrap();
    /// assert_eq!((sum, page.events, page.last.map(|(version, _)| version)), (5, 2, Some(3)));
    /// assert!(!page.may_have_more(100, usize::MAX), "the end of the stream");
    /// # });
    /// ```
    fn fold_stream<'a>(
        &'a self,
        stream: &'a StreamId,
        from_version: u64,
        limit: usize,
        max_bytes: usize,
        fold: &'a mut (dyn FnMut(EventRef<'_>) -> Result<()> + Send),
    ) -> BoxFuture<'a, Result<FoldedPage>> {
        Box::pin(fold_read_stream(self, stream, from_version, limit, max_bytes, fold))
    }

    /// Whether [`fold_stream`](Self::fold_stream) folds rows as they arrive, holding one at a
    /// time, so that its memory is flat whatever the page's bounds: the engine then folds the
    /// rest of a stream in one page, without bounds (one statement on PostgreSQL, where a
    /// page of 10,000 events and a second statement for the rest cost a tenth more). `false`
    /// (the default, right for [`fold_read_stream`], which reads each page whole): the engine
    /// asks for pages bounded in events and bytes.
    ///
    /// # Examples
    ///
    /// ```
    /// use eventloom_core::{store::EventStore, memory::MemoryEventStore};
    ///
    /// assert!(!MemoryEventStore::new().folds_row_by_row());
    /// ```
    fn folds_row_by_row(&self) -> bool {
        false
    }

    /// [`read_all`](Self::read_all) bounded in bytes as
    /// [`read_stream_bounded`](Self::read_stream_bounded) is: the batch ends with the event that
    /// brings it to `max_bytes` or more.
    ///
    /// # Examples
    ///
    /// ```
    /// use eventloom_core::prelude::*;
    /// use eventloom_core::{store::EventStore, memory::MemoryEventStore};
    /// use eventloom_core::model::{ExpectedVersion, NewEvent};
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let store = MemoryEventStore::new();
    /// let stream = StreamId::new("doc", "1").unwrap();
    /// let event = || NewEvent { event_type: "Written".into(), schema_version: 1, payload: "{}".into(),
    ///     metadata: Metadata::default() };
    /// store.append(&stream, ExpectedVersion::Any, vec![event(), event()]).await.unwrap();
    /// assert_eq!(store.read_all_bounded(Position::ZERO, 100, 1).await.unwrap().len(), 1);
    /// # });
    /// ```
    fn read_all_bounded<'a>(
        &'a self,
        after: Position,
        limit: usize,
        max_bytes: usize,
    ) -> BoxFuture<'a, Result<Vec<RecordedEvent>>> {
        Box::pin(async move {
            let mut events = self.read_all(after, limit).await?;
            events.truncate(within_bytes(&events, max_bytes));
            Ok(events)
        })
    }

    /// The stream's current version (0 when it has no events).
    fn stream_version<'a>(&'a self, stream: &'a StreamId) -> BoxFuture<'a, Result<u64>>;

    /// What `command_id` did the first time, if it was used: the outcome of the append that
    /// carried it (or of the no-op recorded under it) with the request's fingerprint.
    fn command_outcome<'a>(&'a self, command_id: &'a str) -> BoxFuture<'a, Result<Option<CommandRecord>>>;

    /// Records what a command that appended nothing did under `command_id`, in one atomic
    /// write: a no-op, or a refusal ([`CommandRecord::refusal`], cut to
    /// [`MAX_REFUSAL_BYTES`]), with the fingerprint of its request and the stream as the command
    /// found it, so that executing it again returns this answer even after the stream changed.
    /// Answers `None` once recorded, and the first record, recording nothing, when the id is
    /// already used (by an append or by another record: of racing writers of one id exactly one
    /// wins).
    ///
    /// # Examples
    ///
    /// ```
    /// use eventloom_core::prelude::*;
    /// use eventloom_core::{memory::MemoryEventStore, store::{AppendOutcome, CommandRecord, EventStore}};
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let store = MemoryEventStore::new();
    /// let as_found = AppendOutcome { stream: StreamId::new("account", "1").unwrap(),
    ///     first_version: 1, last_version: 0, position: Position::ZERO };
    /// let refusal = CommandRecord::new(as_found).with_refusal("the account is not open");
    /// assert_eq!(store.record_command("pm-1", refusal.clone()).await.unwrap(), None);
    /// assert_eq!(store.command_outcome("pm-1").await.unwrap(), Some(refusal.clone()));
    /// assert_eq!(store.record_command("pm-1", refusal.clone()).await.unwrap(), Some(refusal), "taken");
    /// # });
    /// ```
    fn record_command<'a>(
        &'a self,
        command_id: &'a str,
        record: CommandRecord,
    ) -> BoxFuture<'a, Result<Option<CommandRecord>>>;

    /// Deletes up to `limit` command records made before `recorded_before` that are not
    /// [kept](CommandRecord::kept), oldest first; returns how many it deleted. A caller trims a
    /// large backlog in batches (call again while it returns `limit`), so that no call holds
    /// the store long. The events keep their command id in their metadata: only the record
    /// goes, and a command sent again under an expired id executes again.
    ///
    /// # Examples
    ///
    /// ```
    /// use eventloom_core::prelude::*;
    /// use eventloom_core::{memory::MemoryEventStore, model::Timestamp};
    /// use eventloom_core::store::{AppendOutcome, CommandRecord, EventStore};
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let store = MemoryEventStore::new();
    /// let noop = AppendOutcome { stream: StreamId::new("task", "1").unwrap(),
    ///     first_version: 1, last_version: 0, position: Position::ZERO };
    /// let at = |micros| CommandRecord::new(noop.clone()).with_recorded_at(Timestamp::from_micros(micros));
    /// store.record_command("old", at(1_000)).await.unwrap();
    /// store.record_command("new", at(9_000)).await.unwrap();
    /// store.record_command("process", at(1_000).keep()).await.unwrap();
    /// assert_eq!(store.expire_commands(Timestamp::from_micros(5_000), 100).await.unwrap(), 1);
    /// assert!(store.command_outcome("old").await.unwrap().is_none());
    /// assert!(store.command_outcome("process").await.unwrap().is_some(), "kept");
    /// # });
    /// ```
    fn expire_commands<'a>(&'a self, recorded_before: Timestamp, limit: usize) -> BoxFuture<'a, Result<u64>>;

    /// Deletes the records of the command ids `ids`, kept or not (ids without a record are
    /// skipped); returns how many it deleted. For [kept](CommandRecord::kept) records, once
    /// whatever could send their commands again (a process manager's replay) no longer can.
    ///
    /// # Examples
    ///
    /// ```
    /// use eventloom_core::prelude::*;
    /// use eventloom_core::memory::MemoryEventStore;
    /// use eventloom_core::store::{AppendOutcome, CommandRecord, EventStore};
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let store = MemoryEventStore::new();
    /// let noop = AppendOutcome { stream: StreamId::new("task", "1").unwrap(),
    ///     first_version: 1, last_version: 0, position: Position::ZERO };
    /// store.record_command("pm-1", CommandRecord::new(noop).keep()).await.unwrap();
    /// let ids = ["pm-1".to_owned(), "unknown".to_owned()];
    /// assert_eq!(store.forget_commands(&ids).await.unwrap(), 1);
    /// assert!(store.command_outcome("pm-1").await.unwrap().is_none());
    /// # });
    /// ```
    fn forget_commands<'a>(&'a self, ids: &'a [String]) -> BoxFuture<'a, Result<u64>>;

    /// The position of the last event a subscriber can read now: the last event
    /// [`read_all`](EventStore::read_all) would return if asked for everything; `None` when no
    /// event is readable (an empty store, or, on a store that holds back events behind
    /// transactions still running, none readable yet).
    ///
    /// The head never runs ahead of `read_all`: a `read_all` that starts after `head` returns
    /// came back reaches at least the head. A projection's lag is the events between its
    /// checkpoint and the head ([`count_after`](EventStore::count_after)).
    ///
    /// # Examples
    ///
    /// ```
    /// use eventloom_core::prelude::*;
    /// use eventloom_core::{store::EventStore, memory::MemoryEventStore};
    /// use eventloom_core::model::{ExpectedVersion, NewEvent};
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let store = MemoryEventStore::new();
    /// assert_eq!(store.head().await.unwrap(), None);
    /// let stream = StreamId::new("task", "1").unwrap();
    /// let event = NewEvent { event_type: "Created".into(), schema_version: 1, payload: "{}".into(), metadata: Metadata::default() };
    /// let out = store.append(&stream, ExpectedVersion::NoStream, vec![event]).await.unwrap();
    /// assert_eq!(store.head().await.unwrap(), Some(out.outcome().position));
    /// # });
    /// ```
    fn head<'a>(&'a self) -> BoxFuture<'a, Result<Option<Position>>>;

    /// How many committed events a subscriber cannot read yet because an older transaction is
    /// still open, counted up to `cap` (a result of `cap` means "`cap` or more"). On PostgreSQL,
    /// subscribers read below the cluster's oldest running transaction, so a long transaction
    /// anywhere holds events back; stores that show every committed event at once have none (the
    /// default).
    ///
    /// # Examples
    ///
    /// ```
    /// use eventloom_core::{store::EventStore, memory::MemoryEventStore};
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// assert_eq!(MemoryEventStore::new().held_back(100).await.unwrap(), 0);
    /// # });
    /// ```
    fn held_back<'a>(&'a self, cap: u64) -> BoxFuture<'a, Result<u64>> {
        Box::pin(async move {
            let _ = cap;
            Ok(0)
        })
    }

    /// How many events a subscriber can read now after `after` (those
    /// [`read_all`](EventStore::read_all) would return), counted up to `cap` and no further:
    /// the result is `min(events, cap)`, so the cost is bounded by `cap` whatever the backlog
    /// (a health probe can run it on every request). A result equal to `cap` means "`cap` or
    /// more": to tell exactly `n` from more than `n`, ask with `cap = n + 1`. Events held back
    /// behind running transactions are not counted (see the store's own report of them, such
    /// as `PgEventStore::holdback`).
    ///
    /// The default pages through `read_all`, reading at most `cap` events; stores override it
    /// with a count that reads no payload.
    ///
    /// # Examples
    ///
    /// ```
    /// use eventloom_core::prelude::*;
    /// use eventloom_core::{store::EventStore, memory::MemoryEventStore};
    /// use eventloom_core::model::{ExpectedVersion, NewEvent};
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let store = MemoryEventStore::new();
    /// let stream = StreamId::new("task", "1").unwrap();
    /// let event = || NewEvent { event_type: "Done".into(), schema_version: 1, payload: "{}".into(), metadata: Metadata::default() };
    /// let first = store.append(&stream, ExpectedVersion::Any, vec![event()]).await.unwrap();
    /// store.append(&stream, ExpectedVersion::Any, vec![event(), event(), event()]).await.unwrap();
    /// assert_eq!(store.count_after(first.outcome().position, 100).await.unwrap(), 3, "exact below the cap");
    /// assert_eq!(store.count_after(Position::ZERO, 2).await.unwrap(), 2, "2 or more");
    /// # });
    /// ```
    fn count_after<'a>(&'a self, after: Position, cap: u64) -> BoxFuture<'a, Result<u64>> {
        Box::pin(async move {
            let mut counted = 0u64;
            let mut after = after;
            while counted < cap {
                let batch = usize::try_from(cap - counted).unwrap_or(usize::MAX).min(COUNT_PAGE);
                let events = self.read_all(after, batch).await?;
                let Some(last) = events.last() else { break };
                after = last.position;
                counted += events.len() as u64;
            }
            Ok(counted.min(cap))
        })
    }

    /// A subscription to every event after `after`: what is stored now, then new events as
    /// they commit, with no gap and no duplicate at the hand-over. See [`Subscription`].
    fn subscribe(&self, after: Position) -> Subscription<Self>
    where
        Self: Sized + Clone,
    {
        Subscription::new(self.clone(), after)
    }

    /// A signal that changes after appends, so that subscribers wake without polling; `None`
    /// when the store has none and subscribers must poll.
    fn wake_ups(&self) -> Option<watch::Receiver<u64>> {
        None
    }

    /// Whether [`read_stream`](EventStore::read_stream) may end before the stream's last
    /// committed event because it reads a copy that lags (a PostgreSQL store reading a
    /// streaming replica), while [`stream_version`](EventStore::stream_version) always tells
    /// the latest version and a `read_stream` after it returns the events up to that version.
    /// The engine then checks the version before it answers with a refusal, a no-op or a
    /// conflict with a required version decided on loaded state, and reads the newer events
    /// when there are any. `false` (the default): a load reads every committed event.
    ///
    /// # Examples
    ///
    /// ```
    /// use eventloom_core::{store::EventStore, memory::MemoryEventStore};
    ///
    /// assert!(!MemoryEventStore::new().loads_may_lag());
    /// ```
    fn loads_may_lag(&self) -> bool {
        false
    }

    /// How far the copy this store reads the log from is behind the one it writes to (a
    /// PostgreSQL store reading a streaming replica): `None` when it reads what it writes (the
    /// default). [`App::health`](crate::App::health) reports it as
    /// [`AppStatus::replica`](crate::app::AppStatus::replica), apart from the projectors' lag.
    ///
    /// # Examples
    ///
    /// ```
    /// use eventloom_core::{store::EventStore, memory::MemoryEventStore};
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// assert_eq!(MemoryEventStore::new().replica_lag().await.unwrap(), None);
    /// # });
    /// ```
    fn replica_lag<'a>(&'a self) -> BoxFuture<'a, Result<Option<ReplicaLag>>> {
        Box::pin(std::future::ready(Ok(None)))
    }

    /// Appends `events` to `stream` as the relay of message `sequence` of `source` (another
    /// service's stream, read from the event bus), if the store's record of `source` is below
    /// `sequence`, and records `sequence` as relayed in the same atomic write: a message relayed
    /// again, by a restart or by a second relay, appends nothing
    /// ([`Relayed::Duplicate`]). The events go after the stream's last, whatever its version
    /// (the relay keeps the source's own version in a header). `source` is 1 to 255 bytes with no
    /// control characters and `sequence` at least 1, else [`Error::InvalidId`](crate::Error::InvalidId).
    ///
    /// The default refuses with [`Error::InvalidConfig`](crate::Error::InvalidConfig): a store
    /// relays only if it says so.
    ///
    /// # Examples
    ///
    /// ```
    /// use eventloom_core::prelude::*;
    /// use eventloom_core::memory::MemoryEventStore;
    /// use eventloom_core::model::NewEvent;
    /// use eventloom_core::store::{EventStore, Relayed};
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let store = MemoryEventStore::new();
    /// let stream = StreamId::new("stock", "apple").unwrap();
    /// let event = || NewEvent { event_type: "Reserved".into(), schema_version: 1, payload: "{}".into(),
    ///     metadata: Metadata::default() };
    /// assert!(matches!(store.append_relayed("inventory", 7, &stream, vec![event()]).await.unwrap(), Relayed::Written(_)));
    /// assert_eq!(store.append_relayed("inventory", 7, &stream, vec![event()]).await.unwrap(), Relayed::Duplicate { relayed: 7 });
    /// assert_eq!(store.relayed("inventory").await.unwrap(), 7);
    /// # });
    /// ```
    fn append_relayed<'a>(
        &'a self,
        source: &'a str,
        sequence: u64,
        stream: &'a StreamId,
        events: Vec<NewEvent>,
    ) -> BoxFuture<'a, Result<Relayed>> {
        let _ = (source, sequence, stream, events);
        Box::pin(std::future::ready(Err(crate::Error::InvalidConfig {
            reason: "this event store cannot relay events from another service".to_owned(),
        })))
    }

    /// The last sequence of `source` relayed into this store (0 before the first).
    fn relayed<'a>(&'a self, source: &'a str) -> BoxFuture<'a, Result<u64>> {
        let _ = source;
        Box::pin(std::future::ready(Err(crate::Error::InvalidConfig {
            reason: "this event store cannot relay events from another service".to_owned(),
        })))
    }
}

/// What [`EventStore::append_relayed`] came to.
///
/// # Examples
///
/// ```
/// use eventloom_core::store::Relayed;
///
/// assert!(Relayed::Duplicate { relayed: 9 }.is_duplicate());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Relayed {
    /// Appended, with the sequence recorded.
    Written(AppendOutcome),
    /// The source's record was at `relayed`, at or past the sequence: nothing was written.
    Duplicate {
        /// The last sequence of the source relayed.
        relayed: u64,
    },
}

impl Relayed {
    /// Whether nothing was written because the message was relayed before.
    pub fn is_duplicate(&self) -> bool {
        matches!(self, Relayed::Duplicate { .. })
    }
}

/// Checks the source and sequence of a relayed append, as every store does.
pub fn validate_relay(source: &str, sequence: u64) -> Result<()> {
    let invalid = |reason: String| Err(crate::Error::InvalidId { what: "relay source", reason });
    if source.is_empty() || source.len() > 255 || source.chars().any(char::is_control) {
        return invalid(format!("{source:?} must be 1 to 255 bytes with no control characters"));
    }
    if sequence == 0 {
        return invalid("sequences start at 1".to_owned());
    }
    Ok(())
}

impl<T: EventStore + ?Sized> EventStore for Arc<T> {
    fn append<'a>(
        &'a self,
        stream: &'a StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> BoxFuture<'a, Result<Appended>> {
        (**self).append(stream, expected, events)
    }
    fn append_command<'a>(
        &'a self,
        stream: &'a StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
        command: &'a CommandEntry,
    ) -> BoxFuture<'a, Result<Appended>> {
        (**self).append_command(stream, expected, events, command)
    }
    fn read_stream<'a>(
        &'a self,
        stream: &'a StreamId,
        from_version: u64,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<RecordedEvent>>> {
        (**self).read_stream(stream, from_version, limit)
    }
    fn read_all<'a>(&'a self, after: Position, limit: usize) -> BoxFuture<'a, Result<Vec<RecordedEvent>>> {
        (**self).read_all(after, limit)
    }
    fn read_stream_bounded<'a>(
        &'a self,
        stream: &'a StreamId,
        from_version: u64,
        limit: usize,
        max_bytes: usize,
    ) -> BoxFuture<'a, Result<Vec<RecordedEvent>>> {
        (**self).read_stream_bounded(stream, from_version, limit, max_bytes)
    }
    fn fold_stream<'a>(
        &'a self,
        stream: &'a StreamId,
        from_version: u64,
        limit: usize,
        max_bytes: usize,
        fold: &'a mut (dyn FnMut(EventRef<'_>) -> Result<()> + Send),
    ) -> BoxFuture<'a, Result<FoldedPage>> {
        (**self).fold_stream(stream, from_version, limit, max_bytes, fold)
    }
    fn folds_row_by_row(&self) -> bool {
        (**self).folds_row_by_row()
    }
    fn read_all_bounded<'a>(
        &'a self,
        after: Position,
        limit: usize,
        max_bytes: usize,
    ) -> BoxFuture<'a, Result<Vec<RecordedEvent>>> {
        (**self).read_all_bounded(after, limit, max_bytes)
    }
    fn stream_version<'a>(&'a self, stream: &'a StreamId) -> BoxFuture<'a, Result<u64>> {
        (**self).stream_version(stream)
    }
    fn head<'a>(&'a self) -> BoxFuture<'a, Result<Option<Position>>> {
        (**self).head()
    }
    fn count_after<'a>(&'a self, after: Position, cap: u64) -> BoxFuture<'a, Result<u64>> {
        (**self).count_after(after, cap)
    }
    fn held_back<'a>(&'a self, cap: u64) -> BoxFuture<'a, Result<u64>> {
        (**self).held_back(cap)
    }
    fn command_outcome<'a>(&'a self, command_id: &'a str) -> BoxFuture<'a, Result<Option<CommandRecord>>> {
        (**self).command_outcome(command_id)
    }
    fn record_command<'a>(
        &'a self,
        command_id: &'a str,
        record: CommandRecord,
    ) -> BoxFuture<'a, Result<Option<CommandRecord>>> {
        (**self).record_command(command_id, record)
    }
    fn expire_commands<'a>(&'a self, recorded_before: Timestamp, limit: usize) -> BoxFuture<'a, Result<u64>> {
        (**self).expire_commands(recorded_before, limit)
    }
    fn forget_commands<'a>(&'a self, ids: &'a [String]) -> BoxFuture<'a, Result<u64>> {
        (**self).forget_commands(ids)
    }
    fn wake_ups(&self) -> Option<watch::Receiver<u64>> {
        (**self).wake_ups()
    }
    fn loads_may_lag(&self) -> bool {
        (**self).loads_may_lag()
    }
    fn replica_lag<'a>(&'a self) -> BoxFuture<'a, Result<Option<ReplicaLag>>> {
        (**self).replica_lag()
    }
    fn append_relayed<'a>(
        &'a self,
        source: &'a str,
        sequence: u64,
        stream: &'a StreamId,
        events: Vec<NewEvent>,
    ) -> BoxFuture<'a, Result<Relayed>> {
        (**self).append_relayed(source, sequence, stream, events)
    }
    fn relayed<'a>(&'a self, source: &'a str) -> BoxFuture<'a, Result<u64>> {
        (**self).relayed(source)
    }
}

/// An aggregate's state at one version, serialized, so loading need not replay from the start.
///
/// # Examples
///
/// ```
/// use eventloom_core::{Position, StreamId, store::Snapshot};
///
/// let s = Snapshot {
///     stream: StreamId::new("account", "1").unwrap(),
///     version: 100,
///     position: Position::new(100, 100),
///     snapshot_version: 1,
///     state: r#"{"balance":5}"#.into(),
/// };
/// assert_eq!(s.version, 100);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The stream.
    pub stream: StreamId,
    /// The stream version the state includes.
    pub version: u64,
    /// The position of the event at that version.
    pub position: Position,
    /// The aggregate's [`SNAPSHOT_VERSION`](crate::Aggregate::SNAPSHOT_VERSION) when it was taken.
    pub snapshot_version: u32,
    /// The state as JSON.
    pub state: String,
}

/// Keeps the latest snapshot per stream.
///
/// # Examples
///
/// See [`MemorySnapshotStore`](crate::MemorySnapshotStore).
pub trait SnapshotStore: Send + Sync + 'static {
    /// The stream's snapshot, if any.
    fn load_snapshot<'a>(&'a self, stream: &'a StreamId) -> BoxFuture<'a, Result<Option<Snapshot>>>;

    /// Stores a snapshot unless one at a higher version is already stored.
    fn save_snapshot<'a>(&'a self, snapshot: Snapshot) -> BoxFuture<'a, Result<()>>;
}

impl<T: SnapshotStore + ?Sized> SnapshotStore for Arc<T> {
    fn load_snapshot<'a>(&'a self, stream: &'a StreamId) -> BoxFuture<'a, Result<Option<Snapshot>>> {
        (**self).load_snapshot(stream)
    }
    fn save_snapshot<'a>(&'a self, snapshot: Snapshot) -> BoxFuture<'a, Result<()>> {
        (**self).save_snapshot(snapshot)
    }
}

/// How many of `events` a batch bounded to `max_bytes` holds: up to and including the event that
/// brings their [stored sizes](RecordedEvent::stored_size) to `max_bytes` or more.
///
/// # Examples
///
/// ```
/// assert_eq!(eventloom_core::store::within_bytes(&[], 10), 0);
/// ```
pub fn within_bytes(events: &[RecordedEvent], max_bytes: usize) -> usize {
    let mut total = 0usize;
    for (n, event) in events.iter().enumerate() {
        total = total.saturating_add(event.stored_size());
        if total >= max_bytes {
            return n + 1;
        }
    }
    events.len()
}

/// What one [`EventStore::fold_stream`] page went through.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FoldedPage {
    /// How many events were folded.
    pub events: usize,
    /// Their bytes as the store counted them against the page's `max_bytes`.
    pub bytes: usize,
    /// The version and position of the last event folded with its position, if any: a store
    /// lends the page's last event with its position (see [`EventRef::position`]), so this is
    /// the page's last event.
    pub last: Option<(u64, Position)>,
}

impl FoldedPage {
    /// Adds one folded event that the store counted as `bytes`; it becomes the page's
    /// [`last`](Self::last) when it was lent with its position (a store that lends positions
    /// with the last event of a page only lends it there).
    pub fn add(&mut self, event: &EventRef<'_>, bytes: usize) {
        self.events += 1;
        self.bytes = self.bytes.saturating_add(bytes);
        if let Some(position) = event.position {
            self.last = Some((event.version, position));
        }
    }

    /// Whether the page was cut by one of its bounds, so that the stream may go on after it
    /// (otherwise the page reached the stream's end).
    pub fn may_have_more(&self, limit: usize, max_bytes: usize) -> bool {
        self.events >= limit || self.bytes >= max_bytes
    }
}

/// `error` naming the event at `position`: for a store that lends events to a fold without
/// their positions ([`EventRef::position`] `None`), whose fold's errors about an event (it does
/// not decode, its type is unknown, its schema is newer, an upcaster failed) were made without
/// one. Other errors are returned as they are.
///
/// # Examples
///
/// ```
/// use eventloom_core::{Error, Position, StreamId, store::with_event_position};
///
/// let unknown = Error::UnknownEvent { stream: StreamId::new("a", "1").unwrap(), version: 3,
///     position: Position::ZERO, event_type: "Gone".into(), schema_version: 1 };
/// match with_event_position(unknown, Position::new(7, 9)) {
///     Error::UnknownEvent { position, .. } => assert_eq!(position, Position::new(7, 9)),
///     other => panic!("{other:?}"),
/// }
/// ```
pub fn with_event_position(mut error: crate::Error, at: Position) -> crate::Error {
    use crate::Error;
    if let Error::Decode { position, .. }
    | Error::UnknownEvent { position, .. }
    | Error::NewerSchema { position, .. }
    | Error::Upcast { position, .. } = &mut error
    {
        *position = at;
    }
    error
}

/// [`EventStore::fold_stream`] by [`read_stream_bounded`](EventStore::read_stream_bounded): reads
/// the page, then folds its events one by one (the default of `fold_stream`, for stores and
/// wrappers that have no faster way).
pub async fn fold_read_stream<S: EventStore + ?Sized>(
    store: &S,
    stream: &StreamId,
    from_version: u64,
    limit: usize,
    max_bytes: usize,
    fold: &mut (dyn FnMut(EventRef<'_>) -> Result<()> + Send),
) -> Result<FoldedPage> {
    let events = store.read_stream_bounded(stream, from_version, limit, max_bytes).await?;
    let mut page = FoldedPage::default();
    for event in &events {
        let lent = EventRef::from(event);
        fold(lent)?;
        page.add(&lent, event.stored_size());
    }
    Ok(page)
}

/// Whether a batch bounded to `limit` events and `max_bytes` that came back as `events` may have
/// more after it: it is full, or it was cut by bytes.
pub(crate) fn may_have_more(events: &[RecordedEvent], limit: usize, max_bytes: usize) -> bool {
    events.len() >= limit || stored_bytes(events) >= max_bytes
}

fn stored_bytes(events: &[RecordedEvent]) -> usize {
    events.iter().fold(0usize, |total, e| total.saturating_add(e.stored_size()))
}

/// How many events a loop of reads bounded in bytes asks for next, so that a store that stops
/// at the byte bound (PostgreSQL discards the rest of the rows it sent) is sent few rows in
/// vain: after a batch cut by bytes, twice as many as fitted; otherwise back towards the full
/// limit, doubling.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReadAhead {
    max: usize,
    next: usize,
}

impl ReadAhead {
    pub(crate) fn new(max: usize) -> Self {
        ReadAhead { max: max.max(1), next: max.max(1) }
    }

    /// The limit to ask for.
    pub(crate) fn limit(&self) -> usize {
        self.next
    }

    /// Learns from a batch read with [`limit`](Self::limit) and `max_bytes`.
    pub(crate) fn observe(&mut self, events: &[RecordedEvent], max_bytes: usize) {
        self.observe_page(events.len(), stored_bytes(events), max_bytes);
    }

    /// [`observe`](Self::observe) from a page's count and bytes.
    pub(crate) fn observe_page(&mut self, events: usize, bytes: usize, max_bytes: usize) {
        self.next = if bytes >= max_bytes {
            events.saturating_mul(2).clamp(1, self.max)
        } else {
            self.next.saturating_mul(2).min(self.max)
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{StoredMetadata, StreamId};

    fn events(n: usize, payload: usize) -> Vec<RecordedEvent> {
        (0..n)
            .map(|i| RecordedEvent {
                stream: StreamId::new("t", "1").expect("id"),
                version: i as u64 + 1,
                position: Position::new(1, i as u64 + 1),
                event_type: "E".into(),
                schema_version: 1,
                payload: "x".repeat(payload).into(),
                metadata: StoredMetadata::from_json("{}"),
            })
            .collect()
    }

    #[test]
    fn read_ahead_asks_for_what_fits_after_a_cut_and_grows_back() {
        let mut ahead = ReadAhead::new(2_000);
        assert_eq!(ahead.limit(), 2_000);
        // 1,000-byte events against a 10,000-byte bound: cut after 10.
        let cut = events(10, 997);
        assert!(within_bytes(&cut, 10_000) == 10 && may_have_more(&cut, 2_000, 10_000));
        ahead.observe(&cut, 10_000);
        assert_eq!(ahead.limit(), 20, "twice what fitted");
        ahead.observe(&events(3, 10), 10_000);
        assert_eq!(ahead.limit(), 40, "small events: back towards the limit");
        for _ in 0..10 {
            ahead.observe(&events(3, 10), 10_000);
        }
        assert_eq!(ahead.limit(), 2_000);
        ahead.observe(&events(1, 50_000), 10_000);
        assert_eq!(ahead.limit(), 2, "never below one");
        assert!(!may_have_more(&events(3, 10), 2_000, 10_000), "short and small: the end");
    }
}

//! The command engine: load, decide, append, retry on conflict.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use crate::memory::lock;
use crate::metrics::{CommandEnd, EngineMetrics};
use crate::model::EventRef;
use crate::store::{Appended, CommandEntry};
use crate::write::retry::Jitter;
use crate::{
    Aggregate, AppendOutcome, Clock, Command, CommandRecord, Error, ExpectedVersion, Fingerprint, Handle, IdGenerator,
    Metadata, NewEvent, Position, RandomIds, RetryPolicy, Snapshot, SnapshotStore, StreamId, SystemClock, Timestamp,
    Upcasters,
};

/// What a command did.
///
/// # Examples
///
/// ```
/// use eventloom_core::{CommandOutcome, Position, StreamId};
///
/// let o = CommandOutcome::new(StreamId::new("task", "1").unwrap(), 2, Position::new(2, 2), 1);
/// assert_eq!(o.position.to_string(), "2.2");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CommandOutcome {
    /// The aggregate's stream.
    pub stream: StreamId,
    /// The stream's version after the command.
    pub version: u64,
    /// The position of the last event the command appended (or, when it appended none, of the
    /// stream's last event): a query that waits for it sees the command's effect.
    pub position: Position,
    /// How many events this execution appended: 0 for a no-op and for a replay.
    pub appended: u64,
    /// Whether this was a replay: the command id was already used by the same request, and this
    /// is that first execution's outcome (its stream, version and position); nothing was
    /// appended now. See [`ExecuteOptions::command_id`].
    #[serde(default)]
    pub replayed: bool,
}

impl CommandOutcome {
    /// The outcome of a command that left `stream` at `version`, its last event at `position`,
    /// having appended `appended` events now (not a replay). The engine makes these; tests and
    /// adapters that stand in for it use this.
    ///
    /// # Examples
    ///
    /// ```
    /// use eventloom_core::{CommandOutcome, Position, StreamId};
    ///
    /// let o = CommandOutcome::new(StreamId::new("task", "1").unwrap(), 2, Position::new(9, 1), 1);
    /// assert!(!o.replayed);
    /// ```
    pub fn new(stream: StreamId, version: u64, position: Position, appended: u64) -> Self {
        CommandOutcome { stream, version, position, appended, replayed: false }
    }

    /// The first execution's outcome, answered again.
    fn replay(first: AppendOutcome) -> Self {
        CommandOutcome { appended: 0, replayed: true, ..first.into() }
    }
}

impl From<AppendOutcome> for CommandOutcome {
    fn from(o: AppendOutcome) -> Self {
        CommandOutcome {
            appended: o.appended(),
            replayed: false,
            stream: o.stream,
            version: o.last_version,
            position: o.position,
        }
    }
}

/// Why [`Cqrs::execute`] did not execute a command. Three different things, kept apart:
/// the domain said no, a conflict outlived the retries, or something below failed.
///
/// # Examples
///
/// ```
/// use eventloom_core::{CommandError, Error};
///
/// #[derive(Debug, thiserror::Error)]
/// #[error("insufficient funds")]
/// struct Insufficient;
///
/// let e: CommandError<Insufficient> = CommandError::Rejected(Insufficient);
/// assert_eq!(e.to_string(), "insufficient funds");
/// let e: CommandError<Insufficient> = Error::Timeout(std::time::Duration::from_secs(1)).into();
/// assert!(matches!(e, CommandError::Store(Error::Timeout(_))));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError<E> {
    /// The aggregate refused the command: the user's own error. Nothing was appended.
    #[error(transparent)]
    Rejected(E),
    /// Other writers kept changing the stream through every retry (the engine's
    /// [`RetryPolicy`] ran out of attempts or time), or the stream was not at the version the
    /// caller required. Nothing was appended.
    #[error("conflict on stream {stream} after {attempts} attempt(s): expected {expected}, found version {actual}")]
    Conflict {
        /// The stream.
        stream: StreamId,
        /// What the last attempt expected.
        expected: ExpectedVersion,
        /// The version found.
        actual: u64,
        /// How many times the command was decided.
        attempts: u32,
    },
    /// The store or the codec failed, or refused the input (an invalid id, a stored event that
    /// no longer decodes, a payload over the limit).
    #[error(transparent)]
    Store(#[from] Error),
    /// The command id was refused before, and the refusal was recorded
    /// ([`ExecuteOptions::record_refusal`]): this is that answer again, without deciding (the
    /// command might succeed now). Nothing was appended. The first execution answered
    /// [`Rejected`](Self::Rejected) with the aggregate's own error; its `Display` text is kept.
    #[error("command {command_id} was refused: {reason}")]
    Refused {
        /// The command id.
        command_id: String,
        /// The rejection's `Display` text, as recorded (at most
        /// [`MAX_REFUSAL_BYTES`](crate::store::MAX_REFUSAL_BYTES)).
        reason: String,
    },
}

/// Which past state of an aggregate [`Cqrs::load_as_of`] loads.
///
/// # Examples
///
/// ```
/// use eventloom_core::{model::Timestamp, write::AsOf};
///
/// let after_ten = AsOf::Version(10);
/// let at_noon = AsOf::Time(Timestamp::from_micros(1_764_676_800_000_000));
/// assert_ne!(after_ten, at_noon);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsOf {
    /// After its first this many events (0: before any).
    Version(u64),
    /// After the longest prefix of the stream whose events were all recorded at or before this
    /// time, by the events' timestamps (command processes whose clocks disagree can record a
    /// later event with an earlier time: the load stops at the first event past `t`).
    Time(crate::model::Timestamp),
}

/// Per-command options: idempotency, optimistic concurrency from the caller, tracing ids.
///
/// # Examples
///
/// ```
/// use eventloom_core::ExecuteOptions;
///
/// let opts = ExecuteOptions::default().command_id("req-42").expect_version(3).header("user", "ada");
/// assert_eq!(opts.command_id.as_deref(), Some("req-42"));
/// // Refusals are answers too, and this id never expires.
/// let opts = ExecuteOptions::default().command_id("pm-order-7-0").record_refusal().keep_command_id();
/// assert!(opts.record_refusal && opts.keep_command_id);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecuteOptions {
    /// Makes the command idempotent (an idempotency key): executing the same request again
    /// with the same id returns the first outcome ([`CommandOutcome::replayed`]) and appends
    /// nothing, across processes too. The store keeps the request's [`Fingerprint`] with the id:
    /// the id sent with a different request (another command, aggregate id or fields) fails with
    /// [`Error::CommandIdReused`] and executes nothing.
    pub command_id: Option<String>,
    /// Runs the command only against this stream version, without retries (an HTTP `If-Match`).
    pub expected_version: Option<u64>,
    /// Written into every event's metadata.
    pub correlation_id: Option<String>,
    /// Written into every event's metadata (defaults to the command id).
    pub causation_id: Option<String>,
    /// Written into every event's metadata.
    pub headers: BTreeMap<String, String>,
    /// The W3C trace context written into every event's metadata
    /// ([`Metadata::trace`](crate::Metadata::trace)), for a caller that has one from a message
    /// (set it with [`traceparent`](Self::traceparent), which drops a malformed one). Without it,
    /// the engine stores the context of the span current when it appends, when a [trace
    /// propagation hook](crate::trace) is installed.
    pub trace: Option<crate::trace::TraceContext>,
    /// Records a refusal under the [command id](Self::command_id) (which it needs: without one
    /// the command fails with [`Error::InvalidConfig`]). When the aggregate rejects the command
    /// on the stream's latest state, the engine records the refusal (the rejection's `Display`
    /// text, with the request's fingerprint and the stream as found) in one atomic write and
    /// answers [`CommandError::Rejected`]; executing the same request with that id again answers
    /// [`CommandError::Refused`] without deciding, even when the command would succeed now. Of a
    /// refusal and a success of one id racing, exactly one is recorded, and both callers get
    /// its answer.
    ///
    /// Without it (the default) a refusal records nothing and a refused request may be retried.
    /// Process managers set it, so that a redelivered command gets the same answer and the
    /// process reacts to a refusal once.
    pub record_refusal: bool,
    /// Keeps the record of the [command id](Self::command_id) (which it needs: without one the
    /// command fails with [`Error::InvalidConfig`]) until it is forgotten explicitly
    /// ([`EventStore::forget_commands`](crate::EventStore::forget_commands)): the retention of
    /// command ids ([`EventStore::expire_commands`](crate::EventStore::expire_commands),
    /// `AppBuilder::command_retention`) never expires it: for an id that must hold as long as
    /// something may send the command again. The first execution under an id decides; a replay
    /// changes nothing.
    pub keep_command_id: bool,
}

impl ExecuteOptions {
    /// Sets [`ExecuteOptions::command_id`].
    pub fn command_id(mut self, id: impl Into<String>) -> Self {
        self.command_id = Some(id.into());
        self
    }

    /// Sets [`ExecuteOptions::expected_version`].
    pub fn expect_version(mut self, version: u64) -> Self {
        self.expected_version = Some(version);
        self
    }

    /// Sets [`ExecuteOptions::correlation_id`].
    pub fn correlation_id(mut self, id: impl Into<String>) -> Self {
        self.correlation_id = Some(id.into());
        self
    }

    /// Sets [`ExecuteOptions::causation_id`].
    pub fn causation_id(mut self, id: impl Into<String>) -> Self {
        self.causation_id = Some(id.into());
        self
    }

    /// Adds a header.
    pub fn header(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(key.into(), value.into());
        self
    }

    /// Sets [`ExecuteOptions::trace`] from a `traceparent` (and `tracestate`) header value; a
    /// malformed traceparent is dropped (the option stays unset), never stored.
    ///
    /// # Examples
    ///
    /// ```
    /// use eventloom_core::ExecuteOptions;
    ///
    /// let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    /// let opts = ExecuteOptions::default().traceparent(tp, Some("congo=t61rcWkgMzE"));
    /// assert_eq!(opts.trace.unwrap().trace_id(), "0af7651916cd43dd8448eb211c80319c");
    /// assert!(ExecuteOptions::default().traceparent("00-garbage", None).trace.is_none());
    /// ```
    pub fn traceparent(mut self, traceparent: &str, tracestate: Option<&str>) -> Self {
        self.trace = crate::trace::TraceContext::from_headers(traceparent, tracestate);
        self
    }

    /// Sets [`ExecuteOptions::record_refusal`].
    pub fn record_refusal(mut self) -> Self {
        self.record_refusal = true;
        self
    }

    /// Sets [`ExecuteOptions::keep_command_id`].
    pub fn keep_command_id(mut self) -> Self {
        self.keep_command_id = true;
        self
    }
}

/// When the engine stores a snapshot of an aggregate.
///
/// # Examples
///
/// ```
/// use eventloom_core::write::SnapshotPolicy;
///
/// assert!(SnapshotPolicy::every(100).due(99, 100));
/// assert!(SnapshotPolicy::every(100).due(98, 103));
/// assert!(!SnapshotPolicy::every(100).due(100, 150));
/// assert!(!SnapshotPolicy::never().due(0, 1_000));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotPolicy {
    every: u64,
}

impl SnapshotPolicy {
    /// A snapshot each time a stream's version crosses a multiple of `events` (0: never).
    pub const fn every(events: u64) -> Self {
        SnapshotPolicy { every: events }
    }

    /// No snapshots.
    pub const fn never() -> Self {
        SnapshotPolicy { every: 0 }
    }

    /// Whether a command that took a stream from version `from` to `to` should snapshot.
    pub fn due(&self, from: u64, to: u64) -> bool {
        self.every > 0 && from / self.every != to / self.every
    }
}

struct Snapshots<A> {
    store: Arc<dyn SnapshotStore>,
    policy: SnapshotPolicy,
    encode: fn(&A) -> serde_json::Result<String>,
    decode: fn(&str) -> serde_json::Result<A>,
}

/// An aggregate's state with the version and position it includes.
struct Loaded<A> {
    state: A,
    version: u64,
    position: Position,
}

impl<A: Aggregate> Loaded<A> {
    fn empty() -> Self {
        Loaded { state: A::default(), version: 0, position: Position::ZERO }
    }
}

type Slot<A> = Arc<tokio::sync::Mutex<Option<Loaded<A>>>>;

/// One execution of a command: what it is, and how many attempts it made since when.
struct Execution<'a, C> {
    command: &'a C,
    stream: &'a StreamId,
    options: &'a ExecuteOptions,
    key: Option<Key<'a>>,
    attempts: u32,
    started: Timestamp,
}

/// The state an attempt decides on, and whether it was read from the store during this
/// execution (rather than taken from the cache, which may be behind).
struct Basis<A> {
    loaded: Loaded<A>,
    fresh: bool,
}

/// How an attempt ended.
enum Step<E> {
    /// Decide again, on newer state.
    Again,
    /// Finished; the state is the store's and stays in the cache.
    Keep(Result<CommandOutcome, CommandError<E>>),
    /// Finished; the state may be behind the store and leaves the cache.
    Forget(Result<CommandOutcome, CommandError<E>>),
}

struct CacheEntry<A> {
    slot: Slot<A>,
    last_used: AtomicU64,
}

/// A bounded map of loaded aggregates; evicts the least recently used idle quarter when full.
struct AggregateCache<A> {
    capacity: usize,
    clock: AtomicU64,
    entries: Mutex<HashMap<StreamId, CacheEntry<A>>>,
}

impl<A: Aggregate> AggregateCache<A> {
    fn new(capacity: usize) -> Self {
        AggregateCache { capacity: capacity.max(1), clock: AtomicU64::new(0), entries: Mutex::new(HashMap::new()) }
    }

    fn slot(&self, stream: &StreamId) -> Slot<A> {
        let tick = self.clock.fetch_add(1, Ordering::Relaxed);
        let mut entries = lock(&self.entries);
        if let Some(entry) = entries.get(stream) {
            entry.last_used.store(tick, Ordering::Relaxed);
            return entry.slot.clone();
        }
        if entries.len() >= self.capacity {
            Self::evict(&mut entries, self.capacity);
        }
        let slot = Slot::default();
        entries.insert(stream.clone(), CacheEntry { slot: slot.clone(), last_used: AtomicU64::new(tick) });
        slot
    }

    fn evict(entries: &mut HashMap<StreamId, CacheEntry<A>>, capacity: usize) {
        let mut ticks: Vec<u64> = entries
            .values()
            .filter(|e| Arc::strong_count(&e.slot) == 1)
            .map(|e| e.last_used.load(Ordering::Relaxed))
            .collect();
        if ticks.is_empty() {
            return;
        }
        let n = (capacity / 4).clamp(1, ticks.len());
        let (_, cutoff, _) = ticks.select_nth_unstable(n - 1);
        let cutoff = *cutoff;
        entries.retain(|_, e| Arc::strong_count(&e.slot) > 1 || e.last_used.load(Ordering::Relaxed) > cutoff);
    }

    fn len(&self) -> usize {
        lock(&self.entries).len()
    }
}

/// A command id and the fingerprint of this execution's request.
#[derive(Clone, Copy)]
struct Key<'a> {
    id: &'a str,
    fingerprint: Fingerprint,
}

/// The first outcome of a command id, answered again when the first request was this one: on
/// this stream, with this fingerprint (or none recorded, from before fingerprints were kept);
/// a command id reused for a different request is refused. A recorded refusal answers
/// [`CommandError::Refused`].
fn replay<E>(key: Key<'_>, stream: &StreamId, first: CommandRecord) -> Result<CommandOutcome, CommandError<E>> {
    let same_request = first.fingerprint.is_none_or(|f| f == key.fingerprint);
    if &first.outcome.stream != stream || !same_request {
        return Err(CommandError::Store(Error::CommandIdReused {
            command_id: key.id.to_owned(),
            first_stream: first.outcome.stream,
            first_fingerprint: first.fingerprint,
            fingerprint: key.fingerprint,
        }));
    }
    if let Some(reason) = first.refusal {
        return Err(CommandError::Refused { command_id: key.id.to_owned(), reason });
    }
    Ok(CommandOutcome::replay(first.outcome))
}

/// How a command's answer counts in `eventloom_commands_total`.
fn command_end<E>(result: &Result<CommandOutcome, CommandError<E>>) -> CommandEnd {
    match result {
        Ok(outcome) if outcome.replayed => CommandEnd::Replayed,
        Ok(_) => CommandEnd::Ok,
        Err(CommandError::Rejected(_)) => CommandEnd::Rejected,
        Err(CommandError::Refused { .. }) => CommandEnd::Refused,
        Err(CommandError::Conflict { .. }) => CommandEnd::Conflict,
        Err(CommandError::Store(_)) => CommandEnd::Error,
    }
}

/// The outcome of a command that appended nothing to `stream`, as it found it.
fn as_found<A>(stream: &StreamId, loaded: &Loaded<A>) -> AppendOutcome {
    AppendOutcome {
        stream: stream.clone(),
        first_version: loaded.version + 1,
        last_version: loaded.version,
        position: loaded.position,
    }
}

/// The default number of aggregates an engine keeps loaded
/// ([`AggregateOptions::cache_capacity`](crate::AggregateOptions::cache_capacity)).
pub const DEFAULT_CACHE_CAPACITY: usize = 10_000;
/// The default number of events read per round-trip when loading a stream from a store that
/// reads each page whole: a stream of fewer than 10,000 events loads in one page (a full page
/// is followed by another, which finds the rest or the stream's end). Pages are bounded in
/// bytes too ([`Cqrs::with_batch_bytes`]). A store that folds rows as they arrive, holding one
/// at a time ([`EventStore::folds_row_by_row`](crate::store::EventStore::folds_row_by_row):
/// PostgreSQL without a read replica), is asked for the whole rest of the stream in one page
/// instead, in flat memory: each page costs a round-trip, which on a loaded machine dominated a
/// long stream's load (10 pages of 1,000 took several times one of 10,000:
/// `docs/benchmarks.md`).
pub const DEFAULT_BATCH_SIZE: usize = 10_000;

/// The command engine of one aggregate type over an [`EventStore`](crate::EventStore).
///
/// `execute` loads the aggregate (from its snapshot, then the newer events, in bounded
/// batches), asks it to decide, and appends the events with the version it decided on. When
/// another writer got there first, it waits a random, growing time, reads the newer events and
/// decides again, within the attempts and the time budget of its [`RetryPolicy`].
///
/// Loaded aggregates stay in an in-process cache: the next command decides on the cached state
/// and appends with its version, so a command costs one round-trip to the store; when the
/// cache is behind, the store's conflict tells, and the engine reads only the newer events.
/// Commands on one stream in one engine run one at a time, which also keeps conflicts rare.
///
/// Clones share the store, the cache and the configuration.
///
/// # Examples
///
/// ```
/// use eventloom_core::prelude::*;
/// use eventloom_core::{CommandError, write::Cqrs, memory::MemoryEventStore};
///
/// #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
/// enum CounterEvent { Incremented { by: u64 } }
///
/// #[derive(Debug, Default)]
/// struct Counter { value: u64 }
///
/// #[derive(Debug, thiserror::Error)]
/// enum CounterError { #[error("the counter stops at 10")] TooBig }
///
/// impl Aggregate for Counter {
///     const TYPE: &'static str = "counter";
///     type Event = CounterEvent;
///     type Error = CounterError;
///     fn apply(&mut self, CounterEvent::Incremented { by }: &CounterEvent) { self.value += by }
/// }
///
/// #[derive(Debug, Serialize, Command)]
/// #[command(aggregate = Counter)]
/// struct Increment { #[command(id)] id: String, by: u64 }
///
/// impl Handle<Increment> for Counter {
///     fn handle(&self, cmd: &Increment) -> Result<Vec<CounterEvent>, CounterError> {
///         if self.value + cmd.by > 10 { return Err(CounterError::TooBig) }
///         Ok(vec![CounterEvent::Incremented { by: cmd.by }])
///     }
/// }
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let cqrs = Cqrs::new(MemoryEventStore::new());
/// let done = cqrs.execute(Increment { id: "c".into(), by: 4 }).await.unwrap();
/// assert_eq!(done.version, 1);
/// let err = cqrs.execute(Increment { id: "c".into(), by: 7 }).await.unwrap_err();
/// assert!(matches!(err, CommandError::Rejected(CounterError::TooBig)));
/// # });
/// ```
pub struct Cqrs<A: Aggregate, S> {
    store: S,
    cache: Option<Arc<AggregateCache<A>>>,
    snapshots: Option<Arc<Snapshots<A>>>,
    upcasters: Upcasters,
    retry: RetryPolicy,
    jitter: Arc<Jitter>,
    batch_size: usize,
    batch_bytes: usize,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn IdGenerator>,
    metrics: Arc<EngineMetrics>,
}

impl<A: Aggregate, S: Clone> Clone for Cqrs<A, S> {
    fn clone(&self) -> Self {
        Cqrs {
            store: self.store.clone(),
            cache: self.cache.clone(),
            snapshots: self.snapshots.clone(),
            upcasters: self.upcasters.clone(),
            retry: self.retry,
            jitter: self.jitter.clone(),
            batch_size: self.batch_size,
            batch_bytes: self.batch_bytes,
            clock: self.clock.clone(),
            ids: self.ids.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

impl<A: Aggregate, S> std::fmt::Debug for Cqrs<A, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cqrs")
            .field("aggregate", &A::TYPE)
            .field("cached", &self.cache.as_ref().map(|c| c.len()))
            .field("snapshots", &self.snapshots.as_ref().map(|s| s.policy))
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl<A: Aggregate, S: crate::EventStore> Cqrs<A, S> {
    /// An engine over `store` with a cache of [`write::DEFAULT_CACHE_CAPACITY`](crate::write::DEFAULT_CACHE_CAPACITY) aggregates, the
    /// default [`RetryPolicy`] (up to [`RetryPolicy::DEFAULT_MAX_ATTEMPTS`](RetryPolicy::DEFAULT_MAX_ATTEMPTS)
    /// attempts within [`RetryPolicy::DEFAULT_TIME_BUDGET`](RetryPolicy::DEFAULT_TIME_BUDGET), with jittered
    /// exponential backoff), no snapshots, the system clock and random event ids.
    pub fn new(store: S) -> Self {
        Cqrs {
            store,
            cache: Some(Arc::new(AggregateCache::new(crate::write::DEFAULT_CACHE_CAPACITY))),
            snapshots: None,
            upcasters: Upcasters::new(),
            retry: RetryPolicy::new(),
            jitter: Arc::new(Jitter::new(None)),
            batch_size: crate::write::DEFAULT_BATCH_SIZE,
            batch_bytes: crate::read::DEFAULT_BATCH_BYTES,
            clock: Arc::new(SystemClock),
            ids: Arc::new(RandomIds::default()),
            metrics: Arc::new(EngineMetrics::new(A::TYPE)),
        }
    }

    /// Keeps up to `capacity` aggregates loaded (0 disables the cache: every command loads).
    pub fn with_cache_capacity(mut self, capacity: usize) -> Self {
        self.cache = (capacity > 0).then(|| Arc::new(AggregateCache::new(capacity)));
        self
    }

    /// Retries conflicts by `policy` (see [`RetryPolicy`]); a policy with a
    /// [`seed`](RetryPolicy::seed) restarts the jitter's sequence from it.
    pub fn with_retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self.jitter = Arc::new(Jitter::new(policy.seed));
        self
    }

    /// Decides a command at most `attempts` times (at least once) before giving up on
    /// conflicts, keeping the rest of the retry policy (its backoff and time budget).
    #[deprecated(note = "use `with_retry(RetryPolicy::default().max_attempts(n))`")]
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.retry.max_attempts = attempts.max(1);
        self
    }

    /// The retry policy.
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.retry
    }

    /// Reads streams `events` at a time when loading (at least 1), from a store that reads each
    /// page whole (see [`DEFAULT_BATCH_SIZE`]; a store that folds rows as they arrive reads the
    /// rest of a stream in one page whatever this is).
    pub fn with_batch_size(mut self, events: usize) -> Self {
        self.batch_size = events.max(1);
        self
    }

    /// Loads streams in batches of at most about `bytes` of events as well (a batch ends with the
    /// event that reaches it; default [`read::DEFAULT_BATCH_BYTES`](crate::read::DEFAULT_BATCH_BYTES)), so
    /// that a stream of large events loads in flat memory from a store that reads each page
    /// whole (one that folds rows as they arrive holds one at a time).
    pub fn with_batch_bytes(mut self, bytes: usize) -> Self {
        self.batch_bytes = bytes.max(1);
        self
    }

    /// Stores snapshots by `policy` and starts loads from the latest one whose
    /// [`SNAPSHOT_VERSION`](Aggregate::SNAPSHOT_VERSION) matches.
    pub fn with_snapshots(mut self, store: impl SnapshotStore, policy: SnapshotPolicy) -> Self
    where
        A: Serialize + DeserializeOwned,
    {
        self.snapshots = Some(Arc::new(Snapshots {
            store: Arc::new(store),
            policy,
            encode: |a| crate::json::to_string(a),
            decode: |s| serde_json::from_str(s),
        }));
        self
    }

    /// Upcasts stored events before decoding them.
    pub fn with_upcasters(mut self, upcasters: Upcasters) -> Self {
        self.upcasters = upcasters;
        self
    }

    /// Replaces the clock that stamps event metadata, measures the retry budget and waits
    /// between retries.
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Replaces the generator of event ids.
    pub fn with_ids(mut self, ids: impl IdGenerator) -> Self {
        self.ids = Arc::new(ids);
        self
    }

    /// The event store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Executes a command: see [`Cqrs`].
    pub async fn execute<C>(&self, command: C) -> Result<CommandOutcome, CommandError<A::Error>>
    where
        C: Command<Aggregate = A> + Serialize,
        A: Handle<C>,
    {
        self.execute_with(command, ExecuteOptions::default()).await
    }

    /// Executes a command with options: an idempotency id, a required version, metadata.
    pub async fn execute_with<C>(
        &self,
        command: C,
        options: ExecuteOptions,
    ) -> Result<CommandOutcome, CommandError<A::Error>>
    where
        C: Command<Aggregate = A> + Serialize,
        A: Handle<C>,
    {
        let started = Instant::now();
        let metrics = self.metrics.command(C::NAME);
        let result = match StreamId::new(A::TYPE, command.aggregate_id()) {
            Ok(stream) => {
                let span = tracing::debug_span!("command", command = C::NAME, stream = %stream);
                self.run(&command, &stream, &options).instrument(span).await
            }
            Err(error) => Err(error.into()),
        };
        metrics.record(command_end(&result), started);
        result
    }

    /// The current state of an aggregate, loaded from the store (not the cache), with its version.
    pub async fn load(&self, id: &str) -> Result<(A, u64), Error> {
        let stream = StreamId::new(A::TYPE, id)?;
        let loaded = self.load_stream(&stream).await?;
        Ok((loaded.state, loaded.version))
    }

    /// An aggregate as it was in the past, with its version then: after its first `version`
    /// events ([`AsOf::Version`]), or after every event recorded at or before a time
    /// ([`AsOf::Time`], by the events' metadata timestamps, up to the first later one). Read
    /// from the store, replayed from the first event (no snapshot, no cache); a version past
    /// the stream's end gives the current state. For audits, debugging and the admin commands.
    ///
    /// # Examples
    ///
    /// ```
    /// # use eventloom_core::prelude::*;
    /// # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)] enum CounterEvent { Incremented { by: u64 } }
    /// # #[derive(Debug, Default)] struct Counter { value: u64 }
    /// # impl Aggregate for Counter { const TYPE: &'static str = "counter"; type Event = CounterEvent;
    /// #   type Error = std::convert::Infallible;
    /// #   fn apply(&mut self, e: &CounterEvent) { let CounterEvent::Incremented { by } = e; self.value += by; } }
    /// # #[derive(Debug, Serialize, Command)] #[command(aggregate = Counter)] struct Increment { #[command(id)] id: String, by: u64 }
    /// # impl Handle<Increment> for Counter { fn handle(&self, c: &Increment) -> Result<Vec<CounterEvent>, std::convert::Infallible> {
    /// #   Ok(vec![CounterEvent::Incremented { by: c.by }]) } }
    /// use eventloom_core::{memory::MemoryEventStore, write::{AsOf, Cqrs}};
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let cqrs = Cqrs::<Counter, _>::new(MemoryEventStore::new());
    /// for by in [1, 10, 100] {
    ///     cqrs.execute(Increment { id: "c".into(), by }).await.unwrap();
    /// }
    /// let (then, version) = cqrs.load_as_of("c", AsOf::Version(2)).await.unwrap();
    /// assert_eq!((then.value, version), (11, 2));
    /// # });
    /// ```
    pub async fn load_as_of(&self, id: &str, as_of: AsOf) -> Result<(A, u64), Error> {
        let stream = StreamId::new(A::TYPE, id)?;
        let span = tracing::debug_span!("load_as_of", stream = %stream, ?as_of);
        async {
            let mut loaded = Loaded::<A>::empty();
            let mut ahead = crate::store::ReadAhead::new(self.batch_size);
            loop {
                let limit = ahead.limit();
                let batch =
                    self.store.read_stream_bounded(&stream, loaded.version + 1, limit, self.batch_bytes).await?;
                ahead.observe(&batch, self.batch_bytes);
                for raw in &batch {
                    let past = match as_of {
                        AsOf::Version(version) => raw.version > version,
                        AsOf::Time(at) => raw.decoded_metadata()?.timestamp > at,
                    };
                    if past {
                        return Ok((loaded.state, loaded.version));
                    }
                    let event = self.upcasters.decode_event::<A::Event>(raw)?;
                    loaded.state.apply(&event);
                    loaded.version = raw.version;
                }
                if !crate::store::may_have_more(&batch, limit, self.batch_bytes) {
                    return Ok((loaded.state, loaded.version));
                }
            }
        }
        .instrument(span)
        .await
    }

    async fn run<C>(
        &self,
        command: &C,
        stream: &StreamId,
        options: &ExecuteOptions,
    ) -> Result<CommandOutcome, CommandError<A::Error>>
    where
        C: Command<Aggregate = A> + Serialize,
        A: Handle<C>,
    {
        if options.command_id.is_none() {
            let asks = match (options.record_refusal, options.keep_command_id) {
                (true, _) => Some("to record its refusal"),
                (false, true) => Some("to keep its command id"),
                (false, false) => None,
            };
            if let Some(asks) = asks {
                let reason = format!("command {} asks {asks}, but has no command id", C::NAME);
                return Err(Error::InvalidConfig { reason }.into());
            }
        }
        let key = match options.command_id.as_deref() {
            Some(id) => {
                crate::validate_command_id(id)?;
                let key = Key { id, fingerprint: Fingerprint::of(command)? };
                if let Some(first) = self.store.command_outcome(id).await? {
                    return replay(key, stream, first);
                }
                Some(key)
            }
            None => None,
        };
        let mut execution = Execution { command, stream, options, key, attempts: 0, started: self.clock.now() };
        match &self.cache {
            Some(cache) => {
                let slot = cache.slot(stream);
                let mut guard = slot.lock().await;
                self.decide_and_append(&mut execution, &mut guard).await
            }
            None => self.decide_and_append(&mut execution, &mut None).await,
        }
    }

    /// Decides and appends, one [`attempt`](Self::attempt) after another until one finishes.
    /// `slot` holds the cached state; it is left empty after a failure that may have left the
    /// state behind the store.
    async fn decide_and_append<C>(
        &self,
        execution: &mut Execution<'_, C>,
        slot: &mut Option<Loaded<A>>,
    ) -> Result<CommandOutcome, CommandError<A::Error>>
    where
        C: Command<Aggregate = A> + Serialize,
        A: Handle<C>,
    {
        let mut basis = match slot.take() {
            Some(cached) => {
                self.metrics.cache_hits.increment(1);
                Basis { loaded: cached, fresh: false }
            }
            None => {
                self.metrics.cache_misses.increment(1);
                Basis { loaded: self.load_stream(execution.stream).await?, fresh: true }
            }
        };
        loop {
            execution.attempts += 1;
            match self.attempt(execution, &mut basis).await? {
                Step::Again => {}
                Step::Keep(result) => {
                    *slot = Some(basis.loaded);
                    return result;
                }
                Step::Forget(result) => return result,
            }
        }
    }

    /// One attempt: check the required version, decide, then append the events, or settle a
    /// refusal or a no-op.
    async fn attempt<C>(
        &self,
        execution: &Execution<'_, C>,
        basis: &mut Basis<A>,
    ) -> Result<Step<A::Error>, CommandError<A::Error>>
    where
        C: Command<Aggregate = A> + Serialize,
        A: Handle<C>,
    {
        if let Some(step) = self.check_required_version(execution, basis).await? {
            return Ok(step);
        }
        match basis.loaded.state.handle(execution.command) {
            Ok(events) if !events.is_empty() => self.append(execution, basis, events).await,
            unsettled => self.settle(execution, basis, unsettled.map(|_| ())).await,
        }
    }

    /// With [`ExecuteOptions::expected_version`], the command runs only on the stream at that
    /// version: cached state behind it is caught up first, and a stream at another version
    /// finishes the command with a conflict (or with the first outcome, when the same command
    /// sent twice at once is what moved the version). `None`: go on.
    async fn check_required_version<C>(
        &self,
        execution: &Execution<'_, C>,
        basis: &mut Basis<A>,
    ) -> Result<Option<Step<A::Error>>, CommandError<A::Error>> {
        let Some(required) = execution.options.expected_version else {
            return Ok(None);
        };
        if basis.loaded.version < required && (!basis.fresh || self.store.loads_may_lag()) {
            self.catch_up_latest(execution.stream, &mut basis.loaded).await?;
            basis.fresh = true;
        }
        if basis.loaded.version == required {
            return Ok(None);
        }
        let conflict = CommandError::Conflict {
            stream: execution.stream.clone(),
            expected: ExpectedVersion::Exact(required),
            actual: basis.loaded.version,
            attempts: execution.attempts,
        };
        Ok(Some(Step::Keep(self.first_outcome_or(execution, conflict).await)))
    }

    /// A refusal or a no-op (`decided` is `Ok(())`) must hold on the latest state: decided on
    /// cached state, the newer events are read, and when there are any the command is decided
    /// again. On the latest state, the same command executed meanwhile by another caller (whose
    /// events may be why this one refuses or does nothing) answers with its outcome; otherwise
    /// the refusal is the answer (recorded when asked), or the no-op is recorded.
    async fn settle<C>(
        &self,
        execution: &Execution<'_, C>,
        basis: &mut Basis<A>,
        decided: Result<(), A::Error>,
    ) -> Result<Step<A::Error>, CommandError<A::Error>> {
        // A load from a store whose loads may lag (a replica) is not the latest state either.
        // Each time round reads newer events, so this ends.
        if !basis.fresh || self.store.loads_may_lag() {
            basis.fresh = true;
            if self.catch_up_latest(execution.stream, &mut basis.loaded).await? > 0 {
                return Ok(Step::Again);
            }
        }
        if let Some((key, first)) = self.executed_before(execution).await? {
            return Ok(Step::Keep(replay(key, execution.stream, first)));
        }
        Ok(Step::Keep(match decided {
            Err(rejection) => self.refuse(execution, &basis.loaded, rejection).await,
            Ok(()) => self.record_no_op(execution, &basis.loaded).await,
        }))
    }

    /// The answer to a command the aggregate rejected on the latest state: the rejection, after
    /// recording it under the command id when the caller asked
    /// ([`ExecuteOptions::record_refusal`]), or, when that id was recorded first meanwhile (the
    /// same command, sent twice at once), the first answer.
    async fn refuse<C>(
        &self,
        execution: &Execution<'_, C>,
        loaded: &Loaded<A>,
        rejection: A::Error,
    ) -> Result<CommandOutcome, CommandError<A::Error>> {
        let Some(key) = execution.key.filter(|_| execution.options.record_refusal) else {
            return Err(CommandError::Rejected(rejection));
        };
        let record =
            self.record_of(execution, key, as_found(execution.stream, loaded)).with_refusal(rejection.to_string());
        let span = tracing::debug_span!("record_refusal", command_id = key.id);
        match self.store.record_command(key.id, record).instrument(span).await? {
            None => Err(CommandError::Rejected(rejection)),
            Some(first) => replay(key, execution.stream, first),
        }
    }

    /// The outcome of a command that appends nothing. Under a command id it is recorded: sent
    /// again after the stream changed, the command must answer the same and append nothing.
    async fn record_no_op<C>(
        &self,
        execution: &Execution<'_, C>,
        loaded: &Loaded<A>,
    ) -> Result<CommandOutcome, CommandError<A::Error>> {
        let outcome = as_found(execution.stream, loaded);
        let Some(key) = execution.key else {
            return Ok(outcome.into());
        };
        let record = self.record_of(execution, key, outcome.clone());
        match self.store.record_command(key.id, record).await? {
            None => Ok(outcome.into()),
            // The same command id, sent twice at once, was recorded first.
            Some(first) => replay(key, execution.stream, first),
        }
    }

    /// The record of `outcome` under the execution's command id: its fingerprint, made now by the
    /// engine's clock, kept when asked.
    fn record_of<C>(&self, execution: &Execution<'_, C>, key: Key<'_>, outcome: AppendOutcome) -> CommandRecord {
        let record = CommandRecord::new(outcome).with_fingerprint(key.fingerprint).with_recorded_at(self.clock.now());
        if execution.options.keep_command_id { record.keep() } else { record }
    }

    /// What the store keeps with the outcome of the execution's append under its command id.
    fn entry_of<C>(&self, execution: &Execution<'_, C>, key: Key<'_>) -> CommandEntry {
        let entry = CommandEntry::new(key.fingerprint, self.clock.now());
        if execution.options.keep_command_id { entry.keep() } else { entry }
    }

    /// Appends the events at the version they were decided on; on a conflict, see
    /// [`after_conflict`](Self::after_conflict).
    async fn append<C>(
        &self,
        execution: &Execution<'_, C>,
        basis: &mut Basis<A>,
        events: Vec<A::Event>,
    ) -> Result<Step<A::Error>, CommandError<A::Error>> {
        let stream = execution.stream;
        let batch = self.encode(&events, execution.options)?;
        let expected = ExpectedVersion::Exact(basis.loaded.version);
        let span = tracing::debug_span!("append", stream = %stream, events = events.len());
        let bytes: usize = batch.iter().map(NewEvent::size).sum();
        let started = Instant::now();
        let appended = match execution.key {
            Some(key) => {
                let entry = self.entry_of(execution, key);
                self.store.append_command(stream, expected, batch, &entry).instrument(span).await
            }
            None => self.store.append(stream, expected, batch).instrument(span).await,
        };
        self.metrics.append_duration.record(started.elapsed());
        match appended {
            Ok(Appended::Written(outcome)) => {
                self.metrics.append_events.increment(outcome.appended());
                self.metrics.append_bytes.increment(bytes as u64);
                self.fold_appended(stream, &mut basis.loaded, &events, &outcome).await;
                Ok(Step::Keep(Ok(outcome.into())))
            }
            Err(Error::Conflict { actual, expected, .. }) => {
                self.metrics.conflicts.increment(1);
                self.after_conflict(execution, basis, expected, actual).await
            }
            // The same command id, sent twice at once, was appended first.
            Ok(Appended::Duplicate { command_id, first }) => Ok(Step::Forget(match execution.key {
                Some(key) => replay(key, stream, first),
                None => Err(Error::Backend {
                    message: format!(
                        "the store answered an append without a command id as a duplicate of command {command_id}"
                    ),
                    source: None,
                }
                .into()),
            })),
            Err(other) => Err(other.into()),
        }
    }

    /// Folds events just appended into the state, and snapshots it when due.
    async fn fold_appended(
        &self,
        stream: &StreamId,
        loaded: &mut Loaded<A>,
        events: &[A::Event],
        outcome: &AppendOutcome,
    ) {
        for event in events {
            loaded.state.apply(event);
        }
        let before = loaded.version;
        loaded.version = outcome.last_version;
        loaded.position = outcome.position;
        self.snapshot_if_due(stream, loaded, before).await;
    }

    /// Another writer appended first: decide again on the newer events after a backoff, or,
    /// when the retry policy ran out or the caller required a version, give up with a conflict
    /// (or with the first outcome, when the same command sent twice at once won the race).
    async fn after_conflict<C>(
        &self,
        execution: &Execution<'_, C>,
        basis: &mut Basis<A>,
        expected: ExpectedVersion,
        actual: u64,
    ) -> Result<Step<A::Error>, CommandError<A::Error>> {
        let attempts = execution.attempts;
        let retry = match execution.options.expected_version {
            None => self.next_delay(attempts, execution.started),
            Some(_) => None,
        };
        let Some(delay) = retry else {
            let conflict = CommandError::Conflict { stream: execution.stream.clone(), expected, actual, attempts };
            return Ok(Step::Forget(self.first_outcome_or(execution, conflict).await));
        };
        tracing::debug!(actual, attempts, ?delay, "conflict: backing off, then deciding on the newer events");
        self.metrics.retries.increment(1);
        if !delay.is_zero() {
            self.clock.sleep(delay).await;
        }
        self.catch_up(execution.stream, &mut basis.loaded).await?;
        basis.fresh = true;
        Ok(Step::Again)
    }

    /// The wait before the next attempt of a command that made `attempts` since `started`, or
    /// `None` when its retry policy ran out.
    fn next_delay(&self, attempts: u32, started: Timestamp) -> Option<Duration> {
        if attempts >= self.retry.max_attempts.max(1) {
            return None;
        }
        let micros = self.clock.now().as_micros().saturating_sub(started.as_micros());
        let elapsed = Duration::from_micros(u64::try_from(micros).unwrap_or(0));
        let remaining = self.retry.time_budget.checked_sub(elapsed).filter(|r| !r.is_zero())?;
        Some(self.retry.backoff(attempts, self.jitter.next()).min(remaining))
    }

    /// What the command's id already did, if it has one and it was used.
    async fn executed_before<'e, C>(
        &self,
        execution: &Execution<'e, C>,
    ) -> Result<Option<(Key<'e>, CommandRecord)>, Error> {
        let Some(key) = execution.key else {
            return Ok(None);
        };
        Ok(self.store.command_outcome(key.id).await?.map(|first| (key, first)))
    }

    /// The first outcome of the command's id when the same command was executed meanwhile,
    /// else `otherwise`.
    async fn first_outcome_or<C>(
        &self,
        execution: &Execution<'_, C>,
        otherwise: CommandError<A::Error>,
    ) -> Result<CommandOutcome, CommandError<A::Error>> {
        match self.executed_before(execution).await? {
            Some((key, first)) => replay(key, execution.stream, first),
            None => Err(otherwise),
        }
    }

    fn encode(&self, events: &[A::Event], options: &ExecuteOptions) -> Result<Vec<NewEvent>, Error> {
        let timestamp = self.clock.now();
        // The command's trace: given, or the current span's when a hook is installed (one
        // atomic load otherwise).
        let trace = options.trace.clone().or_else(crate::trace::current);
        events
            .iter()
            .map(|event| {
                let metadata = Metadata {
                    event_id: self.ids.next_id(),
                    timestamp,
                    command_id: options.command_id.clone(),
                    correlation_id: options.correlation_id.clone(),
                    causation_id: options.causation_id.clone().or_else(|| options.command_id.clone()),
                    headers: options.headers.clone(),
                    trace: trace.clone(),
                };
                NewEvent::encode(event, metadata)
            })
            .collect()
    }

    async fn load_stream(&self, stream: &StreamId) -> Result<Loaded<A>, Error> {
        let span = tracing::debug_span!("load", stream = %stream);
        self.metrics.loads.increment(1);
        async {
            let mut loaded = self.start_from_snapshot(stream).await.unwrap_or_else(Loaded::empty);
            self.catch_up(stream, &mut loaded).await?;
            Ok(loaded)
        }
        .instrument(span)
        .await
    }

    async fn start_from_snapshot(&self, stream: &StreamId) -> Option<Loaded<A>> {
        let snapshots = self.snapshots.as_ref()?;
        let snapshot = match snapshots.store.load_snapshot(stream).await {
            Ok(snapshot) => snapshot?,
            Err(error) => {
                tracing::warn!(%error, %stream, "cannot load snapshot; replaying the stream");
                return None;
            }
        };
        if snapshot.snapshot_version != A::SNAPSHOT_VERSION {
            return None;
        }
        match (snapshots.decode)(&snapshot.state) {
            Ok(state) => {
                self.metrics.snapshot_hits.increment(1);
                Some(Loaded { state, version: snapshot.version, position: snapshot.position })
            }
            Err(error) => {
                tracing::warn!(%error, %stream, "snapshot does not decode; replaying the stream");
                None
            }
        }
    }

    /// Folds the events after `loaded.version` into it, a batch at a time; returns how many.
    async fn catch_up(&self, stream: &StreamId, loaded: &mut Loaded<A>) -> Result<usize, Error> {
        let mut read = 0;
        let mut ahead = crate::store::ReadAhead::new(self.batch_size);
        let upcasters = &self.upcasters;
        // A store that holds one row at a time folds the rest of the stream in one page.
        let unbounded = self.store.folds_row_by_row();
        loop {
            let (limit, max_bytes) =
                if unbounded { (usize::MAX, usize::MAX) } else { (ahead.limit(), self.batch_bytes) };
            let from = loaded.version + 1;
            // Each event is decoded from the store's read buffer and folded as it arrives: a
            // load holds one event at a time, whatever the page's size (on stores that fold
            // rows as they arrive; see `EventStore::fold_stream`).
            let mut fold = |raw: EventRef<'_>| -> crate::Result<()> {
                let event = upcasters.decode_ref::<A::Event>(raw)?;
                loaded.state.apply(&event);
                loaded.version = raw.version;
                // Lent with every event or (PostgreSQL) with a page's last only.
                if let Some(position) = raw.position {
                    loaded.position = position;
                }
                Ok(())
            };
            let page = self.store.fold_stream(stream, from, limit, max_bytes, &mut fold).await?;
            ahead.observe_page(page.events, page.bytes, self.batch_bytes);
            read += page.events;
            self.metrics.load_events.increment(page.events as u64);
            if !page.may_have_more(limit, max_bytes) {
                return Ok(read);
            }
        }
    }

    /// [`catch_up`](Self::catch_up) to the latest version: on a store whose loads may lag
    /// ([`EventStore::loads_may_lag`]), the version is asked first, after which its loads reach
    /// it.
    async fn catch_up_latest(&self, stream: &StreamId, loaded: &mut Loaded<A>) -> Result<usize, Error> {
        if self.store.loads_may_lag() && self.store.stream_version(stream).await? <= loaded.version {
            return Ok(0);
        }
        self.catch_up(stream, loaded).await
    }

    async fn snapshot_if_due(&self, stream: &StreamId, loaded: &Loaded<A>, before: u64) {
        let Some(snapshots) = &self.snapshots else { return };
        if !snapshots.policy.due(before, loaded.version) {
            return;
        }
        let saved = match (snapshots.encode)(&loaded.state) {
            Ok(state) => {
                let snapshot = Snapshot {
                    stream: stream.clone(),
                    version: loaded.version,
                    position: loaded.position,
                    snapshot_version: A::SNAPSHOT_VERSION,
                    state,
                };
                snapshots.store.save_snapshot(snapshot).await
            }
            Err(source) => Err(Error::Serde { what: format!("snapshot of {stream}"), source }),
        };
        if let Err(error) = saved {
            tracing::warn!(%error, %stream, "snapshot not saved; loads replay more events until the next one");
        }
    }
}

//! The command engine: load, decide, append, retry on conflict.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use crate::memory::lock;
use crate::write::retry::Jitter;
use crate::{
    Aggregate, AppendOutcome, Clock, Command, Error, ExpectedVersion, Handle, IdGenerator, Metadata, NewEvent,
    Position, RandomIds, RetryPolicy, Snapshot, SnapshotStore, StreamId, SystemClock, Timestamp, Upcasters,
};

/// What a command did.
///
/// # Examples
///
/// ```
/// use eventloom_core::{CommandOutcome, Position, StreamId};
///
/// let o = CommandOutcome { stream: StreamId::new("task", "1").unwrap(), version: 2, position: Position::new(2, 2), appended: 1 };
/// assert_eq!(o.position.to_string(), "2.2");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandOutcome {
    /// The aggregate's stream.
    pub stream: StreamId,
    /// The stream's version after the command.
    pub version: u64,
    /// The position of the last event the command appended (or, when it appended none, of the
    /// stream's last event): a query that waits for it sees the command's effect.
    pub position: Position,
    /// How many events the command appended.
    pub appended: u64,
}

impl From<AppendOutcome> for CommandOutcome {
    fn from(o: AppendOutcome) -> Self {
        CommandOutcome { appended: o.appended(), stream: o.stream, version: o.last_version, position: o.position }
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
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecuteOptions {
    /// Makes the command idempotent: executing it again with the same id returns the first
    /// outcome and appends nothing, across processes too.
    pub command_id: Option<String>,
    /// Runs the command only against this stream version, without retries (an HTTP `If-Match`).
    pub expected_version: Option<u64>,
    /// Written into every event's metadata.
    pub correlation_id: Option<String>,
    /// Written into every event's metadata (defaults to the command id).
    pub causation_id: Option<String>,
    /// Written into every event's metadata.
    pub headers: BTreeMap<String, String>,
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
}

/// When the engine stores a snapshot of an aggregate.
///
/// # Examples
///
/// ```
/// use eventloom_core::SnapshotPolicy;
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

/// The first outcome of a command id, if it was for this stream; a key reused for another
/// stream is refused.
fn first_outcome<E>(
    command_id: &str,
    stream: &StreamId,
    first: AppendOutcome,
) -> Result<CommandOutcome, CommandError<E>> {
    if &first.stream != stream {
        return Err(CommandError::Store(Error::CommandIdReused {
            command_id: command_id.to_owned(),
            first_stream: first.stream,
        }));
    }
    Ok(first.into())
}

/// The default number of aggregates an engine keeps loaded.
pub const DEFAULT_CACHE_CAPACITY: usize = 10_000;
/// The default number of events read per round-trip when loading a stream.
pub const DEFAULT_BATCH_SIZE: usize = 1_000;

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
/// use eventloom_core::{Cqrs, MemoryEventStore, CommandError};
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
/// #[derive(Debug, Command)]
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
    /// An engine over `store` with a cache of [`DEFAULT_CACHE_CAPACITY`] aggregates, the
    /// default [`RetryPolicy`] (up to [`DEFAULT_MAX_ATTEMPTS`](crate::DEFAULT_MAX_ATTEMPTS)
    /// attempts within [`DEFAULT_RETRY_BUDGET`](crate::DEFAULT_RETRY_BUDGET), with jittered
    /// exponential backoff), no snapshots, the system clock and random event ids.
    pub fn new(store: S) -> Self {
        Cqrs {
            store,
            cache: Some(Arc::new(AggregateCache::new(DEFAULT_CACHE_CAPACITY))),
            snapshots: None,
            upcasters: Upcasters::new(),
            retry: RetryPolicy::new(),
            jitter: Arc::new(Jitter::new(None)),
            batch_size: DEFAULT_BATCH_SIZE,
            batch_bytes: crate::DEFAULT_BATCH_BYTES,
            clock: Arc::new(SystemClock),
            ids: Arc::new(RandomIds::default()),
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

    /// Reads streams `events` at a time when loading (at least 1).
    pub fn with_batch_size(mut self, events: usize) -> Self {
        self.batch_size = events.max(1);
        self
    }

    /// Loads streams in batches of at most about `bytes` of events as well (a batch ends with the
    /// event that reaches it; default [`DEFAULT_BATCH_BYTES`](crate::DEFAULT_BATCH_BYTES)), so
    /// that a stream of large events loads in flat memory.
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
        C: Command<Aggregate = A>,
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
        C: Command<Aggregate = A>,
        A: Handle<C>,
    {
        let stream = StreamId::new(A::TYPE, command.aggregate_id())?;
        let span = tracing::debug_span!("command", command = C::NAME, stream = %stream);
        self.run(&command, &stream, &options).instrument(span).await
    }

    /// The current state of an aggregate, loaded from the store (not the cache), with its version.
    pub async fn load(&self, id: &str) -> Result<(A, u64), Error> {
        let stream = StreamId::new(A::TYPE, id)?;
        let loaded = self.load_stream(&stream).await?;
        Ok((loaded.state, loaded.version))
    }

    async fn run<C>(
        &self,
        command: &C,
        stream: &StreamId,
        options: &ExecuteOptions,
    ) -> Result<CommandOutcome, CommandError<A::Error>>
    where
        C: Command<Aggregate = A>,
        A: Handle<C>,
    {
        if let Some(id) = &options.command_id {
            crate::validate_command_id(id)?;
            if let Some(first) = self.store.command_outcome(id).await? {
                return first_outcome(id, stream, first);
            }
        }
        match &self.cache {
            Some(cache) => {
                let slot = cache.slot(stream);
                let mut guard = slot.lock().await;
                self.decide_and_append(command, stream, options, &mut guard).await
            }
            None => self.decide_and_append(command, stream, options, &mut None).await,
        }
    }

    /// Decides and appends, retrying on conflict. `slot` holds the cached state; it is left
    /// empty after a failure that may have left the state behind the store.
    async fn decide_and_append<C>(
        &self,
        command: &C,
        stream: &StreamId,
        options: &ExecuteOptions,
        slot: &mut Option<Loaded<A>>,
    ) -> Result<CommandOutcome, CommandError<A::Error>>
    where
        C: Command<Aggregate = A>,
        A: Handle<C>,
    {
        let (mut loaded, mut fresh) = match slot.take() {
            Some(cached) => (cached, false),
            None => (self.load_stream(stream).await?, true),
        };
        let mut attempts = 0;
        let started = self.clock.now();
        loop {
            attempts += 1;
            if let Some(required) = options.expected_version {
                if loaded.version < required && !fresh {
                    self.catch_up(stream, &mut loaded).await?;
                    fresh = true;
                }
                if loaded.version != required {
                    let actual = loaded.version;
                    *slot = Some(loaded);
                    // The same command, sent twice at once, may be what moved the version.
                    if let Some(first) = self.outcome_of(options).await? {
                        return first_outcome(options.command_id.as_deref().unwrap_or_default(), stream, first);
                    }
                    return Err(CommandError::Conflict {
                        stream: stream.clone(),
                        expected: ExpectedVersion::Exact(required),
                        actual,
                        attempts,
                    });
                }
            }
            let decided = loaded.state.handle(command);
            // A refusal or a no-op decided on cached state must hold on the latest state too.
            let settled = matches!(&decided, Ok(events) if !events.is_empty());
            if !settled && !fresh {
                fresh = true;
                if self.catch_up(stream, &mut loaded).await? > 0 {
                    continue;
                }
            }
            if !settled {
                // The same command may have just been executed by another caller, whose events
                // are why this decision refuses or does nothing: its outcome is the answer.
                if let Some(id) = &options.command_id {
                    if let Some(first) = self.store.command_outcome(id).await? {
                        *slot = Some(loaded);
                        return first_outcome(id, stream, first);
                    }
                }
            }
            let events = match decided {
                Ok(events) => events,
                Err(rejection) => {
                    *slot = Some(loaded);
                    return Err(CommandError::Rejected(rejection));
                }
            };
            if events.is_empty() {
                let outcome = AppendOutcome {
                    stream: stream.clone(),
                    first_version: loaded.version + 1,
                    last_version: loaded.version,
                    position: loaded.position,
                };
                *slot = Some(loaded);
                // A no-op under a command id is recorded too: sent again after the stream
                // changed, it must answer the same and append nothing.
                if let Some(id) = &options.command_id {
                    match self.store.record_command(id, outcome.clone()).await {
                        Ok(()) => {}
                        Err(Error::DuplicateCommand { command_id, outcome: first }) => {
                            return first_outcome(&command_id, stream, first);
                        }
                        Err(other) => return Err(other.into()),
                    }
                }
                return Ok(outcome.into());
            }
            let batch = self.encode(&events, options)?;
            let expected = ExpectedVersion::Exact(loaded.version);
            let appended = self
                .store
                .append(stream, expected, batch)
                .instrument(tracing::debug_span!("append", stream = %stream, events = events.len()))
                .await;
            match appended {
                Ok(outcome) => {
                    for event in &events {
                        loaded.state.apply(event);
                    }
                    let before = loaded.version;
                    loaded.version = outcome.last_version;
                    loaded.position = outcome.position;
                    self.snapshot_if_due(stream, &loaded, before).await;
                    *slot = Some(loaded);
                    return Ok(outcome.into());
                }
                Err(Error::Conflict { actual, expected, .. }) => {
                    let retry = match options.expected_version {
                        None => self.next_delay(attempts, started),
                        Some(_) => None,
                    };
                    let Some(delay) = retry else {
                        // The same command, sent twice at once, may have won the race.
                        if let Some(first) = self.outcome_of(options).await? {
                            return first_outcome(options.command_id.as_deref().unwrap_or_default(), stream, first);
                        }
                        return Err(CommandError::Conflict { stream: stream.clone(), expected, actual, attempts });
                    };
                    tracing::debug!(
                        actual,
                        attempts,
                        ?delay,
                        "conflict: backing off, then deciding on the newer events"
                    );
                    if !delay.is_zero() {
                        self.clock.sleep(delay).await;
                    }
                    self.catch_up(stream, &mut loaded).await?;
                    fresh = true;
                }
                Err(Error::DuplicateCommand { command_id, outcome }) => {
                    *slot = None;
                    return first_outcome(&command_id, stream, outcome);
                }
                Err(other) => return Err(other.into()),
            }
        }
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

    /// What the command id of `options` already did, if it has one and it was executed.
    async fn outcome_of(&self, options: &ExecuteOptions) -> Result<Option<AppendOutcome>, Error> {
        match &options.command_id {
            Some(id) => self.store.command_outcome(id).await,
            None => Ok(None),
        }
    }

    fn encode(&self, events: &[A::Event], options: &ExecuteOptions) -> Result<Vec<NewEvent>, Error> {
        let timestamp = self.clock.now();
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
                };
                NewEvent::encode(event, metadata)
            })
            .collect()
    }

    async fn load_stream(&self, stream: &StreamId) -> Result<Loaded<A>, Error> {
        let span = tracing::debug_span!("load", stream = %stream);
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
            Ok(state) => Some(Loaded { state, version: snapshot.version, position: snapshot.position }),
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
        loop {
            let limit = ahead.limit();
            let batch = self.store.read_stream_bounded(stream, loaded.version + 1, limit, self.batch_bytes).await?;
            ahead.observe(&batch, self.batch_bytes);
            for raw in &batch {
                let event = self.upcasters.decode_event::<A::Event>(raw)?;
                loaded.state.apply(&event);
                loaded.version = raw.version;
                loaded.position = raw.position;
            }
            read += batch.len();
            if !crate::store::may_have_more(&batch, limit, self.batch_bytes) {
                return Ok(read);
            }
        }
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

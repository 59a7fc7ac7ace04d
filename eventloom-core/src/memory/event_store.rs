use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::store::BoxFuture;
use tokio::sync::watch;

use super::{lock, read, write};
use crate::store::{Appended, CommandEntry, Relayed};
use crate::{
    AppendOutcome, CommandRecord, Error, EventStore, ExpectedVersion, NewEvent, Position, RecordedEvent, Result,
    StreamId, Timestamp,
};

/// The default largest event payload a [`MemoryEventStore`] accepts: 1 MiB.
const DEFAULT_MAX_EVENT_SIZE: usize = 1 << 20;

/// An [`EventStore`] in process memory: the embedded default.
///
/// It holds every invariant of the trait under concurrent use from many tasks: appends are
/// checked and committed under one lock, so they are atomic and their positions are assigned in
/// commit order. Positions are `(append number, event number)`. Clones share the same store.
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
/// let event = NewEvent {
///     event_type: "Created".into(),
///     schema_version: 1,
///     payload: r#"{"title":"x"}"#.into(),
///     metadata: Metadata::default(),
/// };
/// let out = store.append(&stream, ExpectedVersion::NoStream, vec![event.clone()]).await.unwrap();
/// assert_eq!(out.outcome().last_version, 1);
/// let err = store.append(&stream, ExpectedVersion::NoStream, vec![event]).await.unwrap_err();
/// assert!(matches!(err, eventloom_core::Error::Conflict { actual: 1, .. }));
/// # });
/// ```
#[derive(Clone)]
pub struct MemoryEventStore {
    inner: Arc<Inner>,
}

struct Inner {
    state: RwLock<State>,
    /// The last sequence relayed of each source, locked around a relayed append.
    relay: std::sync::Mutex<HashMap<String, u64>>,
    wake: watch::Sender<u64>,
    max_event_size: usize,
}

#[derive(Default)]
struct State {
    /// Every event in position order.
    log: Vec<RecordedEvent>,
    /// Per stream, the indexes into `log` of its events, in version order.
    streams: HashMap<StreamId, Vec<usize>>,
    /// The outcome of every append that carried a command id, and of every no-op recorded.
    commands: HashMap<String, CommandRecord>,
    appends: u64,
}

impl Default for MemoryEventStore {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for MemoryEventStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = read(&self.inner.state);
        f.debug_struct("MemoryEventStore")
            .field("events", &state.log.len())
            .field("streams", &state.streams.len())
            .finish()
    }
}

impl MemoryEventStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::with_max_event_size(DEFAULT_MAX_EVENT_SIZE)
    }

    /// An empty store that refuses events larger than `bytes` with
    /// [`Error::PayloadTooLarge`].
    pub fn with_max_event_size(bytes: usize) -> Self {
        MemoryEventStore {
            inner: Arc::new(Inner {
                state: RwLock::new(State::default()),
                relay: std::sync::Mutex::new(HashMap::new()),
                wake: watch::Sender::new(0),
                max_event_size: bytes,
            }),
        }
    }

    /// How many events the store holds.
    pub fn len(&self) -> usize {
        read(&self.inner.state).log.len()
    }

    /// Whether the store holds no event.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The command id an append carries: its first event's.
fn command_id(events: &[NewEvent]) -> Option<&str> {
    events.first().and_then(|e| e.metadata.command_id.as_deref())
}

impl MemoryEventStore {
    /// [`EventStore::append`], keeping `entry` with the outcome of a command id (without one: no
    /// fingerprint, made now, not kept).
    fn append_events(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
        entry: Option<&CommandEntry>,
    ) -> Result<Appended> {
        let span = tracing::trace_span!("append", store = "memory", stream = %stream, events = events.len());
        let _enter = span.enter();
        let limit = self.inner.max_event_size;
        if let Some(big) = events.iter().find(|e| e.size() > limit) {
            return Err(Error::PayloadTooLarge { size: big.size(), limit });
        }
        let command = command_id(&events);
        if let Some(id) = command {
            crate::validate_command_id(id)?;
        }
        let mut guard = write(&self.inner.state);
        let state = &mut *guard;
        if let Some(id) = command {
            if let Some(first) = state.commands.get(id) {
                return Ok(Appended::Duplicate { command_id: id.to_owned(), first: first.clone() });
            }
        }
        let actual = state.streams.get(stream).map_or(0, |s| s.len() as u64);
        if !expected.matches(actual) {
            return Err(Error::Conflict { stream: stream.clone(), expected, actual });
        }
        if events.is_empty() {
            return Ok(Appended::Written(AppendOutcome {
                stream: stream.clone(),
                first_version: actual + 1,
                last_version: actual,
                position: Position::ZERO,
            }));
        }
        state.appends += 1;
        let transaction = state.appends;
        let command = command.map(str::to_owned);
        let indexes = state.streams.entry(stream.clone()).or_default();
        let mut version = actual;
        let mut position = Position::ZERO;
        for event in events {
            version += 1;
            position = Position::new(transaction, state.log.len() as u64 + 1);
            indexes.push(state.log.len());
            state.log.push(RecordedEvent {
                stream: stream.clone(),
                version,
                position,
                event_type: event.event_type,
                schema_version: event.schema_version,
                payload: event.payload.into(),
                metadata: event.metadata.into(),
            });
        }
        let outcome =
            AppendOutcome { stream: stream.clone(), first_version: actual + 1, last_version: version, position };
        if let Some(id) = command {
            let record = match entry {
                Some(entry) => CommandRecord::of_entry(outcome.clone(), entry),
                None => CommandRecord::new(outcome.clone()),
            };
            state.commands.insert(id, record);
        }
        drop(guard);
        self.inner.wake.send_modify(|n| *n = n.wrapping_add(1));
        Ok(Appended::Written(outcome))
    }
}

impl EventStore for MemoryEventStore {
    fn append<'a>(
        &'a self,
        stream: &'a StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> BoxFuture<'a, Result<Appended>> {
        Box::pin(async move { self.append_events(stream, expected, events, None) })
    }

    fn append_command<'a>(
        &'a self,
        stream: &'a StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
        command: &'a CommandEntry,
    ) -> BoxFuture<'a, Result<Appended>> {
        Box::pin(async move { self.append_events(stream, expected, events, Some(command)) })
    }

    fn read_stream<'a>(
        &'a self,
        stream: &'a StreamId,
        from_version: u64,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<RecordedEvent>>> {
        self.read_stream_bounded(stream, from_version, limit, usize::MAX)
    }

    fn read_all<'a>(&'a self, after: Position, limit: usize) -> BoxFuture<'a, Result<Vec<RecordedEvent>>> {
        self.read_all_bounded(after, limit, usize::MAX)
    }

    fn read_stream_bounded<'a>(
        &'a self,
        stream: &'a StreamId,
        from_version: u64,
        limit: usize,
        max_bytes: usize,
    ) -> BoxFuture<'a, Result<Vec<RecordedEvent>>> {
        Box::pin(async move {
            let state = read(&self.inner.state);
            let Some(indexes) = state.streams.get(stream) else {
                return Ok(Vec::new());
            };
            let start = usize::try_from(from_version.saturating_sub(1)).unwrap_or(usize::MAX).min(indexes.len());
            let mut events: Vec<RecordedEvent> =
                indexes[start..].iter().take(limit).map(|&i| state.log[i].clone()).collect();
            events.truncate(crate::within_bytes(&events, max_bytes));
            Ok(events)
        })
    }

    fn read_all_bounded<'a>(
        &'a self,
        after: Position,
        limit: usize,
        max_bytes: usize,
    ) -> BoxFuture<'a, Result<Vec<RecordedEvent>>> {
        Box::pin(async move {
            let state = read(&self.inner.state);
            let start = state.log.partition_point(|e| e.position <= after);
            let mut events: Vec<RecordedEvent> = state.log[start..].iter().take(limit).cloned().collect();
            events.truncate(crate::within_bytes(&events, max_bytes));
            Ok(events)
        })
    }

    fn head<'a>(&'a self) -> BoxFuture<'a, Result<Option<Position>>> {
        Box::pin(async move { Ok(read(&self.inner.state).log.last().map(|e| e.position)) })
    }

    fn count_after<'a>(&'a self, after: Position, cap: u64) -> BoxFuture<'a, Result<u64>> {
        Box::pin(async move {
            let state = read(&self.inner.state);
            let after = state.log.len() - state.log.partition_point(|e| e.position <= after);
            Ok((after as u64).min(cap))
        })
    }

    fn stream_version<'a>(&'a self, stream: &'a StreamId) -> BoxFuture<'a, Result<u64>> {
        Box::pin(async move { Ok(read(&self.inner.state).streams.get(stream).map_or(0, |s| s.len() as u64)) })
    }

    fn command_outcome<'a>(&'a self, command_id: &'a str) -> BoxFuture<'a, Result<Option<CommandRecord>>> {
        Box::pin(async move { Ok(read(&self.inner.state).commands.get(command_id).cloned()) })
    }

    fn record_command<'a>(
        &'a self,
        command_id: &'a str,
        mut record: CommandRecord,
    ) -> BoxFuture<'a, Result<Option<CommandRecord>>> {
        Box::pin(async move {
            crate::validate_command_id(command_id)?;
            if let Some(reason) = &mut record.refusal {
                let bound = crate::store::bounded_refusal(reason).len();
                reason.truncate(bound);
            }
            let mut state = write(&self.inner.state);
            if let Some(first) = state.commands.get(command_id) {
                return Ok(Some(first.clone()));
            }
            state.commands.insert(command_id.to_owned(), record);
            Ok(None)
        })
    }

    fn expire_commands<'a>(&'a self, recorded_before: Timestamp, limit: usize) -> BoxFuture<'a, Result<u64>> {
        Box::pin(async move {
            let mut state = write(&self.inner.state);
            let mut doomed: Vec<(Timestamp, String)> = state
                .commands
                .iter()
                .filter(|(_, r)| !r.kept && r.recorded_at < recorded_before)
                .map(|(id, r)| (r.recorded_at, id.clone()))
                .collect();
            doomed.sort_unstable();
            doomed.truncate(limit);
            for (_, id) in &doomed {
                state.commands.remove(id);
            }
            Ok(doomed.len() as u64)
        })
    }

    fn forget_commands<'a>(&'a self, ids: &'a [String]) -> BoxFuture<'a, Result<u64>> {
        Box::pin(async move {
            let mut state = write(&self.inner.state);
            Ok(ids.iter().filter(|id| state.commands.remove(id.as_str()).is_some()).count() as u64)
        })
    }

    fn append_relayed<'a>(
        &'a self,
        source: &'a str,
        sequence: u64,
        stream: &'a StreamId,
        events: Vec<NewEvent>,
    ) -> BoxFuture<'a, Result<Relayed>> {
        Box::pin(async move {
            crate::store::validate_relay(source, sequence)?;
            // One lock for the check, the append and the record: nothing can come between.
            let mut relays = lock(&self.inner.relay);
            let relayed = relays.get(source).copied().unwrap_or(0);
            if relayed >= sequence {
                return Ok(Relayed::Duplicate { relayed });
            }
            let appended = self.append_events(stream, ExpectedVersion::Any, events, None)?;
            relays.insert(source.to_owned(), sequence);
            Ok(Relayed::Written(appended.outcome().clone()))
        })
    }

    fn relayed<'a>(&'a self, source: &'a str) -> BoxFuture<'a, Result<u64>> {
        Box::pin(async move { Ok(lock(&self.inner.relay).get(source).copied().unwrap_or(0)) })
    }

    fn wake_ups(&self) -> Option<watch::Receiver<u64>> {
        Some(self.inner.wake.subscribe())
    }
}

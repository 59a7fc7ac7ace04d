//! Wrappers that watch what projectors do without changing it: an [`EventStore`] that counts
//! its reads of the log, and a [`ViewStore`] that tells when each projection's live views reach
//! a position.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use eventloom_core::model::RecordedEvent;
use eventloom_core::store::{
    BoxFuture, CommandRecord, EventStore, Generation, ReplicaLag, ViewCommit, ViewStore, Written,
};
use eventloom_core::{Position, StreamId};
use eventloom_postgres::{PgEventStore, PgViewStore};
use tokio::sync::watch;

use crate::Result;

/// Calls counted so far.
#[derive(Debug, Default)]
struct Counters {
    reads: AtomicU64,
    rows: AtomicU64,
    bytes: AtomicU64,
    other: AtomicU64,
}

/// What the projectors read, between two moments.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reads {
    /// Reads of the log: calls to `read_all` and `read_all_bounded`, one statement each on
    /// PostgreSQL.
    pub reads: u64,
    /// The events they returned.
    pub rows: u64,
    /// The stored size of those events (payload, metadata, type name).
    pub bytes: u64,
    /// Every other call but appends: `head`, `count_after`, `read_stream`, ...
    pub other: u64,
}

impl std::ops::Sub for Reads {
    type Output = Reads;

    fn sub(self, before: Reads) -> Reads {
        Reads {
            reads: self.reads - before.reads,
            rows: self.rows - before.rows,
            bytes: self.bytes - before.bytes,
            other: self.other - before.other,
        }
    }
}

/// The PostgreSQL event store, counting the calls the projectors make (on clones too).
#[derive(Debug, Clone)]
pub struct Counted {
    inner: PgEventStore,
    counters: Arc<Counters>,
}

impl Counted {
    /// Counts the calls made to `inner` through it.
    pub fn new(inner: PgEventStore) -> Self {
        Counted { inner, counters: Arc::default() }
    }

    /// The counts so far.
    pub fn reads(&self) -> Reads {
        let c = &self.counters;
        Reads {
            reads: c.reads.load(Ordering::Relaxed),
            rows: c.rows.load(Ordering::Relaxed),
            bytes: c.bytes.load(Ordering::Relaxed),
            other: c.other.load(Ordering::Relaxed),
        }
    }

    fn read(&self, events: eventloom_core::Result<Vec<RecordedEvent>>) -> eventloom_core::Result<Vec<RecordedEvent>> {
        let c = &self.counters;
        c.reads.fetch_add(1, Ordering::Relaxed);
        if let Ok(events) = &events {
            c.rows.fetch_add(events.len() as u64, Ordering::Relaxed);
            let bytes: usize = events.iter().map(RecordedEvent::stored_size).sum();
            c.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        }
        events
    }

    fn other(&self) {
        self.counters.other.fetch_add(1, Ordering::Relaxed);
    }
}

type Answer<'a, T> = BoxFuture<'a, eventloom_core::Result<T>>;

impl eventloom_core::store::DelegateEventStore for Counted {
    type Inner = PgEventStore;
    fn inner(&self) -> &PgEventStore {
        &self.inner
    }

    fn read_stream<'a>(
        &'a self,
        stream: &'a StreamId,
        from_version: u64,
        limit: usize,
    ) -> Answer<'a, Vec<RecordedEvent>> {
        self.other();
        self.inner.read_stream(stream, from_version, limit)
    }

    fn read_all<'a>(&'a self, after: Position, limit: usize) -> Answer<'a, Vec<RecordedEvent>> {
        Box::pin(async move {
            let events = self.inner.read_all(after, limit).await;
            self.read(events)
        })
    }

    fn read_stream_bounded<'a>(
        &'a self,
        stream: &'a StreamId,
        from_version: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Answer<'a, Vec<RecordedEvent>> {
        self.other();
        self.inner.read_stream_bounded(stream, from_version, limit, max_bytes)
    }

    fn read_all_bounded<'a>(
        &'a self,
        after: Position,
        limit: usize,
        max_bytes: usize,
    ) -> Answer<'a, Vec<RecordedEvent>> {
        Box::pin(async move {
            let events = self.inner.read_all_bounded(after, limit, max_bytes).await;
            self.read(events)
        })
    }

    fn stream_version<'a>(&'a self, stream: &'a StreamId) -> Answer<'a, u64> {
        self.other();
        self.inner.stream_version(stream)
    }

    fn command_outcome<'a>(&'a self, command_id: &'a str) -> Answer<'a, Option<CommandRecord>> {
        self.other();
        self.inner.command_outcome(command_id)
    }

    fn head<'a>(&'a self) -> Answer<'a, Option<Position>> {
        self.other();
        self.inner.head()
    }

    fn held_back<'a>(&'a self, cap: u64) -> Answer<'a, u64> {
        self.other();
        self.inner.held_back(cap)
    }

    fn count_after<'a>(&'a self, after: Position, cap: u64) -> Answer<'a, u64> {
        self.other();
        self.inner.count_after(after, cap)
    }

    fn replica_lag<'a>(&'a self) -> Answer<'a, Option<ReplicaLag>> {
        self.other();
        EventStore::replica_lag(&self.inner)
    }
}

/// Where one projection's views stand, as seen from the writes that went through [`Watched`].
#[derive(Debug, Default)]
struct Track {
    /// The live generation.
    live: Option<u64>,
    /// The checkpoint of each generation written.
    checkpoints: HashMap<u64, Position>,
    /// When the last write or switch to live succeeded.
    changed: Option<Instant>,
}

impl Track {
    fn live_checkpoint(&self) -> Option<Position> {
        self.checkpoints.get(&self.live?).copied()
    }
}

/// The PostgreSQL view store, noting each projection's live checkpoint as the projectors move
/// it, so that the end of a catch-up is seen when it happens, without polling the store.
#[derive(Debug, Clone)]
pub struct Watched {
    inner: PgViewStore,
    tracks: Arc<Mutex<HashMap<String, Track>>>,
    changes: Arc<watch::Sender<u64>>,
    commits: Arc<AtomicU64>,
}

impl Watched {
    /// Watches the writes made to `inner` through it.
    pub fn new(inner: PgViewStore) -> Self {
        Watched { inner, tracks: Arc::default(), changes: Arc::new(watch::channel(0).0), commits: Arc::default() }
    }

    /// The view store itself, for readers.
    pub fn inner(&self) -> &PgViewStore {
        &self.inner
    }

    /// Batches committed so far, by every projection.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    fn tracks(&self) -> MutexGuard<'_, HashMap<String, Track>> {
        self.tracks.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn changed(&self, projection: &str, change: impl FnOnce(&mut Track)) {
        let mut tracks = self.tracks();
        let track = tracks.entry(projection.to_owned()).or_default();
        change(track);
        track.changed = Some(Instant::now());
        drop(tracks);
        self.changes.send_modify(|n| *n += 1);
    }

    /// Starts tracking `projections` from their stored status (before their runners start).
    pub async fn track(&self, projections: &[&'static str]) -> Result<()> {
        for &name in projections {
            let status = self.inner.status(name).await?;
            let mut track = Track::default();
            if let Some(Generation { id, checkpoint, .. }) = status.live {
                track.live = Some(id);
                if let Some(checkpoint) = checkpoint {
                    track.checkpoints.insert(id, checkpoint);
                }
            }
            self.tracks().insert(name.to_owned(), track);
        }
        Ok(())
    }

    /// Waits until the live views of every one of `projections` are at `head` or past it;
    /// returns when the last of them got there. Fails after `timeout`.
    pub async fn caught_up(&self, projections: &[&'static str], head: Position, timeout: Duration) -> Result<Instant> {
        let mut changes = self.changes.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            changes.borrow_and_update();
            {
                let tracks = self.tracks();
                let at = projections.iter().map(|name| {
                    tracks.get(*name).filter(|t| t.live_checkpoint().is_some_and(|c| c >= head)).and_then(|t| t.changed)
                });
                if let Some(last) = at.collect::<Option<Vec<Instant>>>().and_then(|at| at.into_iter().max()) {
                    return Ok(last);
                }
            }
            if tokio::time::timeout_at(deadline, changes.changed()).await.is_err() {
                let tracks = self.tracks();
                let behind: Vec<String> = projections
                    .iter()
                    .map(|name| format!("{name} at {:?}", tracks.get(*name).and_then(Track::live_checkpoint)))
                    .collect();
                return Err(format!("not caught up to {head} within {timeout:?}: {}", behind.join(", ")).into());
            }
        }
    }
}

impl eventloom_core::store::DelegateViewStore for Watched {
    type Inner = PgViewStore;
    fn inner(&self) -> &PgViewStore {
        &self.inner
    }

    fn commit<'a>(&'a self, projection: &'a str, commit: ViewCommit) -> Answer<'a, Written> {
        Box::pin(async move {
            let (generation, checkpoint) = (commit.generation, commit.checkpoint);
            let written = self.inner.commit(projection, commit).await?;
            if written.is_ok() {
                self.commits.fetch_add(1, Ordering::Relaxed);
                self.changed(projection, |track| {
                    track.checkpoints.insert(generation, checkpoint);
                });
            }
            Ok(written)
        })
    }

    fn go_live<'a>(&'a self, projection: &'a str, generation: u64, fencing_token: u64) -> Answer<'a, Written> {
        Box::pin(async move {
            let written = self.inner.go_live(projection, generation, fencing_token).await?;
            if written.is_ok() {
                self.changed(projection, |track| track.live = Some(generation));
            }
            Ok(written)
        })
    }
}

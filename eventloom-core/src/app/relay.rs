//! A relay: another service's events, read from a [`Feed`] (the event bus), appended to this
//! service's event store once each, so that projections and process managers read them in one
//! order with the local events.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing::Instrument;

use crate::memory::lock;
use crate::model::{IdGenerator, NewEvent, RandomIds, RecordedEvent, Timestamp};
use crate::read::{Feed, FeedReader};
use crate::store::{BoxFuture, Relayed};
use crate::{Error, EventStore, Lease, LeaseManager, Metadata, Position, Result};

/// The header a relayed event carries: the source it came from.
pub const RELAYED_FROM: &str = "eventloom-relayed-from";
/// The header a relayed event carries: its sequence in the source.
pub const SOURCE_SEQUENCE: &str = "eventloom-source-sequence";
/// The header a relayed event carries: the command id it had in its service, if any (the id
/// itself is not kept as a command id here, where it means nothing).
pub const SOURCE_COMMAND_ID: &str = "eventloom-source-command-id";
/// The header a relayed event carries: its version in its stream in the source.
pub const SOURCE_VERSION: &str = "eventloom-source-version";

/// How many events a relay reads at a time.
const BATCH: usize = 256;
/// About how many bytes.
const BATCH_BYTES: usize = 4 << 20;

/// The lease of the relay of `source`.
pub(crate) fn lease_name(source: &str) -> String {
    format!("eventloom.relay/{source}")
}

/// What [`App::health`](crate::App::health) asks of a relay's feed, whatever its reader: how
/// much it holds after a position, and since when.
pub(crate) trait Probe: Send + Sync {
    fn count_after<'a>(&'a self, after: Position, cap: u64) -> BoxFuture<'a, Result<u64>>;
    fn first_written_after<'a>(&'a self, after: Position) -> BoxFuture<'a, Result<Option<Timestamp>>>;
}

impl<F: Feed> Probe for F {
    fn count_after<'a>(&'a self, after: Position, cap: u64) -> BoxFuture<'a, Result<u64>> {
        Feed::count_after(self, after, cap)
    }
    fn first_written_after<'a>(&'a self, after: Position) -> BoxFuture<'a, Result<Option<Timestamp>>> {
        Feed::first_written_after(self, after)
    }
}

/// Relays `feed` into `events` as source `source`.
pub(crate) struct Relay<F> {
    pub(crate) source: String,
    pub(crate) feed: Arc<F>,
    pub(crate) events: Arc<dyn EventStore>,
    pub(crate) leases: Option<Arc<dyn LeaseManager>>,
    /// The categories of this service's own aggregates: a relayed event of one is refused.
    pub(crate) own: Vec<&'static str>,
    /// The feed position of the last message this relay relayed (or found relayed), for the
    /// lag that [`App::health`](crate::App::health) reads.
    pub(crate) read_to: Arc<Mutex<Option<Position>>>,
    /// Its metrics' handles.
    pub(crate) metrics: crate::metrics::RelayMetrics,
}

/// A read of the feed: its reader, and the position of the last message it gave.
struct Reading<R> {
    reader: R,
    last: Option<Position>,
}

/// Where a relay is.
enum State<R> {
    /// Take the relay's lease.
    Acquire,
    /// Read the source's record and start reading after it.
    Resume(Option<Lease>),
    /// Relay what comes.
    Relay(Option<Lease>, Reading<R>),
    /// Wait, then start over.
    BackOff,
    /// Shut down.
    Done,
}

impl<F: Feed> Relay<F> {
    /// Runs until `shutdown` resolves, or stops on an error no retry mends (an event of one of
    /// this service's own categories, a feed that cannot be read from its position).
    pub(crate) async fn run(self, shutdown: impl std::future::Future<Output = ()> + Send) -> Result<()> {
        let span = tracing::info_span!("relay", source = %self.source);
        async move {
            tokio::pin!(shutdown);
            let mut state = State::Acquire;
            let mut delay = Duration::from_millis(100);
            loop {
                state = match state {
                    State::Acquire => self.acquire(&mut shutdown).await,
                    State::Resume(lease) => self.resume(lease).await?,
                    State::Relay(lease, reading) => self.relay(lease, reading, &mut shutdown, &mut delay).await?,
                    State::BackOff => {
                        tokio::select! {
                            () = tokio::time::sleep(delay) => {}
                            () = &mut shutdown => return Ok(()),
                        }
                        delay = (delay * 2).min(Duration::from_secs(5));
                        State::Acquire
                    }
                    State::Done => return Ok(()),
                };
            }
        }
        .instrument(span)
        .await
    }

    async fn acquire(&self, shutdown: &mut (impl std::future::Future<Output = ()> + Unpin)) -> State<F::Reader> {
        let Some(leases) = &self.leases else { return State::Resume(None) };
        let name = lease_name(&self.source);
        tokio::select! {
            lease = leases.acquire(&name) => match lease {
                Ok(lease) => {
                    self.metrics.lease_acquired.increment(1);
                    State::Resume(Some(lease))
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot take the relay's lease; retrying");
                    State::BackOff
                }
            },
            () = shutdown => State::Done,
        }
    }

    /// Reads the source's record and starts a read of the feed after it; stops on an error no
    /// retry mends (an event store that cannot relay).
    async fn resume(&self, lease: Option<Lease>) -> Result<State<F::Reader>> {
        match self.events.relayed(&self.source).await {
            Ok(relayed) => {
                tracing::info!(relayed, "relaying after the last message relayed");
                let reader = self.feed.read_after(Position::new(0, relayed), BATCH, BATCH_BYTES);
                Ok(State::Relay(lease, Reading { reader, last: None }))
            }
            Err(error) if error.is_transient() => {
                tracing::warn!(%error, "cannot read how far the source was relayed; retrying");
                Ok(State::BackOff)
            }
            Err(error) => Err(error),
        }
    }

    /// Relays the next batch, in order, one message per atomic write.
    async fn relay(
        &self,
        lease: Option<Lease>,
        mut reading: Reading<F::Reader>,
        shutdown: &mut (impl std::future::Future<Output = ()> + Unpin),
        delay: &mut Duration,
    ) -> Result<State<F::Reader>> {
        let lost = async {
            match &lease {
                Some(lease) => lease.lost().await,
                None => std::future::pending().await,
            }
        };
        let batch = tokio::select! {
            batch = reading.reader.next_batch() => batch,
            () = shutdown => return Ok(State::Done),
            () = lost => {
                self.metrics.lease_lost.increment(1);
                return Ok(State::Acquire);
            }
        };
        let batch = match batch {
            Ok(batch) => batch,
            Err(error) if error.is_transient() => {
                tracing::warn!(%error, "cannot read the source; retrying");
                return Ok(State::BackOff);
            }
            Err(error) => return Err(error),
        };
        let mut relayed = None;
        for raw in &batch {
            if lease.as_ref().is_some_and(Lease::is_lost) {
                self.metrics.lease_lost.increment(1);
                return Ok(State::Acquire);
            }
            // The record of the source is a high-water mark: a feed whose sequences went back
            // (in this batch or after an earlier one of the same read) would have its later
            // messages taken for duplicates, and lost. A message at or below the record that the
            // read starts with is one relayed before (by a relay that led meanwhile, or re-read
            // by a feed that reads from its start): the store writes it no more.
            let last = reading.last;
            if last.is_some_and(|l: Position| raw.position.sequence() <= l.sequence()) {
                return Err(Error::Corrupt {
                    location: format!("the feed of relay {}", self.source),
                    reason: format!(
                        "its sequences do not grow in the order it reads ({} after {}): a relay needs a feed \
                         whose positions' sequence is the source's order, as a JetStream stream's is",
                        raw.position.sequence(),
                        last.map_or(0, |l| l.sequence())
                    ),
                });
            }
            // One span per message, a child of the trace that published it.
            let relayed_one = match crate::trace::event("relay", &self.source, raw) {
                Some(span) => self.relay_one(raw).instrument(span).await,
                None => self.relay_one(raw).await,
            };
            match relayed_one {
                Ok(()) => {
                    reading.last = Some(raw.position);
                    relayed = Some(raw.position);
                    *lock(&self.read_to) = Some(raw.position);
                }
                Err(error) if error.is_transient() => {
                    tracing::warn!(%error, position = %raw.position, "cannot relay; retrying");
                    return Ok(State::BackOff);
                }
                Err(error) => return Err(error),
            }
        }
        if let Some(last) = relayed {
            self.feed.acknowledge(self.source.as_str(), last);
        }
        *delay = Duration::from_millis(100);
        Ok(State::Relay(lease, reading))
    }

    /// Appends one message's event, once. An event this store refuses as it is (not JSON, too
    /// large) is skipped: the source's record moves past it with nothing appended, and the
    /// error is logged, so that one bad message never stops the relay.
    async fn relay_one(&self, raw: &RecordedEvent) -> Result<()> {
        let category = raw.stream.category();
        if category.starts_with("eventloom.") {
            return Err(Error::InvalidConfig {
                reason: format!(
                    "source {} sent event {} of stream {}: categories named eventloom.* are the framework's own \
                     (process managers' journals) and are never relayed",
                    self.source, raw.event_type, raw.stream
                ),
            });
        }
        if self.own.contains(&category) {
            return Err(Error::InvalidConfig {
                reason: format!(
                    "source {} sent event {} of stream {}: category {category} is one of this service's own \
                     aggregates, and a relayed event would join its streams; publish it under another category",
                    self.source, raw.event_type, raw.stream
                ),
            });
        }
        let sequence = raw.position.sequence();
        let event = NewEvent {
            event_type: raw.event_type.clone(),
            schema_version: raw.schema_version,
            payload: raw.payload.to_string(),
            metadata: relayed_metadata(raw, &self.source, sequence),
        };
        let mut outcome = 0;
        let relayed = match self.events.append_relayed(&self.source, sequence, &raw.stream, vec![event]).await {
            Err(error) if refuses_the_event(&error) => {
                tracing::error!(%error, sequence, stream = %raw.stream, event_type = %raw.event_type,
                    "skipping a message this store refuses as it is");
                outcome = 2;
                self.events.append_relayed(&self.source, sequence, &raw.stream, Vec::new()).await?
            }
            relayed => relayed?,
        };
        match relayed {
            Relayed::Written(_) => tracing::debug!(sequence, stream = %raw.stream, "relayed"),
            Relayed::Duplicate { relayed } => {
                outcome = 1;
                tracing::debug!(sequence, relayed, "relayed before");
            }
        }
        self.metrics.consumed[outcome].increment(1);
        Ok(())
    }
}

/// Whether a store's error refuses the event as it is (its payload, its size), which the relay
/// skips, rather than the relay itself (a store that cannot relay, which stops it).
fn refuses_the_event(error: &Error) -> bool {
    matches!(
        error,
        Error::PayloadTooLarge { .. } | Error::InvalidEvent { .. } | Error::Encode { .. } | Error::InvalidId { .. }
    )
}

/// The metadata of a relayed event: its own (event id, time, correlation and causation, so that
/// a chain of causes crosses services), with its command id moved to a header and where it came
/// from. Metadata that does not decode is replaced, with the reason in a header: a read model
/// must not freeze on it.
fn relayed_metadata(raw: &RecordedEvent, source: &str, sequence: u64) -> Metadata {
    let mut metadata = match raw.metadata.get() {
        Ok(metadata) => metadata.clone(),
        Err(error) => Metadata::new(RandomIds::default().next_id(), Timestamp::now())
            .with_header("eventloom-metadata-error", error.to_string()),
    };
    if let Some(id) = metadata.command_id.take() {
        metadata.headers.insert(SOURCE_COMMAND_ID.to_owned(), id);
    }
    metadata.headers.insert(RELAYED_FROM.to_owned(), source.to_owned());
    metadata.headers.insert(SOURCE_SEQUENCE.to_owned(), sequence.to_string());
    metadata.headers.insert(SOURCE_VERSION.to_owned(), raw.version.to_string());
    metadata
}

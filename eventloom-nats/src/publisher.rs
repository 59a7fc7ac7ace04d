//! The [`Publisher`]: relays chosen events of the local log to one JetStream stream, exactly
//! once and in order.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, context::PublishErrorKind, stream};
use eventloom_core::Position;
use eventloom_core::model::RecordedEvent;
use eventloom_core::read::{Feed, FeedReader};
use eventloom_core::store::{Lease, LeaseManager};
use tracing::Instrument;

use crate::error::{request, temporarily_unavailable};
use crate::{Error, NatsConfig, Result, headers, subject};

/// The most publishes [`PublisherConfig::in_flight`] lets await their ack at once.
///
/// # Examples
///
/// ```
/// assert_eq!(eventloom_nats::MAX_IN_FLIGHT, 1 << 20);
/// ```
pub const MAX_IN_FLIGHT: usize = 1 << 20;

/// What the publisher does with an event too large for the server's `max_payload`.
///
/// # Examples
///
/// ```
/// use eventloom_nats::{DeadLetterPolicy, PublisherConfig};
///
/// let config = PublisherConfig::new("ORDERS", "orders").dead_letters(DeadLetterPolicy::Skip);
/// # drop(config);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum DeadLetterPolicy {
    /// Stop with [`Error::TooLarge`] (the default): someone has to look; a restart stops at
    /// the same event again.
    #[default]
    Stop,
    /// Skip it, record it in [`Publisher::dead_letters`] and log it; publishing goes on. A
    /// restart that resumes before it skips (and records) it again.
    Skip,
}

/// An event the publisher skipped under [`DeadLetterPolicy::Skip`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeadLetter {
    /// Its position in the local log.
    pub position: Position,
    /// Its id.
    pub event_id: String,
    /// Its stream, `category/id`.
    pub stream: String,
    /// Its type name.
    pub event_type: String,
    /// Why: its size against the server's limit.
    pub reason: String,
}

/// What a publisher has done, as [`Publisher::status`] tells it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PublisherStatus {
    /// Messages stored in the stream by this publisher since it was made.
    pub published: u64,
    /// The stream's last sequence, as far as this publisher knows.
    pub last_sequence: u64,
    /// The local position of the last event published (or found published at start).
    pub last_position: Option<Position>,
    /// Whether it holds its lease (or needs none) and publishes.
    pub active: bool,
    /// The last error met: an outage it retries, or why it stopped.
    pub last_error: Option<String>,
}

/// Which events a publisher relays, where, and how its stream is kept.
///
/// **By default nothing is published**: events stay inside the service until it chooses which
/// are integration events, by category ([`category`](PublisherConfig::category)) or by
/// category and type ([`event_type`](PublisherConfig::event_type)).
///
/// The stream is created at start when missing, with subjects `<prefix>.>`, limits retention,
/// file storage and the limits set here (default: kept forever, duplicate window 2 minutes);
/// an existing one is checked (subjects, limits retention) and its limits updated.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use eventloom_nats::PublisherConfig;
///
/// let config = PublisherConfig::new("ORDERS", "bus.orders")
///     .category("order")
///     .event_type("payment", "PaymentFailed")
///     .max_age(Duration::from_secs(30 * 24 * 3600));
/// assert!(config.selects("order", "OrderPlaced"));
/// assert!(config.selects("payment", "PaymentFailed"));
/// assert!(!config.selects("payment", "PaymentStarted"));
/// assert!(!PublisherConfig::new("S", "p").selects("order", "OrderPlaced"), "nothing by default");
/// ```
#[derive(Clone)]
pub struct PublisherConfig {
    stream: String,
    prefix: String,
    /// Category → `None` for every type, or the chosen types.
    selection: BTreeMap<String, Option<BTreeSet<String>>>,
    max_age: Duration,
    max_messages: i64,
    max_bytes: i64,
    duplicate_window: Duration,
    storage: stream::StorageType,
    replicas: usize,
    start: Position,
    dead_letters: DeadLetterPolicy,
    batch_size: usize,
    in_flight: usize,
    leases: Option<(Arc<dyn LeaseManager>, String)>,
}

impl std::fmt::Debug for PublisherConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublisherConfig")
            .field("stream", &self.stream)
            .field("prefix", &self.prefix)
            .field("selection", &self.selection)
            .field("lease", &self.leases.as_ref().map(|(_, name)| name))
            .finish_non_exhaustive()
    }
}

impl PublisherConfig {
    /// Publishes to the JetStream stream `stream` (letters, digits, `-`, `_`) under subjects
    /// `<prefix>.<category>.<type>` (see [`encode_token`](crate::encode_token)); nothing is
    /// selected yet.
    pub fn new(stream: impl Into<String>, prefix: impl Into<String>) -> Self {
        PublisherConfig {
            stream: stream.into(),
            prefix: prefix.into(),
            selection: BTreeMap::new(),
            max_age: Duration::ZERO,
            max_messages: -1,
            max_bytes: -1,
            duplicate_window: Duration::from_secs(120),
            storage: stream::StorageType::File,
            replicas: 1,
            start: Position::ZERO,
            dead_letters: DeadLetterPolicy::Stop,
            batch_size: 500,
            in_flight: 256,
            leases: None,
        }
    }

    /// Publishes every event of `category` (an aggregate's `TYPE`).
    pub fn category(mut self, category: impl Into<String>) -> Self {
        self.selection.insert(category.into(), None);
        self
    }

    /// Publishes the events of `category` of type `event_type` (call once per type). A
    /// category chosen whole with [`category`](PublisherConfig::category) stays whole.
    pub fn event_type(mut self, category: impl Into<String>, event_type: impl Into<String>) -> Self {
        let types = self.selection.entry(category.into()).or_insert_with(|| Some(BTreeSet::new()));
        if let Some(types) = types {
            types.insert(event_type.into());
        }
        self
    }

    /// Whether an event of this category and type is published.
    pub fn selects(&self, category: &str, event_type: &str) -> bool {
        match self.selection.get(category) {
            Some(None) => true,
            Some(Some(types)) => types.contains(event_type),
            None => false,
        }
    }

    /// How long the stream keeps a message (default: forever). A consumer's projection can
    /// be rebuilt only while the stream holds every message, and a publisher resumes after the
    /// stream's last message: a quiet stream whose last message expired cannot be resumed (see
    /// [`Error::ForeignStream`]). Prefer size limits, or an age far longer than any quiet time.
    pub fn max_age(mut self, age: Duration) -> Self {
        self.max_age = age;
        self
    }

    /// At most this many messages (default: no limit; older ones go first).
    pub fn max_messages(mut self, messages: i64) -> Self {
        self.max_messages = messages;
        self
    }

    /// At most this many bytes (default: no limit; older messages go first).
    pub fn max_bytes(mut self, bytes: i64) -> Self {
        self.max_bytes = bytes;
        self
    }

    /// JetStream's duplicate window for `Nats-Msg-Id` (default 2 minutes): a second guard only;
    /// exactly once rests on the expected last sequence, not on it.
    pub fn duplicate_window(mut self, window: Duration) -> Self {
        self.duplicate_window = window;
        self
    }

    /// Keeps the stream in memory instead of files (tests; lost when the server restarts).
    pub fn memory_storage(mut self) -> Self {
        self.storage = stream::StorageType::Memory;
        self
    }

    /// Replicas of the stream in a cluster (default 1).
    pub fn replicas(mut self, replicas: usize) -> Self {
        self.replicas = replicas.max(1);
        self
    }

    /// Where an empty stream starts: after this position of the local log (default
    /// [`Position::ZERO`], the log's beginning).
    pub fn start_after(mut self, position: Position) -> Self {
        self.start = position;
        self
    }

    /// What to do with an event over the server's `max_payload` (default: stop).
    pub fn dead_letters(mut self, policy: DeadLetterPolicy) -> Self {
        self.dead_letters = policy;
        self
    }

    /// How many events are read from the log at a time (default 500).
    pub fn batch_size(mut self, events: usize) -> Self {
        self.batch_size = events.max(1);
        self
    }

    /// How many publishes may await their ack at once (default 256; 1 waits for each), up to
    /// [`MAX_IN_FLIGHT`] (more is [`Error::Config`] from [`Publisher::new`]): the client's own
    /// limit of publishes awaiting an ack (5000 by default) is raised to twice this when that
    /// is more.
    pub fn in_flight(mut self, publishes: usize) -> Self {
        self.in_flight = publishes.max(1);
        self
    }

    /// Publishes only while holding the lease `name` from `leases`: one publisher of the
    /// stream runs, the others stand by.
    pub fn lease(mut self, leases: Arc<dyn LeaseManager>, name: impl Into<String>) -> Self {
        self.leases = Some((leases, name.into()));
        self
    }

    fn check(&self) -> Result<()> {
        if self.in_flight > MAX_IN_FLIGHT {
            return Err(Error::Config(format!(
                "in_flight {} is over the most publishes awaiting their ack, {MAX_IN_FLIGHT}",
                self.in_flight
            )));
        }
        subject::check_name("stream name", &self.stream)?;
        subject::check_prefix(&self.prefix)
    }

    fn stream_config(&self) -> stream::Config {
        stream::Config {
            name: self.stream.clone(),
            subjects: vec![format!("{}.>", self.prefix)],
            retention: stream::RetentionPolicy::Limits,
            max_age: self.max_age,
            max_messages: self.max_messages,
            max_bytes: self.max_bytes,
            duplicate_window: self.duplicate_window,
            storage: self.storage,
            num_replicas: self.replicas,
            discard: stream::DiscardPolicy::Old,
            description: Some(STREAM_DESCRIPTION.into()),
            ..Default::default()
        }
    }
}

/// Relays the chosen events of a local [`Feed`] (the event store) to one JetStream stream that
/// it alone writes, exactly once and in the log's order.
///
/// Every publish carries `Nats-Expected-Last-Sequence`: the stream's last sequence as this
/// publisher knows it, so a publish that would not extend the stream exactly as expected is
/// refused. Into an empty stream the publisher first writes a stream-start marker (see
/// [`headers::MARKER`](crate::headers::MARKER)), so that even the first event's publish
/// expects a sequence of at least 1, whatever the server does with an expected sequence of 0.
///
/// At start it reads the stream's last event and resumes after the position in its header,
/// so a publish whose ack was lost is never sent again and none goes missing, however long it
/// was down (JetStream's duplicate window only guards within minutes, and is a second guard
/// here: `Nats-Msg-Id` is the event id). That event must be the local log's own: the event at
/// that position has the message's event id, or the publisher stops with
/// [`Error::LogMismatch`] (the stream was written from another log, or the local store was
/// wiped or restored) rather than skip or repeat events; a position past the log's head is
/// waited for ([`Error::LogBehind`], retried: the log may trail, as a replica does). An outage is retried with back-off in
/// the same way: from the stream's last event, once the publishes of the pass that failed
/// are flushed (for at most the request timeout) and their acks awaited (for at most a second
/// more).
///
/// A refused publish, or one whose ack was lost, is checked before the next pass: when the
/// stream holds another message in its place (another writer's), the publisher stops with
/// [`Error::Fenced`] naming it, so it never skips an event. When its place holds that very
/// event (a publish of an abandoned pass that the server stored late, or of another publisher
/// of this log, such as the lease's previous holder) and the stream's last message is an event
/// of this log at its position, the publisher logs a warning and resumes after it, up to three
/// fences in a row with the stream where it was; a publisher whose lease was lost stands by for
/// the lease again.
/// Publishes are pipelined ([`in_flight`](PublisherConfig::in_flight)); one refused stops all
/// after it, so the stream never holds a later event before an earlier one.
///
/// # Examples
///
/// ```no_run
/// use eventloom_core::memory::MemoryEventStore;
/// use eventloom_nats::{NatsConfig, Publisher, PublisherConfig};
///
/// # async fn run() -> eventloom_nats::Result<()> {
/// let log = MemoryEventStore::new();
/// let client = NatsConfig::from_env()?.connect().await?;
/// let publisher = Publisher::new(client, PublisherConfig::new("ORDERS", "bus.orders").category("order"))?;
/// publisher.catch_up(&log).await?; // what is stored now
/// publisher.run(&log, std::future::pending()).await?; // and then as events commit
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Publisher {
    inner: Arc<Inner>,
}

struct Inner {
    client: async_nats::Client,
    context: jetstream::Context,
    /// How long a JetStream request (and a publish's ack) may take.
    timeout: Duration,
    config: PublisherConfig,
    status: Mutex<PublisherStatus>,
    dead_letters: Mutex<VecDeque<DeadLetter>>,
    /// Its metrics' handles.
    metrics: crate::metrics::PublisherMetrics,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher").field("config", &self.inner.config).field("status", &self.status()).finish()
    }
}

/// How many dead letters a publisher remembers (the oldest go first).
const DEAD_LETTERS_KEPT: usize = 1000;

/// Where the publisher stands: the stream's last sequence and the position it records.
#[derive(Debug, Clone, Copy)]
struct Resume {
    last_sequence: u64,
    after: Position,
    /// Whether `after` is of an event found in the stream (not the configured start).
    found: bool,
}

/// A publish sent: the sequence it must get, and its event's position and id.
#[derive(Debug, Clone)]
struct Sent {
    sequence: u64,
    position: Position,
    event_id: String,
    /// When it was sent.
    at: std::time::Instant,
}

impl Sent {
    /// The fence of this publish refused: the stream holds another message in its place.
    fn fenced(&self, stream: &str) -> Error {
        Error::Fenced {
            stream: stream.to_owned(),
            expected_last_sequence: self.sequence - 1,
            position: Some(self.position),
            event_id: Some(self.event_id.clone()),
        }
    }
}

/// A publish awaiting its ack.
type Pending = (jetstream::context::PublishAckFuture, Sent);

/// The publishes of a publisher's passes that are not confirmed yet.
#[derive(Default)]
struct Pipeline {
    /// Awaiting their acks, oldest first.
    acks: VecDeque<Pending>,
    /// Ended without their ack (refused, or the ack lost): the server may have stored them,
    /// or another message in their place. Checked before the next pass.
    unconfirmed: Vec<Sent>,
}

/// Whether a publisher goes on after the check of its unconfirmed and fenced publishes.
enum Verdict {
    /// Every unconfirmed publish the stream holds is in its place: resume after the stream's
    /// last message.
    Resume,
    /// Another message holds the place of an unconfirmed publish: stop with this fence.
    Stop(Error),
    /// The fence met is another writer's, or fences keep coming: stop with it.
    Fenced,
}

/// How a publishing pass ended.
enum Pass {
    /// Caught up (catch-up only) or shut down.
    Done,
    /// The lease was lost.
    LeaseLost,
}

impl Publisher {
    /// A publisher over `client` (see [`NatsConfig::connect`]); [`Error::Config`] for a stream
    /// name or prefix that cannot work. Nothing is sent until [`run`](Publisher::run) or
    /// [`catch_up`](Publisher::catch_up).
    pub fn new(client: async_nats::Client, config: PublisherConfig) -> Result<Self> {
        Publisher::build(client, config, Duration::from_secs(5))
    }

    fn build(client: async_nats::Client, config: PublisherConfig, timeout: Duration) -> Result<Self> {
        config.check()?;
        // Room for the acks of a pass and of the one abandoned before it: the client's own
        // limit (5000 by default) makes a publish wait for a permit, which with more in flight
        // than that would wait for acks nobody awaits yet.
        let context = jetstream::context::ContextBuilder::new()
            .timeout(timeout)
            .max_ack_inflight(config.in_flight.saturating_mul(2).max(5000))
            // A publish's ack is awaited as long as a request (the client's default, 30 s,
            // would hold the permits of an abandoned pass's publishes that long).
            .ack_timeout(timeout)
            .build(client.clone());
        let metrics = crate::metrics::PublisherMetrics::new(&config.stream);
        Ok(Publisher {
            inner: Arc::new(Inner {
                metrics,
                client,
                context,
                timeout,
                config,
                status: Mutex::new(PublisherStatus::default()),
                dead_letters: Mutex::new(VecDeque::new()),
            }),
        })
    }

    /// Connects with `nats` and makes a publisher.
    pub async fn connect(nats: &NatsConfig, config: PublisherConfig) -> Result<Self> {
        let client = nats.connect().await?;
        Publisher::build(client, config, nats.request_timeout_value())
    }

    /// Its configuration.
    pub fn config(&self) -> &PublisherConfig {
        &self.inner.config
    }

    /// What it has done so far.
    pub fn status(&self) -> PublisherStatus {
        self.inner.status.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// The events it skipped under [`DeadLetterPolicy::Skip`], oldest first (the last 1000).
    pub fn dead_letters(&self) -> Vec<DeadLetter> {
        self.inner.dead_letters.lock().map(|d| d.iter().cloned().collect()).unwrap_or_default()
    }

    fn report(&self, change: impl FnOnce(&mut PublisherStatus)) {
        if let Ok(mut status) = self.inner.status.lock() {
            change(&mut status);
        }
    }

    /// Publishes what `feed` holds now after the stream's last message, and returns once
    /// caught up. Outages are retried; a fence, an event too large (under
    /// [`DeadLetterPolicy::Stop`]) or a lost lease end it with that error.
    pub async fn catch_up<F: Feed>(&self, feed: &F) -> Result<()> {
        let span = tracing::info_span!("nats publisher catch-up", stream = %self.inner.config.stream);
        async {
            let lease = self.lease(std::future::pending()).await?.flatten();
            match self.publish_with_retries(feed, lease.as_ref(), false, std::future::pending()).await? {
                Pass::Done => Ok(()),
                Pass::LeaseLost => Err(self.lease_lost()),
            }
        }
        .instrument(span)
        .await
    }

    /// Publishes what `feed` holds and then each event as it commits, until `shutdown`
    /// resolves (`Ok`) or an error no retry mends: [`Error::Fenced`], [`Error::TooLarge`]
    /// (under [`DeadLetterPolicy::Stop`]), a stream whose settings conflict. Outages are
    /// retried with back-off from the stream's last message. With a lease, it stands by while
    /// another holds it, and again after losing it.
    pub async fn run<F: Feed>(&self, feed: &F, shutdown: impl Future<Output = ()> + Send) -> Result<()> {
        let span = tracing::info_span!("nats publisher", stream = %self.inner.config.stream);
        // Boxed here, where the lifetimes are known: a caller that spawns the future of this
        // generic loop otherwise trips the compiler's check that it is `Send` for every lifetime.
        let run: std::pin::Pin<Box<dyn Future<Output = Result<()>> + Send + '_>> = Box::pin(async move {
            tokio::pin!(shutdown);
            loop {
                let Some(lease) = self.lease(&mut shutdown).await? else { return Ok(()) };
                let pass = self.publish_with_retries(feed, lease.as_ref(), true, &mut shutdown).await;
                self.report(|s| s.active = false);
                match pass {
                    Ok(Pass::Done) => return Ok(()),
                    Ok(Pass::LeaseLost) => {
                        tracing::warn!("the publisher's lease was lost; standing by");
                        self.report(|s| s.last_error = Some(self.lease_lost().to_string()));
                    }
                    Err(error) => {
                        self.report(|s| s.last_error = Some(error.to_string()));
                        return Err(error);
                    }
                }
            }
        });
        run.instrument(span).await
    }

    fn lease_lost(&self) -> Error {
        let lease = self.inner.config.leases.as_ref().map(|(_, name)| name.clone()).unwrap_or_default();
        Error::LeaseLost { lease }
    }

    /// Takes the lease, when configured: `Some(None)` without one, `None` when shut down first.
    async fn lease(&self, shutdown: impl Future<Output = ()>) -> Result<Option<Option<Lease>>> {
        let Some((leases, name)) = &self.inner.config.leases else { return Ok(Some(None)) };
        let mut delay = Duration::from_millis(100);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                lease = leases.acquire(name) => match lease {
                    Ok(lease) => return Ok(Some(Some(lease))),
                    Err(error) if error.is_transient() => {
                        tracing::warn!(%error, "cannot take the publisher's lease; retrying");
                        tokio::select! {
                            () = tokio::time::sleep(delay) => {}
                            () = &mut shutdown => return Ok(None),
                        }
                        delay = (delay * 2).min(Duration::from_secs(5));
                    }
                    Err(error) => return Err(error.into()),
                },
                () = &mut shutdown => return Ok(None),
            }
        }
    }

    /// Publishing passes, each from the stream's last message, until done, the lease is lost,
    /// or an error no retry mends.
    ///
    /// Before each pass the publishes of the one before that still await their ack are flushed
    /// and awaited (for a bounded time): the server may store them after the next pass read
    /// the stream's last message. Then each publish that ended unconfirmed (refused, or its ack
    /// lost) is checked: where the stream holds a message at its sequence, it must be that very
    /// event, or the publisher stops with [`Error::Fenced`] (another writer took its place, and
    /// resuming after the stream's last message would skip it). A fence whose place holds this
    /// very event (stored by a publish of an abandoned pass, or by another publisher of this
    /// log) is no other writer: the next pass resumes after the stream's last message, up to
    /// [`REFENCES`] times in a row while the stream stays where it was. A publisher whose lease
    /// is lost stands by instead of stopping fenced. An outage met anywhere, these checks
    /// included, is retried with back-off.
    async fn publish_with_retries<F: Feed>(
        &self,
        feed: &F,
        lease: Option<&Lease>,
        live: bool,
        shutdown: impl Future<Output = ()>,
    ) -> Result<Pass> {
        tokio::pin!(shutdown);
        let mut delay = Duration::from_millis(100);
        let mut pending = Pipeline::default();
        let mut fences = Fences::default();
        // A fence met, whose check is still to do.
        let mut fenced: Option<Error> = None;
        // Since when the local log has been behind the stream, in a row.
        let mut behind_since: Option<tokio::time::Instant> = None;
        loop {
            self.abandon(&mut pending).await;
            let check = self.check_stop(feed, &pending.unconfirmed, fenced.is_some(), &mut fences);
            let verdict = tokio::select! {
                verdict = check => verdict,
                () = &mut shutdown => return Ok(Pass::Done),
            };
            let checked = match verdict {
                Ok(Verdict::Resume) => Ok(()),
                // Fenced by the new holder of a lost lease: stand by under the lease. (A stop is
                // another writer's message in an event's place, which no lease explains: it
                // stops, lease or not.)
                Ok(Verdict::Fenced) if lease.is_some_and(Lease::is_lost) => return Ok(Pass::LeaseLost),
                Ok(Verdict::Stop(error)) => return Err(error),
                Ok(Verdict::Fenced) => return Err(fenced.take().unwrap_or_else(|| self.fence_unknown())),
                Err(error) => Err(error),
            };
            let ended = match checked {
                Ok(()) => {
                    pending.unconfirmed.clear();
                    if let Some(error) = fenced.take() {
                        tracing::warn!(%error, "the fence's place holds this very event (a publish of an abandoned pass, or of another publisher of this log): resuming after the stream's last message");
                    }
                    let pass = async {
                        let resume = self.resume(feed).await?;
                        self.report(|s| {
                            s.active = true;
                            s.last_sequence = resume.last_sequence;
                            s.last_position = resume.found.then_some(resume.after);
                        });
                        tracing::info!(last_sequence = resume.last_sequence, after = %resume.after, "publishing");
                        self.publish_from(feed, resume, lease, live, &mut delay, &mut pending).await
                    };
                    tokio::select! {
                        ended = pass => ended,
                        () = &mut shutdown => return Ok(Pass::Done),
                        () = lost(lease) => {
                            self.abandon(&mut pending).await;
                            return Ok(Pass::LeaseLost);
                        }
                    }
                }
                Err(error) => Err(error),
            };
            if !matches!(ended, Err(Error::LogBehind { .. })) {
                behind_since = None;
            }
            match ended {
                Ok(pass) => return Ok(pass),
                Err(Error::Fenced { .. }) if lease.is_some_and(Lease::is_lost) => {
                    // Fenced by the new holder: stand by under the lease.
                    self.abandon(&mut pending).await;
                    return Ok(Pass::LeaseLost);
                }
                Err(error @ Error::Fenced { .. }) => fenced = Some(error),
                Err(Error::LogBehind { stream, sequence, position })
                    if behind_since.get_or_insert_with(tokio::time::Instant::now).elapsed() >= LOG_BEHIND_LIMIT =>
                {
                    return Err(Error::LogMismatch {
                        stream,
                        sequence,
                        position,
                        reason: format!(
                            "the local log has not reached that position in {} s: it is not the log that published \
                             (another service's, or a store restored or wiped), or a replica that stopped replaying",
                            LOG_BEHIND_LIMIT.as_secs()
                        ),
                    });
                }
                Err(error) if error.is_transient() => {
                    tracing::warn!(%error, ?delay, "publishing failed; resuming from the stream's last message");
                    self.report(|s| s.last_error = Some(error.to_string()));
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = &mut shutdown => return Ok(Pass::Done),
                    }
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// A fence whose refused publish is not known (it cannot happen: every fence kept is).
    fn fence_unknown(&self) -> Error {
        Error::Fenced {
            stream: self.inner.config.stream.clone(),
            expected_last_sequence: self.status().last_sequence,
            position: None,
            event_id: None,
        }
    }

    /// Flushes the publishes of an ended pass (for at most the request timeout, as the client
    /// reconnects) and awaits their acks (for at most [`ABANDONED_ACKS_WAIT`] more): what the
    /// server stores of them is then mostly stored before the next pass reads the stream (a
    /// fence by one stored later is told from another writer's). The ones acked in their place
    /// count as published; the others join the unconfirmed.
    async fn abandon(&self, pending: &mut Pipeline) {
        if pending.acks.is_empty() {
            return;
        }
        let span = tracing::debug_span!("nats publish abandon", in_flight = pending.acks.len());
        async {
            if tokio::time::timeout(self.inner.timeout, self.inner.client.flush()).await.is_err() {
                tracing::debug!("flushing the abandoned publishes timed out");
            }
            // Acks the server will never send (it restarted) are not waited for long.
            let deadline = tokio::time::Instant::now() + ABANDONED_ACKS_WAIT.min(self.inner.timeout);
            let mut expired = false;
            while let Some((ack, sent)) = pending.acks.pop_front() {
                let acked =
                    if expired { None } else { tokio::time::timeout_at(deadline, ack.into_future()).await.ok() };
                expired = acked.is_none();
                match acked {
                    Some(Ok(ack)) if ack.sequence == sent.sequence => self.report(|s| {
                        let metrics = &self.inner.metrics;
                        (if ack.duplicate { &metrics.duplicates } else { &metrics.published }).increment(1);
                        s.published += u64::from(!ack.duplicate);
                        s.last_sequence = s.last_sequence.max(sent.sequence);
                        s.last_position = s.last_position.max(Some(sent.position));
                    }),
                    _ => pending.unconfirmed.push(sent),
                }
            }
        }
        .instrument(span)
        .await;
    }

    /// Before a pass, after one that ended with publishes unconfirmed or fenced: whether to go
    /// on. Each unconfirmed publish whose sequence the stream holds must have this very event
    /// there ([`Verdict::Stop`] with a fence naming the first that has not). After a fence, the
    /// stream's last message must be an event of this log at its position, and the fences in a
    /// row with the stream where it was fewer than [`REFENCES`] ([`Verdict::Fenced`] when not).
    #[tracing::instrument(name = "nats publish check", level = "debug", skip_all, fields(unconfirmed = unconfirmed.len()))]
    async fn check_stop<F: Feed>(
        &self,
        feed: &F,
        unconfirmed: &[Sent],
        fenced: bool,
        fences: &mut Fences,
    ) -> Result<Verdict> {
        if unconfirmed.is_empty() && !fenced {
            return Ok(Verdict::Resume);
        }
        let stream_name = &self.inner.config.stream;
        if !unconfirmed.is_empty() {
            let mut stream =
                self.inner.context.get_stream(stream_name).await.map_err(|e| request("reading the stream", e))?;
            let last = stream.info().await.map_err(|e| request("reading the stream's info", e))?.state.last_sequence;
            let mut sent: Vec<&Sent> = unconfirmed.iter().filter(|sent| sent.sequence <= last).collect();
            sent.sort_by_key(|sent| sent.sequence);
            sent.dedup_by_key(|sent| sent.sequence);
            for sent in sent {
                let message = match stream.get_raw_message(sent.sequence).await {
                    Ok(message) => message,
                    Err(error)
                        if matches!(
                            error.kind(),
                            async_nats::jetstream::stream::LastRawMessageErrorKind::NoMessageFound
                        ) =>
                    {
                        tracing::error!(sequence = sent.sequence, position = %sent.position, "the place of an unconfirmed publish is empty (deleted or expired): stopping");
                        return Ok(Verdict::Stop(sent.fenced(stream_name)));
                    }
                    Err(error) => return Err(request("reading a message in the place of a publish", error)),
                };
                let id = headers::event_id(&message.headers).map(|id| id.to_string());
                if id.as_deref() != Some(sent.event_id.as_str())
                    || headers::position(&message.headers) != Some(sent.position)
                {
                    tracing::error!(sequence = sent.sequence, position = %sent.position, event_id = %sent.event_id, "another writer's message holds the place of an unconfirmed publish: stopping");
                    return Ok(Verdict::Stop(sent.fenced(stream_name)));
                }
            }
        }
        if fenced && !self.fenced_by_this_log(feed, fences).await? {
            return Ok(Verdict::Fenced);
        }
        Ok(Verdict::Resume)
    }

    /// After a fence whose place holds this very event: whether the stream's last message is
    /// an event of this log at its position, so that resuming after it is right; `false` for
    /// another writer, or after [`REFENCES`] fences in a row with the stream where it was.
    async fn fenced_by_this_log<F: Feed>(&self, feed: &F, fences: &mut Fences) -> Result<bool> {
        let resume = match self.resume(feed).await {
            Ok(resume) => resume,
            Err(Error::LogMismatch { .. } | Error::ForeignStream { .. }) => return Ok(false),
            Err(error) => return Err(error),
        };
        let published = self.status().published;
        if resume.last_sequence > fences.last_sequence || published > fences.published {
            fences.stalls = 0;
        } else {
            fences.stalls += 1;
        }
        fences.last_sequence = resume.last_sequence;
        fences.published = published;
        Ok(fences.stalls < REFENCES)
    }

    /// Creates or checks the stream (writing the stream-start marker into an empty one), and
    /// reads where to resume from its last event, checked against the local log.
    #[tracing::instrument(name = "nats resume", level = "debug", skip_all)]
    async fn resume<F: Feed>(&self, feed: &F) -> Result<Resume> {
        let config = &self.inner.config;
        let mut stream = self.stream().await?;
        let mut last = stream.cached_info().state.last_sequence;
        if last == 0 {
            self.write_marker().await?;
            last = stream.info().await.map_err(|e| request("reading the stream's info", e))?.state.last_sequence;
            if last == 0 {
                return Err(Error::Unavailable(format!(
                    "the stream-start marker of {} is not stored yet",
                    config.stream
                )));
            }
        }
        // The last event: markers of publishers that started at once are passed over.
        let mut sequence = last;
        for _ in 0..MARKERS_PASSED {
            if sequence == 0 {
                return Ok(Resume { last_sequence: last, after: config.start, found: false });
            }
            let message = match stream.get_raw_message(sequence).await {
                Ok(message) => message,
                Err(error)
                    if sequence == 1
                        && matches!(
                            error.kind(),
                            async_nats::jetstream::stream::LastRawMessageErrorKind::NoMessageFound
                        )
                        && marker_at_one(&mut stream).await? =>
                {
                    // Only the marker was ever stored, and it aged out.
                    return Ok(Resume { last_sequence: last, after: config.start, found: false });
                }
                Err(error)
                    if matches!(
                        error.kind(),
                        async_nats::jetstream::stream::LastRawMessageErrorKind::NoMessageFound
                    ) =>
                {
                    return Err(Error::ForeignStream {
                        stream: config.stream.clone(),
                        sequence,
                        reason: "the last message is gone (expired or deleted), so where to resume is unknown: \
                                 keep the last message (size limits rather than age), or start a new stream"
                            .into(),
                    });
                }
                Err(error) => return Err(request("reading the stream's last message", error)),
            };
            if headers::is_marker(Some(&message.headers)) {
                sequence -= 1;
                continue;
            }
            let after = self.check_against_log(feed, sequence, &message.headers).await?;
            return Ok(Resume { last_sequence: last, after, found: true });
        }
        Err(Error::ForeignStream {
            stream: config.stream.clone(),
            sequence: last,
            reason: format!("the last {MARKERS_PASSED} messages are stream-start markers"),
        })
    }

    /// The stream, created when missing (empty), checked, and its limits updated.
    async fn stream(&self) -> Result<stream::Stream> {
        let config = &self.inner.config;
        let context = &self.inner.context;
        let wanted = config.stream_config();
        let mut stream = match context.get_stream(&config.stream).await {
            Ok(stream) => stream,
            Err(error) if stream_not_found(&error) => match context.create_stream(wanted.clone()).await {
                Ok(stream) => stream,
                // Another publisher of the log made it meanwhile (and may have noted its marker
                // in the description already: "in use with a different configuration").
                Err(error) => match context.get_stream(&config.stream).await {
                    Ok(stream) => stream,
                    // Still missing: the creation's own error says why. Otherwise the read that
                    // followed failed (an outage: retried), and says so.
                    Err(missing) if stream_not_found(&missing) => return Err(request("creating the stream", error)),
                    Err(read) => return Err(request("reading the stream after creating it was refused", read)),
                },
            },
            Err(error) => return Err(request("reading the stream", error)),
        };
        let info = stream.info().await.map_err(|e| request("reading the stream's info", e))?.clone();
        if info.config.subjects != wanted.subjects || info.config.retention != stream::RetentionPolicy::Limits {
            return Err(Error::Config(format!(
                "stream {} exists with subjects {:?} and {:?} retention; a bus publisher needs subjects {:?} and limits retention",
                config.stream, info.config.subjects, info.config.retention, wanted.subjects
            )));
        }
        // A stream whose marker was stored before it was noted (by an older publisher, or one
        // stopped in between).
        let mut info = info;
        if !headers::marker_at_one(info.config.description.as_deref()) && info.state.first_sequence == 1 {
            match stream.get_raw_message(1).await {
                Ok(message) if headers::is_marker(Some(&message.headers)) => {
                    self.try_note_marker_at_one().await;
                    info = stream.info().await.map_err(|e| request("reading the stream's info", e))?.clone();
                }
                Ok(_) => {}
                Err(error)
                    if matches!(
                        error.kind(),
                        async_nats::jetstream::stream::LastRawMessageErrorKind::NoMessageFound
                    ) => {}
                Err(error) => return Err(request("reading the stream's first message", error)),
            }
        }
        let current = &info.config;
        if current.max_age != wanted.max_age
            || current.max_messages != wanted.max_messages
            || current.max_bytes != wanted.max_bytes
            || current.duplicate_window != wanted.duplicate_window
        {
            let mut updated = current.clone();
            updated.max_age = wanted.max_age;
            updated.max_messages = wanted.max_messages;
            updated.max_bytes = wanted.max_bytes;
            updated.duplicate_window = wanted.duplicate_window;
            context.update_stream(updated).await.map_err(|e| request("updating the stream's limits", e))?;
        }
        Ok(stream)
    }

    /// [`note_marker_at_one`](Self::note_marker_at_one), where failing only warns: the note
    /// matters once the marker aged out, and publishing must not wait for it (a publisher
    /// allowed to publish but not to update its stream goes on; a later pass tries again).
    async fn try_note_marker_at_one(&self) {
        if let Err(error) = self.note_marker_at_one().await {
            tracing::warn!(%error, "could not note the stream-start marker in the stream's description; going on");
        }
    }

    /// Notes in the stream's description that its sequence 1 is the stream-start marker (see
    /// [`headers::MARKER_AT_ONE`]), once.
    async fn note_marker_at_one(&self) -> Result<()> {
        let context = &self.inner.context;
        let mut stream =
            context.get_stream(&self.inner.config.stream).await.map_err(|e| request("reading the stream", e))?;
        let mut config = stream.info().await.map_err(|e| request("reading the stream's info", e))?.config.clone();
        if headers::marker_at_one(config.description.as_deref()) {
            return Ok(());
        }
        let description = config.description.take().unwrap_or_else(|| STREAM_DESCRIPTION.into());
        config.description = Some(format!("{description}; {}", headers::MARKER_AT_ONE));
        context.update_stream(config).await.map_err(|e| request("noting the stream-start marker", e))?;
        Ok(())
    }

    /// Writes the stream-start marker (see [`headers::MARKER`]) into an empty stream. Two
    /// publishers starting at once may both write one (JetStream's duplicate guard keeps one
    /// within its window): markers carry nothing, so that is harmless.
    async fn write_marker(&self) -> Result<()> {
        let config = &self.inner.config;
        tracing::info!(stream = %config.stream, "writing the stream-start marker into the empty stream");
        let publish = jetstream::message::PublishMessage::build()
            .payload(bytes::Bytes::new())
            .headers(headers::marker())
            // A server that checks an expected sequence of 0 (the standalone nats-server 2.9.10
            // the tests run on does) never stores a marker after another message.
            .expected_last_sequence(0);
        let ack = self
            .inner
            .context
            .send_publish(headers::marker_subject(&config.prefix), publish)
            .await
            .map_err(|e| publish_error(&config.stream, 0, e))?;
        match ack.await {
            Ok(ack) if ack.sequence == 1 => {
                self.try_note_marker_at_one().await;
                Ok(())
            }
            Ok(_) => Ok(()),
            // Someone else's message came first: the stream is not empty any more.
            Err(error) if matches!(error.kind(), PublishErrorKind::WrongLastSequence) => Ok(()),
            Err(error) => Err(publish_error(&config.stream, 0, error)),
        }
    }

    /// The position the stream's last event (at `sequence`) records, once checked against the
    /// local log: the event there must have the message's event id. [`Error::LogMismatch`]
    /// when the position holds no event, or another one; [`Error::LogBehind`] (an outage,
    /// retried) when it is past the log's head.
    async fn check_against_log<F: Feed>(
        &self,
        feed: &F,
        sequence: u64,
        message: &async_nats::HeaderMap,
    ) -> Result<Position> {
        let stream = &self.inner.config.stream;
        let foreign = |reason: String| Error::ForeignStream { stream: stream.clone(), sequence, reason };
        let position = headers::position(message)
            .ok_or_else(|| foreign(format!("it has no {} header", headers::names::POSITION)))?;
        let event_id = headers::event_id(message)
            .ok_or_else(|| foreign(format!("it has no valid {} header", headers::names::EVENT_ID)))?;
        let mismatch = |reason: String| Error::LogMismatch { stream: stream.clone(), sequence, position, reason };
        let Some(before) = just_before(position) else {
            return Err(mismatch("its position is before every event".into()));
        };
        let mut reader = feed.read_after(before, 1, 4 << 20);
        let local = reader.try_next_batch().await?.and_then(|batch| batch.into_iter().next());
        let Some(local) = local else {
            if feed.count_after(Position::ZERO, 1).await? == 0 {
                return Err(mismatch("the local log is empty (a store wiped, or another one)".into()));
            }
            // The local log may trail the one that published (a replica, or its gap-free
            // horizon behind): retried until it holds the position, for a while.
            return Err(Error::LogBehind { stream: stream.clone(), sequence, position });
        };
        if local.position != position {
            return Err(mismatch(format!(
                "the local log holds no event at position {position} (the next is at {})",
                local.position
            )));
        }
        let local_id = local.metadata.get()?.event_id;
        if local_id != event_id {
            return Err(mismatch(format!(
                "the local event at position {position} has id {local_id}, the message {event_id}"
            )));
        }
        Ok(position)
    }

    /// One pass: reads the feed after `resume.after` and publishes the chosen events, each
    /// expecting the one before as the stream's last.
    async fn publish_from<F: Feed>(
        &self,
        feed: &F,
        resume: Resume,
        lease: Option<&Lease>,
        live: bool,
        delay: &mut Duration,
        pending: &mut Pipeline,
    ) -> Result<Pass> {
        let config = &self.inner.config;
        let mut reader = feed.read_after(resume.after, config.batch_size, 4 << 20);
        // The sequence the next publish expects as the stream's last (acked or in flight).
        let mut expected = resume.last_sequence;
        // A batch read ahead while the one before was published.
        let mut ahead: Option<Vec<RecordedEvent>> = None;
        loop {
            let batch = if let Some(batch) = ahead.take() {
                Some(batch)
            } else if live {
                // Awaits acks while waiting for the next events: nothing waits longer than it must.
                if !pending.acks.is_empty() {
                    match reader.try_next_batch().await? {
                        Some(batch) => Some(batch),
                        None => {
                            self.settle(pending, 0).await?;
                            continue;
                        }
                    }
                } else {
                    Some(reader.next_batch().await?)
                }
            } else {
                reader.try_next_batch().await?
            };
            let Some(batch) = batch else {
                self.settle(pending, 0).await?;
                return Ok(Pass::Done);
            };
            tracing::debug!(events = batch.len(), after = %batch.first().map_or(Position::ZERO, |e| e.position), "publishing a batch of the log");
            let published = if reader.is_behind() {
                // A full batch: read the next one while this one goes out.
                let (published, next) =
                    tokio::join!(self.publish_batch(&batch, &mut expected, pending, lease), reader.try_next_batch());
                if published.is_ok() {
                    ahead = next?;
                }
                published?
            } else {
                self.publish_batch(&batch, &mut expected, pending, lease).await?
            };
            if let Some(pass) = published {
                return Ok(pass);
            }
            *delay = Duration::from_millis(100);
        }
    }

    /// Publishes the chosen events of `batch`, each expecting the one before as the stream's
    /// last, with at most `in_flight` awaiting their acks; `Some` when the lease was lost.
    async fn publish_batch(
        &self,
        batch: &[RecordedEvent],
        expected: &mut u64,
        pending: &mut Pipeline,
        lease: Option<&Lease>,
    ) -> Result<Option<Pass>> {
        let config = &self.inner.config;
        // The server's limit, as it told it when (re)connecting.
        let max_payload = self.inner.client.server_info().max_payload;
        for event in batch {
            if !config.selects(event.stream.category(), &event.event_type) {
                continue;
            }
            let Some(message) = self.message(event, max_payload)? else { continue };
            let (subject, headers, payload, event_id) = message;
            let publish = jetstream::message::PublishMessage::build()
                .payload(payload)
                .headers(headers)
                .expected_last_sequence(*expected);
            let ack = self
                .inner
                .context
                .send_publish(subject, publish)
                .await
                .map_err(|e| publish_error(&config.stream, *expected, e))?;
            *expected += 1;
            let at = std::time::Instant::now();
            pending.acks.push_back((ack, Sent { sequence: *expected, position: event.position, event_id, at }));
            self.settle(pending, config.in_flight.saturating_sub(1)).await?;
            if lease.is_some_and(Lease::is_lost) {
                self.settle(pending, 0).await?;
                return Ok(Some(Pass::LeaseLost));
            }
        }
        Ok(None)
    }

    /// Awaits acks, oldest first, until at most `keep` are in flight. A refused or lost
    /// publish ends the pass (the ones after it are dropped: each expected it before).
    #[tracing::instrument(name = "nats publish acks", level = "trace", skip_all, fields(in_flight = pending.acks.len()))]
    async fn settle(&self, pending: &mut Pipeline, keep: usize) -> Result<()> {
        let stream = &self.inner.config.stream;
        while pending.acks.len() > keep {
            let Some((ack, sent)) = pending.acks.pop_front() else { break };
            match ack.await {
                Ok(ack) if ack.sequence != sent.sequence => {
                    // Stored elsewhere (a duplicate of an event id stored at another sequence)
                    // or not as expected: what its place holds is checked before going on.
                    let fenced = sent.fenced(stream);
                    pending.unconfirmed.push(sent);
                    return Err(fenced);
                }
                Ok(ack) => {
                    // A duplicate at the very sequence expected is this event, stored by a
                    // publish of an abandoned pass: in its place.
                    self.inner.metrics.latency.record(sent.at.elapsed());
                    let counted =
                        if ack.duplicate { &self.inner.metrics.duplicates } else { &self.inner.metrics.published };
                    counted.increment(1);
                    self.report(|s| {
                        s.published += u64::from(!ack.duplicate);
                        s.last_sequence = sent.sequence;
                        s.last_position = Some(sent.position);
                    });
                }
                Err(error) => {
                    let error = match publish_error(stream, sent.sequence - 1, error) {
                        Error::Fenced { .. } => sent.fenced(stream),
                        error => error,
                    };
                    pending.unconfirmed.push(sent);
                    return Err(error);
                }
            }
        }
        Ok(())
    }

    /// The subject, headers and body of `event`'s message; `None` when it is too large and
    /// skipped as a dead letter.
    fn message(
        &self,
        event: &RecordedEvent,
        max_payload: usize,
    ) -> Result<Option<(String, async_nats::HeaderMap, bytes::Bytes, String)>> {
        let config = &self.inner.config;
        let metadata = event.metadata.get()?;
        let headers = headers::build(event, metadata);
        // The publish adds `Nats-Expected-Last-Sequence` after this check: counted at its widest.
        let size = headers::wire_size(&headers) + headers::EXPECTED_SEQUENCE_HEADER + event.payload.len();
        if max_payload > 0 && size > max_payload {
            let event_id = metadata.event_id.to_string();
            match config.dead_letters {
                DeadLetterPolicy::Stop => {
                    return Err(Error::TooLarge { position: event.position, event_id, size, max_payload });
                }
                DeadLetterPolicy::Skip => {
                    let reason =
                        format!("{size} bytes with its headers, over the server's max_payload of {max_payload}");
                    tracing::error!(position = %event.position, %event_id, %reason, "skipping an event too large to publish");
                    if let Ok(mut letters) = self.inner.dead_letters.lock() {
                        if letters.len() >= DEAD_LETTERS_KEPT {
                            letters.pop_front();
                        }
                        letters.push_back(DeadLetter {
                            position: event.position,
                            event_id,
                            stream: event.stream.to_string(),
                            event_type: event.event_type.to_string(),
                            reason,
                        });
                    }
                    return Ok(None);
                }
            }
        }
        let subject = subject::subject(&config.prefix, event.stream.category(), &event.event_type);
        let payload = bytes::Bytes::copy_from_slice(event.payload.as_bytes());
        Ok(Some((subject, headers, payload, metadata.event_id.to_string())))
    }
}

/// The description of a stream a publisher creates (the publisher adds
/// [`headers::MARKER_AT_ONE`] once its marker is stored at sequence 1).
const STREAM_DESCRIPTION: &str = "eventloom-nats: events published by one service, in its log's order";

/// How many fences in a row, with the stream where it was, a publisher resumes after before
/// it stops [`Error::Fenced`].
const REFENCES: u32 = 3;

/// How long the acks of an ended pass are awaited, once its publishes are flushed.
const ABANDONED_ACKS_WAIT: Duration = Duration::from_secs(1);

/// How long the local log may stay behind the stream's last event ([`Error::LogBehind`]) before
/// the publisher stops with [`Error::LogMismatch`]: a replica is behind for seconds, not minutes.
pub const LOG_BEHIND_LIMIT: Duration = Duration::from_secs(120);

/// How many stream-start markers at the stream's end a resume passes over.
const MARKERS_PASSED: usize = 100;

/// The fences met in a row, and where the stream and the publisher stood at the last.
#[derive(Debug, Default)]
struct Fences {
    stalls: u32,
    last_sequence: u64,
    published: u64,
}

/// A position just before `position`, with nothing between them; `None` for [`Position::ZERO`].
fn just_before(position: Position) -> Option<Position> {
    match (position.transaction(), position.sequence()) {
        (0, 0) => None,
        (transaction, 0) => Some(Position::new(transaction - 1, u64::MAX)),
        (transaction, sequence) => Some(Position::new(transaction, sequence - 1)),
    }
}

/// Whether the stream's description, read now, says its sequence 1 is the stream-start marker.
async fn marker_at_one(stream: &mut stream::Stream) -> Result<bool> {
    let info = stream.info().await.map_err(|e| request("reading the stream's info", e))?;
    Ok(headers::marker_at_one(info.config.description.as_deref()))
}

/// Resolves when the lease is lost (never without one).
async fn lost(lease: Option<&Lease>) {
    match lease {
        Some(lease) => lease.lost().await,
        None => std::future::pending().await,
    }
}

fn stream_not_found(error: &jetstream::context::GetStreamError) -> bool {
    match error.kind() {
        jetstream::context::GetStreamErrorKind::JetStream(error) => {
            error.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
        }
        _ => false,
    }
}

/// A publish's failure, sorted: a refused expectation is a fence, the rest outages (retried
/// from the stream's last message) or refusals.
fn publish_error(stream: &str, expected: u64, error: jetstream::context::PublishError) -> Error {
    match error.kind() {
        PublishErrorKind::WrongLastSequence => Error::Fenced {
            stream: stream.to_owned(),
            expected_last_sequence: expected,
            position: None,
            event_id: None,
        },
        PublishErrorKind::TimedOut | PublishErrorKind::BrokenPipe | PublishErrorKind::MaxAckPending => {
            Error::Unavailable(format!("publishing to {stream}: {error}"))
        }
        PublishErrorKind::StreamNotFound => Error::Unavailable(format!(
            "publishing to {stream}: no stream answered (the server restarts, or the stream was deleted)"
        )),
        PublishErrorKind::Other => {
            // The server's own refusal, by its code: only one that says "not now" is an outage;
            // the others (a message over the stream's size limit, a sealed stream, ...) would be
            // refused again on every retry.
            let refusal =
                std::error::Error::source(&error).and_then(|source| source.downcast_ref::<jetstream::Error>());
            match refusal {
                Some(refusal)
                    if !temporarily_unavailable(
                        u64::try_from(refusal.code()).unwrap_or(u64::MAX),
                        refusal.error_code().0,
                    ) =>
                {
                    Error::JetStream(format!(
                        "publishing to {stream}: {error} (JetStream error {})",
                        refusal.error_code().0
                    ))
                }
                _ => Error::Unavailable(format!("publishing to {stream}: {error}")),
            }
        }
        _ => Error::Unavailable(format!("publishing to {stream}: {error}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_flight_past_its_limit_is_a_config_error_not_a_panic() {
        let config = |n| PublisherConfig::new("S", "p").category("c").in_flight(n);
        assert!(config(MAX_IN_FLIGHT).check().is_ok());
        for n in [MAX_IN_FLIGHT + 1, usize::MAX / 2 + 1, usize::MAX] {
            let error = config(n).check().unwrap_err();
            assert!(matches!(error, Error::Config(_)), "{error:?}");
        }
    }
}

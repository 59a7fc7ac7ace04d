//! The [`JetStreamFeed`]: another service's stream as a [`Feed`] of projections.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use eventloom_core::model::{RecordedEvent, StoredMetadata, Timestamp};
use eventloom_core::read::{Feed, FeedReader};
use eventloom_core::store::BoxFuture;
use eventloom_core::{Position, StreamId};
use futures_util::StreamExt;
use tokio::sync::watch;
use tracing::Instrument;

use crate::error::request;
use crate::{Error, NatsConfig, Result, headers, subject};

/// Which stream a [`JetStreamFeed`] reads, and the durable consumer it acknowledges on.
///
/// # Examples
///
/// ```
/// use eventloom_nats::JetStreamFeedConfig;
///
/// let config = JetStreamFeedConfig::new("ORDERS", "bus.orders", "inventory")
///     .members(["stock_levels", "reservations"]);
/// assert_eq!(config.durable(), "inventory");
/// ```
#[derive(Debug, Clone)]
pub struct JetStreamFeedConfig {
    stream: String,
    prefix: String,
    durable: String,
    wait: Duration,
    members: Vec<String>,
}

impl JetStreamFeedConfig {
    /// Reads stream `stream`, whose subjects are under `prefix` (as its publisher's
    /// [`PublisherConfig`](crate::PublisherConfig) says), acknowledging on the durable pull
    /// consumer `durable`: one per consuming process (the service's name and the instance's,
    /// say), as each feed acknowledges up to what the members of its own process committed.
    pub fn new(stream: impl Into<String>, prefix: impl Into<String>, durable: impl Into<String>) -> Self {
        JetStreamFeedConfig {
            stream: stream.into(),
            prefix: prefix.into(),
            durable: durable.into(),
            wait: Duration::from_secs(5),
            members: Vec::new(),
        }
    }

    /// The members (projection and handler names) the durable consumer's acknowledgements wait
    /// for: nothing is acknowledged past a named member until it has committed that far, even
    /// before it reported anything. Without them, only the members that have reported a
    /// commit since the feed opened count (a member slower to start is not waited for).
    pub fn members<N: Into<String>>(mut self, members: impl IntoIterator<Item = N>) -> Self {
        self.members = members.into_iter().map(Into::into).collect();
        self
    }

    /// The durable consumer's name.
    pub fn durable(&self) -> &str {
        &self.durable
    }

    /// How long one wait for new messages lasts before it asks again (default 5 s).
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = wait.max(Duration::from_millis(10));
        self
    }
}

/// Another service's JetStream stream (written by a [`Publisher`](crate::Publisher)) as a
/// [`Feed`]: give it to [`Projector::group_fed_by`](eventloom_core::read::Projector::group_fed_by)
/// and projections (and event handlers) fold its events like local ones, with the same
/// upcasting and poison rules.
///
/// Each message becomes a [`RecordedEvent`]: stream, version, type, schema version and metadata
/// (event id, timestamp, correlation and causation ids, trace context) from its headers, the
/// payload from its body, and position `Position::new(0, stream sequence)`. The stream's
/// sequence is the source's own total order, which the publisher keeps in the order of its log,
/// so a projection's checkpoint is the source sequence it has folded, committed in the same
/// atomic write as its views: a restart resumes after it and nothing is folded twice. (The
/// source's local positions stay in the messages' `Eventloom-Position` header; they would not
/// do as checkpoints, since positions of events the publisher did not choose leave holes a
/// reader cannot tell from losses.)
///
/// A message whose headers are missing or malformed becomes an event whose payload does not
/// decode (a poison event, stopped on or dead-lettered by the projection's poison policy),
/// under the category and type its subject names; one whose subject is not the publisher's
/// either is skipped by every projection. The publisher's stream-start marker is no event:
/// the feed skips it (its sequence is 1 in a stream the publisher made, so the first event is
/// at sequence 2).
///
/// A message past the one a reader expects means the messages between are gone: the feed
/// reads the stream's bounds again then. Gone from the front (expired, purged) is
/// [`Error::HistoryExpired`]; deleted from the middle (the front still before them), they
/// are skipped.
///
/// The durable pull consumer (acknowledge-all) is acknowledged after members commit, up to
/// the lowest checkpoint of the members that reported one and of the members named in
/// [`JetStreamFeedConfig::members`] (0 until they report): the server's view of the
/// consumer's progress (and of what an interest-retention stream may drop) never passes what
/// is committed. Without named members, a member that has not committed since the feed opened
/// is not waited for: name them when several members share a feed. Reads themselves go through short-lived consumers that start at the asked
/// sequence, so any member can read from its own checkpoint and a rebuild can read from the
/// start.
///
/// **Rebuilds need the whole history**: a projection can be rebuilt (read from
/// [`Position::ZERO`]) only while the source stream keeps every message since its first,
/// that is limits retention with no age, message or byte limit that has dropped any. A read
/// from a sequence the stream no longer holds fails with [`Error::HistoryExpired`] (as
/// [`eventloom_core::Error::Corrupt`], which stops the member) rather than folding what is
/// left.
///
/// # Examples
///
/// ```no_run
/// use eventloom_core::memory::{MemoryEventStore, MemoryViewStore};
/// use eventloom_core::read::Projector;
/// use eventloom_nats::{JetStreamFeed, JetStreamFeedConfig, NatsConfig};
///
/// # async fn run() -> eventloom_nats::Result<()> {
/// let client = NatsConfig::from_env()?.connect().await?;
/// let feed = JetStreamFeed::open(client, JetStreamFeedConfig::new("ORDERS", "bus.orders", "inventory")).await?;
/// let projector = Projector::new(MemoryEventStore::new(), MemoryViewStore::default());
/// let group = projector.group_fed_by(feed);
/// // group.add(OrderTotals); group.run(shutdown).await?;
/// # drop(group); Ok(()) }
/// ```
#[derive(Clone)]
pub struct JetStreamFeed {
    inner: Arc<Inner>,
}

struct Inner {
    context: jetstream::Context,
    config: JetStreamFeedConfig,
    /// Each member's last committed position, and the lowest of them sent to the acker.
    acks: Mutex<HashMap<String, u64>>,
    ack_to: watch::Sender<u64>,
    /// The acker task's handle, aborted when the last clone of the feed goes.
    acker: tokio::task::AbortHandle,
    /// When the stream was created (Unix nanoseconds), as first read (by a reader or the
    /// acker): a stream deleted and made again has another.
    created: Arc<Mutex<Option<i128>>>,
    /// Its metrics' handles.
    metrics: crate::metrics::FeedMetrics,
}

/// Whether a stream created at `created` (Unix nanoseconds) is the one first seen (`seen`
/// keeps it); `false` for a stream deleted and made again since.
fn same_stream(seen: &Mutex<Option<i128>>, created: i128) -> bool {
    let Ok(mut seen) = seen.lock() else { return true };
    match *seen {
        None => {
            *seen = Some(created);
            true
        }
        Some(first) => first == created,
    }
}

impl Inner {
    /// The stream's info now; [`Error::StreamRecreated`] when it is not the stream this feed
    /// read first (deleted and made again since).
    async fn info(&self) -> Result<jetstream::stream::Info> {
        let stream = self
            .context
            .get_stream_no_info(&self.config.stream)
            .await
            .map_err(|e| read_error(&self.config.stream, "opening the stream", e))?;
        let info =
            stream.get_info().await.map_err(|e| read_error(&self.config.stream, "reading the stream's info", e))?;
        if !same_stream(&self.created, info.created.unix_timestamp_nanos()) {
            return Err(Error::StreamRecreated { stream: self.config.stream.clone() });
        }
        Ok(info)
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.acker.abort();
    }
}

impl std::fmt::Debug for JetStreamFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStreamFeed").field("config", &self.inner.config).finish_non_exhaustive()
    }
}

impl JetStreamFeed {
    /// Opens the feed: creates (or keeps) the durable consumer. A stream that does not exist
    /// yet (its publisher has not run) is waited for: reads retry as during an outage, and the
    /// durable consumer is made once it exists. Must be called within a Tokio runtime (it
    /// starts the task that acknowledges).
    pub async fn open(client: async_nats::Client, config: JetStreamFeedConfig) -> Result<Self> {
        Self::open_with(jetstream::new(client), config).await
    }

    /// Connects with `nats` and opens the feed.
    pub async fn connect(nats: &NatsConfig, config: JetStreamFeedConfig) -> Result<Self> {
        let mut context = jetstream::new(nats.connect().await?);
        context.set_timeout(nats.request_timeout_value());
        Self::open_with(context, config).await
    }

    async fn open_with(context: jetstream::Context, config: JetStreamFeedConfig) -> Result<Self> {
        subject::check_name("stream name", &config.stream)?;
        subject::check_name("durable consumer name", &config.durable)?;
        subject::check_prefix(&config.prefix)?;
        match durable(&context, &config).await {
            Ok(_) => {}
            // The stream's publisher has not run yet: reads wait for it, the durable consumer is
            // made when it exists.
            Err(Error::Unavailable(reason)) => {
                tracing::warn!(stream = %config.stream, %reason, "the stream is not there yet");
            }
            Err(error) => return Err(error),
        }
        let (ack_to, acked) = watch::channel(0);
        let created = Arc::new(Mutex::new(None));
        let acker = tokio::spawn(acknowledge(context.clone(), config.clone(), acked, created.clone())).abort_handle();
        // A named member counts from the start as committed up to nothing.
        let acks = Mutex::new(config.members.iter().map(|member| (member.clone(), 0)).collect());
        let metrics = crate::metrics::FeedMetrics::new(&config.stream);
        Ok(JetStreamFeed { inner: Arc::new(Inner { context, config, acks, ack_to, acker, created, metrics }) })
    }

    /// Its configuration.
    pub fn config(&self) -> &JetStreamFeedConfig {
        &self.inner.config
    }

    /// The stream's first and last sequence now.
    pub async fn bounds(&self) -> Result<(u64, u64)> {
        let info = self.inner.info().await?;
        Ok((info.state.first_sequence, info.state.last_sequence))
    }

    /// The stream, to read single messages of (no info read).
    async fn stream(&self) -> Result<jetstream::stream::Stream<()>> {
        let config = &self.inner.config;
        self.inner
            .context
            .get_stream_no_info(&config.stream)
            .await
            .map_err(|e| read_error(&config.stream, "opening the stream", e))
    }

    /// Whether the stream's first message is the stream-start marker its publisher wrote.
    async fn starts_with_marker(&self) -> Result<bool> {
        let stream = self.stream().await?;
        match stream.get_raw_message(1).await {
            Ok(message) => Ok(headers::is_marker(Some(&message.headers))),
            Err(error) if matches!(error.kind(), jetstream::stream::LastRawMessageErrorKind::NoMessageFound) => {
                Ok(false)
            }
            Err(error) => Err(request("reading the stream's first message", error)),
        }
    }

    /// The durable consumer's acknowledged floor: every stream sequence up to it is
    /// acknowledged.
    pub async fn acknowledged(&self) -> Result<u64> {
        let mut consumer: consumer::PullConsumer = self
            .inner
            .context
            .get_consumer_from_stream(&self.inner.config.durable, &self.inner.config.stream)
            .await
            .map_err(|e| request("reading the durable consumer", e))?;
        let info = consumer.info().await.map_err(|e| request("reading the durable consumer", e))?;
        Ok(info.ack_floor.stream_sequence)
    }
}

impl Feed for JetStreamFeed {
    type Reader = JetStreamReader;

    fn read_after(&self, after: Position, batch_size: usize, batch_bytes: usize) -> JetStreamReader {
        JetStreamReader {
            feed: self.inner.clone(),
            next: after.sequence().saturating_add(1),
            batch_size: batch_size.clamp(1, 10_000),
            batch_bytes: batch_bytes.max(1),
            consumer: None,
            behind: false,
        }
    }

    fn count_after<'a>(&'a self, after: Position, cap: u64) -> BoxFuture<'a, eventloom_core::Result<u64>> {
        Box::pin(async move {
            let (first, last) = self.bounds().await?;
            let from = after.sequence().saturating_add(1).max(first);
            let mut count = last.saturating_add(1).saturating_sub(from);
            // The stream-start marker is not an event.
            if from == 1 && count > 0 && self.starts_with_marker().await? {
                count -= 1;
            }
            Ok(count.min(cap))
        })
    }

    /// When the first message after `after` was stored in the stream (its JetStream time; the
    /// marker is skipped, and so are messages deleted from the middle, up to 16 of them).
    fn first_written_after<'a>(&'a self, after: Position) -> BoxFuture<'a, eventloom_core::Result<Option<Timestamp>>> {
        Box::pin(async move {
            let (first, last) = self.bounds().await?;
            let stream = self.stream().await?;
            let from = after.sequence().saturating_add(1).max(first).max(1);
            for sequence in (from..=last).take(16) {
                match stream.get_raw_message(sequence).await {
                    Ok(message) if headers::is_marker(Some(&message.headers)) => {}
                    Ok(message) => {
                        let micros = message.time.unix_timestamp_nanos() / 1_000;
                        return Ok(Some(Timestamp::from_micros(i64::try_from(micros).unwrap_or(i64::MAX))));
                    }
                    Err(error)
                        if matches!(error.kind(), jetstream::stream::LastRawMessageErrorKind::NoMessageFound) => {}
                    Err(error) => return Err(request("reading a message's time", error).into()),
                }
            }
            Ok(None)
        })
    }

    fn acknowledge(&self, member: &str, up_to: Position) {
        let Ok(mut acks) = self.inner.acks.lock() else { return };
        let at = acks.entry(member.to_owned()).or_default();
        *at = (*at).max(up_to.sequence());
        let lowest = acks.values().copied().min().unwrap_or(0);
        self.inner.ack_to.send_if_modified(|to| {
            let moved = lowest > *to;
            *to = (*to).max(lowest);
            moved
        });
    }
}

/// The durable consumer, made when missing.
async fn durable(context: &jetstream::Context, config: &JetStreamFeedConfig) -> Result<consumer::PullConsumer> {
    let stream =
        context.get_stream(&config.stream).await.map_err(|e| read_error(&config.stream, "opening the stream", e))?;
    let durable = consumer::pull::Config {
        durable_name: Some(config.durable.clone()),
        description: Some("eventloom-nats: acknowledged up to what the consumer's projections committed".into()),
        ack_policy: consumer::AckPolicy::All,
        deliver_policy: consumer::DeliverPolicy::All,
        headers_only: true,
        max_ack_pending: -1,
        ack_wait: Duration::from_secs(30),
        ..Default::default()
    };
    stream
        .get_or_create_consumer::<consumer::pull::Config>(&config.durable, durable)
        .await
        .map_err(|e| read_error(&config.stream, "creating the durable consumer", e))
}

/// A request's error on the consumer's side: a stream that does not exist (yet) is an outage
/// (its publisher makes it), retried like one.
fn read_error<K: std::fmt::Display + std::fmt::Debug + Clone + PartialEq>(
    stream: &str,
    what: &str,
    error: async_nats::error::Error<K>,
) -> Error {
    if error.to_string().to_ascii_lowercase().contains("stream not found") {
        return Error::Unavailable(format!("{what}: stream {stream} does not exist (yet): is its publisher running?"));
    }
    request(what, error)
}

/// Acknowledges the durable consumer up to the sequence the feed is told, as it moves:
/// fetches the headers of the messages up to it and acknowledges the last (acknowledge-all
/// covers those before). It starts from the durable's ack floor (a restart does not fetch
/// again what is acknowledged). Outages are retried; a stream deleted and made again since
/// the feed first saw it stops it (its sequences started over: acknowledging them would
/// tell the server the projections committed messages they never saw).
async fn acknowledge(
    context: jetstream::Context,
    config: JetStreamFeedConfig,
    mut to: watch::Receiver<u64>,
    created: Arc<Mutex<Option<i128>>>,
) {
    let mut acked = 0u64;
    let mut consumer: Option<consumer::PullConsumer> = None;
    let mut delay = Duration::from_millis(100);
    loop {
        let target = *to.borrow_and_update();
        if target <= acked {
            if to.changed().await.is_err() {
                return;
            }
            continue;
        }
        let step = async {
            let (durable, acked) = match consumer.take() {
                Some(durable) => (durable, acked),
                None => {
                    // Checked before the durable is made: a durable made on a stream made
                    // again would be acknowledged by sequences of the old one.
                    let stream = context
                        .get_stream(&config.stream)
                        .await
                        .map_err(|e| read_error(&config.stream, "opening the stream", e))?;
                    if !same_stream(&created, stream.cached_info().created.unix_timestamp_nanos()) {
                        return Err(Error::StreamRecreated { stream: config.stream.clone() });
                    }
                    let durable = durable(&context, &config).await?;
                    let floor = durable.cached_info().ack_floor.stream_sequence;
                    tracing::debug!(floor, "acknowledging from the durable's ack floor");
                    (durable, acked.max(floor))
                }
            };
            if target <= acked {
                return Ok((durable, acked));
            }
            let wanted = usize::try_from((target - acked).min(1000)).unwrap_or(1000);
            let mut messages = durable
                .fetch()
                .max_messages(wanted)
                .messages()
                .await
                .map_err(|e| Error::Unavailable(format!("fetching from the durable consumer: {e}")))?;
            // Moved on only once the acknowledgement went through: a failed one is sent again.
            let mut seen = acked;
            let mut last = None;
            while let Some(message) = messages.next().await {
                let message =
                    message.map_err(|e| Error::Unavailable(format!("fetching from the durable consumer: {e}")))?;
                let sequence = message.info().map(|i| i.stream_sequence).unwrap_or(0);
                if sequence <= target {
                    seen = seen.max(sequence);
                    last = Some(message);
                }
            }
            let Some(last) = last else {
                // Nothing to fetch up to the target. Done until the target moves if the durable's
                // floor is there (or the stream holds nothing there); but messages delivered
                // before a restart and never acknowledged are fetched again only once their ack
                // wait ran out: until then, wait, counting only what the floor says.
                let mut durable = durable;
                let info = durable.info().await.map_err(|e| request("reading the durable consumer", e))?;
                let (floor, delivered) = (info.ack_floor.stream_sequence, info.delivered.stream_sequence);
                // Pending are the messages after the floor up to the last delivered.
                if floor >= target || delivered <= floor {
                    return Ok::<_, Error>((durable, target));
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                return Ok((durable, acked.max(floor)));
            };
            last.ack().await.map_err(|e| Error::Unavailable(format!("acknowledging: {e}")))?;
            Ok((durable, seen))
        };
        let step = step.instrument(tracing::debug_span!("nats acknowledge", durable = %config.durable, target));
        // A request whose server went away (a restart) is never answered: each step is bounded.
        let step = tokio::time::timeout(Duration::from_secs(15), step)
            .await
            .unwrap_or_else(|_| Err(Error::Unavailable("acknowledging timed out".into())));
        match step {
            Ok((durable, reached)) => {
                acked = reached;
                consumer = Some(durable);
                delay = Duration::from_millis(100);
            }
            Err(error @ Error::StreamRecreated { .. }) => {
                tracing::error!(%error, durable = %config.durable, "the stream was made again: acknowledging stops");
                return;
            }
            Err(error) => {
                tracing::warn!(%error, ?delay, "cannot acknowledge the durable consumer; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Reads a [`JetStreamFeed`] in stream order: made by [`Feed::read_after`].
pub struct JetStreamReader {
    feed: Arc<Inner>,
    /// The next stream sequence to read.
    next: u64,
    batch_size: usize,
    batch_bytes: usize,
    consumer: Option<(consumer::PullConsumer, u64)>,
    behind: bool,
}

/// How long past its expiry a pull may go unanswered before it counts as lost.
const PULL_GRACE: Duration = Duration::from_secs(5);

/// What a message read comes to.
enum Taken {
    Event(RecordedEvent),
    /// At or before the reader's place (a consumer made anew may deliver it again), or the
    /// stream-start marker: nothing to fold.
    Nothing,
    /// Past the reader's place: the messages between are gone.
    Gap,
}

impl std::fmt::Debug for JetStreamReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStreamReader").field("next", &self.next).finish_non_exhaustive()
    }
}

impl JetStreamReader {
    fn stream_name(&self) -> &str {
        &self.feed.config.stream
    }

    /// The reading consumer, made anew when there is none or the reader moved.
    async fn consumer(&mut self) -> Result<consumer::PullConsumer> {
        if let Some((consumer, at)) = &self.consumer {
            if *at == self.next {
                return Ok(consumer.clone());
            }
        }
        self.consumer = None;
        let info = self.feed.info().await?;
        let stream = self
            .feed
            .context
            .get_stream_no_info(self.stream_name())
            .await
            .map_err(|e| read_error(&self.feed.config.stream, "opening the stream", e))?;
        self.check_bounds(&info)?;
        let config = consumer::pull::Config {
            deliver_policy: consumer::DeliverPolicy::ByStartSequence { start_sequence: self.next },
            ack_policy: consumer::AckPolicy::None,
            inactive_threshold: Duration::from_secs(60),
            memory_storage: true,
            ..Default::default()
        };
        let created = stream
            .create_consumer(config)
            .await
            .map_err(|e| read_error(&self.feed.config.stream, "creating a reading consumer", e))?;
        self.consumer = Some((created.clone(), self.next));
        Ok(created)
    }

    /// Refuses to read from a sequence the stream no longer holds, or past a stream that was
    /// recreated. A stream whose first sequence is 2 after its stream-start marker at 1 aged
    /// out (as its description says, see [`headers::MARKER_AT_ONE`]) lost no event: a read
    /// from its start goes on from 2.
    fn check_bounds(&mut self, info: &jetstream::stream::Info) -> Result<()> {
        let (first, last) = (info.state.first_sequence, info.state.last_sequence);
        if self.next == 1 && first == 2 && headers::marker_at_one(info.config.description.as_deref()) {
            self.next = 2;
        }
        let checkpoint = self.next - 1;
        if checkpoint > last {
            return Err(Error::StreamReset { stream: self.stream_name().to_owned(), checkpoint, last });
        }
        // `first` is past `last` when every message expired: the history is gone all the same.
        if first > self.next {
            return Err(Error::HistoryExpired { stream: self.stream_name().to_owned(), wanted: self.next, first });
        }
        Ok(())
    }

    /// Up to a batch of the messages there now (waiting up to `wait` for the first when
    /// `wait` is given); empty when none came.
    #[tracing::instrument(name = "nats read", level = "debug", skip_all, fields(stream = %self.feed.config.stream, from = self.next))]
    async fn fetch(&mut self, wait: Option<Duration>) -> Result<Vec<RecordedEvent>> {
        let consumer = self.consumer().await?;
        let name = self.feed.config.stream.clone();
        let unavailable = move |e: &dyn std::fmt::Display| Error::Unavailable(format!("reading {name}: {e}"));
        let mut events = Vec::new();
        let mut bytes = 0usize;
        let mut first = true;
        loop {
            let want = self.batch_size - events.len();
            // A pull whose server went away (a restart) is never answered: each one is bounded.
            let expires = if first { wait } else { None };
            let deadline = tokio::time::Instant::now() + expires.unwrap_or_default() + PULL_GRACE;
            let messages = tokio::time::timeout_at(deadline, async {
                match expires {
                    Some(wait) => consumer.batch().max_messages(1).expires(wait).messages().await,
                    None => consumer.fetch().max_messages(want).messages().await,
                }
            })
            .await;
            let mut messages = match messages {
                Ok(Ok(messages)) => messages,
                Ok(Err(error)) if events.is_empty() => {
                    self.consumer = None;
                    return Err(unavailable(&error));
                }
                Err(_) if events.is_empty() => {
                    self.consumer = None;
                    return Err(unavailable(&"a pull request timed out"));
                }
                _ => {
                    self.consumer = None;
                    return Ok(events);
                }
            };
            let before = events.len();
            loop {
                let message = match tokio::time::timeout_at(deadline, messages.next()).await {
                    Ok(Some(message)) => message,
                    Ok(None) => break,
                    Err(_) if events.is_empty() => {
                        self.consumer = None;
                        return Err(unavailable(&"a pull request timed out"));
                    }
                    Err(_) => {
                        self.consumer = None;
                        return Ok(events);
                    }
                };
                let message = match message {
                    Ok(message) => message,
                    // What was taken is kept; the next read starts after it with a new consumer.
                    Err(error) if events.is_empty() => return Err(unavailable(&error)),
                    Err(_) => {
                        self.consumer = None;
                        return Ok(events);
                    }
                };
                let taken = match self.take(&message) {
                    Ok(Taken::Gap) => self.gap(&message).await,
                    taken => taken,
                };
                match taken {
                    Ok(Taken::Event(event)) => {
                        bytes += event.stored_size();
                        events.push(event);
                    }
                    Ok(Taken::Nothing) => {}
                    Ok(Taken::Gap) => {}
                    Err(error) if events.is_empty() => {
                        self.consumer = None;
                        return Err(error);
                    }
                    // What was taken is delivered; the next read meets the bad message again.
                    Err(_) => {
                        self.consumer = None;
                        return Ok(events);
                    }
                }
            }
            let got = events.len() - before;
            self.feed.metrics.read.increment(got as u64);
            if (first && wait.is_some() && got == 0) || (!first && got < want) {
                break;
            }
            first = false;
            if events.len() >= self.batch_size || bytes >= self.batch_bytes {
                break;
            }
        }
        Ok(events)
    }

    /// The event of a message read, the reader moved past it: `Nothing` for one at or before
    /// the reader's place (a consumer made anew may deliver it again) or the stream-start
    /// marker, `Gap` (the reader not moved) for one past the reader's place.
    fn take(&mut self, message: &jetstream::Message) -> Result<Taken> {
        let info = message.info().map_err(|e| Error::Unavailable(format!("a message without JetStream info: {e}")))?;
        let sequence = info.stream_sequence;
        if sequence < self.next {
            self.feed.metrics.redeliveries.increment(1);
            return Ok(Taken::Nothing);
        }
        if sequence > self.next {
            return Ok(Taken::Gap);
        }
        if info.delivered > 1 {
            self.feed.metrics.redeliveries.increment(1);
        }
        self.next = sequence + 1;
        if let Some((_, at)) = &mut self.consumer {
            *at = self.next;
        }
        if headers::is_marker(message.headers.as_ref()) {
            return Ok(Taken::Nothing);
        }
        Ok(Taken::Event(to_event(&self.feed.config.prefix, message, sequence)))
    }

    /// A message past the reader's place: the stream's bounds are read again now. Messages
    /// gone from the front (expired, purged) since the reader last looked are history lost,
    /// [`Error::HistoryExpired`]; messages deleted from the middle (the front still at or
    /// before the reader) are skipped, and the message is taken.
    async fn gap(&mut self, message: &jetstream::Message) -> Result<Taken> {
        let info = self.feed.info().await?;
        self.check_bounds(&info)?;
        let sequence = message.info().map(|i| i.stream_sequence).unwrap_or(self.next);
        tracing::warn!(
            expected = self.next,
            got = sequence,
            "messages deleted from the middle of the stream are skipped"
        );
        self.next = sequence;
        self.take(message)
    }

    /// Reads once: the next batch if there is one now.
    async fn read_now(&mut self) -> Result<Option<Vec<RecordedEvent>>> {
        let mut events = self.fetch(None).await?;
        if events.is_empty() {
            // A fetch that found nothing: make sure the stream has nothing after the reader (a
            // consumer made an instant ago may not have seen it yet).
            let info = self.feed.info().await?;
            self.check_bounds(&info)?;
            if info.state.last_sequence >= self.next {
                events = self.fetch(Some(Duration::from_millis(200))).await?;
            }
        }
        self.behind = events.len() >= self.batch_size;
        Ok((!events.is_empty()).then_some(events))
    }
}

/// The event a message carries; a malformed one becomes a poison event (see [`JetStreamFeed`]).
fn to_event(prefix: &str, message: &jetstream::Message, sequence: u64) -> RecordedEvent {
    let position = Position::new(0, sequence);
    let payload: Arc<str> = match std::str::from_utf8(&message.payload) {
        Ok(text) => text.into(),
        Err(_) => "<the body is not UTF-8>".into(),
    };
    match headers::decode(message.headers.as_ref()) {
        Ok(decoded) if std::str::from_utf8(&message.payload).is_ok() => RecordedEvent {
            stream: decoded.stream,
            version: decoded.version,
            position,
            event_type: decoded.event_type.into(),
            schema_version: decoded.schema_version,
            payload,
            metadata: StoredMetadata::from(decoded.metadata),
        },
        decoded => {
            let reason = match decoded {
                Err(reason) => reason,
                Ok(_) => "the body is not UTF-8".to_owned(),
            };
            tracing::warn!(sequence, subject = %message.subject, %reason, "a malformed bus message: a poison event");
            let (category, event_type) = subject::parse_subject(prefix, &message.subject)
                .unwrap_or_else(|| ("eventloom-nats-unknown".to_owned(), String::new()));
            let stream = StreamId::new(&category, format!("nats-sequence-{sequence}"))
                .or_else(|_| StreamId::new("eventloom-nats-unknown", format!("nats-sequence-{sequence}")));
            #[allow(clippy::expect_used)]
            let stream = stream.expect("a constant stream id is valid");
            RecordedEvent {
                stream,
                version: 1,
                position,
                event_type: event_type.into(),
                schema_version: 1,
                // Not JSON, so decoding it fails: the projection's poison policy decides.
                payload: format!("malformed bus message at stream sequence {sequence}: {reason}").into(),
                metadata: StoredMetadata::from_json(format!("malformed: {reason}")),
            }
        }
    }
}

impl FeedReader for JetStreamReader {
    fn try_next_batch<'a>(&'a mut self) -> BoxFuture<'a, eventloom_core::Result<Option<Vec<RecordedEvent>>>> {
        Box::pin(async move {
            let read = self.read_now().await;
            if read.is_err() {
                self.consumer = None;
            }
            Ok(read?)
        })
    }

    fn next_batch<'a>(&'a mut self) -> BoxFuture<'a, eventloom_core::Result<Vec<RecordedEvent>>> {
        Box::pin(async move {
            let mut delay = Duration::from_millis(100);
            loop {
                let wait = self.feed.config.wait;
                let read = match self.read_now().await {
                    Ok(Some(events)) => Ok(events),
                    Ok(None) => {
                        // The rest of a batch comes with the next read.
                        self.behind = false;
                        self.fetch(Some(wait)).await
                    }
                    Err(error) => Err(error),
                };
                match read {
                    Ok(events) if !events.is_empty() => return Ok(events),
                    Ok(_) => delay = Duration::from_millis(100),
                    Err(error) if error.is_transient() => {
                        tracing::warn!(%error, ?delay, "reading the bus failed; retrying from the same sequence");
                        self.consumer = None;
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(5));
                    }
                    Err(error) => {
                        self.consumer = None;
                        return Err(error.into());
                    }
                }
            }
        })
    }

    fn is_behind(&self) -> bool {
        self.behind
    }
}

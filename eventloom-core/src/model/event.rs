//! Events: the [`Event`] trait, their metadata, and how they look stored and decoded.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{Position, StreamId};

/// A stable type name and the current schema version of one kind of event.
///
/// # Examples
///
/// ```
/// use eventloom_core::model::EventType;
///
/// const CREATED: EventType = EventType::new("TaskCreated", 2);
/// assert_eq!((CREATED.name, CREATED.version), ("TaskCreated", 2));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EventType {
    /// The name stored with every event of this kind; never change it once events exist.
    pub name: &'static str,
    /// The schema version written with new events of this kind; bump it when the payload's
    /// shape changes, and add an upcaster for the older versions.
    pub version: u32,
}

impl EventType {
    /// An event type from its name and schema version.
    pub const fn new(name: &'static str, version: u32) -> Self {
        EventType { name, version }
    }
}

/// Why a stored payload did not become an event.
///
/// # Examples
///
/// ```
/// use eventloom_core::prelude::*;
/// use eventloom_core::model::DecodeError;
///
/// #[derive(Debug, Serialize, Deserialize, Event)]
/// enum E { Happened { n: u32 } }
///
/// assert!(matches!(E::decode("Unheard", "{}"), Err(DecodeError::UnknownType)));
/// assert!(matches!(E::decode("Happened", r#"{"n":"x"}"#), Err(DecodeError::Payload(_))));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// No variant carries this type name.
    #[error("unknown event type")]
    UnknownType,
    /// The payload does not match the type's shape.
    #[error(transparent)]
    Payload(#[from] serde_json::Error),
}

/// A domain event: something that happened, with a stable type name per kind.
///
/// Derive it with `#[derive(Event)]` on an enum (one type name per variant) or a struct (one
/// type name), next to serde's `Serialize` and `Deserialize`. Stored events carry the type name,
/// the schema version and the variant's fields as JSON, so renaming a Rust variant does not
/// break stored data as long as its `#[event(name = "...")]` stays.
///
/// # Examples
///
/// ```
/// use eventloom_core::prelude::*;
/// use eventloom_core::model::EventType;
///
/// #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
/// enum AccountEvent {
///     Opened { owner: String },
///     #[event(name = "MoneyDeposited", version = 2)]
///     Deposited { amount: u64 },
///     Closed,
/// }
///
/// let e = AccountEvent::Deposited { amount: 5 };
/// assert_eq!(e.event_type(), EventType::new("MoneyDeposited", 2));
/// assert_eq!(e.encode().unwrap(), r#"{"amount":5}"#);
/// assert_eq!(AccountEvent::decode("MoneyDeposited", r#"{"amount":5}"#).unwrap(), e);
/// assert_eq!(AccountEvent::TYPES.len(), 3);
/// ```
pub trait Event: Sized + Send + Sync + 'static {
    /// Every type this event can be, with its current schema version.
    const TYPES: &'static [EventType];

    /// This value's type name and schema version.
    fn event_type(&self) -> EventType;

    /// The payload as JSON: the variant's fields only (the type name is stored beside it).
    fn encode(&self) -> Result<String, serde_json::Error>;

    /// The event from a type name and its JSON payload (already upcast to the current version).
    fn decode(event_type: &str, payload: &str) -> Result<Self, DecodeError>;

    /// Whether `name` is one of [`Event::TYPES`].
    fn knows(name: &str) -> bool {
        Self::TYPES.iter().any(|t| t.name == name)
    }
}

/// Microseconds since the Unix epoch, in UTC.
///
/// # Examples
///
/// ```
/// use eventloom_core::model::Timestamp;
///
/// let t = Timestamp::from_micros(1_700_000_000_000_000);
/// assert_eq!(t.as_micros(), 1_700_000_000_000_000);
/// assert!(Timestamp::now() > t);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(i64);

impl Timestamp {
    /// A timestamp from microseconds since the epoch.
    pub const fn from_micros(micros: i64) -> Self {
        Timestamp(micros)
    }

    /// Microseconds since the epoch.
    pub const fn as_micros(self) -> i64 {
        self.0
    }

    /// The system clock's time now.
    pub fn now() -> Self {
        let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        Timestamp(i64::try_from(since.as_micros()).unwrap_or(i64::MAX))
    }
}

/// What is known about an event besides its payload.
///
/// The engine fills it for every event it appends: a fresh `event_id`, the clock's `timestamp`,
/// the command's id (which makes a second execution of the same command impossible), and the
/// correlation and causation ids and headers given in [`crate::ExecuteOptions`].
///
/// # Examples
///
/// ```
/// use eventloom_core::Metadata;
///
/// let mut m = Metadata::default();
/// m.headers.insert("user".into(), "ada".into());
/// let json = serde_json::to_string(&m).unwrap();
/// assert_eq!(serde_json::from_str::<Metadata>(&json).unwrap(), m);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Metadata {
    /// Unique per event.
    pub event_id: Uuid,
    /// When the event was recorded.
    pub timestamp: Timestamp,
    /// The id of the command that appended this event, if it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_id: Option<String>,
    /// Ties together everything one request caused, across services.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// The id of the message (command or event) that caused this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<String>,
    /// The user's own headers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// The W3C trace context of the command that appended the event (stored as
    /// `"trace":{"traceparent":..,"tracestate":..}`), when a [trace propagation
    /// hook](crate::trace) is installed or the command was given one
    /// ([`ExecuteOptions::traceparent`](crate::ExecuteOptions::traceparent)). A stored one that
    /// is malformed reads as none.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "crate::trace::deserialize_lenient")]
    pub trace: Option<crate::trace::TraceContext>,
}

/// An event on its way into the store: encoded, with metadata, without a position yet.
///
/// # Examples
///
/// ```
/// use eventloom_core::{Metadata, model::NewEvent};
///
/// let raw = NewEvent { event_type: "Pinged".into(), schema_version: 1, payload: "{}".into(), metadata: Metadata::default() };
/// assert_eq!(raw.size(), 8);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// The type name.
    pub event_type: Cow<'static, str>,
    /// The schema version of the payload.
    pub schema_version: u32,
    /// The payload as JSON.
    pub payload: String,
    /// Its metadata.
    pub metadata: Metadata,
}

impl NewEvent {
    /// Encodes a typed event.
    ///
    /// # Examples
    ///
    /// ```
    /// use eventloom_core::prelude::*;
    /// use eventloom_core::model::NewEvent;
    /// # #[derive(Serialize, Deserialize, Event)] struct Pinged { n: u32 }
    /// let e = NewEvent::encode(&Pinged { n: 1 }, Metadata::default()).unwrap();
    /// assert_eq!((e.event_type.as_ref(), e.payload.as_str()), ("Pinged", r#"{"n":1}"#));
    /// ```
    pub fn encode<E: Event>(event: &E, metadata: Metadata) -> crate::Result<Self> {
        let ty = event.event_type();
        let payload =
            event.encode().map_err(|source| crate::Error::Encode { event_type: ty.name.to_owned(), source })?;
        Ok(NewEvent { event_type: Cow::Borrowed(ty.name), schema_version: ty.version, payload, metadata })
    }

    /// The payload's size in bytes, as stores count it against their limits.
    pub fn size(&self) -> usize {
        self.payload.len() + self.event_type.len()
    }
}

/// An event as the store holds it: encoded, with its stream, version and position.
///
/// Decoding is lazy: readers that do not care about an event type never parse its payload.
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
/// let raw = NewEvent { event_type: "Pinged".into(), schema_version: 1, payload: "{}".into(), metadata: Metadata::default() };
/// store.append(&stream, ExpectedVersion::Any, vec![raw]).await.unwrap();
/// let recorded = &store.read_stream(&stream, 1, 10).await.unwrap()[0];
/// assert_eq!((recorded.version, &*recorded.event_type, &*recorded.payload), (1, "Pinged", "{}"));
/// # });
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedEvent {
    /// The stream it belongs to.
    pub stream: StreamId,
    /// Its version in the stream, from 1.
    pub version: u64,
    /// Its place in the store-wide order.
    pub position: Position,
    /// Its stored type name.
    pub event_type: Cow<'static, str>,
    /// Its stored schema version.
    pub schema_version: u32,
    /// Its payload as JSON.
    pub payload: Arc<str>,
    /// Its metadata, decoded when first read ([`StoredMetadata::get`]).
    pub metadata: StoredMetadata,
}

/// A stored event lent to a fold ([`EventStore::fold_stream`](crate::store::EventStore::fold_stream)):
/// its type name and payload borrowed from the store's read buffer rather than copied, no
/// metadata (folding an aggregate does not read it), and its position only where the store
/// read it (see [`position`](Self::position)).
///
/// # Examples
///
/// ```
/// # use eventloom_core::prelude::*;
/// # use eventloom_core::model::{EventRef, RecordedEvent, StoredMetadata};
/// let event = RecordedEvent { stream: StreamId::new("a", "1").unwrap(), version: 1, position: Position::new(1, 1),
///     event_type: "Done".into(), schema_version: 1, payload: "{}".into(),
///     metadata: StoredMetadata::from_json("{}") };
/// let lent = EventRef::from(&event);
/// assert_eq!((lent.version, lent.event_type, lent.payload, lent.size()), (1, "Done", "{}", 6));
/// assert_eq!(lent.position, Some(Position::new(1, 1)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventRef<'a> {
    /// The stream it belongs to.
    pub stream: &'a StreamId,
    /// Its version in the stream, from 1.
    pub version: u64,
    /// Its place in the store-wide order, where the store lends it: every event read from a
    /// [`RecordedEvent`] has it (the memory store's, and the default of `fold_stream`); the
    /// PostgreSQL store lends it with the last event of a page only (the page's
    /// [`FoldedPage::last`](crate::store::FoldedPage::last)), as reading every row's position
    /// cost a long stream's load a fifth of its time (`docs/benchmarks.md`).
    pub position: Option<Position>,
    /// Its stored type name.
    pub event_type: &'a str,
    /// Its stored schema version.
    pub schema_version: u32,
    /// Its payload as JSON.
    pub payload: &'a str,
}

impl EventRef<'_> {
    /// What it weighs in a fold's page: the bytes of its payload and type name.
    pub fn size(&self) -> usize {
        self.payload.len() + self.event_type.len()
    }
}

impl<'a> From<&'a RecordedEvent> for EventRef<'a> {
    fn from(event: &'a RecordedEvent) -> Self {
        EventRef {
            stream: &event.stream,
            version: event.version,
            position: Some(event.position),
            event_type: &event.event_type,
            schema_version: event.schema_version,
            payload: &event.payload,
        }
    }
}

impl RecordedEvent {
    /// What it weighs in a batch: the bytes of its payload, metadata JSON and type name (a
    /// decoded-only metadata counts as 64). Reads bounded in bytes add these up.
    ///
    /// # Examples
    ///
    /// ```
    /// # use eventloom_core::prelude::*;
    /// # use eventloom_core::model::{RecordedEvent, StoredMetadata};
    /// let event = RecordedEvent { stream: StreamId::new("a", "1").unwrap(), version: 1, position: Position::new(1, 1),
    ///     event_type: "Done".into(), schema_version: 1, payload: "{}".into(),
    ///     metadata: StoredMetadata::from_json("{}") };
    /// assert_eq!(event.stored_size(), 2 + 2 + 4);
    /// ```
    pub fn stored_size(&self) -> usize {
        self.payload.len() + self.metadata.stored_len() + self.event_type.len()
    }

    /// Its metadata, decoded on first read; metadata that does not decode is
    /// [`Error::Corrupt`](crate::Error::Corrupt), naming the event's stream, version and position.
    ///
    /// # Examples
    ///
    /// ```
    /// # use eventloom_core::prelude::*;
    /// # use eventloom_core::model::{RecordedEvent, StoredMetadata};
    /// let event = RecordedEvent { stream: StreamId::new("a", "1").unwrap(), version: 3, position: Position::new(9, 9),
    ///     event_type: "Done".into(), schema_version: 1, payload: "{}".into(),
    ///     metadata: StoredMetadata::from_json("[1]") };
    /// let error = event.decoded_metadata().unwrap_err();
    /// assert!(matches!(error, eventloom_core::Error::Corrupt { .. }));
    /// assert!(error.to_string().contains("a/1 version 3"), "{error}");
    /// ```
    pub fn decoded_metadata(&self) -> crate::Result<&Metadata> {
        self.metadata.get().map_err(|error| crate::Error::Corrupt {
            location: format!("{} version {} (position {})", self.stream, self.version, self.position),
            reason: error.to_string(),
        })
    }
}

/// An event's metadata as a store returned it: its JSON, decoded the first time someone reads
/// it, so that loading an aggregate or folding a projection that never looks at metadata never
/// parses it. Clones share the decoded value.
///
/// # Examples
///
/// ```
/// use eventloom_core::{Metadata, model::StoredMetadata};
///
/// let stored = StoredMetadata::from_json(r#"{"event_id":"00000000-0000-0000-0000-000000000007","timestamp":5}"#);
/// assert_eq!(stored.get().unwrap().event_id.as_u128(), 7);
/// assert!(StoredMetadata::from_json("[1]").get().is_err(), "a typed error, when read");
/// let decoded = StoredMetadata::from(Metadata::default());
/// assert_eq!(decoded.get().unwrap(), &Metadata::default());
/// ```
#[derive(Clone)]
pub struct StoredMetadata(Arc<MetadataCell>);

struct MetadataCell {
    json: Option<Box<str>>,
    decoded: std::sync::OnceLock<Metadata>,
}

impl StoredMetadata {
    /// Metadata as stored JSON, decoded on first read.
    pub fn from_json(json: impl Into<Box<str>>) -> Self {
        StoredMetadata(Arc::new(MetadataCell { json: Some(json.into()), decoded: std::sync::OnceLock::new() }))
    }

    /// The length of its stored JSON (64 when it was built decoded).
    pub(crate) fn stored_len(&self) -> usize {
        self.0.json.as_deref().map_or(64, str::len)
    }

    /// The metadata, decoding it on the first call. JSON that does not decode is
    /// [`Error::Serde`](crate::Error::Serde), on every call.
    pub fn get(&self) -> crate::Result<&Metadata> {
        if let Some(metadata) = self.0.decoded.get() {
            return Ok(metadata);
        }
        let json = self.0.json.as_deref().unwrap_or("{}");
        let metadata = serde_json::from_str(json)
            .map_err(|source| crate::Error::Serde { what: "event metadata".into(), source })?;
        Ok(self.0.decoded.get_or_init(|| metadata))
    }
}

impl From<Metadata> for StoredMetadata {
    fn from(metadata: Metadata) -> Self {
        StoredMetadata(Arc::new(MetadataCell { json: None, decoded: std::sync::OnceLock::from(metadata) }))
    }
}

impl Default for StoredMetadata {
    fn default() -> Self {
        Metadata::default().into()
    }
}

impl std::fmt::Debug for StoredMetadata {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The same output before and after a first read: decoded when it decodes.
        match (self.get(), &self.0.json) {
            (Ok(metadata), _) => metadata.fmt(f),
            (Err(_), Some(json)) => f.debug_tuple("StoredMetadata").field(json).finish(),
            (Err(_), None) => f.write_str("StoredMetadata"),
        }
    }
}

impl PartialEq for StoredMetadata {
    /// Equal when both decode to equal metadata (or both hold the same undecodable JSON).
    fn eq(&self, other: &Self) -> bool {
        match (self.get(), other.get()) {
            (Ok(a), Ok(b)) => a == b,
            _ => self.0.json == other.0.json,
        }
    }
}

/// A decoded event with its stream, version, position and metadata.
///
/// # Examples
///
/// ```
/// use eventloom_core::prelude::*;
/// use eventloom_core::write::Upcasters;
/// use eventloom_core::model::RecordedEvent;
/// # use std::sync::Arc;
///
/// #[derive(Debug, PartialEq, Serialize, Deserialize, Event)]
/// enum E { Pinged { n: u32 } }
///
/// let raw = RecordedEvent {
///     stream: StreamId::new("pinger", "1").unwrap(),
///     version: 1,
///     position: Position::new(1, 1),
///     event_type: "Pinged".into(),
///     schema_version: 1,
///     payload: r#"{"n":3}"#.into(),
///     metadata: Metadata::default().into(),
/// };
/// let envelope: EventEnvelope<E> = Upcasters::new().decode(&raw).unwrap();
/// assert_eq!(envelope.event, E::Pinged { n: 3 });
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct EventEnvelope<E> {
    /// The stream it belongs to.
    pub stream: StreamId,
    /// Its version in the stream, from 1.
    pub version: u64,
    /// Its place in the store-wide order.
    pub position: Position,
    /// The event.
    pub event: E,
    /// Its metadata, decoded when first read ([`StoredMetadata::get`]).
    pub metadata: StoredMetadata,
}

impl Metadata {
    /// The longest command id accepted, in bytes.
    pub const MAX_COMMAND_ID_LEN: usize = 256;

    /// Metadata of a new event: its id and when it was recorded, nothing else.
    ///
    /// # Examples
    ///
    /// ```
    /// use eventloom_core::Metadata;
    /// use eventloom_core::model::Timestamp;
    ///
    /// let m = Metadata::new(uuid::Uuid::nil(), Timestamp::from_micros(7)).with_command_id("c-1");
    /// assert_eq!(m.command_id.as_deref(), Some("c-1"));
    /// ```
    pub fn new(event_id: Uuid, timestamp: Timestamp) -> Self {
        Metadata { event_id, timestamp, ..Metadata::default() }
    }

    /// With the id of the command that appended the event.
    pub fn with_command_id(mut self, id: impl Into<String>) -> Self {
        self.command_id = Some(id.into());
        self
    }

    /// With the correlation id of the request that caused the event.
    pub fn with_correlation_id(mut self, id: impl Into<String>) -> Self {
        self.correlation_id = Some(id.into());
        self
    }

    /// With the id of the message that caused the event.
    pub fn with_causation_id(mut self, id: impl Into<String>) -> Self {
        self.causation_id = Some(id.into());
        self
    }

    /// With the trace context of the command that appended the event.
    ///
    /// # Examples
    ///
    /// ```
    /// use eventloom_core::{Metadata, trace::TraceContext};
    ///
    /// let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    /// let m = Metadata::default().with_trace(TraceContext::parse(tp).unwrap());
    /// assert!(serde_json::to_string(&m).unwrap().contains(r#""trace":{"traceparent":"00-0af7"#));
    /// ```
    pub fn with_trace(mut self, trace: crate::trace::TraceContext) -> Self {
        self.trace = Some(trace);
        self
    }

    /// With one of the user's own headers.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(name.into(), value.into());
        self
    }
}

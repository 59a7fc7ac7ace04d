//! Upcasting: turning stored events of an older shape into the current one, on the JSON,
//! before the typed decode.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use crate::model::EventRef;
use crate::{BoxError, Error, Event, EventEnvelope, RecordedEvent, Result};

type UpcastFn = dyn Fn(Value) -> std::result::Result<Value, BoxError> + Send + Sync;

#[derive(Clone)]
struct Step {
    to: (&'static str, u32),
    f: Arc<UpcastFn>,
}

/// The longest chain of upcasters applied to one event; a longer one is a loop.
const MAX_CHAIN: usize = 64;

/// A set of upcasters, each taking one (type name, schema version) to another.
///
/// When an event is read, upcasters apply in a chain until none matches its type name and
/// version, then the result decodes into the current event type. An upcaster can rename a type,
/// reshape its payload, or both.
///
/// # Examples
///
/// ```
/// use eventloom_core::write::Upcasters;
/// use serde_json::json;
///
/// // v1 stored `{"name": ...}`; v2 calls the field `title`.
/// let upcasters = Upcasters::new().add(("TaskCreated", 1), ("TaskCreated", 2), |mut v| {
///     let name = v.get_mut("name").map(serde_json::Value::take).ok_or("no name")?;
///     Ok(json!({ "title": name }))
/// });
/// let (ty, ver, payload) = upcasters.apply("TaskCreated", 1, r#"{"name":"x"}"#).unwrap().unwrap();
/// assert_eq!((ty, ver, payload.as_str()), ("TaskCreated", 2, r#"{"title":"x"}"#));
/// ```
#[derive(Clone, Default)]
pub struct Upcasters {
    steps: Arc<HashMap<(&'static str, u32), Step>>,
}

impl std::fmt::Debug for Upcasters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.steps.iter().map(|(from, step)| (from, step.to))).finish()
    }
}

impl Upcasters {
    /// No upcasters.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an upcaster from one (type name, schema version) to another. A later one for the
    /// same source replaces the earlier. Its error, any error type (`?` converts it; a `&str` or
    /// `String` converts too), is kept as the [source](std::error::Error::source) of the
    /// [`Error::Upcast`] that reading the event fails with.
    pub fn add<F>(mut self, from: (&'static str, u32), to: (&'static str, u32), f: F) -> Self
    where
        F: Fn(Value) -> std::result::Result<Value, BoxError> + Send + Sync + 'static,
    {
        let mut steps = Arc::try_unwrap(self.steps).unwrap_or_else(|shared| (*shared).clone());
        steps.insert(from, Step { to, f: Arc::new(f) });
        self.steps = Arc::new(steps);
        self
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Runs the chain on one stored event: `Ok(None)` when no upcaster applies, otherwise the
    /// final type name, schema version and payload.
    pub fn apply(
        &self,
        event_type: &str,
        schema_version: u32,
        payload: &str,
    ) -> std::result::Result<Option<(&'static str, u32, String)>, BoxError> {
        let Some(mut step) = self.steps.get(&(event_type, schema_version)) else {
            return Ok(None);
        };
        let mut value: Value = serde_json::from_str(payload)?;
        for _ in 0..MAX_CHAIN {
            value = (step.f)(value)?;
            match self.steps.get(&step.to) {
                Some(next) => step = next,
                None => {
                    let payload = serde_json::to_string(&value)?;
                    return Ok(Some((step.to.0, step.to.1, payload)));
                }
            }
        }
        Err(format!("more than {MAX_CHAIN} upcasters chained: a loop?").into())
    }

    /// The type name and schema version a stored event has once upcast, found without running
    /// any upcaster (so without parsing its payload).
    ///
    /// # Examples
    ///
    /// ```
    /// use eventloom_core::write::Upcasters;
    ///
    /// let upcasters = Upcasters::new().add(("TaskMade", 1), ("TaskCreated", 2), Ok);
    /// assert_eq!(upcasters.resolve("TaskMade", 1), ("TaskCreated", 2));
    /// assert_eq!(upcasters.resolve("TaskCompleted", 1), ("TaskCompleted", 1));
    /// ```
    pub fn resolve<'a>(&'a self, event_type: &'a str, schema_version: u32) -> (&'a str, u32) {
        let mut at = (event_type, schema_version);
        for _ in 0..MAX_CHAIN {
            match self.steps.get(&at) {
                Some(step) => at = step.to,
                None => break,
            }
        }
        at
    }

    /// Decodes a stored event into `E`, upcasting first.
    ///
    /// Errors name the stream, version and position: [`Error::UnknownEvent`] for a type name
    /// `E` does not have, [`Error::NewerSchema`] for a schema version newer than the code's,
    /// [`Error::Decode`] for a
    /// payload that does not fit, [`Error::Upcast`] for an upcaster that failed.
    pub fn decode<E: Event>(&self, raw: &RecordedEvent) -> Result<EventEnvelope<E>> {
        Ok(EventEnvelope {
            stream: raw.stream.clone(),
            version: raw.version,
            position: raw.position,
            event: self.decode_event(raw)?,
            metadata: raw.metadata.clone(),
        })
    }

    /// Like [`Upcasters::decode`], without the envelope.
    pub fn decode_event<E: Event>(&self, raw: &RecordedEvent) -> Result<E> {
        self.decode_ref(EventRef::from(raw))
    }

    /// Like [`Upcasters::decode_event`], from an event lent by a fold
    /// ([`EventStore::fold_stream`](crate::store::EventStore::fold_stream)): the payload is
    /// decoded from the store's buffer, not copied first.
    pub fn decode_ref<E: Event>(&self, raw: EventRef<'_>) -> Result<E> {
        // Lent without its position: the store sets it in the error (`store::with_event_position`).
        let position = raw.position.unwrap_or(crate::Position::ZERO);
        let upcast = if self.is_empty() {
            None
        } else {
            self.apply(raw.event_type, raw.schema_version, raw.payload).map_err(|source| Error::Upcast {
                stream: raw.stream.clone(),
                version: raw.version,
                position,
                event_type: raw.event_type.to_owned(),
                schema_version: raw.schema_version,
                source,
            })?
        };
        let (name, schema_version, payload) = match &upcast {
            Some((name, v, payload)) => (*name, *v, payload.as_str()),
            None => (raw.event_type, raw.schema_version, raw.payload),
        };
        let unknown = || Error::UnknownEvent {
            stream: raw.stream.clone(),
            version: raw.version,
            position,
            event_type: name.to_owned(),
            schema_version,
        };
        match E::TYPES.iter().find(|t| t.name == name) {
            Some(t) if schema_version <= t.version => {}
            Some(t) => {
                return Err(Error::NewerSchema {
                    stream: raw.stream.clone(),
                    version: raw.version,
                    position,
                    event_type: name.to_owned(),
                    schema_version,
                    known: t.version,
                });
            }
            None => return Err(unknown()),
        }
        E::decode(name, payload).map_err(|e| match e {
            crate::DecodeError::UnknownType => unknown(),
            crate::DecodeError::Payload(source) => Error::Decode {
                stream: raw.stream.clone(),
                version: raw.version,
                position,
                event_type: name.to_owned(),
                schema_version,
                source,
            },
        })
    }
}

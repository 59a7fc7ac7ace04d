//! The headers of a bus message: what a consumer needs to rebuild the event.
//!
//! Values are escaped: printable ASCII other than `%` as it is, every other byte (spaces,
//! non-ASCII, line breaks) as `%XX`, so that no value loses a space at either end or breaks the
//! header block. The event's trace context ([`Metadata::trace`], or for an event stored before
//! it was kept there a `traceparent` and `tracestate` in its metadata headers) is published as
//! `traceparent` and `tracestate`; the event's own metadata headers stay inside the service.
//!
//! # Examples
//!
//! ```
//! use eventloom_nats::headers::names;
//!
//! assert_eq!(names::MSG_ID, "Nats-Msg-Id");
//! assert_eq!(names::POSITION, "Eventloom-Position");
//! ```

use async_nats::HeaderMap;
use eventloom_core::model::{RecordedEvent, Timestamp};
use eventloom_core::trace::TraceContext;
use eventloom_core::{Metadata, Position, StreamId};

/// The names of the headers every published message carries (correlation, causation and trace
/// context only when the event has them).
pub mod names {
    /// The event's id (also in `Nats-Msg-Id`, JetStream's duplicate guard).
    pub const EVENT_ID: &str = "Eventloom-Event-Id";
    /// The event's type name.
    pub const EVENT_TYPE: &str = "Eventloom-Event-Type";
    /// The schema version of the payload.
    pub const SCHEMA_VERSION: &str = "Eventloom-Schema-Version";
    /// The event's stream, `category/id`.
    pub const STREAM: &str = "Eventloom-Stream";
    /// The event's version in its stream.
    pub const VERSION: &str = "Eventloom-Version";
    /// The event's position in the publishing service's log, as its token: where a publisher
    /// resumes.
    pub const POSITION: &str = "Eventloom-Position";
    /// When the event was recorded, in microseconds since the epoch.
    pub const TIMESTAMP: &str = "Eventloom-Timestamp";
    /// The correlation id, when the event has one.
    pub const CORRELATION_ID: &str = "Eventloom-Correlation-Id";
    /// The causation id, when the event has one.
    pub const CAUSATION_ID: &str = "Eventloom-Causation-Id";
    /// The W3C trace context, when the event carries one ([`Metadata::trace`](eventloom_core::Metadata::trace)); the consumer
    /// makes it the parent of the span that handles the event, and keeps it in the metadata.
    pub const TRACEPARENT: &str = "traceparent";
    /// The W3C trace state, with the trace context.
    pub const TRACESTATE: &str = "tracestate";
    /// `application/json`: the body is the event's JSON payload.
    pub const CONTENT_TYPE: &str = "Content-Type";
    /// JetStream's duplicate guard: the event id.
    pub const MSG_ID: &str = "Nats-Msg-Id";
    /// Only on the stream-start marker, the message a publisher writes into an empty stream
    /// so that every publish after it expects a sequence of at least 1 (see [`MARKER`]).
    pub const MARKER: &str = "Eventloom-Marker";
}

/// The value of the [`names::MARKER`] header. The marker is the first message of a stream a
/// publisher made (subject `<prefix>.eventloom-stream-start`, one token where events have two,
/// an empty body). A server that ignores `Nats-Expected-Last-Sequence: 0` would leave the first
/// publish into an empty stream unguarded; after the marker every publish expects a sequence of
/// at least 1, which every server checks. A [`JetStreamFeed`](crate::JetStreamFeed) skips it.
pub const MARKER: &str = "stream-start";

/// The `Nats-Msg-Id` of the stream-start marker: publishers that start at once store one.
pub(crate) const MARKER_MSG_ID: &str = "eventloom-nats-stream-start";

/// The subject of the stream-start marker under `prefix`.
pub(crate) fn marker_subject(prefix: &str) -> String {
    format!("{prefix}.eventloom-stream-start")
}

/// The headers of the stream-start marker.
pub(crate) fn marker() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(names::MSG_ID, MARKER_MSG_ID);
    headers.insert(names::MARKER, MARKER);
    headers
}

/// What a stream's description says once its publisher found the marker stored at sequence
/// 1: a reader may then take the stream's first sequence 2 for a whole history after the
/// marker aged out (by `max_age` or `max_messages`), and a publisher a stream whose last
/// sequence is 1, with the message gone, for one that held only the marker.
pub(crate) const MARKER_AT_ONE: &str = "sequence 1 is its stream-start marker";

/// Whether a stream's description says its sequence 1 is the stream-start marker.
pub(crate) fn marker_at_one(description: Option<&str>) -> bool {
    description.is_some_and(|description| description.contains(MARKER_AT_ONE))
}

/// Whether a message with these headers is the stream-start marker.
pub(crate) fn is_marker(headers: Option<&HeaderMap>) -> bool {
    headers.and_then(|headers| get(headers, names::MARKER)) == Some(MARKER)
}

/// Escapes a header value: printable ASCII but `%` stays, every other byte is `%XX`, so
/// spaces at either end, line breaks and non-ASCII text survive the wire.
pub(crate) fn escape_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if (0x21..=0x7E).contains(&byte) && byte != b'%' {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The value [`escape_value`] escaped, when it is one.
pub(crate) fn unescape_value(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = value.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The headers of `event`'s message.
pub(crate) fn build(event: &RecordedEvent, metadata: &Metadata) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let id = metadata.event_id.to_string();
    headers.insert(names::MSG_ID, id.as_str());
    headers.insert(names::EVENT_ID, id.as_str());
    headers.insert(names::EVENT_TYPE, escape_value(&event.event_type));
    headers.insert(names::SCHEMA_VERSION, event.schema_version.to_string());
    headers.insert(names::STREAM, escape_value(event.stream.as_str()));
    headers.insert(names::VERSION, event.version.to_string());
    headers.insert(names::POSITION, event.position.to_string());
    headers.insert(names::TIMESTAMP, metadata.timestamp.as_micros().to_string());
    if let Some(correlation) = &metadata.correlation_id {
        headers.insert(names::CORRELATION_ID, escape_value(correlation));
    }
    if let Some(causation) = &metadata.causation_id {
        headers.insert(names::CAUSATION_ID, escape_value(causation));
    }
    // The trace context the engine stored; for an event stored before it kept one there, a
    // well-formed one the user put in the metadata headers.
    let legacy = || {
        let traceparent = metadata.headers.get(names::TRACEPARENT)?;
        TraceContext::from_headers(traceparent, metadata.headers.get(names::TRACESTATE).map(String::as_str))
    };
    if let Some(trace) = metadata.trace.clone().or_else(legacy) {
        headers.insert(names::TRACEPARENT, trace.traceparent());
        if let Some(state) = trace.tracestate() {
            headers.insert(names::TRACESTATE, escape_value(state));
        }
    }
    headers.insert(names::CONTENT_TYPE, "application/json");
    headers
}

/// The most bytes the `Nats-Expected-Last-Sequence` header adds to a publish: its name, the
/// widest sequence (20 digits), `: ` and `\r\n`.
pub(crate) const EXPECTED_SEQUENCE_HEADER: usize = "Nats-Expected-Last-Sequence".len() + 2 + 20 + 2;

/// The bytes the headers take on the wire (`NATS/1.0\r\n`, `name: value\r\n` each, `\r\n`).
pub(crate) fn wire_size(headers: &HeaderMap) -> usize {
    let mut size = "NATS/1.0\r\n\r\n".len();
    for (name, values) in headers.iter() {
        for value in values {
            size += AsRef::<str>::as_ref(name).len() + 2 + value.as_str().len() + 2;
        }
    }
    size
}

fn get<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).map(|value| value.as_str())
}

/// The position a published message records, when it has one.
pub(crate) fn position(headers: &HeaderMap) -> Option<Position> {
    get(headers, names::POSITION)?.parse().ok()
}

/// The event id a published message records, when it has a valid one.
pub(crate) fn event_id(headers: &HeaderMap) -> Option<uuid::Uuid> {
    get(headers, names::EVENT_ID)?.parse().ok()
}

/// What the headers say about an event, or why they do not.
pub(crate) struct Decoded {
    pub(crate) stream: StreamId,
    pub(crate) version: u64,
    pub(crate) event_type: String,
    pub(crate) schema_version: u32,
    pub(crate) metadata: Metadata,
}

/// Reads an event's headers; the reason when one is missing or malformed.
pub(crate) fn decode(headers: Option<&HeaderMap>) -> Result<Decoded, String> {
    let headers = headers.ok_or("the message has no headers")?;
    let text = |name: &str| -> Result<String, String> {
        let raw = get(headers, name).ok_or_else(|| format!("header {name} is missing"))?;
        unescape_value(raw).ok_or_else(|| format!("header {name} is not escaped as eventloom-nats escapes"))
    };
    let number = |name: &str| -> Result<u64, String> {
        text(name)?.parse::<u64>().map_err(|_| format!("header {name} is not a number"))
    };
    let stream = text(names::STREAM)?;
    let (category, id) = stream.split_once('/').ok_or_else(|| format!("header {} has no '/'", names::STREAM))?;
    let stream = StreamId::new(category, id).map_err(|e| format!("header {}: {e}", names::STREAM))?;
    let version = number(names::VERSION)?;
    if version == 0 {
        return Err(format!("header {} is 0", names::VERSION));
    }
    let event_type = text(names::EVENT_TYPE)?;
    let schema_version = u32::try_from(number(names::SCHEMA_VERSION)?)
        .map_err(|_| format!("header {} is too large", names::SCHEMA_VERSION))?;
    let event_id = text(names::EVENT_ID)?
        .parse::<uuid::Uuid>()
        .map_err(|_| format!("header {} is not a UUID", names::EVENT_ID))?;
    let micros =
        text(names::TIMESTAMP)?.parse::<i64>().map_err(|_| format!("header {} is not a number", names::TIMESTAMP))?;
    let mut metadata = Metadata::new(event_id, Timestamp::from_micros(micros));
    let optional = |name: &str| -> Result<Option<String>, String> {
        match get(headers, name) {
            None => Ok(None),
            Some(_) => text(name).map(Some),
        }
    };
    metadata.correlation_id = optional(names::CORRELATION_ID)?;
    metadata.causation_id = optional(names::CAUSATION_ID)?;
    // A malformed trace context from outside is dropped, not an error: the event is still good.
    if let Some(traceparent) = get(headers, names::TRACEPARENT).and_then(unescape_value) {
        let state = get(headers, names::TRACESTATE).and_then(unescape_value);
        metadata.trace = TraceContext::from_headers(&traceparent, state.as_deref());
    }
    Ok(Decoded { stream, version, event_type, schema_version, metadata })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip() {
        for value in ["", " lead", "trail ", "a%b", "é日本", "line\r\nbreak", "plain-ascii_1.2"] {
            let escaped = escape_value(value);
            assert!(escaped.bytes().all(|b| (0x21..=0x7E).contains(&b)), "{escaped}");
            assert_eq!(unescape_value(&escaped).as_deref(), Some(value));
        }
        assert_eq!(unescape_value("%"), None);
        assert_eq!(unescape_value("%ZZ"), None);
        assert_eq!(unescape_value("%FF"), None, "not UTF-8");
    }

    #[test]
    fn a_malformed_traceparent_from_outside_is_dropped_and_the_event_kept() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let metadata = Metadata::new(uuid::Uuid::from_u128(7), Timestamp::from_micros(5))
            .with_trace(TraceContext::parse(tp).unwrap().with_tracestate("a=1"));
        let event = RecordedEvent {
            stream: StreamId::new("task", "1").unwrap(),
            version: 1,
            position: Position::new(0, 2),
            event_type: "Done".into(),
            schema_version: 1,
            payload: "{}".into(),
            metadata: metadata.clone().into(),
        };
        let mut headers = build(&event, &metadata);
        let decoded = decode(Some(&headers)).unwrap();
        assert_eq!(decoded.metadata.trace, metadata.trace);
        for bad in ["00-nope", "", "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", "%ZZ"] {
            headers.insert(names::TRACEPARENT, bad);
            let decoded = decode(Some(&headers)).unwrap();
            assert_eq!(decoded.metadata.trace, None, "{bad}");
            assert!(decoded.metadata.headers.is_empty());
        }
    }
}

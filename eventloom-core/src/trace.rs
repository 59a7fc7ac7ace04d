//! One trace across processes: the W3C trace context a command's events carry, and the hook
//! that connects it to whatever tracing backend the application uses.
//!
//! The libraries depend on no tracing backend. An application that exports traces (with
//! OpenTelemetry, say) installs one [`TracePropagation`] at start, as it installs a `tracing`
//! subscriber; from then on:
//!
//! - the engine stores the trace context of the span current when it appends (or the one given
//!   in [`ExecuteOptions::traceparent`](crate::ExecuteOptions::traceparent)) in every event's
//!   [`Metadata::trace`](crate::Metadata::trace);
//! - a projector, event handler or process manager (the bus consumer of `eventloom-nats` runs
//!   as one of them) makes, for each event that carries a trace context, a span `eventloom.event`
//!   whose parent is that context: the handling of the event is part of the command's trace;
//! - each batch has a span `eventloom.batch` (a root of its own trace) with a span link to each
//!   of its events' `eventloom.event` spans, and the batch's write of views and checkpoint is the
//!   span `eventloom.view_write` inside it. An `eventloom.event` span of a projection lasts until
//!   its batch is written.
//!
//! With no hook installed nothing is stored, no metadata is decoded for it and no span is made
//! per event: the cost is one atomic load per batch.
//!
//! # Examples
//!
//! ```
//! use eventloom_core::trace::TraceContext;
//!
//! let context = TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
//! assert_eq!(context.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
//! assert_eq!(context.parent_id(), "00f067aa0ba902b7");
//! assert!(context.sampled());
//! assert!(TraceContext::parse("00-00000000000000000000000000000000-00f067aa0ba902b7-01").is_none());
//! ```

use std::sync::OnceLock;

use serde::{Deserialize, Deserializer, Serialize};

use crate::RecordedEvent;

/// The longest `tracestate` kept, in bytes (the W3C limit is 32 members; 512 bytes is what a
/// vendor may cut to). A longer or malformed one is dropped, the traceparent kept.
pub const MAX_TRACESTATE_LEN: usize = 512;

/// A W3C trace context: a `traceparent` checked to be well formed, and its `tracestate` if any.
///
/// A malformed traceparent never becomes one: [`TraceContext::parse`] answers `None`, and
/// stored metadata whose trace context is malformed decodes without it.
///
/// # Examples
///
/// ```
/// use eventloom_core::trace::TraceContext;
///
/// let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00";
/// let context = TraceContext::parse(tp).unwrap().with_tracestate("congo=t61rcWkgMzE");
/// assert_eq!((context.traceparent(), context.tracestate()), (tp, Some("congo=t61rcWkgMzE")));
/// assert!(!context.sampled());
/// for bad in ["", "00-xyz", "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
///             "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
///             "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01"] {
///     assert!(TraceContext::parse(bad).is_none(), "{bad}");
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct TraceContext {
    traceparent: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    tracestate: Option<String>,
}

impl TraceContext {
    /// The context of a `traceparent` header value, when it is well formed: version (two hex
    /// digits, not `ff`), trace id (32 lowercase hex digits, not all zero), parent id (16, not
    /// all zero) and flags (2), separated by `-`; a version after `00` may have more after a
    /// further `-`.
    pub fn parse(traceparent: &str) -> Option<Self> {
        // A later version may append fields: only the 55 characters every version shares are
        // kept (and passed on), so that nothing of unchecked length or content travels on.
        valid_traceparent(traceparent)
            .then(|| TraceContext { traceparent: traceparent[..55].to_owned(), tracestate: None })
    }

    /// The context of a traceparent and an optional tracestate header; a malformed tracestate is
    /// dropped (the traceparent kept), a malformed traceparent drops both.
    pub fn from_headers(traceparent: &str, tracestate: Option<&str>) -> Option<Self> {
        let context = TraceContext::parse(traceparent)?;
        Some(match tracestate {
            Some(state) => context.with_tracestate(state),
            None => context,
        })
    }

    /// With a `tracestate`, when it is printable ASCII of at most [`MAX_TRACESTATE_LEN`] bytes
    /// and not empty (otherwise without one).
    pub fn with_tracestate(mut self, tracestate: impl Into<String>) -> Self {
        let tracestate = tracestate.into();
        let valid = !tracestate.trim().is_empty()
            && tracestate.len() <= MAX_TRACESTATE_LEN
            && tracestate.bytes().all(|b| (0x20..=0x7E).contains(&b));
        self.tracestate = valid.then_some(tracestate);
        self
    }

    /// The `traceparent` header value.
    pub fn traceparent(&self) -> &str {
        &self.traceparent
    }

    /// The `tracestate` header value, if any.
    pub fn tracestate(&self) -> Option<&str> {
        self.tracestate.as_deref()
    }

    /// The trace id: 32 lowercase hex digits.
    pub fn trace_id(&self) -> &str {
        &self.traceparent[3..35]
    }

    /// The id of the span this context names (the parent of a span made from it): 16 hex digits.
    pub fn parent_id(&self) -> &str {
        &self.traceparent[36..52]
    }

    /// The trace flags, as a number (bit 0: sampled).
    pub fn flags(&self) -> u8 {
        u8::from_str_radix(&self.traceparent[53..55], 16).unwrap_or(0)
    }

    /// Whether the caller sampled the trace (bit 0 of the flags).
    pub fn sampled(&self) -> bool {
        self.flags() & 1 == 1
    }
}

fn lower_hex(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn valid_traceparent(tp: &str) -> bool {
    let b = tp.as_bytes();
    if b.len() < 55 || !tp.is_ascii() || b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
        return false;
    }
    let (version, trace_id, parent_id, flags) = (&tp[0..2], &tp[3..35], &tp[36..52], &tp[53..55]);
    let hex = [version, trace_id, parent_id, flags].iter().all(|part| lower_hex(part));
    let rest_ok = match (version, b.len()) {
        ("00", 55) => true,
        ("00", _) => false,
        (_, 55) => true,
        (_, _) => b[55] == b'-',
    };
    hex && version != "ff" && rest_ok && trace_id.bytes().any(|b| b != b'0') && parent_id.bytes().any(|b| b != b'0')
}

/// Stored trace context as read: malformed values (a bad traceparent, a value of another shape)
/// read as none, so that an event's metadata never fails to decode for its trace.
pub(crate) fn deserialize_lenient<'de, D: Deserializer<'de>>(d: D) -> Result<Option<TraceContext>, D::Error> {
    #[derive(Deserialize)]
    struct Raw {
        traceparent: Option<String>,
        tracestate: Option<String>,
    }
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Lenient {
        Raw(Raw),
        Other(serde::de::IgnoredAny),
    }
    Ok(match Lenient::deserialize(d)? {
        Lenient::Raw(Raw { traceparent: Some(tp), tracestate }) => {
            TraceContext::from_headers(&tp, tracestate.as_deref())
        }
        _ => None,
    })
}

impl<'de> Deserialize<'de> for TraceContext {
    /// A traceparent that is not well formed is an error here; inside [`Metadata`](crate::Metadata)
    /// it reads as no trace context.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_lenient(d)?.ok_or_else(|| serde::de::Error::custom("not a well-formed W3C trace context"))
    }
}

/// The bridge between the spans of the libraries and a tracing backend's trace ids (for
/// OpenTelemetry, `tracing-opentelemetry`'s `OpenTelemetrySpanExt`), installed once per process
/// with [`install`].
///
/// Every method is called only with spans of the libraries (or the span current where a command
/// is executed), and only once a hook is installed. A method must not panic; a context or span it
/// cannot use, it ignores.
///
/// # Examples
///
/// A hook for OpenTelemetry (what the task manager installs with its feature `otel`):
///
/// ```ignore
/// use eventloom_core::trace::{TraceContext, TracePropagation};
/// use opentelemetry::trace::TraceContextExt;
/// use tracing_opentelemetry::OpenTelemetrySpanExt;
///
/// struct Otel;
///
/// impl TracePropagation for Otel {
///     fn context(&self, span: &tracing::Span) -> Option<TraceContext> {
///         let cx = span.context();
///         let sc = cx.span().span_context().clone();
///         sc.is_valid().then(|| ())?;
///         let tp = format!("00-{}-{}-{:02x}", sc.trace_id(), sc.span_id(), sc.trace_flags().to_u8());
///         TraceContext::parse(&tp)
///     }
///     fn set_parent(&self, span: &tracing::Span, parent: &TraceContext) { /* span.set_parent(..) */ }
///     fn add_link(&self, span: &tracing::Span, to: &TraceContext) { /* span.add_link(..) */ }
/// }
/// ```
///
/// A hook that only counts (the libraries call it once installed):
///
/// ```
/// use eventloom_core::trace::{TraceContext, TracePropagation};
///
/// struct Fixed;
///
/// impl TracePropagation for Fixed {
///     fn context(&self, _: &tracing::Span) -> Option<TraceContext> {
///         TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
///     }
///     fn set_parent(&self, _: &tracing::Span, _: &TraceContext) {}
///     fn add_link(&self, _: &tracing::Span, _: &TraceContext) {}
/// }
///
/// let context = Fixed.context(&tracing::Span::current()).unwrap();
/// assert_eq!(context.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
/// ```
pub trait TracePropagation: Send + Sync + 'static {
    /// The trace context of `span` (the span current when a command appends, or a span of the
    /// libraries), as a traceparent naming `span` itself; `None` when it is not in a trace (not
    /// recorded, or the span is disabled).
    fn context(&self, span: &tracing::Span) -> Option<TraceContext>;

    /// Makes the span `parent` names the parent of `span`, which has not been entered yet.
    fn set_parent(&self, span: &tracing::Span, parent: &TraceContext);

    /// Adds a span link from `span` (not closed yet) to the span `to` names.
    fn add_link(&self, span: &tracing::Span, to: &TraceContext);
}

static PROPAGATION: OnceLock<Box<dyn TracePropagation>> = OnceLock::new();

/// [`install`] was called before: the first hook stays.
///
/// # Examples
///
/// ```
/// use eventloom_core::trace::AlreadyInstalled;
/// assert_eq!(AlreadyInstalled.to_string(), "a trace propagation hook is installed already");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a trace propagation hook is installed already")]
pub struct AlreadyInstalled;

/// Installs the process's trace propagation hook, once (as `tracing::subscriber::set_global_default`).
///
/// # Examples
///
/// ```
/// use eventloom_core::trace::{self, TraceContext, TracePropagation};
///
/// struct Nothing;
/// impl TracePropagation for Nothing {
///     fn context(&self, _: &tracing::Span) -> Option<TraceContext> { None }
///     fn set_parent(&self, _: &tracing::Span, _: &TraceContext) {}
///     fn add_link(&self, _: &tracing::Span, _: &TraceContext) {}
/// }
///
/// assert!(!trace::is_installed());
/// trace::install(Nothing).unwrap();
/// assert!(trace::is_installed());
/// assert_eq!(trace::install(Nothing), Err(trace::AlreadyInstalled));
/// ```
pub fn install(propagation: impl TracePropagation) -> Result<(), AlreadyInstalled> {
    let mut fresh = false;
    PROPAGATION.get_or_init(|| {
        fresh = true;
        Box::new(propagation)
    });
    if fresh { Ok(()) } else { Err(AlreadyInstalled) }
}

/// Whether a hook is installed.
///
/// # Examples
///
/// ```
/// assert!(!eventloom_core::trace::is_installed());
/// ```
pub fn is_installed() -> bool {
    PROPAGATION.get().is_some()
}

/// The installed hook, if any.
pub(crate) fn installed() -> Option<&'static dyn TracePropagation> {
    PROPAGATION.get().map(|p| &**p)
}

/// The trace context of the current span, when a hook is installed and the span is in a trace:
/// what the engine stores with the events it appends.
///
/// # Examples
///
/// ```
/// assert_eq!(eventloom_core::trace::current(), None, "no hook installed");
/// ```
pub fn current() -> Option<TraceContext> {
    let propagation = installed()?;
    propagation.context(&tracing::Span::current())
}

/// Makes the span `parent` names the parent of `span` through the installed hook (a server does
/// this with an incoming request's `traceparent`); `false`, doing nothing, without a hook.
///
/// # Examples
///
/// ```
/// use eventloom_core::trace::{self, TraceContext};
///
/// let incoming = TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
/// let span = tracing::info_span!("request");
/// assert!(!trace::set_parent(&span, &incoming), "no hook installed");
/// ```
pub fn set_parent(span: &tracing::Span, parent: &TraceContext) -> bool {
    match installed() {
        Some(propagation) => {
            propagation.set_parent(span, parent);
            true
        }
        None => false,
    }
}

/// The stored trace context of an event (decoding its metadata), if it has a valid one.
fn of(raw: &RecordedEvent) -> Option<TraceContext> {
    raw.metadata.get().ok()?.trace.clone()
}

/// The spans of one batch a projector, handler or process manager handles: `batch` (a root,
/// linked to each event's span) and one `eventloom.event` span per event with a trace context.
pub(crate) struct BatchTrace {
    pub(crate) batch: tracing::Span,
    /// Held until the batch is done: a projection's event span ends once its batch is written.
    _events: Vec<tracing::Span>,
}

impl BatchTrace {
    /// The batch's spans, or `None` (at the cost of one atomic load) without a hook, or when the
    /// batch span is disabled.
    pub(crate) fn start(kind: &'static str, job: &str, batch: &[RecordedEvent]) -> Option<BatchTrace> {
        let propagation = installed()?;
        let span = tracing::info_span!(parent: None, "eventloom.batch", kind, job, events = batch.len());
        if span.is_disabled() {
            return None;
        }
        let mut events = Vec::new();
        for raw in batch {
            if let Some(event) = event_span(propagation, &span, kind, job, raw) {
                if let Some(context) = propagation.context(&event) {
                    propagation.add_link(&span, &context);
                }
                events.push(event);
            }
        }
        Some(BatchTrace { batch: span, _events: events })
    }
}

fn event_span(
    propagation: &dyn TracePropagation,
    parent: &tracing::Span,
    kind: &'static str,
    job: &str,
    raw: &RecordedEvent,
) -> Option<tracing::Span> {
    let context = of(raw)?;
    let span = tracing::info_span!(
        parent: parent,
        "eventloom.event",
        kind,
        job,
        stream = %raw.stream,
        version = raw.version,
        position = %raw.position,
        event_type = %raw.event_type,
    );
    if span.is_disabled() {
        return None;
    }
    propagation.set_parent(&span, &context);
    Some(span)
}

/// The span of one event handled on its own (an event handler's call), a child of the event's
/// trace; `None` without a hook or a stored trace context.
pub(crate) fn event(kind: &'static str, job: &str, raw: &RecordedEvent) -> Option<tracing::Span> {
    let propagation = installed()?;
    event_span(propagation, &tracing::Span::current(), kind, job, raw)
}

/// The span of a batch's write of views and checkpoint (inside the batch span), or a disabled one
/// without a hook.
pub(crate) fn view_write(job: &str) -> tracing::Span {
    if installed().is_none() {
        return tracing::Span::none();
    }
    tracing::info_span!("eventloom.view_write", job)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparents_are_checked() {
        let good = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        assert!(TraceContext::parse(good).is_some());
        assert!(TraceContext::parse(&format!("{good}-extra")).is_none(), "version 00 has nothing more");
        let future = "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        assert!(TraceContext::parse(future).is_some());
        assert!(TraceContext::parse(&format!("{future}-more")).is_some());
        // A later version's fields are not kept: nothing of unchecked content travels on (a CR LF
        // would split a NATS header block).
        let injected = TraceContext::parse(&format!("{future}-\r\nNats-Msg-Id: x")).unwrap();
        assert_eq!(injected.traceparent(), future);
        assert!(TraceContext::parse(&format!("{future}more")).is_none());
        assert!(TraceContext::parse("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0é").is_none());
        assert!(TraceContext::parse(&"é".repeat(40)).is_none(), "no panic on non-ASCII");
        assert!(TraceContext::parse("00-0af7651916cd43dd8448eb211c80319c_b7ad6b7169203331-01").is_none());
        let state = TraceContext::parse(good).unwrap().with_tracestate("x".repeat(MAX_TRACESTATE_LEN + 1));
        assert_eq!(state.tracestate(), None);
        assert_eq!(TraceContext::from_headers(good, Some("a=1\n")).unwrap().tracestate(), None);
    }

    #[test]
    fn stored_contexts_decode_leniently() {
        let read = |json: &str| serde_json::from_str::<crate::Metadata>(json).unwrap().trace;
        let base = r#""event_id":"00000000-0000-0000-0000-000000000007","timestamp":5"#;
        assert_eq!(read(&format!("{{{base}}}")), None);
        let good = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let got = read(&format!(r#"{{{base},"trace":{{"traceparent":"{good}","tracestate":"a=b"}}}}"#)).unwrap();
        assert_eq!((got.traceparent(), got.tracestate()), (good, Some("a=b")));
        for bad in [r#""trace":{"traceparent":"00-nope"}"#, r#""trace":7"#, r#""trace":null"#, r#""trace":{}"#] {
            assert_eq!(read(&format!("{{{base},{bad}}}")), None, "{bad}");
        }
    }
}

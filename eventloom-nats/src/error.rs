//! The crate's error type.

use eventloom_core::{ErrorKind, Position};

/// A `Result` whose error defaults to this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong on the bus: configuring and connecting, publishing, consuming. Where an
/// error crosses into `eventloom-core` (a [`JetStreamFeed`](crate::JetStreamFeed) read by a
/// projector) it becomes an [`eventloom_core::Error`] of the same [`kind`](Error::kind): an
/// outage stays transient (retried), everything else stops the reader (the publisher's errors
/// never cross: it returns this type).
///
/// # Examples
///
/// ```
/// use eventloom_core::ErrorKind;
/// use eventloom_nats::Error;
///
/// let err = Error::Fenced { stream: "orders".into(), expected_last_sequence: 41, position: None, event_id: None };
/// assert_eq!(err.kind(), ErrorKind::Conflict);
/// let core: eventloom_core::Error = eventloom_nats::Error::Unavailable("down".into()).into();
/// assert!(core.is_transient());
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A setting that cannot work (a URL that does not parse, a stream name with a `.`, a TLS
    /// file that is missing). The message never repeats credentials.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The server could not be reached (down, timed out, a name that does not resolve):
    /// retrying later may succeed. The message never repeats credentials.
    #[error("cannot connect to NATS: {0}")]
    Connect(String),
    /// The server refused the connection in a way retrying will not fix: wrong credentials, a
    /// user it does not know, a certificate it does not trust or TLS settings that do not
    /// match its own. The message never repeats credentials.
    #[error("NATS refused the connection: {0}")]
    ConnectRefused(String),
    /// The server is unreachable or did not answer in time: retrying later may succeed.
    #[error("NATS unavailable: {0}")]
    Unavailable(String),
    /// JetStream refused a request in a way retrying will not fix (JetStream not enabled, a
    /// stream whose settings conflict with the publisher's, a permission denied).
    #[error("JetStream refused: {0}")]
    JetStream(String),
    /// A publish that would not extend the stream exactly as expected, and the stream holds
    /// another message in its place: another writer wrote to it. The publisher stops; nothing
    /// is republished. (A place taken by this very event, stored by a publish of an abandoned
    /// pass or of another publisher of the same log, is no fence: the publisher goes on.)
    #[error(
        "stream {stream} was written by another publisher (expected last sequence {expected_last_sequence}{})",
        refused(position.as_ref(), event_id.as_deref())
    )]
    Fenced {
        /// The stream.
        stream: String,
        /// The sequence this publisher expected to be the stream's last.
        expected_last_sequence: u64,
        /// The local position of the event refused (`None` for the stream-start marker).
        position: Option<Position>,
        /// The id of the event refused (`None` for the stream-start marker).
        event_id: Option<String>,
    },
    /// The stream's last message names a position past the head of the local log: the log may
    /// be behind the one that published (a replica, or its gap-free horizon trailing). Retried
    /// with back-off until the local log holds that position (then checked as usual).
    #[error(
        "the last message (sequence {sequence}) of stream {stream} names position {position}, past the head of the local log"
    )]
    LogBehind {
        /// The stream.
        stream: String,
        /// The message's sequence.
        sequence: u64,
        /// The position its header names.
        position: Position,
    },
    /// The publisher's lease was lost (another process took it): it stopped publishing.
    #[error("the publisher's lease {lease} was lost")]
    LeaseLost {
        /// The lease's name.
        lease: String,
    },
    /// An event too large for the server's `max_payload` (payload and headers), under
    /// [`DeadLetterPolicy::Stop`](crate::DeadLetterPolicy::Stop).
    #[error(
        "event {event_id} at position {position} is {size} bytes with its headers, over the server's max_payload of {max_payload}"
    )]
    TooLarge {
        /// The event's position in the local log.
        position: Position,
        /// The event's id.
        event_id: String,
        /// Its size with headers, in bytes.
        size: usize,
        /// The server's limit.
        max_payload: usize,
    },
    /// The stream's last message does not carry what this crate's publisher writes (a position
    /// header): someone else writes to it, or it is not a bus stream.
    #[error("the last message (sequence {sequence}) of stream {stream} is not one of a bus publisher: {reason}")]
    ForeignStream {
        /// The stream.
        stream: String,
        /// The message's sequence.
        sequence: u64,
        /// What is missing.
        reason: String,
    },
    /// The stream's last message names an event the local log does not hold as it says: no
    /// event at its position, or another event id (a position past the log's head is
    /// [`Error::LogBehind`]). The stream was
    /// written from another log (another service, or a store that was wiped or restored), and
    /// resuming from it would skip or repeat events.
    #[error("the last message (sequence {sequence}) of stream {stream} is not of this log: {reason}")]
    LogMismatch {
        /// The stream.
        stream: String,
        /// The message's sequence.
        sequence: u64,
        /// The position its header names.
        position: Position,
        /// What does not match.
        reason: String,
    },
    /// A consumer asked to read (rebuild) from a sequence the stream no longer keeps: its
    /// retention dropped the history. Rebuilding needs a stream that keeps every message.
    #[error(
        "stream {stream} no longer holds sequence {wanted} (its first is {first}): its history expired, the projection cannot be rebuilt from it"
    )]
    HistoryExpired {
        /// The stream.
        stream: String,
        /// The first sequence the reader needs.
        wanted: u64,
        /// The stream's first sequence.
        first: u64,
    },
    /// A checkpoint past the stream's last message: the stream was deleted and made anew
    /// (its sequences started over), so the checkpoint names messages that are gone.
    #[error(
        "checkpoint sequence {checkpoint} is past the last sequence {last} of stream {stream}: the stream was recreated"
    )]
    StreamReset {
        /// The stream.
        stream: String,
        /// The checkpoint's sequence.
        checkpoint: u64,
        /// The stream's last sequence.
        last: u64,
    },
    /// The stream a feed reads was deleted and made again since the feed first read it: its
    /// sequences started over, so a checkpoint of the old stream names other messages in the
    /// new one. The feed reads no further; the projections need a rebuild.
    #[error("stream {stream} was deleted and made again since this feed first read it: its sequences started over")]
    StreamRecreated {
        /// The stream.
        stream: String,
    },
    /// The publisher or feed was shut down.
    #[error("shut down")]
    Shutdown,
    /// An error of the local event store (the publisher's feed).
    #[error(transparent)]
    Store(#[from] eventloom_core::Error),
}

impl Error {
    /// What kind of failure this is (see [`ErrorKind`]): a bad setting or a refused connection
    /// (credentials, TLS) is invalid input, an outage is unavailable, a fenced publisher or lost
    /// lease is a conflict, expired history, a reset stream or a stream of another log is
    /// corrupt (someone has to look), an event too large is invalid input.
    ///
    /// # Examples
    ///
    /// ```
    /// use eventloom_core::ErrorKind;
    ///
    /// let err = eventloom_nats::Error::Unavailable("timed out".into());
    /// assert_eq!(err.kind(), ErrorKind::Unavailable);
    /// ```
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Config(_) | Error::ConnectRefused(_) | Error::TooLarge { .. } => ErrorKind::InvalidInput,
            Error::Connect(_) | Error::Unavailable(_) | Error::LogBehind { .. } | Error::Shutdown => {
                ErrorKind::Unavailable
            }
            Error::Fenced { .. } | Error::LeaseLost { .. } => ErrorKind::Conflict,
            Error::HistoryExpired { .. }
            | Error::StreamReset { .. }
            | Error::StreamRecreated { .. }
            | Error::ForeignStream { .. }
            | Error::LogMismatch { .. } => ErrorKind::Corrupt,
            Error::JetStream(_) => ErrorKind::Internal,
            Error::Store(error) => error.kind(),
        }
    }

    /// Whether retrying the same operation later may succeed.
    ///
    /// ```
    /// assert!(eventloom_nats::Error::Unavailable("down".into()).is_transient());
    /// ```
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Unavailable(_) | Error::Connect(_) | Error::LogBehind { .. } => true,
            Error::Store(error) => error.is_transient(),
            _ => false,
        }
    }
}

impl From<Error> for eventloom_core::Error {
    fn from(error: Error) -> Self {
        use eventloom_core::Error as Core;
        match error {
            Error::Store(error) => error,
            Error::Shutdown => Core::Shutdown,
            error @ (Error::Unavailable(_) | Error::Connect(_) | Error::LogBehind { .. }) => Core::unavailable(error),
            error @ (Error::TooLarge { .. } | Error::ConnectRefused(_)) => {
                Core::InvalidConfig { reason: error.to_string() }
            }
            error @ (Error::HistoryExpired { .. }
            | Error::StreamReset { .. }
            | Error::StreamRecreated { .. }
            | Error::ForeignStream { .. }
            | Error::LogMismatch { .. }) => {
                Core::Corrupt { location: "NATS JetStream stream".into(), reason: error.to_string() }
            }
            error @ (Error::Config(_) | Error::JetStream(_) | Error::Fenced { .. } | Error::LeaseLost { .. }) => {
                Core::Backend { message: error.to_string(), source: Some(Box::new(error)) }
            }
        }
    }
}

/// The refused event of a [`Error::Fenced`], for its message.
fn refused(position: Option<&Position>, event_id: Option<&str>) -> String {
    match (position, event_id) {
        (Some(position), Some(event_id)) => format!("; event {event_id} at position {position} refused"),
        _ => String::new(),
    }
}

/// The HTTP-like status and JetStream error code of a server's refusal, as async-nats shows a
/// JetStream error (`... (code 503, error code 10008)`) in every request error's kind.
fn jetstream_codes(text: &str) -> Option<(u64, u64)> {
    let rest = &text[text.rfind("(code ")? + "(code ".len()..];
    let (codes, _) = rest.split_once(')')?;
    let (code, err_code) = codes.split_once(", error code ")?;
    Some((code.parse().ok()?, err_code.parse().ok()?))
}

/// JetStream error codes a status 503 comes with that mean "never", not "not now": JetStream not
/// enabled for the account (10039), or on the server (10076).
const NOT_ENABLED: [u64; 2] = [10039, 10076];

/// Whether a JetStream refusal says "not now": error code 10008 (JetStream temporarily
/// unavailable, as a cluster without a leader answers), or status 503 with any code but those
/// saying JetStream is not enabled.
pub(crate) fn temporarily_unavailable(code: u64, err_code: u64) -> bool {
    err_code == async_nats::jetstream::ErrorCode::CLUSTER_NOT_AVAILABLE.0
        || (code == 503 && !NOT_ENABLED.contains(&err_code))
}

/// An error of a JetStream request, sorted: timeouts, lost connections and the server's "not
/// now" (status 503, JetStream error 10008) are outages; the server's other refusals are not.
pub(crate) fn request<K: std::fmt::Display + std::fmt::Debug + Clone + PartialEq>(
    what: &str,
    error: async_nats::error::Error<K>,
) -> Error {
    let text = format!("{what}: {error}");
    if let Some((code, err_code)) = jetstream_codes(&text) {
        return if temporarily_unavailable(code, err_code) { Error::Unavailable(text) } else { Error::JetStream(text) };
    }
    let lower = text.to_ascii_lowercase();
    if lower.contains("timed out")
        || lower.contains("timeout")
        || lower.contains("no responders")
        || lower.contains("broken pipe")
        || lower.contains("disconnected")
        || lower.contains("connection")
        || lower.contains("request error")
    {
        Error::Unavailable(text)
    } else {
        Error::JetStream(text)
    }
}

#[cfg(test)]
mod tests {
    use async_nats::jetstream::context::{GetStreamError, GetStreamErrorKind};

    use super::*;

    fn refusal(code: u64, err_code: u64, description: &str) -> GetStreamError {
        let json = format!(r#"{{"code":{code},"err_code":{err_code},"description":"{description}"}}"#);
        let error: async_nats::jetstream::Error = serde_json::from_str(&json).expect("a JetStream error");
        GetStreamError::new(GetStreamErrorKind::JetStream(error))
    }

    #[test]
    fn a_refusal_is_sorted_by_its_jetstream_code() {
        let unavailable = request("reading", refusal(503, 10008, "JetStream system temporarily unavailable"));
        assert!(matches!(unavailable, Error::Unavailable(_)), "{unavailable:?}");
        assert!(unavailable.is_transient());
        // Status 503 with another code, too; the description plays no part.
        assert!(matches!(request("reading", refusal(503, 10999, "connection refused")), Error::Unavailable(_)));
        // But not JetStream disabled for the account or the server: that is for good.
        for disabled in NOT_ENABLED {
            let refused = request("reading", refusal(503, disabled, "jetstream not enabled"));
            assert!(matches!(refused, Error::JetStream(_)), "{refused:?}");
        }
        let not_found = request("reading", refusal(404, 10059, "stream not found"));
        assert!(matches!(not_found, Error::JetStream(_)), "{not_found:?}");
        // A description that reads like an outage does not make a permanent refusal one.
        let denied = request("reading", refusal(400, 10003, "bad request: connection timed out"));
        assert!(matches!(denied, Error::JetStream(_)), "{denied:?}");
        assert!(!denied.is_transient());
        // Errors that are no refusal are still sorted by what they say.
        let timed_out = request("reading", GetStreamError::new(GetStreamErrorKind::Request));
        assert!(matches!(timed_out, Error::Unavailable(_)), "{timed_out:?}");
    }

    #[test]
    fn a_fence_names_the_refused_event() {
        let fenced = Error::Fenced {
            stream: "S".into(),
            expected_last_sequence: 7,
            position: Some(Position::new(3, 0)),
            event_id: Some("e".into()),
        };
        assert!(fenced.to_string().contains("event e at position"), "{fenced}");
        let behind = Error::LogBehind { stream: "S".into(), sequence: 2, position: Position::new(9, 0) };
        assert!(behind.is_transient());
        assert!(eventloom_core::Error::from(behind).is_transient());
    }
}

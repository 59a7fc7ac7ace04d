//! The crate's error type.

use crate::Position;
use crate::model::stream::{ExpectedVersion, StreamId};

/// A `Result` whose error defaults to this crate's [`Error`].
///
/// # Examples
///
/// ```
/// fn parse(token: &str) -> eventloom_core::Result<eventloom_core::Position> {
///     token.parse()
/// }
/// assert!(parse("1.2").is_ok());
/// ```
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong below the domain: storage, encoding, concurrency, bad input.
///
/// The user's own rejection of a command is never one of these: [`crate::CommandError`] keeps it
/// apart. Adapters map their failures onto these variants so that a caller can match on them
/// whatever store is in use.
///
/// # Examples
///
/// ```
/// use eventloom_core::{Error, StreamId, model::ExpectedVersion};
///
/// let err = Error::Conflict {
///     stream: StreamId::new("task", "t-1").unwrap(),
///     expected: ExpectedVersion::Exact(3),
///     actual: 4,
/// };
/// assert!(matches!(err, Error::Conflict { actual: 4, .. }));
/// assert_eq!(err.to_string(), "conflict on stream task/t-1: expected version 3, found 4");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An append's expected version did not match the stream: another writer got there first.
    #[error("conflict on stream {stream}: expected {expected}, found {actual}")]
    Conflict {
        /// The stream appended to.
        stream: StreamId,
        /// What the append expected.
        expected: ExpectedVersion,
        /// The stream's version when the append was refused.
        actual: u64,
    },
    /// A command id that was already used for a different request: by a command on another
    /// stream, or with another [`Fingerprint`](crate::Fingerprint) (another command, or other
    /// fields). An idempotency key reused for a different request; nothing was executed.
    #[error(
        "command id {command_id} was already used for a different request (on stream {first_stream}, request {}; this request {})",
        .first_fingerprint.map_or_else(|| "not recorded".to_owned(), |f| f.short()),
        .fingerprint.short()
    )]
    CommandIdReused {
        /// The command id.
        command_id: String,
        /// The stream the first command with this id targeted.
        first_stream: StreamId,
        /// The fingerprint of the first request, if one was recorded (outcomes recorded before
        /// fingerprints were kept have none).
        first_fingerprint: Option<crate::Fingerprint>,
        /// The fingerprint of this request.
        fingerprint: crate::Fingerprint,
    },
    /// A stream id, command id, header or other identifier that the store refuses.
    #[error("invalid {what}: {reason}")]
    InvalidId {
        /// Which kind of identifier.
        what: &'static str,
        /// Why it was refused.
        reason: String,
    },
    /// An event or view larger than the store accepts.
    #[error("payload of {size} bytes exceeds the limit of {limit} bytes")]
    PayloadTooLarge {
        /// The payload's size in bytes.
        size: usize,
        /// The store's limit in bytes.
        limit: usize,
    },
    /// An event the store refuses as it is: a payload that is not valid JSON, or that holds
    /// text the store cannot keep (such as `\u0000` on PostgreSQL).
    #[error("invalid event: {reason}")]
    InvalidEvent {
        /// Why it was refused.
        reason: String,
    },
    /// An event could not be turned into JSON.
    #[error("cannot encode event {event_type}: {source}")]
    Encode {
        /// The event's type name.
        event_type: String,
        /// The serializer's error.
        #[source]
        source: serde_json::Error,
    },
    /// A stored event whose payload does not decode into the current event type.
    #[error(
        "cannot decode event {event_type} v{schema_version} at {stream} version {version} (position {position}): {source}"
    )]
    Decode {
        /// The stream the event belongs to.
        stream: StreamId,
        /// The event's version in its stream.
        version: u64,
        /// The event's position in the store.
        position: Position,
        /// The stored type name.
        event_type: String,
        /// The stored schema version.
        schema_version: u32,
        /// What went wrong.
        #[source]
        source: serde_json::Error,
    },
    /// A stored event whose type name (or schema version) the code does not know.
    #[error("unknown event type {event_type} v{schema_version} at {stream} version {version} (position {position})")]
    UnknownEvent {
        /// The stream the event belongs to.
        stream: StreamId,
        /// The event's version in its stream.
        version: u64,
        /// The event's position in the store.
        position: Position,
        /// The stored type name.
        event_type: String,
        /// The stored schema version.
        schema_version: u32,
    },
    /// A stored event of a known type at a schema version newer than the code's: it was written
    /// by a newer release. Loading its stream fails with it; a projector never dead-letters it,
    /// but stands by for a runner of the newer release.
    #[error(
        "event {event_type} v{schema_version} at {stream} version {version} (position {position}) is newer than this code (v{known}): written by a newer release"
    )]
    NewerSchema {
        /// The stream the event belongs to.
        stream: StreamId,
        /// The event's version in its stream.
        version: u64,
        /// The event's position in the store.
        position: Position,
        /// Its type name (after upcasting).
        event_type: String,
        /// Its schema version (after upcasting).
        schema_version: u32,
        /// The newest schema version of that type this code knows.
        known: u32,
    },
    /// An upcaster failed on a stored event; its error is the [source](std::error::Error::source).
    #[error(
        "upcasting {event_type} v{schema_version} at {stream} version {version} (position {position}) failed: {source}"
    )]
    Upcast {
        /// The stream the event belongs to.
        stream: StreamId,
        /// The event's version in its stream.
        version: u64,
        /// The event's position in the store.
        position: Position,
        /// The stored type name.
        event_type: String,
        /// The stored schema version.
        schema_version: u32,
        /// The upcaster's error (or the JSON error of a payload it could not be given).
        #[source]
        source: crate::BoxError,
    },
    /// A view or snapshot that does not (de)serialize.
    #[error("cannot (de)serialize {what}: {source}")]
    Serde {
        /// What was being (de)serialized.
        what: String,
        /// The serializer's error.
        #[source]
        source: serde_json::Error,
    },
    /// A catch-up, rebuild or event handler's run that another runner got ahead of: it took the
    /// projection's lease since, wrote its checkpoint first, or began a newer generation of its
    /// views (or the store lost them). Nothing more was written; running it again goes on from
    /// what is stored. A projector's [`run`](crate::read::Projector::run) and
    /// [`run_handler`](crate::read::Projector::run_handler) never end with it: on
    /// [`Refusal::GenerationGone`](crate::store::Refusal::GenerationGone) they start over from the
    /// stored status at once, on any other refusal they give the lease up and stand by. (An
    /// event handler whose checkpoint is gone while it runs stops with [`Error::Corrupt`]
    /// instead.)
    #[error("projection {projection} was superseded: {refusal}")]
    Superseded {
        /// The projection (or event handler).
        projection: String,
        /// What the view store answered.
        refusal: crate::store::Refusal,
    },
    /// A projection has no live views to query: its first build, or a rebuild after the store
    /// lost its data, has not caught up yet.
    #[error("projection {projection} is being built; its views are not ready")]
    NotBuilt {
        /// The projection.
        projection: String,
    },
    /// The store holds views of a newer version of the projection than this runner has (an old
    /// process during a rolling upgrade); it refuses to run rather than rebuild them backwards.
    #[error("projection {projection} is at version {stored} in the store; this runner has version {running}")]
    NewerVersion {
        /// The projection.
        projection: String,
        /// The version this runner has.
        running: u32,
        /// The version in the store.
        stored: u32,
    },
    /// A projection or event handler failed on an event; it stopped with its checkpoint kept.
    /// The [source](std::error::Error::source) is what failed: the error its `apply` or `handle`
    /// returned, or the store's refusal of the views it wrote.
    #[error("projection {projection} failed at position {position}: {source}")]
    Projection {
        /// The projection.
        projection: String,
        /// The position of the event it failed on.
        position: Position,
        /// What went wrong.
        #[source]
        source: crate::BoxError,
    },
    /// Stored data that cannot be what the store wrote: a negative version or sequence, an
    /// unparsable transaction id, a stream id the model refuses, a column of the wrong type.
    /// Not an outage: retrying reads the same bytes, so it is never
    /// [transient](Error::is_transient); a projector stops on it.
    #[error("corrupt stored data at {location}: {reason}")]
    Corrupt {
        /// Where: the event's position, or its stream and version, or the table and key.
        location: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The projection's runner stopped on an event it cannot process (recorded in its view
    /// store, so seen from any process): waiting for its views to move would be in vain.
    #[error("projection {projection} {stop}")]
    Stopped {
        /// The projection.
        projection: String,
        /// Where and why it stopped.
        stop: crate::ProjectionStop,
    },
    /// A position token that does not parse.
    #[error("invalid position token {0:?}")]
    InvalidPosition(String),
    /// Waiting (for a view to catch up, for a lease) took longer than allowed.
    #[error("timed out after {0:?}")]
    Timeout(std::time::Duration),
    /// The store is unreachable, refused the operation or failed inside.
    #[error("store unavailable: {message}")]
    Unavailable {
        /// What the store said.
        message: String,
        /// The underlying error, when there is one.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// The store failed in a way that retrying will not fix (a missing table: run the
    /// migrations; a permission denied; a bug).
    #[error("store error: {message}")]
    Backend {
        /// What the store said.
        message: String,
        /// The underlying error.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// The component was shut down.
    #[error("shut down")]
    Shutdown,
    /// An [`App`](crate::App) was asked for an aggregate or a projection it was not built with
    /// (register it on the [`AppBuilder`](crate::AppBuilder)).
    #[error("{kind} {name} is not registered with the app")]
    NotRegistered {
        /// `"aggregate"` or `"projection"`.
        kind: &'static str,
        /// The aggregate's type or the projection's name.
        name: String,
    },
    /// An [`App`](crate::App) was asked for a projection by its type alone
    /// ([`App::reader`](crate::App::reader)), and that type is registered under several names:
    /// ask for one by name ([`App::reader_named`](crate::App::reader_named)).
    #[error("{kind} type {type_name} is registered under several names ({}): ask for one by name", .names.join(", "))]
    Ambiguous {
        /// `"projection"`.
        kind: &'static str,
        /// The Rust type asked for.
        type_name: &'static str,
        /// The names it is registered under, in the order registered.
        names: Vec<String>,
    },
    /// An [`App`](crate::App) was asked for what its [`Role`](crate::Role) does not do (a
    /// command in a query process).
    #[error("this app runs role {role}, which does not {action}")]
    WrongRole {
        /// The app's role.
        role: crate::Role,
        /// What was asked.
        action: &'static str,
    },
    /// An admin operation ([`Operations`](crate::app::Operations)) named a projection that is
    /// neither registered with the application nor held by its view store.
    #[error("no projection {name}: it is neither registered with the app nor in its view store")]
    UnknownProjection {
        /// The name asked for.
        name: String,
    },
    /// An admin operation asked for a stream that holds no event.
    #[error("no stream {stream}: it holds no event")]
    UnknownStream {
        /// The stream asked for.
        stream: StreamId,
    },
    /// An admin operation that cannot be done on what it was asked for (say, a rebuild of a
    /// partitioned projection, or of an event handler).
    #[error("cannot {operation} {name}: {reason}")]
    Unsupported {
        /// What was asked (`"rebuild"`).
        operation: &'static str,
        /// Of what.
        name: String,
        /// Why not, and what to do instead.
        reason: String,
    },
    /// An [`App`](crate::App) that cannot start as configured: a duplicate registration (two
    /// projections or event handlers of one name), a name that is empty, longer than 255 bytes
    /// or holds a control character (a NUL byte among them), a split role on stores that are not shared between processes, snapshots without a
    /// snapshot store.
    #[error("the app cannot start: {reason}")]
    InvalidConfig {
        /// What is wrong.
        reason: String,
    },
}

impl Error {
    /// An [`Error::Unavailable`] from any error.
    pub fn unavailable(source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Error::Unavailable { message: source.to_string(), source: Some(Box::new(source)) }
    }

    /// An [`Error::Unavailable`] from a message.
    pub fn unavailable_msg(message: impl Into<String>) -> Self {
        Error::Unavailable { message: message.into(), source: None }
    }

    /// Whether retrying the same operation later may succeed (a store that is down, a timeout).
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Unavailable { .. } | Error::Timeout(_))
    }
}

/// What kind of failure an error is: the few arms a caller sorts errors into (an HTTP status, a
/// retry, an alert), whatever store or part it came from.
///
/// # Examples
///
/// ```
/// use eventloom_core::{Error, ErrorKind};
///
/// let e = Error::Timeout(std::time::Duration::from_secs(1));
/// let status = match e.kind() {
///     ErrorKind::InvalidInput => 400,
///     ErrorKind::Conflict | ErrorKind::Rejected => 409,
///     ErrorKind::NotReady => 504,
///     ErrorKind::Unavailable => 503,
///     _ => 500,
/// };
/// assert_eq!(status, 504);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The aggregate refused the command (the user's own error): nothing was appended.
    Rejected,
    /// Another writer got there first, or a key was used for something else: nothing changed;
    /// deciding again on the newer state may succeed.
    Conflict,
    /// The input cannot be taken as it is (an id, a payload, a position token): nothing changed;
    /// retrying the same input fails the same way.
    InvalidInput,
    /// The read side is not there yet (views being built, a wait that timed out, a projection
    /// stopped or waiting for a newer release): asking again later may succeed.
    NotReady,
    /// A store is down or the component is shutting down: retrying later may succeed.
    Unavailable,
    /// Stored data does not read (an event that no longer decodes, a corrupt row): someone has
    /// to look.
    Corrupt,
    /// Anything else: a bug, a misconfigured store, a projection's own failure.
    Internal,
}

impl Error {
    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Superseded { refusal: crate::store::Refusal::GenerationGone { .. }, .. } => ErrorKind::NotReady,
            Error::Conflict { .. } | Error::CommandIdReused { .. } | Error::Superseded { .. } => ErrorKind::Conflict,
            Error::InvalidId { .. }
            | Error::PayloadTooLarge { .. }
            | Error::InvalidEvent { .. }
            | Error::Encode { .. }
            | Error::InvalidPosition(_) => ErrorKind::InvalidInput,
            Error::NotBuilt { .. }
            | Error::Stopped { .. }
            | Error::Timeout(_)
            | Error::NewerVersion { .. }
            | Error::NewerSchema { .. } => ErrorKind::NotReady,
            Error::Unavailable { .. } | Error::Shutdown => ErrorKind::Unavailable,
            Error::Decode { .. } | Error::UnknownEvent { .. } | Error::Upcast { .. } | Error::Corrupt { .. } => {
                ErrorKind::Corrupt
            }
            Error::NotRegistered { .. }
            | Error::Ambiguous { .. }
            | Error::WrongRole { .. }
            | Error::InvalidConfig { .. }
            | Error::UnknownProjection { .. }
            | Error::UnknownStream { .. }
            | Error::Unsupported { .. } => ErrorKind::InvalidInput,
            Error::Serde { .. } | Error::Projection { .. } | Error::Backend { .. } => ErrorKind::Internal,
        }
    }
}

impl<E> crate::CommandError<E> {
    /// What kind of failure this is: [`ErrorKind::Rejected`] for the aggregate's refusal (now, or
    /// [recorded before](crate::CommandError::Refused)),
    /// [`ErrorKind::Conflict`] for a conflict that outlived the retries, else the store error's.
    ///
    /// # Examples
    ///
    /// ```
    /// use eventloom_core::{CommandError, Error, ErrorKind};
    ///
    /// let e: CommandError<&str> = CommandError::Rejected("no");
    /// assert_eq!(e.kind(), ErrorKind::Rejected);
    /// let e: CommandError<&str> = Error::unavailable_msg("down").into();
    /// assert_eq!(e.kind(), ErrorKind::Unavailable);
    /// ```
    pub fn kind(&self) -> ErrorKind {
        match self {
            crate::CommandError::Rejected(_) | crate::CommandError::Refused { .. } => ErrorKind::Rejected,
            crate::CommandError::Conflict { .. } => ErrorKind::Conflict,
            crate::CommandError::Store(error) => error.kind(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Refusal;

    #[test]
    fn each_error_sorts_into_the_arm_a_caller_expects() {
        let stream = StreamId::new("task", "1").expect("a valid id");
        let cases = [
            (Error::Conflict { stream, expected: ExpectedVersion::Exact(1), actual: 2 }, ErrorKind::Conflict),
            (Error::PayloadTooLarge { size: 2, limit: 1 }, ErrorKind::InvalidInput),
            (Error::InvalidPosition("x".into()), ErrorKind::InvalidInput),
            (Error::NotBuilt { projection: "p".into() }, ErrorKind::NotReady),
            (Error::Timeout(std::time::Duration::from_secs(1)), ErrorKind::NotReady),
            (Error::unavailable_msg("down"), ErrorKind::Unavailable),
            (Error::Shutdown, ErrorKind::Unavailable),
            (Error::Corrupt { location: "row".into(), reason: "bad".into() }, ErrorKind::Corrupt),
            (Error::Backend { message: "no table".into(), source: None }, ErrorKind::Internal),
            (
                Error::Superseded { projection: "p".into(), refusal: Refusal::Fenced { token: 1, highest: 2 } },
                ErrorKind::Conflict,
            ),
            (
                Error::Superseded {
                    projection: "p".into(),
                    refusal: Refusal::CheckpointMoved { expected: None, actual: None },
                },
                ErrorKind::Conflict,
            ),
            (
                Error::Superseded { projection: "p".into(), refusal: Refusal::GenerationGone { generation: 3 } },
                ErrorKind::NotReady,
            ),
        ];
        for (error, kind) in cases {
            assert_eq!(error.kind(), kind, "{error}");
        }
    }
}

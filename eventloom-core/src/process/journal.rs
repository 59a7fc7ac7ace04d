//! A process manager's journal: the triggers that are not events of its aggregates (a timer
//! that came due, a command refused), appended to the log so that they are read in order with
//! the rest, replayed by a rebuild, and appended once whatever the retries (each under a command
//! id made from what it records). A process manager started at the log's head
//! ([`StartFrom::Now`](crate::app::StartFrom::Now)) also keeps where it started, in a stream of
//! its own named after it.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::Timer;
use crate::model::{ExpectedVersion, IdGenerator, NewEvent, RandomIds, RecordedEvent, Timestamp};
use crate::{Error, EventStore, Metadata, Position, Result, StreamId};

/// The category of every process manager's journal streams: one stream per instance, named
/// `<process manager>/<key>`, holding `TimerFired` and `CommandRefused` events. Projections
/// and handlers skip it unless they ask for it.
pub const JOURNAL_CATEGORY: &str = "eventloom.process";

const TIMER_FIRED: &str = "TimerFired";
const COMMAND_REFUSED: &str = "CommandRefused";
const STARTED: &str = "Started";

/// A journal entry as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum Entry {
    /// A timer came due.
    Timer { process: String, timer: Timer },
    /// A command was refused.
    Refused { process: String, key: String, command_id: String, reason: String, command: serde_json::Value },
    /// The process manager first started with the log's head at `head` (`None`: empty), issuing
    /// nothing for the events up to it.
    Started { process: String, head: Option<String> },
}

impl Entry {
    fn process(&self) -> &str {
        match self {
            Entry::Timer { process, .. } | Entry::Refused { process, .. } | Entry::Started { process, .. } => process,
        }
    }

    /// Its stream: its instance's, or the process manager's own for `Started`.
    fn stream(&self) -> Result<StreamId> {
        match self {
            Entry::Timer { process, timer } => StreamId::new(JOURNAL_CATEGORY, format!("{process}/{}", timer.key)),
            Entry::Refused { process, key, .. } => StreamId::new(JOURNAL_CATEGORY, format!("{process}/{key}")),
            Entry::Started { process, .. } => start_stream(process),
        }
    }

    fn event_type(&self) -> &'static str {
        match self {
            Entry::Timer { .. } => TIMER_FIRED,
            Entry::Refused { .. } => COMMAND_REFUSED,
            Entry::Started { .. } => STARTED,
        }
    }

    /// The id it is appended under: once, however often it is appended.
    fn append_id(&self) -> String {
        match self {
            Entry::Timer { timer, .. } => derived_id(&[&timer.id, "fired"]),
            Entry::Refused { command_id, .. } => derived_id(&[command_id, "refused"]),
            Entry::Started { process, .. } => derived_id(&[process, "started"]),
        }
    }
}

/// The stream where process manager `name` keeps where it started.
fn start_stream(name: &str) -> Result<StreamId> {
    StreamId::new(JOURNAL_CATEGORY, name)
}

/// The journal entry of process manager `name` in `raw`, if it is one of its; `Err` for a
/// journal event of its that does not decode, or that it did not write (another type than its
/// kind's, or another command id than the one it is appended under: the category is reserved,
/// but the log is there for anyone to append to).
pub(crate) fn entry_of(name: &str, raw: &RecordedEvent) -> Option<Result<Entry>> {
    if raw.stream.category() != JOURNAL_CATEGORY {
        return None;
    }
    let prefix = raw.stream.id().strip_prefix(name).and_then(|rest| rest.strip_prefix('/'));
    prefix?;
    let error = |reason: String| Error::Corrupt {
        location: format!("journal event {} of {} (position {})", raw.version, raw.stream, raw.position),
        reason,
    };
    let entry = match serde_json::from_str::<Entry>(&raw.payload) {
        Ok(entry) if entry.process() == name => entry,
        Ok(_) => return None,
        Err(source) => {
            return Some(Err(Error::Decode {
                stream: raw.stream.clone(),
                version: raw.version,
                position: raw.position,
                event_type: raw.event_type.to_string(),
                schema_version: raw.schema_version,
                source,
            }));
        }
    };
    if raw.event_type.as_ref() != entry.event_type() || matches!(entry, Entry::Started { .. }) {
        return Some(Err(error(format!(
            "a {} event that is not a process manager's {}",
            raw.event_type,
            entry.event_type()
        ))));
    }
    let written = raw.metadata.get().ok().and_then(|m| m.command_id.clone());
    if written.as_deref() != Some(entry.append_id().as_str()) {
        return Some(Err(error(format!(
            "not appended by process manager {name}: its command id is not the one the entry is appended under"
        ))));
    }
    if entry.stream().ok().as_ref() != Some(&raw.stream) {
        return Some(Err(error(format!("an entry of another instance than its stream's ({})", raw.stream))));
    }
    Some(Ok(entry))
}

/// Where process manager `name` first started, as [`Entry::Started`] recorded it: `None` when
/// it did not record one (it started from the beginning), `Some(None)` when the log was empty.
pub(crate) async fn started<S: EventStore + ?Sized>(events: &S, name: &str) -> Result<Option<Option<Position>>> {
    let stream = start_stream(name)?;
    let Some(raw) = events.read_stream(&stream, 1, 1).await?.into_iter().next() else { return Ok(None) };
    let corrupt = |reason: &str| Error::Corrupt {
        location: format!("the start of process manager {name} ({stream})"),
        reason: reason.to_owned(),
    };
    match serde_json::from_str::<Entry>(&raw.payload) {
        Ok(Entry::Started { process, head }) if process == name && raw.event_type.as_ref() == STARTED => match head {
            None => Ok(Some(None)),
            Some(head) => Ok(Some(Some(head.parse().map_err(|_| corrupt("its head is not a position"))?))),
        },
        _ => Err(corrupt("its first event is not the process manager's Started")),
    }
}

/// Records that process manager `name` starts at the log's head now, unless it recorded a start
/// before; returns the start recorded.
pub(crate) async fn start<S: EventStore + ?Sized>(events: &S, name: &str, at: Timestamp) -> Result<Option<Position>> {
    let head = events.head().await?;
    let entry = Entry::Started { process: name.to_owned(), head: head.map(|h| h.to_string()) };
    match append_as(events, &entry, at, None, None, ExpectedVersion::NoStream).await {
        // Recorded before (by an earlier start, or another runner in the meantime): that start
        // holds. An append that "succeeded" may also be the replay of an earlier one under the
        // same command id: the stream says which.
        Ok(()) | Err(Error::Conflict { .. }) => match started(events, name).await? {
            Some(head) => Ok(head),
            None => Err(Error::Corrupt {
                location: format!("the start of process manager {name}"),
                reason: "it was appended but its stream holds no event".to_owned(),
            }),
        },
        Err(error) => Err(error),
    }
}

/// Checks that instance `key` of process manager `name` can have a journal stream: a key that
/// cannot is a poison event, found before it is decided on.
pub(crate) fn check_key(name: &str, key: &str) -> Result<()> {
    StreamId::new(JOURNAL_CATEGORY, format!("{name}/{key}")).map(|_| ())
}

/// Appends `entry` to its instance's journal, once: an entry appended before under the same id
/// is left as it was. Carries `correlation` and `causation`.
pub(crate) async fn append<S: EventStore>(
    events: &S,
    entry: &Entry,
    at: Timestamp,
    correlation: Option<&str>,
    causation: Option<&str>,
) -> Result<()> {
    append_as(events, entry, at, correlation, causation, ExpectedVersion::Any).await
}

async fn append_as<S: EventStore + ?Sized>(
    events: &S,
    entry: &Entry,
    at: Timestamp,
    correlation: Option<&str>,
    causation: Option<&str>,
    expected: ExpectedVersion,
) -> Result<()> {
    let stream = entry.stream()?;
    let payload = crate::json::to_string(entry)
        .map_err(|source| Error::Serde { what: format!("a journal entry of {stream}"), source })?;
    let mut metadata = Metadata::new(RandomIds::default().next_id(), at).with_command_id(entry.append_id());
    if let Some(correlation) = correlation {
        metadata = metadata.with_correlation_id(correlation);
    }
    if let Some(causation) = causation {
        metadata = metadata.with_causation_id(causation);
    }
    let event = NewEvent { event_type: entry.event_type().into(), schema_version: 1, payload, metadata };
    events.append(&stream, expected, vec![event]).await?;
    Ok(())
}

/// An id made of `parts` joined by `/`, within [`Metadata::MAX_COMMAND_ID_LEN`]: a longer one
/// keeps its start and ends with a digest of the whole, so ids stay distinct.
pub(crate) fn derived_id(parts: &[&str]) -> String {
    let whole = parts.join("/");
    let limit = Metadata::MAX_COMMAND_ID_LEN;
    if whole.len() <= limit && !whole.chars().any(char::is_control) {
        return whole;
    }
    let digest = Sha256::digest(whole.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    let mut cut = limit - hex.len() - 1;
    while !whole.is_char_boundary(cut) {
        cut -= 1;
    }
    let start: String = whole[..cut].chars().filter(|c| !c.is_control()).collect();
    format!("{start}~{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_ids_fit_and_stay_distinct() {
        let long = "p".repeat(300);
        let a = derived_id(&[&long, "e1", "0"]);
        let b = derived_id(&[&long, "e1", "1"]);
        assert!(a.len() <= Metadata::MAX_COMMAND_ID_LEN && b.len() <= Metadata::MAX_COMMAND_ID_LEN);
        assert_ne!(a, b);
        assert_eq!(derived_id(&["saga", "e1", "0"]), "saga/e1/0");
        let accents = "é".repeat(200);
        assert!(derived_id(&[&accents]).len() <= Metadata::MAX_COMMAND_ID_LEN);
    }
}

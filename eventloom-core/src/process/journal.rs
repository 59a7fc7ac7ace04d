//! A process manager's journal: the triggers that are not events of its aggregates (a timer
//! that came due, a command refused), appended to the log so that they are read in order with
//! the rest, replayed by a rebuild, and appended once whatever the retries (each under a command
//! id made from what it records). Apart from it, in a category of its own, each process
//! manager's *origin*: whether its first generation was made (so that a view store that lost its
//! states is told from a first start), and, for one started at the log's head
//! ([`StartFrom::Now`](crate::app::StartFrom::Now)), where.

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

/// The category of the streams where each process manager records its origin, one stream named
/// after each: `StartedNow` (started at the log's head: its own position is where) and
/// `FirstGeneration` (its first generation was made).
pub const ORIGIN_CATEGORY: &str = "eventloom.process-origin";
const STARTED_NOW: &str = "StartedNow";
const FIRST_GENERATION: &str = "FirstGeneration";

/// A journal entry as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum Entry {
    /// A timer came due.
    Timer { process: String, timer: Timer },
    /// A command was refused.
    Refused { process: String, key: String, command_id: String, reason: String, command: serde_json::Value },
}

/// An event of a process manager's origin stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Milestone {
    /// Started at the log's head: decisions on events before this one issue nothing.
    StartedNow { process: String },
    /// Its first generation was made.
    FirstGeneration { process: String, generation: u64 },
}

impl Milestone {
    fn process(&self) -> &str {
        match self {
            Milestone::StartedNow { process } | Milestone::FirstGeneration { process, .. } => process,
        }
    }
}

/// What a process manager's origin stream says.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Origin {
    /// Started at the log's head: the position of that record (decisions on events up to it
    /// issue nothing).
    pub(crate) quiet_until: Option<Position>,
    /// When it started at the log's head (the record's time).
    pub(crate) started_at: Option<Timestamp>,
    /// Its first generation was made: a view store without one lost its states.
    pub(crate) begun: bool,
}

impl Entry {
    fn process(&self) -> &str {
        match self {
            Entry::Timer { process, .. } | Entry::Refused { process, .. } => process,
        }
    }

    /// Its stream: its instance's.
    fn stream(&self) -> Result<StreamId> {
        match self {
            Entry::Timer { process, timer } => StreamId::new(JOURNAL_CATEGORY, format!("{process}/{}", timer.key)),
            Entry::Refused { process, key, .. } => StreamId::new(JOURNAL_CATEGORY, format!("{process}/{key}")),
        }
    }

    fn event_type(&self) -> &'static str {
        match self {
            Entry::Timer { .. } => TIMER_FIRED,
            Entry::Refused { .. } => COMMAND_REFUSED,
        }
    }

    /// The id it is appended under: once, however often it is appended.
    fn append_id(&self) -> String {
        match self {
            Entry::Timer { timer, .. } => derived_id(&[&timer.id, "fired"]),
            Entry::Refused { command_id, .. } => derived_id(&[command_id, "refused"]),
        }
    }
}

/// The stream of process manager `name`'s origin.
fn origin_stream(name: &str) -> Result<StreamId> {
    StreamId::new(ORIGIN_CATEGORY, name)
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
    if raw.event_type.as_ref() != entry.event_type() {
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

/// What process manager `name`'s origin stream records (events another process manager's are
/// ignored; one that does not decode is `Err`).
pub(crate) async fn origin<S: EventStore + ?Sized>(events: &S, name: &str) -> Result<Origin> {
    let stream = origin_stream(name)?;
    let mut origin = Origin::default();
    for raw in events.read_stream(&stream, 1, 64).await? {
        let milestone = serde_json::from_str::<Milestone>(&raw.payload).map_err(|e| Error::Corrupt {
            location: format!("event {} of {stream}, the origin of process manager {name}", raw.version),
            reason: e.to_string(),
        })?;
        match milestone {
            _ if milestone.process() != name => {}
            Milestone::StartedNow { .. } if origin.quiet_until.is_none() => {
                origin.quiet_until = Some(raw.position);
                origin.started_at = Some(raw.metadata.get()?.timestamp);
            }
            Milestone::StartedNow { .. } => {}
            Milestone::FirstGeneration { .. } => origin.begun = true,
        }
    }
    Ok(origin)
}

/// Records that process manager `name` starts at the log's head, now, unless its origin stream
/// holds anything already (a start recorded before, or a first generation made from the
/// beginning).
pub(crate) async fn start_now<S: EventStore + ?Sized>(events: &S, name: &str, at: Timestamp) -> Result<()> {
    let milestone = Milestone::StartedNow { process: name.to_owned() };
    let id = derived_id(&[name, "started-now"]);
    match append_milestone(events, &milestone, STARTED_NOW, id, at, ExpectedVersion::NoStream).await {
        Ok(()) | Err(Error::Conflict { .. }) => Ok(()),
        Err(error) => Err(error),
    }
}

/// Records that process manager `name`'s first generation, `generation`, was made (once).
pub(crate) async fn first_generation<S: EventStore + ?Sized>(
    events: &S,
    name: &str,
    generation: u64,
    at: Timestamp,
) -> Result<()> {
    let milestone = Milestone::FirstGeneration { process: name.to_owned(), generation };
    let id = derived_id(&[name, "first-generation"]);
    append_milestone(events, &milestone, FIRST_GENERATION, id, at, ExpectedVersion::Any).await
}

async fn append_milestone<S: EventStore + ?Sized>(
    events: &S,
    milestone: &Milestone,
    event_type: &'static str,
    command_id: String,
    at: Timestamp,
    expected: ExpectedVersion,
) -> Result<()> {
    let stream = origin_stream(milestone.process())?;
    let payload = crate::json::to_string(milestone)
        .map_err(|source| Error::Serde { what: format!("an event of {stream}"), source })?;
    let metadata = Metadata::new(RandomIds::default().next_id(), at).with_command_id(command_id);
    let event = NewEvent { event_type: event_type.into(), schema_version: 1, payload, metadata };
    events.append(&stream, expected, vec![event]).await?;
    Ok(())
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
    trace: Option<&crate::trace::TraceContext>,
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
    if let Some(trace) = trace {
        // The entry continues the trace of what led to it (the event that set the timer, the
        // one the refused command was decided on).
        metadata = metadata.with_trace(trace.clone());
    }
    let event = NewEvent { event_type: entry.event_type().into(), schema_version: 1, payload, metadata };
    events.append(&stream, ExpectedVersion::Any, vec![event]).await?;
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

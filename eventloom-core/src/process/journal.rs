//! A process manager's journal: the triggers that are not events of its aggregates (a timer
//! that came due, a command refused), appended to the log so that they are read in order with
//! the rest, replayed by a rebuild, and appended once whatever the retries (each under a command
//! id made from what it records).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::Timer;
use crate::model::{ExpectedVersion, IdGenerator, NewEvent, RandomIds, RecordedEvent, Timestamp};
use crate::{Error, EventStore, Metadata, Result, StreamId};

/// The category of every process manager's journal streams: one stream per instance, named
/// `<process manager>/<key>`, holding `TimerFired` and `CommandRefused` events. Projections
/// and handlers skip it unless they ask for it.
pub const JOURNAL_CATEGORY: &str = "eventloom.process";

const TIMER_FIRED: &str = "TimerFired";
const COMMAND_REFUSED: &str = "CommandRefused";

/// A journal entry as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum Entry {
    /// A timer came due.
    Timer { process: String, timer: Timer },
    /// A command was refused.
    Refused { process: String, key: String, command_id: String, reason: String, command: serde_json::Value },
}

impl Entry {
    fn process(&self) -> &str {
        match self {
            Entry::Timer { process, .. } | Entry::Refused { process, .. } => process,
        }
    }

    fn key(&self) -> &str {
        match self {
            Entry::Timer { timer, .. } => &timer.key,
            Entry::Refused { key, .. } => key,
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

/// The journal entry of process manager `name` in `raw`, if it is one of its; `Err` for a
/// journal event of its that does not decode.
pub(crate) fn entry_of(name: &str, raw: &RecordedEvent) -> Option<Result<Entry>> {
    if raw.stream.category() != JOURNAL_CATEGORY {
        return None;
    }
    let prefix = raw.stream.id().strip_prefix(name).and_then(|rest| rest.strip_prefix('/'));
    prefix?;
    match serde_json::from_str::<Entry>(&raw.payload) {
        Ok(entry) if entry.process() == name => Some(Ok(entry)),
        Ok(_) => None,
        Err(source) => Some(Err(Error::Decode {
            stream: raw.stream.clone(),
            version: raw.version,
            position: raw.position,
            event_type: raw.event_type.to_string(),
            schema_version: raw.schema_version,
            source,
        })),
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
    let stream = StreamId::new(JOURNAL_CATEGORY, format!("{}/{}", entry.process(), entry.key()))?;
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

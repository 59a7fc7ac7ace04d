//! What a process manager keeps in the view store, under its name: one view per instance (its
//! state and timers, in an index ordered by the earliest due time) and one per command in the
//! outbox (in an index ordered by the trigger's position).

use serde::{Deserialize, Serialize};

use super::Timer;
use crate::store::{IndexEntry, IndexKey, stored_view_id};

const TIMERS: (&str, &str) = ("eventloom.timers", "due");
const OUTBOX: (&str, &str) = ("eventloom.outbox", "pending");

/// The index of instances by their earliest timer's due time (microseconds).
pub(crate) fn timers_key() -> IndexKey {
    IndexKey::new(TIMERS.0, TIMERS.1)
}

/// The index of commands waiting in the outbox, in the order they were decided.
pub(crate) fn outbox_key() -> IndexKey {
    IndexKey::new(OUTBOX.0, OUTBOX.1)
}

/// The view id of instance `key`.
pub(crate) fn instance_id(key: &str) -> String {
    stored_view_id(&format!("i/{key}")).into_owned()
}

/// The view id of the outbox entry of command `command_id`.
pub(crate) fn outbox_id(command_id: &str) -> String {
    stored_view_id(&format!("o/{command_id}")).into_owned()
}

/// A timer as kept, with the correlation id its command will carry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct StoredTimer {
    pub(crate) timer: Timer,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) correlation: Option<String>,
    /// Set by a decision that issued nothing (one before the process manager started).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) quiet: bool,
    /// The trace context of the event that set it: the timer's entry, and what its reaction
    /// issues, continue that trace (a malformed one reads as none).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "crate::trace::deserialize_lenient")]
    pub(crate) trace: Option<crate::trace::TraceContext>,
}

/// One instance as kept: its state (as JSON) and its timers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Instance {
    pub(crate) state: serde_json::Value,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) timers: Vec<StoredTimer>,
}

impl Instance {
    /// Its entry in the timers' index: the earliest due time, when it has a timer.
    pub(crate) fn index(&self) -> Vec<IndexEntry> {
        let earliest = self.timers.iter().map(|t| t.timer.due.as_micros()).min();
        earliest.map(|due| IndexEntry::new(TIMERS.0, TIMERS.1).ordered_by_int(due).into_fitted()).into_iter().collect()
    }
}

/// A command in the outbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Outgoing {
    pub(crate) command: serde_json::Value,
    pub(crate) command_id: String,
    pub(crate) key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) correlation: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) causation: Option<String>,
    /// Its place in the outbox's index.
    pub(crate) order: String,
    /// When it was decided, by the process manager's clock (`None` in an entry written before
    /// it was kept: such a one is not counted as waiting too long).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) decided_at: Option<crate::model::Timestamp>,
    /// The trace context of the event it was decided on (a malformed one reads as none).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "crate::trace::deserialize_lenient")]
    pub(crate) trace: Option<crate::trace::TraceContext>,
}

impl Outgoing {
    pub(crate) fn index(&self) -> Vec<IndexEntry> {
        vec![IndexEntry::new(OUTBOX.0, OUTBOX.1).ordered_by(self.order.clone()).into_fitted()]
    }
}

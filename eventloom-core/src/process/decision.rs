//! What a process manager decides on one trigger, and the triggers that are not events.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::model::Timestamp;

/// What a process manager decided on one trigger (an event, a timer, a refusal): the commands
/// to issue, the timers to set and cancel, and whether the instance is complete. The runner
/// commits it with the new state and the checkpoint in one atomic write, then issues the
/// commands.
///
/// Times are counted from the trigger's time ([`now`](Decision::now): when the event was
/// appended), not from when it is processed, so that a replay sets every timer where it was.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use eventloom_core::model::Timestamp;
/// use eventloom_core::process::Decision;
///
/// let mut decision: Decision<&str> = Decision::at(Timestamp::from_micros(0));
/// decision.issue("reserve stock");
/// decision.schedule("payment", Duration::from_secs(900));
/// assert_eq!(decision.commands(), ["reserve stock"]);
/// assert_eq!(decision.timers()[0], ("payment".to_owned(), Timestamp::from_micros(900_000_000)));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Decision<C> {
    at: Timestamp,
    pub(crate) commands: Vec<C>,
    pub(crate) timers: Vec<(String, Timestamp)>,
    pub(crate) cancelled: Vec<String>,
    pub(crate) complete: bool,
}

impl<C> Decision<C> {
    /// An empty decision on a trigger of time `at` (the runner and `testing::ProcessTest`
    /// make them; tests of a decision's own logic may too).
    pub fn at(at: Timestamp) -> Self {
        Decision { at, commands: Vec::new(), timers: Vec::new(), cancelled: Vec::new(), complete: false }
    }

    /// The trigger's time: when its event was appended.
    pub fn now(&self) -> Timestamp {
        self.at
    }

    /// Issues `command` once this decision committed, under an id made from the process
    /// manager's name, the trigger and the command's index in the decision.
    pub fn issue(&mut self, command: C) {
        self.commands.push(command);
    }

    /// Sets timer `name` of this instance to come due `after` the trigger's time, replacing a
    /// timer of that name.
    pub fn schedule(&mut self, name: impl Into<String>, after: Duration) {
        let micros = i64::try_from(after.as_micros()).unwrap_or(i64::MAX);
        self.schedule_at(name, Timestamp::from_micros(self.at.as_micros().saturating_add(micros)));
    }

    /// Sets timer `name` of this instance to come due at `due`, replacing a timer of that name.
    pub fn schedule_at(&mut self, name: impl Into<String>, due: Timestamp) {
        let name = name.into();
        self.cancelled.retain(|n| *n != name);
        self.timers.retain(|(n, _)| *n != name);
        self.timers.push((name, due));
    }

    /// Cancels timer `name` of this instance (nothing when there is none).
    pub fn cancel(&mut self, name: impl Into<String>) {
        let name = name.into();
        self.timers.retain(|(n, _)| *n != name);
        self.cancelled.push(name);
    }

    /// Ends the instance once this decision committed: its state and timers are deleted (the
    /// commands of this decision are still issued). A later event of the same key starts a new
    /// instance from the default state.
    pub fn complete(&mut self) {
        self.complete = true;
    }

    /// The commands issued, in order.
    pub fn commands(&self) -> &[C] {
        &self.commands
    }

    /// The timers set, with their due times.
    pub fn timers(&self) -> &[(String, Timestamp)] {
        &self.timers
    }

    /// The timers cancelled.
    pub fn cancelled(&self) -> &[String] {
        &self.cancelled
    }

    /// Whether the instance is complete.
    pub fn is_complete(&self) -> bool {
        self.complete
    }
}

/// A timer of a process manager's instance that came due.
///
/// # Examples
///
/// ```
/// use eventloom_core::{model::Timestamp, process::Timer};
///
/// let timer = Timer { name: "payment".into(), key: "order-7".into(), due: Timestamp::from_micros(5), id: "t".into() };
/// assert_eq!(timer.key, "order-7");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timer {
    /// Its name, as scheduled.
    pub name: String,
    /// The instance's correlation key.
    pub key: String,
    /// When it was due.
    pub due: Timestamp,
    /// Its id: made from the process manager's name, the trigger that set it and its index.
    pub id: String,
}

/// A command a process manager issued that was refused: by its aggregate (a rejection), or as
/// invalid input that no retry mends.
///
/// # Examples
///
/// ```
/// use eventloom_core::process::Refused;
///
/// let refused = Refused { command: "reserve", reason: "out of stock".into(), command_id: "c".into(), key: "o-1".into() };
/// assert_eq!(refused.reason, "out of stock");
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Refused<C> {
    /// The command.
    pub command: C,
    /// Why: the rejection's text.
    pub reason: String,
    /// The id it was issued under.
    pub command_id: String,
    /// The instance's correlation key.
    pub key: String,
}

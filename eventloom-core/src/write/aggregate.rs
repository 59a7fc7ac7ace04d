//! The write model: aggregates, commands and their handlers.

use std::borrow::Cow;

use crate::Event;

/// A consistency boundary whose state is the fold of its events.
///
/// `apply` folds one event into the state and never fails: an event is a fact that already
/// happened. Deciding what to do with a command lives in [`Handle`], apart from folding.
///
/// # Examples
///
/// ```
/// use eventloom_core::prelude::*;
///
/// #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
/// enum CounterEvent { Incremented { by: u64 } }
///
/// #[derive(Debug, Default)]
/// struct Counter { value: u64 }
///
/// #[derive(Debug, thiserror::Error)]
/// enum CounterError { #[error("too big")] TooBig }
///
/// impl Aggregate for Counter {
///     const TYPE: &'static str = "counter";
///     type Event = CounterEvent;
///     type Error = CounterError;
///     fn apply(&mut self, event: &CounterEvent) {
///         match event { CounterEvent::Incremented { by } => self.value += by }
///     }
/// }
///
/// let mut c = Counter::default();
/// c.apply(&CounterEvent::Incremented { by: 2 });
/// assert_eq!(c.value, 2);
/// ```
pub trait Aggregate: Default + Send + Sync + 'static {
    /// The stream category of this aggregate's streams; never change it once events exist.
    const TYPE: &'static str;
    /// The version of the snapshot shape. Bump it when the aggregate's fields change: older
    /// snapshots are then ignored and the stream is replayed from its events.
    const SNAPSHOT_VERSION: u32 = 1;
    /// The events this aggregate emits and folds.
    type Event: Event;
    /// The user's rejection of a command (usually a `thiserror` enum).
    type Error: std::error::Error + Send + Sync + 'static;

    /// Folds one event into the state. Never fails.
    fn apply(&mut self, event: &Self::Event);
}

/// An intention addressed to one aggregate instance.
///
/// Derive it with `#[derive(Command)]`, naming the aggregate and marking the field that holds
/// the aggregate's id with `#[command(id)]`.
///
/// The engine executes commands that are also `serde::Serialize`
/// ([`Cqrs::execute`](crate::Cqrs::execute) bounds them so): a command is data, and one executed
/// with a command id is fingerprinted from its serialized fields (see
/// [`Fingerprint`](crate::Fingerprint)).
///
/// # Examples
///
/// ```
/// use eventloom_core::prelude::*;
/// # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)] enum CounterEvent { Incremented { by: u64 } }
/// # #[derive(Debug, Default)] struct Counter;
/// # impl Aggregate for Counter { const TYPE: &'static str = "counter"; type Event = CounterEvent;
/// #   type Error = std::convert::Infallible; fn apply(&mut self, _: &CounterEvent) {} }
///
/// #[derive(Debug, Serialize, Command)]
/// #[command(aggregate = Counter)]
/// struct Increment {
///     #[command(id)]
///     counter: String,
///     by: u64,
/// }
///
/// let cmd = Increment { counter: "c-1".into(), by: 3 };
/// assert_eq!(cmd.aggregate_id(), "c-1");
/// assert_eq!(Increment::NAME, "Increment");
/// ```
pub trait Command: Send + Sync + 'static {
    /// The aggregate this command targets.
    type Aggregate: Aggregate;
    /// A stable name for logs and traces.
    const NAME: &'static str;

    /// The id of the aggregate instance (the stream) this command targets.
    fn aggregate_id(&self) -> Cow<'_, str>;
}

/// Decides what a command means for an aggregate in its current state.
///
/// Deciding is a pure function of the state and the command: it returns the events to append,
/// or the user's error, and changes nothing itself.
///
/// # Examples
///
/// ```
/// use eventloom_core::prelude::*;
/// # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)] enum CounterEvent { Incremented { by: u64 } }
/// # #[derive(Debug, Default)] struct Counter { value: u64 }
/// # #[derive(Debug, thiserror::Error)] enum CounterError { #[error("too big")] TooBig }
/// # impl Aggregate for Counter { const TYPE: &'static str = "counter"; type Event = CounterEvent;
/// #   type Error = CounterError; fn apply(&mut self, e: &CounterEvent) { let CounterEvent::Incremented { by } = e; self.value += by; } }
/// # #[derive(Debug, Serialize, Command)] #[command(aggregate = Counter)] struct Increment { #[command(id)] counter: String, by: u64 }
/// impl Handle<Increment> for Counter {
///     fn handle(&self, cmd: &Increment) -> Result<Vec<CounterEvent>, CounterError> {
///         if self.value + cmd.by > 10 {
///             return Err(CounterError::TooBig);
///         }
///         Ok(vec![CounterEvent::Incremented { by: cmd.by }])
///     }
/// }
/// ```
pub trait Handle<C: Command<Aggregate = Self>>: Aggregate {
    /// The events `cmd` produces in this state, or why it is refused.
    fn handle(&self, cmd: &C) -> Result<Vec<Self::Event>, Self::Error>;
}

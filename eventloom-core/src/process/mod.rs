//! Process managers (sagas): workflows across aggregates that react to events by issuing
//! commands, with state of their own and durable timers.
//!
//! A [`ProcessManager`] keeps one state per *instance*, the value of a correlation key it finds
//! in the events it reads (an order id in order, payment and stock events). For each event it
//! makes a [`Decision`]: a new state, timers to set or cancel, and commands to issue. The runner
//! commits each batch's decisions in one atomic write of the view store with its checkpoint,
//! under the lease's fencing token: the new states, the timers, and the commands as an
//! *outbox*. Only once that write committed are the commands executed, each under a command id
//! made from the process manager's name, the triggering event's id and its index in the
//! decision, with its outcome (a refusal included) recorded under that id. So:
//!
//! - a crash between the commit and the execution executes the outbox on restart, and a
//!   command already executed returns its first outcome instead of running again;
//! - a deposed leader's write is refused by its fencing token: its decisions never reach the
//!   outbox, and it issues nothing;
//! - a refused command is something the process reacts to: the refusal is appended to the
//!   process's own journal (a stream of category [`JOURNAL_CATEGORY`]) under an id made from the
//!   command's, and [`on_refused`](ProcessManager::on_refused) reacts to it once, in the log's
//!   order;
//! - a timer that comes due is appended to the journal the same way, and
//!   [`on_timer`](ProcessManager::on_timer) reacts to it, unless an event read before it
//!   cancelled it.
//!
//! Because timers and refusals are events of the log, a rebuild (a new
//! [`VERSION`](ProcessManager::VERSION)) replays them with the rest and restores every state
//! without dispatching: the decisions of events the live generation had already reached issue
//! nothing again.

mod decision;
pub(crate) mod dispatch;
pub(crate) mod job;
pub(crate) mod join;
pub(crate) mod journal;
pub(crate) mod record;

use crate::{BoxError, EventEnvelope, EventSet};

pub use decision::{Decision, Refused, Timer};
pub use dispatch::{CommandSet, Dispatched, Dispatcher};
pub use journal::{JOURNAL_CATEGORY, ORIGIN_CATEGORY};

/// A workflow across aggregates: reacts to events (and to its timers and refused commands) by
/// issuing commands, with one state per instance.
///
/// Register it on an [`App`](crate::App) with
/// [`AppBuilder::process_manager`](crate::app::AppBuilder::process_manager); it runs in the
/// projector role, fed by the App's one read of the log like its projections, with a lease,
/// a checkpoint and dead letters under its [`name`](ProcessManager::name) in the view store.
/// Keep it on a durable view store (PostgreSQL): its states, timers and outbox live there.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use eventloom_core::prelude::*;
/// use eventloom_core::BoxError;
/// use eventloom_core::process::{CommandSet, Decision, Dispatched, Dispatcher, ProcessManager, Timer};
///
/// #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
/// enum OrderEvent { Placed, Paid, Cancelled }
///
/// #[derive(Debug, Default)]
/// struct Order { open: bool }
///
/// #[derive(Debug, thiserror::Error)]
/// #[error("the order is not open")]
/// struct NotOpen;
///
/// impl Aggregate for Order {
///     const TYPE: &'static str = "order";
///     type Event = OrderEvent;
///     type Error = NotOpen;
///     fn apply(&mut self, e: &OrderEvent) { self.open = matches!(e, OrderEvent::Placed); }
/// }
///
/// #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Command)]
/// #[command(aggregate = Order)]
/// struct Cancel { #[command(id)] order: String }
///
/// impl Handle<Cancel> for Order {
///     fn handle(&self, _: &Cancel) -> Result<Vec<OrderEvent>, NotOpen> {
///         if self.open { Ok(vec![OrderEvent::Cancelled]) } else { Err(NotOpen) }
///     }
/// }
///
/// #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
/// enum PaymentCommand { Cancel(Cancel) }
///
/// impl CommandSet for PaymentCommand {
///     async fn dispatch(self, to: &Dispatcher, options: ExecuteOptions) -> Dispatched {
///         match self { PaymentCommand::Cancel(c) => to.execute(c, options).await }
///     }
/// }
///
/// /// Cancels an order not paid within 15 minutes.
/// struct PaymentDeadline;
///
/// impl ProcessManager for PaymentDeadline {
///     const NAME: &'static str = "payment_deadline";
///     type Events = Order;
///     type State = ();
///     type Commands = PaymentCommand;
///
///     fn correlate(&self, event: &EventEnvelope<OrderEvent>) -> Option<String> {
///         Some(event.stream.id().to_owned())
///     }
///
///     fn on_event(&self, _: &mut (), e: &EventEnvelope<OrderEvent>, d: &mut Decision<PaymentCommand>)
///         -> Result<(), BoxError> {
///         match e.event {
///             OrderEvent::Placed => d.schedule("payment", Duration::from_secs(15 * 60)),
///             OrderEvent::Paid | OrderEvent::Cancelled => d.complete(),
///         }
///         Ok(())
///     }
///
///     fn on_timer(&self, _: &mut (), timer: &Timer, d: &mut Decision<PaymentCommand>) -> Result<(), BoxError> {
///         d.issue(PaymentCommand::Cancel(Cancel { order: timer.key.clone() }));
///         Ok(())
///     }
/// }
/// ```
pub trait ProcessManager: Send + Sync + 'static {
    /// The name under which its states, timers, outbox, checkpoint, lease and dead letters are
    /// kept, unless [`name`](ProcessManager::name) says otherwise; also the first part of the
    /// ids of the commands it issues.
    const NAME: &'static str;
    /// Raise it when `on_event`, `on_timer` or `on_refused` change what they keep in the state:
    /// the states are then rebuilt from the log (timers and refusals included) into a new
    /// generation, issuing nothing for the events the one before had reached.
    const VERSION: u32 = 1;
    /// The events it reads: an aggregate, or an enum with `#[derive(EventSet)]`.
    type Events: EventSet;
    /// The state of one instance, `Default` before its first event.
    type State: serde::Serialize + serde::de::DeserializeOwned + Default + Send + Sync + 'static;
    /// The commands it issues (see [`CommandSet`]).
    type Commands: CommandSet;

    /// The name of this instance: [`NAME`](ProcessManager::NAME) by default (1 to 255 bytes, no
    /// control characters, different from every projection's and handler's).
    fn name(&self) -> &str {
        Self::NAME
    }

    /// Whether it reads events of this type (the name once upcast) in this category; others are
    /// skipped without being decoded. By default, every type its events know.
    fn handles(&self, category: &str, event_type: &str) -> bool {
        <Self::Events as EventSet>::knows(category, event_type)
    }

    /// The instance `event` belongs to (the correlation key: an order id), or `None` when it
    /// starts or concerns none.
    fn correlate(&self, event: &EventEnvelope<<Self::Events as EventSet>::Event>) -> Option<String>;

    /// Reacts to an event of its instance: changes the state and fills `decision`. An `Err` is a
    /// poison event (stop or dead letter, by the poison policy); nothing of its decision is
    /// kept.
    fn on_event(
        &self,
        state: &mut Self::State,
        event: &EventEnvelope<<Self::Events as EventSet>::Event>,
        decision: &mut Decision<Self::Commands>,
    ) -> Result<(), BoxError>;

    /// Reacts to a timer of its instance that came due and was not cancelled before. By
    /// default, nothing.
    fn on_timer(
        &self,
        state: &mut Self::State,
        timer: &Timer,
        decision: &mut Decision<Self::Commands>,
    ) -> Result<(), BoxError> {
        let _ = (state, timer, decision);
        Ok(())
    }

    /// Reacts to a command it issued that was refused (by the aggregate, or as invalid):
    /// compensate here. By default, nothing.
    fn on_refused(
        &self,
        state: &mut Self::State,
        refused: &Refused<Self::Commands>,
        decision: &mut Decision<Self::Commands>,
    ) -> Result<(), BoxError> {
        let _ = (state, refused, decision);
        Ok(())
    }
}

//! How a process manager's commands reach their aggregates' engines.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{
    Aggregate, Command, CommandError, CommandOutcome, Cqrs, Error, ErrorKind, EventStore, ExecuteOptions, Handle,
};

/// The commands a process manager issues: usually an enum with one variant per command, kept
/// in the outbox as JSON until executed, and routed to its aggregate by
/// [`dispatch`](CommandSet::dispatch).
///
/// # Examples
///
/// ```
/// use eventloom_core::prelude::*;
/// use eventloom_core::process::{CommandSet, Dispatched, Dispatcher};
/// # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)] enum StockEvent { Reserved }
/// # #[derive(Debug, Default)] struct Stock;
/// # impl Aggregate for Stock { const TYPE: &'static str = "stock"; type Event = StockEvent;
/// #   type Error = std::convert::Infallible; fn apply(&mut self, _: &StockEvent) {} }
/// # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Command)] #[command(aggregate = Stock)]
/// # struct Reserve { #[command(id)] sku: String, order: String }
/// # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Command)] #[command(aggregate = Stock)]
/// # struct Release { #[command(id)] sku: String, order: String }
/// # impl Handle<Reserve> for Stock { fn handle(&self, _: &Reserve) -> Result<Vec<StockEvent>, std::convert::Infallible> { Ok(vec![StockEvent::Reserved]) } }
/// # impl Handle<Release> for Stock { fn handle(&self, _: &Release) -> Result<Vec<StockEvent>, std::convert::Infallible> { Ok(vec![]) } }
///
/// #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
/// enum StockCommand {
///     Reserve(Reserve),
///     Release(Release),
/// }
///
/// impl CommandSet for StockCommand {
///     async fn dispatch(self, to: &Dispatcher, options: ExecuteOptions) -> Dispatched {
///         match self {
///             StockCommand::Reserve(c) => to.execute(c, options).await,
///             StockCommand::Release(c) => to.execute(c, options).await,
///         }
///     }
/// }
/// ```
pub trait CommandSet: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// Executes this command on its aggregate's engine with `options` (they carry the command
    /// id, the correlation and causation ids, and ask for refusals to be recorded): one
    /// [`Dispatcher::execute`] per variant. Implement it as an `async fn`.
    fn dispatch(self, to: &Dispatcher, options: ExecuteOptions) -> impl Future<Output = Dispatched> + Send + '_;
}

/// What executing one issued command came to, as the process manager's runner sorts it.
///
/// # Examples
///
/// ```
/// use eventloom_core::{CommandError, Error, process::Dispatched};
///
/// let refused = Dispatched::from_result::<std::io::Error>(Err(CommandError::Rejected(std::io::Error::other("no stock"))));
/// assert!(matches!(refused, Dispatched::Refused { ref reason } if reason == "no stock"));
/// let later = Dispatched::from_result::<std::io::Error>(Err(Error::unavailable_msg("down").into()));
/// assert!(matches!(later, Dispatched::Retry { .. }));
/// ```
#[derive(Debug)]
pub enum Dispatched {
    /// Executed (or executed before under the same id: its first outcome).
    Executed(CommandOutcome),
    /// Refused by its aggregate, or invalid input no retry mends: the process manager's
    /// [`on_refused`](super::ProcessManager::on_refused) reacts to it.
    Refused {
        /// The rejection's text.
        reason: String,
    },
    /// Not executed for now (the store is unavailable, a conflict outlived its retries, the app
    /// is shutting down): it stays in the outbox and is tried again.
    Retry {
        /// What failed.
        reason: String,
    },
    /// Failed in a way no retry mends and that is not the command's fault (corrupt data, a
    /// bug): the process manager stops, the command kept in its outbox.
    Failed(Error),
}

impl Dispatched {
    /// Sorts the result of an `execute`.
    pub fn from_result<E: std::fmt::Display>(result: Result<CommandOutcome, CommandError<E>>) -> Self {
        match result {
            Ok(outcome) => Dispatched::Executed(outcome),
            Err(CommandError::Rejected(rejection)) => Dispatched::Refused { reason: rejection.to_string() },
            // Refused before under the same id (a redelivery): the same answer.
            Err(CommandError::Refused { reason, .. }) => Dispatched::Refused { reason },
            Err(error @ CommandError::Conflict { .. }) => Dispatched::Retry { reason: error.to_string() },
            // The id was used by another request: a release changed the command. Trying again
            // cannot mend it.
            Err(CommandError::Store(error @ Error::CommandIdReused { .. })) => Dispatched::Failed(error),
            Err(CommandError::Store(error)) => match error.kind() {
                ErrorKind::Unavailable | ErrorKind::NotReady | ErrorKind::Conflict => {
                    Dispatched::Retry { reason: error.to_string() }
                }
                ErrorKind::InvalidInput | ErrorKind::Rejected => Dispatched::Refused { reason: error.to_string() },
                ErrorKind::Corrupt | ErrorKind::Internal => Dispatched::Failed(error),
            },
        }
    }
}

/// The engines of an App's aggregates, by aggregate type, with each one's category.
pub(crate) type Engines = HashMap<TypeId, (Box<dyn Any + Send + Sync>, &'static str)>;

/// Executes a process manager's commands on the App's engines (see [`CommandSet`]).
#[derive(Clone)]
pub struct Dispatcher {
    engines: Arc<Engines>,
    /// How long the event store keeps command ids: a command older than half of it is not run.
    retention: std::time::Duration,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("aggregates", &self.engines.values().map(|(_, category)| category).collect::<Vec<_>>())
            .finish()
    }
}

impl Dispatcher {
    pub(crate) fn new(engines: Arc<Engines>, retention: std::time::Duration) -> Self {
        Dispatcher { engines, retention }
    }

    /// How long the App keeps the records of command ids ([`AppBuilder::command_retention`](crate::app::AppBuilder::command_retention)).
    pub(crate) fn retention(&self) -> std::time::Duration {
        self.retention
    }

    /// Executes `command` on its aggregate's engine with `options`, and sorts the outcome. An
    /// aggregate the App was not built with is a [`Dispatched::Failed`].
    pub async fn execute<C>(&self, command: C, options: ExecuteOptions) -> Dispatched
    where
        C: Command + Serialize,
        C::Aggregate: Handle<C>,
    {
        let engine = self
            .engines
            .get(&TypeId::of::<C::Aggregate>())
            .and_then(|(engine, _)| engine.downcast_ref::<Cqrs<C::Aggregate, Arc<dyn EventStore>>>());
        let Some(engine) = engine else {
            let name = <C::Aggregate as Aggregate>::TYPE.to_owned();
            return Dispatched::Failed(Error::NotRegistered { kind: "aggregate", name });
        };
        Dispatched::from_result(engine.execute_with(command, options).await)
    }
}

//! The core of eventloom, a CQRS and event-sourcing framework: the model, the command engine,
//! projections and their runner, typed readers, and the in-memory stores.
//!
//! # The parts
//!
//! An application names what the crate root holds (and [`prelude`] brings): an [`App`] built
//! from [`Stores`] that registers aggregates and projections and runs them in every [`Role`];
//! the domain's traits; the read side's traits and its typed [`Reader`]; the outcome and errors of
//! a command. The rest lives in one module per part of the architecture:
//!
//! - [`model`]: what every part shares. An [`Event`] and its [`Metadata`], in an
//!   [`EventEnvelope`] when read; events as stored ([`model::NewEvent`], [`model::RecordedEvent`],
//!   with their [`model::EventType`]); the total order of the log ([`Position`]); [`StreamId`]s;
//!   clocks and id generators that tests replace.
//! - [`write`](mod@write): the write side. An [`Aggregate`] folds its events into the state its decisions
//!   need and [`Handle`]s each [`Command`] by returning new events or its own error. The engine,
//!   [`write::Cqrs`], loads an aggregate (from a snapshot, then the newer events, in bounded
//!   batches), asks it to decide, appends with the version it decided on, and retries on
//!   conflict by its [`write::RetryPolicy`]; a command's id makes it idempotent across processes
//!   ([`write::Fingerprint`]); [`write::Upcasters`] read old event schemas.
//! - [`read`]: the read side. A [`Projection`] folds events of one or several aggregates
//!   ([`EventSet`]) into views; the [`read::Projector`] runs it, one atomic write of the changed
//!   views and the checkpoint per batch, under a lease whose fencing token the view store
//!   checks, rebuilding into a new generation when the projection's version changes; a
//!   [`read::ProjectionGroup`] feeds several from one read of the log. An [`EventHandler`] runs
//!   side effects at least once. A [`Reader`] reads views and waits for a command's position
//!   (read-your-writes).
//! - [`store`]: the interface store adapters implement: [`store::EventStore`] (appends each
//!   command's events atomically and gives every subscriber the same gap-free order),
//!   [`store::SnapshotStore`], [`store::ViewStore`] and [`store::LeaseManager`], object safe,
//!   their methods returning a [`store::BoxFuture`].
//! - [`memory`]: the embedded default stores; `eventloom-postgres` and `eventloom-redis`
//!   implement the same traits, and `testing` (feature `testing`) holds the conformance suites
//!   every store passes and the given/when/then kits.
//! - [`app`]: the [`App`]'s builder, status and options.
//!
//! The guide (the `docs/` folder of the repository) walks through each part.
//!
//! # Features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `derive` | yes | `#[derive(Command)]` and `#[derive(Event)]`, from `eventloom-macros` |
//! | `testing` | no | [`testing`]: the given/when/then kits for aggregates and projections, and the conformance suites for store adapters |
//!
//! # Examples
//!
//! ```
//! use eventloom_core::prelude::*;
//! use eventloom_core::{write::Cqrs, memory::MemoryEventStore};
//!
//! #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
//! enum LampEvent { SwitchedOn, SwitchedOff }
//!
//! #[derive(Debug, Default)]
//! struct Lamp { on: bool }
//!
//! impl Aggregate for Lamp {
//!     const TYPE: &'static str = "lamp";
//!     type Event = LampEvent;
//!     type Error = std::convert::Infallible;
//!     fn apply(&mut self, event: &LampEvent) { self.on = matches!(event, LampEvent::SwitchedOn) }
//! }
//!
//! #[derive(Debug, Serialize, Deserialize, Command)]
//! #[command(aggregate = Lamp)]
//! struct Toggle { #[command(id)] lamp: String }
//!
//! impl Handle<Toggle> for Lamp {
//!     fn handle(&self, _: &Toggle) -> Result<Vec<LampEvent>, std::convert::Infallible> {
//!         Ok(vec![if self.on { LampEvent::SwitchedOff } else { LampEvent::SwitchedOn }])
//!     }
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let app = App::builder(MemoryStores::new()).aggregate::<Lamp>().start().await.unwrap();
//! let outcome = app.execute(Toggle { lamp: "hall".into() }).await.unwrap();
//! assert_eq!(outcome.version, 1);
//! app.shutdown().await.unwrap();
//! # });
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod app;
mod error;
pub mod memory;
pub mod metrics;
pub mod model;
pub mod process;
pub mod read;
pub mod store;
pub mod trace;
pub mod write;

pub mod json;
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

// What applications name most: the rest lives in the modules above.
pub use app::{AggregateOptions, App, HandlerOptions, MemoryStores, ProjectionOptions, Role, Stores};
pub use error::{Error, ErrorKind, Result};
pub use model::{Event, EventEnvelope, Metadata, Position, StreamId};
pub use process::ProcessManager;
pub use read::{BoxError, EventHandler, EventSet, Projection, Reader};
pub use store::IndexEntry;
pub use write::{Aggregate, Command, CommandError, CommandOutcome, ExecuteOptions, Handle};

#[cfg(feature = "derive")]
#[cfg_attr(docsrs, doc(cfg(feature = "derive")))]
pub use eventloom_macros::{Command, Event, EventSet};

// Inside the crate every name is reachable from the root, as before the modules were public.
#[allow(unused_imports)]
pub(crate) use {
    app::{AppBuilder, AppStatus, ProjectionHealth, RunState},
    memory::{MemoryEventStore, MemoryLeases, MemorySnapshotStore, MemoryViewStore},
    model::{
        Clock, DecodeError, EventType, ExpectedVersion, IdGenerator, ManualClock, NewEvent, RandomIds, RecordedEvent,
        SequentialIds, StoredMetadata, SystemClock, Timestamp, validate_command_id,
    },
    read::{
        EventOf, Feed, FeedReader, MemberHandle, MemberState, MemberStatus, OrderRange, Page, PoisonPolicy,
        ProjectionGroup, Projector, Subscription, ViewReader,
    },
    store::{
        AppendOutcome, BoxFuture, CommandRecord, DeadLetter, EventStore, Generation, IndexKey, Lease, LeaseManager,
        ListCursor, ProjectionStatus, ProjectionStop, Snapshot, SnapshotStore, StopKind, ViewCommit, ViewPage,
        ViewStore, ViewWrite, stored_view_id, within_bytes,
    },
    write::{Cqrs, Fingerprint, RetryPolicy, SnapshotPolicy, Upcasters},
};

/// What an application's code names: `use eventloom_core::prelude::*;` brings the App and its
/// options, the traits (and derives) of the domain and of projections, the reader, and serde's
/// two derives. It leaves out `Result`, so that it never shadows the standard one.
///
/// # Examples
///
/// ```
/// use eventloom_core::prelude::*;
///
/// #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
/// enum BellEvent { Rang }
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let app = App::builder(MemoryStores::new()).role(Role::All).start().await.unwrap();
/// app.shutdown().await.unwrap();
/// # });
/// ```
pub mod prelude {
    pub use crate::{Aggregate, Command, Event, EventSet, Handle, MemoryStores};
    pub use crate::{
        AggregateOptions, App, BoxError, CommandOutcome, Error, EventEnvelope, EventHandler, ExecuteOptions,
        HandlerOptions, IndexEntry, Metadata, Position, ProcessManager, Projection, ProjectionOptions, Reader, Role,
        Stores, StreamId,
    };
    pub use serde::{Deserialize, Serialize};
}

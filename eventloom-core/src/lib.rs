//! The core of eventloom, a CQRS and event-sourcing framework: the model, the command engine,
//! projections and their runner, typed readers, and the in-memory stores.
//!
//! # The parts
//!
//! - **The write side.** An [`Aggregate`] folds its [`Event`]s into the state its decisions
//!   need; it [`Handle`]s each [`Command`] by returning new events or its own error. The engine,
//!   [`Cqrs`], loads an aggregate (from a snapshot, then the newer events, in bounded batches),
//!   asks it to decide, appends with the version it decided on, and retries on conflict by its
//!   [`RetryPolicy`]. A command's id makes it idempotent across processes.
//! - **The log.** An [`EventStore`] appends each command's events atomically and gives every
//!   subscriber the same total, gap-free order by [`Position`]; stored events carry their type
//!   name, schema version and [`Metadata`], and are upcast ([`Upcasters`]) and decoded lazily.
//! - **The read side.** A [`Projection`] folds events into views; the [`Projector`] runs it, one
//!   atomic write of the changed views and the checkpoint per batch, under a [`Lease`] whose
//!   fencing token the [`ViewStore`] checks, rebuilding into a new generation when the
//!   projection's version changes. A [`ViewReader`] reads the views and waits for a command's
//!   position (read-your-writes).
//! - **The stores.** [`MemoryEventStore`], [`MemorySnapshotStore`], [`MemoryViewStore`] and
//!   [`MemoryLeases`] are the embedded default; `eventloom-postgres` and `eventloom-redis`
//!   implement the same traits, and [`testing`] holds the conformance suites every store passes.
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
//! use eventloom_core::{Cqrs, MemoryEventStore};
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
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let engine = Cqrs::new(MemoryEventStore::new());
//! let outcome = engine.execute(Toggle { lamp: "hall".into() }).await.unwrap();
//! assert_eq!(outcome.version, 1);
//! # });
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]

mod app;
mod error;
mod memory;
mod model;
mod read;
mod store;
mod write;

pub mod json;
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

pub use app::{
    AggregateOptions, App, AppBuilder, AppStatus, DEFAULT_DRAIN_TIMEOUT, HandlerOptions, MemoryStores,
    ProjectionHealth, ProjectionOptions, Role, RunState, Stores,
};
pub use error::{Error, ErrorKind, Result};
pub use memory::{MemoryEventStore, MemoryLeases, MemorySnapshotStore, MemoryViewStore};
pub use model::clock::{Clock, IdGenerator, ManualClock, RandomIds, SequentialIds, SystemClock};
pub use model::event::{
    DecodeError, Event, EventEnvelope, EventType, Metadata, NewEvent, RecordedEvent, StoredMetadata, Timestamp,
};
pub use model::position::Position;
pub use model::stream::{
    ExpectedVersion, MAX_CATEGORY_LEN, MAX_COMMAND_ID_LEN, MAX_ID_LEN, StreamId, validate_command_id,
};
pub use read::event_set::EventSet;
pub use read::feed::{Feed, FeedReader};
pub use read::group::{DEFAULT_MEMBER_BUFFER, MemberHandle, MemberState, MemberStatus, ProjectionGroup};
pub use read::projection::{BoxError, DEFAULT_PROJECTOR_BATCH, EventOf, PoisonPolicy, Projection};
pub use read::projector::Projector;
pub use read::projector::handler::EventHandler;
pub use read::reader::{Page, Reader, ViewReader};
pub use read::subscription::{DEFAULT_BATCH_BYTES, DEFAULT_POLL_INTERVAL, DEFAULT_SUBSCRIPTION_BATCH, Subscription};
pub use store::lease::{Lease, LeaseManager};
pub use store::view::{
    DeadLetter, Generation, IndexEntry, IndexKey, ListCursor, MAX_INDEX_NAME_LEN, MAX_INDEX_VALUE_LEN, MAX_ORDER_LEN,
    OrderRange, ProjectionStatus, ProjectionStop, StopKind, ViewCommit, ViewPage, ViewStore, ViewWrite, stored_view_id,
};
pub use store::{AppendOutcome, CommandRecord, EventStore, Snapshot, SnapshotStore, within_bytes};
pub use write::aggregate::{Aggregate, Command, Handle};
pub use write::engine::{
    CommandError, CommandOutcome, Cqrs, DEFAULT_BATCH_SIZE, DEFAULT_CACHE_CAPACITY, ExecuteOptions, SnapshotPolicy,
};
pub use write::fingerprint::Fingerprint;
pub use write::retry::{
    DEFAULT_INITIAL_DELAY, DEFAULT_MAX_ATTEMPTS, DEFAULT_MAX_DELAY, DEFAULT_RETRY_BUDGET, RetryPolicy,
};
pub use write::upcast::Upcasters;

#[cfg(feature = "derive")]
#[cfg_attr(docsrs, doc(cfg(feature = "derive")))]
pub use eventloom_macros::{Command, Event, EventSet};

#[doc(no_inline)]
pub use async_trait::async_trait;

/// The names most programs need: `use eventloom_core::prelude::*;`.
pub mod prelude {
    pub use crate::{
        Aggregate, Command, Event, EventEnvelope, EventType, ExpectedVersion, Handle, Metadata, NewEvent, Position,
        RecordedEvent, StoredMetadata, StreamId, Timestamp,
    };
    pub use crate::{App, MemoryStores, Reader, Role, Stores};
    pub use serde::{Deserialize, Serialize};
}

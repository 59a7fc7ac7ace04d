//! The model, the engine and the in-memory stores of a CQRS and event-sourcing framework.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod aggregate;
mod clock;
mod engine;
mod error;
mod event;
mod lease;
mod memory;
mod position;
mod projection;
mod query;
mod retry;
mod store;
mod stream;
mod subscription;
mod upcast;
mod view;

pub mod json;
#[cfg(feature = "testing")]
pub mod testing;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

pub use aggregate::{Aggregate, Command, Handle};
pub use clock::{Clock, IdGenerator, ManualClock, RandomIds, SequentialIds, SystemClock};
pub use engine::{
    CommandError, CommandOutcome, Cqrs, DEFAULT_BATCH_SIZE, DEFAULT_CACHE_CAPACITY, ExecuteOptions, SnapshotPolicy,
};
pub use error::{Error, Result};
pub use event::{
    DecodeError, Event, EventEnvelope, EventType, Metadata, NewEvent, RecordedEvent, StoredMetadata, Timestamp,
};
pub use lease::{Lease, LeaseManager};
pub use memory::{MemoryEventStore, MemoryLeases, MemorySnapshotStore, MemoryViewStore};
pub use position::Position;
pub use projection::{BoxError, DEFAULT_PROJECTOR_BATCH, EventOf, PoisonPolicy, Projection, Projector};
pub use query::{Page, Query, QueryHandler, ViewReader};
pub use retry::{DEFAULT_INITIAL_DELAY, DEFAULT_MAX_ATTEMPTS, DEFAULT_MAX_DELAY, DEFAULT_RETRY_BUDGET, RetryPolicy};
pub use store::{AppendOutcome, EventStore, Snapshot, SnapshotStore, within_bytes};
pub use stream::{ExpectedVersion, MAX_CATEGORY_LEN, MAX_COMMAND_ID_LEN, MAX_ID_LEN, StreamId, validate_command_id};
pub use subscription::{DEFAULT_BATCH_BYTES, DEFAULT_POLL_INTERVAL, DEFAULT_SUBSCRIPTION_BATCH, Subscription};
pub use upcast::Upcasters;
pub use view::{
    DeadLetter, Generation, IndexEntry, IndexKey, ListCursor, MAX_INDEX_NAME_LEN, MAX_INDEX_VALUE_LEN, MAX_ORDER_LEN,
    ProjectionStatus, ProjectionStop, StopKind, ViewCommit, ViewPage, ViewStore, ViewWrite, stored_view_id,
};

#[cfg(feature = "derive")]
pub use eventloom_macros::{Command, Event};

#[doc(no_inline)]
pub use async_trait::async_trait;

/// The names most programs need: `use eventloom_core::prelude::*;`.
pub mod prelude {
    pub use crate::{
        Aggregate, Command, Event, EventEnvelope, EventType, ExpectedVersion, Handle, Metadata, NewEvent, Position,
        RecordedEvent, StoredMetadata, StreamId, Timestamp,
    };
    pub use serde::{Deserialize, Serialize};
}

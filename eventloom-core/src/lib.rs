//! The model, the engine and the in-memory stores of a CQRS and event-sourcing framework.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod error;
mod memory;
mod model;
mod read;
mod store;
mod write;

pub mod json;
#[cfg(feature = "testing")]
pub mod testing;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

pub use error::{Error, Result};
pub use memory::{MemoryEventStore, MemoryLeases, MemorySnapshotStore, MemoryViewStore};
pub use model::clock::{Clock, IdGenerator, ManualClock, RandomIds, SequentialIds, SystemClock};
pub use model::event::{
    DecodeError, Event, EventEnvelope, EventType, Metadata, NewEvent, RecordedEvent, StoredMetadata, Timestamp,
};
pub use model::position::Position;
pub use model::stream::{
    ExpectedVersion, MAX_CATEGORY_LEN, MAX_COMMAND_ID_LEN, MAX_ID_LEN, StreamId, validate_command_id,
};
pub use read::feed::{Feed, FeedReader};
pub use read::group::{DEFAULT_MEMBER_BUFFER, MemberHandle, MemberState, MemberStatus, ProjectionGroup};
pub use read::projection::{BoxError, DEFAULT_PROJECTOR_BATCH, EventOf, PoisonPolicy, Projection};
pub use read::projector::Projector;
pub use read::reader::{Page, Query, QueryHandler, ViewReader};
pub use read::subscription::{DEFAULT_BATCH_BYTES, DEFAULT_POLL_INTERVAL, DEFAULT_SUBSCRIPTION_BATCH, Subscription};
pub use store::lease::{Lease, LeaseManager};
pub use store::view::{
    DeadLetter, Generation, IndexEntry, IndexKey, ListCursor, MAX_INDEX_NAME_LEN, MAX_INDEX_VALUE_LEN, MAX_ORDER_LEN,
    ProjectionStatus, ProjectionStop, StopKind, ViewCommit, ViewPage, ViewStore, ViewWrite, stored_view_id,
};
pub use store::{AppendOutcome, EventStore, Snapshot, SnapshotStore, within_bytes};
pub use write::aggregate::{Aggregate, Command, Handle};
pub use write::engine::{
    CommandError, CommandOutcome, Cqrs, DEFAULT_BATCH_SIZE, DEFAULT_CACHE_CAPACITY, ExecuteOptions, SnapshotPolicy,
};
pub use write::retry::{
    DEFAULT_INITIAL_DELAY, DEFAULT_MAX_ATTEMPTS, DEFAULT_MAX_DELAY, DEFAULT_RETRY_BUDGET, RetryPolicy,
};
pub use write::upcast::Upcasters;

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

//! The model, the engine and the in-memory stores of a CQRS and event-sourcing framework.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod aggregate;
mod error;
mod event;
mod position;
mod store;
mod stream;
mod upcast;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

pub use aggregate::{Aggregate, Command, Handle};
pub use error::{Error, Result};
pub use event::{DecodeError, Event, EventEnvelope, EventType, Metadata, NewEvent, RecordedEvent, Timestamp};
pub use position::Position;
pub use store::{AppendOutcome, EventStore, Snapshot, SnapshotStore};
pub use stream::{ExpectedVersion, StreamId, MAX_CATEGORY_LEN, MAX_ID_LEN};
pub use upcast::Upcasters;

#[cfg(feature = "derive")]
pub use cqrs_macros::{Command, Event};

/// The names most programs need: `use cqrs_core::prelude::*;`.
pub mod prelude {
    pub use crate::{
        Aggregate, Command, Event, EventEnvelope, EventType, ExpectedVersion, Handle, Metadata, NewEvent,
        Position, RecordedEvent, StreamId, Timestamp,
    };
    pub use serde::{Deserialize, Serialize};
}

//! The model every part shares: events and their metadata, positions, stream ids, the clock.

pub(crate) mod clock;
pub(crate) mod event;
pub(crate) mod position;
pub(crate) mod stream;

pub use clock::{Clock, IdGenerator, ManualClock, RandomIds, SequentialIds, SystemClock};
pub use event::{
    DecodeError, Event, EventEnvelope, EventRef, EventType, Metadata, NewEvent, RecordedEvent, StoredMetadata,
    Timestamp,
};
pub use position::Position;
pub use stream::{ExpectedVersion, StreamId, validate_command_id};

//! The model every part shares: events and their metadata, positions, stream ids, the clock.

pub(crate) mod clock;
pub(crate) mod event;
pub(crate) mod position;
pub(crate) mod stream;

//! The read side: projections fold events into views, the projector runs them, subscriptions
//! feed it, readers answer queries.

pub(crate) mod event_set;
pub(crate) mod feed;
pub(crate) mod fold;
pub(crate) mod group;
pub(crate) mod projection;
pub(crate) mod projector;
pub(crate) mod reader;
mod run;
pub(crate) mod subscription;

//! Redis adapters for `cqrs-core`: read models (views) and projection checkpoints.
//!
//! [`RedisViewStore`] implements `cqrs_core::ViewStore`: a batch's views and the projection's
//! checkpoint are written by one Lua script that first checks the checkpoint and the fencing
//! token, and every key types, so a replay after a crash or a deposed leader changes nothing.
//! One projection's keys share a hash tag, so the script touches a single cluster slot.

mod error;
mod keys;
mod view_store;

pub use error::{Error, Result};
pub use view_store::{DEFAULT_PREFIX, RedisViewStore};

/// The names most programs need.
pub mod prelude {
    pub use crate::RedisViewStore;
}

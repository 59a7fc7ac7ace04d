//! PostgreSQL adapters for `cqrs-core`: the event store, snapshots and gap-free subscriptions.
//!
//! # Feature flags
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `tls` | no | TLS connections with rustls (on `ring`) and the webpki root certificates |

mod config;
mod connect;
mod error;
mod event_store;
mod holdback;
mod schema;
mod snapshot_store;

pub use config::{DEFAULT_MAX_EVENT_SIZE, DEFAULT_POOL_SIZE, PgConfig};
pub use error::{Error, Result};
pub use event_store::PgEventStore;
pub use holdback::{Blocker, Holdback};
pub use snapshot_store::PgSnapshotStore;

/// The names most programs need.
pub mod prelude {
    pub use crate::{PgConfig, PgEventStore, PgSnapshotStore};
}

//! PostgreSQL adapters for `eventloom-core`: the event store, snapshots, gap-free subscriptions,
//! generations of views with their secondary indexes and checkpoints, and projector leases.
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
mod lease;
mod schema;
mod snapshot_store;
mod stores;
mod view_store;

pub use config::{DEFAULT_MAX_EVENT_SIZE, DEFAULT_POOL_SIZE, PgConfig};
pub use error::{Error, Result};
pub use event_store::PgEventStore;
pub use holdback::{Blocker, Holdback};
pub use lease::PgLeases;
pub use snapshot_store::PgSnapshotStore;
pub use stores::PgStores;
pub use view_store::PgViewStore;

/// The names most programs need.
pub mod prelude {
    pub use crate::{PgConfig, PgEventStore, PgLeases, PgSnapshotStore, PgStores, PgViewStore};
}

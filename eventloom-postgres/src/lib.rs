//! PostgreSQL adapters for `eventloom-core`: the event store, snapshots, gap-free subscriptions,
//! generations of views with their secondary indexes and checkpoints, and projector leases.
//!
//! # Feature flags
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `tls` | no | TLS connections with rustls (on `ring`) and the webpki root certificates |
//! | `interop` | no | the pre-1.0 crates underneath, for what this crate does not wrap: `PgEventStore::pool` (the `deadpool-postgres` pool itself, for statements of your own) and `PgConfig::from_config` (from a `tokio_postgres::Config`). They follow the versions this crate depends on, outside its semver promise |

mod config;
mod connect;
mod db;
mod error;
mod event_store;
mod holdback;
mod lease;
mod migrations;
mod schema;
mod snapshot_store;
mod stores;
mod view_notices;
mod view_store;

pub use config::{DEFAULT_MAX_EVENT_SIZE, DEFAULT_POOL_SIZE, PgConfig, PoolStatus};
pub use error::{Error, Result};
pub use event_store::PgEventStore;
pub use holdback::{Blocker, Holdback, ReplicaLag};
pub use lease::PgLeases;
pub use migrations::{AppliedMigration, SchemaVersion};
pub use snapshot_store::PgSnapshotStore;
pub use stores::PgStores;
pub use view_store::PgViewStore;

/// The names most programs need.
pub mod prelude {
    pub use crate::{PgConfig, PgEventStore, PgLeases, PgSnapshotStore, PgStores, PgViewStore};
}

//! [`PgStores`]: the bundle of PostgreSQL stores an `App` runs on.

use eventloom_core::Stores;

use crate::{PgConfig, PgEventStore, PgLeases, PgSnapshotStore, PgViewStore, Result};

/// Events, snapshots, views and leases in one PostgreSQL schema, on one connection pool (the
/// leases hold connections of their own): the bundle an [`App`](eventloom_core::App) runs on,
/// shared between processes, so every [`Role`](eventloom_core::Role) can run apart. Put the
/// views on Redis with `Stores::from(pg).with_views(redis_views)`.
///
/// # Examples
///
/// ```no_run
/// use eventloom_core::{App, Stores};
/// use eventloom_postgres::PgStores;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let pg = PgStores::connect("postgres://app:s3cret@127.0.0.1/app").await?;
/// let app = App::builder(pg).start().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PgStores {
    /// The event store (and its pool, which the others share).
    pub events: PgEventStore,
    /// The snapshot store.
    pub snapshots: PgSnapshotStore,
    /// The view store.
    pub views: PgViewStore,
    /// The projectors' leases.
    pub leases: PgLeases,
}

impl PgStores {
    /// Connects to `url` (schema `public` unless the URL's settings say otherwise, see
    /// [`PgConfig::from_url`]) and applies the migrations.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with(PgConfig::from_url(url)?).await
    }

    /// Connects with `config` and applies the migrations (several processes may run them at
    /// once: see [`PgEventStore::migrate`]).
    pub async fn connect_with(config: PgConfig) -> Result<Self> {
        let stores = Self::connect_unmigrated(config).await?;
        stores.events.migrate().await?;
        Ok(stores)
    }

    /// Connects with `config` without touching the schema: for processes whose database user
    /// may not change it (the migrations run elsewhere, e.g. at deploy time).
    pub async fn connect_unmigrated(config: PgConfig) -> Result<Self> {
        Ok(Self::from_event_store(PgEventStore::connect(config).await?))
    }

    /// The other stores made from a connected event store (sharing its pool and schema).
    pub fn from_event_store(events: PgEventStore) -> Self {
        PgStores {
            snapshots: PgSnapshotStore::new(&events),
            views: PgViewStore::new(&events),
            leases: PgLeases::new(&events),
            events,
        }
    }
}

impl From<PgStores> for Stores {
    fn from(pg: PgStores) -> Self {
        Stores::new(pg.events, pg.views)
            .with_snapshots(pg.snapshots)
            .with_leases(pg.leases)
            .shared(true)
            .described_as("postgres")
    }
}

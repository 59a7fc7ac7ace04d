//! The stores the command line names: PostgreSQL always, Redis for the views when given.

use eventloom_core::Stores;
use eventloom_postgres::{PgConfig, PgEventStore, PgStores};
use eventloom_redis::{RedisConfig, RedisViewStore};

use crate::cli::StoreArgs;
use crate::{Error, Result};

/// What an application says its stores are when the command line does not: the schema and
/// the Redis prefix it runs with.
#[derive(Debug, Clone, Default)]
pub(crate) struct Defaults {
    pub(crate) schema: Option<String>,
    pub(crate) prefix: Option<String>,
}

/// The stores of one admin command.
pub(crate) struct Target {
    /// The event store (and its schema).
    pub(crate) pg: PgEventStore,
    /// Events, snapshots, views and leases as the application runs on them.
    pub(crate) stores: Stores,
}

/// Whether a command reads the views (and so needs Redis when the views are there).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Needs {
    /// The log alone.
    Events,
    /// The views too.
    Views,
}

impl Target {
    /// Connects to what `args` names (with the application's `defaults`), without migrating.
    pub(crate) async fn connect(args: &StoreArgs, defaults: &Defaults, needs: Needs) -> Result<Target> {
        let url = non_empty(&args.database_url).ok_or_else(|| {
            Error::Usage("no PostgreSQL to work on: give --database-url URL or set DATABASE_URL".to_owned())
        })?;
        let mut config = PgConfig::from_url(url)?;
        if let Some(schema) = non_empty(&args.schema).or(defaults.schema.as_deref()) {
            config = config.schema(schema)?;
        }
        // One admin command needs few connections.
        let config = config.pool_size(4);
        let pg = PgStores::connect_unmigrated(config).await?;
        let events = pg.events.clone();
        let mut stores: Stores = pg.into();
        if let (Needs::Views, Some(url)) = (needs, non_empty(&args.redis_url)) {
            let prefix =
                non_empty(&args.redis_prefix).or(defaults.prefix.as_deref()).unwrap_or(eventloom_redis::DEFAULT_PREFIX);
            let cluster = url.contains(',');
            let config = if cluster { RedisConfig::from_cluster_urls(url)? } else { RedisConfig::from_url(url)? };
            let views = RedisViewStore::connect_with(config.prefix(prefix)?).await?;
            let description = if cluster { "postgres+redis-cluster" } else { "postgres+redis" };
            stores = stores.with_views(views).described_as(description);
        }
        Ok(Target { pg: events, stores })
    }

    /// Fails with [`Error::NotMigrated`] unless the schema holds the tables.
    pub(crate) async fn ensure_migrated(&self, program: &str) -> Result<()> {
        let schema = self.pg.schema_version().await?;
        if schema.is_migrated() {
            return Ok(());
        }
        Err(Error::NotMigrated { schema: schema.schema, program: program.to_owned() })
    }
}

fn non_empty(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|v| !v.is_empty())
}

//! Choosing the stores from the environment.

use eventloom_core::{MemoryStores, Stores};

/// The PostgreSQL URL: events, snapshots, views and leases (feature `postgres`).
const DATABASE_URL: &str = "DATABASE_URL";
/// The Redis URL: the views (feature `redis`; needs `DATABASE_URL`).
const REDIS_URL: &str = "REDIS_URL";
/// The PostgreSQL schema of the tables (default: the URL's, else `public`).
const SCHEMA: &str = "EVENTLOOM_SCHEMA";
/// The prefix of every Redis key (default: the Redis adapter's `DEFAULT_PREFIX`).
const REDIS_PREFIX: &str = "EVENTLOOM_REDIS_PREFIX";
/// A streaming replica of the PostgreSQL at `DATABASE_URL`, to read the log from.
const READ_REPLICA_URL: &str = "EVENTLOOM_READ_REPLICA_URL";

/// Why [`stores_from_env`] (or [`StoresConfig::connect`]) found no stores.
///
/// # Examples
///
/// ```
/// let e = eventloom::StoresError::FeatureDisabled { variable: "DATABASE_URL", feature: "postgres" };
/// assert!(e.to_string().contains("feature `postgres`"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoresError {
    /// A URL is set, but the program was built without the feature that uses it: running on
    /// memory instead would lose every write, so it refuses. Also what a program built with
    /// `redis` alone gets for `DATABASE_URL` when told to ignore it, as `REDIS_URL` needs it.
    #[error(
        "{variable} is set, but this program was built without the eventloom feature `{feature}`: \
         enable it, or unset {variable} to go without it"
    )]
    FeatureDisabled {
        /// The environment variable.
        variable: &'static str,
        /// The feature it needs.
        feature: &'static str,
    },
    /// `REDIS_URL` without `DATABASE_URL`: views on Redis over events in memory would outlive
    /// the events they were built from.
    #[error("REDIS_URL is set without DATABASE_URL: Redis views need their events in PostgreSQL")]
    RedisWithoutPostgres,
    /// `EVENTLOOM_READ_REPLICA_URL` without `DATABASE_URL`: a replica of no primary.
    #[error("EVENTLOOM_READ_REPLICA_URL is set without DATABASE_URL: a read replica needs its primary")]
    ReplicaWithoutPostgres,
    /// PostgreSQL refused the settings, could not be reached, or the migrations failed.
    #[cfg(feature = "postgres")]
    #[error("PostgreSQL stores: {0}")]
    Postgres(#[source] eventloom_postgres::Error),
    /// Redis refused the settings or could not be reached.
    #[cfg(feature = "redis")]
    #[error("Redis views: {0}")]
    Redis(#[source] eventloom_redis::Error),
}

/// Which stores to build: memory, PostgreSQL, PostgreSQL with Redis views. Read from the
/// environment with [`from_env`](Self::from_env), or set in code.
///
/// | `DATABASE_URL` | `REDIS_URL` | stores |
/// |---|---|---|
/// | unset | unset | [`MemoryStores`] |
/// | set (feature `postgres`) | unset | PostgreSQL: events, snapshots, views, leases |
/// | set (feature `postgres`) | set (feature `redis`) | PostgreSQL, with the views on Redis |
/// | unset | set | refused: [`StoresError::RedisWithoutPostgres`] |
///
/// `REDIS_URL` may list the nodes of a Redis Cluster, comma-separated
/// (`redis://10.0.0.1:7000,redis://10.0.0.2:7000`): the views are then on the cluster.
/// `EVENTLOOM_READ_REPLICA_URL` names a streaming replica of the PostgreSQL at `DATABASE_URL`
/// that the log is read from (subscriptions, projections, stream loads); it needs
/// `DATABASE_URL` ([`StoresError::ReplicaWithoutPostgres`]).
///
/// A URL set without its feature is refused ([`StoresError::FeatureDisabled`]), unless
/// [`ignore_missing_features`](Self::ignore_missing_features) says to go without it. Empty
/// variables count as unset.
///
/// # Examples
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let stores = eventloom::StoresConfig::memory().connect().await.unwrap();
/// assert_eq!(stores.description(), "memory");
/// let refused = eventloom::StoresConfig::memory().redis_url("redis://127.0.0.1/").connect().await;
/// assert!(matches!(refused, Err(eventloom::StoresError::RedisWithoutPostgres)));
/// # });
/// ```
#[derive(Clone)]
pub struct StoresConfig {
    database_url: Option<String>,
    read_replica_url: Option<String>,
    redis_url: Option<String>,
    schema: Option<String>,
    prefix: Option<String>,
    migrate: bool,
    ignore_missing_features: bool,
}

impl std::fmt::Debug for StoresConfig {
    // URLs may hold passwords: only say whether they are set.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoresConfig")
            .field("database_url", &self.database_url.as_ref().map(|_| "<set>"))
            .field("read_replica_url", &self.read_replica_url.as_ref().map(|_| "<set>"))
            .field("redis_url", &self.redis_url.as_ref().map(|_| "<set>"))
            .field("schema", &self.schema)
            .field("prefix", &self.prefix)
            .field("migrate", &self.migrate)
            .field("ignore_missing_features", &self.ignore_missing_features)
            .finish()
    }
}

impl StoresConfig {
    /// Memory: no URL set.
    pub fn memory() -> Self {
        StoresConfig {
            database_url: None,
            read_replica_url: None,
            redis_url: None,
            schema: None,
            prefix: None,
            migrate: true,
            ignore_missing_features: false,
        }
    }

    /// From the process's environment: `DATABASE_URL`, `REDIS_URL` (one node, or a cluster's
    /// nodes comma-separated), `EVENTLOOM_READ_REPLICA_URL` (a streaming replica to read the log
    /// from), `EVENTLOOM_SCHEMA` (the PostgreSQL schema; default the URL's, else `public`) and
    /// `EVENTLOOM_REDIS_PREFIX` (the prefix of every Redis key).
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        StoresConfig {
            database_url: var(DATABASE_URL),
            read_replica_url: var(READ_REPLICA_URL),
            redis_url: var(REDIS_URL),
            schema: var(SCHEMA),
            prefix: var(REDIS_PREFIX),
            ..StoresConfig::memory()
        }
    }

    /// Events, snapshots, views and leases on the PostgreSQL at `url`.
    pub fn database_url(mut self, url: impl Into<String>) -> Self {
        self.database_url = Some(url.into());
        self
    }

    /// The log read from the streaming replica at `url` of the PostgreSQL at
    /// [`database_url`](Self::database_url) (which takes the writes).
    pub fn read_replica_url(mut self, url: impl Into<String>) -> Self {
        self.read_replica_url = Some(url.into());
        self
    }

    /// The views on the Redis at `url`, or on the Redis Cluster whose nodes `url` lists,
    /// comma-separated.
    pub fn redis_url(mut self, url: impl Into<String>) -> Self {
        self.redis_url = Some(url.into());
        self
    }

    /// The PostgreSQL schema of the tables.
    pub fn schema(mut self, name: impl Into<String>) -> Self {
        self.schema = Some(name.into());
        self
    }

    /// The prefix of every Redis key.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Some(prefix.into());
        self
    }

    /// Whether to apply the PostgreSQL migrations when connecting (default yes).
    pub fn migrate(mut self, migrate: bool) -> Self {
        self.migrate = migrate;
        self
    }

    /// Goes without a URL whose feature this program was built without, with a warning in the
    /// log, instead of refusing it (default: refused, [`StoresError::FeatureDisabled`]): without
    /// `postgres` the stores are memory, without `redis` the views stay with the events. For a
    /// program whose features must stay additive (a build without a feature still runs where
    /// the variables are set), at the cost of running on what it has. Redis views still need
    /// their events in PostgreSQL: built with `redis` alone, with both URLs set, it fails with
    /// [`StoresError::FeatureDisabled`] for `DATABASE_URL` (the feature it lacks).
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// # #[cfg(not(feature = "postgres"))] {
    /// let config = eventloom::StoresConfig::memory().database_url("postgres://127.0.0.1/app");
    /// assert!(config.clone().connect().await.is_err(), "refused by default");
    /// let stores = config.ignore_missing_features(true).connect().await.unwrap();
    /// assert_eq!(stores.description(), "memory");
    /// # }
    /// # });
    /// ```
    pub fn ignore_missing_features(mut self, ignore: bool) -> Self {
        self.ignore_missing_features = ignore;
        self
    }

    /// Drops the URLs of the features this program lacks, when told to go without them; whether
    /// it dropped `DATABASE_URL`.
    fn without_missing_features(mut self) -> (Self, bool) {
        if !self.ignore_missing_features {
            return (self, false);
        }
        let database_dropped = !cfg!(feature = "postgres") && self.database_url.take().is_some();
        if database_dropped {
            tracing::warn!("{DATABASE_URL} is set, but this program was built without the `postgres` feature: ignored");
        }
        if !cfg!(feature = "postgres") && self.read_replica_url.take().is_some() {
            tracing::warn!(
                "{READ_REPLICA_URL} is set, but this program was built without the `postgres` feature: ignored"
            );
        }
        if !cfg!(feature = "redis") && self.redis_url.take().is_some() {
            tracing::warn!("{REDIS_URL} is set, but this program was built without the `redis` feature: ignored");
        }
        (self, database_dropped)
    }

    /// Connects the stores this configuration names.
    pub async fn connect(self) -> Result<Stores, StoresError> {
        let (config, database_dropped) = self.without_missing_features();
        match (&config.database_url, &config.redis_url) {
            (None, None) if config.read_replica_url.is_some() => Err(StoresError::ReplicaWithoutPostgres),
            (None, None) => Ok(MemoryStores::new().into()),
            // DATABASE_URL is set: what is missing is the feature that reads it.
            (None, Some(_)) if database_dropped => {
                Err(StoresError::FeatureDisabled { variable: DATABASE_URL, feature: "postgres" })
            }
            (None, Some(_)) => Err(StoresError::RedisWithoutPostgres),
            (Some(url), redis) => {
                let stores = config.postgres(url).await?;
                match redis {
                    None => Ok(stores),
                    Some(url) => config.with_redis_views(stores, url).await,
                }
            }
        }
    }

    #[cfg(feature = "postgres")]
    async fn postgres(&self, url: &str) -> Result<Stores, StoresError> {
        use eventloom_postgres::{PgConfig, PgStores};
        let mut config = PgConfig::from_url(url).map_err(StoresError::Postgres)?;
        if let Some(schema) = &self.schema {
            config = config.schema(schema.clone()).map_err(StoresError::Postgres)?;
        }
        if let Some(replica) = &self.read_replica_url {
            config = config.read_replica(replica).map_err(StoresError::Postgres)?;
        }
        let stores = if self.migrate {
            PgStores::connect_with(config).await
        } else {
            PgStores::connect_unmigrated(config).await
        };
        let stores: Stores = stores.map_err(StoresError::Postgres)?.into();
        Ok(match &self.read_replica_url {
            Some(_) => {
                let description = format!("{}+replica", stores.description());
                stores.described_as(description)
            }
            None => stores,
        })
    }

    #[cfg(not(feature = "postgres"))]
    async fn postgres(&self, _: &str) -> Result<Stores, StoresError> {
        Err(StoresError::FeatureDisabled { variable: DATABASE_URL, feature: "postgres" })
    }

    #[cfg(feature = "redis")]
    async fn with_redis_views(&self, stores: Stores, url: &str) -> Result<Stores, StoresError> {
        use eventloom_redis::{RedisConfig, RedisViewStore};
        let prefix = self.prefix.as_deref().unwrap_or(eventloom_redis::DEFAULT_PREFIX);
        let cluster = url.contains(',');
        let config = if cluster { RedisConfig::from_cluster_urls(url) } else { RedisConfig::from_url(url) };
        let config = config.and_then(|c| c.prefix(prefix)).map_err(StoresError::Redis)?;
        let views = RedisViewStore::connect_with(config).await.map_err(StoresError::Redis)?;
        let description = format!("{}+{}", stores.description(), if cluster { "redis-cluster" } else { "redis" });
        Ok(stores.with_views(views).described_as(description))
    }

    #[cfg(not(feature = "redis"))]
    async fn with_redis_views(&self, _: Stores, _: &str) -> Result<Stores, StoresError> {
        Err(StoresError::FeatureDisabled { variable: REDIS_URL, feature: "redis" })
    }
}

/// The stores the environment names (see [`StoresConfig`]): memory by default, PostgreSQL with
/// feature `postgres` and `DATABASE_URL`, Redis views with feature `redis` and `REDIS_URL`.
///
/// # Examples
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let app = eventloom::App::builder(eventloom::stores_from_env().await?).start().await?;
/// # Ok(()) }
/// ```
pub async fn stores_from_env() -> Result<Stores, StoresError> {
    StoresConfig::from_env().connect().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ignoring_a_missing_feature_never_says_a_set_url_is_unset() {
        let both = StoresConfig::memory().database_url("postgres://127.0.0.1:1/app").redis_url("redis://127.0.0.1:1/");
        let redis_alone = StoresConfig::memory().redis_url("redis://127.0.0.1:1/").ignore_missing_features(true);
        let alone = redis_alone.connect().await;
        match cfg!(feature = "redis") {
            true => assert!(matches!(alone, Err(StoresError::RedisWithoutPostgres)), "{alone:?}"),
            false => assert_eq!(alone.unwrap().description(), "memory"),
        }
        let ignored = both.ignore_missing_features(true).connect().await;
        match (cfg!(feature = "postgres"), cfg!(feature = "redis")) {
            // Both dropped: memory.
            (false, false) => assert_eq!(ignored.unwrap().description(), "memory"),
            // Redis views are not run over memory events, and DATABASE_URL was set.
            (false, true) => {
                let error = ignored.unwrap_err();
                assert!(
                    matches!(error, StoresError::FeatureDisabled { variable: "DATABASE_URL", feature: "postgres" }),
                    "{error:?}"
                );
                assert!(!error.to_string().contains("without DATABASE_URL"), "{error}");
            }
            // With `postgres` it connects to port 1, where nothing listens.
            (true, _) => assert!(ignored.is_err()),
        }
    }
}

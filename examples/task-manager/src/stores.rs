//! Which stores a process uses, chosen at start from the cargo features it was built with and
//! its environment, so that the features stay additive:
//!
//! | events, leases, snapshots | views |
//! |---|---|
//! | PostgreSQL with feature `postgres` and `DATABASE_URL` | Redis with feature `redis` and `REDIS_URL` |
//! | memory otherwise | else PostgreSQL as for the events, else memory |

use eventloom_core::store::BoxFuture;
use std::sync::Arc;

use eventloom_core::{
    memory::{MemoryEventStore, MemoryViewStore},
    read::Projector,
    store::{EventStore, Lease, LeaseManager, SnapshotStore, ViewStore},
    write::Cqrs,
};
use serde::Serialize;
use tokio::sync::watch;

use crate::cli::Role;
use crate::domain::Task;

/// The PostgreSQL schema used when `TASK_MANAGER_SCHEMA` is unset.
pub const DEFAULT_SCHEMA: &str = "task_manager";
/// The Redis key prefix used when `TASK_MANAGER_PREFIX` is unset.
pub const DEFAULT_PREFIX: &str = "task-manager:";
/// A snapshot of a task every this many events (PostgreSQL only).
#[cfg(feature = "postgres")]
const SNAPSHOT_EVERY: u64 = 50;

/// The settings read from the environment.
#[derive(Clone, PartialEq, Eq)]
pub struct Settings {
    /// `DATABASE_URL`.
    pub database_url: Option<String>,
    /// `REDIS_URL`.
    pub redis_url: Option<String>,
    /// `TASK_MANAGER_SCHEMA`: the PostgreSQL schema of the tables.
    pub schema: String,
    /// `TASK_MANAGER_PREFIX`: the prefix of every Redis key.
    pub prefix: String,
}

impl std::fmt::Debug for Settings {
    // URLs may hold passwords: only say whether they are set.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("database_url", &self.database_url.as_ref().map(|_| "<set>"))
            .field("redis_url", &self.redis_url.as_ref().map(|_| "<set>"))
            .field("schema", &self.schema)
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl Settings {
    /// From the process's environment; an empty variable counts as unset.
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        Settings {
            database_url: var("DATABASE_URL"),
            redis_url: var("REDIS_URL"),
            schema: var("TASK_MANAGER_SCHEMA").unwrap_or_else(|| DEFAULT_SCHEMA.to_owned()),
            prefix: var("TASK_MANAGER_PREFIX").unwrap_or_else(|| DEFAULT_PREFIX.to_owned()),
        }
    }
}

/// Where something is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// In this process: gone when it stops.
    Memory,
    /// PostgreSQL.
    Postgres,
    /// Redis.
    Redis,
}

/// The stores a process will use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// The event store (and leases and snapshots with it).
    pub events: Backend,
    /// The views; `None` for a role that reads none.
    pub views: Option<Backend>,
}

/// Why a process cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The settings cannot work together.
    #[error("{0}")]
    Config(String),
    /// PostgreSQL refused the configuration, the connection or the migrations.
    #[cfg(feature = "postgres")]
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] eventloom_postgres::Error),
    /// Redis refused the configuration or the connection.
    #[cfg(feature = "redis")]
    #[error("Redis: {0}")]
    Redis(#[from] eventloom_redis::Error),
}

/// Decides the stores of `role` from the features and `settings`; refuses what cannot work.
pub fn plan(settings: &Settings, role: Role) -> Result<Plan, StartupError> {
    let postgres = settings.database_url.is_some() && cfg!(feature = "postgres");
    let redis = settings.redis_url.is_some() && cfg!(feature = "redis");
    if settings.database_url.is_some() && !postgres {
        tracing::warn!("DATABASE_URL is set, but this binary was built without the `postgres` feature: ignored");
    }
    if settings.redis_url.is_some() && !redis {
        tracing::warn!("REDIS_URL is set, but this binary was built without the `redis` feature: ignored");
    }
    let events = if postgres { Backend::Postgres } else { Backend::Memory };
    let views = match (redis, postgres) {
        (true, _) => Backend::Redis,
        (false, true) => Backend::Postgres,
        (false, false) => Backend::Memory,
    };
    if views == Backend::Redis && events == Backend::Memory {
        return Err(StartupError::Config(
            "REDIS_URL is set but the events would be in memory (DATABASE_URL unset, or no `postgres` feature): \
             views on Redis would outlive the events they were built from; set DATABASE_URL or unset REDIS_URL"
                .into(),
        ));
    }
    if role != Role::All && events == Backend::Memory {
        return Err(StartupError::Config(format!(
            "--role {role} needs stores shared between processes, but the stores are in memory; \
             set DATABASE_URL (and REDIS_URL) with a binary built with `--features postgres,redis`, \
             or run every role in one process with --role all"
        )));
    }
    let views = (role != Role::Command).then_some(views);
    Ok(Plan { events, views })
}

/// A projector over the event store picked at start.
pub type SharedProjector = Projector<Arc<dyn EventStore>>;

/// The stores of one process.
pub struct Stores {
    /// What they are.
    pub plan: Plan,
    /// The event store.
    pub events: Arc<dyn EventStore>,
    /// The views (not for the command role).
    pub views: Option<Arc<dyn ViewStore>>,
    snapshots: Option<Arc<dyn SnapshotStore>>,
    leases: Option<Arc<dyn LeaseManager>>,
}

impl std::fmt::Debug for Stores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stores").field("plan", &self.plan).finish_non_exhaustive()
    }
}

impl Stores {
    /// Connects the stores of `plan` (applying the PostgreSQL migrations, which several processes
    /// may do at once).
    pub async fn open(plan: Plan, settings: &Settings) -> Result<Stores, StartupError> {
        let _ = settings;
        let mut stores =
            Stores { plan, events: Arc::new(MemoryEventStore::new()), views: None, snapshots: None, leases: None };
        #[cfg(feature = "postgres")]
        let mut pg_views = None;
        #[cfg(feature = "postgres")]
        if plan.events == Backend::Postgres {
            use eventloom_postgres::{PgConfig, PgEventStore, PgLeases, PgSnapshotStore, PgViewStore};
            let url = settings.database_url.as_deref().unwrap_or_default();
            let config = PgConfig::from_url(url)?.schema(settings.schema.clone())?;
            let store = PgEventStore::connect(config).await?;
            store.migrate().await?;
            tracing::info!(schema = %settings.schema, "PostgreSQL event store ready (migrations applied)");
            stores.snapshots = Some(Arc::new(PgSnapshotStore::new(&store)));
            stores.leases = Some(Arc::new(PgLeases::new(&store)));
            pg_views = Some(PgViewStore::new(&store));
            stores.events = Arc::new(store);
        }
        stores.views = match plan.views {
            None => None,
            Some(Backend::Memory) => Some(Arc::new(MemoryViewStore::default())),
            #[cfg(feature = "postgres")]
            Some(Backend::Postgres) => match pg_views {
                Some(views) => Some(Arc::new(views)),
                None => return Err(StartupError::Config("views on PostgreSQL need the events there".into())),
            },
            #[cfg(feature = "redis")]
            Some(Backend::Redis) => {
                let url = settings.redis_url.as_deref().unwrap_or_default();
                let views = eventloom_redis::RedisViewStore::connect(url, &settings.prefix).await?;
                tracing::info!(prefix = %settings.prefix, "Redis view store ready");
                Some(Arc::new(views))
            }
            #[allow(unreachable_patterns)]
            Some(other) => return Err(StartupError::Config(format!("{other:?} stores are not built in"))),
        };
        Ok(stores)
    }

    /// The command engine over the event store (with snapshots on PostgreSQL).
    pub fn engine(&self) -> Cqrs<Task, Arc<dyn EventStore>> {
        let engine = Cqrs::new(self.events.clone());
        #[cfg(feature = "postgres")]
        if let Some(snapshots) = &self.snapshots {
            return engine
                .with_snapshots(snapshots.clone(), eventloom_core::write::SnapshotPolicy::every(SNAPSHOT_EVERY));
        }
        let _ = &self.snapshots;
        engine
    }

    /// The projector over the event store and the views, holding a lease when the stores are
    /// shared (so that one projector leads and the others stand by), with a watch of its
    /// leadership then; `None` without views.
    pub fn projector(&self) -> Option<(SharedProjector, Option<watch::Receiver<Leadership>>)> {
        let views = self.views.clone()?;
        let projector = Projector::new(self.events.clone(), views);
        Some(match &self.leases {
            Some(leases) => {
                let (status, watch) = watch::channel(Leadership::Standby);
                (projector.with_leases(WatchedLeases { leases: leases.clone(), status }), Some(watch))
            }
            None => (projector, None),
        })
    }
}

/// Whether this process's projector leads (holds the lease) or stands by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "lease", rename_all = "lowercase")]
pub enum Leadership {
    /// Waiting for the lease: another process leads (or none has it yet).
    Standby,
    /// Holding the lease.
    Leading {
        /// Its fencing token.
        token: u64,
    },
}

/// A lease manager behind an `Arc` (as [`Projector::with_leases`] takes one by value) that
/// tells who leads: a projector asks for the lease when it starts and whenever it lost it.
struct WatchedLeases {
    leases: Arc<dyn LeaseManager>,
    status: watch::Sender<Leadership>,
}

impl LeaseManager for WatchedLeases {
    fn acquire<'a>(&'a self, name: &'a str) -> BoxFuture<'a, eventloom_core::Result<Lease>> {
        Box::pin(async move {
            self.status.send_replace(Leadership::Standby);
            let lease = self.leases.acquire(name).await?;
            self.status.send_replace(Leadership::Leading { token: lease.token() });
            Ok(lease)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(database: bool, redis: bool) -> Settings {
        Settings {
            database_url: database.then(|| "postgres://localhost/x".to_owned()),
            redis_url: redis.then(|| "redis://localhost/".to_owned()),
            schema: DEFAULT_SCHEMA.into(),
            prefix: DEFAULT_PREFIX.into(),
        }
    }

    #[test]
    fn memory_by_default_and_only_for_one_process() {
        let memory = Plan { events: Backend::Memory, views: Some(Backend::Memory) };
        assert_eq!(plan(&settings(false, false), Role::All).unwrap(), memory);
        for role in [Role::Command, Role::Query, Role::Projector] {
            let err = plan(&settings(false, false), role).unwrap_err().to_string();
            assert!(err.contains("--role all"), "{err}");
        }
    }

    #[test]
    fn shared_stores_by_feature_and_environment() {
        let both = plan(&settings(true, true), Role::Query);
        let pg_only = plan(&settings(true, false), Role::Projector);
        if cfg!(feature = "postgres") {
            assert_eq!(pg_only.unwrap(), Plan { events: Backend::Postgres, views: Some(Backend::Postgres) });
            let expected = if cfg!(feature = "redis") { Backend::Redis } else { Backend::Postgres };
            assert_eq!(both.unwrap(), Plan { events: Backend::Postgres, views: Some(expected) });
            assert_eq!(plan(&settings(true, true), Role::Command).unwrap().views, None);
        } else {
            assert!(pg_only.is_err());
        }
        if cfg!(feature = "redis") {
            assert!(plan(&settings(false, true), Role::All).is_err(), "views on Redis, events in memory");
        }
    }

    #[test]
    fn settings_hide_urls() {
        let shown = format!(
            "{:?}",
            Settings { database_url: Some("postgres://u:secret@h/d".into()), ..settings(false, false) }
        );
        assert!(!shown.contains("secret"));
    }
}

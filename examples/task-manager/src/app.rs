//! Runs one role on an [`App`]: the stores the environment names, the tasks' engine and the
//! task views' projector as the role needs them, and the HTTP server. On SIGTERM or Ctrl-C it
//! drains the requests in flight, then shuts the App down (its projector stops after its batch).
//!
//! | events, leases, snapshots | views |
//! |---|---|
//! | PostgreSQL with feature `postgres` and `DATABASE_URL` | Redis with feature `redis` and `REDIS_URL` |
//! | memory otherwise | else PostgreSQL as for the events, else memory |

use std::sync::Arc;
use std::time::Duration;

use eventloom::app::{AppBuilder, AppStatus, RunState};
use eventloom::read::MAX_PARTITIONS;
use eventloom::write::SnapshotPolicy;
use eventloom::{AggregateOptions, App, Error, ProjectionOptions, Stores, StoresConfig, StoresError};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::task::{JoinError, JoinHandle};

use crate::api::{self, AppState};
use crate::cli::{Args, Role};
use crate::domain::Task;
use crate::projection::TaskViews;
use crate::shutdown::{self, Shutdown};

/// The PostgreSQL schema used when `TASK_MANAGER_SCHEMA` is unset.
pub const DEFAULT_SCHEMA: &str = "task_manager";
/// The Redis key prefix used when `TASK_MANAGER_PREFIX` is unset.
pub const DEFAULT_PREFIX: &str = "task-manager:";
/// The variable that splits the task views into partitions (unset: one, the views whole).
pub const VIEW_PARTITIONS_VAR: &str = "TASK_MANAGER_VIEW_PARTITIONS";
/// A snapshot of a task every this many events.
const SNAPSHOT_EVERY: u64 = 50;
/// How long requests in flight get once a stop is asked for, and then the projector's batch.
const DRAIN: Duration = Duration::from_secs(30);

/// Why a process stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The settings cannot work together.
    #[error("{0}")]
    Config(String),
    /// The stores refused the settings, or could not be reached.
    #[error(transparent)]
    Stores(#[from] StoresError),
    /// The App refused to start.
    #[error(transparent)]
    App(#[from] Error),
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP server failed.
    #[error("the HTTP server failed: {0}")]
    Serve(String),
    /// The projector stopped on an error it cannot get past.
    #[error("the projector stopped: {0}")]
    Projector(String),
}

/// Where the events and the views are, as `/health` shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// `memory` or `postgres`.
    pub events: String,
    /// Whether the log is read from a streaming replica of the PostgreSQL that takes the writes
    /// (`EVENTLOOM_READ_REPLICA_URL`).
    pub replica: bool,
    /// `memory`, `postgres`, `redis` or `redis-cluster`; `None` for a role that reads none.
    pub views: Option<String>,
}

impl Plan {
    /// Read from the bundle's description: `memory`, `postgres`, then `+replica` when the log
    /// is read from a replica, then `+redis` or `+redis-cluster` when the views are elsewhere.
    fn of(stores: &Stores, role: Role) -> Plan {
        let description = stores.description();
        let mut parts = description.split('+');
        let events = parts.next().unwrap_or(description);
        let (mut replica, mut views) = (false, events);
        for part in parts {
            match part {
                "replica" => replica = true,
                other => views = other,
            }
        }
        Plan { events: events.to_owned(), replica, views: (role != Role::Command).then(|| views.to_owned()) }
    }
}

/// The stores the environment names (a URL whose feature this binary lacks is ignored, so that
/// the features stay additive); a split role needs them shared between processes.
async fn open_stores(role: Role) -> Result<Stores, AppError> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let stores = StoresConfig::from_env()
        .schema(var("TASK_MANAGER_SCHEMA").unwrap_or_else(|| DEFAULT_SCHEMA.to_owned()))
        .prefix(var("TASK_MANAGER_PREFIX").unwrap_or_else(|| DEFAULT_PREFIX.to_owned()))
        .ignore_missing_features(true)
        .connect()
        .await?;
    if role != Role::All && !stores.is_shared() {
        return Err(AppError::Config(format!(
            "--role {role} needs stores shared between processes, but the stores are in memory; \
             set DATABASE_URL (and REDIS_URL) with a binary built with `--features postgres,redis`, \
             or run every role in one process with --role all"
        )));
    }
    Ok(stores)
}

/// The number of partitions of the task views that `value` of [`VIEW_PARTITIONS_VAR`] asks
/// for: 1 (whole) when unset, else 1 to [`MAX_PARTITIONS`]. Every process of a deployment must
/// say the same; a change rebuilds the views, which queries read once the new ones caught up.
fn view_partitions(value: Option<&str>) -> Result<u32, AppError> {
    let Some(text) = value else { return Ok(1) };
    match text.trim().parse::<u32>() {
        Ok(n) if (1..=MAX_PARTITIONS).contains(&n) => Ok(n),
        _ => Err(AppError::Config(format!(
            "{VIEW_PARTITIONS_VAR} must be a whole number from 1 to {MAX_PARTITIONS}, not {text:?}"
        ))),
    }
}

/// The App's definitions on `stores`, its task views in `partitions`: what every role starts,
/// and what the admin commands (`task-manager admin`) run rebuilds and dead letters with.
pub fn builder(stores: Stores, partitions: u32) -> AppBuilder {
    App::builder(stores)
        .aggregate_with::<Task>(AggregateOptions::new().snapshots(SnapshotPolicy::every(SNAPSHOT_EVERY)).inspectable())
        .projection_with(TaskViews, ProjectionOptions::new().partitions(partitions))
}

/// The partitions of the task views that the environment asks for.
pub fn partitions_from_env() -> Result<u32, AppError> {
    view_partitions(std::env::var(VIEW_PARTITIONS_VAR).ok().filter(|v| !v.is_empty()).as_deref())
}

/// Runs `args.role` until SIGTERM or Ctrl-C (or a failure it cannot get past).
pub async fn run(args: Args) -> Result<(), AppError> {
    let role = args.role;
    let partitions = partitions_from_env()?;
    // Before the App: its engines and projectors take their metric handles when built.
    let metrics = crate::metrics::install().map_err(AppError::Config)?;
    let stores = open_stores(role).await?;
    let plan = Plan::of(&stores, role);
    tracing::info!(%role, events = plan.events, replica = plan.replica, views = ?plan.views, partitions, "starting");
    let app = builder(stores, partitions).role(role).drain_timeout(DRAIN).start().await?;
    let (trigger, stop) = shutdown::channel();
    let trigger = Arc::new(trigger);
    tokio::spawn({
        let trigger = trigger.clone();
        async move { trigger.fire_on_signal().await }
    });
    let tasks = app.reader::<TaskViews>()?;
    let state = Arc::new(AppState { role, plan, partitions, app: app.clone(), tasks, shutdown: stop.clone(), metrics });
    let mut serving = match &args.addr {
        Some(addr) => Some(serve(addr, state, stop.clone()).await?),
        None => None,
    };

    // Until a stop is asked for, or the server (or the projector of a projector process) ends.
    let mut failure = tokio::select! {
        biased;
        () = stop.clone().wait() => None,
        error = failed(&app), if role == Role::Projector => Some(AppError::Projector(error)),
        joined = join(&mut serving) => {
            serving = None;
            Some(AppError::Serve(server_error(joined).unwrap_or_else(|| "it stopped unexpectedly".into())))
        }
    };
    if let Some(error) = &failure {
        tracing::error!(%error, "stopping");
    }
    trigger.fire();

    // Drain: the requests in flight first, then the App.
    if let Some(server) = serving {
        match tokio::time::timeout(DRAIN, server).await {
            Ok(joined) => match server_error(joined) {
                None => tracing::info!("HTTP server stopped; requests in flight were answered"),
                Some(error) => {
                    failure.get_or_insert(AppError::Serve(error));
                }
            },
            Err(_) => tracing::warn!(seconds = DRAIN.as_secs(), "requests still in flight after the drain time"),
        }
    }
    if let Err(error) = app.shutdown().await {
        tracing::warn!(%error, "the projector did not stop in time");
    }
    // A projection that failed meanwhile (even on the drain's last batch) fails a projector process.
    if role == Role::Projector && failure.is_none() {
        if let Some(error) = first_failure(&app.status()) {
            tracing::error!(%error, "the projector stopped");
            failure = Some(AppError::Projector(error));
        }
    }
    match failure {
        Some(error) => Err(error),
        None => {
            tracing::info!(%role, "stopped");
            Ok(())
        }
    }
}

type Server = JoinHandle<std::io::Result<()>>;

/// Binds `addr` and serves the role's routes on a task of their own until `stop`.
async fn serve(addr: &str, state: Arc<AppState>, stop: Shutdown) -> Result<Server, AppError> {
    let listener = TcpListener::bind(addr).await.map_err(|source| AppError::Bind { addr: addr.to_owned(), source })?;
    match listener.local_addr() {
        Ok(local) => tracing::info!(role = %state.role, "listening on http://{local}"),
        Err(_) => tracing::info!(role = %state.role, %addr, "listening"),
    }
    let router = api::router(state);
    Ok(tokio::spawn(async move { axum::serve(listener, router).with_graceful_shutdown(stop.wait()).await }))
}

async fn join(server: &mut Option<Server>) -> Result<std::io::Result<()>, JoinError> {
    match server {
        Some(server) => server.await,
        None => std::future::pending().await,
    }
}

/// Why the server's task ended, unless it ended well.
fn server_error(joined: Result<std::io::Result<()>, JoinError>) -> Option<String> {
    match joined {
        Ok(Ok(())) => None,
        Ok(Err(error)) => Some(error.to_string()),
        Err(error) => Some(error.to_string()),
    }
}

/// Resolves with the error of the first projection of this process that failed (a poison
/// event, a newer version in the store): a projector process has nothing left to do then.
async fn failed(app: &App) -> String {
    loop {
        if let Some(error) = first_failure(&app.status()) {
            return error;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The error of the first projection of this process that failed, if one did.
fn first_failure(status: &AppStatus) -> Option<String> {
    status.projections.iter().find_map(|projection| match &projection.state {
        RunState::Failed(error) => Some(error.to_string()),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use eventloom::MemoryStores;

    #[test]
    fn the_plan_names_the_events_store_and_the_views_store_of_roles_that_read_them() {
        let plan =
            |description: &str, role| Plan::of(&Stores::from(MemoryStores::new()).described_as(description), role);
        let named = |events: &str, replica, views: Option<&str>| Plan {
            events: events.into(),
            replica,
            views: views.map(Into::into),
        };
        assert_eq!(plan("memory", Role::All), named("memory", false, Some("memory")));
        assert_eq!(plan("postgres", Role::Projector), named("postgres", false, Some("postgres")));
        assert_eq!(plan("postgres+redis", Role::Query), named("postgres", false, Some("redis")));
        assert_eq!(plan("postgres+redis", Role::Command), named("postgres", false, None));
        assert_eq!(plan("postgres+replica", Role::Query), named("postgres", true, Some("postgres")));
        assert_eq!(
            plan("postgres+replica+redis-cluster", Role::Projector),
            named("postgres", true, Some("redis-cluster"))
        );
        assert_eq!(plan("postgres+replica+redis-cluster", Role::Command), named("postgres", true, None));
    }

    #[test]
    fn view_partitions_are_one_by_default_and_checked() {
        assert_eq!(view_partitions(None).ok(), Some(1));
        assert_eq!(view_partitions(Some("6")).ok(), Some(6));
        assert_eq!(view_partitions(Some(" 1024 ")).ok(), Some(MAX_PARTITIONS));
        for bad in ["0", "-1", "1025", "six", "2.5", ""] {
            let error = view_partitions(Some(bad)).unwrap_err().to_string();
            assert!(error.contains(VIEW_PARTITIONS_VAR) && error.contains("1 to 1024"), "{bad:?}: {error}");
        }
    }

    #[test]
    fn a_failed_projection_is_the_failure_even_after_the_shutdown() {
        use eventloom::app::ProjectionHealth;
        let status = |state| AppStatus::new(Role::Projector, true, vec![ProjectionHealth::new("tasks", state)]);
        assert_eq!(first_failure(&status(RunState::Stopped)), None);
        let poison = Error::Backend { message: "a poison event at 0/3".into(), source: None };
        let failure = first_failure(&status(RunState::Failed(Arc::new(poison))));
        assert!(failure.is_some_and(|error| error.contains("a poison event at 0/3")));
    }
}

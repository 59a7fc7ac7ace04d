//! `GET /health`: liveness, the stores in use, and how far the views are behind.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use eventloom::app::{Lag, LeaseState, ProjectionHealth, RunState};
use eventloom::{Position, Projection, store::Generation, store::ReplicaLag};
use serde::Serialize;

use super::AppState;
use super::error::json;
use crate::projection::TaskViews;

/// How long `/health` waits for a store before saying it did not answer.
pub const STORE_TIMEOUT: Duration = Duration::from_secs(2);

/// `/health` counts unprojected (and held-back) events exactly up to this many, so that a probe
/// costs the same however far behind the views are.
pub const LAG_CAP: u64 = 10_000;

/// What this process's projector is doing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "lowercase")]
enum ProjectorStatus {
    /// Running, or standing by while another process leads (see its [`Leadership`]).
    Running,
    /// Stopped on shutdown.
    Stopped,
    /// Stopped by an error it cannot get past (a poison event, a newer projection version).
    Failed {
        /// The error.
        error: String,
    },
}

/// Whether this process's projector leads (holds the lease) or stands by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "lease", rename_all = "lowercase")]
enum Leadership {
    /// Waiting for the lease: another process leads (or none has it yet).
    Standby,
    /// Holding the lease.
    Leading {
        /// Its fencing token.
        token: u64,
    },
}

#[derive(Debug, Serialize)]
struct GenerationJson {
    id: u64,
    version: u32,
    checkpoint: Option<Position>,
}

impl From<Generation> for GenerationJson {
    fn from(g: Generation) -> Self {
        GenerationJson { id: g.id, version: g.version, checkpoint: g.checkpoint }
    }
}

/// How far the live views are behind the event store.
#[derive(Debug, Serialize)]
struct LagJson {
    /// Events readable after the checkpoint, exact up to [`LAG_CAP`].
    events: u64,
    /// Whether there are more than `events` (the count stopped at the cap).
    more: bool,
    /// Committed events no subscriber can read yet because an older transaction is open
    /// (PostgreSQL's horizon), exact up to [`LAG_CAP`]; not part of `events`.
    held_back: u64,
    /// How old the oldest event the views do not include is, in milliseconds; `null` when there
    /// is none.
    oldest_unprojected_ms: Option<u64>,
}

/// Why the projection's runner stopped, as recorded in the view store (by any process).
#[derive(Debug, Serialize)]
struct StopJson {
    kind: &'static str,
    position: Option<Position>,
    reason: String,
}

/// Where the views stand.
#[derive(Debug, Serialize)]
struct ViewsJson {
    projection: &'static str,
    version: u32,
    /// How many partitions the views are split into (1: whole).
    partitions: u32,
    /// The position of the last event the live views include.
    checkpoint: Option<Position>,
    /// Whether views are live and the event store holds nothing after their checkpoint (`false`
    /// when the event store could not tell).
    caught_up: bool,
    /// `null` when the event store could not tell: see `lag_error`.
    lag: Option<LagJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lag_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stopped: Option<StopJson>,
    live: Option<GenerationJson>,
    building: Option<GenerationJson>,
}

impl ViewsJson {
    fn new(lag: &Lag, partitions: u32) -> Self {
        let ms = |age: std::time::Duration| u64::try_from(age.as_millis()).unwrap_or(u64::MAX);
        ViewsJson {
            projection: TaskViews::NAME,
            version: TaskViews::VERSION,
            partitions,
            checkpoint: lag.checkpoint(),
            caught_up: lag.caught_up(),
            lag: lag.unprojected.as_ref().ok().map(|unprojected| LagJson {
                events: unprojected.events,
                more: unprojected.more,
                held_back: unprojected.held_back,
                oldest_unprojected_ms: unprojected.oldest.map(ms),
            }),
            lag_error: lag.unprojected.as_ref().err().map(ToString::to_string),
            stopped: lag.views.active_stop().map(|stop| StopJson {
                kind: stop.kind.as_str(),
                position: stop.position,
                reason: stop.reason.clone(),
            }),
            live: lag.views.live.map(Into::into),
            building: lag.views.building.map(Into::into),
        }
    }
}

/// The projector's state and, with leases, whether it leads.
#[derive(Debug, Serialize)]
struct ProjectorJson {
    #[serde(flatten)]
    status: ProjectorStatus,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    leadership: Option<Leadership>,
}

impl ProjectorJson {
    /// `None` when the projector does not run in this process.
    fn new(health: &ProjectionHealth) -> Option<Self> {
        let status = match &health.state {
            RunState::Running => ProjectorStatus::Running,
            RunState::Stopped => ProjectorStatus::Stopped,
            RunState::Failed(error) => ProjectorStatus::Failed { error: error.to_string() },
            _ => return None,
        };
        let leadership = match health.lease {
            LeaseState::Leading { token } => Some(Leadership::Leading { token }),
            LeaseState::StandingBy => Some(Leadership::Standby),
            _ => None,
        };
        Some(ProjectorJson { status, leadership })
    }
}

/// How far the streaming replica the log is read from is behind its primary.
#[derive(Debug, Serialize)]
struct ReplicaJson {
    /// Bytes of the primary's log the replica has not replayed yet.
    bytes: u64,
    /// How long ago the last transaction the replica replayed committed (`null` before any);
    /// grows while nothing is written.
    last_replayed_ms: Option<u64>,
    /// Whether replay is paused.
    paused: bool,
}

impl From<&ReplicaLag> for ReplicaJson {
    fn from(lag: &ReplicaLag) -> Self {
        let ms = |age: Duration| u64::try_from(age.as_millis()).unwrap_or(u64::MAX);
        ReplicaJson { bytes: lag.bytes, last_replayed_ms: lag.last_replayed.map(ms), paused: lag.paused }
    }
}

#[derive(Debug, Serialize)]
struct HealthJson<'a> {
    status: &'static str,
    role: &'static str,
    stores: &'a crate::app::Plan,
    #[serde(skip_serializing_if = "Option::is_none")]
    projector: Option<ProjectorJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    views: Option<ViewsJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    views_error: Option<String>,
    /// With a read replica, for a role that reads views: the replica's lag.
    #[serde(skip_serializing_if = "Option::is_none")]
    replica: Option<ReplicaJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    replica_error: Option<String>,
}

/// `GET /health`: always 200 while the process serves; the stores' state is in the body. A
/// role that reads views reads their lag, and with a read replica the replica's (within
/// [`STORE_TIMEOUT`]).
pub async fn health(State(state): State<Arc<AppState>>) -> Response {
    let (status, timed_out) = match state.plan.views {
        None => (state.app.status(), false),
        Some(_) => match tokio::time::timeout(STORE_TIMEOUT, state.app.health(LAG_CAP)).await {
            Ok(status) => (status, false),
            Err(_) => (state.app.status(), true),
        },
    };
    let tasks = status.projections.iter().find(|p| p.name == TaskViews::NAME);
    let (views, views_error) = match tasks.and_then(|p| p.lag.as_ref()) {
        _ if timed_out => (None, Some(format!("the stores did not answer within {} ms", STORE_TIMEOUT.as_millis()))),
        None => (None, None),
        Some(Ok(lag)) => (Some(ViewsJson::new(lag, state.partitions)), None),
        Some(Err(error)) => (None, Some(error.to_string())),
    };
    let (replica, replica_error) = match &status.replica {
        None => (None, None),
        Some(Ok(lag)) => (Some(ReplicaJson::from(lag)), None),
        Some(Err(error)) => (None, Some(error.to_string())),
    };
    let body = HealthJson {
        status: "ok",
        role: state.role.as_str(),
        stores: &state.plan,
        projector: tasks.and_then(ProjectorJson::new),
        views,
        views_error,
        replica,
        replica_error,
    };
    json(StatusCode::OK, &body)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use eventloom::model::RecordedEvent;
    use eventloom::store::{BoxFuture, EventStore};
    use eventloom::{App, Error, MemoryStores, Result, Stores, memory::MemoryEventStore};

    use super::*;
    use crate::api::AppState;
    use crate::app::Plan;
    use crate::cli::Role;
    use crate::domain::{CreateTask, Task};

    /// The memory event store, whose reads of the log fail as an outage while `down`.
    struct Flaky {
        inner: MemoryEventStore,
        down: Arc<AtomicBool>,
    }

    impl Flaky {
        fn up(&self) -> Result<()> {
            match self.down.load(Ordering::SeqCst) {
                true => Err(Error::unavailable_msg("the event store is down")),
                false => Ok(()),
            }
        }
    }

    impl eventloom::store::DelegateEventStore for Flaky {
        type Inner = MemoryEventStore;
        fn inner(&self) -> &MemoryEventStore {
            &self.inner
        }
        fn read_all<'a>(&'a self, after: Position, limit: usize) -> BoxFuture<'a, Result<Vec<RecordedEvent>>> {
            Box::pin(async move {
                self.up()?;
                self.inner.read_all(after, limit).await
            })
        }
        fn read_all_bounded<'a>(
            &'a self,
            after: Position,
            limit: usize,
            max_bytes: usize,
        ) -> BoxFuture<'a, Result<Vec<RecordedEvent>>> {
            Box::pin(async move {
                self.up()?;
                self.inner.read_all_bounded(after, limit, max_bytes).await
            })
        }
        fn count_after<'a>(&'a self, after: Position, cap: u64) -> BoxFuture<'a, Result<u64>> {
            Box::pin(async move {
                self.up()?;
                self.inner.count_after(after, cap).await
            })
        }
        fn held_back<'a>(&'a self, cap: u64) -> BoxFuture<'a, Result<u64>> {
            Box::pin(async move {
                self.up()?;
                self.inner.held_back(cap).await
            })
        }
    }

    async fn body(state: &Arc<AppState>) -> serde_json::Value {
        let response = health(State(state.clone())).await;
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn an_event_store_that_fails_leaves_the_views_status_shown_with_the_lag_error() {
        let memory = MemoryStores::new();
        let down = Arc::new(AtomicBool::new(false));
        let events = Flaky { inner: memory.events.clone(), down: down.clone() };
        let stores = Stores::new(events, memory.views.clone()).with_leases(memory.leases.clone());
        let app = App::builder(stores).aggregate::<Task>().projection(TaskViews).start().await.unwrap();
        let tasks = app.reader::<TaskViews>().unwrap();
        let create =
            CreateTask { task_id: crate::domain::new_task_id(), title: "t".into(), description: String::new() };
        let done = app.execute(create).await.unwrap();
        tasks.wait_for(&done, Duration::from_secs(10)).await.unwrap();
        let plan = Plan { events: "custom".into(), replica: false, views: Some("custom".into()) };
        let shutdown = crate::shutdown::channel().1;
        let metrics = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder().handle();
        let state =
            Arc::new(AppState { role: Role::All, plan, partitions: 1, app: app.clone(), tasks, shutdown, metrics });
        let healthy = body(&state).await;
        assert_eq!(
            (healthy["views"]["caught_up"].as_bool(), healthy["views"]["lag"]["events"].as_u64()),
            (Some(true), Some(0)),
            "{healthy}"
        );

        down.store(true, Ordering::SeqCst);
        let health = body(&state).await;
        let views = &health["views"];
        let checkpoint = done.position.to_string();
        assert_eq!(views["live"]["checkpoint"].as_str(), Some(&*checkpoint), "the view store still answers: {health}");
        assert_eq!((views["caught_up"].as_bool(), views["lag"].is_null()), (Some(false), true), "{health}");
        assert!(views["lag_error"].as_str().is_some_and(|e| e.contains("the event store is down")), "{health}");
        assert!(health.get("views_error").is_none(), "{health}");
        down.store(false, Ordering::SeqCst);
        app.shutdown().await.unwrap();
    }
}

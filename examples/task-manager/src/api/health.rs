//! `GET /health`: liveness, the stores in use, and how far the views are behind.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use eventloom::app::{Lag, LeaseState, ProjectionHealth, RunState};
use eventloom::{Position, Projection, store::Generation};
use serde::Serialize;

use super::AppState;
use super::error::json;
use crate::projection::TaskViews;

/// How long `/health` waits for a store before saying it did not answer.
const STORE_TIMEOUT: Duration = Duration::from_secs(2);

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
    /// The position of the last event the live views include.
    checkpoint: Option<Position>,
    /// Whether views are live and the event store holds nothing after their checkpoint.
    caught_up: bool,
    lag: LagJson,
    #[serde(skip_serializing_if = "Option::is_none")]
    stopped: Option<StopJson>,
    live: Option<GenerationJson>,
    building: Option<GenerationJson>,
}

impl ViewsJson {
    fn new(lag: &Lag) -> Self {
        let ms = |age: std::time::Duration| u64::try_from(age.as_millis()).unwrap_or(u64::MAX);
        ViewsJson {
            projection: TaskViews::NAME,
            version: TaskViews::VERSION,
            checkpoint: lag.checkpoint(),
            caught_up: lag.caught_up(),
            lag: LagJson {
                events: lag.events,
                more: lag.more,
                held_back: lag.held_back,
                oldest_unprojected_ms: lag.oldest_unprojected.map(ms),
            },
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
}

/// `GET /health`: always 200 while the process serves; the stores' state is in the body. A
/// role that reads views reads their lag (within [`STORE_TIMEOUT`]).
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
        Some(Ok(lag)) => (Some(ViewsJson::new(lag)), None),
        Some(Err(error)) => (None, Some(error.to_string())),
    };
    let body = HealthJson {
        status: "ok",
        role: state.role.as_str(),
        stores: &state.plan,
        projector: tasks.and_then(ProjectorJson::new),
        views,
        views_error,
    };
    json(StatusCode::OK, &body)
}

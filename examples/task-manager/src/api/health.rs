//! `GET /health`: liveness, the stores in use, and how far the views are behind.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use eventloom_core::{
    Position, Projection,
    store::{Generation, ProjectionStatus},
};
use serde::Serialize;

use super::AppState;
use super::error::json;
use crate::projection::TaskViews;
use crate::stores::Leadership;

/// How long `/health` waits for a store before saying it did not answer.
const STORE_TIMEOUT: Duration = Duration::from_secs(2);

/// `/health` counts unprojected (and held-back) events exactly up to this many, so that a probe
/// costs the same however far behind the views are.
pub const LAG_CAP: u64 = 10_000;

/// What this process's projector is doing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum ProjectorStatus {
    /// Running, or standing by while another process leads (they look the same from here).
    Running,
    /// Stopped on shutdown.
    Stopped,
    /// Stopped by an error it cannot get past (a poison event, a newer projection version).
    Failed {
        /// The error.
        error: String,
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
    /// Whether the event store holds nothing after the checkpoint; `null` when unknown.
    caught_up: Option<bool>,
    /// `null` when the event store did not answer.
    lag: Option<LagJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stopped: Option<StopJson>,
    live: Option<GenerationJson>,
    building: Option<GenerationJson>,
}

/// The lag after `checkpoint`: a capped count, the held-back events apart, and the age of the
/// first event after it. Four bounded reads.
async fn lag(
    events: &dyn eventloom_core::store::EventStore,
    checkpoint: Option<Position>,
) -> eventloom_core::Result<LagJson> {
    let after = checkpoint.unwrap_or(Position::ZERO);
    let counted = events.count_after(after, LAG_CAP + 1).await?;
    let held_back = events.held_back(LAG_CAP).await?;
    let oldest = match events.read_all(after, 1).await?.first() {
        None => None,
        Some(event) => {
            let written = event.metadata.get()?.timestamp.as_micros();
            let now = eventloom_core::model::Timestamp::now().as_micros();
            Some(u64::try_from(now.saturating_sub(written) / 1_000).unwrap_or(u64::MAX))
        }
    };
    Ok(LagJson { events: counted.min(LAG_CAP), more: counted > LAG_CAP, held_back, oldest_unprojected_ms: oldest })
}

/// The projector's state and, with shared stores, whether it leads.
#[derive(Debug, Serialize)]
struct ProjectorJson {
    #[serde(flatten)]
    status: ProjectorStatus,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    leadership: Option<Leadership>,
}

#[derive(Debug, Serialize)]
struct HealthJson {
    status: &'static str,
    role: &'static str,
    stores: crate::stores::Plan,
    #[serde(skip_serializing_if = "Option::is_none")]
    projector: Option<ProjectorJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    views: Option<ViewsJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    views_error: Option<String>,
}

async fn views(state: &AppState) -> Option<Result<ViewsJson, String>> {
    let store = state.views.as_ref()?;
    let read = async {
        let status: ProjectionStatus = store.status(TaskViews::NAME).await.map_err(|e| e.to_string())?;
        let checkpoint = status.checkpoint();
        let lag = lag(state.events.as_ref(), checkpoint).await.ok();
        let caught_up = match status.live {
            None => Some(false),
            Some(_) => lag.as_ref().map(|lag| lag.events == 0),
        };
        Ok(ViewsJson {
            projection: TaskViews::NAME,
            version: TaskViews::VERSION,
            checkpoint,
            caught_up,
            lag,
            stopped: status.active_stop().map(|stop| StopJson {
                kind: stop.kind.as_str(),
                position: stop.position,
                reason: stop.reason.clone(),
            }),
            live: status.live.map(Into::into),
            building: status.building.map(Into::into),
        })
    };
    Some(match tokio::time::timeout(STORE_TIMEOUT, read).await {
        Ok(read) => read,
        Err(_) => Err(format!("the view store did not answer within {} ms", STORE_TIMEOUT.as_millis())),
    })
}

/// `GET /health`: always 200 while the process serves; the stores' state is in the body.
pub async fn health(State(state): State<Arc<AppState>>) -> Response {
    let (views, views_error) = match views(&state).await {
        None => (None, None),
        Some(Ok(views)) => (Some(views), None),
        Some(Err(error)) => (None, Some(error)),
    };
    let body = HealthJson {
        status: "ok",
        role: state.role.as_str(),
        stores: state.plan,
        projector: state.projector.as_ref().map(|p| ProjectorJson {
            status: p.borrow().clone(),
            leadership: state.leadership.as_ref().map(|l| *l.borrow()),
        }),
        views,
        views_error,
    };
    json(StatusCode::OK, &body)
}

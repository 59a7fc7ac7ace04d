//! `GET /health`: liveness, the stores in use, and how far the views are behind.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use cqrs_core::{Generation, Position, Projection, ProjectionStatus};
use serde::Serialize;

use super::AppState;
use super::error::json;
use crate::projection::TaskViews;
use crate::stores::Leadership;

/// How long `/health` waits for a store before saying it did not answer.
const STORE_TIMEOUT: Duration = Duration::from_secs(2);

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

/// Where the views stand.
#[derive(Debug, Serialize)]
struct ViewsJson {
    projection: &'static str,
    version: u32,
    /// The position of the last event the live views include.
    checkpoint: Option<Position>,
    /// Whether the event store holds nothing after the checkpoint; `null` when unknown.
    caught_up: Option<bool>,
    live: Option<GenerationJson>,
    building: Option<GenerationJson>,
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
        let caught_up = match status.live {
            None => Some(false),
            Some(_) => {
                state.events.read_all(checkpoint.unwrap_or(Position::ZERO), 1).await.ok().map(|newer| newer.is_empty())
            }
        };
        Ok(ViewsJson {
            projection: TaskViews::NAME,
            version: TaskViews::VERSION,
            checkpoint,
            caught_up,
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

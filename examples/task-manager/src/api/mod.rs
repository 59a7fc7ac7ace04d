//! The HTTP API (axum): the routes of each role, shared state, and request tracing.
//!
//! | method and path | role | does |
//! |---|---|---|
//! | `POST /tasks` | command | CreateTask |
//! | `POST /tasks/{id}/assign` | command | AssignTask |
//! | `POST /tasks/{id}/complete` | command | CompleteTask |
//! | `POST /tasks/{id}/reopen` | command | ReopenTask |
//! | `GET /tasks/{id}` | query | one task from the views |
//! | `GET /tasks` | query | a page of tasks, in creation order |
//! | `GET /stats` | query | counts |
//! | `GET /health` | every role | liveness and projector lag |
//! | `GET /metrics` | every role | the metrics, in the Prometheus text format |

mod commands;
mod error;
mod extract;
pub(crate) mod health;
mod queries;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use eventloom::trace::TraceContext;
use eventloom::{App, Reader};
use tracing::Instrument;

use error::ApiError;

use crate::app::Plan;
use crate::cli::Role;
use crate::projection::TaskViews;
use crate::shutdown::Shutdown;

/// What every handler shares.
pub struct AppState {
    /// This process's role.
    pub role: Role,
    /// Its stores.
    pub plan: Plan,
    /// How many partitions the task views are split into (1: whole).
    pub partitions: u32,
    /// The App: commands go to it, and `/health` reads its status.
    pub app: App,
    /// Typed reads of the task views.
    pub tasks: Reader<TaskViews>,
    /// Fires when the process is asked to stop: waiting queries give up.
    pub shutdown: Shutdown,
    /// Renders `/metrics`.
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
}

/// Whether `role` answers queries (the App reads views in every role; these serve them).
fn serves_queries(role: Role) -> bool {
    matches!(role, Role::All | Role::Query)
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").field("role", &self.role).field("plan", &self.plan).finish_non_exhaustive()
    }
}

/// The routes of `state.role`: commands, queries or both, `/health` and `/metrics`; every other path is a
/// 404 and every other method a 405, with a JSON body.
pub fn router(state: Arc<AppState>) -> Router {
    let mut router = Router::new().route("/health", get(health::health)).route("/metrics", get(crate::metrics::render));
    if state.role.runs_commands() {
        router = router
            .route("/tasks", post(commands::create))
            .route("/tasks/{id}/assign", post(commands::assign))
            .route("/tasks/{id}/complete", post(commands::complete))
            .route("/tasks/{id}/reopen", post(commands::reopen));
    }
    if serves_queries(state.role) {
        router = router
            .route("/tasks", get(queries::list))
            .route("/tasks/{id}", get(queries::get_task))
            .route("/stats", get(queries::stats));
    }
    router
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(DefaultBodyLimit::max(extract::MAX_BODY_BYTES))
        .layer(middleware::from_fn(trace))
        .with_state(state)
}

/// How long a command or a read may wait for the stores before the answer is a 503.
const STORE_DEADLINE: Duration = Duration::from_secs(15);

/// Runs a store call with [`STORE_DEADLINE`]: a store that does not answer is a store that is
/// down. (A command cut short may still commit; a retry with its `Idempotency-Key` is safe.)
async fn within<T>(call: impl Future<Output = Result<T, ApiError>>) -> Result<T, ApiError> {
    match tokio::time::timeout(STORE_DEADLINE, call).await {
        Ok(result) => result,
        Err(_) => {
            tracing::warn!(seconds = STORE_DEADLINE.as_secs(), "a store did not answer in time");
            Err(ApiError::unavailable("a store did not answer in time; try again shortly"))
        }
    }
}

/// One span per request; the outcome logged at a level by its status.
async fn trace(request: Request, next: Next) -> Response {
    let path: String = request.uri().path().chars().take(200).collect();
    let span = tracing::info_span!("request", method = %request.method(), path = %path);
    // A caller's W3C trace context makes this request part of its trace (with a trace
    // propagation hook installed: the feature `otel`); a malformed one is ignored.
    if eventloom::trace::is_installed() {
        let header = |name: &str| request.headers().get(name).and_then(|v| v.to_str().ok());
        if let Some(parent) = header("traceparent").and_then(|tp| TraceContext::from_headers(tp, header("tracestate")))
        {
            eventloom::trace::set_parent(&span, &parent);
        }
    }
    let started = Instant::now();
    let response = next.run(request).instrument(span.clone()).await;
    let _entered = span.enter();
    let status = response.status().as_u16();
    let ms = started.elapsed().as_millis();
    match status {
        500..=599 => tracing::warn!(status, ms, "answered"),
        _ => tracing::debug!(status, ms, "answered"),
    }
    response
}

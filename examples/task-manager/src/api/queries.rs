//! The read side over HTTP: every answer comes from the views, after waiting for
//! `min_position` when asked (read-your-writes).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use eventloom::Reader;
use serde::Serialize;

use super::error::{ApiError, json};
use super::extract::{Consistency, Params, TaskId, parse_cursor};
use super::{AppState, within};
use crate::domain::check_assignee;
use crate::projection::{Status, TaskView, TaskViews, list_key};

/// The default page size of `GET /tasks`.
pub const DEFAULT_LIMIT: usize = 100;
/// The largest page size of `GET /tasks`.
pub const MAX_LIMIT: usize = 1_000;

/// A task as the API shows it.
#[derive(Debug, Serialize)]
struct TaskJson<'a> {
    id: &'a str,
    title: &'a str,
    description: &'a str,
    status: Status,
    assignee: Option<&'a str>,
    version: u64,
}

impl<'a> TaskJson<'a> {
    fn new(id: &'a str, view: &'a TaskView) -> Self {
        TaskJson {
            id,
            title: &view.title,
            description: &view.description,
            status: view.status,
            assignee: view.assignee.as_deref(),
            version: view.version,
        }
    }
}

/// The task views, after waiting as `consistency` asks: 504 when they do not catch up in time,
/// 503 when the process stops meanwhile.
async fn views(state: &AppState, consistency: Consistency) -> Result<&Reader<TaskViews>, ApiError> {
    let tasks = &state.tasks;
    let Some(position) = consistency.min_position else {
        return Ok(tasks);
    };
    let waited = tokio::select! {
        waited = tasks.wait_for(position, consistency.timeout) => waited,
        () = state.shutdown.clone().wait() => return Err(ApiError::unavailable("the server is shutting down")),
    };
    match waited {
        Ok(()) => Ok(tasks),
        Err(eventloom::Error::Timeout(_)) => Err(ApiError::timeout(format!(
            "the views did not reach position {position} within {} ms",
            consistency.timeout.as_millis()
        ))),
        Err(error) => Err(error.into()),
    }
}

/// `GET /tasks/{id}`: the task, with `ETag: "<version>"`.
pub async fn get_task(
    State(state): State<Arc<AppState>>,
    TaskId(id): TaskId,
    mut params: Params,
) -> Result<Response, ApiError> {
    let consistency = Consistency::take(&mut params)?;
    params.finish()?;
    let tasks = views(&state, consistency).await?;
    let view = within(async { Ok(tasks.get(&id).await?) }).await?.ok_or_else(ApiError::no_task)?;
    let mut response = json(StatusCode::OK, &TaskJson::new(&id, &view));
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{}\"", view.version)) {
        response.headers_mut().insert(header::ETAG, etag);
    }
    Ok(response)
}

#[derive(Debug, Serialize)]
struct PageJson<'a> {
    tasks: Vec<TaskJson<'a>>,
    next: Option<String>,
}

/// `GET /tasks?status=&assignee=&limit=&cursor=`: a page in creation order.
pub async fn list(State(state): State<Arc<AppState>>, mut params: Params) -> Result<Response, ApiError> {
    let consistency = Consistency::take(&mut params)?;
    let status = params
        .take("status")
        .map(|s| Status::parse(&s).ok_or_else(|| ApiError::bad_request("status must be open or completed")))
        .transpose()?;
    let assignee = params.take("assignee");
    if let Some(assignee) = &assignee {
        // Any name a task can be assigned to; anything else is a mistake, not an empty list.
        check_assignee(assignee).map_err(|e| ApiError::bad_request(e.0))?;
    }
    let limit = match params.take("limit") {
        None => DEFAULT_LIMIT,
        Some(text) => match text.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => return Err(ApiError::bad_request(format!("limit must be a whole number from 1 to {MAX_LIMIT}"))),
        },
    };
    let cursor = params.take("cursor").map(|c| parse_cursor(&c)).transpose()?;
    params.finish()?;
    let tasks = views(&state, consistency).await?;
    let key = list_key(status, assignee.as_deref());
    let page = within(async { Ok(tasks.list(&key, cursor.as_ref(), limit).await?) }).await?;
    let body = PageJson {
        tasks: page.views.iter().map(|(id, view)| TaskJson::new(id, view)).collect(),
        next: page.next.map(|c| c.to_string()),
    };
    Ok(json(StatusCode::OK, &body))
}

#[derive(Debug, Serialize)]
struct StatsJson {
    open: u64,
    completed: u64,
    total: u64,
}

/// `GET /stats`: counts of the index lists, read at one instant.
pub async fn stats(State(state): State<Arc<AppState>>, mut params: Params) -> Result<Response, ApiError> {
    let consistency = Consistency::take(&mut params)?;
    params.finish()?;
    let tasks = views(&state, consistency).await?;
    let keys = [list_key(Some(Status::Open), None), list_key(Some(Status::Completed), None), list_key(None, None)];
    let counts = within(async { Ok(tasks.count(&keys).await?) }).await?;
    let [open, completed, total] = counts[..] else {
        tracing::error!(?counts, "the view store answered a count of 3 lists with another number");
        return Err(ApiError::internal());
    };
    Ok(json(StatusCode::OK, &StatsJson { open, completed, total }))
}

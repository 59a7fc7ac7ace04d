//! The write side over HTTP: one handler per command, `If-Match` and `Idempotency-Key`.
//!
//! **Idempotency.** The key becomes the command's id ([`ExecuteOptions::command_id`]); the
//! event store records it with the outcome and the engine's fingerprint of the command (its
//! name, its task and its fields), so a request sent again with the same key, to any command
//! process, gets the first answer and appends nothing, and two at once append at most once. A
//! refused request records nothing and may be retried. A key sent again with a *different*
//! request (the engine's `Error::CommandIdReused`) is answered `422 Unprocessable Entity` and
//! executes nothing, as the IETF draft on the `Idempotency-Key` header recommends. A keyed
//! `POST /tasks` names its new task after the key ([`task_id_for_key`]), so that sent again it
//! is the same command on the same task.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use eventloom::{Command, CommandError, CommandOutcome, ExecuteOptions, Handle};
use serde::{Deserialize, Serialize};

use super::error::{ApiError, json};
use super::extract::{CommandHeaders, JsonBody, NoBody, TaskId};
use super::{AppState, within};
use crate::domain::{AssignTask, CompleteTask, CreateTask, ReopenTask, Task, TaskError, new_task_id, task_id_for_key};

/// `POST /tasks`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    title: String,
    #[serde(default)]
    description: Option<String>,
}

/// `POST /tasks/{id}/assign`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssignBody {
    assignee: String,
}

/// What a command answers.
#[derive(Debug, Serialize)]
struct Done<'a> {
    id: &'a str,
    version: u64,
    position: eventloom::Position,
}

fn answer(status: StatusCode, outcome: &CommandOutcome) -> Response {
    let id = outcome.stream.id();
    let mut response = json(status, &Done { id, version: outcome.version, position: outcome.position });
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{}\"", outcome.version)) {
        response.headers_mut().insert(header::ETAG, etag);
    }
    if status == StatusCode::CREATED {
        if let Ok(location) = HeaderValue::from_str(&format!("/tasks/{id}")) {
            response.headers_mut().insert(header::LOCATION, location);
        }
    }
    response
}

/// `POST /tasks`: 201 with the new task's id.
pub async fn create(
    State(state): State<Arc<AppState>>,
    headers: CommandHeaders,
    JsonBody(body): JsonBody<CreateBody>,
) -> Result<Response, ApiError> {
    if headers.if_match.is_some() {
        return Err(ApiError::bad_request("If-Match applies to an existing task, not to POST /tasks"));
    }
    let id = headers.idempotency_key.as_deref().map_or_else(new_task_id, task_id_for_key);
    let description = body.description.unwrap_or_default();
    let command = CreateTask::new(id, body.title, description).map_err(|e| ApiError::bad_request(e.0))?;
    let outcome = within(execute(&state, command, &headers)).await?;
    Ok(answer(StatusCode::CREATED, &outcome))
}

/// `POST /tasks/{id}/assign`.
pub async fn assign(
    State(state): State<Arc<AppState>>,
    TaskId(id): TaskId,
    headers: CommandHeaders,
    JsonBody(body): JsonBody<AssignBody>,
) -> Result<Response, ApiError> {
    let command = AssignTask::new(id, body.assignee).map_err(|e| ApiError::bad_request(e.0))?;
    let outcome = within(execute(&state, command, &headers)).await?;
    Ok(answer(StatusCode::OK, &outcome))
}

/// `POST /tasks/{id}/complete`.
pub async fn complete(
    State(state): State<Arc<AppState>>,
    TaskId(id): TaskId,
    headers: CommandHeaders,
    _: NoBody,
) -> Result<Response, ApiError> {
    let outcome = within(execute(&state, CompleteTask { task_id: id }, &headers)).await?;
    Ok(answer(StatusCode::OK, &outcome))
}

/// `POST /tasks/{id}/reopen`.
pub async fn reopen(
    State(state): State<Arc<AppState>>,
    TaskId(id): TaskId,
    headers: CommandHeaders,
    _: NoBody,
) -> Result<Response, ApiError> {
    let outcome = within(execute(&state, ReopenTask { task_id: id }, &headers)).await?;
    Ok(answer(StatusCode::OK, &outcome))
}

/// Executes a command with the request's headers and sorts the outcome into HTTP answers.
async fn execute<C>(state: &AppState, command: C, headers: &CommandHeaders) -> Result<CommandOutcome, ApiError>
where
    C: Command<Aggregate = Task> + Serialize,
    Task: Handle<C>,
{
    let mut options = ExecuteOptions::default();
    if let Some(key) = &headers.idempotency_key {
        options = options.command_id(key.clone());
    }
    if let Some(version) = headers.if_match {
        options = options.expect_version(version);
    }
    match state.app.execute_with(command, options).await {
        Ok(outcome) => Ok(outcome),
        Err(CommandError::Rejected(TaskError::NotFound)) => Err(ApiError::no_task()),
        Err(CommandError::Rejected(rejection)) => Err(ApiError::conflict(rejection.to_string())),
        Err(CommandError::Conflict { actual, .. }) => match headers.if_match {
            Some(_) if actual == 0 => Err(ApiError::no_task()),
            Some(required) => Err(ApiError::precondition_failed(format!(
                "the task is at version {actual}, not {required}; nothing was changed"
            ))),
            None => Err(ApiError::conflict("the task kept changing under concurrent commands; try again")),
        },
        Err(CommandError::Store(error)) => Err(error.into()),
        Err(error) => {
            tracing::error!(%error, "command failed");
            Err(ApiError::internal())
        }
    }
}

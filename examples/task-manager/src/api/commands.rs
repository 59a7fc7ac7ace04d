//! The write side over HTTP: one handler per command, `If-Match` and `Idempotency-Key`.
//!
//! **Idempotency.** The key becomes the command's id ([`ExecuteOptions::command_id`]); the
//! event store records it with the events, so a request sent again with the same key, to any
//! command process, gets the first answer and appends nothing, and two at once append at most
//! once. A refused request records nothing and may be retried. The events also carry a
//! fingerprint of the request (the command, its task and its input): a key sent again with a
//! *different* request is answered `422 Unprocessable Entity` and executes nothing, as the IETF
//! draft on the `Idempotency-Key` header recommends.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use eventloom_core::{Command, CommandError, CommandOutcome, ExecuteOptions, Handle};
use serde::{Deserialize, Serialize};

use super::error::{ApiError, json};
use super::extract::{CommandHeaders, JsonBody, NoBody, TaskId};
use super::{AppState, within};
use crate::domain::{AssignTask, CompleteTask, CreateTask, ReopenTask, Task, TaskError, new_task_id};

/// The metadata header holding a keyed request's fingerprint.
const FINGERPRINT: &str = "request-fingerprint";

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
    position: eventloom_core::Position,
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

/// A stable 128-bit FNV-1a hash of the parts (each length-prefixed), in hex: the same request
/// gives the same text in every process and version.
fn fingerprint(parts: &[&str]) -> String {
    const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;
    let mut hash: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    let mut feed = |bytes: &[u8]| {
        for &b in bytes {
            hash ^= u128::from(b);
            hash = hash.wrapping_mul(PRIME);
        }
    };
    for part in parts {
        feed(&(part.len() as u64).to_be_bytes());
        feed(part.as_bytes());
    }
    format!("{hash:032x}")
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
    let description = body.description.unwrap_or_default();
    // The id is not part of the fingerprint: a retry makes a new one, and gets the first.
    let print = fingerprint(&[CreateTask::NAME, &body.title, &description]);
    let command = CreateTask::new(new_task_id(), body.title, description).map_err(|e| ApiError::bad_request(e.0))?;
    let outcome = within(execute(&state, command, print, &headers)).await?;
    Ok(answer(StatusCode::CREATED, &outcome))
}

/// `POST /tasks/{id}/assign`.
pub async fn assign(
    State(state): State<Arc<AppState>>,
    TaskId(id): TaskId,
    headers: CommandHeaders,
    JsonBody(body): JsonBody<AssignBody>,
) -> Result<Response, ApiError> {
    let print = fingerprint(&[AssignTask::NAME, &id, &body.assignee]);
    let command = AssignTask::new(id, body.assignee).map_err(|e| ApiError::bad_request(e.0))?;
    let outcome = within(execute(&state, command, print, &headers)).await?;
    Ok(answer(StatusCode::OK, &outcome))
}

/// `POST /tasks/{id}/complete`.
pub async fn complete(
    State(state): State<Arc<AppState>>,
    TaskId(id): TaskId,
    headers: CommandHeaders,
    _: NoBody,
) -> Result<Response, ApiError> {
    let print = fingerprint(&[CompleteTask::NAME, &id]);
    let outcome = within(execute(&state, CompleteTask { task_id: id }, print, &headers)).await?;
    Ok(answer(StatusCode::OK, &outcome))
}

/// `POST /tasks/{id}/reopen`.
pub async fn reopen(
    State(state): State<Arc<AppState>>,
    TaskId(id): TaskId,
    headers: CommandHeaders,
    _: NoBody,
) -> Result<Response, ApiError> {
    let print = fingerprint(&[ReopenTask::NAME, &id]);
    let outcome = within(execute(&state, ReopenTask { task_id: id }, print, &headers)).await?;
    Ok(answer(StatusCode::OK, &outcome))
}

/// Executes a command with the request's headers and sorts the outcome into HTTP answers.
async fn execute<C>(
    state: &AppState,
    command: C,
    print: String,
    headers: &CommandHeaders,
) -> Result<CommandOutcome, ApiError>
where
    C: Command<Aggregate = Task>,
    Task: Handle<C>,
{
    let Some(engine) = &state.engine else {
        return Err(ApiError::not_found("not found"));
    };
    let mut options = ExecuteOptions::default();
    if let Some(key) = &headers.idempotency_key {
        options = options.command_id(key.clone()).header(FINGERPRINT, print.clone());
    }
    if let Some(version) = headers.if_match {
        options = options.expect_version(version);
    }
    let key = headers.idempotency_key.as_deref();
    match engine.execute_with(command, options).await {
        Ok(outcome) => match key {
            Some(key) => same_request(state, key, &print, outcome).await,
            None => Ok(outcome),
        },
        Err(CommandError::Rejected(TaskError::NotFound)) => Err(ApiError::no_task()),
        Err(CommandError::Rejected(rejection)) => Err(ApiError::conflict(rejection.to_string())),
        Err(CommandError::Conflict { actual, .. }) => match headers.if_match {
            Some(_) if actual == 0 => Err(ApiError::no_task()),
            Some(required) => Err(ApiError::precondition_failed(format!(
                "the task is at version {actual}, not {required}; nothing was changed"
            ))),
            None => Err(ApiError::conflict("the task kept changing under concurrent commands; try again")),
        },
        // The key was first used on another stream: a different request, or a create sent
        // again (it made a new task id) or racing with itself.
        Err(CommandError::Store(eventloom_core::Error::CommandIdReused { command_id, .. })) => {
            match state.events.command_outcome(&command_id).await? {
                Some(first) => same_request(state, &command_id, &print, first.into()).await,
                None => Err(ApiError::internal()),
            }
        }
        Err(CommandError::Store(error)) => Err(error.into()),
        Err(error) => {
            tracing::error!(%error, "command failed");
            Err(ApiError::internal())
        }
    }
}

/// The outcome of a keyed command, if the events it refers to were appended by the same request
/// (a fresh execution, or the first one of a retry); a 422 if the key served another request.
async fn same_request(
    state: &AppState,
    key: &str,
    print: &str,
    outcome: CommandOutcome,
) -> Result<CommandOutcome, ApiError> {
    let last = state.events.read_stream(&outcome.stream, outcome.version, 1).await?;
    let Some(event) = last.first() else {
        tracing::error!(stream = %outcome.stream, version = outcome.version, "the outcome of a command id names no event");
        return Err(ApiError::internal());
    };
    let metadata = event.metadata.get()?;
    if metadata.command_id.as_deref() == Some(key)
        && metadata.headers.get(FINGERPRINT).map(String::as_str) == Some(print)
    {
        Ok(outcome)
    } else {
        Err(ApiError::key_reused("this Idempotency-Key was already used for a different request; nothing was executed"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_stable_and_unambiguous() {
        assert_eq!(fingerprint(&["a", "b"]), fingerprint(&["a", "b"]));
        assert_ne!(fingerprint(&["ab", ""]), fingerprint(&["a", "b"]));
        assert_eq!(fingerprint(&[]).len(), 32);
        // Pinned: stored fingerprints must keep matching after an upgrade.
        assert_eq!(fingerprint(&["CreateTask", "t", ""]), "65e540c4f3b286f8655e94d5ae4ec1df");
    }
}

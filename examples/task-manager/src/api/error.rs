//! Error answers: a status code and `{"error": "..."}`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// An HTTP error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The status code.
    pub status: StatusCode,
    /// What went wrong, for the client: never a store's internals.
    pub message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError { status, message: message.into() }
    }

    /// 400: malformed JSON, a missing or mistyped field, a bad parameter or header, a value out
    /// of bounds.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404: no such task (or route).
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// 404 for a task id.
    pub fn no_task() -> Self {
        Self::not_found("no such task")
    }

    /// 409: a business rule, or a conflict that outlived the engine's retries.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, message)
    }

    /// 412: `If-Match` named another version than the task's.
    pub fn precondition_failed(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PRECONDITION_FAILED, message)
    }

    /// 413: a body over the limit.
    pub fn payload_too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, message)
    }

    /// 422: an `Idempotency-Key` already used for a different request.
    pub fn key_reused(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, message)
    }

    /// 503: a store is down, the views are being built, or the server is shutting down.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }

    /// 504: the views did not catch up in time.
    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(StatusCode::GATEWAY_TIMEOUT, message)
    }

    /// 500: a bug or data this version cannot read; the details go to the log only.
    pub fn internal() -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    }
}

impl From<eventloom::Error> for ApiError {
    fn from(error: eventloom::Error) -> Self {
        use eventloom::Error as E;
        match &error {
            E::NotBuilt { .. } => ApiError::unavailable("the views are being built; try again shortly"),
            E::Unavailable { .. } | E::Timeout(_) | E::Shutdown => {
                tracing::warn!(%error, "store unavailable");
                ApiError::unavailable("a store is unavailable; try again shortly")
            }
            E::InvalidId { .. } | E::InvalidEvent { .. } | E::InvalidPosition(_) => {
                ApiError::bad_request(error.to_string())
            }
            E::PayloadTooLarge { .. } => ApiError::payload_too_large(error.to_string()),
            // Not the error's own text, which names the first request's stream.
            E::CommandIdReused { .. } => ApiError::key_reused(
                "this Idempotency-Key was already used for a different request; nothing was executed",
            ),
            E::Conflict { .. } => ApiError::conflict("the task changed meanwhile; try again"),
            _ => {
                tracing::error!(%error, "request failed");
                ApiError::internal()
            }
        }
    }
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = json(self.status, &Body { error: &self.message });
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// A JSON answer.
pub fn json(status: StatusCode, body: &impl Serialize) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => {
            (status, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], bytes).into_response()
        }
        Err(error) => {
            tracing::error!(%error, "cannot encode an answer");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                [(header::CONTENT_TYPE, "application/json")],
                r#"{"error":"internal error"}"#,
            )
                .into_response()
        }
    }
}

/// The answer to a path no route serves.
pub async fn not_found() -> ApiError {
    ApiError::not_found("not found")
}

/// The answer to a method a route does not serve.
pub async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
}

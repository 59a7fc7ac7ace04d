//! Extractors that answer bad input with the API's own errors (400, 404, 413), never axum's
//! defaults.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, StatusCode, header};
use eventloom::{Position, store::ListCursor};
use serde::de::DeserializeOwned;

use super::error::ApiError;
use crate::domain::is_task_id;

/// The largest request body accepted, in bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// How long a query waits for `min_position` by default.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(10);
/// The longest wait a query may ask for with `timeout_ms`.
pub const MAX_WAIT_MS: u64 = 60_000;

/// The `{id}` of a task's path. An id that is not one this server makes names no task: 404.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for TaskId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(id)) if is_task_id(&id) => Ok(TaskId(id)),
            _ => Err(ApiError::no_task()),
        }
    }
}

/// The request body, read whole (up to [`MAX_BODY_BYTES`], else 413).
async fn body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::payload_too_large(format!("the body is over the limit of {MAX_BODY_BYTES} bytes"))
        } else {
            ApiError::bad_request(format!("cannot read the body: {}", rejection.body_text()))
        }
    })
}

/// Decodes a JSON object (serde would also take a struct from an array: not here).
fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.trim_ascii_start().first() != Some(&b'{') {
        return Err(ApiError::bad_request("the body must be a JSON object"));
    }
    serde_json::from_slice(bytes).map_err(|error| ApiError::bad_request(format!("invalid JSON body: {error}")))
}

/// A JSON body; malformed JSON, a missing, unknown or mistyped field is a 400.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = body(req, state).await?;
        decode(&bytes).map(JsonBody)
    }
}

/// A body that is empty or `{}` (the commands that take no input).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoBody;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NoFields {}

impl<S: Send + Sync> FromRequest<S> for NoBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = body(req, state).await?;
        if !bytes.trim_ascii().is_empty() {
            decode::<NoFields>(&bytes)?;
        }
        Ok(NoBody)
    }
}

/// One header's value as text, if present once; a repeated or non-visible-ASCII one is a 400.
fn header_text<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Result<Option<&'a str>, ApiError> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else { return Ok(None) };
    if values.next().is_some() {
        return Err(ApiError::bad_request(format!("the {name} header is given more than once")));
    }
    let text = value.to_str().map_err(|_| ApiError::bad_request(format!("the {name} header must be visible ASCII")))?;
    Ok(Some(text.trim()))
}

/// `If-Match: 3` or `If-Match: "3"`: the version a command requires.
pub fn parse_if_match(text: &str) -> Option<u64> {
    let digits = text.strip_prefix('"').and_then(|t| t.strip_suffix('"')).unwrap_or(text);
    if digits.is_empty() || digits.len() > 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The headers a command honours.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandHeaders {
    /// `If-Match`: run only against this version, without retries.
    pub if_match: Option<u64>,
    /// `Idempotency-Key`: the command's id.
    pub idempotency_key: Option<String>,
}

static IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

impl<S: Send + Sync> FromRequestParts<S> for CommandHeaders {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let if_match = header_text(&parts.headers, &header::IF_MATCH)?
            .map(|text| {
                parse_if_match(text).ok_or_else(|| {
                    ApiError::bad_request(
                        "If-Match must be a task version, as 3 or \"3\" (the ETag of GET /tasks/{id})",
                    )
                })
            })
            .transpose()?;
        let idempotency_key = header_text(&parts.headers, &IDEMPOTENCY_KEY)?
            .map(|key| {
                eventloom::model::validate_command_id(key)
                    .map(|()| key.to_owned())
                    .map_err(|error| ApiError::bad_request(format!("Idempotency-Key: {error}")))
            })
            .transpose()?;
        Ok(CommandHeaders { if_match, idempotency_key })
    }
}

/// The query string's parameters, each at most once. Handlers [`take`](Params::take) the ones
/// they know, then [`finish`](Params::finish) refuses any other.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(BTreeMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Query(pairs) = Query::<Vec<(String, String)>>::from_request_parts(parts, state)
            .await
            .map_err(|rejection| ApiError::bad_request(format!("bad query string: {}", rejection.body_text())))?;
        let mut params = BTreeMap::new();
        for (name, value) in pairs {
            if params.contains_key(&name) {
                return Err(ApiError::bad_request(format!("query parameter `{name}` is given more than once")));
            }
            params.insert(name, value);
        }
        Ok(Params(params))
    }
}

impl Params {
    /// Removes and returns a parameter.
    pub fn take(&mut self, name: &str) -> Option<String> {
        self.0.remove(name)
    }

    /// Refuses parameters nobody took.
    pub fn finish(self) -> Result<(), ApiError> {
        match self.0.into_keys().next() {
            None => Ok(()),
            Some(name) => {
                let name: String = name.chars().take(64).collect();
                Err(ApiError::bad_request(format!("unknown query parameter `{name}`")))
            }
        }
    }
}

/// `?min_position=p&timeout_ms=n`: what a query waits for before reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Consistency {
    /// The views must have processed this position (a command's `position`).
    pub min_position: Option<Position>,
    /// How long to wait for it.
    pub timeout: Duration,
}

impl Consistency {
    /// Takes `min_position` and `timeout_ms` from `params`.
    pub fn take(params: &mut Params) -> Result<Self, ApiError> {
        let min_position = params
            .take("min_position")
            .map(|p| {
                p.parse::<Position>().map_err(|_| {
                    ApiError::bad_request("min_position must be a position token a command returned, as \"12.34\"")
                })
            })
            .transpose()?;
        let timeout = match params.take("timeout_ms") {
            None => DEFAULT_WAIT,
            Some(ms) => match ms.parse::<u64>() {
                Ok(ms) if ms <= MAX_WAIT_MS => Duration::from_millis(ms),
                _ => {
                    return Err(ApiError::bad_request(format!(
                        "timeout_ms must be a whole number of milliseconds from 0 to {MAX_WAIT_MS}"
                    )));
                }
            },
        };
        Ok(Consistency { min_position, timeout })
    }
}

/// Parses a `cursor` parameter: only one that this server returned (a task id and a creation
/// position's sort key) passes; anything else is a 400.
pub fn parse_cursor(text: &str) -> Result<ListCursor, ApiError> {
    let bad = || ApiError::bad_request("cursor must be the `next` of an earlier page");
    let cursor: ListCursor = text.parse().map_err(|_| bad())?;
    let order_ok = cursor.order.len() <= 64 && cursor.order.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    if !order_ok || !is_task_id(&cursor.id) {
        return Err(bad());
    }
    Ok(cursor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_match_values() {
        assert_eq!(parse_if_match("3"), Some(3));
        assert_eq!(parse_if_match("\"3\""), Some(3));
        assert_eq!(parse_if_match("0"), Some(0));
        for bad in ["", "\"\"", "W/\"3\"", "*", "-1", "3.0", "\"3", "abc", "99999999999999999999999"] {
            assert_eq!(parse_if_match(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn cursors() {
        let id = crate::domain::new_task_id();
        let good = ListCursor { order: Position::new(3, 4).sort_key(), id: id.clone() };
        assert_eq!(parse_cursor(&good.to_string()).unwrap(), good);
        let hostile = ListCursor { order: "\0".into(), id };
        assert!(parse_cursor(&hostile.to_string()).is_err());
        assert!(parse_cursor("zz").is_err());
    }

    #[test]
    fn unknown_parameters_are_refused() {
        let mut params =
            Params(BTreeMap::from([("limit".to_owned(), "1".to_owned()), ("x".to_owned(), String::new())]));
        assert_eq!(params.take("limit").as_deref(), Some("1"));
        assert!(params.finish().is_err());
        assert!(Params::default().finish().is_ok());
    }
}

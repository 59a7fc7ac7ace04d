//! The HTTP API of both services (axum).
//!
//! | method and path | service | does |
//! |---|---|---|
//! | `POST /orders` `{"id","sku","qty"}` | orders | places an order |
//! | `POST /orders/{id}/payment` `{"ok"}` | orders | records its payment (or its failure) |
//! | `GET /orders/{id}` | orders | the order's status |
//! | `POST /stock/{sku}` `{"qty","id"}` | inventory | adds items (`id` makes the request idempotent) |
//! | `GET /stock/{sku}` | inventory | available, reserved, dispatched |
//! | `GET /health` | both | the App's status, with lags |

use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use eventloom::{App, CommandError, CommandOutcome, ErrorKind, ExecuteOptions, Reader};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::domain::{AddStock, PlaceOrder, RecordPayment, Refusal};
use crate::views::{Inventory, Orders};

/// What the handlers share.
#[derive(Clone)]
pub struct Http {
    /// The service's App.
    pub app: App,
}

/// The orders service's routes.
pub fn orders(http: Http) -> Router {
    Router::new()
        .route("/orders", post(place))
        .route("/orders/{id}/payment", post(pay))
        .route("/orders/{id}", get(order))
        .route("/health", get(health))
        .with_state(http)
}

/// The inventory service's routes.
pub fn inventory(http: Http) -> Router {
    Router::new().route("/stock/{sku}", post(add_stock).get(stock)).route("/health", get(health)).with_state(http)
}

fn reply(status: StatusCode, body: serde_json::Value) -> Response {
    (status, [("content-type", "application/json")], body.to_string()).into_response()
}

fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|error| format!("invalid JSON body: {error}"))
}

fn bad_request(reason: String) -> Response {
    reply(StatusCode::BAD_REQUEST, json!({ "error": reason }))
}

fn outcome(result: Result<CommandOutcome, CommandError<Refusal>>, created: bool) -> Response {
    match result {
        Ok(done) => {
            let status = if created && !done.replayed { StatusCode::CREATED } else { StatusCode::OK };
            reply(status, json!({ "version": done.version, "position": done.position.to_string() }))
        }
        Err(error) => {
            let status = match error.kind() {
                ErrorKind::Rejected | ErrorKind::Conflict => StatusCode::CONFLICT,
                ErrorKind::InvalidInput => StatusCode::BAD_REQUEST,
                _ => StatusCode::SERVICE_UNAVAILABLE,
            };
            let status = match &error {
                CommandError::Rejected(Refusal::Invalid(_)) => StatusCode::BAD_REQUEST,
                CommandError::Rejected(Refusal::NoOrder(_)) => StatusCode::NOT_FOUND,
                _ => status,
            };
            reply(status, json!({ "error": error.to_string() }))
        }
    }
}

#[derive(Deserialize)]
struct Place {
    id: String,
    sku: String,
    qty: u64,
}

async fn place(State(http): State<Http>, body: Bytes) -> Response {
    let place: Place = match parse(&body) {
        Ok(place) => place,
        Err(reason) => return bad_request(reason),
    };
    // The order id makes the request idempotent: a retry gets the first answer.
    let options = ExecuteOptions::default().command_id(format!("place/{}", place.id));
    let command = PlaceOrder { id: place.id, sku: place.sku, qty: place.qty };
    outcome(http.app.execute_with(command, options).await, true)
}

#[derive(Deserialize)]
struct Payment {
    ok: bool,
}

async fn pay(State(http): State<Http>, Path(id): Path<String>, body: Bytes) -> Response {
    let payment: Payment = match parse(&body) {
        Ok(payment) => payment,
        Err(reason) => return bad_request(reason),
    };
    let options = ExecuteOptions::default().command_id(format!("pay/{id}"));
    outcome(http.app.execute_with(RecordPayment { id, ok: payment.ok }, options).await, false)
}

async fn order(State(http): State<Http>, Path(id): Path<String>) -> Response {
    let reader: Reader<Orders> = match http.app.reader::<Orders>() {
        Ok(reader) => reader,
        Err(error) => return reply(StatusCode::INTERNAL_SERVER_ERROR, json!({ "error": error.to_string() })),
    };
    match reader.get(&id).await {
        Ok(Some(view)) => reply(StatusCode::OK, json!(view)),
        Ok(None) => reply(StatusCode::NOT_FOUND, json!({ "error": format!("no order {id}") })),
        Err(error) => reply(StatusCode::SERVICE_UNAVAILABLE, json!({ "error": error.to_string() })),
    }
}

#[derive(Deserialize)]
struct Add {
    qty: u64,
    #[serde(default)]
    id: Option<String>,
}

async fn add_stock(State(http): State<Http>, Path(sku): Path<String>, body: Bytes) -> Response {
    let add: Add = match parse(&body) {
        Ok(add) => add,
        Err(reason) => return bad_request(reason),
    };
    let mut options = ExecuteOptions::default();
    if let Some(id) = add.id {
        options = options.command_id(format!("add/{id}"));
    }
    outcome(http.app.execute_with(AddStock { sku, qty: add.qty }, options).await, false)
}

async fn stock(State(http): State<Http>, Path(sku): Path<String>) -> Response {
    let reader: Reader<Inventory> = match http.app.reader::<Inventory>() {
        Ok(reader) => reader,
        Err(error) => return reply(StatusCode::INTERNAL_SERVER_ERROR, json!({ "error": error.to_string() })),
    };
    match reader.get(&sku).await {
        Ok(Some(view)) => reply(StatusCode::OK, json!(view)),
        Ok(None) => reply(StatusCode::NOT_FOUND, json!({ "error": format!("no stock of {sku}") })),
        Err(error) => reply(StatusCode::SERVICE_UNAVAILABLE, json!({ "error": error.to_string() })),
    }
}

/// A relay's lag: the last source sequence relayed, the messages its feed holds after it (exact
/// up to the cap) and how old the first is in milliseconds (`null` when none, or when the feed
/// cannot tell).
fn relay_lag(relay: &Result<eventloom::app::RelayLag, std::sync::Arc<eventloom::Error>>) -> serde_json::Value {
    match relay {
        Ok(lag) => match &lag.unrelayed {
            Ok(behind) => json!({
                "relayed": lag.relayed,
                "events": behind.events,
                "oldest_ms": behind.oldest.map(|age| u64::try_from(age.as_millis()).unwrap_or(u64::MAX)),
                "caught_up": lag.caught_up(),
            }),
            Err(error) => json!({ "relayed": lag.relayed, "error": error.to_string() }),
        },
        Err(error) => json!({ "error": error.to_string() }),
    }
}

async fn health(State(http): State<Http>) -> Response {
    let status = match tokio::time::timeout(Duration::from_secs(2), http.app.health(10_000)).await {
        Ok(status) => status,
        Err(_) => return reply(StatusCode::SERVICE_UNAVAILABLE, json!({ "healthy": false, "error": "timed out" })),
    };
    let members = |list: &[eventloom::app::ProjectionHealth]| -> Vec<serde_json::Value> {
        list.iter()
            .map(|m| {
                let lag = match &m.lag {
                    Some(Ok(lag)) => {
                        let events = lag.unprojected.as_ref().map(|u| u.events).ok();
                        json!({ "events": events, "caught_up": lag.caught_up() })
                    }
                    Some(Err(error)) => json!({ "error": error.to_string() }),
                    None => serde_json::Value::Null,
                };
                let mut member = json!({ "name": m.name, "state": format!("{:?}", m.state), "lag": lag });
                if let Some(relay) = &m.relay {
                    member["lag"] = relay_lag(relay);
                    member["leader"] = json!(m.lease.token().is_some());
                }
                member
            })
            .collect()
    };
    let healthy = status.is_healthy();
    let body = json!({
        "healthy": healthy,
        "projections": members(&status.projections),
        "process_managers": members(&status.process_managers),
        "relays": members(&status.relays),
    });
    reply(if healthy { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, body)
}

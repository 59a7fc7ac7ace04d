//! One trace across processes: the command and projector roles as separate processes on
//! PostgreSQL, both exporting spans over OTLP/HTTP (JSON) to a small collector inside this test.
//! A `POST /tasks` (with an incoming `traceparent` and without) makes one trace that holds the
//! request span of the command process and the `eventloom.event` span of the projector process
//! for the event it appended; the projector's `eventloom.batch` span links to that span and holds
//! its `eventloom.view_write`.
//!
//! Needs `DATABASE_URL` (`bash scripts/test.sh` provides it); without it the test fails.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use serde_json::Value;

use crate::scenarios::unique;
use crate::server::{Env, Server};

/// A span as the collector received it.
#[derive(Debug, Clone)]
struct Span {
    role: String,
    name: String,
    /// Its `path` attribute (request spans have one).
    path: String,
    trace_id: String,
    span_id: String,
    parent: String,
    /// (trace id, span id) of each link.
    links: Vec<(String, String)>,
}

type Spans = Arc<Mutex<Vec<Span>>>;

fn text(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_ascii_lowercase()
}

/// Reads an OTLP/JSON `ExportTraceServiceRequest`.
fn decode(body: &[u8]) -> Vec<Span> {
    let json: Value = serde_json::from_slice(body).expect("an OTLP/JSON body");
    let mut spans = Vec::new();
    for resource in json["resourceSpans"].as_array().into_iter().flatten() {
        let attributes = resource["resource"]["attributes"].as_array().cloned().unwrap_or_default();
        let role = attributes
            .iter()
            .find(|a| a["key"] == "task_manager.role")
            .map(|a| text(&a["value"]["stringValue"]))
            .unwrap_or_default();
        for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
            for span in scope["spans"].as_array().into_iter().flatten() {
                spans.push(Span {
                    role: role.clone(),
                    name: span["name"].as_str().unwrap_or_default().to_owned(),
                    path: span["attributes"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .find(|a| a["key"] == "path")
                        .and_then(|a| a["value"]["stringValue"].as_str())
                        .unwrap_or_default()
                        .to_owned(),
                    trace_id: text(&span["traceId"]),
                    span_id: text(&span["spanId"]),
                    parent: text(&span["parentSpanId"]),
                    links: span["links"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|l| (text(&l["traceId"]), text(&l["spanId"])))
                        .collect(),
                });
            }
        }
    }
    spans
}

async fn collect(State(spans): State<Spans>, body: Bytes) -> ([(&'static str, &'static str); 1], &'static str) {
    let got = decode(&body);
    spans.lock().unwrap().extend(got);
    ([("content-type", "application/json")], "{}")
}

/// The collector: `POST /v1/traces` on a free port.
async fn collector() -> (String, Spans) {
    let spans: Spans = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().route("/v1/traces", axum::routing::post(collect)).with_state(spans.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), spans)
}

fn env(endpoint: Option<&str>) -> Env {
    let database = std::env::var("DATABASE_URL").ok().filter(|v| !v.is_empty()).unwrap_or_else(|| {
        panic!("DATABASE_URL must be set for the tracing end-to-end test: run `bash scripts/test.sh`")
    });
    let mut set = vec![("DATABASE_URL".to_owned(), database)];
    if let Some(endpoint) = endpoint {
        set.push(("OTEL_EXPORTER_OTLP_ENDPOINT".into(), endpoint.into()));
        // Export every 100 ms instead of 5 s.
        set.push(("OTEL_BSP_SCHEDULE_DELAY".into(), "100".into()));
    }
    Env { set, remove: vec!["REDIS_URL".into(), "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT".into()] }
}

/// The trace `trace_id` once it holds the command's request span and the projector's event span,
/// a child of a span the command process exported in that trace (the span current when the
/// event was appended, whose context the event's metadata carries: the request span, at the
/// task manager's log level), linked from a batch that wrote the views: (request, event, view
/// write).
fn chain(spans: &[Span], trace_id: &str) -> Option<(Span, Span, Span)> {
    let request = spans
        .iter()
        .find(|s| s.trace_id == trace_id && s.role == "command" && s.name == "request" && s.path == "/tasks")?;
    let of_the_command = |event: &&Span| {
        spans.iter().any(|s| s.trace_id == trace_id && s.span_id == event.parent && s.role == "command")
    };
    for event in spans
        .iter()
        .filter(|s| s.trace_id == trace_id && s.role == "projector" && s.name == "eventloom.event")
        .filter(of_the_command)
    {
        let link = (event.trace_id.clone(), event.span_id.clone());
        for batch in spans.iter().filter(|s| s.name == "eventloom.batch" && s.links.contains(&link)) {
            let write = spans.iter().find(|s| {
                s.name == "eventloom.view_write" && s.trace_id == batch.trace_id && s.parent == batch.span_id
            });
            if let Some(write) = write {
                assert_eq!(batch.role, "projector");
                return Some((request.clone(), event.clone(), write.clone()));
            }
        }
    }
    None
}

async fn wait_for_chain(spans: &Spans, trace_id: &str) -> (Span, Span, Span) {
    let started = Instant::now();
    loop {
        if let Some(found) = chain(&spans.lock().unwrap(), trace_id) {
            return found;
        }
        if started.elapsed() > Duration::from_secs(30) {
            let seen: Vec<_> = spans.lock().unwrap().iter().map(|s| (s.role.clone(), s.name.clone())).collect();
            panic!("no trace {trace_id} from request to view write; spans seen: {seen:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_from_an_http_request_to_the_view_write_of_a_projector_process() {
    let (endpoint, spans) = collector().await;
    let schema = unique("tm_trace").replace('-', "_");
    let with_schema = |mut env: Env| {
        env.set.push(("TASK_MANAGER_SCHEMA".into(), schema.clone()));
        env
    };
    let projector = Server::start("projector", "projector", true, &with_schema(env(Some(&endpoint)))).await;
    let command = Server::start("command", "command", true, &with_schema(env(Some(&endpoint)))).await;
    let query = Server::start("query", "query", true, &with_schema(env(None))).await;
    let (c, q) = (command.client(), query.client());

    // A caller's trace context: the request joins its trace.
    let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let created = c
        .post_with(
            "/tasks",
            &[("traceparent", incoming), ("tracestate", "congo=t61rcWkgMzE")],
            r#"{"title": "traced"}"#,
        )
        .await
        .ok(201);
    let (id, position) = (created["id"].as_str().unwrap(), created["position"].as_str().unwrap());
    let task = q.get(&format!("/tasks/{id}?min_position={position}")).await.ok(200);
    assert_eq!(task["title"], "traced", "the view is readable");
    let (request, event, write) = wait_for_chain(&spans, "4bf92f3577b34da6a3ce929d0e0e4736").await;
    assert_eq!(request.parent, "00f067aa0ba902b7", "the request span's parent is the caller's span");
    assert_ne!(event.parent, "", "the event span is a child in the trace: {event:?}");
    assert_eq!(write.role, "projector");

    // Without one: the request span is the root of a new trace, which the projector joins.
    let created = c.post("/tasks", r#"{"title": "untraced"}"#).await.ok(201);
    let (id, position) = (created["id"].as_str().unwrap(), created["position"].as_str().unwrap());
    q.get(&format!("/tasks/{id}?min_position={position}")).await.ok(200);
    let started = Instant::now();
    let root = loop {
        let root = spans
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|s| {
                s.role == "command"
                    && s.name == "request"
                    && s.path == "/tasks"
                    && s.parent.is_empty()
                    && s.trace_id != "4bf92f3577b34da6a3ce929d0e0e4736"
            })
            .cloned();
        if let Some(root) = root {
            break root;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "the second request's span was not exported");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    wait_for_chain(&spans, &root.trace_id).await;

    // A malformed traceparent from outside is ignored: the request is answered, in a trace of its own.
    c.post_with("/tasks", &[("traceparent", "00-nonsense-01")], r#"{"title": "x"}"#).await.ok(201);

    // SIGTERM flushes what is left; both exit cleanly.
    for server in [command, projector, query] {
        assert!(server.stop(Duration::from_secs(30)).await.success());
    }
    let spans = spans.lock().unwrap();
    assert!(spans.iter().all(|s| s.trace_id.len() == 32 && s.span_id.len() == 16), "ids as hex");
}

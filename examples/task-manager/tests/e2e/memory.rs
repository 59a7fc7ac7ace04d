//! The API on the in-memory default: every role in one process, as `cargo run` starts it.

use std::time::{Duration, Instant};

use crate::client::Client;
use crate::scenarios::{self, Api};
use crate::server::{Env, Server, run_to_end};

/// Waits until `/health` shows live views (the projector's first build is done).
pub async fn views_live(client: Client) {
    let started = Instant::now();
    loop {
        let health = client.get("/health").await.ok(200);
        if !health["views"]["live"].is_null() {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "the views never went live: {health}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn start() -> (Server, Api) {
    let server = Server::start("all", "all", true, &Env::memory()).await;
    let client = server.client();
    views_live(client).await;
    (server, Api { cmd: client, cmd2: client, query: client })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn happy_path_and_read_your_writes() {
    let (_server, api) = start().await;
    scenarios::happy_path(&api).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paging_and_filters() {
    let (_server, api) = start().await;
    scenarios::paging(&api).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_answers() {
    let (_server, api) = start().await;
    scenarios::errors(&api).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_match() {
    let (_server, api) = start().await;
    scenarios::if_match(&api).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_key() {
    let (_server, api) = start().await;
    scenarios::idempotency(&api).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_min_position_is_504() {
    let (_server, api) = start().await;
    scenarios::read_timeout(&api).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_stats_of_a_new_process() {
    let (_server, api) = start().await;
    let health = api.query.get("/health").await.ok(200);
    assert_eq!(health["status"], "ok");
    assert_eq!(health["role"], "all");
    assert_eq!(health["stores"], serde_json::json!({ "events": "memory", "replica": false, "views": "memory" }));
    assert_eq!(health["projector"]["state"], "running");
    assert_eq!(health["views"]["projection"], "tasks");
    let stats = api.query.get("/stats").await.ok(200);
    assert_eq!(stats, serde_json::json!({ "open": 0, "completed": 0, "total": 0 }));
    let task = api.create("counted").await;
    let health = api.query.get(&format!("/stats?min_position={}", task.position)).await.ok(200);
    assert_eq!(health["total"], 1);
    let health = api.query.get("/health").await.ok(200);
    assert_eq!(health["views"]["checkpoint"], task.position.as_str());
    assert_eq!(health["views"]["caught_up"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_answers_requests_in_flight_then_exits() {
    let (server, api) = start().await;
    let query = api.query;
    // A query waiting for a position that will never come: the stop cuts it short with a 503.
    let waiting =
        tokio::spawn(async move { query.get("/stats?min_position=18446744073709551615.1&timeout_ms=60000").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let status = server.stop(Duration::from_secs(20)).await;
    assert!(status.success(), "exit status {status}");
    let answer = waiting.await.unwrap();
    assert!(answer.error(503).contains("shutting down"));
    assert!(started.elapsed() < Duration::from_secs(10), "the stop took {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_line() {
    let (status, stdout, _) = run_to_end(&["--help"], &Env::memory()).await;
    assert!(status.success());
    assert!(stdout.contains("Usage: task-manager [--role all|command|query|projector] [--addr HOST:PORT]"));
    for bad in [&["--role", "writer"][..], &["--addr", "nowhere"], &["--bogus"], &["--role"]] {
        let (status, _, stderr) = run_to_end(bad, &Env::memory()).await;
        assert_eq!(status.code(), Some(2), "{bad:?}: {stderr}");
        assert!(stderr.contains("Usage:"), "{bad:?}: {stderr}");
    }
    for role in ["command", "query", "projector"] {
        let (status, _, stderr) = run_to_end(&["--role", role, "--addr", "127.0.0.1:1"], &Env::memory()).await;
        assert_eq!(status.code(), Some(1), "--role {role} on memory: {stderr}");
        assert!(stderr.contains("in memory") && stderr.contains("--role all"), "{stderr}");
    }
}

//! The roles as separate processes on PostgreSQL and Redis (and on PostgreSQL alone): two
//! command processes, query processes and projectors, in a fresh schema and key prefix per test.
//!
//! Needs `DATABASE_URL` and `REDIS_URL`: `bash scripts/test.sh` provides them (starting
//! throwaway servers when they are unset). Without them the test fails; it never skips.

use std::time::{Duration, Instant};

use crate::client::Client;
use crate::scenarios::{self, Api, unique};
use crate::server::{Env, Server};

pub fn env() -> Env {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let (Some(database), Some(redis)) = (var("DATABASE_URL"), var("REDIS_URL")) else {
        panic!(
            "DATABASE_URL and REDIS_URL must be set for the split-role end-to-end test: \
             run `bash scripts/test.sh` (it starts throwaway PostgreSQL and Redis servers)"
        );
    };
    // A fresh schema and key prefix: this test sees only its own data.
    let name = unique("tm").replace('-', "_");
    Env {
        set: vec![
            ("DATABASE_URL".into(), database),
            ("REDIS_URL".into(), redis),
            ("TASK_MANAGER_SCHEMA".into(), name.clone()),
            ("TASK_MANAGER_PREFIX".into(), format!("{name}:")),
        ],
        remove: Vec::new(),
    }
}

/// Waits until the query process's `/health` shows live views that have caught up.
async fn caught_up(query: Client) {
    let started = Instant::now();
    loop {
        let health = query.get("/health").await.ok(200);
        if health["views"]["caught_up"] == true {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "the views never caught up: {health}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_roles_on_postgres_and_redis() {
    split_roles(env(), "redis").await;
}

/// The same with the views on PostgreSQL too (no `REDIS_URL`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_roles_on_postgres_alone() {
    let mut env = env();
    env.set.retain(|(name, _)| name != "REDIS_URL");
    env.remove.push("REDIS_URL".into());
    split_roles(env, "postgres").await;
}

async fn split_roles(env: Env, views: &str) {
    // The query process first: before any projector built the views, queries answer 503.
    let query = Server::start("query", "query", true, &env).await;
    let q = query.client();
    let health = q.get("/health").await.ok(200);
    assert_eq!((health["role"].as_str(), health["stores"]["views"].as_str()), (Some("query"), Some(views)));
    assert_eq!(
        (health["stores"]["events"].as_str(), health["stores"]["replica"].as_bool()),
        (Some("postgres"), Some(false))
    );
    q.get("/stats").await.error(503);
    q.get("/tasks").await.error(503);
    assert_eq!(q.get("/stats").await.header("retry-after"), Some("1"));
    // Commands are not served here.
    q.post("/tasks", r#"{"title": "x"}"#).await.error(405);

    let cmd_a = Server::start("command-a", "command", true, &env).await;
    let cmd_b = Server::start("command-b", "command", true, &env).await;
    assert_eq!(cmd_a.client().get("/health").await.ok(200)["role"], "command");
    cmd_a.client().get("/stats").await.error(404);
    // Written before any projector ran: the first build picks it up.
    let api = Api { cmd: cmd_a.client(), cmd2: cmd_b.client(), query: q };
    let early = api.create("before the projector").await;

    let projector = Server::start("projector", "projector", true, &env).await;
    let health = projector.client().get("/health").await.ok(200);
    assert_eq!((health["role"].as_str(), health["projector"]["state"].as_str()), (Some("projector"), Some("running")));
    projector.client().get("/tasks").await.error(404);
    assert_eq!(api.read(&early.id, &early.position).await["title"], "before the projector");
    caught_up(q).await;

    scenarios::happy_path(&api).await;
    scenarios::errors(&api).await;
    scenarios::if_match(&api).await;
    scenarios::idempotency(&api).await;
    scenarios::paging(&api).await;
    scenarios::read_timeout(&api).await;

    // An Idempotency-Key retried against the other command process, after the first one stopped.
    let key = unique("handover");
    let headers = [("Idempotency-Key", key.as_str())];
    let first = api.cmd.post_with("/tasks", &headers, r#"{"title": "handed over"}"#).await;
    assert_eq!(first.status, 201, "{}", first.body);
    let status = cmd_a.stop(Duration::from_secs(30)).await;
    assert!(status.success(), "command-a exit status {status}");
    let again = api.cmd2.post_with("/tasks", &headers, r#"{"title": "handed over"}"#).await;
    assert_eq!((again.status, again.json()), (201, first.json()));

    // The projector dies without a chance to clean up; writes go on meanwhile.
    caught_up(q).await;
    projector.kill().await;
    let api = Api { cmd: cmd_b.client(), cmd2: cmd_b.client(), query: q };
    let during = api.create("while no projector runs").await;
    let assigned = api.assign(&during.id, "ann").await;
    q.get(&format!("/tasks/{}?min_position={}&timeout_ms=300", during.id, assigned.position)).await.error(504);
    // `/health` says how far behind, as numbers: the two events, the age of the first.
    let health = q.get("/health").await.ok(200);
    let lag = &health["views"]["lag"];
    assert_eq!((lag["events"].as_u64(), lag["more"].as_bool()), (Some(2), Some(false)), "{health}");
    assert!(lag["oldest_unprojected_ms"].as_u64() >= Some(300), "the first waited out a 300 ms query: {health}");
    assert_eq!(health["views"]["caught_up"], false);
    // A new projector (without --addr: it serves nothing) takes over from the checkpoint.
    let replacement = Server::start("projector-2", "projector", false, &env).await;
    let seen = api.read(&during.id, &assigned.position).await;
    assert_eq!((seen["assignee"].as_str(), seen["version"].as_u64()), (Some("ann"), Some(2)));
    let health = q.get("/health").await.ok(200);
    let lag = &health["views"]["lag"];
    assert_eq!((lag["events"].as_u64(), lag["oldest_unprojected_ms"].is_null()), (Some(0), true), "{health}");
    let after = api.complete(&during.id).await;
    assert_eq!(api.read(&during.id, &after.position).await["status"], "completed");

    // A second query process reads the same views; a second projector stands by.
    let query_2 = Server::start("query-2", "query", true, &env).await;
    let api_2 = Api { query: query_2.client(), ..api };
    assert_eq!(api_2.read(&during.id, &after.position).await["status"], "completed");
    let standby = Server::start("projector-3", "projector", true, &env).await;
    let lease = |health: &serde_json::Value| health["projector"]["lease"].as_str().map(str::to_owned);
    assert_eq!(lease(&standby.client().get("/health").await.ok(200)).as_deref(), Some("standby"));
    // The leader dies: the standby takes the lease and read-your-writes goes on.
    replacement.kill().await;
    let later = api.create("after the leader died").await;
    assert_eq!(api_2.read(&later.id, &later.position).await["title"], "after the leader died");
    let health = standby.client().get("/health").await.ok(200);
    assert_eq!(lease(&health).as_deref(), Some("leading"), "{health}");
    assert!(health["projector"]["token"].as_u64() > Some(2), "{health}");
    scenarios::happy_path(&api_2).await;

    for server in [standby, cmd_b, query, query_2] {
        let name = server.name.clone();
        let status = server.stop(Duration::from_secs(30)).await;
        assert!(status.success(), "{name} exit status {status}");
    }
}

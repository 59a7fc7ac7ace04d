//! `categories`, `streams`, `events` and `follow`.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};

use crate::support::{BIN, append, database_url, fresh_schema, run, stores};

/// 2026-12-01T09:00:00Z, in microseconds.
const NINE: i64 = 1_796_115_600_000_000;
const HOUR: i64 = 3_600_000_000;

#[tokio::test]
async fn the_log_lists_categories_streams_and_events_as_of_a_version_or_a_time() {
    let schema = fresh_schema();
    let pg = stores(&schema).await;
    append(&pg.events, "task/t-1", "TaskCreated", r#"{"title":"write docs"}"#, NINE).await;
    append(&pg.events, "task/t-1", "TaskAssigned", r#"{"assignee":"ada"}"#, NINE + HOUR).await;
    let third = append(&pg.events, "task/t-1", "TaskCompleted", "{}", NINE + 2 * HOUR).await;
    append(&pg.events, "task/t-2", "TaskCreated", r#"{"title":"review"}"#, NINE).await;
    append(&pg.events, "order/o-1", "OrderPlaced", r#"{"lines":2}"#, NINE).await;

    let categories = run(&schema, &["categories", "--json"]).await.json();
    assert_eq!(categories, serde_json::json!(["order", "task"]));
    let streams = run(&schema, &["streams", "task", "--json"]).await.json();
    assert_eq!(
        streams,
        serde_json::json!([
            { "stream": "task/t-1", "id": "t-1", "version": 3 },
            { "stream": "task/t-2", "id": "t-2", "version": 1 },
        ])
    );
    let page = run(&schema, &["streams", "task", "--after", "t-1", "--json"]).await.json();
    assert_eq!(page.as_array().unwrap().len(), 1, "{page}");
    assert!(run(&schema, &["streams", "task"]).await.ok().contains("task/t-2"));

    let events = run(&schema, &["events", "task/t-1", "--json"]).await.json();
    let events = events.as_array().unwrap();
    assert_eq!(events.len(), 3);
    assert_eq!(events[0]["event_type"], "TaskCreated");
    assert_eq!(events[0]["payload"]["title"], "write docs", "decoded JSON, not a string");
    assert_eq!(events[0]["metadata"]["correlation_id"], format!("corr-{NINE}"));
    assert_eq!(events[0]["recorded_at"], "2026-12-01T09:00:00Z");
    assert_eq!(events[2]["position"], third.to_string());
    assert_eq!(events[2]["version"], 3);

    let as_of = |args: &'static [&'static str]| {
        let schema = schema.clone();
        async move {
            let mut all = vec!["events", "task/t-1", "--json"];
            all.extend_from_slice(args);
            let shown = run(&schema, &all).await.json();
            shown.as_array().unwrap().iter().map(|e| e["event_type"].as_str().unwrap().to_owned()).collect::<Vec<_>>()
        }
    };
    assert_eq!(as_of(&["--as-of-version", "2"]).await, ["TaskCreated", "TaskAssigned"]);
    assert_eq!(as_of(&["--as-of-time", "2026-12-01T10:30:00Z"]).await, ["TaskCreated", "TaskAssigned"]);
    assert_eq!(as_of(&["--as-of-time", "2026-12-01T11:30:00+01:00"]).await, ["TaskCreated", "TaskAssigned"]);
    assert_eq!(as_of(&["--as-of-time", "1796115600000000"]).await, ["TaskCreated"]);
    assert_eq!(as_of(&["--as-of-time", "2026-11-30T00:00:00Z"]).await, Vec::<String>::new());
    assert_eq!(as_of(&["--limit", "1"]).await, ["TaskCreated"]);

    let human = run(&schema, &["events", "task/t-1", "--as-of-version", "1"]).await;
    assert!(human.ok().contains("#1 TaskCreated v1 at 2026-12-01T09:00:00Z"), "{human:#?}");
    assert!(!human.stdout.contains("TaskAssigned"), "{human:#?}");

    run(&schema, &["events", "task/t-9"]).await.failed(3, "no stream task/t-9");
    run(&schema, &["events", "t-1"]).await.failed(2, "category/id");
    run(&schema, &["events", "task/t-1", "--as-of-time", "yesterday"]).await.failed(2, "not a time");
}

#[tokio::test]
async fn follow_prints_an_event_appended_after_it_started_and_stops_on_sigterm() {
    let schema = fresh_schema();
    let pg = stores(&schema).await;
    let before = append(&pg.events, "task/t-1", "TaskCreated", r#"{"title":"before"}"#, NINE).await;

    // From that event on (`head` is the last event readable now: on a shared server another
    // test's open transaction may hold it back).
    let from = before.to_string();
    let mut child = tokio::process::Command::new(BIN)
        .args(["follow", "--from", &from])
        .env("DATABASE_URL", database_url())
        .env("EVENTLOOM_SCHEMA", &schema)
        .env_remove("REDIS_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start eventloom-admin follow");
    // It says on stderr once it knows where the head is.
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let started = tokio::time::timeout(Duration::from_secs(30), stderr.next_line()).await;
    let started = started.expect("follow starts in 30 s").unwrap().unwrap_or_default();
    assert!(started.starts_with("following"), "{started}");

    let position = append(&pg.events, "task/t-1", "TaskAssigned", r#"{"assignee":"ada"}"#, NINE + HOUR).await;
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), stdout.next_line()).await;
    let line = line.expect("the event shows in 30 s").unwrap().unwrap_or_default();
    assert!(line.starts_with(&position.to_string()), "{line}");
    assert!(line.contains("task/t-1@2  TaskAssigned") && line.contains("ada"), "{line}");
    assert!(!line.contains("before"), "only what came after --from: {line}");

    let pid = child.id().expect("still running").to_string();
    let killed = tokio::process::Command::new("kill").args(["-TERM", &pid]).status().await.unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait()).await.expect("stops on SIGTERM").unwrap();
    assert_eq!(status.code(), Some(0), "a clean stop");
}

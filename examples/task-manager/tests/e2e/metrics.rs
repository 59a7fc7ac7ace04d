//! `GET /metrics`: scraped before and after commands, the series move; on the projector role
//! too (its batches).

use std::time::{Duration, Instant};

use crate::client::Client;
use crate::server::{Env, Server};

/// The value of the series `name` whose labels include every pair of `labels` (summed over the
/// series that match, 0 when none does), from a scrape in the Prometheus text format.
fn value(scrape: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
            let matches = metric == name && labels.iter().all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
            matches.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}

/// Scrapes `/metrics`: 200, the Prometheus text format.
async fn scrape(client: Client) -> String {
    let response = client.get("/metrics").await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(response.header("content-type"), Some("text/plain; version=0.0.4"));
    response.body
}

/// Waits until `/metrics` of `client` shows `name{labels}` at `at_least` or more.
async fn rises_to(client: Client, name: &str, labels: &[(&str, &str)], at_least: f64) -> String {
    let started = Instant::now();
    loop {
        let scraped = scrape(client).await;
        if value(&scraped, name, labels) >= at_least {
            return scraped;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{name} {labels:?} never reached {at_least}:\n{scraped}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What every scrape after commands and a projector's batches shows.
fn check_command_series(scraped: &str) {
    // Histograms with buckets (they aggregate across processes), not summaries.
    assert!(scraped.contains("# TYPE eventloom_command_duration_seconds histogram"), "{scraped}");
    assert!(
        scraped.lines().any(|l| l.starts_with("eventloom_command_duration_seconds_bucket{")
            && l.contains("command=\"CreateTask\"")
            && l.contains("le=\"+Inf\"")),
        "{scraped}"
    );
    assert!(scraped.contains("eventloom_append_duration_seconds_bucket{"), "{scraped}");
    assert!(scraped.contains("# HELP eventloom_commands_total"), "described: {scraped}");
    // No label names a task: task ids are made by the server, `t-...`-free here.
    for line in scraped.lines().filter(|l| l.starts_with("eventloom_")) {
        for label in ["stream", "task_id", "command_id", "id="] {
            assert!(!line.contains(label), "{line}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_with_commands_and_batches_in_one_process() {
    let server = Server::start("all", "all", true, &Env::memory()).await;
    let client = server.client();
    crate::memory::views_live(client).await;
    let ok = [("aggregate", "task"), ("command", "CreateTask"), ("outcome", "ok")];
    let tasks = [("projection", "tasks")];
    let before = scrape(client).await;
    let (created, batches) =
        (value(&before, "eventloom_commands_total", &ok), value(&before, "eventloom_projector_batches_total", &tasks));
    let mut last = None;
    for n in 0..3 {
        let response = client.post("/tasks", &format!(r#"{{"title": "metered {n}"}}"#)).await.ok(201);
        last = Some(response);
    }
    // A business rule: completing twice is a 409, counted as rejected.
    let id = last.as_ref().and_then(|t| t["id"].as_str()).expect("an id").to_owned();
    client.post(&format!("/tasks/{id}/complete"), "").await.ok(200);
    assert_eq!(client.post(&format!("/tasks/{id}/complete"), "").await.status, 409);
    let after = rises_to(client, "eventloom_projector_events_total", &tasks, 4.0).await;
    assert_eq!(value(&after, "eventloom_commands_total", &ok), created + 3.0, "{after}");
    let rejected = [("command", "CompleteTask"), ("outcome", "rejected")];
    assert_eq!(value(&after, "eventloom_commands_total", &rejected), 1.0, "{after}");
    assert!(value(&after, "eventloom_projector_batches_total", &tasks) > batches, "{after}");
    assert!(value(&after, "eventloom_command_duration_seconds_count", &[("command", "CreateTask")]) >= 3.0);
    assert!(after.contains("eventloom_projector_batch_duration_seconds_bucket{"), "{after}");
    assert!(after.contains("eventloom_projector_batch_size_bucket{"), "{after}");
    // Each scrape reads the exact lag first (App::health): the views lack nothing once caught up.
    assert!(after.contains(r#"eventloom_projection_unprojected_events{projection="tasks"}"#), "{after}");
    assert!(after.contains(r#"eventloom_projection_stopped{projection="tasks"} 0"#), "{after}");
    assert!(after.contains("eventloom_log_held_back_events 0"), "{after}");
    let caught_up = Instant::now();
    while value(&scrape(client).await, "eventloom_projection_unprojected_events", &tasks) != 0.0 {
        assert!(caught_up.elapsed() < Duration::from_secs(10), "the views never caught up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    check_command_series(&after);
    server.stop(Duration::from_secs(30)).await;
}

/// The command and projector roles as processes of their own, on PostgreSQL and Redis: each
/// serves its own metrics.
#[cfg(all(feature = "postgres", feature = "redis"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_and_projector_roles_serve_their_own_metrics() {
    let env = crate::distributed::env();
    let command = Server::start("command", "command", true, &env).await;
    let projector = Server::start("projector", "projector", true, &env).await;
    let (cmd, proj) = (command.client(), projector.client());
    let tasks = [("projection", "tasks")];
    let before = scrape(proj).await;
    let events = value(&before, "eventloom_projector_events_total", &tasks);
    for n in 0..3 {
        cmd.post("/tasks", &format!(r#"{{"title": "metered {n}"}}"#)).await.ok(201);
    }
    let ok = [("aggregate", "task"), ("command", "CreateTask"), ("outcome", "ok")];
    let commands = scrape(cmd).await;
    assert_eq!(value(&commands, "eventloom_commands_total", &ok), 3.0, "{commands}");
    check_command_series(&commands);
    // The command process runs no projector.
    assert_eq!(value(&commands, "eventloom_projector_batches_total", &tasks), 0.0, "{commands}");
    let projected = rises_to(proj, "eventloom_projector_events_total", &tasks, events + 3.0).await;
    assert!(projected.contains("eventloom_projector_batch_duration_seconds_bucket{"), "{projected}");
    assert!(value(&projected, "eventloom_lease_acquired_total", &[("lease", "tasks")]) >= 1.0, "{projected}");
    assert!(value(&projected, "eventloom_subscription_polls_total", &[]) >= 1.0, "{projected}");
    // It executes no commands.
    assert_eq!(value(&projected, "eventloom_commands_total", &ok), 0.0, "{projected}");
    projector.stop(Duration::from_secs(30)).await;
    command.stop(Duration::from_secs(30)).await;
}

//! `projection`, `projections` and `dead-letters`, over views on PostgreSQL and on Redis.

use eventloom_core::store::{DeadLetter, LeaseManager, ViewCommit, ViewStore, ViewWrite};
use eventloom_core::{Position, StreamId};

use crate::support::{HORIZON, append, database_url, fresh_schema, redis_url, run, run_with, stores};

/// Builds a live generation of `projection` in `views` up to `checkpoint`, with a dead letter at
/// `poison`.
async fn build(views: &dyn ViewStore, projection: &str, checkpoint: Position, poison: Position) {
    let generation = views.begin_generation(projection, 2, 1).await.unwrap().unwrap();
    let stream = StreamId::new("task", "t-1").unwrap();
    let letter = DeadLetter::new(poison, stream, 2, "TaskAssigned", "assignee too long");
    let commit = ViewCommit {
        generation: generation.id,
        expected: None,
        checkpoint,
        fencing_token: 1,
        views: vec![ViewWrite::set("t-1", r#"{"title":"write docs"}"#)],
        dead_letters: vec![letter],
        resolved: Vec::new(),
    };
    views.commit(projection, commit).await.unwrap().unwrap();
    views.go_live(projection, generation.id, 1).await.unwrap().unwrap();
}

#[tokio::test]
async fn a_projection_shows_its_status_lag_and_dead_letters() {
    let _horizon = HORIZON.read().await;
    let schema = fresh_schema();
    let pg = stores(&schema).await;
    append(&pg.events, "task/t-1", "TaskCreated", "{}", 1).await;
    let poison = append(&pg.events, "task/t-1", "TaskAssigned", "{}", 2).await;
    append(&pg.events, "task/t-1", "TaskCompleted", "{}", 3).await;
    build(&pg.views, "tasks", poison, poison).await;
    // This test's process leads the projection while the binary looks.
    let lease = pg.leases.acquire("tasks").await.unwrap();

    // Lag counts what subscribers can read: another test's open transaction on the shared
    // server may hide the last event for a moment.
    let mut shown = run(&schema, &["projection", "tasks", "--json"]).await.json();
    for _ in 0..100 {
        if shown["lag_events"] == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        shown = run(&schema, &["projection", "tasks", "--json"]).await.json();
    }
    assert_eq!(shown["status"], "live", "{shown}");
    assert_eq!(shown["version"], 2);
    assert_eq!(shown["checkpoint"], poison.to_string());
    assert_eq!(shown["lag_events"], 1, "one event after the checkpoint");
    assert_eq!(shown["dead_letters"], 1);
    assert_eq!(shown["dead_letter_list"][0]["reason"], "assignee too long");
    let leader = &shown["leader"];
    assert_eq!(leader["pid"], std::process::id(), "{shown}");
    assert_eq!((leader["token"].as_u64(), leader["held"].as_bool()), (Some(lease.token()), Some(true)), "{shown}");
    assert!(leader["host"].as_str().is_some_and(|h| !h.is_empty()), "{shown}");
    let human = run(&schema, &["projection", "tasks"]).await;
    assert!(human.ok().contains("projection tasks: live"), "{human:#?}");
    assert!(human.stdout.contains("1 events"), "{human:#?}");
    assert!(human.stdout.contains(&format!("/{} (", std::process::id())), "{human:#?}");
    drop(lease);
    // Let go on its own connection, a moment later.
    let mut after = run(&schema, &["projection", "tasks", "--json"]).await.json();
    for _ in 0..50 {
        if after["leader"]["held"] == false {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        after = run(&schema, &["projection", "tasks", "--json"]).await.json();
    }
    assert_eq!(after["leader"]["held"], false, "let go: {after}");
    assert_eq!(after["leader"]["pid"], std::process::id(), "the last holder: {after}");

    let letters = run(&schema, &["dead-letters", "list", "tasks", "--json"]).await.json();
    assert_eq!(letters[0]["position"], poison.to_string(), "{letters}");
    assert_eq!(letters[0]["stream"], "task/t-1");
    run(&schema, &["projection", "nope"]).await.failed(3, "no projection nope");
    run(&schema, &["dead-letters", "list", "nope"]).await.failed(3, "no projection nope");
}

#[tokio::test]
async fn dead_letters_are_skipped_and_purged_under_the_lease() {
    let schema = fresh_schema();
    let pg = stores(&schema).await;
    let first = append(&pg.events, "task/t-1", "TaskCreated", "{}", 1).await;
    let second = append(&pg.events, "task/t-1", "TaskAssigned", "{}", 2).await;
    let generation = pg.views.begin_generation("tasks", 1, 0).await.unwrap().unwrap();
    let stream = StreamId::new("task", "t-1").unwrap();
    let letters = vec![
        DeadLetter::new(first, stream.clone(), 1, "TaskCreated", "no title"),
        DeadLetter::new(second, stream, 2, "TaskAssigned", "assignee too long"),
    ];
    let commit = ViewCommit {
        generation: generation.id,
        expected: None,
        checkpoint: second,
        fencing_token: 0,
        views: Vec::new(),
        dead_letters: letters,
        resolved: Vec::new(),
    };
    pg.views.commit("tasks", commit).await.unwrap().unwrap();
    pg.views.go_live("tasks", generation.id, 0).await.unwrap().unwrap();

    let listed = run(&schema, &["projections", "--json"]).await.json();
    let rows = listed["projections"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{listed}");
    assert_eq!((rows[0]["name"].as_str(), rows[0]["dead_letters"].as_u64()), (Some("tasks"), Some(2)), "{listed}");
    assert!(run(&schema, &["projections"]).await.ok().contains("tasks"));

    run(&schema, &["dead-letters", "skip", "tasks"]).await.failed(2, "purge");
    run(&schema, &["dead-letters", "skip", "tasks", "--at", "1.x"]).await.failed(2, "positions");
    run(&schema, &["dead-letters", "skip", "tasks", "--at", "99999999.1"]).await.failed(3, "no dead letter");
    let skipped = run(&schema, &["dead-letters", "skip", "tasks", "--at", &first.to_string(), "--json"]).await.json();
    assert_eq!(skipped["removed"], 1, "{skipped}");
    let left = run(&schema, &["dead-letters", "list", "tasks", "--json"]).await.json();
    assert_eq!(left.as_array().map(Vec::len), Some(1), "{left}");
    assert_eq!(left[0]["position"], second.to_string());
    let purged = run(&schema, &["dead-letters", "purge", "tasks"]).await;
    assert!(purged.ok().contains("removed 1 dead letters of tasks"), "{purged:#?}");
    assert!(run(&schema, &["dead-letters", "list", "tasks"]).await.ok().contains("no dead letters"));
    // Taken under the lease: its token moved on.
    let leader = &run(&schema, &["projection", "tasks", "--json"]).await.json()["leader"];
    assert_eq!((leader["held"].as_bool(), leader["role"].as_str()), (Some(false), Some("admin")), "{leader}");
}

#[tokio::test]
async fn views_on_redis_are_read_there() {
    let schema = fresh_schema();
    let pg = stores(&schema).await;
    let position = append(&pg.events, "task/t-1", "TaskCreated", "{}", 1).await;
    let prefix = format!("{schema}:");
    let config = eventloom_redis::RedisConfig::from_url(&redis_url()).unwrap().prefix(prefix.as_str()).unwrap();
    let redis = eventloom_redis::RedisViewStore::connect_with(config).await.unwrap();
    build(&redis, "tasks", position, position).await;

    let url = database_url();
    let redis_url = redis_url();
    let env = [
        ("DATABASE_URL", url.as_str()),
        ("EVENTLOOM_SCHEMA", schema.as_str()),
        ("REDIS_URL", redis_url.as_str()),
        ("EVENTLOOM_REDIS_PREFIX", prefix.as_str()),
    ];
    let shown = run_with(&env, &["projection", "tasks", "--json"]).await.json();
    assert_eq!((shown["status"].as_str(), shown["lag_events"].as_u64()), (Some("live"), Some(0)), "{shown}");
    assert_eq!(shown["dead_letters"], 1);
    // The same schema without Redis: the views are not in PostgreSQL.
    run(&schema, &["projection", "tasks"]).await.failed(3, "no projection tasks");
}

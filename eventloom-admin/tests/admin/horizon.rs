//! `horizon`: what holds the subscriptions back, while a transaction of the test's own holds
//! them (its id taken before the events appended after it commit), and once it has ended.
//! The server is shared: another test's transaction may hold the horizon for a moment too, so
//! a clear horizon is waited for, and a held one may hide more than this test's events.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{HORIZON, append, database_url, fresh_schema, run, stores};

/// `horizon --json` once it shows no hidden event of `schema` (within 20 s).
async fn clear(schema: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let report = run(schema, &["horizon", "--json"]).await.json();
        if report["hidden_events"] == 0 {
            return report;
        }
        assert!(Instant::now() < deadline, "the horizon stays held: {report}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_horizon_names_the_open_transaction_that_holds_events_back() {
    let _alone = HORIZON.write().await;
    let schema = fresh_schema();
    let pg = stores(&schema).await;
    append(&pg.events, "task/t-0", "TaskCreated", "{}", 1).await;
    clear(&schema).await;

    // A session whose transaction holds an id, then two events committed after it took it.
    let (held, connection) = tokio_postgres::connect(&database_url(), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    held.batch_execute("BEGIN").await.unwrap();
    let pid: i32 = held.query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get(0);
    held.query_one("SELECT pg_current_xact_id()::text", &[]).await.unwrap();
    append(&pg.events, "task/t-1", "TaskCreated", "{}", 2).await;
    append(&pg.events, "task/t-2", "TaskCreated", "{}", 3).await;

    let report = run(&schema, &["horizon", "--json"]).await.json();
    let human = run(&schema, &["horizon"]).await;
    held.batch_execute("ROLLBACK").await.unwrap();
    assert!(report["hidden_events"].as_u64().is_some_and(|n| n >= 2), "{report}");
    assert_eq!(report["held"], true, "{report}");
    // The oldest transaction of the cluster: this one, unless another test's is older still.
    let oldest = &report["oldest"];
    assert!(oldest["transaction"].as_u64().is_some() && oldest["age_seconds"].as_f64().is_some(), "{report}");
    if oldest["pid"] == pid {
        assert_eq!(oldest["state"], "idle in transaction", "{report}");
        assert_eq!(oldest["remedy"], format!("SELECT pg_terminate_backend({pid})"), "{report}");
    }
    let text = human.ok();
    assert!(text.contains("committed events are held back from subscribers"), "{text}");
    assert!(text.contains("held back by:"), "{text}");

    clear(&schema).await;
}

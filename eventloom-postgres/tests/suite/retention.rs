//! Retention of command ids on PostgreSQL (migration 10): the expiry scan follows its partial
//! index, trims in batches, and an id expired is executed again.

use eventloom_core::prelude::*;
use eventloom_core::{ExecuteOptions, model::Timestamp, store::EventStore, write::Cqrs};
use eventloom_postgres::PgEventStore;

use crate::domain::{Deposit, Open};
use crate::support::{database_url, raw, store};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_expiry_scan_reads_its_index_and_trims_in_batches() {
    let store = store().await;
    let schema = format!("\"{}\"", store.config().schema_name());
    let client = raw(&database_url()).await;
    // 20,000 old records (even n), one in five of them kept (n a multiple of ten), and 20,000 recent ones.
    client
        .batch_execute(&format!(
            "INSERT INTO {schema}.commands (command_id, category, stream_id, first_version, last_version, \
                 transaction_id, sequence, recorded_at, kept) \
             SELECT 'c-' || n, 'account', 'a', 1, 0, '0'::xid8, 0, \
                 timestamptz '2020-01-01' + n * interval '1 second' + (n % 2) * interval '10 years', n % 10 = 0 \
             FROM generate_series(1, 40000) AS n; \
             ANALYZE {schema}.commands;"
        ))
        .await
        .unwrap();
    let statement = include_str!("../../sql/statements/expire_commands.sql").replace("{schema}", &schema);
    let cutoff = Timestamp::from_micros(1_600_000_000_000_000); // 2020-09-13, after every old record
    let plan = client.query(&format!("EXPLAIN {statement}"), &[&cutoff.as_micros(), &1_000i64]).await.unwrap();
    let plan: Vec<String> = plan.iter().map(|row| row.get(0)).collect();
    assert!(plan.iter().any(|line| line.contains("commands_expiry")), "the scan reads the index: {plan:#?}");
    // 16,000 old records that are not kept, 1,000 at a time.
    let mut batches = Vec::new();
    loop {
        let deleted = store.expire_commands(cutoff, 1_000).await.unwrap();
        batches.push(deleted);
        if deleted < 1_000 {
            break;
        }
    }
    assert_eq!(batches.iter().sum::<u64>(), 16_000, "{batches:?}");
    assert_eq!(batches.len(), 17, "16 full batches and an empty one: {batches:?}");
    let left: i64 = client.query_one(&format!("SELECT count(*) FROM {schema}.commands"), &[]).await.unwrap().get(0);
    assert_eq!(left, 24_000, "the kept old ones and every recent one");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_whose_id_expired_executes_again_and_a_kept_one_does_not() {
    let store = store().await;
    let cqrs = Cqrs::new(store.clone());
    cqrs.execute(Open { id: "a".into() }).await.unwrap();
    let deposit = || Deposit { id: "a".into(), amount: 5 };
    let plain = || ExecuteOptions::default().command_id("http-1");
    let kept = || ExecuteOptions::default().command_id("pm-1").keep_command_id();
    cqrs.execute_with(deposit(), plain()).await.unwrap();
    cqrs.execute_with(deposit(), kept()).await.unwrap();
    assert!(store.command_outcome("pm-1").await.unwrap().unwrap().kept);
    let later = Timestamp::from_micros(Timestamp::now().as_micros() + 60_000_000);
    assert_eq!(store.expire_commands(later, 100).await.unwrap(), 1);
    let again = cqrs.execute_with(deposit(), plain()).await.unwrap();
    assert!(!again.replayed && again.appended == 1, "executed again: {again:?}");
    assert!(cqrs.execute_with(deposit(), kept()).await.unwrap().replayed, "kept: still a replay");
    assert_eq!(store.stream_version(&StreamId::new("account", "a").unwrap()).await.unwrap(), 4);
    assert_eq!(store.forget_commands(&["pm-1".to_owned()]).await.unwrap(), 1);
    assert!(!cqrs.execute_with(deposit(), kept()).await.unwrap().replayed, "forgotten: executed again");
}

/// Waits up to 10 s for the record of `id` to go (`gone`) or checks it is still there.
async fn record_gone(store: &PgEventStore, id: &str, within: std::time::Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if store.command_outcome(id).await.unwrap().is_none() {
            return true;
        }
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_projector_role_trims_and_the_command_role_does_not() {
    let store = store().await;
    let retention = std::time::Duration::from_millis(300);
    let app = |role| {
        let stores = eventloom_postgres::PgStores::from_event_store(store.clone());
        App::builder(stores).aggregate::<crate::domain::Account>().role(role).command_retention(retention).start()
    };
    let commands = app(Role::Command).await.unwrap();
    commands.execute(Open { id: "a".into() }).await.unwrap();
    let keyed = |id: &str| ExecuteOptions::default().command_id(id);
    commands.execute_with(Deposit { id: "a".into(), amount: 1 }, keyed("http-1")).await.unwrap();
    commands.execute_with(Deposit { id: "a".into(), amount: 2 }, keyed("pm-1").keep_command_id()).await.unwrap();
    assert!(
        !record_gone(&store, "http-1", std::time::Duration::from_secs(1)).await,
        "a command process runs no janitor"
    );
    let projector = app(Role::Projector).await.unwrap();
    assert!(record_gone(&store, "http-1", std::time::Duration::from_secs(10)).await, "the projector's janitor trims");
    assert!(store.command_outcome("pm-1").await.unwrap().is_some(), "kept");
    projector.shutdown().await.unwrap();
    commands.shutdown().await.unwrap();
}

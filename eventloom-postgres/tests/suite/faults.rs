//! Concurrency, lost replies, killed connections and bad input, on the shared server.

use std::collections::HashSet;

use eventloom_core::testing::{test_event, test_event_for_command};
use eventloom_core::{
    CommandError, Error, ExecuteOptions, Position, StreamId, model::ExpectedVersion, store::EventStore, write::Cqrs,
};

use crate::domain::*;
use crate::support::{database_url, raw, store, store_with};

fn stream(id: &str) -> StreamId {
    StreamId::new("account", id).unwrap()
}

const WRITERS: u64 = 16;
const ATTEMPTS: u64 = 500;

async fn sixteen_writers_with_exact_versions_one_winner_per_version(combining: bool) {
    let store = store_with(combining).await;
    let s = stream("race");
    let mut tasks = Vec::new();
    for writer in 0..WRITERS {
        let (store, s) = (store.clone(), s.clone());
        tasks.push(tokio::spawn(async move {
            let (mut won, mut lost) = (Vec::new(), 0u64);
            for attempt in 0..ATTEMPTS {
                let version = store.stream_version(&s).await.unwrap();
                let n = writer * 1_000_000 + attempt;
                match store.append(&s, ExpectedVersion::Exact(version), vec![test_event(n)]).await {
                    Ok(out) => won.push((out.outcome().last_version, n)),
                    Err(Error::Conflict { .. }) => lost += 1,
                    Err(other) => panic!("not a typed conflict: {other:?}"),
                }
            }
            (won, lost)
        }));
    }
    let (mut won, mut lost) = (Vec::new(), 0);
    for t in tasks {
        let (w, l) = t.await.unwrap();
        won.extend(w);
        lost += l;
    }
    assert_eq!(won.len() as u64 + lost, WRITERS * ATTEMPTS);
    assert!(lost > 0, "the writers raced");
    won.sort();
    let versions: Vec<u64> = won.iter().map(|(v, _)| *v).collect();
    assert_eq!(versions, (1..=won.len() as u64).collect::<Vec<_>>(), "contiguous, one winner per version");
    let stored = store.read_stream(&s, 1, usize::MAX).await.unwrap();
    assert_eq!(stored.len(), won.len(), "0 lost, 0 duplicated");
    for (event, (version, n)) in stored.iter().zip(&won) {
        let payload: serde_json::Value = serde_json::from_str(&event.payload).unwrap();
        assert_eq!((event.version, payload["n"].as_u64().unwrap()), (*version, *n));
    }
    println!("16 writers x 500 exact appends: {} won, {lost} typed conflicts", won.len());
}
with_and_without_combining!(
    sixteen_writers_with_exact_versions_one_winner_per_version,
    flavor = "multi_thread",
    worker_threads = 4
);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_writers_with_any_version_persist_all_8000() {
    let store = store().await;
    let s = stream("any");
    let mut tasks = Vec::new();
    for writer in 0..WRITERS {
        let (store, s) = (store.clone(), s.clone());
        tasks.push(tokio::spawn(async move {
            for attempt in 0..ATTEMPTS {
                store.append(&s, ExpectedVersion::Any, vec![test_event(writer * 1_000_000 + attempt)]).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let stored = store.read_stream(&s, 1, usize::MAX).await.unwrap();
    assert_eq!(stored.len() as u64, WRITERS * ATTEMPTS);
    assert!(stored.iter().enumerate().all(|(i, e)| e.version == i as u64 + 1));
    let distinct: HashSet<&str> = stored.iter().map(|e| e.payload.as_ref()).collect();
    assert_eq!(distinct.len() as u64, WRITERS * ATTEMPTS);
}

async fn a_reply_lost_after_commit_and_a_retry_with_the_same_command_id_append_once(combining: bool) {
    let store = store_with(combining).await;
    let schema = store.config().schema_name().to_owned();
    let cqrs = Cqrs::new(store.clone());
    cqrs.execute(Open { id: "a".into() }).await.unwrap();
    // The first attempt commits on a connection whose reply nobody reads: the client gave up.
    let lost = raw(&database_url()).await;
    let metadata = r#"{"event_id":"00000000-0000-0000-0000-000000000001","timestamp":0,"command_id":"pay-1"}"#;
    let call = format!(
        "SELECT * FROM \"{schema}\".append('account', 'a', NULL, ARRAY['Deposited'], ARRAY[1], \
         ARRAY['{{\"amount\":5}}'], ARRAY['{metadata}'], 'pay-1')"
    );
    lost.batch_execute(&call).await.unwrap();
    drop(lost);
    // The retry with the same command id returns the first outcome and appends nothing.
    let retried = cqrs
        .execute_with(Deposit { id: "a".into(), amount: 5 }, ExecuteOptions::default().command_id("pay-1"))
        .await
        .unwrap();
    assert_eq!(retried.version, 2);
    let again = Cqrs::<Account, _>::new(store.clone())
        .execute_with(Deposit { id: "a".into(), amount: 5 }, ExecuteOptions::default().command_id("pay-1"))
        .await
        .unwrap();
    assert_eq!(again, retried);
    let (state, version) = cqrs.load("a").await.unwrap();
    assert_eq!((state.balance, version), (5, 2), "0 duplicates");
}
with_and_without_combining!(a_reply_lost_after_commit_and_a_retry_with_the_same_command_id_append_once);

async fn a_connection_killed_mid_append_leaves_no_partial_append(combining: bool) {
    let store = store_with(combining).await;
    let schema = store.config().schema_name().to_owned();
    let victim = raw(&database_url()).await;
    let pid: i32 = victim.query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get(0);
    let events: Vec<String> = (0..50).map(|i| format!("'{{\"n\":{i}}}'")).collect();
    let metadata = vec![r#"'{"event_id":"00000000-0000-0000-0000-000000000000","timestamp":0}'"#; 50];
    let call = format!(
        "BEGIN; SELECT * FROM \"{schema}\".append('account', 'killed', NULL, array_fill('Tested'::text, ARRAY[50]), \
         array_fill(1, ARRAY[50]), ARRAY[{}], ARRAY[{}], NULL)",
        events.join(","),
        metadata.join(",")
    );
    victim.batch_execute(&call).await.unwrap();
    let killer = raw(&database_url()).await;
    let killed: bool = killer.query_one("SELECT pg_terminate_backend($1)", &[&pid]).await.unwrap().get(0);
    assert!(killed);
    assert!(victim.batch_execute("COMMIT").await.is_err(), "the killed connection cannot commit");
    assert_eq!(store.stream_version(&stream("killed")).await.unwrap(), 0);
    assert!(store.read_stream(&stream("killed"), 1, 100).await.unwrap().is_empty(), "nothing of it is visible");
    // The store goes on.
    store.append(&stream("killed"), ExpectedVersion::NoStream, vec![test_event(1)]).await.unwrap();
}
with_and_without_combining!(a_connection_killed_mid_append_leaves_no_partial_append);

async fn a_pooled_connection_killed_under_a_statement_is_not_handed_to_the_next_caller(combining: bool) {
    // One connection: the next call after the killed statement would get the same one back.
    let config = eventloom_postgres::PgConfig::from_url(&database_url())
        .unwrap()
        .schema(crate::support::fresh_schema())
        .unwrap()
        .pool_size(1)
        .write_combining(combining);
    let store = eventloom_postgres::PgEventStore::connect(config).await.unwrap();
    store.migrate().await.unwrap();
    let schema = store.config().schema_name().to_owned();
    let (holder, killer) = (raw(&database_url()).await, raw(&database_url()).await);
    for round in 0..10 {
        let id = format!("held-{round}");
        // A first write (`append_exact.sql`), or one event to a stream that exists
        // (`append_one.sql`): both carry the wake-up NOTIFY, and neither may be sent again
        // after its session was terminated (its outcome unknown).
        let (expected, version) = if round % 2 == 0 {
            (ExpectedVersion::NoStream, 1)
        } else {
            store.append(&stream(&id), ExpectedVersion::NoStream, vec![test_event(0)]).await.unwrap();
            (ExpectedVersion::Exact(1), 2)
        };
        // The store's append waits for the row lock of this open transaction's version.
        holder
            .batch_execute(&format!(
                "BEGIN; INSERT INTO \"{schema}\".events (category, stream_id, version, event_type, schema_version, \
                 payload, metadata) VALUES ('account', '{id}', {version}, 'Tested', 1, '{{}}', '{{}}')"
            ))
            .await
            .unwrap();
        // More than the debounce after the last append: it carries the NOTIFY.
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        let append = {
            let (store, s) = (store.clone(), stream(&id));
            tokio::spawn(async move { store.append(&s, expected, vec![test_event(1)]).await })
        };
        let holder_pid: i32 = holder.query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get(0);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let killed: i64 = killer
                .query_one(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))",
                    &[&holder_pid],
                )
                .await
                .unwrap()
                .get(0);
            if killed == 1 {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "round {round}: the store's append never waited");
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        // (An append sent again after its session ended would wait for the held row forever.)
        let err = tokio::time::timeout(std::time::Duration::from_secs(10), append)
            .await
            .unwrap_or_else(|_| panic!("round {round}: the append was sent again after its session was terminated"))
            .unwrap()
            .unwrap_err();
        assert!(err.is_transient(), "round {round}: {err:?}");
        // At once: the pool must not hand out the dead connection.
        store.stream_version(&stream("other")).await.unwrap_or_else(|e| panic!("round {round}: {e:?}"));
        holder.batch_execute("ROLLBACK").await.unwrap();
    }
}
with_and_without_combining!(
    a_pooled_connection_killed_under_a_statement_is_not_handed_to_the_next_caller,
    flavor = "multi_thread",
    worker_threads = 2
);

async fn a_corrupt_stored_payload_is_a_typed_error_naming_its_position_and_other_streams_go_on(combining: bool) {
    let store = store_with(combining).await;
    let schema = store.config().schema_name().to_owned();
    let cqrs = Cqrs::new(store.clone());
    // Version 2 of three: a fold lends it without its position, which the error names all the
    // same (read after the fold failed).
    for id in ["bad", "good"] {
        cqrs.execute(Open { id: id.into() }).await.unwrap();
        cqrs.execute(Deposit { id: id.into(), amount: 1 }).await.unwrap();
        cqrs.execute(Deposit { id: id.into(), amount: 1 }).await.unwrap();
    }
    let admin = raw(&database_url()).await;
    admin
        .execute(
            &format!("UPDATE \"{schema}\".events SET payload = '{{\"amount\":\"lots\"}}' WHERE stream_id = 'bad' AND version = 2"),
            &[],
        )
        .await
        .unwrap();
    let position = store.read_stream(&stream("bad"), 2, 1).await.unwrap()[0].position;
    let fresh = Cqrs::new(store.clone());
    match fresh.execute(Deposit { id: "bad".into(), amount: 1 }).await {
        Err(CommandError::Store(Error::Decode { stream: s, version: 2, position: p, .. })) => {
            assert_eq!((s, p), (stream("bad"), position));
        }
        other => panic!("{other:?}"),
    }
    fresh.execute(Deposit { id: "good".into(), amount: 1 }).await.unwrap();
    assert_eq!(fresh.load("good").await.unwrap().0.balance, 3);
}
with_and_without_combining!(a_corrupt_stored_payload_is_a_typed_error_naming_its_position_and_other_streams_go_on);

async fn bad_input_is_refused_with_a_typed_error_and_writes_nothing(combining: bool) {
    let store = store_with(combining).await;
    let s = stream("bad-input");
    // A NUL byte cannot be stored in text at all.
    let mut nul = test_event(1);
    nul.payload = "{\"text\":\"a\0b\"}".into();
    let err = store.append(&s, ExpectedVersion::Any, vec![test_event(0), nul]).await.unwrap_err();
    assert!(matches!(err, Error::InvalidEvent { .. }), "{err:?}");
    let mut not_json = test_event(2);
    not_json.payload = "{not json".into();
    let err = store.append(&s, ExpectedVersion::Any, vec![not_json]).await.unwrap_err();
    assert!(matches!(err, Error::InvalidEvent { .. }), "{err:?}");
    let mut big = test_event(3);
    big.payload = format!(r#"{{"s":"{}"}}"#, "x".repeat(2 << 20));
    let err = store.append(&s, ExpectedVersion::Any, vec![big]).await.unwrap_err();
    assert!(matches!(err, Error::PayloadTooLarge { .. }), "{err:?}");
    let err =
        store.append(&s, ExpectedVersion::Any, vec![test_event_for_command(4, &"k".repeat(1000))]).await.unwrap_err();
    assert!(matches!(err, Error::InvalidId { .. }), "{err:?}");
    assert_eq!(store.stream_version(&s).await.unwrap(), 0);
    assert!(store.read_all(Position::ZERO, 10).await.unwrap().is_empty());
    // Payloads are kept byte for byte, escapes included.
    let mut escaped = test_event(5);
    escaped.payload = r#"{"n":5, "text":"a\u0000b \"q\" ✓",  "spaced" : [1,2]}"#.into();
    store.append(&s, ExpectedVersion::NoStream, vec![escaped.clone()]).await.unwrap();
    assert_eq!(store.read_stream(&s, 1, 1).await.unwrap()[0].payload.as_ref(), escaped.payload);
}
with_and_without_combining!(bad_input_is_refused_with_a_typed_error_and_writes_nothing);

#[tokio::test]
async fn lists_the_streams_of_one_category() {
    let store = store().await;
    for id in ["b", "a", "c"] {
        store.append(&stream(id), ExpectedVersion::Any, vec![test_event(1), test_event(2)]).await.unwrap();
    }
    store.append(&StreamId::new("other", "z").unwrap(), ExpectedVersion::Any, vec![test_event(1)]).await.unwrap();
    let first = store.streams("account", "", 2).await.unwrap();
    assert_eq!(first, vec![("a".to_owned(), 2), ("b".to_owned(), 2)]);
    let rest = store.streams("account", "b", 10).await.unwrap();
    assert_eq!(rest, vec![("c".to_owned(), 2)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn several_processes_migrating_at_once_all_succeed() {
    let url = database_url();
    let schema = crate::support::fresh_schema();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (url, schema) = (url.clone(), schema.clone());
        tasks.push(tokio::spawn(async move {
            let config = eventloom_postgres::PgConfig::from_url(&url).unwrap().schema(schema).unwrap();
            let store = eventloom_postgres::PgEventStore::connect(config).await.unwrap();
            store.migrate().await.unwrap();
            store
        }));
    }
    let mut stores = Vec::new();
    for t in tasks {
        stores.push(t.await.unwrap());
    }
    let applied: i64 =
        raw(&url).await.query_one(&format!("SELECT count(*) FROM \"{schema}\".migrations"), &[]).await.unwrap().get(0);
    assert_eq!(applied, 14, "each migration applied once");
    stores[0].append(&stream("m"), ExpectedVersion::NoStream, vec![test_event(1)]).await.unwrap().into_outcome();
    assert_eq!(stores[3].stream_version(&stream("m")).await.unwrap(), 1);
}

//! Appends with exact versions (one statement, no lock) against appends with `Any` (the
//! `append` function, which queues on the stream's advisory lock), racing, behind and ahead of
//! the stream, against uncommitted appends, with shared command ids and bad input.

use eventloom_core::store::Appended;
use std::time::Duration;

use eventloom_core::testing::{test_event, test_event_for_command};
use eventloom_core::{Error, Position, StreamId, model::ExpectedVersion, store::EventStore};

use crate::domain::{Account, Deposit, Open};
use crate::ordering::wait_for_count;
use crate::support::{PrivateServer, raw, statement_calls, store, store_at, store_at_with, store_with};

fn stream(id: &str) -> StreamId {
    StreamId::new("conformance", id).unwrap()
}

fn n(payload: &str) -> u64 {
    serde_json::from_str::<serde_json::Value>(payload).unwrap()["n"].as_u64().unwrap()
}

async fn exact_and_any_writers_racing_on_one_stream_keep_versions_contiguous_and_in_order(combining: bool) {
    const EACH: u64 = 150;
    let store = store_with(combining).await;
    let s = stream("mixed");
    let mut tasks = Vec::new();
    for writer in 0..8u64 {
        let (store, s) = (store.clone(), s.clone());
        tasks.push(tokio::spawn(async move {
            let (mut won, mut lost) = (Vec::new(), 0u64);
            for attempt in 0..EACH {
                let n = writer * 1_000_000 + attempt;
                if writer % 2 == 0 {
                    // Never refused, whoever else writes.
                    store.append(&s, ExpectedVersion::Any, vec![test_event(n)]).await.unwrap();
                    won.push(n);
                    continue;
                }
                let version = store.stream_version(&s).await.unwrap();
                tokio::task::yield_now().await;
                // One event (the plain INSERT) or two (the statement with arrays).
                let events: Vec<u64> = if writer % 4 == 1 { vec![n] } else { vec![n, n + 500_000] };
                match store
                    .append(&s, ExpectedVersion::Exact(version), events.iter().map(|n| test_event(*n)).collect())
                    .await
                {
                    Ok(out) => {
                        let out = out.written().expect("no command id: never a duplicate");
                        assert_eq!((out.first_version, out.last_version), (version + 1, version + events.len() as u64));
                        won.extend(events);
                    }
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
    println!("{} events appended, {lost} exact appends refused", won.len());
    let stored = store.read_stream(&s, 1, usize::MAX).await.unwrap();
    assert_eq!(stored.len(), won.len(), "every append that succeeded is stored, nothing else");
    assert!(stored.iter().enumerate().all(|(i, e)| e.version == i as u64 + 1), "contiguous versions");
    won.sort_unstable();
    let mut payloads: Vec<u64> = stored.iter().map(|e| n(&e.payload)).collect();
    payloads.sort_unstable();
    assert_eq!(payloads, won);
    // The two events of an exact append are neighbours, first one first.
    for pair in stored.windows(2) {
        if n(&pair[1].payload) % 1_000_000 >= 500_000 {
            assert_eq!(n(&pair[1].payload), n(&pair[0].payload) + 500_000);
        }
    }
    // Subscribers see the stream's events in version order.
    let all = wait_for_count(&store, stored.len()).await;
    assert_eq!(all.len(), stored.len());
    assert!(all.windows(2).all(|w| w[0].position < w[1].position && w[0].version < w[1].version));
}
with_and_without_combining!(
    exact_and_any_writers_racing_on_one_stream_keep_versions_contiguous_and_in_order,
    flavor = "multi_thread",
    worker_threads = 4
);

async fn an_exact_append_behind_or_ahead_of_the_stream_is_refused_and_leaves_no_gap(combining: bool) {
    let store = store_with(combining).await;
    let s = stream("gaps");
    store.append(&s, ExpectedVersion::NoStream, (1..=3).map(test_event).collect()).await.unwrap().into_outcome();
    for expected in [0, 1, 2, 4, 5, 100] {
        let events = vec![test_event(10), test_event(11)];
        match store.append(&s, ExpectedVersion::Exact(expected), events).await {
            Err(Error::Conflict { actual: 3, .. }) => {}
            other => panic!("Exact({expected}) on a stream at 3: {other:?}"),
        }
    }
    match store.append(&s, ExpectedVersion::NoStream, vec![test_event(12)]).await {
        Err(Error::Conflict { expected: ExpectedVersion::NoStream, actual: 3, .. }) => {}
        other => panic!("NoStream on a stream at 3: {other:?}"),
    }
    let out =
        store.append(&s, ExpectedVersion::Exact(3), vec![test_event(4), test_event(5)]).await.unwrap().into_outcome();
    assert_eq!((out.first_version, out.last_version), (4, 5));
    let stored = store.read_stream(&s, 1, 100).await.unwrap();
    assert_eq!(stored.iter().map(|e| e.version).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
    assert_eq!(stored.iter().map(|e| n(&e.payload)).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
    assert_eq!(stored[4].position, out.position, "the outcome names the last event's position");
    // An empty append checks the version and writes nothing.
    let empty = store.append(&s, ExpectedVersion::Exact(5), Vec::new()).await.unwrap().into_outcome();
    assert_eq!((empty.first_version, empty.last_version, empty.appended()), (6, 5, 0));
    assert!(matches!(
        store.append(&s, ExpectedVersion::Exact(4), Vec::new()).await,
        Err(Error::Conflict { actual: 5, .. })
    ));
    // A new stream gets its row in `streams` with its first event.
    assert_eq!(store.streams("conformance", "", 10).await.unwrap(), vec![("gaps".to_owned(), 5)]);
}
with_and_without_combining!(
    an_exact_append_behind_or_ahead_of_the_stream_is_refused_and_leaves_no_gap,
    flavor = "multi_thread",
    worker_threads = 4
);

async fn an_exact_append_against_an_uncommitted_one_waits_for_it_and_never_skips_its_version(combining: bool) {
    let server = PrivateServer::start();
    let store = store_at_with(&server.url(), combining).await;
    let schema = store.config().schema_name().to_owned();
    let s = stream("pending");
    store.append(&s, ExpectedVersion::NoStream, vec![test_event(1)]).await.unwrap();
    let other = raw(&server.url()).await;
    for outcome in ["COMMIT", "ROLLBACK"] {
        let at = store.stream_version(&s).await.unwrap();
        // Version at+1, appended and left uncommitted.
        other
            .batch_execute(&format!(
                "BEGIN; SELECT * FROM \"{schema}\".append('conformance', 'pending', NULL, ARRAY['Tested'], ARRAY[1], \
                 ARRAY['{{\"n\":100}}'], ARRAY['{{\"event_id\":\"00000000-0000-0000-0000-000000000000\",\"timestamp\":0}}'], NULL)"
            ))
            .await
            .unwrap();
        // Expecting the uncommitted version: refused at once, nothing written past it.
        match store.append(&s, ExpectedVersion::Exact(at + 1), vec![test_event(2)]).await {
            Err(Error::Conflict { actual, .. }) => assert_eq!(actual, at),
            other => panic!("an append after an uncommitted version: {other:?}"),
        }
        // Expecting the committed version: waits for the other transaction.
        let racing = {
            let (store, s) = (store.clone(), s.clone());
            tokio::spawn(async move { store.append(&s, ExpectedVersion::Exact(at), vec![test_event(3)]).await })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!racing.is_finished(), "the append waits for the uncommitted one");
        other.batch_execute(outcome).await.unwrap();
        let result = tokio::time::timeout(Duration::from_secs(10), racing).await.unwrap().unwrap();
        match (outcome, result) {
            ("COMMIT", Err(Error::Conflict { actual, .. })) => assert_eq!(actual, at + 1),
            ("ROLLBACK", Ok(out)) => assert_eq!(out.outcome().last_version, at + 1),
            (outcome, other) => panic!("after {outcome}: {other:?}"),
        }
    }
    let stored = store.read_stream(&s, 1, 100).await.unwrap();
    assert_eq!(stored.iter().map(|e| e.version).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(stored.iter().map(|e| n(&e.payload)).collect::<Vec<_>>(), [1, 100, 3]);
    let all = store.read_all(Position::ZERO, 100).await.unwrap();
    assert_eq!(all, stored, "in version order for subscribers");
}
with_and_without_combining!(
    an_exact_append_against_an_uncommitted_one_waits_for_it_and_never_skips_its_version,
    flavor = "multi_thread",
    worker_threads = 4
);

async fn exact_appends_racing_on_one_stream_with_one_command_id_append_once(combining: bool) {
    let store = store_with(combining).await;
    let s = stream("same-command");
    store.append(&s, ExpectedVersion::NoStream, vec![test_event(0)]).await.unwrap();
    for round in 0..10u64 {
        let id = format!("cmd-{round}");
        let at = store.stream_version(&s).await.unwrap();
        let mut tasks = Vec::new();
        for i in 0..8 {
            let (store, s, id) = (store.clone(), s.clone(), id.clone());
            tasks.push(tokio::spawn(async move {
                store.append(&s, ExpectedVersion::Exact(at), vec![test_event_for_command(round * 10 + i, &id)]).await
            }));
        }
        let (mut won, mut duplicates) = (Vec::new(), Vec::new());
        for t in tasks {
            match t.await.unwrap() {
                Ok(Appended::Written(out)) => won.push(out),
                Ok(Appended::Duplicate { command_id, first }) => {
                    assert_eq!(command_id, id);
                    duplicates.push(first.outcome);
                }
                Err(other) => panic!("not the first outcome: {other:?}"),
            }
        }
        assert_eq!(won.len(), 1, "one append under {id}");
        assert!(duplicates.iter().all(|d| d == &won[0]), "the others get the first outcome");
        assert_eq!(store.command_outcome(&id).await.unwrap().map(|c| c.outcome).as_ref(), Some(&won[0]));
    }
    assert_eq!(store.stream_version(&s).await.unwrap(), 11);
}
with_and_without_combining!(
    exact_appends_racing_on_one_stream_with_one_command_id_append_once,
    flavor = "multi_thread",
    worker_threads = 4
);

async fn bad_input_with_an_exact_version_is_a_typed_error_and_writes_nothing(combining: bool) {
    let store = store_with(combining).await;
    let s = stream("bad-exact");
    let mut nul = test_event(1);
    nul.payload = "{\"text\":\"a\0b\"}".into();
    let mut not_json = test_event(2);
    not_json.payload = "{not json".into();
    let mut bad_metadata_type = test_event(3);
    bad_metadata_type.event_type = "nul\0type".into();
    for (expected, events) in [
        (ExpectedVersion::NoStream, vec![test_event(0), nul]),
        (ExpectedVersion::Exact(0), vec![not_json.clone()]),
        (ExpectedVersion::NoStream, vec![bad_metadata_type]),
    ] {
        let err = store.append(&s, expected, events).await.unwrap_err();
        assert!(matches!(err, Error::InvalidEvent { .. }), "{err:?}");
    }
    store.append(&s, ExpectedVersion::NoStream, vec![test_event(4)]).await.unwrap();
    // One event on a stream that exists: the plain INSERT.
    let mut nul = test_event(6);
    nul.payload = "{\"text\":\"a\0b\"}".into();
    for event in [not_json, nul] {
        let err = store.append(&s, ExpectedVersion::Exact(1), vec![event]).await.unwrap_err();
        assert!(matches!(err, Error::InvalidEvent { .. }), "{err:?}");
    }
    let mut big = test_event(5);
    big.payload = format!(r#"{{"s":"{}"}}"#, "x".repeat(2 << 20));
    assert!(matches!(store.append(&s, ExpectedVersion::Exact(1), vec![big]).await, Err(Error::PayloadTooLarge { .. })));
    assert_eq!(store.stream_version(&s).await.unwrap(), 1);
    assert_eq!(store.read_stream(&s, 1, 10).await.unwrap().len(), 1);
    assert!(store.command_outcome("nothing").await.unwrap().is_none());
}
with_and_without_combining!(bad_input_with_an_exact_version_is_a_typed_error_and_writes_nothing);

async fn any_and_exact_appends_creating_the_same_stream_never_deadlock(combining: bool) {
    // Both paths take the row locks of `events`, then `streams` (then `commands`): a new stream
    // written by both at once ends in one winner and a conflict or a retry, never a deadlock
    // (which PostgreSQL would break after a second with an error).
    let store = store_with(combining).await;
    let mut tasks = Vec::new();
    for i in 0..60u64 {
        let s = stream(&format!("new-{i}"));
        let (a, b) = (store.clone(), store.clone());
        let (sa, sb) = (s.clone(), s.clone());
        tasks.push(tokio::spawn(async move { a.append(&sa, ExpectedVersion::Any, vec![test_event(i)]).await }));
        tasks.push(tokio::spawn(async move {
            b.append(&sb, ExpectedVersion::NoStream, vec![test_event(i), test_event(i + 1_000)]).await
        }));
    }
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) | Err(Error::Conflict { .. }) => {}
            Err(other) => panic!("neither a success nor a typed conflict: {other:?}"),
        }
    }
}
with_and_without_combining!(
    any_and_exact_appends_creating_the_same_stream_never_deadlock,
    flavor = "multi_thread",
    worker_threads = 4
);

/// A call of the SQL `append` function with `ExpectedVersion::Any`'s arguments, event `n`.
fn append_call(schema: &str, stream_id: &str, n: u64) -> String {
    format!(
        "SELECT status FROM \"{schema}\".append('conformance', '{stream_id}', NULL, ARRAY['Tested'], ARRAY[1], \
         ARRAY['{{\"n\":{n}}}'], ARRAY['{{\"event_id\":\"00000000-0000-0000-0000-000000000000\",\"timestamp\":0}}'], NULL)"
    )
}

#[tokio::test]
async fn the_sql_append_function_refuses_a_transaction_that_already_has_an_id() {
    let store = store().await;
    let schema = store.config().schema_name().to_owned();
    let s = stream("late-id");
    // A user's transaction takes its id (any earlier write does), then another writer commits
    // version 1 under a later id.
    let user = raw(&crate::support::database_url()).await;
    user.batch_execute("BEGIN; SELECT pg_current_xact_id();").await.unwrap();
    store.append(&s, ExpectedVersion::NoStream, vec![test_event(1)]).await.unwrap();
    // Version 2 under the earlier id would be delivered before version 1.
    match user.batch_execute(&append_call(&schema, "late-id", 2)).await {
        Err(e) => {
            let db = e.as_db_error().unwrap_or_else(|| panic!("{e}"));
            assert_eq!(db.code(), &tokio_postgres::error::SqlState::ACTIVE_SQL_TRANSACTION, "{db:?}");
            assert!(db.message().contains("append must be the first write of its transaction"), "{}", db.message());
            user.batch_execute("ROLLBACK").await.unwrap();
        }
        Ok(()) => {
            user.batch_execute("COMMIT").await.unwrap();
            let events = wait_for_count(&store, 2).await;
            panic!(
                "the append was accepted; subscribers see versions {:?}",
                events.iter().map(|e| e.version).collect::<Vec<_>>()
            );
        }
    }
    // As the first write of a transaction block it still runs, and comes after version 1.
    user.batch_execute(&format!("BEGIN; {}; COMMIT", append_call(&schema, "late-id", 2))).await.unwrap();
    let events = wait_for_count(&store, 2).await;
    assert_eq!(events.iter().map(|e| (e.version, n(&e.payload))).collect::<Vec<_>>(), [(1, 1), (2, 2)]);
    // A second call in one transaction is refused too: its id predates the second lock.
    user.batch_execute(&format!("BEGIN; {}", append_call(&schema, "late-id", 3))).await.unwrap();
    let second = user.batch_execute(&append_call(&schema, "late-id-other", 4)).await;
    assert!(second.is_err(), "a second append in one transaction must be refused");
    user.batch_execute("ROLLBACK").await.unwrap();
}

/// The engine loads a stream longer than its batch size in one statement: the store folds rows
/// as they arrive, holding one at a time (`EventStore::folds_row_by_row`), so the engine asks
/// it for the whole rest of the stream (a stale cache's catch-up too).
#[tokio::test]
async fn an_engine_loads_a_stream_past_its_batch_size_in_one_statement() {
    use eventloom_core::write::Cqrs;
    let server = PrivateServer::init().with_options("-c shared_preload_libraries=pg_stat_statements").start_now();
    let admin = raw(&server.url()).await;
    admin.batch_execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements").await.unwrap();
    let store = store_at(&server.url()).await;
    assert!(store.folds_row_by_row());
    let uncached = Cqrs::<Account, _>::new(store.clone()).with_cache_capacity(0).with_batch_size(10);
    let cached = Cqrs::<Account, _>::new(store.clone()).with_batch_size(10);
    cached.execute(Open { id: "a".into() }).await.unwrap();
    for _ in 0..25 {
        uncached.execute(Deposit { id: "a".into(), amount: 2 }).await.unwrap();
    }
    let folds = "-- Events $3.. of the stream";
    let before = statement_calls(&admin, folds).await;
    let (account, version) = uncached.load("a").await.unwrap();
    assert_eq!((account.open, account.balance, version), (true, 50, 26));
    assert_eq!(statement_calls(&admin, folds).await - before, 1, "26 events in one statement, batch size 10");
    // The cached engine is 25 events behind: its conflict's catch-up reads them in one statement.
    let before = statement_calls(&admin, folds).await;
    assert_eq!(cached.execute(Deposit { id: "a".into(), amount: 2 }).await.unwrap().version, 27);
    assert_eq!(statement_calls(&admin, folds).await - before, 1);
    assert_eq!(uncached.load("a").await.unwrap().0.balance, 52);
    // The events but the last were lent without their positions: a no-op's outcome (decided on
    // a fresh load) has the stream's last event's.
    let stored = store.read_stream(&StreamId::new("account", "a").unwrap(), 1, 100).await.unwrap();
    let newest = stored.last().unwrap();
    let no_op = uncached.execute(Open { id: "a".into() }).await.unwrap();
    assert_eq!((no_op.appended, no_op.version, no_op.position), (0, newest.version, newest.position));
}

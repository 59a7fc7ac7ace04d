//! Total, gap-free order when transactions commit out of order, and what holds subscribers
//! back. Each test runs on a private server: an open write transaction holds back every
//! subscriber of its cluster.

use eventloom_core::store::Refusal;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use eventloom_core::testing::{TestRng, test_event};
use eventloom_core::{
    Position, StreamId,
    model::{ExpectedVersion, RecordedEvent},
    read::Subscription,
    store::EventStore,
};
use eventloom_postgres::PgEventStore;
use tokio::sync::Mutex;

use crate::support::{PrivateServer, raw, store_at, store_at_with};

fn stream(id: &str) -> StreamId {
    StreamId::new("conformance", id).unwrap()
}

fn n(e: &RecordedEvent) -> u64 {
    serde_json::from_str::<serde_json::Value>(&e.payload).unwrap()["n"].as_u64().unwrap()
}

/// `BEGIN` and an append of event `n` to `stream_id`, left uncommitted.
async fn begin_append(client: &tokio_postgres::Client, schema: &str, stream_id: &str, n: u64) {
    let call = format!(
        "BEGIN; SELECT * FROM \"{schema}\".append('conformance', '{stream_id}', NULL, ARRAY['Tested'], ARRAY[1], \
         ARRAY['{{\"n\":{n}}}'], ARRAY['{{\"event_id\":\"00000000-0000-0000-0000-000000000000\",\"timestamp\":0}}'], NULL)"
    );
    client.batch_execute(&call).await.unwrap();
}

async fn collect(subscription: &mut Subscription<PgEventStore>, count: usize) -> Vec<RecordedEvent> {
    let mut seen = Vec::new();
    while seen.len() < count {
        let batch = tokio::time::timeout(Duration::from_secs(20), subscription.next_batch()).await.unwrap().unwrap();
        seen.extend(batch);
    }
    seen
}

async fn an_append_that_commits_late_is_never_skipped(combining: bool) {
    let server = PrivateServer::start();
    let store = store_at_with(&server.url(), combining).await;
    let schema = store.config().schema_name().to_owned();
    let held = raw(&server.url()).await;
    let held_pid: i32 = held.query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get(0);
    begin_append(&held, &schema, "held", 0).await;
    // Later appends commit while the first is still open; with combining, at once and with
    // exact versions, so that they share statements.
    if combining {
        let appends: Vec<_> = (1..=5)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    store.append(&stream(&format!("later-{i}")), ExpectedVersion::NoStream, vec![test_event(i)]).await
                })
            })
            .collect();
        for append in appends {
            append.await.unwrap().unwrap();
        }
    } else {
        for i in 1..=5 {
            store.append(&stream(&format!("later-{i}")), ExpectedVersion::Any, vec![test_event(i)]).await.unwrap();
        }
    }
    let mut early = store.subscribe(Position::ZERO).with_poll_interval(Duration::from_millis(20));
    assert!(
        tokio::time::timeout(Duration::from_millis(300), early.next_batch()).await.is_err(),
        "nothing is delivered past a transaction that may still commit before it"
    );
    let holdback = store.holdback().await.unwrap();
    assert_eq!(holdback.hidden_events, 5);
    let oldest = holdback.oldest.expect("the open transaction is named");
    assert_eq!(oldest.pid, Some(held_pid));
    assert_eq!(oldest.state.as_deref(), Some("idle in transaction"));
    held.batch_execute("COMMIT").await.unwrap();
    let first = collect(&mut early, 6).await;
    let mut second = store.subscribe(Position::ZERO);
    let second = collect(&mut second, 6).await;
    let mut order: Vec<u64> = first.iter().map(n).collect();
    if combining {
        // Combined statements order their streams by id, not by arrival.
        order[1..].sort_unstable();
    }
    assert_eq!(order, [0, 1, 2, 3, 4, 5], "the held event comes first");
    assert_eq!(first, second, "two subscribers, one order");
    assert!(!store.holdback().await.unwrap().is_held());
}
with_and_without_combining!(an_append_that_commits_late_is_never_skipped, flavor = "multi_thread", worker_threads = 4);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_head_and_the_count_stop_below_a_transaction_still_open() {
    let server = PrivateServer::start();
    let store = store_at(&server.url()).await;
    let schema = store.config().schema_name().to_owned();
    let before =
        store.append(&stream("before"), ExpectedVersion::Any, vec![test_event(0)]).await.unwrap().into_outcome();
    let held = raw(&server.url()).await;
    begin_append(&held, &schema, "held", 1).await;
    let mut last = before.clone();
    for i in 2..=6 {
        last = store
            .append(&stream(&format!("later-{i}")), ExpectedVersion::Any, vec![test_event(i)])
            .await
            .unwrap()
            .into_outcome();
    }
    // Only the event before the open transaction is readable: the head stays there.
    assert_eq!(store.head().await.unwrap(), Some(before.position), "the head is never beyond read_all");
    let readable = store.read_all(Position::ZERO, 100).await.unwrap();
    assert_eq!(readable.iter().map(|e| e.position).collect::<Vec<_>>(), [before.position]);
    assert_eq!(store.count_after(Position::ZERO, 100).await.unwrap(), 1, "held-back events are not counted");
    assert_eq!(store.count_after(before.position, 100).await.unwrap(), 0);
    assert_eq!(store.holdback().await.unwrap().hidden_events, 5, "they are reported apart");
    assert_eq!(store.held_back(100).await.unwrap(), 5, "counted through the EventStore trait too");
    assert_eq!(store.held_back(3).await.unwrap(), 3, "up to the cap");
    held.batch_execute("COMMIT").await.unwrap();
    assert_eq!(store.head().await.unwrap(), Some(last.position));
    assert_eq!(store.count_after(Position::ZERO, 100).await.unwrap(), 7);
    assert_eq!(store.count_after(before.position, 100).await.unwrap(), 6);
    assert_eq!(store.count_after(before.position, 4).await.unwrap(), 4);
    assert_eq!(store.read_all(Position::ZERO, 100).await.unwrap().last().map(|e| e.position), Some(last.position));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_idle_transaction_in_another_database_holds_subscribers_and_is_named() {
    let server = PrivateServer::start();
    let store = store_at(&server.url()).await;
    raw(&server.url()).await.batch_execute("CREATE DATABASE elsewhere").await.unwrap();
    let other = raw(&server.url_for("elsewhere")).await;
    let other_pid: i32 = other.query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get(0);
    other.batch_execute("BEGIN; SELECT pg_current_xact_id();").await.unwrap();
    let out = store.append(&stream("x"), ExpectedVersion::Any, vec![test_event(1)]).await.unwrap().into_outcome();
    let mut subscription = store.subscribe(Position::ZERO).with_poll_interval(Duration::from_millis(20));
    assert!(tokio::time::timeout(Duration::from_millis(300), subscription.next_batch()).await.is_err(), "held back");
    let holdback = store.holdback().await.unwrap();
    assert_eq!(holdback.hidden_events, 1);
    let oldest = holdback.oldest.unwrap();
    assert_eq!((oldest.pid, oldest.database.as_deref()), (Some(other_pid), Some("elsewhere")));
    other.batch_execute("COMMIT").await.unwrap();
    let seen = collect(&mut subscription, 1).await;
    assert_eq!(seen[0].position, out.position);

    // A prepared transaction holds them too, with no backend to name: its global id instead.
    other.batch_execute("BEGIN; SELECT pg_current_xact_id(); PREPARE TRANSACTION 'stuck'").await.unwrap();
    store.append(&stream("x"), ExpectedVersion::Any, vec![test_event(2)]).await.unwrap();
    let holdback = store.holdback().await.unwrap();
    assert!(holdback.is_held());
    let oldest = holdback.oldest.unwrap();
    assert_eq!((oldest.pid, oldest.prepared.as_deref()), (None, Some("stuck")));
    other.batch_execute("COMMIT PREPARED 'stuck'").await.unwrap();
    assert_eq!(n(&collect(&mut subscription, 1).await[0]), 2);
}

/// Writers commit out of order on both append paths: transactions of the `append` function
/// (`Any`) held open for a random time, then committed or rolled back, and, between them,
/// appends with exact versions (one event: the plain INSERT; two with a command id: the
/// statement with CTEs), which commit while older transactions are still open. Subscribers
/// restarted at random must all deliver one sequence: every committed event once, each stream
/// in version order. The random choices (delays, rollbacks, paths, batch sizes, restarts)
/// replay from the printed seed; the interleaving of commits depends on the scheduler too.
async fn random_commit_delays_rollbacks_and_restarted_subscribers_deliver_one_sequence(combining: bool) {
    const WRITERS: u64 = 16;
    const APPENDS: u64 = 25;
    let server = PrivateServer::start();
    let store = store_at_with(&server.url(), combining).await;
    let schema = store.config().schema_name().to_owned();
    let rng = TestRng::from_env("CQRS_TEST_SEED");
    let seed = rng.seed();
    let committed = Arc::new(Mutex::new(HashSet::new()));
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let (url, schema, committed, store) = (server.url(), schema.clone(), committed.clone(), store.clone());
        let mut rng = rng.derive(w);
        writers.push(tokio::spawn(async move {
            let client = raw(&url).await;
            let s = stream(&format!("w{w}"));
            let (mut version, mut paths) = (0u64, [0u32; 3]);
            for i in 0..APPENDS {
                let n = w * 1_000 + i;
                let path = (rng.next_u64() % 3) as usize;
                paths[path] += 1;
                match path {
                    0 => {
                        begin_append(&client, &schema, &format!("w{w}"), n).await;
                        tokio::time::sleep(Duration::from_millis(rng.next_u64() % 15)).await;
                        if rng.next_u64() % 10 == 0 {
                            client.batch_execute("ROLLBACK").await.unwrap();
                        } else {
                            client.batch_execute("COMMIT").await.unwrap();
                            version += 1;
                            committed.lock().await.insert(n);
                        }
                    }
                    1 => {
                        let out = store
                            .append(&s, ExpectedVersion::Exact(version), vec![test_event(n)])
                            .await
                            .unwrap()
                            .into_outcome();
                        assert_eq!(out.last_version, version + 1);
                        version += 1;
                        committed.lock().await.insert(n);
                    }
                    _ => {
                        let command = format!("cmd-{seed}-{n}");
                        let events = vec![
                            eventloom_core::testing::test_event_for_command(n, &command),
                            eventloom_core::testing::test_event_for_command(n + 500, &command),
                        ];
                        let out =
                            store.append(&s, ExpectedVersion::Exact(version), events).await.unwrap().into_outcome();
                        assert_eq!(out.last_version, version + 2);
                        version += 2;
                        committed.lock().await.extend([n, n + 500]);
                    }
                }
            }
            paths
        }));
    }
    let mut subscribers = Vec::new();
    for s in 0..3u64 {
        let store = store.clone();
        let mut rng = rng.derive(WRITERS + s);
        subscribers.push(tokio::spawn(async move {
            let mut seen: Vec<RecordedEvent> = Vec::new();
            let mut restarts = 0;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            // Restarted at random: each restart resumes from the last position it delivered.
            while tokio::time::Instant::now() < deadline {
                let after = seen.last().map_or(Position::ZERO, |e| e.position);
                let mut subscription = store.subscribe(after).with_batch_size(1 + (rng.next_u64() % 7) as usize);
                let run_for = Duration::from_millis(20 + rng.next_u64() % 200);
                let _ = tokio::time::timeout(run_for, async {
                    loop {
                        match subscription.next_batch().await {
                            Ok(batch) => {
                                if let (Some(prev), Some(first)) = (seen.last(), batch.first()) {
                                    assert!(
                                        first.position > prev.position,
                                        "s{s}: {:?} after {:?}",
                                        first.position,
                                        prev.position
                                    );
                                }
                                seen.extend(batch)
                            }
                            Err(e) => panic!("subscription failed: {e}"),
                        }
                    }
                })
                .await;
                restarts += 1;
                if seen.len() as u64 >= WRITERS * APPENDS * 8 / 10 && restarts > 30 {
                    // Enough restarts; finish below once the writers are done.
                    break;
                }
            }
            (seen, restarts)
        }));
    }
    let mut paths = [0u32; 3];
    for w in writers {
        for (total, count) in paths.iter_mut().zip(w.await.unwrap()) {
            *total += count;
        }
    }
    println!(
        "appends: {} held open with Any, {} exact (one event), {} exact (two, with a command id)",
        paths[0], paths[1], paths[2]
    );
    let committed = committed.lock().await.clone();
    let mut all = Vec::new();
    for s in subscribers {
        let (mut seen, restarts) = s.await.unwrap();
        // Drain what remains after the writers finished.
        let after = seen.last().map_or(Position::ZERO, |e| e.position);
        let mut rest = store.subscribe(after);
        while seen.len() < committed.len() {
            match tokio::time::timeout(Duration::from_secs(20), rest.next_batch()).await {
                Ok(batch) => seen.extend(batch.unwrap()),
                Err(_) => {
                    let got: HashSet<u64> = seen.iter().map(n).collect();
                    let missing: Vec<u64> = committed.difference(&got).copied().collect();
                    let everything = store.read_all(Position::ZERO, 100_000).await.unwrap();
                    let missing_positions: Vec<_> =
                        everything.iter().filter(|e| missing.contains(&n(e))).map(|e| e.position).collect();
                    panic!(
                        "stalled with {} of {} events after {restarts} restarts (store has {}); last delivered {:?}; \
                         missing {missing:?} at {missing_positions:?}",
                        seen.len(),
                        committed.len(),
                        everything.len(),
                        seen.last().map(|e| e.position)
                    );
                }
            }
        }
        println!("subscriber: {} events over {restarts} restarts", seen.len());
        all.push(seen);
    }
    let first: Vec<u64> = all[0].iter().map(n).collect();
    assert_eq!(first.len(), committed.len(), "0 missing, 0 doubled");
    assert_eq!(first.iter().copied().collect::<HashSet<_>>(), committed, "exactly the committed events");
    for other in &all[1..] {
        assert_eq!(other.iter().map(n).collect::<Vec<_>>(), first, "every subscriber, the same sequence");
    }
    assert!(all[0].windows(2).all(|w| w[0].position < w[1].position));
    for w in 0..WRITERS {
        let versions: Vec<u64> =
            all[0].iter().filter(|e| e.stream == stream(&format!("w{w}"))).map(|e| e.version).collect();
        assert_eq!(versions, (1..=versions.len() as u64).collect::<Vec<_>>(), "stream w{w} in version order");
    }
}
with_and_without_combining!(
    random_commit_delays_rollbacks_and_restarted_subscribers_deliver_one_sequence,
    flavor = "multi_thread",
    worker_threads = 4
);

/// Appends, retrying while the server is unreachable (as a command service would).
async fn append_retrying(store: &PgEventStore, n: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match store.append(&stream("resume"), ExpectedVersion::Any, vec![test_event(n)]).await {
            Ok(_) => return,
            Err(e) if e.is_transient() && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => panic!("append {n} failed: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_subscriber_resumes_after_dropped_connections_and_a_server_restart() {
    let server = PrivateServer::start();
    let store = store_at(&server.url()).await;
    let mut subscription = store.subscribe(Position::ZERO).with_poll_interval(Duration::from_millis(50));
    for n in 0..50 {
        append_retrying(&store, n).await;
    }
    let mut seen = collect(&mut subscription, 50).await;
    // Every connection but this one is dropped: the pool's and the LISTEN connection.
    let admin = raw(&server.url()).await;
    admin
        .batch_execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE pid <> pg_backend_pid() AND backend_type = 'client backend'",
        )
        .await
        .unwrap();
    drop(admin);
    for n in 50..100 {
        append_retrying(&store, n).await;
    }
    seen.extend(collect(&mut subscription, 50).await);
    // The whole server restarts.
    server.restart();
    for n in 100..150 {
        append_retrying(&store, n).await;
    }
    seen.extend(collect(&mut subscription, 50).await);
    assert_eq!(seen.iter().map(n).collect::<Vec<_>>(), (0..150).collect::<Vec<_>>(), "nothing lost, nothing doubled");
    assert!(
        tokio::time::timeout(Duration::from_millis(300), subscription.next_batch()).await.is_err(),
        "and nothing more"
    );
}

#[tokio::test]
async fn events_restored_from_another_cluster_are_refused_until_renumbered() {
    use eventloom_core::{
        Error,
        store::{ViewCommit, ViewStore, ViewWrite},
    };
    let store = crate::support::store().await;
    let schema = store.config().schema_name().to_owned();
    let a = stream("restored-a");
    store.append(&a, ExpectedVersion::NoStream, vec![test_event(0), test_event(1)]).await.unwrap();
    let cmd = eventloom_core::testing::test_event_for_command(2, "restored-cmd");
    store.append(&stream("restored-b"), ExpectedVersion::NoStream, vec![cmd]).await.unwrap();
    let views = eventloom_postgres::PgViewStore::new(&store);
    // A built projection: one generation, live at a checkpoint of the old cluster.
    let built = views.begin_generation("p", 1, 3).await.unwrap().unwrap();
    let commit = |generation, expected| ViewCommit {
        generation,
        expected,
        checkpoint: Position::new(5, 5),
        fencing_token: 3,
        views: vec![ViewWrite::set("v", "1")],
        dead_letters: Vec::new(),
        resolved: Vec::new(),
    };
    views.commit("p", commit(built.id, None)).await.unwrap().unwrap();
    views.go_live("p", built.id, 3).await.unwrap().unwrap();
    assert_eq!(views.read_views("p", &["v".into()]).await.unwrap(), vec![Some("1".into())]);
    // As after a logical dump restored into a cluster whose transaction ids are lower.
    let admin = raw(&crate::support::database_url()).await;
    for table in ["events", "commands"] {
        admin
            .batch_execute(&format!(
                "UPDATE \"{schema}\".{table} SET transaction_id = ((transaction_id::text)::bigint + 100000000)::text::xid8"
            ))
            .await
            .unwrap();
    }
    match store.read_all(Position::ZERO, 10).await {
        Err(eventloom_core::Error::Backend { message, .. }) => {
            assert!(message.contains("another cluster"), "{message}")
        }
        other => panic!("subscribing must be refused, got {other:?}"),
    }
    assert_eq!(store.renumber_after_restore().await.unwrap(), 3);
    let events = store.read_all(Position::ZERO, 10).await.unwrap();
    assert_eq!(events.iter().map(n).collect::<Vec<_>>(), [0, 1, 2], "the old order is kept");
    let out = store.append(&a, ExpectedVersion::Exact(2), vec![test_event(3)]).await.unwrap().into_outcome();
    let events = crate::ordering::wait_for_count(&store, 4).await;
    assert_eq!(events.iter().map(n).collect::<Vec<_>>(), [0, 1, 2, 3], "new events come after the old ones");
    assert_eq!(events[3].position, out.position);
    let outcome = store.command_outcome("restored-cmd").await.unwrap().unwrap();
    assert_eq!(outcome.outcome.position, events[2].position, "command outcomes point at the renumbered events");
    // Views are dropped for a rebuild: nothing live, nothing being built, and a projector from
    // before writes nothing.
    assert_eq!(views.status("p").await.unwrap(), eventloom_core::store::ProjectionStatus::default());
    assert!(matches!(views.read_views("p", &["v".into()]).await, Err(Error::NotBuilt { .. })));
    assert!(matches!(
        views.commit("p", commit(built.id, Some(Position::new(5, 5)))).await,
        Ok(Err(Refusal::GenerationGone { .. }))
    ));
    assert!(matches!(views.begin_generation("p", 1, 2).await, Ok(Err(Refusal::Fenced { .. }))), "tokens are kept");
    // The rebuild: a new generation (a new id), filled from the first event, made live.
    let rebuilt = views.begin_generation("p", 1, 3).await.unwrap().unwrap();
    assert!(rebuilt.id > built.id, "generation ids are not reused");
    views.commit("p", commit(rebuilt.id, None)).await.unwrap().unwrap();
    assert!(matches!(views.read_views("p", &["v".into()]).await, Err(Error::NotBuilt { .. })));
    views.go_live("p", rebuilt.id, 3).await.unwrap().unwrap();
    let status = views.status("p").await.unwrap();
    assert_eq!((status.live.map(|g| g.id), status.building), (Some(rebuilt.id), None));
    assert_eq!(status.checkpoint(), Some(Position::new(5, 5)));
    assert_eq!(views.read_views("p", &["v".into()]).await.unwrap(), vec![Some("1".into())]);
    assert_eq!(store.renumber_after_restore().await.unwrap(), 0, "a second run does nothing");
}

/// Every event, once at least `count` are visible (other tests' transactions on the shared
/// server may hold them back a moment).
pub async fn wait_for_count(store: &PgEventStore, count: usize) -> Vec<RecordedEvent> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let events = store.read_all(Position::ZERO, 10_000).await.unwrap();
        if events.len() >= count || tokio::time::Instant::now() > deadline {
            return events;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

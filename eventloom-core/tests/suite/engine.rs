use eventloom_core::store::BoxFuture;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use eventloom_core::model::{ExpectedVersion, NewEvent, RecordedEvent, Timestamp};
use eventloom_core::prelude::*;
use eventloom_core::{
    CommandError, CommandOutcome, Error, ExecuteOptions,
    memory::{MemoryEventStore, MemorySnapshotStore},
    model::{ManualClock, SequentialIds},
    store::{EventStore, Snapshot, SnapshotStore},
    write::{Cqrs, Fingerprint, RetryPolicy, SnapshotPolicy, Upcasters},
};

use crate::domain::*;

/// A memory store that counts the events loads read.
#[derive(Clone, Default)]
struct Counting {
    inner: MemoryEventStore,
    read: Arc<AtomicUsize>,
    appends: Arc<AtomicUsize>,
}

impl Counting {
    fn take_read(&self) -> usize {
        self.read.swap(0, Ordering::SeqCst)
    }
}

impl eventloom_core::store::DelegateEventStore for Counting {
    type Inner = MemoryEventStore;
    fn inner(&self) -> &MemoryEventStore {
        &self.inner
    }
    fn append<'a>(
        &'a self,
        s: &'a StreamId,
        e: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> BoxFuture<'a, eventloom_core::Result<eventloom_core::store::Appended>> {
        Box::pin(async move {
            self.appends.fetch_add(1, Ordering::SeqCst);
            self.inner.append(s, e, events).await
        })
    }
    fn append_command<'a>(
        &'a self,
        s: &'a StreamId,
        e: ExpectedVersion,
        events: Vec<NewEvent>,
        print: &'a eventloom_core::store::CommandEntry,
    ) -> BoxFuture<'a, eventloom_core::Result<eventloom_core::store::Appended>> {
        Box::pin(async move {
            self.appends.fetch_add(1, Ordering::SeqCst);
            self.inner.append_command(s, e, events, print).await
        })
    }
    fn read_stream<'a>(
        &'a self,
        s: &'a StreamId,
        from: u64,
        limit: usize,
    ) -> BoxFuture<'a, eventloom_core::Result<Vec<RecordedEvent>>> {
        Box::pin(async move {
            let events = self.inner.read_stream(s, from, limit).await?;
            self.read.fetch_add(events.len(), Ordering::SeqCst);
            Ok(events)
        })
    }
    fn read_stream_bounded<'a>(
        &'a self,
        s: &'a StreamId,
        from: u64,
        limit: usize,
        max_bytes: usize,
    ) -> BoxFuture<'a, eventloom_core::Result<Vec<RecordedEvent>>> {
        Box::pin(async move {
            let events = self.inner.read_stream_bounded(s, from, limit, max_bytes).await?;
            self.read.fetch_add(events.len(), Ordering::SeqCst);
            Ok(events)
        })
    }
}

/// `first` answered again: the same stream, version and position, marked a replay, nothing
/// appended now.
fn replay_of(first: &CommandOutcome) -> CommandOutcome {
    let mut replay = first.clone();
    replay.appended = 0;
    replay.replayed = true;
    replay
}

/// Outcomes of one command id, in any order: one execution and replays of it.
fn one_execution(outcomes: &[CommandOutcome]) {
    let executed: Vec<&CommandOutcome> = outcomes.iter().filter(|o| !o.replayed).collect();
    assert_eq!(executed.len(), 1, "one execution: {outcomes:?}");
    assert!(outcomes.iter().all(|o| o.replayed || o.appended > 0), "{outcomes:?}");
    assert!(outcomes.iter().filter(|o| o.replayed).all(|o| *o == replay_of(executed[0])), "{outcomes:?}");
}

fn account(id: &str) -> StreamId {
    StreamId::new("account", id).unwrap()
}

async fn stored(store: &impl EventStore, id: &str) -> Vec<RecordedEvent> {
    store.read_stream(&account(id), 1, usize::MAX).await.unwrap()
}

#[tokio::test]
async fn executes_and_records_metadata() {
    let store = MemoryEventStore::new();
    let cqrs = Cqrs::new(store.clone())
        .with_clock(ManualClock::new(Timestamp::from_micros(1_000)))
        .with_ids(SequentialIds::default());
    let opened = cqrs.execute(open("a")).await.unwrap();
    assert_eq!((opened.version, opened.appended), (1, 1));
    let options = ExecuteOptions::default().command_id("cmd-7").correlation_id("req-1").header("user", "ada");
    let done = cqrs.execute_with(deposit("a", 5), options).await.unwrap();
    assert_eq!(done.version, 2);
    assert!(done.position > opened.position);
    let events = stored(&store, "a").await;
    assert_eq!(events.len(), 2);
    assert_eq!((events[1].event_type.as_ref(), events[1].schema_version), ("MoneyDeposited", 2));
    assert_eq!(events[1].payload.as_ref(), r#"{"amount":5}"#);
    let m = events[1].metadata.get().unwrap();
    assert_eq!(m.event_id.as_u128(), 2);
    assert_eq!(m.timestamp, Timestamp::from_micros(1_000));
    assert_eq!(m.command_id.as_deref(), Some("cmd-7"));
    assert_eq!(m.causation_id.as_deref(), Some("cmd-7"));
    assert_eq!(m.correlation_id.as_deref(), Some("req-1"));
    assert_eq!(m.headers.get("user").map(String::as_str), Some("ada"));
    assert_eq!(events[1].position, done.position);
}

#[tokio::test]
async fn a_rejected_command_appends_nothing_and_returns_the_users_error() {
    let store = MemoryEventStore::new();
    let cqrs = Cqrs::new(store.clone());
    cqrs.execute(open("a")).await.unwrap();
    cqrs.execute(deposit("a", 5)).await.unwrap();
    let err = cqrs.execute(Withdraw { id: "a".into(), amount: 9 }).await.unwrap_err();
    assert!(matches!(err, CommandError::Rejected(AccountError::Insufficient { balance: 5, requested: 9 })), "{err:?}");
    assert!(matches!(cqrs.execute(deposit("nobody", 1)).await, Err(CommandError::Rejected(AccountError::NotOpen))));
    assert_eq!(store.len(), 2);
}

#[tokio::test]
async fn a_no_op_returns_the_current_version() {
    let store = MemoryEventStore::new();
    let cqrs = Cqrs::new(store.clone());
    let opened = cqrs.execute(open("a")).await.unwrap();
    let touched = cqrs.execute(Touch { id: "a".into() }).await.unwrap();
    assert_eq!((touched.version, touched.position, touched.appended), (1, opened.position, 0));
    assert_eq!(store.len(), 1);
}

#[tokio::test]
async fn hostile_and_oversized_input_is_refused_with_a_typed_error() {
    let store = MemoryEventStore::with_max_event_size(1_000);
    let cqrs = Cqrs::new(store.clone());
    for id in ["", "a\nb", "nul\0"] {
        let err = cqrs.execute(open(id)).await.unwrap_err();
        assert!(matches!(err, CommandError::Store(Error::InvalidId { .. })), "{id:?}: {err:?}");
    }
    let err = cqrs.execute(open(&"x".repeat(10_000))).await.unwrap_err();
    assert!(matches!(err, CommandError::Store(Error::InvalidId { .. })), "{err:?}");
    let err = cqrs.execute(Open { id: "big".into(), owner: "o".repeat(5_000) }).await.unwrap_err();
    assert!(matches!(err, CommandError::Store(Error::PayloadTooLarge { limit: 1_000, .. })), "{err:?}");
    let err = cqrs.execute_with(open("a"), ExecuteOptions::default().command_id("x".repeat(300))).await.unwrap_err();
    assert!(matches!(err, CommandError::Store(Error::InvalidId { what: "command id", .. })), "{err:?}");
    assert!(store.is_empty());
    // A hostile but valid id works.
    cqrs.execute(open("'; DROP TABLE events; -- ✓")).await.unwrap();
    assert_eq!(stored(&store, "'; DROP TABLE events; -- ✓").await.len(), 1);
}

#[tokio::test]
async fn the_same_command_id_returns_the_first_outcome_and_appends_nothing() {
    let store = MemoryEventStore::new();
    let one = Cqrs::new(store.clone());
    let other = Cqrs::new(store.clone()); // another process: its own cache
    one.execute(open("a")).await.unwrap();
    let first = one.execute_with(deposit("a", 5), ExecuteOptions::default().command_id("k1")).await.unwrap();
    let again = one.execute_with(deposit("a", 5), ExecuteOptions::default().command_id("k1")).await.unwrap();
    let elsewhere = other.execute_with(deposit("a", 5), ExecuteOptions::default().command_id("k1")).await.unwrap();
    assert_eq!((first.appended, first.replayed), (1, false));
    assert_eq!(again, replay_of(&first), "a replay says so, and appended nothing now");
    assert_eq!(elsewhere, replay_of(&first));
    assert_eq!(stored(&store, "a").await.len(), 2);
    // A rejected command may be retried with its key.
    let key = || ExecuteOptions::default().command_id("k2");
    assert!(one.execute_with(Withdraw { id: "a".into(), amount: 50 }, key()).await.is_err());
    one.execute(deposit("a", 100)).await.unwrap();
    let retried = one.execute_with(Withdraw { id: "a".into(), amount: 50 }, key()).await.unwrap();
    assert_eq!(retried.appended, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_command_id_at_once_appends_once() {
    let store = MemoryEventStore::new();
    Cqrs::new(store.clone()).execute(open("a")).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let engine = Cqrs::new(store.clone());
        tasks.push(tokio::spawn(async move {
            engine.execute_with(deposit("a", 1), ExecuteOptions::default().command_id("once")).await.unwrap()
        }));
    }
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.push(t.await.unwrap());
    }
    one_execution(&outcomes);
    assert_eq!(stored(&store, "a").await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_command_id_with_a_required_version_at_once_gets_the_first_outcome_not_a_conflict() {
    let store = MemoryEventStore::new();
    Cqrs::new(store.clone()).execute(open("a")).await.unwrap();
    let mut tasks = Vec::new();
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(8));
    // One engine (one process): the requests meet at the cached aggregate, the second finding
    // the version the first one made.
    let engine = std::sync::Arc::new(Cqrs::new(store.clone()));
    engine.execute_with(deposit("a", 0), ExecuteOptions::default().expect_version(99)).await.unwrap_err();
    for _ in 0..8 {
        let engine = engine.clone();
        let start = start.clone();
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            let options = ExecuteOptions::default().command_id("once-at-v1").expect_version(1);
            engine.execute_with(deposit("a", 1), options).await.unwrap()
        }));
    }
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.push(t.await.unwrap());
    }
    one_execution(&outcomes);
    assert_eq!(stored(&store, "a").await.len(), 2);
}

#[tokio::test]
async fn a_stale_cache_conflicts_reads_only_newer_events_and_retries() {
    let store = Counting::default();
    let one = Cqrs::new(store.clone());
    let two = Cqrs::new(store.clone());
    one.execute(open("a")).await.unwrap();
    one.execute(deposit("a", 1)).await.unwrap();
    store.take_read();
    one.execute(deposit("a", 1)).await.unwrap();
    assert_eq!(store.take_read(), 0, "a warm cache reads nothing");
    for _ in 0..3 {
        two.execute(deposit("a", 10)).await.unwrap();
    }
    store.take_read();
    let appends = store.appends.load(Ordering::SeqCst);
    let done = one.execute(deposit("a", 1)).await.unwrap();
    assert_eq!(done.version, 7);
    assert_eq!(store.take_read(), 3, "only the three newer events are read");
    assert_eq!(store.appends.load(Ordering::SeqCst) - appends, 2, "one conflict, one retry");
    // A rejection decided on a stale cache is checked against the latest state first.
    two.execute(deposit("a", 100)).await.unwrap();
    let appends = store.appends.load(Ordering::SeqCst);
    let done = one.execute(Withdraw { id: "a".into(), amount: 120 }).await.unwrap();
    assert_eq!(done.version, 9);
    assert_eq!(store.appends.load(Ordering::SeqCst) - appends, 1, "no append on the stale refusal");
}

#[tokio::test]
async fn conflicts_beyond_the_attempts_are_a_typed_error() {
    let store = MemoryEventStore::new();
    let one = Cqrs::new(store.clone()).with_retry(RetryPolicy::never());
    let two = Cqrs::new(store.clone());
    one.execute(open("a")).await.unwrap();
    two.execute(deposit("a", 1)).await.unwrap();
    let err = one.execute(deposit("a", 1)).await.unwrap_err();
    match err {
        CommandError::Conflict { stream, expected: ExpectedVersion::Exact(1), actual: 2, attempts: 1 } => {
            assert_eq!(stream, account("a"))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(stored(&store, "a").await.len(), 2);
}

#[tokio::test]
async fn an_expected_version_runs_only_against_that_version() {
    let store = MemoryEventStore::new();
    let cqrs = Cqrs::new(store.clone());
    cqrs.execute(open("a")).await.unwrap();
    let err = cqrs.execute_with(deposit("a", 1), ExecuteOptions::default().expect_version(3)).await.unwrap_err();
    assert!(matches!(err, CommandError::Conflict { actual: 1, .. }), "{err:?}");
    // Another writer moved the stream: no retry.
    Cqrs::new(store.clone()).execute(deposit("a", 1)).await.unwrap();
    let err = cqrs.execute_with(deposit("a", 1), ExecuteOptions::default().expect_version(1)).await.unwrap_err();
    assert!(matches!(err, CommandError::Conflict { actual: 2, .. }), "{err:?}");
    assert_eq!(stored(&store, "a").await.len(), 2);
    let ok = cqrs.execute_with(deposit("a", 1), ExecuteOptions::default().expect_version(2)).await.unwrap();
    assert_eq!(ok.version, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_engines_racing_on_one_stream_lose_nothing() {
    let store = MemoryEventStore::new();
    Cqrs::new(store.clone()).execute(open("a")).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let engine = Cqrs::new(store.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..25 {
                engine.execute(deposit("a", 1)).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let (state, version) = Cqrs::<Account, _>::new(store.clone()).load("a").await.unwrap();
    assert_eq!((state.balance, version), (400, 401));
}

#[tokio::test]
async fn snapshots_keep_loading_flat_and_a_changed_shape_ignores_old_ones() {
    let store = Counting::default();
    let snapshots = MemorySnapshotStore::default();
    let cqrs =
        Cqrs::new(store.clone()).with_cache_capacity(0).with_snapshots(snapshots.clone(), SnapshotPolicy::every(10));
    cqrs.execute(open("a")).await.unwrap();
    for _ in 0..24 {
        cqrs.execute(deposit("a", 1)).await.unwrap();
    }
    let snap = snapshots.load_snapshot(&account("a")).await.unwrap().unwrap();
    assert_eq!(snap.version, 20);
    store.take_read();
    let (state, version) = cqrs.load("a").await.unwrap();
    assert_eq!((state.balance, version), (24, 25));
    assert_eq!(store.take_read(), 5, "only the events after the snapshot are read");

    // A snapshot of another shape version is ignored, and so is one that does not decode.
    for (snapshot_version, state) in [(99, snap.state.clone()), (1, "{not json".to_owned())] {
        let other = MemorySnapshotStore::default();
        other.save_snapshot(Snapshot { snapshot_version, state, ..snap.clone() }).await.unwrap();
        let engine = Cqrs::<Account, _>::new(store.clone())
            .with_cache_capacity(0)
            .with_snapshots(other, SnapshotPolicy::every(10));
        store.take_read();
        let (state, version) = engine.load("a").await.unwrap();
        assert_eq!((state.balance, version), (24, 25));
        assert_eq!(store.take_read(), 25, "the whole stream is replayed");
    }
}

#[tokio::test]
async fn loading_reads_in_bounded_batches() {
    let store = MemoryEventStore::new();
    let cqrs = Cqrs::new(store.clone()).with_batch_size(7).with_cache_capacity(0);
    cqrs.execute(open("a")).await.unwrap();
    for _ in 0..30 {
        cqrs.execute(deposit("a", 2)).await.unwrap();
    }
    assert_eq!(cqrs.load("a").await.unwrap().0.balance, 60);
}

async fn append_raw(store: &MemoryEventStore, id: &str, event_type: &'static str, version: u32, payload: &str) {
    let event = NewEvent {
        event_type: event_type.into(),
        schema_version: version,
        payload: payload.into(),
        metadata: Metadata::default(),
    };
    store.append(&account(id), ExpectedVersion::Any, vec![event]).await.unwrap();
}

#[tokio::test]
async fn a_stored_event_that_does_not_decode_names_stream_version_and_position() {
    let store = MemoryEventStore::new();
    let cqrs = Cqrs::new(store.clone());
    cqrs.execute(open("bad")).await.unwrap();
    cqrs.execute(open("good")).await.unwrap();
    append_raw(&store, "bad", "MoneyDeposited", 2, r#"{"amount":"lots"}"#).await;
    let position = stored(&store, "bad").await[1].position;
    let fresh = Cqrs::new(store.clone());
    match fresh.execute(deposit("bad", 1)).await.unwrap_err() {
        CommandError::Store(Error::Decode { stream, version: 2, position: p, event_type, .. }) => {
            assert_eq!((stream, p, event_type.as_str()), (account("bad"), position, "MoneyDeposited"));
        }
        other => panic!("{other:?}"),
    }
    append_raw(&store, "bad2", "Exploded", 1, "{}").await;
    let err = fresh.execute(deposit("bad2", 1)).await.unwrap_err();
    assert!(matches!(err, CommandError::Store(Error::UnknownEvent { version: 1, .. })), "{err:?}");
    append_raw(&store, "future", "Opened", 9, r#"{"owner":"x"}"#).await;
    let err = fresh.execute(deposit("future", 1)).await.unwrap_err();
    assert!(matches!(err, CommandError::Store(Error::NewerSchema { schema_version: 9, known: 1, .. })), "{err:?}");
    assert!(err.to_string().contains("account/future"), "{err}");
    // Other streams are served as before.
    fresh.execute(deposit("good", 1)).await.unwrap();
}

#[tokio::test]
async fn upcasters_turn_old_shapes_and_names_into_the_current_event() {
    let store = MemoryEventStore::new();
    append_raw(&store, "old", "Opened", 1, r#"{"owner":"ada"}"#).await;
    // An old name with an old shape: `Deposited` v1 stored cents.
    append_raw(&store, "old", "Deposited", 1, r#"{"cents":500}"#).await;
    let upcasters = Upcasters::new().add(("Deposited", 1), ("MoneyDeposited", 1), Ok).add(
        ("MoneyDeposited", 1),
        ("MoneyDeposited", 2),
        |v| {
            let cents = v["cents"].as_u64().ok_or(NoCents)?;
            Ok(serde_json::json!({ "amount": cents / 100 }))
        },
    );
    let plain = Cqrs::<Account, _>::new(store.clone());
    assert!(matches!(plain.load("old").await, Err(Error::UnknownEvent { .. })));
    let cqrs = Cqrs::<Account, _>::new(store.clone()).with_upcasters(upcasters.clone());
    let (state, _) = cqrs.load("old").await.unwrap();
    assert_eq!((state.owner.as_str(), state.balance), ("ada", 5));
    // A failing upcaster is a typed error naming the event, its own error kept as the source.
    append_raw(&store, "broken", "Deposited", 1, r#"{"dollars":5}"#).await;
    let err = cqrs.load("broken").await.unwrap_err();
    assert!(matches!(err, Error::Upcast { version: 1, .. }), "{err:?}");
    assert_eq!(err.kind(), eventloom_core::ErrorKind::Corrupt);
    assert!(err.to_string().ends_with("failed: no cents"), "{err}");
    let source = std::error::Error::source(&err).expect("the upcaster's error");
    assert!(source.downcast_ref::<NoCents>().is_some(), "{source:?}");
}

/// An upcaster's own error.
#[derive(Debug, thiserror::Error)]
#[error("no cents")]
struct NoCents;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retry_racing_its_original_gets_the_first_outcome_not_a_rejection() {
    for round in 0..20 {
        let store = MemoryEventStore::new();
        let setup = Cqrs::new(store.clone());
        setup.execute(open("a")).await.unwrap();
        setup.execute(deposit("a", 5)).await.unwrap();
        let key = format!("withdraw-{round}");
        let tasks: Vec<_> = (0..2)
            .map(|_| {
                let engine = Cqrs::new(store.clone());
                let options = ExecuteOptions::default().command_id(key.clone());
                tokio::spawn(async move { engine.execute_with(Withdraw { id: "a".into(), amount: 5 }, options).await })
            })
            .collect();
        let mut outcomes = Vec::new();
        for t in tasks {
            outcomes.push(t.await.unwrap().expect("both callers get the first outcome"));
        }
        one_execution(&outcomes);
        assert_eq!(stored(&store, "a").await.len(), 3);
    }
}

#[tokio::test]
async fn a_no_op_under_a_command_id_answers_the_same_after_the_stream_changed() {
    let store = MemoryEventStore::new();
    let cqrs = Cqrs::new(store.clone());
    cqrs.execute(open("a")).await.unwrap();
    let key = || ExecuteOptions::default().command_id("touch-1");
    let first = cqrs.execute_with(Touch { id: "a".into() }, key()).await.unwrap();
    assert_eq!((first.version, first.appended), (1, 0));
    cqrs.execute(deposit("a", 5)).await.unwrap();
    let again = Cqrs::new(store.clone()).execute_with(Touch { id: "a".into() }, key()).await.unwrap();
    assert_eq!(again, replay_of(&first), "the first answer, not the stream's new version");
    // The no-op's fingerprint was recorded: the key is taken for any other request.
    let other = cqrs.execute_with(deposit("a", 1), key()).await.unwrap_err();
    assert!(
        matches!(other, CommandError::Store(Error::CommandIdReused { first_fingerprint: Some(_), .. })),
        "{other:?}"
    );
    assert_eq!(stored(&store, "a").await.len(), 2);
}

#[tokio::test]
async fn a_command_id_reused_on_another_stream_is_refused() {
    let store = MemoryEventStore::new();
    let cqrs = Cqrs::new(store.clone());
    cqrs.execute(open("a")).await.unwrap();
    cqrs.execute(open("b")).await.unwrap();
    cqrs.execute_with(deposit("a", 5), ExecuteOptions::default().command_id("k")).await.unwrap();
    let err = cqrs.execute_with(deposit("b", 5), ExecuteOptions::default().command_id("k")).await.unwrap_err();
    match err {
        CommandError::Store(Error::CommandIdReused { command_id, first_stream, .. }) => {
            assert_eq!((command_id.as_str(), first_stream), ("k", account("a")));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(stored(&store, "b").await.len(), 1, "nothing appended to b");
}

#[tokio::test]
async fn a_command_id_reused_for_another_request_on_the_same_stream_is_refused_with_both_fingerprints() {
    let store = MemoryEventStore::new();
    let cqrs = Cqrs::new(store.clone());
    cqrs.execute(open("a")).await.unwrap();
    let key = || ExecuteOptions::default().command_id("k");
    let first = cqrs.execute_with(deposit("a", 5), key()).await.unwrap();
    let print = Fingerprint::of(&deposit("a", 5)).unwrap();
    // Other fields, or another command, under the same key; from this engine (cached state) and
    // from another process.
    let other_engine = Cqrs::new(store.clone());
    for engine in [&cqrs, &other_engine] {
        let err = engine.execute_with(deposit("a", 6), key()).await.unwrap_err();
        match &err {
            CommandError::Store(Error::CommandIdReused {
                command_id,
                first_stream,
                first_fingerprint,
                fingerprint,
            }) => {
                assert_eq!((command_id.as_str(), first_stream), ("k", &account("a")));
                assert_eq!(*first_fingerprint, Some(print));
                assert_eq!(*fingerprint, Fingerprint::of(&deposit("a", 6)).unwrap());
            }
            other => panic!("{other:?}"),
        }
        let text = err.to_string();
        assert!(text.contains(&print.short()) && text.contains("different request"), "{text}");
        let err = engine.execute_with(Withdraw { id: "a".into(), amount: 5 }, key()).await.unwrap_err();
        assert!(matches!(err, CommandError::Store(Error::CommandIdReused { .. })), "{err:?}");
    }
    assert_eq!(stored(&store, "a").await.len(), 2, "nothing executed");
    assert_eq!(
        cqrs.execute_with(deposit("a", 5), key()).await.unwrap(),
        replay_of(&first),
        "the same request still replays"
    );
}

#[tokio::test]
async fn a_replay_appends_nothing_even_when_the_command_would_now_be_refused() {
    let store = Counting::default();
    let cqrs = Cqrs::new(store.clone());
    cqrs.execute(open("a")).await.unwrap();
    cqrs.execute(deposit("a", 5)).await.unwrap();
    let key = || ExecuteOptions::default().command_id("w");
    let first = cqrs.execute_with(Withdraw { id: "a".into(), amount: 5 }, key()).await.unwrap();
    let appends = store.appends.load(Ordering::SeqCst);
    // The balance is 0 now: executed again, the withdrawal would be refused.
    let again = Cqrs::new(store.clone()).execute_with(Withdraw { id: "a".into(), amount: 5 }, key()).await.unwrap();
    assert_eq!(again, replay_of(&first));
    assert_eq!(store.appends.load(Ordering::SeqCst), appends, "not even an attempt");
}

#[tokio::test]
async fn outcomes_recorded_without_a_fingerprint_still_replay_on_their_stream() {
    // An append that carried the command id without a fingerprint: what a store upgraded from a
    // release that kept none holds for commands executed before.
    let store = MemoryEventStore::new();
    let cqrs = Cqrs::new(store.clone());
    cqrs.execute(open("a")).await.unwrap();
    let metadata = Metadata::default().with_command_id("old");
    let event = NewEvent::encode(&AccountEvent::Deposited { amount: 5 }, metadata).unwrap();
    let old = store.append(&account("a"), ExpectedVersion::Exact(1), vec![event]).await.unwrap();
    assert_eq!(store.command_outcome("old").await.unwrap().unwrap().fingerprint, None);
    let key = || ExecuteOptions::default().command_id("old");
    let again = cqrs.execute_with(deposit("a", 5), key()).await.unwrap();
    let old = old.written().unwrap();
    assert_eq!(again, replay_of(&CommandOutcome::from(old.clone())), "no fingerprint to compare: the stream decides");
    // Any request on the same stream replays (as before fingerprints were kept); on another
    // stream it is refused.
    assert_eq!(cqrs.execute_with(deposit("a", 7), key()).await.unwrap(), again);
    cqrs.execute(open("b")).await.unwrap();
    let err = cqrs.execute_with(deposit("b", 5), key()).await.unwrap_err();
    assert!(matches!(err, CommandError::Store(Error::CommandIdReused { first_fingerprint: None, .. })), "{err:?}");
    assert!(err.to_string().contains("not recorded"), "{err}");
    assert_eq!(stored(&store, "a").await.len(), 2);
}

#[tokio::test]
async fn fingerprints_are_pinned_and_refuse_non_finite_floats() {
    // The canonical text `[1,"account","Deposit","a",{"amount":5,"id":"a"}]`, hashed with
    // SHA-256 (e.g. `printf %s '...' | sha256sum`): stored fingerprints must keep matching after
    // an upgrade, on every platform.
    let print = Fingerprint::of(&deposit("a", 5)).unwrap();
    assert_eq!(print.to_string(), "85af27f56ea85a8d12a029005d5b242788da1e126ea98cf2590fbf5d0ecddfa6");
    assert_eq!(print.short(), "85af27f56ea8");
    assert_ne!(print, Fingerprint::of(&Withdraw { id: "a".into(), amount: 5 }).unwrap(), "the command's name counts");
    assert_ne!(print, Fingerprint::of(&deposit("b", 5)).unwrap());

    #[derive(Debug, Serialize)]
    struct Rate {
        id: String,
        rate: f64,
    }
    impl Command for Rate {
        type Aggregate = Account;
        const NAME: &'static str = "Rate";
        fn aggregate_id(&self) -> std::borrow::Cow<'_, str> {
            self.id.as_str().into()
        }
    }
    impl Handle<Rate> for Account {
        fn handle(&self, _: &Rate) -> Result<Vec<AccountEvent>, AccountError> {
            Ok(vec![])
        }
    }
    assert!(Fingerprint::of(&Rate { id: "a".into(), rate: 0.5 }).is_ok());
    let err = Fingerprint::of(&Rate { id: "a".into(), rate: f64::NAN }).unwrap_err();
    assert!(matches!(err, Error::Encode { .. }), "{err:?}");
    // Fingerprints are taken only for commands with an id: without one, nothing to refuse.
    let store = MemoryEventStore::new();
    let cqrs = Cqrs::new(store.clone());
    cqrs.execute(Rate { id: "a".into(), rate: f64::NAN }).await.unwrap();
    let err = cqrs
        .execute_with(Rate { id: "a".into(), rate: f64::INFINITY }, ExecuteOptions::default().command_id("r"))
        .await
        .unwrap_err();
    assert!(matches!(err, CommandError::Store(Error::Encode { .. })), "{err:?}");
    assert_eq!(store.command_outcome("r").await.unwrap(), None);
}

#[tokio::test]
async fn the_cache_evicts_beyond_its_capacity_and_an_evicted_aggregate_reloads_from_the_store() {
    let store = Counting::default();
    let cqrs = Cqrs::new(store.clone()).with_cache_capacity(4);
    let other = Cqrs::new(store.clone()); // another process
    for a in 0..4 {
        cqrs.execute(open(&format!("a{a}"))).await.unwrap();
    }
    cqrs.execute(deposit("a0", 1)).await.unwrap();
    store.take_read();
    // A fifth aggregate: the least recently used idle one (a1) makes room.
    cqrs.execute(open("a4")).await.unwrap();
    assert!(format!("{cqrs:?}").contains("cached: Some(4)"), "{cqrs:?}");
    for a in ["a0", "a2", "a3", "a4"] {
        cqrs.execute(deposit(a, 1)).await.unwrap();
    }
    assert_eq!(store.take_read(), 0, "the others are still cached");
    // Meanwhile another process moved a1 on; the evicted a1 reloads all of it, with no conflict.
    for _ in 0..3 {
        other.execute(deposit("a1", 10)).await.unwrap();
    }
    store.take_read();
    let appends = store.appends.load(Ordering::SeqCst);
    let done = cqrs.execute(Withdraw { id: "a1".into(), amount: 30 }).await.unwrap();
    assert_eq!(done.version, 5);
    assert_eq!(store.take_read(), 4, "a1 was evicted: loaded from its first event");
    assert_eq!(store.appends.load(Ordering::SeqCst) - appends, 1, "the reloaded state was current");
    let err = cqrs.execute(Withdraw { id: "a1".into(), amount: 1 }).await.unwrap_err();
    assert!(matches!(err, CommandError::Rejected(AccountError::Insufficient { balance: 0, .. })), "{err:?}");
    // Cached again: the next command reads only what is newer than the cache.
    other.execute(deposit("a1", 7)).await.unwrap();
    store.take_read();
    cqrs.execute(Withdraw { id: "a1".into(), amount: 7 }).await.unwrap();
    assert_eq!(store.take_read(), 1, "only the one newer event");
    // However many aggregates pass through, the cache stays within its capacity.
    for a in 0..100 {
        cqrs.execute(open(&format!("many-{a}"))).await.unwrap();
        let debug = format!("{cqrs:?}");
        let cached: usize = debug.split("cached: Some(").nth(1).unwrap().split(')').next().unwrap().parse().unwrap();
        assert!(cached <= 4, "{debug}");
    }
}

#[tokio::test]
async fn streams_load_in_batches_bounded_in_bytes() {
    let store = MemoryEventStore::new();
    let cqrs = Cqrs::new(store.clone());
    cqrs.execute(open("big")).await.unwrap();
    for _ in 0..30 {
        cqrs.execute(deposit("big", 1)).await.unwrap();
    }
    // Every event is over 10 bytes: each batch holds one, however many a batch may hold.
    let fresh = Cqrs::<Account, _>::new(store.clone()).with_batch_size(1_000).with_batch_bytes(10);
    let (account, version) = fresh.load("big").await.unwrap();
    assert_eq!((account.balance, version), (30, 31), "a batch cut by bytes is not the end of the stream");
    let next = fresh.execute(deposit("big", 1)).await.unwrap();
    assert_eq!(next.version, 32);
}

#[tokio::test]
async fn an_aggregate_loads_as_of_a_version_or_a_time_and_ignores_snapshots_and_the_cache() {
    /// The test's clock, shared with the engine.
    struct Shared(Arc<ManualClock>);
    impl eventloom_core::model::Clock for Shared {
        fn now(&self) -> Timestamp {
            self.0.now()
        }
        fn sleep(&self, d: std::time::Duration) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
            self.0.sleep(d)
        }
    }
    let store = MemoryEventStore::new();
    let clock = Arc::new(ManualClock::new(Timestamp::from_micros(1_000)));
    let cqrs = Cqrs::new(store.clone())
        .with_clock(Shared(clock.clone()))
        .with_snapshots(MemorySnapshotStore::default(), SnapshotPolicy::every(2))
        .with_batch_size(2);
    cqrs.execute(open("a")).await.unwrap();
    for amount in [1, 10, 100, 1000] {
        clock.advance(1_000);
        cqrs.execute(deposit("a", amount)).await.unwrap();
    }
    // Version 1: opened; each deposit after it at 2,000, 3,000, 4,000 and 5,000 µs.
    use eventloom_core::write::AsOf;
    let balance = |(account, version): (Account, u64)| (account.balance, version);
    assert_eq!(balance(cqrs.load_as_of("a", AsOf::Version(0)).await.unwrap()), (0, 0));
    assert_eq!(balance(cqrs.load_as_of("a", AsOf::Version(3)).await.unwrap()), (11, 3));
    assert_eq!(balance(cqrs.load_as_of("a", AsOf::Version(99)).await.unwrap()), (1111, 5), "past the end");
    let at = |micros| AsOf::Time(Timestamp::from_micros(micros));
    assert_eq!(balance(cqrs.load_as_of("a", at(999)).await.unwrap()), (0, 0), "before the first event");
    assert_eq!(balance(cqrs.load_as_of("a", at(3_000)).await.unwrap()), (11, 3), "at an event's time: with it");
    assert_eq!(balance(cqrs.load_as_of("a", at(4_999)).await.unwrap()), (111, 4));
    assert_eq!(balance(cqrs.load_as_of("a", at(i64::MAX)).await.unwrap()), (1111, 5));
    assert!(matches!(cqrs.load_as_of("a\0b", AsOf::Version(1)).await, Err(Error::InvalidId { .. })));
    assert_eq!(balance(cqrs.load_as_of("nobody", AsOf::Version(3)).await.unwrap()), (0, 0));
}

/// A memory store that records the pages loads fold: how many events and bytes each held;
/// with `row_by_row`, it says it folds rows as they arrive.
#[derive(Clone, Default)]
struct Paged {
    inner: MemoryEventStore,
    pages: Arc<std::sync::Mutex<Vec<(usize, usize, eventloom_core::store::FoldedPage)>>>,
    row_by_row: bool,
}

impl EventStore for Paged {
    fn append<'a>(
        &'a self,
        s: &'a StreamId,
        e: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> BoxFuture<'a, eventloom_core::Result<eventloom_core::store::Appended>> {
        self.inner.append(s, e, events)
    }
    fn append_command<'a>(
        &'a self,
        s: &'a StreamId,
        e: ExpectedVersion,
        events: Vec<NewEvent>,
        print: &'a eventloom_core::store::CommandEntry,
    ) -> BoxFuture<'a, eventloom_core::Result<eventloom_core::store::Appended>> {
        self.inner.append_command(s, e, events, print)
    }
    fn read_stream<'a>(
        &'a self,
        s: &'a StreamId,
        from: u64,
        limit: usize,
    ) -> BoxFuture<'a, eventloom_core::Result<Vec<RecordedEvent>>> {
        self.inner.read_stream(s, from, limit)
    }
    fn read_all<'a>(
        &'a self,
        after: Position,
        limit: usize,
    ) -> BoxFuture<'a, eventloom_core::Result<Vec<RecordedEvent>>> {
        self.inner.read_all(after, limit)
    }
    fn fold_stream<'a>(
        &'a self,
        s: &'a StreamId,
        from: u64,
        limit: usize,
        max_bytes: usize,
        fold: &'a mut (dyn FnMut(eventloom_core::model::EventRef<'_>) -> eventloom_core::Result<()> + Send),
    ) -> BoxFuture<'a, eventloom_core::Result<eventloom_core::store::FoldedPage>> {
        Box::pin(async move {
            let page = self.inner.fold_stream(s, from, limit, max_bytes, fold).await?;
            self.pages.lock().unwrap().push((limit, max_bytes, page));
            Ok(page)
        })
    }
    fn folds_row_by_row(&self) -> bool {
        self.row_by_row
    }
    fn stream_version<'a>(&'a self, s: &'a StreamId) -> BoxFuture<'a, eventloom_core::Result<u64>> {
        self.inner.stream_version(s)
    }
    fn head<'a>(&'a self) -> BoxFuture<'a, eventloom_core::Result<Option<Position>>> {
        self.inner.head()
    }
    fn command_outcome<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, eventloom_core::Result<Option<eventloom_core::store::CommandRecord>>> {
        self.inner.command_outcome(id)
    }
    fn record_command<'a>(
        &'a self,
        id: &'a str,
        record: eventloom_core::store::CommandRecord,
    ) -> BoxFuture<'a, eventloom_core::Result<Option<eventloom_core::store::CommandRecord>>> {
        self.inner.record_command(id, record)
    }
    fn expire_commands<'a>(&'a self, before: Timestamp, limit: usize) -> BoxFuture<'a, eventloom_core::Result<u64>> {
        self.inner.expire_commands(before, limit)
    }
    fn forget_commands<'a>(&'a self, ids: &'a [String]) -> BoxFuture<'a, eventloom_core::Result<u64>> {
        self.inner.forget_commands(ids)
    }
}

/// A stream of 5,001 events, 1 KiB each but the first, in `store`.
async fn long_stream(store: &Paged) {
    let stream = account("long");
    let opened = NewEvent::encode(&AccountEvent::Opened { owner: "ada".into() }, Metadata::default()).unwrap();
    store.append(&stream, ExpectedVersion::NoStream, vec![opened]).await.unwrap();
    // 5,000 deposits of 1 KiB each (the pad is a field the event does not have: ignored).
    let pad = "x".repeat(1_000);
    for chunk in 0..50u64 {
        let events = (0..100)
            .map(|_| NewEvent {
                event_type: "MoneyDeposited".into(),
                schema_version: 2,
                payload: format!(r#"{{"amount":1,"pad":"{pad}"}}"#),
                metadata: Metadata::default(),
            })
            .collect();
        store.append(&stream, ExpectedVersion::Exact(1 + chunk * 100), events).await.unwrap();
    }
}

#[tokio::test]
async fn a_long_stream_loads_folded_page_by_page_bounded_in_events_and_bytes() {
    let store = Paged::default();
    long_stream(&store).await;
    let (limit, max_bytes) = (700, 64 * 1024);
    let cqrs = Cqrs::<Account, _>::new(store.clone())
        .with_cache_capacity(0)
        .with_batch_size(limit)
        .with_batch_bytes(max_bytes);
    let (account, version) = cqrs.load("long").await.unwrap();
    assert_eq!((account.open, account.balance, version), (true, 5_000, 5_001));
    let pages = std::mem::take(&mut *store.pages.lock().unwrap());
    let folded: usize = pages.iter().map(|(_, _, page)| page.events).sum();
    assert_eq!(folded, 5_001, "every event folded once, through fold_stream: {pages:?}");
    // An event weighs a little over 1 KiB: a page of 64 KiB holds about 60 of them.
    let event = 1_000 + 100;
    for (asked, bytes, page) in &pages {
        assert!(*asked <= limit && *bytes == max_bytes, "a page asked for {asked} events and {bytes} bytes");
        assert!(page.events <= *asked, "{page:?}");
        assert!(page.bytes < max_bytes + 2 * event, "a page held {} bytes: {page:?}", page.bytes);
    }
    assert!(pages.len() >= 5_000 * 1_000 / max_bytes, "{} pages", pages.len());
    let next = cqrs.execute(deposit("long", 1)).await.unwrap();
    assert_eq!(next.version, 5_002, "a page cut by bytes is not the end of the stream");
}

#[tokio::test]
async fn a_store_that_folds_row_by_row_is_asked_for_the_whole_stream_in_one_page() {
    let store = Paged { row_by_row: true, ..Paged::default() };
    long_stream(&store).await;
    let cqrs =
        Cqrs::<Account, _>::new(store.clone()).with_cache_capacity(0).with_batch_size(700).with_batch_bytes(64 * 1024);
    let (account, version) = cqrs.load("long").await.unwrap();
    assert_eq!((account.open, account.balance, version), (true, 5_000, 5_001));
    let pages = std::mem::take(&mut *store.pages.lock().unwrap());
    let asked: Vec<_> = pages.iter().map(|(limit, bytes, page)| (*limit, *bytes, page.events)).collect();
    assert_eq!(asked, [(usize::MAX, usize::MAX, 5_001)], "one unbounded page, whatever the batch bounds");
    // A stale cache catches up on the newer events in one page too.
    let cached = Cqrs::<Account, _>::new(store.clone()).with_batch_size(700);
    cached.execute(deposit("long", 1)).await.unwrap();
    for _ in 0..3 {
        cqrs.execute(deposit("long", 1)).await.unwrap();
    }
    store.pages.lock().unwrap().clear();
    assert_eq!(cached.execute(deposit("long", 1)).await.unwrap().version, 5_006);
    let asked: Vec<_> = store.pages.lock().unwrap().iter().map(|(limit, _, page)| (*limit, page.events)).collect();
    assert_eq!(asked, [(usize::MAX, 3)], "the three newer events, after the conflict");
}

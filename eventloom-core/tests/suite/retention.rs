//! Retention of command ids: records carry the engine's time and whether they are kept; an
//! expired id executes again, a kept one never expires.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use eventloom_core::prelude::*;
use eventloom_core::{
    CommandError, Error, ExecuteOptions, Stores,
    memory::{MemoryEventStore, MemoryLeases, MemoryViewStore},
    model::{ManualClock, Timestamp},
    store::{BoxFuture, EventStore},
    write::Cqrs,
};

use crate::domain::*;

#[tokio::test]
async fn records_carry_the_engines_time_and_a_kept_id_never_expires() {
    let store = MemoryEventStore::new();
    let start = Timestamp::from_micros(1_000_000_000);
    let cqrs = Cqrs::new(store.clone()).with_clock(ManualClock::new(start));
    cqrs.execute(open("a")).await.unwrap();
    let http = || ExecuteOptions::default().command_id("http-1");
    let pm = || ExecuteOptions::default().command_id("pm-1").record_refusal().keep_command_id();
    let pm_noop = || ExecuteOptions::default().command_id("pm-2").keep_command_id();
    cqrs.execute_with(deposit("a", 5), http()).await.unwrap();
    cqrs.execute_with(withdraw_all("a", 9), pm()).await.unwrap_err();
    cqrs.execute_with(Touch { id: "a".into() }, pm_noop()).await.unwrap();
    for (id, kept) in [("http-1", false), ("pm-1", true), ("pm-2", true)] {
        let record = store.command_outcome(id).await.unwrap().unwrap();
        assert_eq!((record.recorded_at, record.kept), (start, kept), "{id}");
    }
    let far = Timestamp::from_micros(i64::MAX);
    assert_eq!(store.expire_commands(far, 100).await.unwrap(), 1, "only the HTTP key expires");
    // Sent again after its id expired, the HTTP request executes again: a second deposit.
    let again = cqrs.execute_with(deposit("a", 5), http()).await.unwrap();
    assert!(!again.replayed && again.appended == 1, "{again:?}");
    // The process manager's answers hold, however old.
    cqrs.execute(deposit("a", 100)).await.unwrap();
    let err = cqrs.execute_with(withdraw_all("a", 9), pm()).await.unwrap_err();
    assert!(matches!(err, CommandError::Refused { .. }), "{err:?}");
    assert!(cqrs.execute_with(Touch { id: "a".into() }, pm_noop()).await.unwrap().replayed);
    // Forgotten once the process can no longer replay: the id is free.
    assert_eq!(store.forget_commands(&["pm-1".to_owned(), "pm-2".to_owned()]).await.unwrap(), 2);
    let done = cqrs.execute_with(withdraw_all("a", 9), pm()).await.unwrap();
    assert_eq!(done.appended, 1);
    let events = store.read_stream(&StreamId::new("account", "a").unwrap(), 1, 100).await.unwrap();
    let ids: Vec<_> = events.iter().map(|e| e.metadata.get().unwrap().command_id.clone()).collect();
    assert_eq!(ids.iter().filter(|id| id.as_deref() == Some("http-1")).count(), 2, "the events keep their id");
}

#[tokio::test]
async fn keeping_a_command_id_needs_one() {
    let cqrs = Cqrs::new(MemoryEventStore::new());
    let err = cqrs.execute_with(open("a"), ExecuteOptions::default().keep_command_id()).await.unwrap_err();
    match err {
        CommandError::Store(Error::InvalidConfig { reason }) => {
            assert!(reason.contains("keep its command id"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
}

fn withdraw_all(id: &str, amount: u64) -> Withdraw {
    Withdraw { id: id.into(), amount }
}

/// A memory event store that counts the calls of `expire_commands`, so a test can tell which
/// App's janitor trims.
#[derive(Clone)]
struct CountsExpiry {
    inner: MemoryEventStore,
    calls: Arc<AtomicUsize>,
}

impl eventloom_core::store::DelegateEventStore for CountsExpiry {
    type Inner = MemoryEventStore;
    fn inner(&self) -> &MemoryEventStore {
        &self.inner
    }
    fn expire_commands<'a>(&'a self, before: Timestamp, limit: usize) -> BoxFuture<'a, eventloom_core::Result<u64>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.expire_commands(before, limit)
    }
}

/// Waits up to 10 s for `done`.
async fn eventually(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !done().await {
        assert!(tokio::time::Instant::now() < deadline, "{what} did not happen within 10 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_apps_janitor_expires_old_ids_and_keeps_the_kept_ones() {
    let stores = MemoryStores::new();
    let events = stores.events.clone();
    let app = App::builder(stores)
        .aggregate::<Account>()
        .command_retention(Duration::from_millis(300))
        .start()
        .await
        .unwrap();
    app.execute(open("a")).await.unwrap();
    app.execute_with(deposit("a", 1), ExecuteOptions::default().command_id("http-1")).await.unwrap();
    app.execute_with(deposit("a", 2), ExecuteOptions::default().command_id("pm-1").keep_command_id()).await.unwrap();
    assert!(events.command_outcome("http-1").await.unwrap().is_some(), "not expired at once");
    eventually("the expiry of http-1", async || events.command_outcome("http-1").await.unwrap().is_none()).await;
    assert!(events.command_outcome("pm-1").await.unwrap().is_some(), "kept");
    let again = app.execute_with(deposit("a", 1), ExecuteOptions::default().command_id("http-1")).await.unwrap();
    assert!(!again.replayed, "an expired key executes again");
    app.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_process_trims_at_a_time_and_another_takes_over() {
    let (events, views, leases) = (MemoryEventStore::new(), MemoryViewStore::default(), MemoryLeases::default());
    let start = |calls: Arc<AtomicUsize>| {
        let stores =
            Stores::new(CountsExpiry { inner: events.clone(), calls }, views.clone()).with_leases(leases.clone());
        App::builder(stores).aggregate::<Account>().command_retention(Duration::from_millis(200)).start()
    };
    let (first_calls, second_calls) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let first = start(first_calls.clone()).await.unwrap();
    eventually("a first trim", async || first_calls.load(Ordering::SeqCst) > 0).await;
    let second = start(second_calls.clone()).await.unwrap();
    let before = first_calls.load(Ordering::SeqCst);
    eventually("more trims by the leader", async || first_calls.load(Ordering::SeqCst) >= before + 3).await;
    assert_eq!(second_calls.load(Ordering::SeqCst), 0, "the second process stands by");
    first.shutdown().await.unwrap();
    eventually("the second process taking over", async || second_calls.load(Ordering::SeqCst) > 0).await;
    second.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_zero_retention_and_a_member_named_like_the_janitor_are_refused() {
    let err = App::builder(MemoryStores::new()).command_retention(Duration::ZERO).start().await.unwrap_err();
    assert!(matches!(&err, Error::InvalidConfig { reason } if reason.contains("zero")), "{err:?}");
    let forever = App::builder(MemoryStores::new()).command_retention(Duration::MAX).start().await.unwrap();
    forever.shutdown().await.unwrap();

    struct Squatter;
    impl eventloom_core::Projection for Squatter {
        const NAME: &'static str = "eventloom.command-retention";
        type Events = Account;
        type View = u64;
        fn apply(
            &self,
            _: &mut Option<u64>,
            _: &EventEnvelope<AccountEvent>,
        ) -> std::result::Result<(), eventloom_core::BoxError> {
            Ok(())
        }
    }
    let err = App::builder(MemoryStores::new()).projection(Squatter).start().await.unwrap_err();
    assert!(matches!(&err, Error::InvalidConfig { reason } if reason.contains("janitor")), "{err:?}");
}

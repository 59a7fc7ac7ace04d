//! Retention of command ids: records carry the engine's time and whether they are kept; an
//! expired id executes again, a kept one never expires.

use eventloom_core::prelude::*;
use eventloom_core::{
    CommandError, Error, ExecuteOptions,
    memory::MemoryEventStore,
    model::{ManualClock, Timestamp},
    store::EventStore,
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

//! Refusals recorded under a command id on PostgreSQL (migration 9): answered again across
//! processes, exactly one of a refusal and a success of one id wins, and a stored refusal that
//! cannot be one is `Error::Corrupt`.

use eventloom_core::prelude::*;
use eventloom_core::{
    CommandError, Error, ExecuteOptions,
    store::{AppendOutcome, CommandEntry, CommandRecord, EventStore, MAX_REFUSAL_BYTES},
    write::Cqrs,
};
use eventloom_postgres::PgEventStore;

use crate::domain::{AccountError, Deposit, Open, Withdraw};
use crate::support::{database_url, raw, store};

fn recorded(id: &str) -> ExecuteOptions {
    ExecuteOptions::default().command_id(id).record_refusal()
}

async fn versions(store: &PgEventStore, id: &str) -> u64 {
    store.stream_version(&StreamId::new("account", id).unwrap()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_refusal_is_answered_again_by_another_process() {
    let store = store().await;
    let one = Cqrs::new(store.clone());
    one.execute(Open { id: "a".into() }).await.unwrap();
    let withdraw = || Withdraw { id: "a".into(), amount: 5 };
    let err = one.execute_with(withdraw(), recorded("pm-1")).await.unwrap_err();
    assert!(matches!(err, CommandError::Rejected(AccountError::Insufficient { balance: 0, requested: 5 })), "{err:?}");
    one.execute(Deposit { id: "a".into(), amount: 10 }).await.unwrap();
    let other = Cqrs::new(store.clone()).with_cache_capacity(0);
    match other.execute_with(withdraw(), recorded("pm-1")).await.unwrap_err() {
        CommandError::Refused { command_id, reason } => {
            assert_eq!((command_id.as_str(), reason.as_str()), ("pm-1", "insufficient funds: balance 0, requested 5"));
        }
        other => panic!("expected the recorded refusal, got {other:?}"),
    }
    let err = other.execute_with(Withdraw { id: "a".into(), amount: 6 }, recorded("pm-1")).await.unwrap_err();
    assert!(matches!(err, CommandError::Store(Error::CommandIdReused { .. })), "{err:?}");
    assert_eq!(versions(&store, "a").await, 2, "the withdrawal never ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refusal_and_a_success_of_one_id_at_once_exactly_one_wins() {
    let store = store().await;
    let (mut refused, mut succeeded) = (0, 0);
    for round in 0..40 {
        let account = format!("race-{round}");
        let id = format!("pm-race-{round}");
        Cqrs::new(store.clone()).execute(Open { id: account.clone() }).await.unwrap();
        let refuser = {
            let (engine, account, id) = (Cqrs::new(store.clone()).with_cache_capacity(0), account.clone(), id.clone());
            tokio::spawn(async move { engine.execute_with(Withdraw { id: account, amount: 5 }, recorded(&id)).await })
        };
        let depositor = {
            let (engine, account, id) = (Cqrs::new(store.clone()), account.clone(), id.clone());
            tokio::spawn(async move {
                engine.execute(Deposit { id: account.clone(), amount: 5 }).await.unwrap();
                engine.execute_with(Withdraw { id: account, amount: 5 }, recorded(&id)).await
            })
        };
        let answers = [refuser.await.unwrap(), depositor.await.unwrap()];
        let record = store.command_outcome(&id).await.unwrap().expect("one answer is recorded");
        let version = versions(&store, &account).await;
        if let Some(reason) = &record.refusal {
            refused += 1;
            assert_eq!(version, 2, "no withdrawal: {answers:?}");
            let told =
                answers.iter().filter(|a| matches!(a, Err(CommandError::Refused { reason: r, .. }) if r == reason));
            let decided = answers.iter().filter(|a| matches!(a, Err(CommandError::Rejected(_))));
            assert_eq!((decided.count(), told.count()), (1, 1), "{answers:?}");
        } else {
            succeeded += 1;
            assert_eq!(version, 3, "one withdrawal: {answers:?}");
            let outcomes: Vec<_> = answers.iter().map(|a| a.as_ref().expect("the withdrawal won")).collect();
            assert_eq!(outcomes.iter().filter(|o| !o.replayed).count(), 1, "{outcomes:?}");
        }
    }
    println!("refusal against success of one id: {refused} refusals won, {succeeded} withdrawals won");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_refusal_that_cannot_be_one_is_corrupt_and_the_bound_holds() {
    let store = store().await;
    let s = StreamId::new("account", "a").unwrap();
    let appended = store
        .append_command(
            &s,
            eventloom_core::model::ExpectedVersion::NoStream,
            vec![eventloom_core::testing::test_event_for_command(1, "appended")],
            &CommandEntry::new("ab".repeat(32).parse().unwrap(), eventloom_core::model::Timestamp::now()),
        )
        .await
        .unwrap();
    assert!(appended.written().is_some());
    let schema = format!("\"{}\"", store.config().schema_name());
    let client = raw(&database_url()).await;
    client
        .batch_execute(&format!("UPDATE {schema}.commands SET refusal = 'no' WHERE command_id = 'appended'"))
        .await
        .unwrap();
    match store.command_outcome("appended").await {
        Err(Error::Corrupt { location, reason }) => {
            assert!(location.contains("appended") && reason.contains("refusal"), "{location}: {reason}");
        }
        other => panic!("a refusal that appended events is corrupt, got {other:?}"),
    }
    // The column refuses a reason over the bound, whoever writes it.
    let too_long = "x".repeat(MAX_REFUSAL_BYTES + 1);
    let err = client
        .execute(&format!("UPDATE {schema}.commands SET refusal = $1 WHERE command_id = 'appended'"), &[&too_long])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(&tokio_postgres::error::SqlState::CHECK_VIOLATION), "{err:?}");
    let as_found = AppendOutcome { stream: s, first_version: 2, last_version: 1, position: Position::ZERO };
    let record = CommandRecord::new(as_found).with_refusal(too_long);
    assert_eq!(store.record_command("long", record).await.unwrap(), None, "the store cuts it first");
    let kept = store.command_outcome("long").await.unwrap().unwrap();
    assert_eq!(kept.refusal.map(|r| r.len()), Some(MAX_REFUSAL_BYTES));
    // A NUL, which PostgreSQL's text cannot hold, is kept as U+FFFD rather than failing the record.
    let as_found = AppendOutcome {
        stream: StreamId::new("account", "a").unwrap(),
        first_version: 2,
        last_version: 1,
        position: Position::ZERO,
    };
    let record = CommandRecord::new(as_found).with_refusal("bad\0byte");
    assert_eq!(store.record_command("nul", record).await.unwrap(), None);
    let kept = store.command_outcome("nul").await.unwrap().unwrap();
    assert_eq!(kept.refusal.as_deref(), Some("bad\u{FFFD}byte"));
}

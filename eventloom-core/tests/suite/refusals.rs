//! Refusals recorded under a command id (`ExecuteOptions::record_refusal`): answered again
//! without deciding, and exactly one of a refusal and a success of one id wins.

use eventloom_core::prelude::*;
use eventloom_core::{
    CommandError, Error, ErrorKind, ExecuteOptions,
    memory::MemoryEventStore,
    store::{EventStore, MAX_REFUSAL_BYTES},
    write::{Cqrs, Fingerprint},
};

use crate::domain::*;

fn recorded(id: &str) -> ExecuteOptions {
    ExecuteOptions::default().command_id(id).record_refusal()
}

fn withdraw(id: &str, amount: u64) -> Withdraw {
    Withdraw { id: id.into(), amount }
}

async fn events_of(store: &impl EventStore, id: &str) -> usize {
    store.read_stream(&StreamId::new("account", id).unwrap(), 1, usize::MAX).await.unwrap().len()
}

#[tokio::test]
async fn a_recorded_refusal_is_answered_again_even_when_the_command_would_now_succeed() {
    let store = MemoryEventStore::new();
    let cqrs = Cqrs::new(store.clone());
    cqrs.execute(open("a")).await.unwrap();
    let err = cqrs.execute_with(withdraw("a", 5), recorded("pm-1")).await.unwrap_err();
    assert!(matches!(err, CommandError::Rejected(AccountError::Insufficient { balance: 0, requested: 5 })), "{err:?}");
    let record = store.command_outcome("pm-1").await.unwrap().expect("the refusal is recorded");
    assert_eq!(record.refusal.as_deref(), Some("insufficient funds: balance 0, requested 5"));
    assert_eq!(record.fingerprint, Some(Fingerprint::of(&withdraw("a", 5)).unwrap()));
    assert_eq!((record.outcome.first_version, record.outcome.last_version), (2, 1), "the stream as found");
    cqrs.execute(deposit("a", 10)).await.unwrap();
    // From this engine (cached state) and from another process, with or without the option.
    let other = Cqrs::new(store.clone()).with_cache_capacity(0);
    for (engine, options) in [(&cqrs, recorded("pm-1")), (&other, ExecuteOptions::default().command_id("pm-1"))] {
        match engine.execute_with(withdraw("a", 5), options).await.unwrap_err() {
            CommandError::Refused { command_id, reason } => {
                assert_eq!(
                    (command_id.as_str(), reason.as_str()),
                    ("pm-1", "insufficient funds: balance 0, requested 5")
                );
            }
            other => panic!("expected the recorded refusal, got {other:?}"),
        }
    }
    let err = cqrs.execute_with(withdraw("a", 5), recorded("pm-1")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Rejected);
    assert_eq!(err.to_string(), "command pm-1 was refused: insufficient funds: balance 0, requested 5");
    // The same id with another request is still a reuse.
    let err = cqrs.execute_with(withdraw("a", 6), recorded("pm-1")).await.unwrap_err();
    assert!(matches!(err, CommandError::Store(Error::CommandIdReused { first_fingerprint: Some(_), .. })), "{err:?}");
    cqrs.execute(open("b")).await.unwrap();
    let err = cqrs.execute_with(withdraw("b", 5), recorded("pm-1")).await.unwrap_err();
    assert!(matches!(err, CommandError::Store(Error::CommandIdReused { .. })), "on another stream: {err:?}");
    assert_eq!(events_of(&store, "a").await, 2, "open and deposit: the withdrawal never ran");
}

#[tokio::test]
async fn without_the_option_a_refused_request_may_be_retried() {
    let store = MemoryEventStore::new();
    let cqrs = Cqrs::new(store.clone());
    cqrs.execute(open("a")).await.unwrap();
    let key = || ExecuteOptions::default().command_id("req-1");
    let err = cqrs.execute_with(withdraw("a", 5), key()).await.unwrap_err();
    assert!(matches!(err, CommandError::Rejected(AccountError::Insufficient { .. })), "{err:?}");
    assert_eq!(store.command_outcome("req-1").await.unwrap(), None, "nothing recorded");
    cqrs.execute(deposit("a", 5)).await.unwrap();
    let done = cqrs.execute_with(withdraw("a", 5), key()).await.unwrap();
    assert_eq!((done.version, done.appended, done.replayed), (3, 1, false));
}

#[tokio::test]
async fn a_refusal_is_recorded_only_on_the_latest_state() {
    // The engine's cache is behind: the deposit was made by another process. Decided on the
    // cached state the withdrawal is refused; the engine reads the newer events, decides again,
    // and the withdrawal succeeds. Nothing is recorded as refused.
    let store = MemoryEventStore::new();
    let cqrs = Cqrs::new(store.clone());
    cqrs.execute(open("a")).await.unwrap();
    Cqrs::new(store.clone()).execute(deposit("a", 5)).await.unwrap();
    let done = cqrs.execute_with(withdraw("a", 5), recorded("pm-2")).await.unwrap();
    assert_eq!((done.version, done.appended), (3, 1));
    let record = store.command_outcome("pm-2").await.unwrap().unwrap();
    assert_eq!(record.refusal, None);
    assert!(cqrs.execute_with(withdraw("a", 5), recorded("pm-2")).await.unwrap().replayed);
}

#[tokio::test]
async fn recording_a_refusal_needs_a_command_id_and_bounds_the_reason() {
    let store = MemoryEventStore::new();
    let cqrs = Cqrs::new(store.clone());
    cqrs.execute(open("a")).await.unwrap();
    let err = cqrs.execute_with(withdraw("a", 5), ExecuteOptions::default().record_refusal()).await.unwrap_err();
    assert!(matches!(err, CommandError::Store(Error::InvalidConfig { .. })), "{err:?}");
    assert_eq!(err.kind(), ErrorKind::InvalidInput);

    // A rejection whose text is longer than the bound is kept cut at a character boundary.
    #[derive(Debug, Serialize)]
    struct Shout {
        id: String,
    }
    impl Command for Shout {
        type Aggregate = Account;
        const NAME: &'static str = "Shout";
        fn aggregate_id(&self) -> std::borrow::Cow<'_, str> {
            self.id.as_str().into()
        }
    }
    impl Handle<Shout> for Account {
        fn handle(&self, _: &Shout) -> Result<Vec<AccountEvent>, AccountError> {
            Err(AccountError::NotOpen)
        }
    }
    let err = cqrs.execute_with(Shout { id: "a".into() }, recorded("shout")).await.unwrap_err();
    assert!(matches!(err, CommandError::Rejected(AccountError::NotOpen)));
    let mut long =
        eventloom_core::store::CommandRecord::new(store.command_outcome("shout").await.unwrap().unwrap().outcome);
    long.refusal = Some("ß".repeat(MAX_REFUSAL_BYTES));
    store.record_command("long", long).await.unwrap();
    let kept = store.command_outcome("long").await.unwrap().unwrap().refusal.unwrap();
    assert_eq!(kept.len(), MAX_REFUSAL_BYTES, "two-byte characters fill the bound exactly");
}

/// Rounds of one withdrawal under one id, sent by two callers at once: one finds the account
/// empty, the other deposits first. Exactly one answer is recorded (a refusal or the
/// withdrawal), each caller gets it, and the events agree.
pub async fn refusal_races_success<S: EventStore + Clone>(store: S, rounds: usize) {
    let (mut refused, mut succeeded) = (0, 0);
    for round in 0..rounds {
        let account = format!("race-{round}");
        let id = format!("pm-race-{round}");
        Cqrs::new(store.clone()).execute(open(&account)).await.unwrap();
        let refuser = {
            let (engine, account, id) = (Cqrs::new(store.clone()).with_cache_capacity(0), account.clone(), id.clone());
            tokio::spawn(async move { engine.execute_with(withdraw(&account, 5), recorded(&id)).await })
        };
        let depositor = {
            let (engine, account, id) = (Cqrs::new(store.clone()), account.clone(), id.clone());
            tokio::spawn(async move {
                engine.execute(deposit(&account, 5)).await.unwrap();
                engine.execute_with(withdraw(&account, 5), recorded(&id)).await
            })
        };
        let answers = [refuser.await.unwrap(), depositor.await.unwrap()];
        let record = store.command_outcome(&id).await.unwrap().expect("one answer is recorded");
        let events = events_of(&store, &account).await;
        match &record.refusal {
            Some(reason) => {
                refused += 1;
                assert_eq!(events, 2, "open and deposit, no withdrawal: {answers:?}");
                for answer in &answers {
                    match answer {
                        Err(CommandError::Rejected(AccountError::Insufficient { .. })) => {}
                        Err(CommandError::Refused { reason: r, .. }) => assert_eq!(r, reason),
                        other => panic!("the refusal won, yet a caller got {other:?}"),
                    }
                }
                let first = answers.iter().filter(|a| matches!(a, Err(CommandError::Rejected(_)))).count();
                assert_eq!(first, 1, "one caller decided the refusal, the other was told: {answers:?}");
            }
            None => {
                succeeded += 1;
                assert_eq!(events, 3, "open, deposit and one withdrawal: {answers:?}");
                let outcomes: Vec<_> = answers.iter().map(|a| a.as_ref().expect("the withdrawal won")).collect();
                assert_eq!(outcomes.iter().filter(|o| !o.replayed).count(), 1, "{outcomes:?}");
                assert!(outcomes.iter().all(|o| o.version == 3), "{outcomes:?}");
            }
        }
    }
    println!("refusal against success of one id: {refused} refusals won, {succeeded} withdrawals won");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refusal_and_a_success_of_one_id_at_once_exactly_one_wins() {
    refusal_races_success(MemoryEventStore::new(), 200).await;
}

#[tokio::test]
async fn the_app_records_refusals_too() {
    let app = App::builder(MemoryStores::new()).aggregate::<Account>().start().await.unwrap();
    app.execute(open("a")).await.unwrap();
    let err = app.execute_with(withdraw("a", 1), recorded("app-1")).await.unwrap_err();
    assert!(matches!(err, CommandError::Rejected(_)), "{err:?}");
    app.execute(deposit("a", 1)).await.unwrap();
    let err = app.execute_with(withdraw("a", 1), recorded("app-1")).await.unwrap_err();
    assert!(matches!(err, CommandError::Refused { .. }), "{err:?}");
    app.shutdown().await.unwrap();
}

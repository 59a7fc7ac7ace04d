//! The admin operations (`AppBuilder::operations`) on PostgreSQL: a rebuild under the lease,
//! waiting for another process's holder, and a retry of dead letters once the bug is fixed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use eventloom_core::app::RebuildProgress;
use eventloom_core::prelude::*;
use eventloom_core::read::PoisonPolicy;
use eventloom_core::store::{DeadLetterSelection, LeaseHolder, LeaseManager, ViewStore};
use eventloom_core::{BoxError, Projection, ProjectionOptions};
use eventloom_postgres::{PgLeases, PgStores, PgViewStore};

use crate::domain::{Account, AccountEvent, Deposit, Open};
use crate::support::store;

/// Each account's balance; fails on deposits while `broken`.
struct Flaky {
    broken: Arc<AtomicBool>,
}

impl Projection for Flaky {
    const NAME: &'static str = "pg_flaky_balances";
    type Events = Account;
    type View = u64;

    fn apply(&self, view: &mut Option<u64>, e: &EventEnvelope<AccountEvent>) -> Result<(), BoxError> {
        let balance = view.get_or_insert(0);
        match &e.event {
            AccountEvent::Deposited { .. } if self.broken.load(Ordering::SeqCst) => return Err("a bug".into()),
            AccountEvent::Deposited { amount } => *balance += amount,
            AccountEvent::Withdrawn { amount } => *balance -= amount,
            AccountEvent::Opened => {}
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_waits_for_the_lease_and_dead_letters_retried_after_the_fix_apply() {
    let store = store().await;
    let commands = App::builder(PgStores::from_event_store(store.clone()))
        .aggregate::<Account>()
        .role(Role::Command)
        .start()
        .await
        .unwrap();
    commands.execute(Open { id: "a".into() }).await.unwrap();
    commands.execute(Deposit { id: "a".into(), amount: 5 }).await.unwrap();
    commands.execute(Deposit { id: "a".into(), amount: 7 }).await.unwrap();
    let broken = Arc::new(AtomicBool::new(true));
    let ops = Arc::new(
        App::builder(PgStores::from_event_store(store.clone()))
            .aggregate::<Account>()
            .projection_with(
                Flaky { broken: broken.clone() },
                ProjectionOptions::new().poison_policy(PoisonPolicy::DeadLetter),
            )
            .operations()
            .unwrap(),
    );
    // Another process leads: its lease, on a connection of its own.
    let held = PgLeases::new(&store).with_check_interval(Duration::from_millis(100));
    let lease = held.acquire("pg_flaky_balances").await.unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let rebuild = {
        let ops = ops.clone();
        tokio::spawn(async move { ops.rebuild("pg_flaky_balances", move |p| drop(tx.send(p))).await })
    };
    let first = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.unwrap().unwrap();
    match first {
        RebuildProgress::WaitingForLease { lease: name, holder: Some(info) } => {
            assert_eq!(name, "pg_flaky_balances");
            assert!(info.held, "held per pg_locks: {info:?}");
            assert_eq!(info.token, lease.token());
            assert_eq!(info.holder.map(|h| h.pid), Some(LeaseHolder::this_process().pid));
        }
        other => panic!("waits for the lease, naming its holder: {other:?}"),
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!rebuild.is_finished(), "waits while another session holds the lease");
    drop(lease);
    let checkpoint = tokio::time::timeout(Duration::from_secs(20), rebuild).await.unwrap().unwrap().unwrap();
    assert!(checkpoint.is_some());
    let report = ops.report("pg_flaky_balances").await.unwrap();
    assert_eq!((report.checkpoint, report.lag_events, report.dead_letters), (checkpoint, 0, 2));
    let views = PgViewStore::new(&store);
    let read = |views: PgViewStore| async move {
        views.read_views("pg_flaky_balances", &["a".to_owned()]).await.unwrap()[0].clone()
    };
    assert_eq!(read(views.clone()).await.as_deref(), Some("0"));

    broken.store(false, Ordering::SeqCst);
    let outcome = ops.retry_dead_letters("pg_flaky_balances", &DeadLetterSelection::All).await.unwrap();
    assert_eq!((outcome.retried, outcome.succeeded), (2, 2));
    assert!(views.dead_letters("pg_flaky_balances").await.unwrap().is_empty());
    assert_eq!(read(views.clone()).await.as_deref(), Some("12"));
    let report = ops.report("pg_flaky_balances").await.unwrap();
    assert_eq!((report.checkpoint, report.dead_letters), (checkpoint, 0), "the checkpoint stays");
    assert!(ops.projections().iter().any(|p| p.name == "pg_flaky_balances"));
    assert!(views.projections().await.unwrap().contains(&"pg_flaky_balances".to_owned()));
    commands.shutdown().await.unwrap();
}

/// Time travel on PostgreSQL: an aggregate's state as of a version and as of a time, folded
/// from the stored events (`Operations::state`, which `Cqrs::load_as_of` does).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aggregates_state_is_shown_as_of_a_version_and_a_time() {
    use eventloom_core::AggregateOptions;
    use eventloom_core::model::Timestamp;
    use eventloom_core::write::AsOf;

    let store = store().await;
    let builder = || {
        App::builder(PgStores::from_event_store(store.clone()))
            .aggregate_with::<Account>(AggregateOptions::new().inspectable())
    };
    let app = builder().role(Role::Command).start().await.unwrap();
    app.execute(Open { id: "t".into() }).await.unwrap();
    app.execute(Deposit { id: "t".into(), amount: 5 }).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let between = Timestamp::now();
    tokio::time::sleep(Duration::from_millis(20)).await;
    app.execute(Deposit { id: "t".into(), amount: 7 }).await.unwrap();
    let ops = builder().operations().unwrap();
    let stream = StreamId::new("account", "t").unwrap();

    let now = ops.state(&stream, None).await.unwrap();
    assert_eq!((now.version, now.state["balance"].as_u64()), (3, Some(12)), "{now:?}");
    let first = ops.state(&stream, Some(AsOf::Version(1))).await.unwrap();
    assert_eq!((first.version, first.state["balance"].as_u64(), &first.state["open"]), (1, Some(0), &true.into()));
    let then = ops.state(&stream, Some(AsOf::Time(between))).await.unwrap();
    assert_eq!((then.version, then.state["balance"].as_u64()), (2, Some(5)), "{then:?}");
    let before = ops.state(&stream, Some(AsOf::Version(0))).await.unwrap();
    assert_eq!((before.version, &before.state["open"]), (0, &false.into()));

    let missing = ops.state(&StreamId::new("account", "nope").unwrap(), None).await;
    assert!(matches!(missing, Err(eventloom_core::Error::UnknownStream { .. })), "{missing:?}");
    let plain = App::builder(PgStores::from_event_store(store.clone())).aggregate::<Account>().operations().unwrap();
    let refused = plain.state(&stream, None).await;
    assert!(
        matches!(&refused, Err(eventloom_core::Error::Unsupported { reason, .. }) if reason.contains("inspectable()")),
        "{refused:?}"
    );
    app.shutdown().await.unwrap();
}

//! Views, checkpoints, projectors and leases on PostgreSQL.

use std::time::Duration;

use cqrs_core::prelude::*;
use cqrs_core::testing::view_store;
use cqrs_core::{BoxError, Cqrs, LeaseManager, Projection, Projector, ViewReader};
use cqrs_postgres::{PgLeases, PgViewStore};

use crate::domain::*;
use crate::support::{PrivateServer, raw, store, store_at};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pg_view_store_conforms() {
    view_store::run(|| async { PgViewStore::new(&store().await) }).await;
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
struct Balance {
    balance: u64,
    applied: u64,
    version: u64,
}

struct Balances;

impl Projection for Balances {
    const NAME: &'static str = "balances";
    type Aggregate = Account;
    type View = Balance;
    fn apply(&self, view: &mut Option<Balance>, e: &EventEnvelope<AccountEvent>) -> Result<(), BoxError> {
        let view = view.get_or_insert_with(Balance::default);
        if let AccountEvent::Deposited { amount } = e.event {
            view.balance += amount;
        }
        view.applied += 1;
        view.version = e.version;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_projector_on_postgres_runs_live_and_queries_read_their_writes() {
    let events = store().await;
    let views = PgViewStore::new(&events);
    let cqrs = Cqrs::new(events.clone());
    cqrs.execute(Open { id: "a".into() }).await.unwrap();
    let projector = Projector::new(events.clone(), views.clone()).with_leases(PgLeases::new(&events));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(async move { projector.run(Balances, async { stopped.await.unwrap_or(()) }).await });
    let reader = ViewReader::<Balance>::new(views.clone(), Balances::NAME);
    for i in 1..=20 {
        let done = cqrs.execute(Deposit { id: "a".into(), amount: i }).await.unwrap();
        reader.wait_for(done.position, Duration::from_secs(10)).await.unwrap();
        assert_eq!(reader.get("a").await.unwrap().unwrap().version, done.version);
    }
    stop.send(()).unwrap();
    running.await.unwrap().unwrap();
    let view = reader.get("a").await.unwrap().unwrap();
    assert_eq!((view.balance, view.applied, view.version), (210, 21, 21));
    // A restarted projector resumes from the checkpoint: nothing applied twice.
    cqrs.execute(Deposit { id: "a".into(), amount: 1 }).await.unwrap();
    Projector::new(events.clone(), views.clone())
        .with_leases(PgLeases::new(&events))
        .catch_up(&Balances)
        .await
        .unwrap();
    let view = reader.get("a").await.unwrap().unwrap();
    assert_eq!((view.applied, view.version), (22, 22));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_lease_holder_at_a_time_tokens_grow_and_a_standby_takes_over() {
    // Kills backends: a server of its own.
    let server = PrivateServer::start();
    let events = store_at(&server.url()).await;
    let leases = PgLeases::new(&events).with_check_interval(Duration::from_millis(100));
    let first = leases.acquire("p").await.unwrap();
    let standby = {
        let leases = leases.clone();
        tokio::spawn(async move { leases.acquire("p").await.unwrap() })
    };
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(!standby.is_finished(), "the standby waits while the leader holds the lease");
    // Another name is independent.
    let other = leases.acquire("q").await.unwrap();
    assert_eq!(other.token(), 1);
    let token = first.token();
    drop(first);
    let second =
        tokio::time::timeout(Duration::from_secs(5), standby).await.expect("takes over within seconds").unwrap();
    assert!(second.token() > token, "tokens only grow: {} then {}", token, second.token());

    // The leader's connection dies (as when its host does): the lease reports lost, and a
    // standby takes over.
    let mut second = second;
    let admin = raw(&server.url()).await;
    let key_holders = admin
        .query("SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid <> pg_backend_pid()", &[])
        .await
        .unwrap();
    assert!(!key_holders.is_empty());
    let standby = {
        let leases = leases.clone();
        tokio::spawn(async move { leases.acquire("p").await.unwrap() })
    };
    for row in key_holders {
        let pid: i32 = row.get(0);
        admin.execute("SELECT pg_terminate_backend($1)", &[&pid]).await.unwrap();
    }
    tokio::time::timeout(Duration::from_secs(5), second.lost()).await.expect("the lost lease is noticed");
    let third = tokio::time::timeout(Duration::from_secs(5), standby).await.expect("a standby takes over").unwrap();
    assert!(third.token() > second.token());
}

//! A partitioned projection with its views on PostgreSQL: a projector process and a query
//! process (two `App`s on one database) read it as one projection.

use std::time::Duration;

use eventloom_core::prelude::*;
use eventloom_core::store::IndexKey;
use eventloom_core::{BoxError, IndexEntry, Projection, ProjectionOptions};
use eventloom_postgres::PgStores;

use crate::domain::{Account, AccountEvent, Deposit, Open};
use crate::support::store;

/// Each account's balance, listed by balance.
struct Balances;

impl Projection for Balances {
    const NAME: &'static str = "pg_partitioned_balances";
    type Events = Account;
    type View = u64;

    fn index(&self, _: &str, balance: &u64) -> Vec<IndexEntry> {
        vec![IndexEntry::new("all", "yes").ordered_by_int(*balance as i64)]
    }

    fn apply(&self, view: &mut Option<u64>, e: &EventEnvelope<AccountEvent>) -> Result<(), BoxError> {
        let balance = view.get_or_insert(0);
        match &e.event {
            AccountEvent::Deposited { amount } => *balance += amount,
            AccountEvent::Withdrawn { amount } => *balance -= amount,
            AccountEvent::Opened => {}
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_projection_on_postgres_views_reads_as_one_in_another_process() {
    let store = store().await;
    let app = |role| {
        App::builder(PgStores::from_event_store(store.clone()))
            .aggregate::<Account>()
            .projection_with(Balances, ProjectionOptions::new().partitions(4))
            .role(role)
            .start()
    };
    let projector = app(Role::Projector).await.unwrap();
    let commands = app(Role::Command).await.unwrap();
    let queries = app(Role::Query).await.unwrap();
    let mut last = None;
    for n in 0..24u64 {
        let id = format!("acc-{n:02}");
        commands.execute(Open { id: id.clone() }).await.unwrap();
        last = Some(commands.execute(Deposit { id, amount: 100 - n }).await.unwrap());
    }
    let reader = queries.reader::<Balances>().unwrap();
    reader.wait_for(last.as_ref().unwrap(), Duration::from_secs(30)).await.unwrap();
    assert_eq!(reader.get("acc-05").await.unwrap(), Some(95));
    let key = IndexKey::new("all", "yes");
    let mut listed = Vec::new();
    let mut after = None;
    loop {
        let page = reader.list(&key, after.as_ref(), 5).await.unwrap();
        listed.extend(page.views.into_iter().map(|(_, balance)| balance));
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(listed, (77..=100).collect::<Vec<u64>>(), "merged in balance order across the partitions");
    assert_eq!(reader.count(&[key]).await.unwrap(), vec![24]);
    let health = queries.health(1000).await;
    assert!(health.projections[0].lag.clone().unwrap().unwrap().caught_up(), "{health:?}");
    for app in [queries, commands, projector] {
        app.shutdown().await.unwrap();
    }
}

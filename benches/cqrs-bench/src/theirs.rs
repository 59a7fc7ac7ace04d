//! The comparison: the same domain on cqrs-es 0.5 with postgres-es 0.5, in tables of the bench
//! schema created with the DDL postgres-es documents (`db/init.sql` of its repository).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use cqrs_es::event_sink::EventSink;
use cqrs_es::persist::{PersistedEventRepository, PersistedEventStore, SerializedEvent};
use cqrs_es::{AggregateContext, CqrsFramework, DomainEvent, EventStore};
use postgres_es::{PostgresCqrs, PostgresEventRepository};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use crate::Result;
use crate::domain::AGGREGATES;
use crate::load::{self, Budget, Rate, Worker};
use crate::report::Latency;

/// The account, for cqrs-es.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct EsAccount {
    /// The sum of all deposits.
    balance: u64,
    /// Events folded since this value was made (a snapshot restores it as 0).
    #[serde(skip)]
    folded: u64,
}

/// The one event, for cqrs-es.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum EsEvent {
    /// Money came in.
    Deposited {
        /// How much.
        amount: u64,
    },
}

impl DomainEvent for EsEvent {
    fn event_type(&self) -> String {
        "Deposited".to_owned()
    }

    fn event_version(&self) -> String {
        "1.0".to_owned()
    }
}

/// The one command, for cqrs-es.
#[derive(Debug)]
pub enum EsCommand {
    /// Deposit this much.
    Deposit {
        /// How much.
        amount: u64,
    },
}

impl cqrs_es::Aggregate for EsAccount {
    const TYPE: &'static str = "account";
    type Command = EsCommand;
    type Event = EsEvent;
    type Error = Infallible;
    type Services = ();

    async fn handle(&mut self, command: EsCommand, _: &(), sink: &EventSink<Self>) -> Result<(), Infallible> {
        let EsCommand::Deposit { amount } = command;
        sink.write(EsEvent::Deposited { amount }, self).await;
        Ok(())
    }

    fn apply(&mut self, EsEvent::Deposited { amount }: EsEvent) {
        self.balance += amount;
        self.folded += 1;
    }
}

/// cqrs-es on PostgreSQL, set up in the bench schema.
pub struct Theirs {
    pool: PgPool,
    events_table: String,
    snapshots_table: String,
    cqrs: Arc<PostgresCqrs<EsAccount>>,
    ids: Arc<[String]>,
}

/// Deposits through cqrs-es: operation `i` deposits 1 into account `i % 1000`.
struct Commands {
    cqrs: Arc<PostgresCqrs<EsAccount>>,
    id: Option<String>,
    ids: Arc<[String]>,
}

impl Worker for Commands {
    async fn op(&mut self, i: usize) -> Result<()> {
        let id = self.id.as_deref().unwrap_or(&self.ids[i % AGGREGATES]);
        self.cqrs.execute(id, EsCommand::Deposit { amount: 1 }).await?;
        Ok(())
    }
}

impl Theirs {
    /// Connects a pool of 8 (one per task), creates the tables, and makes one deposit into
    /// every account.
    pub async fn setup(url: &str, schema: &str, ids: Arc<[String]>) -> Result<Option<Self>> {
        let pool = PgPoolOptions::new().max_connections(8).connect(url).await?;
        let events_table = format!("\"{schema}\".es_events");
        let snapshots_table = format!("\"{schema}\".es_snapshots");
        sqlx::raw_sql(&format!(
            "CREATE TABLE {events_table} (
                 aggregate_type text NOT NULL,
                 aggregate_id text NOT NULL,
                 sequence bigint CHECK (sequence >= 0) NOT NULL,
                 event_type text NOT NULL,
                 event_version text NOT NULL,
                 payload json NOT NULL,
                 metadata json NOT NULL,
                 PRIMARY KEY (aggregate_type, aggregate_id, sequence)
             );
             CREATE TABLE {snapshots_table} (
                 aggregate_type text NOT NULL,
                 aggregate_id text NOT NULL,
                 last_sequence bigint CHECK (last_sequence >= 0) NOT NULL,
                 current_snapshot bigint CHECK (current_snapshot >= 0) NOT NULL,
                 payload json NOT NULL,
                 PRIMARY KEY (aggregate_type, aggregate_id, last_sequence)
             );"
        ))
        .execute(&pool)
        .await?;
        let repo = PostgresEventRepository::new(pool.clone()).with_tables(&events_table, &snapshots_table);
        let cqrs = Arc::new(CqrsFramework::new(PersistedEventStore::new_event_store(repo), vec![], ()));
        let theirs = Theirs { pool, events_table, snapshots_table, cqrs, ids };
        for id in theirs.ids.iter() {
            theirs.cqrs.execute(id, EsCommand::Deposit { amount: 1 }).await?;
        }
        Ok(Some(theirs))
    }

    fn repo(&self) -> PostgresEventRepository {
        PostgresEventRepository::new(self.pool.clone()).with_tables(&self.events_table, &self.snapshots_table)
    }

    /// Deposits round-robin over the accounts from `tasks` tasks sharing one framework.
    pub async fn commands(&self, tasks: usize, budget: Budget) -> Result<Rate> {
        let workers =
            (0..tasks).map(|_| Commands { cqrs: self.cqrs.clone(), id: None, ids: self.ids.clone() }).collect();
        load::throughput(workers, budget).await
    }

    /// Writes a stream of `length` deposits for `id` through the repository, 1,000 events per
    /// transaction, and with `snapshot` a snapshot at its end as cqrs-es stores it.
    pub async fn build_stream(&self, id: &str, length: usize, snapshot: bool) -> Result<()> {
        const CHUNK: usize = 1_000;
        let repo = self.repo();
        let event = EsEvent::Deposited { amount: 1 };
        let payload = serde_json::to_value(&event)?;
        let metadata = serde_json::to_value(HashMap::<String, String>::new())?;
        let mut sequence = 0;
        while sequence < length {
            let n = CHUNK.min(length - sequence);
            let events: Vec<SerializedEvent> = (sequence + 1..=sequence + n)
                .map(|s| {
                    let ty = <EsAccount as cqrs_es::Aggregate>::TYPE.to_owned();
                    let (name, version) = (event.event_type(), event.event_version());
                    SerializedEvent::new(id.to_owned(), s, ty, name, version, payload.clone(), metadata.clone())
                })
                .collect();
            sequence += n;
            let snapshot = if snapshot && sequence == length {
                let state = EsAccount { balance: u64::try_from(length)?, folded: 0 };
                Some((id.to_owned(), serde_json::to_value(state)?, 1))
            } else {
                None
            };
            repo.persist::<EsAccount>(&events, snapshot).await?;
        }
        Ok(())
    }

    /// Loads `id` as a command would and checks the balance, and that a snapshot store starts
    /// from the snapshot (folds fewer than 100 events) while the plain store replays it all.
    pub async fn check_stream(&self, id: &str, length: usize, snapshot: bool) -> Result<()> {
        let mut context = if snapshot {
            PersistedEventStore::<_, EsAccount>::new_snapshot_store(self.repo(), 100).load_aggregate(id).await?
        } else {
            PersistedEventStore::<_, EsAccount>::new_event_store(self.repo()).load_aggregate(id).await?
        };
        let account = context.aggregate();
        let length = u64::try_from(length)?;
        let folded_ok = if snapshot { account.folded < 100 } else { account.folded == length };
        if account.balance != length || !folded_ok {
            return Err(format!(
                "cqrs-es stream {id}: balance {} after folding {} events, expected {length} (snapshot: {snapshot})",
                account.balance, account.folded
            )
            .into());
        }
        Ok(())
    }

    /// Latencies of deposits into `id`, one at a time; with `snapshot` through a snapshot
    /// store (a snapshot every 100 events), otherwise through the plain event store.
    pub async fn latency(&self, id: &str, snapshot: bool, budget: Budget) -> Result<Option<Latency>> {
        let store = if snapshot {
            PersistedEventStore::new_snapshot_store(self.repo(), 100)
        } else {
            PersistedEventStore::new_event_store(self.repo())
        };
        let cqrs = Arc::new(CqrsFramework::new(store, vec![], ()));
        let mut worker = Commands { cqrs, id: Some(id.to_owned()), ids: self.ids.clone() };
        Ok(Latency::of(load::latencies(&mut worker, 0, budget).await?))
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

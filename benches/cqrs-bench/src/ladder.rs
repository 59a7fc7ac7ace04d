//! `ladder`: where one task's command goes past the raw INSERT, one layer at a time, each
//! layer timed against the others in the same process, alternating, on fresh accounts:
//!
//! 1. `raw`: the raw baseline ([`RawInsert`]): one connection held, one statement prepared;
//! 2. `raw_pooled`: the same INSERT, checking a connection out of the store's pool and
//!    preparing it through the pool's statement cache for every row (as the store does);
//! 3. `store_append`: [`EventStore::append`] of one deposit at an exact version, the event
//!    made by the caller (no engine);
//! 4. `engine`: a deposit through the warm engine (`commands_1_task`).
//!
//! Then the allocations per command of each layer, counted apart from the timed rounds.

use std::sync::Arc;

use deadpool_postgres::Pool;
use eventloom_core::{
    Aggregate, StreamId,
    model::ExpectedVersion,
    store::{Appended, EventStore},
};
use eventloom_postgres::PgEventStore;

use crate::Result;
use crate::domain::{AGGREGATES, Account, EventMaker, deposit_payload};
use crate::load::{self, Budget, Rate, Worker};
use crate::ours::{Commands, Engine};
use crate::raw::RawInsert;

/// Operations of each layer in one round.
const OPS: Budget = Budget::new(5_000, 20);
/// Rounds of the four layers, alternating; the fastest of each counts.
const ROUNDS: usize = 3;
/// Commands of each layer whose allocations are counted.
const ALLOCATION_OPS: usize = 1_000;

/// The raw INSERT through the store's pool, checked out and prepared for every row.
struct RawPooled {
    pool: Pool,
    sql: String,
    category: String,
    ids: Arc<[String]>,
    payload: String,
    events: EventMaker,
}

impl Worker for RawPooled {
    async fn op(&mut self, i: usize) -> Result<()> {
        let version = i64::try_from(i / AGGREGATES + 1)?;
        let metadata = self.events.metadata_json();
        let client = self.pool.get().await?;
        let insert = client.prepare_cached(&self.sql).await?;
        client
            .execute(
                &insert,
                &[&self.category, &self.ids[i % AGGREGATES], &version, &"Deposited", &1i32, &self.payload, &metadata],
            )
            .await?;
        Ok(())
    }
}

/// One deposit per call through `EventStore::append`, at the version the worker tracks.
struct StoreAppend {
    store: PgEventStore,
    streams: Vec<(StreamId, u64)>,
    events: EventMaker,
}

impl StoreAppend {
    /// Creates one stream per account (one deposit each), so that every append is at a version
    /// above 0, as a warm engine's are.
    async fn new(store: PgEventStore, ids: &[String], prefix: &str) -> Result<Self> {
        let events = EventMaker::default();
        let mut streams = Vec::with_capacity(ids.len());
        for id in ids {
            let stream = StreamId::new(Account::TYPE, format!("{prefix}-{id}"))?;
            store.append(&stream, ExpectedVersion::NoStream, vec![events.deposit()]).await?;
            streams.push((stream, 1));
        }
        Ok(StoreAppend { store, streams, events })
    }
}

impl Worker for StoreAppend {
    async fn op(&mut self, i: usize) -> Result<()> {
        let (stream, version) = &mut self.streams[i % AGGREGATES];
        match self.store.append(stream, ExpectedVersion::Exact(*version), vec![self.events.deposit()]).await? {
            Appended::Written(outcome) => *version = outcome.last_version,
            Appended::Duplicate { .. } => return Err("an append without a command id was a duplicate".into()),
        }
        Ok(())
    }
}

/// Runs the ladder: each layer [`ROUNDS`] times, alternating, and prints each layer's fastest
/// rate and its ratio to the raw INSERT's on stderr.
pub async fn run(store: &PgEventStore, engine: &Engine, raw: &Pool, schema: &str, ids: Arc<[String]>) -> Result<()> {
    let sql = format!(
        "INSERT INTO \"{schema}\".raw_events (category, stream_id, version, event_type, schema_version, payload, \
         metadata) VALUES ($1, $2, $3, $4, $5, $6::text::json, $7::text::json)"
    );
    let mut appends = StoreAppend::new(store.clone(), &ids, "ladder").await?;
    let mut rates: [Vec<Rate>; 4] = Default::default();
    let mut offset = 0;
    for round in 0..ROUNDS {
        let raw_worker = RawInsert::new(raw, schema, &format!("ladder_raw_{round}"), ids.clone()).await?;
        rates[0].push(load::throughput(vec![raw_worker], OPS).await?);
        let pooled = RawPooled {
            pool: store.pool().clone(),
            sql: sql.clone(),
            category: format!("ladder_pooled_{round}"),
            ids: ids.clone(),
            payload: deposit_payload(),
            events: EventMaker::default(),
        };
        rates[1].push(load::throughput(vec![pooled], OPS).await?);
        // The same worker every round (its streams' versions go on from where they were), on
        // a task of its own as the others are.
        let (worker, rate) = tokio::spawn(async move {
            let rate = throughput_from(&mut appends, offset, OPS).await;
            (appends, rate)
        })
        .await?;
        appends = worker;
        let rate = rate?;
        offset += rate.ops;
        rates[2].push(rate);
        rates[3].push(load::throughput(vec![Commands::new(engine.clone(), ids.clone())], OPS).await?);
    }
    // Allocations per command of each layer, untimed, after the timed rounds (every thread of
    // the process counted, the connections' tasks too).
    let mut raw_worker = RawInsert::new(raw, schema, "ladder_raw_alloc", ids.clone()).await?;
    let mut pooled = RawPooled {
        pool: store.pool().clone(),
        sql: sql.clone(),
        category: "ladder_pooled_alloc".to_owned(),
        ids: ids.clone(),
        payload: deposit_payload(),
        events: EventMaker::default(),
    };
    let mut commands = Commands::new(engine.clone(), ids.clone());
    // One of each first: the raw statement prepared, the pool's statement cached.
    crate::long::allocations(&mut raw_worker, 0, 1).await?;
    crate::long::allocations(&mut pooled, 0, 1).await?;
    let counted = [
        crate::long::allocations(&mut raw_worker, 1, ALLOCATION_OPS).await?,
        crate::long::allocations(&mut pooled, 1, ALLOCATION_OPS).await?,
        crate::long::allocations(&mut appends, offset, ALLOCATION_OPS).await?,
        crate::long::allocations(&mut commands, 0, ALLOCATION_OPS).await?,
    ];
    let best: Vec<f64> = rates.iter().map(|runs| runs.iter().map(Rate::per_second).fold(0.0, f64::max)).collect();
    for ((name, rate), tally) in ["raw", "raw_pooled", "store_append", "engine"].iter().zip(&best).zip(&counted) {
        eprintln!(
            "ladder: {name:<12} {rate:>7.0}/s, {:>6.1} µs a command, {:.2} of raw's speed; {:.1} allocations \
             ({:.0} bytes) a command",
            1e6 / rate,
            rate / best[0],
            tally.per(ALLOCATION_OPS),
            tally.bytes_per(ALLOCATION_OPS)
        );
    }
    Ok(())
}

/// [`load::throughput`] on one borrowed worker, numbering its operations from `first`.
async fn throughput_from(worker: &mut StoreAppend, first: usize, budget: Budget) -> Result<Rate> {
    let start = std::time::Instant::now();
    let mut ops = 0;
    for i in first..first + budget.ops {
        if start.elapsed() >= budget.time {
            break;
        }
        worker.op(i).await?;
        ops += 1;
    }
    Ok(Rate { ops, elapsed: start.elapsed() })
}

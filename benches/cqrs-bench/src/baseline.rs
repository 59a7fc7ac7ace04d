//! `cqrs-bench baseline`: what the raw baseline's statement costs, today's (`::json`, the
//! statement a user would write against the `json` columns) against the one it had until
//! 2026-12-01 (`::jsonb`, parsing every payload into jsonb and printing it back), in one
//! process on one server, alternating, so that the move of every `ratio` against raw can be
//! read off. Each record's `ours` is today's baseline, `raw` the old one, and `ratio`
//! today's/old (above 1: the old baseline was slower, so ratios against it flattered ours).

use crate::Result;
use crate::domain::account_ids;
use crate::load::{self, Budget, Rate};
use crate::raw::{self, Cast, RawBatch, RawInsert};
use crate::report::{Record, Unit};

/// Rounds of each statement, alternating; the fastest counts.
const ROUNDS: usize = 3;
/// Single-row INSERTs per measurement.
const SINGLE: Budget = Budget::new(5_000, 20);
/// Single-row INSERTs from eight tasks per measurement.
const EIGHT: Budget = Budget::new(10_000, 20);
/// Batches of 100 per measurement.
const BATCHES: Budget = Budget::new(300, 20);

/// Runs the comparison against the server at `url`, in a schema `bench_baseline_<pid>` that is
/// dropped at the end.
pub async fn run(url: &str) -> Result<()> {
    let monitor = crate::scenarios::monitor(url).await?;
    let schema = crate::scenarios::fresh_schema(&monitor, "bench_baseline").await?;
    let outcome = async {
        let store =
            eventloom_postgres::PgEventStore::connect(eventloom_postgres::PgConfig::from_url(url)?.schema(&schema)?)
                .await?;
        store.migrate().await?;
        raw::create_table(&monitor, &schema).await?;
        let pool = raw::pool(url.parse()?, 8)?;
        let result = compare(&pool, &schema).await;
        pool.close();
        result
    }
    .await;
    let dropped = monitor.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE")).await;
    outcome?;
    dropped?;
    Ok(())
}

async fn compare(pool: &deadpool_postgres::Pool, schema: &str) -> Result<()> {
    let ids = account_ids();
    for (scenario, tasks, budget) in [("baseline_1_task", 1, SINGLE), ("baseline_8_tasks", 8, EIGHT)] {
        let (mut json, mut jsonb) = (Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            for (cast, rates) in [(Cast::Json, &mut json), (Cast::Jsonb, &mut jsonb)] {
                let category = format!("{scenario}_{cast:?}_{round}");
                let mut workers = Vec::with_capacity(tasks);
                for _ in 0..tasks {
                    workers.push(RawInsert::with_cast(pool, schema, &category, ids.clone(), cast).await?);
                }
                rates.push(load::throughput(workers, budget).await?);
            }
        }
        record(scenario, "INSERTs", &json, &jsonb, 1.0)?.print();
    }
    let (mut json, mut jsonb) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        for (cast, rates) in [(Cast::Json, &mut json), (Cast::Jsonb, &mut jsonb)] {
            let worker = RawBatch::with_cast(pool, schema, 100, &format!("{cast:?}-{round}-"), cast).await?;
            rates.push(load::throughput(vec![worker], BATCHES).await?);
        }
    }
    record("baseline_batch_100", "batches of 100", &json, &jsonb, 100.0)?.print();
    Ok(())
}

/// The record of one comparison, the fastest run of each, in operations times `scale`.
fn record(scenario: &'static str, what: &str, json: &[Rate], jsonb: &[Rate], scale: f64) -> Result<Record> {
    let fastest = |rates: &[Rate]| {
        rates.iter().map(Rate::per_second).max_by(f64::total_cmp).ok_or_else(|| format!("{scenario}: nothing measured"))
    };
    let show = |rates: &[Rate]| rates.iter().map(|r| format!("{:.0}", r.per_second())).collect::<Vec<_>>().join(", ");
    eprintln!("{scenario}: {what} per second with ::json {}; with ::jsonb {}", show(json), show(jsonb));
    Ok(Record::new(scenario, Unit::PerSecond, fastest(json)? * scale, fastest(jsonb)? * scale))
}

//! Run with `cargo run --release -p cqrs-bench --all-features -- postgres`, with `DATABASE_URL`
//! naming a throwaway PostgreSQL server (the bench works in a schema `bench_<pid>` of its own
//! and drops it at the end).
//!
//! Measures the engine and the event store of this framework on PostgreSQL side by side with
//! a raw baseline (plain INSERTs through tokio-postgres into a copy of the events table) and,
//! with the `cqrs-es` feature, with cqrs-es 0.5 on postgres-es 0.5:
//!
//! - `commands_1_task`, `commands_8_tasks`: deposits round-robin over 1,000 accounts with the
//!   engine's cache warm, with the server round-trips per command;
//! - `commands_1_task_combined`, `commands_8_tasks_combined`, `commands_64_tasks`: the same
//!   deposits from 1, 8 and 64 tasks through a store with write combining on
//!   (`PgConfig::write_combining`), against raw single-row INSERTs committing one by one from as
//!   many tasks; `commands_64_tasks_in_flight_2`, `_4`, `_8`: the 64 tasks with 2, 4 and 8
//!   combined statements in flight (`PgConfig::write_combining_in_flight`; 1 by default), with
//!   the statements' sizes in the notes;
//! - `commands_8_tasks_subscribed`: the same with a live subscription running (`raw` is the run
//!   without one);
//! - `notify_cost`: the NOTIFYs the store sends per command under the eight-task load, the
//!   latency of one NOTIFY against `SELECT 1`, and raw INSERTs from eight tasks with a task
//!   beside them that notifies as the store does (`ours`) against without (`raw`);
//! - `append_batch_100`: events per second appended 100 per call;
//! - `allocations_per_command`: allocations per deposit through the warm engine, against a raw
//!   INSERT (counted by the process's allocator, `alloc.rs`);
//! - `command_10k_stream_no_snapshot`, `command_10k_stream_snapshot`,
//!   `command_100k_stream_snapshot`: the latency of one command that loads a long stream (the
//!   first against a raw read, decode and fold of the same rows plus an INSERT, see `long.rs`);
//! - `load_100k_events_4k`, `load_1k_events_1m`: the peak memory of one load of a big stream.
//!
//! `cargo run --release -p cqrs-bench --all-features -- redis`, with `DATABASE_URL` and
//! `REDIS_URL` naming throwaway servers (it works in a schema `bench_redis_<pid>` and under a
//! Redis key prefix `cqrs-bench:<pid>:<time>:` of its own and deletes both at the end),
//! measures the read side: a projector folding PostgreSQL events into Redis views:
//!
//! - `projection_catch_up`: events per second `Projector::catch_up` projects from 200,000
//!   stored events, against a raw catch-up doing the same work without the framework (the
//!   events read with tokio-postgres by the store's ordered query in pages of the same size,
//!   decoded, folded, one pipelined `SET` per event), with pipelined `SET`s alone beside it;
//! - `allocations_per_projected_event`: the allocations of one more (untimed) catch-up per event,
//!   against those of the raw `SET`s;
//! - `live_lag`: the time from a command's return until its view is visible, with the
//!   projector running live and commands at 1,000 per second;
//! - `live_lag_combined`: the same with the commands' store combining writes
//!   (`PgConfig::write_combining`);
//! - `view_query`: the latency of `ViewReader::get` against a raw `GET` of the same key.
//!
//! `cargo run --release -p cqrs-bench --all-features -- baseline`, with `DATABASE_URL` set
//! (schema `bench_baseline_<pid>`, dropped at the end), measures the raw baseline's statement
//! (`::json`) against the one it had until 2026-12-01 (`::jsonb`): `baseline_1_task`,
//! `baseline_8_tasks`, `baseline_batch_100`, with today's as `ours` and the old as `raw`.
//!
//! `cargo run --release -p cqrs-bench --all-features -- projections`, with `DATABASE_URL` set
//! (schema `bench_projections_<pid>`, dropped at the end), measures one `ProjectionGroup`
//! against one `Projector::run` per projection, for 1 and 8 projections with PostgreSQL views
//! and leases: the reads of the log (counted by a wrapper around the projectors' event store),
//! the rows they return, the wall time and this process's CPU time (and the server's, when it
//! runs on this machine) to catch up on 20,000 events:
//!
//! - `projections_1_build`, `projections_8_build`: new projections building their views;
//! - `projections_1_resume`, `projections_8_resume`: the same, stopped while 20,000 more events
//!   were appended, catching up on them;
//! - `projections_8_idle`, `projections_8_live`: the 8 live, with nothing appended, then with
//!   deposits at 200 per second.
//!
//! `cargo run --release -p cqrs-bench --all-features -- bus`, with `DATABASE_URL` and `NATS_URL`
//! set (schema `bench_bus_<pid>` and streams `BENCH_<pid>_*`, removed at the end), measures
//! `bus_publish`: events per second the bus publisher (`eventloom-nats`) relays from 20,000
//! stored events to JetStream, against raw JetStream publishes of the same messages.
//!
//! `cargo run --release -p cqrs-bench --all-features -- saga`, with `DATABASE_URL` and
//! `NATS_URL` set (schemas `bench_saga_<pid>`, `bench_e2e_orders_<pid>`,
//! `bench_e2e_shipping_<pid>` and streams `BENCH_<pid>_E2E*`, removed at the end), measures
//! `saga_steps`: the steps per second of a process manager on an `App` over PostgreSQL against
//! single-row INSERTs committed one by one, and `bus_e2e_latency`: the time from a command in
//! one service to the view in another, through the bus, against a raw JetStream publish to a
//! subscriber (see `saga.rs`).
//!
//! `cargo run --release -p cqrs-bench --all-features -- scaling`, with `DATABASE_URL`,
//! `DATABASE_REPLICA_URL` (a streaming replica of it), `REDIS_URL` and `REDIS_CLUSTER_URLS`
//! (comma-separated node URLs of a Redis Cluster) set (schemas `bench_scaling_<pid>*` and the
//! key prefix `cqrs-bench:<pid>:<time>:`, removed at the end), measures the scaling path (see
//! `scaling.rs` and `scaling_reads.rs`):
//!
//! - `partitioned_catch_up_whole`, `partitioned_catch_up_1_process`,
//!   `partitioned_catch_up_3_processes`: a task-like projection (a card per stream, listed in
//!   creation order) catching up on 200,000 events into views on the cluster, whole in one
//!   projector process, in 6 partitions in one, and in 6 partitions shared out by `PgLeases`
//!   among 3 (child processes of this binary, `cqrs-bench scaling-child ...`); events per second
//!   from the commit of the events (copied into the log in one transaction once the processes
//!   have shared the partitions out and settled) until every partition's checkpoint is at the
//!   head, each process's CPU time per event, each partition's finish time, against a raw run
//!   in this process (the same events read with tokio-postgres, one pipelined `SET` per event
//!   into the cluster);
//! - `view_get_{single,cluster}_{whole,partitioned}`, `view_list_...`: the latency of
//!   `Reader::get` and of a list page of 20 on one Redis node and on the cluster, for the whole
//!   projection and the partitioned one, against a raw `GET` on the same server;
//! - `replica_lag`: under 8 tasks of deposits for 10 s on a store that reads from the replica,
//!   the time from a command's return until `PgEventStore::wait_readable` sees its position on
//!   the replica, against `pg_stat_replication.replay_lag`, with `PgEventStore::replica_lag()`
//!   sampled beside them.
//!
//! `cargo run --release -p cqrs-bench -- ryw`, with `DATABASE_URL` and `REDIS_URL` set (schema
//! `bench_ryw_<pid>` and the key prefix `cqrs-bench:<pid>:<time>:`, removed at the end),
//! measures read-your-writes: the median and 99th percentile from a command's return to the
//! answer of a query that waits for its position, on memory stores, on PostgreSQL and on Redis
//! views, in one process and with command, projector and query in three (children of this
//! binary, `cqrs-bench ryw-child ...`), and without the views' NOTIFY debounce (see
//! `read_your_writes.rs`).
//!
//! Every scenario stops by itself after a count of operations or a few seconds. Results are
//! one JSON object per line on stdout; notes go to stderr.

mod alloc;
mod baseline;
mod bus;
mod counted;
mod cpu;
mod domain;
mod ladder;
mod live_lag;
mod load;
mod long;
mod notify_cost;
mod ours;
mod phases;
mod projection_groups;
mod raw;
mod read_model;
mod read_your_writes;
mod redis_scenarios;
mod report;
mod round_trips;
mod saga;
mod scaling;
mod scaling_reads;
mod scenarios;
#[cfg(feature = "cqrs-es")]
mod theirs;
#[cfg(not(feature = "cqrs-es"))]
#[path = "theirs_off.rs"]
mod theirs;

use std::process::ExitCode;

/// Any error, boxed.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// A result with a boxed error by default.
pub type Result<T, E = BoxError> = std::result::Result<T, E>;

const USAGE: &str = "usage: cqrs-bench postgres   (with DATABASE_URL set)
       cqrs-bench redis      (with DATABASE_URL and REDIS_URL set)
       cqrs-bench baseline   (with DATABASE_URL set)
       cqrs-bench projections (with DATABASE_URL set)
       cqrs-bench bus        (with DATABASE_URL and NATS_URL set)
       cqrs-bench saga       (with DATABASE_URL and NATS_URL set)
       cqrs-bench scaling    (with DATABASE_URL, DATABASE_REPLICA_URL, REDIS_URL and REDIS_CLUSTER_URLS set)
       cqrs-bench ryw        (with DATABASE_URL and REDIS_URL set)";

/// How to get throwaway servers, for the messages about unset variables.
const SERVICES_HINT: &str = "or run it through scripts/bench.sh, which starts durable throwaway servers: \
                             bash scripts/bench.sh <postgres|redis|baseline|projections|bus|saga|scaling|ryw>";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["postgres"] => {
            let Some(url) = database_url() else { return ExitCode::from(2) };
            block_on(scenarios::run(&url))
        }
        ["baseline"] => {
            let Some(url) = database_url() else { return ExitCode::from(2) };
            block_on(baseline::run(&url))
        }
        ["projections"] => {
            let Some(url) = database_url() else { return ExitCode::from(2) };
            block_on(projection_groups::run(&url))
        }
        ["bus"] => {
            let (Some(pg_url), Some(nats_url)) = (database_url(), nats_url()) else { return ExitCode::from(2) };
            block_on(bus::run(&pg_url, &nats_url))
        }
        ["saga"] => {
            let (Some(pg_url), Some(nats_url)) = (database_url(), nats_url()) else { return ExitCode::from(2) };
            block_on(saga::run(&pg_url, &nats_url))
        }
        ["redis"] => {
            let (Some(pg_url), Some(redis_url)) = (database_url(), redis_url()) else { return ExitCode::from(2) };
            block_on(redis_scenarios::run(&pg_url, &redis_url))
        }
        ["scaling"] => {
            let (Some(pg_url), Some(replica_url), Some(redis_url), Some(cluster_urls)) =
                (database_url(), replica_url(), redis_url(), cluster_urls())
            else {
                return ExitCode::from(2);
            };
            block_on(scaling::run(&pg_url, &replica_url, &redis_url, &cluster_urls))
        }
        [scaling::CHILD, schema, prefix, partitions] => {
            let (Some(pg_url), Some(cluster_urls)) = (database_url(), cluster_urls()) else { return ExitCode::from(2) };
            block_on(scaling::child(&pg_url, &cluster_urls, schema, prefix, partitions))
        }
        ["ryw"] => {
            let (Some(pg_url), Some(redis_url)) = (database_url(), redis_url()) else { return ExitCode::from(2) };
            block_on(read_your_writes::run(&pg_url, &redis_url))
        }
        [read_your_writes::CHILD, rest @ ..] => {
            let Some(pg_url) = database_url() else { return ExitCode::from(2) };
            block_on(read_your_writes::child(&pg_url, rest))
        }
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

/// `DATABASE_URL`, or `None` after saying how to set it.
fn database_url() -> Option<String> {
    let url = std::env::var("DATABASE_URL").ok().filter(|url| !url.is_empty());
    if url.is_none() {
        eprintln!(
            "DATABASE_URL is not set: set it to a throwaway PostgreSQL server, e.g. \
             DATABASE_URL=postgres://postgres@127.0.0.1:5433/postgres ({SERVICES_HINT})"
        );
    }
    url
}

/// `NATS_URL`, or `None` after saying how to set it.
fn nats_url() -> Option<String> {
    let url = std::env::var("NATS_URL").ok().filter(|url| !url.is_empty());
    if url.is_none() {
        eprintln!(
            "NATS_URL is not set: set it to a throwaway nats-server started with -js, e.g. NATS_URL=nats://127.0.0.1:4223 \
             ({SERVICES_HINT})"
        );
    }
    url
}

/// `REDIS_URL`, or `None` after saying how to set it.
fn redis_url() -> Option<String> {
    let url = std::env::var("REDIS_URL").ok().filter(|url| !url.is_empty());
    if url.is_none() {
        eprintln!(
            "REDIS_URL is not set: set it to a throwaway Redis server, e.g. REDIS_URL=redis://127.0.0.1:6380/ \
             ({SERVICES_HINT})"
        );
    }
    url
}

/// `DATABASE_REPLICA_URL`, or `None` after saying how to set it.
fn replica_url() -> Option<String> {
    let url = std::env::var("DATABASE_REPLICA_URL").ok().filter(|url| !url.is_empty());
    if url.is_none() {
        eprintln!(
            "DATABASE_REPLICA_URL is not set: set it to a streaming replica (hot standby) of DATABASE_URL's server \
             ({SERVICES_HINT})"
        );
    }
    url
}

/// `REDIS_CLUSTER_URLS`, or `None` after saying how to set it.
fn cluster_urls() -> Option<String> {
    let urls = std::env::var("REDIS_CLUSTER_URLS").ok().filter(|urls| !urls.is_empty());
    if urls.is_none() {
        eprintln!(
            "REDIS_CLUSTER_URLS is not set: set it to the comma-separated node URLs of a throwaway Redis Cluster \
             ({SERVICES_HINT})"
        );
    }
    urls
}

/// Runs `bench` on a multi-threaded runtime; failure is exit code 1 with the error on stderr.
fn block_on(bench: impl std::future::Future<Output = Result<()>>) -> ExitCode {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime starts");
    match runtime.block_on(bench) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("cqrs-bench: {error}");
            ExitCode::FAILURE
        }
    }
}

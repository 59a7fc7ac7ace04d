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
//! - `commands_8_tasks_subscribed`: the same with a live subscription running (`raw` is the run
//!   without one);
//! - `append_batch_100`: events per second appended 100 per call;
//! - `command_10k_stream_no_snapshot`, `command_10k_stream_snapshot`,
//!   `command_100k_stream_snapshot`: the latency of one command that loads a long stream.
//!
//! Every scenario stops by itself after a count of operations or a few seconds. Results are
//! one JSON object per line on stdout; notes go to stderr.

mod domain;
mod load;
mod ours;
mod raw;
mod report;
mod round_trips;
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

const USAGE: &str = "usage: cqrs-bench postgres   (with DATABASE_URL set)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args != ["postgres"] {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    }
    let Some(url) = std::env::var("DATABASE_URL").ok().filter(|url| !url.is_empty()) else {
        eprintln!(
            "DATABASE_URL is not set: set it to a throwaway PostgreSQL server, e.g. \
             DATABASE_URL=postgres://postgres@127.0.0.1:5433/postgres (or run it through scripts/services.sh: \
             bash -c 'source scripts/services.sh; trap stop_services EXIT; ensure_postgres; \
             cargo run --release -p cqrs-bench --all-features -- postgres')"
        );
        return ExitCode::from(2);
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime starts");
    match runtime.block_on(scenarios::run(&url)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("cqrs-bench: {error}");
            ExitCode::FAILURE
        }
    }
}

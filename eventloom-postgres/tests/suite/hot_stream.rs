//! One hot stream shared by sixteen command processes: with the default retry policy every
//! command goes through, and the test reports the latency and the rate the stream sustains.
//!
//! Each engine stands in for a command process: its own aggregate cache and its own jitter
//! (the processes share the store's connection pool here, which has a connection for each).
//! The seed fixes the jitter of every engine, the amounts and the order the commands start in;
//! replay a run with `CQRS_HOT_STREAM_SEED=<seed>`. Run it alone to measure:
//! `bash scripts/test.sh -p eventloom-postgres --test suite hot_stream -- --nocapture`.

use eventloom_core::store::BoxFuture;
use eventloom_core::testing::TestRng;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use eventloom_core::model::{ExpectedVersion, NewEvent};
use eventloom_core::prelude::*;
use eventloom_core::{
    CommandError,
    store::EventStore,
    write::{Cqrs, RetryPolicy},
};

use crate::domain::{Account, Deposit, Open};
use crate::support;

const ENGINES: u64 = 16;
const COMMANDS: u64 = 50;

/// The store, counting appends (each attempt of a command is one).
#[derive(Clone)]
struct Counted<S> {
    inner: S,
    appends: Arc<AtomicU64>,
}

impl<S: EventStore + Clone> eventloom_core::store::DelegateEventStore for Counted<S> {
    type Inner = S;
    fn inner(&self) -> &S {
        &self.inner
    }
    fn append<'a>(
        &'a self,
        s: &'a StreamId,
        e: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> BoxFuture<'a, eventloom_core::Result<eventloom_core::store::Appended>> {
        Box::pin(async move {
            self.appends.fetch_add(1, Ordering::Relaxed);
            self.inner.append(s, e, events).await
        })
    }
    fn append_command<'a>(
        &'a self,
        s: &'a StreamId,
        e: ExpectedVersion,
        events: Vec<NewEvent>,
        print: &'a eventloom_core::store::CommandEntry,
    ) -> BoxFuture<'a, eventloom_core::Result<eventloom_core::store::Appended>> {
        Box::pin(async move {
            self.appends.fetch_add(1, Ordering::Relaxed);
            self.inner.append_command(s, e, events, print).await
        })
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_engines_on_one_hot_stream_lose_no_command_at_the_default_retry_policy() {
    // The order and amounts of a run, and every engine's jitter, from its seed.
    let mut rng = TestRng::from_env("CQRS_HOT_STREAM_SEED");
    let seed = rng.seed();
    let store = Counted { inner: support::store().await, appends: Arc::new(AtomicU64::new(0)) };
    Cqrs::new(store.clone()).execute(Open { id: "hot".into() }).await.unwrap();
    // Each engine runs its commands one after another (commands on one stream in one engine
    // queue on its cache anyway), all sixteen at once, after a start offset of up to 2 ms.
    let mut plans: Vec<(u64, u64, Vec<u64>)> =
        (0..ENGINES).map(|e| (e, rng.below(2_000), (0..COMMANDS).map(|_| rng.in_range(1..101)).collect())).collect();
    plans.sort_by_key(|(_, offset, _)| *offset);
    let expected: u64 = plans.iter().flat_map(|(_, _, amounts)| amounts).sum();
    let appends_before = store.appends.load(Ordering::Relaxed);
    let started = Instant::now();
    let tasks: Vec<_> = plans
        .into_iter()
        .map(|(e, offset, amounts)| {
            // The defaults, with a replayable jitter of each engine's own.
            let engine = Cqrs::new(store.clone()).with_retry(RetryPolicy::default().seed(seed ^ (e + 1)));
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_micros(offset)).await;
                let mut latencies = Vec::new();
                let mut conflicts = Vec::new();
                for amount in amounts {
                    let at = Instant::now();
                    match engine.execute(Deposit { id: "hot".into(), amount }).await {
                        Ok(_) => {}
                        Err(CommandError::Conflict { attempts, .. }) => conflicts.push((amount, attempts)),
                        Err(other) => panic!("engine {e}: {other:?}"),
                    }
                    latencies.push(at.elapsed());
                }
                (latencies, conflicts)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut conflicts = Vec::new();
    for task in tasks {
        let (l, c) = task.await.unwrap();
        latencies.extend(l);
        conflicts.extend(c);
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let commands = ENGINES * COMMANDS;
    let attempts = store.appends.load(Ordering::Relaxed) - appends_before;
    println!(
        "hot stream: {commands} commands from {ENGINES} engines in {elapsed:.2?}: {:.0} commands/s on one stream; \
         latency p50 {:.2?}, p99 {:.2?}, max {:.2?}; {attempts} appends ({:.2} per command); {} conflicts",
        commands as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or_default(),
        attempts as f64 / commands as f64,
        conflicts.len(),
    );
    assert!(
        conflicts.is_empty(),
        "{} of {commands} commands gave up on a conflict (seed {seed}): {conflicts:?}",
        conflicts.len()
    );
    let (account, version) = Cqrs::<Account, _>::new(store.clone()).load("hot").await.unwrap();
    assert_eq!((account.balance, version), (expected, 1 + commands), "every command appended once");
}

//! Engine benchmarks on the memory store. Run with `cargo bench -p eventloom-core`.
//!
//! - `commands/1_task`, `commands/8_tasks`: deposits round-robin over 1,000 cached aggregates.
//! - `load/10k_events`: loading (decoding and folding) a 10,000-event stream, no snapshot.
//! - `snapshot_every_100/{1000,10000,100000}`: one command on a stream of that length with
//!   snapshots every 100 events and no cache, so each command loads snapshot + tail.

#![allow(missing_docs)]

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use eventloom_core::prelude::*;
use eventloom_core::{
    memory::{MemoryEventStore, MemorySnapshotStore},
    write::{Cqrs, SnapshotPolicy},
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
enum AccountEvent {
    Deposited { amount: u64 },
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Account {
    balance: u64,
}

impl Aggregate for Account {
    const TYPE: &'static str = "account";
    type Event = AccountEvent;
    type Error = std::convert::Infallible;
    fn apply(&mut self, AccountEvent::Deposited { amount }: &AccountEvent) {
        self.balance += amount;
    }
}

#[derive(Debug, Serialize, Command)]
#[command(aggregate = Account)]
struct Deposit {
    #[command(id)]
    id: String,
    amount: u64,
}

impl Handle<Deposit> for Account {
    fn handle(&self, cmd: &Deposit) -> Result<Vec<AccountEvent>, std::convert::Infallible> {
        Ok(vec![AccountEvent::Deposited { amount: cmd.amount }])
    }
}

const AGGREGATES: usize = 1_000;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime")
}

fn ids() -> Vec<String> {
    (0..AGGREGATES).map(|i| format!("acc-{i}")).collect()
}

async fn warm(cqrs: &Cqrs<Account, MemoryEventStore>, ids: &[String]) {
    for id in ids {
        cqrs.execute(Deposit { id: id.clone(), amount: 1 }).await.expect("deposit");
    }
}

fn commands(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("commands");
    group.throughput(Throughput::Elements(1));
    group.bench_function("1_task", |b| {
        let cqrs = Cqrs::new(MemoryEventStore::new());
        let ids = ids();
        rt.block_on(warm(&cqrs, &ids));
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for i in 0..iters as usize {
                    cqrs.execute(Deposit { id: ids[i % AGGREGATES].clone(), amount: 1 }).await.expect("deposit");
                }
                start.elapsed()
            })
        });
    });
    group.bench_function("8_tasks", |b| {
        let cqrs = Cqrs::new(MemoryEventStore::new());
        let ids = std::sync::Arc::new(ids());
        rt.block_on(warm(&cqrs, &ids));
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                let mut tasks = Vec::new();
                for t in 0..8usize {
                    let (cqrs, ids) = (cqrs.clone(), ids.clone());
                    tasks.push(tokio::spawn(async move {
                        for i in (t..iters as usize).step_by(8) {
                            cqrs.execute(Deposit { id: ids[i % AGGREGATES].clone(), amount: 1 })
                                .await
                                .expect("deposit");
                        }
                    }));
                }
                for task in tasks {
                    task.await.expect("task");
                }
                start.elapsed()
            })
        });
    });
    group.finish();
}

fn load(c: &mut Criterion) {
    let rt = runtime();
    let store = MemoryEventStore::new();
    let cqrs = Cqrs::new(store.clone()).with_cache_capacity(0);
    rt.block_on(async {
        for _ in 0..10_000 {
            cqrs.execute(Deposit { id: "long".into(), amount: 1 }).await.expect("deposit");
        }
    });
    let mut group = c.benchmark_group("load");
    group.throughput(Throughput::Elements(10_000));
    group.bench_function("10k_events", |b| {
        b.to_async(&rt).iter(|| async {
            let (state, version) = cqrs.load("long").await.expect("load");
            assert_eq!((state.balance, version), (10_000, 10_000));
        });
    });
    group.finish();
}

fn snapshots(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("snapshot_every_100");
    for length in [1_000u64, 10_000, 100_000] {
        let store = MemoryEventStore::new();
        let cqrs = Cqrs::new(store)
            .with_cache_capacity(0)
            .with_snapshots(MemorySnapshotStore::default(), SnapshotPolicy::every(100));
        // Build the stream fast through the cache, snapshotting as it goes.
        let builder = Cqrs::new(cqrs.store().clone());
        rt.block_on(async {
            for i in 0..length {
                let engine = if i % 100 == 99 { &cqrs } else { &builder };
                engine.execute(Deposit { id: "s".into(), amount: 1 }).await.expect("deposit");
            }
        });
        group.bench_with_input(BenchmarkId::from_parameter(length), &length, |b, _| {
            b.to_async(&rt).iter(|| async {
                cqrs.execute(Deposit { id: "s".into(), amount: 1 }).await.expect("deposit");
            });
        });
    }
    group.finish();
}

fn config() -> Criterion {
    Criterion::default().sample_size(20).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3))
}

criterion_group! { name = benches; config = config(); targets = commands, load, snapshots }
criterion_main!(benches);

//! Drivers: many operations on a few tasks for a rate, or one at a time for latencies. Both
//! stop by themselves, after a count of operations or a time limit.

use std::future::Future;
use std::time::{Duration, Instant};

use crate::Result;

/// Something that performs numbered operations: a command, an INSERT, an append of a batch.
pub trait Worker: Send + 'static {
    /// Performs operation number `i` (numbers are unique across the workers of one run).
    fn op(&mut self, i: usize) -> impl Future<Output = Result<()>> + Send;
}

/// How much one measurement may do.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// Stop after this many operations.
    pub ops: usize,
    /// Stop once this much time has passed (after at least `min_ops` for latencies).
    pub time: Duration,
    /// The fewest samples a latency measurement takes, whatever the time.
    pub min_ops: usize,
}

impl Budget {
    /// Up to `ops` operations or `seconds` seconds, whichever comes first.
    pub const fn new(ops: usize, seconds: u64) -> Self {
        Budget { ops, time: Duration::from_secs(seconds), min_ops: 1 }
    }

    /// Takes at least `ops` samples even past the time limit.
    pub const fn at_least(mut self, ops: usize) -> Self {
        self.min_ops = ops;
        self
    }
}

/// A throughput measurement.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    /// Operations completed.
    pub ops: usize,
    /// How long they took, all workers together.
    pub elapsed: Duration,
}

impl Rate {
    /// Operations per second.
    pub fn per_second(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }
}

/// Runs operations `0..budget.ops` spread round-robin over `workers`, one tokio task each
/// (worker `t` does `t, t + n, t + 2n, ...`), until done or out of time.
pub async fn throughput<W: Worker>(workers: Vec<W>, budget: Budget) -> Result<Rate> {
    let tasks = workers.len().max(1);
    let start = Instant::now();
    let deadline = start + budget.time;
    let handles: Vec<_> = workers
        .into_iter()
        .enumerate()
        .map(|(t, mut worker)| {
            tokio::spawn(async move {
                let mut done = 0;
                for i in (t..budget.ops).step_by(tasks) {
                    if Instant::now() >= deadline {
                        break;
                    }
                    worker.op(i).await?;
                    done += 1;
                }
                Ok::<_, crate::BoxError>(done)
            })
        })
        .collect();
    let mut ops = 0;
    for handle in handles {
        ops += handle.await??;
    }
    Ok(Rate { ops, elapsed: start.elapsed() })
}

/// Times operations `first..` one at a time on `worker`, until `budget.ops` samples, or the
/// time limit once at least `budget.min_ops` were taken.
pub async fn latencies<W: Worker>(worker: &mut W, first: usize, budget: Budget) -> Result<Vec<Duration>> {
    let start = Instant::now();
    let mut samples = Vec::with_capacity(budget.ops);
    for i in first..first + budget.ops {
        if samples.len() >= budget.min_ops && start.elapsed() >= budget.time {
            break;
        }
        let t = Instant::now();
        worker.op(i).await?;
        samples.push(t.elapsed());
    }
    Ok(samples)
}

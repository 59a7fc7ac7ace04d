//! Commit-to-visible latency of a live projector: deposits paced at a fixed rate, and a poller
//! that notes when the projection's checkpoint reaches each command's position.

use std::sync::Arc;
use std::time::{Duration, Instant};

use eventloom_core::{
    Position,
    read::{Projector, ViewReader},
};
use eventloom_postgres::PgEventStore;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::Result;
use crate::domain::{AGGREGATES, Deposit};
use crate::ours::Engine;
use crate::read_model::{AccountView, AccountViews};

/// `Projector::run` of [`AccountViews`] on a task of its own, until stopped (or dropped).
pub struct LiveProjector {
    stop: oneshot::Sender<()>,
    task: JoinHandle<eventloom_core::Result<()>>,
}

impl LiveProjector {
    /// Starts running `projector` live.
    pub fn start(projector: Projector<PgEventStore>) -> Self {
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async move {
            // Resolves when stopped, or when the sender is dropped.
            let _ = stopped.await;
        };
        let task = tokio::spawn(async move { projector.run(AccountViews, shutdown).await });
        LiveProjector { stop, task }
    }

    /// Stops it after the batch in progress; fails if the projection failed.
    pub async fn stop(self) -> Result<()> {
        let _ = self.stop.send(());
        Ok(self.task.await??)
    }
}

/// One command as its caller saw it.
#[derive(Debug, Clone, Copy)]
pub struct Sent {
    /// The position of the event it appended.
    pub position: Position,
    /// When `execute` was called.
    pub issued: Instant,
    /// When `execute` returned.
    pub returned: Instant,
}

/// Deposits `count` times at `rate` per second from `tasks` tasks sharing `engine`: deposit
/// `i` (into account `i % 1000`) is due `i / rate` seconds after the start and sent as soon as
/// its task is free from then on. Returns every command's outcome, in no particular order.
pub async fn paced_deposits(
    engine: &Engine,
    ids: &Arc<[String]>,
    count: usize,
    rate: f64,
    tasks: usize,
) -> Result<Vec<Sent>> {
    let period = Duration::from_secs_f64(1.0 / rate);
    let start = tokio::time::Instant::now() + Duration::from_millis(10);
    let handles: Vec<JoinHandle<Result<Vec<Sent>>>> = (0..tasks)
        .map(|t| {
            let (engine, ids) = (engine.clone(), ids.clone());
            tokio::spawn(async move {
                let mut sent = Vec::with_capacity(count / tasks + 1);
                for i in (t..count).step_by(tasks) {
                    tokio::time::sleep_until(start + period * u32::try_from(i)?).await;
                    let issued = Instant::now();
                    let outcome = engine.execute(Deposit { id: ids[i % AGGREGATES].clone(), amount: 1 }).await?;
                    sent.push(Sent { position: outcome.position, issued, returned: Instant::now() });
                }
                Ok(sent)
            })
        })
        .collect();
    let mut sent = Vec::with_capacity(count);
    for handle in handles {
        sent.extend(handle.await??);
    }
    Ok(sent)
}

/// What the poller saw: each new checkpoint and when the read that returned it came back.
#[derive(Debug, Default)]
pub struct Seen {
    /// Checkpoints in increasing order, each with when it was first seen.
    pub changes: Vec<(Position, Instant)>,
    /// How many reads it made.
    pub polls: u64,
    /// How long it ran.
    pub elapsed: Duration,
}

/// Reads the projection's checkpoint with `ViewReader::checkpoint` back to back (one read in
/// flight at a time, no sleep, so a change is seen within about one Redis round-trip) on a
/// task of its own, until stopped (or dropped).
pub struct Poller {
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<Seen>>,
}

impl Poller {
    /// Starts polling through `reader`.
    pub fn start(reader: ViewReader<AccountView>) -> Self {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let mut seen = Seen::default();
            let mut last = None;
            // Stops when told, or when the sender is dropped.
            while matches!(stopped.has_changed(), Ok(false)) {
                let checkpoint = reader.checkpoint().await?;
                let at = Instant::now();
                seen.polls += 1;
                if let Some(position) = checkpoint.filter(|_| checkpoint != last) {
                    seen.changes.push((position, at));
                    last = checkpoint;
                }
            }
            seen.elapsed = started.elapsed();
            Ok(seen)
        });
        Poller { stop, task }
    }

    /// Stops it and returns what it saw; fails if a read failed.
    pub async fn finish(self) -> Result<Seen> {
        let _ = self.stop.send(true);
        self.task.await?
    }
}

/// Each command's lag: from its return to the first read that saw the checkpoint at or past its
/// position (zero when that read came back before the command returned). Fails when a command
/// was never seen.
pub fn lags(sent: &[Sent], seen: &Seen) -> Result<Vec<Duration>> {
    sent.iter()
        .map(|command| {
            let first = seen.changes.partition_point(|(position, _)| *position < command.position);
            let (_, at) = seen
                .changes
                .get(first)
                .ok_or_else(|| format!("the view never reached position {}", command.position))?;
            Ok(at.saturating_duration_since(command.returned))
        })
        .collect()
}

/// What explains the worst lags: how many passed a limit, the worst one, the slowest command
/// (a transaction still running holds back every event committed after it), and the longest
/// time the checkpoint stood still while commands were being sent. Instants are offsets from
/// the first command.
#[derive(Debug, Clone, Copy)]
pub struct Outliers {
    /// Lags above the limit.
    pub over: usize,
    /// The worst lag, and when its command returned.
    pub worst: (Duration, Duration),
    /// The slowest command's `execute`, and when it was called.
    pub slowest: (Duration, Duration),
    /// The longest pause between two checkpoint changes, and when it began.
    pub pause: (Duration, Duration),
}

impl Outliers {
    /// Finds them in a run; `None` when nothing was sent.
    pub fn of(sent: &[Sent], lags: &[Duration], seen: &Seen, limit: Duration) -> Option<Self> {
        let start = sent.iter().map(|s| s.issued).min()?;
        let end = sent.iter().map(|s| s.returned).max()?;
        let at = |instant: Instant| instant.saturating_duration_since(start);
        let (worst, command) = lags.iter().zip(sent).max_by_key(|(lag, _)| **lag)?;
        let slowest = sent.iter().max_by_key(|s| s.returned - s.issued)?;
        let pause = seen
            .changes
            .windows(2)
            .filter(|w| w[0].1 >= start && w[0].1 <= end)
            .map(|w| (w[1].1 - w[0].1, at(w[0].1)))
            .max()
            .unwrap_or_default();
        Some(Outliers {
            over: lags.iter().filter(|lag| **lag > limit).count(),
            worst: (*worst, at(command.returned)),
            slowest: (slowest.returned - slowest.issued, at(slowest.issued)),
            pause,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lag_runs_to_the_first_read_past_the_position() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let seen = Seen {
            changes: vec![(Position::new(1, 1), ms(2)), (Position::new(3, 5), ms(9))],
            polls: 10,
            elapsed: Duration::from_millis(10),
        };
        let sent = [
            Sent { position: Position::new(1, 1), issued: ms(0), returned: ms(1) },
            Sent { position: Position::new(2, 2), issued: ms(1), returned: ms(3) },
            Sent { position: Position::new(1, 1), issued: ms(3), returned: ms(4) },
        ];
        let lags = lags(&sent, &seen).unwrap();
        assert_eq!(lags, [Duration::from_millis(1), Duration::from_millis(6), Duration::ZERO]);
        let outliers = Outliers::of(&sent, &lags, &seen, Duration::from_millis(5)).unwrap();
        assert_eq!(outliers.over, 1);
        assert_eq!(outliers.worst, (Duration::from_millis(6), Duration::from_millis(3)));
        assert_eq!(outliers.slowest, (Duration::from_millis(2), Duration::from_millis(1)));
        assert_eq!(outliers.pause, (Duration::from_millis(7), Duration::from_millis(2)));
        let late = [Sent { position: Position::new(4, 1), issued: ms(0), returned: ms(1) }];
        assert!(super::lags(&late, &seen).is_err());
    }
}

//! `notify_cost`: what the store's coalesced NOTIFY costs.
//!
//! After a burst of appends, `PgEventStore`'s notifier waits 2 ms for more and sends one
//! `SELECT pg_notify($1, '')` on a pooled connection. That statement is a transaction of its
//! own: NOTIFY assigns it a transaction id and it writes a commit record. (PostgreSQL flushes
//! the WAL at commit only for a transaction that wrote WAL before its commit record, which a
//! NOTIFY alone does not: its commit is asynchronous whatever `synchronous_commit` says. The
//! WAL syncs counted here show whether that holds on the server measured.) The store has no switch to turn the notifier
//! off, so its cost is measured three ways, in one run on one server:
//!
//! - how many NOTIFYs the store sends per command under the eight-task load (counted by a
//!   connection LISTENing on the store's channel: PostgreSQL delivers one notification per
//!   notifying transaction);
//! - the latency of one such NOTIFY, alone, against `SELECT 1` on the same connection (the
//!   difference is its commit), and the transaction ids and WAL syncs (`pg_stat_wal`) those
//!   NOTIFYs took;
//! - raw INSERTs from eight tasks with, and without, a task beside them that does what the
//!   notifier does under a steady stream of appends: sleep 2 ms, send the NOTIFY, again.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use deadpool_postgres::{Object, Pool};
use tokio::task::JoinHandle;
use tokio_postgres::{AsyncMessage, NoTls, Statement};

use crate::Result;
use crate::load::Worker;

/// The notifier's debounce in `PgEventStore` (`NOTIFY_DEBOUNCE`).
pub const DEBOUNCE: Duration = Duration::from_millis(2);

/// The store's notification channel for `schema` (`cqrs_events_{schema}`).
pub fn channel(schema: &str) -> String {
    format!("cqrs_events_{schema}")
}

/// Counts the notifications on a channel, on a dedicated connection.
pub struct Listener {
    count: Arc<AtomicU64>,
    task: JoinHandle<()>,
    _client: tokio_postgres::Client,
}

impl Listener {
    /// LISTENs on `channel` of the server at `url`.
    pub async fn start(url: &str, channel: &str) -> Result<Self> {
        let (client, mut connection) = tokio_postgres::connect(url, NoTls).await?;
        let count = Arc::new(AtomicU64::new(0));
        let seen = count.clone();
        let task = tokio::spawn(async move {
            loop {
                match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                    Some(Ok(AsyncMessage::Notification(_))) => {
                        seen.fetch_add(1, Ordering::Relaxed);
                    }
                    Some(Ok(_)) => {}
                    Some(Err(error)) => {
                        eprintln!("notify_cost: the listening connection failed: {error}");
                        return;
                    }
                    None => return,
                }
            }
        });
        client.batch_execute(&format!("LISTEN \"{channel}\"")).await?;
        Ok(Listener { count, task, _client: client })
    }

    /// Notifications received so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Stops listening.
    pub fn stop(self) {
        self.task.abort();
    }
}

/// One NOTIFY on the channel per operation, or `SELECT 1` for the floor, on a pooled
/// connection with a prepared statement, as the notifier sends it.
pub struct Notify {
    client: Object,
    statement: Statement,
    channel: Option<String>,
}

impl Notify {
    /// `SELECT pg_notify(channel, '')` when `channel` is given, else `SELECT 1`.
    pub async fn new(pool: &Pool, channel: Option<&str>) -> Result<Self> {
        let client = pool.get().await?;
        let statement = match channel {
            Some(_) => client.prepare("SELECT pg_notify($1, '')").await?,
            None => client.prepare("SELECT 1").await?,
        };
        Ok(Notify { client, statement, channel: channel.map(str::to_owned) })
    }
}

impl Notify {
    /// Makes this connection publish its statistics (PostgreSQL 15+), so that its WAL
    /// counts are in `pg_stat_wal`.
    pub async fn publish_stats(&self) -> Result<()> {
        self.client.batch_execute("SELECT pg_stat_force_next_flush()").await?;
        Ok(())
    }
}

/// The cluster's next transaction id and its WAL sync count (`pg_stat_wal.wal_sync`, every
/// process's), read in one statement that itself takes one transaction id.
pub async fn wal_reading(monitor: &tokio_postgres::Client) -> Result<(i64, i64)> {
    let row =
        monitor.query_one("SELECT pg_current_xact_id()::text::bigint, (SELECT wal_sync FROM pg_stat_wal)", &[]).await?;
    Ok((row.try_get(0)?, row.try_get(1)?))
}

impl Worker for Notify {
    async fn op(&mut self, _: usize) -> Result<()> {
        match &self.channel {
            Some(channel) => self.client.execute(&self.statement, &[channel]).await?,
            None => self.client.execute(&self.statement, &[]).await?,
        };
        Ok(())
    }
}

/// A task that does what the notifier does under a steady stream of appends: waits
/// [`DEBOUNCE`], sends one NOTIFY, and again, until stopped.
pub struct Notifier {
    stop: Arc<AtomicBool>,
    task: JoinHandle<Result<u64>>,
}

impl Notifier {
    /// Starts notifying on `channel` through a connection of `pool`.
    pub async fn start(pool: &Pool, channel: &str) -> Result<Self> {
        let mut notify = Notify::new(pool, Some(channel)).await?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            let mut sent = 0;
            while !stopped.load(Ordering::Relaxed) {
                tokio::time::sleep(DEBOUNCE).await;
                notify.op(0).await?;
                sent += 1;
            }
            Ok(sent)
        });
        Ok(Notifier { stop, task })
    }

    /// Stops, returning how many NOTIFYs were sent.
    pub async fn stop(self) -> Result<u64> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await?
    }
}

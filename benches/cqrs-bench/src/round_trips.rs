//! Counting the server round-trips of a run of commands.
//!
//! With `pg_stat_statements` loaded and installed, statements are counted directly (its `calls`
//! are updated as each statement ends). Otherwise the database's committed transactions are
//! counted (`pg_stat_database.xact_commit`): every round-trip that ends in a Sync is one
//! transaction, an autocommit statement as well as the Parse/Describe that an unprepared
//! statement of tokio-postgres sends first.
//! Backends publish those counts lazily (at most once a second, and idle backends after up to
//! 10 s), so before each reading every connection of the measured pool is made to publish with
//! `pg_stat_force_next_flush()` (PostgreSQL 15+), and the statements this counting runs itself
//! are subtracted. Other activity in the same database in the meantime (autovacuum, say) is
//! counted too, which is noise of a few transactions per run.

use std::time::Duration;

use deadpool_postgres::Pool;
use tokio_postgres::{Client, SimpleQueryMessage};

use crate::Result;

/// How long an idle backend may keep its counts before publishing them (PostgreSQL's
/// `PGSTAT_IDLE_INTERVAL`, 10 s), with a margin.
const IDLE_FLUSH: Duration = Duration::from_millis(10_500);

/// What is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    /// `sum(calls)` of `pg_stat_statements` for the database.
    Statements,
    /// `pg_stat_database.xact_commit`, with forced flushes.
    Transactions,
}

/// Counts round-trips through a monitoring connection of its own.
pub struct RoundTrips<'a> {
    monitor: &'a Client,
    method: Method,
}

/// A reading taken before a run.
#[derive(Debug, Clone, Copy)]
pub struct Reading(i64);

impl<'a> RoundTrips<'a> {
    /// Picks the best method this server offers; `None` when neither works.
    pub async fn new(monitor: &'a Client) -> Option<Self> {
        let statements = RoundTrips { monitor, method: Method::Statements };
        if statements.read().await.is_ok() {
            eprintln!(
                "round-trips: counting statements with pg_stat_statements (an unnamed prepare, as a \
                 non-cached statement of tokio-postgres makes, is a round-trip it does not count)"
            );
            return Some(statements);
        }
        let transactions = RoundTrips { monitor, method: Method::Transactions };
        match transactions.read().await {
            Ok(_) => {
                eprintln!(
                    "round-trips: pg_stat_statements is not installed; counting committed transactions \
                     (pg_stat_database.xact_commit: one per round-trip ending in a Sync, an autocommit statement \
                     or the Parse of an unprepared one) with forced stats flushes, minus this counter's own \
                     statements"
                );
                Some(transactions)
            }
            Err(error) => {
                eprintln!("round-trips: not counted ({error}; needs PostgreSQL 15+ or pg_stat_statements)");
                None
            }
        }
    }

    /// A reading before the run whose statements on `pool` are counted.
    ///
    /// Counting transactions, it first waits [`IDLE_FLUSH`]: the connections of the runs
    /// before (the baseline's, cqrs-es's) publish their counts lazily, an idle one up to 10 s
    /// after its last transaction, and would otherwise be counted as this run's. (On a durable
    /// server, where those runs take longer, that once made 5,000 commands look like 8,295
    /// round-trips.)
    pub async fn before(&self, pool: &Pool) -> Result<Reading> {
        if self.method == Method::Transactions {
            tokio::time::sleep(IDLE_FLUSH).await;
        }
        self.flush(pool).await?;
        Ok(Reading(self.read().await?))
    }

    /// The statements run on the server since `before` by everything but this counter.
    pub async fn since(&self, before: Reading, pool: &Pool) -> Result<i64> {
        let flushes = self.flush(pool).await?;
        let after = self.read().await?;
        // The reading `before` was one statement (and one transaction) itself.
        Ok(after - before.0 - 1 - flushes)
    }

    /// Makes every connection of `pool` publish its statistics; returns how many statements
    /// that took.
    async fn flush(&self, pool: &Pool) -> Result<i64> {
        if self.method == Method::Statements {
            return Ok(0);
        }
        let mut held = Vec::new();
        for _ in 0..pool.status().size {
            held.push(pool.get().await?);
        }
        for client in &held {
            // The simple-query protocol returns after ReadyForQuery, by which time the backend
            // has published.
            client.batch_execute("SELECT pg_stat_force_next_flush()").await?;
        }
        Ok(i64::try_from(held.len())?)
    }

    /// The current count; one statement, in one transaction, published at once.
    async fn read(&self) -> Result<i64> {
        let sql = match self.method {
            Method::Statements => {
                "SELECT sum(calls)::bigint FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid \
                 WHERE d.datname = current_database()"
            }
            Method::Transactions => {
                "SELECT xact_commit, pg_stat_force_next_flush() FROM pg_stat_database \
                 WHERE datname = current_database()"
            }
        };
        let messages = self.monitor.simple_query(sql).await?;
        let value = messages
            .iter()
            .find_map(|m| match m {
                SimpleQueryMessage::Row(row) => row.get(0),
                _ => None,
            })
            .ok_or("no count returned")?;
        Ok(value.parse()?)
    }
}

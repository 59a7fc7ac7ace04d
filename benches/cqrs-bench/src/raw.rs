//! The baseline without a framework: plain INSERTs through tokio-postgres, with a prepared
//! statement on one pooled connection per task, into a copy of the events table.
//!
//! Payload and metadata are sent as text and cast to `json`, the type of those columns (see
//! `eventloom-postgres/sql/0001_event_store.sql`): the statement a user would write against that
//! table, and the cast the store's own statements make. (Until 2026-12-01 the baseline cast
//! them to `jsonb` first, which parsed every payload into jsonb and back to json, and slowed
//! the baseline every `ratio` is taken against.)

use std::sync::Arc;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use tokio_postgres::{NoTls, Statement};

use crate::Result;
use crate::domain::{AGGREGATES, EventMaker, deposit_payload};
use crate::load::Worker;

/// The events table's copy, in the bench schema.
const TABLE: &str = "raw_events";

/// Creates `raw_events` with the columns, defaults (the identity and `pg_current_xact_id()`),
/// primary key and indexes of the store's `events` table.
pub async fn create_table(client: &tokio_postgres::Client, schema: &str) -> Result<()> {
    client
        .batch_execute(&format!("CREATE TABLE \"{schema}\".{TABLE} (LIKE \"{schema}\".events INCLUDING ALL)"))
        .await?;
    Ok(())
}

/// How the baseline's statements turn the payload and metadata text into the columns' `json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cast {
    /// `::json`: the statement a user would write against these columns (the baseline).
    Json,
    /// `::jsonb`, then assigned to the `json` columns: the baseline until 2026-12-01, which
    /// parsed every payload into jsonb and printed it back; kept to measure what that cost
    /// (`cqrs-bench baseline`).
    Jsonb,
}

impl Cast {
    fn sql(self) -> &'static str {
        match self {
            Cast::Json => "json",
            Cast::Jsonb => "jsonb",
        }
    }
}

/// A pool of plain connections for the baseline.
pub fn pool(config: tokio_postgres::Config, size: usize) -> Result<Pool> {
    let manager = Manager::from_config(config, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
    Ok(Pool::builder(manager).max_size(size).build()?)
}

/// Single-row INSERTs of one deposit each: operation `i` writes version `i / 1000 + 1` of
/// account `i % 1000` in its own category, so every row is unique.
pub struct RawInsert {
    client: Object,
    insert: Statement,
    category: String,
    ids: Arc<[String]>,
    payload: String,
    events: EventMaker,
}

impl RawInsert {
    /// A worker on its own pooled connection, writing rows of `category`.
    pub async fn new(pool: &Pool, schema: &str, category: &str, ids: Arc<[String]>) -> Result<Self> {
        Self::with_cast(pool, schema, category, ids, Cast::Json).await
    }

    /// [`RawInsert::new`] with the given cast of payload and metadata.
    pub async fn with_cast(pool: &Pool, schema: &str, category: &str, ids: Arc<[String]>, cast: Cast) -> Result<Self> {
        let client = pool.get().await?;
        let to = cast.sql();
        let insert = client
            .prepare(&format!(
                "INSERT INTO \"{schema}\".{TABLE} \
                   (category, stream_id, version, event_type, schema_version, payload, metadata) \
                 VALUES ($1, $2, $3, $4, $5, $6::text::{to}, $7::text::{to})"
            ))
            .await?;
        Ok(RawInsert {
            client,
            insert,
            category: category.to_owned(),
            ids,
            payload: deposit_payload(),
            events: EventMaker::default(),
        })
    }
}

impl RawInsert {
    /// Makes this worker's connection publish its statistics (PostgreSQL 15+).
    pub async fn publish_stats(&self) -> Result<()> {
        self.client.batch_execute("SELECT pg_stat_force_next_flush()").await?;
        Ok(())
    }
}

impl Worker for RawInsert {
    async fn op(&mut self, i: usize) -> Result<()> {
        let version = i64::try_from(i / AGGREGATES + 1)?;
        let metadata = self.events.metadata_json();
        self.client
            .execute(
                &self.insert,
                &[&self.category, &self.ids[i % AGGREGATES], &version, &"Deposited", &1i32, &self.payload, &metadata],
            )
            .await?;
        Ok(())
    }
}

/// One multi-row INSERT (`unnest` of arrays) per operation: `size` deposits into stream
/// `{prefix}{i}`, versions 1 to `size`.
pub struct RawBatch {
    client: Object,
    insert: Statement,
    prefix: String,
    payloads: Vec<String>,
    events: EventMaker,
}

impl RawBatch {
    /// A worker on its own pooled connection, writing `size` rows per statement into new
    /// streams named `{prefix}{i}`.
    pub async fn new(pool: &Pool, schema: &str, size: usize, prefix: &str) -> Result<Self> {
        Self::with_cast(pool, schema, size, prefix, Cast::Json).await
    }

    /// [`RawBatch::new`] with the given cast of payload and metadata.
    pub async fn with_cast(pool: &Pool, schema: &str, size: usize, prefix: &str, cast: Cast) -> Result<Self> {
        let client = pool.get().await?;
        let to = cast.sql();
        let insert = client
            .prepare(&format!(
                "INSERT INTO \"{schema}\".{TABLE} \
                   (category, stream_id, version, event_type, schema_version, payload, metadata) \
                 SELECT 'raw_batch', $1, u.n, 'Deposited', 1, u.p::{to}, u.m::{to} \
                 FROM unnest($2::text[], $3::text[]) WITH ORDINALITY AS u(p, m, n)"
            ))
            .await?;
        Ok(RawBatch {
            client,
            insert,
            prefix: prefix.to_owned(),
            payloads: vec![deposit_payload(); size],
            events: EventMaker::default(),
        })
    }
}

impl Worker for RawBatch {
    async fn op(&mut self, i: usize) -> Result<()> {
        let stream = format!("{}{i}", self.prefix);
        let metadata: Vec<String> = self.payloads.iter().map(|_| self.events.metadata_json()).collect();
        self.client.execute(&self.insert, &[&stream, &self.payloads, &metadata]).await?;
        Ok(())
    }
}

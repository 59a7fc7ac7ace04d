//! Long streams against a raw read, and the memory and allocations of loads and commands.
//!
//! - The raw baseline of `command_10k_stream_no_snapshot` ([`RawLongCommand`]): the stream's
//!   rows read with tokio-postgres in one statement (`version`, `event_type`, `payload::text`,
//!   as an application would select them), each payload decoded with serde_json into the same
//!   `AccountEvent` and folded into the same `Account` as the rows arrive, then one single-row
//!   INSERT, the command's append. [`RawLoad`] is the same without the INSERT, against
//!   `Cqrs::load` ([`OursLoad`]).
//! - `load_100k_events_4k`, `load_1k_events_1m` ([`big_load`]): the bytes live at the peak of
//!   one `Cqrs::load` of a stream of 100,000 events of 4 KiB (400 MB) and of 1,000 events of
//!   1 MiB (1 GB), above where they were before it, counted by the process's allocator
//!   ([`crate::alloc`]).

use std::time::Instant;

use deadpool_postgres::{Object, Pool};
use eventloom_core::model::{ExpectedVersion, NewEvent};
use eventloom_core::prelude::*;
use eventloom_core::{store::EventStore, write::Cqrs};
use eventloom_postgres::PgEventStore;
use futures_util::TryStreamExt;
use tokio_postgres::Statement;

use crate::Result;
use crate::alloc::{Measure, Tally};
use crate::counted::Counted;
use crate::domain::{Account, AccountEvent, EventMaker};
use crate::load::Worker;
use crate::raw::RawInsert;
use crate::report::{Record, Unit};

/// The statement the raw baseline reads a stream with.
fn read_sql(schema: &str) -> String {
    format!(
        "SELECT version, event_type, payload::text FROM \"{schema}\".events \
         WHERE category = $1 AND stream_id = $2 ORDER BY version"
    )
}

/// [`read_sql`] with more columns after the first three (read and decoded too): what the
/// store's other columns cost a raw read (`soak_load`).
fn wide_read_sql(schema: &str, columns: &str) -> String {
    let columns = columns.replace("{schema}", &format!("\"{schema}\""));
    format!(
        "SELECT version, event_type, payload::text, {columns} \
         FROM \"{schema}\".events WHERE category = $1 AND stream_id = $2 ORDER BY version"
    )
}

/// A `xid8` column in binary, as the store reads it.
struct Xid8(u64);

impl<'a> tokio_postgres::types::FromSql<'a> for Xid8 {
    fn from_sql(_: &tokio_postgres::types::Type, raw: &'a [u8]) -> std::result::Result<Self, crate::BoxError> {
        let bytes: [u8; 8] = raw.try_into().map_err(|_| format!("a xid8 of {} bytes", raw.len()))?;
        Ok(Xid8(u64::from_be_bytes(bytes)))
    }

    fn accepts(ty: &tokio_postgres::types::Type) -> bool {
        *ty == tokio_postgres::types::Type::XID8
    }
}

/// The fields of a deposit's payload, as an application without the framework decodes them.
#[derive(serde::Deserialize)]
struct DepositedFields {
    amount: u64,
}

/// Reads account `id`'s stream with tokio-postgres and folds it: the raw load.
async fn raw_fold(client: &Object, read: &Statement, id: &str) -> Result<(Account, u64)> {
    raw_fold_columns(client, read, id, false).await
}

/// [`raw_fold`], reading the columns of [`wide_read_sql`] too when `wide`.
async fn raw_fold_columns(client: &Object, read: &Statement, id: &str, wide: bool) -> Result<(Account, u64)> {
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&<Account as Aggregate>::TYPE, &id];
    let rows = client.query_raw(read, params).await?;
    let mut rows = std::pin::pin!(rows);
    let mut account = Account::default();
    let mut version = 0i64;
    while let Some(row) = rows.try_next().await? {
        version = row.try_get(0)?;
        let event_type: &str = row.try_get(1)?;
        let payload: &str = row.try_get(2)?;
        if wide {
            for i in 3..row.len() {
                let ty = row.columns()[i].type_().clone();
                if ty == tokio_postgres::types::Type::INT4 {
                    std::hint::black_box(row.try_get::<_, Option<i32>>(i)?);
                } else if ty == tokio_postgres::types::Type::INT8 {
                    std::hint::black_box(row.try_get::<_, Option<i64>>(i)?);
                } else if ty == tokio_postgres::types::Type::XID8 {
                    let tx: Option<Xid8> = row.try_get(i)?;
                    std::hint::black_box(tx.map(|Xid8(tx)| tx));
                } else {
                    std::hint::black_box(row.try_get::<_, Option<&str>>(i)?);
                }
            }
        }
        let event = match event_type {
            "Deposited" => AccountEvent::Deposited { amount: serde_json::from_str::<DepositedFields>(payload)?.amount },
            other => return Err(format!("unknown event type {other:?}").into()),
        };
        account.apply(&event);
    }
    Ok((account, u64::try_from(version)?))
}

/// The raw baseline of a command on a long stream: the raw load, then one single-row INSERT.
pub struct RawLongCommand {
    client: Object,
    read: Statement,
    id: String,
    insert: RawInsert,
}

impl RawLongCommand {
    /// Commands on account `id`'s stream of the store in `schema`, appending rows of category
    /// `raw_long` to the raw table.
    pub async fn new(pool: &Pool, schema: &str, id: &str, ids: std::sync::Arc<[String]>) -> Result<Self> {
        let client = pool.get().await?;
        let read = client.prepare(&read_sql(schema)).await?;
        let insert = RawInsert::new(pool, schema, "raw_long", ids).await?;
        Ok(RawLongCommand { client, read, id: id.to_owned(), insert })
    }
}

impl Worker for RawLongCommand {
    async fn op(&mut self, i: usize) -> Result<()> {
        let (account, version) = raw_fold(&self.client, &self.read, &self.id).await?;
        if account.balance != version {
            return Err(format!("raw: balance {} at version {version}", account.balance).into());
        }
        self.insert.op(i).await
    }
}

/// The raw load alone.
pub struct RawLoad {
    client: Object,
    read: Statement,
    id: String,
    wide: bool,
}

impl RawLoad {
    /// Loads of account `id` of the store in `schema`.
    pub async fn new(pool: &Pool, schema: &str, id: &str) -> Result<Self> {
        let client = pool.get().await?;
        let read = client.prepare(&read_sql(schema)).await?;
        Ok(RawLoad { client, read, id: id.to_owned(), wide: false })
    }

    /// Loads of account `id` reading `columns` too ([`wide_read_sql`]).
    pub async fn wide(pool: &Pool, schema: &str, id: &str, columns: &str) -> Result<Self> {
        let client = pool.get().await?;
        let read = client.prepare(&wide_read_sql(schema, columns)).await?;
        Ok(RawLoad { client, read, id: id.to_owned(), wide: true })
    }
}

impl Worker for RawLoad {
    async fn op(&mut self, _: usize) -> Result<()> {
        let (account, version) = raw_fold_columns(&self.client, &self.read, &self.id, self.wide).await?;
        if account.balance != version {
            return Err(format!("raw: balance {} at version {version}", account.balance).into());
        }
        Ok(())
    }
}

/// `Cqrs::load` of one account, through an engine on `S`.
pub struct OursLoad<S = PgEventStore> {
    cqrs: Cqrs<Account, S>,
    id: String,
}

impl<S: EventStore> OursLoad<S> {
    /// Loads of account `id` through `cqrs`.
    pub fn new(cqrs: Cqrs<Account, S>, id: &str) -> Self {
        OursLoad { cqrs, id: id.to_owned() }
    }
}

/// An engine like `engine` (no cache, no snapshots) whose store reads each page into
/// `RecordedEvent`s before folding it, as every load did before `EventStore::fold_stream`: a
/// wrapper of the PostgreSQL store that keeps `fold_stream`'s default
/// (`store::fold_read_stream`).
pub fn collecting<A: Aggregate>(store: &PgEventStore) -> Cqrs<A, Counted> {
    Cqrs::new(Counted::new(store.clone())).with_cache_capacity(0)
}

/// The PostgreSQL store's own fold, in the pages a store that reads each page whole is asked
/// for: it forwards `fold_stream` but not `folds_row_by_row`, so that the engine loads a stream
/// in pages of its batch size (10,000 events), as it did before it asked such a store for the
/// whole stream at once (2026-12-04).
#[derive(Debug, Clone)]
pub struct Paged(pub PgEventStore);

impl eventloom_core::store::DelegateEventStore for Paged {
    type Inner = PgEventStore;
    fn inner(&self) -> &PgEventStore {
        &self.0
    }

    fn fold_stream<'a>(
        &'a self,
        stream: &'a StreamId,
        from_version: u64,
        limit: usize,
        max_bytes: usize,
        fold: &'a mut (dyn FnMut(eventloom_core::model::EventRef<'_>) -> eventloom_core::Result<()> + Send),
    ) -> eventloom_core::store::BoxFuture<'a, eventloom_core::Result<eventloom_core::store::FoldedPage>> {
        self.0.fold_stream(stream, from_version, limit, max_bytes, fold)
    }
}

/// An engine like `engine` (no cache, no snapshots) over [`Paged`].
pub fn paged<A: Aggregate>(store: &PgEventStore) -> Cqrs<A, Paged> {
    Cqrs::new(Paged(store.clone())).with_cache_capacity(0)
}

impl<S: EventStore> Worker for OursLoad<S> {
    async fn op(&mut self, _: usize) -> Result<()> {
        let (account, version) = self.cqrs.load(&self.id).await?;
        if account.balance != version {
            return Err(format!("ours: balance {} at version {version}", account.balance).into());
        }
        Ok(())
    }
}

/// Counts the allocations of `ops` operations of `worker`, one at a time, numbered from `first`.
pub async fn allocations<W: Worker>(worker: &mut W, first: usize, ops: usize) -> Result<Tally> {
    let measure = Measure::start();
    for i in first..first + ops {
        worker.op(i).await?;
    }
    Ok(measure.stop())
}

/// A blob store's one event: a chunk of bytes written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
pub enum BlobEvent {
    /// Some data.
    Written {
        /// The data.
        data: String,
    },
}

/// Folds blobs: how many and how many bytes, keeping none of them.
#[derive(Debug, Default)]
pub struct Blobs {
    /// Events folded.
    pub events: u64,
    /// Bytes of data folded.
    pub bytes: u64,
}

impl Aggregate for Blobs {
    const TYPE: &'static str = "blobs";
    type Event = BlobEvent;
    type Error = std::convert::Infallible;

    fn apply(&mut self, BlobEvent::Written { data }: &BlobEvent) {
        self.events += 1;
        self.bytes += data.len() as u64;
    }
}

/// One memory scenario: a stream of `events` events of `size` bytes of data each.
pub struct BigStream {
    /// The scenario's name.
    pub scenario: &'static str,
    /// The stream's id.
    pub id: &'static str,
    /// How many events.
    pub events: u64,
    /// The bytes of data per event.
    pub size: usize,
}

/// The memory scenarios.
pub const BIG_STREAMS: [BigStream; 2] = [
    BigStream { scenario: "load_100k_events_4k", id: "big-100k-4k", events: 100_000, size: 4 * 1024 },
    // About the largest event the store takes: a payload of at most 1 MiB, the data with its
    // JSON around it (`{"Written":{"data":"..."}}`, 18 bytes at least).
    BigStream { scenario: "load_1k_events_1m", id: "big-1k-1m", events: 1_000, size: 1024 * 1024 - 64 },
];

/// The goal: a load's peak above its start, in MB.
const PEAK_GOAL_MB: f64 = 30.0;
/// At most this many bytes of events per append while building a big stream.
const BUILD_BYTES: usize = 8 * 1024 * 1024;

/// `size` bytes of data: printable, varied within a line, and compressible (PostgreSQL
/// compresses values this size, so the 1.4 GB of the two streams take little disk; loads read
/// them decompressed all the same).
fn blob(size: usize, seed: u64) -> String {
    const LINE: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_";
    let offset = usize::try_from(seed % LINE.len() as u64).unwrap_or(0);
    (0..size).map(|i| char::from(LINE[(i + offset) % LINE.len()])).collect()
}

/// Writes `stream` (when it is not there yet), then measures one load of it by a fresh engine
/// (no cache, no snapshots, default batch bounds), with the allocator's counters reset just
/// before: the peak of live bytes above that start, the allocations, the time.
pub async fn big_load(store: &PgEventStore, stream: &BigStream) -> Result<Record> {
    let id = StreamId::new(Blobs::TYPE, stream.id)?;
    let started = Instant::now();
    let per_append = (BUILD_BYTES / stream.size).max(1) as u64;
    let maker = EventMaker::default();
    let mut version = store.stream_version(&id).await?;
    while version < stream.events {
        let n = per_append.min(stream.events - version);
        let events = (version..version + n)
            .map(|v| NewEvent::encode(&BlobEvent::Written { data: blob(stream.size, v) }, maker.metadata()))
            .collect::<Result<Vec<_>, _>>()?;
        let expected = if version == 0 { ExpectedVersion::NoStream } else { ExpectedVersion::Exact(version) };
        store.append(&id, expected, events).await?;
        version += n;
    }
    eprintln!(
        "{}: {} events of {} bytes written in {:.1} s",
        stream.scenario,
        stream.events,
        stream.size,
        started.elapsed().as_secs_f64()
    );
    let engine: Cqrs<Blobs, PgEventStore> = Cqrs::new(store.clone()).with_cache_capacity(0);
    let measure = Measure::start();
    let started = Instant::now();
    let (blobs, version) = engine.load(stream.id).await?;
    let elapsed = started.elapsed();
    let counted = measure.stop();
    let expected_bytes = stream.events * stream.size as u64;
    check_blobs(stream, &blobs, version)?;
    // The same load as before `EventStore::fold_stream`: pages read whole, then folded.
    let before: Cqrs<Blobs, Counted> = collecting(store);
    let measure = Measure::start();
    let started = Instant::now();
    let (blobs, version) = before.load(stream.id).await?;
    let collected_elapsed = started.elapsed();
    let collected = measure.stop();
    check_blobs(stream, &blobs, version)?;
    eprintln!(
        "{}: the same load reading each page whole before folding it (as before fold_stream): {:.0} ms, peak \
         {:.1} MB, {:.1} allocations per event",
        stream.scenario,
        collected_elapsed.as_secs_f64() * 1e3,
        collected.peak_mb(),
        collected.per(usize::try_from(stream.events)?)
    );
    let events = usize::try_from(stream.events)?;
    eprintln!(
        "{}: one load of {} MB: {:.0} ms, peak {:.1} MB above the start (goal: under {PEAK_GOAL_MB} MB), {} \
         allocations ({:.1} per event), {:.1} MB allocated in all",
        stream.scenario,
        expected_bytes as f64 / 1e6,
        elapsed.as_secs_f64() * 1e3,
        counted.peak_mb(),
        counted.allocations,
        counted.per(events),
        counted.bytes as f64 / 1e6
    );
    Ok(Record::without_raw(stream.scenario, Unit::Megabytes, counted.peak_mb())
        .with("load_ms", elapsed.as_secs_f64() * 1e3)
        .with("events", stream.events)
        .with("event_bytes", stream.size)
        .with("allocations_per_event", counted.per(events))
        .with("goal_mb", PEAK_GOAL_MB)
        .with("collected_peak_mb", collected.peak_mb())
        .with("collected_load_ms", collected_elapsed.as_secs_f64() * 1e3))
}

/// Fails unless `blobs` is the whole of `stream` at its last version.
fn check_blobs(stream: &BigStream, blobs: &Blobs, version: u64) -> Result<()> {
    let expected_bytes = stream.events * stream.size as u64;
    if version != stream.events || blobs.events != stream.events || blobs.bytes != expected_bytes {
        return Err(format!(
            "{}: loaded {} events, {} bytes, at version {version}; expected {} events, {expected_bytes} bytes",
            stream.scenario, blobs.events, blobs.bytes, stream.events
        )
        .into());
    }
    Ok(())
}

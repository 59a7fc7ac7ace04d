//! The read side the Redis scenarios measure: a projection of the accounts into one view per
//! stream, the events it catches up on, and the raw redis-rs baselines it is compared with.

use eventloom_core::model::ExpectedVersion;
use eventloom_core::prelude::*;
use eventloom_core::{BoxError, Projection, read::ViewReader, store::EventStore};
use eventloom_postgres::PgEventStore;
use redis::aio::ConnectionManager;

use crate::Result;
use crate::domain::{Account, AccountEvent, EventMaker};
use crate::load::Worker;

/// One account's view: what came in, and the last version folded.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountView {
    /// The sum of the deposits.
    pub balance: u64,
    /// The version of the stream's last event folded in.
    pub version: u64,
}

impl AccountView {
    /// The view after `deposits` deposits of 1, as JSON: what the projection stores then.
    pub fn json_after(deposits: u64) -> String {
        serde_json::to_string(&AccountView { balance: deposits, version: deposits }).expect("a view always serializes")
    }
}

/// The projection: one [`AccountView`] per account stream.
#[derive(Debug, Clone, Copy, Default)]
pub struct AccountViews;

impl Projection for AccountViews {
    // Letters and `_` only, so the name is its own encoding in Redis keys (see `view_key`).
    const NAME: &'static str = "account_views";
    type Events = Account;
    type View = AccountView;

    fn apply(&self, view: &mut Option<AccountView>, event: &EventEnvelope<AccountEvent>) -> Result<(), BoxError> {
        let AccountEvent::Deposited { amount } = event.event;
        let view = view.get_or_insert_with(AccountView::default);
        view.balance += amount;
        view.version = event.version;
        Ok(())
    }
}

/// The Redis key of a view of [`AccountViews`] in `generation` under `prefix`, as
/// `RedisViewStore` lays it out: `<prefix>{p:<projection>}:g<generation>:v:<id>` (the live
/// generation's id is in `ProjectionStatus::live`).
pub fn view_key(prefix: &str, generation: u64, id: &str) -> String {
    format!("{prefix}{{p:{}}}:g{generation}:v:{id}", AccountViews::NAME)
}

/// Fills the store for the catch-up: `streams` account streams `{prefix}{n}`, each written in
/// rounds of `batch` deposits by one `EventStore::append`. Operation `i` is round
/// `i / streams` of stream `i % streams`, so with a number of tasks that divides `streams`
/// every stream's rounds run in order on one task.
pub struct CatchUpLoad {
    store: PgEventStore,
    streams: usize,
    batch: usize,
    prefix: String,
    events: EventMaker,
}

impl CatchUpLoad {
    /// Appends into `store`, `batch` events per call, round-robin over `streams` streams.
    pub fn new(store: PgEventStore, streams: usize, batch: usize, prefix: &str) -> Self {
        CatchUpLoad { store, streams, batch, prefix: prefix.to_owned(), events: EventMaker::default() }
    }
}

impl Worker for CatchUpLoad {
    async fn op(&mut self, i: usize) -> Result<()> {
        let stream = StreamId::new(
            <Account as eventloom_core::Aggregate>::TYPE,
            format!("{}{}", self.prefix, i % self.streams),
        )?;
        let before = u64::try_from(i / self.streams * self.batch)?;
        let expected = if before == 0 { ExpectedVersion::NoStream } else { ExpectedVersion::Exact(before) };
        let events = (0..self.batch).map(|_| self.events.deposit()).collect();
        self.store.append(&stream, expected, events).await?;
        Ok(())
    }
}

/// Commands per pipeline of the raw catch-up baseline.
const PIPELINE: usize = 1_000;

/// The raw baseline of the catch-up: one `SET` per event of that event's view JSON to the
/// view's key (in generation 1: what a projector writing every event's view would send),
/// [`PIPELINE`] commands per pipeline, in the order the events were appended (runs of `run` events per stream,
/// round-robin over `streams` streams).
pub struct RawViewWrites {
    connection: ConnectionManager,
    prefix: String,
    ids: String,
    streams: usize,
    run: usize,
}

impl RawViewWrites {
    /// Writes under `prefix` the views of streams `{ids}0` .. `{ids}{streams - 1}`, whose
    /// events came `run` at a time, through `connection` (the type `RedisViewStore` uses).
    pub fn new(connection: ConnectionManager, prefix: &str, ids: &str, streams: usize, run: usize) -> Self {
        RawViewWrites { connection, prefix: prefix.to_owned(), ids: ids.to_owned(), streams, run }
    }

    /// Writes the views of `events` events, pipeline after pipeline; returns the bytes of the
    /// values sent.
    pub async fn write(&mut self, events: usize) -> Result<usize> {
        let mut bytes = 0;
        let mut pipe = redis::pipe();
        let per_round = self.streams * self.run;
        for i in 0..events {
            let (stream, within) = (i % per_round / self.run, i % self.run);
            let json = AccountView::json_after(u64::try_from(i / per_round * self.run + within + 1)?);
            bytes += json.len();
            pipe.set(view_key(&self.prefix, 1, &format!("{}{stream}", self.ids)), json).ignore();
            if (i + 1) % PIPELINE == 0 || i + 1 == events {
                pipe.exec_async(&mut self.connection).await?;
                pipe.clear();
            }
        }
        Ok(bytes)
    }
}

/// `ViewReader::get` of one view.
pub struct ViewGet {
    /// The reader.
    pub reader: ViewReader<AccountView>,
    /// The view's id.
    pub id: String,
}

impl Worker for ViewGet {
    async fn op(&mut self, _: usize) -> Result<()> {
        self.reader.get(&self.id).await?.ok_or("the view queried is missing")?;
        Ok(())
    }
}

/// A raw `GET` of one view's key through redis-rs.
pub struct RawGet {
    /// The connection, of the type `RedisViewStore` uses.
    pub connection: ConnectionManager,
    /// The view's key.
    pub key: String,
}

impl Worker for RawGet {
    async fn op(&mut self, _: usize) -> Result<()> {
        let value: Option<String> = redis::cmd("GET").arg(&self.key).query_async(&mut self.connection).await?;
        value.ok_or("the key queried is missing")?;
        Ok(())
    }
}

/// A `MATCH` pattern for every key that starts with `prefix` (glob characters escaped).
fn prefix_pattern(prefix: &str) -> String {
    let mut pattern = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('*');
    pattern
}

/// One page of `SCAN cursor MATCH pattern COUNT 1000`: the next cursor (0 at the end) and keys.
async fn scan(connection: &mut ConnectionManager, pattern: &str, cursor: u64) -> Result<(u64, Vec<String>)> {
    let page = redis::cmd("SCAN")
        .arg(cursor)
        .arg("MATCH")
        .arg(pattern)
        .arg("COUNT")
        .arg(1_000)
        .query_async(connection)
        .await?;
    Ok(page)
}

/// Deletes every key that starts with `prefix` (`SCAN MATCH` + `UNLINK`, nothing else);
/// returns how many.
pub async fn delete_keys(connection: &mut ConnectionManager, prefix: &str) -> Result<usize> {
    let pattern = prefix_pattern(prefix);
    let (mut cursor, mut deleted) = (0, 0);
    loop {
        let (next, keys) = scan(connection, &pattern, cursor).await?;
        if !keys.is_empty() {
            let _: usize = redis::cmd("UNLINK").arg(&keys).query_async(connection).await?;
            deleted += keys.len();
        }
        if next == 0 {
            return Ok(deleted);
        }
        cursor = next;
    }
}

/// Whether any key starts with `prefix`.
pub async fn any_keys(connection: &mut ConnectionManager, prefix: &str) -> Result<bool> {
    let pattern = prefix_pattern(prefix);
    let mut cursor = 0;
    loop {
        let (next, keys) = scan(connection, &pattern, cursor).await?;
        if !keys.is_empty() {
            return Ok(true);
        }
        if next == 0 {
            return Ok(false);
        }
        cursor = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_only_the_prefix() {
        assert_eq!(prefix_pattern("bench:1:"), "bench:1:*");
        assert_eq!(prefix_pattern("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\*");
    }

    #[test]
    fn keys_follow_the_view_store_layout() {
        assert_eq!(view_key("x:", 3, "acc-1"), "x:{p:account_views}:g3:v:acc-1");
        assert_eq!(AccountView::json_after(200), r#"{"balance":200,"version":200}"#);
    }
}

/// A deposit's payload as stored (the event type is a column of its own).
#[derive(Deserialize)]
struct DepositPayload {
    amount: u64,
}

/// The raw baseline of the catch-up that does the projector's work without the framework: the
/// events read from PostgreSQL with tokio-postgres by the event store's own ordered query
/// (`read_all.sql`, below the oldest running transaction) in pages of the projector's batch
/// size, each payload decoded, each account's view folded in a map, and one `SET` of the view's
/// JSON per event, pipelined per page, the page's pipeline sent before the next page is read
/// (as a projector commits a batch before it reads the next).
pub struct RawCatchUp {
    client: tokio_postgres::Client,
    read: tokio_postgres::Statement,
    connection: ConnectionManager,
    prefix: String,
    batch: usize,
}

impl RawCatchUp {
    /// Reads the events of `schema` through `client` and writes the views under `prefix`
    /// through `connection`, `batch` events per page.
    pub async fn new(
        client: tokio_postgres::Client,
        schema: &str,
        connection: ConnectionManager,
        prefix: &str,
        batch: usize,
    ) -> Result<Self> {
        let sql = include_str!("../../../eventloom-postgres/sql/statements/read_all.sql")
            .replace("{schema}", &format!("\"{schema}\""));
        let read = client.prepare(&sql).await?;
        Ok(RawCatchUp { client, read, connection, prefix: prefix.to_owned(), batch })
    }

    /// Reads the whole log and writes every event's view; returns the events read.
    pub async fn run(&mut self) -> Result<usize> {
        let (mut transaction, mut sequence, mut events) = ("0".to_owned(), 0i64, 0usize);
        let mut views: std::collections::HashMap<String, AccountView> = std::collections::HashMap::new();
        let limit = i64::try_from(self.batch)?;
        loop {
            let rows = self.client.query(&self.read, &[&transaction, &sequence, &limit]).await?;
            let Some(last) = rows.last() else { break };
            (transaction, sequence) = (last.try_get("transaction_text")?, last.try_get("sequence")?);
            let mut pipe = redis::pipe();
            for row in &rows {
                let id: &str = row.try_get("stream_id")?;
                let version: i64 = row.try_get("version")?;
                let DepositPayload { amount } = serde_json::from_str(row.try_get::<_, &str>("payload_text")?)?;
                let view = views.entry(id.to_owned()).or_default();
                view.balance += amount;
                view.version = u64::try_from(version)?;
                pipe.set(view_key(&self.prefix, 1, id), serde_json::to_string(view)?).ignore();
            }
            events += rows.len();
            pipe.exec_async(&mut self.connection).await?;
        }
        Ok(events)
    }
}

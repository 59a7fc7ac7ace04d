//! [`PgEventStore`]: the event store on PostgreSQL.

mod combine;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use deadpool_postgres::Pool;
use eventloom_core::store::BoxFuture;
use eventloom_core::{
    Error as CoreError, Position, StreamId,
    model::Timestamp,
    model::{EventRef, ExpectedVersion, NewEvent, RecordedEvent, StoredMetadata},
    store::{AppendOutcome, Appended, CommandEntry, CommandRecord, EventStore, FoldedPage, Relayed},
    write::Fingerprint,
};
use tokio::sync::{Notify, watch};
use tokio_postgres::Row;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tracing::Instrument;

use crate::connect::Connector;
use crate::db::{At, Conn, Db, Fields, shown};
use crate::schema::{MIGRATIONS, Sql, applied_migrations, fixed};
use crate::{AppliedMigration, Blocker, Error, Holdback, PgConfig, ReplicaLag, Result, SchemaVersion};

/// At most one append per debounce carries the wake-up NOTIFY (see [`Announcements`]), and the
/// notifier looks once per debounce: wake-up latency for subscribers in other processes against
/// load on the server.
const NOTIFY_DEBOUNCE: Duration = Duration::from_millis(2);

/// How long a wake-up waits for the read replica to replay the commits it announces before it
/// wakes subscribers anyway (they poll meanwhile, so nothing is lost when a replica lags more).
const REPLAY_WAIT: Duration = Duration::from_secs(5);

/// How many streams' versions on the primary a store with a read replica remembers (see
/// [`Replica`]); when full it forgets them all and learns again.
const KNOWN_STREAMS: usize = 4096;

/// A fixed key for the advisory lock that serializes migrations (any schema, any process).
const MIGRATION_LOCK: i64 = 0x6371_7273_6d69_6772; // "cqrsmigr"

/// An [`EventStore`] on PostgreSQL.
///
/// - **Appends** are one round-trip whatever their number of events, in one transaction. With
///   an exact expected version (what the engine sends): one prepared statement that inserts the
///   events at the next versions only when the stream is at the version expected, and records
///   the command id; racing writers collide on the primary key of `events`, so exactly one wins
///   each version and the others get [`Conflict`](eventloom_core::Error::Conflict). With
///   [`ExpectedVersion::Any`]: a call of the schema's `append` function, where writers of one
///   stream queue on an advisory lock.
/// - **Reads in order** follow `(transaction id, sequence)` and stop below the oldest running
///   transaction, so an append that commits late is never skipped by a subscriber.
/// - **Wake-ups** for subscribers: a `NOTIFY` carried by at most one append per 2 ms (one at a
///   time), or sent alone for appends none announced, received by a dedicated `LISTEN`
///   connection; subscribers also poll.
///
/// Clones share the pool.
///
/// # Examples
///
/// ```no_run
/// use eventloom_core::{write::Cqrs, store::EventStore};
/// use eventloom_postgres::{PgConfig, PgEventStore};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let config = PgConfig::from_url(&std::env::var("DATABASE_URL")?)?;
/// let store = PgEventStore::connect(config).await?;
/// store.migrate().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PgEventStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// Set once the stored transaction ids are known to belong to this cluster.
    same_cluster: AtomicBool,
    db: Db,
    sql: Arc<Sql>,
    config: PgConfig,
    connector: Connector,
    wake: Arc<Wake>,
    /// The read replica, when there is one.
    replica: Option<Replica>,
    /// Write combining, when it is on ([`PgConfig::write_combining`]).
    combiner: Option<combine::Combiner>,
}

/// The read replica ([`PgConfig::read_replica`]): its pool, and the newest version of each
/// stream that this process knows the primary holds, from its own appends and from conflicts.
/// A stream load that finds the replica behind one of them reads the rest from the primary, so
/// an engine that retries after a conflict decides on the newer events rather than on the same
/// stale ones again.
struct Replica {
    db: Db,
    known: Mutex<HashMap<StreamId, u64>>,
}

impl Replica {
    fn known(&self) -> std::sync::MutexGuard<'_, HashMap<StreamId, u64>> {
        self.known.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The primary holds `stream` up to `version` at least.
    fn learn(&self, stream: &StreamId, version: u64) {
        let mut known = self.known();
        if known.len() >= KNOWN_STREAMS && !known.contains_key(stream) {
            known.clear();
        }
        let entry = known.entry(stream.clone()).or_insert(0);
        *entry = (*entry).max(version);
    }

    /// The newest version of `stream` known to be on the primary.
    fn version_of(&self, stream: &StreamId) -> Option<u64> {
        self.known().get(stream).copied()
    }
}

/// Wake-ups: the local signal, the coalesced NOTIFY and the LISTEN connection.
struct Wake {
    local: watch::Sender<u64>,
    /// The NOTIFYs announcing appends to other processes (see [`Announcements`]).
    announcements: Announcements,
    /// Wakes the notifier when [`Announcements::armed`] is set (and when the store closes).
    kick: Notify,
    /// Whether the notifier task runs (see [`Running`]).
    notifier: AtomicBool,
    /// Whether the listener task runs (see [`Running`]).
    listener: AtomicBool,
    closed: watch::Sender<bool>,
}

/// When the store's NOTIFYs went out, so that appends carry them instead of costing a
/// transaction each: the first exact append a debounce or more after the last carrier carries
/// the `pg_notify` in its own statement (`append_one.sql`, `append_exact.sql`,
/// `append_combined_one.sql`), delivered at its commit; an append that carries none arms the
/// notifier, which sends one alone only when no NOTIFY has announced the append a debounce
/// later and no carriers are committing (the appends stopped, come slower than one a debounce,
/// or none of them can carry one).
///
/// Times are microseconds after `epoch`. A NOTIFY announces every append answered before it was
/// sent: the append had committed, and the NOTIFY's transaction began after.
struct Announcements {
    epoch: std::time::Instant,
    /// When the newest NOTIFY went out (carried or alone); 0 before the first.
    sent: AtomicU64,
    /// When the newest carrier was sent: one per debounce. (Not `sent`: a NOTIFY alone must
    /// not keep the next append from carrying its own, or appends spaced a little more than
    /// the debounce would each wait for one alone.)
    carried: AtomicU64,
    /// When the newest carried NOTIFY was committed with its append.
    committed: AtomicU64,
    /// Whether an append carrying the NOTIFY is in flight: one at a time, so that a process
    /// never queues more than one transaction on the server's lock of notifying commits.
    carrying: AtomicBool,
    /// When the newest append that carried no NOTIFY was answered.
    unannounced: AtomicU64,
    /// Whether the notifier has an unannounced append to watch.
    armed: AtomicBool,
}

impl Announcements {
    fn new() -> Self {
        Announcements {
            epoch: std::time::Instant::now(),
            sent: AtomicU64::new(0),
            carried: AtomicU64::new(0),
            committed: AtomicU64::new(0),
            carrying: AtomicBool::new(false),
            unannounced: AtomicU64::new(0),
            armed: AtomicBool::new(false),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX).max(1)
    }

    /// Whether the append about to be sent carries the NOTIFY: at most one per debounce, and
    /// none while another is in flight (see [`Carrying`], which ends it).
    fn carry(&self) -> bool {
        let now = self.now();
        let last = self.carried.load(Ordering::SeqCst);
        if !(last == 0 || now.saturating_sub(last) >= debounce_micros()) {
            return false;
        }
        if self.carrying.swap(true, Ordering::SeqCst) {
            return false;
        }
        if self.carried.compare_exchange(last, now, Ordering::SeqCst, Ordering::SeqCst).is_err() {
            self.carrying.store(false, Ordering::SeqCst);
            return false;
        }
        self.sent.fetch_max(now, Ordering::SeqCst);
        true
    }

    /// Notes an append answered without a NOTIFY of its own (or whose carried one may not
    /// have gone out); true when the notifier must be woken to watch it.
    fn unannounced(&self) -> bool {
        self.unannounced.fetch_max(self.now(), Ordering::SeqCst);
        !self.armed.swap(true, Ordering::SeqCst)
    }

    /// Whether a NOTIFY went out after the newest unannounced append was answered.
    fn announced(&self) -> bool {
        self.sent.load(Ordering::SeqCst) > self.unannounced.load(Ordering::SeqCst)
    }
}

/// An append statement that carries the NOTIFY ([`Announcements::carry`]). Unless it ends
/// having written (and so committed the NOTIFY with it), what it was to announce goes to the
/// notifier: after a failure, which rolled the NOTIFY back, and when its caller went away.
struct Carrying<'a> {
    store: &'a PgEventStore,
    written: bool,
}

impl<'a> Carrying<'a> {
    /// `Some` when the statement about to be sent is to carry the NOTIFY.
    fn start(store: &'a PgEventStore) -> Option<Self> {
        store.inner.wake.announcements.carry().then_some(Carrying { store, written: false })
    }

    fn ended(mut self, written: bool) {
        self.written = written;
    }
}

impl Drop for Carrying<'_> {
    fn drop(&mut self) {
        let announcements = &self.store.inner.wake.announcements;
        if self.written {
            announcements.committed.fetch_max(announcements.now(), Ordering::SeqCst);
        }
        announcements.carrying.store(false, Ordering::SeqCst);
        if !self.written {
            self.store.unannounced();
        }
    }
}

fn debounce_micros() -> u64 {
    u64::try_from(NOTIFY_DEBOUNCE.as_micros()).unwrap_or(u64::MAX)
}

impl Wake {
    fn bump(&self) {
        self.local.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Starts a background task on the runtime at hand unless one runs already (on this or
    /// another runtime): the first use on a new runtime after the one that ran it ended
    /// starts it again.
    fn start<F>(self: &Arc<Self>, which: fn(&Wake) -> &AtomicBool, task: impl FnOnce() -> F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        if which(self).load(Ordering::Acquire) || tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        if which(self).compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire).is_err() {
            return;
        }
        let running = Running { wake: self.clone(), which };
        let task = task();
        tokio::spawn(async move {
            let _running = running;
            task.await;
        });
    }
}

/// Marks a background task of [`Wake`] as running until its future is dropped: when it
/// returns, or when its runtime shuts down (which drops every task's future).
struct Running {
    wake: Arc<Wake>,
    which: fn(&Wake) -> &AtomicBool,
}

impl Drop for Running {
    fn drop(&mut self) {
        (self.which)(&self.wake).store(false, Ordering::Release);
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.wake.closed.send_replace(true);
        self.wake.kick.notify_one();
    }
}

impl std::fmt::Debug for PgEventStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgEventStore")
            .field("config", &self.inner.config)
            .field("pool", &self.inner.db.pool().status())
            .finish()
    }
}

fn pg(error: tokio_postgres::Error) -> CoreError {
    crate::connect::pg_error(error)
}

/// A server error where this crate's API returns its own [`Error`].
fn store_error(error: tokio_postgres::Error) -> Error {
    Error::Store(pg(error))
}

/// Whether the events were restored from another cluster (`restored_from_elsewhere.sql`).
fn restored(row: &Row) -> eventloom_core::Result<bool> {
    Fields::new(row, || "the transaction ids of the events".to_owned()).get("restored")
}

fn to_i64(value: u64, what: &'static str) -> eventloom_core::Result<i64> {
    i64::try_from(value).map_err(|_| CoreError::InvalidId { what, reason: format!("{value} is out of range") })
}

/// Stored data that cannot be what the store wrote, at `location`.
fn corrupt(location: String, reason: impl std::fmt::Display) -> CoreError {
    CoreError::Corrupt { location, reason: reason.to_string() }
}

/// Where a stored event is, for an error: its position, stream and version, as far as they
/// read (`?` for what does not). `stream` when it is known; otherwise it is read from the
/// row's `category` and `stream_id`.
fn event_location(row: &Row, stream: Option<&StreamId>) -> String {
    let stream =
        stream.map_or_else(|| format!("{}/{}", shown(row, "category"), shown(row, "stream_id")), ToString::to_string);
    format!(
        "event at position {}.{} (stream {stream}, version {})",
        transaction_shown(row),
        shown(row, "sequence"),
        shown(row, "version")
    )
}

/// The transaction id of an event's row: `transaction_text` (as most statements read it), or
/// `transaction_id` in binary (as `fold_stream.sql` does).
fn transaction_shown(row: &Row) -> String {
    match row.columns().iter().any(|c| c.name() == "transaction_text") {
        true => shown(row, "transaction_text"),
        false => shown(row, "transaction_id"),
    }
}

/// The events of `rows`, decoded by `decode` as they arrive, up to and including the one that
/// brings their stored sizes to `max_bytes` (see `eventloom_core::store::within_bytes`); the rows after it are
/// dropped unread.
async fn collect_within(
    conn: &Conn,
    rows: tokio_postgres::RowStream,
    max_bytes: usize,
    mut decode: impl FnMut(&Row) -> eventloom_core::Result<RecordedEvent>,
) -> eventloom_core::Result<Vec<RecordedEvent>> {
    let mut rows = std::pin::pin!(rows);
    let mut events = Vec::new();
    let mut total = 0usize;
    while let Some(row) = conn.next_row(&mut rows).await? {
        let event = decode(&row).inspect_err(|_| conn.discard())?;
        total = total.saturating_add(event.stored_size());
        events.push(event);
        if total >= max_bytes {
            break;
        }
    }
    Ok(events)
}

/// An event read in the order of the log (`read_all.sql`).
fn recorded(row: &Row) -> eventloom_core::Result<RecordedEvent> {
    let fields = Fields::new(row, || event_location(row, None));
    let stream = StreamId::new(fields.get::<&str>("category")?, fields.get::<&str>("stream_id")?)
        .map_err(|e| fields.corrupt(format_args!("stream id refused: {e}")))?;
    recorded_in(&stream, row)
}

/// An event of a known stream, from the row's columns `version`, `event_type`,
/// `schema_version`, `payload_text`, `metadata_text`, `transaction_text` and `sequence`.
fn recorded_in(stream: &StreamId, row: &Row) -> eventloom_core::Result<RecordedEvent> {
    let fields = Fields::new(row, || event_location(row, Some(stream)));
    let version = fields.unsigned("version")?;
    let event_type: String = fields.get("event_type")?;
    let schema_version = fields.unsigned_int("schema_version")?;
    let payload: &str = fields.get("payload_text")?;
    let metadata: &str = fields.get("metadata_text")?;
    let position = fields.position("transaction_text", "sequence")?;
    Ok(RecordedEvent {
        stream: stream.clone(),
        version,
        position,
        event_type: event_type.into(),
        schema_version,
        payload: payload.into(),
        // Decoded only when someone reads it.
        metadata: StoredMetadata::from_json(metadata),
    })
}

impl PgEventStore {
    /// Connects a pool (and checks one connection). Call [`migrate`](Self::migrate) before use.
    pub async fn connect(config: PgConfig) -> Result<Self> {
        let connector = Connector::new(&config)?;
        let pool = connector.pool(&config, &config.pg)?;
        drop(pool.get().await.map_err(|e| Error::Connect(e.to_string()))?);
        let replica = match &config.replica {
            Some(pg) => {
                let pool = connector.pool(&config, pg)?;
                drop(pool.get().await.map_err(|e| Error::Connect(format!("read replica: {e}")))?);
                Some(Replica { db: Db::new(pool, crate::connect::pg_error), known: Mutex::new(HashMap::new()) })
            }
            None => None,
        };
        Ok(Self::from_pool(pool, config, connector, replica))
    }

    fn from_pool(pool: Pool, config: PgConfig, connector: Connector, replica: Option<Replica>) -> Self {
        let wake = Arc::new(Wake {
            local: watch::Sender::new(0),
            announcements: Announcements::new(),
            kick: Notify::new(),
            notifier: AtomicBool::new(false),
            listener: AtomicBool::new(false),
            closed: watch::Sender::new(false),
        });
        let sql = Arc::new(Sql::new(&config.schema));
        let db = Db::new(pool, pg);
        PgEventStore {
            inner: Arc::new(Inner {
                same_cluster: AtomicBool::new(false),
                db,
                sql,
                combiner: config.combining.map(combine::Combiner::new),
                config,
                connector,
                wake,
                replica,
            }),
        }
    }

    /// The connection pool, shared with [`crate::PgSnapshotStore`] and the others made from
    /// this store.
    ///
    /// `deadpool-postgres` is a pre-1.0 crate: this method comes with the `interop` feature,
    /// and follows the version of `deadpool-postgres` that this crate depends on (an upgrade of
    /// it may change this type in a minor release). [`pool_status`](Self::pool_status) needs no
    /// feature.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// # let store = eventloom_postgres::PgEventStore::connect(eventloom_postgres::PgConfig::from_url("postgres://localhost/app")?).await?;
    /// let client = store.pool().get().await?;
    /// let one: i32 = client.query_one("SELECT 1", &[]).await?.get(0);
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "interop")]
    #[cfg_attr(docsrs, doc(cfg(feature = "interop")))]
    pub fn pool(&self) -> &Pool {
        self.inner.db.pool()
    }

    /// How many connections the pool holds, and how many of them are idle.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// use eventloom_postgres::{PgConfig, PgEventStore};
    ///
    /// let store = PgEventStore::connect(PgConfig::from_url("postgres://localhost/app")?.pool_size(8)).await?;
    /// let status = store.pool_status();
    /// assert_eq!(status.max_size, 8);
    /// assert!(status.idle <= status.size);
    /// # Ok(()) }
    /// ```
    pub fn pool_status(&self) -> crate::PoolStatus {
        let status = self.inner.db.pool().status();
        crate::PoolStatus { size: status.size, idle: status.available, max_size: status.max_size }
    }

    /// The pool, with this store's error mapping.
    pub(crate) fn db(&self) -> &Db {
        &self.inner.db
    }

    /// Where reads in order, stream loads and snapshot loads go: the read replica's pool, or
    /// the primary's when there is none.
    pub(crate) fn reader(&self) -> &Db {
        self.inner.replica.as_ref().map_or(&self.inner.db, |r| &r.db)
    }

    /// The settings.
    pub fn config(&self) -> &PgConfig {
        &self.inner.config
    }

    pub(crate) fn connector(&self) -> &Connector {
        &self.inner.connector
    }

    /// The schema's statements, built once per store and shared with the stores made from it.
    pub(crate) fn sql(&self) -> &Arc<Sql> {
        &self.inner.sql
    }

    /// Creates or upgrades the schema: versioned SQL embedded in the crate, applied in order
    /// under an advisory lock, so several processes may run it at once. With a read replica it
    /// then waits (at most 30 s, else [`Error::Connect`]) until the replica has replayed them.
    pub async fn migrate(&self) -> Result<()> {
        let mut client = self.inner.db.pool().get().await.map_err(crate::connect::unavailable)?;
        let sql = &self.inner.sql;
        let tx = client.transaction().await.map_err(store_error)?;
        tx.execute(fixed::MIGRATION_LOCK, &[&MIGRATION_LOCK]).await.map_err(store_error)?;
        tx.batch_execute(&sql.setup).await.map_err(|e| Error::migration(0, e))?;
        let applied = applied_migrations(&tx, sql).await?;
        for (version, name, text) in MIGRATIONS {
            let v = i32::try_from(*version).unwrap_or(i32::MAX);
            if applied.contains(&v) {
                continue;
            }
            tracing::info!(version, name, schema = %sql.schema, "applying migration");
            tx.batch_execute(&sql.migration(text)).await.map_err(|e| Error::migration(*version, e))?;
            tx.execute(&sql.record_migration, &[&v, name]).await.map_err(|e| Error::migration(*version, e))?;
        }
        tx.commit().await.map_err(store_error)?;
        // Back to the pool first: the wait reads the primary through it (a pool of one).
        drop(client);
        if let Some(replica) = &self.inner.replica {
            self.await_schema_on_replica(replica).await?;
        }
        Ok(())
    }

    /// Waits, for at most [`SCHEMA_REPLAY_WAIT`], until the read replica has replayed what the
    /// primary had written when the migrations committed: a schema made a moment ago is not on
    /// the replica yet, and a read of it there would fail as a missing table.
    async fn await_schema_on_replica(&self, replica: &Replica) -> Result<()> {
        let row = self.inner.db.query_one(fixed::WAL_INSERT_POSITION, &[]).await?;
        let lsn: String = Fields::new(&row, || "the primary's WAL position".to_owned()).get("lsn")?;
        if replayed_within(&replica.db, &lsn, SCHEMA_REPLAY_WAIT, Duration::from_millis(50)).await? {
            return Ok(());
        }
        Err(Error::Connect(format!(
            "the read replica has not replayed the schema's migrations in {} s: is it a streaming replica of this \
             primary, replaying?",
            SCHEMA_REPLAY_WAIT.as_secs()
        )))
    }

    /// The ids and versions of the streams of one category (aggregate type), in id order,
    /// `limit` at a time after `after` (use `""` to start).
    pub async fn streams(
        &self,
        category: &str,
        after: &str,
        limit: usize,
    ) -> eventloom_core::Result<Vec<(String, u64)>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self.inner.db.query(&self.inner.sql.streams_of, &[&category, &after, &limit]).await?;
        rows.iter()
            .map(|row| {
                let fields = Fields::new(row, || format!("stream {category}/{}", shown(row, "stream_id")));
                Ok((fields.get("stream_id")?, fields.unsigned_opt("version")?.unwrap_or(0)))
            })
            .collect()
    }

    /// The categories (aggregate types) that have streams, in order, `limit` at a time after
    /// `after` (use `""` to start): one probe of the primary key per category, whatever the number
    /// of streams.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(store: eventloom_postgres::PgEventStore) -> eventloom_core::Result<()> {
    /// for category in store.categories("", 100).await? {
    ///     println!("{category}: {} streams shown", store.streams(&category, "", 10).await?.len());
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn categories(&self, after: &str, limit: usize) -> eventloom_core::Result<Vec<String>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        if limit == 0 {
            return Ok(Vec::new());
        }
        let rows = self.inner.db.query(&self.inner.sql.categories, &[&after, &limit]).await?;
        rows.iter().map(|row| Fields::new(row, || "a category of streams".to_owned()).get("category")).collect()
    }

    /// The migrations applied to the schema (none when it was never migrated: its `migrations`
    /// table does not exist), against those this build knows. Changes nothing.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(store: eventloom_postgres::PgEventStore) -> eventloom_core::Result<()> {
    /// let schema = store.schema_version().await?;
    /// if !schema.is_current() {
    ///     println!("{} migrations to apply: {:?}", schema.schema, schema.pending());
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn schema_version(&self) -> eventloom_core::Result<SchemaVersion> {
        let sql = &self.inner.sql;
        let known = MIGRATIONS.iter().map(|(version, name, _)| (*version, *name)).collect();
        let schema = self.inner.config.schema_name().to_owned();
        let table = format!("{}.migrations", sql.schema);
        let row = self.inner.db.query_one(fixed::TABLE_EXISTS, &[&table]).await?;
        if !Fields::new(&row, || format!("whether {table} exists")).get::<bool>("present")? {
            return Ok(SchemaVersion::new(schema, Vec::new(), known));
        }
        let rows = self.inner.db.query(&sql.schema_migrations, &[]).await?;
        let applied = rows
            .iter()
            .map(|row| {
                let fields = Fields::new(row, || format!("migration {} in {table}", shown(row, "version")));
                let micros: i64 = fields.get("applied_micros")?;
                Ok(AppliedMigration::new(
                    fields.unsigned_int("version")?,
                    fields.get::<String>("name")?,
                    Timestamp::from_micros(micros),
                ))
            })
            .collect::<eventloom_core::Result<_>>()?;
        Ok(SchemaVersion::new(schema, applied, known))
    }

    /// Refuses to read in order when the stored transaction ids are ahead of this server's:
    /// the events were restored from a logical dump of another cluster, and new events would
    /// sort before old ones. Checked once per store.
    async fn ensure_same_cluster(&self) -> eventloom_core::Result<()> {
        if self.inner.same_cluster.load(Ordering::Acquire) {
            return Ok(());
        }
        let row = self.inner.db.query_one(&self.inner.sql.restored_from_elsewhere, &[]).await?;
        if restored(&row)? {
            return Err(CoreError::Backend {
                message: format!(
                    "the events in schema {} carry transaction ids ahead of this server's: they were restored from \
                     another cluster. Subscriptions are refused until PgEventStore::renumber_after_restore() runs \
                     (then rebuild every projection)",
                    self.inner.config.schema_name()
                ),
                source: None,
            });
        }
        self.inner.same_cluster.store(true, Ordering::Release);
        Ok(())
    }

    /// After restoring a logical dump into another cluster: gives every stored event a
    /// transaction id below this cluster's (keeping their order by renumbering their sequence),
    /// updates command outcomes and snapshots to match, and drops every generation of views of
    /// [`PgViewStore`](crate::PgViewStore) in this schema, whose checkpoints no longer mean
    /// anything: their projections have nothing live (queries answer
    /// [`NotBuilt`](eventloom_core::Error::NotBuilt)) until they are rebuilt, which their projectors
    /// do when they next run (a running one finds its generation gone). Generation ids and
    /// fencing tokens are kept, so no write of a projector from before lands in a new
    /// generation. Rebuild projections in other view stores too.
    /// Returns how many events were renumbered; does nothing (and returns 0) when the events
    /// already belong to this cluster.
    pub async fn renumber_after_restore(&self) -> Result<u64> {
        let mut client = self.inner.db.pool().get().await.map_err(crate::connect::unavailable)?;
        let tx = client.transaction().await.map_err(store_error)?;
        tx.execute(fixed::MIGRATION_LOCK, &[&MIGRATION_LOCK]).await.map_err(store_error)?;
        let row = tx.query_one(&self.inner.sql.restored_from_elsewhere, &[]).await.map_err(store_error)?;
        if !restored(&row)? {
            return Ok(0);
        }
        let row = tx.query_one(&self.inner.sql.count_events, &[]).await.map_err(store_error)?;
        let count = Fields::new(&row, || "the count of events".to_owned()).unsigned("count")?;
        tx.batch_execute(&self.inner.sql.renumber).await.map_err(store_error)?;
        tx.commit().await.map_err(store_error)?;
        tracing::warn!(events = count, schema = %self.inner.config.schema_name(), "renumbered events restored from another cluster; rebuild every projection");
        self.inner.same_cluster.store(true, Ordering::Release);
        Ok(count)
    }

    /// How far subscribers are held back, and by which transaction (see [`Holdback`]).
    ///
    /// With a read replica, the events are counted there (what its subscribers cannot read yet;
    /// events it has not replayed are not counted, see [`replica_lag`](Self::replica_lag)) and
    /// the transaction is named from the primary, where it runs: a replica's own sessions hold
    /// no transaction ids.
    pub async fn holdback(&self) -> eventloom_core::Result<Holdback> {
        let row = self.reader().query_one(&self.inner.sql.hidden_events, &[]).await?;
        let hidden = Fields::new(&row, || "the count of events held back".to_owned()).unsigned("count")?;
        let oldest = match self.inner.db.query_opt(fixed::OLDEST_TRANSACTION, &[]).await? {
            None => None,
            Some(row) => {
                let row = Fields::new(&row, || "the oldest transaction of the cluster".to_owned());
                Some(Blocker {
                    pid: row.get("pid")?,
                    database: row.get("database")?,
                    state: row.get("state")?,
                    transaction: row.get::<Option<&str>>("transaction")?.and_then(|t| t.parse().ok()).unwrap_or(0),
                    age: Duration::try_from_secs_f64(row.get("seconds")?).unwrap_or_default(),
                    prepared: row.get("prepared")?,
                })
            }
        };
        Ok(Holdback { hidden_events: hidden, oldest })
    }

    /// How far the read replica is behind the primary; `None` without one. A replica that is
    /// no longer in recovery (promoted) is an error: the primary's writes no longer reach it.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// use eventloom_postgres::{PgConfig, PgEventStore};
    ///
    /// let config = PgConfig::from_url("postgres://primary/app")?.read_replica("postgres://replica/app")?;
    /// let store = PgEventStore::connect(config).await?;
    /// if let Some(lag) = store.replica_lag().await? {
    ///     println!("{} bytes to replay, paused: {}", lag.bytes, lag.paused);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn replica_lag(&self) -> eventloom_core::Result<Option<ReplicaLag>> {
        let Some(replica) = &self.inner.replica else { return Ok(None) };
        let row = self.inner.db.query_one(fixed::WAL_FLUSH_POSITION, &[]).await?;
        let lsn: String = Fields::new(&row, || "the primary's WAL position".to_owned()).get("lsn")?;
        let row = replica.db.query_one(fixed::REPLICA_LAG, &[&lsn]).await?;
        let fields = Fields::new(&row, || "the read replica's replay position".to_owned());
        if !fields.get::<bool>("in_recovery")? {
            return Err(CoreError::Backend {
                message: "the read replica is not in recovery (promoted?): the primary's writes no longer reach it"
                    .to_owned(),
                source: None,
            });
        }
        let bytes: f64 = fields.get("bytes")?;
        let seconds: Option<f64> = fields.get("seconds")?;
        // A byte count read as a float: whole and never negative (the statement's greatest).
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let bytes = bytes as u64;
        let last_replayed = seconds.map(|s| Duration::try_from_secs_f64(s.max(0.0)).unwrap_or_default());
        Ok(Some(ReplicaLag::new(bytes, last_replayed, fields.get("paused")?)))
    }

    /// Waits until reads in order return `position` (pass a command's position): at once
    /// without a read replica once the transaction has ended, and with one once the replica has
    /// replayed it and every older transaction. Fails with
    /// [`Timeout`](eventloom_core::Error::Timeout) after `timeout`. Views need no such wait:
    /// their projector reads the log where this store does, so a view's checkpoint is past a
    /// position only once it was readable there.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(store: eventloom_postgres::PgEventStore, position: eventloom_core::Position) -> eventloom_core::Result<()> {
    /// store.wait_readable(position, std::time::Duration::from_secs(5)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn wait_readable(&self, position: Position, timeout: Duration) -> eventloom_core::Result<()> {
        let span = tracing::debug_span!("wait_readable", store = "postgres", %position);
        async {
            let deadline = tokio::time::Instant::now() + timeout;
            let tx = position.transaction().to_string();
            let mut pause = Duration::from_millis(2);
            loop {
                let row = self.reader().query_one(fixed::READABLE_PAST, &[&tx]).await?;
                if Fields::new(&row, || format!("whether {position} is readable")).get::<bool>("readable")? {
                    return Ok(());
                }
                let now = tokio::time::Instant::now();
                if now >= deadline {
                    return Err(CoreError::Timeout(timeout));
                }
                tokio::time::sleep(pause.min(deadline - now)).await;
                pause = (pause * 2).min(Duration::from_millis(50));
            }
        }
        .instrument(span)
        .await
    }

    async fn client(&self) -> eventloom_core::Result<Conn> {
        self.inner.db.conn().await
    }

    /// The primary holds what `result` (of an append or a version lookup) says of `stream`.
    fn learn(&self, stream: &StreamId, result: &eventloom_core::Result<Appended>) {
        let Some(replica) = &self.inner.replica else { return };
        match result {
            Ok(Appended::Written(outcome)) => replica.learn(stream, outcome.last_version),
            Ok(Appended::Duplicate { first, .. }) => replica.learn(&first.outcome.stream, first.outcome.last_version),
            Err(CoreError::Conflict { actual, .. }) => replica.learn(stream, *actual),
            Err(_) => {}
        }
    }

    /// One read of a stream's events on `db` (see [`EventStore::read_stream_bounded`]).
    async fn read_stream_on(
        &self,
        db: &Db,
        stream: &StreamId,
        from_version: u64,
        limit: usize,
        max_bytes: usize,
    ) -> eventloom_core::Result<Vec<RecordedEvent>> {
        let conn = db.conn().await?;
        let from = i64::try_from(from_version).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let params: [&(dyn ToSql + Sync); 4] = [&stream.category(), &stream.id(), &from, &limit];
        let span = tracing::trace_span!("load", store = "postgres", stream = %stream);
        let rows = conn.query_raw(&self.inner.sql.read_stream, params).instrument(span).await?;
        // A stream's versions have no gap: a missing one is a row deleted or changed by hand.
        let mut next = from_version.max(1);
        collect_within(&conn, rows, max_bytes, |row| {
            let event = recorded_in(stream, row)?;
            if event.version != next {
                let location = event_location(row, Some(stream));
                return Err(corrupt(location, format_args!("expected version {next}: the stream has a gap")));
            }
            next += 1;
            Ok(event)
        })
        .await
    }

    /// One page of a stream folded on the primary (see [`EventStore::fold_stream`]): each row
    /// is lent to `fold` as it arrives, its type name and payload borrowed from the row, and
    /// dropped before the next; the page's last event is lent with its position, the others
    /// without (an error about one of them names its position, read then). The page is not
    /// cut at a byte bound: it holds one row at a time, and rows past a cut would be sent by
    /// the server all the same (and discarded).
    async fn fold_stream_on(
        &self,
        stream: &StreamId,
        from_version: u64,
        limit: usize,
        fold: &mut (dyn FnMut(EventRef<'_>) -> eventloom_core::Result<()> + Send),
    ) -> eventloom_core::Result<FoldedPage> {
        let conn = self.inner.db.conn().await?;
        // A stream's versions start at 1 and have no gap: a missing one is a row deleted or
        // changed by hand.
        let first = from_version.max(1);
        let from = i64::try_from(first).unwrap_or(i64::MAX);
        let sql_limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let to = from.saturating_add(sql_limit.saturating_sub(1));
        let params: [&(dyn ToSql + Sync); 5] = [&stream.category(), &stream.id(), &from, &sql_limit, &to];
        let span = tracing::trace_span!("load", store = "postgres", stream = %stream);
        let rows = conn.query_raw(&self.inner.sql.fold_stream, params).instrument(span).await?;
        let mut rows = std::pin::pin!(rows);
        let mut page = FoldedPage::default();
        let mut next = first;
        // The page's last event, as its first row says (fold_stream.sql).
        let mut last: Option<(u64, Position)> = None;
        // The event an error is about, when its row does not carry its position: a field of
        // the row that does not read, or the fold's error about an event lent without its
        // position (see `located`).
        let mut at: Option<(u64, Unplaced)> = None;
        let folded = async {
            // The columns of fold_stream.sql, by place (a name looked up in every row cost
            // a tenth of a long load's CPU in the client).
            let (version, event_type, schema_version, payload) =
                (At(0, "version"), At(1, "event_type"), At(2, "schema_version_past_1"), At(3, "payload_text"));
            let (last_version, last_transaction, last_sequence) =
                (At(4, "last_version"), At(5, "last_transaction_id"), At(6, "last_sequence"));
            while let Some(row) = conn.next_row(&mut rows).await? {
                let fields = Fields::new(&row, || event_location(&row, Some(stream)));
                let version = fields.unsigned(version)?;
                at = Some((version, Unplaced::Row));
                if version != next {
                    return Err(fields.corrupt(format_args!("expected version {next}: the stream has a gap")));
                }
                if version == first {
                    let newest = fields.unsigned(last_version)?;
                    // The position read here is the newest event's: its error is about that one.
                    at = Some((newest, Unplaced::Row));
                    let position = fields.position_xid8(last_transaction, last_sequence).map_err(|e| match e {
                        CoreError::Corrupt { reason, .. } => CoreError::Corrupt {
                            location: format!("the page's newest event (stream {stream}, version {newest})"),
                            reason,
                        },
                        other => other,
                    })?;
                    last = Some((newest, position));
                    at = Some((version, Unplaced::Row));
                }
                next += 1;
                let event = EventRef {
                    stream,
                    version,
                    position: last.filter(|(newest, _)| *newest == version).map(|(_, position)| position),
                    event_type: fields.get(event_type)?,
                    schema_version: fields.schema_version_past_1(schema_version)?,
                    payload: fields.get(payload)?,
                };
                at = event.position.is_none().then_some((version, Unplaced::Fold));
                fold(event)?;
                at = None;
                page.add(&event, event.size());
            }
            // The page ended at the event whose position its first row carried.
            let end = next - 1;
            match page.last {
                None if page.events == 0 => Ok(page),
                Some((newest, _)) if newest == end => Ok(page),
                _ => Err(CoreError::Corrupt {
                    location: format!("stream {stream} from version {first}"),
                    reason: format!(
                        "the page read up to version {end}, but the stream's newest event at or below version {to} is {}",
                        last.map_or_else(|| "missing".to_owned(), |(newest, _)| newest.to_string())
                    ),
                }),
            }
        }
        .await;
        match folded {
            Ok(page) => Ok(page),
            Err(error) => {
                // The rows left are not read: the next caller gets a fresh connection rather
                // than wait for them.
                conn.discard();
                drop(conn);
                Err(match at {
                    Some((version, unplaced)) => self.located(stream, version, unplaced, error).await,
                    None => error,
                })
            }
        }
    }

    /// `error`, about version `version` of `stream` that `fold_stream.sql` read without its
    /// position, naming the event's position, read now: the location of a row that does not
    /// read ([`Unplaced::Row`]), or the position of a fold's error about the event
    /// ([`Unplaced::Fold`], `store::with_event_position`; other errors of the fold are left as
    /// they are). Left as it is when the position does not read (an error about an event then
    /// says position 0.0).
    async fn located(&self, stream: &StreamId, version: u64, unplaced: Unplaced, error: CoreError) -> CoreError {
        if unplaced == Unplaced::Row && !matches!(error, CoreError::Corrupt { .. }) {
            // The statement failed (its connection, the server), not the row: nothing to place.
            return error;
        }
        let at = i64::try_from(version).unwrap_or(i64::MAX);
        let params: [&(dyn ToSql + Sync); 3] = [&stream.category(), &stream.id(), &at];
        let position = match self.inner.db.query_opt(&self.inner.sql.event_position, &params).await {
            Ok(Some(row)) => Fields::new(&row, || event_location(&row, Some(stream)))
                .position_xid8(At(0, "transaction_id"), At(1, "sequence"))
                .ok(),
            _ => None,
        };
        match (position, error) {
            (Some(position), CoreError::Corrupt { reason, .. }) if unplaced == Unplaced::Row => CoreError::Corrupt {
                location: format!("event at position {position} (stream {stream}, version {version})"),
                reason,
            },
            (Some(position), error) => eventloom_core::store::with_event_position(error, position),
            (None, error) => error,
        }
    }

    /// A stream's events from the read replica; when the replica ends below the version this
    /// process knows the primary holds (see [`Replica`]), the rest comes from the primary.
    async fn read_stream_replicated(
        &self,
        replica: &Replica,
        stream: &StreamId,
        from_version: u64,
        limit: usize,
        max_bytes: usize,
    ) -> eventloom_core::Result<Vec<RecordedEvent>> {
        let mut events = self.read_stream_on(&replica.db, stream, from_version, limit, max_bytes).await?;
        let next = events.last().map_or(from_version.max(1), |e| e.version + 1);
        let bytes = events.iter().fold(0usize, |total, e| total.saturating_add(e.stored_size()));
        let ended = events.len() < limit && bytes < max_bytes;
        if ended && replica.version_of(stream).is_some_and(|known| known >= next) {
            tracing::debug!(%stream, next, "the read replica is behind this stream: reading the rest from the primary");
            let rest =
                self.read_stream_on(&self.inner.db, stream, next, limit - events.len(), max_bytes - bytes).await?;
            events.extend(rest);
        }
        Ok(events)
    }

    /// Wakes this process's subscribers after an append that wrote events, and sees that other
    /// processes' are woken: by the NOTIFY the append `carried`, else by the notifier's.
    fn appended(&self, carried: bool) {
        let wake = &self.inner.wake;
        // With a replica, local subscribers are woken by the listener once it has replayed.
        if self.inner.replica.is_none() {
            wake.bump();
        }
        if !carried {
            self.unannounced();
        }
    }

    /// Hands an append that no NOTIFY of its own announced to the notifier (also one whose
    /// statement carried a NOTIFY but failed, which rolled the NOTIFY back with it).
    fn unannounced(&self) {
        let wake = &self.inner.wake;
        let woken = wake.announcements.unannounced();
        wake.start(|w| &w.notifier, || notifier(Arc::downgrade(&self.inner), wake.clone()));
        if woken {
            wake.kick.notify_one();
        }
    }

    /// Another append recorded the batch's command id first: its outcome.
    async fn command_taken(&self, batch: &Batch<'_>, e: tokio_postgres::Error) -> eventloom_core::Result<Appended> {
        match batch.command_id {
            Some(id) => self.duplicate(id).await,
            None => Err(pg(e)),
        }
    }

    /// The answer to an append whose command id was used before: what it did the first time.
    async fn duplicate(&self, command_id: &str) -> eventloom_core::Result<Appended> {
        match self.first_record(command_id).await? {
            Some(first) => Ok(Appended::Duplicate { command_id: command_id.to_owned(), first }),
            None => Err(CoreError::unavailable_msg(format!("command {command_id} conflicted but has no outcome"))),
        }
    }

    async fn first_record(&self, command_id: &str) -> eventloom_core::Result<Option<CommandRecord>> {
        self.command_outcome(command_id).await
    }
}

/// Sends a `NOTIFY` alone, on a pooled connection, for appends that no carried one announced
/// (see [`Announcements`]): while appends keep carrying NOTIFYs it only watches, once per
/// debounce; when they stop, the last unannounced one is told after one or two debounces.
///
/// A `NOTIFY` alone is a transaction of its own: it takes a transaction id and writes a commit
/// record, but PostgreSQL commits a transaction that wrote no other WAL without waiting for
/// the WAL flush (or a synchronous standby), whatever `synchronous_commit` says, so it adds no
/// flush to a durable server (a test counts them). A wake-up lost in a crash costs subscribers
/// one poll interval.
async fn notifier(store: Weak<Inner>, wake: Arc<Wake>) {
    let announcements = &wake.announcements;
    loop {
        // Armed before this task ran (or on a runtime that ended): no kick comes for that.
        if !announcements.armed.load(Ordering::SeqCst) {
            wake.kick.notified().await;
        }
        if *wake.closed.borrow() {
            return;
        }
        if !announcements.armed.load(Ordering::SeqCst) {
            continue;
        }
        loop {
            tokio::time::sleep(NOTIFY_DEBOUNCE).await;
            if announcements.announced() {
                break;
            }
            // A carrier in flight, or carriers committing within the last debounce (appends
            // flowing): the next one announces this append too. (A carrier that fails does not
            // count: it says so, as an unannounced append of its own.) Otherwise the appends
            // have stopped, or come a little slower than one a debounce and each waits for the
            // one before to be read: the NOTIFY goes alone now.
            let now = announcements.now();
            let committed = announcements.committed.load(Ordering::SeqCst);
            // (A carrier that waits long, for a row lock of another process's transaction or a
            // dead connection, holds the NOTIFY alone back for 4 debounces at most.)
            let waiting = announcements.carrying.load(Ordering::SeqCst)
                && now.saturating_sub(announcements.carried.load(Ordering::SeqCst)) < 4 * debounce_micros();
            if waiting || now.saturating_sub(committed) < debounce_micros() {
                continue;
            }
            announcements.sent.fetch_max(now, Ordering::SeqCst);
            let Some(inner) = store.upgrade() else { return };
            let (db, channel) = (inner.db.clone(), inner.sql.notify_channel.clone());
            drop(inner);
            if let Err(error) = db.execute(fixed::NOTIFY, &[&channel]).await {
                tracing::debug!(%error, "NOTIFY failed; subscribers fall back to polling");
            }
            break;
        }
        announcements.armed.store(false, Ordering::SeqCst);
        // An append answered meanwhile may have found the notifier still armed: watch it too.
        if !announcements.announced() {
            announcements.armed.store(true, Ordering::SeqCst);
        }
    }
}

/// Keeps a dedicated connection LISTENing and turns notifications into local wake-ups.
async fn listener(store: Weak<Inner>, wake: Arc<Wake>) {
    let mut closed = wake.closed.subscribe();
    let mut delay = Duration::from_millis(100);
    loop {
        let Some(inner) = store.upgrade() else { return };
        let (connector, config, listen) = (inner.connector.clone(), inner.config.pg.clone(), inner.sql.listen.clone());
        let replica = inner.replica.as_ref().map(|r| r.db.clone());
        drop(inner);
        let connected = async {
            let (client, notifications) = connector.dedicated(&config).await?;
            client.batch_execute(&listen).await?;
            Ok::<_, tokio_postgres::Error>((client, notifications))
        };
        match connected.await {
            Ok((client, mut notifications)) => {
                delay = Duration::from_millis(100);
                // Events may have been missed while not listening.
                wake.bump();
                loop {
                    let notified = tokio::select! {
                        n = notifications.recv() => n.is_some(),
                        _ = closed.wait_for(|c| *c) => return,
                    };
                    if !notified {
                        break;
                    }
                    if let Some(replica) = &replica {
                        // Later notifications are covered by the same wait.
                        while notifications.try_recv().is_ok() {}
                        let replayed = tokio::select! {
                            () = await_replay(&client, replica) => true,
                            _ = closed.wait_for(|c| *c) => false,
                        };
                        if !replayed {
                            return;
                        }
                    }
                    wake.bump();
                }
                tracing::warn!("LISTEN connection lost; reconnecting");
            }
            Err(error) => tracing::warn!(%error, ?delay, "cannot LISTEN; subscribers poll meanwhile"),
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            _ = closed.wait_for(|c| *c) => return,
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// Waits until the read replica has replayed every commit the primary (on `client`, the LISTEN
/// connection) had made when a notification arrived, so that a subscriber woken now reads the
/// events it announces: notifications are not replicated, and `LISTEN` is refused on a standby.
/// Gives up after [`REPLAY_WAIT`] (subscribers poll meanwhile).
async fn await_replay(client: &tokio_postgres::Client, replica: &Db) {
    let span = tracing::trace_span!("await_replay", store = "postgres");
    async {
        let lsn: String = match client.query_one(fixed::WAL_INSERT_POSITION, &[]).await {
            Ok(row) => match row.try_get("lsn") {
                Ok(lsn) => lsn,
                Err(_) => return,
            },
            Err(error) => {
                tracing::debug!(%error, "cannot read the primary's WAL position; waking subscribers now");
                return;
            }
        };
        match replayed_within(replica, &lsn, REPLAY_WAIT, Duration::from_millis(20)).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::debug!(lsn, "the read replica has not replayed a notified commit yet; waking subscribers")
            }
            Err(error) => tracing::debug!(%error, "cannot read the replica's replay position; waking subscribers now"),
        }
    }
    .instrument(span)
    .await;
}

/// Whether `replica` replays the primary's WAL up to `lsn` within `wait`, polled with pauses
/// growing from 1 ms to `longest`.
async fn replayed_within(replica: &Db, lsn: &str, wait: Duration, longest: Duration) -> eventloom_core::Result<bool> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut pause = Duration::from_millis(1);
    loop {
        let row = replica.query_one(fixed::REPLAYED_TO, &[&lsn]).await?;
        if Fields::new(&row, || "the read replica's replay position".to_owned()).get::<bool>("replayed")? {
            return Ok(true);
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(longest);
    }
}

/// How long [`PgEventStore::migrate`] waits for the read replica to replay the migrations.
const SCHEMA_REPLAY_WAIT: Duration = Duration::from_secs(30);

/// How many times an append with [`ExpectedVersion::Any`] is retried after losing a race to
/// an append with an exact version, which does not queue on the stream's lock.
const ANY_RETRIES: usize = 16;

/// The events of one append, as the statements take them.
struct Batch<'a> {
    types: Vec<&'a str>,
    schema_versions: Vec<i32>,
    payloads: Vec<&'a str>,
    metadata: Vec<&'a str>,
    command_id: Option<&'a str>,
    /// The fingerprint of the command's request, in hex, kept with its id.
    fingerprint: Option<String>,
    /// When the command was executed, in microseconds since the epoch (`None`: the server's now).
    recorded_at: Option<i64>,
    /// Whether the command id's record is kept until forgotten.
    kept: bool,
}

impl Batch<'_> {
    /// The parameters of both append statements: the stream's category and id, the expected
    /// version (`None`: any), then the batch.
    fn params<'p>(
        &'p self,
        stream: &'p [&'p str; 2],
        expected: &'p Option<i64>,
    ) -> [&'p (dyn tokio_postgres::types::ToSql + Sync); 11] {
        [
            &stream[0],
            &stream[1],
            expected,
            &self.types,
            &self.schema_versions,
            &self.payloads,
            &self.metadata,
            &self.command_id,
            &self.fingerprint,
            &self.recorded_at,
            &self.kept,
        ]
    }
}

/// What an error of a fold (`fold_stream_on`) is about, when the row did not carry the
/// event's position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unplaced {
    /// A field of the row that does not read (`Corrupt`).
    Row,
    /// The fold's error about an event lent without its position.
    Fold,
}

/// Why an append's statement failed.
enum Failed {
    /// Another append recorded the command id first (`commands_pkey`).
    CommandTaken,
    /// Another append took one of the versions first (`events_pkey`).
    VersionTaken,
    /// Text PostgreSQL cannot store, or a payload that is not JSON.
    Invalid(String),
    Other,
}

fn failed(e: &tokio_postgres::Error) -> Failed {
    let db = e.as_db_error();
    let constraint = db.and_then(|d| d.constraint()).unwrap_or_default();
    match e.code() {
        Some(c) if *c == SqlState::UNIQUE_VIOLATION && constraint == "commands_pkey" => Failed::CommandTaken,
        Some(c) if *c == SqlState::UNIQUE_VIOLATION && constraint == "events_pkey" => Failed::VersionTaken,
        Some(c)
            if *c == SqlState::INVALID_TEXT_REPRESENTATION
                || *c == SqlState::UNTRANSLATABLE_CHARACTER
                || *c == SqlState::CHARACTER_NOT_IN_REPERTOIRE =>
        {
            Failed::Invalid(db.map(|d| d.message().to_owned()).unwrap_or_else(|| e.to_string()))
        }
        _ => Failed::Other,
    }
}

/// Whether the server refused a statement with an error that its `pg_notify` may have raised
/// (the notification queue full, a channel name or payload refused), which rolled the
/// statement back and left the session alive: the append can go again without the NOTIFY. Not
/// any other error: after a FATAL one (the session terminated) the outcome is unknown, and a
/// timeout would only be waited for twice.
fn notify_refused(e: &tokio_postgres::Error) -> bool {
    let Some(db) = e.as_db_error() else { return false };
    db.parsed_severity() == Some(tokio_postgres::error::Severity::Error)
        && (*db.code() == SqlState::PROGRAM_LIMIT_EXCEEDED || *db.code() == SqlState::INVALID_PARAMETER_VALUE)
}

/// A schema version as the `events` table stores it.
fn schema_version(version: u32) -> i32 {
    i32::try_from(version).unwrap_or(i32::MAX)
}

impl PgEventStore {
    /// An append with an exact expected version (0: no stream) on its own:
    /// [`append_one`](Self::append_one) when it can, else [`append_exact`](Self::append_exact).
    async fn append_at(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        version: i64,
        batch: &Batch<'_>,
    ) -> eventloom_core::Result<Appended> {
        if version > 0 && batch.types.len() == 1 && batch.command_id.is_none() {
            self.append_one(stream, expected, version, batch).await
        } else {
            self.append_exact(stream, expected, version, batch).await
        }
    }

    /// An append with an exact expected version (0: no stream): one prepared statement, no lock.
    /// It carries the NOTIFY when [`Carrying`] says so, as [`append_one`](Self::append_one).
    async fn append_exact(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        version: i64,
        batch: &Batch<'_>,
    ) -> eventloom_core::Result<Appended> {
        let names = [stream.category(), stream.id()];
        let expected_version = Some(version);
        let mut may_carry = true;
        let (result, carried) = loop {
            let conn = self.client().await?;
            let stmt = conn.prepare(&self.inner.sql.append_exact).await?;
            let carrying = if may_carry { Carrying::start(self) } else { None };
            let carried = carrying.is_some();
            let channel = carried.then_some(self.inner.sql.notify_channel.as_str());
            let base = batch.params(&names, &expected_version);
            let params: [&(dyn ToSql + Sync); 12] = std::array::from_fn(|i| base.get(i).copied().unwrap_or(&channel));
            let result = conn.noted(conn.client().query_one(&stmt, &params).await);
            drop(conn);
            let written = result
                .as_ref()
                .is_ok_and(|row| row.try_get::<_, Option<&str>>("transaction_id").is_ok_and(|tx| tx.is_some()));
            if let Some(carrying) = carrying {
                carrying.ended(written);
            }
            match result {
                // Refused by the server, which rolled it back: when the NOTIFY it carried may be
                // why, the append goes again without one (as in `append_one`).
                Err(e) if carried && notify_refused(&e) => {
                    tracing::debug!(error = %e, "an append carrying the NOTIFY failed; sent again without it");
                    may_carry = false;
                }
                result => break (result, carried),
            }
        };
        let row = match result {
            Ok(row) => row,
            Err(e) => {
                return match failed(&e) {
                    Failed::CommandTaken => self.command_taken(batch, e).await,
                    // A racing writer took the version after this statement's snapshot; when
                    // it carried the same command id, this is a retry of that command.
                    Failed::VersionTaken => {
                        let first = match batch.command_id {
                            Some(id) => self.first_record(id).await?.map(|first| (id, first)),
                            None => None,
                        };
                        match first {
                            Some((id, first)) => Ok(Appended::Duplicate { command_id: id.to_owned(), first }),
                            None => Err(CoreError::Conflict {
                                stream: stream.clone(),
                                expected,
                                actual: self.stream_version(stream).await?,
                            }),
                        }
                    }
                    Failed::Invalid(reason) => Err(CoreError::InvalidEvent { reason }),
                    Failed::Other => Err(pg(e)),
                };
            }
        };
        let fields = Fields::new(&row, || format!("stream {stream} after version {version}"));
        let actual = fields.unsigned("actual")?;
        let recorded: bool = fields.get("recorded")?;
        let first_version = u64::try_from(version).map_err(|_| fields.corrupt(format_args!("version {version}")))? + 1;
        if fields.get::<Option<&str>>("transaction_id")?.is_some() {
            self.appended(carried);
            let appended = u64::try_from(batch.types.len()).unwrap_or(u64::MAX);
            return Ok(Appended::Written(AppendOutcome {
                stream: stream.clone(),
                first_version,
                last_version: first_version + appended - 1,
                position: fields.position("transaction_id", "sequence")?,
            }));
        }
        if let (true, Some(id)) = (recorded, batch.command_id) {
            return self.duplicate(id).await;
        }
        if actual + 1 != first_version {
            return Err(CoreError::Conflict { stream: stream.clone(), expected, actual });
        }
        if batch.types.is_empty() {
            return Ok(Appended::Written(AppendOutcome {
                stream: stream.clone(),
                first_version,
                last_version: first_version - 1,
                position: Position::ZERO,
            }));
        }
        Err(CoreError::unavailable_msg(format!("the append to {stream} inserted nothing")))
    }

    /// The common case of [`append_exact`](Self::append_exact): one event, no command id, a
    /// stream that exists (`version` > 0). One plain INSERT; when the stream is not at
    /// `version` it inserts nothing, and the stream's version is read for the conflict.
    async fn append_one(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        version: i64,
        batch: &Batch<'_>,
    ) -> eventloom_core::Result<Appended> {
        let (mut attempt, mut may_carry) = (0, true);
        loop {
            attempt += 1;
            let conn = self.client().await?;
            let stmt = conn.prepare(&self.inner.sql.append_one).await?;
            let carrying = if may_carry { Carrying::start(self) } else { None };
            let carried = carrying.is_some();
            let channel = carried.then_some(self.inner.sql.notify_channel.as_str());
            let result = conn.noted(
                conn.client()
                    .query_opt(
                        &stmt,
                        &[
                            &stream.category(),
                            &stream.id(),
                            &version,
                            &batch.types[0],
                            &batch.schema_versions[0],
                            &batch.payloads[0],
                            &batch.metadata[0],
                            &channel,
                        ],
                    )
                    .await,
            );
            drop(conn);
            if let Some(carrying) = carrying {
                carrying.ended(matches!(result, Ok(Some(_))));
            }
            let row = match result {
                Ok(row) => row,
                // The server refused the statement, which rolled it back: when the NOTIFY it
                // carried may be why (its queue full, a listener in the cluster not reading),
                // the append goes again without one rather than fail for a wake-up.
                Err(e) if carried && notify_refused(&e) => {
                    tracing::debug!(error = %e, "an append carrying the NOTIFY failed; sent again without it");
                    may_carry = false;
                    continue;
                }
                Err(e) => {
                    return Err(match failed(&e) {
                        Failed::VersionTaken => CoreError::Conflict {
                            stream: stream.clone(),
                            expected,
                            actual: self.stream_version(stream).await?,
                        },
                        Failed::Invalid(reason) => CoreError::InvalidEvent { reason },
                        Failed::CommandTaken | Failed::Other => pg(e),
                    });
                }
            };
            // `version` > 0 (the caller's check).
            let expected_version = version.unsigned_abs();
            if let Some(row) = row {
                self.appended(carried);
                let fields = Fields::new(&row, || format!("stream {stream} version {}", version + 1));
                return Ok(Appended::Written(AppendOutcome {
                    stream: stream.clone(),
                    first_version: expected_version + 1,
                    last_version: expected_version + 1,
                    position: fields.position("transaction_id", "sequence")?,
                }));
            }
            let actual = self.stream_version(stream).await?;
            // The stream was behind the version expected (an append not yet committed) and
            // has reached it since: the append holds now.
            if actual == expected_version && attempt < 3 {
                continue;
            }
            return Err(CoreError::Conflict { stream: stream.clone(), expected, actual });
        }
    }

    /// An append with [`ExpectedVersion::Any`]: the schema's `append` function, where writers
    /// of one stream queue on an advisory lock. An append with an exact version does not queue
    /// there and may take the version first: then this one is tried again.
    async fn append_any(&self, stream: &StreamId, batch: &Batch<'_>) -> eventloom_core::Result<Appended> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let conn = self.client().await?;
            let stmt = conn.prepare(&self.inner.sql.append).await?;
            let names = [stream.category(), stream.id()];
            let result = conn.noted(conn.client().query_one(&stmt, &batch.params(&names, &None)).await);
            drop(conn);
            let row = match result {
                Ok(row) => row,
                Err(e) => {
                    return match failed(&e) {
                        Failed::CommandTaken => self.command_taken(batch, e).await,
                        Failed::VersionTaken if attempt < ANY_RETRIES => {
                            // Let the exact appends of the burst pass before trying again.
                            let pause =
                                std::time::Duration::from_micros(200) * u32::try_from(attempt).unwrap_or(u32::MAX);
                            tokio::time::sleep(pause).await;
                            continue;
                        }
                        Failed::VersionTaken => Err(CoreError::unavailable_msg(format!(
                            "an append to {stream} lost {ANY_RETRIES} races in a row to appends with exact versions"
                        ))),
                        Failed::Invalid(reason) => Err(CoreError::InvalidEvent { reason }),
                        Failed::Other => Err(pg(e)),
                    };
                }
            };
            let fields = Fields::new(&row, || format!("the append to stream {stream}"));
            let status: i32 = fields.get("status")?;
            return match status {
                0 => {
                    let first_version = fields.unsigned("first_version")?;
                    let last_version = fields.unsigned("last_version")?;
                    let position = fields.position("transaction_id", "sequence")?;
                    if !batch.types.is_empty() {
                        self.appended(false);
                    }
                    Ok(Appended::Written(AppendOutcome {
                        stream: stream.clone(),
                        first_version,
                        last_version,
                        position,
                    }))
                }
                2 => match batch.command_id {
                    Some(id) => self.duplicate(id).await,
                    None => Err(CoreError::unavailable_msg("append returned status 2 without a command id")),
                },
                _ => Err(CoreError::unavailable_msg(format!("append returned status {status}"))),
            };
        }
    }
}

impl PgEventStore {
    /// [`EventStore::append_relayed`]: the schema's `append_relayed` function, one transaction.
    async fn relay(
        &self,
        source: &str,
        sequence: u64,
        stream: &StreamId,
        events: Vec<NewEvent>,
    ) -> eventloom_core::Result<Relayed> {
        eventloom_core::store::validate_relay(source, sequence)?;
        let span = tracing::debug_span!("append_relayed", store = "postgres", source, sequence, stream = %stream);
        async {
            let limit = self.inner.config.max_event_size;
            if let Some(big) = events.iter().find(|e| e.size() > limit) {
                return Err(CoreError::PayloadTooLarge { size: big.size(), limit });
            }
            let types: Vec<&str> = events.iter().map(|e| e.event_type.as_ref()).collect();
            let versions: Vec<i32> =
                events.iter().map(|e| i32::try_from(e.schema_version).unwrap_or(i32::MAX)).collect();
            let payloads: Vec<&str> = events.iter().map(|e| e.payload.as_str()).collect();
            let metadata = events
                .iter()
                .map(|e| serde_json::to_string(&e.metadata))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|source| CoreError::Serde { what: "event metadata".into(), source })?;
            let sequence_i64 = to_i64(sequence, "relayed sequence")?;
            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 8] =
                [&source, &sequence_i64, &stream.category(), &stream.id(), &types, &versions, &payloads, &metadata];
            let conn = self.client().await?;
            let stmt = conn.prepare(&self.inner.sql.append_relayed).await?;
            let result = conn.noted(conn.client().query_one(&stmt, &params).await);
            drop(conn);
            let row = match result {
                Ok(row) => row,
                Err(e) => {
                    if let Failed::Invalid(reason) = failed(&e) {
                        return Err(CoreError::InvalidEvent { reason });
                    }
                    // Another relay wrote the message meanwhile: this one's append rolled back.
                    let relayed = self.relayed(source).await?;
                    if relayed >= sequence {
                        return Ok(Relayed::Duplicate { relayed });
                    }
                    return Err(pg(e));
                }
            };
            let fields = Fields::new(&row, || format!("the relay of message {sequence} of {source}"));
            let status: i32 = fields.get("status")?;
            match status {
                0 => {
                    if !events.is_empty() {
                        self.appended(false);
                    }
                    Ok(Relayed::Written(AppendOutcome {
                        stream: stream.clone(),
                        first_version: fields.unsigned("first_version")?,
                        last_version: fields.unsigned("last_version")?,
                        position: fields.position("transaction_id", "sequence")?,
                    }))
                }
                3 => Ok(Relayed::Duplicate { relayed: fields.unsigned("actual")? }),
                _ => Err(CoreError::unavailable_msg(format!("append_relayed returned status {status}"))),
            }
        }
        .instrument(span)
        .await
    }

    /// [`EventStore::append`], keeping `entry` with the outcome of a command id (without one:
    /// no fingerprint, the server's time, not kept).
    async fn append_events(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
        entry: Option<&CommandEntry>,
    ) -> eventloom_core::Result<Appended> {
        let span = tracing::debug_span!("append", store = "postgres", stream = %stream, events = events.len());
        async {
            let limit = self.inner.config.max_event_size;
            if let Some(big) = events.iter().find(|e| e.size() > limit) {
                return Err(CoreError::PayloadTooLarge { size: big.size(), limit });
            }
            let command_id = events.first().and_then(|e| e.metadata.command_id.as_deref());
            if let Some(id) = command_id {
                eventloom_core::model::validate_command_id(id)?;
            }
            let metadata = events
                .iter()
                .map(|e| serde_json::to_string(&e.metadata))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|source| CoreError::Serde { what: "event metadata".into(), source })?;
            let version = match expected {
                ExpectedVersion::Any => None,
                ExpectedVersion::NoStream => Some(0),
                ExpectedVersion::Exact(v) => Some(to_i64(v, "expected version")?),
            };
            let result = match version {
                // Appends with an exact version, not empty, may share a statement.
                Some(version) if !events.is_empty() && self.inner.combiner.is_some() => {
                    let request = combine::Request {
                        stream: stream.clone(),
                        expected,
                        version,
                        command_id: command_id.map(str::to_owned),
                        fingerprint: entry.map(|e| e.fingerprint.to_string()),
                        recorded_at: entry.map(|e| e.recorded_at.as_micros()),
                        kept: entry.is_some_and(|e| e.kept),
                        bytes: events.iter().map(NewEvent::size).sum(),
                        events,
                        metadata,
                    };
                    self.combined(request).await
                }
                _ => {
                    let batch = Batch {
                        types: events.iter().map(|e| e.event_type.as_ref()).collect(),
                        schema_versions: events.iter().map(|e| schema_version(e.schema_version)).collect(),
                        payloads: events.iter().map(|e| e.payload.as_str()).collect(),
                        metadata: metadata.iter().map(String::as_str).collect(),
                        command_id,
                        fingerprint: entry.map(|e| e.fingerprint.to_string()),
                        recorded_at: entry.map(|e| e.recorded_at.as_micros()),
                        kept: entry.is_some_and(|e| e.kept),
                    };
                    match version {
                        None => self.append_any(stream, &batch).await,
                        Some(version) => self.append_at(stream, expected, version, &batch).await,
                    }
                }
            };
            self.learn(stream, &result);
            result
        }
        .instrument(span)
        .await
    }
}

impl EventStore for PgEventStore {
    fn append<'a>(
        &'a self,
        stream: &'a StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> BoxFuture<'a, eventloom_core::Result<Appended>> {
        Box::pin(self.append_events(stream, expected, events, None))
    }

    fn append_command<'a>(
        &'a self,
        stream: &'a StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
        command: &'a CommandEntry,
    ) -> BoxFuture<'a, eventloom_core::Result<Appended>> {
        Box::pin(self.append_events(stream, expected, events, Some(command)))
    }

    fn read_stream<'a>(
        &'a self,
        stream: &'a StreamId,
        from_version: u64,
        limit: usize,
    ) -> BoxFuture<'a, eventloom_core::Result<Vec<RecordedEvent>>> {
        self.read_stream_bounded(stream, from_version, limit, usize::MAX)
    }

    fn read_all<'a>(
        &'a self,
        after: Position,
        limit: usize,
    ) -> BoxFuture<'a, eventloom_core::Result<Vec<RecordedEvent>>> {
        self.read_all_bounded(after, limit, usize::MAX)
    }

    /// Rows are decoded as they arrive and reading stops at the byte bound; the rest of the
    /// batch's rows (at most `limit`) are discarded as they come. Memory stays bounded; callers
    /// that read in a loop adapt `limit` to the sizes they see, so little is sent in vain (a
    /// running sum in the query would cut on the server, but costs every batch about a
    /// microsecond per row: 15% of a catch-up).
    fn read_stream_bounded<'a>(
        &'a self,
        stream: &'a StreamId,
        from_version: u64,
        limit: usize,
        max_bytes: usize,
    ) -> BoxFuture<'a, eventloom_core::Result<Vec<RecordedEvent>>> {
        Box::pin(async move {
            match &self.inner.replica {
                Some(replica) => self.read_stream_replicated(replica, stream, from_version, limit, max_bytes).await,
                None => self.read_stream_on(&self.inner.db, stream, from_version, limit, max_bytes).await,
            }
        })
    }

    /// Rows are folded as they arrive, without their metadata, up to `limit`: a load holds one
    /// row at a time (and the rows tokio-postgres buffers, a few socket reads), so the page is
    /// not cut at `max_bytes` (rows after a cut would be sent and discarded all the same). With a read
    /// replica, the page is read as [`read_stream_bounded`](Self::read_stream_bounded) reads it
    /// (which falls back to the primary for what the replica has not replayed yet), then folded.
    fn fold_stream<'a>(
        &'a self,
        stream: &'a StreamId,
        from_version: u64,
        limit: usize,
        max_bytes: usize,
        fold: &'a mut (dyn FnMut(EventRef<'_>) -> eventloom_core::Result<()> + Send),
    ) -> BoxFuture<'a, eventloom_core::Result<FoldedPage>> {
        Box::pin(async move {
            match &self.inner.replica {
                Some(_) => {
                    eventloom_core::store::fold_read_stream(self, stream, from_version, limit, max_bytes, fold).await
                }
                None => self.fold_stream_on(stream, from_version, limit, fold).await,
            }
        })
    }

    /// As [`read_stream_bounded`](Self::read_stream_bounded): rows decoded as they arrive, reading
    /// stopped at the byte bound.
    fn read_all_bounded<'a>(
        &'a self,
        after: Position,
        limit: usize,
        max_bytes: usize,
    ) -> BoxFuture<'a, eventloom_core::Result<Vec<RecordedEvent>>> {
        Box::pin(async move {
            self.ensure_same_cluster().await?;
            let conn = self.reader().conn().await?;
            let tx = after.transaction().to_string();
            let seq = to_i64(after.sequence(), "position")?;
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let params: [&(dyn ToSql + Sync); 3] = [&tx, &seq, &limit];
            let span = tracing::trace_span!("read_all", store = "postgres", %after);
            let rows = conn.query_raw(&self.inner.sql.read_all, params).instrument(span).await?;
            collect_within(&conn, rows, max_bytes, recorded).await
        })
    }

    fn head<'a>(&'a self) -> BoxFuture<'a, eventloom_core::Result<Option<Position>>> {
        Box::pin(async move {
            self.ensure_same_cluster().await?;
            let Some(row) = self.reader().query_opt(&self.inner.sql.head, &[]).await? else { return Ok(None) };
            let fields = Fields::new(&row, || {
                format!("event at position {}.{} (the head)", shown(&row, "transaction_text"), shown(&row, "sequence"))
            });
            Ok(Some(fields.position("transaction_text", "sequence")?))
        })
    }

    fn count_after<'a>(&'a self, after: Position, cap: u64) -> BoxFuture<'a, eventloom_core::Result<u64>> {
        Box::pin(async move {
            if cap == 0 {
                return Ok(0);
            }
            self.ensure_same_cluster().await?;
            let tx = after.transaction().to_string();
            let seq = to_i64(after.sequence(), "position")?;
            let limit = i64::try_from(cap).unwrap_or(i64::MAX);
            let row = self.reader().query_one(&self.inner.sql.count_after, &[&tx, &seq, &limit]).await?;
            let fields = Fields::new(&row, || format!("the count of events after {after}"));
            Ok(fields.unsigned("count")?.min(cap))
        })
    }

    fn held_back<'a>(&'a self, cap: u64) -> BoxFuture<'a, eventloom_core::Result<u64>> {
        Box::pin(async move {
            if cap == 0 {
                return Ok(0);
            }
            let limit = i64::try_from(cap).unwrap_or(i64::MAX);
            let row = self.reader().query_one(&self.inner.sql.held_back, &[&limit]).await?;
            let fields = Fields::new(&row, || "the count of events held back".to_owned());
            Ok(fields.unsigned("count")?.min(cap))
        })
    }

    fn stream_version<'a>(&'a self, stream: &'a StreamId) -> BoxFuture<'a, eventloom_core::Result<u64>> {
        Box::pin(async move {
            let row =
                self.inner.db.query_one(&self.inner.sql.stream_version, &[&stream.category(), &stream.id()]).await?;
            let version = Fields::new(&row, || format!("stream {stream}")).unsigned("version")?;
            if let Some(replica) = &self.inner.replica {
                replica.learn(stream, version);
            }
            Ok(version)
        })
    }

    fn command_outcome<'a>(
        &'a self,
        command_id: &'a str,
    ) -> BoxFuture<'a, eventloom_core::Result<Option<CommandRecord>>> {
        Box::pin(async move {
            let Some(row) = self.inner.db.query_opt(&self.inner.sql.command_outcome, &[&command_id]).await? else {
                return Ok(None);
            };
            let fields = Fields::new(&row, || format!("the outcome of command {command_id}"));
            let stream = StreamId::new(fields.get::<&str>("category")?, fields.get::<&str>("stream_id")?)
                .map_err(|e| fields.corrupt(format_args!("stream id refused: {e}")))?;
            let outcome = AppendOutcome {
                stream,
                first_version: fields.unsigned("first_version")?,
                last_version: fields.unsigned("last_version")?,
                position: fields.position("transaction_id", "sequence")?,
            };
            let recorded_at = Timestamp::from_micros(fields.get("recorded_micros")?);
            let mut record = CommandRecord::new(outcome).with_recorded_at(recorded_at);
            if fields.get("kept")? {
                record = record.keep();
            }
            // NULL: recorded before fingerprints were kept, or by a plain append.
            if let Some(hex) = fields.get::<Option<&str>>("fingerprint")? {
                let print = hex.parse().map_err(|e| fields.corrupt(format_args!("fingerprint refused: {e}")))?;
                record = record.with_fingerprint(print);
            }
            // NULL: an append or a no-op. A refusal appended nothing.
            if let Some(reason) = fields.get::<Option<&str>>("refusal")? {
                if record.outcome.appended() > 0 {
                    let versions = (record.outcome.first_version, record.outcome.last_version);
                    return Err(fields.corrupt(format_args!("a refusal that appended versions {versions:?}")));
                }
                record = record.with_refusal(reason);
            }
            Ok(Some(record))
        })
    }

    fn record_command<'a>(
        &'a self,
        command_id: &'a str,
        record: CommandRecord,
    ) -> BoxFuture<'a, eventloom_core::Result<Option<CommandRecord>>> {
        Box::pin(async move {
            eventloom_core::model::validate_command_id(command_id)?;
            let outcome = &record.outcome;
            let fingerprint = record.fingerprint.as_ref().map(Fingerprint::to_string);
            // PostgreSQL's text holds no NUL: one in a rejection's text is kept as U+FFFD.
            let refusal = record
                .refusal
                .as_deref()
                .map(|r| eventloom_core::store::bounded_refusal(&r.replace('\0', "\u{FFFD}")).to_owned());
            let inserted = self
                .inner
                .db
                .execute(
                    &self.inner.sql.record_command,
                    &[
                        &command_id,
                        &outcome.stream.category(),
                        &outcome.stream.id(),
                        &to_i64(outcome.first_version, "version")?,
                        &to_i64(outcome.last_version, "version")?,
                        &outcome.position.transaction().to_string(),
                        &to_i64(outcome.position.sequence(), "position")?,
                        &fingerprint,
                        &refusal,
                        &record.recorded_at.as_micros(),
                        &record.kept,
                    ],
                )
                .await?;
            if inserted == 0 {
                return match self.first_record(command_id).await? {
                    Some(first) => Ok(Some(first)),
                    None => {
                        Err(CoreError::unavailable_msg(format!("command {command_id} conflicted but has no outcome")))
                    }
                };
            }
            Ok(None)
        })
    }

    fn expire_commands<'a>(
        &'a self,
        recorded_before: Timestamp,
        limit: usize,
    ) -> BoxFuture<'a, eventloom_core::Result<u64>> {
        Box::pin(async move {
            // No record is older than PostgreSQL's first timestamp (4713 BC); past 2^62 µs (about
            // 146,000 years) every record is older, and the conversion to an interval stays exact.
            const FIRST_TIMESTAMP: i64 = -210_866_803_200_000_000;
            let before = recorded_before.as_micros().min(1 << 62);
            if limit == 0 || before <= FIRST_TIMESTAMP {
                return Ok(0);
            }
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let span = tracing::debug_span!("expire_commands", store = "postgres", before);
            self.inner.db.execute(&self.inner.sql.expire_commands, &[&before, &limit]).instrument(span).await
        })
    }

    fn forget_commands<'a>(&'a self, ids: &'a [String]) -> BoxFuture<'a, eventloom_core::Result<u64>> {
        Box::pin(async move {
            if ids.is_empty() {
                return Ok(0);
            }
            let span = tracing::debug_span!("forget_commands", store = "postgres", ids = ids.len());
            self.inner.db.execute(&self.inner.sql.forget_commands, &[&ids]).instrument(span).await
        })
    }

    fn append_relayed<'a>(
        &'a self,
        source: &'a str,
        sequence: u64,
        stream: &'a StreamId,
        events: Vec<NewEvent>,
    ) -> BoxFuture<'a, eventloom_core::Result<Relayed>> {
        Box::pin(self.relay(source, sequence, stream, events))
    }

    fn relayed<'a>(&'a self, source: &'a str) -> BoxFuture<'a, eventloom_core::Result<u64>> {
        Box::pin(async move {
            let row = self.inner.db.query_opt(&self.inner.sql.relayed, &[&source]).await?;
            match row {
                None => Ok(0),
                Some(row) => Fields::new(&row, || format!("the relay record of {source}")).unsigned("sequence"),
            }
        })
    }

    /// Without a read replica, [`fold_stream`](EventStore::fold_stream) folds rows as they
    /// arrive (with one, it reads each page whole).
    fn folds_row_by_row(&self) -> bool {
        self.inner.replica.is_none()
    }

    /// With a read replica, loads read the replica, which may lag; the stream's version is read
    /// on the primary, and a load after it reads what the replica lacks from the primary.
    fn loads_may_lag(&self) -> bool {
        self.inner.replica.is_some()
    }

    fn replica_lag<'a>(&'a self) -> BoxFuture<'a, eventloom_core::Result<Option<ReplicaLag>>> {
        Box::pin(PgEventStore::replica_lag(self))
    }

    fn wake_ups(&self) -> Option<watch::Receiver<u64>> {
        let wake = &self.inner.wake;
        wake.start(|w| &w.listener, || listener(Arc::downgrade(&self.inner), wake.clone()));
        Some(wake.local.subscribe())
    }
}

//! [`PgViewStore`]: generations of views, their secondary indexes and checkpoints on PostgreSQL.

use std::collections::HashMap;
use std::sync::Arc;

use eventloom_core::store::{BoxFuture, DeadLetterSelection, Refusal, ViewChanges, Written};
use eventloom_core::{
    Error as CoreError, Position,
    read::OrderRange,
    store::{
        DeadLetter, Generation, IndexKey, IndexedView, ListCursor, ProjectionStatus, ProjectionStop, ViewCommit,
        ViewPage, ViewStore,
    },
};
use tokio_postgres::Row;
use tokio_postgres::error::SqlState;
use tracing::Instrument;

use crate::PgEventStore;
use crate::db::{Db, Fields};
use crate::schema::Sql;
use crate::view_notices::ViewNotices;

/// A [`ViewStore`] on PostgreSQL: views as `json` rows (the exact text the projection wrote;
/// `jsonb` would refuse a string holding `\u0000`) and secondary index entries as rows, both
/// keyed by projection and generation.
///
/// - **Writes** are one round-trip each: `begin_generation`, `commit` and `go_live` call
///   functions of the schema that lock the projection's status row (so writes of one
///   projection serialize), check the fencing token, the generation and the checkpoint, and
///   apply everything in one transaction. Making a generation live drops the old one in the
///   same transaction.
/// - **Queries** ([`read_views`](ViewStore::read_views), [`list`](ViewStore::list),
///   [`count`](ViewStore::count)) are one statement each, which finds the live generation in
///   the status table as it reads: no extra round-trip, and one consistent snapshot. Lists are
///   range scans of the index table's primary key, in byte-wise (`COLLATE "C"`) order. PostgreSQL
///   text cannot hold a NUL byte, and commits refuse one: a view id, index name or value asked
///   for with one names nothing stored, and is answered so (a missing view, an empty list, a
///   count of 0) without being sent.
/// - [`list_generation`](ViewStore::list_generation) and
///   [`count_generation`](ViewStore::count_generation) read the generation named, one statement
///   each, the same range scans without the status table: a dropped generation's rows go with
///   the switch that drops it, so it lists nothing and counts 0.
/// - **Notifications** ([`changes`](ViewStore::changes)): after each commit, switch or recorded
///   stop, a `NOTIFY` on the schema's views channel (`cqrs_views_<schema>`, the projection's
///   name as payload) in a transaction of its own, debounced: a lone write is told at once, a
///   burst costs one `NOTIFY` per [debounce](Self::with_notify_debounce). Waits for views
///   ([`ViewReader::wait_for`](eventloom_core::read::ViewReader::wait_for)) are woken by them
///   through one dedicated `LISTEN` connection per store (shared by its clones, opened by the
///   first wait), whichever process wrote; while it is down they poll every 2 ms, and it
///   reconnects by itself.
///
/// # Examples
///
/// ```no_run
/// use eventloom_core::{read::{Projector, ViewReader}};
/// use eventloom_postgres::{PgConfig, PgEventStore, PgViewStore};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let store = PgEventStore::connect(PgConfig::from_url("postgres://localhost/app")?).await?;
/// store.migrate().await?;
/// let views = PgViewStore::new(&store);
/// let projector = Projector::new(store.clone(), views.clone());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PgViewStore {
    db: Db,
    sql: Arc<Sql>,
    notices: Arc<ViewNotices>,
}

impl std::fmt::Debug for PgViewStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgViewStore").field("schema", &self.sql.schema).finish()
    }
}

impl PgViewStore {
    /// Views in the schema of `store`, on its pool.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use eventloom_core::store::ViewStore;
    /// use eventloom_postgres::{PgConfig, PgEventStore, PgViewStore};
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = PgEventStore::connect(PgConfig::from_url("postgres://localhost/app")?).await?;
    /// store.migrate().await?;
    /// let views = PgViewStore::new(&store);
    /// let status = views.status("tasks").await?;
    /// println!("live: {:?}, building: {:?}", status.live, status.building);
    /// # Ok(()) }
    /// ```
    pub fn new(store: &PgEventStore) -> Self {
        let db = store.db().with_errors(pg);
        let notices =
            ViewNotices::new(db.clone(), store.connector().clone(), store.config().pg.clone(), store.sql().clone());
        PgViewStore { db, sql: store.sql().clone(), notices: Arc::new(notices) }
    }

    /// How long the store waits after sending a `NOTIFY` of its writes before it sends the
    /// next (1 ms by default; shared by its clones): a write that lands meanwhile is told that
    /// much later, and a store sends at most one `NOTIFY` per debounce however many commits it
    /// makes. Zero sends the next as soon as the last one is done.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use eventloom_postgres::{PgConfig, PgEventStore, PgViewStore};
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = PgEventStore::connect(PgConfig::from_url("postgres://localhost/app")?).await?;
    /// let views = PgViewStore::new(&store).with_notify_debounce(Duration::from_millis(5));
    /// # Ok(()) }
    /// ```
    pub fn with_notify_debounce(self, debounce: std::time::Duration) -> Self {
        self.notices.set_debounce(debounce);
        self
    }

    /// Tells readers of a write that landed, or may have (a transient failure).
    fn told<T>(
        &self,
        projection: &str,
        result: eventloom_core::Result<Written<T>>,
    ) -> eventloom_core::Result<Written<T>> {
        if matches!(result, Ok(Ok(_))) || result.as_ref().is_err_and(CoreError::is_transient) {
            self.notices.wrote(projection);
        }
        result
    }
}

fn pg(e: tokio_postgres::Error) -> CoreError {
    if matches!(e.code(), Some(c) if *c == SqlState::INVALID_TEXT_REPRESENTATION || *c == SqlState::UNTRANSLATABLE_CHARACTER)
    {
        return CoreError::InvalidEvent {
            reason: e.as_db_error().map(|d| d.message().to_owned()).unwrap_or_else(|| e.to_string()),
        };
    }
    crate::connect::pg_error(e)
}

/// A row of the read side, for errors.
fn fields<'r>(row: &'r Row, projection: &'r str) -> Fields<'r, impl Fn() -> String + 'r> {
    Fields::new(row, move || format!("the read side of projection {projection}"))
}

fn parts(position: Option<Position>) -> eventloom_core::Result<(Option<String>, Option<i64>)> {
    match position {
        None => Ok((None, None)),
        Some(p) => Ok((
            Some(p.transaction().to_string()),
            Some(i64::try_from(p.sequence()).map_err(|_| CoreError::InvalidPosition(p.to_string()))?),
        )),
    }
}

fn token(value: u64) -> eventloom_core::Result<i64> {
    i64::try_from(value).map_err(|_| CoreError::InvalidId { what: "fencing token", reason: "out of range".into() })
}

/// A generation id as stored: ids above `i64::MAX` are never handed out, so they become -1,
/// which names no generation (writes to it are refused as gone, loads find nothing).
fn generation_param(id: u64) -> i64 {
    i64::try_from(id).unwrap_or(-1)
}

fn not_built(projection: &str) -> CoreError {
    CoreError::NotBuilt { projection: projection.to_owned() }
}

/// The refusal of `fencing_token`, with the highest token, from the column `highest`, that
/// fenced it off.
fn fenced<T>(projection: &str, fencing_token: u64, row: &Row) -> eventloom_core::Result<Written<T>> {
    Ok(Err(Refusal::Fenced { token: fencing_token, highest: fields(row, projection).unsigned("highest")? }))
}

/// The generation `name` of a status row (`live` or `building`: its id, with its version and
/// checkpoint in `<name>_version`, `<name>_tx` and `<name>_seq`), if any.
fn generation_at(row: &Row, projection: &str, name: &str) -> eventloom_core::Result<Option<Generation>> {
    let row = fields(row, projection);
    let Some(id) = row.unsigned_opt(name)? else { return Ok(None) };
    let Some(version) = row.get::<Option<i64>>(format!("{name}_version").as_str())? else {
        return Err(row.corrupt(format_args!("generation {id} has no row")));
    };
    Ok(Some(Generation {
        id,
        version: u32::try_from(version).map_err(|_| row.corrupt(format_args!("generation version {version}")))?,
        checkpoint: row.checkpoint(&format!("{name}_tx"), &format!("{name}_seq"))?,
    }))
}

/// The recorded stop of a status row, if any.
fn stop_at(row: &Row, projection: &str) -> eventloom_core::Result<Option<ProjectionStop>> {
    let row = fields(row, projection);
    let Some(kind) = row.get::<Option<&str>>("stop_kind")? else { return Ok(None) };
    let at = row.checkpoint("stop_tx", "stop_seq")?;
    let reason: Option<&str> = row.get("stop_reason")?;
    let generation = row.unsigned_opt("stop_generation")?.unwrap_or(0);
    let checkpoint = row.checkpoint("stop_checkpoint_tx", "stop_checkpoint_seq")?;
    let stop = ProjectionStop::new(kind.parse()?, at, reason.unwrap_or_default());
    Ok(Some(stop.at(generation, checkpoint)))
}

/// Whether the first row of a query that joins the status table names a live generation (its
/// column `live`).
fn live(rows: &[Row], projection: &str) -> eventloom_core::Result<bool> {
    match rows.first() {
        None => Ok(false),
        Some(row) => Ok(fields(row, projection).get::<Option<i64>>("live")?.is_some()),
    }
}

/// The ids worth asking for: those without a NUL byte (PostgreSQL text cannot hold one, and
/// commits refuse one, so no such view exists).
fn storable(ids: &[String]) -> Vec<&str> {
    ids.iter().map(String::as_str).filter(|id| !id.contains('\0')).collect()
}

/// An index list's name and value, unless one holds a NUL byte (no such list exists).
fn storable_key(key: &IndexKey) -> Option<(&str, &str)> {
    (!key.name.contains('\0') && !key.value.contains('\0')).then_some((key.name.as_str(), key.value.as_str()))
}

/// Where the entries after a cursor start, without NUL bytes (PostgreSQL text cannot hold one),
/// selecting the same stored entries, whose sort keys and ids hold none.
#[derive(Debug, PartialEq, Eq)]
enum Bound<'a> {
    /// After `(sort key, view id)`.
    Entry(&'a str, &'a str),
    /// After every entry of this sort key.
    SortKey(&'a str),
}

/// The entries after `(p\0…, i)` are those whose sort key is above `p`, whatever their id; the
/// entries after `(o, i\0…)` are those after `(o, i)`.
fn cursor_bound(cursor: &ListCursor) -> Bound<'_> {
    fn head(text: &str) -> &str {
        text.split_once('\0').map_or(text, |(head, _)| head)
    }
    if cursor.order.contains('\0') {
        Bound::SortKey(head(&cursor.order))
    } else {
        Bound::Entry(&cursor.order, head(&cursor.id))
    }
}

/// Index entries of a batch as column arrays: view ids, index names, values, sort keys.
#[derive(Default)]
struct Entries<'a> {
    ids: Vec<&'a str>,
    names: Vec<&'a str>,
    values: Vec<&'a str>,
    orders: Vec<&'a str>,
}

impl<'a> Entries<'a> {
    fn push(&mut self, id: &'a str, entry: &'a eventloom_core::IndexEntry) {
        self.ids.push(id);
        self.names.push(&entry.key.name);
        self.values.push(&entry.key.value);
        self.orders.push(&entry.order);
    }
}

impl ViewStore for PgViewStore {
    fn status<'a>(&'a self, projection: &'a str) -> BoxFuture<'a, eventloom_core::Result<ProjectionStatus>> {
        Box::pin(async move {
            match self.db.query_opt(&self.sql.status, &[&projection]).await? {
                None => Ok(ProjectionStatus::default()),
                Some(row) => Ok(ProjectionStatus::new(
                    generation_at(&row, projection, "live")?,
                    generation_at(&row, projection, "building")?,
                    stop_at(&row, projection)?,
                )),
            }
        })
    }

    fn record_stop<'a>(
        &'a self,
        projection: &'a str,
        stop: Option<&'a ProjectionStop>,
        fencing_token: u64,
    ) -> BoxFuture<'a, eventloom_core::Result<Written>> {
        Box::pin(async move {
            let fencing = token(fencing_token)?;
            let (tx, sequence) = parts(stop.and_then(|s| s.position))?;
            let kind = stop.map(|s| s.kind.as_str());
            // PostgreSQL text cannot hold a NUL byte.
            let reason = stop.map(|s| s.reason.replace('\0', "\u{fffd}"));
            let generation = stop.map(|s| generation_param(s.generation));
            let (checkpoint_tx, checkpoint_sequence) = parts(stop.and_then(|s| s.checkpoint))?;
            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 9] = [
                &projection,
                &fencing,
                &kind,
                &tx,
                &sequence,
                &reason,
                &generation,
                &checkpoint_tx,
                &checkpoint_sequence,
            ];
            let written = async {
                let row = self.db.query_one(&self.sql.record_stop, &params).await?;
                match fields(&row, projection).get::<i32>("status")? {
                    0 => Ok(Ok(())),
                    _ => fenced(projection, fencing_token, &row),
                }
            };
            self.told(projection, written.await)
        })
    }

    fn begin_generation<'a>(
        &'a self,
        projection: &'a str,
        version: u32,
        fencing_token: u64,
    ) -> BoxFuture<'a, eventloom_core::Result<Written<Generation>>> {
        Box::pin(async move {
            let span = tracing::debug_span!("begin_generation", store = "postgres", projection, version);
            async {
                let fencing = token(fencing_token)?;
                let params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] =
                    [&projection, &i64::from(version), &fencing];
                let row = self.db.query_one(&self.sql.begin_generation, &params).await?;
                let fields = fields(&row, projection);
                match fields.get::<i32>("status")? {
                    0 => {
                        let id =
                            fields.unsigned_opt("generation_id")?.ok_or_else(|| fields.corrupt("no generation id"))?;
                        Ok(Ok(Generation { id, version, checkpoint: None }))
                    }
                    _ => fenced(projection, fencing_token, &row),
                }
            }
            .instrument(span)
            .await
        })
    }

    fn load_views<'a>(
        &'a self,
        projection: &'a str,
        generation: u64,
        ids: &'a [String],
    ) -> BoxFuture<'a, eventloom_core::Result<Vec<Option<String>>>> {
        Box::pin(async move {
            if ids.is_empty() {
                return Ok(Vec::new());
            }
            let span =
                tracing::trace_span!("load_views", store = "postgres", projection, generation, views = ids.len());
            async {
                let asked = storable(ids);
                let params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] =
                    [&projection, &generation_param(generation), &asked];
                let rows = self.db.query(&self.sql.load_views, &params).await?;
                let mut found: HashMap<String, String> = HashMap::with_capacity(rows.len());
                for row in &rows {
                    let row = fields(row, projection);
                    found.insert(row.get("id")?, row.get("view")?);
                }
                Ok(ids.iter().map(|id| found.get(id).cloned()).collect())
            }
            .instrument(span)
            .await
        })
    }

    fn commit<'a>(&'a self, projection: &'a str, commit: ViewCommit) -> BoxFuture<'a, eventloom_core::Result<Written>> {
        Box::pin(async move {
            let span = tracing::debug_span!(
                "projection_commit",
                store = "postgres",
                projection,
                generation = commit.generation,
                views = commit.views.len()
            );
            let written = self.commit_inner(projection, commit).instrument(span).await;
            self.told(projection, written)
        })
    }

    fn go_live<'a>(
        &'a self,
        projection: &'a str,
        generation: u64,
        fencing_token: u64,
    ) -> BoxFuture<'a, eventloom_core::Result<Written>> {
        Box::pin(async move {
            let span = tracing::debug_span!("go_live", store = "postgres", projection, generation);
            let written = async {
                let fencing = token(fencing_token)?;
                let params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] =
                    [&projection, &generation_param(generation), &fencing];
                let row = self.db.query_one(&self.sql.go_live, &params).await?;
                let fields = fields(&row, projection);
                match fields.get::<i32>("status")? {
                    0 => Ok(Ok(())),
                    1 => Ok(Err(Refusal::CheckpointMoved {
                        expected: fields.checkpoint("built_tx", "built_seq")?,
                        actual: fields.checkpoint("live_tx", "live_seq")?,
                    })),
                    2 => fenced(projection, fencing_token, &row),
                    _ => Ok(Err(Refusal::GenerationGone { generation })),
                }
            }
            .instrument(span)
            .await;
            self.told(projection, written)
        })
    }

    fn read_views<'a>(
        &'a self,
        projection: &'a str,
        ids: &'a [String],
    ) -> BoxFuture<'a, eventloom_core::Result<Vec<Option<String>>>> {
        Box::pin(async move {
            let span = tracing::trace_span!("read_views", store = "postgres", projection, views = ids.len());
            async {
                let rows = self.db.query(&self.sql.read_views, &[&projection, &storable(ids)]).await?;
                if !live(&rows, projection)? {
                    return Err(not_built(projection));
                }
                let mut found: HashMap<String, String> = HashMap::with_capacity(rows.len());
                for row in &rows {
                    let row = fields(row, projection);
                    if let (Some(id), Some(view)) = (row.get("id")?, row.get("view")?) {
                        found.insert(id, view);
                    }
                }
                Ok(ids.iter().map(|id| found.get(id).cloned()).collect())
            }
            .instrument(span)
            .await
        })
    }

    fn list<'a>(
        &'a self,
        projection: &'a str,
        key: &'a IndexKey,
        range: &'a OrderRange,
        after: Option<&'a ListCursor>,
        limit: usize,
    ) -> BoxFuture<'a, eventloom_core::Result<ViewPage>> {
        Box::pin(async move {
            let span = tracing::trace_span!("list", store = "postgres", projection, key = %key, limit);
            let (from, until) = (range.from(), range.until());
            async {
                // One more than asked: whether more follow.
                let fetch = i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX);
                // A list whose name or value holds a NUL is none stored: NULLs match no entry.
                let (name, value) = match storable_key(key) {
                    Some((name, value)) => (Some(name), Some(value)),
                    None => (None, None),
                };
                let rows = match after {
                    None => {
                        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 6] =
                            [&projection, &name, &value, &fetch, &from, &until];
                        self.db.query(&self.sql.list_first, &params).await?
                    }
                    Some(cursor) => match cursor_bound(cursor) {
                        Bound::Entry(order, id) => {
                            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 8] =
                                [&projection, &name, &value, &order, &id, &fetch, &from, &until];
                            self.db.query(&self.sql.list_after, &params).await?
                        }
                        Bound::SortKey(order) => {
                            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 7] =
                                [&projection, &name, &value, &order, &fetch, &from, &until];
                            self.db.query(&self.sql.list_after_sort_key, &params).await?
                        }
                    },
                };
                if !live(&rows, projection)? {
                    return Err(not_built(projection));
                }
                let mut entries = Vec::with_capacity(rows.len());
                for row in &rows {
                    let row = fields(row, projection);
                    let (Some(order), Some(id)) =
                        (row.get::<Option<String>>("sort_key")?, row.get::<Option<String>>("view_id")?)
                    else {
                        continue;
                    };
                    entries.push((order, id, row.get::<Option<String>>("view")?));
                }
                let more = entries.len() > limit;
                entries.truncate(limit);
                let next = match entries.last() {
                    Some((order, id, _)) if more => Some(ListCursor { order: order.clone(), id: id.clone() }),
                    _ => None,
                };
                // An entry whose view is missing is skipped, but the cursor moves past it.
                let views = entries.into_iter().filter_map(|(_, id, view)| view.map(|view| (id, view))).collect();
                Ok(ViewPage { views, next })
            }
            .instrument(span)
            .await
        })
    }

    fn count<'a>(
        &'a self,
        projection: &'a str,
        keys: &'a [IndexKey],
    ) -> BoxFuture<'a, eventloom_core::Result<Vec<u64>>> {
        Box::pin(async move {
            let span = tracing::trace_span!("count", store = "postgres", projection, keys = keys.len());
            async {
                // A list whose name or value holds a NUL is none stored: NULLs count no entry.
                let storable: Vec<Option<(&str, &str)>> = keys.iter().map(storable_key).collect();
                let names: Vec<Option<&str>> = storable.iter().map(|k| k.map(|(name, _)| name)).collect();
                let values: Vec<Option<&str>> = storable.iter().map(|k| k.map(|(_, value)| value)).collect();
                let rows = self.db.query(&self.sql.count, &[&projection, &names, &values]).await?;
                if !live(&rows, projection)? {
                    return Err(not_built(projection));
                }
                let mut counts = Vec::with_capacity(keys.len());
                for row in &rows {
                    let row = fields(row, projection);
                    if row.get::<Option<i64>>("n")?.is_some() {
                        counts.push(row.unsigned("entries")?);
                    }
                }
                if counts.len() != keys.len() {
                    return Err(CoreError::Corrupt {
                        location: format!("the read side of projection {projection}"),
                        reason: format!("{} counts for {} lists", counts.len(), keys.len()),
                    });
                }
                Ok(counts)
            }
            .instrument(span)
            .await
        })
    }

    fn list_generation<'a>(
        &'a self,
        projection: &'a str,
        generation: u64,
        key: &'a IndexKey,
        range: &'a OrderRange,
        after: Option<&'a ListCursor>,
        limit: usize,
    ) -> BoxFuture<'a, eventloom_core::Result<Vec<IndexedView>>> {
        Box::pin(async move {
            let span =
                tracing::trace_span!("list_generation", store = "postgres", projection, generation, key = %key, limit);
            let (from, until) = (range.from(), range.until());
            async {
                let fetch = i64::try_from(limit).unwrap_or(i64::MAX);
                // A list whose name or value holds a NUL is none stored: NULLs match no entry.
                let (name, value) = match storable_key(key) {
                    Some((name, value)) => (Some(name), Some(value)),
                    None => (None, None),
                };
                let generation = generation_param(generation);
                let rows = match after {
                    None => {
                        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 7] =
                            [&projection, &generation, &name, &value, &fetch, &from, &until];
                        self.db.query(&self.sql.list_generation_first, &params).await?
                    }
                    Some(cursor) => match cursor_bound(cursor) {
                        Bound::Entry(order, id) => {
                            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 9] =
                                [&projection, &generation, &name, &value, &order, &id, &fetch, &from, &until];
                            self.db.query(&self.sql.list_generation_after, &params).await?
                        }
                        Bound::SortKey(order) => {
                            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 8] =
                                [&projection, &generation, &name, &value, &order, &fetch, &from, &until];
                            self.db.query(&self.sql.list_generation_after_sort_key, &params).await?
                        }
                    },
                };
                rows.iter()
                    .map(|row| {
                        let row = fields(row, projection);
                        Ok(IndexedView { order: row.get("sort_key")?, id: row.get("view_id")?, view: row.get("view")? })
                    })
                    .collect()
            }
            .instrument(span)
            .await
        })
    }

    fn count_generation<'a>(
        &'a self,
        projection: &'a str,
        generation: u64,
        keys: &'a [IndexKey],
    ) -> BoxFuture<'a, eventloom_core::Result<Vec<u64>>> {
        Box::pin(async move {
            let span =
                tracing::trace_span!("count_generation", store = "postgres", projection, generation, keys = keys.len());
            async {
                // A list whose name or value holds a NUL is none stored: NULLs count no entry.
                let storable: Vec<Option<(&str, &str)>> = keys.iter().map(storable_key).collect();
                let names: Vec<Option<&str>> = storable.iter().map(|k| k.map(|(name, _)| name)).collect();
                let values: Vec<Option<&str>> = storable.iter().map(|k| k.map(|(_, value)| value)).collect();
                let params: [&(dyn tokio_postgres::types::ToSql + Sync); 4] =
                    [&projection, &generation_param(generation), &names, &values];
                let rows = self.db.query(&self.sql.count_generation, &params).await?;
                let counts = rows
                    .iter()
                    .map(|row| fields(row, projection).unsigned("entries"))
                    .collect::<Result<Vec<_>, _>>()?;
                if counts.len() != keys.len() {
                    return Err(CoreError::Corrupt {
                        location: format!("the read side of projection {projection}"),
                        reason: format!("{} counts for {} lists", counts.len(), keys.len()),
                    });
                }
                Ok(counts)
            }
            .instrument(span)
            .await
        })
    }

    fn dead_letters<'a>(&'a self, projection: &'a str) -> BoxFuture<'a, eventloom_core::Result<Vec<DeadLetter>>> {
        Box::pin(async move {
            let rows = self.db.query(&self.sql.dead_letters, &[&projection]).await?;
            rows.iter()
                .map(|row| {
                    let json: &str = fields(row, projection).get("letter")?;
                    serde_json::from_str(json).map_err(|source| CoreError::Serde { what: "dead letter".into(), source })
                })
                .collect()
        })
    }

    fn projections<'a>(&'a self) -> BoxFuture<'a, eventloom_core::Result<Vec<String>>> {
        Box::pin(async move {
            let rows = self.db.query(&self.sql.projections, &[]).await?;
            rows.iter().map(|row| Fields::new(row, || "projection_status".to_owned()).get("projection")).collect()
        })
    }

    fn remove_dead_letters<'a>(
        &'a self,
        projection: &'a str,
        which: &'a DeadLetterSelection,
        fencing_token: u64,
    ) -> BoxFuture<'a, eventloom_core::Result<Written<u64>>> {
        Box::pin(async move {
            let fencing = token(fencing_token)?;
            let (all, positions) = match which {
                DeadLetterSelection::All => (true, Vec::new()),
                DeadLetterSelection::At(positions) => (false, positions.iter().map(ToString::to_string).collect()),
            };
            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 4] = [&projection, &fencing, &all, &positions];
            let row = self.db.query_one(&self.sql.remove_dead_letters, &params).await?;
            let fields = fields(&row, projection);
            if fields.unsigned("known")? == 0 {
                return Ok(Ok(0));
            }
            if fields.unsigned("passed")? == 0 {
                return fenced(projection, fencing_token, &row);
            }
            Ok(Ok(fields.unsigned("removed")?))
        })
    }

    fn changes(&self, projection: &str) -> Option<ViewChanges> {
        Some(self.notices.changes(projection))
    }
}

impl PgViewStore {
    async fn commit_inner(&self, projection: &str, commit: ViewCommit) -> eventloom_core::Result<Written> {
        commit.validate()?;
        let (expected_tx, expected_seq) = parts(commit.expected)?;
        let (checkpoint_tx, checkpoint_seq) = parts(Some(commit.checkpoint))?;
        let fencing = token(commit.fencing_token)?;
        let generation = generation_param(commit.generation);
        let mut ids = Vec::with_capacity(commit.views.len());
        let mut views = Vec::with_capacity(commit.views.len());
        let (mut leave, mut join) = (Entries::default(), Entries::default());
        for write in &commit.views {
            ids.push(write.id.as_str());
            views.push(write.view.as_deref());
            for entry in &write.leave {
                leave.push(&write.id, entry);
            }
            for entry in &write.join {
                join.push(&write.id, entry);
            }
        }
        let dead_letters = commit
            .dead_letters
            .iter()
            .map(serde_json::to_string)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| CoreError::Serde { what: "dead letter".into(), source })?;
        let resolved: Vec<String> = commit.resolved.iter().map(ToString::to_string).collect();
        let row = self
            .db
            .query_one(
                &self.sql.commit_generation,
                &[
                    &projection,
                    &generation,
                    &expected_tx,
                    &expected_seq,
                    &checkpoint_tx,
                    &checkpoint_seq,
                    &fencing,
                    &ids,
                    &views,
                    &leave.ids,
                    &leave.names,
                    &leave.values,
                    &leave.orders,
                    &join.ids,
                    &join.names,
                    &join.values,
                    &join.orders,
                    &dead_letters,
                    &resolved,
                ],
            )
            .await?;
        let fields = fields(&row, projection);
        match fields.get::<i32>("status")? {
            0 => Ok(Ok(())),
            1 => Ok(Err(Refusal::CheckpointMoved {
                expected: commit.expected,
                actual: fields.checkpoint("actual_tx", "actual_seq")?,
            })),
            2 => fenced(projection, commit.fencing_token, &row),
            _ => Ok(Err(Refusal::GenerationGone { generation: commit.generation })),
        }
    }
}

//! The SQL of one store, for its schema.

use crate::connect::pg_error;
use crate::{Error, Result};

/// The migrations, in order: (version, name, SQL with `{schema}` placeholders).
pub(crate) const MIGRATIONS: &[(u32, &str, &str)] = &[
    (1, "event store", include_str!("../sql/0001_event_store.sql")),
    (2, "read side", include_str!("../sql/0002_read_side.sql")),
    (3, "dead letters", include_str!("../sql/0003_dead_letters.sql")),
    (4, "generations", include_str!("../sql/0004_generations.sql")),
    (5, "append probe", include_str!("../sql/0005_append_probe.sql")),
    (6, "append first write", include_str!("../sql/0006_append_first_write.sql")),
    (7, "projection stops", include_str!("../sql/0007_projection_stops.sql")),
    (8, "command fingerprints", include_str!("../sql/0008_command_fingerprints.sql")),
];

/// The columns of the `migrations` table as migrate() makes it, with their types.
const MIGRATIONS_COLUMNS: &[(&str, &str)] =
    &[("version", "integer"), ("name", "text"), ("applied_at", "timestamp with time zone")];

/// The migrations already applied in the schema, from its `migrations` table (created empty by
/// the caller when missing). A table of that name that another tool made is
/// [`Error::ForeignTable`], never a panic on a column of another type.
pub(crate) async fn applied_migrations(client: &tokio_postgres::Transaction<'_>, sql: &Sql) -> Result<Vec<i32>> {
    let table = format!("{}.migrations", sql.schema);
    let foreign = |reason: String| Error::ForeignTable { table: table.clone(), reason };
    let rows = client
        .query(include_str!("../sql/migrations_columns.sql"), &[&table])
        .await
        .map_err(|e| Error::Store(pg_error(e)))?;
    let mut columns = Vec::new();
    for row in &rows {
        let kind: String = row.try_get(0).map_err(|e| Error::Store(pg_error(e)))?;
        if kind != "r" {
            return Err(foreign(format!("it is not a plain table (relkind {kind:?})")));
        }
        let name: Option<String> = row.try_get(1).map_err(|e| Error::Store(pg_error(e)))?;
        let kind: Option<String> = row.try_get(2).map_err(|e| Error::Store(pg_error(e)))?;
        if let (Some(name), Some(kind)) = (name, kind) {
            columns.push((name, kind));
        }
    }
    let expected: Vec<(String, String)> =
        MIGRATIONS_COLUMNS.iter().map(|(n, k)| ((*n).to_owned(), (*k).to_owned())).collect();
    if columns != expected {
        let shown: Vec<String> = columns.iter().map(|(n, k)| format!("{n} {k}")).collect();
        return Err(foreign(format!(
            "its columns are ({}), not (version integer, name text, applied_at timestamptz)",
            shown.join(", ")
        )));
    }
    let rows =
        client.query(&format!("SELECT version FROM {table}"), &[]).await.map_err(|e| Error::Store(pg_error(e)))?;
    rows.iter().map(|r| r.try_get::<_, i32>(0).map_err(|e| foreign(format!("a version does not read: {e}")))).collect()
}

/// The statements a store runs, with the schema name filled in once.
#[derive(Debug)]
pub(crate) struct Sql {
    pub(crate) schema: String,
    pub(crate) append: String,
    pub(crate) append_exact: String,
    pub(crate) append_one: String,
    pub(crate) read_stream: String,
    pub(crate) read_all: String,
    pub(crate) head: String,
    pub(crate) count_after: String,
    pub(crate) held_back: String,
    pub(crate) stream_version: String,
    pub(crate) command_outcome: String,
    pub(crate) streams_of: String,
    pub(crate) load_snapshot: String,
    pub(crate) save_snapshot: String,
    pub(crate) notify_channel: String,
    pub(crate) hidden_events: String,
    pub(crate) status: String,
    pub(crate) record_stop: String,
    pub(crate) begin_generation: String,
    pub(crate) load_views: String,
    pub(crate) commit_generation: String,
    pub(crate) go_live: String,
    pub(crate) read_views: String,
    pub(crate) list_first: String,
    pub(crate) list_after: String,
    pub(crate) list_after_sort_key: String,
    pub(crate) count: String,
    pub(crate) dead_letters: String,
    pub(crate) bump_lease: String,
    pub(crate) restored_from_elsewhere: String,
    pub(crate) record_command: String,
    pub(crate) renumber: String,
}

// Casts get their own names: an ORDER BY on a bare column name would otherwise sort by the
// output column (text!) rather than the table's column.
const EVENT_COLUMNS: &str = "e.category, e.stream_id, e.version, e.event_type, e.schema_version, \
                             e.payload::text AS payload_text, e.metadata::text AS metadata_text, \
                             e.transaction_id::text AS transaction_text, e.sequence";
const STREAM_EVENT_COLUMNS: &str = "e.version, e.event_type, e.schema_version, \
                                    e.payload::text AS payload_text, e.metadata::text AS metadata_text, \
                                    e.transaction_id::text AS transaction_text, e.sequence";

impl Sql {
    pub(crate) fn new(schema: &str) -> Self {
        let s = quote(schema);
        Sql {
            schema: s.clone(),
            append: format!(
                "SELECT status, actual, first_version, last_version, transaction_id, sequence \
                 FROM {s}.append($1, $2, $3, $4, $5, $6, $7, $8, $9)"
            ),
            append_exact: append_exact(&s),
            // The common case of `append_exact` (one event, no command id, a stream that exists)
            // as a plain INSERT: no CTEs, no arrays, no other table opened. No row back: the
            // stream was not at `$3`.
            append_one: format!(
                "INSERT INTO {s}.events (category, stream_id, version, event_type, schema_version, payload, metadata) \
                 SELECT $1::text, $2::text, $3::bigint + 1, $4::text, $5::int4, $6::text::json, $7::text::json \
                  WHERE coalesce(({}), 0) = $3 \
                 RETURNING transaction_id::text, sequence",
                newest_version(&s, "$1", "$2")
            ),
            // The stream is known: its category and id are not sent back with every row.
            read_stream: format!(
                "SELECT {STREAM_EVENT_COLUMNS} FROM {s}.events e \
                 WHERE e.category = $1 AND e.stream_id = $2 AND e.version >= $3 ORDER BY e.version LIMIT $4"
            ),
            // Only below the oldest running transaction: every transaction that could still
            // commit an event before the last one read has ended.
            read_all: format!(
                "SELECT {EVENT_COLUMNS} FROM {s}.events e \
                 WHERE (e.transaction_id, e.sequence) > ($1::text::xid8, $2) \
                   AND e.transaction_id < pg_snapshot_xmin(pg_current_snapshot()) \
                 ORDER BY e.transaction_id, e.sequence LIMIT $3"
            ),
            // The last event `read_all` can return: one backward probe of `events_in_order`
            // from the horizon down.
            head: format!(
                "SELECT e.transaction_id::text AS transaction_text, e.sequence FROM {s}.events e \
                 WHERE e.transaction_id < pg_snapshot_xmin(pg_current_snapshot()) \
                 ORDER BY e.transaction_id DESC, e.sequence DESC LIMIT 1"
            ),
            // What `read_all` would return after a position, counted on `events_in_order`
            // (no payload read), and at most `$3` index entries visited.
            count_after: format!(
                "SELECT count(*) FROM (SELECT 1 FROM {s}.events e \
                 WHERE (e.transaction_id, e.sequence) > ($1::text::xid8, $2) \
                   AND e.transaction_id < pg_snapshot_xmin(pg_current_snapshot()) \
                 ORDER BY e.transaction_id, e.sequence LIMIT $3) c"
            ),
            held_back: format!(
                "SELECT count(*) FROM (SELECT 1 FROM {s}.events \
                 WHERE transaction_id >= pg_snapshot_xmin(pg_current_snapshot()) LIMIT $1) c"
            ),
            stream_version: format!("SELECT coalesce(({}), 0)", newest_version(&s, "$1", "$2")),
            command_outcome: format!(
                "SELECT category, stream_id, first_version, last_version, transaction_id::text, sequence, fingerprint \
                 FROM {s}.commands WHERE command_id = $1"
            ),
            streams_of: format!(
                "SELECT s.stream_id, ({}) FROM {s}.streams s WHERE s.category = $1 AND s.stream_id > $2 \
                 ORDER BY s.stream_id LIMIT $3",
                newest_version(&s, "s.category", "s.stream_id")
            ),
            load_snapshot: format!(
                "SELECT version, transaction_id::text, sequence, snapshot_version, state::text \
                 FROM {s}.snapshots WHERE category = $1 AND stream_id = $2"
            ),
            save_snapshot: format!(
                "INSERT INTO {s}.snapshots AS s \
                   (category, stream_id, version, transaction_id, sequence, snapshot_version, state) \
                 VALUES ($1, $2, $3, $4::text::xid8, $5, $6, $7::text::json) \
                 ON CONFLICT (category, stream_id) DO UPDATE SET \
                   version = excluded.version, transaction_id = excluded.transaction_id, \
                   sequence = excluded.sequence, snapshot_version = excluded.snapshot_version, \
                   state = excluded.state \
                 WHERE s.version < excluded.version"
            ),
            notify_channel: format!("cqrs_events_{schema}"),
            status: format!(
                "SELECT s.live, l.version, l.transaction_id::text, l.sequence, \
                        s.building, b.version, b.transaction_id::text, b.sequence, \
                        s.stop_kind, s.stop_transaction_id::text, s.stop_sequence, s.stop_reason, \
                        s.stop_generation, s.stop_checkpoint_transaction_id::text, s.stop_checkpoint_sequence \
                 FROM {s}.projection_status s \
                 LEFT JOIN {s}.generations l ON l.projection = s.projection AND l.generation = s.live \
                 LEFT JOIN {s}.generations b ON b.projection = s.projection AND b.generation = s.building \
                 WHERE s.projection = $1"
            ),
            begin_generation: format!("SELECT status, generation_id, highest FROM {s}.begin_generation($1, $2, $3)"),
            record_stop: format!("SELECT status, highest FROM {s}.record_stop($1, $2, $3, $4, $5, $6, $7, $8, $9)"),
            load_views: format!(
                "SELECT id, view::text FROM {s}.views WHERE projection = $1 AND generation = $2 AND id = ANY($3)"
            ),
            commit_generation: format!(
                "SELECT status, actual_tx, actual_seq, highest FROM {s}.commit_generation(\
                 $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)"
            ),
            go_live: format!(
                "SELECT status, highest, built_tx, built_seq, live_tx, live_seq FROM {s}.go_live($1, $2, $3)"
            ),
            // Queries find the live generation in the same statement: no row, or a NULL `live`,
            // means none is live.
            read_views: format!(
                "SELECT s.live, v.id, v.view::text FROM {s}.projection_status s \
                 LEFT JOIN {s}.views v ON v.projection = s.projection AND v.generation = s.live AND v.id = ANY($2) \
                 WHERE s.projection = $1"
            ),
            list_first: list(&s, "", "$4"),
            list_after: list(&s, "AND (x.sort_key, x.view_id) > ($4, $5)", "$6"),
            list_after_sort_key: list(&s, "AND x.sort_key > $4", "$5"),
            // One statement, so every count is read from the same snapshot.
            count: format!(
                "SELECT s.live, k.n, (SELECT count(*) FROM {s}.view_index x \
                                      WHERE x.projection = s.projection AND x.generation = s.live \
                                        AND x.name = k.name AND x.value = k.value) \
                 FROM {s}.projection_status s \
                 LEFT JOIN unnest($2::text[], $3::text[]) WITH ORDINALITY AS k(name, value, n) ON true \
                 WHERE s.projection = $1 ORDER BY k.n"
            ),
            dead_letters: format!(
                "SELECT d.letter::text FROM {s}.projection_status s \
                 JOIN {s}.dead_letters d ON d.projection = s.projection AND d.generation = s.live \
                 WHERE s.projection = $1 ORDER BY d.id"
            ),
            record_command: format!(
                "INSERT INTO {s}.commands \
                   (command_id, category, stream_id, first_version, last_version, transaction_id, sequence, fingerprint) \
                 VALUES ($1, $2, $3, $4, $5, $6::text::xid8, $7, $8) ON CONFLICT (command_id) DO NOTHING"
            ),
            // Stored transaction ids at or past this server's next one came from another cluster.
            restored_from_elsewhere: format!(
                "SELECT coalesce(max(transaction_id) >= pg_snapshot_xmax(pg_current_snapshot()), false) FROM {s}.events"
            ),
            renumber: format!(
                "ALTER TABLE {s}.events ALTER COLUMN sequence SET GENERATED BY DEFAULT; \
                 WITH ranked AS ( \
                   SELECT category, stream_id, version, \
                          row_number() OVER (ORDER BY transaction_id, sequence) AS rn FROM {s}.events) \
                 UPDATE {s}.events e SET transaction_id = '1'::xid8, sequence = r.rn \
                   FROM ranked r \
                  WHERE e.category = r.category AND e.stream_id = r.stream_id AND e.version = r.version; \
                 SELECT setval(pg_get_serial_sequence('{s}.events', 'sequence'), \
                               greatest((SELECT max(sequence) FROM {s}.events), 1)); \
                 ALTER TABLE {s}.events ALTER COLUMN sequence SET GENERATED ALWAYS; \
                 UPDATE {s}.commands c SET transaction_id = '1'::xid8, sequence = e.sequence FROM {s}.events e \
                  WHERE e.category = c.category AND e.stream_id = c.stream_id AND e.version = c.last_version; \
                 UPDATE {s}.snapshots n SET transaction_id = '1'::xid8, sequence = e.sequence FROM {s}.events e \
                  WHERE e.category = n.category AND e.stream_id = n.stream_id AND e.version = n.version; \
                 UPDATE {s}.projection_status SET live = NULL, building = NULL; \
                 DELETE FROM {s}.views; \
                 DELETE FROM {s}.view_index; \
                 DELETE FROM {s}.dead_letters; \
                 DELETE FROM {s}.generations;"
            ),
            bump_lease: format!(
                "INSERT INTO {s}.leases AS l (name, token) VALUES ($1, 1) \
                 ON CONFLICT (name) DO UPDATE SET token = l.token + 1 RETURNING token"
            ),
            hidden_events: format!(
                "SELECT count(*) FROM {s}.events WHERE transaction_id >= pg_snapshot_xmin(pg_current_snapshot())"
            ),
        }
    }

    /// A migration's SQL for this schema.
    pub(crate) fn migration(&self, sql: &str) -> String {
        sql.replace("{schema}", &self.schema)
    }
}

/// The newest version of a stream (no row when it has none): one backward probe of the primary
/// key, whatever the planner thinks of the stream's length. (`max(version)` is planned as an
/// aggregate over every index entry of the stream when the statistics say streams are short:
/// 17 ms on a stream of 100,000 events.)
fn newest_version(s: &str, category: &str, stream_id: &str) -> String {
    format!(
        "SELECT e.version FROM {s}.events e WHERE e.category = {category} AND e.stream_id = {stream_id} \
         ORDER BY e.version DESC LIMIT 1"
    )
}

/// An append with an exact expected version (`$3`; 0 for no stream) in one statement, without a
/// lock: the events (`$4`..`$7`) go in at versions `$3 + 1`.. only when the stream's newest
/// version is `$3` in the statement's snapshot and the command id `$8` (NULL for none) is not
/// recorded yet; with them the command's outcome (with the request's fingerprint `$9`, NULL for
/// none) and, for a new stream, its row in `streams`.
/// Writers that race past the check collide on the primary key of `events` (or of `commands`):
/// the one that inserts first wins, the others wait for it and fail with a unique_violation.
///
/// Why the order of events stays right without the lock: the version checked is committed, so
/// the writer that made it has its transaction id already, and this statement takes its own
/// (at its first insert) only after its snapshot: a stream's versions follow their transaction
/// ids, and `(transaction id, sequence)` orders a stream's events by version.
///
/// One row back: the stream's version as checked, whether the command id was recorded before,
/// and, when the events went in, the transaction id and the last event's sequence.
fn append_exact(s: &str) -> String {
    format!(
        "WITH head AS (SELECT coalesce(({newest}), 0) AS version), \
         inserted AS ( \
           INSERT INTO {s}.events (category, stream_id, version, event_type, schema_version, payload, metadata) \
           SELECT $1, $2, $3 + u.n, u.t, u.v, u.p::json, u.m::json \
             FROM unnest($4::text[], $5::int4[], $6::text[], $7::text[]) WITH ORDINALITY AS u(t, v, p, m, n) \
            WHERE (SELECT h.version FROM head h) = $3 \
              AND NOT EXISTS (SELECT 1 FROM {s}.commands d WHERE d.command_id = $8) \
            ORDER BY u.n \
           RETURNING sequence, transaction_id::text AS tx), \
         new_stream AS ( \
           INSERT INTO {s}.streams (category, stream_id) \
           SELECT $1, $2 WHERE $3 = 0 AND EXISTS (SELECT 1 FROM inserted) \
           ON CONFLICT (category, stream_id) DO NOTHING), \
         command AS ( \
           INSERT INTO {s}.commands \
             (command_id, category, stream_id, first_version, last_version, transaction_id, sequence, fingerprint) \
           SELECT $8, $1, $2, $3 + 1, $3 + count(*), pg_current_xact_id(), max(i.sequence), $9::text FROM inserted i \
            WHERE $8 IS NOT NULL HAVING count(*) > 0) \
         SELECT (SELECT h.version FROM head h), \
                EXISTS (SELECT 1 FROM {s}.commands d WHERE d.command_id = $8), \
                max(i.tx), max(i.sequence) \
           FROM inserted i",
        newest = newest_version(s, "$1", "$2")
    )
}

/// A page of one index list (`$2`, `$3`) of the live generation, in order: up to `limit`
/// entries (`$4`; the caller asks one more than it returns, to know whether more follow), or
/// with `after` the entries after a cursor: after the entry (`$4`, `$5`), limit `$6`, or after
/// every entry of the sort key `$4`, limit `$5`. Each comes with its view (NULL when the view is
/// missing). One row with NULL entry columns when the list has no (more) entries; no row, or a
/// NULL `live`, when nothing is live. The lateral subquery is a range scan of `view_index`'s
/// primary key.
fn list(s: &str, after: &str, limit: &str) -> String {
    format!(
        "SELECT s.live, i.sort_key, i.view_id, v.view::text FROM {s}.projection_status s \
         LEFT JOIN LATERAL (SELECT x.sort_key, x.view_id FROM {s}.view_index x \
                            WHERE x.projection = s.projection AND x.generation = s.live \
                              AND x.name = $2 AND x.value = $3 {after} \
                            ORDER BY x.sort_key, x.view_id LIMIT {limit}) i ON true \
         LEFT JOIN {s}.views v ON v.projection = s.projection AND v.generation = s.live AND v.id = i.view_id \
         WHERE s.projection = $1 ORDER BY i.sort_key, i.view_id"
    )
}

/// A quoted identifier. Schema names are validated to `[a-z_][a-z0-9_]*` before they get here;
/// quoting is a second fence.
pub(crate) fn quote(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

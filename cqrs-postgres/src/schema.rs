//! The SQL of one store, for its schema.

/// The migrations, in order: (version, name, SQL with `{schema}` placeholders).
pub(crate) const MIGRATIONS: &[(u32, &str, &str)] = &[
    (1, "event store", include_str!("../sql/0001_event_store.sql")),
    (2, "read side", include_str!("../sql/0002_read_side.sql")),
    (3, "dead letters", include_str!("../sql/0003_dead_letters.sql")),
];

/// The statements a store runs, with the schema name filled in once.
#[derive(Debug)]
pub(crate) struct Sql {
    pub(crate) schema: String,
    pub(crate) append: String,
    pub(crate) read_stream: String,
    pub(crate) read_all: String,
    pub(crate) stream_version: String,
    pub(crate) command_outcome: String,
    pub(crate) streams_of: String,
    pub(crate) load_snapshot: String,
    pub(crate) save_snapshot: String,
    pub(crate) notify_channel: String,
    pub(crate) hidden_events: String,
    pub(crate) load_views: String,
    pub(crate) checkpoint: String,
    pub(crate) commit_views: String,
    pub(crate) reset_views: String,
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
                 FROM {s}.append($1, $2, $3, $4, $5, $6, $7, $8)"
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
            stream_version: format!(
                "SELECT coalesce(max(version), 0) FROM {s}.events WHERE category = $1 AND stream_id = $2"
            ),
            command_outcome: format!(
                "SELECT category, stream_id, first_version, last_version, transaction_id::text, sequence \
                 FROM {s}.commands WHERE command_id = $1"
            ),
            streams_of: format!(
                "SELECT s.stream_id, (SELECT max(e.version) FROM {s}.events e \
                                       WHERE e.category = s.category AND e.stream_id = s.stream_id) \
                 FROM {s}.streams s WHERE s.category = $1 AND s.stream_id > $2 \
                 ORDER BY s.stream_id LIMIT $3"
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
            load_views: format!("SELECT id, view::text FROM {s}.views WHERE projection = $1 AND id = ANY($2)"),
            checkpoint: format!("SELECT transaction_id::text, sequence FROM {s}.checkpoints WHERE projection = $1"),
            commit_views: format!(
                "SELECT status, actual_tx, actual_seq, highest FROM {s}.commit_views($1, $2, $3, $4, $5, $6, $7, $8, $9)"
            ),
            reset_views: format!("SELECT status, highest FROM {s}.reset_views($1, $2)"),
            dead_letters: format!("SELECT letter::text FROM {s}.dead_letters WHERE projection = $1 ORDER BY id"),
            record_command: format!(
                "INSERT INTO {s}.commands \
                   (command_id, category, stream_id, first_version, last_version, transaction_id, sequence) \
                 VALUES ($1, $2, $3, $4, $5, $6::text::xid8, $7) ON CONFLICT (command_id) DO NOTHING"
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
                 DELETE FROM {s}.views; \
                 UPDATE {s}.checkpoints SET transaction_id = NULL, sequence = NULL;"
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

/// A quoted identifier. Schema names are validated to `[a-z_][a-z0-9_]*` before they get here;
/// quoting is a second fence.
pub(crate) fn quote(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

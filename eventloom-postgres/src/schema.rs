//! The SQL of one store, for its schema.

use crate::connect::pg_error;
use crate::db::Fields;
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
    (9, "command refusals", include_str!("../sql/0009_command_refusals.sql")),
    (10, "command retention", include_str!("../sql/0010_command_retention.sql")),
    (11, "relays", include_str!("../sql/0011_relays.sql")),
    (12, "lease holders", include_str!("../sql/0012_lease_holders.sql")),
    (13, "combined append", include_str!("../sql/0013_combined_append.sql")),
    (14, "resolved dead letters", include_str!("../sql/0014_resolved_dead_letters.sql")),
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
    let rows = client.query(fixed::MIGRATIONS_COLUMNS, &[&table]).await.map_err(|e| Error::Store(pg_error(e)))?;
    let mut columns = Vec::new();
    for row in &rows {
        let row = Fields::new(row, || format!("the catalog entry of {table}"));
        let kind: String = row.get("kind")?;
        if kind != "r" {
            return Err(foreign(format!("it is not a plain table (relkind {kind:?})")));
        }
        let name: Option<String> = row.get("name")?;
        let kind: Option<String> = row.get("type")?;
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
    let rows = client.query(&sql.applied_migrations, &[]).await.map_err(|e| Error::Store(pg_error(e)))?;
    rows.iter()
        .map(|r| r.try_get::<_, i32>("version").map_err(|e| foreign(format!("a version does not read: {e}"))))
        .collect()
}

/// Statements that name no table of the schema, as they are run.
pub(crate) mod fixed {
    /// The advisory lock that serializes migrations and renumbering: `$1` the lock's key.
    pub(crate) const MIGRATION_LOCK: &str = statement(include_str!("../sql/statements/migration_lock.sql"));
    /// The bigint advisory locks taken in this database now (`high`, `low` halves of the key).
    pub(crate) const HELD_LEASE_LOCKS: &str = statement(include_str!("../sql/statements/held_lease_locks.sql"));
    /// A lease's advisory lock, if it is free: `$1` the lock's key.
    pub(crate) const TRY_LEASE_LOCK: &str = statement(include_str!("../sql/statements/try_lease_lock.sql"));
    /// A lease connection's check.
    pub(crate) const LEASE_CHECK: &str = statement(include_str!("../sql/statements/lease_check.sql"));
    /// A lease session's server-side timeouts: `$1` the settings' names, `$2` their values.
    pub(crate) const LEASE_SESSION: &str = statement(include_str!("../sql/statements/lease_session.sql"));
    /// One coalesced wake-up: `NOTIFY` on the channel `$1`.
    pub(crate) const NOTIFY: &str = statement(include_str!("../sql/statements/notify.sql"));
    /// The views' debounced notifications: `NOTIFY` on the channel `$1` with each projection
    /// name of `$2`.
    pub(crate) const NOTIFY_VIEWS: &str = statement(include_str!("../sql/statements/notify_views.sql"));
    /// The oldest transaction of the cluster, for [`Holdback`](crate::Holdback).
    pub(crate) const OLDEST_TRANSACTION: &str = statement(include_str!("../sql/statements/oldest_transaction.sql"));
    /// The primary's WAL insert position (`lsn`, text).
    pub(crate) const WAL_INSERT_POSITION: &str = statement(include_str!("../sql/statements/wal_insert_position.sql"));
    /// The primary's WAL flush position (`lsn`, text), for [`ReplicaLag`](crate::ReplicaLag).
    pub(crate) const WAL_FLUSH_POSITION: &str = statement(include_str!("../sql/statements/wal_flush_position.sql"));
    /// Whether a replica has replayed up to the WAL position `$1`.
    pub(crate) const REPLAYED_TO: &str = statement(include_str!("../sql/statements/replayed_to.sql"));
    /// A replica's lag behind the primary's WAL position `$1`, for [`ReplicaLag`](crate::ReplicaLag).
    pub(crate) const REPLICA_LAG: &str = statement(include_str!("../sql/statements/replica_lag.sql"));
    /// Whether reads in order can return the transaction `$1`.
    pub(crate) const READABLE_PAST: &str = statement(include_str!("../sql/statements/readable_past.sql"));
    /// The kind and columns of the relation `$1`.
    pub(crate) const MIGRATIONS_COLUMNS: &str = statement(include_str!("../sql/statements/migrations_columns.sql"));
    /// Whether the relation `$1` exists.
    pub(crate) const TABLE_EXISTS: &str = statement(include_str!("../sql/statements/table_exists.sql"));

    /// A statement as its file holds it, without the final line break.
    const fn statement(text: &str) -> &str {
        text.trim_ascii_end()
    }
}

/// The statements a store runs, with the schema name filled in once. Each comes from its file
/// in `sql/statements/` (named as the field), where `{schema}` stands for the quoted schema name;
/// the comments at the top of each file say what it does.
#[derive(Debug)]
pub(crate) struct Sql {
    /// The schema's name, quoted.
    pub(crate) schema: String,
    /// The channel of wake-ups (`NOTIFY`/`LISTEN`), unquoted.
    pub(crate) notify_channel: String,
    /// `LISTEN` on the channel. (No comment in its file: tests find the listening sessions by
    /// this text in `pg_stat_activity`.)
    pub(crate) listen: String,
    /// The channel of the views' notifications (a projection's live checkpoint moved; the
    /// payload names it), unquoted, at most 63 bytes.
    pub(crate) views_channel: String,
    /// `LISTEN` on the views' channel. (No comment in its file, as `listen`.)
    pub(crate) listen_views: String,
    pub(crate) setup: String,
    pub(crate) applied_migrations: String,
    pub(crate) record_migration: String,
    pub(crate) count_events: String,
    pub(crate) append: String,
    pub(crate) append_exact: String,
    pub(crate) append_one: String,
    pub(crate) append_combined: String,
    pub(crate) append_combined_one: String,
    pub(crate) read_stream: String,
    pub(crate) fold_stream: String,
    pub(crate) event_position: String,
    pub(crate) read_all: String,
    pub(crate) head: String,
    pub(crate) count_after: String,
    pub(crate) held_back: String,
    pub(crate) stream_version: String,
    pub(crate) command_outcome: String,
    pub(crate) streams_of: String,
    pub(crate) categories: String,
    pub(crate) schema_migrations: String,
    pub(crate) load_snapshot: String,
    pub(crate) save_snapshot: String,
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
    pub(crate) list_generation_first: String,
    pub(crate) list_generation_after: String,
    pub(crate) list_generation_after_sort_key: String,
    pub(crate) count_generation: String,
    pub(crate) dead_letters: String,
    pub(crate) projections: String,
    pub(crate) remove_dead_letters: String,
    pub(crate) bump_lease: String,
    pub(crate) leases: String,
    pub(crate) restored_from_elsewhere: String,
    pub(crate) record_command: String,
    pub(crate) expire_commands: String,
    pub(crate) forget_commands: String,
    pub(crate) append_relayed: String,
    pub(crate) relayed: String,
    pub(crate) renumber: String,
}

impl Sql {
    pub(crate) fn new(schema: &str) -> Self {
        let s = quote(schema);
        let fill = |text: &str| text.trim_ascii_end().replace("{schema}", &s);
        // A channel is an identifier: PostgreSQL keeps 63 bytes of it (LISTEN cuts a longer one,
        // pg_notify refuses it, which would fail the append that carries it). Schema names are
        // ASCII; two that share their first 51 bytes share the channels, which costs spurious
        // wake-ups only.
        let channel = |prefix: &str| {
            let mut channel = format!("{prefix}{schema}");
            while channel.len() > 63 {
                channel.pop();
            }
            channel
        };
        let notify_channel = channel("cqrs_events_");
        let views_channel = channel("cqrs_views_");
        Sql {
            listen: fill(include_str!("../sql/statements/listen.sql")).replace("{channel}", &quote(&notify_channel)),
            notify_channel,
            listen_views: fill(include_str!("../sql/statements/listen.sql"))
                .replace("{channel}", &quote(&views_channel)),
            views_channel,
            setup: fill(include_str!("../sql/statements/setup.sql")),
            applied_migrations: fill(include_str!("../sql/statements/applied_migrations.sql")),
            record_migration: fill(include_str!("../sql/statements/record_migration.sql")),
            count_events: fill(include_str!("../sql/statements/count_events.sql")),
            append: fill(include_str!("../sql/statements/append.sql")),
            append_exact: fill(include_str!("../sql/statements/append_exact.sql")),
            append_one: fill(include_str!("../sql/statements/append_one.sql")),
            append_combined: fill(include_str!("../sql/statements/append_combined.sql")),
            append_combined_one: fill(include_str!("../sql/statements/append_combined_one.sql")),
            read_stream: fill(include_str!("../sql/statements/read_stream.sql")),
            fold_stream: fill(include_str!("../sql/statements/fold_stream.sql")),
            event_position: fill(include_str!("../sql/statements/event_position.sql")),
            read_all: fill(include_str!("../sql/statements/read_all.sql")),
            head: fill(include_str!("../sql/statements/head.sql")),
            count_after: fill(include_str!("../sql/statements/count_after.sql")),
            held_back: fill(include_str!("../sql/statements/held_back.sql")),
            stream_version: fill(include_str!("../sql/statements/stream_version.sql")),
            command_outcome: fill(include_str!("../sql/statements/command_outcome.sql")),
            streams_of: fill(include_str!("../sql/statements/streams_of.sql")),
            categories: fill(include_str!("../sql/statements/categories.sql")),
            schema_migrations: fill(include_str!("../sql/statements/schema_migrations.sql")),
            load_snapshot: fill(include_str!("../sql/statements/load_snapshot.sql")),
            save_snapshot: fill(include_str!("../sql/statements/save_snapshot.sql")),
            hidden_events: fill(include_str!("../sql/statements/hidden_events.sql")),
            status: fill(include_str!("../sql/statements/status.sql")),
            record_stop: fill(include_str!("../sql/statements/record_stop.sql")),
            begin_generation: fill(include_str!("../sql/statements/begin_generation.sql")),
            load_views: fill(include_str!("../sql/statements/load_views.sql")),
            commit_generation: fill(include_str!("../sql/statements/commit_generation.sql")),
            go_live: fill(include_str!("../sql/statements/go_live.sql")),
            read_views: fill(include_str!("../sql/statements/read_views.sql")),
            list_first: fill(include_str!("../sql/statements/list_first.sql")),
            list_after: fill(include_str!("../sql/statements/list_after.sql")),
            list_after_sort_key: fill(include_str!("../sql/statements/list_after_sort_key.sql")),
            count: fill(include_str!("../sql/statements/count.sql")),
            list_generation_first: fill(include_str!("../sql/statements/list_generation_first.sql")),
            list_generation_after: fill(include_str!("../sql/statements/list_generation_after.sql")),
            list_generation_after_sort_key: fill(include_str!("../sql/statements/list_generation_after_sort_key.sql")),
            count_generation: fill(include_str!("../sql/statements/count_generation.sql")),
            dead_letters: fill(include_str!("../sql/statements/dead_letters.sql")),
            projections: fill(include_str!("../sql/statements/projections.sql")),
            remove_dead_letters: fill(include_str!("../sql/statements/remove_dead_letters.sql")),
            bump_lease: fill(include_str!("../sql/statements/bump_lease.sql")),
            leases: fill(include_str!("../sql/statements/leases.sql")),
            restored_from_elsewhere: fill(include_str!("../sql/statements/restored_from_elsewhere.sql")),
            record_command: fill(include_str!("../sql/statements/record_command.sql")),
            expire_commands: fill(include_str!("../sql/statements/expire_commands.sql")),
            forget_commands: fill(include_str!("../sql/statements/forget_commands.sql")),
            append_relayed: fill(include_str!("../sql/statements/append_relayed.sql")),
            relayed: fill(include_str!("../sql/statements/relayed.sql")),
            renumber: fill(include_str!("../sql/statements/renumber.sql")),
            schema: s.clone(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_statement_names_the_quoted_schema_and_keeps_no_placeholder() {
        // Schema names are validated before they get here; the quoting holds even for one
        // that was not.
        let sql = Sql::new("a\"b");
        let text = format!("{sql:?}");
        assert!(!text.contains("{schema}") && !text.contains("{channel}"), "{text}");
        assert_eq!(sql.schema, "\"a\"\"b\"");
        assert!(sql.read_all.contains("FROM \"a\"\"b\".events e"), "{}", sql.read_all);
        assert_eq!(sql.listen, "LISTEN \"cqrs_events_a\"\"b\"");
        assert_eq!(sql.listen_views, "LISTEN \"cqrs_views_a\"\"b\"");
        let long = Sql::new(&"s".repeat(63));
        assert_eq!(long.views_channel.len(), 63);
        assert_eq!(long.listen_views, format!("LISTEN \"{}\"", long.views_channel));
        assert_eq!(sql.migration("SELECT 1 FROM {schema}.x"), "SELECT 1 FROM \"a\"\"b\".x");
    }
}

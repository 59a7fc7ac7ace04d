//! `migrate()` in a schema that already holds tables of another tool.

use eventloom_postgres::{Error, PgConfig, PgEventStore};

use crate::support::{database_url, fresh_schema, raw};

/// `migrate()` in a schema whose `migrations` table was made by `create` (another tool's).
async fn migrate_over(create: &str) -> Result<(), Error> {
    let url = database_url();
    let schema = fresh_schema();
    let s = format!("\"{schema}\"");
    raw(&url).await.batch_execute(&format!("CREATE SCHEMA {s}; {}", create.replace("{s}", &s))).await.unwrap();
    let store = PgEventStore::connect(PgConfig::from_url(&url).unwrap().schema(schema).unwrap()).await.unwrap();
    store.migrate().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_foreign_migrations_table_is_a_typed_error_not_a_panic() {
    let foreign = [
        // Another tool's versions: text, or bigint timestamps.
        "CREATE TABLE {s}.migrations (version text PRIMARY KEY, name text); \
         INSERT INTO {s}.migrations VALUES ('20240101_init', 'init');",
        "CREATE TABLE {s}.migrations (version bigint PRIMARY KEY, name text NOT NULL); \
         INSERT INTO {s}.migrations VALUES (20240101000000, 'init');",
        // No version column at all.
        "CREATE TABLE {s}.migrations (id serial PRIMARY KEY, file text NOT NULL);",
        // A view of that name.
        "CREATE VIEW {s}.migrations AS SELECT 1 AS version, 'x'::text AS name;",
    ];
    for create in foreign {
        match migrate_over(create).await {
            Err(Error::ForeignTable { table, reason }) => {
                assert!(table.ends_with(".migrations"), "{table}");
                println!("{create}\n  -> {}", Error::ForeignTable { table, reason });
            }
            other => panic!("{create}: expected Error::ForeignTable, got {other:?}"),
        }
    }
    // The table these crates make is no stranger, even empty or half-applied.
    migrate_over(
        "CREATE TABLE {s}.migrations \
           (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now());",
    )
    .await
    .unwrap();
}

/// A migration the server refuses is `Error::Migration` naming the step, with the server's
/// message and SQLSTATE in its source (an `eventloom_core::Error`, no tokio-postgres type).
#[tokio::test]
async fn a_failed_migration_names_its_step_and_the_servers_error() {
    // `events` exists without the columns migration 1 indexes.
    match migrate_over("CREATE TABLE {s}.events (x integer)").await {
        Err(Error::Migration { version: 1, source }) => {
            let text = source.to_string();
            assert!(text.contains("transaction_id") && text.contains("42703"), "{text}");
            assert!(!source.is_transient(), "{source:?}");
        }
        other => panic!("expected Error::Migration for step 1, got {other:?}"),
    }
}

/// The pool's connections, without the `interop` feature's deadpool type.
#[tokio::test]
async fn the_pool_status_counts_its_connections() {
    let config = PgConfig::from_url(&database_url()).unwrap().schema(fresh_schema()).unwrap().pool_size(3);
    let store = PgEventStore::connect(config).await.unwrap();
    let status = store.pool_status();
    assert_eq!(status.max_size, 3);
    // `connect` checked one connection out and back in.
    assert_eq!((status.size, status.idle), (1, 1), "{status:?}");
}

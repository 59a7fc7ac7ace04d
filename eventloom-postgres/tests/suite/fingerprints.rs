//! Command fingerprints on PostgreSQL: kept with every command id, and outcomes recorded before
//! migration 8 (without one) still replay.

use eventloom_core::{CommandError, Error, ExecuteOptions, Metadata, model::NewEvent, store::EventStore, write::Cqrs};
use eventloom_postgres::{PgConfig, PgEventStore};

use crate::domain::{AccountEvent, Deposit, Open};
use crate::support::{database_url, fresh_schema, raw, store};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_id_reused_for_another_request_is_refused_across_engines() {
    let store = store().await;
    let one = Cqrs::new(store.clone());
    one.execute(Open { id: "a".into() }).await.unwrap();
    let key = || ExecuteOptions::default().command_id("pay-1");
    let first = one.execute_with(Deposit { id: "a".into(), amount: 5 }, key()).await.unwrap();
    // Another process: its own cache, and the statement with an exact version.
    let other = Cqrs::new(store.clone()).with_cache_capacity(0);
    let again = other.execute_with(Deposit { id: "a".into(), amount: 5 }, key()).await.unwrap();
    assert!(again.replayed && !first.replayed, "{first:?} {again:?}");
    assert_eq!((again.version, again.position, again.appended), (first.version, first.position, 0));
    for engine in [&one, &other] {
        let err = engine.execute_with(Deposit { id: "a".into(), amount: 6 }, key()).await.unwrap_err();
        assert!(
            matches!(err, CommandError::Store(Error::CommandIdReused { first_fingerprint: Some(_), .. })),
            "{err:?}"
        );
    }
    // A no-op keeps its fingerprint too.
    let noop = || ExecuteOptions::default().command_id("open-again");
    let touched = one.execute_with(Open { id: "a".into() }, noop()).await.unwrap();
    assert_eq!(touched.appended, 0);
    let err = other.execute_with(Deposit { id: "a".into(), amount: 1 }, noop()).await.unwrap_err();
    assert!(matches!(err, CommandError::Store(Error::CommandIdReused { .. })), "{err:?}");
    assert!(other.execute_with(Open { id: "a".into() }, noop()).await.unwrap().replayed);
    assert_eq!(store.stream_version(&eventloom_core::StreamId::new("account", "a").unwrap()).await.unwrap(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outcomes_recorded_before_migration_8_replay_without_a_fingerprint() {
    let url = database_url();
    let schema = fresh_schema();
    let connect = || async {
        let store = PgEventStore::connect(PgConfig::from_url(&url).unwrap().schema(schema.clone()).unwrap()).await;
        store.unwrap()
    };
    connect().await.migrate().await.unwrap();
    // Back to the schema as migration 7 left it, `append` as migration 6 made it.
    let s = format!("\"{schema}\"");
    let client = raw(&url).await;
    client
        .batch_execute(&format!(
            "ALTER TABLE {s}.commands DROP COLUMN fingerprint, DROP COLUMN refusal, DROP COLUMN recorded_at, \
                 DROP COLUMN kept; \
             DROP FUNCTION {s}.append(text, text, bigint, text[], integer[], text[], text[], text, text, \
                 timestamptz, boolean); \
             DELETE FROM {s}.migrations WHERE version >= 8;"
        ))
        .await
        .unwrap();
    client.batch_execute(&include_str!("../../sql/0006_append_first_write.sql").replace("{schema}", &s)).await.unwrap();
    // The release before executes a command under a key, through its 8-argument `append`.
    let metadata = Metadata::default().with_command_id("old-key");
    let opened = NewEvent::encode(&AccountEvent::Opened, metadata).unwrap();
    let row = client
        .query_one(
            &format!("SELECT status FROM {s}.append('account', 'a', NULL, $1, $2, $3, $4, 'old-key')"),
            &[
                &vec![opened.event_type.as_ref()],
                &vec![1i32],
                &vec![opened.payload.as_str()],
                &vec![serde_json::to_string(&opened.metadata).unwrap()],
            ],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>(0), 0);

    let store = connect().await;
    let before = eventloom_core::model::Timestamp::now();
    store.migrate().await.unwrap();
    let after = eventloom_core::model::Timestamp::now();
    let first = store.command_outcome("old-key").await.unwrap().expect("kept");
    assert_eq!((first.outcome.last_version, first.fingerprint, first.refusal.as_deref()), (1, None, None));
    // Migration 10 stamps the rows from before with its own time (the server's; one machine here),
    // not kept: they expire one retention after the upgrade.
    let slack = 5_000_000;
    assert!(
        first.recorded_at.as_micros() >= before.as_micros() - slack
            && first.recorded_at.as_micros() <= after.as_micros() + slack,
        "{:?} not within {before:?}..{after:?}",
        first.recorded_at
    );
    assert!(!first.kept);
    let cqrs = Cqrs::new(store.clone());
    let key = || ExecuteOptions::default().command_id("old-key");
    let again = cqrs.execute_with(Open { id: "a".into() }, key()).await.unwrap();
    assert!(again.replayed && again.version == 1 && again.position == first.outcome.position, "{again:?}");
    let err = cqrs.execute_with(Open { id: "b".into() }, key()).await.unwrap_err();
    assert!(matches!(err, CommandError::Store(Error::CommandIdReused { first_fingerprint: None, .. })), "{err:?}");
    // New commands get fingerprints, through both statements.
    cqrs.execute_with(Deposit { id: "a".into(), amount: 1 }, ExecuteOptions::default().command_id("new"))
        .await
        .unwrap();
    assert!(store.command_outcome("new").await.unwrap().unwrap().fingerprint.is_some());
    let any = NewEvent::encode(&AccountEvent::Deposited { amount: 1 }, Metadata::default()).unwrap();
    let print = "c".repeat(64).parse().unwrap();
    let mut keyed = any.clone();
    keyed.metadata.command_id = Some("any".into());
    store
        .append_command(
            &eventloom_core::StreamId::new("account", "a").unwrap(),
            eventloom_core::model::ExpectedVersion::Any,
            vec![keyed],
            &eventloom_core::store::CommandEntry::new(print, eventloom_core::model::Timestamp::now()),
        )
        .await
        .unwrap()
        .into_outcome();
    assert_eq!(store.command_outcome("any").await.unwrap().unwrap().fingerprint, Some(print));
}

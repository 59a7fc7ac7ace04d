//! Stored rows that cannot be what the store wrote are `Error::Corrupt` (never transient, so
//! nothing retries them forever), naming where they are; a projector stops on them.

use std::time::Duration;

use eventloom_core::model::ExpectedVersion;
use eventloom_core::prelude::*;
use eventloom_core::testing::test_event;
use eventloom_core::{
    BoxError, Error, Projection,
    read::Projector,
    store::{EventStore, Snapshot, SnapshotStore, ViewStore},
    write::Cqrs,
};
use eventloom_postgres::{PgConfig, PgEventStore, PgSnapshotStore, PgViewStore};

use crate::domain::*;
use crate::support::{database_url, raw, store};

fn stream(id: &str) -> StreamId {
    StreamId::new("corrupt", id).unwrap()
}

/// A second store on the same schema, with a pool of its own: no statement prepared before the
/// table was altered.
async fn reconnect(store: &PgEventStore) -> PgEventStore {
    let config = PgConfig::from_url(&database_url()).unwrap().schema(store.config().schema_name()).unwrap();
    PgEventStore::connect(config).await.unwrap()
}

/// Three events on `corrupt/a` and one on `corrupt/b`; the position of each, in order.
async fn seeded() -> (PgEventStore, Vec<Position>) {
    let store = store().await;
    let a = store
        .append(&stream("a"), ExpectedVersion::NoStream, (1..=3).map(test_event).collect())
        .await
        .unwrap()
        .into_outcome();
    let b = store.append(&stream("b"), ExpectedVersion::NoStream, vec![test_event(4)]).await.unwrap().into_outcome();
    let all = crate::ordering::wait_for_count(&store, 4).await;
    assert_eq!((all[2].position, all[3].position), (a.position, b.position));
    (store, all.iter().map(|e| e.position).collect())
}

async fn sql(store: &PgEventStore, statement: &str) {
    let schema = store.config().schema_name().to_owned();
    raw(&database_url()).await.batch_execute(&statement.replace("{s}", &format!("\"{schema}\""))).await.unwrap();
}

/// `read_all` from the start fails with `Corrupt`, not transient, its location holding `at`.
async fn read_all_is_corrupt(store: &PgEventStore, at: &str, reason: &str) {
    match store.read_all(Position::ZERO, 100).await {
        Err(error @ Error::Corrupt { .. }) => {
            assert!(!error.is_transient());
            let Error::Corrupt { location, reason: why } = &error else { unreachable!() };
            assert!(location.contains(at), "{location:?} names {at:?}");
            assert!(why.contains(reason), "{why:?} says {reason:?}");
        }
        other => panic!("expected Error::Corrupt at {at}, got {other:?}"),
    }
}

#[tokio::test]
async fn a_negative_version_is_corrupt_and_names_the_event() {
    let (store, positions) = seeded().await;
    sql(&store, "UPDATE {s}.events SET version = -2 WHERE stream_id = 'a' AND version = 2").await;
    read_all_is_corrupt(&store, &format!("position {}", positions[1]), "negative version -2").await;
    read_all_is_corrupt(&store, "stream corrupt/a, version -2", "negative version").await;
    // Reads that do not reach the row go on.
    assert_eq!(store.read_all(positions[1], 100).await.unwrap().len(), 2);
    // A stream read never reaches a negative version; the gap it leaves is corrupt.
    match store.read_stream(&stream("a"), 1, 10).await {
        Err(Error::Corrupt { location, reason }) => {
            assert!(location.contains("stream corrupt/a, version 3"), "{location}");
            assert!(reason.contains("expected version 2"), "{reason}");
        }
        other => panic!("expected Error::Corrupt, got {other:?}"),
    }
    assert_eq!(store.read_stream(&stream("a"), 3, 10).await.unwrap().len(), 1);
    // A fold (the engine's load) meets the gap too, and names the row after it by its position.
    match store.fold_stream(&stream("a"), 1, 10, usize::MAX, &mut |_| Ok(())).await {
        Err(Error::Corrupt { location, reason }) => {
            let at = format!("event at position {} (stream corrupt/a, version 3)", positions[2]);
            assert!(location.contains(&at), "{location:?} names {at:?}");
            assert!(reason.contains("expected version 2"), "{reason}");
        }
        other => panic!("expected Error::Corrupt, got {other:?}"),
    }
}

#[tokio::test]
async fn a_negative_sequence_or_schema_version_is_corrupt() {
    let (store, positions) = seeded().await;
    sql(&store, "UPDATE {s}.events SET schema_version = -1 WHERE stream_id = 'b'").await;
    read_all_is_corrupt(&store, &format!("position {}", positions[3]), "negative schema version -1").await;
    let (store, _) = seeded().await;
    // The sequence is an identity column: a row with a negative one goes in directly.
    sql(
        &store,
        "INSERT INTO {s}.events (sequence, category, stream_id, version, event_type, schema_version, payload, metadata) \
         OVERRIDING SYSTEM VALUE VALUES (-7, 'corrupt', 'c', 1, 'Tested', 1, '{}', '{}')",
    )
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        match store.read_all(Position::ZERO, 100).await {
            Err(Error::Corrupt { location, reason }) => {
                assert!(location.contains("stream corrupt/c, version 1"), "{location}");
                assert!(reason.contains("negative sequence -7"), "{reason}");
                break;
            }
            // Held back for a moment by another test's transaction.
            Ok(events) if events.len() == 4 && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            other => panic!("expected Error::Corrupt, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_stream_id_the_model_refuses_is_corrupt() {
    let (store, positions) = seeded().await;
    sql(&store, "UPDATE {s}.events SET category = 'cor/rupt' WHERE stream_id = 'b'").await;
    read_all_is_corrupt(&store, &format!("position {}", positions[3]), "stream id refused").await;
    let (store, positions) = seeded().await;
    sql(&store, "UPDATE {s}.events SET stream_id = '' WHERE stream_id = 'b'").await;
    read_all_is_corrupt(&store, &format!("position {} (stream corrupt/,", positions[3]), "stream id refused").await;
}

#[tokio::test]
async fn a_column_of_the_wrong_type_is_corrupt() {
    let (store, positions) = seeded().await;
    sql(&store, "ALTER TABLE {s}.events ALTER COLUMN schema_version TYPE bigint").await;
    let store = reconnect(&store).await;
    read_all_is_corrupt(&store, &format!("position {}", positions[0]), "column schema_version").await;
    match store.read_stream(&stream("a"), 1, 10).await {
        Err(Error::Corrupt { location, .. }) => assert!(location.contains("stream corrupt/a, version 1"), "{location}"),
        other => panic!("expected Error::Corrupt, got {other:?}"),
    }
    // A NULL where the store never writes one.
    let (store, positions) = seeded().await;
    sql(&store, "ALTER TABLE {s}.events ALTER COLUMN event_type DROP NOT NULL; UPDATE {s}.events SET event_type = NULL WHERE stream_id = 'b'").await;
    read_all_is_corrupt(&store, &format!("position {}", positions[3]), "column event_type").await;
}

#[tokio::test]
async fn a_corrupt_snapshot_is_corrupt_and_names_its_stream() {
    let store = store().await;
    let snapshots = PgSnapshotStore::new(&store);
    let s = stream("snap");
    let snapshot = |version| Snapshot {
        stream: s.clone(),
        version,
        position: Position::new(3, 4),
        snapshot_version: 1,
        state: "{}".into(),
    };
    snapshots.save_snapshot(snapshot(5)).await.unwrap();
    for (change, reason) in [
        ("UPDATE {s}.snapshots SET version = -5", "negative version -5"),
        ("UPDATE {s}.snapshots SET version = 5, sequence = -4", "negative sequence -4"),
        ("UPDATE {s}.snapshots SET sequence = 4, snapshot_version = -1", "negative snapshot version -1"),
    ] {
        sql(&store, change).await;
        match snapshots.load_snapshot(&s).await {
            Err(error @ Error::Corrupt { .. }) => {
                assert!(!error.is_transient());
                let text = error.to_string();
                assert!(text.contains("snapshot of stream corrupt/snap") && text.contains(reason), "{text}");
            }
            other => panic!("expected Error::Corrupt ({reason}), got {other:?}"),
        }
    }
    sql(&store, "ALTER TABLE {s}.snapshots ALTER COLUMN transaction_id TYPE text; UPDATE {s}.snapshots SET snapshot_version = 1, transaction_id = 'zz'").await;
    let snapshots = PgSnapshotStore::new(&reconnect(&store).await);
    match snapshots.load_snapshot(&s).await {
        Err(Error::Corrupt { reason, .. }) => assert!(reason.contains("unparsable transaction id \"zz\""), "{reason}"),
        other => panic!("expected Error::Corrupt, got {other:?}"),
    }
}

#[tokio::test]
async fn a_corrupt_checkpoint_on_the_read_side_is_corrupt() {
    let store = store().await;
    let views = PgViewStore::new(&store);
    let generation = views.begin_generation("p", 1, 1).await.unwrap().unwrap();
    sql(&store, "UPDATE {s}.generations SET transaction_id = '5', sequence = -1").await;
    match views.status("p").await {
        Err(error @ Error::Corrupt { .. }) => assert!(error.to_string().contains("checkpoint 5.-1"), "{error}"),
        other => panic!("expected Error::Corrupt for generation {}, got {other:?}", generation.id),
    }
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Count(u64);

struct Counts;

impl Projection for Counts {
    const NAME: &'static str = "counts";
    type Events = Account;
    type View = Count;
    fn apply(&self, view: &mut Option<Count>, _: &EventEnvelope<AccountEvent>) -> Result<(), BoxError> {
        view.get_or_insert_with(Count::default).0 += 1;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projector_stops_on_a_corrupt_event_instead_of_retrying_it() {
    let store = store().await;
    let cqrs = Cqrs::new(store.clone());
    cqrs.execute(Open { id: "x".into() }).await.unwrap();
    let done = cqrs.execute(Deposit { id: "x".into(), amount: 1 }).await.unwrap();
    sql(&store, "UPDATE {s}.events SET version = -1 WHERE stream_id = 'x' AND version = 2").await;
    let projector = Projector::new(store.clone(), PgViewStore::new(&store)).with_retry_delay(Duration::from_millis(10));
    let run = projector.run(Counts, std::future::pending());
    match tokio::time::timeout(Duration::from_secs(20), run).await {
        Ok(Err(Error::Corrupt { location, reason })) => {
            assert!(location.contains(&format!("position {}", done.position)), "{location}");
            assert!(reason.contains("negative version -1"), "{reason}");
        }
        Ok(other) => panic!("expected the projector to stop with Error::Corrupt, got {other:?}"),
        Err(_) => panic!("the projector retried a corrupt event for 20 s instead of stopping"),
    }
}

/// A fold (the engine's load, `fold_stream.sql`, read by column place, the transaction id in
/// binary) meets a corrupt row as a read does: `Corrupt`, naming the event by its position,
/// stream and version, and the column.
#[tokio::test]
async fn a_corrupt_row_in_a_fold_is_corrupt_and_names_the_event() {
    let (store, positions) = seeded().await;
    sql(&store, "UPDATE {s}.events SET schema_version = -1 WHERE stream_id = 'a' AND version = 2").await;
    let mut folded = Vec::new();
    let mut fold = |event: eventloom_core::model::EventRef<'_>| {
        folded.push(event.version);
        Ok(())
    };
    match store.fold_stream(&stream("a"), 1, 10, usize::MAX, &mut fold).await {
        Err(error @ Error::Corrupt { .. }) => {
            assert!(!error.is_transient());
            let Error::Corrupt { location, reason } = &error else { unreachable!() };
            let at = format!("event at position {} (stream corrupt/a, version 2)", positions[1]);
            assert!(location.contains(&at), "{location:?} names {at:?}");
            assert!(reason.contains("negative schema version -1"), "{reason}");
        }
        other => panic!("expected Error::Corrupt, got {other:?}"),
    }
    assert_eq!(folded, [1], "the rows before the corrupt one were folded, none after");
    // A load of the other stream goes on; the folded positions are the stored ones.
    let mut seen = Vec::new();
    let mut fold = |event: eventloom_core::model::EventRef<'_>| {
        seen.push(event.position);
        Ok(())
    };
    store.fold_stream(&stream("b"), 1, 10, usize::MAX, &mut fold).await.unwrap();
    assert_eq!(seen, [Some(positions[3])], "a page's last event is lent with its position");
}

/// A fold lends a page's last event with its position and the others without (a page bounded
/// by its limit too: the last event of the page, not of the stream).
#[tokio::test]
async fn a_fold_lends_the_position_of_its_pages_last_event() {
    let (store, positions) = seeded().await;
    for (from, limit, expected) in [
        (1, 10, vec![(1, None), (2, None), (3, Some(positions[2]))]),
        (1, 2, vec![(1, None), (2, Some(positions[1]))]),
        (2, 1, vec![(2, Some(positions[1]))]),
        (0, 1, vec![(1, Some(positions[0]))]),
        (4, 10, vec![]),
    ] {
        let mut lent = Vec::new();
        let page = store
            .fold_stream(&stream("a"), from, limit, usize::MAX, &mut |event| {
                lent.push((event.version, event.position));
                Ok(())
            })
            .await
            .unwrap();
        assert_eq!(page.last, expected.last().map(|(v, p)| (*v, p.unwrap())), "from {from}, limit {limit}");
        assert_eq!(lent, expected, "from {from}, limit {limit}");
    }
}

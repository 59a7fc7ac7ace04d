//! Relays into PostgreSQL: a message the store refuses as it is (a payload that is not JSON) is
//! skipped, the source's record moved past it, and the relay goes on with the next; relays of
//! one message whose transactions overlap (held open on the record's table lock) store it once,
//! and a lower sequence is refused after a higher one.

use std::time::{Duration, Instant};

use eventloom_core::memory::MemoryEventStore;
use eventloom_core::model::{ExpectedVersion, NewEvent};
use eventloom_core::prelude::*;
use eventloom_core::store::{EventStore, Relayed};
use eventloom_core::testing::test_event;
use eventloom_core::{Position, StreamId};
use eventloom_postgres::PgStores;

use crate::support::{PrivateServer, raw, store, store_at};

fn event(payload: &str) -> NewEvent {
    NewEvent { event_type: "Noted".into(), schema_version: 1, payload: payload.into(), metadata: Metadata::default() }
}

#[tokio::test]
async fn a_message_the_store_refuses_is_skipped_and_the_relay_goes_on() {
    let source = MemoryEventStore::new();
    let stream = StreamId::new("notes", "n-1").unwrap();
    for payload in [r#"{"n":1}"#, "not json", r#"{"n":3}"#] {
        source.append(&stream, ExpectedVersion::Any, vec![event(payload)]).await.unwrap();
    }
    let pg = PgStores::from_event_store(store().await);
    let app = App::builder(pg.clone()).relay("notebook", source).start().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while pg.events.relayed("notebook").await.unwrap() < 3 {
        assert!(Instant::now() < deadline, "not relayed: {:?}", app.status().relays);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let local = pg.events.read_stream(&stream, 1, 10).await.unwrap();
    let payloads: Vec<&str> = local.iter().map(|e| &*e.payload).collect();
    assert_eq!(payloads, [r#"{"n":1}"#, r#"{"n":3}"#], "the bad one skipped, the rest in order");
    assert!(app.status().relays[0].state.is_running());
    let lag = app.health(100).await.relays[0].relay.clone().unwrap().unwrap();
    assert_eq!(lag.relayed, 3, "the position, read from PostgreSQL");
    assert!(lag.caught_up(), "{lag:?}");
    app.shutdown().await.unwrap();
}

/// How many of the store's connections wait for a lock on its `relays` table: relays that read
/// the record and appended their events, and wait to move the record.
async fn waiting_on_relays(watcher: &tokio_postgres::Client, schema: &str) -> i64 {
    let row = watcher
        .query_one(
            "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE NOT l.granted AND c.relname = 'relays' AND n.nspname = $1",
            &[&schema],
        )
        .await
        .unwrap();
    row.get(0)
}

/// Waits until `n` relays wait on the `relays` table.
async fn until_waiting(watcher: &tokio_postgres::Client, schema: &str, n: i64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let waiting = waiting_on_relays(watcher, schema).await;
        if waiting == n {
            return;
        }
        assert!(Instant::now() < deadline, "{waiting} relays wait on the record after 20 s, not {n}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn race_stream(id: String) -> StreamId {
    StreamId::new("relayrace", id).unwrap()
}

/// Holds a lock on the schema's `relays` table (SHARE: the record's read passes, its move
/// waits) in an open transaction of `blocker`, so that relays started meanwhile all read the
/// record and append before any commits.
async fn hold_the_record(blocker: &tokio_postgres::Client, schema: &str) {
    blocker.batch_execute(&format!("BEGIN; LOCK TABLE \"{schema}\".relays IN SHARE MODE")).await.unwrap();
}

const CONTENDERS: u64 = 4;
const ROUNDS: u64 = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn relays_of_one_message_that_overlap_in_their_transactions_store_it_once_and_nothing_else() {
    // A private server: the relays' open transactions would hold back every subscriber of the
    // shared one.
    let server = PrivateServer::start();
    let store = store_at(&server.url()).await;
    let schema = store.config().schema_name().to_owned();
    let (blocker, watcher) = (raw(&server.url()).await, raw(&server.url()).await);
    for round in 1..=ROUNDS {
        hold_the_record(&blocker, &schema).await;
        let mut relays = Vec::new();
        for contender in 0..CONTENDERS {
            let store = store.clone();
            // Each to a stream of its own, so that only the record orders them.
            let s = race_stream(format!("r{round}-c{contender}"));
            relays.push(tokio::spawn(async move {
                store.append_relayed("race", round, &s, vec![test_event(round * 10 + contender)]).await
            }));
        }
        // Every one has read the record (below `round`) and appended, none committed.
        until_waiting(&watcher, &schema, i64::try_from(CONTENDERS).unwrap()).await;
        blocker.batch_execute("COMMIT").await.unwrap();
        let (mut written, mut duplicates) = (Vec::new(), 0);
        for (contender, relay) in relays.into_iter().enumerate() {
            match tokio::time::timeout(Duration::from_secs(20), relay).await.unwrap().unwrap() {
                Ok(Relayed::Written(outcome)) => written.push((contender, outcome)),
                Ok(Relayed::Duplicate { relayed }) => {
                    assert_eq!(relayed, round, "the winner's record");
                    duplicates += 1;
                }
                Err(error) => panic!("round {round}, contender {contender}: {error}"),
            }
        }
        assert_eq!(written.len(), 1, "round {round}: one relay stored the message: {written:?}");
        assert_eq!(duplicates, CONTENDERS - 1);
        for contender in 0..CONTENDERS {
            let s = race_stream(format!("r{round}-c{contender}"));
            let stored = store.read_stream(&s, 1, 10).await.unwrap();
            let winner = usize::try_from(contender).unwrap() == written[0].0;
            assert_eq!(stored.len(), usize::from(winner), "round {round}: a loser's append rolled back with it");
        }
        assert_eq!(store.relayed("race").await.unwrap(), round);
    }
    assert_eq!(store.read_all(Position::ZERO, 100).await.unwrap().len() as u64, ROUNDS, "one event a round");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_relay_of_a_lower_sequence_is_refused_after_a_higher_one_even_one_committed_while_it_ran() {
    let server = PrivateServer::start();
    let store = store_at(&server.url()).await;
    let schema = store.config().schema_name().to_owned();
    let (blocker, watcher) = (raw(&server.url()).await, raw(&server.url()).await);
    let (low, high) = (race_stream("low".into()), race_stream("high".into()));

    // Message 3 reads the record (nothing yet) and appends; message 5 is relayed and committed
    // meanwhile, by the blocker's own transaction; then 3 must find the record past it.
    hold_the_record(&blocker, &schema).await;
    let racing = {
        let (store, low) = (store.clone(), low.clone());
        tokio::spawn(async move { store.append_relayed("race", 3, &low, vec![test_event(3)]).await })
    };
    until_waiting(&watcher, &schema, 1).await;
    blocker
        .batch_execute(&format!(
            "SELECT * FROM \"{schema}\".append_relayed('race', 5, 'relayrace', 'high', ARRAY['Tested'], ARRAY[1], \
             ARRAY['{{\"n\":5}}'], ARRAY['{{\"event_id\":\"00000000-0000-0000-0000-000000000005\",\"timestamp\":0}}']); \
             COMMIT"
        ))
        .await
        .unwrap();
    let lower = tokio::time::timeout(Duration::from_secs(20), racing).await.unwrap().unwrap().unwrap();
    assert_eq!(lower, Relayed::Duplicate { relayed: 5 }, "refused: the record is a high-water mark");
    assert!(store.read_stream(&low, 1, 10).await.unwrap().is_empty(), "its append rolled back");
    assert_eq!(store.read_stream(&high, 1, 10).await.unwrap().len(), 1);

    // And one after the other: lower and equal sequences are refused, a higher one is written.
    for sequence in [1, 4, 5] {
        let again = store.append_relayed("race", sequence, &low, vec![test_event(sequence)]).await.unwrap();
        assert_eq!(again, Relayed::Duplicate { relayed: 5 }, "sequence {sequence}");
    }
    assert!(store.read_stream(&low, 1, 10).await.unwrap().is_empty(), "nothing written by a refused relay");
    let next = store.append_relayed("race", 6, &low, vec![test_event(6)]).await.unwrap();
    assert!(matches!(next, Relayed::Written(_)), "{next:?}");
    assert_eq!(store.relayed("race").await.unwrap(), 6);
    assert_eq!(store.read_all(Position::ZERO, 100).await.unwrap().len(), 2);
}

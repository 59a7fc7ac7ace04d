//! Relays into PostgreSQL: a message the store refuses as it is (a payload that is not JSON) is
//! skipped, the source's record moved past it, and the relay goes on with the next.

use std::time::{Duration, Instant};

use eventloom_core::memory::MemoryEventStore;
use eventloom_core::model::{ExpectedVersion, NewEvent};
use eventloom_core::prelude::*;
use eventloom_core::store::EventStore;
use eventloom_postgres::PgStores;

use crate::support::store;

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
    app.shutdown().await.unwrap();
}

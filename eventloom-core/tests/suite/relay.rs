//! Relays: another service's events appended here once each, resumed after a restart, and
//! refused when they would join this service's own streams.

use std::time::Duration;

use eventloom_core::app::{RELAYED_FROM, RunState, SOURCE_SEQUENCE};
use eventloom_core::memory::MemoryEventStore;
use eventloom_core::model::{ExpectedVersion, NewEvent};
use eventloom_core::prelude::*;
use eventloom_core::store::EventStore;
use eventloom_core::{App, MemoryStores};

use crate::saga::{Order, Stock};

fn added(qty: u64) -> NewEvent {
    let metadata = Metadata::default().with_command_id(format!("add-{qty}")).with_correlation_id("c-1");
    NewEvent {
        event_type: "Added".into(),
        schema_version: 1,
        payload: format!(r#"{{"Added":{{"qty":{qty}}}}}"#),
        metadata,
    }
}

async fn local_events(stores: &MemoryStores, id: &str) -> Vec<eventloom_core::model::RecordedEvent> {
    stores.events.read_stream(&StreamId::new("stock", id).unwrap(), 1, 100).await.unwrap()
}

async fn until_local(stores: &MemoryStores, id: &str, n: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while local_events(stores, id).await.len() < n {
        assert!(std::time::Instant::now() < deadline, "stock/{id} has fewer than {n} events after 10 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn a_relay_appends_each_event_once_across_restarts() {
    let source = MemoryEventStore::new();
    let apple = StreamId::new("stock", "apple").unwrap();
    for qty in 1..=3 {
        source.append(&apple, ExpectedVersion::Any, vec![added(qty)]).await.unwrap();
    }
    let stores = MemoryStores::new();
    let app =
        App::builder(stores.clone()).aggregate::<Order>().relay("inventory", source.clone()).start().await.unwrap();
    until_local(&stores, "apple", 3).await;
    app.shutdown().await.unwrap();
    drop(app);
    for qty in 4..=5 {
        source.append(&apple, ExpectedVersion::Any, vec![added(qty)]).await.unwrap();
    }
    let again =
        App::builder(stores.clone()).aggregate::<Order>().relay("inventory", source.clone()).start().await.unwrap();
    until_local(&stores, "apple", 5).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let local = local_events(&stores, "apple").await;
    assert_eq!(local.len(), 5, "each once");
    for (n, event) in local.iter().enumerate() {
        let metadata = event.metadata.get().unwrap();
        assert_eq!(metadata.headers.get(RELAYED_FROM).map(String::as_str), Some("inventory"));
        assert_eq!(metadata.headers.get(SOURCE_SEQUENCE).map(String::as_str), Some((n + 1).to_string().as_str()));
        assert_eq!(metadata.correlation_id.as_deref(), Some("c-1"), "the chain of causes crosses services");
        assert_eq!(metadata.command_id, None, "the source's command id means nothing here");
        assert!(event.payload.contains(&format!(r#""qty":{}"#, n + 1)), "in order");
    }
    assert_eq!(stores.events.relayed("inventory").await.unwrap(), 5);
    assert!(again.status().relays[0].state.is_running());
    again.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_relayed_event_of_an_own_category_stops_the_relay() {
    let source = MemoryEventStore::new();
    source.append(&StreamId::new("stock", "pear").unwrap(), ExpectedVersion::Any, vec![added(1)]).await.unwrap();
    let stores = MemoryStores::new();
    let app = App::builder(stores.clone()).aggregate::<Stock>().relay("inventory", source).start().await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let RunState::Failed(error) = &app.status().relays[0].state {
            assert!(error.to_string().contains("own aggregates"), "{error}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the relay did not stop");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(!app.status().is_healthy());
    assert!(local_events(&stores, "pear").await.is_empty(), "nothing joined the own stream");
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_source_relayed_twice_or_badly_named_is_refused() {
    let source = MemoryEventStore::new();
    let twice = App::builder(MemoryStores::new()).relay("a", source.clone()).relay("a", source.clone()).start().await;
    assert!(matches!(twice, Err(eventloom_core::Error::InvalidConfig { .. })));
    let bad = App::builder(MemoryStores::new()).relay("", source).start().await;
    assert!(matches!(bad, Err(eventloom_core::Error::InvalidConfig { .. })));
}

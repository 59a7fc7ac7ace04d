//! The conformance suite every [`SnapshotStore`] runs.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! eventloom_core::testing::snapshot_store::run(|| async { eventloom_core::memory::MemorySnapshotStore::default() }).await;
//! # });
//! ```

use std::future::Future;

use crate::{Position, Snapshot, SnapshotStore, StreamId};

fn snapshot(stream: &StreamId, version: u64, state: &str) -> Snapshot {
    Snapshot {
        stream: stream.clone(),
        version,
        position: Position::new(version, version),
        snapshot_version: 1,
        state: state.to_owned(),
    }
}

/// Runs every case, each on a fresh store from `make`.
pub async fn run<S, F, Fut>(make: F)
where
    S: SnapshotStore,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    save_and_load(make().await).await;
    keeps_the_latest(make().await).await;
}

/// A snapshot comes back as saved, per stream.
pub async fn save_and_load<S: SnapshotStore>(store: S) {
    let a = StreamId::new("conformance", "a").expect("id");
    let b = StreamId::new("conformance", "b'; --").expect("id");
    assert_eq!(store.load_snapshot(&a).await.expect("load"), None);
    let saved = snapshot(&a, 10, r#"{"balance":5,"note":"ü"}"#);
    store.save_snapshot(saved.clone()).await.expect("save");
    store.save_snapshot(snapshot(&b, 3, "{}")).await.expect("save");
    let back = store.load_snapshot(&a).await.expect("load").expect("a snapshot");
    assert_eq!(back.stream, saved.stream);
    assert_eq!((back.version, back.position, back.snapshot_version), (10, saved.position, 1));
    let (x, y): (serde_json::Value, serde_json::Value) =
        (serde_json::from_str(&back.state).expect("json"), serde_json::from_str(&saved.state).expect("json"));
    assert_eq!(x, y);
    assert_eq!(store.load_snapshot(&b).await.expect("load").expect("b").version, 3);
}

/// A newer snapshot replaces an older one; an older one never replaces a newer one.
pub async fn keeps_the_latest<S: SnapshotStore>(store: S) {
    let a = StreamId::new("conformance", "latest").expect("id");
    store.save_snapshot(snapshot(&a, 100, "{}")).await.expect("save");
    store.save_snapshot(snapshot(&a, 200, r#"{"v":200}"#)).await.expect("save");
    store.save_snapshot(snapshot(&a, 150, "{}")).await.expect("save");
    assert_eq!(store.load_snapshot(&a).await.expect("load").expect("snapshot").version, 200);
}

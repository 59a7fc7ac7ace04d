use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::store::BoxFuture;

use super::{read, write};
use crate::{Result, Snapshot, SnapshotStore, StreamId};

/// A [`SnapshotStore`] in process memory. Clones share the same store.
///
/// # Examples
///
/// ```
/// use eventloom_core::{Position, StreamId, memory::MemorySnapshotStore, store::{Snapshot, SnapshotStore}};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store = MemorySnapshotStore::default();
/// let stream = StreamId::new("task", "1").unwrap();
/// let snap = |version| Snapshot {
///     stream: stream.clone(), version, position: Position::new(version, version),
///     snapshot_version: 1, state: "{}".into(),
/// };
/// store.save_snapshot(snap(10)).await.unwrap();
/// store.save_snapshot(snap(5)).await.unwrap(); // older: ignored
/// assert_eq!(store.load_snapshot(&stream).await.unwrap().unwrap().version, 10);
/// # });
/// ```
#[derive(Debug, Clone, Default)]
pub struct MemorySnapshotStore {
    snapshots: Arc<RwLock<HashMap<StreamId, Snapshot>>>,
}

impl SnapshotStore for MemorySnapshotStore {
    fn load_snapshot<'a>(&'a self, stream: &'a StreamId) -> BoxFuture<'a, Result<Option<Snapshot>>> {
        Box::pin(async move { Ok(read(&self.snapshots).get(stream).cloned()) })
    }

    fn save_snapshot<'a>(&'a self, snapshot: Snapshot) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let mut map = write(&self.snapshots);
            match map.get(&snapshot.stream) {
                Some(existing) if existing.version >= snapshot.version => {}
                _ => {
                    map.insert(snapshot.stream.clone(), snapshot);
                }
            }
            Ok(())
        })
    }
}

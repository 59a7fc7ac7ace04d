use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;

use super::{read, write};
use crate::{Result, Snapshot, SnapshotStore, StreamId};

/// A [`SnapshotStore`] in process memory. Clones share the same store.
///
/// # Examples
///
/// ```
/// use eventloom_core::{MemorySnapshotStore, Position, Snapshot, SnapshotStore, StreamId};
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

#[async_trait]
impl SnapshotStore for MemorySnapshotStore {
    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>> {
        Ok(read(&self.snapshots).get(stream).cloned())
    }

    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<()> {
        let mut map = write(&self.snapshots);
        match map.get(&snapshot.stream) {
            Some(existing) if existing.version >= snapshot.version => {}
            _ => {
                map.insert(snapshot.stream.clone(), snapshot);
            }
        }
        Ok(())
    }
}

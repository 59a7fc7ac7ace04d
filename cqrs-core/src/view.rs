//! Where read models live: the [`ViewStore`] trait.

use std::sync::Arc;

use async_trait::async_trait;

use crate::{Position, Result};

/// One atomic write of a projection: its changed views and its new checkpoint.
///
/// A store applies it only if the projection's checkpoint is still `expected` and
/// `fencing_token` is not lower than the highest token it has seen for the projection;
/// otherwise it writes nothing and fails with [`Error::CheckpointMoved`](crate::Error::CheckpointMoved)
/// or [`Error::Fenced`](crate::Error::Fenced). That makes replays after a crash, and writes of a
/// deposed leader, change nothing.
///
/// # Examples
///
/// ```
/// use cqrs_core::{Position, ViewCommit};
///
/// let commit = ViewCommit {
///     expected: Some(Position::new(4, 9)),
///     checkpoint: Position::new(5, 12),
///     fencing_token: 3,
///     views: vec![("task-1".into(), Some(r#"{"title":"x"}"#.into())), ("task-2".into(), None)],
///     dead_letters: Vec::new(),
/// };
/// assert_eq!(commit.views.len(), 2);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewCommit {
    /// The checkpoint the projection read before processing this batch.
    pub expected: Option<Position>,
    /// The checkpoint after this batch: the position of its last event.
    pub checkpoint: Position,
    /// The leader's fencing token (0 when the projection runs without a lease).
    pub fencing_token: u64,
    /// The views to write (`Some(json)`) or delete (`None`), by id.
    pub views: Vec<(String, Option<String>)>,
    /// Events of this batch the projection skipped (see [`PoisonPolicy`](crate::PoisonPolicy)),
    /// recorded with the batch so that skipping one and moving the checkpoint past it happen
    /// together.
    pub dead_letters: Vec<DeadLetter>,
}

/// An event a projection skipped because it could not process it.
///
/// # Examples
///
/// ```
/// use cqrs_core::{DeadLetter, Position, StreamId};
///
/// let letter = DeadLetter {
///     position: Position::new(4, 7),
///     stream: StreamId::new("task", "t-1").unwrap(),
///     version: 3,
///     event_type: "TaskRenamed".into(),
///     reason: "title too long".into(),
/// };
/// let json = serde_json::to_string(&letter).unwrap();
/// assert_eq!(serde_json::from_str::<DeadLetter>(&json).unwrap(), letter);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeadLetter {
    /// The event's position.
    pub position: Position,
    /// Its stream.
    pub stream: crate::StreamId,
    /// Its version in the stream.
    pub version: u64,
    /// Its stored type name.
    pub event_type: String,
    /// Why the projection could not process it.
    pub reason: String,
}

/// Stores a projection's views (as JSON, by id) together with its checkpoint.
///
/// Implementations run the conformance suite `cqrs_core::testing::view_store` (feature
/// `testing`). The trait is object safe; [`crate::ViewReader`] gives typed access.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use cqrs_core::{MemoryViewStore, ViewStore};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store: Arc<dyn ViewStore> = Arc::new(MemoryViewStore::default());
/// assert_eq!(store.checkpoint("tasks").await.unwrap(), None);
/// # });
/// ```
#[async_trait]
pub trait ViewStore: Send + Sync + 'static {
    /// The views with these ids, in the same order; `None` for a missing one.
    async fn load_views(&self, projection: &str, ids: &[String]) -> Result<Vec<Option<String>>>;

    /// The projection's checkpoint: the position of the last event it processed, `None`
    /// before the first. A failure to read it is an error, never `None`.
    async fn checkpoint(&self, projection: &str) -> Result<Option<Position>>;

    /// Applies `commit` atomically if its expected checkpoint and fencing token hold.
    async fn commit(&self, projection: &str, commit: ViewCommit) -> Result<()>;

    /// Deletes every view and the checkpoint of the projection, so that it rebuilds from the
    /// start; refused like a commit when `fencing_token` is older than one already seen.
    async fn reset(&self, projection: &str, fencing_token: u64) -> Result<()>;

    /// The events the projection skipped, oldest first.
    async fn dead_letters(&self, projection: &str) -> Result<Vec<DeadLetter>>;
}

#[async_trait]
impl<T: ViewStore + ?Sized> ViewStore for Arc<T> {
    async fn load_views(&self, projection: &str, ids: &[String]) -> Result<Vec<Option<String>>> {
        (**self).load_views(projection, ids).await
    }
    async fn checkpoint(&self, projection: &str) -> Result<Option<Position>> {
        (**self).checkpoint(projection).await
    }
    async fn commit(&self, projection: &str, commit: ViewCommit) -> Result<()> {
        (**self).commit(projection, commit).await
    }
    async fn reset(&self, projection: &str, fencing_token: u64) -> Result<()> {
        (**self).reset(projection, fencing_token).await
    }
    async fn dead_letters(&self, projection: &str) -> Result<Vec<DeadLetter>> {
        (**self).dead_letters(projection).await
    }
}

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
}

//! The read side's read path: typed views, queries, read-your-writes.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::de::DeserializeOwned;

use crate::{Error, Position, Result, ViewStore};

/// Typed reads of one projection's views, and waiting for them to catch up.
///
/// # Examples
///
/// ```
/// use cqrs_core::{MemoryViewStore, Position, ViewCommit, ViewReader, ViewStore};
/// use std::time::Duration;
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let store = MemoryViewStore::default();
/// let commit = ViewCommit { expected: None, checkpoint: Position::new(1, 1), fencing_token: 0,
///     views: vec![("a".into(), Some("41".into()))], dead_letters: Vec::new() };
/// store.commit("answers", commit).await.unwrap();
/// let reader = ViewReader::<u32>::new(store, "answers");
/// reader.wait_for(Position::new(1, 1), Duration::from_secs(1)).await.unwrap();
/// assert_eq!(reader.get("a").await.unwrap(), Some(41));
/// assert!(reader.wait_for(Position::new(2, 2), Duration::from_millis(10)).await.is_err());
/// # });
/// ```
pub struct ViewReader<V> {
    store: Arc<dyn ViewStore>,
    projection: String,
    _view: PhantomData<fn() -> V>,
}

impl<V> Clone for ViewReader<V> {
    fn clone(&self) -> Self {
        ViewReader { store: self.store.clone(), projection: self.projection.clone(), _view: PhantomData }
    }
}

impl<V> std::fmt::Debug for ViewReader<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ViewReader").field("projection", &self.projection).finish_non_exhaustive()
    }
}

impl<V: DeserializeOwned> ViewReader<V> {
    /// Reads the views of `projection` from `store`.
    pub fn new(store: impl ViewStore, projection: impl Into<String>) -> Self {
        ViewReader { store: Arc::new(store), projection: projection.into(), _view: PhantomData }
    }

    /// One view.
    pub async fn get(&self, id: &str) -> Result<Option<V>> {
        Ok(self.get_many(&[id.to_owned()]).await?.pop().flatten())
    }

    /// Several views in one round-trip, in the order asked.
    pub async fn get_many(&self, ids: &[String]) -> Result<Vec<Option<V>>> {
        let stored = self.store.load_views(&self.projection, ids).await?;
        ids.iter()
            .zip(stored)
            .map(|(id, json)| {
                json.map(|json| serde_json::from_str(&json)).transpose().map_err(|source| Error::Serde {
                    what: format!("view {id:?} of projection {}", self.projection),
                    source,
                })
            })
            .collect()
    }

    /// The projection's checkpoint.
    pub async fn checkpoint(&self) -> Result<Option<Position>> {
        self.store.checkpoint(&self.projection).await
    }

    /// Waits until the projection has processed `position` (read-your-writes: pass the
    /// position a command returned), or fails with [`Error::Timeout`].
    pub async fn wait_for(&self, position: Position, timeout: Duration) -> Result<()> {
        if position == Position::ZERO {
            return Ok(());
        }
        let deadline = tokio::time::Instant::now() + timeout;
        let mut pause = Duration::from_millis(1);
        loop {
            if self.checkpoint().await?.is_some_and(|c| c >= position) {
                return Ok(());
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(Error::Timeout(timeout));
            }
            tokio::time::sleep(pause.min(deadline - now)).await;
            pause = (pause * 2).min(Duration::from_millis(20));
        }
    }
}

/// A question the read side answers.
///
/// # Examples
///
/// ```
/// use cqrs_core::{Query, QueryHandler, Result};
///
/// struct CountOpen;
/// impl Query for CountOpen { type Output = u64; }
///
/// struct Stats { open: u64 }
///
/// #[cqrs_core::async_trait]
/// impl QueryHandler<CountOpen> for Stats {
///     async fn handle(&self, _: CountOpen) -> Result<u64> { Ok(self.open) }
/// }
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// assert_eq!(Stats { open: 3 }.handle(CountOpen).await.unwrap(), 3);
/// # });
/// ```
pub trait Query: Send + 'static {
    /// The answer.
    type Output: Send;
}

/// Answers one kind of [`Query`], usually from views.
///
/// See [`Query`] for an example.
#[async_trait]
pub trait QueryHandler<Q: Query>: Send + Sync {
    /// The answer to `query`.
    async fn handle(&self, query: Q) -> Result<Q::Output>;
}

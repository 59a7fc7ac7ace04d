//! Wakes readers of this process when a projector of this process writes: a [`ViewStore`]
//! decorator that bumps a per-projection counter after each successful write of the runner.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::watch;

use crate::memory::lock;
use crate::{
    DeadLetter, Generation, IndexKey, ListCursor, ProjectionStatus, ProjectionStop, Result, ViewCommit, ViewPage,
    ViewStore,
};

/// One counter per projection name, bumped after each write that may change what readers see.
#[derive(Debug, Default)]
pub(crate) struct Signals {
    by_name: Mutex<HashMap<String, watch::Sender<u64>>>,
}

impl Signals {
    /// The signal of `projection` (created on first use).
    pub(crate) fn subscribe(&self, projection: &str) -> watch::Receiver<u64> {
        let mut by_name = lock(&self.by_name);
        by_name.entry(projection.to_owned()).or_insert_with(|| watch::Sender::new(0)).subscribe()
    }

    fn bump(&self, projection: &str) {
        if let Some(signal) = lock(&self.by_name).get(projection) {
            signal.send_modify(|n| *n = n.wrapping_add(1));
        }
    }
}

/// The view store the App's projectors write through: every write goes to `inner`, and each
/// one that succeeded, or failed in a way that may have changed the store (a transient error:
/// the write may have landed), bumps the projection's signal.
pub(crate) struct SignallingViews {
    pub(crate) inner: Arc<dyn ViewStore>,
    pub(crate) signals: Arc<Signals>,
}

impl SignallingViews {
    fn after<T>(&self, projection: &str, result: Result<T>) -> Result<T> {
        if result.is_ok() || result.as_ref().is_err_and(crate::Error::is_transient) {
            self.signals.bump(projection);
        }
        result
    }
}

#[async_trait]
impl ViewStore for SignallingViews {
    async fn status(&self, projection: &str) -> Result<ProjectionStatus> {
        self.inner.status(projection).await
    }
    async fn begin_generation(&self, projection: &str, version: u32, fencing_token: u64) -> Result<Generation> {
        self.inner.begin_generation(projection, version, fencing_token).await
    }
    async fn load_views(&self, projection: &str, generation: u64, ids: &[String]) -> Result<Vec<Option<String>>> {
        self.inner.load_views(projection, generation, ids).await
    }
    async fn commit(&self, projection: &str, commit: ViewCommit) -> Result<()> {
        let result = self.inner.commit(projection, commit).await;
        self.after(projection, result)
    }
    async fn go_live(&self, projection: &str, generation: u64, fencing_token: u64) -> Result<()> {
        let result = self.inner.go_live(projection, generation, fencing_token).await;
        self.after(projection, result)
    }
    async fn read_views(&self, projection: &str, ids: &[String]) -> Result<Vec<Option<String>>> {
        self.inner.read_views(projection, ids).await
    }
    async fn list(
        &self,
        projection: &str,
        key: &IndexKey,
        range: &crate::OrderRange,
        after: Option<&ListCursor>,
        limit: usize,
    ) -> Result<ViewPage> {
        self.inner.list(projection, key, range, after, limit).await
    }
    async fn count(&self, projection: &str, keys: &[IndexKey]) -> Result<Vec<u64>> {
        self.inner.count(projection, keys).await
    }
    async fn dead_letters(&self, projection: &str) -> Result<Vec<DeadLetter>> {
        self.inner.dead_letters(projection).await
    }
    async fn record_stop(&self, projection: &str, stop: Option<&ProjectionStop>, fencing_token: u64) -> Result<()> {
        let result = self.inner.record_stop(projection, stop, fencing_token).await;
        self.after(projection, result)
    }
}

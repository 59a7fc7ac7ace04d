//! Wakes readers of this process when a projector of this process writes: a [`ViewStore`]
//! decorator that bumps a per-projection counter after each successful write of the runner.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::store::{BoxFuture, Written};
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

    /// Bumps the signal of `projection`, and of the partitioned projection whose partition (or
    /// partition set) it is.
    fn bump(&self, projection: &str) {
        let by_name = lock(&self.by_name);
        let whole = crate::read::partition::whole_name(projection);
        for name in std::iter::once(projection).chain(whole) {
            if let Some(signal) = by_name.get(name) {
                signal.send_modify(|n| *n = n.wrapping_add(1));
            }
        }
    }
}

/// The view store the App's projectors write through: every write goes to `inner`, and each
/// one that succeeded, or failed in a way that may have changed the store (a transient error:
/// the write may have landed), bumps the projection's signal; a refused write changed nothing.
pub(crate) struct SignallingViews {
    pub(crate) inner: Arc<dyn ViewStore>,
    pub(crate) signals: Arc<Signals>,
}

impl SignallingViews {
    fn after<T>(&self, projection: &str, result: Result<Written<T>>) -> Result<Written<T>> {
        if matches!(result, Ok(Ok(_))) || result.as_ref().is_err_and(crate::Error::is_transient) {
            self.signals.bump(projection);
        }
        result
    }
}

impl ViewStore for SignallingViews {
    fn status<'a>(&'a self, projection: &'a str) -> BoxFuture<'a, Result<ProjectionStatus>> {
        self.inner.status(projection)
    }
    fn begin_generation<'a>(
        &'a self,
        projection: &'a str,
        version: u32,
        fencing_token: u64,
    ) -> BoxFuture<'a, Result<Written<Generation>>> {
        self.inner.begin_generation(projection, version, fencing_token)
    }
    fn load_views<'a>(
        &'a self,
        projection: &'a str,
        generation: u64,
        ids: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Option<String>>>> {
        self.inner.load_views(projection, generation, ids)
    }
    fn commit<'a>(&'a self, projection: &'a str, commit: ViewCommit) -> BoxFuture<'a, Result<Written>> {
        Box::pin(async move {
            let result = self.inner.commit(projection, commit).await;
            self.after(projection, result)
        })
    }
    fn go_live<'a>(
        &'a self,
        projection: &'a str,
        generation: u64,
        fencing_token: u64,
    ) -> BoxFuture<'a, Result<Written>> {
        Box::pin(async move {
            let result = self.inner.go_live(projection, generation, fencing_token).await;
            self.after(projection, result)
        })
    }
    fn read_views<'a>(&'a self, projection: &'a str, ids: &'a [String]) -> BoxFuture<'a, Result<Vec<Option<String>>>> {
        self.inner.read_views(projection, ids)
    }
    fn list<'a>(
        &'a self,
        projection: &'a str,
        key: &'a IndexKey,
        range: &'a crate::OrderRange,
        after: Option<&'a ListCursor>,
        limit: usize,
    ) -> BoxFuture<'a, Result<ViewPage>> {
        self.inner.list(projection, key, range, after, limit)
    }
    fn count<'a>(&'a self, projection: &'a str, keys: &'a [IndexKey]) -> BoxFuture<'a, Result<Vec<u64>>> {
        self.inner.count(projection, keys)
    }
    fn list_generation<'a>(
        &'a self,
        projection: &'a str,
        generation: u64,
        key: &'a crate::IndexKey,
        range: &'a crate::OrderRange,
        after: Option<&'a crate::ListCursor>,
        limit: usize,
    ) -> BoxFuture<'a, crate::Result<Vec<crate::store::IndexedView>>> {
        self.inner.list_generation(projection, generation, key, range, after, limit)
    }
    fn count_generation<'a>(
        &'a self,
        projection: &'a str,
        generation: u64,
        keys: &'a [crate::IndexKey],
    ) -> BoxFuture<'a, crate::Result<Vec<u64>>> {
        self.inner.count_generation(projection, generation, keys)
    }
    fn dead_letters<'a>(&'a self, projection: &'a str) -> BoxFuture<'a, Result<Vec<DeadLetter>>> {
        self.inner.dead_letters(projection)
    }
    fn record_stop<'a>(
        &'a self,
        projection: &'a str,
        stop: Option<&'a ProjectionStop>,
        fencing_token: u64,
    ) -> BoxFuture<'a, Result<Written>> {
        Box::pin(async move {
            let result = self.inner.record_stop(projection, stop, fencing_token).await;
            self.after(projection, result)
        })
    }
    fn projections<'a>(&'a self) -> BoxFuture<'a, crate::Result<Vec<String>>> {
        self.inner.projections()
    }
    fn remove_dead_letters<'a>(
        &'a self,
        projection: &'a str,
        which: &'a crate::store::DeadLetterSelection,
        fencing_token: u64,
    ) -> BoxFuture<'a, crate::Result<crate::store::Written<u64>>> {
        self.inner.remove_dead_letters(projection, which, fencing_token)
    }
    fn changes(&self, projection: &str) -> Option<crate::store::ViewChanges> {
        self.inner.changes(projection)
    }
}

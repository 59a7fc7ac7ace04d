//! A view store that counts the status reads made through it: what tells a wait woken by the
//! store's notifications (a read or two per change) from one that polls (a read every 2 ms).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::store::{
    BoxFuture, DeadLetter, DeadLetterSelection, Generation, IndexKey, IndexedView, ListCursor, ProjectionStatus,
    ProjectionStop, ViewChanges, ViewCommit, ViewPage, ViewStore, Written,
};
use crate::{OrderRange, Result};

/// Wraps a [`ViewStore`], forwarding every call (its [`changes`](ViewStore::changes) too) and
/// counting [`status`](ViewStore::status) reads. Clones share the count.
///
/// # Examples
///
/// ```
/// use eventloom_core::{memory::MemoryViewStore, store::ViewStore, testing::CountingStatus};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let views = CountingStatus::new(MemoryViewStore::default());
/// views.status("tasks").await.unwrap();
/// assert_eq!(views.status_reads(), 1);
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct CountingStatus<S> {
    inner: S,
    reads: Arc<AtomicU64>,
}

impl<S: ViewStore> CountingStatus<S> {
    /// Counts the status reads of `inner`.
    pub fn new(inner: S) -> Self {
        CountingStatus { inner, reads: Arc::default() }
    }

    /// How many status reads were made through it (and its clones) so far.
    pub fn status_reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }
}

impl<S: ViewStore> ViewStore for CountingStatus<S> {
    fn status<'a>(&'a self, projection: &'a str) -> BoxFuture<'a, Result<ProjectionStatus>> {
        self.reads.fetch_add(1, Ordering::Relaxed);
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
        self.inner.commit(projection, commit)
    }
    fn go_live<'a>(
        &'a self,
        projection: &'a str,
        generation: u64,
        fencing_token: u64,
    ) -> BoxFuture<'a, Result<Written>> {
        self.inner.go_live(projection, generation, fencing_token)
    }
    fn read_views<'a>(&'a self, projection: &'a str, ids: &'a [String]) -> BoxFuture<'a, Result<Vec<Option<String>>>> {
        self.inner.read_views(projection, ids)
    }
    fn list<'a>(
        &'a self,
        projection: &'a str,
        key: &'a IndexKey,
        range: &'a OrderRange,
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
        key: &'a IndexKey,
        range: &'a OrderRange,
        after: Option<&'a ListCursor>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<IndexedView>>> {
        self.inner.list_generation(projection, generation, key, range, after, limit)
    }
    fn count_generation<'a>(
        &'a self,
        projection: &'a str,
        generation: u64,
        keys: &'a [IndexKey],
    ) -> BoxFuture<'a, Result<Vec<u64>>> {
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
        self.inner.record_stop(projection, stop, fencing_token)
    }
    fn projections<'a>(&'a self) -> BoxFuture<'a, Result<Vec<String>>> {
        self.inner.projections()
    }
    fn remove_dead_letters<'a>(
        &'a self,
        projection: &'a str,
        which: &'a DeadLetterSelection,
        fencing_token: u64,
    ) -> BoxFuture<'a, Result<Written<u64>>> {
        self.inner.remove_dead_letters(projection, which, fencing_token)
    }
    fn changes(&self, projection: &str) -> Option<ViewChanges> {
        self.inner.changes(projection)
    }
}

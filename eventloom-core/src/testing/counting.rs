//! A view store that counts the status reads made through it: what tells a wait woken by the
//! store's notifications (a read or two per change) from one that polls (a read every 2 ms).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::Result;
use crate::store::{self, BoxFuture, ProjectionStatus, ViewStore};

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

impl<S: ViewStore> store::DelegateViewStore for CountingStatus<S> {
    type Inner = S;
    fn inner(&self) -> &S {
        &self.inner
    }
    fn status<'a>(&'a self, projection: &'a str) -> BoxFuture<'a, Result<ProjectionStatus>> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.inner.status(projection)
    }
}

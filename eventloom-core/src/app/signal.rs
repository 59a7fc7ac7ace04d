//! Wakes readers of this process when a projector of this process writes: a [`ViewStore`]
//! decorator that bumps a per-projection counter after each successful write of the runner.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::store::{BoxFuture, DelegateViewStore, Written};
use tokio::sync::watch;

use crate::memory::lock;
use crate::{ProjectionStop, Result, ViewCommit, ViewStore};

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

/// The view store the App's projectors write through: every call goes to `inner` (the methods
/// it does not change are forwarded by [`DelegateViewStore`], defaulted ones too), and each
/// write that succeeded, or failed in a way that may have changed the store (a transient error:
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

impl DelegateViewStore for SignallingViews {
    type Inner = dyn ViewStore;

    fn inner(&self) -> &dyn ViewStore {
        &*self.inner
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
}

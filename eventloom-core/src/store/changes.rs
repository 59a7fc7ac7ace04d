//! Change signals of view stores: how a wait for a projection's views
//! ([`ViewReader::wait_for`](crate::read::ViewReader::wait_for)) is woken when the projection's
//! live checkpoint moves, written by a projector in this process or in another one, instead of
//! polling its status.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::watch;

/// What a projection's signal holds: how many changes it was told of, and whether its store
/// hears of changes now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Signal {
    changes: u64,
    listening: bool,
}

/// A view store's signal that one projection's live checkpoint, or its recorded stop, may have
/// moved (see [`ViewStore::changes`](crate::store::ViewStore::changes)). A change may be told
/// more than once, and several changes as one; waits read the status again after each.
///
/// While [`listening`](Self::listening) is `false` (a store whose notification connection is
/// down) a change may pass untold: waits poll the status meanwhile, and the store tells a
/// change when it listens again, as it may have missed some.
///
/// # Examples
///
/// ```
/// use eventloom_core::store::ViewChangeHub;
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let hub = ViewChangeHub::default();
/// let mut changes = hub.subscribe("tasks");
/// hub.changed("tasks~2of4"); // a partition of `tasks`
/// changes.changed().await.unwrap();
/// assert!(changes.listening());
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct ViewChanges {
    receiver: watch::Receiver<Signal>,
}

/// The store that made a [`ViewChanges`] is gone: no change will be told any more.
///
/// # Examples
///
/// ```
/// use eventloom_core::store::ViewChangeHub;
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let hub = ViewChangeHub::default();
/// let mut changes = hub.subscribe("tasks");
/// drop(hub);
/// assert!(changes.changed().await.is_err());
/// # });
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the view store's change signal is closed")]
pub struct ChangesClosed;

impl ViewChanges {
    /// Whether the store hears of changes now; while it does not, waits poll.
    pub fn listening(&self) -> bool {
        self.receiver.borrow().listening
    }

    /// Marks every change told so far as seen: call it before reading the status, so that a
    /// change told during the read ends the next [`changed`](Self::changed) at once.
    pub fn mark_seen(&mut self) {
        self.receiver.borrow_and_update();
    }

    /// Waits until a change is told after the last one seen (or the store starts or stops
    /// listening).
    pub async fn changed(&mut self) -> Result<(), ChangesClosed> {
        self.receiver.changed().await.map_err(|_| ChangesClosed)
    }
}

/// The change signals of one view store, by projection: for [`ViewStore`](crate::store::ViewStore)
/// implementations, which answer [`ViewStore::changes`](crate::store::ViewStore::changes) with
/// [`subscribe`](Self::subscribe) and call [`changed`](Self::changed) when they learn that a
/// projection's live checkpoint or stop moved (from their own writes, or from a notification
/// of another process's). Clones share the signals.
///
/// A partitioned projection's checkpoint is the least of its partitions': a change of a
/// partition (`tasks~2of4`) or of its partition set (`tasks~partitions`) is told to the
/// readers of the whole projection (`tasks`) too.
///
/// # Examples
///
/// ```
/// use eventloom_core::store::ViewChangeHub;
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// // A store whose notification connection is not up yet.
/// let hub = ViewChangeHub::new(false);
/// let mut changes = hub.subscribe("tasks");
/// assert!(!changes.listening());
/// hub.set_listening(true); // connected: changes may have been missed meanwhile
/// changes.changed().await.unwrap();
/// assert!(changes.listening());
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct ViewChangeHub {
    inner: Arc<Mutex<Hub>>,
}

#[derive(Debug)]
struct Hub {
    listening: bool,
    signals: HashMap<String, watch::Sender<Signal>>,
}

impl Default for ViewChangeHub {
    /// The signals of a store that hears of every change to it (its writes are all in this
    /// process, as in memory).
    fn default() -> Self {
        ViewChangeHub::new(true)
    }
}

/// The store listens while this lives ([`ViewChangeHub::listen`]).
#[derive(Debug)]
#[must_use = "the store stops listening when the guard is dropped"]
pub struct Listening {
    hub: ViewChangeHub,
}

impl Drop for Listening {
    fn drop(&mut self) {
        self.hub.set_listening(false);
    }
}

impl ViewChangeHub {
    /// Signals that start `listening` or not (see [`set_listening`](Self::set_listening)).
    pub fn new(listening: bool) -> Self {
        ViewChangeHub { inner: Arc::new(Mutex::new(Hub { listening, signals: HashMap::new() })) }
    }

    fn hub(&self) -> std::sync::MutexGuard<'_, Hub> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The signal of `projection` (as readers name it: the whole projection, not a partition).
    pub fn subscribe(&self, projection: &str) -> ViewChanges {
        let mut hub = self.hub();
        let listening = hub.listening;
        if let Some(signal) = hub.signals.get(projection) {
            return ViewChanges { receiver: signal.subscribe() };
        }
        // Signals nobody waits on any more go when another is made.
        hub.signals.retain(|_, signal| signal.receiver_count() > 0);
        let (signal, receiver) = watch::channel(Signal { changes: 0, listening });
        hub.signals.insert(projection.to_owned(), signal);
        ViewChanges { receiver }
    }

    /// Tells that `projection`'s live checkpoint or stop may have moved: its readers, and those
    /// of the partitioned projection whose partition (or partition set) it is.
    pub fn changed(&self, projection: &str) {
        let hub = self.hub();
        let whole = crate::read::partition::whole_name(projection);
        for name in std::iter::once(projection).chain(whole) {
            if let Some(signal) = hub.signals.get(name) {
                signal.send_modify(|s| s.changes = s.changes.wrapping_add(1));
            }
        }
    }

    /// Tells every projection that it may have changed (a store that may have missed
    /// notifications, or that forgot everything).
    pub fn changed_all(&self) {
        for signal in self.hub().signals.values() {
            signal.send_modify(|s| s.changes = s.changes.wrapping_add(1));
        }
    }

    /// Whether the store hears of changes now: `false` while its notification connection is
    /// down (waits poll meanwhile). Becoming `true` tells every projection of a change, since
    /// some may have been missed.
    pub fn set_listening(&self, listening: bool) {
        let mut hub = self.hub();
        if hub.listening == listening {
            return;
        }
        hub.listening = listening;
        for signal in hub.signals.values() {
            signal.send_modify(|s| {
                s.listening = listening;
                s.changes = s.changes.wrapping_add(1);
            });
        }
    }

    /// Marks the store as listening ([`set_listening`](Self::set_listening) `true`) until the
    /// guard is dropped (then `false`): an adapter's listener holds it while its notification
    /// connection is subscribed, so that the hub stops listening however the listener ends, a
    /// lost connection or its task dropped with its runtime, and waits poll again. One holder
    /// per hub: the guards do not count, so the first dropped stops the listening.
    ///
    /// # Examples
    ///
    /// ```
    /// use eventloom_core::store::ViewChangeHub;
    ///
    /// let hub = ViewChangeHub::new(false);
    /// let connected = hub.listen();
    /// assert!(hub.listening());
    /// drop(connected);
    /// assert!(!hub.listening());
    /// ```
    pub fn listen(&self) -> Listening {
        self.set_listening(true);
        Listening { hub: self.clone() }
    }

    /// Whether the store hears of changes now (see [`set_listening`](Self::set_listening)).
    pub fn listening(&self) -> bool {
        self.hub().listening
    }

    /// Whether some reader waits on `projection`'s signal (or on the whole projection's, for a
    /// partition).
    pub fn is_watched(&self, projection: &str) -> bool {
        let hub = self.hub();
        let whole = crate::read::partition::whole_name(projection);
        std::iter::once(projection)
            .chain(whole)
            .any(|name| hub.signals.get(name).is_some_and(|signal| signal.receiver_count() > 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_partition_change_is_told_to_the_whole_projection_and_to_nobody_else() {
        let hub = ViewChangeHub::default();
        let mut whole = hub.subscribe("tasks");
        let mut other = hub.subscribe("other");
        whole.mark_seen();
        other.mark_seen();
        hub.changed("tasks~1of3");
        assert!(whole.receiver.has_changed().unwrap());
        assert!(!other.receiver.has_changed().unwrap());
        hub.changed("tasks~partitions");
        whole.changed().await.unwrap();
        assert!(hub.is_watched("tasks~0of3") && !hub.is_watched("nobody"));
    }

    #[tokio::test]
    async fn signals_nobody_holds_are_dropped() {
        let hub = ViewChangeHub::default();
        drop(hub.subscribe("a"));
        let _b = hub.subscribe("b");
        assert_eq!(hub.hub().signals.len(), 1);
    }

    #[tokio::test]
    async fn listening_again_tells_a_change() {
        let hub = ViewChangeHub::new(true);
        let mut changes = hub.subscribe("a");
        changes.mark_seen();
        hub.set_listening(false);
        changes.changed().await.unwrap();
        assert!(!changes.listening());
        hub.set_listening(true);
        changes.changed().await.unwrap();
        assert!(changes.listening());
    }
}

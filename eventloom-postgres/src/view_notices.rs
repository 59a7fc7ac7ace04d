//! The views' notifications: a [`PgViewStore`](crate::PgViewStore) tells other processes when a
//! projection's live checkpoint moved, and hears when theirs did, so that waits for views
//! ([`ViewStore::changes`](eventloom_core::store::ViewStore::changes)) are woken without
//! polling.
//!
//! - **Sending.** After each write that may move what readers see (a commit, a switch to a new
//!   generation, a recorded stop) the store notes the projection's name; a notifier task sends
//!   the names noted so far in one `NOTIFY` statement on a pooled connection (payload: the
//!   name), then waits the debounce before it sends again. A lone write is told at once; a
//!   burst of writes costs one `NOTIFY` per debounce, whatever the number of projections.
//!   The `NOTIFY` is a transaction of its own, after the writes' commits, never inside them:
//!   a transaction that notifies holds a lock of the whole cluster from its `NOTIFY` until its
//!   commit has been flushed, which would serialize every durable view commit behind it. A
//!   `NOTIFY` commits without waiting for a WAL flush (it writes nothing else). A notification
//!   lost in a crash costs readers the safety poll.
//! - **Hearing.** One dedicated connection per store (shared by its clones), started by the
//!   first wait, `LISTEN`s on the schema's views channel and tells each name it hears to the
//!   store's [`ViewChangeHub`]. When the connection dies it reconnects (waiting 100 ms to 5 s
//!   between tries, doubling, back to 100 ms after a connection that lasted 5 s); meanwhile the hub does not listen, so waits poll every 2 ms, and once it
//!   listens again every projection is told of a change (some may have been missed).
//! - The store's own writes are told to its hub at once as well: a reader on the same store
//!   as the projector does not wait for the round-trip.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use eventloom_core::store::{ViewChangeHub, ViewChanges};
use tokio::sync::{Notify, watch};

use crate::connect::Connector;
use crate::db::Db;
use crate::schema::{Sql, fixed};

/// How long the notifier waits after a `NOTIFY` before the next by default (see
/// [`PgViewStore::with_notify_debounce`](crate::PgViewStore::with_notify_debounce)).
pub(crate) const NOTIFY_DEBOUNCE: Duration = Duration::from_millis(1);

/// The first and the longest wait between attempts to LISTEN again.
const RECONNECT_FIRST: Duration = Duration::from_millis(100);
const RECONNECT_LONGEST: Duration = Duration::from_secs(5);

/// What the notifier and the listener share with the store's clones.
struct Shared {
    hub: ViewChangeHub,
    /// Names written since the last `NOTIFY`.
    pending: Mutex<BTreeSet<String>>,
    kick: Notify,
    debounce_micros: AtomicU64,
    notifier: AtomicBool,
    listener: AtomicBool,
    closed: watch::Sender<bool>,
    db: Db,
    connector: Connector,
    pg: tokio_postgres::Config,
    sql: Arc<Sql>,
}

/// The notifications of one store and its clones; the tasks end when the last clone is
/// dropped.
pub(crate) struct ViewNotices {
    shared: Arc<Shared>,
}

impl Drop for ViewNotices {
    fn drop(&mut self) {
        self.shared.closed.send_replace(true);
        self.shared.kick.notify_one();
    }
}

/// Marks a task as running until its future is dropped: when it returns, or when its runtime
/// shuts down (the next use on another runtime starts it again).
struct Running {
    shared: Arc<Shared>,
    which: fn(&Shared) -> &AtomicBool,
}

impl Drop for Running {
    fn drop(&mut self) {
        (self.which)(&self.shared).store(false, Ordering::Release);
    }
}

impl ViewNotices {
    pub(crate) fn new(db: Db, connector: Connector, pg: tokio_postgres::Config, sql: Arc<Sql>) -> Self {
        let shared = Shared {
            hub: ViewChangeHub::new(false),
            pending: Mutex::default(),
            kick: Notify::new(),
            debounce_micros: AtomicU64::new(NOTIFY_DEBOUNCE.as_micros() as u64),
            notifier: AtomicBool::new(false),
            listener: AtomicBool::new(false),
            closed: watch::Sender::new(false),
            db,
            connector,
            pg,
            sql,
        };
        ViewNotices { shared: Arc::new(shared) }
    }

    pub(crate) fn set_debounce(&self, debounce: Duration) {
        let micros = u64::try_from(debounce.as_micros()).unwrap_or(u64::MAX);
        self.shared.debounce_micros.store(micros, Ordering::Relaxed);
    }

    /// A write of `projection` landed (or may have): tell the readers of this store now, and
    /// other processes with the next `NOTIFY`.
    pub(crate) fn wrote(&self, projection: &str) {
        self.shared.hub.changed(projection);
        {
            let mut pending = self.shared.pending.lock().unwrap_or_else(PoisonError::into_inner);
            if !pending.contains(projection) {
                pending.insert(projection.to_owned());
            }
        }
        self.start(|s| &s.notifier, notifier);
        self.shared.kick.notify_one();
    }

    /// The signal of `projection`, starting the listener unless it runs.
    pub(crate) fn changes(&self, projection: &str) -> ViewChanges {
        let changes = self.shared.hub.subscribe(projection);
        self.start(|s| &s.listener, listener);
        changes
    }

    /// Starts a task on the runtime at hand unless one runs already.
    fn start<F>(&self, which: fn(&Shared) -> &AtomicBool, task: fn(Arc<Shared>) -> F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        if which(&self.shared).load(Ordering::Acquire) || tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        if which(&self.shared).compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire).is_err() {
            return;
        }
        let running = Running { shared: self.shared.clone(), which };
        let task = task(self.shared.clone());
        tokio::spawn(async move {
            let _running = running;
            task.await;
        });
    }
}

/// Sends the names written since the last `NOTIFY`, at once, then at most once per debounce.
async fn notifier(shared: Arc<Shared>) {
    loop {
        shared.kick.notified().await;
        loop {
            if *shared.closed.borrow() {
                // The last writes are still told to other processes.
                send(&shared).await;
                return;
            }
            if !send(&shared).await {
                break;
            }
            let debounce = Duration::from_micros(shared.debounce_micros.load(Ordering::Relaxed));
            if !debounce.is_zero() {
                tokio::time::sleep(debounce).await;
            }
        }
    }
}

/// Sends one `NOTIFY` of the pending names: whether there were any.
async fn send(shared: &Shared) -> bool {
    let names: Vec<String> = {
        let mut pending = shared.pending.lock().unwrap_or_else(PoisonError::into_inner);
        std::mem::take(&mut *pending).into_iter().collect()
    };
    if names.is_empty() {
        return false;
    }
    if let Err(error) = shared.db.query_one(fixed::NOTIFY_VIEWS, &[&shared.sql.views_channel, &names]).await {
        tracing::debug!(%error, "views NOTIFY failed; readers in other processes see the writes at their safety poll");
    }
    true
}

/// Keeps a dedicated connection LISTENing on the views channel, telling the hub each name it
/// hears.
async fn listener(shared: Arc<Shared>) {
    let mut closed = shared.closed.subscribe();
    let mut delay = RECONNECT_FIRST;
    loop {
        if *closed.borrow() {
            return;
        }
        let connected = async {
            let (client, notifications) = shared.connector.dedicated_unbounded(&shared.pg).await?;
            client.batch_execute(&shared.sql.listen_views).await?;
            Ok::<_, tokio_postgres::Error>((client, notifications))
        };
        let connected = tokio::select! {
            connected = connected => connected,
            _ = closed.wait_for(|c| *c) => return,
        };
        match connected {
            Ok((_client, mut notifications)) => {
                let since = tokio::time::Instant::now();
                // Tells every projection of a change: writes may have been missed meanwhile.
                let listening = shared.hub.listen();
                loop {
                    let notification = tokio::select! {
                        n = notifications.recv() => n,
                        _ = closed.wait_for(|c| *c) => return,
                    };
                    let Some(notification) = notification else { break };
                    shared.hub.changed(notification.payload());
                }
                drop(listening);
                // A connection that is lost as soon as it is made (a server that ends idle
                // sessions, say) backs off as one that cannot connect does.
                if since.elapsed() >= RECONNECT_LONGEST {
                    delay = RECONNECT_FIRST;
                }
                tracing::warn!("views LISTEN connection lost; reconnecting (waits poll meanwhile)");
            }
            Err(error) => tracing::warn!(%error, ?delay, "cannot LISTEN for views; waits poll meanwhile"),
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            _ = closed.wait_for(|c| *c) => return,
        }
        delay = (delay * 2).min(RECONNECT_LONGEST);
    }
}

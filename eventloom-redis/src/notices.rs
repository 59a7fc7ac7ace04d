//! The views' notifications on Redis: a commit script PUBLISHes the projection's name on the
//! store's channel (`<prefix>eventloom.views`) as it applies the batch, a switch to a new
//! generation and a recorded stop are published after their scripts, and one dedicated
//! connection per store (shared by its clones, opened by the first wait) SUBSCRIBEs to the
//! channel and tells each name it hears to the store's [`ViewChangeHub`]. While that connection
//! is down the hub does not listen (waits poll every 2 ms); it reconnects by itself, and tells
//! every projection of a change once it listens again.
//!
//! A PUBLISH costs Redis one message per subscribed connection (one per store instance that
//! waits), none when nobody subscribes; the subscriber takes them as they come and its hub
//! coalesces them, so that a waiting reader reads the status once per wake-up however many
//! commits it heard of.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use eventloom_core::store::{ViewChangeHub, ViewChanges};
use futures_util::StreamExt;
use tokio::sync::watch;

use crate::connection::Connection;

/// The first and the longest wait between attempts to SUBSCRIBE again.
const RECONNECT_FIRST: Duration = Duration::from_millis(100);
const RECONNECT_LONGEST: Duration = Duration::from_secs(5);

/// How long connecting and subscribing may take before the attempt counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

struct Shared {
    hub: ViewChangeHub,
    /// Where the subscriber connects; `None` for a cluster (waits poll).
    client: Option<redis::Client>,
    channel: String,
    listener: AtomicBool,
    closed: watch::Sender<bool>,
}

/// The notifications of one store and its clones; the subscriber ends when the last clone is
/// dropped.
pub(crate) struct Notices {
    shared: Arc<Shared>,
}

impl Drop for Notices {
    fn drop(&mut self) {
        self.shared.closed.send_replace(true);
    }
}

/// Marks the subscriber as running until its future is dropped (its runtime may end first).
struct Running(Arc<Shared>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.listener.store(false, Ordering::Release);
    }
}

/// The channel of the views' notifications of the store whose keys start with `prefix`.
pub(crate) fn channel(prefix: &str) -> String {
    format!("{prefix}eventloom.views")
}

impl Notices {
    pub(crate) fn new(client: Option<redis::Client>, prefix: &str) -> Self {
        Notices {
            shared: Arc::new(Shared {
                hub: ViewChangeHub::new(false),
                // Without a subscriber (a cluster) nobody listens: the scripts publish nothing.
                channel: if client.is_some() { channel(prefix) } else { String::new() },
                client,
                listener: AtomicBool::new(false),
                closed: watch::Sender::new(false),
            }),
        }
    }

    /// The channel the commit script publishes on.
    pub(crate) fn channel(&self) -> &str {
        &self.shared.channel
    }

    /// A write of `projection` landed: readers of this store hear of it at once (other
    /// processes from the script's PUBLISH).
    pub(crate) fn wrote(&self, projection: &str) {
        self.shared.hub.changed(projection);
    }

    /// A write of `projection` whose script did not publish landed: tell readers here, and
    /// PUBLISH for other processes (a failure costs them their safety poll).
    pub(crate) async fn publish(&self, connection: &Connection, projection: &str) {
        self.wrote(projection);
        if self.shared.channel.is_empty() {
            return;
        }
        let mut connection = connection.clone();
        let published: redis::RedisResult<i64> =
            redis::cmd("PUBLISH").arg(&self.shared.channel).arg(projection).query_async(&mut connection).await;
        if let Err(error) = published {
            tracing::debug!(%error, projection, "PUBLISH failed; readers elsewhere see the write at their safety poll");
        }
    }

    /// The signal of `projection`, starting the subscriber unless it runs; `None` for a cluster.
    pub(crate) fn changes(&self, projection: &str) -> Option<ViewChanges> {
        let client = self.shared.client.clone()?;
        let changes = self.shared.hub.subscribe(projection);
        let shared = &self.shared;
        let idle = shared.listener.compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire).is_ok();
        if idle {
            if tokio::runtime::Handle::try_current().is_err() {
                shared.listener.store(false, Ordering::Release);
            } else {
                let running = Running(shared.clone());
                let shared = shared.clone();
                tokio::spawn(async move {
                    let _running = running;
                    subscriber(shared, client).await;
                });
            }
        }
        Some(changes)
    }
}

/// Keeps a connection SUBSCRIBEd to the channel, telling the hub each name it hears.
async fn subscriber(shared: Arc<Shared>, client: redis::Client) {
    let mut closed = shared.closed.subscribe();
    let mut delay = RECONNECT_FIRST;
    loop {
        if *closed.borrow() {
            return;
        }
        let connected = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&shared.channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        let connected = tokio::select! {
            connected = tokio::time::timeout(CONNECT_TIMEOUT, connected) => connected,
            _ = closed.wait_for(|c| *c) => return,
        };
        match connected {
            Ok(Ok(pubsub)) => {
                let since = tokio::time::Instant::now();
                // Tells every projection of a change: commits may have been missed meanwhile.
                let listening = shared.hub.listen();
                let mut messages = pubsub.into_on_message();
                loop {
                    let message = tokio::select! {
                        m = messages.next() => m,
                        _ = closed.wait_for(|c| *c) => return,
                    };
                    let Some(message) = message else { break };
                    match message.get_payload::<String>() {
                        Ok(projection) => shared.hub.changed(&projection),
                        // Not one of ours: whatever it says, read again.
                        Err(_) => shared.hub.changed_all(),
                    }
                }
                drop(listening);
                // A connection lost as soon as it is made backs off as one that cannot connect.
                if since.elapsed() >= RECONNECT_LONGEST {
                    delay = RECONNECT_FIRST;
                }
                tracing::warn!("views SUBSCRIBE connection lost; reconnecting (waits poll meanwhile)");
            }
            Ok(Err(error)) => tracing::warn!(%error, ?delay, "cannot SUBSCRIBE for views; waits poll meanwhile"),
            Err(_) => tracing::warn!(?delay, "SUBSCRIBE for views timed out; waits poll meanwhile"),
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            _ = closed.wait_for(|c| *c) => return,
        }
        delay = (delay * 2).min(RECONNECT_LONGEST);
    }
}

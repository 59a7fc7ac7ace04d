//! Shutting down on SIGTERM or Ctrl-C: one signal that the server, the projector and waiting
//! queries all watch.

use tokio::sync::watch;

/// Tells everyone to stop.
#[derive(Debug)]
pub struct Trigger(watch::Sender<bool>);

/// Watches for the stop.
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

/// A new trigger and its watcher.
pub fn channel() -> (Trigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (Trigger(tx), Shutdown(rx))
}

impl Trigger {
    /// Stops everyone watching.
    pub fn fire(&self) {
        self.0.send_replace(true);
    }

    /// Fires on SIGTERM or Ctrl-C.
    pub async fn fire_on_signal(&self) {
        let reason = signal().await;
        tracing::info!(signal = reason, "shutting down: draining requests in flight, stopping the projector");
        self.fire();
        // Keep the sender: watchers that wait see `true`, not a closed channel.
        std::future::pending::<()>().await;
    }
}

impl Shutdown {
    /// Resolves once the stop is asked for (or the trigger is gone).
    pub async fn wait(mut self) {
        let _ = self.0.wait_for(|stop| *stop).await;
    }
}

/// Waits for SIGTERM or Ctrl-C (SIGINT) and names it.
async fn signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                Some(()) = term.recv() => "SIGTERM",
                Ok(()) = tokio::signal::ctrl_c() => "SIGINT",
                else => std::future::pending().await,
            },
            Err(error) => {
                tracing::warn!(%error, "cannot watch SIGTERM; only Ctrl-C stops the process gracefully");
                ctrl_c().await
            }
        }
    }
    #[cfg(not(unix))]
    {
        ctrl_c().await
    }
}

/// Waits for Ctrl-C; forever when it cannot be watched.
async fn ctrl_c() -> &'static str {
    if let Err(error) = tokio::signal::ctrl_c().await {
        tracing::warn!(%error, "cannot watch Ctrl-C");
        std::future::pending::<()>().await;
    }
    "SIGINT"
}

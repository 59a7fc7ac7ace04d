//! The retention of command ids: a janitor that expires the records older than the App's
//! [`command_retention`](crate::AppBuilder::command_retention), in one process at a time.

use std::sync::Arc;
use std::time::Duration;

use tracing::Instrument;

use crate::{EventStore, LeaseManager, Timestamp};

/// The lease the janitor holds while it trims, so that one process trims at a time. No
/// projection or event handler may take this name.
pub(crate) const JANITOR_LEASE: &str = "eventloom.command-retention";

/// How many records one call of [`EventStore::expire_commands`] deletes at most: a batch short
/// enough that no statement holds the table long.
pub(crate) const EXPIRY_BATCH: usize = 1_000;

/// The pause between two batches of one trim, so that a large backlog yields to the commands.
const BETWEEN_BATCHES: Duration = Duration::from_millis(10);

/// How often the janitor trims: a quarter of the retention, between 100 ms (tests) and an hour.
pub(crate) fn trim_interval(retention: Duration) -> Duration {
    (retention / 4).clamp(Duration::from_millis(100), Duration::from_secs(3_600))
}

/// The time before which records expire: `now` less the retention.
pub(crate) fn cutoff(now: Timestamp, retention: Duration) -> Timestamp {
    let micros = i64::try_from(retention.as_micros()).unwrap_or(i64::MAX);
    Timestamp::from_micros(now.as_micros().saturating_sub(micros))
}

/// Expires the command ids of `events` older than `retention`, every [`trim_interval`], while it
/// holds [`JANITOR_LEASE`] from `leases` (without leases: always, the stores living in this
/// process only).
pub(crate) struct Janitor {
    pub(crate) events: Arc<dyn EventStore>,
    pub(crate) leases: Option<Arc<dyn LeaseManager>>,
    pub(crate) retention: Duration,
}

impl Janitor {
    /// Runs until dropped (the App's shutdown drops it).
    pub(crate) async fn run(self) {
        let every = trim_interval(self.retention);
        loop {
            let lease = match &self.leases {
                None => None,
                Some(leases) => match leases.acquire(JANITOR_LEASE).await {
                    Ok(lease) => Some(lease),
                    Err(error) => {
                        tracing::warn!(%error, "the command janitor cannot take its lease; trying again");
                        tokio::time::sleep(every).await;
                        continue;
                    }
                },
            };
            loop {
                if lease.as_ref().is_some_and(|l| l.is_lost()) {
                    break;
                }
                self.trim().await;
                match &lease {
                    Some(lease) => {
                        tokio::select! {
                            () = tokio::time::sleep(every) => {}
                            () = lease.lost() => break,
                        }
                    }
                    None => tokio::time::sleep(every).await,
                }
            }
            tracing::info!("the command janitor lost its lease; standing by");
        }
    }

    /// One trim: batches of [`EXPIRY_BATCH`] until one comes back short. A failure ends the trim;
    /// the next one tries again.
    async fn trim(&self) -> u64 {
        let before = cutoff(Timestamp::now(), self.retention);
        let span = tracing::debug_span!("expire_commands", before = before.as_micros());
        async {
            let mut expired = 0u64;
            loop {
                match self.events.expire_commands(before, EXPIRY_BATCH).await {
                    Ok(n) => {
                        expired += n;
                        if n < EXPIRY_BATCH as u64 {
                            break;
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%error, expired, "expiring command ids failed; the next trim tries again");
                        break;
                    }
                }
                tokio::time::sleep(BETWEEN_BATCHES).await;
            }
            if expired > 0 {
                tracing::info!(expired, "expired command ids past the retention");
            }
            expired
        }
        .instrument(span)
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_janitor_trims_a_quarter_of_the_retention_apart_within_bounds() {
        assert_eq!(trim_interval(Duration::from_secs(7 * 24 * 3_600)), Duration::from_secs(3_600));
        assert_eq!(trim_interval(Duration::from_secs(60)), Duration::from_secs(15));
        assert_eq!(trim_interval(Duration::from_millis(1)), Duration::from_millis(100));
        let now = Timestamp::from_micros(10_000_000);
        assert_eq!(cutoff(now, Duration::from_secs(4)), Timestamp::from_micros(6_000_000));
        assert_eq!(cutoff(now, Duration::MAX), Timestamp::from_micros(10_000_000 - i64::MAX));
    }
}

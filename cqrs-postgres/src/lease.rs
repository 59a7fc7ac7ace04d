//! [`PgLeases`]: one active projector per projection, across processes.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use cqrs_core::{Lease, LeaseManager};
use tokio::sync::watch;

use crate::PgEventStore;
use crate::connect::{Connector, pg_error};
use crate::schema::Sql;

/// How often a standby tries the lock, and a leader checks its connection.
const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_millis(500);

/// A [`LeaseManager`] on PostgreSQL advisory locks.
///
/// Each lease is a session advisory lock held on a dedicated connection (never a pooled one,
/// whose session outlives the lease). Under the lock, the lease's fencing token is bumped in
/// the `leases` table, so tokens only grow. The leader checks its connection every interval and
/// reports the lease lost when it fails; TCP keepalives make a half-open connection fail within
/// about 25 seconds, and a crashed process releases its lock as soon as the server sees the
/// connection close. Standbys try the lock every interval, so they take over within about one
/// interval of the leader's death.
///
/// # Examples
///
/// ```no_run
/// use cqrs_core::{LeaseManager, Projector};
/// use cqrs_postgres::{PgConfig, PgEventStore, PgLeases, PgViewStore};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let store = PgEventStore::connect(PgConfig::from_url("postgres://localhost/app")?).await?;
/// store.migrate().await?;
/// let projector = Projector::new(store.clone(), PgViewStore::new(&store)).with_leases(PgLeases::new(&store));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PgLeases {
    connector: Connector,
    config: tokio_postgres::Config,
    sql: Arc<Sql>,
    schema: String,
    interval: Duration,
}

impl std::fmt::Debug for PgLeases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgLeases").field("schema", &self.schema).field("interval", &self.interval).finish()
    }
}

/// A stable 64-bit key for an advisory lock (FNV-1a of `schema/name`).
fn lock_key(schema: &str, name: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in schema.bytes().chain(std::iter::once(b'/')).chain(name.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    i64::from_ne_bytes(hash.to_ne_bytes())
}

/// Ends the leader's connection (and so its lock) when the lease is dropped.
struct Release(tokio::task::AbortHandle);

impl Drop for Release {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl PgLeases {
    /// Leases in the schema of `store`, on connections of their own.
    pub fn new(store: &PgEventStore) -> Self {
        let config = store.config();
        PgLeases {
            connector: store.connector().clone(),
            config: config.pg.clone(),
            sql: store.sql().clone(),
            schema: config.schema_name().to_owned(),
            interval: DEFAULT_CHECK_INTERVAL,
        }
    }

    /// How often standbys try the lock and the leader checks its connection.
    pub fn with_check_interval(mut self, interval: Duration) -> Self {
        self.interval = interval.max(Duration::from_millis(10));
        self
    }

    /// One attempt: connect, wait for the lock, bump the token. Errors when the connection fails.
    async fn try_acquire(&self, name: &str) -> cqrs_core::Result<Lease> {
        let key = lock_key(&self.schema, name);
        let (client, _notifications) = self.connector.dedicated(&self.config).await.map_err(pg_error)?;
        loop {
            let row = client.query_one("SELECT pg_try_advisory_lock($1)", &[&key]).await.map_err(pg_error)?;
            if row.try_get::<_, bool>(0).map_err(pg_error)? {
                break;
            }
            tokio::time::sleep(self.interval).await;
        }
        let row = client.query_one(&self.sql.bump_lease, &[&name]).await.map_err(pg_error)?;
        let token = u64::try_from(row.try_get::<_, i64>(0).map_err(pg_error)?).unwrap_or(0);
        let (lost_tx, lost_rx) = watch::channel(false);
        let interval = self.interval;
        let name = name.to_owned();
        let watcher = tokio::spawn(async move {
            // Owns the connection: dropping it (abort on release) ends the session and the lock.
            loop {
                tokio::time::sleep(interval).await;
                if let Err(error) = client.simple_query("SELECT 1").await {
                    tracing::warn!(%error, lease = %name, token, "lease connection failed: the lease is lost");
                    lost_tx.send_replace(true);
                    return;
                }
            }
        });
        Ok(Lease::new(token, lost_rx, Release(watcher.abort_handle())))
    }
}

#[async_trait]
impl LeaseManager for PgLeases {
    async fn acquire(&self, name: &str) -> cqrs_core::Result<Lease> {
        let mut delay = self.interval;
        loop {
            match self.try_acquire(name).await {
                Ok(lease) => {
                    tracing::info!(lease = name, token = lease.token(), "lease acquired");
                    return Ok(lease);
                }
                Err(error) if !error.is_transient() => return Err(error),
                Err(error) => {
                    tracing::warn!(%error, lease = name, ?delay, "cannot take the lease; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_keys_differ_by_schema_and_name() {
        assert_ne!(lock_key("a", "p"), lock_key("b", "p"));
        assert_ne!(lock_key("a", "p"), lock_key("a", "q"));
        assert_ne!(lock_key("ab", "c"), lock_key("a", "bc"));
        assert_eq!(lock_key("a", "p"), lock_key("a", "p"));
    }
}

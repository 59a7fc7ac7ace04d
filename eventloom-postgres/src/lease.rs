//! [`PgLeases`]: one active projector per projection, across processes.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use eventloom_core::model::Timestamp;
use eventloom_core::store::BoxFuture;
use eventloom_core::store::{Lease, LeaseHolder, LeaseInfo, LeaseManager, validate_lease_name};
use tokio::sync::watch;
use tokio_postgres::Client;

use crate::PgEventStore;
use crate::connect::{Connector, pg_error};
use crate::db::{Db, Fields};
use crate::schema::{Sql, fixed};

/// How often a standby tries the lock, and a leader checks its connection.
const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_millis(500);
/// How long a leader's check may take before the lease counts as lost.
const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(2);
/// The shortest check interval and timeout taken.
const SHORTEST: Duration = Duration::from_millis(10);

/// A [`LeaseManager`] on PostgreSQL advisory locks.
///
/// Each lease is a session advisory lock held on a dedicated connection (never a pooled one,
/// whose session outlives the lease). Under the lock, the lease's fencing token is bumped in
/// the `leases` table, so tokens only grow. A crashed process releases its lock as soon as the
/// server sees the connection close; standbys try the lock every check interval, so they take
/// over within about one interval. [`try_acquire`](LeaseManager::try_acquire) tries the lock
/// once, on a new lease connection that it closes again when another session holds the lock.
///
/// # A leader cut off from the server
///
/// The leader runs a check (`SELECT 1`) every *check interval* `I` (default 500 ms), each with a
/// *check timeout* `T` (default 2 s); a check that fails or runs out of time reports the lease
/// lost ([`Lease::lost`]) and ends the connection. So a leader whose connection stops answering
/// knows it lost the lease at most `I + T` after the server last heard from it
/// ([`loss_detected_within`](Self::loss_detected_within), 2.5 s by default).
///
/// The server releases the lock only when it ends the session, and it ends a silent session
/// only on its own TCP timeouts. `PgLeases` sets those on each lease session (with `SET`, so
/// whatever the server's configuration says): `tcp_user_timeout` and
/// `client_connection_check_interval` to `S = 2 × (I + T)`, `tcp_keepalives_idle` to `I + T`
/// (in whole seconds, rounded up), `tcp_keepalives_interval` to 1 s and `tcp_keepalives_count`
/// to `S` in seconds, and turns `idle_session_timeout` off. The server thus keeps a silent
/// session for at least `S` ([`session_ends_after`](Self::session_ends_after), 5 s by default),
/// and the inequality the lease rests on holds whatever `I` and `T` are:
///
/// ```text
/// the server's timeouts of the lease session  >  I + T  (the leader's check interval plus check timeout)
/// ```
///
/// A standby therefore takes over only after the old leader has already signalled the loss:
/// about `S + I` (5.5 s by default) after the old leader went silent. The lease connection also
/// has `tcp_user_timeout = T` on the client side, so its socket fails rather than retransmitting
/// for the kernel's 15 minutes.
///
/// What this does not cover: a session ended on the server's side while the network is fine
/// (`pg_terminate_backend`, a server restart) frees the lock at once, so a standby may lead up
/// to one check interval before the old leader's next check notices. Fencing tokens keep the
/// views right meanwhile.
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
///
/// use eventloom_core::{store::LeaseManager, read::Projector};
/// use eventloom_postgres::{PgConfig, PgEventStore, PgLeases, PgViewStore};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let store = PgEventStore::connect(PgConfig::from_url("postgres://localhost/app")?).await?;
/// store.migrate().await?;
/// let leases = PgLeases::new(&store).with_check_timeout(Duration::from_secs(1));
/// assert_eq!(leases.loss_detected_within(), Duration::from_millis(1500));
/// assert_eq!(leases.session_ends_after(), Duration::from_secs(3));
/// let projector = Projector::new(store.clone(), PgViewStore::new(&store)).with_leases(leases);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PgLeases {
    connector: Connector,
    /// The store's pool, for [`leases`](LeaseManager::leases).
    db: Db,
    config: tokio_postgres::Config,
    sql: Arc<Sql>,
    schema: String,
    interval: Duration,
    timeout: Duration,
}

impl std::fmt::Debug for PgLeases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgLeases")
            .field("schema", &self.schema)
            .field("interval", &self.interval)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// The server-side timeouts of a lease session, derived from the leader's check interval and
/// timeout so that the server keeps a silent session longer than the leader takes to notice.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ServerTimeouts {
    /// `tcp_user_timeout` and `client_connection_check_interval`, in milliseconds.
    user_timeout_ms: u128,
    /// `tcp_keepalives_idle`, in seconds.
    keepalives_idle_s: u64,
    /// `tcp_keepalives_interval`, in seconds.
    keepalives_interval_s: u64,
    /// `tcp_keepalives_count`.
    keepalives_count: u64,
}

/// Whole seconds, rounded up; at least 1.
fn ceil_secs(d: Duration) -> u64 {
    (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
}

impl ServerTimeouts {
    fn new(interval: Duration, timeout: Duration) -> Self {
        let noticed = interval.saturating_add(timeout);
        let silent = noticed.saturating_mul(2);
        ServerTimeouts {
            user_timeout_ms: silent.as_millis(),
            keepalives_idle_s: ceil_secs(noticed),
            keepalives_interval_s: 1,
            keepalives_count: ceil_secs(silent),
        }
    }

    /// The shortest time the server keeps a silent session: `tcp_user_timeout` ends it at the
    /// first keepalive probe past it, or a retransmission past it; without `tcp_user_timeout`
    /// (a server not on Linux), the keepalives do after `idle + interval × count`.
    fn shortest(&self) -> Duration {
        let millis = u64::try_from(self.user_timeout_ms).unwrap_or(u64::MAX);
        let keepalives = self.keepalives_idle_s.saturating_add(self.keepalives_interval_s * self.keepalives_count);
        Duration::from_millis(millis).min(Duration::from_secs(keepalives))
    }

    /// `(name, value)` for `set_config`. PostgreSQL takes these in its base units: seconds for
    /// keepalives, milliseconds for the others (capped at its `int` maximum).
    fn settings(&self) -> (Vec<&'static str>, Vec<String>) {
        let ms = self.user_timeout_ms.min(i32::MAX as u128).to_string();
        let cap = |n: u64| n.min(i32::MAX as u64).to_string();
        (
            vec![
                "tcp_user_timeout",
                "client_connection_check_interval",
                "tcp_keepalives_idle",
                "tcp_keepalives_interval",
                "tcp_keepalives_count",
                "idle_session_timeout",
            ],
            vec![
                ms.clone(),
                ms,
                cap(self.keepalives_idle_s),
                cap(self.keepalives_interval_s),
                cap(self.keepalives_count),
                "0".to_owned(),
            ],
        )
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

/// One statement on the lease connection, given up after `timeout`.
async fn bounded<T>(
    timeout: Duration,
    what: &str,
    query: impl Future<Output = Result<T, tokio_postgres::Error>>,
) -> eventloom_core::Result<T> {
    match tokio::time::timeout(timeout, query).await {
        Ok(result) => result.map_err(pg_error),
        Err(_) => Err(eventloom_core::Error::unavailable_msg(format!(
            "the lease connection did not answer {what} within {timeout:?}"
        ))),
    }
}

impl PgLeases {
    /// Leases in the schema of `store`, on connections of their own.
    pub fn new(store: &PgEventStore) -> Self {
        let config = store.config();
        PgLeases {
            connector: store.connector().clone(),
            db: store.db().clone(),
            config: config.pg.clone(),
            sql: store.sql().clone(),
            schema: config.schema_name().to_owned(),
            interval: DEFAULT_CHECK_INTERVAL,
            timeout: DEFAULT_CHECK_TIMEOUT,
        }
    }

    /// How often standbys try the lock and the leader checks its connection (default 500 ms,
    /// at least 10 ms). The server-side timeouts of lease sessions follow (see the type's docs).
    pub fn with_check_interval(mut self, interval: Duration) -> Self {
        self.interval = interval.max(SHORTEST);
        self
    }

    /// How long one check (and any other statement on a lease connection) may take before the
    /// lease counts as lost (default 2 s, at least 10 ms). Also the client-side
    /// `tcp_user_timeout` of lease connections. The server-side timeouts of lease sessions
    /// follow (see the type's docs).
    pub fn with_check_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout.max(SHORTEST);
        self
    }

    /// The longest a leader cut off from the server goes on believing it leads: the check
    /// interval plus the check timeout, counted from the last time the server heard from it.
    pub fn loss_detected_within(&self) -> Duration {
        self.interval.saturating_add(self.timeout)
    }

    /// The shortest time the server keeps the session (and so the lock) of a leader that went
    /// silent: twice [`loss_detected_within`](Self::loss_detected_within). A standby takes over
    /// about one check interval after that.
    pub fn session_ends_after(&self) -> Duration {
        self.server_timeouts().shortest()
    }

    fn server_timeouts(&self) -> ServerTimeouts {
        ServerTimeouts::new(self.interval, self.timeout)
    }

    /// A lease connection: client-side `tcp_user_timeout`, server-side timeouts set.
    async fn connect(&self) -> eventloom_core::Result<Client> {
        let mut config = self.config.clone();
        config.tcp_user_timeout(self.timeout);
        let (client, _notifications) = self.connector.dedicated(&config).await.map_err(pg_error)?;
        let (names, values) = self.server_timeouts().settings();
        bounded(self.timeout, "the session settings", client.query_one(fixed::LEASE_SESSION, &[&names, &values]))
            .await?;
        Ok(client)
    }

    /// One attempt on a fresh lease connection: take the lock (with `wait`, trying it every
    /// check interval until it is free; without, `None` at once when another session holds it,
    /// closing the connection), bump the token, start the watcher. Errors when the connection
    /// fails.
    async fn attempt(&self, name: &str, wait: bool) -> eventloom_core::Result<Option<Lease>> {
        validate_lease_name(name)?;
        let key = lock_key(&self.schema, name);
        let client = self.connect().await?;
        let timeout = self.timeout;
        loop {
            let row = bounded(timeout, "a lock attempt", client.query_one(fixed::TRY_LEASE_LOCK, &[&key])).await?;
            if Fields::new(&row, || format!("the lock of lease {name}")).get("locked")? {
                break;
            }
            if !wait {
                // Ends the session: it holds nothing.
                drop(client);
                return Ok(None);
            }
            tokio::time::sleep(self.interval).await;
        }
        let holder = LeaseHolder::this_process();
        let pid = i64::from(holder.pid);
        let row = bounded(
            timeout,
            "the token bump",
            client.query_one(&self.sql.bump_lease, &[&name, &holder.host, &pid, &holder.role]),
        )
        .await?;
        let token = Fields::new(&row, || format!("the fencing token of lease {name}")).unsigned("token")?;
        let (lost_tx, lost_rx) = watch::channel(false);
        let interval = self.interval;
        let name = name.to_owned();
        let watcher = tokio::spawn(async move {
            // Owns the connection: dropping it (abort on release, or a failed check) ends the
            // session and the lock.
            loop {
                tokio::time::sleep(interval).await;
                if let Err(error) = bounded(timeout, "a check", client.simple_query(fixed::LEASE_CHECK)).await {
                    tracing::warn!(%error, lease = %name, token, "lease check failed: the lease is lost");
                    lost_tx.send_replace(true);
                    return;
                }
            }
        });
        Ok(Some(Lease::new(token, lost_rx, Release(watcher.abort_handle()))))
    }
}

impl LeaseManager for PgLeases {
    fn acquire<'a>(&'a self, name: &'a str) -> BoxFuture<'a, eventloom_core::Result<Lease>> {
        Box::pin(async move {
            let mut delay = self.interval;
            loop {
                match self.attempt(name, true).await {
                    Ok(Some(lease)) => {
                        tracing::info!(lease = name, token = lease.token(), "lease acquired");
                        return Ok(lease);
                    }
                    // Only an attempt that does not wait gives up.
                    Ok(None) => {}
                    Err(error) if !error.is_transient() => return Err(error),
                    Err(error) => {
                        tracing::warn!(%error, lease = name, ?delay, "cannot take the lease; retrying");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(5));
                    }
                }
            }
        })
    }

    /// One lock attempt on a fresh lease connection, closed again when another session holds
    /// the lock; otherwise the token bump and the check of [`acquire`](LeaseManager::acquire).
    /// A failed connection is an error (not retried).
    fn try_acquire<'a>(&'a self, name: &'a str) -> BoxFuture<'a, eventloom_core::Result<Option<Lease>>> {
        Box::pin(async move {
            let lease = self.attempt(name, false).await?;
            if let Some(lease) = &lease {
                tracing::info!(lease = name, token = lease.token(), "lease acquired");
            }
            Ok(lease)
        })
    }

    /// The leases from the `leases` table; `held` when a session holds the lease's advisory
    /// lock in this database now (from `pg_locks`).
    fn leases<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, eventloom_core::Result<Vec<LeaseInfo>>> {
        Box::pin(async move {
            validate_lease_name(prefix)?;
            let conn = self.db.conn().await?;
            let rows = conn.query(&self.sql.leases, &[&prefix]).await?;
            let locks = conn.query(fixed::HELD_LEASE_LOCKS, &[]).await?;
            let mut held = std::collections::HashSet::with_capacity(locks.len());
            for lock in &locks {
                let fields = Fields::new(lock, || "pg_locks".to_owned());
                held.insert((fields.unsigned("high")?, fields.unsigned("low")?));
            }
            let mut infos = Vec::with_capacity(rows.len());
            for row in &rows {
                let name: String = row.try_get("name").map_err(pg_error)?;
                let fields = Fields::new(row, || format!("leases {name}"));
                let key = u64::from_ne_bytes(lock_key(&self.schema, &name).to_ne_bytes());
                let mut info = LeaseInfo::new(name.clone(), fields.unsigned("token")?)
                    .with_held(held.contains(&(key >> 32, key & 0xffff_ffff)));
                let host: Option<String> = fields.get("holder_host")?;
                let pid = fields.unsigned_opt("holder_pid")?;
                let role: Option<String> = fields.get("holder_role")?;
                if let (Some(host), Some(pid), Some(role)) = (host, pid, role) {
                    let pid = u32::try_from(pid).map_err(|_| fields.corrupt(format_args!("pid {pid}")))?;
                    let at = fields.get::<Option<i64>>("acquired_us")?.map(Timestamp::from_micros);
                    info = info.held_by(LeaseHolder::new(host, pid, role), at);
                }
                infos.push(info);
            }
            Ok(infos)
        })
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

    #[test]
    fn the_server_keeps_a_silent_session_longer_than_the_leader_takes_to_notice() {
        let ms = Duration::from_millis;
        for interval in [ms(10), ms(100), ms(500), ms(999), ms(1000), ms(1001), ms(5000), ms(60_000)] {
            for timeout in [ms(10), ms(300), ms(2000), ms(2001), ms(30_000)] {
                let t = ServerTimeouts::new(interval, timeout);
                let noticed = interval + timeout;
                assert!(t.shortest() > noticed, "{interval:?} + {timeout:?}: {t:?}");
                assert!(Duration::from_millis(t.user_timeout_ms as u64) >= noticed * 2, "{t:?}");
                let keepalives = t.keepalives_idle_s + t.keepalives_interval_s * t.keepalives_count;
                assert!(Duration::from_secs(keepalives) > noticed, "{t:?}");
            }
        }
        let t = ServerTimeouts::new(DEFAULT_CHECK_INTERVAL, DEFAULT_CHECK_TIMEOUT);
        assert_eq!(
            t,
            ServerTimeouts {
                user_timeout_ms: 5000,
                keepalives_idle_s: 3,
                keepalives_interval_s: 1,
                keepalives_count: 5
            }
        );
        assert_eq!(t.shortest(), Duration::from_secs(5));
    }
}

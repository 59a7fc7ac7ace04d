//! What holds subscribers back: the cost of reading in commit-safe order.

use std::time::Duration;

/// Events that are committed but not yet readable in order, and the transaction that keeps
/// them so.
///
/// Subscribers read only below the oldest transaction still running in the whole cluster (any
/// database), so one long write transaction — or a forgotten prepared transaction — holds every
/// subscriber back until it ends. [`PgEventStore::holdback`](crate::PgEventStore::holdback)
/// names it so that an operator can end it.
///
/// # Examples
///
/// ```
/// use eventloom_postgres::Holdback;
///
/// let h = Holdback { hidden_events: 0, oldest: None };
/// assert!(!h.is_held());
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Holdback {
    /// Committed events of this store that subscribers cannot read yet.
    pub hidden_events: u64,
    /// The oldest transaction that holds an id, in any database of the cluster.
    pub oldest: Option<Blocker>,
}

impl Holdback {
    /// Whether subscribers are being held back now.
    pub fn is_held(&self) -> bool {
        self.hidden_events > 0
    }
}

/// A transaction that holds subscribers back.
///
/// # Examples
///
/// ```
/// use eventloom_postgres::Blocker;
///
/// let b = Blocker { pid: Some(4242), database: Some("reports".into()), state: Some("idle in transaction".into()),
///     transaction: 771, age: std::time::Duration::from_secs(90), prepared: None };
/// assert_eq!(b.pid, Some(4242));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Blocker {
    /// The backend's process id (`pg_terminate_backend` ends it); `None` for a prepared
    /// transaction, which has no backend.
    pub pid: Option<i32>,
    /// The database it runs in.
    pub database: Option<String>,
    /// Its state (`idle in transaction`, `active`, `prepared`).
    pub state: Option<String>,
    /// Its transaction id (32-bit, as `pg_stat_activity` shows it).
    pub transaction: u64,
    /// How long the transaction has run.
    pub age: Duration,
    /// The global id of a prepared transaction (`COMMIT PREPARED` / `ROLLBACK PREPARED` it).
    pub prepared: Option<String>,
}

/// How far the read replica ([`PgConfig::read_replica`](crate::PgConfig::read_replica)) is
/// behind its primary, from [`PgEventStore::replica_lag`](crate::PgEventStore::replica_lag) (and
/// `App::health`'s `AppStatus::replica`): eventloom-core's type.
///
/// This is apart from [`Holdback`]: events the replica has not replayed yet are neither
/// readable there nor counted as held back; the transaction that holds the horizon back is
/// named from the primary, where it runs.
///
/// # Examples
///
/// ```
/// use eventloom_postgres::ReplicaLag;
///
/// fn alarming(lag: &ReplicaLag) -> bool {
///     lag.paused || lag.bytes > 64 << 20
/// }
/// ```
pub use eventloom_core::store::ReplicaLag;

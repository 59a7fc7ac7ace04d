//! What [`App::status`](crate::App::status) and [`App::health`](crate::App::health) add to a
//! projection's run state: whether this process holds its lease, and how far its live views are
//! behind the log.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::memory::lock;
use crate::{BoxFuture, EventStore, Lease, LeaseManager, Position, ProjectionStatus, Result, Timestamp, ViewStore};

/// Whether this process leads a projection: holds its lease (so its runner is the one writing
/// the views) or stands by while another process does.
///
/// # Examples
///
/// ```
/// use eventloom_core::app::LeaseState;
///
/// assert_eq!(LeaseState::Leading { token: 3 }.token(), Some(3));
/// assert_eq!(LeaseState::StandingBy.token(), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LeaseState {
    /// No lease to tell of: the projection does not run in this process (or no longer does), or
    /// the stores have no lease manager and it runs without one.
    NotHeld,
    /// Waiting for the lease: another process leads (or none has taken it yet).
    StandingBy,
    /// Holding the lease: this process's runner writes the views.
    Leading {
        /// The lease's fencing token, carried by every write of the runner.
        token: u64,
    },
}

impl LeaseState {
    /// The fencing token, while leading.
    pub fn token(self) -> Option<u64> {
        match self {
            LeaseState::Leading { token } => Some(token),
            _ => None,
        }
    }
}

/// How far a projection's live views (the ones queries read) are behind the event store, as
/// [`App::health`](crate::App::health) reads it from the stores: in any role, since the view
/// store holds the checkpoint whichever process writes it.
///
/// # Examples
///
/// See [`App::health`](crate::App::health).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Lag {
    /// The projection in the view store: its live generation (whose checkpoint queries see), a
    /// generation being built, a recorded stop.
    pub views: ProjectionStatus,
    /// The events readable after the live checkpoint (all of them while no generation is live),
    /// counted exactly up to the cap given to `health`.
    pub events: u64,
    /// Whether there are more than `events` (the count stopped at the cap).
    pub more: bool,
    /// Committed events no subscriber can read yet because an older transaction is still open
    /// ([`EventStore::held_back`]), up to the cap; not part of `events`.
    pub held_back: u64,
    /// How long ago the oldest event the live views lack was written; `None` when they lack none.
    pub oldest_unprojected: Option<Duration>,
}

impl Lag {
    /// The position of the last event the live views include (`None` before any is live).
    pub fn checkpoint(&self) -> Option<Position> {
        self.views.checkpoint()
    }

    /// Whether views are live and nothing readable lies after their checkpoint.
    pub fn caught_up(&self) -> bool {
        self.views.live.is_some() && self.events == 0
    }
}

/// Reads the lag of projection `name`: its status, a count of the events after its live
/// checkpoint up to `cap`, and the first of them. Three bounded reads.
pub(super) async fn lag(
    events: &dyn EventStore,
    views: &dyn ViewStore,
    name: &str,
    cap: u64,
    held_back: u64,
) -> Result<Lag> {
    let status = views.status(name).await?;
    let after = status.checkpoint().unwrap_or(Position::ZERO);
    let counted = events.count_after(after, cap.saturating_add(1)).await?;
    let oldest_unprojected = match events.read_all(after, 1).await?.first() {
        None => None,
        Some(event) => {
            let written = event.metadata.get()?.timestamp.as_micros();
            let age = Timestamp::now().as_micros().saturating_sub(written);
            Some(Duration::from_micros(u64::try_from(age).unwrap_or(0)))
        }
    };
    Ok(Lag { views: status, events: counted.min(cap), more: counted > cap, held_back, oldest_unprojected })
}

/// The bundle's lease manager as the App's projectors use it: it notes, per projection, whether
/// this process holds the lease. A runner asks for the lease when it starts and again whenever
/// it lost it or stood down, so "standing by" begins with each request and "leading" with each
/// grant.
pub(super) struct TrackedLeases {
    leases: Arc<dyn LeaseManager>,
    states: Arc<Mutex<HashMap<String, LeaseState>>>,
}

impl TrackedLeases {
    pub(super) fn new(leases: Arc<dyn LeaseManager>, states: Arc<Mutex<HashMap<String, LeaseState>>>) -> Self {
        TrackedLeases { leases, states }
    }

    fn note(&self, name: &str, state: LeaseState) {
        lock(&self.states).insert(name.to_owned(), state);
    }
}

impl LeaseManager for TrackedLeases {
    fn acquire<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Lease>> {
        Box::pin(async move {
            self.note(name, LeaseState::StandingBy);
            let lease = self.leases.acquire(name).await?;
            self.note(name, LeaseState::Leading { token: lease.token() });
            Ok(lease)
        })
    }
}

//! What [`App::status`](crate::App::status) and [`App::health`](crate::App::health) add to a
//! projection's run state: whether this process holds its lease, and how far its live views are
//! behind the log.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use crate::memory::lock;
use crate::{
    BoxFuture, Error, EventStore, Lease, LeaseManager, Position, ProjectionStatus, Result, Timestamp, ViewStore,
};

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
/// store holds the checkpoint whichever process writes it. The view store's part and the event
/// store's part are read apart: an event store that fails leaves [`unprojected`](Self::unprojected)
/// an error, and the views' status is still told.
///
/// # Examples
///
/// See [`App::health`](crate::App::health).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Lag {
    /// The projection in the view store: its live generation (whose checkpoint queries see), a
    /// generation being built, a recorded stop.
    pub views: ProjectionStatus,
    /// What the event store holds after the live checkpoint, or why it could not tell.
    pub unprojected: std::result::Result<Unprojected, Arc<Error>>,
}

/// The events the live views of a projection lack, as the event store counts them: part of a
/// [`Lag`].
///
/// # Examples
///
/// See [`App::health`](crate::App::health).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Unprojected {
    /// The events readable after the live checkpoint (all of them while no generation is live),
    /// counted exactly up to the cap given to `health`.
    pub events: u64,
    /// Whether there are more than `events` (the count stopped at the cap).
    pub more: bool,
    /// Committed events no subscriber can read yet because an older transaction is still open
    /// ([`EventStore::held_back`]), up to the cap; not part of `events`.
    pub held_back: u64,
    /// How long ago the oldest event the live views lack was written; `None` when they lack none.
    pub oldest: Option<Duration>,
}

impl Lag {
    /// The position of the last event the live views include (`None` before any is live).
    pub fn checkpoint(&self) -> Option<Position> {
        self.views.checkpoint()
    }

    /// Whether views are live and the event store told that nothing readable lies after their
    /// checkpoint (not when it could not tell).
    pub fn caught_up(&self) -> bool {
        self.views.live.is_some() && matches!(&self.unprojected, Ok(u) if u.events == 0 && !u.more)
    }
}

/// Reads the lag of projection `name`: its status from the view store (or that store's error),
/// then, unless the event store already failed to count the events `held_back`, a count of the
/// events after its live checkpoint up to `cap` and the first of them. Three bounded reads.
pub(super) async fn lag(
    events: &dyn EventStore,
    views: &dyn ViewStore,
    name: &str,
    partitioned: bool,
    cap: u64,
    held_back: &std::result::Result<u64, Arc<Error>>,
) -> Result<Lag> {
    let status = crate::read::partition_reads::status_of(views, name, partitioned).await?;
    let after = status.checkpoint().unwrap_or(Position::ZERO);
    let unprojected = match held_back {
        Ok(held_back) => unprojected(events, after, cap, *held_back).await.map_err(Arc::new),
        Err(error) => Err(error.clone()),
    };
    Ok(Lag { views: status, unprojected })
}

async fn unprojected(events: &dyn EventStore, after: Position, cap: u64, held_back: u64) -> Result<Unprojected> {
    let counted = events.count_after(after, cap.saturating_add(1)).await?;
    let oldest = match events.read_all(after, 1).await?.first() {
        None => None,
        Some(event) => Some(age(event.metadata.get()?.timestamp)),
    };
    Ok(Unprojected { events: counted.min(cap), more: counted > cap, held_back, oldest })
}

/// Where a relay stands, as [`App::health`](crate::App::health) reads it, in any role: the last
/// message of its source recorded in the event store, and what its feed holds after it. The two
/// are read apart: a feed that fails leaves [`unrelayed`](Self::unrelayed) an error, and the
/// position is still told.
///
/// The feed counts after `Position::new(0, relayed)`, where the relay reads from when it starts:
/// exact for a feed whose positions are the source's sequence (`Position::new(0, sequence)`, as
/// a JetStream feed's). For a feed whose positions have a transaction part (an event store used
/// as a feed), the count is from the position the relay last relayed in this process, when that
/// is the recorded one, and otherwise counts the feed's whole log.
///
/// # Examples
///
/// ```
/// use eventloom_core::{App, MemoryStores, memory::MemoryEventStore};
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let app = App::builder(MemoryStores::new()).relay("inventory", MemoryEventStore::new()).start().await.unwrap();
/// let health = app.health(10_000).await;
/// let lag = health.relays[0].relay.clone().unwrap().unwrap();
/// assert_eq!(lag.relayed, 0, "nothing relayed yet");
/// assert!(lag.caught_up(), "and nothing to relay");
/// app.shutdown().await.unwrap();
/// # });
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RelayLag {
    /// The last sequence of the source recorded as relayed ([`EventStore::relayed`]), 0 before
    /// the first.
    pub relayed: u64,
    /// What the feed holds after it, or why the feed could not tell.
    pub unrelayed: std::result::Result<Unrelayed, Arc<Error>>,
}

impl RelayLag {
    /// Whether the feed told that it holds nothing after the recorded sequence (not when it
    /// could not tell).
    pub fn caught_up(&self) -> bool {
        matches!(&self.unrelayed, Ok(u) if u.events == 0 && !u.more)
    }
}

/// The messages a relay has yet to relay, as its feed counts them: part of a [`RelayLag`].
///
/// # Examples
///
/// See [`RelayLag`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Unrelayed {
    /// The events the feed holds after the relay's record ([`Feed::count_after`](crate::read::Feed::count_after)), counted
    /// exactly up to the cap given to `health`.
    pub events: u64,
    /// Whether there are more than `events` (the count stopped at the cap).
    pub more: bool,
    /// How long ago the oldest of them was written, where the feed can tell
    /// ([`Feed::first_written_after`](crate::read::Feed::first_written_after)); `None` when there is none or the feed cannot tell.
    pub oldest: Option<Duration>,
}

/// Reads where the relay of `source` stands: its record in `events`, then what `feed` holds
/// after it, from `read_to` (the feed position this process last relayed) when that is the
/// recorded sequence. Three bounded reads.
pub(super) async fn relay_lag(
    events: &dyn EventStore,
    feed: &dyn super::relay::Probe,
    source: &str,
    read_to: Option<Position>,
    cap: u64,
) -> Result<RelayLag> {
    let relayed = events.relayed(source).await?;
    let after = match read_to {
        Some(position) if position.sequence() == relayed => position,
        _ => Position::new(0, relayed),
    };
    let unrelayed = unrelayed(feed, after, cap).await.map_err(Arc::new);
    Ok(RelayLag { relayed, unrelayed })
}

async fn unrelayed(feed: &dyn super::relay::Probe, after: Position, cap: u64) -> Result<Unrelayed> {
    let counted = feed.count_after(after, cap.saturating_add(1)).await?;
    let oldest = match counted {
        0 => None,
        _ => feed.first_written_after(after).await?.map(age),
    };
    Ok(Unrelayed { events: counted.min(cap), more: counted > cap, oldest })
}

/// How long ago `written` was (zero for a time ahead of this clock).
fn age(written: Timestamp) -> Duration {
    let age = Timestamp::now().as_micros().saturating_sub(written.as_micros());
    Duration::from_micros(u64::try_from(age).unwrap_or(0))
}

/// Whether this process holds each projection's lease, as the App's projectors last took or
/// gave it up. Cheap to clone: clones share the map.
#[derive(Clone, Default)]
pub(super) struct LeaseStates(Arc<Mutex<HashMap<String, Tracked>>>);

/// One projection's entry in [`LeaseStates`].
enum Tracked {
    StandingBy,
    /// Granted with `token`; `lost` turns `true` when the lease is lost.
    Leading {
        token: u64,
        lost: watch::Receiver<bool>,
    },
}

impl LeaseStates {
    /// How this process stands for projection `name`: leading only while it holds a lease that
    /// is not known to be lost.
    pub(super) fn get(&self, name: &str) -> LeaseState {
        match lock(&self.0).get(name) {
            None => LeaseState::NotHeld,
            Some(Tracked::Leading { token, lost }) if !*lost.borrow() => LeaseState::Leading { token: *token },
            Some(_) => LeaseState::StandingBy,
        }
    }

    fn note(&self, name: &str, state: Tracked) {
        lock(&self.0).insert(name.to_owned(), state);
    }

    /// Back to standing by, unless a newer lease of `name` was granted meanwhile.
    fn released(&self, name: &str, released: u64) {
        let mut states = lock(&self.0);
        if let Some(state) = states.get_mut(name) {
            if matches!(state, Tracked::Leading { token, .. } if *token == released) {
                *state = Tracked::StandingBy;
            }
        }
    }
}

/// The bundle's lease manager as the App's projectors use it: it notes, per projection, whether
/// this process holds the lease. "Standing by" begins with each request and with each lease
/// given up (dropped: a runner that stood down, or stopped); "leading" with each grant, and
/// lasts while the lease is not lost.
pub(super) struct TrackedLeases {
    leases: Arc<dyn LeaseManager>,
    states: LeaseStates,
}

impl TrackedLeases {
    pub(super) fn new(leases: Arc<dyn LeaseManager>, states: LeaseStates) -> Self {
        TrackedLeases { leases, states }
    }
}

impl crate::store::DelegateLeaseManager for TrackedLeases {
    type Inner = dyn LeaseManager;
    fn inner(&self) -> &dyn LeaseManager {
        &*self.leases
    }

    fn acquire<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Lease>> {
        Box::pin(async move {
            self.states.note(name, Tracked::StandingBy);
            let lease = self.leases.acquire(name).await?;
            Ok(self.leading(name, lease))
        })
    }

    fn try_acquire<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<Lease>>> {
        Box::pin(async move { Ok(self.leases.try_acquire(name).await?.map(|lease| self.leading(name, lease))) })
    }
}

impl TrackedLeases {
    /// Notes `lease` held, and wraps it so that dropping it notes it given up.
    fn leading(&self, name: &str, lease: Lease) -> Lease {
        let (token, lost) = (lease.token(), lease.lost_signal());
        self.states.note(name, Tracked::Leading { token, lost: lost.clone() });
        // Fields drop in order: the state says "standing by" before the lease is released.
        let given_up = GivenUp { states: self.states.clone(), name: name.to_owned(), token };
        Lease::new(token, lost, (given_up, lease))
    }
}

/// Notes a lease given up when the lease that holds it is dropped.
struct GivenUp {
    states: LeaseStates,
    name: String,
    token: u64,
}

impl Drop for GivenUp {
    fn drop(&mut self) {
        self.states.released(&self.name, self.token);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lag(live: bool, events: u64, more: bool) -> Lag {
        let mut views = ProjectionStatus::new(None, None, None);
        if live {
            views.live = Some(crate::store::Generation { id: 1, version: 1, checkpoint: Some(Position::new(1, 1)) });
        }
        Lag { views, unprojected: Ok(Unprojected { events, more, held_back: 0, oldest: None }) }
    }

    #[test]
    fn caught_up_needs_live_views_and_nothing_after_them_even_past_a_cap_of_zero() {
        assert!(lag(true, 0, false).caught_up());
        assert!(!lag(true, 0, true).caught_up(), "a count capped at 0 that found more");
        assert!(!lag(true, 1, false).caught_up());
        assert!(!lag(false, 0, false).caught_up(), "no live views");
        let mut unknown = lag(true, 0, false);
        unknown.unprojected = Err(Arc::new(Error::unavailable_msg("the event store is down")));
        assert!(!unknown.caught_up(), "the event store could not tell");
    }
}

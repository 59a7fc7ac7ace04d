//! Leadership: one active projector per projection, with a fencing token that only grows.

use crate::store::BoxFuture;
use tokio::sync::watch;

use crate::Result;

/// Hands out leases: at most one holder of a name at a time, each with a fencing token higher
/// than every earlier one for that name.
///
/// A projector takes the lease of its projection before it writes, and passes the token with
/// every write; view stores refuse writes whose token is older than one they have seen, so a
/// deposed leader that wakes up late changes nothing.
///
/// # Examples
///
/// ```
/// use eventloom_core::{store::LeaseManager, memory::MemoryLeases};
///
/// async fn lead(leases: &dyn LeaseManager) -> u64 {
///     let lease = leases.acquire("task_views").await.unwrap();
///     lease.token()
/// }
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// assert_eq!(lead(&MemoryLeases::default()).await, 1);
/// # });
/// ```
pub trait LeaseManager: Send + Sync + 'static {
    /// Waits until this caller holds the lease for `name` (standing by while another holds it).
    fn acquire<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Lease>>;

    /// Takes the lease for `name` if nobody holds it now, without waiting: `None` while another
    /// holder has it. A partitioned projection's processes find each other with it (each holds
    /// one member slot, and probes the slots above its own).
    fn try_acquire<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<Lease>>>;
}

/// Leadership of one name, held until dropped or lost.
///
/// # Examples
///
/// ```
/// use eventloom_core::store::Lease;
///
/// let (lose, lost) = tokio::sync::watch::channel(false);
/// let lease = Lease::new(7, lost, ());
/// assert_eq!(lease.token(), 7);
/// lose.send_replace(true);
/// assert!(lease.is_lost());
/// ```
pub struct Lease {
    token: u64,
    lost: watch::Receiver<bool>,
    _release: Box<dyn Send + Sync>,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease").field("token", &self.token).field("lost", &self.is_lost()).finish()
    }
}

impl Lease {
    /// A lease with its token, a signal that turns `true` when it is lost, and a guard whose
    /// drop releases it. For implementors of [`LeaseManager`].
    pub fn new(token: u64, lost: watch::Receiver<bool>, release: impl Send + Sync + 'static) -> Self {
        Lease { token, lost, _release: Box::new(release) }
    }

    /// The fencing token: higher than that of every earlier lease of the same name.
    pub fn token(&self) -> u64 {
        self.token
    }

    /// Whether the lease is known to be lost.
    pub fn is_lost(&self) -> bool {
        *self.lost.borrow()
    }

    /// The signal that turns `true` when the lease is lost, for those that watch the lease
    /// without holding it (the App's status).
    pub(crate) fn lost_signal(&self) -> watch::Receiver<bool> {
        self.lost.clone()
    }

    /// Resolves when the lease is lost (never, while it is held).
    pub async fn lost(&self) {
        let mut lost = self.lost.clone();
        if lost.wait_for(|lost| *lost).await.is_err() {
            // The manager is gone: nobody can take the lease away any more, nor confirm it.
            std::future::pending::<()>().await;
        }
    }
}

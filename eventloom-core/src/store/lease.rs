//! Leadership: one active projector per projection, with a fencing token that only grows.

use std::sync::RwLock;

use crate::store::BoxFuture;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::{Error, Result, Timestamp};

/// The longest lease name a manager accepts, in bytes.
pub const MAX_LEASE_NAME_LEN: usize = 512;

/// Checks a lease name (or a prefix of one) before a manager uses it: no NUL byte (PostgreSQL
/// text cannot hold one), at most [`MAX_LEASE_NAME_LEN`] bytes. For implementors of
/// [`LeaseManager`]: a name that fails is an [`Error::InvalidId`], never a panic.
///
/// # Examples
///
/// ```
/// use eventloom_core::store::validate_lease_name;
///
/// assert!(validate_lease_name("task_views").is_ok());
/// assert!(validate_lease_name("a\0b").is_err());
/// assert!(validate_lease_name(&"x".repeat(513)).is_err());
/// ```
pub fn validate_lease_name(name: &str) -> Result<()> {
    if name.contains('\0') {
        return Err(Error::InvalidId {
            what: "lease name",
            reason: format!("{:?} contains a NUL byte", name.escape_debug().to_string()),
        });
    }
    if name.len() > MAX_LEASE_NAME_LEN {
        return Err(Error::InvalidId {
            what: "lease name",
            reason: format!("{} bytes, over the limit of {MAX_LEASE_NAME_LEN}", name.len()),
        });
    }
    Ok(())
}

/// The role this process reports as the holder of the leases it takes.
static PROCESS_ROLE: RwLock<Option<String>> = RwLock::new(None);

/// Who holds a lease: recorded with its token when it is taken, so that an operator sees which
/// process leads a projection.
///
/// # Examples
///
/// ```
/// use eventloom_core::store::LeaseHolder;
///
/// let me = LeaseHolder::this_process();
/// assert_eq!(me.pid, std::process::id());
/// assert!(!me.host.is_empty());
/// let other = LeaseHolder::new("box-2", 41, "projector");
/// assert_eq!(other.to_string(), "projector on box-2, pid 41");
/// ```
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LeaseHolder {
    /// The holder's host name.
    pub host: String,
    /// Its process id.
    pub pid: u32,
    /// Its role (the [`Role`](crate::Role) of its App, or what
    /// [`set_process_role`](Self::set_process_role) set; `"unknown"` otherwise).
    pub role: String,
}

impl LeaseHolder {
    /// A holder with this host, pid and role. For lease manager implementations reading one back.
    pub fn new(host: impl Into<String>, pid: u32, role: impl Into<String>) -> Self {
        LeaseHolder { host: host.into(), pid, role: role.into() }
    }

    /// This process: its host name (`/proc/sys/kernel/hostname`, else `$HOSTNAME`, else
    /// `"unknown"`), its pid, and the role set process-wide by
    /// [`set_process_role`](Self::set_process_role) (`"unknown"` before).
    pub fn this_process() -> LeaseHolder {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|host| host.trim().to_owned())
            .filter(|host| !host.is_empty())
            .or_else(|| std::env::var("HOSTNAME").ok().filter(|host| !host.is_empty()))
            .unwrap_or_else(|| "unknown".to_owned());
        let role = PROCESS_ROLE.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        LeaseHolder { host: clean(&host), pid: std::process::id(), role: role.unwrap_or_else(|| "unknown".to_owned()) }
    }

    /// Sets the role this process reports with the leases it takes from now on.
    /// [`App::start`](crate::AppBuilder::start) sets it from the App's [`Role`](crate::Role).
    pub fn set_process_role(role: &str) {
        *PROCESS_ROLE.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(clean(role));
    }
}

/// `text` without NUL bytes and cut to 255 bytes, as every store can keep it.
fn clean(text: &str) -> String {
    let mut text: String = text.chars().filter(|c| *c != '\0').collect();
    let mut end = text.len().min(255);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text
}

impl std::fmt::Display for LeaseHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} on {}, pid {}", self.role, self.host, self.pid)
    }
}

/// What a [`LeaseManager`] knows of one lease (see [`LeaseManager::leases`]).
///
/// # Examples
///
/// ```
/// use eventloom_core::store::{LeaseHolder, LeaseInfo};
///
/// let info = LeaseInfo::new("task_views", 3).held_by(LeaseHolder::this_process(), None).with_held(true);
/// assert!(info.held);
/// assert_eq!(info.token, 3);
/// ```
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseInfo {
    /// The lease's name.
    pub name: String,
    /// The last fencing token handed out.
    pub token: u64,
    /// Who took that token (`None` for a lease taken before holders were recorded).
    pub holder: Option<LeaseHolder>,
    /// When that token was taken.
    pub acquired_at: Option<Timestamp>,
    /// Whether someone holds the lease now (PostgreSQL: its advisory lock is taken). When
    /// false, `holder` is the last holder.
    pub held: bool,
}

impl LeaseInfo {
    /// A lease `name` whose last token is `token`, with no holder known, not held. For lease
    /// manager implementations.
    pub fn new(name: impl Into<String>, token: u64) -> Self {
        LeaseInfo { name: name.into(), token, holder: None, acquired_at: None, held: false }
    }

    /// The same, taken by `holder` at `acquired_at`.
    pub fn held_by(mut self, holder: LeaseHolder, acquired_at: Option<Timestamp>) -> Self {
        self.holder = Some(holder);
        self.acquired_at = acquired_at;
        self
    }

    /// The same, held now or not.
    pub fn with_held(mut self, held: bool) -> Self {
        self.held = held;
        self
    }
}

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
// A new method here gets a forwarding default in `DelegateLeaseManager` and a line in its blanket impl
// (store/delegate.rs), so that wrappers forward it.
pub trait LeaseManager: Send + Sync + 'static {
    /// Waits until this caller holds the lease for `name` (standing by while another holds it).
    fn acquire<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Lease>>;

    /// Takes the lease for `name` if nobody holds it now, without waiting: `None` while another
    /// holder has it. A partitioned projection's processes find each other with it (each holds
    /// one member slot, and probes the slots above its own).
    fn try_acquire<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<Lease>>>;

    /// Every lease whose name starts with `prefix` (`""`: all), sorted by name (byte-wise): its
    /// last token, who took it ([`LeaseHolder::this_process`] of the taker, recorded by
    /// [`acquire`](Self::acquire) and [`try_acquire`](Self::try_acquire)) and when, and whether
    /// it is held now. A wrapper forwards it to the manager it wraps.
    fn leases<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<LeaseInfo>>>;
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

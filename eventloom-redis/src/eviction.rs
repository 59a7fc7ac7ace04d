//! Redis's `maxmemory-policy`, as it concerns the view store: whether Redis may evict its keys.

use std::time::{Duration, Instant};

/// What Redis's `maxmemory-policy` means for the view store's keys, none of which has a TTL.
///
/// Under an evicting policy, Redis deletes keys when it reaches `maxmemory`: a lost key of a
/// generation makes it *lost* (rebuilt from the event store when the projector notices: see the
/// crate's section "Eviction"), but a view nobody writes again simply reads as missing.
/// [`RedisViewStore::connect_with`](crate::RedisViewStore::connect_with) therefore refuses an
/// evicting policy unless [`RedisConfig::accept_eviction`](crate::RedisConfig::accept_eviction)
/// says otherwise.
///
/// # Examples
///
/// ```
/// use eventloom_redis::EvictionPolicy;
///
/// assert!(EvictionPolicy::from_name("noeviction").is_safe());
/// assert!(EvictionPolicy::from_name("volatile-lru").is_safe());
/// assert_eq!(EvictionPolicy::from_name("allkeys-lru"), EvictionPolicy::Evicting("allkeys-lru".into()));
/// assert!(!EvictionPolicy::Unknown("ERR unknown command 'CONFIG'".into()).is_safe());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EvictionPolicy {
    /// `noeviction`, or a `volatile-*` policy (it evicts only keys with a TTL: none of the
    /// store's). The policy's name.
    Safe(String),
    /// Any other policy: `allkeys-lru`, `allkeys-lfu`, `allkeys-random`, or one this crate does
    /// not know. Redis may evict the store's keys. The policy's name.
    Evicting(String),
    /// The policy could not be read: `CONFIG` is renamed or disabled (as managed services and
    /// hardened servers do), or the ACL user may not run `CONFIG GET`. The server's answer.
    Unknown(String),
}

impl EvictionPolicy {
    /// The policy named `name` (as `CONFIG GET maxmemory-policy` answers it).
    pub fn from_name(name: &str) -> Self {
        let name = name.to_ascii_lowercase();
        if name == "noeviction" || name.starts_with("volatile-") {
            EvictionPolicy::Safe(name)
        } else {
            EvictionPolicy::Evicting(name)
        }
    }

    /// Whether Redis is known never to evict the store's keys.
    pub fn is_safe(&self) -> bool {
        matches!(self, EvictionPolicy::Safe(_))
    }
}

impl std::fmt::Display for EvictionPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EvictionPolicy::Safe(name) | EvictionPolicy::Evicting(name) => f.write_str(name),
            EvictionPolicy::Unknown(reason) => write!(f, "unknown ({reason})"),
        }
    }
}

/// Reads the policy: a server error (`CONFIG` unknown, `NOPERM`, an odd reply) is
/// [`EvictionPolicy::Unknown`]; only connection trouble is an error.
pub(crate) async fn read(connection: &mut crate::connection::Connection) -> Result<EvictionPolicy, redis::RedisError> {
    let reply: Result<Vec<String>, _> =
        redis::cmd("CONFIG").arg("GET").arg("maxmemory-policy").query_async(connection).await;
    match reply {
        Ok(pair) => match &pair[..] {
            [_, name] => Ok(EvictionPolicy::from_name(name)),
            other => Ok(EvictionPolicy::Unknown(format!("CONFIG GET maxmemory-policy answered {other:?}"))),
        },
        Err(e) if crate::error::is_transient(&e) => Err(e),
        Err(e) => Ok(EvictionPolicy::Unknown(e.to_string())),
    }
}

/// How often `status` reads the policy again at most.
pub(crate) const CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// How often a store repeats its warning about an evicting policy it was not told to accept.
const WARN_AGAIN: Duration = Duration::from_secs(60);

/// What a store knows of the policy (shared by clones).
#[derive(Debug)]
pub(crate) struct Watch {
    /// [`RedisConfig::accept_eviction`](crate::RedisConfig::accept_eviction).
    pub(crate) accept: bool,
    pub(crate) seen: EvictionPolicy,
    pub(crate) checked: Instant,
    warned: Option<Instant>,
}

impl Watch {
    /// After the check at connect found `seen` (and logged it).
    pub(crate) fn new(accept: bool, seen: EvictionPolicy) -> Self {
        Watch { accept, seen, checked: Instant::now(), warned: Some(Instant::now()) }
    }

    /// Whether a check is due; if so, counts it as made now (so that one caller makes it).
    pub(crate) fn due(&mut self) -> bool {
        if self.checked.elapsed() < CHECK_INTERVAL {
            return false;
        }
        self.checked = Instant::now();
        true
    }

    /// Records what a check found, and logs a change, or an evicting policy that was not
    /// accepted (again every minute while it lasts).
    pub(crate) fn found(&mut self, policy: EvictionPolicy, address: &str) {
        let changed = policy != self.seen;
        let nag = !self.accept
            && matches!(policy, EvictionPolicy::Evicting(_))
            && self.warned.is_none_or(|at| at.elapsed() >= WARN_AGAIN);
        if changed || nag {
            self.warned = Some(Instant::now());
            log(&policy, self.accept, address);
        }
        self.seen = policy;
    }
}

/// Logs what a policy means: an evicting one not accepted at error level, an accepted one or
/// one that cannot be read as a warning.
pub(crate) fn log(policy: &EvictionPolicy, accept: bool, address: &str) {
    match policy {
        EvictionPolicy::Safe(name) => {
            tracing::info!(address, policy = %name, "Redis never evicts the view store's keys")
        }
        EvictionPolicy::Evicting(name) if accept => tracing::warn!(
            address,
            policy = %name,
            "Redis may evict the view store's keys (accepted by RedisConfig::accept_eviction): a generation \
             that loses a key is rebuilt when the projector notices, and a view nobody writes again reads as missing"
        ),
        EvictionPolicy::Evicting(name) => tracing::error!(
            address,
            policy = %name,
            "Redis now runs with an evicting maxmemory-policy: it may delete views; set it to noeviction \
             (or volatile-*), or accept it with RedisConfig::accept_eviction"
        ),
        EvictionPolicy::Unknown(reason) => tracing::warn!(
            address,
            reason = %reason,
            "cannot read Redis's maxmemory-policy (CONFIG disabled or not permitted): make sure it is \
             noeviction or volatile-*, or Redis may evict views"
        ),
    }
}

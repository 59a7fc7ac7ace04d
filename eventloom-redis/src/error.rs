//! The crate's error type.

/// A `Result` whose error defaults to this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong while configuring or connecting to Redis. Once connected, the store
/// implements the `eventloom-core` traits and returns [`eventloom_core::Error`].
///
/// # Examples
///
/// ```
/// let err = eventloom_redis::RedisViewStore::check_prefix("bad{prefix").unwrap_err();
/// assert!(matches!(err, eventloom_redis::Error::Config(_)));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A setting that cannot work. The message never repeats credentials.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Redis could not be reached or refused the connection (a wrong password, an untrusted
    /// certificate). The message never repeats credentials.
    #[error("cannot connect to Redis: {0}")]
    Connect(String),
    /// Redis runs with a `maxmemory-policy` that may evict the store's keys (`allkeys-*`, or
    /// one this crate does not know): use `noeviction` (or a `volatile-*` policy), or accept it
    /// with [`RedisConfig::accept_eviction`](crate::RedisConfig::accept_eviction).
    #[error(
        "Redis runs with maxmemory-policy {policy}, which may evict views: set it to noeviction (or \
         volatile-*), or accept it with RedisConfig::accept_eviction"
    )]
    EvictionPolicy {
        /// The policy's name.
        policy: String,
    },
}

impl Error {
    /// What kind of failure this is (see [`ErrorKind`](eventloom_core::ErrorKind)): a bad
    /// setting is invalid input, a refused connection is unavailable, an eviction policy that
    /// may lose views is internal (the server needs another setting).
    ///
    /// # Examples
    ///
    /// ```
    /// use eventloom_core::ErrorKind;
    ///
    /// let err = eventloom_redis::Error::Config("bad prefix".into());
    /// assert_eq!(err.kind(), ErrorKind::InvalidInput);
    /// ```
    pub fn kind(&self) -> eventloom_core::ErrorKind {
        use eventloom_core::ErrorKind;
        match self {
            Error::Config(_) => ErrorKind::InvalidInput,
            Error::Connect(_) => ErrorKind::Unavailable,
            Error::EvictionPolicy { .. } => ErrorKind::Internal,
        }
    }
}

/// Whether retrying may help: the connection is down or timed out, or the server is busy
/// loading its data or failing over. A cluster redirection (`MOVED`, `ASK`) reaches the caller
/// only when the cluster client ran out of retries while the slots changed hands (a master
/// killed: the other nodes send to it until its replica is elected): transient too.
pub(crate) fn is_transient(error: &redis::RedisError) -> bool {
    use redis::{ErrorKind, ServerErrorKind};
    error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_timeout()
        || matches!(
            error.kind(),
            ErrorKind::ClusterConnectionNotFound
                | ErrorKind::Server(
                    ServerErrorKind::Moved
                        | ServerErrorKind::Ask
                        | ServerErrorKind::BusyLoading
                        | ServerErrorKind::TryAgain
                        | ServerErrorKind::ClusterDown
                        | ServerErrorKind::MasterDown
                        | ServerErrorKind::ReadOnly
                )
        )
}

/// A Redis error as the `eventloom-core` traits report it: connection trouble is transient
/// ([`eventloom_core::Error::Unavailable`]), anything else is not ([`eventloom_core::Error::Backend`]).
pub(crate) fn redis_error(error: redis::RedisError) -> eventloom_core::Error {
    let message = error.to_string();
    if is_transient(&error) {
        eventloom_core::Error::Unavailable { message, source: Some(Box::new(error)) }
    } else {
        eventloom_core::Error::Backend { message, source: Some(Box::new(error)) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis::{ErrorKind as Kind, RedisError, ServerErrorKind};

    #[test]
    fn a_redirection_left_over_from_a_failover_is_transient() {
        let error = |kind: ServerErrorKind, detail: &str| RedisError::from((Kind::Server(kind), "", detail.to_owned()));
        for kind in
            [ServerErrorKind::Moved, ServerErrorKind::Ask, ServerErrorKind::ClusterDown, ServerErrorKind::TryAgain]
        {
            let mapped = redis_error(error(kind, "3701 127.0.0.1:7000"));
            assert!(matches!(mapped, eventloom_core::Error::Unavailable { .. }), "{kind:?}: {mapped:?}");
        }
        let cross_slot = redis_error(error(ServerErrorKind::CrossSlot, "keys in different slots"));
        assert!(matches!(cross_slot, eventloom_core::Error::Backend { .. }), "{cross_slot:?}");
    }
}

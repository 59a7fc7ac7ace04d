//! Connection settings.

use std::fmt;
use std::time::Duration;

use redis::{ConnectionAddr, IntoConnectionInfo};

use crate::{Error, Result};

/// The default key prefix.
pub const DEFAULT_PREFIX: &str = "cqrs:";

/// How to reach Redis, and the prefix of every key the store writes.
///
/// One node by default: [`from_url`](Self::from_url). A Redis Cluster: [`cluster`](Self::cluster)
/// with a list of node URLs (some of its nodes, each `redis://host:port` or `rediss://...`; the
/// client asks them for the others and the slot map), or [`from_cluster_urls`](Self::from_cluster_urls)
/// with the same list in one string, comma-separated.
///
/// Built from a URL: `redis://[user[:password]@]host[:port][/db]`, or `rediss://...` for TLS
/// (feature `tls`: rustls on `ring`, trusting the webpki roots, or the certificates given to
/// `tls_root_certificates`). A user name and password are sent with
/// `AUTH` (an ACL user; leave the user out, or write `default`, for `requirepass`). Neither its
/// `Debug` output nor any error shows the password.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use eventloom_redis::RedisConfig;
///
/// let config = RedisConfig::from_url("redis://app:s3cret@127.0.0.1:6379/2")
///     .unwrap()
///     .prefix("billing:")
///     .unwrap()
///     .response_timeout(Duration::from_secs(2));
/// let shown = format!("{config:?}");
/// assert!(!shown.contains("s3cret"));
/// assert!(shown.contains("billing:"));
/// assert!(RedisConfig::from_url("http://nope").is_err());
/// assert!(RedisConfig::from_url("redis://127.0.0.1/").unwrap().prefix("a{b").is_err());
/// ```
#[derive(Clone)]
pub struct RedisConfig {
    pub(crate) info: redis::ConnectionInfo,
    pub(crate) prefix: String,
    /// Root certificates (PEM) trusted instead of the webpki roots.
    pub(crate) tls_roots: Option<Vec<u8>>,
    pub(crate) response_timeout: Option<Duration>,
    pub(crate) connection_timeout: Option<Duration>,
    pub(crate) accept_eviction: bool,
    /// The node URLs of a Redis Cluster; empty for one node (`info`).
    pub(crate) nodes: Vec<redis::ConnectionInfo>,
    /// `WAIT` after each write: how many replicas, for how long at most.
    pub(crate) wait_for_replicas: Option<(u32, Duration)>,
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let settings = self.info.redis_settings();
        f.debug_struct("RedisConfig")
            .field("address", &self.address())
            .field("cluster", &self.is_cluster())
            .field("tls", &self.is_tls())
            .field("db", &settings.db())
            .field("user", &settings.username())
            .field("password", &settings.password().map(|_| "<redacted>"))
            .field("prefix", &self.prefix)
            .field("tls_roots", &self.tls_roots.as_ref().map(|pem| pem.len()))
            .field("response_timeout", &self.response_timeout)
            .field("connection_timeout", &self.connection_timeout)
            .field("accept_eviction", &self.accept_eviction)
            .field("wait_for_replicas", &self.wait_for_replicas)
            .finish()
    }
}

impl RedisConfig {
    /// Settings from a `redis://` or `rediss://` URL, with the key prefix [`DEFAULT_PREFIX`].
    pub fn from_url(url: &str) -> Result<Self> {
        let scheme = url.split_once("://").map(|(scheme, _)| scheme.to_ascii_lowercase());
        match scheme.as_deref() {
            Some("redis" | "valkey") => {}
            Some("rediss" | "valkeys") if cfg!(feature = "tls") => {}
            Some("rediss" | "valkeys") => {
                return Err(Error::Config(
                    "a rediss:// URL asks for TLS, but eventloom-redis was built without its `tls` feature".to_owned(),
                ));
            }
            _ => return Err(Error::Config("the Redis URL must start with redis:// or rediss://".to_owned())),
        }
        // The parser's message may quote the URL, password included: say only that it failed.
        let info = url.into_connection_info().map_err(|_| Error::Config("the Redis URL does not parse".to_owned()))?;
        Ok(RedisConfig {
            info,
            prefix: DEFAULT_PREFIX.to_owned(),
            tls_roots: None,
            response_timeout: Some(Duration::from_secs(5)),
            connection_timeout: Some(Duration::from_secs(5)),
            accept_eviction: false,
            nodes: Vec::new(),
            wait_for_replicas: None,
        })
    }

    /// Settings for a Redis Cluster, from the URLs of some of its nodes (one is enough; give
    /// more, in case that one is down when the store connects). Every URL has the scheme, user
    /// and password of the first (`redis://` or `rediss://`: TLS for every node or none) and no
    /// database but 0, which is all a cluster has. The store asks the nodes for the slot map,
    /// sends each script to the master of its projection's slot, and follows `MOVED` and `ASK`.
    ///
    /// # Examples
    ///
    /// ```
    /// use eventloom_redis::RedisConfig;
    ///
    /// let config = RedisConfig::cluster(["redis://app:s3cret@10.0.0.1:7000", "redis://app:s3cret@10.0.0.2:7000"]).unwrap();
    /// assert!(config.is_cluster());
    /// assert!(!format!("{config:?}").contains("s3cret"));
    /// assert!(RedisConfig::cluster(["redis://10.0.0.1:7000/3"]).is_err(), "a cluster has database 0 only");
    /// assert!(RedisConfig::cluster(Vec::<String>::new()).is_err());
    /// ```
    pub fn cluster<I, S>(nodes: I) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut first: Option<RedisConfig> = None;
        let mut infos = Vec::new();
        for url in nodes {
            let node = RedisConfig::from_url(url.as_ref().trim())?;
            let settings = node.info.redis_settings();
            if settings.db() != 0 {
                return Err(Error::Config(
                    "a Redis Cluster has database 0 only: leave the /db out of its URLs".to_owned(),
                ));
            }
            if let Some(first) = &first {
                let theirs = first.info.redis_settings();
                if node.is_tls() != first.is_tls()
                    || settings.username() != theirs.username()
                    || settings.password() != theirs.password()
                {
                    return Err(Error::Config(
                        "every Redis Cluster node URL must have the first one's scheme, user and password".to_owned(),
                    ));
                }
            }
            infos.push(node.info.clone());
            first.get_or_insert(node);
        }
        let mut config = first.ok_or_else(|| Error::Config("no Redis Cluster node URL was given".to_owned()))?;
        config.nodes = infos;
        Ok(config)
    }

    /// [`cluster`](Self::cluster) with the node URLs in one string, comma-separated (as in
    /// `REDIS_CLUSTER_URLS=redis://10.0.0.1:7000,redis://10.0.0.2:7000`).
    ///
    /// # Examples
    ///
    /// ```
    /// let config = eventloom_redis::RedisConfig::from_cluster_urls("redis://127.0.0.1:7000, redis://127.0.0.1:7001").unwrap();
    /// assert!(format!("{config:?}").contains("127.0.0.1:7001"));
    /// ```
    pub fn from_cluster_urls(urls: &str) -> Result<Self> {
        Self::cluster(urls.split(',').map(str::trim).filter(|url| !url.is_empty()))
    }

    /// Whether these are settings for a Redis Cluster ([`cluster`](Self::cluster)).
    pub fn is_cluster(&self) -> bool {
        !self.nodes.is_empty()
    }

    /// Every key the store writes starts with `prefix` (default [`DEFAULT_PREFIX`]); it may not
    /// hold `{` or `}` (they would move the hash tag) nor control characters, and is at most 256
    /// bytes.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Result<Self> {
        let prefix = prefix.into();
        check_prefix(&prefix)?;
        self.prefix = prefix;
        Ok(self)
    }

    /// How long to wait for a reply before the operation fails as unavailable (default 5 s;
    /// `None` waits forever). A batch's script keeps running in Redis after a timeout: the
    /// projector then starts over from the stored checkpoint.
    pub fn response_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.response_timeout = timeout.into();
        self
    }

    /// How long to wait for a connection (default 5 s; `None` waits forever).
    pub fn connection_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.connection_timeout = timeout.into();
        self
    }

    /// Whether to connect to a Redis whose `maxmemory-policy` may evict the store's keys
    /// (`allkeys-*`; default `false`: [`connect_with`](crate::RedisViewStore::connect_with)
    /// fails with [`Error::EvictionPolicy`]). Accepted, the store logs a warning instead: a
    /// generation that loses a key is rebuilt once the projector notices, but a view that no
    /// event touches again reads as missing meanwhile. A policy that cannot be read (`CONFIG`
    /// renamed or not permitted) is warned about, never refused. See [`EvictionPolicy`](crate::EvictionPolicy).
    ///
    /// # Examples
    ///
    /// ```
    /// let config = eventloom_redis::RedisConfig::from_url("redis://127.0.0.1/").unwrap().accept_eviction(true);
    /// assert!(format!("{config:?}").contains("accept_eviction: true"));
    /// ```
    pub fn accept_eviction(mut self, accept: bool) -> Self {
        self.accept_eviction = accept;
        self
    }

    /// After each write (a batch's commit, a generation begun or made live, a stop recorded),
    /// waits with `WAIT` until `replicas` replicas of the node that holds the projection (the
    /// master of its slot, in a cluster) have acknowledged it, for at most `timeout` (default:
    /// no wait). Redis replicates asynchronously: without it, a failover after a master crash
    /// can lose commits the projector was told were written (the views then go back to an older
    /// checkpoint and the projector folds those events again, see the Redis chapter of the
    /// guide). `WAIT` narrows that window but does not close it — Redis 7.0 has no `WAITAOF`,
    /// and a replica that acknowledged may still lose the write or not be the one promoted —
    /// and when fewer replicas answer within `timeout` the write stands and a warning is logged
    /// (a replica that is down stalls nothing but each write's `timeout`). Keep `timeout` below
    /// [`response_timeout`](Self::response_timeout).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let config = eventloom_redis::RedisConfig::from_url("redis://127.0.0.1/")
    ///     .unwrap()
    ///     .wait_for_replicas(1, Duration::from_millis(100));
    /// assert!(format!("{config:?}").contains("wait_for_replicas: Some((1, 100ms))"));
    /// ```
    pub fn wait_for_replicas(mut self, replicas: u32, timeout: Duration) -> Self {
        self.wait_for_replicas = (replicas > 0).then_some((replicas, timeout));
        self
    }

    /// Trusts these root certificates (PEM, one or more) instead of the webpki roots, for a
    /// server whose certificate a private CA signed. Only for `rediss://` URLs.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use eventloom_redis::{RedisConfig, RedisViewStore};
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let ca = std::fs::read("/etc/redis/ca.crt")?;
    /// let config = RedisConfig::from_url("rediss://app:s3cret@redis.internal:6380/")?.tls_root_certificates(ca);
    /// let views = RedisViewStore::connect_with(config).await?;
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "tls")]
    pub fn tls_root_certificates(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.tls_roots = Some(pem.into());
        self
    }

    /// The key prefix.
    pub fn prefix_name(&self) -> &str {
        &self.prefix
    }

    /// Whether the URL asks for TLS (`rediss://`).
    pub fn is_tls(&self) -> bool {
        matches!(self.info.addr(), ConnectionAddr::TcpTls { .. })
    }

    /// `host:port` (or the socket path), or a cluster's node addresses comma-separated: what
    /// `Debug` output and logs show.
    pub(crate) fn address(&self) -> String {
        if self.nodes.is_empty() {
            return self.info.addr().to_string();
        }
        self.nodes.iter().map(|node| node.addr().to_string()).collect::<Vec<_>>().join(",")
    }

    /// Removes the password from a message, should a library quote it.
    pub(crate) fn redact(&self, message: String) -> String {
        match self.info.redis_settings().password() {
            Some(password) if !password.is_empty() => message.replace(password, "<redacted>"),
            _ => message,
        }
    }
}

/// Refuses prefixes with `{` or `}` (they would move the hash tag), control characters, or over
/// 256 bytes.
pub(crate) fn check_prefix(prefix: &str) -> Result<()> {
    if prefix.contains(['{', '}']) || prefix.chars().any(char::is_control) || prefix.len() > 256 {
        return Err(Error::Config(format!(
            "key prefix {:?} must be at most 256 bytes without braces or control characters",
            prefix.chars().take(80).collect::<String>()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_without_tls_support_are_refused_clearly() {
        let tls = RedisConfig::from_url("rediss://u:hunter2@127.0.0.1:6380/");
        if cfg!(feature = "tls") {
            let config = tls.unwrap();
            assert!(config.is_tls());
            assert!(!format!("{config:?}").contains("hunter2"));
        } else {
            assert!(tls.unwrap_err().to_string().contains("`tls` feature"));
        }
        let err = RedisConfig::from_url("redis://u:hunter2@127.0.0.1:notaport/").unwrap_err();
        assert!(!err.to_string().contains("hunter2"));
        assert!(!format!("{err:?}").contains("hunter2"));
    }

    #[test]
    fn cluster_nodes_must_agree() {
        let mixed = RedisConfig::cluster(["redis://u:a@127.0.0.1:7000", "redis://u:b@127.0.0.1:7001"]);
        let err = mixed.unwrap_err().to_string();
        assert!(err.contains("first one's scheme, user and password") && !err.contains(":a@"), "{err}");
        let config = RedisConfig::from_cluster_urls("redis://127.0.0.1:7000,,redis://127.0.0.1:7001,").unwrap();
        assert_eq!(config.address(), "127.0.0.1:7000,127.0.0.1:7001");
        assert!(!RedisConfig::from_url("redis://127.0.0.1:7000").unwrap().is_cluster());
    }

    #[test]
    fn messages_lose_the_password() {
        let config = RedisConfig::from_url("redis://u:hunter2@127.0.0.1:6379/").unwrap();
        assert_eq!(config.redact("AUTH u hunter2 failed".into()), "AUTH u <redacted> failed");
        assert_eq!(config.address(), "127.0.0.1:6379");
    }
}

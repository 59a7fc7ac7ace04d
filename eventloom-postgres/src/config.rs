//! Connection settings.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::{Error, Result};

/// The default largest event payload accepted: 1 MiB.
pub const DEFAULT_MAX_EVENT_SIZE: usize = 1 << 20;
/// The default number of pooled connections.
pub const DEFAULT_POOL_SIZE: usize = 16;

/// The connections of a store's pool, from
/// [`PgEventStore::pool_status`](crate::PgEventStore::pool_status).
///
/// # Examples
///
/// ```
/// use eventloom_postgres::PoolStatus;
///
/// fn busy(status: &PoolStatus) -> usize {
///     status.size - status.idle
/// }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolStatus {
    /// Connections open now, idle or in use.
    pub size: usize,
    /// Open connections that no statement uses now.
    pub idle: usize,
    /// The most connections the pool opens ([`PgConfig::pool_size`]).
    pub max_size: usize,
}

/// How to reach PostgreSQL and where the tables live.
///
/// Built from a URL (`postgres://user:password@host:port/db?sslmode=...`) or a `key=value`
/// connection string (`host=/run/postgresql dbname=app`), or, with the `interop` feature, a
/// `tokio_postgres::Config`. Its `Debug` output never shows the password.
///
/// # Examples
///
/// ```
/// use eventloom_postgres::PgConfig;
///
/// let config = PgConfig::from_url("postgres://ada:s3cret@127.0.0.1:5432/app")
///     .unwrap()
///     .schema("billing")
///     .unwrap()
///     .pool_size(32);
/// let shown = format!("{config:?}");
/// assert!(!shown.contains("s3cret"));
/// assert!(shown.contains("billing"));
/// assert!(PgConfig::from_url("mysql://nope").is_err());
/// ```
#[derive(Clone)]
pub struct PgConfig {
    pub(crate) pg: tokio_postgres::Config,
    pub(crate) schema: String,
    pub(crate) pool_size: usize,
    pub(crate) max_event_size: usize,
    pub(crate) tls: bool,
    /// Extra trusted root certificates (PEM), for servers with a private CA.
    pub(crate) tls_roots: Option<Vec<u8>>,
    /// A streaming replica of the server (a hot standby) for reads in order and stream loads.
    pub(crate) replica: Option<tokio_postgres::Config>,
    /// Write combining (see [`PgConfig::write_combining`]); `None`: off.
    pub(crate) combining: Option<Combining>,
}

/// The bounds of write combining ([`PgConfig::write_combining`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Combining {
    /// How many append statements (lone or combined) may be in flight at once; appends that
    /// arrive while they all are gather for the next one.
    pub(crate) in_flight: usize,
    /// At most this many appends in one combined statement.
    pub(crate) max_appends: usize,
    /// At most about this many bytes of events in one combined statement (one append larger
    /// than this goes alone).
    pub(crate) max_bytes: usize,
}

impl Default for Combining {
    fn default() -> Self {
        Combining { in_flight: 1, max_appends: 128, max_bytes: 1 << 20 }
    }
}

impl fmt::Debug for PgConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgConfig")
            .field("hosts", &hosts(&self.pg))
            .field("ports", &self.pg.get_ports())
            .field("user", &self.pg.get_user())
            .field("dbname", &self.pg.get_dbname())
            .field("password", &self.pg.get_password().map(|_| "<redacted>"))
            .field("schema", &self.schema)
            .field("pool_size", &self.pool_size)
            .field("max_event_size", &self.max_event_size)
            .field("tls", &self.tls)
            .field("tls_roots", &self.tls_roots.as_ref().map(|pem| pem.len()))
            .field("replica", &self.replica.as_ref().map(|r| (hosts(r), r.get_ports().to_vec())))
            .field("write_combining", &self.combining)
            .finish()
    }
}

/// The host names (or socket folders) of a connection's settings, for `Debug`.
fn hosts(pg: &tokio_postgres::Config) -> Vec<String> {
    pg.get_hosts()
        .iter()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            #[cfg(unix)]
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .collect()
}

/// Settings from a URL or connection string, with the keepalives and connect timeout every
/// connection of the stores has.
fn parse(url: &str, what: &str) -> Result<tokio_postgres::Config> {
    let mut pg = tokio_postgres::Config::from_str(url)
        .map_err(|_| Error::Config(format!("the {what} connection string does not parse")))?;
    hardened(&mut pg);
    Ok(pg)
}

fn hardened(pg: &mut tokio_postgres::Config) {
    // A half-open connection must not hold a projector's lease, or a LISTEN, for hours.
    pg.keepalives(true)
        .keepalives_idle(Duration::from_secs(10))
        .keepalives_interval(Duration::from_secs(5))
        .keepalives_retries(3);
    if pg.get_connect_timeout().is_none() {
        pg.connect_timeout(Duration::from_secs(10));
    }
}

/// Whether `name` can be a schema name as it is: lowercase ASCII letters, digits and `_`,
/// starting with a letter or `_`, at most 63 bytes.
fn valid_schema(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z' | b'_'))
        && name.len() <= 63
        && bytes.all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_'))
}

impl PgConfig {
    /// Settings from a `postgres://` URL or a `key=value` connection string.
    pub fn from_url(url: &str) -> Result<Self> {
        Ok(Self::from_tokio_postgres(parse(url, "PostgreSQL")?))
    }

    /// Settings from a `tokio_postgres::Config`.
    ///
    /// `tokio-postgres` is a pre-1.0 crate: this constructor comes with the `interop` feature,
    /// and follows the version of `tokio-postgres` that this crate depends on.
    ///
    /// # Examples
    ///
    /// ```
    /// use eventloom_postgres::PgConfig;
    ///
    /// let mut pg = tokio_postgres::Config::new();
    /// pg.host("localhost").user("ada").dbname("app");
    /// let config = PgConfig::from_config(pg).schema("billing").unwrap();
    /// assert_eq!(config.schema_name(), "billing");
    /// ```
    #[cfg(feature = "interop")]
    #[cfg_attr(docsrs, doc(cfg(feature = "interop")))]
    pub fn from_config(pg: tokio_postgres::Config) -> Self {
        Self::from_tokio_postgres(pg)
    }

    fn from_tokio_postgres(mut pg: tokio_postgres::Config) -> Self {
        hardened(&mut pg);
        let tls = matches!(pg.get_ssl_mode(), tokio_postgres::config::SslMode::Require);
        PgConfig {
            pg,
            schema: "cqrs".to_owned(),
            pool_size: DEFAULT_POOL_SIZE,
            max_event_size: DEFAULT_MAX_EVENT_SIZE,
            tls,
            tls_roots: None,
            replica: None,
            combining: None,
        }
    }

    /// Reads from a streaming replica of the server (a hot standby, made with `pg_basebackup -R`
    /// or by a managed service) at `url`: subscriptions and projections read the log there,
    /// `head`, `count_after` and `held_back` count there, and stream loads and snapshots are
    /// read there. Appends, command-id lookups, stream versions, snapshot writes, views, leases,
    /// migrations and the `LISTEN` for wake-ups stay on the primary. Without it (the default)
    /// everything goes to the primary. The replica gets a pool of the same size and the same
    /// TLS settings; its schema is the primary's (a replica is a copy).
    ///
    /// What a replica changes, and how the stores keep their promises on one, is in the
    /// guide's PostgreSQL chapter ("Reading from a replica").
    ///
    /// # Examples
    ///
    /// ```
    /// use eventloom_postgres::PgConfig;
    ///
    /// let config = PgConfig::from_url("postgres://app:s3cret@primary.internal/app")
    ///     .unwrap()
    ///     .read_replica("postgres://app:s3cret@replica.internal/app")
    ///     .unwrap();
    /// assert!(config.has_read_replica());
    /// assert!(!format!("{config:?}").contains("s3cret"));
    /// assert!(PgConfig::from_url("postgres://localhost/app").unwrap().read_replica("nope://").is_err());
    /// ```
    pub fn read_replica(mut self, url: &str) -> Result<Self> {
        self.replica = Some(parse(url, "read replica's")?);
        Ok(self)
    }

    /// Whether reads go to a replica ([`read_replica`](Self::read_replica)).
    pub fn has_read_replica(&self) -> bool {
        self.replica.is_some()
    }

    /// The schema that holds the tables (default `cqrs`): lowercase letters, digits and `_`.
    pub fn schema(mut self, name: impl Into<String>) -> Result<Self> {
        let name = name.into();
        if !valid_schema(&name) {
            return Err(Error::Config(format!(
                "schema name {:?} must be 1 to 63 lowercase letters, digits or '_', not starting with a digit",
                name.chars().take(80).collect::<String>()
            )));
        }
        self.schema = name;
        Ok(self)
    }

    /// How many pooled connections the store keeps (at least 1).
    pub fn pool_size(mut self, connections: usize) -> Self {
        self.pool_size = connections.max(1);
        self
    }

    /// Refuses events whose payload is larger than `bytes` with
    /// [`eventloom_core::Error::PayloadTooLarge`].
    pub fn max_event_size(mut self, bytes: usize) -> Self {
        self.max_event_size = bytes;
        self
    }

    /// Connects with TLS (rustls, webpki roots), as `sslmode=require` in the URL does.
    #[cfg(feature = "tls")]
    pub fn tls(mut self, on: bool) -> Self {
        self.tls = on;
        self
    }

    /// Connects with TLS and also trusts these root certificates (PEM), for a server whose
    /// certificate a private CA signed.
    #[cfg(feature = "tls")]
    pub fn tls_root_certificates(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.tls = true;
        self.tls_roots = Some(pem.into());
        self
    }

    /// Write combining (off by default): appends with an exact expected version (what the
    /// engine sends) that arrive while the store's append statements are all in flight gather,
    /// and go to the server together as one statement when one finishes, in one transaction with
    /// one commit. An append that finds a statement free goes at once, alone, as without
    /// combining: a lone command waits for nobody. Each append keeps its own answer: a conflict,
    /// a duplicate command id or an event the server refuses concerns only its own append. On a
    /// durable server, concurrent commands then share the cost of one flush of the WAL.
    ///
    /// Off by default because a combined transaction is bigger: it holds back subscribers (who
    /// read below the oldest running transaction) for as long as its statement runs, a little
    /// longer than a lone append would. The guide's PostgreSQL chapter ("Write combining") has
    /// the design and the figures. One statement is in flight at a time (see
    /// [`write_combining_in_flight`](Self::write_combining_in_flight)), with at most 128
    /// appends and about 1 MiB of events.
    ///
    /// # Examples
    ///
    /// ```
    /// use eventloom_postgres::PgConfig;
    ///
    /// let config = PgConfig::from_url("postgres://localhost/app").unwrap().write_combining(true);
    /// assert!(config.has_write_combining());
    /// assert!(!PgConfig::from_url("postgres://localhost/app").unwrap().has_write_combining());
    /// ```
    pub fn write_combining(mut self, on: bool) -> Self {
        self.combining = on.then(|| self.combining.unwrap_or_default());
        self
    }

    /// With [`write_combining`](Self::write_combining): how many append statements may be in
    /// flight at once (at least 1, default 1); appends that arrive while all are gather for the
    /// next. Fewer means bigger batches and fewer commits; more means less waiting behind a slow
    /// statement (one waiting for a row lock of another process's transaction). Turns write
    /// combining on.
    ///
    /// # Examples
    ///
    /// ```
    /// use eventloom_postgres::PgConfig;
    ///
    /// let config = PgConfig::from_url("postgres://localhost/app").unwrap().write_combining_in_flight(2);
    /// assert!(config.has_write_combining());
    /// ```
    pub fn write_combining_in_flight(mut self, statements: usize) -> Self {
        let mut combining = self.combining.unwrap_or_default();
        combining.in_flight = statements.max(1);
        self.combining = Some(combining);
        self
    }

    /// Whether write combining is on ([`write_combining`](Self::write_combining)).
    pub fn has_write_combining(&self) -> bool {
        self.combining.is_some()
    }

    /// The schema name.
    pub fn schema_name(&self) -> &str {
        &self.schema
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names() {
        for ok in ["cqrs", "_x", "a1_b2", &"a".repeat(63)] {
            assert!(valid_schema(ok), "{ok}");
        }
        for bad in ["", "1a", "A", "a-b", "a b", "a\"b", "a;drop", &"a".repeat(64), "é"] {
            assert!(!valid_schema(bad), "{bad}");
        }
    }

    #[test]
    fn debug_hides_the_password_and_errors_hide_the_url() {
        let c = PgConfig::from_url("postgres://u:hunter2@h/db").unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
        let e = PgConfig::from_url("postgres://u:hunter2@h:notaport/db").unwrap_err();
        assert!(!e.to_string().contains("hunter2"));
    }
}

//! Where the NATS server is and how to authenticate: [`NatsConfig`].

use std::path::PathBuf;
use std::time::Duration;

use crate::{Error, Result};

/// How to connect to a NATS server: its URL, TLS and credentials.
///
/// The URL is `nats://host:port` (plain, upgraded to TLS when the server asks for it),
/// `tls://host:port` (TLS required), and may carry `user:password@` (percent-encoded, taken out
/// of the URL and sent as credentials), or `token@`. Several servers of one
/// cluster are separated by commas. Credentials are one of: user and password (in the URL or
/// [`user_password`](NatsConfig::user_password)), a [`token`](NatsConfig::token), an
/// [`nkey` seed](NatsConfig::nkey_seed) or a [creds file](NatsConfig::creds_file) (a user JWT
/// and its seed). TLS trusts the [CA file](NatsConfig::ca_file) given, and presents a
/// [client certificate](NatsConfig::client_certificate) when the server verifies clients.
///
/// Its `Debug` output never shows a password, token or seed.
///
/// # Examples
///
/// ```
/// use eventloom_nats::NatsConfig;
///
/// let config = NatsConfig::new("tls://nats.internal:4222").unwrap()
///     .ca_file("/etc/nats/ca.pem")
///     .user_password("orders", "s3cret");
/// assert!(config.tls_required());
/// assert!(!format!("{config:?}").contains("s3cret"));
/// assert!(NatsConfig::new("http://nats:4222").is_err());
/// ```
#[derive(Clone)]
pub struct NatsConfig {
    url: String,
    user_password: Option<(String, String)>,
    token: Option<String>,
    nkey_seed: Option<String>,
    creds_file: Option<PathBuf>,
    ca_file: Option<PathBuf>,
    client_certificate: Option<(PathBuf, PathBuf)>,
    require_tls: bool,
    connect_timeout: Duration,
    request_timeout: Duration,
    name: Option<String>,
}

impl std::fmt::Debug for NatsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsConfig")
            .field("url", &redact(&self.url))
            .field("user", &self.user_password.as_ref().map(|(user, _)| user))
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("nkey_seed", &self.nkey_seed.as_ref().map(|_| "***"))
            .field("creds_file", &self.creds_file)
            .field("ca_file", &self.ca_file)
            .field("client_certificate", &self.client_certificate)
            .field("require_tls", &self.require_tls)
            .finish_non_exhaustive()
    }
}

/// The URL without the password of any `user:password@`, and without any `token@`.
fn redact(url: &str) -> String {
    url.split(',')
        .map(|one| match (one.find("://"), one.rfind('@')) {
            (Some(scheme), Some(at)) if at > scheme => match one[scheme + 3..at].split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &one[..scheme + 3], &one[at..]),
                // `token@host`: the whole user part is the secret.
                None => format!("{}***{}", &one[..scheme + 3], &one[at..]),
            },
            // Not a URL as it should be, but what comes before an `@` may still be a secret.
            (_, Some(at)) => format!("***{}", &one[at..]),
            _ => one.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

impl NatsConfig {
    /// A configuration for the server(s) at `url` (`nats://` or `tls://`, comma-separated for a
    /// cluster). A URL of another scheme, or without a host, is [`Error::Config`].
    pub fn new(url: impl Into<String>) -> Result<Self> {
        let url = url.into();
        let mut tls = false;
        for one in url.split(',') {
            let one = one.trim();
            let Some((scheme, rest)) = one.split_once("://") else {
                return Err(Error::Config(format!("NATS URL {} has no scheme (nats:// or tls://)", redact(one))));
            };
            match scheme {
                "nats" => {}
                "tls" => tls = true,
                other => return Err(Error::Config(format!("NATS URL scheme {other}:// is not nats:// or tls://"))),
            }
            let host = rest.rsplit('@').next().unwrap_or("");
            if host.is_empty() || host.starts_with(':') {
                return Err(Error::Config(format!("NATS URL {} has no host", redact(one))));
            }
        }
        // `user:password@` is taken out of the URL, percent-decoded (a password may hold any
        // character), and sent as credentials.
        let mut user_password = None;
        let mut token = None;
        let mut servers = Vec::new();
        for one in url.split(',') {
            let one = one.trim();
            match (one.find("://"), one.rfind('@')) {
                (Some(scheme), Some(at)) if at > scheme => {
                    let userinfo = &one[scheme + 3..at];
                    let decode = |s: &str| {
                        crate::headers::unescape_value(s).ok_or_else(|| {
                            Error::Config("the NATS URL's user or password is not percent-encoded UTF-8".into())
                        })
                    };
                    match userinfo.split_once(':') {
                        Some((user, password)) => user_password = Some((decode(user)?, decode(password)?)),
                        // `nats://token@host`, as NATS clients read it.
                        None => token = Some(decode(userinfo)?),
                    }
                    servers.push(format!("{}{}", &one[..scheme + 3], &one[at + 1..]));
                }
                _ => servers.push(one.to_owned()),
            }
        }
        let url = servers.join(",");
        Ok(NatsConfig {
            url,
            user_password,
            token,
            nkey_seed: None,
            creds_file: None,
            ca_file: None,
            client_certificate: None,
            require_tls: tls,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(5),
            name: None,
        })
    }

    /// A configuration from the `NATS_URL` environment variable; [`Error::Config`] when it is
    /// not set (the message says what to set or start).
    ///
    /// ```
    /// # unsafe { std::env::remove_var("NATS_URL") };
    /// assert!(eventloom_nats::NatsConfig::from_env().is_err());
    /// ```
    pub fn from_env() -> Result<Self> {
        match std::env::var("NATS_URL") {
            Ok(url) if !url.trim().is_empty() => NatsConfig::new(url.trim()),
            _ => Err(Error::Config(
                "NATS_URL is not set: point it at a nats-server started with -js (JetStream), e.g. nats://127.0.0.1:4222"
                    .into(),
            )),
        }
    }

    /// The URL, with any password hidden.
    pub fn url(&self) -> String {
        redact(&self.url)
    }

    /// Whether TLS is required (a `tls://` URL, or [`require_tls`](NatsConfig::require_tls)).
    pub fn tls_required(&self) -> bool {
        self.require_tls
    }

    /// Authenticates with a user and password (instead of any in the URL).
    pub fn user_password(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.user_password = Some((user.into(), password.into()));
        self
    }

    /// Authenticates with a token.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Authenticates with an nkey: the user's seed (`SU...`), which signs the server's nonce.
    pub fn nkey_seed(mut self, seed: impl Into<String>) -> Self {
        self.nkey_seed = Some(seed.into());
        self
    }

    /// Authenticates with a creds file (a user JWT and its nkey seed, as `nsc` writes them).
    pub fn creds_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.creds_file = Some(path.into());
        self
    }

    /// Trusts the CA certificates of this PEM file for the server's certificate (and turns TLS
    /// on).
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self.require_tls = true;
        self
    }

    /// Presents this client certificate and key (PEM files) to a server that verifies clients.
    pub fn client_certificate(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.client_certificate = Some((cert.into(), key.into()));
        self.require_tls = true;
        self
    }

    /// Requires TLS even with a `nats://` URL.
    pub fn require_tls(mut self, required: bool) -> Self {
        self.require_tls = required;
        self
    }

    /// How long connecting may take (default 5 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long a JetStream request (a publish's ack, a stream's info) may take (default 5 s).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// The connection's name, as the server's monitoring shows it.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The JetStream request timeout.
    pub(crate) fn request_timeout_value(&self) -> Duration {
        self.request_timeout
    }

    /// Connects: [`Error::Connect`] when the server cannot be reached (retrying may succeed),
    /// [`Error::ConnectRefused`] when it refuses the credentials or the TLS handshake fails
    /// (retrying will not help: the settings must change), [`Error::Config`] for a creds file
    /// or key that does not read. Once connected the client reconnects on its own after an
    /// outage, forever.
    pub async fn connect(&self) -> Result<async_nats::Client> {
        let mut options = async_nats::ConnectOptions::new()
            .connection_timeout(self.connect_timeout)
            .request_timeout(Some(self.request_timeout))
            .require_tls(self.require_tls)
            .retain_servers_order();
        if let Some(name) = &self.name {
            options = options.name(name);
        }
        if let Some((user, password)) = &self.user_password {
            options = options.user_and_password(user.clone(), password.clone());
        }
        if let Some(token) = &self.token {
            options = options.token(token.clone());
        }
        if let Some(seed) = &self.nkey_seed {
            // A seed that does not parse fails here with a clear error, not at the handshake.
            nkeys::KeyPair::from_seed(seed.trim())
                .map_err(|e| Error::Config(format!("the nkey seed does not parse: {e}")))?;
            options = options.nkey(seed.trim().to_owned());
        }
        if let Some(path) = &self.creds_file {
            options = options
                .credentials_file(path)
                .await
                .map_err(|e| Error::Config(format!("cannot read the creds file {}: {e}", path.display())))?;
        }
        for path in self.ca_file.iter().chain(self.client_certificate.iter().flat_map(|(c, k)| [c, k])) {
            if !path.is_file() {
                return Err(Error::Config(format!("TLS file {} does not exist", path.display())));
            }
        }
        if let Some(path) = &self.ca_file {
            options = options.add_root_certificates(path.clone());
        }
        if let Some((cert, key)) = &self.client_certificate {
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
        let servers: Vec<async_nats::ServerAddr> = self
            .url
            .split(',')
            .map(|one| one.trim().parse::<async_nats::ServerAddr>())
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| Error::Config(format!("NATS URL {} does not parse: {e}", redact(&self.url))))?;
        let span = tracing::info_span!("nats connect", url = %redact(&self.url));
        let _enter = span.enter();
        options.connect(servers).await.map_err(connect_error)
    }
}

/// Whether an I/O error of connecting is one of the TLS handshake (a `rustls` error inside
/// the I/O error, such as an alert the server sent).
fn is_tls_alert(error: &async_nats::ConnectError) -> bool {
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let tls = cause.downcast_ref::<async_nats::rustls::Error>().is_some()
            || cause
                .downcast_ref::<std::io::Error>()
                .and_then(std::io::Error::get_ref)
                .is_some_and(|inner| inner.downcast_ref::<async_nats::rustls::Error>().is_some());
        if tls {
            return true;
        }
        source = cause.source();
    }
    false
}

/// A failed connect, sorted: an outage is retried, a refusal (credentials, TLS) is not.
fn connect_error(error: async_nats::ConnectError) -> Error {
    use async_nats::ConnectErrorKind as Kind;
    match error.kind() {
        Kind::Authentication | Kind::AuthorizationViolation => Error::ConnectRefused(format!(
            "{error}: the server does not accept these credentials (user and password, token, nkey or creds file)"
        )),
        // A TLS alert the server sent (it refused the client's certificate, or the lack of one)
        // reaches the client as an I/O error of the handshake.
        Kind::Io if is_tls_alert(&error) => Error::ConnectRefused(format!(
            "{error}: the server refused the TLS handshake (does it ask for a client certificate, \
             signed by a CA it trusts?)"
        )),
        Kind::Tls => Error::ConnectRefused(format!(
            "{error}: the TLS handshake failed (is the server's certificate signed by the CA file given, \
             does the server ask for a client certificate, does it speak TLS at all?)"
        )),
        Kind::ServerParse => Error::Config(format!("{error}")),
        Kind::Dns | Kind::TimedOut | Kind::Io | Kind::MaxReconnects => Error::Connect(error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert!(NatsConfig::new("nats://127.0.0.1:4222").is_ok());
        assert!(NatsConfig::new("nats://a:1,nats://b:2").is_ok());
        assert!(NatsConfig::new("tls://a:1").unwrap().tls_required());
        for bad in ["", "127.0.0.1:4222", "redis://a:1", "nats://", "nats://:4222", "nats://u:p@"] {
            assert!(NatsConfig::new(bad).is_err(), "{bad:?}");
        }
        let config = NatsConfig::new("nats://ada:p%40w%20x@127.0.0.1:4222").unwrap();
        assert_eq!(config.url(), "nats://127.0.0.1:4222");
        assert_eq!(config.user_password, Some(("ada".into(), "p@w x".into())));
        assert!(!format!("{config:?}").contains("p@w"));
        assert_eq!(redact("nats://ada:pw@h:1"), "nats://ada:***@h:1");
        assert_eq!(redact("nats://s3cret-token@h:1,nats://h:2"), "nats://***@h:1,nats://h:2");
        let config = NatsConfig::new("nats://s3cret-token@127.0.0.1:4222").unwrap();
        assert_eq!(config.token.as_deref(), Some("s3cret-token"));
        assert!(!format!("{config:?}").contains("s3cret"));
        // A URL that does not parse is reported without its token.
        let error = NatsConfig::new("redis-ish s3cret-token@").unwrap_err();
        assert!(!error.to_string().contains("s3cret"), "{error}");
    }
}

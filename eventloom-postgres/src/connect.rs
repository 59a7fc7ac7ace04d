//! Connections: the pool, and dedicated connections for LISTEN and leases.

use std::future::poll_fn;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_postgres::types::{WasNull, WrongType};
use tokio_postgres::{AsyncMessage, Client, NoTls, Notification};

use crate::{Error, PgConfig, Result};

/// Makes connections with or without TLS.
#[derive(Clone)]
pub(crate) enum Connector {
    Plain,
    #[cfg(feature = "tls")]
    Tls(tokio_postgres_rustls::MakeRustlsConnect),
}

impl Connector {
    pub(crate) fn new(config: &PgConfig) -> Result<Self> {
        if !config.tls {
            return Ok(Connector::Plain);
        }
        #[cfg(feature = "tls")]
        {
            use rustls::pki_types::CertificateDer;
            use rustls::pki_types::pem::PemObject;
            let mut roots = rustls::RootCertStore::empty();
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            if let Some(pem) = &config.tls_roots {
                let mut added = 0;
                for cert in CertificateDer::pem_slice_iter(pem) {
                    let cert = cert.map_err(|e| Error::Config(format!("TLS root certificate: {e}")))?;
                    roots.add(cert).map_err(|e| Error::Config(format!("TLS root certificate: {e}")))?;
                    added += 1;
                }
                if added == 0 {
                    return Err(Error::Config("TLS root certificates: no certificate in the PEM given".into()));
                }
            }
            let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
            let tls = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| Error::Config(format!("TLS: {e}")))?
                .with_root_certificates(roots)
                .with_no_client_auth();
            Ok(Connector::Tls(tokio_postgres_rustls::MakeRustlsConnect::new(tls)))
        }
        #[cfg(not(feature = "tls"))]
        Err(Error::Config(
            "TLS was asked for (sslmode=require) but eventloom-postgres was built without its `tls` feature".into(),
        ))
    }

    /// A pool of connections to the server of `pg`, of the size `config` says.
    pub(crate) fn pool(&self, config: &PgConfig, pg: &tokio_postgres::Config) -> Result<Pool> {
        let manager_config = ManagerConfig { recycling_method: RecyclingMethod::Fast };
        let manager = match self {
            Connector::Plain => Manager::from_config(pg.clone(), NoTls, manager_config),
            #[cfg(feature = "tls")]
            Connector::Tls(tls) => Manager::from_config(pg.clone(), tls.clone(), manager_config),
        };
        // Last in, first out: the connection given back last is the next one handed out, so a
        // few callers keep to a few warm backends (and their CPU caches) instead of cycling
        // through every idle one; see docs/benchmarks.md, "CPU per command".
        Pool::builder(manager)
            .max_size(config.pool_size)
            .queue_mode(deadpool_postgres::QueueMode::Lifo)
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| Error::Config(format!("connection pool: {e}")))
    }

    /// A connection of its own (not pooled), with its notifications; the channel closes when
    /// the connection does.
    pub(crate) async fn dedicated(
        &self,
        config: &tokio_postgres::Config,
    ) -> Result<(Client, mpsc::Receiver<Notification>), tokio_postgres::Error> {
        match self {
            Connector::Plain => {
                let (client, connection) = config.connect(NoTls).await?;
                Ok((client, drive(connection)))
            }
            #[cfg(feature = "tls")]
            Connector::Tls(tls) => {
                let (client, connection) = config.connect(tls.clone()).await?;
                Ok((client, drive(connection)))
            }
        }
    }

    /// A connection of its own (not pooled) with every one of its notifications, for a
    /// listener whose notifications say different things (each names a projection) and that
    /// never blocks while taking them; the channel closes when the connection does.
    pub(crate) async fn dedicated_unbounded(
        &self,
        config: &tokio_postgres::Config,
    ) -> Result<(Client, mpsc::UnboundedReceiver<Notification>), tokio_postgres::Error> {
        match self {
            Connector::Plain => {
                let (client, connection) = config.connect(NoTls).await?;
                Ok((client, drive_unbounded(connection)))
            }
            #[cfg(feature = "tls")]
            Connector::Tls(tls) => {
                let (client, connection) = config.connect(tls.clone()).await?;
                Ok((client, drive_unbounded(connection)))
            }
        }
    }
}

/// As [`drive`], handing every notification over.
fn drive_unbounded<S, T>(mut connection: tokio_postgres::Connection<S, T>) -> mpsc::UnboundedReceiver<Notification>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            match poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(n))) => {
                    if tx.send(n).is_err() {
                        break;
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(error)) => {
                    tracing::warn!(%error, "dedicated PostgreSQL connection failed");
                    break;
                }
                None => break,
            }
        }
    });
    rx
}

/// Polls a connection on a task of its own, handing notifications over through a small
/// bounded channel (a wake-up that finds the channel full is redundant and dropped).
fn drive<S, T>(mut connection: tokio_postgres::Connection<S, T>) -> mpsc::Receiver<Notification>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        loop {
            match poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(n))) => {
                    let _ = tx.try_send(n);
                }
                Some(Ok(_)) => {}
                Some(Err(error)) => {
                    tracing::warn!(%error, "dedicated PostgreSQL connection failed");
                    break;
                }
                None => break,
            }
        }
    });
    rx
}

/// A pool or server error as the `eventloom-core` traits report it.
pub(crate) fn unavailable(error: impl std::error::Error + Send + Sync + 'static) -> eventloom_core::Error {
    eventloom_core::Error::unavailable(error)
}

/// A server error as the `eventloom-core` traits report it, with the server's message and SQLSTATE
/// (tokio-postgres alone says only "db error").
pub(crate) fn pg_error(error: tokio_postgres::Error) -> eventloom_core::Error {
    let Some(db) = error.as_db_error() else {
        // A column read back with another type than the store wrote, or a NULL where it wrote
        // none: the schema was changed under the store. Retrying reads the same row.
        let decode = std::error::Error::source(&error).is_some_and(|s| s.is::<WrongType>() || s.is::<WasNull>());
        // (A parameter this crate sent with the wrong type fails the same way, but on the way
        // out: a bug here, not corrupt data.)
        if decode && error.to_string().starts_with("error serializing") {
            return eventloom_core::Error::Backend { message: error.to_string(), source: Some(Box::new(error)) };
        }
        if decode {
            return eventloom_core::Error::Corrupt {
                location: "a row read from PostgreSQL".into(),
                reason: error.to_string(),
            };
        }
        return eventloom_core::Error::Unavailable { message: error.to_string(), source: Some(Box::new(error)) };
    };
    let code = db.code().code();
    let message = format!("PostgreSQL {}: {} ({code})", db.severity(), db.message());
    // Connection trouble, a server shutting down, too many connections, serialization failures
    // and deadlocks pass; anything else (a missing table, a permission) needs a person.
    let transient = code.starts_with("08")
        || code.starts_with("53")
        || code.starts_with("57P")
        || code == "40001"
        || code == "40P01";
    if transient {
        eventloom_core::Error::Unavailable { message, source: Some(Box::new(error)) }
    } else {
        eventloom_core::Error::Backend { message, source: Some(Box::new(error)) }
    }
}

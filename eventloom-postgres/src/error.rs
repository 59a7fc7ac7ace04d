//! The crate's error type.

/// A `Result` whose error defaults to this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong while configuring, connecting to or migrating PostgreSQL.
///
/// Once connected, the stores implement the `eventloom-core` traits and return
/// [`eventloom_core::Error`]; [`Error::Store`] carries one where this crate's API returns it.
///
/// # Examples
///
/// ```
/// use eventloom_postgres::{Error, PgConfig};
///
/// let err = PgConfig::from_url("postgres://ada:secret@localhost/db").unwrap().schema("no spaces").unwrap_err();
/// assert!(matches!(err, Error::Config(_)));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value that cannot work (a URL that does not parse, a bad schema name).
    /// The message never repeats credentials.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The server could not be reached or refused the connection.
    #[error("cannot connect to PostgreSQL: {0}")]
    Connect(String),
    /// Applying the migrations failed; nothing of the failed step was applied.
    #[error("migration {version} failed: {source}")]
    Migration {
        /// The migration that failed.
        version: u32,
        /// The server's error, with its message and SQLSTATE.
        #[source]
        source: Box<eventloom_core::Error>,
    },
    /// The schema already holds a table these crates did not make (another tool's
    /// `migrations`, say), which migrating would mix up with theirs: choose another schema
    /// ([`PgConfig::schema`](crate::PgConfig::schema)). Nothing was changed.
    #[error(
        "{table} is not the table eventloom-postgres makes ({reason}): choose another schema with PgConfig::schema"
    )]
    ForeignTable {
        /// The table, schema-qualified.
        table: String,
        /// What differs.
        reason: String,
    },
    /// An error from the store, as the `eventloom-core` traits report it.
    #[error(transparent)]
    Store(#[from] eventloom_core::Error),
}

impl Error {
    /// What kind of failure this is (see [`ErrorKind`](eventloom_core::ErrorKind)): a bad
    /// configuration is invalid input, a refused connection is unavailable, a failed migration
    /// or a foreign table is internal (someone has to look).
    ///
    /// # Examples
    ///
    /// ```
    /// use eventloom_core::ErrorKind;
    ///
    /// let err = eventloom_postgres::Error::Connect("refused".into());
    /// assert_eq!(err.kind(), ErrorKind::Unavailable);
    /// ```
    pub fn kind(&self) -> eventloom_core::ErrorKind {
        use eventloom_core::ErrorKind;
        match self {
            Error::Config(_) => ErrorKind::InvalidInput,
            Error::Connect(_) => ErrorKind::Unavailable,
            Error::Migration { .. } | Error::ForeignTable { .. } => ErrorKind::Internal,
            Error::Store(error) => error.kind(),
        }
    }

    /// Migration `version` failed with the server's `error`.
    pub(crate) fn migration(version: u32, error: tokio_postgres::Error) -> Self {
        Error::Migration { version, source: Box::new(crate::connect::pg_error(error)) }
    }
}

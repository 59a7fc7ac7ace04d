//! The crate's error type, and the exit status each kind of failure gets.

use std::process::ExitCode;

/// A `Result` whose error defaults to this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why an admin command failed. Each is one line on stderr and an exit status by its kind
/// ([`exit_code`](Self::exit_code)): 2 for a command line that cannot work, 3 for something
/// named that does not exist, 4 for a schema not migrated, 5 for a server that cannot be
/// reached, 1 for anything else.
///
/// # Examples
///
/// ```
/// use eventloom_admin::Error;
///
/// let e = Error::NotFound { what: "projection", name: "tasks".into() };
/// assert_eq!(e.to_string(), "no projection tasks");
/// assert_eq!(e.status(), 3);
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The command line cannot work: a missing URL, a bad position, options that exclude each
    /// other, a command that needs the application's code in the standalone binary.
    #[error("{0}")]
    Usage(String),
    /// A stream, projection or dead letter named on the command line does not exist.
    #[error("no {what} {name}")]
    NotFound {
        /// What was looked for: `stream`, `projection`, `dead letter`.
        what: &'static str,
        /// Its name.
        name: String,
    },
    /// The schema has never been migrated (or is another one than meant).
    #[error("schema {schema} is not migrated (no eventloom tables there): run `{program} migrate`, or check --schema")]
    NotMigrated {
        /// The schema.
        schema: String,
        /// How to run the admin commands, for the hint.
        program: String,
    },
    /// A server cannot be reached or refused the connection.
    #[error("{0}")]
    Unavailable(String),
    /// Anything else the stores or the application reported.
    #[error("{0}")]
    Failed(String),
    /// Stdout was closed (`| head`): the command stopped early, quietly, with status 0.
    #[error("stdout was closed")]
    Closed,
}

impl Error {
    /// The exit status of this failure (see [`Error`]).
    pub fn status(&self) -> u8 {
        match self {
            Error::Usage(_) => 2,
            Error::NotFound { .. } => 3,
            Error::NotMigrated { .. } => 4,
            Error::Unavailable(_) => 5,
            Error::Failed(_) => 1,
            Error::Closed => 0,
        }
    }

    /// The process's exit code for this failure.
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(self.status())
    }
}

impl From<eventloom_core::Error> for Error {
    fn from(error: eventloom_core::Error) -> Self {
        use eventloom_core::{Error as Core, ErrorKind};
        match (&error, error.kind()) {
            (Core::NotRegistered { kind, name }, _) => Error::NotFound { what: kind, name: name.clone() },
            (Core::UnknownProjection { name }, _) => Error::NotFound { what: "projection", name: name.clone() },
            (Core::UnknownStream { stream }, _) => Error::NotFound { what: "stream", name: stream.to_string() },
            (_, ErrorKind::Unavailable) => Error::Unavailable(error.to_string()),
            (_, ErrorKind::InvalidInput) => Error::Usage(error.to_string()),
            _ => Error::Failed(error.to_string()),
        }
    }
}

impl From<eventloom_postgres::Error> for Error {
    fn from(error: eventloom_postgres::Error) -> Self {
        use eventloom_core::ErrorKind;
        let message = format!("PostgreSQL: {error}");
        match error.kind() {
            ErrorKind::InvalidInput => Error::Usage(message),
            ErrorKind::Unavailable => Error::Unavailable(message),
            _ => Error::Failed(message),
        }
    }
}

impl From<eventloom_redis::Error> for Error {
    fn from(error: eventloom_redis::Error) -> Self {
        use eventloom_core::ErrorKind;
        let message = format!("Redis: {error}");
        match error.kind() {
            ErrorKind::InvalidInput => Error::Usage(message),
            ErrorKind::Unavailable => Error::Unavailable(message),
            _ => Error::Failed(message),
        }
    }
}

//! The command line: the options that name the stores, and one subcommand per job.

use clap::{Args, Parser, Subcommand};

/// The admin commands, with the options that name the stores: what an application mounts as a
/// subcommand of its own command line (see [`Admin`](crate::Admin)), and what the
/// `eventloom-admin` binary parses.
///
/// # Examples
///
/// ```
/// use clap::Parser;
/// use eventloom_admin::{AdminArgs, Command};
///
/// let args = AdminArgs::try_parse_from(["eventloom-admin", "--database-url", "postgres://db/app", "streams", "task"]).unwrap();
/// assert!(matches!(args.command, Command::Streams { ref category, .. } if category == "task"));
/// ```
#[derive(Debug, Clone, Parser)]
#[command(
    name = "eventloom-admin",
    about = "Operate an eventloom application's stores: schema, log, projections, dead letters.",
    long_about = None,
    version
)]
#[non_exhaustive]
pub struct AdminArgs {
    /// Where the stores are.
    #[command(flatten)]
    pub stores: StoreArgs,
    /// Print JSON (one document, or one line per event or progress step) instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The stores, by URL: events, leases and (without Redis) views on PostgreSQL; views on Redis
/// when a Redis URL is given.
///
/// # Examples
///
/// ```
/// use clap::Parser;
/// use eventloom_admin::AdminArgs;
///
/// let args = AdminArgs::try_parse_from(["eventloom-admin", "schema", "--schema", "billing"]).unwrap();
/// assert_eq!(args.stores.schema.as_deref(), Some("billing"), "global: after the command too");
/// ```
#[derive(Debug, Clone, Default, Args)]
#[non_exhaustive]
pub struct StoreArgs {
    /// The PostgreSQL of the events (`postgres://user:password@host:port/database`).
    #[arg(long, global = true, env = "DATABASE_URL", hide_env_values = true, value_name = "URL")]
    pub database_url: Option<String>,
    /// The Redis of the views, if they are there (a cluster: its nodes' URLs, comma-separated).
    #[arg(long, global = true, env = "REDIS_URL", hide_env_values = true, value_name = "URL")]
    pub redis_url: Option<String>,
    /// The PostgreSQL schema of the tables (default: the application's, else the URL's, else `public`).
    #[arg(long, global = true, env = "EVENTLOOM_SCHEMA", value_name = "NAME")]
    pub schema: Option<String>,
    /// The prefix of every Redis key (default: the application's, else `eventloom:`).
    #[arg(long, global = true, env = "EVENTLOOM_REDIS_PREFIX", value_name = "PREFIX")]
    pub redis_prefix: Option<String>,
}

/// One admin job.
///
/// # Examples
///
/// ```
/// use clap::Parser;
/// use eventloom_admin::{AdminArgs, Command};
///
/// let args = AdminArgs::try_parse_from(["eventloom-admin", "events", "task/t-1", "--as-of-version", "3"]).unwrap();
/// assert!(matches!(args.command, Command::Events { as_of_version: Some(3), .. }));
/// ```
#[derive(Debug, Clone, Subcommand)]
#[non_exhaustive]
pub enum Command {
    /// Create or upgrade the schema (applies the migrations this build knows).
    Migrate,
    /// Show the migrations applied to the schema and those still to apply.
    Schema,
    /// List the categories (aggregate types) that have streams.
    Categories,
    /// List the streams of a category, with their versions.
    Streams {
        /// The category (an aggregate's type).
        category: String,
        /// Start after this stream id.
        #[arg(long, default_value = "", value_name = "ID")]
        after: String,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Show a stream's events with their metadata, as of a version or a time.
    Events {
        /// The stream, `category/id`.
        stream: String,
        /// Only the first N events (the stream as it was at version N).
        #[arg(long, value_name = "N", conflicts_with = "as_of_time")]
        as_of_version: Option<u64>,
        /// Only the events recorded at or before this time: RFC 3339 (`2026-12-01T09:30:00Z`) or
        /// microseconds since the epoch.
        #[arg(long, value_name = "TIME")]
        as_of_time: Option<String>,
        /// At most this many events.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
    /// Show an aggregate's state as of a version or a time: its stream's first events folded
    /// as the application folds them (application's binary only, for aggregates it registers
    /// as inspectable).
    State {
        /// The aggregate's stream, `category/id`.
        stream: String,
        /// After the first N events.
        #[arg(long, value_name = "N", conflicts_with = "as_of_time")]
        as_of_version: Option<u64>,
        /// After the events recorded at or before this time: RFC 3339 (`2026-12-01T09:30:00Z`)
        /// or microseconds since the epoch.
        #[arg(long, value_name = "TIME")]
        as_of_time: Option<String>,
    },
    /// Print events as they are appended, until Ctrl-C or SIGTERM.
    Follow {
        /// Where to start: `head` (only new events), `start` (the whole log), or a position.
        #[arg(long, default_value = "head", value_name = "POSITION")]
        from: String,
    },
    /// List the projections with their status, lag, leader and dead letters.
    Projections,
    /// Show one projection in detail, with its dead letters.
    Projection {
        /// The projection's name.
        name: String,
    },
    /// Rebuild a projection behind its live views and switch when caught up (application's
    /// binary only).
    Rebuild {
        /// The projection's name.
        name: String,
    },
    /// Rebuild a projection from a position on: the events up to it are not applied
    /// (application's binary only).
    Reset {
        /// The projection's name.
        name: String,
        /// The position after which the new views start.
        #[arg(long, value_name = "POSITION")]
        to: String,
    },
    /// List, retry, skip or purge a projection's dead letters.
    #[command(subcommand)]
    DeadLetters(DeadLetterCommand),
    /// Show what holds the subscriptions' horizon back (a long transaction, a prepared one).
    Horizon,
}

/// What to do with dead letters.
///
/// # Examples
///
/// ```
/// use clap::Parser;
/// use eventloom_admin::{AdminArgs, Command, DeadLetterCommand};
///
/// let args = AdminArgs::try_parse_from(["eventloom-admin", "dead-letters", "skip", "tasks", "--at", "7.1", "8.2"]).unwrap();
/// let Command::DeadLetters(DeadLetterCommand::Skip(selection)) = args.command else { panic!() };
/// assert_eq!(selection.at, ["7.1", "8.2"]);
/// ```
#[derive(Debug, Clone, Subcommand)]
#[non_exhaustive]
pub enum DeadLetterCommand {
    /// List them.
    List {
        /// The projection.
        name: String,
    },
    /// Apply them again (application's binary only): those that succeed leave the list.
    Retry(Selection),
    /// Remove the given ones without applying them.
    Skip(Selection),
    /// Remove them all without applying them.
    Purge {
        /// The projection.
        name: String,
    },
}

/// A projection's dead letters: those at the given positions, or all.
///
/// # Examples
///
/// ```
/// use clap::Parser;
/// use eventloom_admin::{AdminArgs, Command, DeadLetterCommand};
///
/// let args = AdminArgs::try_parse_from(["eventloom-admin", "dead-letters", "retry", "tasks"]).unwrap();
/// let Command::DeadLetters(DeadLetterCommand::Retry(selection)) = args.command else { panic!() };
/// assert!(selection.at.is_empty(), "all of them");
/// ```
#[derive(Debug, Clone, Args)]
#[non_exhaustive]
pub struct Selection {
    /// The projection.
    pub name: String,
    /// The dead letters of the events at these positions (default: all).
    #[arg(long = "at", value_name = "POSITION", num_args = 1..)]
    pub at: Vec<String>,
}

/// How a reading command prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Output {
    /// Tables for people.
    Human,
    /// JSON for scripts.
    Json,
}

impl AdminArgs {
    pub(crate) fn output(&self) -> Output {
        if self.json { Output::Json } else { Output::Human }
    }
}

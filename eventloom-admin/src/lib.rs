//! Admin commands for eventloom applications on PostgreSQL (and Redis views): migrate and show
//! the schema, list categories and streams, show a stream's events as of a version or a time,
//! follow the log live, show projections with their lag, leader and dead letters, rebuild or
//! reset a projection with a progress bar, retry, skip or purge dead letters, and show what
//! holds the subscriptions' horizon back.
//!
//! Two ways to run them:
//!
//! - the `eventloom-admin` binary, for what needs no code of the application (everything but
//!   rebuilding, resetting and retrying dead letters, which run its projections);
//! - mounted in the application's own binary ([`Admin::mounted`]), with the application's
//!   [`AppBuilder`], so that every command runs with its
//!   projections and upcasters.
//!
//! Every reading command prints a table, or JSON with `--json`. A failure is one line on
//! stderr and an exit status by its kind (see [`Error`]): 2 for the command line, 3 for a
//! stream or projection that does not exist, 4 for a schema not migrated, 5 for a server that
//! cannot be reached, 1 otherwise.
//!
//! # Examples
//!
//! An application's `main` hands `myapp admin ...` to the admin commands:
//!
//! ```no_run
//! use eventloom_core::{App, Stores};
//!
//! fn builder(stores: Stores) -> eventloom_core::app::AppBuilder {
//!     App::builder(stores) // .aggregate::<Task>().projection(Tasks)
//! }
//!
//! fn main() -> std::process::ExitCode {
//!     let mut args = std::env::args_os();
//!     let program = args.next();
//!     let rest: Vec<_> = args.collect();
//!     if rest.first().is_some_and(|a| a == "admin") {
//!         let admin = eventloom_admin::Admin::mounted("myapp admin", builder).default_schema("myapp");
//!         return admin.main(rest);
//!     }
//!     // ... the application itself
//! #   let _ = program;
//!     std::process::ExitCode::SUCCESS
//! }
//! ```

mod cli;
mod connect;
mod error;
mod jobs;
mod render;
mod time;

use std::ffi::OsString;
use std::process::ExitCode;

use eventloom_core::Stores;
use eventloom_core::app::{AppBuilder, Operations};
use eventloom_core::store::DeadLetterSelection;

pub use cli::{AdminArgs, Command, DeadLetterCommand, Selection, StoreArgs};
pub use error::{Error, Result};

use crate::connect::{Defaults, Needs, Target};
use crate::jobs::{app, dead_letters, follow, horizon, log, projections, schema};

/// How an application builds its [`AppBuilder`] on the stores the command line names.
type Builder = Box<dyn Fn(Stores) -> AppBuilder + Send + Sync>;

/// The admin commands: standalone ([`standalone`](Self::standalone)), or mounted in an
/// application's binary with its [`AppBuilder`] ([`mounted`](Self::mounted)).
///
/// # Examples
///
/// ```
/// use eventloom_admin::Admin;
///
/// let admin = Admin::standalone();
/// let usage = admin.main(["eventloom-admin", "--no-such-option"]);
/// assert_eq!(usage, std::process::ExitCode::from(2));
/// ```
pub struct Admin {
    program: String,
    defaults: Defaults,
    builder: Option<Builder>,
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin")
            .field("program", &self.program)
            .field("defaults", &self.defaults)
            .field("mounted", &self.builder.is_some())
            .finish()
    }
}

impl Admin {
    /// The commands that need no application code (the `eventloom-admin` binary).
    pub fn standalone() -> Self {
        Admin { program: "eventloom-admin".to_owned(), defaults: Defaults::default(), builder: None }
    }

    /// Every command, the application's own among them: `builder` makes the application's
    /// [`AppBuilder`] (its aggregates, projections, upcasters) on the stores the command line
    /// names, which are then used without starting anything. `program` is how users call the
    /// commands (`myapp admin`), for help and hints.
    pub fn mounted(program: impl Into<String>, builder: impl Fn(Stores) -> AppBuilder + Send + Sync + 'static) -> Self {
        Admin { program: program.into(), defaults: Defaults::default(), builder: Some(Box::new(builder)) }
    }

    /// The PostgreSQL schema used when neither `--schema` nor `EVENTLOOM_SCHEMA` names one:
    /// the application's.
    pub fn default_schema(mut self, schema: impl Into<String>) -> Self {
        self.defaults.schema = Some(schema.into());
        self
    }

    /// The Redis key prefix used when neither `--redis-prefix` nor `EVENTLOOM_REDIS_PREFIX`
    /// names one: the application's.
    pub fn default_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.defaults.prefix = Some(prefix.into());
        self
    }

    /// Parses `args` (the first is the program's name, as in `std::env::args_os`), runs the
    /// command on a runtime of its own and prints what it failed with: the process's exit
    /// code. Help and version print to stdout and exit 0; a command line that does not parse
    /// exits 2.
    pub fn main<I, T>(&self, args: I) -> ExitCode
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let mut args: Vec<OsString> = args.into_iter().map(Into::into).collect();
        if let Some(first) = args.first_mut() {
            *first = self.program.clone().into();
        }
        // Once per process: clap names commands with static strings.
        let program: &'static str = Box::leak(self.program.clone().into_boxed_str());
        let command = <AdminArgs as clap::CommandFactory>::command().name(program).bin_name(program);
        let parsed = command
            .try_get_matches_from(args)
            .and_then(|matches| <AdminArgs as clap::FromArgMatches>::from_arg_matches(&matches));
        let parsed = match parsed {
            Ok(parsed) => parsed,
            Err(error) => {
                let code = if error.use_stderr() { 2 } else { 0 };
                let _ = error.print();
                return ExitCode::from(code);
            }
        };
        let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
            Ok(runtime) => runtime,
            Err(error) => {
                eprintln!("{}: cannot start the async runtime: {error}", self.program);
                return ExitCode::FAILURE;
            }
        };
        match runtime.block_on(self.run(parsed)) {
            Ok(()) | Err(Error::Closed) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("{}: {error}", self.program);
                error.exit_code()
            }
        }
    }

    /// Runs one parsed command (for an application that parses its command line itself, with
    /// [`AdminArgs`] as one of its subcommands).
    pub async fn run(&self, args: AdminArgs) -> Result<()> {
        let output = args.output();
        // The leases this process takes (rebuilds, dead letters) name it as the admin.
        eventloom_core::store::LeaseHolder::set_process_role("admin");
        if self.builder.is_none() {
            match &args.command {
                Command::Rebuild { .. } => return Err(self.needs_app("rebuild")),
                Command::State { .. } => return Err(self.needs_app("state")),
                Command::Reset { .. } => return Err(self.needs_app("reset")),
                Command::DeadLetters(DeadLetterCommand::Retry(_)) => return Err(self.needs_app("dead-letters retry")),
                _ => {}
            }
        }
        let needs = match &args.command {
            Command::Migrate
            | Command::Schema
            | Command::Categories
            | Command::Streams { .. }
            | Command::Events { .. }
            | Command::State { .. }
            | Command::Follow { .. }
            | Command::Horizon => Needs::Events,
            _ => Needs::Views,
        };
        let target = Target::connect(&args.stores, &self.defaults, needs).await?;
        if !matches!(args.command, Command::Migrate | Command::Schema) {
            target.ensure_migrated(&self.program).await?;
        }
        let ops = match (&self.builder, &args.command) {
            (
                Some(build),
                Command::Projections | Command::Events { .. } | Command::State { .. } | Command::Rebuild { .. },
            )
            | (Some(build), Command::Reset { .. } | Command::DeadLetters(_)) => {
                Some(build(target.stores.clone()).operations()?)
            }
            _ => None,
        };
        match &args.command {
            Command::Migrate => schema::migrate(&target, output).await,
            Command::Schema => schema::schema(&target, output).await,
            Command::Categories => log::categories(&target, output).await,
            Command::Streams { category, after, limit } => log::streams(&target, category, after, *limit, output).await,
            Command::Events { stream, as_of_version, as_of_time, limit } => {
                let stream = log::stream_id(stream)?;
                let as_of = log::as_of(*as_of_version, as_of_time.as_deref())?;
                log::ensure_stream(&target, &stream).await?;
                let rows = match &ops {
                    Some(ops) => app::events(ops, &stream, as_of, *limit).await?,
                    None => log::stored_events(&target, &stream, as_of, *limit).await?,
                };
                log::print_events(&rows, &stream, output)
            }
            Command::State { stream, as_of_version, as_of_time } => {
                let stream = log::stream_id(stream)?;
                let as_of = log::as_of(*as_of_version, as_of_time.as_deref())?;
                app::state(self.ops(&ops)?, &stream, as_of, output).await
            }
            Command::Follow { from } => follow::follow(&target, from, output).await,
            Command::Projections => {
                let registered: Vec<String> =
                    ops.iter().flat_map(|ops| ops.projections()).map(|info| info.name).collect();
                projections::list(&target, &registered, output).await
            }
            Command::Projection { name } => projections::projection(&target, name, output).await,
            Command::Rebuild { name } => app::rebuild(self.ops(&ops)?, name, None, output).await,
            Command::Reset { name, to } => {
                let to =
                    to.parse().map_err(|_| Error::Usage(format!("--to takes a position like 7.42, not {to:?}")))?;
                app::rebuild(self.ops(&ops)?, name, Some(to), output).await
            }
            Command::DeadLetters(DeadLetterCommand::List { name }) => {
                projections::list_dead_letters(&target, name, output).await
            }
            Command::DeadLetters(DeadLetterCommand::Retry(Selection { name, at })) => {
                app::retry(self.ops(&ops)?, name, &dead_letters::selection(at)?, output).await
            }
            Command::DeadLetters(DeadLetterCommand::Skip(Selection { name, at })) => {
                if at.is_empty() {
                    return Err(Error::Usage(
                        "skip removes the dead letters --at the positions given; purge removes them all".to_owned(),
                    ));
                }
                let which = dead_letters::selection(at)?;
                match &ops {
                    Some(ops) => {
                        dead_letters::ensure_letters(&target, Some(ops), name, &which).await?;
                        app::skip(ops, name, &which, output).await
                    }
                    None => dead_letters::remove(&target, name, which, output).await,
                }
            }
            Command::DeadLetters(DeadLetterCommand::Purge { name }) => match &ops {
                Some(ops) => app::skip(ops, name, &DeadLetterSelection::All, output).await,
                None => dead_letters::remove(&target, name, DeadLetterSelection::All, output).await,
            },
            Command::Horizon => horizon::horizon(&target, output).await,
        }
    }

    /// The application's operations, for a command that needs them.
    fn ops<'a>(&self, ops: &'a Option<Operations>) -> Result<&'a Operations> {
        ops.as_ref().ok_or_else(|| self.needs_app("this command"))
    }

    /// A command that runs the application's code, asked of the standalone binary.
    fn needs_app(&self, command: &str) -> Error {
        Error::Usage(format!(
            "{command} runs the application's code (its projections or aggregates): run it from the \
             application's binary (mounted admin commands), not {}",
            self.program
        ))
    }
}

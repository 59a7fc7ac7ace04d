//! A task manager whose commands, queries and projector scale independently: the framework's
//! main example, over HTTP.
//!
//! Run with `cargo run -p task-manager`: every role in one process, on memory stores, at
//! <http://127.0.0.1:8080>. With PostgreSQL and Redis (each role its own process):
//!
//! ```text
//! export DATABASE_URL=postgres://... REDIS_URL=redis://...
//! cargo run -p task-manager --features postgres,redis -- --role projector
//! cargo run -p task-manager --features postgres,redis -- --role command --addr 127.0.0.1:8081
//! cargo run -p task-manager --features postgres,redis -- --role query --addr 127.0.0.1:8082
//! ```
//!
//! The admin commands, with this app's projections (feature `postgres`):
//!
//! ```text
//! cargo run -p task-manager --features postgres,redis -- admin projections
//! cargo run -p task-manager --features postgres,redis -- admin rebuild tasks
//! ```
//!
//! See `README.md` for the API.

mod api;
mod app;
mod cli;
mod domain;
mod metrics;
mod projection;
mod shutdown;
mod telemetry;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args = std::env::args_os().skip(1).map(|arg| arg.to_string_lossy().into_owned());
    let args = match cli::parse(args) {
        Ok(cli::Parsed::Run(args)) => args,
        Ok(cli::Parsed::Help) => {
            print!("{}", cli::USAGE);
            return ExitCode::SUCCESS;
        }
        Ok(cli::Parsed::Admin(args)) => return admin(args),
        Err(error) => {
            eprintln!("task-manager: {error}\n\n{}", cli::USAGE);
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("task-manager: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let telemetry = telemetry::init(&runtime, args.role);
    let code = match runtime.block_on(app::run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "task-manager stopped");
            eprintln!("task-manager: {error}");
            ExitCode::FAILURE
        }
    };
    // The spans of the last requests and batches, exported before the runtime stops.
    telemetry.shutdown();
    code
}

/// `task-manager admin ...`: the admin commands of `eventloom-admin`, on this app's stores
/// (`TASK_MANAGER_SCHEMA`, `TASK_MANAGER_PREFIX` as the roles use them) with its projections.
#[cfg(feature = "postgres")]
fn admin(args: Vec<String>) -> ExitCode {
    let partitions = match app::partitions_from_env() {
        Ok(partitions) => partitions,
        Err(error) => {
            eprintln!("task-manager admin: {error}");
            return ExitCode::from(2);
        }
    };
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let admin = eventloom_admin::Admin::mounted("task-manager admin", move |stores| app::builder(stores, partitions))
        .default_schema(var("TASK_MANAGER_SCHEMA").unwrap_or_else(|| app::DEFAULT_SCHEMA.to_owned()))
        .default_prefix(var("TASK_MANAGER_PREFIX").unwrap_or_else(|| app::DEFAULT_PREFIX.to_owned()));
    admin.main(std::iter::once("task-manager admin".to_owned()).chain(args))
}

/// Without the `postgres` feature there are no stores to administer.
#[cfg(not(feature = "postgres"))]
fn admin(_: Vec<String>) -> ExitCode {
    eprintln!(
        "task-manager: the admin commands need a binary built with `--features postgres` (and `redis` for Redis views)"
    );
    ExitCode::from(2)
}

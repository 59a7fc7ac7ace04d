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

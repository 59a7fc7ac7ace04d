//! The admin commands that need no application code: migrate, inspect and follow the log,
//! projections' status, dead letters, the horizon.
//!
//! Run with `eventloom-admin --database-url postgres://... <command>` (`--help` lists them).

use std::process::ExitCode;

fn main() -> ExitCode {
    eventloom_admin::Admin::standalone().main(std::env::args_os())
}

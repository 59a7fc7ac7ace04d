//! The `eventloom-admin` binary, run as a child process against the PostgreSQL and Redis of
//! the environment (`DATABASE_URL`, `REDIS_URL`), each test in a schema (and key prefix) of its
//! own.
#![allow(clippy::unwrap_used)]

mod support;

mod errors;
mod horizon;
mod log;
mod projections;
mod schema;

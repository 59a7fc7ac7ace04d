//! End-to-end tests of the `task-manager` binary over HTTP: one process on memory stores, and
//! (with the `postgres` and `redis` features) separate command, query and projector processes
//! on PostgreSQL and Redis.
#![allow(clippy::unwrap_used, missing_docs)]

mod client;
#[cfg(all(feature = "postgres", feature = "redis"))]
mod distributed;
mod memory;
mod scenarios;
mod server;

//! End-to-end tests of the `task-manager` binary over HTTP: one process on memory stores, and
//! (with the `postgres` and `redis` features) separate command, query and projector processes
//! on PostgreSQL and Redis, and scaled out on a PostgreSQL replica and a Redis Cluster.
#![allow(clippy::unwrap_used, missing_docs)]

#[cfg(all(feature = "postgres", feature = "redis"))]
mod admin;
mod client;
#[cfg(all(feature = "postgres", feature = "redis"))]
mod distributed;
mod memory;
mod metrics;
// The private Redis Cluster of eventloom-redis's fault tests (3 masters with a replica each).
#[cfg(all(feature = "postgres", feature = "redis"))]
#[allow(dead_code)]
#[path = "../../../../eventloom-redis/tests/suite/private_cluster.rs"]
mod private_cluster;
#[cfg(all(feature = "postgres", feature = "redis"))]
mod scaled;
mod scenarios;
mod server;
#[cfg(all(feature = "postgres", feature = "otel"))]
mod traces;

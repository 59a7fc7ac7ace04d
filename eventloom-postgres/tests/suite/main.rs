//! The integration tests of eventloom-postgres, in one binary, against a real PostgreSQL: the one
//! `DATABASE_URL` names (scripts/test.sh starts a throwaway one), and private servers for the
//! tests that hold transactions open or kill connections.
#![allow(clippy::unwrap_used)]

mod appends;
mod conformance;
mod corrupt;
mod domain;
mod faults;
mod fingerprints;
mod group;
mod hot_stream;
mod leases;
mod migrations;
mod operations;
mod ordering;
mod partitions;
mod read_side;
mod refusals;
mod relay;
mod replica;
mod retention;
mod saga;
mod support;
#[cfg(feature = "tls")]
mod tls;
mod wake_ups;

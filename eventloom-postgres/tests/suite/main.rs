//! The integration tests of eventloom-postgres, in one binary, against a real PostgreSQL: the one
//! `DATABASE_URL` names (scripts/test.sh starts a throwaway one), and private servers for the
//! tests that hold transactions open or kill connections.
#![allow(clippy::unwrap_used)]

/// Runs `async fn $name(combining: bool)` twice, as the tests `$name::plain` and
/// `$name::write_combining`: with write combining off, and on
/// (`PgConfig::write_combining_in_flight(1)`, so that appends racing in the test share
/// statements as often as they can).
macro_rules! with_and_without_combining {
    ($name:ident $(, $($args:tt)*)?) => {
        mod $name {
            #[tokio::test$(($($args)*))?]
            async fn plain() {
                super::$name(false).await
            }

            #[tokio::test$(($($args)*))?]
            async fn write_combining() {
                super::$name(true).await
            }
        }
    };
}

mod appends;
mod combining;
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
mod view_notices;
mod wake_ups;

//! Test support (feature `testing`): a given/when/then kit for aggregates and projections, and
//! the conformance suites that every store adapter runs.
//!
//! The suites are plain `async fn`s that panic on a broken invariant, so an adapter runs them
//! from its own `#[tokio::test]` with one call, handing over a way to make a fresh store.

mod aggregate_test;
pub mod encoding;
pub mod event_store;
pub mod lease;
mod projection_test;
pub mod projector;
pub mod snapshot_store;
pub mod view_store;

pub use aggregate_test::{AggregateTest, Outcome};
pub use projection_test::ProjectionTest;

use crate::{Metadata, NewEvent};

/// A small JSON event for store tests: type `Tested`, payload `{"n": n}`.
pub fn test_event(n: u64) -> NewEvent {
    NewEvent {
        event_type: "Tested".into(),
        schema_version: 1,
        payload: format!(r#"{{"n":{n}}}"#),
        metadata: Metadata { event_id: uuid::Uuid::from_u128(u128::from(n) + 1), ..Metadata::default() },
    }
}

/// [`test_event`] carrying a command id.
pub fn test_event_for_command(n: u64, command_id: &str) -> NewEvent {
    let mut event = test_event(n);
    event.metadata.command_id = Some(command_id.to_owned());
    event
}

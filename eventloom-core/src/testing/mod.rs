//! Test support (feature `testing`): a given/when/then kit for aggregates and projections, the
//! conformance suites that every store adapter runs, and a seeded generator for randomised
//! tests ([`TestRng`]).
//!
//! The suites are plain `async fn`s that panic on a broken invariant, so an adapter runs them
//! from its own `#[tokio::test]` with one call, handing over a way to make a fresh store.

mod aggregate_test;
mod counting;
pub mod encoding;
pub mod event_store;
mod faults;
pub mod lease;
pub mod metrics;
mod process_test;
mod projection_test;
pub mod projector;
mod rng;
pub mod snapshot_store;
pub mod view_store;

pub use aggregate_test::{AggregateTest, Outcome};
pub use counting::CountingStatus;
pub use faults::{AppendHook, FailNext, FailingAppends, Hooked};
pub use process_test::ProcessTest;
pub use projection_test::ProjectionTest;
pub use rng::TestRng;

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

/// For tests: the value of a view store write that must go through, or a panic naming what was
/// written and the error or [`Refusal`](crate::store::Refusal) that stopped it.
///
/// # Examples
///
/// ```
/// use eventloom_core::{memory::MemoryViewStore, store::ViewStore, testing::MustWrite};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let views = MemoryViewStore::default();
/// let generation = views.begin_generation("p", 1, 0).await.must("begin");
/// views.go_live("p", generation.id, 0).await.must("go live");
/// # });
/// ```
pub trait MustWrite<T> {
    /// The written value; panics with `what` on an error or a refusal.
    fn must(self, what: &str) -> T;
}

impl<T> MustWrite<T> for crate::Result<crate::store::Written<T>> {
    #[track_caller]
    fn must(self, what: &str) -> T {
        match self {
            Ok(Ok(value)) => value,
            Ok(Err(refusal)) => panic!("{what}: refused: {refusal}"),
            Err(error) => panic!("{what}: {error}"),
        }
    }
}

//! The write side: aggregates decide, the engine loads, decides, appends and retries.

pub(crate) mod aggregate;
pub(crate) mod engine;
pub(crate) mod fingerprint;
pub(crate) mod retry;
pub(crate) mod upcast;

pub use aggregate::{Aggregate, Command, Handle};
pub use engine::{
    AsOf, CommandError, CommandOutcome, Cqrs, DEFAULT_BATCH_SIZE, DEFAULT_CACHE_CAPACITY, ExecuteOptions,
    SnapshotPolicy,
};
pub use fingerprint::Fingerprint;
pub use retry::RetryPolicy;
pub use upcast::Upcasters;

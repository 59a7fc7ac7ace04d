//! The write side: aggregates decide, the engine loads, decides, appends and retries.

pub(crate) mod aggregate;
pub(crate) mod engine;
pub(crate) mod fingerprint;
pub(crate) mod retry;
pub(crate) mod upcast;

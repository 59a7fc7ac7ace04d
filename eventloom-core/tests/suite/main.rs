//! The integration tests of eventloom-core, in one binary.
#![allow(clippy::unwrap_used)]

mod app;
mod conformance;
mod domain;
mod engine;
mod group;
mod kit;
mod operations;
mod partition_switches;
mod partitions;
mod projector;
mod refusals;
mod relay;
mod retention;
mod retry;
mod saga;
mod wake_ups;

//! The integration tests of cqrs-core, in one binary.

mod conformance;
mod domain;
mod engine;
mod kit;
mod projector;

#![allow(clippy::unwrap_used)]
#[path = "suite/domain.rs"]
#[allow(dead_code)]
mod domain;
#[path = "suite/partitions.rs"]
mod partitions;

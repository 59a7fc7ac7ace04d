//! One module per job of the admin commands.

pub(crate) mod app;
pub(crate) mod dead_letters;
pub(crate) mod follow;
pub(crate) mod horizon;
pub(crate) mod log;
pub(crate) mod projections;
pub(crate) mod rebuild;
pub(crate) mod schema;

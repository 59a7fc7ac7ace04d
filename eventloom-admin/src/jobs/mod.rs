//! One module per job of the admin commands.

pub(crate) mod dead_letters;
pub(crate) mod follow;
pub(crate) mod horizon;
pub(crate) mod log;
pub(crate) mod projections;
// Drawn by the mounted rebuild and reset (AppBuilder::operations, from branch s9-ops).
#[allow(dead_code)]
pub(crate) mod rebuild;
pub(crate) mod schema;

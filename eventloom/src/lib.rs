//! CQRS and event sourcing for Rust: the crate applications depend on.
//!
//! It re-exports [`eventloom_core`] (the model, the engine, the [`App`] and the in-memory
//! stores) and, by feature, the store adapters as [`postgres`] and [`redis`]. One line picks the
//! stores from the environment: [`stores_from_env`].
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! // Memory; PostgreSQL with feature `postgres` and DATABASE_URL; Redis views with feature
//! // `redis` and REDIS_URL.
//! let stores = eventloom::stores_from_env().await?;
//! let app = eventloom::App::builder(stores).start().await?;
//! # Ok(()) }
//! ```
//!
//! # Feature flags
//!
//! | feature | what it adds |
//! |---|---|
//! | `derive` (default) | `#[derive(Command)]` and `#[derive(Event)]` |
//! | `testing` | the given/when/then kit and the adapter conformance suites ([`testing`]) |
//! | `postgres` | [`postgres`]: events, snapshots, views and leases on PostgreSQL; used by [`stores_from_env`] when `DATABASE_URL` is set |
//! | `redis` | [`redis`]: views on Redis; used by [`stores_from_env`] when `REDIS_URL` is set |
//! | `tls` | TLS for the adapters enabled |
#![cfg_attr(docsrs, feature(doc_cfg))]

mod env;

pub use env::{StoresConfig, StoresError, stores_from_env};
pub use eventloom_core::*;

/// The PostgreSQL stores: [`eventloom_postgres`], re-exported.
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub mod postgres {
    pub use eventloom_postgres::*;
}

/// The Redis views: [`eventloom_redis`], re-exported.
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod redis {
    pub use eventloom_redis::*;
}

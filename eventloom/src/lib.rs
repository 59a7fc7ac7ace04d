//! CQRS and event sourcing for Rust: the crate applications depend on.
//!
//! It re-exports [`eventloom_core`] (the model, the engine, the [`App`] and the in-memory
//! stores) and, by feature, the store adapters as [`postgres`] and [`redis`]. One line picks the
//! stores from the environment: [`stores_from_env`].
//!
//! A crate that depends on this one alone writes its domain with the derives re-exported here:
//!
//! ```
//! use eventloom::prelude::*;
//!
//! #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
//! enum BellEvent { Rang }
//!
//! #[derive(Debug, Default)]
//! struct Bell;
//!
//! impl Aggregate for Bell {
//!     const TYPE: &'static str = "bell";
//!     type Event = BellEvent;
//!     type Error = std::convert::Infallible;
//!     fn apply(&mut self, _: &BellEvent) {}
//! }
//!
//! #[derive(Debug, Serialize, Deserialize, Command)]
//! #[command(aggregate = Bell)]
//! struct Ring { #[command(id)] bell: String }
//!
//! impl Handle<Ring> for Bell {
//!     fn handle(&self, _: &Ring) -> Result<Vec<BellEvent>, std::convert::Infallible> { Ok(vec![BellEvent::Rang]) }
//! }
//!
//! #[derive(Debug, EventSet)]
//! enum Chimes { #[events(aggregate = Bell)] Bell(BellEvent) }
//! ```
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
//! | `nats` | `nats`: the event bus on NATS JetStream, a publisher and a feed for [`AppBuilder::relay`](app::AppBuilder::relay) |
//! | `tls` | TLS for the adapters enabled |
#![cfg_attr(docsrs, feature(doc_cfg))]

mod env;

pub use env::{StoresConfig, StoresError, stores_from_env};
pub use eventloom_core::*;

// The derives as this crate re-exports them: their code names `::eventloom`, so that a crate
// depending on this one alone compiles them (they shadow the core's, which name `::eventloom_core`).
#[cfg(feature = "derive")]
#[cfg_attr(docsrs, doc(cfg(feature = "derive")))]
pub use eventloom_macros::{FacadeCommand as Command, FacadeEvent as Event, FacadeEventSet as EventSet};

/// The names most programs need: `use eventloom::prelude::*;`.
pub mod prelude {
    pub use eventloom_core::prelude::*;
    #[cfg(feature = "derive")]
    pub use eventloom_macros::{FacadeCommand as Command, FacadeEvent as Event, FacadeEventSet as EventSet};
}

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

/// The event bus on NATS JetStream: [`eventloom_nats`], re-exported.
#[cfg(feature = "nats")]
#[cfg_attr(docsrs, doc(cfg(feature = "nats")))]
pub mod nats {
    pub use eventloom_nats::*;
}

//! An event bus on NATS JetStream for `eventloom-core`.
//!
//! - A [`Publisher`] relays the integration events a service chooses (by category, or category
//!   and type; **nothing by default**) from its event store to one JetStream stream it alone
//!   writes, exactly once and in the log's order: every publish expects the stream's last
//!   sequence (`Nats-Expected-Last-Sequence`), and a restart resumes after the position
//!   recorded in the stream's last event, once checked against the local log.
//! - A [`JetStreamFeed`] reads another service's stream as a
//!   [`Feed`](eventloom_core::read::Feed), so projections and event handlers fold its events
//!   with their checkpoints at the source's stream sequence, committed with their views.
//!
//! Subjects are `<prefix>.<category>.<type>` with [encoded tokens](encode_token); the
//! [`headers`](headers::names) carry the event's id, type, schema version, stream, version,
//! position, correlation and causation ids and trace context. The guide's chapter "The event
//! bus" says what exactly once means here and what it costs.
//!
//! Only what nats-server 2.9 understands is used.
//!
//! # Examples
//!
//! ```
//! use eventloom_nats::{NatsConfig, PublisherConfig};
//!
//! let nats = NatsConfig::new("nats://127.0.0.1:4222").unwrap();
//! let publish = PublisherConfig::new("ORDERS", "bus.orders").category("order");
//! assert!(publish.selects("order", "OrderPlaced"));
//! # drop(nats);
//! ```

mod config;
mod error;
mod feed;
pub mod headers;
pub mod metrics;
mod publisher;
mod subject;

pub use async_nats;
pub use config::NatsConfig;
pub use error::{Error, Result};
pub use feed::{JetStreamFeed, JetStreamFeedConfig, JetStreamReader};
pub use publisher::{
    DeadLetter, DeadLetterPolicy, LOG_BEHIND_LIMIT, MAX_IN_FLIGHT, Publisher, PublisherConfig, PublisherStatus,
};
pub use subject::{decode_token, encode_token};

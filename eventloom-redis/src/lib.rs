//! Redis adapters for `eventloom-core`: read models (views), their secondary indexes and the
//! projection checkpoints, in generations that a rebuild fills while queries read the live one.
//!
//! [`RedisViewStore`] implements `eventloom_core::store::ViewStore`. A batch's views, index entries and the
//! generation's checkpoint are written by one Lua script that first checks every key's type, the
//! fencing token, that the generation still exists (a Redis that restarted empty or was flushed
//! is noticed here) and the checkpoint, so a replay after a crash, a deposed leader, or a write
//! into lost views changes nothing. One projection's keys share a hash tag, so every script
//! touches a single cluster slot; queries read the live generation in the same round-trip as
//! their data.
//!
//! # One node or a Redis Cluster
//!
//! [`RedisConfig::from_url`] connects to one node (the default); [`RedisConfig::cluster`] (a list
//! of node URLs) or [`RedisConfig::from_cluster_urls`] (the same, comma-separated) to a Redis
//! Cluster, through the `redis` crate's cluster client, with TLS and AUTH as on one node. Each
//! projection lives on the shard of its hash tag's slot. Replication is asynchronous: a failover
//! after a master crashed can take a projection back to an older checkpoint (views and
//! checkpoint together), from which the projector folds again; [`RedisConfig::wait_for_replicas`]
//! narrows that window. The guide's Redis chapter says what queries observe meanwhile.
//!
//! ```no_run
//! # async fn run() -> Result<(), eventloom_redis::Error> {
//! let config = eventloom_redis::RedisConfig::from_cluster_urls("redis://10.0.0.1:7000,redis://10.0.0.2:7000")?;
//! let views = eventloom_redis::RedisViewStore::connect_with(config.prefix("app:")?).await?;
//! # Ok(()) }
//! ```
//!
//! # Key layout
//!
//! Per projection, with `<base>` = `<prefix>{p:<projection>}`:
//!
//! | key | type | holds |
//! | --- | --- | --- |
//! | `<base>:live` | string | the id of the live generation, which queries read |
//! | `<base>:building` | string | the id of the generation being built |
//! | `<base>:last` | string | the highest generation id handed out (ids are time-ordered: see below) |
//! | `<base>:token` | string | the highest fencing token seen (every generation's `:meta` keeps it too) |
//! | `<base>:trash` | set | ids of dropped generations whose keys are still being deleted |
//!
//! Besides, `<prefix>eventloom.projections` (a set) holds the name of every projection the store
//! began a generation or recorded a stop for, for [`ViewStore::projections`](eventloom_core::store::ViewStore::projections).
//! It lies outside every projection's hash tag (in a cluster, in a slot of its own): the store
//! adds the name with a command of its own before the script that begins the generation or
//! records the stop, never from inside a projection's script, which may touch only the keys of
//! the projection's slot. A projection whose last generation began before this registry existed
//! is listed once it begins one again or records a stop.
//!
//! Per generation, with `<gen>` = `<base>:g<id>`:
//!
//! | key | type | holds |
//! | --- | --- | --- |
//! | `<gen>:meta` | hash | `version`; `checkpoint`, a position token (`"17.42"`) or `none` before the first batch; `token`, the highest fencing token; `views`, `lists` and `dead`, how many members `:ids`, `:indexes` and `:dead` hold; `lost` once a script found a key of it missing |
//! | `<gen>:v:<view id>` | string | one view's JSON |
//! | `<gen>:i:<index name>=<value>` | sorted set | one index list: members `<sort key>\0<view id>`, all of score 0, paged with `ZRANGEBYLEX` |
//! | `<gen>:ids` | set | the ids of its views (to delete them when it is dropped) |
//! | `<gen>:indexes` | set | the `<index name>=<value>` of its index lists (likewise) |
//! | `<gen>:dead` | list | its dead letters (JSON), oldest first |
//!
//! The projection name and index names are percent-encoded (every byte but ASCII letters, digits,
//! `_`, `-` and `.`), so that a name holding `{`, `}`, `:` or `=` can neither move the hash tag
//! nor collide with another's keys; view ids and index values come last in their keys, as they
//! are. Every key a script reads or writes is one of its `KEYS`, so that a cluster routes and
//! checks it: where the key depends on a pointer (the live generation), the store reads the
//! pointer first and the script checks it still names that generation. A dropped generation's keys are deleted after the switch,
//! at most a thousand per script call ([`RedisViewStore::sweep`]).
//!
//! # Eviction
//!
//! Run Redis with `maxmemory-policy noeviction` (or a `volatile-*` policy: the store sets no
//! TTL, so those never evict its keys); [`RedisViewStore::connect_with`] refuses `allkeys-*`
//! with [`Error::EvictionPolicy`] unless [`RedisConfig::accept_eviction`] accepts it. Should a
//! key go anyway (evicted, deleted, a partial restore), a generation never goes back to "no
//! checkpoint": it is *lost* when its `:meta` is missing or incomplete, when `:ids`,
//! `:indexes` or `:dead` hold another number of members than its last commit left, or when a
//! script finds a view or an index list of it missing (the projector's load of a view whose id
//! `:ids` holds; a commit touching a list that `:indexes` names, and three views and three
//! lists picked at random by every commit). A lost generation refuses writes
//! (`Refusal::GenerationGone`), is left out of [`status`](eventloom_core::store::ViewStore::status), and the
//! projector rebuilds into a new one; beginning it drops a lost live generation, so queries
//! answer `NotBuilt` until the new one is live. A lost `live` or `building` pointer drops its
//! generation the same way (its keys stay, unswept); a lost `:token` fences no less (the
//! generations keep the token); a lost `:ids` or `:indexes` leaves that generation's views or
//! lists behind when it is swept. A view that no batch touches and no sample picks reads as
//! missing until one does: that is why evicting policies are refused.
//!
//! Generation ids are the time in milliseconds above 20 random bits (and above every id the
//! projection holds, and every id this process saw): they never come back after a
//! `FLUSHALL`, where a counter in Redis would start over.
//!
//! # Feature flags
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `tls` | no | `rediss://` URLs: TLS with rustls (on `ring`) and the webpki root certificates, or private ones (`RedisConfig::tls_root_certificates`) |
//!
//! # Examples
//!
//! ```no_run
//! use eventloom_redis::{RedisConfig, RedisViewStore};
//!
//! # async fn run() -> Result<(), eventloom_redis::Error> {
//! // An ACL user with a password; `rediss://` for TLS (feature `tls`).
//! let config = RedisConfig::from_url("redis://projector:s3cret@127.0.0.1:6379/")?.prefix("app:")?;
//! let views = RedisViewStore::connect_with(config).await?;
//! # Ok(()) }
//! ```

mod config;
mod connection;
mod error;
mod eviction;
mod keys;
mod notices;
mod scripts;
mod view_store;

pub use config::{DEFAULT_PREFIX, RedisConfig};
pub use error::{Error, Result};
pub use eviction::EvictionPolicy;
pub use view_store::RedisViewStore;

/// The names most programs need.
pub mod prelude {
    pub use crate::{RedisConfig, RedisViewStore};
}

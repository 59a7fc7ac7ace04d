//! The read side: projections fold events into views, the projector runs them, subscriptions
//! feed it, readers answer queries.

pub(crate) mod balance;
pub(crate) mod event_set;
pub(crate) mod feed;
pub(crate) mod fold;
pub(crate) mod group;
pub(crate) mod partition;
pub(crate) mod partition_reads;
pub(crate) mod partitioned;
pub(crate) mod projection;
pub(crate) mod projector;
pub(crate) mod reader;
pub(crate) mod run;
pub(crate) mod subscription;

pub use crate::store::OrderRange;
pub use event_set::EventSet;
pub use feed::{Feed, FeedReader};
pub use group::{DEFAULT_MEMBER_BUFFER, MemberHandle, MemberState, MemberStatus, ProjectionGroup};
pub use partition::{MAX_PARTITIONS, is_partition_record, partition_of};
pub use projection::{BoxError, DEFAULT_PROJECTOR_BATCH, EventOf, PoisonPolicy, Projection};
pub use projector::Projector;
pub use projector::handler::EventHandler;
pub use reader::{Page, Reader, SAFETY_POLL, ViewReader};
pub use subscription::{DEFAULT_BATCH_BYTES, DEFAULT_POLL_INTERVAL, DEFAULT_SUBSCRIPTION_BATCH, Subscription};

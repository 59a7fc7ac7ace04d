//! One partition of a partitioned projection as a runner runs it: the projection's fold over
//! the events of its streams, under a name of its own, made live through the partition set
//! (see [`partition`](super::partition)).

use std::borrow::Cow;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::partition::{Partition, Records, SWITCH_GRACE, Standing};
use super::projector::{Projector, Target};
use super::run::{Checked, Job, Pending, Processed};
use crate::store::superseded;
use crate::{
    BoxError, Error, EventEnvelope, EventOf, EventStore, IndexEntry, Lease, Projection, RecordedEvent, Result,
};

/// The projection `P` as one partition of it sees it: named as the partition is stored.
pub(super) struct PartitionOf<P> {
    pub(super) inner: Arc<P>,
    /// The partition's stored name.
    pub(super) name: String,
}

impl<P: Projection> Projection for PartitionOf<P> {
    const NAME: &'static str = P::NAME;
    const VERSION: u32 = P::VERSION;
    type Events = P::Events;
    type View = P::View;

    fn name(&self) -> &str {
        &self.name
    }

    fn handles(&self, category: &str, event_type: &str) -> bool {
        self.inner.handles(category, event_type)
    }

    fn view_id(&self, event: &EventEnvelope<EventOf<Self>>) -> Option<String> {
        self.inner.view_id(event)
    }

    fn view_partition_key(view_id: &str) -> Cow<'_, str> {
        P::view_partition_key(view_id)
    }

    fn index(&self, id: &str, view: &Self::View) -> Vec<IndexEntry> {
        self.inner.index(id, view)
    }

    fn apply(
        &self,
        view: &mut Option<Self::View>,
        event: &EventEnvelope<EventOf<Self>>,
    ) -> std::result::Result<(), BoxError> {
        self.inner.apply(view, event)
    }
}

/// Partition `partition` of projection `P`.
pub(super) struct PartitionJob<P> {
    projection: PartitionOf<P>,
    /// The projection's own name (its partition set's).
    whole: String,
    partition: Partition,
    /// The epoch of the partition set when this runner last resolved its target: the one a
    /// generation it builds was begun after.
    after: AtomicU64,
}

impl<P: Projection> PartitionJob<P> {
    pub(super) fn new(projection: Arc<P>, partition: Partition) -> Self {
        let whole = projection.name().to_owned();
        let name = Partition::member_name(&whole, partition.index, partition.count);
        PartitionJob { projection: PartitionOf { inner: projection, name }, whole, partition, after: AtomicU64::new(0) }
    }
}

impl<P: Projection> Job for PartitionJob<P> {
    fn name(&self) -> &str {
        &self.projection.name
    }

    fn span(&self) -> tracing::Span {
        tracing::info_span!(
            "projection",
            projection = %self.whole,
            partition = self.partition.index,
            partitions = self.partition.count
        )
    }

    async fn target<S: EventStore + Clone>(
        &self,
        projector: &Projector<S>,
        token: u64,
        _known: Option<u64>,
    ) -> Result<Target> {
        // Read before a generation may be begun: it was begun after this epoch at least.
        let set = Records::live_set(&*projector.views, &self.whole).await?;
        self.after.store(set.as_ref().map_or(0, |set| set.epoch), Ordering::Relaxed);
        let name = &self.projection.name;
        // A generation the live set names, not yet made live in the partition's own status
        // (its runner waited out the grace, or stopped meanwhile), is made live now: beginning
        // another would drop it from under the queries that read it.
        let status = projector.views.status(name).await?;
        let named = set.as_ref().and_then(|set| {
            (set.partitions == self.partition.count)
                .then(|| set.generations.get(self.partition.index as usize))
                .flatten()
        });
        if let Some(building) = status.building.filter(|g| Some(&g.id) == named) {
            match projector.views.go_live(name, building.id, token).await? {
                Ok(()) => tracing::info!(generation = building.id, "made the generation the partition set names live"),
                Err(refusal) => return Err(Error::Superseded { projection: name.clone(), refusal }),
            }
        }
        projector.target(name, P::VERSION, token).await
    }

    fn process<'a, S: EventStore + Clone, X: Future<Output = ()> + Send + Unpin>(
        &'a self,
        projector: &'a Projector<S>,
        batch: &'a [RecordedEvent],
        target: &'a Target,
        token: u64,
        _shutdown: &'a mut X,
        _lease: Option<&'a Lease>,
    ) -> impl Future<Output = Result<Processed>> + Send + 'a {
        let processed = projector.process_in(&self.projection, batch, target, token, Some(self.partition));
        async move { processed.await.map(Processed::Written) }
    }

    fn go_live<'a, S: EventStore + Clone>(
        &'a self,
        _projector: &'a Projector<S>,
        _target: &'a Target,
        _token: u64,
    ) -> impl Future<Output = Result<bool>> + Send + 'a {
        // Made live through the partition set, from `check`.
        std::future::ready(Ok(false))
    }

    async fn check<S: EventStore + Clone>(
        &self,
        projector: &Projector<S>,
        target: &Target,
        token: u64,
        pending: &mut Option<Pending>,
    ) -> Result<Checked> {
        let records = Records::new(&*projector.views, &self.whole);
        let (partition, generation) = (self.partition, target.generation);
        let Some(waiting) = pending.as_mut() else {
            // Live: still what queries read?
            let set = Records::live_set(&*projector.views, &self.whole).await?;
            if let Some(set) = set.as_ref().filter(|set| set.version > P::VERSION) {
                return Err(Error::NewerVersion {
                    projection: self.whole.clone(),
                    running: P::VERSION,
                    stored: set.version,
                });
            }
            let named = set.as_ref().is_some_and(|set| {
                set.partitions == partition.count
                    && set.version == P::VERSION
                    && set.generations.get(partition.index as usize) == Some(&generation)
            });
            if !named {
                tracing::warn!(
                    generation,
                    "the partition set does not name this partition's views; offering them again"
                );
                *pending = Some(Pending::default());
            }
            return Ok(Checked::Fine);
        };
        let after = self.after.load(Ordering::Relaxed);
        match records.offer(partition, P::VERSION, generation, after).await? {
            Standing::Waiting => {
                waiting.named_at = None;
                Ok(Checked::Fine)
            }
            Standing::Displaced => Ok(Checked::Displaced),
            Standing::Named => {
                let now = tokio::time::Instant::now();
                let named_at = *waiting.named_at.get_or_insert(now);
                if !target.building {
                    // Offered again while live: nothing to drop.
                    *pending = None;
                    return Ok(Checked::Fine);
                }
                if now.duration_since(named_at) < SWITCH_GRACE {
                    return Ok(Checked::Fine);
                }
                // Queries have read this generation for a grace: the one it replaces can go.
                let name = &self.projection.name;
                superseded(name, projector.views.go_live(name, generation, token).await?)?;
                *pending = None;
                Ok(Checked::Live)
            }
        }
    }
}

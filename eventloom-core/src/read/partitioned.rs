//! One partition of a partitioned projection as a runner runs it: the projection's fold over
//! the events of its streams, under a name of its own, made live through the partition set
//! (see [`partition`](super::partition)).

use std::borrow::Cow;
use std::future::Future;
use std::sync::Arc;

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
}

impl<P: Projection> PartitionJob<P> {
    pub(super) fn new(projection: Arc<P>, partition: Partition) -> Self {
        let whole = projection.name().to_owned();
        let name = Partition::member_name(&whole, partition.index, partition.count);
        PartitionJob { projection: PartitionOf { inner: projection, name }, whole, partition }
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
        let name = &self.projection.name;
        let set = Records::live_set(&*projector.views, &self.whole).await?;
        if let Some(set) = set.as_ref().filter(|set| set.version > P::VERSION) {
            return Err(Error::NewerVersion {
                projection: self.whole.clone(),
                running: P::VERSION,
                stored: set.version,
            });
        }
        // A generation the live set names, not yet made live in the partition's own status (its
        // runner stopped within the grace), of an older version: beginning this version's would
        // drop it from under the queries that read it. It is made live first (a grace after now
        // when that drops a live one: the switch was at least that long ago by then). One of
        // this version is resumed, and made live as any build is (from `check`).
        let named = set.as_ref().and_then(|set| {
            (set.partitions == self.partition.count)
                .then(|| set.generations.get(self.partition.index as usize))
                .flatten()
        });
        let status = projector.views.status(name).await?;
        if let Some(building) = status.building.filter(|g| Some(&g.id) == named && g.version < P::VERSION) {
            if status.live.is_some() {
                // Its go_live drops the live one, which readers of the set before may hold.
                tracing::info!(generation = building.id, "the partition set names an older build; live after a grace");
                tokio::time::sleep(SWITCH_GRACE).await;
            }
            if let Err(refusal) = projector.views.go_live(name, building.id, token).await? {
                return Err(Error::Superseded { projection: name.clone(), refusal });
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
        match records.offer(partition, P::VERSION, generation).await? {
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

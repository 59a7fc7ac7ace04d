//! One partition of a partitioned projection as a runner runs it: the projection's fold over
//! the events of its streams, under a name of its own, made live through the partition set
//! (see [`partition`](super::partition)).

use std::borrow::Cow;
use std::future::Future;
use std::sync::Arc;

use super::partition::{Partition, PartitionSet, Records, SWITCH_GRACE, Standing};
use super::projection::check_name;
use super::projector::{Progress, Projector, Target, refuse_other_version};
use super::run::{Checked, Job, Pending, Processed};
use crate::process::join::join_limited;
use crate::store::{BoxFuture, Generation, ProjectionStatus, superseded};
use crate::{
    BoxError, Error, EventEnvelope, EventOf, EventStore, IndexEntry, Lease, Position, Projection, RecordedEvent, Result,
};

/// The projection `P` as one partition of it sees it: named as the partition is stored.
pub(crate) struct PartitionOf<P> {
    pub(crate) inner: Arc<P>,
    /// The partition's stored name.
    pub(crate) name: String,
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
        let status = projector.views.status(name).await?;
        if let Some(building) = named_build(set.as_ref(), self.partition, &status).filter(|g| g.version < P::VERSION) {
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
        match records.offer(partition, P::VERSION, generation, token).await? {
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

/// The generation being built in partition `partition` (its `status`) that the live `set`
/// names: queries read it, yet its partition has not made it live (its runner stopped within
/// the grace), so beginning another generation would drop it from under them.
fn named_build(set: Option<&PartitionSet>, partition: Partition, status: &ProjectionStatus) -> Option<Generation> {
    let named = set
        .filter(|set| set.partitions == partition.count)
        .and_then(|set| set.generations.get(partition.index as usize).copied())?;
    status.building.filter(|g| g.id == named)
}

/// When an operation that visits a projection's partitions in turn first saw each switch of
/// its partition set (the set's epoch): the grace before a generation that switch replaced may
/// be dropped runs from then, once for all the partitions it visits, not once for each. (A
/// query that read the set before the switch read it before the operation first saw it.)
#[derive(Debug, Default)]
pub(crate) struct SwitchSeen(Option<(u64, tokio::time::Instant)>);

impl SwitchSeen {
    /// How long ago the switch to `epoch` was first seen (now, when it is new).
    fn since(&mut self, epoch: u64) -> std::time::Duration {
        match self.0 {
            Some((seen, at)) if seen == epoch => at.elapsed(),
            _ => {
                self.0 = Some((epoch, tokio::time::Instant::now()));
                std::time::Duration::ZERO
            }
        }
    }
}

/// How many times [`settle_named_build`] looks at a partition set that may switch while it
/// waits.
const SETTLE_LOOKS: usize = 4;

/// What queries read of `member` (`tasks~1of3`, or a projection of one partition): the live
/// partition set of its projection, the member's status, and the generation being built that
/// the set names (see [`named_build`]), which queries read rather than the live one.
async fn queried(
    views: &dyn crate::store::ViewStore,
    member: &str,
) -> Result<(Option<PartitionSet>, ProjectionStatus, Option<Generation>)> {
    let Some((whole, partition)) = super::partition::member_of(member) else {
        return Ok((None, views.status(member).await?, None));
    };
    let set = Records::live_set(views, whole).await?;
    let status = views.status(member).await?;
    let named = named_build(set.as_ref(), partition, &status);
    Ok((set, status, named))
}

/// Refuses, before any of them changes, a retry of the dead letters of `members` (a
/// projection's stored names) by code of projection version `running` when the views queries
/// read in any of them are of another version (see [`refuse_other_version`]).
pub(crate) async fn refuse_other_versions(
    views: &dyn crate::store::ViewStore,
    members: &[String],
    running: u32,
) -> Result<()> {
    for member in members {
        let (_, status, named) = queried(views, member).await?;
        if let Some(read) = named.or(status.live) {
            refuse_other_version(member, read.version, running)?;
        }
    }
    Ok(())
}

/// Makes live the generation being built in partition `member` (`tasks~1of3`) that the live
/// partition set of its projection names, by a caller that holds the partition's `lease`
/// (none without a lease manager): once a [`SWITCH_GRACE`] has passed since the switch was
/// first `seen`, when that drops a live generation (queries may hold it). Such a generation is
/// left when a runner stops within the grace of a switch. Operations that change a
/// partition's live views (retrying or skipping its dead letters) settle it first, so that
/// they change the views queries read, not those about to be dropped. With `version` (the
/// projection version of the code the operation will run), views queries read of another
/// version are refused (see [`refuse_other_version`]) before it waits or changes anything. A
/// name that is no partition's changes nothing.
pub(crate) async fn settle_named_build(
    views: &dyn crate::store::ViewStore,
    member: &str,
    lease: Option<&Lease>,
    version: Option<u32>,
    seen: &mut SwitchSeen,
) -> Result<()> {
    let token = lease.map_or(0, Lease::token);
    for look in 1..=SETTLE_LOOKS {
        let (set, status, named) = queried(views, member).await?;
        // Every look notes the switch, so that later partitions wait only what remains.
        let waited = set.as_ref().map_or(SWITCH_GRACE, |set| seen.since(set.epoch));
        if let (Some(running), Some(read)) = (version, named.or(status.live)) {
            refuse_other_version(member, read.version, running)?;
        }
        let Some(building) = named else { return Ok(()) };
        if status.live.is_none() || waited >= SWITCH_GRACE {
            return superseded(member, views.go_live(member, building.id, token).await?);
        }
        if look == SETTLE_LOOKS {
            break;
        }
        tracing::info!(partition = member, "the partition set names a build not yet live; live after a grace");
        tokio::time::sleep(SWITCH_GRACE - waited).await;
        if let Some(lease) = lease.filter(|lease| lease.is_lost()) {
            let refusal = crate::store::Refusal::LeaseLost { token: lease.token() };
            return Err(Error::Superseded { projection: member.to_owned(), refusal });
        }
        // Look again: the set may have switched on while it waited.
    }
    Err(Error::unavailable_msg(format!(
        "the partition set kept switching while partition {member} waited to make the build it names live"
    )))
}

/// How many partitions an admin rebuild folds a batch into at once.
const AT_ONCE: usize = 16;

/// How many times an admin rebuild looks again at a partition set that other writers moved on
/// while it switched.
const SWITCH_TRIES: usize = 8;

/// What [`Projector::rebuild_partitions_held`] built: each partition's new generation, by
/// index, and the checkpoint they all reached.
pub(crate) struct Rebuilt {
    pub(crate) generations: Vec<u64>,
    pub(crate) checkpoint: Option<Position>,
}

impl<S: EventStore + Clone> Projector<S> {
    /// Rebuilds every partition of the partitioned projection `projection` into a new
    /// generation that starts after `after` (from the first event when `None`), behind the live
    /// partition set, by a caller that holds every partition's lease (`tokens`, in partition
    /// order: one per partition). One read of the log feeds them all, each folding the events
    /// of its own streams; `progress` hears the checkpoint and the number of events after each
    /// batch. Once caught up, the partition set switches to the new generations at once, as
    /// the running partitions switch it ([`Records::offer_all`]): the generations stay being
    /// built in their partitions until [`make_partitions_live`](Self::make_partitions_live).
    pub(crate) async fn rebuild_partitions_held<P: Projection>(
        &self,
        projection: Arc<P>,
        tokens: &[u64],
        after: Option<Position>,
        progress: &Progress,
    ) -> Result<Rebuilt> {
        let whole = projection.name().to_owned();
        check_name(&whole)?;
        let count = u32::try_from(tokens.len()).unwrap_or(u32::MAX);
        let set = Records::live_set(&*self.views, &whole).await?;
        if let Some(set) = set.as_ref().filter(|set| set.version > P::VERSION) {
            return Err(Error::NewerVersion { projection: whole, running: P::VERSION, stored: set.version });
        }
        let partitions: Vec<(Partition, PartitionOf<P>)> = (0..count)
            .map(|index| {
                let name = Partition::member_name(&whole, index, count);
                (Partition { index, count }, PartitionOf { inner: projection.clone(), name })
            })
            .collect();
        // A newer release's generation in any partition (live, or being built while the set is
        // still at this version): refused before any partition changes.
        for (_, member) in &partitions {
            let status = self.views.status(&member.name).await?;
            if let Some(newer) = [status.live, status.building].into_iter().flatten().find(|g| g.version > P::VERSION) {
                return Err(Error::NewerVersion {
                    projection: member.name.clone(),
                    running: P::VERSION,
                    stored: newer.version,
                });
            }
        }
        self.settle_named_builds(set.as_ref(), &partitions, tokens).await?;
        let mut targets = Vec::with_capacity(partitions.len());
        for ((_, member), &token) in partitions.iter().zip(tokens) {
            targets.push(self.begin_after(&member.name, P::VERSION, token, after).await?);
        }
        let mut subscription = self.subscribe(after);
        let mut next = subscription.try_next_batch().await?;
        let mut checkpoint = after;
        while let Some(batch) = next {
            // A loop, not a closure: the future must be `Send` for every lifetime.
            let mut folds: Vec<BoxFuture<'_, Result<Option<Position>>>> = Vec::with_capacity(partitions.len());
            for (((partition, member), target), &token) in partitions.iter().zip(&targets).zip(tokens) {
                folds.push(Box::pin(self.process_in(member, &batch, target, token, Some(*partition))));
            }
            let fold = join_limited(folds, AT_ONCE);
            // Behind: the next batch is read while this one is folded and written.
            let (written, ahead) = if subscription.is_behind() {
                let (written, ahead) = tokio::join!(fold, subscription.try_next_batch());
                (written, Some(ahead))
            } else {
                (fold.await, None)
            };
            for (((_, member), target), (written, &token)) in
                partitions.iter().zip(&mut targets).zip(written.into_iter().zip(tokens))
            {
                match written {
                    Ok(position) => target.checkpoint = position,
                    Err(error) => {
                        self.note_stop(&member.name, &error, target.generation, token).await;
                        return Err(error);
                    }
                }
            }
            checkpoint = batch.last().map(|e| e.position).or(checkpoint);
            let _ = progress.send((checkpoint, batch.len()));
            next = match ahead {
                Some(ahead) => ahead?,
                None => subscription.try_next_batch().await?,
            };
        }
        for (((_, member), target), &token) in partitions.iter().zip(&targets).zip(tokens) {
            if target.stopped {
                self.note_running(&member.name, token).await;
            }
        }
        let generations: Vec<u64> = targets.iter().map(|t| t.generation).collect();
        let records = Records::new(&*self.views, &whole);
        for _ in 0..SWITCH_TRIES {
            match records.offer_all(P::VERSION, &generations, tokens).await? {
                Standing::Named => {
                    tracing::info!(projection = %whole, partitions = count, "rebuilt partitions: queries read them");
                    return Ok(Rebuilt { generations, checkpoint });
                }
                // Another writer moved the set on meanwhile: look again.
                Standing::Waiting => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
                Standing::Displaced => {
                    return Err(Error::Superseded {
                        projection: whole,
                        refusal: crate::store::Refusal::GenerationGone { generation: generations[0] },
                    });
                }
            }
        }
        Err(Error::unavailable_msg(format!(
            "the partition set of projection {whole} would not switch to the rebuilt partitions in {SWITCH_TRIES} looks"
        )))
    }

    /// Makes live the generations being built that the live set names (see [`named_build`]),
    /// a [`SWITCH_GRACE`] after now when that drops live ones (queries may hold them): an
    /// admin rebuild begins new generations next, which would drop them.
    async fn settle_named_builds<P: Projection>(
        &self,
        set: Option<&PartitionSet>,
        partitions: &[(Partition, PartitionOf<P>)],
        tokens: &[u64],
    ) -> Result<()> {
        let mut named = Vec::new();
        let mut drops_live = false;
        for ((partition, member), &token) in partitions.iter().zip(tokens) {
            let status = self.views.status(&member.name).await?;
            if let Some(building) = named_build(set, *partition, &status) {
                drops_live |= status.live.is_some();
                named.push((&member.name, building.id, token));
            }
        }
        if drops_live {
            tracing::info!("the partition set names builds not yet live; live after a grace");
            tokio::time::sleep(SWITCH_GRACE).await;
        }
        for (name, generation, token) in named {
            superseded(name, self.views.go_live(name, generation, token).await?)?;
        }
        Ok(())
    }

    /// After the partition set switched to `generations` (by index) of projection `whole`'s
    /// partitions, makes each live in its partition's own status, as the running partitions do
    /// from their check: a [`SWITCH_GRACE`] after the switch when that drops a live generation
    /// (queries that read the set before may still hold it). By a caller holding every
    /// partition's lease (`tokens`).
    pub(crate) async fn make_partitions_live(&self, whole: &str, generations: &[u64], tokens: &[u64]) -> Result<()> {
        let count = u32::try_from(generations.len()).unwrap_or(u32::MAX);
        let names: Vec<String> = (0..count).map(|index| Partition::member_name(whole, index, count)).collect();
        let mut drops_live = false;
        for (name, &generation) in names.iter().zip(generations) {
            let status = self.views.status(name).await?;
            drops_live |= status.live.is_some_and(|live| live.id != generation);
        }
        if drops_live {
            tokio::time::sleep(SWITCH_GRACE).await;
        }
        for ((name, &generation), &token) in names.iter().zip(generations).zip(tokens) {
            superseded(name, self.views.go_live(name, generation, token).await?)?;
        }
        tracing::info!(projection = whole, partitions = count, "rebuilt partitions are live");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ViewStore;

    /// Three partitions left within the grace of a switch (the set names the builds, of
    /// version `built`, their statuses still have the old generations, of version 1, live).
    async fn left_within_the_grace(views: &crate::memory::MemoryViewStore, built: u32) -> Vec<u64> {
        let records = Records::new(views, "p");
        let mut new = Vec::new();
        for index in 0..3 {
            let name = Partition::member_name("p", index, 3);
            let old = views.begin_generation(&name, 1, 0).await.unwrap().unwrap().id;
            views.go_live(&name, old, 0).await.unwrap().unwrap();
            new.push(views.begin_generation(&name, built, 0).await.unwrap().unwrap().id);
        }
        // As runners without a lease manager write (token 0), which the settles below are.
        assert_eq!(records.offer_all(built, &new, &[0, 0, 0]).await.unwrap(), Standing::Named);
        new
    }

    /// An operation that settles partitions in turn waits one grace from when it first saw
    /// the switch, not one for each partition.
    #[tokio::test(start_paused = true)]
    async fn partitions_settled_in_turn_wait_one_grace_in_all() {
        let views = crate::memory::MemoryViewStore::default();
        let new = left_within_the_grace(&views, 1).await;
        let started = tokio::time::Instant::now();
        let mut seen = SwitchSeen::default();
        for (index, generation) in new.iter().enumerate() {
            let name = Partition::member_name("p", index as u32, 3);
            settle_named_build(&views, &name, None, Some(1), &mut seen).await.unwrap();
            assert_eq!(views.status(&name).await.unwrap().live.map(|g| g.id), Some(*generation));
        }
        assert_eq!(started.elapsed(), SWITCH_GRACE, "one grace for the three partitions");
    }

    /// Views queries read of another version than the code that would write among them are
    /// refused before the grace is waited and before anything changes.
    #[tokio::test(start_paused = true)]
    async fn a_settle_for_code_of_another_version_refuses_before_it_waits() {
        let views = crate::memory::MemoryViewStore::default();
        left_within_the_grace(&views, 2).await;
        let name = Partition::member_name("p", 0, 3);
        let before = views.status(&name).await.unwrap();
        let started = tokio::time::Instant::now();
        for running in [1, 3] {
            let settled = settle_named_build(&views, &name, None, Some(running), &mut SwitchSeen::default()).await;
            match running {
                1 => assert!(matches!(settled, Err(Error::NewerVersion { stored: 2, .. })), "{settled:?}"),
                _ => assert!(matches!(settled, Err(Error::Unsupported { .. })), "{settled:?}"),
            }
        }
        let members: Vec<String> = (0..3).map(|i| Partition::member_name("p", i, 3)).collect();
        let refused = refuse_other_versions(&views, &members, 1).await;
        assert!(matches!(refused, Err(Error::NewerVersion { .. })), "{refused:?}");
        assert_eq!(started.elapsed(), std::time::Duration::ZERO, "refused without waiting");
        assert_eq!(views.status(&name).await.unwrap(), before, "nothing changed");
        // Without a version (no code runs), it is made live after the grace.
        settle_named_build(&views, &name, None, None, &mut SwitchSeen::default()).await.unwrap();
        assert_eq!(started.elapsed(), SWITCH_GRACE);
    }
}

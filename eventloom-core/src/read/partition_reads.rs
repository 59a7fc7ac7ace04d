//! Queries of a partitioned projection: the partition set read first, then the generations it
//! names, read side by side; lists merged in order, counts summed.

use super::partition::{Partition, PartitionSet, Records, SWITCH_GRACE, ViewKey, partition_of};
use crate::process::join::join_limited;
use crate::store::{BoxFuture, IndexedView, ListCursor, ViewPage};
use crate::{Error, Generation, IndexKey, OrderRange, ProjectionStatus, Result, ViewStore};

/// How many times a query reads the partition set again after its reads took too long.
const TRIES: usize = 3;

/// How many partitions a query reads at once.
const AT_ONCE: usize = 16;

/// Runs `read` over the live set until one run takes less than half the switch grace (so the
/// generations it read were still kept). Before the first partition set, `whole` reads the
/// projection as it was before it was partitioned (its views under its own name, or
/// [`Error::NotBuilt`]): queries go on while the partitions are first built.
async fn within_grace<T, F, W>(
    store: &dyn ViewStore,
    name: &str,
    read: impl Fn(PartitionSet) -> F,
    whole: impl FnOnce() -> W,
) -> Result<T>
where
    F: std::future::Future<Output = Result<T>>,
    W: std::future::Future<Output = Result<T>>,
{
    for _ in 0..TRIES {
        let started = tokio::time::Instant::now();
        let Some(set) = Records::live_set(store, name).await? else { return whole().await };
        let answer = read(set).await?;
        if started.elapsed() < SWITCH_GRACE / 2 {
            return Ok(answer);
        }
    }
    Err(Error::unavailable_msg(format!(
        "reads of partitioned projection {name} took over {:?} {TRIES} times",
        SWITCH_GRACE / 2
    )))
}

fn member(name: &str, set: &PartitionSet, index: usize) -> String {
    Partition::member_name(name, index as u32, set.partitions)
}

/// The views `ids` (stored ids), in the order asked.
pub(crate) async fn get_many(
    store: &dyn ViewStore,
    name: &str,
    key: ViewKey,
    ids: &[String],
    asked: &[String],
) -> Result<Vec<Option<String>>> {
    within_grace(
        store,
        name,
        |set| async move {
            // The ids of each partition, and where each goes back in the answer.
            let mut by_partition: Vec<(Vec<String>, Vec<usize>)> =
                vec![(Vec::new(), Vec::new()); set.partitions as usize];
            for (at, (stored, raw)) in ids.iter().zip(asked).enumerate() {
                let index = partition_of(&key(raw), set.partitions) as usize;
                by_partition[index].0.push(stored.clone());
                by_partition[index].1.push(at);
            }
            let mut reads: Vec<BoxFuture<'_, Result<Vec<Option<String>>>>> = Vec::new();
            let mut places = Vec::new();
            for (index, (ids, at)) in by_partition.into_iter().enumerate() {
                if ids.is_empty() {
                    continue;
                }
                let (member, generation) = (member(name, &set, index), set.generations[index]);
                reads.push(Box::pin(async move { store.load_views(&member, generation, &ids).await }));
                places.push(at);
            }
            let mut views = vec![None; ids.len()];
            for (read, places) in join_limited(reads, AT_ONCE).await.into_iter().zip(places) {
                for (view, at) in read?.into_iter().zip(places) {
                    views[at] = view;
                }
            }
            Ok(views)
        },
        || store.read_views(name, ids),
    )
    .await
}

/// Up to `limit` views of one index list, in its order, after `after`: each partition's first
/// `limit + 1` merged.
pub(crate) async fn list(
    store: &dyn ViewStore,
    name: &str,
    key: &IndexKey,
    range: &OrderRange,
    after: Option<&ListCursor>,
    limit: usize,
) -> Result<ViewPage> {
    within_grace(
        store,
        name,
        |set| async move {
            let fetch = limit.saturating_add(1);
            let mut reads: Vec<BoxFuture<'_, Result<Vec<IndexedView>>>> = Vec::new();
            for index in 0..set.partitions as usize {
                let (member, generation) = (member(name, &set, index), set.generations[index]);
                reads.push(Box::pin(async move {
                    store.list_generation(&member, generation, key, range, after, fetch).await
                }));
            }
            let mut entries: Vec<IndexedView> = Vec::new();
            for read in join_limited(reads, AT_ONCE).await {
                entries.extend(read?);
            }
            entries.sort_unstable_by(|a, b| (&a.order, &a.id).cmp(&(&b.order, &b.id)));
            let more = entries.len() > limit;
            entries.truncate(limit);
            let next = entries.last().filter(|_| more).map(IndexedView::cursor);
            // An entry whose view is missing is skipped, but the cursor moves past it.
            let views = entries.into_iter().filter_map(|e| e.view.map(|view| (e.id, view))).collect();
            Ok(ViewPage { views, next })
        },
        || store.list(name, key, range, after, limit),
    )
    .await
}

/// How many views each index list holds: the partitions' counts summed.
pub(crate) async fn count(store: &dyn ViewStore, name: &str, keys: &[IndexKey]) -> Result<Vec<u64>> {
    within_grace(
        store,
        name,
        |set| async move {
            let mut reads: Vec<BoxFuture<'_, Result<Vec<u64>>>> = Vec::new();
            for index in 0..set.partitions as usize {
                let (member, generation) = (member(name, &set, index), set.generations[index]);
                reads.push(Box::pin(async move { store.count_generation(&member, generation, keys).await }));
            }
            let mut sums = vec![0u64; keys.len()];
            for read in join_limited(reads, AT_ONCE).await {
                for (sum, count) in sums.iter_mut().zip(read?) {
                    *sum = sum.saturating_add(count);
                }
            }
            Ok(sums)
        },
        || store.count(name, keys),
    )
    .await
}

/// The status of a partitioned projection as queries see it: live is the partition set (its
/// epoch as id) at the least checkpoint of the generations it names; a stop recorded by a
/// partition that still holds is the projection's. Before the first set, the status of the
/// projection as it was before it was partitioned.
pub(crate) async fn status(store: &dyn ViewStore, name: &str) -> Result<ProjectionStatus> {
    let Some(set) = Records::live_set(store, name).await? else { return store.status(name).await };
    let mut reads: Vec<BoxFuture<'_, Result<ProjectionStatus>>> = Vec::new();
    for index in 0..set.partitions as usize {
        let member = member(name, &set, index);
        reads.push(Box::pin(async move { store.status(&member).await }));
    }
    let mut checkpoint = None;
    let mut stopped = None;
    for (index, read) in join_limited(reads, AT_ONCE).await.into_iter().enumerate() {
        let status = read?;
        let named = [status.live, status.building].into_iter().flatten().find(|g| g.id == set.generations[index]);
        let Some(named) = named else {
            // Its views are gone: nothing is live until the partition has built them again.
            return Ok(ProjectionStatus::default());
        };
        checkpoint = if index == 0 { named.checkpoint } else { checkpoint.min(named.checkpoint) };
        if stopped.is_none() {
            stopped = status.active_stop().filter(|stop| stop.generation == named.id).cloned();
        }
    }
    let live = Generation { id: set.epoch, version: set.version, checkpoint };
    let stopped = stopped.map(|stop| stop.at(live.id, live.checkpoint));
    Ok(ProjectionStatus::new(Some(live), None, stopped))
}

/// The status of `projection` as queries see it (whole, or partitioned).
pub(crate) async fn status_of(store: &dyn ViewStore, projection: &str, partitioned: bool) -> Result<ProjectionStatus> {
    if partitioned { status(store, projection).await } else { store.status(projection).await }
}

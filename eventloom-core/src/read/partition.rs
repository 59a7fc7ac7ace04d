//! Partitioned projections: one projection split into N partitions by a hash of each event's
//! stream id, each partition a projection of its own in the view store (its own lease, fencing
//! token, checkpoint and generations, and so its own hash tag on Redis), with one record that
//! says which generation of each partition queries read: the *partition set*.
//!
//! # The partition set, and how queries switch at once
//!
//! The view store keeps, under the projection's name followed by [`META_SUFFIX`], a small
//! projection of records of its own:
//!
//! - `set`: the partition set queries read first — the number of partitions, the projection
//!   version, each partition's generation, and an *epoch* that every switch raises;
//! - `ready/<n>/v<version>/<i>`: written by partition `i` of `n` once its generation has caught
//!   up with the log (its version and generation, and whether a switch has replaced it).
//!
//! A partition that has caught up records itself ready (with the fencing token of its lease:
//! a record is never overwritten by a writer with a lower token, so a deposed runner that
//! wakes up late cannot offer its old generation over the one its successor, or an admin
//! rebuild, recorded), then reads every ready record of its
//! partitioning and version; when each is ready and not replaced (each generation still in its
//! partition's status), it writes the new set in one compare-and-set, and marks replaced, in the
//! same write, the ready records of the set it replaces whose generations the new one drops.
//! Queries read the set, then the generations it names, so they switch every partition at once.
//! The partitions' own `go_live` (which drops their old generation) waits [`SWITCH_GRACE`] after
//! the runner first saw the switch, and a query whose reads took more than half of it reads the
//! set again: no reader holds a set whose generations are gone.
//!
//! The last partitioning (or version) to have caught up wins: a rebuilt partition of the live
//! set, a new version or a new number of partitions replace it once all their partitions are
//! ready, and the partitions of a set it replaced never switch back (they stand by, and stop at
//! a newer version); a generation one of them builds anew is offered afresh.
//!
//! The fencing of ready records is only as strong as the tokens: without a lease manager every
//! writer's token is 0, as is that of a record written by a release that did not record tokens,
//! so between such writers the last to write wins (as it does for their view writes). Run one
//! runner per partition there.

use std::borrow::Cow;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::store::{Generation, Refusal, ViewCommit, ViewStore, ViewWrite};
use crate::{Error, Position, Result};

/// What follows a projection's name in the name of its partition set's records.
pub(crate) const META_SUFFIX: &str = "~partitions";

/// Whether `name`, as a view store lists it ([`ViewStore::projections`](crate::store::ViewStore::projections)),
/// is a partitioned projection's partition-set record (`<name>~partitions`), which the framework
/// keeps for itself: admin operations on projections refuse it (writing to it under a lease
/// would fence off the partitions' own writes of it).
///
/// # Examples
///
/// ```
/// use eventloom_core::read::is_partition_record;
///
/// assert!(is_partition_record("tasks~partitions"));
/// assert!(!is_partition_record("tasks~0of6") && !is_partition_record("tasks"));
/// ```
pub fn is_partition_record(name: &str) -> bool {
    name.ends_with(META_SUFFIX)
}

/// The most partitions a projection may have.
pub const MAX_PARTITIONS: u32 = 1024;

/// How long a partition keeps the generation a switch replaced before it drops it (its own
/// `go_live`); queries whose reads take more than half of it read the partition set again.
pub(crate) const SWITCH_GRACE: Duration = Duration::from_secs(5);

/// The partition of `key` among `count` (FNV-1a, 64 bits, of its bytes: stable across
/// processes, releases and platforms).
///
/// # Examples
///
/// ```
/// use eventloom_core::read::partition_of;
///
/// assert_eq!(partition_of("task-1", 4), partition_of("task-1", 4));
/// assert!(partition_of("task-1", 4) < 4);
/// assert_eq!(partition_of("anything", 1), 0);
/// ```
pub fn partition_of(key: &str, count: u32) -> u32 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in key.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    // `count` is at least 1 wherever partitions are made; 0 is taken as 1.
    (hash % u64::from(count.max(1))) as u32
}

/// One partition of a projection: partition `index` of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Partition {
    pub(crate) index: u32,
    pub(crate) count: u32,
}

impl Partition {
    /// Whether events of the stream with this id (or views with this partition key) are this
    /// partition's.
    pub(crate) fn owns(self, key: &str) -> bool {
        partition_of(key, self.count) == self.index
    }

    /// The name partition `index` of `count` of projection `name` is stored (and leased) under.
    pub(crate) fn member_name(name: &str, index: u32, count: u32) -> String {
        format!("{name}~{index}of{count}")
    }

    fn ready_id(self, version: u32) -> String {
        format!("ready/{}/v{version}/{}", self.count, self.index)
    }
}

/// The name of the partitioned projection whose partition (or partition set) `stored` is:
/// `tasks` for `tasks~2of6` and `tasks~partitions`.
pub(crate) fn whole_name(stored: &str) -> Option<&str> {
    if let Some(whole) = stored.strip_suffix(META_SUFFIX) {
        return Some(whole);
    }
    let (whole, suffix) = stored.rsplit_once('~')?;
    let (index, count) = suffix.split_once("of")?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (digits(index) && digits(count)).then_some(whole)
}

/// The partitioned projection and the partition that `stored` names (`tasks` and 2 of 6 for
/// `tasks~2of6`), when it is the name of a partition that can be (index below count, as
/// [`Partition::member_name`] writes them).
pub(crate) fn member_of(stored: &str) -> Option<(&str, Partition)> {
    let (whole, suffix) = stored.rsplit_once('~')?;
    let (index, count) = suffix.split_once("of")?;
    let (index, count) = (index.parse::<u32>().ok()?, count.parse::<u32>().ok()?);
    let partition = Partition { index, count };
    (index < count && Partition::member_name(whole, index, count) == stored).then_some((whole, partition))
}

/// The name of the records of projection `name`'s partition set.
pub(crate) fn meta_name(name: &str) -> String {
    format!("{name}{META_SUFFIX}")
}

/// The id of the partition set's record.
const SET_ID: &str = "set";

/// Which generation of each partition queries read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PartitionSet {
    pub(crate) partitions: u32,
    pub(crate) version: u32,
    /// Raised by every switch.
    pub(crate) epoch: u64,
    /// Each partition's generation, by index.
    pub(crate) generations: Vec<u64>,
}

impl PartitionSet {
    /// Parses the stored record, checking that it names one generation per partition.
    pub(crate) fn parse(name: &str, json: &str) -> Result<Self> {
        let corrupt =
            |reason: String| Error::Corrupt { location: format!("the partition set of projection {name}"), reason };
        let set: PartitionSet = serde_json::from_str(json).map_err(|e| corrupt(e.to_string()))?;
        if set.partitions == 0 || set.partitions > MAX_PARTITIONS || set.generations.len() != set.partitions as usize {
            return Err(corrupt(format!("{} partitions with {} generations", set.partitions, set.generations.len())));
        }
        Ok(set)
    }

    /// The generation of partition `index` when this set is of `count` partitions at `version`.
    fn generation_of(&self, partition: Partition, version: u32) -> Option<u64> {
        (self.partitions == partition.count && self.version == version)
            .then(|| self.generations.get(partition.index as usize).copied())
            .flatten()
    }
}

/// A partition that has caught up: the generation it offers to the next switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Ready {
    version: u32,
    generation: u64,
    /// A set it was in was replaced by one without it: it never switches back.
    #[serde(default)]
    replaced: bool,
    /// The fencing token of the lease its writer held (0 without leases, and in records
    /// written before tokens were recorded): a writer with a lower token may not replace it.
    #[serde(default)]
    token: u64,
}

/// Where a partition's generation stands in the partition set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Standing {
    /// The set names it: queries read it.
    Named,
    /// Not yet: other partitions are not ready.
    Waiting,
    /// Another partitioning (or a set this partition's generation is older than) is live, and
    /// this one may not replace it.
    Displaced,
}

/// The records of one projection's partition set.
pub(crate) struct Records<'a> {
    views: &'a dyn ViewStore,
    /// The projection's name.
    name: &'a str,
    meta: String,
}

/// How many times a write of the records is tried against writers of other partitions.
const TRIES: usize = 32;

impl<'a> Records<'a> {
    pub(crate) fn new(views: &'a dyn ViewStore, name: &'a str) -> Self {
        Records { views, name, meta: meta_name(name) }
    }

    /// The live set, as queries read it: `None` before the first switch.
    pub(crate) async fn live_set(views: &dyn ViewStore, name: &str) -> Result<Option<PartitionSet>> {
        match views.read_views(&meta_name(name), &[SET_ID.to_owned()]).await {
            Ok(mut found) => found.pop().flatten().map(|json| PartitionSet::parse(name, &json)).transpose(),
            Err(Error::NotBuilt { .. }) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// The records' live generation, made when there is none yet.
    async fn generation(&self) -> Result<Generation> {
        for tries in 0..TRIES {
            let status = self.views.status(&self.meta).await?;
            if let Some(live) = status.live {
                return Ok(live);
            }
            if status.building.is_some() && tries % 4 != 3 {
                // Another runner is making them: beginning another would drop its.
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
            // Token 0: the records are written by every partition's runner, each under its own
            // lease; a compare-and-set on their checkpoint orders them instead.
            let Ok(begun) = self.views.begin_generation(&self.meta, 1, 0).await? else { continue };
            if let Ok(()) = self.views.go_live(&self.meta, begun.id, 0).await? {
                return Ok(Generation { checkpoint: None, ..begun });
            }
        }
        Err(self.busy())
    }

    fn busy(&self) -> Error {
        Error::unavailable_msg(format!(
            "the partition set of projection {} changed {TRIES} times during one write",
            self.name
        ))
    }

    /// Reads the records `ids`, and writes what `change` makes of them (nothing when it answers
    /// `None`), as one compare-and-set, tried again while other writers move the records on.
    /// The records `ids` of the metadata projection's `generation`, one answer per id: a view
    /// store that answers fewer or more is [`Error::Corrupt`], not a panic.
    async fn load(&self, generation: u64, ids: &[String]) -> Result<Vec<Option<String>>> {
        let stored = self.views.load_views(&self.meta, generation, ids).await?;
        if stored.len() != ids.len() {
            return Err(Error::Corrupt {
                location: format!("the partition records of {}", self.name),
                reason: format!("the view store answered {} of {} records asked for", stored.len(), ids.len()),
            });
        }
        Ok(stored)
    }

    async fn update<T>(
        &self,
        ids: &[String],
        mut change: impl FnMut(&[Option<String>]) -> Result<(T, Vec<ViewWrite>)>,
    ) -> Result<T> {
        for _ in 0..TRIES {
            let generation = self.generation().await?;
            let stored = self.load(generation.id, ids).await?;
            let (answer, views) = change(&stored)?;
            if views.is_empty() {
                return Ok(answer);
            }
            let written = generation.checkpoint.map_or(0, |c| c.transaction());
            let commit = ViewCommit {
                generation: generation.id,
                expected: generation.checkpoint,
                checkpoint: Position::new(written + 1, 1),
                fencing_token: 0,
                views,
                dead_letters: Vec::new(),
                resolved: Vec::new(),
            };
            match self.views.commit(&self.meta, commit).await? {
                Ok(()) => return Ok(answer),
                Err(Refusal::CheckpointMoved { .. } | Refusal::GenerationGone { .. }) => {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                Err(refusal) => {
                    return Err(Error::Superseded { projection: self.meta.clone(), refusal });
                }
            }
        }
        Err(self.busy())
    }

    /// Records partition `partition`'s generation as caught up, by the holder of the
    /// partition's lease whose fencing token is `token`; then switches the set when every
    /// partition is ready, and says where the generation stands. A ready record written under a
    /// higher token (a newer runner, an admin rebuild) stays: [`Error::Superseded`] with
    /// [`Refusal::Fenced`], and the caller stands by.
    pub(crate) async fn offer(
        &self,
        partition: Partition,
        version: u32,
        generation: u64,
        token: u64,
    ) -> Result<Standing> {
        self.record_ready(&[(partition, generation, token)], version).await?;
        self.switch(partition, version, generation).await
    }

    /// Records every partition of a partitioning as caught up at once, `generations` by index
    /// (an admin rebuild, which holds every partition's lease, `tokens` by index): one
    /// compare-and-set writes their ready records together, so that no switch sees some of them
    /// and not the others. Then switches the set as [`offer`](Self::offer) does, and says where
    /// the generations stand.
    pub(crate) async fn offer_all(&self, version: u32, generations: &[u64], tokens: &[u64]) -> Result<Standing> {
        let count = u32::try_from(generations.len()).unwrap_or(u32::MAX);
        let Some(&first) = generations.first() else {
            return Err(Error::InvalidConfig { reason: format!("projection {} has no partitions", self.name) });
        };
        if tokens.len() != generations.len() {
            return Err(Error::InvalidConfig {
                reason: format!(
                    "{} fencing tokens for the {} partitions of projection {}",
                    tokens.len(),
                    generations.len(),
                    self.name
                ),
            });
        }
        let offered: Vec<(Partition, u64, u64)> = generations
            .iter()
            .zip(tokens)
            .enumerate()
            .map(|(index, (&g, &token))| (Partition { index: index as u32, count }, g, token))
            .collect();
        self.record_ready(&offered, version).await?;
        self.switch(Partition { index: 0, count }, version, first).await
    }

    /// Writes the ready records of `offered` (each partition with its generation and the
    /// fencing token of its writer's lease) in one compare-and-set, leaving those already
    /// recorded with their generation as they are; a record written under a higher token
    /// refuses the whole write ([`Refusal::Fenced`]).
    async fn record_ready(&self, offered: &[(Partition, u64, u64)], version: u32) -> Result<()> {
        let ids: Vec<String> = offered.iter().map(|(partition, _, _)| partition.ready_id(version)).collect();
        let fenced = self
            .update(&ids, |stored| {
                let mut writes = Vec::new();
                for ((id, known), &(_, generation, token)) in ids.iter().zip(self.readies(stored)?).zip(offered) {
                    if let Some(known) = known.filter(|known| known.token > token) {
                        // A newer lease holder recorded this partition: this writer was deposed.
                        return Ok((Some(Refusal::Fenced { token, highest: known.token }), Vec::new()));
                    }
                    // Offered again (a restart, a look while waiting): as it was, a replaced one
                    // too; a newer lease holder's token is recorded with it.
                    let replaced = match known.filter(|known| known.generation == generation) {
                        Some(known) if known.token == token => continue,
                        Some(known) => known.replaced,
                        None => false,
                    };
                    let json = ready_json(Ready { version, generation, replaced, token })?;
                    writes.push(ViewWrite::set(id.clone(), json));
                }
                Ok((None, writes))
            })
            .await?;
        match fenced {
            Some(refusal) => Err(Error::Superseded { projection: self.meta.clone(), refusal }),
            None => Ok(()),
        }
    }

    /// Where partition `partition`'s `generation` stands, switching the set to the ready
    /// partitions when they all are.
    pub(crate) async fn switch(&self, partition: Partition, version: u32, generation: u64) -> Result<Standing> {
        let count = partition.count;
        let mut ids = vec![SET_ID.to_owned()];
        ids.extend((0..count).map(|index| Partition { index, count }.ready_id(version)));
        let stored = {
            let generation = self.generation().await?;
            self.load(generation.id, &ids).await?
        };
        let readies = self.readies(&stored[1..])?;
        let current = stored[0].as_deref().map(|json| PartitionSet::parse(self.name, json)).transpose()?;
        if let Some(set) = &current {
            if set.version > version {
                return Err(Error::NewerVersion {
                    projection: self.name.to_owned(),
                    running: version,
                    stored: set.version,
                });
            }
            if set.generation_of(partition, version) == Some(generation) {
                return Ok(Standing::Named);
            }
        }
        let mine = readies.get(partition.index as usize).copied().flatten();
        if mine.is_some_and(|ready| ready.generation == generation && ready.replaced) {
            return Ok(Standing::Displaced);
        }
        let Some(next) = self.next_set(partition, version, current.as_ref(), &readies).await? else {
            return Ok(Standing::Waiting);
        };
        let json =
            serde_json::to_string(&next).map_err(|source| Error::Serde { what: "a partition set".into(), source })?;
        // The ready records of the set it replaces are marked replaced with it, so that its
        // partitions never switch back (a generation they build anew is offered afresh).
        let replaced_ids: Vec<String> = current
            .iter()
            .flat_map(|set| {
                (0..set.partitions).map(|index| Partition { index, count: set.partitions }.ready_id(set.version))
            })
            .collect();
        let mut read_ids = vec![SET_ID.to_owned()];
        read_ids.extend(replaced_ids.iter().cloned());
        let switched = self
            .update(&read_ids, |stored| {
                let now = stored.first().cloned().flatten();
                let still = now.as_deref().map(|json| PartitionSet::parse(self.name, json)).transpose()?;
                // Someone else switched meanwhile: the next look decides again.
                if still != current {
                    return Ok((false, Vec::new()));
                }
                let mut writes = vec![ViewWrite::set(SET_ID, json.clone())];
                if let Some(old) = &current {
                    for (index, ready) in self.readies(&stored[1..])?.into_iter().enumerate() {
                        let Some(mut ready) = ready else { continue };
                        let named_before = old.generations.get(index) == Some(&ready.generation);
                        let named_now = next.partitions == old.partitions
                            && next.version == ready.version
                            && next.generations.get(index) == Some(&ready.generation);
                        if named_before && !named_now && !ready.replaced {
                            ready.replaced = true;
                            writes.push(ViewWrite::set(replaced_ids[index].clone(), ready_json(ready)?));
                        }
                    }
                }
                Ok((true, writes))
            })
            .await?;
        if switched {
            tracing::info!(
                projection = self.name,
                partitions = next.partitions,
                version,
                epoch = next.epoch,
                "the partition set switched: queries read the new generations"
            );
        }
        Ok(if switched && next.generations.get(partition.index as usize) == Some(&generation) {
            Standing::Named
        } else {
            Standing::Waiting
        })
    }

    fn readies(&self, stored: &[Option<String>]) -> Result<Vec<Option<Ready>>> {
        stored
            .iter()
            .map(|json| {
                json.as_deref()
                    .map(|json| {
                        serde_json::from_str::<Ready>(json).map_err(|e| Error::Corrupt {
                            location: format!("a ready record of projection {}", self.name),
                            reason: e.to_string(),
                        })
                    })
                    .transpose()
            })
            .collect()
    }

    /// The set to switch to: every partition ready at `version` and not replaced, its
    /// generation still in its partition's store (one that lost its views begins another);
    /// `None` otherwise.
    async fn next_set(
        &self,
        partition: Partition,
        version: u32,
        current: Option<&PartitionSet>,
        readies: &[Option<Ready>],
    ) -> Result<Option<PartitionSet>> {
        let mut generations = Vec::with_capacity(readies.len());
        for ready in readies {
            let Some(ready) = ready.filter(|r| r.version == version && !r.replaced) else { return Ok(None) };
            generations.push(ready.generation);
        }
        for (index, generation) in generations.iter().enumerate() {
            let member = Partition::member_name(self.name, index as u32, partition.count);
            let status = self.views.status(&member).await?;
            if ![status.live, status.building].into_iter().flatten().any(|g| g.id == *generation) {
                return Ok(None);
            }
        }
        let epoch = current.map_or(0, |set| set.epoch) + 1;
        Ok(Some(PartitionSet { partitions: partition.count, version, epoch, generations }))
    }
}

fn ready_json(ready: Ready) -> Result<String> {
    serde_json::to_string(&ready).map_err(|source| Error::Serde { what: "a ready record".into(), source })
}

/// Awaits the first of `futures` to finish, and its output (pending forever when there are
/// none).
pub(crate) async fn first_of<F: std::future::Future>(futures: impl IntoIterator<Item = F>) -> F::Output {
    let mut futures: Vec<std::pin::Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    std::future::poll_fn(|cx| {
        for future in &mut futures {
            if let std::task::Poll::Ready(output) = future.as_mut().poll(cx) {
                return std::task::Poll::Ready(output);
            }
        }
        std::task::Poll::Pending
    })
    .await
}

/// How a view id is placed in a partition: [`Projection::view_partition_key`](crate::Projection::view_partition_key).
pub(crate) type ViewKey = for<'k> fn(&'k str) -> Cow<'k, str>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_spread_keys_and_never_move_them() {
        let mut counts = [0u32; 4];
        for n in 0..4000 {
            let key = format!("task-{n}");
            let p = partition_of(&key, 4);
            assert_eq!(p, partition_of(&key, 4));
            counts[p as usize] += 1;
        }
        assert!(counts.iter().all(|&c| (800..1200).contains(&c)), "{counts:?}");
        // Fixed values: a change of hash would move every view of a running deployment.
        assert_eq!(partition_of("", 7), (0xcbf2_9ce4_8422_2325u64 % 7) as u32);
        assert_eq!(partition_of("a", 1000), (0xaf63_dc4c_8601_ec8cu64 % 1000) as u32);
    }

    /// A runner deposed while it waited (its lease expired, another holder or an admin
    /// rebuild took over) and that wakes up late must not offer its old generation over the
    /// newer holder's: the set would name a generation about to be dropped.
    #[tokio::test]
    async fn a_deposed_runner_cannot_offer_its_old_generation_over_a_newer_holders() {
        let views = crate::memory::MemoryViewStore::default();
        let records = Records::new(&views, "p");
        let part = |index| Partition { index, count: 2 };
        let begin = |index: u32, token: u64| {
            let views = &views;
            async move {
                let name = Partition::member_name("p", index, 2);
                views.begin_generation(&name, 1, token).await.unwrap().unwrap().id
            }
        };
        // The old runners (token 1) build and switch the set to their generations.
        let old = [begin(0, 1).await, begin(1, 1).await];
        assert_eq!(records.offer(part(0), 1, old[0], 1).await.unwrap(), Standing::Waiting);
        assert_eq!(records.offer(part(1), 1, old[1], 1).await.unwrap(), Standing::Named);
        // An admin rebuild holding both leases (token 2) switches the set to new generations;
        // the old ones are still in their partitions' status until the grace has passed.
        let new = [begin(0, 2).await, begin(1, 2).await];
        assert_eq!(records.offer_all(1, &new, &[2, 2]).await.unwrap(), Standing::Named);
        // The old runner of partition 0 wakes up and offers its generation again.
        let late = records.offer(part(0), 1, old[0], 1).await;
        assert!(
            matches!(late, Err(Error::Superseded { refusal: Refusal::Fenced { token: 1, highest: 2 }, .. })),
            "{late:?}"
        );
        let set = Records::live_set(&views, "p").await.unwrap().unwrap();
        assert_eq!(set.generations, new.to_vec(), "the set still names the admin's generations");
        // The newer holder offering its own generation again changes nothing.
        assert_eq!(records.offer(part(0), 1, new[0], 2).await.unwrap(), Standing::Named);
        // A later holder (token 3) may record the same generation again under its token.
        assert_eq!(records.offer(part(1), 1, new[1], 3).await.unwrap(), Standing::Named);
        let late = records.offer(part(1), 1, old[1], 2).await;
        assert!(matches!(late, Err(Error::Superseded { .. })), "{late:?}");
    }

    #[test]
    fn a_set_that_names_another_count_of_generations_is_corrupt() {
        let good = r#"{"partitions":2,"version":1,"epoch":1,"generations":[3,4]}"#;
        assert!(PartitionSet::parse("p", good).is_ok());
        for bad in [
            r#"{"partitions":2,"version":1,"epoch":1,"generations":[3]}"#,
            r#"{"partitions":0,"version":1,"epoch":1,"generations":[]}"#,
            r#"{"partitions":"x"}"#,
        ] {
            assert!(matches!(PartitionSet::parse("p", bad), Err(Error::Corrupt { .. })), "{bad}");
        }
    }
}

//! Sharing a partitioned projection's partitions out among the projector processes that run it.
//!
//! Each process holds one *member slot*, a lease named `<name>~member/v<version>/<k>of<N>` for
//! `k` below the number of partitions `N`, taken with [`LeaseManager::try_acquire`]: the lowest
//! free one. Every [`BALANCE_INTERVAL`] it moves to a lower slot found free on two looks in a row
//! (so the slots held stay `0..P`, and a slot free for a moment, its holder's lease check late,
//! moves nothing), and probes the slots above its own: the first free one is the number of
//! processes `P`. A share that differs from the one it has is taken only when two looks in a row
//! agree. Its share is then the partitions `i` with `i % P == k`: ⌊N/P⌋ or ⌈N/P⌉ of the N
//! partitions, every partition in exactly one share once the processes agree on `P`. A process
//! that dies frees its slot (its lease ends with it); one that joins takes the first free one.
//!
//! The slots are per projection version: the processes of a release balance among themselves.
//! While a process of an older version still holds a slot, the processes of a newer one run no
//! partition (they hold their slots and wait): one writer per partition, and the older release
//! keeps every partition's views current until its last process stops, as a whole projection's
//! older runner keeps the lease until it stops. Then the newer release takes every partition,
//! builds them, and switches. Older slots are probed until they have been seen free on
//! [`OLDER_GONE_AFTER`] looks in a row, then no more.
//!
//! The partitions' leases go through [`BalancedLeases`]: a partition waits for its lease only
//! while it is in this process's share, and its lease reports lost when the share moves it away,
//! so its runner stands by after the batch it is writing and the process whose share it joined
//! takes it over from its checkpoint.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use super::partition::Partition;
use crate::Result;
use crate::store::{BoxFuture, Lease, LeaseManager};

/// How often a process looks at the member slots.
pub(crate) const BALANCE_INTERVAL: Duration = Duration::from_secs(1);

/// How many looks in a row must find no process of an older version before this one's run.
const OLDER_GONE_AFTER: u32 = 2;

/// How many of an older version's lowest slots are probed: its live processes hold the lowest
/// slots, so a live process is found in the first ones.
const OLDER_SLOTS_PROBED: u32 = 4;

/// The partitions a process runs: those `i` with `i % members == slot`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Share {
    slot: Option<u32>,
    members: u32,
}

impl Share {
    fn owns(self, index: u32) -> bool {
        self.slot.is_some_and(|slot| index % self.members.max(1) == slot)
    }
}

/// The leases of one partitioned projection's partitions, taken only for the partitions of
/// this process's share (see the module's docs).
pub(crate) struct BalancedLeases {
    inner: Arc<dyn LeaseManager>,
    name: String,
    count: u32,
    share: watch::Receiver<Share>,
    /// The balancer, until the first lease is asked for (it needs a runtime).
    balancer: Mutex<Option<Balancer>>,
    /// Set when this process gives its share up for good.
    retired: watch::Sender<bool>,
}

impl BalancedLeases {
    /// Leases of `count` partitions of projection `name` at `version`, shared out through `inner`.
    pub(crate) fn new(inner: Arc<dyn LeaseManager>, name: &str, version: u32, count: u32) -> Self {
        let (publish, share) = watch::channel(Share { slot: None, members: 1 });
        let retired = watch::Sender::new(false);
        let balancer = Balancer::new(inner.clone(), name, version, count, publish, retired.subscribe());
        BalancedLeases { inner, name: name.to_owned(), count, share, balancer: Mutex::new(Some(balancer)), retired }
    }

    /// Gives this process's share up for good (a partition of it stopped at a newer version:
    /// the processes of the newer release take every partition over).
    pub(crate) fn retire(&self) {
        tracing::warn!(projection = %self.name, "giving up this process's partitions: a newer version runs");
        crate::memory::lock(&self.balancer).take();
        self.retired.send_replace(true);
    }

    fn start(&self) {
        let balancer = crate::memory::lock(&self.balancer).take();
        if let Some(balancer) = balancer {
            tokio::spawn(balancer.run());
        }
    }

    /// The index of the partition stored (and leased) as `member`.
    fn index_of(&self, member: &str) -> Option<u32> {
        (0..self.count).find(|&index| Partition::member_name(&self.name, index, self.count) == member)
    }

    /// `lease`, reported lost also once partition `index` leaves this process's share, and then
    /// given up at once: a runner keeps a lost lease until it gets a new one, and the process
    /// whose share the partition joined must not wait for that (a late write of this one is
    /// fenced off by the token).
    fn gated(&self, index: u32, lease: Lease) -> Lease {
        let (lose, lost) = watch::channel(false);
        let token = lease.token();
        let (mut share, mut held) = (self.share.clone(), lease.lost_signal());
        let watcher = tokio::spawn(async move {
            let moved = share.wait_for(|s| !s.owns(index));
            let gone = held.wait_for(|lost| *lost);
            tokio::select! {
                _ = moved => tracing::info!(partition = index, "the partition moved to another process's share"),
                _ = gone => {}
            }
            lose.send_replace(true);
            drop(lease);
        });
        Lease::new(token, lost, AbortOnDrop(watcher))
    }
}

/// Ends a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl crate::store::DelegateLeaseManager for BalancedLeases {
    type Inner = dyn LeaseManager;
    fn inner(&self) -> &dyn LeaseManager {
        &*self.inner
    }

    fn acquire<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Lease>> {
        Box::pin(async move {
            let Some(index) = self.index_of(name) else { return self.inner.acquire(name).await };
            self.start();
            let mut share = self.share.clone();
            loop {
                if share.wait_for(|s| s.owns(index)).await.is_err() {
                    return Err(crate::Error::Shutdown);
                }
                tokio::select! {
                    lease = self.inner.acquire(name) => {
                        let lease = lease?;
                        if self.share.borrow().owns(index) {
                            return Ok(self.gated(index, lease));
                        }
                    }
                    _ = share.wait_for(|s| !s.owns(index)) => {}
                }
            }
        })
    }

    fn try_acquire<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<Lease>>> {
        Box::pin(async move {
            let Some(index) = self.index_of(name) else { return self.inner.try_acquire(name).await };
            self.start();
            if !self.share.borrow().owns(index) {
                return Ok(None);
            }
            Ok(self.inner.try_acquire(name).await?.map(|lease| self.gated(index, lease)))
        })
    }
}

/// Holds this process's member slot and publishes its share.
struct Balancer {
    leases: Arc<dyn LeaseManager>,
    name: String,
    version: u32,
    count: u32,
    slot: Option<(u32, Lease)>,
    /// The lower slot the last look found free: taken when the next look finds it free again.
    lower_free: Option<u32>,
    /// Looks in a row that found no process of an older version; `None` once there were enough.
    older_clear: Option<u32>,
    publish: watch::Sender<Share>,
    retired: watch::Receiver<bool>,
}

impl Balancer {
    fn new(
        leases: Arc<dyn LeaseManager>,
        name: &str,
        version: u32,
        count: u32,
        publish: watch::Sender<Share>,
        retired: watch::Receiver<bool>,
    ) -> Self {
        let older_clear = (version > 1).then_some(0);
        Balancer {
            leases,
            name: name.to_owned(),
            version,
            count,
            slot: None,
            lower_free: None,
            older_clear,
            publish,
            retired,
        }
    }

    fn slot_name(&self, k: u32) -> String {
        Self::member_slot(&self.name, self.version, k, self.count)
    }

    fn member_slot(name: &str, version: u32, k: u32, count: u32) -> String {
        format!("{name}~member/v{version}/{k}of{count}")
    }

    /// Whether a process of an older version of the projection holds a member slot (probed
    /// until [`OLDER_GONE_AFTER`] looks in a row found none).
    async fn older_running(&mut self) -> Result<bool> {
        let Some(clear) = self.older_clear else { return Ok(false) };
        for version in (1..self.version).rev() {
            for k in 0..self.count.min(OLDER_SLOTS_PROBED) {
                let slot = Self::member_slot(&self.name, version, k, self.count);
                if self.leases.try_acquire(&slot).await?.is_none() {
                    self.older_clear = Some(0);
                    return Ok(true);
                }
            }
        }
        self.older_clear = (clear + 1 < OLDER_GONE_AFTER).then_some(clear + 1);
        if self.older_clear.is_none() {
            tracing::info!(projection = %self.name, version = self.version, "no process of an older version runs: taking the partitions");
        }
        Ok(self.older_clear.is_some())
    }

    async fn run(mut self) {
        // A share seen once, to be taken when the next look sees it again: one look that finds
        // a slot free for a moment (a holder whose lease check ran late, a probe of another
        // process) must not move the partitions about.
        let mut seen: Option<Share> = None;
        let mut first = true;
        loop {
            if self.publish.is_closed() {
                return;
            }
            if *self.retired.borrow() {
                // The slot goes with this task; no partition is this process's any more.
                self.publish.send_replace(Share { slot: None, members: 1 });
                return;
            }
            match self.look().await {
                Ok(share) if !first && share != *self.publish.borrow() && seen != Some(share) => {
                    seen = Some(share);
                }
                Ok(share) => {
                    (first, seen) = (false, None);
                    self.publish.send_if_modified(|now| {
                        let changed = *now != share;
                        if changed {
                            tracing::info!(projection = %self.name, slot = ?share.slot, processes = share.members, "partition share changed");
                        }
                        *now = share;
                        changed
                    });
                }
                Err(error) => tracing::warn!(%error, projection = %self.name, "cannot look at the member slots"),
            }
            let _ = tokio::time::timeout(BALANCE_INTERVAL, self.retired.wait_for(|retired| *retired)).await;
        }
    }

    /// One look at the slots: keep (or take) the lowest free slot, count the processes.
    async fn look(&mut self) -> Result<Share> {
        if self.slot.as_ref().is_some_and(|(_, lease)| lease.is_lost()) {
            self.slot = None;
        }
        let below = self.slot.as_ref().map_or(self.count, |(k, _)| *k);
        let mut free = None;
        for k in 0..below {
            if let Some(lease) = self.leases.try_acquire(&self.slot_name(k)).await? {
                if self.slot.is_none() || self.lower_free == Some(k) {
                    // The old slot (if any) is given up as this one is taken.
                    self.slot = Some((k, lease));
                } else {
                    // Free on this look only, so far: given back, and taken if the next look
                    // finds it free again.
                    free = Some(k);
                }
                break;
            }
        }
        self.lower_free = free;
        let Some(k) = self.slot.as_ref().map(|(k, _)| *k) else {
            // Every slot is held: more processes than partitions; this one runs none.
            return Ok(Share { slot: None, members: self.count });
        };
        if self.older_running().await? {
            // The older release runs every partition until its last process stops.
            return Ok(Share { slot: None, members: 1 });
        }
        let mut members = self.count;
        for j in k + 1..self.count {
            if self.leases.try_acquire(&self.slot_name(j)).await?.is_some() {
                members = j;
                break;
            }
        }
        Ok(Share { slot: Some(k), members })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_cover_every_partition_once_and_differ_by_one_at_most() {
        for count in 1..20u32 {
            for members in 1..=count {
                let shares: Vec<usize> = (0..members)
                    .map(|slot| (0..count).filter(|&i| Share { slot: Some(slot), members }.owns(i)).count())
                    .collect();
                assert_eq!(shares.iter().sum::<usize>(), count as usize);
                let (least, most) = (shares.iter().min().unwrap(), shares.iter().max().unwrap());
                assert!(most - least <= 1, "{count} partitions over {members}: {shares:?}");
            }
        }
        assert!(!Share { slot: None, members: 3 }.owns(0));
    }

    fn balancer(leases: &crate::memory::MemoryLeases, version: u32) -> Balancer {
        let (publish, _) = watch::channel(Share { slot: None, members: 1 });
        let (_, retired) = watch::channel(false);
        Balancer::new(Arc::new(leases.clone()), "p", version, 4, publish, retired)
    }

    async fn hold(leases: &crate::memory::MemoryLeases, slot: &str) -> Lease {
        leases.try_acquire(slot).await.unwrap().expect("the slot is free")
    }

    #[tokio::test]
    async fn a_lower_slot_free_on_one_look_only_moves_nothing() {
        let leases = crate::memory::MemoryLeases::default();
        let first = hold(&leases, "p~member/v1/0of4").await;
        let mut b = balancer(&leases, 1);
        assert_eq!(b.look().await.unwrap(), Share { slot: Some(1), members: 2 });
        // The holder of slot 0 lost its lease for a moment and takes the slot back before the
        // next look: the process on slot 1 stays there.
        drop(first);
        assert_eq!(b.look().await.unwrap(), Share { slot: Some(1), members: 2 }, "moved on one look");
        let again = hold(&leases, "p~member/v1/0of4").await;
        assert_eq!(b.look().await.unwrap(), Share { slot: Some(1), members: 2 });
        // Free on two looks in a row: the slot is taken, and slot 1 given back.
        drop(again);
        assert_eq!(b.look().await.unwrap().slot, Some(1));
        assert_eq!(b.look().await.unwrap(), Share { slot: Some(0), members: 1 });
        assert!(leases.try_acquire("p~member/v1/1of4").await.unwrap().is_some(), "slot 1 given back");
    }

    #[tokio::test]
    async fn a_newer_version_runs_no_partition_while_an_older_process_holds_a_slot() {
        let leases = crate::memory::MemoryLeases::default();
        let older = hold(&leases, "p~member/v1/1of4").await;
        let mut b = balancer(&leases, 2);
        for _ in 0..5 {
            assert_eq!(b.look().await.unwrap(), Share { slot: None, members: 1 }, "an older process runs");
        }
        assert!(leases.try_acquire("p~member/v2/0of4").await.unwrap().is_none(), "its own slot is held");
        drop(older);
        for look in 1..OLDER_GONE_AFTER {
            assert_eq!(b.look().await.unwrap().slot, None, "look {look} after the older process stopped");
        }
        assert_eq!(b.look().await.unwrap(), Share { slot: Some(0), members: 1 });
        // Once gone, older slots are not probed again.
        let _late = hold(&leases, "p~member/v1/0of4").await;
        assert_eq!(b.look().await.unwrap(), Share { slot: Some(0), members: 1 });
    }
}

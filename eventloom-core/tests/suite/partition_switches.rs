//! Partition set switches under handovers and rival partitionings, and handles of partitions that ended (found by a review; each failed before its fix).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use eventloom_core::memory::{MemoryEventStore, MemoryLeases, MemoryViewStore};
use eventloom_core::prelude::*;
use eventloom_core::read::{MemberState, Projector};
use eventloom_core::store::EventStore;
use eventloom_core::store::{LeaseManager, ViewStore};
use eventloom_core::write::Cqrs;
use eventloom_core::{BoxError, Projection, ProjectionOptions};

use crate::domain::{Account, AccountEvent, Balance, deposit, open};
use crate::partitions::ListedBalances;

fn spawn_group(
    projector: Projector<MemoryEventStore>,
    partitions: u32,
) -> (
    eventloom_core::read::MemberHandle,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<eventloom_core::Result<()>>,
) {
    let mut group = projector.group();
    let handle = group.add_with(ListedBalances, ProjectionOptions::new().partitions(partitions));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(group.run(async {
        stopped.await.ok();
    }));
    (handle, stop, run)
}

/// A partitioning (3) whose partitions offered themselves ready before another partitioning (2)
/// switched the set is displaced for good: even once the 2 are stopped and the 3 have caught
/// up with every event, queries keep reading the stopped 2 (stale for ever).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioning_ready_before_another_switch_is_never_made_live() {
    let events = MemoryEventStore::new();
    let views = MemoryViewStore::default();
    let engine = Cqrs::<Account, _>::new(events.clone());
    for n in 0..20 {
        engine.execute(open(&format!("acc-{n}"))).await.unwrap();
    }
    let reader = Reader::<ListedBalances>::new(views.clone()).partitioned();

    // Three partitions, the third held back by the test: the first two catch up and offer.
    let leases_three = MemoryLeases::default();
    let held = leases_three.acquire("listed_balances~2of3").await.unwrap();
    let (three, stop_three, run_three) =
        spawn_group(Projector::new(events.clone(), views.clone()).with_leases(leases_three.clone()), 3);
    let started = std::time::Instant::now();
    while three.parts().iter().filter(|p| p.status().state == MemberState::Running).count() < 2 {
        assert!(started.elapsed() < Duration::from_secs(10), "{:?}", three.status());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Two partitions (another deployment) switch meanwhile.
    let (two, stop_two, run_two) = spawn_group(Projector::new(events.clone(), views.clone()), 2);
    let started = std::time::Instant::now();
    while reader.status().await.map(|s| s.live.is_none()).unwrap_or(true) {
        assert!(started.elapsed() < Duration::from_secs(10), "the two never switched: {:?}", two.status());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The two go away (the rollout finished); the third partition of three is let go.
    stop_two.send(()).unwrap();
    run_two.await.unwrap().unwrap();
    drop(held);

    // New events: only the three run now.
    for n in 0..20 {
        engine.execute(deposit(&format!("acc-{n}"), 1)).await.unwrap();
    }
    let head = events.head().await.unwrap().unwrap();
    let waited = reader.wait_for(head, Duration::from_secs(20)).await;
    let set = views.read_views("listed_balances~partitions", &["set".to_owned()]).await.unwrap();
    eprintln!("set after 20 s: {set:?}; three: {:?}", three.status());
    for p in three.parts() {
        eprintln!("{} {:?}", p.name(), p.status());
    }
    assert!(waited.is_ok(), "the three, caught up and alone, never became what queries read: {waited:?}");
    stop_three.send(()).unwrap();
    run_three.await.unwrap().unwrap();
}

/// A projection that fails on the events of one account.
struct FailsOnAcc0;

impl Projection for FailsOnAcc0 {
    const NAME: &'static str = "fails_on_acc0";
    type Events = Account;
    type View = Balance;

    fn apply(&self, view: &mut Option<Balance>, e: &EventEnvelope<AccountEvent>) -> Result<(), BoxError> {
        if e.stream.id() == "acc-0" {
            return Err("poison".into());
        }
        view.get_or_insert_with(Balance::default).applied += 1;
        Ok(())
    }
}

/// Once one partition's runner has ended (failed on a poison event), `wait_until` on the
/// partitioned handle spins: the ended partition's `changed()` answers at once, every time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_until_does_not_spin_once_one_partition_ended() {
    let events = MemoryEventStore::new();
    let views = MemoryViewStore::default();
    let engine = Cqrs::<Account, _>::new(events.clone());
    for n in 0..20 {
        engine.execute(open(&format!("acc-{n}"))).await.unwrap();
    }
    let mut group = Projector::new(events.clone(), views.clone()).group();
    let handle = group.add_with(FailsOnAcc0, ProjectionOptions::new().partitions(4));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(group.run(async {
        stopped.await.ok();
    }));
    let started = std::time::Instant::now();
    while !handle.parts().iter().any(|p| p.status().state == MemberState::Failed) {
        assert!(started.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let calls = AtomicU64::new(0);
    let _ = tokio::time::timeout(
        Duration::from_secs(1),
        handle.wait_until(|_| {
            calls.fetch_add(1, Ordering::Relaxed);
            false
        }),
    )
    .await;
    let calls = calls.load(Ordering::Relaxed);
    println!("wait_until looked {calls} times in 1 s");
    assert!(calls < 1000, "wait_until spun: {calls} looks in 1 s");
    stop.send(()).unwrap();
    let _ = run.await;
}

/// A view store whose `count_generation` takes `delay` (a slow shard), for a reader.
struct SlowCounts {
    inner: MemoryViewStore,
    delay: std::sync::Mutex<Duration>,
}

use eventloom_core::store::BoxFuture;

impl eventloom_core::store::DelegateViewStore for SlowCounts {
    type Inner = MemoryViewStore;
    fn inner(&self) -> &MemoryViewStore {
        &self.inner
    }
    fn count_generation<'a>(
        &'a self,
        p: &'a str,
        generation: u64,
        keys: &'a [eventloom_core::store::IndexKey],
    ) -> BoxFuture<'a, eventloom_core::Result<Vec<u64>>> {
        Box::pin(async move {
            let delay = *self.delay.lock().unwrap();
            tokio::time::sleep(delay).await;
            self.inner.count_generation(p, generation, keys).await
        })
    }
}

/// [`ListedBalances`] at version 2.
struct ListedBalancesV2;

impl Projection for ListedBalancesV2 {
    const NAME: &'static str = "listed_balances";
    const VERSION: u32 = 2;
    type Events = Account;
    type View = Balance;

    fn index(&self, id: &str, view: &Balance) -> Vec<eventloom_core::IndexEntry> {
        ListedBalances.index(id, view)
    }
    fn apply(&self, view: &mut Option<Balance>, e: &EventEnvelope<AccountEvent>) -> Result<(), BoxError> {
        ListedBalances.apply(view, e)
    }
}

/// A partition whose runner starts over (its lease handed over) just after a switch makes the
/// generation the set names live at once, in `target`, without the switch grace: a query that
/// read the previous set a moment before the switch counts a dropped generation as 0 (and
/// `get`/`list` miss its views), well within half the grace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_that_read_the_set_before_a_switch_never_reads_a_dropped_generation() {
    let events = MemoryEventStore::new();
    let views = MemoryViewStore::default();
    let engine = Cqrs::<Account, _>::new(events.clone());
    for n in 0..20 {
        engine.execute(open(&format!("acc-{n}"))).await.unwrap();
    }
    let all = eventloom_core::store::IndexKey::new("all", "yes");
    // Version 1 in two partitions, then stopped (its views stay live).
    let (_v1, stop_v1, run_v1) = spawn_group(Projector::new(events.clone(), views.clone()), 2);
    let plain = Reader::<ListedBalances>::new(views.clone()).partitioned();
    let started = std::time::Instant::now();
    while plain.status().await.map(|s| s.live.is_none()).unwrap_or(true) {
        assert!(started.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop_v1.send(()).unwrap();
    run_v1.await.unwrap().unwrap();
    assert_eq!(plain.count(std::slice::from_ref(&all)).await.unwrap(), vec![20]);

    // Version 2, partition 1 held back by the test.
    let leases = MemoryLeases::default();
    let held = leases.acquire("listed_balances~1of2").await.unwrap();
    let mut group = Projector::new(events.clone(), views.clone()).with_leases(leases.clone()).group();
    let v2 = group.add_with(ListedBalancesV2, ProjectionOptions::new().partitions(2));
    let (stop_v2, stopped_v2) = tokio::sync::oneshot::channel::<()>();
    let run_v2 = tokio::spawn(group.run(async {
        stopped_v2.await.ok();
    }));
    let started = std::time::Instant::now();
    while v2.parts()[0].status().state != MemberState::Running {
        assert!(started.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A slow query reads the version 1 set now...
    let slow = std::sync::Arc::new(SlowCounts {
        inner: views.clone(),
        delay: std::sync::Mutex::new(Duration::from_millis(1500)),
    });
    let reader = Reader::<ListedBalances>::new(slow.clone()).partitioned();
    let counting = {
        let all = all.clone();
        tokio::spawn(async move { reader.count(&[all]).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    // ...the held partition is let go, catches up and switches the set to version 2...
    drop(held);
    let started = std::time::Instant::now();
    while plain.status().await.unwrap().live.unwrap().version != 2 {
        assert!(started.elapsed() < Duration::from_secs(1), "no switch");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // ...and its runner starts over (its lease handed over, a process restarted).
    if std::env::var("NO_REVOKE").is_err() {
        leases.revoke("listed_balances~1of2");
    }
    let counted = counting.await.unwrap();
    assert_eq!(counted.unwrap(), vec![20], "a query that took 1.5 s (under half the grace) read a dropped generation");
    stop_v2.send(()).unwrap();
    let _ = run_v2.await;
}

//! Projection groups: many projections fed by one read of the log.

use eventloom_core::store::BoxFuture;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eventloom_core::model::{ExpectedVersion, NewEvent, RecordedEvent};
use eventloom_core::prelude::*;
use eventloom_core::{
    BoxError, EventHandler, Projection, ProjectionOptions,
    app::HandlerOptions,
    memory::{MemoryEventStore, MemoryViewStore},
    read::{MemberHandle, MemberState, MemberStatus, PoisonPolicy, Projector, ViewReader},
    store::{EventStore, ViewCommit, ViewStore},
    write::Cqrs,
};
use tokio::sync::oneshot;

use crate::domain::*;

const NAMES: [&str; 8] = ["g0", "g1", "g2", "g3", "g4", "g5", "g6", "g7"];

/// Balances under one of eight names.
struct Member<const N: usize>;

impl<const N: usize> Projection for Member<N> {
    const NAME: &'static str = NAMES[N];
    type Events = Account;
    type View = Balance;
    fn apply(&self, view: &mut Option<Balance>, e: &EventEnvelope<AccountEvent>) -> Result<(), BoxError> {
        Balances.apply(view, e)
    }
}

/// Balances, refusing withdrawals: a withdrawal is a poison event for it.
struct Picky;

impl Projection for Picky {
    const NAME: &'static str = "picky";
    type Events = Account;
    type View = Balance;
    fn apply(&self, view: &mut Option<Balance>, e: &EventEnvelope<AccountEvent>) -> Result<(), BoxError> {
        if let AccountEvent::Withdrawn { .. } = e.event {
            return Err("withdrawals are not supported".into());
        }
        Balances.apply(view, e)
    }
}

/// A new version of `g1`: it rebuilds behind the live views.
struct Rebuilt;

impl Projection for Rebuilt {
    const NAME: &'static str = NAMES[1];
    const VERSION: u32 = 2;
    type Events = Account;
    type View = Balance;
    fn apply(&self, view: &mut Option<Balance>, e: &EventEnvelope<AccountEvent>) -> Result<(), BoxError> {
        Balances.apply(view, e)
    }
}

/// Records the position of every event it handles, under a name of its own.
#[derive(Clone)]
pub(crate) struct Recorder {
    name: &'static str,
    seen: Arc<Mutex<Vec<Position>>>,
}

impl Recorder {
    pub(crate) fn new(name: &'static str) -> Self {
        Recorder { name, seen: Arc::default() }
    }

    pub(crate) fn seen(&self) -> Vec<Position> {
        self.seen.lock().unwrap().clone()
    }
}

impl EventHandler for Recorder {
    const NAME: &'static str = "recorder";
    type Events = Account;

    fn name(&self) -> &str {
        self.name
    }

    async fn handle(&self, e: &EventEnvelope<AccountEvent>) -> Result<(), BoxError> {
        self.seen.lock().map_err(|_| "poisoned")?.push(e.position);
        Ok(())
    }
}

/// A memory event store that counts its reads of the log.
#[derive(Clone, Default)]
pub(crate) struct CountingEvents {
    pub(crate) inner: MemoryEventStore,
    reads: Arc<AtomicUsize>,
}

impl CountingEvents {
    pub(crate) fn reads(&self) -> usize {
        self.reads.load(Ordering::Relaxed)
    }
}

impl eventloom_core::store::DelegateEventStore for CountingEvents {
    type Inner = MemoryEventStore;
    fn inner(&self) -> &MemoryEventStore {
        &self.inner
    }
    fn read_all<'a>(
        &'a self,
        after: Position,
        limit: usize,
    ) -> BoxFuture<'a, eventloom_core::Result<Vec<RecordedEvent>>> {
        Box::pin(async move {
            self.reads.fetch_add(1, Ordering::Relaxed);
            self.inner.read_all(after, limit).await
        })
    }
    fn read_all_bounded<'a>(
        &'a self,
        after: Position,
        limit: usize,
        max_bytes: usize,
    ) -> BoxFuture<'a, eventloom_core::Result<Vec<RecordedEvent>>> {
        Box::pin(async move {
            self.reads.fetch_add(1, Ordering::Relaxed);
            self.inner.read_all_bounded(after, limit, max_bytes).await
        })
    }
}

/// A memory view store whose commits for one projection take `delay` each, counting every
/// projection's commits.
#[derive(Clone)]
struct SlowFor {
    inner: MemoryViewStore,
    slow: &'static str,
    delay: Duration,
    commits: Arc<Mutex<HashMap<String, usize>>>,
}

impl SlowFor {
    fn new(inner: MemoryViewStore, slow: &'static str, delay: Duration) -> Self {
        SlowFor { inner, slow, delay, commits: Arc::default() }
    }

    fn commits(&self) -> HashMap<String, usize> {
        self.commits.lock().unwrap().clone()
    }
}

impl eventloom_core::store::DelegateViewStore for SlowFor {
    type Inner = MemoryViewStore;
    fn inner(&self) -> &MemoryViewStore {
        &self.inner
    }
    fn commit<'a>(
        &'a self,
        p: &'a str,
        commit: ViewCommit,
    ) -> BoxFuture<'a, eventloom_core::Result<eventloom_core::store::Written>> {
        Box::pin(async move {
            if p == self.slow {
                tokio::time::sleep(self.delay).await;
            }
            let committed = self.inner.commit(p, commit).await;
            if committed.is_ok() {
                *self.commits.lock().unwrap().entry(p.to_owned()).or_default() += 1;
            }
            committed
        })
    }
}

const ACCOUNTS: usize = 4;

async fn seed<S: EventStore + Clone>(cqrs: &Cqrs<Account, S>, deposits: u64) {
    for a in 0..ACCOUNTS {
        cqrs.execute(open(&format!("acc-{a}"))).await.unwrap();
    }
    deposit_each(cqrs, 1..=deposits).await;
}

/// Deposits `amounts` into every account, one command each.
async fn deposit_each<S: EventStore + Clone>(cqrs: &Cqrs<Account, S>, amounts: std::ops::RangeInclusive<u64>) {
    for amount in amounts {
        for a in 0..ACCOUNTS {
            cqrs.execute(deposit(&format!("acc-{a}"), amount)).await.unwrap();
        }
    }
}

async fn views_of(views: &(impl ViewStore + Clone), name: &str) -> Vec<Option<Balance>> {
    let reader = ViewReader::<Balance>::new(views.clone(), name);
    let mut all = Vec::new();
    for a in 0..ACCOUNTS {
        all.push(reader.get(&format!("acc-{a}")).await.unwrap());
    }
    all
}

/// What a projection of `name` folds from `events` alone, from the first event.
async fn alone<P: Projection<View = Balance>>(
    events: &(impl EventStore + Clone),
    projection: &P,
) -> Vec<Option<Balance>> {
    let views = MemoryViewStore::default();
    Projector::new(events.clone(), views.clone()).catch_up(projection).await.unwrap();
    views_of(&views, P::NAME).await
}

fn head_of(status: &MemberStatus, head: Position) -> bool {
    status.checkpoint == Some(head)
}

/// Waits until the member wrote `head` and is live.
async fn caught_up(handle: &MemberHandle, head: Position) -> MemberStatus {
    let live = |s: &MemberStatus| head_of(s, head) && s.state == MemberState::Running;
    tokio::time::timeout(Duration::from_secs(20), handle.wait_until(live))
        .await
        .unwrap_or_else(|_| panic!("{} did not catch up: {:?}", handle.name(), handle.status()))
}

fn stop_signal() -> (oneshot::Sender<()>, impl std::future::Future<Output = ()> + Send) {
    let (stop, stopped) = oneshot::channel::<()>();
    (stop, async move { stopped.await.unwrap_or(()) })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_projections_in_a_group_read_the_log_once_and_fold_as_each_does_alone() {
    let events = CountingEvents::default();
    let views = MemoryViewStore::default();
    let cqrs = Cqrs::new(events.clone());
    seed(&cqrs, 5).await;
    let projector = Projector::new(events.clone(), views.clone()).with_batch_size(10);
    let mut group = projector.group();
    let handles = vec![
        group.add(Member::<0>),
        group.add(Member::<1>),
        group.add(Member::<2>),
        group.add(Member::<3>),
        group.add(Member::<4>),
        group.add(Member::<5>),
        group.add(Member::<6>),
        group.add(Member::<7>),
    ];
    let (stop, stopped) = stop_signal();
    let running = tokio::spawn(group.run(stopped));
    let head = events.head().await.unwrap().unwrap();
    for handle in &handles {
        caught_up(handle, head).await;
        tokio::time::timeout(Duration::from_secs(10), handle.wait_until(|s| s.shared)).await.unwrap();
    }
    // Live: every commit is read once for all eight (alone, each would read it).
    let before = events.reads();
    let appends = 25;
    for amount in 6..6 + appends {
        let done = cqrs.execute(deposit(&format!("acc-{}", amount % 4), amount)).await.unwrap();
        for handle in &handles {
            let status = caught_up(handle, done.position).await;
            assert_eq!(status.state, MemberState::Running);
            assert!(status.shared);
        }
    }
    let reads = events.reads() - before;
    assert!(reads <= 3 * appends as usize, "{reads} reads of the log for {appends} appends and 8 projections");
    deposit_each(&cqrs, 31..=40).await;
    let head = events.head().await.unwrap().unwrap();
    for handle in &handles {
        caught_up(handle, head).await;
        assert_eq!(handle.lag(100).await.unwrap(), 0);
    }
    stop.send(()).unwrap();
    running.await.unwrap().unwrap();
    // Each saw every event exactly once, as it does alone.
    let expected = alone(&events.inner, &Member::<0>).await;
    assert_eq!(expected.iter().flatten().map(|v| v.applied).sum::<u64>(), 4 * 6 + appends + 4 * 10);
    for name in NAMES {
        assert_eq!(views_of(&views, name).await, expected, "{name}");
    }
    for handle in &handles {
        assert_eq!(handle.status().state, MemberState::Stopped);
        assert_eq!(handle.status().last_error, None);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_fails_stops_alone_and_the_others_go_on() {
    let events = MemoryEventStore::new();
    let views = MemoryViewStore::default();
    let cqrs = Cqrs::new(events.clone());
    seed(&cqrs, 2).await;
    let projector = Projector::new(events.clone(), views.clone());
    let mut group = projector.group();
    let picky = group.add(Picky);
    let others = [group.add(Member::<0>), group.add(Member::<1>)];
    let (stop, stopped) = stop_signal();
    let running = tokio::spawn(group.run(stopped));
    let withdrawn = cqrs.execute(Withdraw { id: "acc-0".into(), amount: 1 }).await.unwrap();
    let status = tokio::time::timeout(Duration::from_secs(10), picky.wait_until(|s| s.state == MemberState::Failed))
        .await
        .expect("the poison event stops it");
    let error = status.last_error.unwrap();
    assert!(error.contains("withdrawals are not supported"), "{error}");
    assert!(status.checkpoint < Some(withdrawn.position), "its checkpoint stays before the event");
    // The others fold what follows, later on.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!running.is_finished(), "the group goes on");
    deposit_each(&cqrs, 3..=10).await;
    let head = events.head().await.unwrap().unwrap();
    for handle in &others {
        caught_up(handle, head).await;
    }
    assert!(!running.is_finished(), "the group goes on");
    stop.send(()).unwrap();
    running.await.unwrap().unwrap();
    assert_eq!(picky.status().state, MemberState::Failed, "failed, not stopped by the shutdown");
    let expected = alone(&events, &Member::<0>).await;
    assert_eq!(views_of(&views, NAMES[0]).await, expected);
    assert_eq!(views_of(&views, NAMES[1]).await, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_behind_catches_up_alone_then_joins_while_the_others_stay_live() {
    let events = MemoryEventStore::new();
    let inner = MemoryViewStore::default();
    // The rebuilding member writes slowly: its catch-up outlasts what the test appends meanwhile.
    let views = SlowFor::new(inner.clone(), NAMES[1], Duration::from_millis(20));
    let cqrs = Cqrs::new(events.clone());
    seed(&cqrs, 50).await;
    let projector = Projector::new(events.clone(), views.clone()).with_batch_size(5);
    // g0 and g1 (version 1) are live at the head; then g1's version 2 has to rebuild.
    Projector::new(events.clone(), inner.clone()).catch_up(&Member::<0>).await.unwrap();
    Projector::new(events.clone(), inner.clone()).catch_up(&Member::<1>).await.unwrap();
    let mut group = projector.group();
    let live = group.add(Member::<0>);
    let rebuilding = group.add(Rebuilt);
    let (stop, stopped) = stop_signal();
    let running = tokio::spawn(group.run(stopped));
    let status =
        tokio::time::timeout(Duration::from_secs(10), rebuilding.wait_until(|s| s.state == MemberState::Building))
            .await
            .unwrap();
    assert!(!status.shared, "a member building reads on its own");
    assert!(rebuilding.lag(1_000).await.unwrap() > 0);
    // Meanwhile the live member follows the log at once.
    let done = cqrs.execute(deposit("acc-0", 1_000)).await.unwrap();
    let status = tokio::time::timeout(Duration::from_secs(2), live.wait_until(|s| s.checkpoint == Some(done.position)))
        .await
        .expect("a member behind does not hold the others back");
    assert!(status.shared);
    assert_eq!(rebuilding.status().state, MemberState::Building, "still building");
    // The rebuilt member goes live, then joins the shared read.
    deposit_each(&cqrs, 51..=52).await;
    let head = events.head().await.unwrap().unwrap();
    caught_up(&rebuilding, head).await;
    let status = tokio::time::timeout(Duration::from_secs(10), rebuilding.wait_until(|s| s.shared)).await.unwrap();
    assert_eq!(status.state, MemberState::Running);
    let done = cqrs.execute(deposit("acc-1", 1)).await.unwrap();
    let status = caught_up(&rebuilding, done.position).await;
    assert!(status.shared, "fed by the shared read");
    assert_eq!(rebuilding.lag(10).await.unwrap(), 0);
    stop.send(()).unwrap();
    running.await.unwrap().unwrap();
    let expected = alone(&events, &Member::<0>).await;
    assert_eq!(views_of(&inner, NAMES[0]).await, expected);
    assert_eq!(views_of(&inner, NAMES[1]).await, expected);
    assert_eq!(inner.status(NAMES[1]).await.unwrap().live.unwrap().version, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_member_is_let_go_and_catches_up_on_its_own() {
    let events = MemoryEventStore::new();
    let inner = MemoryViewStore::default();
    let views = SlowFor::new(inner.clone(), NAMES[1], Duration::from_millis(30));
    let cqrs = Cqrs::new(events.clone());
    seed(&cqrs, 1).await;
    let projector = Projector::new(events.clone(), views.clone()).with_batch_size(4);
    let mut group = projector.group().with_member_buffer(2);
    let fast = group.add(Member::<0>);
    let slow = group.add(Member::<1>);
    let (stop, stopped) = stop_signal();
    let running = tokio::spawn(group.run(stopped));
    let head = events.head().await.unwrap().unwrap();
    for handle in [&fast, &slow] {
        caught_up(handle, head).await;
        tokio::time::timeout(Duration::from_secs(10), handle.wait_until(|s| s.shared)).await.unwrap();
    }
    // A burst: the slow member needs at least 30 ms for each of its batches.
    let burst = tokio::time::Instant::now();
    deposit_each(&cqrs, 2..=61).await;
    let head = events.head().await.unwrap().unwrap();
    caught_up(&fast, head).await;
    let fast_took = burst.elapsed();
    let behind = slow.lag(1_000).await.unwrap();
    assert!(behind >= 120, "the fast member did not wait for the slow one: {behind} of 240 left");
    caught_up(&slow, head).await;
    assert!(burst.elapsed() > fast_took);
    tokio::time::timeout(Duration::from_secs(10), slow.wait_until(|s| s.shared)).await.expect("joins again");
    stop.send(()).unwrap();
    running.await.unwrap().unwrap();
    let expected = alone(&events, &Member::<0>).await;
    assert_eq!(views_of(&inner, NAMES[0]).await, expected);
    assert_eq!(views_of(&inner, NAMES[1]).await, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_every_member_after_its_batch_and_a_restart_resumes() {
    let events = MemoryEventStore::new();
    let inner = MemoryViewStore::default();
    let views = SlowFor::new(inner.clone(), NAMES[0], Duration::from_millis(20));
    let cqrs = Cqrs::new(events.clone());
    seed(&cqrs, 100).await;
    let projector = Projector::new(events.clone(), views.clone()).with_batch_size(10);
    let mut group = projector.group();
    let slow = group.add(Member::<0>);
    let fast = group.add(Member::<1>);
    let (stop, stopped) = stop_signal();
    let running = tokio::spawn(group.run(stopped));
    tokio::time::timeout(Duration::from_secs(10), slow.wait_until(|s| s.checkpoint.is_some())).await.unwrap();
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(2), running).await.expect("stops after the batch").unwrap().unwrap();
    let head = events.head().await.unwrap().unwrap();
    let stopped_at = inner.status(NAMES[0]).await.unwrap().live.map(|g| g.checkpoint);
    assert!(slow.status().checkpoint < Some(head), "shut down while far behind");
    assert_eq!(slow.status().state, MemberState::Stopped);
    assert_eq!(fast.status().state, MemberState::Stopped);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(inner.status(NAMES[0]).await.unwrap().live.map(|g| g.checkpoint), stopped_at, "nothing ran on");
    // A new group resumes from the checkpoints, applying nothing twice.
    let mut group = projector.group();
    let handles = [group.add(Member::<0>), group.add(Member::<1>)];
    let (stop, stopped) = stop_signal();
    let running = tokio::spawn(group.run(stopped));
    for handle in &handles {
        caught_up(handle, head).await;
    }
    stop.send(()).unwrap();
    running.await.unwrap().unwrap();
    let expected = alone(&events, &Member::<0>).await;
    assert_eq!(views_of(&inner, NAMES[0]).await, expected);
    assert_eq!(views_of(&inner, NAMES[1]).await, expected);
}

#[tokio::test]
async fn a_group_with_two_members_of_one_name_is_refused() {
    let projector = Projector::new(MemoryEventStore::new(), MemoryViewStore::default());
    let mut group = projector.group();
    group.add(Member::<0>);
    group.add(Member::<0>);
    let error = group.run(std::future::pending()).await.unwrap_err();
    assert!(
        matches!(&error, Error::InvalidConfig { reason } if reason.contains("name g0 is in the group twice")),
        "{error:?}"
    );
}

/// Every event of the log, in order.
async fn every_position(events: &MemoryEventStore) -> Vec<Position> {
    events.read_all(Position::ZERO, 100_000).await.unwrap().iter().map(|e| e.position).collect()
}

/// Appends `n` deposits to one account in one append: one batch of the shared read.
async fn one_append_of(events: &MemoryEventStore, n: u64) -> Position {
    let stream = StreamId::new("account", "acc-0").unwrap();
    let deposits = (1..=n)
        .map(|amount| NewEvent::encode(&AccountEvent::Deposited { amount }, Metadata::default()).unwrap())
        .collect();
    events.append(&stream, ExpectedVersion::Any, deposits).await.unwrap().outcome().position
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handlers_and_members_with_options_share_the_read_of_the_log_each_writing_its_own_batches() {
    let events = CountingEvents::default();
    let views = SlowFor::new(MemoryViewStore::default(), "none", Duration::ZERO);
    let cqrs = Cqrs::new(events.clone());
    seed(&cqrs, 5).await;
    let projector = Projector::new(events.clone(), views.clone()).with_batch_size(10);
    let mut group = projector.group();
    let (first, second) = (Recorder::new("r1"), Recorder::new("r2"));
    let handles = vec![
        group.add(Member::<0>),
        group.add_with(Member::<1>, ProjectionOptions::new().batch_size(3)),
        group.add_with(Member::<2>, ProjectionOptions::new().batch_size(20).poison_policy(PoisonPolicy::DeadLetter)),
        group.add_handler(first.clone()),
        group.add_handler_with(second.clone(), HandlerOptions::new().batch_size(3)),
    ];
    let (stop, stopped) = stop_signal();
    let running = tokio::spawn(group.run(stopped));
    let head = events.head().await.unwrap().unwrap();
    for handle in &handles {
        caught_up(handle, head).await;
        tokio::time::timeout(Duration::from_secs(10), handle.wait_until(|s| s.shared)).await.unwrap();
    }
    // Live: every commit is read once for all five (alone, each would read it at least once).
    let before = events.reads();
    let appends = 20;
    for amount in 6..6 + appends {
        let done = cqrs.execute(deposit(&format!("acc-{}", amount % 4), amount)).await.unwrap();
        for handle in &handles {
            assert!(caught_up(handle, done.position).await.shared, "{}", handle.name());
        }
    }
    let reads = events.reads() - before;
    assert!(reads <= 3 * appends as usize, "{reads} reads of the log for {appends} appends and 5 members");

    // One append of 20 events is one batch of the shared read (as large as the largest batch
    // size); each member writes it in batches of its own size.
    let commits = views.commits();
    let head = one_append_of(&events.inner, 20).await;
    for handle in &handles {
        assert!(caught_up(handle, head).await.shared, "{}", handle.name());
    }
    let after = views.commits();
    let written: Vec<usize> = ["g0", "g1", "g2", "r1", "r2"].iter().map(|n| after[*n] - commits[*n]).collect();
    assert_eq!(written, vec![2, 7, 1, 2, 7], "batches of 10, 3, 20, 10 and 3 events");
    stop.send(()).unwrap();
    running.await.unwrap().unwrap();

    // Each folded or handled every event exactly once.
    let expected = alone(&events.inner, &Member::<0>).await;
    for name in &NAMES[..3] {
        assert_eq!(views_of(&views.inner, name).await, expected, "{name}");
    }
    let every = every_position(&events.inner).await;
    assert_eq!(first.seen(), every);
    assert_eq!(second.seen(), every);
    for handle in &handles {
        assert_eq!(handle.status().state, MemberState::Stopped);
        assert_eq!(handle.status().last_error, None);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_with_a_poison_policy_of_its_own_dead_letters_and_stays_in_the_shared_read() {
    let events = MemoryEventStore::new();
    let views = MemoryViewStore::default();
    let cqrs = Cqrs::new(events.clone());
    seed(&cqrs, 2).await;
    let projector = Projector::new(events.clone(), views.clone());
    let mut group = projector.group();
    let picky = group.add_with(Picky, ProjectionOptions::new().poison_policy(PoisonPolicy::DeadLetter));
    let other = group.add(Member::<0>);
    let (stop, stopped) = stop_signal();
    let running = tokio::spawn(group.run(stopped));
    let head = events.head().await.unwrap().unwrap();
    for handle in [&picky, &other] {
        caught_up(handle, head).await;
        tokio::time::timeout(Duration::from_secs(10), handle.wait_until(|s| s.shared)).await.unwrap();
    }
    let withdrawn = cqrs.execute(Withdraw { id: "acc-0".into(), amount: 1 }).await.unwrap();
    let done = cqrs.execute(deposit("acc-0", 7)).await.unwrap();
    for handle in [&picky, &other] {
        let status = caught_up(handle, done.position).await;
        assert!(status.shared, "{}: still fed by the shared read", handle.name());
    }
    let letters = views.dead_letters(Picky::NAME).await.unwrap();
    assert_eq!(letters.iter().map(|d| d.position).collect::<Vec<_>>(), vec![withdrawn.position]);
    stop.send(()).unwrap();
    running.await.unwrap().unwrap();
    let balance = ViewReader::<Balance>::new(views.clone(), Picky::NAME).get("acc-0").await.unwrap().unwrap();
    let everything = ViewReader::<Balance>::new(views.clone(), NAMES[0]).get("acc-0").await.unwrap().unwrap();
    assert_eq!(balance.balance, everything.balance + 1, "the withdrawal was skipped");
}

#[tokio::test]
async fn a_handler_and_a_projection_of_one_name_are_refused_in_a_group() {
    let projector = Projector::new(MemoryEventStore::new(), MemoryViewStore::default());
    let mut group = projector.group();
    group.add(Member::<0>);
    group.add_handler(Recorder::new("g0"));
    let error = group.run(std::future::pending()).await.unwrap_err();
    assert!(
        matches!(&error, Error::InvalidConfig { reason } if reason.contains("name g0 is in the group twice")),
        "{error:?}"
    );
}

/// A feed closed under the runner: every read answers `Error::Shutdown`, as a feed or store
/// shutting down would.
struct ClosedFeed;

struct ClosedReader;

impl eventloom_core::read::Feed for ClosedFeed {
    type Reader = ClosedReader;

    fn read_after(&self, _: Position, _: usize, _: usize) -> ClosedReader {
        ClosedReader
    }

    fn count_after<'a>(&'a self, _: Position, _: u64) -> BoxFuture<'a, eventloom_core::Result<u64>> {
        Box::pin(async { Ok(0) })
    }
}

impl eventloom_core::read::FeedReader for ClosedReader {
    fn try_next_batch<'a>(&'a mut self) -> BoxFuture<'a, eventloom_core::Result<Option<Vec<RecordedEvent>>>> {
        Box::pin(async { Err(Error::Shutdown) })
    }

    fn next_batch<'a>(&'a mut self) -> BoxFuture<'a, eventloom_core::Result<Vec<RecordedEvent>>> {
        Box::pin(async { Err(Error::Shutdown) })
    }

    fn is_behind(&self) -> bool {
        false
    }
}

#[tokio::test]
async fn a_shutdown_error_of_the_feed_fails_the_member_rather_than_stopping_it_cleanly() {
    let projector = Projector::new(MemoryEventStore::new(), MemoryViewStore::default());
    let mut group = projector.group_fed_by(ClosedFeed);
    let member = group.add(Member::<0>);
    // The group is never told to shut down: a member ending is its own failure.
    let ended = tokio::time::timeout(Duration::from_secs(10), group.run(std::future::pending())).await;
    let error = ended.expect("the member ends on its own").unwrap_err();
    assert!(matches!(error, Error::Shutdown), "{error:?}");
    let status = member.status();
    assert_eq!(status.state, MemberState::Failed, "a failure, not a clean stop: {status:?}");
    assert!(status.last_error.is_some(), "{status:?}");
}

//! The admin operations (`AppBuilder::operations`) on memory stores.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eventloom_core::memory::{MemoryLeases, MemoryViewStore};
use eventloom_core::model::{ExpectedVersion, NewEvent, Timestamp};
use eventloom_core::prelude::*;
use eventloom_core::{
    AggregateOptions, App, BoxError, Error, EventHandler, MemoryStores, Position, Projection, ProjectionOptions,
    Reader, Stores,
    app::{Operations, RebuildProgress},
    read::PoisonPolicy,
    store::{
        self, BoxFuture, DeadLetterSelection, EventStore, Lease, LeaseHolder, LeaseManager, ViewCommit, ViewStore,
        Written,
    },
    write::{AsOf, Upcasters},
};

use crate::domain::{Account, AccountEvent, Balance, Balances};

/// Appends `events` to account `id`'s stream; answers their positions.
async fn append(memory: &MemoryStores, id: &str, events: &[AccountEvent]) -> Vec<Position> {
    let stream = StreamId::new("account", id).unwrap();
    let mut positions = Vec::new();
    for event in events {
        let new = NewEvent::encode(event, Metadata::default()).unwrap();
        let appended = memory.events.append(&stream, ExpectedVersion::Any, vec![new]).await.unwrap();
        positions.push(appended.outcome().position);
    }
    positions
}

fn opened() -> AccountEvent {
    AccountEvent::Opened { owner: "Ada".into() }
}

fn deposited(amount: u64) -> AccountEvent {
    AccountEvent::Deposited { amount }
}

async fn balance(memory: &MemoryStores, projection: &str, id: &str) -> Option<Balance> {
    let views = memory.views.read_views(projection, &[id.to_owned()]).await.unwrap();
    views[0].as_deref().map(|json| serde_json::from_str(json).unwrap())
}

fn balances(memory: &MemoryStores) -> Operations {
    App::builder(memory.clone()).aggregate::<Account>().projection(Balances).operations().unwrap()
}

#[tokio::test]
async fn projections_are_listed_and_reported_before_and_after_a_rebuild() {
    let memory = MemoryStores::new();
    let positions = append(&memory, "a", &[opened(), deposited(5), deposited(7)]).await;
    struct Mail;
    impl EventHandler for Mail {
        const NAME: &'static str = "mail";
        type Events = Account;
        async fn handle(&self, _: &EventEnvelope<AccountEvent>) -> Result<(), BoxError> {
            Ok(())
        }
    }
    let ops =
        App::builder(memory.clone()).aggregate::<Account>().projection(Balances).handler(Mail).operations().unwrap();
    let listed: Vec<_> = ops.projections().into_iter().map(|p| (p.name, p.kind, p.version)).collect();
    assert_eq!(
        listed,
        vec![("balances".to_owned(), "projection", Some(1)), ("mail".to_owned(), "event handler", None)]
    );
    // Nothing ran: nothing is built, every event lags.
    let before = ops.report("balances").await.unwrap();
    assert_eq!((before.live.as_ref(), before.checkpoint, before.lag_events), (None, None, 3));
    assert!(before.lease.is_none(), "never taken");
    assert!(before.lag_seconds >= 0.0);
    assert!(matches!(ops.report("nope").await, Err(Error::UnknownProjection { name })if name == "nope"));
    assert!(matches!(ops.rebuild("nope", |_| {}).await, Err(Error::UnknownProjection { .. })));
    assert!(matches!(ops.rebuild("mail", |_| {}).await, Err(Error::Unsupported { .. })));

    let mut seen = Vec::new();
    let checkpoint = ops.rebuild("balances", |p| seen.push(p)).await.unwrap();
    assert_eq!(checkpoint, Some(positions[2]));
    assert!(matches!(seen.first(), Some(RebuildProgress::Started { total: 3, .. })), "{seen:?}");
    match seen.last() {
        Some(RebuildProgress::Batch { checkpoint, done: 3, total: 3, .. }) => {
            assert_eq!(*checkpoint, Some(positions[2]))
        }
        other => panic!("the last progress is the last batch: {other:?}"),
    }
    assert_eq!(balance(&memory, "balances", "a").await.map(|b| b.balance), Some(12));
    let after = ops.report("balances").await.unwrap();
    assert_eq!((after.checkpoint, after.head, after.lag_events, after.lag_seconds), (checkpoint, checkpoint, 0, 0.0));
    assert_eq!(after.live.as_ref().map(|g| g.version), Some(1));
    let lease = after.lease.expect("the rebuild took the lease");
    assert!(!lease.held, "released after the rebuild");
    assert_eq!(lease.holder.map(|h| h.pid), Some(LeaseHolder::this_process().pid));
    // A projection the store holds but the app does not register is reported too.
    let other = App::builder(memory.clone()).operations().unwrap();
    assert_eq!(other.report("balances").await.unwrap().checkpoint, checkpoint);
}

#[tokio::test]
async fn a_rebuild_waits_for_the_lease_reports_its_holder_and_keeps_the_live_views_readable() {
    let memory = MemoryStores::new();
    append(&memory, "a", &[opened(), deposited(5)]).await;
    let ops = Arc::new(balances(&memory));
    ops.rebuild("balances", |_| {}).await.unwrap();
    append(&memory, "a", &[deposited(1)]).await;
    // Another runner leads.
    let held = memory.leases.acquire("balances").await.unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let rebuild = {
        let (ops, seen) = (ops.clone(), seen.clone());
        tokio::spawn(async move { ops.rebuild("balances", move |p| seen.lock().unwrap().push(p)).await })
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let holder = loop {
        let first = seen.lock().unwrap().first().cloned();
        if let Some(progress) = first {
            break progress;
        }
        assert!(tokio::time::Instant::now() < deadline, "no progress while waiting for the lease");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    match holder {
        RebuildProgress::WaitingForLease { holder: Some(info), .. } => {
            assert!(info.held);
            assert_eq!(info.token, held.token());
            assert_eq!(info.holder.map(|h| h.pid), Some(std::process::id()));
        }
        other => panic!("waits for the lease first, naming its holder: {other:?}"),
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!rebuild.is_finished(), "waits while another holds the lease");
    assert_eq!(balance(&memory, "balances", "a").await.map(|b| b.balance), Some(5), "the live views are read");
    let token = held.token();
    drop(held);
    let checkpoint = tokio::time::timeout(Duration::from_secs(10), rebuild).await.unwrap().unwrap().unwrap();
    assert_eq!(checkpoint, memory.events.head().await.unwrap());
    let seen = seen.lock().unwrap().clone();
    let started = seen.iter().find_map(|p| match p {
        RebuildProgress::Started { token, .. } => Some(*token),
        _ => None,
    });
    assert!(started > Some(token), "writes with a newer token: {seen:?}");
    assert_eq!(balance(&memory, "balances", "a").await.map(|b| b.balance), Some(6), "switched once caught up");
}

/// Fails on every deposit while `broken`.
struct Flaky {
    broken: Arc<AtomicBool>,
}

impl Projection for Flaky {
    const NAME: &'static str = "flaky";
    type Events = Account;
    type View = Balance;

    fn apply(&self, view: &mut Option<Balance>, e: &EventEnvelope<AccountEvent>) -> Result<(), BoxError> {
        if matches!(e.event, AccountEvent::Deposited { .. }) && self.broken.load(Ordering::SeqCst) {
            return Err("a bug in the projection".into());
        }
        Balances.apply(view, e)
    }
}

fn flaky(memory: &MemoryStores, broken: &Arc<AtomicBool>) -> Operations {
    let options = ProjectionOptions::new().poison_policy(PoisonPolicy::DeadLetter);
    App::builder(memory.clone())
        .aggregate::<Account>()
        .projection_with(Flaky { broken: broken.clone() }, options)
        .operations()
        .unwrap()
}

#[tokio::test]
async fn dead_letters_retried_after_the_fix_leave_and_their_events_apply() {
    let memory = MemoryStores::new();
    let broken = Arc::new(AtomicBool::new(true));
    let ops = flaky(&memory, &broken);
    let positions = append(&memory, "a", &[opened(), deposited(5), deposited(7)]).await;
    ops.rebuild("flaky", |_| {}).await.unwrap();
    assert_eq!(ops.report("flaky").await.unwrap().dead_letters, 2);
    assert_eq!(balance(&memory, "flaky", "a").await.map(|b| b.balance), Some(0));

    // Still broken: they fail again and stay.
    let again = ops.retry_dead_letters("flaky", &DeadLetterSelection::All).await.unwrap();
    assert_eq!((again.retried, again.succeeded, again.failed.len()), (2, 0, 2));
    assert_eq!(memory.views.dead_letters("flaky").await.unwrap().len(), 2);
    assert!(again.failed[0].reason.contains("a bug"), "{:?}", again.failed);

    broken.store(false, Ordering::SeqCst);
    let first = ops.retry_dead_letters("flaky", &DeadLetterSelection::At(vec![positions[1]])).await.unwrap();
    assert_eq!((first.retried, first.succeeded), (1, 1));
    assert_eq!(balance(&memory, "flaky", "a").await.map(|b| b.balance), Some(5));
    let rest = ops.retry_dead_letters("flaky", &DeadLetterSelection::All).await.unwrap();
    assert_eq!((rest.retried, rest.succeeded), (1, 1));
    assert!(memory.views.dead_letters("flaky").await.unwrap().is_empty());
    assert_eq!(balance(&memory, "flaky", "a").await.map(|b| b.balance), Some(12));
    let report = ops.report("flaky").await.unwrap();
    assert_eq!((report.dead_letters, report.checkpoint), (0, Some(positions[2])), "the checkpoint stays");
    let none = ops.retry_dead_letters("flaky", &DeadLetterSelection::All).await.unwrap();
    assert_eq!(none.retried, 0);
}

/// A memory view store whose commits fail, as a store that drops the connection (or a process
/// that dies) before the write would: nothing is written. The next commit after `failing` is
/// set when `once`, else every commit while it is set; to one projection (a partition) alone
/// with `only`.
struct FailingCommit {
    inner: MemoryViewStore,
    failing: Arc<AtomicBool>,
    once: bool,
    only: Option<&'static str>,
}

impl FailingCommit {
    /// Fails the next commit once `failing` is set.
    fn next(inner: MemoryViewStore, failing: Arc<AtomicBool>) -> Self {
        FailingCommit { inner, failing, once: true, only: None }
    }

    /// Fails every commit to `projection` while `failing` is set.
    fn to(inner: MemoryViewStore, projection: &'static str, failing: Arc<AtomicBool>) -> Self {
        FailingCommit { inner, failing, once: false, only: Some(projection) }
    }

    fn fails(&self, projection: &str) -> bool {
        self.only.is_none_or(|only| only == projection)
            && if self.once { self.failing.swap(false, Ordering::SeqCst) } else { self.failing.load(Ordering::SeqCst) }
    }
}

impl store::DelegateViewStore for FailingCommit {
    type Inner = MemoryViewStore;
    fn inner(&self) -> &MemoryViewStore {
        &self.inner
    }
    fn commit<'a>(&'a self, p: &'a str, commit: ViewCommit) -> BoxFuture<'a, eventloom_core::Result<Written>> {
        Box::pin(async move {
            if self.fails(p) {
                return Err(Error::unavailable_msg("the connection dropped before the commit"));
            }
            self.inner.commit(p, commit).await
        })
    }
}

/// A retry runs the registered release's `apply` among the live views: views of another
/// projection version (a rolling upgrade's other release built them) are refused, unchanged.
#[tokio::test]
async fn a_retry_by_another_release_than_the_live_views_is_refused_and_changes_nothing() {
    let memory = MemoryStores::new();
    let broken = Arc::new(AtomicBool::new(true));
    let v1 = flaky(&memory, &broken);
    let v2 = App::builder(memory.clone())
        .aggregate::<Account>()
        .projection_with(
            FlakyV2 { broken: broken.clone() },
            ProjectionOptions::new().poison_policy(PoisonPolicy::DeadLetter),
        )
        .operations()
        .unwrap();
    append(&memory, "a", &[opened(), deposited(5), deposited(7)]).await;
    v1.rebuild("flaky", |_| {}).await.unwrap();
    broken.store(false, Ordering::SeqCst);
    let letters = memory.views.dead_letters("flaky").await.unwrap();
    assert_eq!(letters.len(), 2);

    // The newer release, over the older one's live views.
    let newer = v2.retry_dead_letters("flaky", &DeadLetterSelection::All).await;
    assert!(matches!(&newer, Err(Error::Unsupported { reason, .. }) if reason.contains("version 1")), "{newer:?}");
    assert_eq!(memory.views.dead_letters("flaky").await.unwrap(), letters);
    assert_eq!(balance(&memory, "flaky", "a").await.map(|b| b.balance), Some(0));

    // The older release, over the newer one's live views.
    broken.store(true, Ordering::SeqCst);
    v2.rebuild("flaky", |_| {}).await.unwrap();
    broken.store(false, Ordering::SeqCst);
    let letters = memory.views.dead_letters("flaky").await.unwrap();
    assert_eq!(letters.len(), 2);
    let older = v1.retry_dead_letters("flaky", &DeadLetterSelection::All).await;
    assert!(matches!(older, Err(Error::NewerVersion { running: 1, stored: 2, .. })), "{older:?}");
    assert_eq!(memory.views.dead_letters("flaky").await.unwrap(), letters);
    assert_eq!(balance(&memory, "flaky", "a").await.map(|b| b.balance), Some(0));

    let same = v2.retry_dead_letters("flaky", &DeadLetterSelection::All).await.unwrap();
    assert_eq!((same.retried, same.succeeded), (2, 2));
    assert_eq!(balance(&memory, "flaky", "a").await.map(|b| b.balance), Some(12));
}

#[tokio::test]
async fn a_retry_whose_commit_fails_keeps_the_dead_letters_and_changes_no_view() {
    let memory = MemoryStores::new();
    let fail_next = Arc::new(AtomicBool::new(false));
    let failing = FailingCommit::next(memory.views.clone(), fail_next.clone());
    let broken = Arc::new(AtomicBool::new(true));
    let ops = App::builder(Stores::from(memory.clone()).with_views(failing))
        .aggregate::<Account>()
        .projection_with(
            Flaky { broken: broken.clone() },
            ProjectionOptions::new().poison_policy(PoisonPolicy::DeadLetter),
        )
        .operations()
        .unwrap();
    let positions = append(&memory, "a", &[opened(), deposited(5), deposited(7)]).await;
    ops.rebuild("flaky", |_| {}).await.unwrap();
    let letters = memory.views.dead_letters("flaky").await.unwrap();
    assert_eq!(letters.len(), 2);

    // Fixed, but the retry's write fails.
    broken.store(false, Ordering::SeqCst);
    fail_next.store(true, Ordering::SeqCst);
    match ops.retry_dead_letters("flaky", &DeadLetterSelection::All).await {
        Err(error) => assert!(error.is_transient(), "{error:?}"),
        Ok(outcome) => panic!("the commit failed, the retry cannot succeed: {outcome:?}"),
    }
    assert_eq!(memory.views.dead_letters("flaky").await.unwrap(), letters, "the dead letters stay");
    assert_eq!(balance(&memory, "flaky", "a").await.map(|b| b.balance), Some(0), "no view changed");

    // Run again: they apply, once, and leave.
    let retry = ops.retry_dead_letters("flaky", &DeadLetterSelection::All).await.unwrap();
    assert_eq!((retry.retried, retry.succeeded), (2, 2));
    assert!(memory.views.dead_letters("flaky").await.unwrap().is_empty());
    assert_eq!(balance(&memory, "flaky", "a").await.map(|b| b.balance), Some(12));
    assert_eq!(ops.report("flaky").await.unwrap().checkpoint, Some(positions[2]), "the checkpoint stays");
}

#[tokio::test]
async fn dead_letters_skipped_go_without_applying() {
    let memory = MemoryStores::new();
    let broken = Arc::new(AtomicBool::new(true));
    let ops = flaky(&memory, &broken);
    let positions = append(&memory, "a", &[opened(), deposited(5), deposited(7)]).await;
    ops.rebuild("flaky", |_| {}).await.unwrap();
    let at = DeadLetterSelection::At(vec![positions[2]]);
    assert_eq!(ops.skip_dead_letters("flaky", &at).await.unwrap(), 1);
    let left = memory.views.dead_letters("flaky").await.unwrap();
    assert_eq!(left.iter().map(|l| l.position).collect::<Vec<_>>(), vec![positions[1]]);
    assert_eq!(ops.skip_dead_letters("flaky", &DeadLetterSelection::All).await.unwrap(), 1);
    assert_eq!(ops.skip_dead_letters("flaky", &DeadLetterSelection::All).await.unwrap(), 0);
    assert_eq!(balance(&memory, "flaky", "a").await.map(|b| b.balance), Some(0), "nothing applied");
    assert!(matches!(
        ops.skip_dead_letters("nope", &DeadLetterSelection::All).await,
        Err(Error::UnknownProjection { .. })
    ));
}

#[tokio::test]
async fn a_reset_starts_the_new_generation_after_the_position() {
    let memory = MemoryStores::new();
    let positions = append(&memory, "a", &[opened(), deposited(5), deposited(7), deposited(11)]).await;
    let ops = balances(&memory);
    ops.rebuild("balances", |_| {}).await.unwrap();
    assert_eq!(balance(&memory, "balances", "a").await.map(|b| b.balance), Some(23));
    let mut seen = Vec::new();
    let checkpoint = ops.reset("balances", positions[1], |p| seen.push(p)).await.unwrap();
    assert_eq!(checkpoint, Some(positions[3]));
    assert!(matches!(seen.first(), Some(RebuildProgress::Started { total: 2, after: Some(_), .. })), "{seen:?}");
    let view = balance(&memory, "balances", "a").await.unwrap();
    assert_eq!((view.balance, view.applied, view.version), (18, 2, 4), "only the events after the position");
}

#[tokio::test]
async fn the_partition_set_record_is_refused_by_name() {
    let memory = MemoryStores::new();
    let ops = App::builder(memory)
        .aggregate::<Account>()
        .projection_with(Balances, ProjectionOptions::new().partitions(3))
        .operations()
        .unwrap();
    assert_eq!(ops.projections()[0].partitions, 3);
    // The partition set is the framework's own: removing "its" dead letters under a lease of its
    // name would fence off the partitions' writes of it.
    assert!(matches!(
        ops.skip_dead_letters("balances~partitions", &DeadLetterSelection::All).await,
        Err(Error::Unsupported { .. })
    ));
    // A partition's name that the app does not register (another number of partitions).
    assert!(matches!(
        ops.retry_dead_letters("balances~1of4", &DeadLetterSelection::All).await,
        Err(Error::UnknownProjection { .. })
    ));
    assert!(matches!(ops.rebuild("balances~1of3", |_| {}).await, Err(Error::UnknownProjection { .. })));
}

/// What the partitioned projections of the tests below stamp their views with: the "code" that
/// builds them (a rebuild after a fix changes it, and so every view it writes).
static STAMP: AtomicU64 = AtomicU64::new(1);

/// How long [`Stamped`] takes per event once stamped 2 (the rebuild): the live set is read
/// meanwhile.
const SLOW: Duration = Duration::from_millis(2);

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct StampedView {
    balance: u64,
    stamp: u64,
}

/// Balances stamped with [`STAMP`] as it was when each view was last written.
struct Stamped;

impl Projection for Stamped {
    const NAME: &'static str = "stamped";
    type Events = Account;
    type View = StampedView;

    fn apply(&self, view: &mut Option<StampedView>, e: &EventEnvelope<AccountEvent>) -> Result<(), BoxError> {
        let stamp = STAMP.load(Ordering::SeqCst);
        if stamp > 1 {
            std::thread::sleep(SLOW);
        }
        let view = view.get_or_insert_with(StampedView::default);
        if let AccountEvent::Deposited { amount } = e.event {
            view.balance += amount;
        }
        view.stamp = stamp;
        Ok(())
    }
}

/// Runs `projection` in `partitions` in an app until its partition set has every event, then
/// stops the app (its runners let their leases go).
async fn run_partitioned<P: Projection>(memory: &MemoryStores, projection: P, options: ProjectionOptions) {
    let app =
        App::builder(memory.clone()).aggregate::<Account>().projection_with(projection, options).start().await.unwrap();
    let head = memory.events.head().await.unwrap().unwrap();
    let reader = Reader::<P>::new(memory.views.clone()).partitioned();
    reader.wait_for(head, Duration::from_secs(20)).await.unwrap();
    app.shutdown().await.unwrap();
}

/// The partition set as stored: its epoch and generations.
async fn partition_set(memory: &MemoryStores, name: &str) -> (u64, Vec<u64>) {
    let set = memory.views.read_views(&format!("{name}~partitions"), &["set".to_owned()]).await.unwrap();
    let set: serde_json::Value = serde_json::from_str(set[0].as_deref().expect("a partition set")).unwrap();
    let generations = set["generations"].as_array().unwrap().iter().map(|g| g.as_u64().unwrap()).collect();
    (set["epoch"].as_u64().unwrap(), generations)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_projection_rebuilds_behind_the_live_set_and_switches_every_partition_at_once() {
    let memory = MemoryStores::new();
    let accounts: Vec<String> = (0..12).map(|n| format!("acc-{n}")).collect();
    for (n, id) in accounts.iter().enumerate() {
        let deposits: Vec<AccountEvent> = (0..8).map(|_| deposited(n as u64 + 1)).collect();
        append(&memory, id, &[vec![opened()], deposits].concat()).await;
    }
    let head = memory.events.head().await.unwrap();
    run_partitioned(&memory, Stamped, ProjectionOptions::new().partitions(3)).await;
    let (epoch, old) = partition_set(&memory, "stamped").await;
    let reader = Reader::<Stamped>::new(memory.views.clone()).partitioned();
    let expected: Vec<u64> = (1..=12).map(|n| n * 8).collect();

    // The fix: views rebuilt now are stamped 2.
    STAMP.store(2, Ordering::SeqCst);
    let ops = Arc::new(
        App::builder(memory.clone())
            .aggregate::<Account>()
            .projection_with(Stamped, ProjectionOptions::new().partitions(3))
            .operations()
            .unwrap(),
    );
    let seen = Arc::new(Mutex::new(Vec::new()));
    let rebuild = {
        let (ops, seen) = (ops.clone(), seen.clone());
        tokio::spawn(async move { ops.rebuild("stamped", move |p| seen.lock().unwrap().push(p)).await })
    };
    // Queries read one set at a time, all old or all new, never going back.
    let mut stamps = Vec::new();
    while !rebuild.is_finished() {
        let views = reader.get_many(&accounts).await.unwrap();
        let views: Vec<StampedView> = views.into_iter().map(|v| v.expect("every account's view")).collect();
        assert_eq!(views.iter().map(|v| v.balance).collect::<Vec<_>>(), expected, "the same balances throughout");
        let stamp = views[0].stamp;
        assert!(views.iter().all(|v| v.stamp == stamp), "a mix of old and new partitions: {views:?}");
        if stamps.last() != Some(&stamp) {
            stamps.push(stamp);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let checkpoint = rebuild.await.unwrap().unwrap();
    assert_eq!(checkpoint, head);
    assert_eq!(stamps, vec![1, 2], "the live set read while building, then the new one");

    let seen = seen.lock().unwrap().clone();
    match seen.first() {
        Some(RebuildProgress::Started { tokens, total, head: started_at, .. }) => {
            assert_eq!((tokens.len(), *total, *started_at), (3, 12 * 9, head), "{seen:?}");
        }
        other => panic!("starts once every partition's lease is held: {other:?}"),
    }
    let batches: Vec<u64> = seen
        .iter()
        .filter_map(|p| match p {
            RebuildProgress::Batch { done, total: 108, .. } => Some(*done),
            _ => None,
        })
        .collect();
    assert_eq!(batches.last(), Some(&108), "the whole log, counted once: {seen:?}");
    assert!(batches.windows(2).all(|w| w[0] < w[1]), "{batches:?}");
    assert!(
        matches!(seen.last(), Some(RebuildProgress::Switched { partitions: 3, checkpoint }) if *checkpoint == head),
        "{seen:?}"
    );

    // One switch, to a new generation in every partition, each live in its own status.
    let (after, new) = partition_set(&memory, "stamped").await;
    assert_eq!(after, epoch + 1, "one switch for the three partitions");
    for (index, (old, new)) in old.iter().zip(&new).enumerate() {
        assert!(new > old, "partition {index}: {old} -> {new}");
        let status = memory.views.status(&format!("stamped~{index}of3")).await.unwrap();
        assert_eq!(status.live.map(|g| (g.id, g.checkpoint)), Some((*new, head)), "partition {index}");
        assert!(status.building.is_none(), "partition {index}: {status:?}");
        let lease = memory.leases.leases(&format!("stamped~{index}of3")).await.unwrap();
        assert!(lease.iter().all(|l| !l.held), "let go: {lease:?}");
    }
    // The runners take over from the rebuilt views.
    append(&memory, "acc-0", &[deposited(100)]).await;
    run_partitioned(&memory, Stamped, ProjectionOptions::new().partitions(3)).await;
    assert_eq!(reader.get("acc-0").await.unwrap().map(|v| (v.balance, v.stamp)), Some((108, 2)));
    assert_eq!(partition_set(&memory, "stamped").await, (after, new), "no switch of their own");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_of_a_partitioned_projection_starts_every_partition_after_the_position() {
    let memory = MemoryStores::new();
    let mut positions = Vec::new();
    for n in 0..6 {
        positions.extend(append(&memory, &format!("acc-{n}"), &[opened(), deposited(5)]).await);
    }
    let cut = *positions.last().unwrap();
    for n in 0..6 {
        append(&memory, &format!("acc-{n}"), &[deposited(7)]).await;
    }
    let ops = App::builder(memory.clone())
        .aggregate::<Account>()
        .projection_with(Balances, ProjectionOptions::new().partitions(3))
        .operations()
        .unwrap();
    // The first build by the operation itself: no live set before it.
    ops.rebuild("balances", |_| {}).await.unwrap();
    let reader = Reader::<Balances>::new(memory.views.clone()).partitioned();
    assert_eq!(reader.get("acc-4").await.unwrap().map(|b| b.balance), Some(12));
    let mut seen = Vec::new();
    let head = memory.events.head().await.unwrap();
    assert_eq!(ops.reset("balances", cut, |p| seen.push(p)).await.unwrap(), head);
    assert!(matches!(seen.first(), Some(RebuildProgress::Started { total: 6, after: Some(_), .. })), "{seen:?}");
    for n in 0..6 {
        let view = reader.get(&format!("acc-{n}")).await.unwrap().expect("a view");
        assert_eq!((view.balance, view.applied), (7, 1), "acc-{n}: only the events after the position");
    }
    for index in 0..3 {
        let status = memory.views.status(&format!("balances~{index}of3")).await.unwrap();
        assert_eq!(status.live.and_then(|g| g.checkpoint), head, "partition {index}");
    }
    let past = Position::new(head.unwrap().transaction() + 1000, 1);
    assert!(matches!(ops.reset("balances", past, |_| {}).await, Err(Error::InvalidConfig { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_of_a_partitioned_projection_are_retried_and_skipped_in_every_partition() {
    let memory = MemoryStores::new();
    let broken = Arc::new(AtomicBool::new(true));
    let options = ProjectionOptions::new().poison_policy(PoisonPolicy::DeadLetter).partitions(3);
    let ops = Arc::new(
        App::builder(memory.clone())
            .aggregate::<Account>()
            .projection_with(Flaky { broken: broken.clone() }, options)
            .operations()
            .unwrap(),
    );
    let mut deposits = Vec::new();
    for n in 0..9 {
        deposits.extend(append(&memory, &format!("acc-{n}"), &[opened(), deposited(n + 1)]).await.into_iter().skip(1));
    }
    ops.rebuild("flaky", |_| {}).await.unwrap();
    let letters = ops.dead_letters("flaky").await.unwrap();
    assert_eq!(letters.iter().map(|l| l.position).collect::<Vec<_>>(), deposits, "every partition's, in order");
    let per_partition: Vec<usize> = {
        let mut counts = Vec::new();
        for index in 0..3 {
            counts.push(memory.views.dead_letters(&format!("flaky~{index}of3")).await.unwrap().len());
        }
        counts
    };
    assert!(per_partition.iter().filter(|&&n| n > 0).count() >= 2, "spread over partitions: {per_partition:?}");
    let reader = Reader::<Flaky>::new(memory.views.clone()).partitioned();

    // Still broken: they stay, in every partition.
    let again = ops.retry_dead_letters("flaky", &DeadLetterSelection::All).await.unwrap();
    assert_eq!((again.retried, again.succeeded, again.failed.len()), (9, 0, 9));
    assert_eq!(ops.dead_letters("flaky").await.unwrap().len(), 9);

    // Fixed, and one partition's lease held by another process: the retry waits for it, naming it.
    broken.store(false, Ordering::SeqCst);
    let held = memory.leases.acquire("flaky~1of3").await.unwrap();
    let waits = Arc::new(Mutex::new(Vec::new()));
    let which = DeadLetterSelection::At(deposits[..6].to_vec());
    let retry = {
        let (ops, waits, which) = (ops.clone(), waits.clone(), which.clone());
        tokio::spawn(async move {
            ops.retry_dead_letters_with("flaky", &which, move |w| waits.lock().unwrap().push(w)).await
        })
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while waits.lock().unwrap().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "no word of the wait");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let wait = waits.lock().unwrap()[0].clone();
    assert_eq!(wait.lease, "flaky~1of3");
    let holder = wait.holder.expect("the holder");
    assert!(holder.held && holder.token == held.token(), "{holder:?}");
    assert_eq!(holder.holder.map(|h| h.pid), Some(std::process::id()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!retry.is_finished(), "waits while another holds the partition's lease");
    drop(held);
    let outcome = tokio::time::timeout(Duration::from_secs(10), retry).await.unwrap().unwrap().unwrap();
    assert_eq!((outcome.retried, outcome.succeeded), (6, 6));
    for n in 0..6 {
        let view = reader.get(&format!("acc-{n}")).await.unwrap().expect("a view");
        assert_eq!(view.balance, n + 1, "acc-{n} applied");
    }
    assert_eq!(ops.dead_letters("flaky").await.unwrap().len(), 3);

    // Skipped: one partition by its own name, then the rest by the projection's.
    let last = ops.dead_letters("flaky").await.unwrap();
    let one = memory.views.dead_letters("flaky~0of3").await.unwrap().len()
        + memory.views.dead_letters("flaky~1of3").await.unwrap().len()
        + memory.views.dead_letters("flaky~2of3").await.unwrap().len();
    assert_eq!(one, last.len());
    let in_two = memory.views.dead_letters("flaky~2of3").await.unwrap().len() as u64;
    assert_eq!(ops.skip_dead_letters("flaky~2of3", &DeadLetterSelection::All).await.unwrap(), in_two);
    let rest = ops.skip_dead_letters("flaky", &DeadLetterSelection::All).await.unwrap();
    assert_eq!(rest + in_two, 3);
    assert!(ops.dead_letters("flaky").await.unwrap().is_empty());
    for n in 6..9 {
        assert_eq!(reader.get(&format!("acc-{n}")).await.unwrap().map(|b| b.balance), Some(0), "skipped, not applied");
    }
    // A partition's name retries that partition alone.
    let none = ops.retry_dead_letters("flaky~0of3", &DeadLetterSelection::All).await.unwrap();
    assert_eq!(none.retried, 0);
}

/// Memory leases that count the tries without waiting.
#[derive(Clone)]
struct CountedTries {
    inner: MemoryLeases,
    tries: Arc<AtomicU64>,
}

impl store::DelegateLeaseManager for CountedTries {
    type Inner = MemoryLeases;
    fn inner(&self) -> &MemoryLeases {
        &self.inner
    }
    fn try_acquire<'a>(&'a self, name: &'a str) -> BoxFuture<'a, eventloom_core::Result<Option<Lease>>> {
        self.tries.fetch_add(1, Ordering::SeqCst);
        self.inner.try_acquire(name)
    }
}

#[tokio::test]
async fn a_wait_for_a_lease_waits_in_the_managers_acquire_and_names_the_holder() {
    let memory = MemoryStores::new();
    append(&memory, "a", &[opened(), deposited(5)]).await;
    let leases = CountedTries { inner: memory.leases.clone(), tries: Arc::new(AtomicU64::new(0)) };
    let stores = Stores::new(memory.events.clone(), memory.views.clone()).with_leases(leases.clone());
    let ops = Arc::new(App::builder(stores).aggregate::<Account>().projection(Balances).operations().unwrap());
    let held = memory.leases.acquire("balances").await.unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let rebuild = {
        let (ops, seen) = (ops.clone(), seen.clone());
        tokio::spawn(async move { ops.rebuild("balances", move |p| seen.lock().unwrap().push(p)).await })
    };
    let skip = {
        let ops = ops.clone();
        tokio::spawn(async move {
            let mut waits = Vec::new();
            let skipped = ops.skip_dead_letters_with("balances", &DeadLetterSelection::All, |w| waits.push(w)).await;
            (skipped, waits)
        })
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!rebuild.is_finished() && !skip.is_finished());
    assert_eq!(leases.tries.load(Ordering::SeqCst), 0, "no polling with try_acquire");
    match seen.lock().unwrap().as_slice() {
        [RebuildProgress::WaitingForLease { lease, holder: Some(info) }] => {
            assert_eq!((lease.as_str(), info.held, info.token), ("balances", true, held.token()));
        }
        other => panic!("one word of the wait, naming the holder: {other:?}"),
    }
    drop(held);
    tokio::time::timeout(Duration::from_secs(10), rebuild).await.unwrap().unwrap().unwrap();
    let (skipped, waits) = tokio::time::timeout(Duration::from_secs(10), skip).await.unwrap().unwrap();
    assert_eq!(skipped.unwrap(), 0);
    assert!(waits.iter().any(|w| w.lease == "balances" && w.holder.is_some()), "{waits:?}");
}

#[tokio::test]
async fn a_reset_past_the_head_is_refused_and_changes_nothing() {
    let memory = MemoryStores::new();
    let positions = append(&memory, "a", &[opened(), deposited(5)]).await;
    let ops = balances(&memory);
    ops.rebuild("balances", |_| {}).await.unwrap();
    let before = memory.views.status("balances").await.unwrap();
    let past = Position::new(positions[1].transaction() + 1000, 1);
    match ops.reset("balances", past, |_| {}).await {
        Err(Error::InvalidConfig { reason }) => assert!(reason.contains("head"), "{reason}"),
        other => panic!("a reset past the head is refused: {other:?}"),
    }
    assert_eq!(memory.views.status("balances").await.unwrap(), before, "nothing changed");
}

#[tokio::test]
async fn a_streams_events_are_shown_upcast_and_as_of_a_version_or_time() {
    let memory = MemoryStores::new();
    let stream = StreamId::new("account", "a").unwrap();
    let at = |micros| {
        let mut metadata = Metadata::default();
        metadata.timestamp = Timestamp::from_micros(micros);
        metadata
    };
    let opened = NewEvent::encode(&opened(), at(1_000)).unwrap();
    // Version 1 of MoneyDeposited called the amount `cents`.
    let old = NewEvent {
        event_type: "MoneyDeposited".into(),
        schema_version: 1,
        payload: r#"{"cents":40}"#.into(),
        metadata: at(2_000),
    };
    memory.events.append(&stream, ExpectedVersion::NoStream, vec![opened, old]).await.unwrap();
    let upcasters = Upcasters::new().add(("MoneyDeposited", 1), ("MoneyDeposited", 2), |mut v| {
        let cents = v.get_mut("cents").map(serde_json::Value::take).ok_or("no cents")?;
        Ok(serde_json::json!({ "amount": cents }))
    });
    let ops = App::builder(memory.clone())
        .aggregate_with::<Account>(AggregateOptions::new().upcasters(upcasters))
        .operations()
        .unwrap();
    let shown = ops.events(&stream, None, 10).await.unwrap();
    assert_eq!(shown.len(), 2);
    assert_eq!((shown[1].event_type.as_str(), shown[1].schema_version, shown[1].upcast), ("MoneyDeposited", 2, true));
    assert_eq!(shown[1].payload, serde_json::json!({ "amount": 40 }));
    assert!(!shown[0].upcast);
    assert!(shown[0].metadata.get("event_id").is_some(), "{}", shown[0].metadata);
    assert_eq!(ops.events(&stream, Some(AsOf::Version(1)), 10).await.unwrap().len(), 1);
    assert_eq!(ops.events(&stream, None, 1).await.unwrap().len(), 1, "the limit");
    assert_eq!(ops.events(&stream, Some(AsOf::Time(Timestamp::from_micros(1_500))), 10).await.unwrap().len(), 1);
    assert!(ops.events(&stream, Some(AsOf::Time(Timestamp::from_micros(999))), 10).await.unwrap().is_empty());
    let unknown = StreamId::new("account", "nobody").unwrap();
    assert!(matches!(ops.events(&unknown, None, 10).await, Err(Error::UnknownStream { .. })));
}

/// [`Balances`] at version 2: a newer release's.
struct BalancesV2;

impl Projection for BalancesV2 {
    const NAME: &'static str = "balances";
    const VERSION: u32 = 2;
    type Events = Account;
    type View = Balance;

    fn apply(&self, view: &mut Option<Balance>, e: &EventEnvelope<AccountEvent>) -> Result<(), BoxError> {
        Balances.apply(view, e)
    }
}

#[tokio::test]
async fn an_older_release_refuses_to_rebuild_or_reset_a_newer_versions_views() {
    let memory = MemoryStores::new();
    let positions = append(&memory, "a", &[opened(), deposited(5)]).await;
    let newer = App::builder(memory.clone()).aggregate::<Account>().projection(BalancesV2).operations().unwrap();
    newer.rebuild("balances", |_| {}).await.unwrap();
    let before = memory.views.status("balances").await.unwrap();
    assert_eq!(before.live.map(|g| g.version), Some(2));

    // An admin binary of the release before (version 1) would build its views backwards and
    // make them live under the newer release's queries.
    let older = balances(&memory);
    for run in [older.rebuild("balances", |_| {}).await, older.reset("balances", positions[0], |_| {}).await] {
        match run {
            Err(Error::NewerVersion { running: 1, stored: 2, .. }) => {}
            other => panic!("an older version refuses the newer one's views: {other:?}"),
        }
    }
    let projector = eventloom_core::read::Projector::new(memory.events.clone(), memory.views.clone());
    assert!(matches!(projector.rebuild(&Balances).await, Err(Error::NewerVersion { running: 1, stored: 2, .. })));
    assert_eq!(memory.views.status("balances").await.unwrap(), before, "nothing changed");
}

#[tokio::test]
async fn an_older_release_refuses_to_rebuild_a_partition_a_newer_version_is_building() {
    let memory = MemoryStores::new();
    append(&memory, "a", &[opened(), deposited(5)]).await;
    append(&memory, "b", &[opened(), deposited(7)]).await;
    let partitioned = |memory: &MemoryStores| {
        App::builder(memory.clone())
            .aggregate::<Account>()
            .projection_with(Balances, ProjectionOptions::new().partitions(2))
            .operations()
            .unwrap()
    };
    let ops = partitioned(&memory);
    ops.rebuild("balances", |_| {}).await.unwrap();
    // A runner of the next release builds version 2 of partition 1 (the set is still at 1).
    let lease = memory.leases.acquire("balances~1of2").await.unwrap();
    let building = memory.views.begin_generation("balances~1of2", 2, lease.token()).await.unwrap().unwrap();
    drop(lease);
    let first = memory.views.status("balances~0of2").await.unwrap();
    match ops.rebuild("balances", |_| {}).await {
        Err(Error::NewerVersion { running: 1, stored: 2, .. }) => {}
        other => panic!("an older version leaves the newer build alone: {other:?}"),
    }
    let status = memory.views.status("balances~1of2").await.unwrap();
    assert_eq!(status.building.map(|g| g.id), Some(building.id), "the newer build is still there");
    assert_eq!(memory.views.status("balances~0of2").await.unwrap(), first, "no partition began a build");
}

/// Memory leases whose listing fails while `down` (the lease manager's connection dropped for a
/// moment), while taking leases works.
#[derive(Clone)]
struct ListingFails {
    inner: MemoryLeases,
    down: Arc<AtomicBool>,
}

impl store::DelegateLeaseManager for ListingFails {
    type Inner = MemoryLeases;
    fn inner(&self) -> &MemoryLeases {
        &self.inner
    }
    fn leases<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, eventloom_core::Result<Vec<store::LeaseInfo>>> {
        if self.down.load(Ordering::SeqCst) {
            return Box::pin(std::future::ready(Err(Error::unavailable_msg("the lease listing failed"))));
        }
        self.inner.leases(prefix)
    }
}

#[tokio::test]
async fn a_failed_look_at_the_holder_does_not_end_the_wait_for_a_lease() {
    let memory = MemoryStores::new();
    append(&memory, "a", &[opened(), deposited(5)]).await;
    let leases = ListingFails { inner: memory.leases.clone(), down: Arc::new(AtomicBool::new(true)) };
    let stores = Stores::new(memory.events.clone(), memory.views.clone()).with_leases(leases);
    let ops = Arc::new(App::builder(stores).aggregate::<Account>().projection(Balances).operations().unwrap());
    let held = memory.leases.acquire("balances").await.unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let rebuild = {
        let (ops, seen) = (ops.clone(), seen.clone());
        tokio::spawn(async move { ops.rebuild("balances", move |p| seen.lock().unwrap().push(p)).await })
    };
    let retry = {
        let ops = ops.clone();
        tokio::spawn(async move { ops.retry_dead_letters("balances", &DeadLetterSelection::All).await })
    };
    // The first look is after 200 ms, the next every second.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!rebuild.is_finished() && !retry.is_finished(), "still waiting for the lease");
    match seen.lock().unwrap().as_slice() {
        [RebuildProgress::WaitingForLease { lease, holder: None }] => assert_eq!(lease, "balances"),
        other => panic!("one word of the wait, its holder unknown: {other:?}"),
    }
    drop(held);
    tokio::time::timeout(Duration::from_secs(10), rebuild).await.unwrap().unwrap().unwrap();
    let retried = tokio::time::timeout(Duration::from_secs(10), retry).await.unwrap().unwrap().unwrap();
    assert_eq!(retried.retried, 0);
    assert_eq!(balance(&memory, "balances", "a").await.map(|b| b.balance), Some(5));
}

#[tokio::test]
async fn a_partitioned_projection_is_reported_as_its_partitions_sum_up() {
    let memory = MemoryStores::new();
    let broken = Arc::new(AtomicBool::new(true));
    let options = ProjectionOptions::new().poison_policy(PoisonPolicy::DeadLetter).partitions(3);
    let ops = App::builder(memory.clone())
        .aggregate::<Account>()
        .projection_with(Flaky { broken: broken.clone() }, options)
        .operations()
        .unwrap();
    for n in 0..6 {
        append(&memory, &format!("acc-{n}"), &[opened(), deposited(n + 1)]).await;
    }
    let before = ops.report("flaky").await.unwrap();
    assert_eq!((before.checkpoint, before.lag_events, before.dead_letters), (None, 12, 0), "nothing built");
    ops.rebuild("flaky", |_| {}).await.unwrap();
    let head = memory.events.head().await.unwrap();
    let report = ops.report("flaky").await.unwrap();
    assert_eq!(report.registered.map(|r| r.partitions), Some(3));
    assert_eq!((report.checkpoint, report.head, report.lag_events), (head, head, 0), "every partition caught up");
    assert_eq!(report.dead_letters, 6, "every partition's");
    assert_eq!(report.dead_letters, ops.dead_letters("flaky").await.unwrap().len() as u64);
    assert!(report.live.is_none() && report.lease.is_none(), "each partition has its own");
    // One partition behind: the projection lags by what it has to catch up.
    append(&memory, "acc-0", &[deposited(1)]).await;
    let behind = ops.report("flaky").await.unwrap();
    assert_eq!((behind.checkpoint, behind.lag_events), (head, 1));
}

/// [`Flaky`] at version 2: a new release that rebuilds its views.
struct FlakyV2 {
    broken: Arc<AtomicBool>,
}

impl Projection for FlakyV2 {
    const NAME: &'static str = "flaky";
    const VERSION: u32 = 2;
    type Events = Account;
    type View = Balance;

    fn apply(&self, view: &mut Option<Balance>, e: &EventEnvelope<AccountEvent>) -> Result<(), BoxError> {
        Flaky { broken: self.broken.clone() }.apply(view, e)
    }
}

/// Runners that stop within the grace of a switch leave every partition with the set naming
/// the generation it built while its own status still has the old one live. A retry then must
/// apply to the generation queries read (made live first), not to the one about to go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_retried_right_after_a_switch_apply_to_the_generations_queries_read() {
    let memory = MemoryStores::new();
    let options = || ProjectionOptions::new().poison_policy(PoisonPolicy::DeadLetter).partitions(3);
    for n in 0..6 {
        append(&memory, &format!("acc-{n}"), &[opened(), deposited(n + 1)]).await;
    }
    run_partitioned(&memory, Flaky { broken: Arc::new(AtomicBool::new(false)) }, options()).await;

    // Version 2, broken: every deposit is a dead letter of the new generations. The runners
    // stop as soon as the set switches to them, before their grace has passed.
    let broken = Arc::new(AtomicBool::new(true));
    let app = App::builder(memory.clone())
        .aggregate::<Account>()
        .projection_with(FlakyV2 { broken: broken.clone() }, options())
        .start()
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let set = memory.views.read_views("flaky~partitions", &["set".to_owned()]).await.unwrap();
        let version =
            set[0].as_deref().map(|json| serde_json::from_str::<serde_json::Value>(json).unwrap()["version"].clone());
        if version == Some(serde_json::json!(2)) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the set never switched to version 2");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    app.shutdown().await.unwrap();
    let (_, named) = partition_set(&memory, "flaky").await;
    let mut within_grace = 0;
    for (index, generation) in named.iter().enumerate() {
        let status = memory.views.status(&format!("flaky~{index}of3")).await.unwrap();
        if status.live.is_some_and(|live| live.id != *generation) {
            within_grace += 1;
        }
    }
    assert!(within_grace > 0, "no partition was left within its grace: the test shows nothing");
    let reader = Reader::<FlakyV2>::new(memory.views.clone()).partitioned();
    assert_eq!(reader.get("acc-3").await.unwrap().map(|b| b.balance), Some(0), "queries read the new views");

    broken.store(false, Ordering::SeqCst);
    // An older release's retry would fold its apply into the newer release's views: refused
    // before any partition changes (the builds the set names stay unsettled).
    let older = App::builder(memory.clone())
        .aggregate::<Account>()
        .projection_with(Flaky { broken: broken.clone() }, options())
        .operations()
        .unwrap();
    let letters_and_live = || async {
        let mut each = Vec::new();
        for index in 0..3 {
            let partition = format!("flaky~{index}of3");
            let live = memory.views.status(&partition).await.unwrap().live.map(|g| g.id);
            each.push((memory.views.dead_letters(&partition).await.unwrap(), live));
        }
        each
    };
    let before = letters_and_live().await;
    let refused = older.retry_dead_letters("flaky", &DeadLetterSelection::All).await;
    assert!(matches!(refused, Err(Error::NewerVersion { running: 1, stored: 2, .. })), "{refused:?}");
    assert_eq!(letters_and_live().await, before, "no dead letter changed, no named build was made live");

    let ops = App::builder(memory.clone())
        .aggregate::<Account>()
        .projection_with(FlakyV2 { broken: broken.clone() }, options())
        .operations()
        .unwrap();
    let outcome = ops.retry_dead_letters("flaky", &DeadLetterSelection::All).await.unwrap();
    assert_eq!((outcome.retried, outcome.succeeded), (6, 6), "the dead letters of the views queries read");
    for n in 0..6 {
        assert_eq!(reader.get(&format!("acc-{n}")).await.unwrap().map(|b| b.balance), Some(n + 1), "acc-{n}");
    }
    assert!(ops.dead_letters("flaky").await.unwrap().is_empty());
    assert_eq!(partition_set(&memory, "flaky").await.1, named, "the set is as it was");
    for (index, generation) in named.iter().enumerate() {
        let status = memory.views.status(&format!("flaky~{index}of3")).await.unwrap();
        assert_eq!(status.live.map(|g| g.id), Some(*generation), "partition {index} made live");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_retry_that_fails_in_one_partition_reports_what_the_others_did() {
    let memory = MemoryStores::new();
    let failing = Arc::new(AtomicBool::new(false));
    let views = FailingCommit::to(memory.views.clone(), "flaky~1of3", failing.clone());
    let broken = Arc::new(AtomicBool::new(true));
    let options = ProjectionOptions::new().poison_policy(PoisonPolicy::DeadLetter).partitions(3);
    let ops = App::builder(Stores::from(memory.clone()).with_views(views))
        .aggregate::<Account>()
        .projection_with(Flaky { broken: broken.clone() }, options)
        .operations()
        .unwrap();
    for n in 0..12 {
        append(&memory, &format!("acc-{n}"), &[opened(), deposited(n + 1)]).await;
    }
    ops.rebuild("flaky", |_| {}).await.unwrap();
    let in_one = memory.views.dead_letters("flaky~1of3").await.unwrap();
    assert!(!in_one.is_empty(), "partition 1 holds dead letters");
    assert!(in_one.len() < 12, "so do others");

    broken.store(false, Ordering::SeqCst);
    failing.store(true, Ordering::SeqCst);
    let outcome = ops.retry_dead_letters("flaky", &DeadLetterSelection::All).await.unwrap();
    let others = 12 - in_one.len() as u64;
    assert_eq!((outcome.retried, outcome.succeeded), (others, others), "the other partitions went through");
    assert_eq!(outcome.unfinished.len(), 1, "{outcome:?}");
    assert_eq!(outcome.unfinished[0].partition, "flaky~1of3");
    assert!(outcome.unfinished[0].transient && outcome.unfinished[0].reason.contains("dropped"), "{outcome:?}");
    assert_eq!(memory.views.dead_letters("flaky~1of3").await.unwrap(), in_one, "its dead letters stay");
    assert_eq!(ops.dead_letters("flaky").await.unwrap().len(), in_one.len());

    // No dead letter going through anywhere (the others have none left): the error itself,
    // nothing changed; the same for the one partition by its name.
    let whole = ops.retry_dead_letters("flaky", &DeadLetterSelection::All).await;
    assert!(matches!(&whole, Err(error) if error.is_transient()), "{whole:?}");
    let alone = ops.retry_dead_letters("flaky~1of3", &DeadLetterSelection::All).await;
    assert!(matches!(&alone, Err(error) if error.is_transient()), "{alone:?}");
    assert_eq!(memory.views.dead_letters("flaky~1of3").await.unwrap(), in_one, "its dead letters stay");

    failing.store(false, Ordering::SeqCst);
    let rest = ops.retry_dead_letters("flaky", &DeadLetterSelection::All).await.unwrap();
    assert_eq!((rest.retried, rest.succeeded, rest.unfinished.len()), (in_one.len() as u64, in_one.len() as u64, 0));
    assert!(ops.dead_letters("flaky").await.unwrap().is_empty());
    let reader = Reader::<Flaky>::new(memory.views.clone()).partitioned();
    for n in 0..12 {
        assert_eq!(reader.get(&format!("acc-{n}")).await.unwrap().map(|b| b.balance), Some(n + 1), "acc-{n}");
    }
}

//! The admin operations (`AppBuilder::operations`) on memory stores.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eventloom_core::memory::MemoryViewStore;
use eventloom_core::model::{ExpectedVersion, NewEvent, Timestamp};
use eventloom_core::prelude::*;
use eventloom_core::{
    AggregateOptions, App, BoxError, Error, EventHandler, MemoryStores, Position, Projection, ProjectionOptions,
    Stores,
    app::{Operations, RebuildProgress},
    read::PoisonPolicy,
    store::{
        BoxFuture, DeadLetter, DeadLetterSelection, EventStore, Generation, IndexKey, IndexedView, LeaseHolder,
        LeaseManager, ListCursor, OrderRange, ProjectionStatus, ProjectionStop, ViewCommit, ViewPage, ViewStore,
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
        RebuildProgress::WaitingForLease { holder: Some(info) } => {
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

/// A memory view store whose next commit fails, as a store that drops the connection (or a
/// process that dies) before the write would: nothing is written.
struct FailingCommit {
    inner: MemoryViewStore,
    fail_next: Arc<AtomicBool>,
}

impl ViewStore for FailingCommit {
    fn status<'a>(&'a self, p: &'a str) -> BoxFuture<'a, eventloom_core::Result<ProjectionStatus>> {
        self.inner.status(p)
    }
    fn begin_generation<'a>(
        &'a self,
        p: &'a str,
        version: u32,
        token: u64,
    ) -> BoxFuture<'a, eventloom_core::Result<Written<Generation>>> {
        self.inner.begin_generation(p, version, token)
    }
    fn load_views<'a>(
        &'a self,
        p: &'a str,
        g: u64,
        ids: &'a [String],
    ) -> BoxFuture<'a, eventloom_core::Result<Vec<Option<String>>>> {
        self.inner.load_views(p, g, ids)
    }
    fn commit<'a>(&'a self, p: &'a str, commit: ViewCommit) -> BoxFuture<'a, eventloom_core::Result<Written>> {
        Box::pin(async move {
            if self.fail_next.swap(false, Ordering::SeqCst) {
                return Err(Error::unavailable_msg("the connection dropped before the commit"));
            }
            self.inner.commit(p, commit).await
        })
    }
    fn go_live<'a>(&'a self, p: &'a str, g: u64, token: u64) -> BoxFuture<'a, eventloom_core::Result<Written>> {
        self.inner.go_live(p, g, token)
    }
    fn read_views<'a>(
        &'a self,
        p: &'a str,
        ids: &'a [String],
    ) -> BoxFuture<'a, eventloom_core::Result<Vec<Option<String>>>> {
        self.inner.read_views(p, ids)
    }
    fn list<'a>(
        &'a self,
        p: &'a str,
        key: &'a IndexKey,
        range: &'a OrderRange,
        after: Option<&'a ListCursor>,
        limit: usize,
    ) -> BoxFuture<'a, eventloom_core::Result<ViewPage>> {
        self.inner.list(p, key, range, after, limit)
    }
    fn count<'a>(&'a self, p: &'a str, keys: &'a [IndexKey]) -> BoxFuture<'a, eventloom_core::Result<Vec<u64>>> {
        self.inner.count(p, keys)
    }
    fn list_generation<'a>(
        &'a self,
        p: &'a str,
        generation: u64,
        key: &'a IndexKey,
        range: &'a OrderRange,
        after: Option<&'a ListCursor>,
        limit: usize,
    ) -> BoxFuture<'a, eventloom_core::Result<Vec<IndexedView>>> {
        self.inner.list_generation(p, generation, key, range, after, limit)
    }
    fn count_generation<'a>(
        &'a self,
        p: &'a str,
        generation: u64,
        keys: &'a [IndexKey],
    ) -> BoxFuture<'a, eventloom_core::Result<Vec<u64>>> {
        self.inner.count_generation(p, generation, keys)
    }
    fn dead_letters<'a>(&'a self, p: &'a str) -> BoxFuture<'a, eventloom_core::Result<Vec<DeadLetter>>> {
        self.inner.dead_letters(p)
    }
    fn record_stop<'a>(
        &'a self,
        p: &'a str,
        stop: Option<&'a ProjectionStop>,
        token: u64,
    ) -> BoxFuture<'a, eventloom_core::Result<Written>> {
        self.inner.record_stop(p, stop, token)
    }
    fn projections<'a>(&'a self) -> BoxFuture<'a, eventloom_core::Result<Vec<String>>> {
        self.inner.projections()
    }
    fn remove_dead_letters<'a>(
        &'a self,
        p: &'a str,
        which: &'a DeadLetterSelection,
        token: u64,
    ) -> BoxFuture<'a, eventloom_core::Result<Written<u64>>> {
        self.inner.remove_dead_letters(p, which, token)
    }
}

#[tokio::test]
async fn a_retry_whose_commit_fails_keeps_the_dead_letters_and_changes_no_view() {
    let memory = MemoryStores::new();
    let fail_next = Arc::new(AtomicBool::new(false));
    let failing = FailingCommit { inner: memory.views.clone(), fail_next: fail_next.clone() };
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
async fn partitioned_projections_are_refused_by_name() {
    let memory = MemoryStores::new();
    let ops = App::builder(memory)
        .aggregate::<Account>()
        .projection_with(Balances, ProjectionOptions::new().partitions(3))
        .operations()
        .unwrap();
    assert_eq!(ops.projections()[0].partitions, 3);
    match ops.rebuild("balances", |_| {}).await {
        Err(Error::Unsupported { operation: "rebuild", reason, .. }) => {
            assert!(reason.contains("3 partitions"), "{reason}")
        }
        other => panic!("a partitioned projection is refused: {other:?}"),
    }
    assert!(matches!(
        ops.retry_dead_letters("balances", &DeadLetterSelection::All).await,
        Err(Error::Unsupported { .. })
    ));
    // The partition set is the framework's own: removing "its" dead letters under a lease of its
    // name would fence off the partitions' writes of it.
    assert!(matches!(
        ops.skip_dead_letters("balances~partitions", &DeadLetterSelection::All).await,
        Err(Error::Unsupported { .. })
    ));
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

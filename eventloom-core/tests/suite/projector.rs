use eventloom_core::store::{BoxFuture, Refusal};
use std::time::Duration;

use eventloom_core::model::{ExpectedVersion, NewEvent, RecordedEvent};
use eventloom_core::prelude::*;
use eventloom_core::{
    BoxError, Error, Projection,
    memory::{MemoryEventStore, MemoryLeases, MemoryViewStore},
    read::{Projector, ViewReader},
    store::{EventStore, LeaseManager, ViewCommit, ViewStore},
    write::Cqrs,
};
use tokio::sync::oneshot;

use crate::domain::*;

fn reader(views: &MemoryViewStore) -> ViewReader<Balance> {
    ViewReader::new(views.clone(), Balances::NAME)
}

async fn seed(cqrs: &Cqrs<Account, MemoryEventStore>, accounts: usize, deposits: u64) {
    for a in 0..accounts {
        let id = format!("acc-{a}");
        cqrs.execute(open(&id)).await.unwrap();
        for d in 1..=deposits {
            cqrs.execute(deposit(&id, d)).await.unwrap();
        }
    }
}

async fn assert_exact(views: &MemoryViewStore, accounts: usize, deposits: u64) {
    for a in 0..accounts {
        let view = reader(views).get(&format!("acc-{a}")).await.unwrap().expect("a view");
        assert_eq!(view.balance, deposits * (deposits + 1) / 2);
        assert_eq!(view.applied, view.version, "every event applied exactly once");
        assert_eq!(view.version, deposits + 1);
    }
}

#[tokio::test]
async fn catches_up_resumes_from_its_checkpoint_and_rebuilds() {
    let events = MemoryEventStore::new();
    let views = MemoryViewStore::default();
    let cqrs = Cqrs::new(events.clone());
    seed(&cqrs, 5, 10).await;
    let projector = Projector::new(events.clone(), views.clone()).with_batch_size(7);
    let checkpoint = projector.catch_up(&Balances).await.unwrap();
    assert_eq!(checkpoint, events.read_all(Position::ZERO, usize::MAX).await.unwrap().last().map(|e| e.position));
    assert_exact(&views, 5, 10).await;
    // A new projector (a restart) resumes: nothing is applied twice.
    cqrs.execute(deposit("acc-0", 100)).await.unwrap();
    Projector::new(events.clone(), views.clone()).catch_up(&Balances).await.unwrap();
    let view = reader(&views).get("acc-0").await.unwrap().unwrap();
    assert_eq!((view.balance, view.applied, view.version), (155, 12, 12));
    // A rebuild folds every event again from the first, into a new generation: with apply
    // changed in place (same name, same version), old events count the new way.
    let live = views.status(Balances::NAME).await.unwrap().live.unwrap();
    let checkpoint = projector.rebuild(&TenfoldDeposits).await.unwrap();
    let status = views.status(Balances::NAME).await.unwrap();
    let rebuilt = status.live.unwrap();
    assert!(rebuilt.id > live.id, "a new generation went live");
    assert_eq!((status.building, rebuilt.checkpoint, checkpoint), (None, live.checkpoint, live.checkpoint));
    let tenfold = reader(&views).get("acc-0").await.unwrap().unwrap();
    assert_eq!((tenfold.balance, tenfold.applied, tenfold.version), (1_550, 12, 12));
    assert_eq!(reader(&views).get("acc-4").await.unwrap().unwrap().balance, 550);
    // And back: a rebuild with the original logic ends in the original views.
    projector.rebuild(&Balances).await.unwrap();
    let rebuilt = reader(&views).get("acc-0").await.unwrap().unwrap();
    assert_eq!(rebuilt, view);
    assert_eq!(reader(&views).get("acc-4").await.unwrap().unwrap().balance, 55);
}

/// Balances with `apply` changed in place (same name, same version): deposits count tenfold.
/// Only a rebuild from the first event shows it on old events.
struct TenfoldDeposits;

impl Projection for TenfoldDeposits {
    const NAME: &'static str = Balances::NAME;
    type Events = Account;
    type View = Balance;
    fn apply(&self, view: &mut Option<Balance>, e: &EventEnvelope<AccountEvent>) -> Result<(), BoxError> {
        Balances.apply(view, e)?;
        if let (Some(view), AccountEvent::Deposited { amount }) = (view.as_mut(), &e.event) {
            view.balance += 9 * amount;
        }
        Ok(())
    }
}

#[tokio::test]
async fn runs_live_and_queries_read_their_writes() {
    let events = MemoryEventStore::new();
    let views = MemoryViewStore::default();
    let cqrs = Cqrs::new(events.clone());
    let (stop, stopped) = oneshot::channel::<()>();
    let projector = Projector::new(events.clone(), views.clone());
    let running = tokio::spawn(async move { projector.run(Balances, async { stopped.await.unwrap_or(()) }).await });
    cqrs.execute(open("live")).await.unwrap();
    for i in 1..=20 {
        let done = cqrs.execute(deposit("live", i)).await.unwrap();
        reader(&views).wait_for(done.position, Duration::from_secs(5)).await.unwrap();
        let view = reader(&views).get("live").await.unwrap().unwrap();
        assert_eq!(view.version, done.version, "the view includes the command's write");
    }
    stop.send(()).unwrap();
    running.await.unwrap().unwrap();
    // Once stopped, a newer write is not seen, and waiting for it times out.
    let done = cqrs.execute(deposit("live", 1)).await.unwrap();
    let err = reader(&views).wait_for(done.position, Duration::from_millis(50)).await.unwrap_err();
    assert!(matches!(err, Error::Timeout(_)));
}

#[tokio::test]
async fn a_poison_event_stops_the_projection_at_its_position_and_keeps_the_checkpoint() {
    let events = MemoryEventStore::new();
    let views = MemoryViewStore::default();
    let cqrs = Cqrs::new(events.clone());
    seed(&cqrs, 1, 3).await;
    let bad = NewEvent {
        event_type: "MoneyDeposited".into(),
        schema_version: 2,
        payload: "{\"amount\":-1}".into(),
        metadata: Metadata::default(),
    };
    events.append(&StreamId::new("account", "acc-0").unwrap(), ExpectedVersion::Any, vec![bad]).await.unwrap();
    let poison = events.read_all(Position::ZERO, usize::MAX).await.unwrap().last().unwrap().position;
    cqrs.execute(open("later")).await.unwrap();
    let projector = Projector::new(events.clone(), views.clone()).with_batch_size(2);
    let err = projector.run(Balances, std::future::pending()).await.unwrap_err();
    match err {
        Error::Decode { position, version: 5, .. } => assert_eq!(position, poison),
        other => panic!("{other:?}"),
    }
    // The first build stopped: its checkpoint stays before the poison event, and queries say the
    // views are not built rather than answer from half-built ones.
    let building = views.status(Balances::NAME).await.unwrap().building.unwrap();
    assert!(building.checkpoint.unwrap() < poison, "the checkpoint stays before the poison event");
    assert!(matches!(reader(&views).get("later").await, Err(Error::NotBuilt { .. })));
}

/// Fails on withdrawals: a projection whose handler errors.
struct Picky;

impl Projection for Picky {
    const NAME: &'static str = "picky";
    type Events = Account;
    type View = u64;
    fn apply(&self, view: &mut Option<u64>, e: &EventEnvelope<AccountEvent>) -> Result<(), BoxError> {
        if matches!(e.event, AccountEvent::Withdrawn { .. }) {
            return Err(Box::new(Unsupported));
        }
        *view.get_or_insert(0) += 1;
        Ok(())
    }
}

/// What [`Picky`] says of a withdrawal.
#[derive(Debug, thiserror::Error)]
#[error("withdrawals are not supported")]
struct Unsupported;

#[tokio::test]
async fn a_failing_handler_names_the_position_and_other_projections_go_on() {
    let events = MemoryEventStore::new();
    let views = MemoryViewStore::default();
    let cqrs = Cqrs::new(events.clone());
    seed(&cqrs, 1, 2).await;
    let withdrawn = cqrs.execute(Withdraw { id: "acc-0".into(), amount: 1 }).await.unwrap();
    let projector = Projector::new(events.clone(), views.clone());
    let err = projector.catch_up(&Picky).await.unwrap_err();
    match &err {
        Error::Projection { projection, position, source } => {
            assert_eq!((projection.as_str(), *position), ("picky", withdrawn.position));
            assert!(source.downcast_ref::<Unsupported>().is_some(), "the projection's own error: {source:?}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(err.kind(), eventloom_core::ErrorKind::Internal);
    let expected = format!("projection picky failed at position {}: withdrawals are not supported", withdrawn.position);
    assert_eq!(err.to_string(), expected);
    let source = std::error::Error::source(&err).expect("a source");
    assert!(source.downcast_ref::<Unsupported>().is_some(), "std::error::Error::source gives it too");
    projector.catch_up(&Balances).await.unwrap();
    assert_eq!(reader(&views).get("acc-0").await.unwrap().unwrap().balance, 2);
}

#[tokio::test]
async fn ignores_events_of_other_aggregates_and_types_it_does_not_handle() {
    struct OpensOnly;
    impl Projection for OpensOnly {
        const NAME: &'static str = "opens";
        type Events = Account;
        type View = String;
        fn handles(&self, _: &str, event_type: &str) -> bool {
            event_type == "Opened"
        }
        fn apply(&self, view: &mut Option<String>, e: &EventEnvelope<AccountEvent>) -> Result<(), BoxError> {
            let AccountEvent::Opened { owner } = &e.event else { return Err("not an opening".into()) };
            *view = Some(owner.clone());
            Ok(())
        }
    }
    let events = MemoryEventStore::new();
    let views = MemoryViewStore::default();
    let cqrs = Cqrs::new(events.clone());
    seed(&cqrs, 2, 2).await;
    // Garbage of another category and an undecodable event of an unhandled type are never decoded.
    let junk = NewEvent {
        event_type: "Whatever".into(),
        schema_version: 1,
        payload: "not json".into(),
        metadata: Metadata::default(),
    };
    events.append(&StreamId::new("other", "x").unwrap(), ExpectedVersion::Any, vec![junk]).await.unwrap();
    let junk = NewEvent {
        event_type: "Withdrawn".into(),
        schema_version: 1,
        payload: "not json".into(),
        metadata: Metadata::default(),
    };
    events.append(&StreamId::new("account", "acc-0").unwrap(), ExpectedVersion::Any, vec![junk]).await.unwrap();
    Projector::new(events.clone(), views.clone()).catch_up(&OpensOnly).await.unwrap();
    let names = ViewReader::<String>::new(views, "opens").get_many(&["acc-0".into(), "acc-1".into()]).await.unwrap();
    assert_eq!(names, vec![Some("owner of acc-0".into()), Some("owner of acc-1".into())]);
}

#[tokio::test]
async fn one_leader_runs_a_standby_takes_over_and_a_stale_leader_is_fenced() {
    let events = MemoryEventStore::new();
    let views = MemoryViewStore::default();
    let leases = MemoryLeases::default();
    let cqrs = Cqrs::new(events.clone());
    seed(&cqrs, 2, 3).await;
    let projector = Projector::new(events.clone(), views.clone()).with_leases(leases.clone());
    let (stop_a, stopped_a) = oneshot::channel::<()>();
    let (stop_b, stopped_b) = oneshot::channel::<()>();
    let a = tokio::spawn({
        let p = projector.clone();
        async move { p.run(Balances, async { stopped_a.await.unwrap_or(()) }).await }
    });
    let done = cqrs.execute(deposit("acc-0", 10)).await.unwrap();
    reader(&views).wait_for(done.position, Duration::from_secs(5)).await.unwrap();
    let b = tokio::spawn({
        let p = projector.clone();
        async move { p.run(Balances, async { stopped_b.await.unwrap_or(()) }).await }
    });
    // The first leader loses its lease (as with a dropped connection); the standby leads.
    tokio::time::sleep(Duration::from_millis(20)).await;
    leases.revoke(Balances::NAME);
    for i in 0..10 {
        let done = cqrs.execute(deposit("acc-1", i)).await.unwrap();
        reader(&views).wait_for(done.position, Duration::from_secs(5)).await.unwrap();
    }
    // A write with the first leader's token (1) is refused now that token 2 or later wrote.
    let live = views.status(Balances::NAME).await.unwrap().live.unwrap();
    let stale = ViewCommit {
        generation: live.id,
        expected: live.checkpoint,
        checkpoint: Position::new(u64::MAX, 0),
        fencing_token: 1,
        views: vec![],
        dead_letters: Vec::new(),
        resolved: Vec::new(),
    };
    assert!(matches!(views.commit(Balances::NAME, stale).await, Ok(Err(Refusal::Fenced { token: 1, .. }))));
    stop_a.send(()).unwrap();
    stop_b.send(()).unwrap();
    a.await.unwrap().unwrap();
    b.await.unwrap().unwrap();
    for a in 0..2 {
        let view = reader(&views).get(&format!("acc-{a}")).await.unwrap().unwrap();
        assert_eq!(view.applied, view.version, "nothing applied twice across the hand-over");
    }
    let lease = leases.acquire(Balances::NAME).await.unwrap();
    assert!(lease.token() >= 3, "tokens only grow: {}", lease.token());
}

#[tokio::test]
async fn waiting_for_position_zero_returns_at_once() {
    let views = MemoryViewStore::default();
    reader(&views).wait_for(Position::ZERO, Duration::from_millis(1)).await.unwrap();
}

#[tokio::test]
async fn rebuild_and_catch_up_take_the_lease_and_its_token() {
    let events = MemoryEventStore::new();
    let views = MemoryViewStore::default();
    let leases = MemoryLeases::default();
    seed(&Cqrs::new(events.clone()), 2, 3).await;
    let projector = Projector::new(events.clone(), views.clone()).with_leases(leases.clone());
    projector.catch_up(&Balances).await.unwrap();
    let before = views.status(Balances::NAME).await.unwrap().live.unwrap();
    projector.rebuild(&TenfoldDeposits).await.unwrap();
    let after = views.status(Balances::NAME).await.unwrap().live.unwrap();
    assert!(after.id > before.id, "the rebuild made a new generation live");
    let view = reader(&views).get("acc-1").await.unwrap().unwrap();
    assert_eq!((view.balance, view.applied), (60, 4), "rebuilt from the first event");
    projector.rebuild(&Balances).await.unwrap();
    assert_exact(&views, 2, 3).await;
    // A writer without the lease (token 0) is fenced off once a leader has written.
    let plain = Projector::new(events.clone(), views.clone());
    let fenced = plain.rebuild(&Balances).await.unwrap_err();
    assert!(matches!(fenced, Error::Superseded { refusal: Refusal::Fenced { token: 0, .. }, .. }), "{fenced:?}");
    assert_eq!(fenced.kind(), eventloom_core::ErrorKind::Conflict);
}

#[tokio::test]
async fn the_dead_letter_policy_skips_poison_events_records_them_and_goes_on() {
    use eventloom_core::read::PoisonPolicy;
    let events = MemoryEventStore::new();
    let views = MemoryViewStore::default();
    let cqrs = Cqrs::new(events.clone());
    seed(&cqrs, 1, 2).await;
    // One event that no longer decodes, and one the handler refuses.
    let bad = NewEvent {
        event_type: "MoneyDeposited".into(),
        schema_version: 2,
        payload: "{\"amount\":-1}".into(),
        metadata: Metadata::default(),
    };
    let undecodable =
        events.append(&StreamId::new("account", "acc-9").unwrap(), ExpectedVersion::Any, vec![bad]).await.unwrap();
    cqrs.execute(deposit("acc-0", 1)).await.unwrap();
    let refused = cqrs.execute(Withdraw { id: "acc-0".into(), amount: 1 }).await.unwrap();
    cqrs.execute(deposit("acc-0", 5)).await.unwrap();
    let projector = Projector::new(events.clone(), views.clone()).with_poison_policy(PoisonPolicy::DeadLetter);
    projector.catch_up(&Picky).await.unwrap();
    let letters = views.dead_letters(Picky::NAME).await.unwrap();
    let undecodable = undecodable.outcome();
    assert_eq!(letters.iter().map(|l| l.position).collect::<Vec<_>>(), vec![undecodable.position, refused.position]);
    assert_eq!(letters[1].reason, "withdrawals are not supported");
    assert_eq!(letters[1].event_type, "Withdrawn");
    // Every other event was applied once: opened, 2 deposits, then 2 more deposits.
    let count = ViewReader::<u64>::new(views.clone(), Picky::NAME).get("acc-0").await.unwrap();
    assert_eq!(count, Some(5));
}

/// Balances, version 2: counts deposits only.
struct DepositCounts;

impl Projection for DepositCounts {
    const NAME: &'static str = "balances";
    const VERSION: u32 = 2;
    type Events = Account;
    type View = Balance;
    fn apply(&self, view: &mut Option<Balance>, e: &EventEnvelope<AccountEvent>) -> Result<(), BoxError> {
        let view = view.get_or_insert_with(Balance::default);
        if let AccountEvent::Deposited { .. } = e.event {
            view.balance += 1_000;
        }
        Ok(())
    }
}

#[tokio::test]
async fn a_new_projection_version_rebuilds_behind_the_live_views_and_switches_at_once() {
    let events = MemoryEventStore::new();
    let views = MemoryViewStore::default();
    let cqrs = Cqrs::new(events.clone());
    seed(&cqrs, 3, 4).await;
    let projector = Projector::new(events.clone(), views.clone()).with_batch_size(2);
    projector.catch_up(&Balances).await.unwrap();
    let v1 = views.status(Balances::NAME).await.unwrap().live.unwrap();
    assert_eq!(v1.version, 1);
    // An old runner refuses a newer version's views instead of rebuilding them backwards.
    let v2 = projector.catch_up(&DepositCounts).await.unwrap();
    assert_eq!(v2, v1.checkpoint);
    let status = views.status(Balances::NAME).await.unwrap();
    assert_eq!((status.live.unwrap().version, status.building), (2, None));
    assert_eq!(reader(&views).get("acc-1").await.unwrap().unwrap().balance, 4_000);
    assert!(matches!(projector.catch_up(&Balances).await, Err(Error::NewerVersion { running: 1, stored: 2, .. })));
}

#[tokio::test]
async fn views_a_store_lost_are_rebuilt_and_never_read_half_built() {
    let events = MemoryEventStore::new();
    let views = MemoryViewStore::default();
    let cqrs = Cqrs::new(events.clone());
    seed(&cqrs, 20, 20).await;
    let projector = Projector::new(events.clone(), views.clone())
        .with_batch_size(5)
        .with_verify_interval(Duration::from_millis(20));
    let (stop, stopped) = oneshot::channel::<()>();
    let running = tokio::spawn({
        let p = projector.clone();
        async move { p.run(Balances, async { stopped.await.unwrap_or(()) }).await }
    });
    let last = cqrs.execute(deposit("acc-0", 0)).await.unwrap();
    reader(&views).wait_for(last.position, Duration::from_secs(5)).await.unwrap();
    views.clear();
    // Queries answer "not built" or from complete views, never from half-built ones.
    let ids: Vec<String> = (0..20).map(|a| format!("acc-{a}")).collect();
    let mut not_built = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match reader(&views).get_many(&ids).await {
            Err(Error::NotBuilt { .. }) => not_built += 1,
            Ok(found) => {
                assert!(found.iter().all(Option::is_some), "a half-built model was read");
                if reader(&views).checkpoint().await.unwrap() >= Some(last.position) {
                    break;
                }
            }
            Err(other) => panic!("{other:?}"),
        }
        assert!(tokio::time::Instant::now() < deadline, "the views were not rebuilt");
        tokio::task::yield_now().await;
    }
    assert!(not_built > 0, "the loss was seen");
    stop.send(()).unwrap();
    running.await.unwrap().unwrap();
    for a in 1..20 {
        let view = reader(&views).get(&format!("acc-{a}")).await.unwrap().unwrap();
        assert_eq!((view.balance, view.applied, view.version), (210, 21, 21));
    }
}

/// A store whose store-wide reads take 40 ms: slower than the projector's idle check.
#[derive(Clone)]
struct SlowReads(MemoryEventStore);

impl eventloom_core::store::DelegateEventStore for SlowReads {
    type Inner = MemoryEventStore;
    fn inner(&self) -> &MemoryEventStore {
        &self.0
    }
    fn read_all<'a>(
        &'a self,
        after: Position,
        limit: usize,
    ) -> BoxFuture<'a, eventloom_core::Result<Vec<RecordedEvent>>> {
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(40)).await;
            self.0.read_all(after, limit).await
        })
    }
    fn read_all_bounded<'a>(
        &'a self,
        after: Position,
        limit: usize,
        max_bytes: usize,
    ) -> BoxFuture<'a, eventloom_core::Result<Vec<RecordedEvent>>> {
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(40)).await;
            self.0.read_all_bounded(after, limit, max_bytes).await
        })
    }
    /// None: the projector polls, so that a read is in flight at every idle check.
    fn wake_ups(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }
}

#[tokio::test]
async fn reads_slower_than_the_idle_check_still_complete() {
    let events = MemoryEventStore::new();
    let views = MemoryViewStore::default();
    let cqrs = Cqrs::new(events.clone());
    seed(&cqrs, 2, 2).await;
    let projector =
        Projector::new(SlowReads(events.clone()), views.clone()).with_verify_interval(Duration::from_millis(10));
    let (stop, stopped) = oneshot::channel::<()>();
    let running = tokio::spawn(async move { projector.run(Balances, async { stopped.await.unwrap_or(()) }).await });
    let done = cqrs.execute(deposit("acc-1", 7)).await.unwrap();
    reader(&views)
        .wait_for(done.position, Duration::from_secs(5))
        .await
        .expect("live batches arrive despite slow reads");
    stop.send(()).unwrap();
    running.await.unwrap().unwrap();
}

/// Counts the status reads of a memory view store; refuses the first `go_live` as
/// `GenerationGone` when `gone_once` is set (a newer build began meanwhile).
#[derive(Clone, Default)]
struct CountingViews {
    inner: MemoryViewStore,
    status_reads: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    gone_once: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl eventloom_core::store::DelegateViewStore for CountingViews {
    type Inner = MemoryViewStore;
    fn inner(&self) -> &MemoryViewStore {
        &self.inner
    }
    fn status<'a>(
        &'a self,
        projection: &'a str,
    ) -> BoxFuture<'a, eventloom_core::Result<eventloom_core::store::ProjectionStatus>> {
        Box::pin(async move {
            self.status_reads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.inner.status(projection).await
        })
    }
    fn go_live<'a>(
        &'a self,
        p: &'a str,
        generation: u64,
        token: u64,
    ) -> BoxFuture<'a, eventloom_core::Result<eventloom_core::store::Written>> {
        Box::pin(async move {
            if self.gone_once.swap(false, std::sync::atomic::Ordering::Relaxed) {
                return Ok(Err(Refusal::GenerationGone { generation }));
            }
            self.inner.go_live(p, generation, token).await
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_waiting_queries_share_one_checkpoint_poller() {
    let events = MemoryEventStore::new();
    let views = CountingViews::default();
    let cqrs = Cqrs::new(events.clone());
    seed(&cqrs, 1, 1).await;
    Projector::new(events.clone(), views.clone()).catch_up(&Balances).await.unwrap();
    let later = cqrs.execute(deposit("acc-0", 5)).await.unwrap();
    let reader = ViewReader::<Balance>::new(views.clone(), Balances::NAME);
    let before = views.status_reads.load(std::sync::atomic::Ordering::Relaxed);
    let waiters: Vec<_> = (0..200)
        .map(|_| {
            let reader = reader.clone();
            tokio::spawn(async move { reader.wait_for(later.position, Duration::from_secs(5)).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let while_waiting = views.status_reads.load(std::sync::atomic::Ordering::Relaxed) - before;
    // One direct read per waiter, then one poller: about 50 reads in 100 ms, not 200 per round.
    assert!(while_waiting < 200 + 150, "{while_waiting} status reads for 200 waiters in 100 ms");
    Projector::new(events.clone(), views.clone()).catch_up(&Balances).await.unwrap();
    for waiter in waiters {
        waiter.await.unwrap().expect("every waiter sees the position");
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    let idle = views.status_reads.load(std::sync::atomic::Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(views.status_reads.load(std::sync::atomic::Ordering::Relaxed), idle, "the poller stops with no waiter");
}

#[tokio::test]
async fn shutdown_stops_after_the_current_batch_even_while_far_behind() {
    let events = MemoryEventStore::new();
    let views = MemoryViewStore::default();
    seed(&Cqrs::new(events.clone()), 10, 50).await;
    let projector = Projector::new(SlowReads(events.clone()), views.clone()).with_batch_size(10);
    let (stop, stopped) = oneshot::channel::<()>();
    let running = tokio::spawn(async move { projector.run(Balances, async { stopped.await.unwrap_or(()) }).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let asked = tokio::time::Instant::now();
    stop.send(()).unwrap();
    running.await.unwrap().unwrap();
    assert!(asked.elapsed() < Duration::from_millis(200), "stopped {:?} after being asked", asked.elapsed());
    let status = views.status(Balances::NAME).await.unwrap();
    let built = status.building.or(status.live).and_then(|g| g.checkpoint).expect("some batches were written");
    let end = events.read_all(Position::ZERO, usize::MAX).await.unwrap().last().unwrap().position;
    assert!(built < end, "it stopped well before the end of the backlog");
}

/// Appends an event as an older version of the code stored it.
async fn append_old(events: &MemoryEventStore, id: &str, event_type: &'static str, version: u32, payload: &str) {
    let old = NewEvent {
        event_type: event_type.into(),
        schema_version: version,
        payload: payload.into(),
        metadata: Metadata::default(),
    };
    events.append(&StreamId::new("account", id).unwrap(), ExpectedVersion::Any, vec![old]).await.unwrap();
}

/// `MoneyDeposited` v1 stored cents; v2 stores `amount`.
fn cents_to_amount(v: serde_json::Value) -> Result<serde_json::Value, BoxError> {
    let cents = v["cents"].as_u64().ok_or("no cents")?;
    Ok(serde_json::json!({ "amount": cents / 100 }))
}

#[tokio::test]
async fn a_projector_reads_events_of_an_old_schema_version_through_its_upcasters() {
    let events = MemoryEventStore::new();
    let upcasters =
        eventloom_core::write::Upcasters::new().add(("MoneyDeposited", 1), ("MoneyDeposited", 2), cents_to_amount);
    let cqrs = Cqrs::new(events.clone()).with_upcasters(upcasters.clone());
    append_old(&events, "old", "Opened", 1, r#"{"owner":"ada"}"#).await;
    append_old(&events, "old", "MoneyDeposited", 1, r#"{"cents":500}"#).await;
    cqrs.execute(deposit("old", 2)).await.unwrap();
    // Without the upcaster the old payload does not decode: the projection stops there.
    let err = Projector::new(events.clone(), MemoryViewStore::default()).catch_up(&Balances).await.unwrap_err();
    assert!(matches!(err, Error::Decode { version: 2, .. }), "{err:?}");
    let views = MemoryViewStore::default();
    Projector::new(events.clone(), views.clone()).with_upcasters(upcasters).catch_up(&Balances).await.unwrap();
    let view = reader(&views).get("old").await.unwrap().unwrap();
    assert_eq!((view.owner.as_str(), view.balance, view.applied, view.version), ("ada", 7, 3, 3));
}

/// Balances that lists the event types it handles, by their current names.
struct ListedBalances;

impl Projection for ListedBalances {
    const NAME: &'static str = "listed_balances";
    type Events = Account;
    type View = Balance;
    fn handles(&self, _: &str, event_type: &str) -> bool {
        matches!(event_type, "Opened" | "MoneyDeposited" | "Withdrawn")
    }
    fn apply(&self, view: &mut Option<Balance>, e: &EventEnvelope<AccountEvent>) -> Result<(), BoxError> {
        Balances.apply(view, e)
    }
}

#[tokio::test]
async fn a_projection_listing_current_type_names_sees_events_an_upcaster_renames() {
    let events = MemoryEventStore::new();
    append_old(&events, "old", "Opened", 1, r#"{"owner":"ada"}"#).await;
    // Stored under the type's old name, which an upcaster renames (and reshapes).
    append_old(&events, "old", "Deposited", 1, r#"{"cents":500}"#).await;
    let upcasters = eventloom_core::write::Upcasters::new().add(("Deposited", 1), ("MoneyDeposited", 1), Ok).add(
        ("MoneyDeposited", 1),
        ("MoneyDeposited", 2),
        cents_to_amount,
    );
    Cqrs::new(events.clone()).with_upcasters(upcasters.clone()).execute(deposit("old", 2)).await.unwrap();
    let views = MemoryViewStore::default();
    Projector::new(events.clone(), views.clone()).with_upcasters(upcasters).catch_up(&ListedBalances).await.unwrap();
    let view = ViewReader::<Balance>::new(views.clone(), ListedBalances::NAME).get("old").await.unwrap().unwrap();
    assert_eq!((view.balance, view.applied), (7, 3), "the renamed deposit is not skipped");
}

#[tokio::test]
async fn batches_bounded_in_bytes_apply_every_event_exactly_once() {
    let events = MemoryEventStore::new();
    let views = MemoryViewStore::default();
    let cqrs = Cqrs::new(events.clone());
    seed(&cqrs, 3, 20).await;
    // Every event is over 10 bytes: each batch holds one, however many events a batch may hold.
    let projector = Projector::new(events.clone(), views.clone()).with_batch_size(1_000).with_batch_bytes(10);
    projector.catch_up(&Balances).await.unwrap();
    assert_exact(&views, 3, 20).await;
    let (stop, stopped) = oneshot::channel::<()>();
    let running = tokio::spawn({
        let projector = projector.clone();
        async move { projector.run(Balances, async { stopped.await.unwrap_or(()) }).await }
    });
    let later = cqrs.execute(deposit("acc-1", 100)).await.unwrap();
    reader(&views).wait_for(later.position, Duration::from_secs(10)).await.unwrap();
    assert_eq!(reader(&views).get("acc-1").await.unwrap().map(|v| v.balance), Some(210 + 100));
    stop.send(()).unwrap();
    running.await.unwrap().unwrap();
}

/// Counts deliveries per event position, across every runner sharing it.
struct Auditor(std::sync::Arc<std::sync::Mutex<Vec<Position>>>);

impl eventloom_core::EventHandler for Auditor {
    const NAME: &'static str = "auditor";
    type Events = Account;

    async fn handle(&self, e: &EventEnvelope<AccountEvent>) -> Result<(), BoxError> {
        self.0.lock().map_err(|_| "poisoned")?.push(e.position);
        // A side effect takes time: the other runner gets its turn meanwhile.
        tokio::time::sleep(Duration::from_millis(1)).await;
        Ok(())
    }
}

#[tokio::test]
async fn one_handler_runner_leads_and_a_standby_delivers_nothing_while_it_does() {
    let events = MemoryEventStore::new();
    let views = MemoryViewStore::default();
    let leases = MemoryLeases::default();
    let cqrs = Cqrs::new(events.clone());
    seed(&cqrs, 3, 4).await;
    let delivered = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut stops = Vec::new();
    let mut runners = Vec::new();
    for _ in 0..2 {
        let projector = Projector::new(events.clone(), views.clone()).with_leases(leases.clone());
        let handler = Auditor(delivered.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        stops.push(stop);
        runners.push(tokio::spawn(async move {
            projector
                .run_handler(handler, async {
                    let _ = stopped.await;
                })
                .await
        }));
    }
    let last = events.read_all(Position::ZERO, 1000).await.unwrap().last().map(|e| e.position);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let status = views.status(<Auditor as eventloom_core::EventHandler>::NAME).await.unwrap();
        if status.live.and_then(|g| g.checkpoint) == last {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the handler did not catch up");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut seen = delivered.lock().unwrap().clone();
    assert_eq!(seen.len(), 15, "each event once: only the lease holder delivers");
    seen.dedup();
    assert_eq!(seen.len(), 15);
    for stop in stops {
        let _ = stop.send(());
    }
    for runner in runners {
        runner.await.unwrap().unwrap();
    }
}

/// Loses its own lease while handling its first event (a lost connection mid-batch), and
/// records every event it handles.
struct Deposed {
    leases: MemoryLeases,
    delivered: std::sync::Arc<std::sync::Mutex<Vec<Position>>>,
}

impl eventloom_core::EventHandler for Deposed {
    const NAME: &'static str = "deposed";
    type Events = Account;

    async fn handle(&self, e: &EventEnvelope<AccountEvent>) -> Result<(), BoxError> {
        self.leases.revoke(Self::NAME);
        self.delivered.lock().map_err(|_| "poisoned")?.push(e.position);
        Ok(())
    }
}

#[tokio::test]
async fn a_handler_runs_no_side_effect_past_the_loss_of_its_lease_and_writes_nothing() {
    let events = MemoryEventStore::new();
    let views = MemoryViewStore::default();
    let leases = MemoryLeases::default();
    seed(&Cqrs::new(events.clone()), 1, 4).await;
    let projector = Projector::new(events.clone(), views.clone()).with_leases(leases.clone());
    let delivered = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let handler = Deposed { leases: leases.clone(), delivered: delivered.clone() };
    let error = projector.catch_up_handler(&handler).await.unwrap_err();
    assert!(matches!(error, Error::Superseded { refusal: Refusal::LeaseLost { token: 1 }, .. }), "{error:?}");
    assert_eq!(error.to_string(), "projection deposed was superseded: the lease of token 1 was lost");
    assert_eq!(delivered.lock().unwrap().len(), 1, "the events after the loss are not handled");
    let status = views.status(Deposed::NAME).await.unwrap();
    assert_eq!(status.live.and_then(|g| g.checkpoint), None, "nothing written after the loss");
}

/// Fails every time, waiting long between attempts.
struct Patient;

impl eventloom_core::EventHandler for Patient {
    const NAME: &'static str = "patient";
    type Events = Account;

    fn retry(&self) -> eventloom_core::write::RetryPolicy {
        eventloom_core::write::RetryPolicy::new()
            .max_attempts(10)
            .time_budget(Duration::MAX)
            .initial_delay(Duration::from_secs(60))
            .max_delay(Duration::from_secs(60))
    }

    async fn handle(&self, _: &EventEnvelope<AccountEvent>) -> Result<(), BoxError> {
        Err("the mail server is down".into())
    }
}

#[tokio::test]
async fn losing_the_lease_cuts_a_retry_wait_short() {
    let events = MemoryEventStore::new();
    let leases = MemoryLeases::default();
    seed(&Cqrs::new(events.clone()), 1, 1).await;
    let projector = Projector::new(events.clone(), MemoryViewStore::default()).with_leases(leases.clone());
    let retrying = tokio::spawn(async move { projector.catch_up_handler(&Patient).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    leases.revoke(Patient::NAME);
    let ended = tokio::time::timeout(Duration::from_secs(5), retrying).await.expect("the wait is cut short");
    let error = ended.unwrap().unwrap_err();
    assert!(matches!(error, Error::Superseded { refusal: Refusal::LeaseLost { .. }, .. }), "{error:?}");
}

#[tokio::test]
async fn a_handler_whose_first_generation_is_gone_before_it_goes_live_starts_over() {
    let events = MemoryEventStore::new();
    let views = CountingViews::default();
    views.gone_once.store(true, std::sync::atomic::Ordering::Relaxed);
    seed(&Cqrs::new(events.clone()), 1, 2).await;
    let projector = Projector::new(events.clone(), views.clone());
    let delivered = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (stop, stopped) = oneshot::channel::<()>();
    let running =
        tokio::spawn(
            async move { projector.run_handler(Auditor(delivered), async { stopped.await.unwrap_or(()) }).await },
        );
    let last = events.read_all(Position::ZERO, 1000).await.unwrap().last().map(|e| e.position);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let status = views.inner.status(<Auditor as eventloom_core::EventHandler>::NAME).await.unwrap();
        if status.live.and_then(|g| g.checkpoint) == last {
            break;
        }
        assert!(!running.is_finished(), "the run ended: {:?}", running.await);
        assert!(std::time::Instant::now() < deadline, "the handler did not catch up");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.send(()).unwrap();
    running.await.unwrap().unwrap();
}

/// Balances under a name given at run time.
struct NamedBalances(String);

impl Projection for NamedBalances {
    const NAME: &'static str = "named_balances";
    type Events = Account;
    type View = Balance;

    fn name(&self) -> &str {
        &self.0
    }

    fn apply(&self, view: &mut Option<Balance>, e: &EventEnvelope<AccountEvent>) -> Result<(), BoxError> {
        Balances.apply(view, e)
    }
}

/// Records nothing, under a name given at run time.
struct NamedHandler(String);

impl eventloom_core::EventHandler for NamedHandler {
    const NAME: &'static str = "named_handler";
    type Events = Account;

    fn name(&self) -> &str {
        &self.0
    }

    async fn handle(&self, _: &EventEnvelope<AccountEvent>) -> Result<(), BoxError> {
        Ok(())
    }
}

#[tokio::test]
async fn every_entry_point_of_the_projector_refuses_a_name_that_is_empty_too_long_or_holds_control_characters() {
    let events = MemoryEventStore::new();
    let views = MemoryViewStore::default();
    seed(&Cqrs::new(events.clone()), 1, 1).await;
    let projector = Projector::new(events.clone(), views.clone()).with_leases(MemoryLeases::default());
    let refused = |result: eventloom_core::Result<_>, name: &str| {
        let error = result.map(|_: ()| ()).unwrap_err();
        assert!(
            matches!(&error, Error::InvalidId { what: "projection or event handler name", .. }),
            "{name:?}: {error:?}"
        );
    };
    for bad in [String::new(), "a\0b".to_owned(), "tab\there".to_owned(), "n".repeat(256)] {
        refused(projector.catch_up(&NamedBalances(bad.clone())).await.map(drop), &bad);
        refused(projector.rebuild(&NamedBalances(bad.clone())).await.map(drop), &bad);
        refused(projector.catch_up_handler(&NamedHandler(bad.clone())).await.map(drop), &bad);
        refused(projector.run(NamedBalances(bad.clone()), std::future::pending()).await, &bad);
        refused(projector.run_handler(NamedHandler(bad.clone()), std::future::pending()).await, &bad);
        let mut group = projector.group();
        group.add(NamedBalances(bad.clone()));
        refused(group.run(std::future::pending()).await, &bad);
    }
    // Nothing was kept under any of them; 255 bytes (and any other character) are fine.
    let longest = "é".repeat(127) + "n";
    assert_eq!(longest.len(), 255);
    assert!(projector.catch_up(&NamedBalances(longest.clone())).await.unwrap().is_some());
    projector.catch_up_handler(&NamedHandler(longest)).await.unwrap();
}

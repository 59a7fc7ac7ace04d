//! The App: routing, registration errors, roles, shutdown, status, typed readers and
//! read-your-writes woken by the projector's commits.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use eventloom_core::model::{ExpectedVersion, NewEvent};
use eventloom_core::prelude::*;
use eventloom_core::store::BoxFuture;
use eventloom_core::{
    AggregateOptions, App, BoxError, CommandError, Error, MemoryStores, Projection, ProjectionOptions, Role, Stores,
    app::RunState,
    memory::{MemoryEventStore, MemoryViewStore},
    read::PoisonPolicy,
    store::{
        DeadLetter, EventStore, Generation, IndexKey, ListCursor, ProjectionStatus, ProjectionStop, SnapshotStore,
        ViewCommit, ViewPage, ViewStore,
    },
    write::{SnapshotPolicy, Upcasters},
};

use crate::domain::{Account, AccountEvent, Balances, deposit, open};

// ---- A second aggregate: a tally, with one projection. ----

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
pub enum TallyEvent {
    Counted { by: u64 },
}

#[derive(Debug, Default)]
pub struct Tally {
    total: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("a tally counts up to 100")]
pub struct TooMuch;

impl Aggregate for Tally {
    const TYPE: &'static str = "tally";
    type Event = TallyEvent;
    type Error = TooMuch;
    fn apply(&mut self, TallyEvent::Counted { by }: &TallyEvent) {
        self.total += by;
    }
}

#[derive(Debug, Serialize, Command)]
#[command(aggregate = Tally)]
pub struct Count {
    #[command(id)]
    pub id: String,
    pub by: u64,
}

impl Handle<Count> for Tally {
    fn handle(&self, cmd: &Count) -> Result<Vec<TallyEvent>, TooMuch> {
        if self.total + cmd.by > 100 {
            return Err(TooMuch);
        }
        Ok(vec![TallyEvent::Counted { by: cmd.by }])
    }
}

pub struct Totals;

impl Projection for Totals {
    const NAME: &'static str = "tally_totals";
    type Events = Tally;
    type View = u64;
    fn apply(&self, total: &mut Option<u64>, e: &EventEnvelope<TallyEvent>) -> Result<(), BoxError> {
        let TallyEvent::Counted { by } = &e.event;
        *total.get_or_insert(0) += by;
        Ok(())
    }
}

/// Another projection stored under the name of [`Totals`].
pub struct SameName;

impl Projection for SameName {
    const NAME: &'static str = "tally_totals";
    type Events = Tally;
    type View = u64;
    fn apply(&self, _: &mut Option<u64>, _: &EventEnvelope<TallyEvent>) -> Result<(), BoxError> {
        Ok(())
    }
}

/// Fails on every event of a tally counted by 13.
pub struct Superstitious;

impl Projection for Superstitious {
    const NAME: &'static str = "superstitious";
    type Events = Tally;
    type View = u64;
    fn apply(&self, total: &mut Option<u64>, e: &EventEnvelope<TallyEvent>) -> Result<(), BoxError> {
        let TallyEvent::Counted { by } = &e.event;
        if *by == 13 {
            return Err("13".into());
        }
        *total.get_or_insert(0) += by;
        Ok(())
    }
}

async fn app_on(stores: impl Into<Stores>) -> App {
    App::builder(stores)
        .aggregate::<Account>()
        .aggregate::<Tally>()
        .projection(Balances)
        .projection(Totals)
        .start()
        .await
        .unwrap()
}

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn commands_are_routed_to_their_aggregates_engine_and_read_back_through_typed_readers() {
    let memory = MemoryStores::new();
    let app = app_on(memory.clone()).await;
    app.execute(open("a-1")).await.unwrap();
    let deposited = app.execute(deposit("a-1", 30)).await.unwrap();
    let counted = app.execute(Count { id: "t-1".into(), by: 7 }).await.unwrap();
    assert_eq!((deposited.stream.category(), deposited.version), ("account", 2));
    assert_eq!((counted.stream.category(), counted.version), ("tally", 1));
    // The domain's refusal comes back typed, through the App.
    let refused = app.execute(Count { id: "t-1".into(), by: 95 }).await;
    assert!(matches!(refused, Err(CommandError::Rejected(TooMuch))), "{refused:?}");

    let balances = app.reader::<Balances>().unwrap();
    let totals = app.reader::<Totals>().unwrap();
    balances.wait_for(&deposited, WAIT).await.unwrap();
    totals.wait_for(counted.position, WAIT).await.unwrap();
    assert_eq!(balances.get("a-1").await.unwrap().map(|b| b.balance), Some(30));
    assert_eq!(totals.get("t-1").await.unwrap(), Some(7));
    assert_eq!(totals.get_many(&["t-1".into(), "t-2".into()]).await.unwrap(), vec![Some(7), None]);
    assert!(totals.status().await.unwrap().live.is_some());
    assert_eq!(app.engine::<Tally>().unwrap().load("t-1").await.unwrap().0.total, 7);
    assert_eq!(memory.events.len(), 3);
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_unregistered_aggregate_or_projection_is_a_typed_error() {
    let app = App::builder(MemoryStores::new()).aggregate::<Account>().projection(Balances).start().await.unwrap();
    let err = app.execute(Count { id: "t-1".into(), by: 1 }).await.unwrap_err();
    assert!(
        matches!(&err, CommandError::Store(Error::NotRegistered { kind: "aggregate", name }) if name == "tally"),
        "{err:?}"
    );
    let err = app.reader::<Totals>().unwrap_err();
    assert!(matches!(&err, Error::NotRegistered { kind: "projection", name } if name == "tally_totals"), "{err:?}");
    assert!(matches!(app.engine::<Tally>(), Err(Error::NotRegistered { .. })));
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn duplicate_registrations_are_refused_at_start() {
    let twice = App::builder(MemoryStores::new()).aggregate::<Account>().aggregate::<Account>().start().await;
    assert!(matches!(&twice, Err(Error::InvalidConfig { reason }) if reason.contains("account")), "{twice:?}");
    let twice =
        App::builder(MemoryStores::new()).aggregate::<Tally>().projection(Totals).projection(Totals).start().await;
    assert!(matches!(&twice, Err(Error::InvalidConfig { reason }) if reason.contains("tally_totals")), "{twice:?}");
    // Two projection types under one name would write each other's views.
    let same = App::builder(MemoryStores::new()).projection(Totals).projection(SameName).start().await;
    assert!(matches!(same, Err(Error::InvalidConfig { .. })));
}

#[tokio::test]
async fn snapshots_need_a_snapshot_store_and_use_the_bundles() {
    let bare = Stores::new(MemoryEventStore::new(), MemoryViewStore::default());
    let refused = App::builder(bare)
        .aggregate_with::<Account>(AggregateOptions::new().snapshots(SnapshotPolicy::every(2)))
        .start()
        .await;
    assert!(matches!(&refused, Err(Error::InvalidConfig { reason }) if reason.contains("snapshot")), "{refused:?}");

    let memory = MemoryStores::new();
    let app = App::builder(memory.clone())
        .aggregate_with::<Account>(AggregateOptions::new().snapshots(SnapshotPolicy::every(2)).cache_capacity(0))
        .start()
        .await
        .unwrap();
    let done = app.execute(open("a-1")).await.unwrap();
    app.execute(deposit("a-1", 5)).await.unwrap();
    let snapshot = memory.snapshots.load_snapshot(&done.stream).await.unwrap();
    assert_eq!(snapshot.map(|s| s.version), Some(2));
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn upcasters_registered_once_apply_to_the_engine_and_to_the_projections_reading_the_aggregate() {
    let memory = MemoryStores::new();
    // Version 1 of MoneyDeposited called the amount `cents`.
    let stream = StreamId::new("account", "a-1").unwrap();
    let opened = NewEvent::encode(&AccountEvent::Opened { owner: "Ada".into() }, Metadata::default()).unwrap();
    let old = NewEvent {
        event_type: "MoneyDeposited".into(),
        schema_version: 1,
        payload: r#"{"cents":40}"#.into(),
        metadata: Metadata::default(),
    };
    let appended = memory.events.append(&stream, ExpectedVersion::NoStream, vec![opened, old]).await.unwrap();
    let upcasters = Upcasters::new().add(("MoneyDeposited", 1), ("MoneyDeposited", 2), |mut v| {
        let cents = v.get_mut("cents").map(serde_json::Value::take).ok_or("no cents")?;
        Ok(serde_json::json!({ "amount": cents }))
    });
    let app = App::builder(memory)
        .aggregate_with::<Account>(AggregateOptions::new().upcasters(upcasters))
        .projection(Balances)
        .start()
        .await
        .unwrap();
    assert_eq!(app.engine::<Account>().unwrap().load("a-1").await.unwrap().0.balance, 40);
    let balances = app.reader::<Balances>().unwrap();
    balances.wait_for(appended.position, WAIT).await.unwrap();
    assert_eq!(balances.get("a-1").await.unwrap().map(|b| b.balance), Some(40));
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_split_role_on_stores_of_one_process_is_refused() {
    for role in [Role::Command, Role::Query, Role::Projector] {
        let refused = App::builder(MemoryStores::new()).aggregate::<Tally>().role(role).start().await;
        assert!(
            matches!(&refused, Err(Error::InvalidConfig { reason }) if reason.contains("this process")),
            "{role}: {refused:?}"
        );
    }
}

#[tokio::test]
async fn each_role_does_its_part_on_shared_stores() {
    // Two Apps on the same memory stores, marked shared, stand for two processes.
    let memory = MemoryStores::new();
    let shared = || Stores::from(memory.clone()).shared(true);
    let build = |role| App::builder(shared()).aggregate::<Tally>().projection(Totals).role(role);
    let command = build(Role::Command).start().await.unwrap();
    let query = build(Role::Query).start().await.unwrap();

    let done = command.execute(Count { id: "t-1".into(), by: 3 }).await.unwrap();
    let err = query.execute(Count { id: "t-1".into(), by: 3 }).await.unwrap_err();
    assert!(matches!(err, CommandError::Store(Error::WrongRole { role: Role::Query, .. })), "{err:?}");
    assert!(matches!(command.status().projections[0].state, RunState::Elsewhere));
    // Nothing projects yet: the query process waits in vain.
    let totals = query.reader::<Totals>().unwrap();
    assert!(matches!(totals.wait_for(&done, Duration::from_millis(50)).await, Err(Error::Timeout(_))));

    let projector = build(Role::Projector).start().await.unwrap();
    let err = projector.execute(Count { id: "t-1".into(), by: 3 }).await.unwrap_err();
    assert!(matches!(err, CommandError::Store(Error::WrongRole { role: Role::Projector, .. })), "{err:?}");
    assert!(projector.status().projections[0].state.is_running());
    // The query process sees the projector process's views (its reader polls).
    totals.wait_for(&done, WAIT).await.unwrap();
    assert_eq!(totals.get("t-1").await.unwrap(), Some(3));
    for app in [command, query, projector] {
        app.shutdown().await.unwrap();
    }
}

#[tokio::test]
async fn shutdown_refuses_new_commands_stops_the_projectors_and_resolves_stopped() {
    let app = app_on(MemoryStores::new()).await;
    let stopped = tokio::spawn(app.stopped());
    app.execute(Count { id: "t-1".into(), by: 3 }).await.unwrap();
    assert!(app.status().is_healthy());
    assert!(app.status().projections.iter().all(|p| p.state.is_running()));
    app.shutdown().await.unwrap();
    tokio::time::timeout(WAIT, stopped).await.unwrap().unwrap();
    let err = app.execute(Count { id: "t-1".into(), by: 3 }).await.unwrap_err();
    assert!(matches!(err, CommandError::Store(Error::Shutdown)), "{err:?}");
    let status = app.status();
    assert!(status.stopping && !status.is_healthy());
    assert!(status.projections.iter().all(|p| matches!(p.state, RunState::Stopped)), "{status:?}");
    // Again: returns at once.
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn shutdown_gives_up_after_the_drain_timeout() {
    // A projector that cannot take its lease (another holder keeps it) stands by; standing by
    // ends with the shutdown, so the drain completes well within the timeout...
    let memory = MemoryStores::new();
    let held = eventloom_core::store::LeaseManager::acquire(&memory.leases, Totals::NAME).await.unwrap();
    let app = App::builder(memory.clone())
        .aggregate::<Tally>()
        .projection(Totals)
        .drain_timeout(Duration::from_secs(5))
        .start()
        .await
        .unwrap();
    app.shutdown().await.unwrap();
    drop(held);
    // ...while a command stuck in flight past the drain timeout makes the shutdown fail.
    let slow = Stores::new(SlowAppends(memory.events.clone()), memory.views.clone());
    let app = App::builder(slow).aggregate::<Tally>().drain_timeout(Duration::from_millis(50)).start().await.unwrap();
    let stuck = tokio::spawn({
        let app = app.clone();
        async move { app.execute(Count { id: "t-9".into(), by: 1 }).await }
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(matches!(app.shutdown().await, Err(Error::Timeout(_))));
    stuck.abort();
}

#[tokio::test]
async fn a_failed_projection_shows_in_the_status_and_the_others_go_on() {
    let app = App::builder(MemoryStores::new())
        .aggregate::<Tally>()
        .projection(Superstitious)
        .projection_with(Totals, ProjectionOptions::new().batch_size(1).poison_policy(PoisonPolicy::Stop))
        .start()
        .await
        .unwrap();
    app.execute(Count { id: "t-1".into(), by: 13 }).await.unwrap();
    let done = app.execute(Count { id: "t-1".into(), by: 1 }).await.unwrap();
    let err = app.reader::<Superstitious>().unwrap().wait_for(&done, WAIT).await.unwrap_err();
    assert!(matches!(err, Error::Stopped { .. }), "{err:?}");
    app.reader::<Totals>().unwrap().wait_for(&done, WAIT).await.unwrap();
    let failed = async {
        loop {
            if matches!(app.status().projections[0].state, RunState::Failed(_)) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(WAIT, failed).await.unwrap();
    let status = app.status();
    assert!(!status.is_healthy());
    assert!(status.projections[1].state.is_running(), "{status:?}");
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn read_your_writes_is_woken_by_the_commit_not_by_polling() {
    let memory = MemoryStores::new();
    let counting = CountingViews { inner: memory.views.clone(), statuses: Arc::new(AtomicUsize::new(0)) };
    let statuses = counting.statuses.clone();
    let stores = Stores::from(memory.clone()).with_views(counting);
    let app = App::builder(stores).aggregate::<Tally>().projection(Totals).start().await.unwrap();
    let totals = app.reader::<Totals>().unwrap();
    let first = app.execute(Count { id: "t-1".into(), by: 1 }).await.unwrap();
    totals.wait_for(&first, WAIT).await.unwrap();

    // A wait for a position nothing writes: a poller would read the status every 2 ms (about
    // 100 times in 200 ms); woken by commits, it reads once or twice.
    let before = statuses.load(Ordering::SeqCst);
    let far = Position::new(first.position.transaction() + 1_000, first.position.sequence() + 1_000);
    let waited = totals.wait_for(far, Duration::from_millis(200)).await;
    assert!(matches!(waited, Err(Error::Timeout(_))), "{waited:?}");
    let idle = statuses.load(Ordering::SeqCst) - before;
    assert!(idle <= 5, "{idle} status reads while waiting 200 ms for nothing");

    // A wait that a later command satisfies: woken by the commit.
    let before = statuses.load(Ordering::SeqCst);
    let later = tokio::spawn({
        let app = app.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            app.execute(Count { id: "t-1".into(), by: 1 }).await.unwrap()
        }
    });
    let next = Position::new(first.position.transaction() + 1, first.position.sequence() + 1);
    totals.wait_for(next, WAIT).await.unwrap();
    let done = later.await.unwrap();
    assert!(done.position >= next);
    let woken = statuses.load(Ordering::SeqCst) - before;
    assert!(woken <= 6, "{woken} status reads for one commit");
    assert_eq!(totals.get("t-1").await.unwrap(), Some(2));
    app.shutdown().await.unwrap();
}

/// Counts the status reads that go through it.
struct CountingViews {
    inner: MemoryViewStore,
    statuses: Arc<AtomicUsize>,
}

impl ViewStore for CountingViews {
    fn status<'a>(&'a self, p: &'a str) -> BoxFuture<'a, eventloom_core::Result<ProjectionStatus>> {
        Box::pin(async move {
            self.statuses.fetch_add(1, Ordering::SeqCst);
            self.inner.status(p).await
        })
    }
    fn begin_generation<'a>(
        &'a self,
        p: &'a str,
        version: u32,
        token: u64,
    ) -> BoxFuture<'a, eventloom_core::Result<Generation>> {
        Box::pin(async move { self.inner.begin_generation(p, version, token).await })
    }
    fn load_views<'a>(
        &'a self,
        p: &'a str,
        g: u64,
        ids: &'a [String],
    ) -> BoxFuture<'a, eventloom_core::Result<Vec<Option<String>>>> {
        Box::pin(async move { self.inner.load_views(p, g, ids).await })
    }
    fn commit<'a>(&'a self, p: &'a str, commit: ViewCommit) -> BoxFuture<'a, eventloom_core::Result<()>> {
        Box::pin(async move { self.inner.commit(p, commit).await })
    }
    fn go_live<'a>(&'a self, p: &'a str, g: u64, token: u64) -> BoxFuture<'a, eventloom_core::Result<()>> {
        Box::pin(async move { self.inner.go_live(p, g, token).await })
    }
    fn read_views<'a>(
        &'a self,
        p: &'a str,
        ids: &'a [String],
    ) -> BoxFuture<'a, eventloom_core::Result<Vec<Option<String>>>> {
        Box::pin(async move { self.inner.read_views(p, ids).await })
    }
    fn list<'a>(
        &'a self,
        p: &'a str,
        key: &'a IndexKey,
        range: &'a eventloom_core::read::OrderRange,
        after: Option<&'a ListCursor>,
        limit: usize,
    ) -> BoxFuture<'a, eventloom_core::Result<ViewPage>> {
        Box::pin(async move { self.inner.list(p, key, range, after, limit).await })
    }
    fn count<'a>(&'a self, p: &'a str, keys: &'a [IndexKey]) -> BoxFuture<'a, eventloom_core::Result<Vec<u64>>> {
        Box::pin(async move { self.inner.count(p, keys).await })
    }
    fn dead_letters<'a>(&'a self, p: &'a str) -> BoxFuture<'a, eventloom_core::Result<Vec<DeadLetter>>> {
        Box::pin(async move { self.inner.dead_letters(p).await })
    }
    fn record_stop<'a>(
        &'a self,
        p: &'a str,
        stop: Option<&'a ProjectionStop>,
        token: u64,
    ) -> BoxFuture<'a, eventloom_core::Result<()>> {
        Box::pin(async move { self.inner.record_stop(p, stop, token).await })
    }
}

/// An event store whose appends take a minute.
struct SlowAppends(MemoryEventStore);

impl EventStore for SlowAppends {
    fn append<'a>(
        &'a self,
        stream: &'a StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> BoxFuture<'a, eventloom_core::Result<eventloom_core::store::AppendOutcome>> {
        Box::pin(async move {
            tokio::time::sleep(Duration::from_secs(60)).await;
            self.0.append(stream, expected, events).await
        })
    }
    fn read_stream<'a>(
        &'a self,
        stream: &'a StreamId,
        from: u64,
        limit: usize,
    ) -> BoxFuture<'a, eventloom_core::Result<Vec<eventloom_core::model::RecordedEvent>>> {
        Box::pin(async move { self.0.read_stream(stream, from, limit).await })
    }
    fn read_all<'a>(
        &'a self,
        after: Position,
        limit: usize,
    ) -> BoxFuture<'a, eventloom_core::Result<Vec<eventloom_core::model::RecordedEvent>>> {
        Box::pin(async move { self.0.read_all(after, limit).await })
    }
    fn stream_version<'a>(&'a self, stream: &'a StreamId) -> BoxFuture<'a, eventloom_core::Result<u64>> {
        Box::pin(async move { self.0.stream_version(stream).await })
    }
    fn append_command<'a>(
        &'a self,
        stream: &'a StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
        fingerprint: &'a eventloom_core::write::Fingerprint,
    ) -> BoxFuture<'a, eventloom_core::Result<eventloom_core::store::AppendOutcome>> {
        Box::pin(async move {
            tokio::time::sleep(Duration::from_secs(60)).await;
            self.0.append_command(stream, expected, events, fingerprint).await
        })
    }
    fn command_outcome<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, eventloom_core::Result<Option<eventloom_core::store::CommandRecord>>> {
        Box::pin(async move { self.0.command_outcome(id).await })
    }
    fn record_command<'a>(
        &'a self,
        id: &'a str,
        fingerprint: &'a eventloom_core::write::Fingerprint,
        outcome: eventloom_core::store::AppendOutcome,
    ) -> BoxFuture<'a, eventloom_core::Result<()>> {
        Box::pin(async move { self.0.record_command(id, fingerprint, outcome).await })
    }
    fn head<'a>(&'a self) -> BoxFuture<'a, eventloom_core::Result<Option<Position>>> {
        Box::pin(async move { self.0.head().await })
    }
}

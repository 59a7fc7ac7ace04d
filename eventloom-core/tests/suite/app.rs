//! The App: routing, registration errors, roles, shutdown, status, typed readers and
//! read-your-writes woken by the projector's commits.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eventloom_core::model::{ExpectedVersion, NewEvent};
use eventloom_core::prelude::*;
use eventloom_core::store::BoxFuture;
use eventloom_core::{
    AggregateOptions, App, BoxError, CommandError, Error, EventHandler, MemoryStores, Projection, ProjectionOptions,
    Role, Stores,
    app::{AppStatus, HandlerOptions, LeaseState, ProjectionHealth, RunState},
    memory::{MemoryEventStore, MemoryLeases, MemoryViewStore},
    read::PoisonPolicy,
    store::{EventStore, Lease, LeaseManager, ProjectionStatus, SnapshotStore, ViewStore},
    write::{RetryPolicy, SnapshotPolicy, Upcasters},
};

use crate::domain::{Account, AccountEvent, Balances, deposit, open};
use crate::group::CountingEvents;

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

/// Tally totals times a factor, under a name of its own: one type, several instances.
pub struct Scaled {
    name: &'static str,
    factor: u64,
}

impl Projection for Scaled {
    const NAME: &'static str = "tally_scaled";
    type Events = Tally;
    type View = u64;
    fn name(&self) -> &str {
        self.name
    }
    fn apply(&self, total: &mut Option<u64>, e: &EventEnvelope<TallyEvent>) -> Result<(), BoxError> {
        let TallyEvent::Counted { by } = &e.event;
        *total.get_or_insert(0) += by * self.factor;
        Ok(())
    }
}

/// An event handler of tallies under a name of its own: records the position of each event it
/// handled, taking `delay` over each, and fails on every count of `fails_on`.
#[derive(Clone)]
pub struct Audit {
    name: &'static str,
    seen: Arc<Mutex<Vec<Position>>>,
    delay: Duration,
    fails_on: Option<u64>,
}

impl Audit {
    fn new(name: &'static str) -> Self {
        Audit { name, seen: Arc::default(), delay: Duration::ZERO, fails_on: None }
    }

    fn seen(&self) -> Vec<Position> {
        self.seen.lock().unwrap().clone()
    }

    /// Waits until it handled the event at `position`.
    async fn wait_for(&self, position: Position) {
        let handled = async {
            while !self.seen().contains(&position) {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        };
        tokio::time::timeout(WAIT, handled).await.unwrap_or_else(|_| panic!("{} did not handle {position}", self.name));
    }
}

impl EventHandler for Audit {
    const NAME: &'static str = "audit";
    type Events = Tally;

    fn name(&self) -> &str {
        self.name
    }

    fn retry(&self) -> RetryPolicy {
        RetryPolicy::new().max_attempts(2).initial_delay(Duration::from_millis(1)).max_delay(Duration::from_millis(2))
    }

    async fn handle(&self, e: &EventEnvelope<TallyEvent>) -> Result<(), BoxError> {
        tokio::time::sleep(self.delay).await;
        let TallyEvent::Counted { by } = &e.event;
        if self.fails_on == Some(*by) {
            return Err(format!("{by} is not audited").into());
        }
        self.seen.lock().map_err(|_| "poisoned")?.push(e.position);
        Ok(())
    }
}

/// Every event of the log, in order.
async fn every_position(events: &MemoryEventStore) -> Vec<Position> {
    events.read_all(Position::ZERO, 100_000).await.unwrap().iter().map(|e| e.position).collect()
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
    // So would two instances of one type under one name...
    let instances = App::builder(MemoryStores::new())
        .projection(Scaled { name: "tally_double", factor: 2 })
        .projection(Scaled { name: "tally_double", factor: 3 })
        .start()
        .await;
    assert!(
        matches!(&instances, Err(Error::InvalidConfig { reason }) if reason.contains("tally_double")),
        "{instances:?}"
    );
    // ...and a projection and an event handler of one name: their checkpoints are kept by name.
    let both = App::builder(MemoryStores::new()).projection(Totals).handler(Audit::new("tally_totals")).start().await;
    assert!(matches!(&both, Err(Error::InvalidConfig { reason }) if reason.contains("name tally_totals")), "{both:?}");
    let twice =
        App::builder(MemoryStores::new()).handler(Audit::new("audit")).handler(Audit::new("audit")).start().await;
    assert!(
        matches!(&twice, Err(Error::InvalidConfig { reason }) if reason.contains("event handler audit")),
        "{twice:?}"
    );
    let long: &'static str = Box::leak("n".repeat(256).into_boxed_str());
    for bad in ["", "a\0b", "a\nb", long] {
        let refused = App::builder(MemoryStores::new()).projection(Scaled { name: bad, factor: 1 }).start().await;
        assert!(matches!(&refused, Err(Error::InvalidConfig { reason }) if reason.contains("name")), "{refused:?}");
    }
}

#[tokio::test]
async fn one_projection_type_runs_under_two_names_each_with_its_own_views_and_checkpoint() {
    let memory = MemoryStores::new();
    let single = || Scaled { name: "tally_single", factor: 1 };
    let double = || Scaled { name: "tally_double", factor: 2 };
    let app = App::builder(memory.clone())
        .aggregate::<Tally>()
        .projection(single())
        .projection_with(double(), ProjectionOptions::new().batch_size(1))
        .start()
        .await
        .unwrap();
    let done = app.execute(Count { id: "t-1".into(), by: 7 }).await.unwrap();
    let (ones, twos) =
        (app.reader_named::<Scaled>("tally_single").unwrap(), app.reader_named::<Scaled>("tally_double").unwrap());
    assert_eq!((ones.name(), twos.name()), ("tally_single", "tally_double"));
    ones.wait_for(&done, WAIT).await.unwrap();
    twos.wait_for(&done, WAIT).await.unwrap();
    assert_eq!((ones.get("t-1").await.unwrap(), twos.get("t-1").await.unwrap()), (Some(7), Some(14)));
    // By type alone the reader is ambiguous: a typed error naming both.
    let err = app.reader::<Scaled>().unwrap_err();
    match &err {
        Error::Ambiguous { kind: "projection", names, .. } => assert_eq!(names, &["tally_single", "tally_double"]),
        other => panic!("expected Ambiguous, got {other:?}"),
    }
    assert_eq!(err.kind(), eventloom_core::ErrorKind::InvalidInput);
    assert!(matches!(app.reader_named::<Scaled>("tally_scaled"), Err(Error::NotRegistered { .. })));
    let err = app.reader_named::<Totals>("tally_single").unwrap_err();
    assert!(matches!(&err, Error::NotRegistered { name, .. } if name.contains("Totals")), "another type: {err:?}");
    let names: Vec<String> = app.status().projections.into_iter().map(|p| p.name).collect();
    assert_eq!(names, vec!["tally_single", "tally_double"]);
    app.shutdown().await.unwrap();

    // One instance runs on alone for a while...
    let app = App::builder(memory.clone()).aggregate::<Tally>().projection(single()).start().await.unwrap();
    let later = app.execute(Count { id: "t-1".into(), by: 3 }).await.unwrap();
    app.reader::<Scaled>().unwrap().wait_for(&later, WAIT).await.unwrap();
    app.shutdown().await.unwrap();
    let checkpoint = |name: &'static str| {
        let views = memory.views.clone();
        async move { views.status(name).await.unwrap().checkpoint() }
    };
    assert_eq!(checkpoint("tally_single").await, Some(later.position));
    assert_eq!(checkpoint("tally_double").await, Some(done.position), "each instance has its own checkpoint");

    // ...and a restart resumes each from its own checkpoint, folding nothing twice.
    let app = App::builder(memory.clone())
        .aggregate::<Tally>()
        .projection(double())
        .projection(single())
        .start()
        .await
        .unwrap();
    let last = app.execute(Count { id: "t-1".into(), by: 1 }).await.unwrap();
    let (ones, twos) =
        (app.reader_named::<Scaled>("tally_single").unwrap(), app.reader_named::<Scaled>("tally_double").unwrap());
    ones.wait_for(&last, WAIT).await.unwrap();
    twos.wait_for(&last, WAIT).await.unwrap();
    assert_eq!((ones.get("t-1").await.unwrap(), twos.get("t-1").await.unwrap()), (Some(11), Some(22)));
    app.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_handlers_run_with_the_projections_fed_by_one_read_of_the_log_and_stop_on_shutdown() {
    let events = CountingEvents::default();
    let views = MemoryViewStore::default();
    let (audit, other) = (Audit::new("audit"), Audit::new("audit_2"));
    let app = App::builder(Stores::new(events.clone(), views.clone()))
        .aggregate::<Tally>()
        .projection(Totals)
        .projection_with(Scaled { name: "tally_double", factor: 2 }, ProjectionOptions::new().batch_size(5))
        .handler(audit.clone())
        .handler_with(other.clone(), HandlerOptions::new().poison_policy(PoisonPolicy::DeadLetter))
        .start()
        .await
        .unwrap();
    let status = app.status();
    let names = |list: &[ProjectionHealth]| list.iter().map(|p| p.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(&status.projections), vec!["tally_totals", "tally_double"]);
    assert_eq!(names(&status.handlers), vec!["audit", "audit_2"]);
    assert!(status.handlers.iter().all(|h| h.state.is_running()) && status.is_healthy(), "{status:?}");

    let (totals, doubled) = (app.reader::<Totals>().unwrap(), app.reader::<Scaled>().unwrap());
    let caught_up = |done: eventloom_core::CommandOutcome| {
        let (totals, doubled, audit, other) = (totals.clone(), doubled.clone(), audit.clone(), other.clone());
        async move {
            totals.wait_for(&done, WAIT).await.unwrap();
            doubled.wait_for(&done, WAIT).await.unwrap();
            audit.wait_for(done.position).await;
            other.wait_for(done.position).await;
        }
    };
    caught_up(app.execute(Count { id: "t-0".into(), by: 1 }).await.unwrap()).await;
    // Live: each commit is read once for the four of them (alone, each would read it).
    let before = events.reads();
    let appends = 20;
    for n in 0..appends {
        caught_up(app.execute(Count { id: format!("t-{}", n % 3), by: 1 }).await.unwrap()).await;
    }
    let reads = events.reads() - before;
    assert!(reads <= 3 * appends, "{reads} reads of the log for {appends} appends, two projections and two handlers");
    app.shutdown().await.unwrap();
    let status = app.status();
    assert!(status.handlers.iter().all(|h| matches!(h.state, RunState::Stopped)), "{status:?}");
    let every = every_position(&events.inner).await;
    assert_eq!(audit.seen(), every, "every event once");
    assert_eq!(other.seen(), every, "every event once");
}

#[tokio::test]
async fn a_failing_handler_stops_alone_with_its_own_stop_and_a_dead_lettering_instance_goes_on() {
    let memory = MemoryStores::new();
    let failing = |name| Audit { fails_on: Some(13), ..Audit::new(name) };
    let (strict, lenient) = (failing("audit_strict"), failing("audit_lenient"));
    let app = App::builder(memory.clone())
        .aggregate::<Tally>()
        .projection(Totals)
        .handler(strict.clone())
        .handler_with(lenient.clone(), HandlerOptions::new().poison_policy(PoisonPolicy::DeadLetter))
        .start()
        .await
        .unwrap();
    let before = app.execute(Count { id: "t-1".into(), by: 1 }).await.unwrap();
    let thirteen = app.execute(Count { id: "t-1".into(), by: 13 }).await.unwrap();
    let after = app.execute(Count { id: "t-1".into(), by: 2 }).await.unwrap();
    lenient.wait_for(after.position).await;
    app.reader::<Totals>().unwrap().wait_for(&after, WAIT).await.unwrap();
    let status = status_until(&app, |s| matches!(s.handlers[0].state, RunState::Failed(_))).await;
    let RunState::Failed(error) = &status.handlers[0].state else { unreachable!() };
    assert!(error.to_string().contains("13 is not audited"), "{error}");
    assert!(status.handlers[1].state.is_running() && status.projections[0].state.is_running(), "{status:?}");
    assert!(!status.is_healthy());
    assert_eq!(strict.seen(), vec![before.position], "stopped at the event, the one before handled");
    assert_eq!(lenient.seen(), vec![before.position, after.position]);
    // Each instance keeps its own stop and dead letters.
    let stop = memory.views.status("audit_strict").await.unwrap().stopped.expect("a recorded stop");
    assert_eq!(stop.position, Some(thirteen.position));
    assert_eq!(memory.views.status("audit_lenient").await.unwrap().stopped, None);
    let letters = memory.views.dead_letters("audit_lenient").await.unwrap();
    assert_eq!(letters.iter().map(|d| d.position).collect::<Vec<_>>(), vec![thirteen.position]);
    assert!(memory.views.dead_letters("audit_strict").await.unwrap().is_empty());
    // Health tells each handler's lease and lag, as for projections.
    let health = app.health(10_000).await;
    assert!(matches!(health.handlers[1].lease, LeaseState::Leading { .. }), "{health:?}");
    assert!(health.handlers[1].lag.clone().unwrap().unwrap().caught_up(), "{health:?}");
    let behind = health.handlers[0].lag.clone().unwrap().unwrap();
    let events = behind.unprojected.as_ref().map(|u| u.events).unwrap();
    assert_eq!((events, behind.checkpoint()), (2, Some(before.position)), "the event it stopped at, and one");
    app.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_drains_on_shutdown_after_the_event_in_progress_and_a_restart_goes_on_from_there() {
    let memory = MemoryStores::new();
    let app = App::builder(memory.clone()).aggregate::<Tally>().start().await.unwrap();
    for n in 0..40 {
        app.execute(Count { id: format!("t-{n}"), by: 1 }).await.unwrap();
    }
    app.shutdown().await.unwrap();
    // 50 ms per event: the 40 events read in one batch take 2 s.
    let slow = Audit { delay: Duration::from_millis(50), ..Audit::new("audit") };
    let app = App::builder(memory.clone()).aggregate::<Tally>().handler(slow.clone()).start().await.unwrap();
    let started = async {
        while slow.seen().is_empty() {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    };
    tokio::time::timeout(WAIT, started).await.unwrap();
    let stopping = tokio::time::Instant::now();
    app.shutdown().await.unwrap();
    let took = stopping.elapsed();
    assert!(took < Duration::from_millis(500), "the shutdown waited {took:?} for the rest of the batch");
    let handled = slow.seen();
    assert!(handled.len() < 40, "stopped before the end of the batch");
    let checkpoint = memory.views.status("audit").await.unwrap().checkpoint();
    assert_eq!(checkpoint, handled.last().copied(), "what was handled is written");

    let app = App::builder(memory.clone()).aggregate::<Tally>().handler(slow.clone()).start().await.unwrap();
    let every = every_position(&memory.events).await;
    slow.wait_for(*every.last().unwrap()).await;
    app.shutdown().await.unwrap();
    assert_eq!(slow.seen(), every, "every event once, across the restart");
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
    balances.wait_for(appended.outcome().position, WAIT).await.unwrap();
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
    let held = memory.leases.acquire(Totals::NAME).await.unwrap();
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
    let slow = Stores::new(TestEvents::slow(memory.events.clone()), memory.views.clone());
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

/// Waits until `app`'s status satisfies `ready` (at most [`WAIT`]).
async fn status_until(app: &App, ready: impl Fn(&AppStatus) -> bool) -> AppStatus {
    let waited = async {
        loop {
            let status = app.status();
            if ready(&status) {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(WAIT, waited).await.unwrap_or_else(|_| panic!("never ready: {:?}", app.status()))
}

#[tokio::test]
async fn the_status_tells_which_process_leads_and_health_how_far_behind_the_views_are_in_any_role() {
    // Apps on the same memory stores, marked shared, stand for processes.
    let memory = MemoryStores::new();
    let shared = || Stores::from(memory.clone()).shared(true);
    let build = |role| App::builder(shared()).aggregate::<Tally>().projection(Totals).role(role).start();
    let command = build(Role::Command).await.unwrap();
    let query = build(Role::Query).await.unwrap();
    for by in [1, 2, 3] {
        command.execute(Count { id: "t-1".into(), by }).await.unwrap();
    }
    let done = command.execute(Count { id: "t-2".into(), by: 4 }).await.unwrap();

    // No projector yet: nothing is live, and the query process counts what the views lack.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let health = query.health(3).await;
    let totals = &health.projections[0];
    assert!(matches!(totals.state, RunState::Elsewhere) && totals.lease == LeaseState::NotHeld, "{totals:?}");
    let lag = totals.lag.clone().unwrap().unwrap();
    let unprojected = lag.unprojected.clone().unwrap();
    assert_eq!((unprojected.events, unprojected.more, unprojected.held_back), (3, true, 0), "capped at 3: {lag:?}");
    assert!(!lag.caught_up());
    assert!(unprojected.oldest >= Some(Duration::from_millis(20)), "{lag:?}");
    let lag = query.health(10).await.projections[0].lag.clone().unwrap().unwrap();
    let unprojected = lag.unprojected.clone().unwrap();
    assert_eq!((unprojected.events, unprojected.more, lag.checkpoint()), (4, false, None));
    assert!(query.status().projections[0].lag.is_none(), "status reads no store");

    // A projector process leads, and catches the views up.
    let leader = build(Role::Projector).await.unwrap();
    query.reader::<Totals>().unwrap().wait_for(&done, WAIT).await.unwrap();
    let first = status_until(&leader, |s| s.projections[0].lease.token().is_some()).await.projections[0].lease;
    let lag = query.health(10).await.projections[0].lag.clone().unwrap().unwrap();
    let unprojected = lag.unprojected.clone().unwrap();
    assert_eq!((unprojected.events, unprojected.more, unprojected.oldest), (0, false, None), "{lag:?}");
    assert!(lag.caught_up());
    assert_eq!(lag.checkpoint(), Some(done.position));
    assert!(lag.views.live.is_some());

    // A second one stands by; once the leader is gone it takes the lease, with a newer token.
    let standby = build(Role::Projector).await.unwrap();
    status_until(&standby, |s| s.projections[0].lease == LeaseState::StandingBy).await;
    assert_eq!(leader.status().projections[0].lease, first, "the first still leads");
    leader.shutdown().await.unwrap();
    assert_eq!(leader.status().projections[0].lease, LeaseState::NotHeld, "stopped: leads no more");
    let taken = status_until(&standby, |s| s.projections[0].lease.token().is_some()).await.projections[0].lease;
    assert!(taken.token() > first.token(), "{taken:?} after {first:?}");
    let later = command.execute(Count { id: "t-2".into(), by: 5 }).await.unwrap();
    query.reader::<Totals>().unwrap().wait_for(&later, WAIT).await.unwrap();
    assert!(standby.health(10).await.projections[0].lag.clone().unwrap().unwrap().caught_up());
    for app in [command, query, standby] {
        app.shutdown().await.unwrap();
    }
}

#[tokio::test]
async fn health_reports_a_store_that_fails_as_that_projections_lag_error() {
    let memory = MemoryStores::new();
    let views = CountingViews::new(memory.views.clone());
    let down = views.down.clone();
    let app = App::builder(Stores::from(memory).with_views(views))
        .aggregate::<Tally>()
        .projection(Totals)
        .start()
        .await
        .unwrap();
    let done = app.execute(Count { id: "t-1".into(), by: 1 }).await.unwrap();
    app.reader::<Totals>().unwrap().wait_for(&done, WAIT).await.unwrap();
    assert!(app.health(10).await.projections[0].lag.clone().unwrap().unwrap().caught_up());
    down.store(true, Ordering::SeqCst);
    let health = app.health(10).await;
    let lag = health.projections[0].lag.clone().unwrap();
    assert!(matches!(lag.as_ref().map_err(|e| e.as_ref()), Err(Error::Unavailable { .. })), "{lag:?}");
    assert!(health.projections[0].state.is_running(), "an outage is retried, not a failure");
    down.store(false, Ordering::SeqCst);
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn health_tells_the_views_status_when_only_the_event_store_fails() {
    let memory = MemoryStores::new();
    let events = TestEvents::failing(memory.events.clone());
    let down = events.down.clone();
    let stores = Stores::new(events, memory.views.clone()).with_leases(memory.leases.clone());
    let app = App::builder(stores).aggregate::<Tally>().projection(Totals).start().await.unwrap();
    let done = app.execute(Count { id: "t-1".into(), by: 1 }).await.unwrap();
    app.reader::<Totals>().unwrap().wait_for(&done, WAIT).await.unwrap();
    down.store(true, Ordering::SeqCst);
    let health = app.health(10).await;
    let lag = health.projections[0].lag.clone().unwrap().expect("the view store answers");
    assert!(lag.views.live.is_some() && lag.checkpoint() == Some(done.position), "{lag:?}");
    let unprojected = lag.unprojected.as_ref().map_err(|e| e.as_ref());
    assert!(matches!(unprojected, Err(Error::Unavailable { .. })), "{lag:?}");
    assert!(!lag.caught_up(), "the event store could not tell");
    down.store(false, Ordering::SeqCst);
    assert!(app.health(10).await.projections[0].lag.clone().unwrap().unwrap().caught_up());
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_lease_given_up_after_another_runner_wrote_shows_standing_by() {
    let memory = MemoryStores::new();
    let leases = WatchedLeases {
        inner: memory.leases.clone(),
        asked: Arc::new(AtomicUsize::new(0)),
        released: Arc::new(AtomicUsize::new(0)),
    };
    let (asked, released) = (leases.asked.clone(), leases.released.clone());
    let stores = Stores::new(memory.events.clone(), memory.views.clone()).with_leases(leases);
    let app = App::builder(stores).aggregate::<Tally>().projection(Totals).start().await.unwrap();
    let done = app.execute(Count { id: "t-1".into(), by: 1 }).await.unwrap();
    app.reader::<Totals>().unwrap().wait_for(&done, WAIT).await.unwrap();
    assert_eq!(app.status().projections[0].lease, LeaseState::Leading { token: 1 });

    // Another runner writes with a newer token: this one's next write is fenced, and it gives
    // the lease up, then backs off (100 ms) before it asks again.
    memory.views.record_stop(Totals::NAME, None, 1_000).await.unwrap().unwrap();
    app.execute(Count { id: "t-1".into(), by: 1 }).await.unwrap();
    let given_up = async {
        while released.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    tokio::time::timeout(WAIT, given_up).await.unwrap();
    // On this one-thread runtime the runner does not move between these lines.
    assert_eq!(asked.load(Ordering::SeqCst), 1, "backing off: not asking again yet");
    let status = app.status();
    assert_eq!(status.projections[0].lease, LeaseState::StandingBy, "it gave the lease up: {status:?}");
    assert!(status.projections[0].state.is_running(), "it backs off, then asks again");
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_lost_lease_shows_standing_by_before_its_runner_notices() {
    let memory = MemoryStores::new();
    let app = App::builder(memory.clone()).aggregate::<Tally>().projection(Totals).start().await.unwrap();
    let done = app.execute(Count { id: "t-1".into(), by: 1 }).await.unwrap();
    app.reader::<Totals>().unwrap().wait_for(&done, WAIT).await.unwrap();
    assert_eq!(app.status().projections[0].lease, LeaseState::Leading { token: 1 });
    memory.leases.revoke(Totals::NAME);
    // On this one-thread runtime the runner has not run since.
    assert_eq!(app.status().projections[0].lease, LeaseState::StandingBy);
    status_until(&app, |s| s.projections[0].lease == LeaseState::Leading { token: 2 }).await;
    app.shutdown().await.unwrap();
}

/// Lets a test hold a projection's batch: `apply` on a tally counted by 13 tells `entered`, waits
/// until the gate opens, then fails.
#[derive(Clone, Default)]
struct Gate {
    entered: Arc<tokio::sync::Notify>,
    open: Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>,
}

impl Gate {
    fn open(&self) {
        let (open, changed) = &*self.open;
        *open.lock().unwrap() = true;
        changed.notify_all();
    }
}

struct FailsAtTheGate(Gate);

impl Projection for FailsAtTheGate {
    const NAME: &'static str = "fails_at_the_gate";
    type Events = Tally;
    type View = u64;
    fn apply(&self, total: &mut Option<u64>, e: &EventEnvelope<TallyEvent>) -> Result<(), BoxError> {
        let TallyEvent::Counted { by } = &e.event;
        if *by == 13 {
            self.0.entered.notify_one();
            let (open, changed) = &*self.0.open;
            let _open = changed.wait_while(open.lock().unwrap(), |open| !*open).unwrap();
            return Err("13".into());
        }
        *total.get_or_insert(0) += by;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projection_that_fails_on_its_last_batch_during_the_shutdown_stays_failed() {
    let gate = Gate::default();
    let app = App::builder(MemoryStores::new())
        .aggregate::<Tally>()
        .projection(FailsAtTheGate(gate.clone()))
        .start()
        .await
        .unwrap();
    app.execute(Count { id: "t-1".into(), by: 13 }).await.unwrap();
    tokio::time::timeout(WAIT, gate.entered.notified()).await.expect("the batch is being folded");
    let shutdown = tokio::spawn({
        let app = app.clone();
        async move { app.shutdown().await }
    });
    status_until(&app, |s| s.stopping).await;
    gate.open();
    tokio::time::timeout(WAIT, shutdown).await.unwrap().unwrap().expect("the drain itself went well");
    let status = app.status();
    let failed = &status.projections[0].state;
    assert!(matches!(failed, RunState::Failed(error) if error.to_string().contains("13")), "{status:?}");
    assert!(!status.is_healthy());
}

#[tokio::test]
async fn read_your_writes_is_woken_by_the_commit_not_by_polling() {
    let memory = MemoryStores::new();
    let counting = CountingViews::new(memory.views.clone());
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

/// Counts the status reads that go through it; while `down`, they fail as an outage.
struct CountingViews {
    inner: MemoryViewStore,
    statuses: Arc<AtomicUsize>,
    down: Arc<AtomicBool>,
}

impl CountingViews {
    fn new(inner: MemoryViewStore) -> Self {
        CountingViews { inner, statuses: Arc::new(AtomicUsize::new(0)), down: Arc::new(AtomicBool::new(false)) }
    }
}

impl eventloom_core::store::DelegateViewStore for CountingViews {
    type Inner = MemoryViewStore;
    fn inner(&self) -> &MemoryViewStore {
        &self.inner
    }
    fn status<'a>(&'a self, p: &'a str) -> BoxFuture<'a, eventloom_core::Result<ProjectionStatus>> {
        Box::pin(async move {
            self.statuses.fetch_add(1, Ordering::SeqCst);
            if self.down.load(Ordering::SeqCst) {
                return Err(Error::unavailable_msg("the view store is down"));
            }
            self.inner.status(p).await
        })
    }
}

/// An event store whose appends take a minute when `slow`, and whose reads fail as an outage
/// while `down`.
struct TestEvents {
    inner: MemoryEventStore,
    slow: bool,
    down: Arc<AtomicBool>,
}

impl TestEvents {
    fn slow(inner: MemoryEventStore) -> Self {
        TestEvents { inner, slow: true, down: Arc::new(AtomicBool::new(false)) }
    }

    fn failing(inner: MemoryEventStore) -> Self {
        TestEvents { inner, slow: false, down: Arc::new(AtomicBool::new(false)) }
    }

    async fn delay(&self) {
        if self.slow {
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
    }

    fn up(&self) -> eventloom_core::Result<()> {
        if self.down.load(Ordering::SeqCst) {
            return Err(Error::unavailable_msg("the event store is down"));
        }
        Ok(())
    }
}

impl eventloom_core::store::DelegateEventStore for TestEvents {
    type Inner = MemoryEventStore;
    fn inner(&self) -> &MemoryEventStore {
        &self.inner
    }
    fn append<'a>(
        &'a self,
        stream: &'a StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> BoxFuture<'a, eventloom_core::Result<eventloom_core::store::Appended>> {
        Box::pin(async move {
            self.delay().await;
            self.inner.append(stream, expected, events).await
        })
    }
    fn append_command<'a>(
        &'a self,
        stream: &'a StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
        fingerprint: &'a eventloom_core::store::CommandEntry,
    ) -> BoxFuture<'a, eventloom_core::Result<eventloom_core::store::Appended>> {
        Box::pin(async move {
            self.delay().await;
            self.inner.append_command(stream, expected, events, fingerprint).await
        })
    }
    fn read_all<'a>(
        &'a self,
        after: Position,
        limit: usize,
    ) -> BoxFuture<'a, eventloom_core::Result<Vec<eventloom_core::model::RecordedEvent>>> {
        Box::pin(async move {
            self.up()?;
            self.inner.read_all(after, limit).await
        })
    }
    fn read_all_bounded<'a>(
        &'a self,
        after: Position,
        limit: usize,
        max_bytes: usize,
    ) -> BoxFuture<'a, eventloom_core::Result<Vec<eventloom_core::model::RecordedEvent>>> {
        Box::pin(async move {
            self.up()?;
            self.inner.read_all_bounded(after, limit, max_bytes).await
        })
    }
    fn head<'a>(&'a self) -> BoxFuture<'a, eventloom_core::Result<Option<Position>>> {
        Box::pin(async move {
            self.up()?;
            self.inner.head().await
        })
    }
    fn count_after<'a>(&'a self, after: Position, cap: u64) -> BoxFuture<'a, eventloom_core::Result<u64>> {
        Box::pin(async move {
            self.up()?;
            self.inner.count_after(after, cap).await
        })
    }
    fn held_back<'a>(&'a self, cap: u64) -> BoxFuture<'a, eventloom_core::Result<u64>> {
        Box::pin(async move {
            self.up()?;
            self.inner.held_back(cap).await
        })
    }
}

/// Leases of `inner`, counting the requests and the leases given up.
/// Counts the projections' and handlers' leases (not the command janitor's).
struct WatchedLeases {
    inner: MemoryLeases,
    asked: Arc<AtomicUsize>,
    released: Arc<AtomicUsize>,
}

/// The lease the App's command janitor takes.
const JANITOR_LEASE: &str = "eventloom.command-retention";

/// Counts a lease given up when dropped.
struct Released(Arc<AtomicUsize>);

impl Drop for Released {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

impl eventloom_core::store::DelegateLeaseManager for WatchedLeases {
    type Inner = MemoryLeases;
    fn inner(&self) -> &MemoryLeases {
        &self.inner
    }
    fn acquire<'a>(&'a self, name: &'a str) -> BoxFuture<'a, eventloom_core::Result<Lease>> {
        Box::pin(async move {
            if name == JANITOR_LEASE {
                return self.inner.acquire(name).await;
            }
            self.asked.fetch_add(1, Ordering::SeqCst);
            let lease = self.inner.acquire(name).await?;
            // Never lost: these tests lose none.
            let (keep, never) = tokio::sync::watch::channel(false);
            Ok(Lease::new(lease.token(), never, (Released(self.released.clone()), lease, keep)))
        })
    }
    fn try_acquire<'a>(&'a self, name: &'a str) -> BoxFuture<'a, eventloom_core::Result<Option<Lease>>> {
        Box::pin(async move {
            if name == JANITOR_LEASE {
                return self.inner.try_acquire(name).await;
            }
            self.asked.fetch_add(1, Ordering::SeqCst);
            let Some(lease) = self.inner.try_acquire(name).await? else { return Ok(None) };
            let (keep, never) = tokio::sync::watch::channel(false);
            Ok(Some(Lease::new(lease.token(), never, (Released(self.released.clone()), lease, keep))))
        })
    }
}

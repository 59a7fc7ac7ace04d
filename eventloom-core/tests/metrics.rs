//! The metrics the crate records, seen through a real recorder installed for this test binary
//! (a binary of its own: the recorder is global, and handles are taken when engines and
//! projectors are built, so it is installed first).
#![allow(clippy::unwrap_used)]

use eventloom_core::memory::MemorySnapshotStore;
use eventloom_core::prelude::*;
use eventloom_core::read::{PoisonPolicy, Projector};
use eventloom_core::store::EventStore;
use eventloom_core::testing::metrics::TestRecorder;
use eventloom_core::write::{Cqrs, RetryPolicy, SnapshotPolicy};
use eventloom_core::{CommandError, Position, memory::MemoryEventStore, memory::MemoryViewStore};
use metrics::Unit;
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
enum MeterEvent {
    Read { value: u64 },
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Meter {
    last: u64,
}

#[derive(Debug, thiserror::Error)]
enum MeterError {
    #[error("a meter never runs backwards")]
    Backwards,
}

impl Aggregate for Meter {
    const TYPE: &'static str = "meter";
    type Event = MeterEvent;
    type Error = MeterError;
    fn apply(&mut self, MeterEvent::Read { value }: &MeterEvent) {
        self.last = *value;
    }
}

#[derive(Debug, Serialize, Command)]
#[command(aggregate = Meter)]
struct Record {
    #[command(id)]
    meter: String,
    value: u64,
}

impl Handle<Record> for Meter {
    fn handle(&self, cmd: &Record) -> Result<Vec<MeterEvent>, MeterError> {
        if cmd.value < self.last {
            return Err(MeterError::Backwards);
        }
        Ok(vec![MeterEvent::Read { value: cmd.value }])
    }
}

/// The last reading per meter; refuses the reading 13.
struct Readings;

impl Projection for Readings {
    const NAME: &'static str = "readings";
    type Events = Meter;
    type View = u64;
    fn apply(&self, view: &mut Option<u64>, e: &EventEnvelope<MeterEvent>) -> Result<(), BoxError> {
        let MeterEvent::Read { value } = e.event;
        if value == 13 {
            return Err("13 is unlucky".into());
        }
        *view = Some(value);
        Ok(())
    }
}

fn recorder() -> &'static TestRecorder {
    TestRecorder::install()
}

#[tokio::test]
async fn commands_conflicts_a_catch_up_and_a_dead_letter_move_their_metrics_by_bounded_labels() {
    let rec = recorder();
    eventloom_core::metrics::describe();
    let events = MemoryEventStore::new();
    // Two engines, each with its own cache, as two command processes: the second one's cached
    // state falls behind the first's appends and its next append conflicts.
    let one = Cqrs::<Meter, _>::new(events.clone()).with_retry(RetryPolicy::immediate(5));
    let two = Cqrs::<Meter, _>::new(events.clone()).with_retry(RetryPolicy::immediate(5));
    let ids = ["m-7f3a", "m-91c2"];
    for (i, id) in ids.iter().enumerate() {
        one.execute(Record { meter: (*id).into(), value: 10 + i as u64 }).await.unwrap();
    }
    two.execute(Record { meter: ids[0].into(), value: 12 }).await.unwrap();
    // `one` decided on version 1, the stream is at 2: a conflict, a retry, then ok.
    one.execute(Record { meter: ids[0].into(), value: 13 }).await.unwrap();
    // A business rule.
    let err = one.execute(Record { meter: ids[0].into(), value: 1 }).await.unwrap_err();
    assert!(matches!(err, CommandError::Rejected(MeterError::Backwards)));
    // A required version that does not hold: a conflict no retry mends.
    let opts = ExecuteOptions::default().expect_version(5).command_id("cmd-5d1e");
    let err = two.execute_with(Record { meter: ids[1].into(), value: 20 }, opts).await.unwrap_err();
    assert!(matches!(err, CommandError::Conflict { .. }), "{err:?}");
    // An id the store refuses.
    let err = one.execute(Record { meter: String::new(), value: 1 }).await.unwrap_err();
    assert!(matches!(err, CommandError::Store(_)), "{err:?}");
    // The same request again under its id: the first outcome, replayed.
    let opts = ExecuteOptions::default().command_id("cmd-77aa");
    one.execute_with(Record { meter: ids[1].into(), value: 30 }, opts.clone()).await.unwrap();
    let again = one.execute_with(Record { meter: ids[1].into(), value: 30 }, opts).await.unwrap();
    assert!(again.replayed);

    let by = |outcome| [("aggregate", "meter"), ("command", "Record"), ("outcome", outcome)];
    assert_eq!(rec.counter("eventloom_commands_total", &by("ok")), 5);
    assert_eq!(rec.counter("eventloom_commands_total", &by("rejected")), 1);
    assert_eq!(rec.counter("eventloom_commands_total", &by("conflict")), 1);
    assert_eq!(rec.counter("eventloom_commands_total", &by("error")), 1);
    assert_eq!(rec.counter("eventloom_commands_total", &by("replayed")), 1);
    let meter = [("aggregate", "meter")];
    let durations = rec.samples("eventloom_command_duration_seconds", &[("aggregate", "meter"), ("command", "Record")]);
    assert_eq!(durations.len(), 9, "one sample per command");
    assert!(durations.iter().all(|d| (0.0..10.0).contains(d)), "{durations:?}");
    assert_eq!(rec.counter("eventloom_command_conflicts_total", &meter), 1);
    assert_eq!(rec.counter("eventloom_command_retries_total", &meter), 1);
    assert_eq!(rec.counter("eventloom_append_events_total", &meter), 5);
    assert!(rec.counter("eventloom_append_bytes_total", &meter) >= 5 * "{\"value\":10}".len() as u64);
    // 6 appends went to the store: 5 written and the one that conflicted.
    assert_eq!(rec.samples("eventloom_append_duration_seconds", &meter).len(), 6);
    // Loads: each engine's first command on each meter it touched (the cache serves the rest);
    // `two`'s state of m-91c2 is the store's after it was loaded, so its check needs no read.
    assert_eq!(rec.counter("eventloom_loads_total", &meter), 4);
    assert_eq!(rec.counter("eventloom_cache_misses_total", &meter), 4);
    assert_eq!(rec.counter("eventloom_cache_hits_total", &meter), 3);
    // Loads read m-7f3a's event (by `two`) and m-91c2's (by `two`), and the retry read one.
    assert_eq!(rec.counter("eventloom_load_events_total", &meter), 3);

    // A projector catches up; the reading 13 is dead-lettered.
    let views = MemoryViewStore::default();
    let projector = Projector::new(events.clone(), views.clone()).with_poison_policy(PoisonPolicy::DeadLetter);
    projector.catch_up(&Readings).await.unwrap();
    let readings = [("projection", "readings")];
    assert_eq!(rec.counter("eventloom_projector_dead_letters_total", &readings), 1);
    assert_eq!(rec.counter("eventloom_projector_events_total", &readings), 5);
    assert_eq!(rec.counter("eventloom_projector_batches_total", &readings), 1);
    assert_eq!(rec.samples("eventloom_projector_batch_size", &readings), vec![5.0]);
    assert_eq!(rec.samples("eventloom_projector_batch_duration_seconds", &readings).len(), 1);
    assert_eq!(rec.gauge("eventloom_projector_lag_events", &readings), Some(0.0));
    assert_eq!(rec.gauge("eventloom_projector_lag_seconds", &readings), Some(0.0));
    assert!(
        rec.counter("eventloom_subscription_polls_total", &[]) >= 2,
        "a read that found events, one that found none"
    );

    // A load that starts from a snapshot (saved after each command; the cache off).
    let snapshotting = Cqrs::<Meter, _>::new(events.clone())
        .with_snapshots(MemorySnapshotStore::default(), SnapshotPolicy::every(1))
        .with_cache_capacity(0);
    for value in 40..60 {
        snapshotting.execute(Record { meter: ids[0].into(), value }).await.unwrap();
        if rec.counter("eventloom_load_snapshot_hits_total", &meter) > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(rec.counter("eventloom_load_snapshot_hits_total", &meter) > 0, "no load started from a snapshot");

    // A subscription that has read everything waits, and is woken by the next append.
    let mut subscription = events.subscribe(Position::ZERO);
    while subscription.try_next_batch().await.unwrap().is_some() {}
    let woken = rec.counter("eventloom_subscription_wakeups_total", &[]);
    let waiting = tokio::spawn(async move { subscription.next_batch().await.map(|batch| batch.len()) });
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    one.execute(Record { meter: ids[1].into(), value: 99 }).await.unwrap();
    let read = tokio::time::timeout(std::time::Duration::from_secs(10), waiting).await.unwrap().unwrap().unwrap();
    assert_eq!(read, 1);
    assert!(rec.counter("eventloom_subscription_wakeups_total", &[]) > woken, "the append woke the subscription");

    // Help texts and units for the exporter.
    let described = rec.described();
    assert!(described.contains(&("eventloom_command_duration_seconds".to_owned(), Some(Unit::Seconds))));
    assert!(described.contains(&("eventloom_append_bytes_total".to_owned(), Some(Unit::Bytes))));

    // No label carries a stream id or a command id.
    let values = rec.label_values();
    assert!(!values.is_empty());
    for (name, key, value) in values {
        assert!(
            ["aggregate", "command", "outcome", "projection", "process", "lease", "source"].contains(&key.as_str()),
            "{name}: {key}"
        );
        assert!(!value.contains("m-") && !value.contains("cmd-"), "{name} has {key}={value}");
    }
}

// ---- A process manager and its lease, on an App ----

/// A dial: another aggregate, so that this test's counts stay apart from the one above.
#[derive(Debug, Default)]
struct Dial;

impl Aggregate for Dial {
    const TYPE: &'static str = "dial";
    type Event = MeterEvent;
    type Error = MeterError;
    fn apply(&mut self, _: &MeterEvent) {}
}

#[derive(Debug, Clone, Serialize, Deserialize, Command)]
#[command(aggregate = Dial)]
struct Turn {
    #[command(id)]
    dial: String,
    value: u64,
}

impl Handle<Turn> for Dial {
    fn handle(&self, cmd: &Turn) -> Result<Vec<MeterEvent>, MeterError> {
        Ok(vec![MeterEvent::Read { value: cmd.value }])
    }
}

#[derive(Debug, Serialize, Deserialize)]
enum MirrorCommand {
    Turn(Turn),
}

impl eventloom_core::process::CommandSet for MirrorCommand {
    async fn dispatch(
        self,
        to: &eventloom_core::process::Dispatcher,
        options: ExecuteOptions,
    ) -> eventloom_core::process::Dispatched {
        match self {
            MirrorCommand::Turn(c) => to.execute(c, options).await,
        }
    }
}

/// Turns a copy of every dial that is not a copy itself.
struct Mirror;

impl ProcessManager for Mirror {
    const NAME: &'static str = "mirror";
    type Events = Dial;
    type State = u64;
    type Commands = MirrorCommand;

    fn correlate(&self, event: &EventEnvelope<MeterEvent>) -> Option<String> {
        Some(event.stream.id().to_owned())
    }

    fn on_event(
        &self,
        seen: &mut u64,
        e: &EventEnvelope<MeterEvent>,
        d: &mut eventloom_core::process::Decision<MirrorCommand>,
    ) -> Result<(), BoxError> {
        *seen += 1;
        let MeterEvent::Read { value } = e.event;
        if !e.stream.id().starts_with("copy-") {
            d.issue(MirrorCommand::Turn(Turn { dial: format!("copy-{}", e.stream.id()), value }));
        }
        Ok(())
    }
}

/// Waits until `check` holds (at most 10 s).
async fn until(what: &str, check: impl Fn() -> bool) {
    let started = std::time::Instant::now();
    while !check() {
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "never: {what}");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_process_manager_counts_its_events_and_commands_and_its_runner_its_leases() {
    let rec = recorder();
    let memory = MemoryStores::new();
    let app = App::builder(memory.clone()).aggregate::<Dial>().process_manager(Mirror).start().await.unwrap();
    app.execute(Turn { dial: "d-1".into(), value: 7 }).await.unwrap();
    let mirror = [("process", "mirror")];
    let executed = [("process", "mirror"), ("outcome", "executed")];
    until("the mirror executed its command", || rec.counter("eventloom_process_commands_total", &executed) == 1).await;
    // The dial's event, then its copy's.
    until("the mirror saw both events", || rec.counter("eventloom_process_events_total", &mirror) == 2).await;
    let dial = [("aggregate", "dial"), ("command", "Turn"), ("outcome", "ok")];
    assert_eq!(rec.counter("eventloom_commands_total", &dial), 2, "the test's and the mirror's");
    assert_eq!(rec.counter("eventloom_process_commands_total", &[("process", "mirror"), ("outcome", "refused")]), 0);
    assert!(rec.counter("eventloom_projector_batches_total", &[("projection", "mirror")]) >= 2);

    // The lease: taken once; lost once when revoked, then taken again.
    let lease = [("lease", "mirror")];
    assert_eq!(rec.counter("eventloom_lease_acquired_total", &lease), 1);
    assert_eq!(rec.counter("eventloom_lease_lost_total", &lease), 0);
    memory.leases.revoke(Mirror::NAME);
    until("the lease was taken again", || rec.counter("eventloom_lease_acquired_total", &lease) == 2).await;
    assert_eq!(rec.counter("eventloom_lease_lost_total", &lease), 1);
    app.shutdown().await.unwrap();
}

// ---- App::health's gauges (an aggregate of their own: the counts above stay exact) ----

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
enum ThermoEvent {
    Measured { value: u64 },
}

#[derive(Debug, Default)]
struct Thermo;

impl Aggregate for Thermo {
    const TYPE: &'static str = "thermo";
    type Event = ThermoEvent;
    type Error = std::convert::Infallible;
    fn apply(&mut self, _: &ThermoEvent) {}
}

#[derive(Debug, Serialize, Command)]
#[command(aggregate = Thermo)]
struct Measure {
    #[command(id)]
    thermo: String,
    value: u64,
}

impl Handle<Measure> for Thermo {
    fn handle(&self, cmd: &Measure) -> Result<Vec<ThermoEvent>, std::convert::Infallible> {
        Ok(vec![ThermoEvent::Measured { value: cmd.value }])
    }
}

/// The last temperature per thermometer; stops on 13.
struct Temperatures;

impl Projection for Temperatures {
    const NAME: &'static str = "temperatures";
    type Events = Thermo;
    type View = u64;
    fn apply(&self, view: &mut Option<u64>, e: &EventEnvelope<ThermoEvent>) -> Result<(), BoxError> {
        let ThermoEvent::Measured { value } = e.event;
        if value == 13 {
            return Err("13 is unlucky".into());
        }
        *view = Some(value);
        Ok(())
    }
}

#[tokio::test]
async fn app_health_sets_the_exact_lag_and_the_stop_of_each_projection_as_gauges() {
    let rec = recorder();
    let memory = MemoryStores::new();
    // The poison event stops the projection (its policy is `Stop` by default).
    let app = App::builder(memory.clone()).aggregate::<Thermo>().projection(Temperatures).start().await.unwrap();
    let readings = [("projection", "temperatures")];
    app.execute(Measure { thermo: "h-1".into(), value: 5 }).await.unwrap();
    app.reader::<Temperatures>()
        .unwrap()
        .wait_for(
            app.execute(Measure { thermo: "h-2".into(), value: 6 }).await.unwrap().position,
            std::time::Duration::from_secs(5),
        )
        .await
        .unwrap();
    app.health(100).await;
    assert_eq!(rec.gauge("eventloom_projection_unprojected_events", &readings), Some(0.0));
    assert_eq!(rec.gauge("eventloom_projection_unprojected_age_seconds", &readings), Some(0.0));
    assert_eq!(rec.gauge("eventloom_projection_stopped", &readings), Some(0.0));
    assert_eq!(rec.gauge("eventloom_log_held_back_events", &[]), Some(0.0));
    // 13 stops the runner: the events after it stay unprojected, and the gauges say so.
    app.execute(Measure { thermo: "h-3".into(), value: 13 }).await.unwrap();
    app.execute(Measure { thermo: "h-4".into(), value: 14 }).await.unwrap();
    let started = std::time::Instant::now();
    loop {
        app.health(100).await;
        if rec.gauge("eventloom_projection_stopped", &readings) == Some(1.0) {
            break;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(5), "the stop never showed");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(rec.gauge("eventloom_projection_unprojected_events", &readings), Some(2.0));
    assert!(rec.gauge("eventloom_projection_unprojected_age_seconds", &readings).unwrap() > 0.0);
    app.shutdown().await.unwrap();
}

// ---- A runner's own gauges while it runs, stands by and stops ----

/// Memory leases that grant nothing while closed (another process holds them, as it were).
#[derive(Clone, Default)]
struct GatedLeases {
    inner: eventloom_core::memory::MemoryLeases,
    closed: Arc<std::sync::atomic::AtomicBool>,
    opened: Arc<tokio::sync::Notify>,
}

impl eventloom_core::store::LeaseManager for GatedLeases {
    fn acquire<'a>(
        &'a self,
        name: &'a str,
    ) -> eventloom_core::store::BoxFuture<'a, eventloom_core::Result<eventloom_core::store::Lease>> {
        Box::pin(async move {
            loop {
                let opened = self.opened.notified();
                if !self.closed.load(std::sync::atomic::Ordering::SeqCst) {
                    return self.inner.acquire(name).await;
                }
                opened.await;
            }
        })
    }
    fn try_acquire<'a>(
        &'a self,
        name: &'a str,
    ) -> eventloom_core::store::BoxFuture<'a, eventloom_core::Result<Option<eventloom_core::store::Lease>>> {
        Box::pin(async move {
            if self.closed.load(std::sync::atomic::Ordering::SeqCst) {
                return Ok(None);
            }
            self.inner.try_acquire(name).await
        })
    }
    fn leases<'a>(
        &'a self,
        prefix: &'a str,
    ) -> eventloom_core::store::BoxFuture<'a, eventloom_core::Result<Vec<eventloom_core::store::LeaseInfo>>> {
        self.inner.leases(prefix)
    }
}

/// The last temperature per thermometer, under a name of its own.
struct Gauged;

impl Projection for Gauged {
    const NAME: &'static str = "gauged";
    type Events = Thermo;
    type View = u64;
    fn apply(&self, view: &mut Option<u64>, e: &EventEnvelope<ThermoEvent>) -> Result<(), BoxError> {
        let ThermoEvent::Measured { value } = e.event;
        *view = Some(value);
        Ok(())
    }
}

#[tokio::test]
async fn a_runner_that_loses_its_lease_or_shuts_down_reports_that_it_does_not_run_and_no_stale_lag() {
    let rec = recorder();
    let memory = MemoryStores::new();
    let leases = GatedLeases { inner: memory.leases.clone(), ..GatedLeases::default() };
    let stores = Stores::from(memory.clone()).with_leases(leases.clone());
    let app = App::builder(stores).aggregate::<Thermo>().projection(Gauged).start().await.unwrap();
    let gauged = [("projection", "gauged")];
    let running = || rec.gauge("eventloom_projector_running", &gauged);
    until("the runner runs", || running() == Some(1.0)).await;
    // Deposed: the lease goes to "another process", and this one waits for it.
    leases.closed.store(true, std::sync::atomic::Ordering::SeqCst);
    memory.leases.revoke(Gauged::NAME);
    until("the runner stands by", || running() == Some(0.0)).await;
    assert_eq!(rec.gauge("eventloom_projector_lag_events", &gauged), Some(0.0));
    assert_eq!(rec.gauge("eventloom_projector_lag_seconds", &gauged), Some(0.0));
    // Events it does not project meanwhile leave its gauges alone.
    app.execute(Measure { thermo: "g-1".into(), value: 3 }).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert_eq!(running(), Some(0.0));
    // The lease comes back: it runs, catches up and says so.
    leases.closed.store(false, std::sync::atomic::Ordering::SeqCst);
    leases.opened.notify_waiters();
    until("the runner runs again", || running() == Some(1.0)).await;
    app.shutdown().await.unwrap();
    assert_eq!(running(), Some(0.0), "a runner that shut down does not run");
}

//! The engine's retry policy: backoff, attempts and time budget, on a test clock.

use eventloom_core::store::BoxFuture;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eventloom_core::model::{ExpectedVersion, NewEvent, Timestamp};
use eventloom_core::prelude::*;
use eventloom_core::{
    CommandError, ExecuteOptions,
    memory::MemoryEventStore,
    model::{Clock, ManualClock},
    store::EventStore,
    write::{Cqrs, RetryPolicy},
};

use crate::domain::*;

/// A memory store where another writer slips an event in before each of the next
/// `interfere` exact appends, so each of them conflicts.
#[derive(Clone, Default)]
struct Contended {
    inner: MemoryEventStore,
    interfere: Arc<AtomicUsize>,
    appends: Arc<AtomicUsize>,
}

impl Contended {
    fn interfere(&self, times: usize) {
        self.interfere.store(times, Ordering::SeqCst);
    }

    /// Counts an append and, while told to interfere, gets one in before it.
    async fn interfere_once(&self, s: &StreamId, e: ExpectedVersion) -> eventloom_core::Result<()> {
        self.appends.fetch_add(1, Ordering::SeqCst);
        let take = self.interfere.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
        if take && matches!(e, ExpectedVersion::Exact(_)) {
            let other = NewEvent::encode(&AccountEvent::Deposited { amount: 1 }, Metadata::default())?;
            self.inner.append(s, ExpectedVersion::Any, vec![other]).await?;
        }
        Ok(())
    }
}

impl eventloom_core::store::DelegateEventStore for Contended {
    type Inner = MemoryEventStore;
    fn inner(&self) -> &MemoryEventStore {
        &self.inner
    }
    fn append<'a>(
        &'a self,
        s: &'a StreamId,
        e: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> BoxFuture<'a, eventloom_core::Result<eventloom_core::store::Appended>> {
        Box::pin(async move {
            self.interfere_once(s, e).await?;
            self.inner.append(s, e, events).await
        })
    }
    fn append_command<'a>(
        &'a self,
        s: &'a StreamId,
        e: ExpectedVersion,
        events: Vec<NewEvent>,
        print: &'a eventloom_core::store::CommandEntry,
    ) -> BoxFuture<'a, eventloom_core::Result<eventloom_core::store::Appended>> {
        Box::pin(async move {
            self.interfere_once(s, e).await?;
            self.inner.append_command(s, e, events, print).await
        })
    }
}

/// A manual clock that records each wait it is asked for.
#[derive(Clone, Default)]
struct Recording {
    clock: Arc<ManualClock>,
    waits: Arc<Mutex<Vec<Duration>>>,
}

impl Recording {
    fn waits(&self) -> Vec<Duration> {
        self.waits.lock().unwrap().clone()
    }
    fn elapsed(&self) -> Duration {
        Duration::from_micros(self.clock.now().as_micros() as u64)
    }
}

impl Clock for Recording {
    fn now(&self) -> Timestamp {
        self.clock.now()
    }
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        self.waits.lock().unwrap().push(duration);
        self.clock.sleep(duration)
    }
}

/// An engine over a store where `a` is open, with `policy` on a recording clock.
async fn setup(policy: RetryPolicy) -> (Contended, Cqrs<Account, Contended>, Recording) {
    let store = Contended::default();
    let clock = Recording::default();
    let cqrs = Cqrs::new(store.clone()).with_retry(policy).with_clock(clock.clone());
    cqrs.execute(open("a")).await.unwrap();
    (store, cqrs, clock)
}

#[tokio::test]
async fn the_defaults_back_off_with_jitter_under_a_growing_ceiling() {
    let defaults = RetryPolicy::default();
    assert_eq!(
        (defaults.max_attempts, defaults.time_budget, defaults.initial_delay, defaults.max_delay, defaults.seed),
        (100, Duration::from_secs(5), Duration::from_millis(1), Duration::from_millis(100), None)
    );
    let (store, cqrs, clock) = setup(RetryPolicy::default().seed(42)).await;
    store.interfere(12);
    let done = cqrs.execute(deposit("a", 5)).await.unwrap();
    assert_eq!(done.version, 1 + 12 + 1, "twelve conflicts, then the command");
    let waits = clock.waits();
    assert_eq!(waits.len(), 12, "one wait before each retry");
    for (n, wait) in waits.iter().enumerate() {
        assert!(*wait <= defaults.ceiling(n as u32 + 1), "retry {}: {wait:?}", n + 1);
    }
    // Jittered: not every wait sits at its ceiling, and the later ones are longer on the whole.
    assert!(waits.iter().enumerate().any(|(n, w)| *w < defaults.ceiling(n as u32 + 1) / 2), "{waits:?}");
    let early: Duration = waits[..4].iter().sum();
    let late: Duration = waits[8..].iter().sum();
    assert!(late > early, "{waits:?}");
    // The manual clock moves by whole microseconds.
    let slept: Duration = waits.iter().map(|w| Duration::from_micros(w.as_micros() as u64)).sum();
    assert_eq!(clock.elapsed(), slept, "the engine waits on its clock");
    // The same seed replays the same waits.
    let (store, cqrs, again) = setup(RetryPolicy::default().seed(42)).await;
    store.interfere(12);
    cqrs.execute(deposit("a", 5)).await.unwrap();
    assert_eq!(again.waits(), waits);
}

#[tokio::test]
async fn the_attempts_bound_the_retries() {
    let (store, cqrs, clock) = setup(RetryPolicy::default().max_attempts(3).time_budget(Duration::MAX)).await;
    store.interfere(usize::MAX);
    let appends = store.appends.load(Ordering::SeqCst);
    match cqrs.execute(deposit("a", 5)).await.unwrap_err() {
        CommandError::Conflict { attempts: 3, .. } => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(store.appends.load(Ordering::SeqCst) - appends, 3);
    assert_eq!(clock.waits().len(), 2, "no wait after the last attempt");
}

#[tokio::test]
async fn the_time_budget_bounds_the_retries_and_cuts_the_last_wait() {
    let policy = RetryPolicy::default()
        .max_attempts(u32::MAX)
        .time_budget(Duration::from_millis(50))
        .initial_delay(Duration::from_millis(10))
        .max_delay(Duration::from_millis(10));
    let (store, cqrs, clock) = setup(policy).await;
    store.interfere(usize::MAX);
    let attempts = match cqrs.execute(deposit("a", 5)).await.unwrap_err() {
        CommandError::Conflict { attempts, .. } => attempts,
        other => panic!("{other:?}"),
    };
    let waits = clock.waits();
    assert_eq!(clock.elapsed(), Duration::from_millis(50), "it retried up to the budget, not past it: {waits:?}");
    assert_eq!(waits.len() as u32, attempts - 1);
    assert!(attempts >= 6, "waits of at most 10 ms fill 50 ms in 5 or more: {attempts}");
    // A budget of zero: the first conflict is the answer.
    let (store, cqrs, clock) = setup(RetryPolicy::default().time_budget(Duration::ZERO)).await;
    store.interfere(1);
    assert!(matches!(cqrs.execute(deposit("a", 5)).await, Err(CommandError::Conflict { attempts: 1, .. })));
    assert!(clock.waits().is_empty());
}

#[tokio::test]
async fn immediate_retries_never_wait_and_a_required_version_never_retries() {
    let (store, cqrs, clock) = setup(RetryPolicy::immediate(4)).await;
    store.interfere(3);
    assert_eq!(cqrs.execute(deposit("a", 5)).await.unwrap().version, 5);
    store.interfere(4);
    assert!(matches!(cqrs.execute(deposit("a", 5)).await, Err(CommandError::Conflict { attempts: 4, .. })));
    assert!(clock.waits().is_empty(), "{:?}", clock.waits());

    let (store, cqrs, clock) = setup(RetryPolicy::default()).await;
    store.interfere(1);
    let required = ExecuteOptions::default().expect_version(1);
    assert!(matches!(
        cqrs.execute_with(deposit("a", 5), required).await,
        Err(CommandError::Conflict { attempts: 1, .. })
    ));
    assert!(clock.waits().is_empty());
}

#[test]
#[allow(deprecated)]
fn with_max_attempts_still_sets_the_attempts_and_keeps_the_backoff() {
    let cqrs = Cqrs::<Account, _>::new(MemoryEventStore::new()).with_max_attempts(0);
    assert_eq!(*cqrs.retry_policy(), RetryPolicy::default().max_attempts(1));
}

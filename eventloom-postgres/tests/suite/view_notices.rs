//! Read-your-writes across processes: a wait for views is woken by the views' NOTIFY of a
//! store it shares nothing with but the server (another pool, notifier and listener: another
//! process, as far as notifications go), while its safety poll is set to minutes, so only a
//! notification can end it in time; and the status reads it made show it did not poll.

use std::time::{Duration, Instant};

use eventloom_core::prelude::*;
use eventloom_core::read::{Projector, ViewReader};
use eventloom_core::store::{ViewCommit, ViewStore, ViewWrite};
use eventloom_core::testing::CountingStatus;
use eventloom_core::write::Cqrs;
use eventloom_core::{BoxError, Position, Projection};
use eventloom_postgres::{PgConfig, PgEventStore, PgLeases, PgViewStore};

use crate::domain::*;
use crate::support::{PrivateServer, database_url, raw, raw_listener, store_at};

/// Long enough that a wait ended in time was ended by a notification.
const SAFETY_POLL: Duration = Duration::from_secs(600);

/// How soon a woken wait must end (the machine is shared and busy: generous, and still far
/// below the safety poll).
const PROMPT: Duration = Duration::from_secs(2);

/// A second store on `store`'s schema with a pool, notifier and listener of its own.
async fn other_instance(url: &str, store: &PgEventStore) -> PgEventStore {
    let config = PgConfig::from_url(url).unwrap().schema(store.config().schema_name()).unwrap();
    PgEventStore::connect(config).await.unwrap()
}

/// The backends LISTENing on the views channel of `store`'s schema.
async fn listeners(url: &str, store: &PgEventStore) -> Vec<i32> {
    let admin = raw(url).await;
    let listen = format!("LISTEN \"cqrs_views_{}\"", store.config().schema_name());
    let rows =
        admin.query("SELECT pid FROM pg_stat_activity WHERE query = $1 AND state = 'idle'", &[&listen]).await.unwrap();
    rows.iter().map(|row| row.get(0)).collect()
}

/// Waits until a backend other than those of `not` LISTENs on the views channel: its pid.
async fn listening(url: &str, store: &PgEventStore, not: &[i32]) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(pid) = listeners(url, store).await.into_iter().find(|pid| !not.contains(pid)) {
            return pid;
        }
        assert!(Instant::now() < deadline, "no new views listener after 20 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn commit(generation: u64, expected: Option<Position>, checkpoint: Position) -> ViewCommit {
    ViewCommit {
        generation,
        expected,
        checkpoint,
        fencing_token: 0,
        views: vec![ViewWrite::set("a", checkpoint.sequence().to_string())],
        dead_letters: Vec::new(),
        resolved: Vec::new(),
    }
}

/// A wait on `reader` for `position`, begun now: when it ended.
fn wait(reader: &ViewReader<u64>, position: Position) -> tokio::task::JoinHandle<Instant> {
    let reader = reader.clone();
    tokio::spawn(async move {
        reader.wait_for(position, Duration::from_secs(60)).await.unwrap();
        Instant::now()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_commit_through_another_store_wakes_a_wait_by_notify() {
    let url = database_url();
    let events = store_at(&url).await;
    let writer_events = other_instance(&url, &events).await;
    let writer = PgViewStore::new(&writer_events);
    let g = writer.begin_generation("p", 1, 0).await.unwrap().unwrap().id;
    writer.go_live("p", g, 0).await.unwrap().unwrap();
    let views = CountingStatus::new(PgViewStore::new(&events));
    let reader = ViewReader::<u64>::new(views.clone(), "p").with_safety_poll(SAFETY_POLL);
    let mut expected = None;
    for n in 1..=3u64 {
        let position = Position::new(100 + n, n);
        let waiting = wait(&reader, position);
        listening(&url, &events, &[]).await;
        // The wait has read the status and sleeps.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let reads = views.status_reads();
        let start = Instant::now();
        writer.commit("p", commit(g, expected, position)).await.unwrap().unwrap();
        let at = tokio::time::timeout(PROMPT, waiting)
            .await
            .unwrap_or_else(|_| panic!("the wait was not woken within {PROMPT:?} (its safety poll is {SAFETY_POLL:?})"))
            .unwrap();
        let took = at - start;
        let reads = views.status_reads() - reads;
        println!("woken by NOTIFY {took:?} after the commit began, with {reads} status reads");
        // Polling every 2 ms would have read it over a hundred times in the 300 ms before.
        assert!(reads <= 3, "{reads} status reads: the wait polled");
        assert_eq!(reader.get("a").await.unwrap(), Some(n));
        expected = Some(position);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wait_survives_its_listen_connection_being_killed() {
    // A private schema: only this test's listener is terminated.
    let url = database_url();
    let events = store_at(&url).await;
    let writer = PgViewStore::new(&other_instance(&url, &events).await);
    let g = writer.begin_generation("p", 1, 0).await.unwrap().unwrap().id;
    writer.go_live("p", g, 0).await.unwrap().unwrap();
    let views = CountingStatus::new(PgViewStore::new(&events));
    let reader = ViewReader::<u64>::new(views.clone(), "p").with_safety_poll(SAFETY_POLL);
    let admin = raw(&url).await;

    // Killed while a wait sleeps: it polls until the listener is back, and ends in time.
    let first = Position::new(101, 1);
    let waiting = wait(&reader, first);
    let pid = listening(&url, &events, &[]).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let killed: bool = admin.query_one("SELECT pg_terminate_backend($1)", &[&pid]).await.unwrap().get(0);
    assert!(killed);
    let start = Instant::now();
    writer.commit("p", commit(g, None, first)).await.unwrap().unwrap();
    let at = tokio::time::timeout(PROMPT, waiting)
        .await
        .unwrap_or_else(|_| panic!("the wait was lost with its LISTEN connection"))
        .unwrap();
    println!("woken {:?} after the commit, its listener killed", at - start);

    // The listener comes back by itself, and wakes the next wait without polling.
    let second = Position::new(102, 2);
    let waiting = wait(&reader, second);
    let again = listening(&url, &events, &[pid]).await;
    assert_ne!(again, pid);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let reads = views.status_reads();
    writer.commit("p", commit(g, Some(first), second)).await.unwrap().unwrap();
    tokio::time::timeout(PROMPT, waiting).await.expect("woken after the listener reconnected").unwrap();
    let reads = views.status_reads() - reads;
    assert!(reads <= 3, "{reads} status reads after the listener reconnected: the wait polled");
    assert_eq!(reader.get("a").await.unwrap(), Some(2));
}

/// A listener whose task is dropped with its runtime no longer says the store listens: waits
/// on the store's next runtime poll (and start a listener there) rather than trusting a
/// connection that is gone.
#[test]
fn a_listener_dropped_with_its_runtime_stops_listening() {
    let url = database_url();
    let runtime = || tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let first = runtime();
    let (views, changes) = first.block_on(async {
        let events = store_at(&url).await;
        let views = PgViewStore::new(&events);
        let mut changes = views.changes("p").expect("the PostgreSQL view store signals changes");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !changes.listening() {
            assert!(Instant::now() < deadline, "the listener never listened");
            let _ = tokio::time::timeout(Duration::from_millis(100), changes.changed()).await;
        }
        (views, changes)
    });
    drop(first);
    assert!(!changes.listening(), "the listener's task is gone with its runtime, yet the store says it listens");
    // The next runtime listens again.
    runtime().block_on(async {
        let mut changes = views.changes("p").unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !changes.listening() {
            assert!(Instant::now() < deadline, "no listener on the second runtime");
            let _ = tokio::time::timeout(Duration::from_millis(100), changes.changed()).await;
        }
    });
}

/// Deposits, in a view per account.
struct Totals;

impl Projection for Totals {
    const NAME: &'static str = "ryw_totals";
    type Events = Account;
    type View = u64;

    fn apply(&self, view: &mut Option<u64>, e: &EventEnvelope<AccountEvent>) -> Result<(), BoxError> {
        if let AccountEvent::Deposited { amount } = e.event {
            *view.get_or_insert(0) += amount;
        } else {
            view.get_or_insert(0);
        }
        Ok(())
    }
}

/// Command, projector and query each on a store of their own (three processes, as far as the
/// stores go): the query's wait is woken by the projector's NOTIFY. A private server: a
/// transaction another test holds open would hold the events back from the projector.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_query_reads_a_command_projected_in_another_store() {
    let server = PrivateServer::start();
    let url = server.url();
    let command_events = store_at(&url).await;
    let projector_events = other_instance(&url, &command_events).await;
    let query_events = other_instance(&url, &command_events).await;
    let projector = Projector::new(projector_events.clone(), PgViewStore::new(&projector_events))
        .with_leases(PgLeases::new(&projector_events));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(async move { projector.run(Totals, async { stopped.await.unwrap_or(()) }).await });
    let views = CountingStatus::new(PgViewStore::new(&query_events));
    let reader = eventloom_core::Reader::<Totals>::new(views.clone()).with_safety_poll(SAFETY_POLL);
    let cqrs = Cqrs::new(command_events.clone());
    let opened = cqrs.execute(Open { id: "a".into() }).await.unwrap();
    reader.wait_for(&opened, Duration::from_secs(30)).await.unwrap();
    let mut took = Vec::new();
    for amount in 1..=10u64 {
        let done = cqrs.execute(Deposit { id: "a".into(), amount }).await.unwrap();
        let start = Instant::now();
        tokio::time::timeout(PROMPT, reader.wait_for(&done, Duration::from_secs(30)))
            .await
            .expect("the query was not woken in time")
            .unwrap();
        took.push(start.elapsed());
        assert_eq!(reader.get("a").await.unwrap(), Some(amount * (amount + 1) / 2));
    }
    println!("from the command's return to the wait's end: {took:?}; {} status reads", views.status_reads());
    stop.send(()).unwrap();
    running.await.unwrap().unwrap();
}

/// Many commits a second cost one NOTIFY per debounce, not one per commit: 200 commits as fast
/// as they go, with a debounce of 50 ms, are told in a handful of notifications, the last of
/// them after the last commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_commits_is_told_once_per_debounce() {
    const COMMITS: u64 = 200;
    let url = database_url();
    let events = store_at(&url).await;
    let channel = format!("cqrs_views_{}", events.config().schema_name());
    let (_client, mut heard) = raw_listener(&url, &channel).await;
    let views = PgViewStore::new(&events).with_notify_debounce(Duration::from_millis(50));
    let g = views.begin_generation("p", 1, 0).await.unwrap().unwrap().id;
    views.go_live("p", g, 0).await.unwrap().unwrap();
    let started = Instant::now();
    let mut expected = None;
    for n in 1..=COMMITS {
        let position = Position::new(100 + n, n);
        views.commit("p", commit(g, expected, position)).await.unwrap().unwrap();
        expected = Some(position);
    }
    let took = started.elapsed();
    // The last commit's notification comes within a debounce or so.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut payloads = Vec::new();
    while let Ok(payload) = heard.try_recv() {
        payloads.push(payload);
    }
    println!("{COMMITS} commits in {took:?}: {} notifications", payloads.len());
    assert!(payloads.iter().all(|p| p == "p"), "{payloads:?}");
    let most = took.as_millis() / 50 + 3;
    assert!(
        !payloads.is_empty() && payloads.len() as u128 <= most,
        "{} notifications, at most {most} expected",
        payloads.len()
    );
}

//! A projection group on PostgreSQL: eight projections, one read of the log.

use eventloom_core::store::BoxFuture;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use eventloom_core::model::RecordedEvent;
use eventloom_core::prelude::*;
use eventloom_core::{
    BoxError, Projection,
    read::{MemberState, Projector, ViewReader},
    store::EventStore,
    write::Cqrs,
};
use eventloom_postgres::{PgEventStore, PgLeases, PgViewStore};

use crate::domain::*;
use crate::support::store;

const NAMES: [&str; 8] = ["g0", "g1", "g2", "g3", "g4", "g5", "g6", "g7"];

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
struct Balance {
    balance: u64,
    applied: u64,
    version: u64,
}

struct Member<const N: usize>;

impl<const N: usize> Projection for Member<N> {
    const NAME: &'static str = NAMES[N];
    type Events = Account;
    type View = Balance;
    fn apply(&self, view: &mut Option<Balance>, e: &EventEnvelope<AccountEvent>) -> Result<(), BoxError> {
        let view = view.get_or_insert_with(Balance::default);
        if let AccountEvent::Deposited { amount } = e.event {
            view.balance += amount;
        }
        view.applied += 1;
        view.version = e.version;
        Ok(())
    }
}

/// The PostgreSQL store, counting its reads of the log and the rows they return.
#[derive(Clone)]
struct Counted {
    inner: PgEventStore,
    reads: Arc<AtomicUsize>,
    rows: Arc<AtomicUsize>,
}

impl Counted {
    fn taken(&self) -> (usize, usize) {
        (self.reads.swap(0, Ordering::Relaxed), self.rows.swap(0, Ordering::Relaxed))
    }
}

impl eventloom_core::store::DelegateEventStore for Counted {
    type Inner = PgEventStore;
    fn inner(&self) -> &PgEventStore {
        &self.inner
    }
    fn read_all<'a>(
        &'a self,
        after: Position,
        limit: usize,
    ) -> BoxFuture<'a, eventloom_core::Result<Vec<RecordedEvent>>> {
        Box::pin(async move {
            let read = self.inner.read_all(after, limit).await?;
            self.reads.fetch_add(1, Ordering::Relaxed);
            self.rows.fetch_add(read.len(), Ordering::Relaxed);
            Ok(read)
        })
    }
    fn read_all_bounded<'a>(
        &'a self,
        after: Position,
        limit: usize,
        max_bytes: usize,
    ) -> BoxFuture<'a, eventloom_core::Result<Vec<RecordedEvent>>> {
        Box::pin(async move {
            let read = self.inner.read_all_bounded(after, limit, max_bytes).await?;
            self.reads.fetch_add(1, Ordering::Relaxed);
            self.rows.fetch_add(read.len(), Ordering::Relaxed);
            Ok(read)
        })
    }
}

/// User and system CPU time of this process so far (from /proc/self/stat, in clock ticks of
/// 10 ms).
fn cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// Appends `commands` deposits, waiting after each until every projection wrote it, and
/// returns the reads and rows of the log meanwhile.
async fn live_phase(
    cqrs: &Cqrs<Account, Counted>,
    events: &Counted,
    views: &PgViewStore,
    commands: u64,
) -> (usize, usize) {
    events.taken();
    for i in 1..=commands {
        let done = cqrs.execute(Deposit { id: format!("a{}", i % 4), amount: i }).await.unwrap();
        for name in NAMES {
            let reader = ViewReader::<Balance>::new(views.clone(), name);
            reader.wait_for(done.position, Duration::from_secs(20)).await.unwrap();
        }
    }
    events.taken()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_projections_in_a_group_on_postgres_read_the_log_once() {
    let pg = store().await;
    let events = Counted { inner: pg.clone(), reads: Arc::default(), rows: Arc::default() };
    let views = PgViewStore::new(&pg);
    let cqrs = Cqrs::new(events.clone());
    for a in 0..4 {
        cqrs.execute(Open { id: format!("a{a}") }).await.unwrap();
    }
    for i in 0..400u64 {
        cqrs.execute(Deposit { id: format!("a{}", i % 4), amount: 1 }).await.unwrap();
    }
    let projector = Projector::new(events.clone(), views.clone()).with_leases(PgLeases::new(&pg)).with_batch_size(100);
    // Eight projections alone: the backlog, then live commands.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut alone = Vec::new();
    macro_rules! alone {
        ($($n:literal),*) => {$({
            let (projector, mut stopped) = (projector.clone(), stopped.clone());
            alone.push(tokio::spawn(async move {
                projector.run(Member::<$n>, async move { let _ = stopped.wait_for(|s| *s).await; }).await
            }));
        })*};
    }
    alone!(0, 1, 2, 3, 4, 5, 6, 7);
    let head = events.head().await.unwrap().unwrap();
    for name in NAMES {
        ViewReader::<Balance>::new(views.clone(), name).wait_for(head, Duration::from_secs(30)).await.unwrap();
    }
    let (backlog_reads, backlog_rows) = events.taken();
    let cpu = cpu_ticks();
    let started = Instant::now();
    let (alone_reads, alone_rows) = live_phase(&cqrs, &events, &views, 50).await;
    let alone_cpu = cpu_ticks() - cpu;
    let alone_time = started.elapsed();
    stop.send_replace(true);
    for running in alone {
        running.await.unwrap().unwrap();
    }
    // The same eight in a group, from where they stand.
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
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(group.run(async move {
        let _ = stopped.wait_for(|s| *s).await;
    }));
    for handle in &handles {
        tokio::time::timeout(
            Duration::from_secs(30),
            handle.wait_until(|s| s.shared && s.state == MemberState::Running),
        )
        .await
        .unwrap();
    }
    let cpu = cpu_ticks();
    let started = Instant::now();
    let (group_reads, group_rows) = live_phase(&cqrs, &events, &views, 50).await;
    let group_cpu = cpu_ticks() - cpu;
    let group_time = started.elapsed();
    for handle in &handles {
        assert_eq!(handle.lag(10).await.unwrap(), 0);
        assert!(handle.status().shared);
    }
    stop.send_replace(true);
    running.await.unwrap().unwrap();
    eprintln!(
        "8 projections, 404-event backlog alone: {backlog_reads} reads, {backlog_rows} rows; 50 live commands alone: \
         {alone_reads} reads, {alone_rows} rows ({alone_cpu} ticks CPU, {alone_time:?}); in a group: \
         {group_reads} reads, {group_rows} rows ({group_cpu} ticks CPU, {group_time:?})"
    );
    assert!(group_rows <= 2 * 50, "each live event is read about once: {group_rows} rows");
    assert!(alone_rows >= 8 * 50, "alone, each projection reads each event: {alone_rows} rows");
    // Exactly once, every one of them.
    for name in NAMES {
        let reader = ViewReader::<Balance>::new(views.clone(), name);
        let mut applied = 0;
        for a in 0..4 {
            let view = reader.get(&format!("a{a}")).await.unwrap().unwrap();
            assert_eq!(view.applied, view.version, "{name}");
            applied += view.applied;
        }
        assert_eq!(applied, 4 + 400 + 100, "{name}");
    }
}

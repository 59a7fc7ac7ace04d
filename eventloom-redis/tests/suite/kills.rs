//! Projectors killed at random points, and two projector processes for one projection: events in
//! PostgreSQL, views in Redis, leadership by `PgLeases`.
//!
//! The SIGKILL cases run the projector in a separate process: this test binary itself, started
//! with `--ignored --exact kills::child_projector` and its settings in the environment.

use eventloom_core::store::BoxFuture;
use eventloom_core::store::Refusal;
use eventloom_core::testing::TestRng;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use eventloom_core::model::{ExpectedVersion, NewEvent};
use eventloom_core::prelude::*;
use eventloom_core::{
    BoxError, Error, Projection,
    read::{PoisonPolicy, Projector, ViewReader},
    store::{EventStore, Lease, LeaseManager, ViewCommit, ViewStore},
};
use eventloom_postgres::{PgConfig, PgEventStore, PgLeases};
use eventloom_redis::RedisViewStore;

fn database_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| {
        panic!(
            "DATABASE_URL is not set. Run the suite with `bash scripts/test.sh`, which starts a throwaway \
             PostgreSQL, or set DATABASE_URL to a server where this test may create schemas."
        )
    })
}

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| {
        panic!("REDIS_URL is not set. Run the suite with `bash scripts/test.sh`, which starts a throwaway Redis.")
    })
}

async fn events_in(schema: &str) -> PgEventStore {
    let config = PgConfig::from_url(&database_url()).unwrap().schema(schema).unwrap().pool_size(8);
    let store = PgEventStore::connect(config).await.unwrap_or_else(|e| panic!("cannot connect to PostgreSQL: {e}"));
    store.migrate().await.unwrap();
    store
}

async fn views_in(prefix: &str) -> RedisViewStore {
    RedisViewStore::connect(&redis_url(), prefix).await.unwrap_or_else(|e| panic!("cannot connect to Redis: {e}"))
}

fn unique(what: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{what}_{}_{nanos}", std::process::id())
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
pub enum TallyEvent {
    Counted,
}

#[derive(Debug, Default)]
pub struct Tally;

impl Aggregate for Tally {
    const TYPE: &'static str = "tally";
    type Event = TallyEvent;
    type Error = std::convert::Infallible;
    fn apply(&mut self, _: &TallyEvent) {}
}

/// Counts the events applied per stream, and every one that arrives out of turn: `applied ==
/// version` and `twice == 0` exactly when no event was applied twice or skipped.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Count {
    pub applied: u64,
    pub version: u64,
    pub twice: u64,
    pub skipped: u64,
}

pub struct Counts;

impl Projection for Counts {
    const NAME: &'static str = "kill_counts";
    type Events = Tally;
    type View = Count;
    /// Every type, known or not (the default skips types the code does not know): the poison
    /// test stops it on one.
    fn handles(&self, _: &str, _: &str) -> bool {
        true
    }
    fn apply(&self, view: &mut Option<Count>, e: &EventEnvelope<TallyEvent>) -> Result<(), BoxError> {
        let view = view.get_or_insert_with(Count::default);
        if e.version <= view.version {
            view.twice += 1;
        } else if e.version > view.version + 1 {
            view.skipped += 1;
        }
        view.applied += 1;
        view.version = view.version.max(e.version);
        Ok(())
    }
}

/// Appends `per_stream` events to each of `streams` streams, 100 per append.
async fn fill(events: &PgEventStore, streams: u64, per_stream: u64) -> Position {
    let mut last = Position::ZERO;
    for s in 0..streams {
        let stream = StreamId::new("tally", format!("t{s}")).unwrap();
        let mut version = 0;
        while version < per_stream {
            let n = (per_stream - version).min(100);
            let batch: Vec<NewEvent> =
                (0..n).map(|_| NewEvent::encode(&TallyEvent::Counted, Metadata::default()).unwrap()).collect();
            last =
                events.append(&stream, ExpectedVersion::Exact(version), batch).await.unwrap().into_outcome().position;
            version += n;
        }
    }
    last
}

/// Leases that say on stdout when this process leads: `LEADER <pid> <token>`.
struct Announcing(PgLeases);

impl eventloom_core::store::DelegateLeaseManager for Announcing {
    type Inner = PgLeases;
    fn inner(&self) -> &PgLeases {
        &self.0
    }
    fn acquire<'a>(&'a self, name: &'a str) -> BoxFuture<'a, eventloom_core::Result<Lease>> {
        Box::pin(async move {
            let lease = self.0.acquire(name).await?;
            println!("LEADER {} {}", std::process::id(), lease.token());
            Ok(lease)
        })
    }
    fn try_acquire<'a>(&'a self, name: &'a str) -> BoxFuture<'a, eventloom_core::Result<Option<Lease>>> {
        Box::pin(async move {
            let lease = self.0.try_acquire(name).await?;
            if let Some(lease) = &lease {
                println!("LEADER {} {}", std::process::id(), lease.token());
            }
            Ok(lease)
        })
    }
}

fn projector(events: &PgEventStore, views: RedisViewStore, batch: usize) -> Projector<PgEventStore> {
    Projector::new(events.clone(), views)
        .with_leases(Announcing(PgLeases::new(events).with_check_interval(Duration::from_millis(200))))
        .with_batch_size(batch)
        .with_retry_delay(Duration::from_millis(20))
}

/// The projector process the kill tests start and SIGKILL. Not a test on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "started by the kill tests as a separate projector process"]
async fn child_projector() {
    let schema = std::env::var("CQRS_CHILD_SCHEMA").expect("CQRS_CHILD_SCHEMA");
    let prefix = std::env::var("CQRS_CHILD_PREFIX").expect("CQRS_CHILD_PREFIX");
    let batch = std::env::var("CQRS_CHILD_BATCH").ok().and_then(|b| b.parse().ok()).unwrap_or(100);
    let events = events_in(&schema).await;
    let views = views_in(&prefix).await;
    println!("READY {}", std::process::id());
    projector(&events, views, batch).run(Counts, std::future::pending()).await.expect("the child projector failed");
}

/// A projector process of this test binary, and the lines it prints.
struct ChildProjector {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl ChildProjector {
    fn start(schema: &str, prefix: &str, batch: usize) -> Self {
        let exe = std::env::current_exe().unwrap();
        let mut child = Command::new(exe)
            .args(["--ignored", "--exact", "kills::child_projector", "--nocapture", "--test-threads=1"])
            .env("CQRS_CHILD_SCHEMA", schema)
            .env("CQRS_CHILD_PREFIX", prefix)
            .env("CQRS_CHILD_BATCH", batch.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        ChildProjector { child, lines }
    }

    /// Waits for a line starting with `word`; returns its other fields.
    fn wait_for(&self, word: &str, timeout: Duration) -> Option<Vec<String>> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let line = self.lines.recv_timeout(left).ok()?;
            // libtest may print "test kills::child_projector ... " on the same line first.
            let mut fields = line.split_whitespace().skip_while(|field| *field != word);
            if fields.next().is_some() {
                return Some(fields.map(str::to_owned).collect());
            }
        }
    }

    fn sigkill(&mut self) {
        // `Child::kill` sends SIGKILL on Unix: no destructor, no graceful close.
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for ChildProjector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn assert_counted(views: &RedisViewStore, streams: u64, per_stream: u64) -> Vec<Count> {
    let reader = ViewReader::<Count>::new(views.clone(), Counts::NAME);
    let ids: Vec<String> = (0..streams).map(|s| format!("t{s}")).collect();
    let counts: Vec<Count> = reader.get_many(&ids).await.unwrap().into_iter().map(Option::unwrap).collect();
    for (id, count) in ids.iter().zip(&counts) {
        assert_eq!(
            count,
            &Count { applied: per_stream, version: per_stream, twice: 0, skipped: 0 },
            "{id}: every event applied exactly once"
        );
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_projector_killed_20_times_at_random_points_applies_every_event_exactly_once() {
    const STREAMS: u64 = 500;
    const EACH: u64 = 100;
    // The seed is printed: `CQRS_KILL_SEED` repeats a failing run.
    let mut rng = TestRng::from_env("CQRS_KILL_SEED");
    let schema = unique("kills");
    let prefix = format!("test:{}:", unique("kills"));
    let events = events_in(&schema).await;
    let last = fill(&events, STREAMS, EACH).await;
    let views = views_in(&prefix).await;
    let reader = ViewReader::<Count>::new(views.clone(), Counts::NAME);
    let progress = || async {
        let status = views.status(Counts::NAME).await.unwrap();
        status.building.or(status.live).and_then(|g| g.checkpoint)
    };

    // Ten kills by aborting the projector's task, mid-batch or between batches.
    let mut kills = 0;
    for _ in 0..10 {
        let running = tokio::spawn({
            let p = projector(&events, views.clone(), 5 + rng.below(30) as usize);
            async move { p.run(Counts, std::future::pending()).await }
        });
        tokio::time::sleep(Duration::from_millis(20 + rng.below(60))).await;
        assert!(!running.is_finished(), "the projector stopped by itself: {:?}", running.await);
        running.abort();
        let _ = running.await;
        kills += 1;
    }
    let after_aborts = progress().await;
    assert!(after_aborts < Some(last), "the aborts came before the projection ended");

    // Ten kills by SIGKILL of a projector process.
    for _ in 0..10 {
        let mut child = ChildProjector::start(&schema, &prefix, 5 + rng.below(30) as usize);
        child.wait_for("LEADER", Duration::from_secs(30)).expect("the child projector leads");
        std::thread::sleep(Duration::from_millis(10 + rng.below(80)));
        child.sigkill();
        kills += 1;
    }
    assert_eq!(kills, 20);
    let after_kills = progress().await;
    assert!(after_kills > after_aborts, "the child processes made progress");
    assert!(after_kills < Some(last), "the kills came before the projection ended");
    println!("checkpoint after 10 aborts: {after_aborts:?}; after 10 SIGKILLs: {after_kills:?}; end: {last}");

    // A last run finishes the projection.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn({
        let p = projector(&events, views.clone(), 500);
        async move { p.run(Counts, async { stopped.await.unwrap_or(()) }).await }
    });
    reader.wait_for(last, Duration::from_secs(120)).await.expect("the projection finishes");
    stop.send(()).unwrap();
    running.await.unwrap().unwrap();
    let counted = assert_counted(&views, STREAMS, EACH).await;

    // The views equal a from-scratch rebuild's.
    let fresh = views_in(&format!("test:{}:", unique("kills_fresh"))).await;
    Projector::new(events.clone(), fresh.clone()).catch_up(&Counts).await.unwrap();
    assert_eq!(assert_counted(&fresh, STREAMS, EACH).await, counted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_projector_processes_one_leads_the_other_takes_over_after_sigkill_and_the_old_token_is_fenced() {
    let schema = unique("takeover");
    let prefix = format!("test:{}:", unique("takeover"));
    let events = events_in(&schema).await;
    let views = views_in(&prefix).await;
    let reader = ViewReader::<Count>::new(views.clone(), Counts::NAME);
    let first = fill(&events, 10, 10).await;

    let mut a = ChildProjector::start(&schema, &prefix, 100);
    let mut b = ChildProjector::start(&schema, &prefix, 100);
    a.wait_for("READY", Duration::from_secs(30)).expect("a starts");
    b.wait_for("READY", Duration::from_secs(30)).expect("b starts");
    reader.wait_for(first, Duration::from_secs(30)).await.expect("someone projects");
    // Exactly one leads: the other stands by.
    let a_leads = a.wait_for("LEADER", Duration::from_millis(500));
    let b_leads = b.wait_for("LEADER", Duration::from_millis(500));
    let (leader, standby, old_token) = match (a_leads, b_leads) {
        (Some(fields), None) => (&mut a, &mut b, fields[1].parse::<u64>().unwrap()),
        (None, Some(fields)) => (&mut b, &mut a, fields[1].parse::<u64>().unwrap()),
        other => panic!("expected exactly one leader, got {other:?}"),
    };

    let killed = Instant::now();
    leader.sigkill();
    let fields = standby.wait_for("LEADER", Duration::from_secs(10)).expect("the standby takes over within seconds");
    let took = killed.elapsed();
    let new_token: u64 = fields[1].parse().unwrap();
    println!("takeover after SIGKILL of the leader: {took:?}; tokens {old_token} -> {new_token}");
    assert!(new_token > old_token);

    // The new leader projects what comes next.
    let more = fill_more(&events, 10, 10, 5).await;
    reader.wait_for(more, Duration::from_secs(30)).await.expect("the new leader projects");
    assert_counted(&views, 10, 15).await;

    // The dead leader's late write, with its token, is refused and changes nothing.
    let live = views.status(Counts::NAME).await.unwrap().live.unwrap();
    let late = ViewCommit {
        generation: live.id,
        expected: live.checkpoint,
        checkpoint: Position::new(u64::MAX / 2, 0),
        fencing_token: old_token,
        views: vec![eventloom_core::store::ViewWrite::set(
            "t0",
            r#"{"applied":999,"version":999,"twice":0,"skipped":0}"#,
        )],
        dead_letters: Vec::new(),
        resolved: Vec::new(),
    };
    assert!(matches!(views.commit(Counts::NAME, late).await, Ok(Err(Refusal::Fenced { .. }))));
    assert_counted(&views, 10, 15).await;
    assert_eq!(views.status(Counts::NAME).await.unwrap().live.unwrap().checkpoint, live.checkpoint);
}

/// Appends `more` events to each of the first `streams` streams, which hold `have` each.
async fn fill_more(events: &PgEventStore, streams: u64, have: u64, more: u64) -> Position {
    let mut last = Position::ZERO;
    for s in 0..streams {
        let stream = StreamId::new("tally", format!("t{s}")).unwrap();
        let batch: Vec<NewEvent> =
            (0..more).map(|_| NewEvent::encode(&TallyEvent::Counted, Metadata::default()).unwrap()).collect();
        last = events.append(&stream, ExpectedVersion::Exact(have), batch).await.unwrap().into_outcome().position;
    }
    last
}

/// Counts only `Counted` events, and refuses the fourth event of stream `t1`: a handler that fails.
struct Picky;

impl Projection for Picky {
    const NAME: &'static str = "kill_picky";
    type Events = Tally;
    type View = u64;
    fn handles(&self, _: &str, event_type: &str) -> bool {
        event_type == "Counted"
    }
    fn apply(&self, view: &mut Option<u64>, e: &EventEnvelope<TallyEvent>) -> Result<(), BoxError> {
        if e.version == 4 && e.stream.id() == "t1" {
            return Err(format!("event {} of {} is not welcome", e.version, e.stream).into());
        }
        *view.get_or_insert(0) += 1;
        Ok(())
    }
}

/// Counts only `Counted` events, and never fails.
struct Tolerant;

impl Projection for Tolerant {
    const NAME: &'static str = "kill_tolerant";
    type Events = Tally;
    type View = u64;
    fn handles(&self, _: &str, event_type: &str) -> bool {
        event_type == "Counted"
    }
    fn apply(&self, view: &mut Option<u64>, _: &EventEnvelope<TallyEvent>) -> Result<(), BoxError> {
        *view.get_or_insert(0) += 1;
        Ok(())
    }
}

async fn append_one(events: &PgEventStore, id: &str, version: u64, event_type: &'static str) -> Position {
    let event = NewEvent {
        event_type: event_type.into(),
        schema_version: 1,
        payload: "null".into(),
        metadata: Metadata::default(),
    };
    let stream = StreamId::new("tally", id).unwrap();
    events.append(&stream, ExpectedVersion::Exact(version), vec![event]).await.unwrap().into_outcome().position
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn poison_events_stop_one_projection_at_their_position_or_go_to_dead_letters_on_redis() {
    let schema = unique("poison");
    let prefix = format!("test:{}:", unique("poison"));
    let events = events_in(&schema).await;
    let views = views_in(&prefix).await;
    fill(&events, 3, 3).await;
    let plain = Projector::new(events.clone(), views.clone());
    for projection in [plain.catch_up(&Counts).await, plain.catch_up(&Picky).await, plain.catch_up(&Tolerant).await] {
        projection.unwrap();
    }
    // An event of a type the code no longer knows (it does not decode), and one Picky refuses.
    let undecodable = append_one(&events, "t0", 3, "Renamed").await;
    let refused = append_one(&events, "t1", 3, "Counted").await;
    append_one(&events, "t2", 3, "Counted").await;
    let last = append_one(&events, "t0", 4, "Counted").await;

    // Stop: each error names its event's position and the checkpoint stays before it, while a
    // third projection goes on.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let tolerant = tokio::spawn({
        let p = plain.clone();
        async move { p.run(Tolerant, async { stopped.await.unwrap_or(()) }).await }
    });
    match plain.run(Counts, std::future::pending()).await.unwrap_err() {
        Error::UnknownEvent { position, .. } => assert_eq!(position, undecodable),
        other => panic!("expected an unknown event at {undecodable}, got {other:?}"),
    }
    match plain.run(Picky, std::future::pending()).await.unwrap_err() {
        Error::Projection { position, source, .. } => {
            let reason = source.to_string();
            assert_eq!(position, refused);
            assert!(reason.contains("not welcome"), "{reason}");
        }
        other => panic!("expected a projection error at {refused}, got {other:?}"),
    }
    for (name, poison) in [(Counts::NAME, undecodable), (Picky::NAME, refused)] {
        // (None when the first catch-up found nothing yet visible: other tests' transactions on
        // the shared server can hold new events back for a moment.)
        let checkpoint = views.status(name).await.unwrap().checkpoint();
        assert!(checkpoint < Some(poison), "{name}: the checkpoint stays before the poison event");
    }
    let tolerant_views = ViewReader::<u64>::new(views.clone(), Tolerant::NAME);
    tolerant_views.wait_for(last, Duration::from_secs(10)).await.expect("the other projection goes on");
    assert_eq!(tolerant_views.get("t0").await.unwrap(), Some(4));
    stop.send(()).unwrap();
    tolerant.await.unwrap().unwrap();

    // Dead letters: skipped, recorded with their batch, and the projections go on.
    let skipping = plain.clone().with_poison_policy(PoisonPolicy::DeadLetter);
    skipping.catch_up(&Counts).await.unwrap();
    skipping.catch_up(&Picky).await.unwrap();
    let letters = views.dead_letters(Counts::NAME).await.unwrap();
    assert_eq!(
        letters.iter().map(|l| (l.position, l.event_type.as_str())).collect::<Vec<_>>(),
        vec![(undecodable, "Renamed")]
    );
    let letters = views.dead_letters(Picky::NAME).await.unwrap();
    assert_eq!(letters.iter().map(|l| l.position).collect::<Vec<_>>(), vec![refused]);
    assert!(letters[0].reason.contains("not welcome"));
    let counts = ViewReader::<Count>::new(views.clone(), Counts::NAME);
    let t0 = counts.get("t0").await.unwrap().unwrap();
    assert_eq!((t0.applied, t0.version, t0.twice, t0.skipped), (4, 5, 0, 1), "the skipped event, and no other");
    let picky = ViewReader::<u64>::new(views.clone(), Picky::NAME);
    assert_eq!(
        picky.get_many(&["t0".into(), "t1".into(), "t2".into()]).await.unwrap(),
        vec![Some(4), Some(3), Some(4)]
    );
}

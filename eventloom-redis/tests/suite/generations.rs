//! Generations on a real Redis: a Redis that restarts empty while the projector runs (during the
//! first build, and while it is live and idle), and a new projection version built behind the
//! live views. Queries meanwhile see either no views (`NotBuilt`, or Redis unavailable) or
//! complete ones, never a half-built generation.

use eventloom_core::store::Refusal;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use eventloom_core::model::{ExpectedVersion, NewEvent};
use eventloom_core::prelude::*;
use eventloom_core::{
    BoxError, Error, IndexEntry, Projection,
    memory::MemoryEventStore,
    read::{Projector, ViewReader},
    store::{EventStore, IndexKey, ViewCommit, ViewStore, ViewWrite},
};
use eventloom_redis::RedisViewStore;

use crate::private::PrivateRedis;
use crate::{fresh_prefix, keys_under, raw_connection, redis_url};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
pub enum ItemEvent {
    Bumped,
}

#[derive(Debug, Default)]
pub struct Item;

impl Aggregate for Item {
    const TYPE: &'static str = "item";
    type Event = ItemEvent;
    type Error = std::convert::Infallible;
    fn apply(&mut self, _: &ItemEvent) {}
}

/// What every projection here stores: the events applied and the stream version it was built
/// to (`applied == version` exactly when none was applied twice or skipped), and which version
/// of the projection built it.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemView {
    pub applied: u64,
    pub version: u64,
    pub built_by: u32,
}

/// Every view is in the list `all=` (so its count is the number of views) and in `parity=even`
/// or `parity=odd` by its version, sorted by version.
fn index(view: &ItemView) -> Vec<IndexEntry> {
    let parity = if view.version % 2 == 0 { "even" } else { "odd" };
    vec![IndexEntry::new("all", ""), IndexEntry::new("parity", parity).ordered_by(format!("{:08}", view.version))]
}

fn fold(view: &mut Option<ItemView>, e: &EventEnvelope<ItemEvent>, built_by: u32) {
    let view = view.get_or_insert_with(ItemView::default);
    view.applied += 1;
    view.version = e.version;
    view.built_by = built_by;
}

/// Version 1, slowed down a little (1 ms every 50 events) so that a build takes a while.
pub struct ItemsV1;

impl Projection for ItemsV1 {
    const NAME: &'static str = "items";
    type Events = Item;
    type View = ItemView;
    fn index(&self, _: &str, view: &ItemView) -> Vec<IndexEntry> {
        index(view)
    }
    fn apply(&self, view: &mut Option<ItemView>, e: &EventEnvelope<ItemEvent>) -> Result<(), BoxError> {
        if e.position.sequence() % 50 == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        fold(view, e, 1);
        Ok(())
    }
}

/// Version 2 of the same projection: another `apply` (it stamps 2), slower still (5 ms every 10
/// events).
pub struct ItemsV2;

impl Projection for ItemsV2 {
    const NAME: &'static str = "items";
    const VERSION: u32 = 2;
    type Events = Item;
    type View = ItemView;
    fn index(&self, _: &str, view: &ItemView) -> Vec<IndexEntry> {
        index(view)
    }
    fn apply(&self, view: &mut Option<ItemView>, e: &EventEnvelope<ItemEvent>) -> Result<(), BoxError> {
        if e.position.sequence() % 10 == 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
        fold(view, e, 2);
        Ok(())
    }
}

fn ids(streams: u64) -> Vec<String> {
    (0..streams).map(|s| format!("i{s}")).collect()
}

/// Appends `rounds` rounds of `per_round` events to each of `streams` streams that hold `have`
/// events each; returns the last position.
async fn append(events: &MemoryEventStore, streams: u64, have: u64, rounds: u64, per_round: u64) -> Position {
    for round in 0..rounds {
        for s in 0..streams {
            let stream = StreamId::new(Item::TYPE, format!("i{s}")).unwrap();
            let batch =
                (0..per_round).map(|_| NewEvent::encode(&ItemEvent::Bumped, Metadata::default()).unwrap()).collect();
            let expected = match have + round * per_round {
                0 => ExpectedVersion::NoStream,
                n => ExpectedVersion::Exact(n),
            };
            events.append(&stream, expected, batch).await.unwrap();
        }
    }
    events.read_all(Position::ZERO, usize::MAX).await.unwrap().last().unwrap().position
}

/// Waits until the live views of `projection` are at `position` (and built by `version`, when
/// given), riding out a Redis that is restarting.
async fn wait_live(
    store: &RedisViewStore,
    projection: &str,
    position: Position,
    version: Option<u32>,
    timeout: Duration,
) {
    let deadline = Instant::now() + timeout;
    loop {
        match store.status(projection).await {
            Ok(status)
                if status.live.is_some_and(|g| {
                    g.checkpoint.is_some_and(|c| c >= position) && version.is_none_or(|v| g.version == v)
                }) =>
            {
                return;
            }
            Ok(_) => {}
            Err(e) if e.is_transient() => {}
            Err(e) => panic!("status: {e}"),
        }
        assert!(Instant::now() < deadline, "the views did not reach {position} within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// What a query loop saw.
#[derive(Debug, Default)]
struct Seen {
    complete: AtomicU64,
    not_built: AtomicU64,
    unavailable: AtomicU64,
    /// The projection versions complete reads saw, in order.
    versions: std::sync::Mutex<Vec<u32>>,
}

/// Queries the views of `streams` streams in a loop until `stop`: reads by id, counts and lists
/// must each answer either `NotBuilt`, unavailable, or complete views: every view there, each
/// with `applied == version >= at_least`, all built by one projection version; `all=` counts
/// every view, the parity lists split them, and a listing holds them all.
fn query_loop(
    store: RedisViewStore,
    streams: u64,
    at_least: u64,
    stop: Arc<AtomicBool>,
) -> (Arc<Seen>, tokio::task::JoinHandle<()>) {
    let seen = Arc::new(Seen::default());
    let task = {
        let seen = seen.clone();
        tokio::spawn(async move {
            let reader = ViewReader::<ItemView>::new(store, ItemsV1::NAME);
            let ids = ids(streams);
            let keys = [IndexKey::new("all", ""), IndexKey::new("parity", "even"), IndexKey::new("parity", "odd")];
            let sort = |outcome: Result<(), Error>| match outcome {
                Ok(()) => {
                    seen.complete.fetch_add(1, Ordering::Relaxed);
                }
                Err(Error::NotBuilt { .. }) => {
                    seen.not_built.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) if e.is_transient() => {
                    seen.unavailable.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => panic!("a query failed: {e}"),
            };
            let mut round = 0u64;
            while !stop.load(Ordering::Relaxed) {
                round += 1;
                let outcome = match round % 3 {
                    0 => reader.get_many(&ids).await.map(|views| {
                        let views: Vec<ItemView> = views
                            .into_iter()
                            .enumerate()
                            .map(|(i, v)| v.unwrap_or_else(|| panic!("view {i} missing from a live generation")))
                            .collect();
                        let by = views[0].built_by;
                        for view in &views {
                            assert_eq!(view.applied, view.version, "{view:?}");
                            assert!(view.version >= at_least, "a half-built view: {view:?}");
                            assert_eq!(view.built_by, by, "views of two generations in one read");
                        }
                        seen.versions.lock().unwrap().push(by);
                    }),
                    1 => reader.count(&keys).await.map(|counts| {
                        assert_eq!(counts[0], streams, "a half-built count: {counts:?}");
                        assert_eq!(counts[1] + counts[2], streams, "{counts:?}");
                    }),
                    _ => reader.list(&keys[0], None, 10_000).await.map(|page| {
                        assert_eq!(page.views.len() as u64, streams, "a half-built list");
                        assert!(page.next.is_none());
                        assert!(page.views.iter().all(|(_, v)| v.version >= at_least && v.applied == v.version));
                    }),
                };
                sort(outcome);
                tokio::task::yield_now().await;
            }
        })
    };
    (seen, task)
}

fn check_views(views: Vec<Option<ItemView>>, version: u64, built_by: u32) {
    for (i, view) in views.into_iter().enumerate() {
        assert_eq!(view, Some(ItemView { applied: version, version, built_by }), "view i{i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redis_restarted_empty_mid_projection_is_rebuilt_and_queries_never_see_half_built_views() {
    const STREAMS: u64 = 200;
    const ROUNDS: u64 = 10;
    const PER_ROUND: u64 = 10;
    let mut redis = PrivateRedis::volatile();
    let views = RedisViewStore::connect(&redis.url(), "t:").await.unwrap();
    let events = MemoryEventStore::new();
    // 20,000 events, all there before the projector starts: the first live generation holds
    // every view at its final version.
    let last = append(&events, STREAMS, 0, ROUNDS, PER_ROUND).await;
    let full = ROUNDS * PER_ROUND;

    let stop_queries = Arc::new(AtomicBool::new(false));
    let (seen, queries) = query_loop(views.clone(), STREAMS, full, stop_queries.clone());
    let projector = Projector::new(events.clone(), views.clone())
        .with_batch_size(100)
        .with_retry_delay(Duration::from_millis(20))
        .with_verify_interval(Duration::from_millis(100));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(async move { projector.run(ItemsV1, async { stopped.await.unwrap_or(()) }).await });

    // 1. Redis restarts empty during the first build: the next commit finds its generation gone.
    let deadline = Instant::now() + Duration::from_secs(30);
    let quarter = Position::new(last.transaction() / 4, 0);
    loop {
        let status = views.status(ItemsV1::NAME).await.unwrap();
        assert!(status.live.is_none(), "the first build finished before the test could restart Redis");
        if status.building.and_then(|g| g.checkpoint).is_some_and(|c| c >= quarter) {
            break;
        }
        assert!(Instant::now() < deadline, "the first build did not start");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    tokio::task::block_in_place(|| redis.restart());
    wait_live(&views, ItemsV1::NAME, last, None, Duration::from_secs(60)).await;
    let reader = ViewReader::<ItemView>::new(views.clone(), ItemsV1::NAME);
    check_views(reader.get_many(&ids(STREAMS)).await.unwrap(), full, 1);

    // 2. Redis restarts empty while the projector is live and idle: its periodic check notices.
    tokio::task::block_in_place(|| redis.restart());
    assert!(
        matches!(reader.get("i0").await, Err(Error::NotBuilt { .. } | Error::Unavailable { .. })),
        "the views are gone with Redis's data"
    );
    wait_live(&views, ItemsV1::NAME, last, None, Duration::from_secs(60)).await;
    check_views(reader.get_many(&ids(STREAMS)).await.unwrap(), full, 1);

    // 3. And it goes on live.
    let more = append(&events, STREAMS, full, 1, 1).await;
    wait_live(&views, ItemsV1::NAME, more, None, Duration::from_secs(60)).await;
    check_views(reader.get_many(&ids(STREAMS)).await.unwrap(), full + 1, 1);
    assert_eq!(reader.count(&[IndexKey::new("all", "")]).await.unwrap(), vec![STREAMS]);

    stop_queries.store(true, Ordering::Relaxed);
    queries.await.unwrap();
    stop.send(()).unwrap();
    running.await.unwrap().unwrap();
    let (complete, not_built) = (seen.complete.load(Ordering::Relaxed), seen.not_built.load(Ordering::Relaxed));
    println!(
        "queries: {complete} complete, {not_built} not built, {} unavailable",
        seen.unavailable.load(Ordering::Relaxed)
    );
    assert!(complete > 0 && not_built > 0, "the queries saw the views come and go");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_version_is_built_behind_the_live_views_which_switch_at_once_and_the_old_keys_go() {
    const STREAMS: u64 = 50;
    const EACH: u64 = 40;
    let prefix = fresh_prefix();
    let views = RedisViewStore::connect(&redis_url(), &prefix).await.unwrap();
    let events = MemoryEventStore::new();
    let last = append(&events, STREAMS, 0, 4, EACH / 4).await;
    let projector = Projector::new(events.clone(), views.clone()).with_batch_size(20);
    projector.catch_up(&ItemsV1).await.unwrap();
    let v1 = views.status(ItemsV1::NAME).await.unwrap().live.unwrap();
    assert_eq!((v1.version, v1.checkpoint), (1, Some(last)));
    let reader = ViewReader::<ItemView>::new(views.clone(), ItemsV1::NAME);
    check_views(reader.get_many(&ids(STREAMS)).await.unwrap(), EACH, 1);

    let stop_queries = Arc::new(AtomicBool::new(false));
    let (seen, queries) = query_loop(views.clone(), STREAMS, EACH, stop_queries.clone());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = {
        let projector = projector.clone();
        tokio::spawn(async move { projector.run(ItemsV2, async { stopped.await.unwrap_or(()) }).await })
    };
    // While version 2 is being built, queries answer version 1.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = views.status(ItemsV1::NAME).await.unwrap();
        if status.building.is_some_and(|g| g.version == 2 && g.checkpoint.is_some()) {
            assert_eq!(status.live.map(|g| g.id), Some(v1.id), "version 2 is not live before it caught up");
            break;
        }
        assert!(Instant::now() < deadline, "version 2 was not being built");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    check_views(reader.get_many(&ids(STREAMS)).await.unwrap(), EACH, 1);
    assert!(
        matches!(
            Projector::new(events.clone(), views.clone()).catch_up(&ItemsV1).await,
            Err(Error::NewerVersion { running: 1, stored: 2, .. })
        ),
        "an old process does not build backwards"
    );

    wait_live(&views, ItemsV1::NAME, last, Some(2), Duration::from_secs(60)).await;
    check_views(reader.get_many(&ids(STREAMS)).await.unwrap(), EACH, 2);
    // Until the query loop has read version 2 too.
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen.versions.lock().unwrap().last() != Some(&2) {
        assert!(Instant::now() < deadline, "the query loop never read version 2");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    stop_queries.store(true, Ordering::Relaxed);
    queries.await.unwrap();
    stop.send(()).unwrap();
    running.await.unwrap().unwrap();

    let versions = seen.versions.lock().unwrap().clone();
    assert_eq!(seen.not_built.load(Ordering::Relaxed), 0, "views were live throughout");
    assert!(versions.windows(2).all(|w| w[0] <= w[1]), "never back to version 1 after version 2");
    assert_eq!(versions.first(), Some(&1));
    assert_eq!(versions.last(), Some(&2));

    // The old generation's keys are gone; the new one's are all that is left besides the
    // projection's own.
    let mut raw = raw_connection(&redis_url()).await;
    let v2 = views.status(ItemsV1::NAME).await.unwrap().live.unwrap();
    let base = format!("{prefix}{{p:items}}");
    assert_eq!(keys_under(&mut raw, &format!("{base}:g{}:", v1.id)).await, Vec::<String>::new());
    let left = keys_under(&mut raw, &prefix).await;
    let (generation, own): (Vec<&String>, Vec<&String>) =
        left.iter().partition(|k| k.starts_with(&format!("{base}:g{}:", v2.id)));
    // (The registry of projection names is the store's, outside every projection's tag.)
    let registry = format!("{prefix}eventloom.projections");
    assert_eq!(own, [&registry, &format!("{base}:last"), &format!("{base}:live"), &format!("{base}:token")]);
    // STREAMS views, `all=`, `parity=even`/`odd` (every view is at version 40), ids, indexes,
    // meta.
    assert_eq!(generation.len() as u64, STREAMS + 2 + 3, "{generation:?}");
}

/// A store whose server lost its data answers `NotBuilt`, and a write into the generation it
/// had is `GenerationGone`.
#[tokio::test]
async fn a_flushed_redis_answers_not_built_and_refuses_writes_into_the_lost_generation() {
    let redis = PrivateRedis::volatile();
    let store = RedisViewStore::connect(&redis.url(), "t:").await.unwrap();
    let g = store.begin_generation("p", 1, 0).await.unwrap().unwrap();
    let first = ViewCommit {
        generation: g.id,
        expected: None,
        checkpoint: Position::new(1, 1),
        fencing_token: 0,
        views: vec![ViewWrite::set("a", "1")],
        dead_letters: Vec::new(),
        resolved: Vec::new(),
    };
    store.commit("p", first).await.unwrap().unwrap();
    store.go_live("p", g.id, 0).await.unwrap().unwrap();
    assert_eq!(store.read_views("p", &["a".into()]).await.unwrap(), vec![Some("1".into())]);
    let live = store.status("p").await.unwrap().live.unwrap();
    let mut raw = raw_connection(&redis.url()).await;
    let _: () = redis::cmd("FLUSHALL").query_async(&mut raw).await.unwrap();
    assert!(matches!(store.read_views("p", &["a".into()]).await, Err(Error::NotBuilt { .. })));
    let commit = ViewCommit {
        generation: live.id,
        expected: live.checkpoint,
        checkpoint: Position::new(2, 2),
        fencing_token: 0,
        views: vec![ViewWrite::set("a", "2")],
        dead_letters: Vec::new(),
        resolved: Vec::new(),
    };
    assert!(matches!(store.commit("p", commit).await, Ok(Err(Refusal::GenerationGone { .. }))));
    assert_eq!(store.status("p").await.unwrap(), eventloom_core::store::ProjectionStatus::default());
}

/// A Redis that lost `:last` alone (say, a partial restore) still never hands out the id of a
/// dropped generation whose keys the sweep has not deleted yet: new ids are above the trash too.
#[tokio::test]
async fn a_new_generation_id_is_above_every_trashed_one() {
    let prefix = fresh_prefix();
    let store = RedisViewStore::connect(&redis_url(), &prefix).await.unwrap();
    let mut raw = raw_connection(&redis_url()).await;
    let base = format!("{prefix}{{p:p}}");
    let g = store.begin_generation("p", 1, 0).await.unwrap().unwrap();
    // The generation after it was dropped, its sweep interrupted: a view of it is left.
    let dropped = g.id + 1;
    let view = format!("{base}:g{dropped}:v:a");
    let _: () = redis::cmd("SET").arg(&view).arg("\"stale\"").query_async(&mut raw).await.unwrap();
    let _: () = redis::cmd("SADD").arg(format!("{base}:g{dropped}:ids")).arg("a").query_async(&mut raw).await.unwrap();
    let _: () = redis::cmd("SADD").arg(format!("{base}:trash")).arg(dropped).query_async(&mut raw).await.unwrap();
    let _: () = redis::cmd("DEL").arg(format!("{base}:last")).query_async(&mut raw).await.unwrap();
    let next = store.begin_generation("p", 1, 0).await.unwrap().unwrap();
    assert!(next.id > dropped, "{} must be above the trashed {dropped}", next.id);
    assert_eq!(store.load_views("p", next.id, &["a".into()]).await.unwrap(), vec![None], "a new one starts empty");
    let left: bool = redis::cmd("EXISTS").arg(&view).query_async(&mut raw).await.unwrap();
    assert!(!left, "the sweep deleted the dropped generation's keys");
}

/// A dropped generation whose sweep has not deleted its keys yet (interrupted, or still under
/// way) lists nothing and counts 0 when asked for by id, as after its sweep.
#[tokio::test]
async fn a_dropped_generation_not_swept_yet_lists_nothing() {
    let prefix = fresh_prefix();
    let store = RedisViewStore::connect(&redis_url(), &prefix).await.unwrap();
    let mut raw = raw_connection(&redis_url()).await;
    let base = format!("{prefix}{{p:p}}");
    let g = store.begin_generation("p", 1, 0).await.unwrap().unwrap();
    let key = IndexKey::new("all", "");
    let writes = vec![ViewWrite::set("a", "1").joining(vec![IndexEntry::new("all", "")])];
    let commit = ViewCommit {
        generation: g.id,
        expected: None,
        checkpoint: Position::new(1, 1),
        fencing_token: 0,
        views: writes,
        dead_letters: Vec::new(),
        resolved: Vec::new(),
    };
    store.commit("p", commit).await.unwrap().unwrap();
    let all = eventloom_core::read::OrderRange::all();
    assert_eq!(store.list_generation("p", g.id, &key, &all, None, 10).await.unwrap().len(), 1, "being built");
    assert_eq!(store.count_generation("p", g.id, std::slice::from_ref(&key)).await.unwrap(), vec![1]);
    // Dropped as a new build drops it, before its sweep: in the trash, its keys all there.
    let _: () = redis::cmd("DEL").arg(format!("{base}:building")).query_async(&mut raw).await.unwrap();
    let _: () = redis::cmd("SADD").arg(format!("{base}:trash")).arg(g.id).query_async(&mut raw).await.unwrap();
    let list: bool = redis::cmd("EXISTS").arg(format!("{base}:g{}:i:all=", g.id)).query_async(&mut raw).await.unwrap();
    assert!(list, "the list is still stored");
    assert!(store.list_generation("p", g.id, &key, &all, None, 10).await.unwrap().is_empty(), "dropped");
    assert_eq!(store.count_generation("p", g.id, std::slice::from_ref(&key)).await.unwrap(), vec![0], "dropped");
    assert!(store.sweep("p").await.unwrap() > 0, "the sweep deletes its keys");
    assert!(store.list_generation("p", g.id, &key, &all, None, 10).await.unwrap().is_empty(), "swept");
    assert_eq!(store.count_generation("p", g.id, &[key]).await.unwrap(), vec![0], "swept");
}

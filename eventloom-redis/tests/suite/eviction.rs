//! Keys that Redis evicts (or someone deletes): every key of a live generation lost in turn, a
//! real eviction under `allkeys-lru`, generation ids after a `FLUSHALL`, a deposed leader after
//! the token key is lost, and the `maxmemory-policy` check.

use eventloom_core::store::Refusal;
use std::time::{Duration, Instant};

use eventloom_core::model::{ExpectedVersion, NewEvent};
use eventloom_core::prelude::*;
use eventloom_core::{
    BoxError, Error, IndexEntry, Projection,
    memory::MemoryEventStore,
    read::{Projector, ViewReader},
    store::{DeadLetter, EventStore, IndexKey, ViewCommit, ViewStore, ViewWrite},
};
use eventloom_redis::{EvictionPolicy, RedisConfig, RedisViewStore};

use crate::generations::{Item, ItemEvent};
use crate::private::PrivateRedis;
use crate::{fresh_prefix, keys_under, raw_connection, redis_url};

/// The events applied per stream and the stream version reached: `applied == version` exactly
/// when every event was applied once.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    pub applied: u64,
    pub version: u64,
}

/// Every view is in the list `all=` and in `parity=even` or `parity=odd`.
pub struct Tallies;

impl Projection for Tallies {
    const NAME: &'static str = "tallies";
    type Events = Item;
    type View = Tally;
    fn index(&self, _: &str, view: &Tally) -> Vec<IndexEntry> {
        let parity = if view.version % 2 == 0 { "even" } else { "odd" };
        vec![IndexEntry::new("all", ""), IndexEntry::new("parity", parity)]
    }
    fn apply(&self, view: &mut Option<Tally>, e: &EventEnvelope<ItemEvent>) -> Result<(), BoxError> {
        let view = view.get_or_insert_with(Tally::default);
        view.applied += 1;
        view.version = e.version;
        Ok(())
    }
}

const STREAMS: u64 = 4;

fn ids() -> Vec<String> {
    (0..STREAMS).map(|s| format!("i{s}")).collect()
}

/// Appends `n` events to each stream, which holds `have` each; returns the last position.
async fn append(events: &MemoryEventStore, have: u64, n: u64) -> Position {
    let mut last = Position::ZERO;
    for s in 0..STREAMS {
        let stream = StreamId::new(Item::TYPE, format!("i{s}")).unwrap();
        let batch = (0..n).map(|_| NewEvent::encode(&ItemEvent::Bumped, Metadata::default()).unwrap()).collect();
        let expected = if have == 0 { ExpectedVersion::NoStream } else { ExpectedVersion::Exact(have) };
        last = events.append(&stream, expected, batch).await.unwrap().into_outcome().position;
    }
    last
}

/// Waits until every view counts `each` events, each applied once, and `all=` lists every
/// stream; panics with what it last saw after `timeout`.
async fn wait_for_counts(views: &RedisViewStore, each: u64, timeout: Duration) {
    let reader = ViewReader::<Tally>::new(views.clone(), Tallies::NAME);
    let want = vec![Some(Tally { applied: each, version: each }); STREAMS as usize];
    let deadline = Instant::now() + timeout;
    loop {
        let seen = reader.get_many(&ids()).await;
        let counts = reader.count(&[IndexKey::new("all", "")]).await;
        if let (Ok(seen), Ok(counts)) = (&seen, &counts)
            && *seen == want
            && *counts == [STREAMS]
        {
            return;
        }
        assert!(Instant::now() < deadline, "the views did not count {each} events each: {seen:?}, all= {counts:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// One key of a projection, from its base key and its live generation's.
type KeyOf = fn(&str, &str) -> String;

/// The 11 → 21 reproduction, for every kind of key a live generation has: 11 events per
/// stream are projected, one key is deleted (as Redis evicts it), 10 more events come. The
/// views must count 21 events each, every one applied once, as a from-scratch count does.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_lost_key_of_a_live_generation_is_rebuilt_and_never_applies_an_event_twice() {
    let kinds: [(&str, KeyOf); 8] = [
        ("the generation's metadata (its checkpoint)", |_, generation| format!("{generation}:meta")),
        ("a view", |_, generation| format!("{generation}:v:i0")),
        ("an index list", |_, generation| format!("{generation}:i:all=")),
        ("the set of view ids", |_, generation| format!("{generation}:ids")),
        ("the set of index lists", |_, generation| format!("{generation}:indexes")),
        ("the live pointer", |base, _| format!("{base}:live")),
        ("the fencing token", |base, _| format!("{base}:token")),
        ("the highest id handed out", |base, _| format!("{base}:last")),
    ];
    let mut raw = raw_connection(&redis_url()).await;
    for (kind, key) in kinds {
        let prefix = fresh_prefix();
        let views = RedisViewStore::connect(&redis_url(), &prefix).await.unwrap();
        let events = MemoryEventStore::new();
        append(&events, 0, 11).await;
        let projector = Projector::new(events.clone(), views.clone())
            .with_retry_delay(Duration::from_millis(20))
            .with_verify_interval(Duration::from_millis(50));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn(async move { projector.run(Tallies, async { stopped.await.unwrap_or(()) }).await });
        wait_for_counts(&views, 11, Duration::from_secs(20)).await;

        let live = views.status(Tallies::NAME).await.unwrap().live.unwrap();
        let base = format!("{prefix}{{p:{}}}", Tallies::NAME);
        let lost = key(&base, &format!("{base}:g{}", live.id));
        let deleted: u64 = redis::cmd("DEL").arg(&lost).query_async(&mut raw).await.unwrap();
        assert_eq!(deleted, 1, "{kind}: {lost} was there");
        append(&events, 11, 10).await;
        wait_for_counts(&views, 21, Duration::from_secs(20)).await;
        println!("lost {kind} ({lost}): every view counts 21 events, each applied once");

        stop.send(()).unwrap();
        running.await.unwrap().unwrap_or_else(|e| panic!("{kind}: the projector stopped: {e}"));
    }
}

fn batch(generation: u64, expected: Option<u64>, at: u64, token: u64, views: Vec<ViewWrite>) -> ViewCommit {
    ViewCommit {
        generation,
        expected: expected.map(|p| Position::new(p, p)),
        checkpoint: Position::new(at, at),
        fencing_token: token,
        views,
        dead_letters: Vec::new(),
        resolved: Vec::new(),
    }
}

/// Writes into a generation that lost a key fail with `GenerationGone`, and the status leaves
/// it out, whichever key it lost; a generation with no batch yet is not lost.
#[tokio::test]
async fn a_generation_that_lost_a_key_refuses_writes_and_is_left_out_of_the_status() {
    let letter = DeadLetter::new(Position::new(1, 1), StreamId::new("item", "i0").unwrap(), 1, "Bumped", "test");
    for (kind, suffix) in [
        ("metadata", "meta"),
        ("view ids", "ids"),
        ("index lists", "indexes"),
        ("dead letters", "dead"),
        ("view", "v:a"),
    ] {
        let prefix = fresh_prefix();
        let store = RedisViewStore::connect(&redis_url(), &prefix).await.unwrap();
        let mut raw = raw_connection(&redis_url()).await;
        let g = store.begin_generation("p", 1, 0).await.unwrap().unwrap();
        assert_eq!(store.status("p").await.unwrap().building, Some(g), "a new generation is not lost");
        store.go_live("p", g.id, 0).await.unwrap().unwrap();
        let first = ViewCommit {
            dead_letters: vec![letter.clone()],
            ..batch(g.id, None, 1, 0, vec![ViewWrite::set("a", "1").joining(vec![IndexEntry::new("s", "x")])])
        };
        store.commit("p", first).await.unwrap().unwrap();
        let _: () =
            redis::cmd("DEL").arg(format!("{prefix}{{p:p}}:g{}:{suffix}", g.id)).query_async(&mut raw).await.unwrap();
        if suffix == "v:a" {
            // A lost view is noticed when the projector loads it (the set of ids names it): the
            // runner loading it was superseded.
            let outcome = store.load_views("p", g.id, &["a".into()]).await;
            let gone = Refusal::GenerationGone { generation: g.id };
            assert!(matches!(outcome, Err(Error::Superseded { refusal, .. }) if refusal == gone), "{kind}");
        } else {
            let outcome = store.commit("p", batch(g.id, Some(1), 2, 0, vec![ViewWrite::set("b", "2")])).await;
            assert!(matches!(outcome, Ok(Err(Refusal::GenerationGone { .. }))), "{kind}: {outcome:?}");
        }
        let outcome = store.commit("p", batch(g.id, Some(1), 2, 0, vec![ViewWrite::set("b", "2")])).await;
        assert!(matches!(outcome, Ok(Err(Refusal::GenerationGone { .. }))), "{kind}, again: {outcome:?}");
        assert_eq!(store.status("p").await.unwrap().live, None, "{kind}: not live with no checkpoint");
        // A new generation takes its place; queries answer NotBuilt until it is live.
        let next = store.begin_generation("p", 1, 0).await.unwrap().unwrap();
        assert!(next.id > g.id);
        assert!(matches!(store.read_views("p", &["a".into()]).await, Err(Error::NotBuilt { .. })), "{kind}");
        store.go_live("p", next.id, 0).await.unwrap().unwrap();
        assert_eq!(store.read_views("p", &["a".into()]).await.unwrap(), vec![None], "{kind}");
        let left = keys_under(&mut raw, &format!("{prefix}{{p:p}}:g{}:", g.id)).await;
        match suffix {
            // Without the set of its ids, the sweep cannot find the lost generation's views (nor
            // its lists without the set of lists): they are left behind.
            "ids" => assert_eq!(left, [format!("{prefix}{{p:p}}:g{}:v:a", g.id)]),
            "indexes" => assert_eq!(left, [format!("{prefix}{{p:p}}:g{}:i:s=x", g.id)]),
            _ => assert_eq!(left, Vec::<String>::new(), "{kind}: the sweep deleted the lost generation's keys"),
        }
    }
}

/// A new leader (token 2) began a rebuild; the token key is then lost. The deposed leader's
/// late write (token 1) into the live generation is still refused: the generations' metadata
/// keep the highest token too.
#[tokio::test]
async fn a_deposed_leaders_late_write_is_refused_after_the_token_key_is_lost() {
    let prefix = fresh_prefix();
    let store = RedisViewStore::connect(&redis_url(), &prefix).await.unwrap();
    let mut raw = raw_connection(&redis_url()).await;
    let g = store.begin_generation("p", 1, 1).await.unwrap().unwrap();
    store.go_live("p", g.id, 1).await.unwrap().unwrap();
    store.commit("p", batch(g.id, None, 1, 1, vec![ViewWrite::set("a", "1")])).await.unwrap().unwrap();
    // The new leader: a rebuild, and (in a second round) a write into the live generation.
    for new_leader in ["begin", "commit"] {
        match new_leader {
            "begin" => drop(store.begin_generation("p", 1, 2).await.unwrap().unwrap()),
            _ => store.commit("p", batch(g.id, Some(1), 2, 3, vec![ViewWrite::set("a", "2")])).await.unwrap().unwrap(),
        }
        let _: () = redis::cmd("DEL").arg(format!("{prefix}{{p:p}}:token")).query_async(&mut raw).await.unwrap();
        let (expected, highest) = if new_leader == "begin" { (1, 2) } else { (2, 3) };
        let late = store.commit("p", batch(g.id, Some(expected), 9, 1, vec![ViewWrite::set("a", "\"late\"")])).await;
        assert!(
            matches!(late, Ok(Err(Refusal::Fenced { token: 1, highest: h, .. })) if h == highest),
            "after a {new_leader}: {late:?}"
        );
        let late = store.begin_generation("p", 1, 1).await;
        assert!(matches!(late, Ok(Err(Refusal::Fenced { .. }))), "after a {new_leader}: {late:?}");
    }
    assert_ne!(store.read_views("p", &["a".into()]).await.unwrap(), vec![Some("\"late\"".to_owned())]);
}

/// Generation ids never come back: not after a `FLUSHALL`, nor when the highest id handed out
/// and both pointers are lost while an old generation's keys are left.
#[tokio::test]
async fn generation_ids_are_never_handed_out_twice() {
    let redis = PrivateRedis::volatile();
    let store = RedisViewStore::connect(&redis.url(), "t:").await.unwrap();
    let mut raw = raw_connection(&redis.url()).await;
    let mut seen = Vec::new();
    for round in 0..3 {
        let g = store.begin_generation("p", 1, 0).await.unwrap().unwrap();
        store.go_live("p", g.id, 0).await.unwrap().unwrap();
        store.commit("p", batch(g.id, None, 1, 0, vec![ViewWrite::set("a", "\"old\"")])).await.unwrap().unwrap();
        seen.push(g.id);
        if round == 0 {
            let _: () = redis::cmd("FLUSHALL").query_async(&mut raw).await.unwrap();
        } else {
            // The counter and the pointers gone; the generation's own keys are left.
            let _: () = redis::cmd("DEL").arg("t:{p:p}:last").arg("t:{p:p}:live").query_async(&mut raw).await.unwrap();
        }
    }
    let last = store.begin_generation("p", 1, 0).await.unwrap().unwrap();
    seen.push(last.id);
    println!("generation ids: {seen:?}");
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "every id is new, and higher: {seen:?}");
    assert_eq!(store.load_views("p", last.id, &["a".into()]).await.unwrap(), vec![None], "a new one starts empty");
}

/// An id whose keys are still there (an orphaned generation no pointer names) is never handed
/// out again, even when the proposed id is below it (a process whose clock is behind).
#[tokio::test]
async fn an_id_whose_keys_are_left_is_skipped() {
    let redis = PrivateRedis::volatile();
    let store = RedisViewStore::connect(&redis.url(), "t:").await.unwrap();
    let mut raw = raw_connection(&redis.url()).await;
    // Far above any time-ordered id: the next id is `last + 1`, unless it is taken.
    let last: u64 = 1 << 62;
    let _: () = redis::cmd("SET").arg("t:{p:p}:last").arg(last).query_async(&mut raw).await.unwrap();
    let orphan = last + 1;
    let _: () =
        redis::cmd("SADD").arg(format!("t:{{p:p}}:g{orphan}:ids")).arg("a").query_async(&mut raw).await.unwrap();
    let _: () =
        redis::cmd("SET").arg(format!("t:{{p:p}}:g{orphan}:v:a")).arg("\"old\"").query_async(&mut raw).await.unwrap();
    let g = store.begin_generation("p", 1, 0).await.unwrap().unwrap();
    assert_eq!(g.id, last + 2, "the orphan's id is skipped");
    assert_eq!(store.load_views("p", g.id, &["a".into()]).await.unwrap(), vec![None], "it starts empty");
}

/// A real eviction: a Redis with a small `maxmemory` and `allkeys-lru` (accepted) evicts the
/// projection's keys under filler data; once the filler is gone, the next events leave every
/// view counting each event once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_real_eviction_under_allkeys_lru_is_rebuilt_and_applies_no_event_twice() {
    let redis =
        PrivateRedis::start(&["--appendonly", "no", "--maxmemory", "3mb", "--maxmemory-policy", "allkeys-lru"], false);
    let config = RedisConfig::from_url(&redis.url()).unwrap().prefix("t:").unwrap().accept_eviction(true);
    let views = RedisViewStore::connect_with(config).await.unwrap();
    assert_eq!(views.eviction_policy(), EvictionPolicy::Evicting("allkeys-lru".into()));
    let events = MemoryEventStore::new();
    append(&events, 0, 11).await;
    let projector = Projector::new(events.clone(), views.clone())
        .with_retry_delay(Duration::from_millis(20))
        .with_verify_interval(Duration::from_secs(3600));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(async move { projector.run(Tallies, async { stopped.await.unwrap_or(()) }).await });
    wait_for_counts(&views, 11, Duration::from_secs(20)).await;

    let mut raw = raw_connection(&redis.url()).await;
    let ours = keys_under(&mut raw, "t:").await;
    let filler = "x".repeat(16 * 1024);
    let mut written = 0u64;
    let left = loop {
        let _: () =
            redis::cmd("SET").arg(format!("filler:{written}")).arg(&filler).query_async(&mut raw).await.unwrap();
        written += 1;
        // Until a key of the generation itself is gone (its metadata, a view, a list...).
        let left = keys_under(&mut raw, "t:").await;
        if ours.iter().any(|k| k.contains("}:g") && !left.contains(k)) {
            break left;
        }
        assert!(written < 10_000, "nothing of ours was evicted");
    };
    let evicted: Vec<&String> = ours.iter().filter(|k| !left.contains(k)).collect();
    println!("{written} filler keys of 16 KiB evicted {} of our {} keys: {evicted:?}", evicted.len(), ours.len());
    let filler_keys: Vec<String> = keys_under(&mut raw, "filler:").await;
    for chunk in filler_keys.chunks(500) {
        let _: () = redis::cmd("UNLINK").arg(chunk).query_async(&mut raw).await.unwrap();
    }
    append(&events, 11, 10).await;
    wait_for_counts(&views, 21, Duration::from_secs(20)).await;
    stop.send(()).unwrap();
    running.await.unwrap().unwrap();
}

/// `connect` refuses a `maxmemory-policy` that may evict, unless accepted; accepts
/// `noeviction` and `volatile-*`; reads a renamed `CONFIG` as unknown (and connects); and
/// `status` notices a policy changed while running.
#[tokio::test]
async fn the_maxmemory_policy_is_checked_at_connect_and_while_running() {
    for (policy, safe) in [("noeviction", true), ("volatile-lru", true), ("allkeys-lru", false), ("allkeys-lfu", false)]
    {
        let redis = PrivateRedis::start(&["--appendonly", "no", "--maxmemory-policy", policy], false);
        match RedisViewStore::connect(&redis.url(), "t:").await {
            Ok(store) if safe => assert_eq!(store.eviction_policy(), EvictionPolicy::Safe(policy.into())),
            Err(eventloom_redis::Error::EvictionPolicy { policy: refused }) if !safe => {
                assert_eq!(refused, policy);
                let config = RedisConfig::from_url(&redis.url()).unwrap().accept_eviction(true);
                let store = RedisViewStore::connect_with(config).await.expect("accepted");
                assert_eq!(store.eviction_policy(), EvictionPolicy::Evicting(policy.into()));
            }
            other => panic!("{policy}: {other:?}"),
        }
    }

    let renamed = PrivateRedis::start(&["--appendonly", "no", "--rename-command", "CONFIG", ""], false);
    let store = RedisViewStore::connect(&renamed.url(), "t:").await.expect("an unknown policy is warned about");
    assert!(matches!(store.eviction_policy(), EvictionPolicy::Unknown(_)), "{:?}", store.eviction_policy());

    let redis = PrivateRedis::start(&["--appendonly", "no", "--maxmemory-policy", "noeviction"], false);
    let store = RedisViewStore::connect(&redis.url(), "t:").await.unwrap();
    let mut raw = raw_connection(&redis.url()).await;
    let _: () =
        redis::cmd("CONFIG").arg("SET").arg("maxmemory-policy").arg("allkeys-lru").query_async(&mut raw).await.unwrap();
    store.status("p").await.unwrap();
    assert!(store.eviction_policy().is_safe(), "read at most once a second");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    store.status("p").await.unwrap();
    assert_eq!(store.eviction_policy(), EvictionPolicy::Evicting("allkeys-lru".into()));
}

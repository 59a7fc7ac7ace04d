//! The conformance suite every [`ViewStore`] runs.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! eventloom_core::testing::view_store::run(|| async { eventloom_core::memory::MemoryViewStore::default() }).await;
//! # });
//! ```

use super::MustWrite;
use crate::store::{IndexedView, Refusal};
use std::future::Future;

use crate::{
    DeadLetter, Error, IndexEntry, IndexKey, ListCursor, Position, StreamId, ViewCommit, ViewStore, ViewWrite,
};

fn at(n: u64) -> Position {
    Position::new(n, n)
}

fn commit(
    generation: u64,
    expected: Option<u64>,
    checkpoint: u64,
    token: u64,
    views: &[(&str, Option<&str>)],
) -> ViewCommit {
    ViewCommit {
        generation,
        expected: expected.map(at),
        checkpoint: at(checkpoint),
        fencing_token: token,
        views: views
            .iter()
            .map(|(id, v)| match v {
                Some(json) => ViewWrite::set(*id, *json),
                None => ViewWrite::delete(*id),
            })
            .collect(),
        dead_letters: Vec::new(),
        resolved: Vec::new(),
    }
}

fn ids(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

/// A live generation for projection `p`, with token `token`; returns its id.
async fn live<S: ViewStore>(store: &S, projection: &str, token: u64) -> u64 {
    let generation = store.begin_generation(projection, 1, token).await.must("begin");
    store.go_live(projection, generation.id, token).await.must("go live");
    generation.id
}

/// Runs every case, each on a fresh store from `make`.
pub async fn run<S, F, Fut>(make: F)
where
    S: ViewStore + Clone,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    generations(make().await).await;
    rebuild_behind_live_views(make().await).await;
    commit_and_load(make().await).await;
    checkpoint_compare_and_set(make().await).await;
    fencing(make().await).await;
    concurrent_commits(make().await).await;
    hostile_names(make().await).await;
    dead_letters(make().await).await;
    indexes(make().await).await;
    paging(make().await).await;
    bad_writes(make().await).await;
    switching(make().await).await;
    list_corners(make().await).await;
    answers_like_the_memory_store(make().await).await;
    stops(make().await).await;
    ranges(make().await).await;
    generation_queries(make().await).await;
    generation_queries_select_like_list(make().await).await;
    projection_names(make().await).await;
    removing_dead_letters(make().await).await;
    resolving_dead_letters(make().await).await;
}

/// A recorded stop is reported by `status` until cleared, per projection, with its kind,
/// position, reason, generation and checkpoint; recording is fenced like a commit; once the
/// generation's checkpoint moves past the stop's, the stop no longer holds (`active_stop`).
pub async fn stops<S: ViewStore>(store: S) {
    use crate::{ProjectionStop, StopKind};
    assert_eq!(store.status("p").await.expect("status").stopped, None);
    let g = live(&store, "p", 3).await;
    store.commit("p", commit(g, None, 1, 3, &[("a", Some("1"))])).await.must("commit");
    let failed = ProjectionStop::new(StopKind::Failed, Some(at(7)), "apply failed: \"x\" ü\u{0}").at(g, Some(at(1)));
    store.record_stop("p", Some(&failed), 3).await.must("record");
    let status = store.status("p").await.expect("status");
    let stopped = status.stopped.clone().expect("a stop");
    assert_eq!((stopped.kind, stopped.position), (StopKind::Failed, Some(at(7))));
    assert_eq!((stopped.generation, stopped.checkpoint), (g, Some(at(1))));
    assert!(stopped.reason.starts_with("apply failed: \"x\" ü"), "{:?}", stopped.reason);
    assert!(status.active_stop().is_some(), "the generation is still at the stop's checkpoint");
    assert_eq!(store.status("q").await.expect("status").stopped, None, "per projection");
    match store.record_stop("p", None, 2).await {
        Ok(Err(Refusal::Fenced { token: 2, highest: 3, .. })) => {}
        other => panic!("an older token must be fenced, got {other:?}"),
    }
    store.commit("p", commit(g, Some(1), 2, 3, &[])).await.must("a commit past the stop");
    let status = store.status("p").await.expect("status");
    assert!(status.stopped.is_some() && status.active_stop().is_none(), "kept, but written past: stale");
    let newer = ProjectionStop::new(StopKind::NeedsNewerRelease, None, "v2").at(g, Some(at(2)));
    store.record_stop("p", Some(&newer), 3).await.must("record again");
    let status = store.status("p").await.expect("status");
    assert_eq!(status.active_stop(), Some(&newer));
    store.record_stop("p", None, 4).await.must("clear");
    assert_eq!(store.status("p").await.expect("status").stopped, None);
    match store.commit("p", commit(g, Some(2), 3, 3, &[])).await {
        Ok(Err(Refusal::Fenced { highest: 4, .. })) => {}
        other => panic!("a newer token recorded with a stop fences commits, got {other:?}"),
    }
}

/// Nothing is live before a first generation goes live; generation ids grow; a write into a
/// generation that is neither live nor being built (a store that lost its data) is refused.
pub async fn generations<S: ViewStore>(store: S) {
    let status = store.status("p").await.expect("status");
    assert_eq!((status.live, status.building), (None, None));
    assert!(matches!(store.read_views("p", &ids(&["a"])).await, Err(Error::NotBuilt { .. })));
    assert!(matches!(store.count("p", &[IndexKey::new("s", "x")]).await, Err(Error::NotBuilt { .. })));
    assert!(matches!(
        store.list("p", &IndexKey::new("s", "x"), &crate::OrderRange::all(), None, 10).await,
        Err(Error::NotBuilt { .. })
    ));
    assert!(store.dead_letters("p").await.expect("dead letters").is_empty());

    let first = store.begin_generation("p", 3, 0).await.must("begin");
    assert_eq!((first.version, first.checkpoint), (3, None));
    let status = store.status("p").await.expect("status");
    assert_eq!((status.live, status.building), (None, Some(first)));
    // A second build replaces the first, which can no longer be written.
    let second = store.begin_generation("p", 3, 0).await.must("begin again");
    assert!(second.id > first.id);
    assert!(matches!(
        store.commit("p", commit(first.id, None, 1, 0, &[("a", Some("1"))])).await,
        Ok(Err(Refusal::GenerationGone { generation, .. })) if generation == first.id
    ));
    assert!(matches!(store.go_live("p", first.id, 0).await, Ok(Err(Refusal::GenerationGone { .. }))));
    store.commit("p", commit(second.id, None, 1, 0, &[("a", Some("1"))])).await.must("commit");
    assert!(matches!(store.read_views("p", &ids(&["a"])).await, Err(Error::NotBuilt { .. })), "not live yet");
    store.go_live("p", second.id, 0).await.must("go live");
    store.go_live("p", second.id, 0).await.must("going live twice changes nothing");
    let status = store.status("p").await.expect("status");
    assert_eq!(status.building, None);
    assert_eq!(status.live.map(|g| (g.id, g.version, g.checkpoint)), Some((second.id, 3, Some(at(1)))));
    assert_eq!(status.checkpoint(), Some(at(1)));
    assert_eq!(store.read_views("p", &ids(&["a", "b"])).await.expect("read"), vec![Some("1".into()), None]);
    assert!(matches!(
        store.commit("p", commit(second.id + 1000, Some(1), 2, 0, &[])).await,
        Ok(Err(Refusal::GenerationGone { .. }))
    ));
    let third = store.begin_generation("p", 4, 0).await.must("begin");
    assert!(third.id > second.id, "ids grow past the live generation too");
    assert_eq!(store.status("other").await.expect("status").live, None, "projections are apart");
}

/// A rebuild fills a new generation while queries read the live one, and switches at once.
pub async fn rebuild_behind_live_views<S: ViewStore>(store: S) {
    let old = live(&store, "p", 0).await;
    store.commit("p", commit(old, None, 5, 0, &[("a", Some("\"old a\"")), ("b", Some("\"old b\""))])).await.must("old");
    let new = store.begin_generation("p", 2, 0).await.must("begin");
    assert_eq!(store.load_views("p", new.id, &ids(&["a"])).await.expect("load"), vec![None], "a new one starts empty");
    store.commit("p", commit(new.id, None, 2, 0, &[("a", Some("\"new a\""))])).await.must("build");
    assert_eq!(
        store.read_views("p", &ids(&["a", "b"])).await.expect("read"),
        vec![Some("\"old a\"".into()), Some("\"old b\"".into())],
        "queries read the live generation while another is built"
    );
    store
        .commit("p", commit(old, Some(5), 6, 0, &[("b", Some("\"old b2\""))]))
        .await
        .must("the live one still takes writes");
    store.commit("p", commit(new.id, Some(2), 6, 0, &[])).await.must("the build catches up");
    store.go_live("p", new.id, 0).await.must("switch");
    assert_eq!(store.read_views("p", &ids(&["a", "b"])).await.expect("read"), vec![Some("\"new a\"".into()), None]);
    assert_eq!(store.status("p").await.expect("status").checkpoint(), Some(at(6)));
    assert!(matches!(
        store.commit("p", commit(old, Some(6), 7, 0, &[])).await,
        Ok(Err(Refusal::GenerationGone { .. }))
    ));
    assert_eq!(
        store.load_views("p", old, &ids(&["a", "b"])).await.expect("load"),
        vec![None, None],
        "the old one is dropped"
    );
}

/// Views and checkpoint written together, read back by id, deleted by `None`.
pub async fn commit_and_load<S: ViewStore>(store: S) {
    let g = live(&store, "p", 0).await;
    assert_eq!(store.status("p").await.expect("status").checkpoint(), None);
    assert_eq!(store.load_views("p", g, &ids(&["a"])).await.expect("load"), vec![None]);
    store.commit("p", commit(g, None, 1, 0, &[("a", Some(r#"{"n":1}"#)), ("b'; --", Some("2"))])).await.must("commit");
    assert_eq!(store.status("p").await.expect("status").checkpoint(), Some(at(1)));
    let loaded = store.load_views("p", g, &ids(&["b'; --", "missing", "a"])).await.expect("load");
    assert_eq!(loaded[1], None);
    assert_eq!(loaded[0].as_deref(), Some("2"));
    let a: serde_json::Value = serde_json::from_str(loaded[2].as_deref().expect("a")).expect("json");
    assert_eq!(a, serde_json::json!({"n": 1}));
    assert_eq!(store.read_views("p", &ids(&["b'; --", "missing", "a"])).await.expect("read"), loaded);
    store.commit("p", commit(g, Some(1), 2, 0, &[("a", None)])).await.must("delete");
    assert_eq!(store.load_views("p", g, &ids(&["a"])).await.expect("load"), vec![None]);
    assert_eq!(store.read_views("p", &[]).await.expect("read nothing"), Vec::<Option<String>>::new());
    let other = live(&store, "other", 0).await;
    assert_eq!(store.read_views("other", &ids(&["b'; --"])).await.expect("read"), vec![None], "projections are apart");
    assert_eq!(store.load_views("other", other, &ids(&["b'; --"])).await.expect("load"), vec![None]);
}

/// A commit whose expected checkpoint is stale (a replay after a crash) writes nothing.
pub async fn checkpoint_compare_and_set<S: ViewStore>(store: S) {
    let g = live(&store, "p", 0).await;
    store.commit("p", commit(g, None, 5, 0, &[("a", Some("1"))])).await.must("first");
    for stale in [None, Some(4), Some(6)] {
        match store.commit("p", commit(g, stale, 6, 0, &[("a", Some("2")), ("b", Some("2"))])).await {
            Ok(Err(Refusal::CheckpointMoved { actual, .. })) => assert_eq!(actual, Some(at(5))),
            other => panic!("expected CheckpointMoved, got {other:?}"),
        }
    }
    assert_eq!(store.read_views("p", &ids(&["a", "b"])).await.expect("read"), vec![Some("1".into()), None]);
    assert_eq!(store.status("p").await.expect("status").checkpoint(), Some(at(5)));
}

/// A write carrying an older fencing token than one seen is refused and writes nothing.
pub async fn fencing<S: ViewStore>(store: S) {
    let g = live(&store, "p", 5).await;
    store.commit("p", commit(g, None, 1, 5, &[("a", Some("1"))])).await.must("token 5");
    match store.commit("p", commit(g, Some(1), 2, 3, &[("a", Some("\"stale\""))])).await {
        Ok(Err(Refusal::Fenced { token: 3, highest: 5, .. })) => {}
        other => panic!("expected Fenced, got {other:?}"),
    }
    assert_eq!(store.read_views("p", &ids(&["a"])).await.expect("read"), vec![Some("1".into())]);
    store.commit("p", commit(g, Some(1), 2, 5, &[("a", Some("2"))])).await.must("same token");
    store.commit("p", commit(g, Some(2), 3, 6, &[("a", Some("3"))])).await.must("newer token");
    assert!(matches!(
        store.commit("p", commit(g, Some(3), 4, 5, &[])).await,
        Ok(Err(Refusal::Fenced { token: 5, highest: 6, .. }))
    ));
    assert!(
        matches!(store.begin_generation("p", 1, 5).await, Ok(Err(Refusal::Fenced { .. }))),
        "a stale rebuild is refused"
    );
    let next = store.begin_generation("p", 1, 7).await.must("a rebuild with a newer token");
    assert!(matches!(store.go_live("p", next.id, 6).await, Ok(Err(Refusal::Fenced { .. }))), "so is a stale switch");
    assert!(
        matches!(
            store.commit("p", commit(g, Some(3), 4, 6, &[])).await,
            Ok(Err(Refusal::Fenced { token: 6, highest: 7, .. }))
        ),
        "a rebuild raises the fence"
    );
    assert_eq!(store.status("p").await.expect("status").checkpoint(), Some(at(3)));
    assert_eq!(store.read_views("p", &ids(&["a"])).await.expect("read"), vec![Some("3".into())]);
}

/// Eight commits from the same checkpoint at once: exactly one applies.
pub async fn concurrent_commits<S: ViewStore + Clone>(store: S) {
    let g = live(&store, "p", 0).await;
    store.commit("p", commit(g, None, 1, 0, &[])).await.must("start");
    let mut tasks = Vec::new();
    for i in 0..8u64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let value = i.to_string();
            let mut batch = commit(g, Some(1), 2 + i, 0, &[("a", Some(&value))]);
            batch.views[0].join = vec![IndexEntry::new("winner", "yes")];
            store.commit("p", batch).await
        }));
    }
    let mut winners = Vec::new();
    for (i, task) in tasks.into_iter().enumerate() {
        match task.await.expect("task") {
            Ok(Ok(())) => winners.push(i),
            Ok(Err(Refusal::CheckpointMoved { .. })) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(winners.len(), 1);
    let value = winners[0].to_string();
    assert_eq!(store.read_views("p", &ids(&["a"])).await.expect("read"), vec![Some(value)]);
    assert_eq!(store.count("p", &[IndexKey::new("winner", "yes")]).await.expect("count"), vec![1]);
}

/// View ids, projection names and index values with quotes, key-syntax characters and Unicode
/// stay apart and round-trip exactly.
pub async fn hostile_names<S: ViewStore>(store: S) {
    let names = ["{tag}", "a:b", "*", "p'; DROP TABLE views; --", "ünï ✓", "a=b", "%7B"];
    let json = |name: &str| serde_json::to_string(name).expect("a string encodes");
    for (i, name) in names.iter().enumerate() {
        let g = live(&store, name, 0).await;
        let value = json(name);
        let views = names
            .iter()
            .map(|id| ViewWrite::set(*id, value.as_str()).joining(vec![IndexEntry::new(*name, *id).ordered_by(*id)]))
            .collect();
        let batch = ViewCommit { views, ..commit(g, None, i as u64 + 1, 0, &[]) };
        store.commit(name, batch).await.must("commit");
    }
    for (i, name) in names.iter().enumerate() {
        assert_eq!(store.status(name).await.expect("status").checkpoint(), Some(at(i as u64 + 1)));
        let loaded = store.read_views(name, &ids(&names)).await.expect("read");
        for view in &loaded {
            let value: String = serde_json::from_str(view.as_deref().expect("a view")).expect("JSON");
            assert_eq!(value, *name);
        }
        for id in names {
            let page =
                store.list(name, &IndexKey::new(*name, id), &crate::OrderRange::all(), None, 10).await.expect("list");
            assert_eq!(page.views, vec![(id.to_owned(), json(name))], "index {name}={id}");
        }
    }
    assert_eq!(store.read_views("*", &ids(&["a*", "?"])).await.expect("read"), vec![None, None], "no pattern matching");
    assert_eq!(store.count("*", &[IndexKey::new("*", "*"), IndexKey::new("*", "?")]).await.expect("count"), vec![1, 0]);
}

/// Dead letters are written with their batch, in order; a refused batch adds none; they belong
/// to a generation.
pub async fn dead_letters<S: ViewStore>(store: S) {
    let letter = |n: u64| DeadLetter {
        position: at(n),
        stream: StreamId::new("conformance", format!("s'{n}")).expect("id"),
        version: n,
        event_type: "Broken".into(),
        reason: format!("reason ü {n}"),
    };
    let g = live(&store, "p", 0).await;
    assert!(store.dead_letters("p").await.expect("dead letters").is_empty());
    let mut first = commit(g, None, 2, 0, &[("a", Some("1"))]);
    first.dead_letters = vec![letter(1), letter(2)];
    store.commit("p", first).await.must("commit");
    let mut stale = commit(g, None, 3, 0, &[]);
    stale.dead_letters = vec![letter(3)];
    assert!(matches!(store.commit("p", stale).await, Ok(Err(Refusal::CheckpointMoved { .. }))));
    let mut second = commit(g, Some(2), 4, 0, &[]);
    second.dead_letters = vec![letter(4)];
    store.commit("p", second).await.must("commit");
    assert_eq!(store.dead_letters("p").await.expect("dead letters"), vec![letter(1), letter(2), letter(4)]);
    live(&store, "q", 0).await;
    assert!(store.dead_letters("q").await.expect("dead letters").is_empty(), "per projection");
    let next = store.begin_generation("p", 1, 0).await.must("begin");
    store.commit("p", commit(next.id, None, 4, 0, &[])).await.must("build");
    store.go_live("p", next.id, 0).await.must("live");
    assert!(store.dead_letters("p").await.expect("dead letters").is_empty(), "per generation");
}

/// Index entries join and leave with their view, atomically; lists are ordered by sort key then
/// id; counts are exact.
pub async fn indexes<S: ViewStore>(store: S) {
    let g = live(&store, "tasks", 0).await;
    let open = IndexKey::new("status", "open");
    let done = IndexKey::new("status", "done");
    let entry = |status: &str, order: &str| IndexEntry::new("status", status).ordered_by(order);
    let writes = vec![
        ViewWrite::set("t3", "3").joining(vec![entry("open", "b")]),
        ViewWrite::set("t1", "1").joining(vec![entry("open", "a")]),
        ViewWrite::set("t2", "2").joining(vec![entry("open", "b"), IndexEntry::new("assignee", "ann")]),
    ];
    store.commit("tasks", ViewCommit { views: writes, ..commit(g, None, 1, 0, &[]) }).await.must("commit");
    let page = store.list("tasks", &open, &crate::OrderRange::all(), None, 10).await.expect("list");
    let order: Vec<&str> = page.views.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(order, ["t1", "t2", "t3"], "by sort key, then id");
    assert_eq!(page.next, None);
    assert_eq!(page.views[0].1, "1");
    assert_eq!(
        store.count("tasks", &[open.clone(), done.clone(), IndexKey::new("assignee", "ann")]).await.expect("count"),
        vec![3, 0, 1]
    );

    // t2 is done: it leaves "open" and joins "done"; t3 is deleted; t1 is unchanged.
    let writes = vec![
        ViewWrite::set("t2", "22").leaving(vec![entry("open", "b")]).joining(vec![entry("done", "b")]),
        ViewWrite::delete("t3").leaving(vec![entry("open", "b")]),
    ];
    store.commit("tasks", ViewCommit { views: writes, ..commit(g, Some(1), 2, 0, &[]) }).await.must("commit");
    let page = store.list("tasks", &open, &crate::OrderRange::all(), None, 10).await.expect("list");
    assert_eq!(page.views, vec![("t1".to_owned(), "1".to_owned())]);
    let page = store.list("tasks", &done, &crate::OrderRange::all(), None, 10).await.expect("list");
    assert_eq!(page.views, vec![("t2".to_owned(), "22".to_owned())]);
    assert_eq!(store.count("tasks", &[open.clone(), done.clone()]).await.expect("count"), vec![1, 1]);
    assert_eq!(
        store.list("tasks", &IndexKey::new("status", "nope"), &crate::OrderRange::all(), None, 10).await.expect("list"),
        crate::ViewPage::default()
    );

    // A refused batch changes no index.
    let writes = vec![ViewWrite::set("t1", "9").leaving(vec![entry("open", "a")]).joining(vec![entry("done", "a")])];
    let refused = store.commit("tasks", ViewCommit { views: writes, ..commit(g, Some(1), 3, 0, &[]) }).await;
    assert!(matches!(refused, Ok(Err(Refusal::CheckpointMoved { .. }))), "{refused:?}");
    assert_eq!(store.count("tasks", &[open, done]).await.expect("count"), vec![1, 1]);

    // A new generation's indexes are its own.
    let next = store.begin_generation("tasks", 2, 0).await.must("begin");
    store.commit("tasks", commit(next.id, None, 2, 0, &[])).await.must("build");
    store.go_live("tasks", next.id, 0).await.must("live");
    assert_eq!(store.count("tasks", &[IndexKey::new("status", "open")]).await.expect("count"), vec![0]);
}

/// Paging walks a list once, in order, whatever the page size; cursors are strict.
pub async fn paging<S: ViewStore>(store: S) {
    let g = live(&store, "p", 0).await;
    let all = IndexKey::new("all", "");
    let mut writes = Vec::new();
    let mut expected = Vec::new();
    for i in 0..25u32 {
        // Some ties on the sort key, broken by id.
        let order = format!("{:03}", i / 3);
        let id = format!("v{:02}'\"/{}", 24 - i, if i % 2 == 0 { "ü" } else { "" });
        expected.push((order.clone(), id.clone()));
        writes.push(ViewWrite::set(id, i.to_string()).joining(vec![IndexEntry { key: all.clone(), order }]));
    }
    expected.sort();
    store.commit("p", ViewCommit { views: writes, ..commit(g, None, 1, 0, &[]) }).await.must("commit");
    for limit in [1, 2, 7, 25, 100] {
        let mut seen = Vec::new();
        let mut after: Option<ListCursor> = None;
        loop {
            let page = store.list("p", &all, &crate::OrderRange::all(), after.as_ref(), limit).await.expect("list");
            assert!(page.views.len() <= limit);
            seen.extend(page.views.into_iter().map(|(id, _)| id));
            match page.next {
                Some(next) => {
                    let text = next.to_string();
                    after = Some(text.parse().expect("a cursor round-trips"));
                }
                None => break,
            }
        }
        let ids: Vec<String> = expected.iter().map(|(_, id)| id.clone()).collect();
        assert_eq!(seen, ids, "limit {limit}");
    }
    let cursor = ListCursor { order: expected[9].0.clone(), id: expected[9].1.clone() };
    let page = store.list("p", &all, &crate::OrderRange::all(), Some(&cursor), 2).await.expect("list");
    assert_eq!(
        page.views.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>(),
        vec![expected[10].1.clone(), expected[11].1.clone()]
    );
    let past = ListCursor { order: "999".into(), id: String::new() };
    assert_eq!(
        store.list("p", &all, &crate::OrderRange::all(), Some(&past), 5).await.expect("list"),
        crate::ViewPage::default()
    );
}

/// Writes a store must refuse, whole, before writing anything.
pub async fn bad_writes<S: ViewStore>(store: S) {
    let g = live(&store, "p", 0).await;
    let bad = [
        vec![ViewWrite::set("ok", "1"), ViewWrite::set("a\0b", "1")],
        vec![ViewWrite::set("ok", "1").joining(vec![IndexEntry::new("s", "x\0")])],
        vec![
            ViewWrite::set("ok", "1")
                .joining(vec![IndexEntry::new("s", "x").ordered_by("o".repeat(IndexEntry::MAX_ORDER_LEN + 1))]),
        ],
        vec![ViewWrite::set("ok", "1"), ViewWrite::set("ok", "2")],
        vec![ViewWrite::set("i".repeat(StreamId::MAX_ID_LEN + 1), "1")],
        vec![ViewWrite::set("ok", "1").joining(vec![IndexEntry::new("s", "v".repeat(IndexEntry::MAX_VALUE_LEN + 1))])],
        vec![ViewWrite::set("ok", "1").joining(vec![IndexEntry::new("n".repeat(IndexEntry::MAX_NAME_LEN + 1), "v")])],
    ];
    for views in bad {
        assert!(matches!(
            store.commit("p", ViewCommit { views, ..commit(g, None, 1, 0, &[]) }).await,
            Err(Error::InvalidId { .. })
        ));
    }
    assert_eq!(store.read_views("p", &ids(&["ok"])).await.expect("read"), vec![None]);
    assert_eq!(store.status("p").await.expect("status").checkpoint(), None);
}

/// Going live: the built generation's checkpoint and dead letters come along; a build that is
/// behind the live views is refused until it catches up; a stale token is refused even on the
/// live generation.
pub async fn switching<S: ViewStore>(store: S) {
    let old = live(&store, "p", 1).await;
    store.commit("p", commit(old, None, 5, 1, &[("a", Some("\"old\""))])).await.must("old");
    let new = store.begin_generation("p", 1, 1).await.must("begin");
    let mut first = commit(new.id, None, 3, 1, &[("a", Some("\"new\""))]);
    first.dead_letters = vec![DeadLetter {
        position: at(2),
        stream: StreamId::new("conformance", "s").expect("id"),
        version: 2,
        event_type: "Broken".into(),
        reason: "a reason".into(),
    }];
    store.commit("p", first).await.must("build");
    let status = store.status("p").await.expect("status");
    assert_eq!(status.building.map(|g| (g.id, g.checkpoint)), Some((new.id, Some(at(3)))), "the build's checkpoint");
    assert_eq!(status.checkpoint(), Some(at(5)));
    match store.go_live("p", new.id, 1).await {
        Ok(Err(Refusal::CheckpointMoved { expected, actual, .. })) => {
            assert_eq!((expected, actual), (Some(at(3)), Some(at(5))))
        }
        other => panic!("a build behind the live views must not go live: {other:?}"),
    }
    assert_eq!(store.read_views("p", &ids(&["a"])).await.expect("read"), vec![Some("\"old\"".into())]);
    store.commit("p", commit(new.id, Some(3), 5, 1, &[])).await.must("catch up");
    store.go_live("p", new.id, 1).await.must("caught up: live");
    assert_eq!(store.read_views("p", &ids(&["a"])).await.expect("read"), vec![Some("\"new\"".into())]);
    assert_eq!(store.dead_letters("p").await.expect("dead letters").len(), 1, "the build's dead letters come along");
    store.commit("p", commit(new.id, Some(5), 6, 2, &[])).await.must("token 2");
    assert!(
        matches!(store.go_live("p", new.id, 1).await, Ok(Err(Refusal::Fenced { .. }))),
        "a stale token, even on the live one"
    );
}

/// Listing corners: byte-wise order, an exactly full last page, a view that moves in its list,
/// a cursor whose entry is gone, views holding any JSON string.
pub async fn list_corners<S: ViewStore>(store: S) {
    let g = live(&store, "p", 0).await;
    let all = IndexKey::new("all", "");
    let at_order = |order: &str| IndexEntry { key: all.clone(), order: order.to_owned() };
    // Byte-wise, not by locale: "B" < "_" < "a" < "b" < "É"; ties by id, byte-wise too.
    let writes = vec![
        ViewWrite::set("x", "1").joining(vec![at_order("a")]),
        ViewWrite::set("y", "2").joining(vec![at_order("É")]),
        ViewWrite::set("Z", "3").joining(vec![at_order("b")]),
        ViewWrite::set("z", "4").joining(vec![at_order("B")]),
        ViewWrite::set("é", "5").joining(vec![at_order("_")]),
        ViewWrite::set("A", "6").joining(vec![at_order("_")]),
        ViewWrite::set("nul", r#""a\u0000b""#).joining(vec![at_order("c")]),
    ];
    store.commit("p", ViewCommit { views: writes, ..commit(g, None, 1, 0, &[]) }).await.must("commit");
    let order = |page: &crate::ViewPage| page.views.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>();
    let page = store.list("p", &all, &crate::OrderRange::all(), None, 7).await.expect("list");
    assert_eq!(order(&page), ["z", "A", "é", "x", "Z", "nul", "y"]);
    assert_eq!(page.next, None, "an exactly full last page says so");
    let json: String = serde_json::from_str(&page.views[5].1).expect("JSON");
    assert_eq!(json, "a\0b", "a view may hold any JSON string");
    assert_eq!(
        store.list("p", &all, &crate::OrderRange::all(), None, 0).await.expect("list"),
        crate::ViewPage::default(),
        "limit 0"
    );
    assert_eq!(store.count("p", &[]).await.expect("count nothing"), Vec::<u64>::new());

    let first = store.list("p", &all, &crate::OrderRange::all(), None, 3).await.expect("list");
    let cursor = first.next.expect("more");
    assert_eq!(cursor.id, "é");
    // The entry under the cursor moves to the end, and x is deleted: the next page starts after
    // the cursor's place all the same.
    let writes = vec![
        ViewWrite::set("é", "5").leaving(vec![at_order("_")]).joining(vec![at_order("zz")]),
        ViewWrite::delete("x").leaving(vec![at_order("a")]),
    ];
    store.commit("p", ViewCommit { views: writes, ..commit(g, Some(1), 2, 0, &[]) }).await.must("commit");
    let rest = store.list("p", &all, &crate::OrderRange::all(), Some(&cursor), 10).await.expect("list");
    assert_eq!(order(&rest), ["Z", "nul", "é", "y"], "\"zz\" sorts before \"É\" byte-wise");
    assert_eq!(store.count("p", &[all]).await.expect("count"), vec![6]);
}

/// Queries naming what no commit can store (a NUL byte in a view id, an index name or value, a
/// cursor), a view holding `\u0000`, and switches refused while the build is behind the live
/// views (checkpoints past 2^53, where doubles lose precision): the store answers each exactly as
/// the in-memory reference store does.
pub async fn answers_like_the_memory_store<S: ViewStore>(store: S) {
    let reference = nul_and_switch_script(&crate::MemoryViewStore::default()).await;
    let answers = nul_and_switch_script(&store).await;
    for (expected, answer) in reference.iter().zip(&answers) {
        assert_eq!(answer, expected);
    }
    assert_eq!(answers.len(), reference.len());
}

async fn nul_and_switch_script(store: &dyn ViewStore) -> Vec<String> {
    let mut out = Vec::new();
    let nul_keys = [IndexKey::new("k\0", "v"), IndexKey::new("k", "v\0"), IndexKey::new("\0", "")];
    out.push(format!("{:?}", store.read_views("p", &["a\0".into()]).await));
    out.push(format!("{:?}", store.count("p", &nul_keys).await));
    out.push(format!("{:?}", store.list("p", &nul_keys[0], &crate::OrderRange::all(), None, 5).await));
    let g = store.begin_generation("p", 1, 1).await.must("begin").id;
    store.go_live("p", g, 1).await.must("a write the script expects to succeed");
    let key = IndexKey::new("k", "v");
    let entry = |order: &str| IndexEntry::new("k", "v").ordered_by(order);
    let writes = vec![
        ViewWrite::set("a", "1").joining(vec![entry("o")]),
        ViewWrite::set("", "2").joining(vec![entry("o")]),
        ViewWrite::set("b", r#""x\u0000y""#).joining(vec![entry("o")]),
        ViewWrite::set("c", r#"{"z": 1,"a":2}"#).joining(vec![entry("o\u{1}")]),
        ViewWrite::set("d", "4").joining(vec![entry("p"), entry("")]),
    ];
    let tx = (1u64 << 53) + 1;
    let commit =
        |generation: u64, expected: Option<Position>, checkpoint: Position, views: Vec<ViewWrite>| ViewCommit {
            generation,
            expected,
            checkpoint,
            fencing_token: 1,
            views,
            dead_letters: Vec::new(),
            resolved: Vec::new(),
        };
    store
        .commit("p", commit(g, None, Position::new(tx, 1), writes))
        .await
        .must("a write the script expects to succeed");
    for ids in [vec!["a\0", "a", "\0", "b"], vec!["\0"], vec!["", "b\0"]] {
        let ids: Vec<String> = ids.into_iter().map(String::from).collect();
        out.push(format!("{:?}", store.read_views("p", &ids).await));
        out.push(format!("{:?}", store.load_views("p", g, &ids).await));
    }
    let mut keys = nul_keys.to_vec();
    keys.push(key.clone());
    out.push(format!("{:?}", store.count("p", &keys).await));
    for k in &nul_keys {
        out.push(format!("{:?}", store.list("p", k, &crate::OrderRange::all(), None, 5).await));
    }
    let cursors = [
        ("o\0z", ""),
        ("o\0", "zz"),
        ("o", "a\0"),
        ("o", "\0"),
        ("o", "b\0"),
        ("\0", "x"),
        ("", "\0"),
        ("", "d\0"),
        ("p\0", ""),
        ("o\u{1}", "c\0"),
    ];
    for (order, id) in cursors {
        let cursor = ListCursor { order: order.into(), id: id.into() };
        for limit in [1, 10] {
            out.push(format!(
                "{order:?} {id:?} {limit}: {:?}",
                store.list("p", &key, &crate::OrderRange::all(), Some(&cursor), limit).await
            ));
        }
    }

    // A build behind the live checkpoint is refused until it catches up: (2^53, 5) is
    // behind (2^53 + 1, 1), though the two transaction ids are equal as doubles.
    let next = store.begin_generation("p", 2, 1).await.must("begin").id;
    out.push(format!("{:?}", store.go_live("p", next, 1).await));
    store
        .commit("p", commit(next, None, Position::new(tx - 1, 5), Vec::new()))
        .await
        .must("a write the script expects to succeed");
    out.push(format!("{:?}", store.go_live("p", next, 1).await));
    out.push(format!("{:?}", store.go_live("p", next, 0).await));
    // Ids are the store's own (only "newer is higher" is promised): compare the outcome alone.
    out.push(format!(
        "{:?}",
        store
            .go_live("p", next + 7, 1)
            .await
            .map(|w| w.map_err(|r| matches!(r, Refusal::GenerationGone { generation } if generation == next + 7)))
    ));
    store
        .commit("p", commit(next, Some(Position::new(tx - 1, 5)), Position::new(tx, 0), Vec::new()))
        .await
        .must("a write the script expects to succeed");
    out.push(format!("{:?}", store.go_live("p", next, 1).await));
    out.push(format!(
        "{:?}",
        store
            .status("p")
            .await
            .map(|s| (s.live.map(|l| l.checkpoint), s.building.map(|b| (b.id == next, b.version, b.checkpoint))))
    ));
    store
        .commit("p", commit(next, Some(Position::new(tx, 0)), Position::new(tx, 1), Vec::new()))
        .await
        .must("a write the script expects to succeed");
    out.push(format!("{:?}", store.go_live("p", next, 1).await));
    out.push(format!("{:?}", store.read_views("p", &["b".into(), "a".into()]).await));
    // A build of the same checkpoint goes live; so does one ahead of a live generation with
    // no checkpoint.
    let same = store.begin_generation("p", 3, 1).await.must("begin").id;
    store
        .commit("p", commit(same, None, Position::new(tx, 1), Vec::new()))
        .await
        .must("a write the script expects to succeed");
    out.push(format!("{:?}", store.go_live("p", same, 1).await));
    let q = store.begin_generation("q", 1, 0).await.must("begin").id;
    store.go_live("q", q, 0).await.must("a write the script expects to succeed");
    let empty = store.begin_generation("q", 1, 0).await.must("begin").id;
    out.push(format!("{:?}", store.go_live("q", empty, 0).await));
    out.push(format!("{:?}", store.status("q").await.map(|s| (s.live.map(|l| l.checkpoint), s.building))));
    out
}

/// A list answers a range of sort keys: every range of numbers (bounds included, excluded or
/// open) paged two views at a time lists exactly the views whose numbers lie in it, in order,
/// ties by id; string ranges likewise; an empty range lists nothing.
pub async fn ranges<S: ViewStore>(store: S) {
    use std::ops::Bound::{self, Excluded, Included, Unbounded};
    let g = live(&store, "stock", 0).await;
    let key = IndexKey::new("stock", "all");
    // Two views share the number 2, so ties by id show.
    let stock: Vec<(String, i64)> =
        [("a", -7), ("b", -1), ("c", 0), ("d", 2), ("e", 2), ("f", 9), ("g", 10), ("h", i64::MAX), ("i", i64::MIN)]
            .iter()
            .map(|(id, n)| ((*id).to_owned(), *n))
            .collect();
    let writes = stock
        .iter()
        .map(|(id, n)| {
            ViewWrite::set(id.clone(), n.to_string()).joining(vec![IndexEntry::new("stock", "all").ordered_by_int(*n)])
        })
        .collect();
    store.commit("stock", ViewCommit { views: writes, ..commit(g, None, 1, 0, &[]) }).await.must("commit");

    let mut sorted = stock.clone();
    sorted.sort_by(|(a, x), (b, y)| x.cmp(y).then(a.cmp(b)));
    let points = [i64::MIN, -1, 2, 10, i64::MAX];
    let mut bounds: Vec<Bound<i64>> = vec![Unbounded];
    bounds.extend(points.iter().flat_map(|p| [Included(*p), Excluded(*p)]));
    for from in &bounds {
        for to in &bounds {
            let range = crate::OrderRange::ints((*from, *to));
            let expected: Vec<&str> = sorted
                .iter()
                .filter(|(_, n)| std::ops::RangeBounds::contains(&(*from, *to), n))
                .map(|(id, _)| id.as_str())
                .collect();
            let mut listed = Vec::new();
            let mut after: Option<ListCursor> = None;
            for _ in 0..10 {
                let page = store.list("stock", &key, &range, after.as_ref(), 2).await.expect("list a range");
                listed.extend(page.views.iter().map(|(id, _)| id.clone()));
                after = page.next;
                if after.is_none() {
                    break;
                }
            }
            assert!(after.is_none(), "paging {from:?}..{to:?} never ended");
            assert_eq!(listed, expected, "the views of {from:?}..{to:?}");
        }
    }

    // Strings, and counts untouched by ranges.
    let g = live(&store, "titles", 0).await;
    let titles = ["apple", "banana", "m", "mango", "melon", "zucchini"];
    let writes = titles
        .iter()
        .map(|t| ViewWrite::set(*t, "0").joining(vec![IndexEntry::new("title", "all").ordered_by(*t)]))
        .collect();
    store.commit("titles", ViewCommit { views: writes, ..commit(g, None, 1, 0, &[]) }).await.must("commit");
    let key = IndexKey::new("title", "all");
    let list = |range: crate::OrderRange| {
        let (store, key) = (&store, &key);
        async move {
            let page = store.list("titles", key, &range, None, 10).await.expect("list a range");
            page.views.into_iter().map(|(id, _)| id).collect::<Vec<_>>()
        }
    };
    assert_eq!(list(crate::OrderRange::new("m"..)).await, ["m", "mango", "melon", "zucchini"]);
    assert_eq!(list(crate::OrderRange::new((Excluded("m"), Unbounded))).await, ["mango", "melon", "zucchini"]);
    assert_eq!(list(crate::OrderRange::new(.."m")).await, ["apple", "banana"]);
    assert_eq!(list(crate::OrderRange::new(..="m")).await, ["apple", "banana", "m"]);
    assert_eq!(list(crate::OrderRange::new("b".."n")).await, ["banana", "m", "mango", "melon"]);
    assert!(list(crate::OrderRange::new("n".."b")).await.is_empty(), "an empty range");
    assert_eq!(store.count("titles", std::slice::from_ref(&key)).await.expect("count"), vec![6]);
}

/// An entry of [`ViewStore::list_generation`]'s answer.
fn indexed(order: &str, id: &str, view: Option<&str>) -> IndexedView {
    IndexedView { order: order.to_owned(), id: id.to_owned(), view: view.map(str::to_owned) }
}

/// Every entry of a generation's list in `range`, paged `limit` at a time with the cursor of
/// each page's last entry.
async fn walk_generation<S: ViewStore>(
    store: &S,
    projection: &str,
    generation: u64,
    key: &IndexKey,
    range: &crate::OrderRange,
    limit: usize,
) -> Vec<IndexedView> {
    let mut seen: Vec<IndexedView> = Vec::new();
    for _ in 0..100 {
        let after = seen.last().map(IndexedView::cursor);
        let page = store
            .list_generation(projection, generation, key, range, after.as_ref(), limit)
            .await
            .expect("list a generation");
        assert!(page.len() <= limit, "{} entries asked, {} listed", limit, page.len());
        let full = page.len() == limit;
        seen.extend(page);
        if !full {
            return seen;
        }
    }
    panic!("paging generation {generation} of {projection} never ended");
}

/// [`list_generation`](ViewStore::list_generation) and
/// [`count_generation`](ViewStore::count_generation) read the generation they name, whether it
/// is being built (while `list` answers `NotBuilt`), live, or live while another is built: each
/// entry's sort key and id, in list order, with its view (`None` for a missing view, listed
/// all the same); counts of several lists in the order asked. A generation the store does not
/// hold — never begun, replaced by another build, dropped when a newer one went live, of
/// another projection — lists nothing and counts 0, never `NotBuilt`.
pub async fn generation_queries<S: ViewStore>(store: S) {
    let open = IndexKey::new("status", "open");
    let done = IndexKey::new("status", "done");
    let nope = IndexKey::new("status", "nope");
    let all = crate::OrderRange::all();
    let entry = |status: &str, order: &str| IndexEntry::new("status", status).ordered_by(order);
    let nothing = Vec::<IndexedView>::new();
    for generation in [0, 1, 2, u64::MAX] {
        let listed = store.list_generation("p", generation, &open, &all, None, 10).await.expect("list");
        assert_eq!(listed, nothing, "nothing stored: generation {generation} lists nothing");
        let counted = store.count_generation("p", generation, &[open.clone(), done.clone()]).await.expect("count");
        assert_eq!(counted, vec![0, 0], "nothing stored: generation {generation} counts 0");
    }

    // Being built: read by id while nothing is live.
    let first = store.begin_generation("p", 1, 0).await.must("begin").id;
    let writes = vec![
        ViewWrite::set("t3", "3").joining(vec![entry("open", "b")]),
        ViewWrite::set("t1", "1").joining(vec![entry("open", "a")]),
        ViewWrite::set("t2", r#"{"n": 2}"#).joining(vec![entry("open", "b"), entry("done", "z")]),
        // An entry whose view is missing.
        ViewWrite::delete("gone").joining(vec![entry("open", "c")]),
        ViewWrite::set("t0", "0").joining(vec![entry("open", "")]),
    ];
    store.commit("p", ViewCommit { views: writes, ..commit(first, None, 1, 0, &[]) }).await.must("build");
    assert!(matches!(store.list("p", &open, &all, None, 10).await, Err(Error::NotBuilt { .. })), "not live yet");
    let built = vec![
        indexed("", "t0", Some("0")),
        indexed("a", "t1", Some("1")),
        indexed("b", "t2", Some(r#"{"n": 2}"#)),
        indexed("b", "t3", Some("3")),
        indexed("c", "gone", None),
    ];
    assert_eq!(store.list_generation("p", first, &open, &all, None, 10).await.expect("list"), built, "a build");
    assert_eq!(
        store.count_generation("p", first, &[done.clone(), open.clone(), nope.clone()]).await.expect("count"),
        vec![1, 5, 0],
        "counts in the order asked, a missing view's entry counted"
    );
    assert_eq!(store.count_generation("p", first, &[]).await.expect("count nothing"), Vec::<u64>::new());
    assert_eq!(store.list_generation("p", first, &open, &all, None, 0).await.expect("list"), nothing, "limit 0");
    assert_eq!(store.list_generation("p", first, &nope, &all, None, 10).await.expect("list"), nothing, "no such list");
    assert_eq!(
        store.list_generation("q", first, &open, &all, None, 10).await.expect("list"),
        nothing,
        "projections apart"
    );
    assert_eq!(
        store.count_generation("q", first, std::slice::from_ref(&open)).await.expect("count"),
        vec![0],
        "projections apart"
    );
    for limit in [1, 2, 4, 5, 6] {
        assert_eq!(walk_generation(&store, "p", first, &open, &all, limit).await, built, "paged {limit} at a time");
    }

    // Ranges and cursors: the entries `list` would select.
    let list = |range: crate::OrderRange, after: Option<(&str, &str)>, limit: usize| {
        let (store, open) = (&store, &open);
        let cursor = after.map(|(order, id)| ListCursor { order: order.to_owned(), id: id.to_owned() });
        async move {
            let listed =
                store.list_generation("p", first, open, &range, cursor.as_ref(), limit).await.expect("list a range");
            listed.into_iter().map(|e| e.id).collect::<Vec<_>>()
        }
    };
    use std::ops::Bound::{Excluded, Unbounded};
    assert_eq!(list(crate::OrderRange::new("b".."c"), None, 10).await, ["t2", "t3"]);
    assert_eq!(list(crate::OrderRange::new("b"..="c"), None, 10).await, ["t2", "t3", "gone"]);
    assert_eq!(list(crate::OrderRange::new((Excluded("a"), Unbounded)), None, 10).await, ["t2", "t3", "gone"]);
    assert_eq!(list(crate::OrderRange::new(.."b"), None, 10).await, ["t0", "t1"]);
    assert_eq!(list(crate::OrderRange::new("a"..), None, 2).await, ["t1", "t2"], "a range and a limit");
    assert!(list(crate::OrderRange::new("c".."b"), None, 10).await.is_empty(), "an empty range");
    assert_eq!(list(all.clone(), Some(("b", "t2")), 10).await, ["t3", "gone"], "strictly after the cursor");
    assert_eq!(list(all.clone(), Some(("b", "t25")), 1).await, ["t3"], "after a cursor whose entry is not there");
    assert_eq!(list(all.clone(), Some(("b", "")), 10).await, ["t2", "t3", "gone"]);
    assert_eq!(list(all.clone(), Some(("b\0", "")), 10).await, ["gone"], "after every entry of sort key b");
    assert_eq!(list(all.clone(), Some(("b", "t2\0")), 10).await, ["t3", "gone"]);
    assert!(list(all.clone(), Some(("c", "gone")), 10).await.is_empty(), "after the last entry");
    assert_eq!(list(crate::OrderRange::new("b"..), Some(("a", "t1")), 10).await, ["t2", "t3", "gone"]);
    assert_eq!(list(crate::OrderRange::new("b"..), Some(("", "t0")), 2).await, ["t2", "t3"], "the range's start");
    assert_eq!(list(crate::OrderRange::new("a".."c"), Some(("b", "t2")), 10).await, ["t3"], "a cursor within");

    // Live: the same answers; a build beside it has its own entries.
    store.go_live("p", first, 0).await.must("live");
    assert_eq!(store.list_generation("p", first, &open, &all, None, 10).await.expect("list"), built, "live");
    assert_eq!(store.count_generation("p", first, &[open.clone(), done.clone()]).await.expect("count"), vec![5, 1]);
    let second = store.begin_generation("p", 2, 0).await.must("begin").id;
    let writes = vec![ViewWrite::set("n1", "10").joining(vec![entry("open", "m")])];
    store.commit("p", ViewCommit { views: writes, ..commit(second, None, 1, 0, &[]) }).await.must("build");
    assert_eq!(
        store.list_generation("p", second, &open, &all, None, 10).await.expect("list"),
        vec![indexed("m", "n1", Some("10"))],
        "the build beside the live one"
    );
    assert_eq!(store.count_generation("p", second, &[open.clone(), done.clone()]).await.expect("count"), vec![1, 0]);
    assert_eq!(store.list_generation("p", first, &open, &all, None, 10).await.expect("list"), built, "still live");
    assert_eq!(store.count_generation("p", first, std::slice::from_ref(&open)).await.expect("count"), vec![5]);

    // A build replaced by another is dropped.
    let third = store.begin_generation("p", 3, 0).await.must("begin again").id;
    assert_eq!(store.list_generation("p", second, &open, &all, None, 10).await.expect("list"), nothing, "replaced");
    assert_eq!(
        store.count_generation("p", second, std::slice::from_ref(&open)).await.expect("count"),
        vec![0],
        "replaced"
    );
    let writes = vec![ViewWrite::set("n2", "20").joining(vec![entry("open", "n"), entry("done", "n")])];
    store.commit("p", ViewCommit { views: writes, ..commit(third, None, 1, 0, &[]) }).await.must("build");

    // The older one once the newer went live: dropped.
    store.go_live("p", third, 0).await.must("switch");
    assert_eq!(store.list_generation("p", first, &open, &all, None, 10).await.expect("list"), nothing, "dropped");
    assert_eq!(store.count_generation("p", first, &[open.clone(), done.clone()]).await.expect("count"), vec![0, 0]);
    assert_eq!(
        store.list_generation("p", third, &done, &all, None, 10).await.expect("list"),
        vec![indexed("n", "n2", Some("20"))]
    );
    assert_eq!(store.count_generation("p", third, &[open, done, nope]).await.expect("count"), vec![1, 1, 0]);
}

/// On the live generation, a page of [`list_generation`](ViewStore::list_generation) is the
/// page of [`list`](ViewStore::list) with the same range, cursor and limit: the same entries
/// (the views `list` answers are those not missing), and `list`'s next cursor is the last
/// entry's when more follow; its counts are `count`'s.
pub async fn generation_queries_select_like_list<S: ViewStore>(store: S) {
    use std::ops::Bound::{Excluded, Included, Unbounded};
    let g = live(&store, "p", 0).await;
    let key = IndexKey::new("all", "");
    let at = |order: &str| IndexEntry { key: key.clone(), order: order.to_owned() };
    let mut writes = Vec::new();
    for (i, order) in ["a", "a", "b", "B", "", "é", "b", "c", "c", "d"].iter().enumerate() {
        let id = format!("v{}", 9 - i);
        // Every third view is missing; its entry stays.
        let write = if i % 3 == 1 { ViewWrite::delete(id) } else { ViewWrite::set(id, i.to_string()) };
        writes.push(write.joining(vec![at(order)]));
    }
    store.commit("p", ViewCommit { views: writes, ..commit(g, None, 1, 0, &[]) }).await.must("commit");
    let ranges = [
        crate::OrderRange::all(),
        crate::OrderRange::new("b".."c"),
        crate::OrderRange::new((Excluded("a"), Included("c"))),
        crate::OrderRange::new(.."b"),
        crate::OrderRange::new("c"..),
        crate::OrderRange::new((Unbounded, Excluded(""))),
    ];
    let cursors = [None, Some(("a", "v8")), Some(("a", "")), Some(("b", "zz")), Some(("b\0", "")), Some(("", "v5"))];
    for range in &ranges {
        for cursor in &cursors {
            let cursor = cursor.map(|(order, id)| ListCursor { order: order.to_owned(), id: id.to_owned() });
            let full = store.list_generation("p", g, &key, range, cursor.as_ref(), usize::MAX).await.expect("list all");
            for limit in [1, 2, 3, 10, 11] {
                let what = format!("{range:?} after {cursor:?}, {limit}");
                let page = store.list("p", &key, range, cursor.as_ref(), limit).await.expect("list");
                let entries = store
                    .list_generation("p", g, &key, range, cursor.as_ref(), limit)
                    .await
                    .expect("list a generation");
                assert_eq!(entries, full.iter().take(limit).cloned().collect::<Vec<_>>(), "{what}: the first entries");
                let views: Vec<(String, String)> =
                    entries.iter().filter_map(|e| e.view.clone().map(|view| (e.id.clone(), view))).collect();
                assert_eq!(views, page.views, "{what}: list's views");
                let next = (full.len() > limit).then(|| entries.last().map(IndexedView::cursor)).flatten();
                assert_eq!(page.next, next, "{what}: list's next cursor");
            }
        }
    }
    let keys = [key.clone(), IndexKey::new("all", "x"), key];
    assert_eq!(
        store.count_generation("p", g, &keys).await.expect("count"),
        store.count("p", &keys).await.expect("count")
    );
}

/// [`ViewStore::projections`] names every projection a generation began or a stop was recorded
/// for, once each, sorted byte-wise, partition members and records and hostile names among them.
pub async fn projection_names<S: ViewStore>(store: S) {
    use crate::{ProjectionStop, StopKind};
    assert!(store.projections().await.expect("projections").is_empty(), "a fresh store holds none");
    let names = ["tasks~1of2", "tasks~partitions", "b'; DROP TABLE views; --", "tasks~0of2", "{tag}:ü"];
    for name in names {
        live(&store, name, 0).await;
    }
    let stop = ProjectionStop::new(StopKind::Failed, None, "a bug");
    store.record_stop("stopped", Some(&stop), 0).await.must("record a stop");
    // Beginning again lists it once.
    store.begin_generation("tasks~0of2", 1, 0).await.must("begin again");
    let mut expected: Vec<String> = names.iter().map(|n| (*n).to_owned()).chain(["stopped".to_owned()]).collect();
    expected.sort_unstable();
    assert_eq!(store.projections().await.expect("projections"), expected);
}

/// [`ViewStore::remove_dead_letters`] removes the live generation's dead letters at the given
/// positions (keeping the others in order, ignoring a position without one) or all of them,
/// answering how many went; fenced like a commit by an older token (removing nothing), and
/// raising the highest token like one; 0 for a projection the store does not hold, or whose
/// generation is not live yet (whose dead letters stay).
pub async fn removing_dead_letters<S: ViewStore>(store: S) {
    use crate::store::DeadLetterSelection::{All, At};
    let letter = |n: u64| DeadLetter {
        position: at(n),
        stream: StreamId::new("conformance", format!("s'{n}")).expect("id"),
        version: n,
        event_type: "Broken".into(),
        reason: format!("reason ü {n}"),
    };
    let g = live(&store, "p", 5).await;
    let mut batch = commit(g, None, 4, 5, &[("a", Some("1"))]);
    batch.dead_letters = vec![letter(1), letter(2), letter(3), letter(4)];
    store.commit("p", batch).await.must("commit");
    match store.remove_dead_letters("p", &All, 4).await {
        Ok(Err(Refusal::Fenced { token: 4, highest: 5, .. })) => {}
        other => panic!("an older token must be fenced, got {other:?}"),
    }
    assert_eq!(dead_of(&store, "p").await.len(), 4, "a fenced removal removes nothing");
    let some = At(vec![at(2), at(4), at(9)]);
    assert_eq!(store.remove_dead_letters("p", &some, 6).await.must("remove some"), 2);
    assert_eq!(dead_of(&store, "p").await, vec![letter(1), letter(3)], "the others stay, in order");
    assert_eq!(store.remove_dead_letters("p", &some, 6).await.must("remove again"), 0, "gone already");
    match store.commit("p", commit(g, Some(4), 5, 5, &[])).await {
        Ok(Err(Refusal::Fenced { token: 5, highest: 6, .. })) => {}
        other => panic!("a removal raises the highest token like a commit, got {other:?}"),
    }
    let mut next = commit(g, Some(4), 6, 6, &[]);
    next.dead_letters = vec![letter(6)];
    store.commit("p", next).await.must("a later batch");
    assert_eq!(dead_of(&store, "p").await, vec![letter(1), letter(3), letter(6)], "later letters come after");
    assert_eq!(store.read_views("p", &ids(&["a"])).await.expect("read"), vec![Some("1".to_owned())], "views stay");
    assert_eq!(store.remove_dead_letters("p", &All, 6).await.must("remove all"), 3);
    assert!(dead_of(&store, "p").await.is_empty());
    assert_eq!(store.remove_dead_letters("p", &All, 6).await.must("remove all again"), 0);
    let mut more = commit(g, Some(6), 7, 6, &[]);
    more.dead_letters = vec![letter(7)];
    store.commit("p", more).await.must("a batch after removing all");
    assert_eq!(dead_of(&store, "p").await, vec![letter(7)]);

    assert_eq!(store.remove_dead_letters("unknown", &All, 0).await.must("unknown"), 0);
    assert_eq!(store.remove_dead_letters("unknown", &At(vec![at(1)]), 0).await.must("unknown"), 0);
    let building = store.begin_generation("b", 1, 0).await.must("begin");
    let mut built = commit(building.id, None, 1, 0, &[]);
    built.dead_letters = vec![letter(1)];
    store.commit("b", built).await.must("build");
    assert_eq!(store.remove_dead_letters("b", &All, 0).await.must("nothing live"), 0);
    store.go_live("b", building.id, 0).await.must("live");
    assert_eq!(store.dead_letters("b").await.expect("dead letters"), vec![letter(1)], "a building generation's stay");
}

/// A commit's [`resolved`](ViewCommit::resolved) positions remove the dead letters of its
/// generation there in the same atomic write, before the batch's own dead letters are added: a
/// letter retried that fails again is replaced by its new reason, once; a position without a
/// letter is ignored, and other generations' letters stay. A refused commit (fenced, checkpoint
/// moved, generation gone) removes none.
pub async fn resolving_dead_letters<S: ViewStore>(store: S) {
    let letter = |n: u64, reason: &str| DeadLetter {
        position: at(n),
        stream: StreamId::new("conformance", format!("s'{n}")).expect("id"),
        version: n,
        event_type: "Broken".into(),
        reason: format!("{reason} ü {n}"),
    };
    let g = live(&store, "p", 5).await;
    let mut batch = commit(g, None, 4, 5, &[("a", Some("1"))]);
    batch.dead_letters = (1..=4).map(|n| letter(n, "first")).collect();
    store.commit("p", batch).await.must("commit");
    let all = dead_of(&store, "p").await;
    assert_eq!(all.len(), 4);

    let retry = |expected: u64, token: u64, generation: u64| {
        let mut retry = commit(generation, Some(expected), 4, token, &[("a", Some("2"))]);
        retry.resolved = vec![at(3), at(1), at(2), at(9)];
        retry.dead_letters = vec![letter(2, "again")];
        retry
    };
    match store.commit("p", retry(4, 4, g)).await {
        Ok(Err(Refusal::Fenced { token: 4, highest: 5, .. })) => {}
        other => panic!("an older token must be fenced, got {other:?}"),
    }
    match store.commit("p", retry(3, 5, g)).await {
        Ok(Err(Refusal::CheckpointMoved { .. })) => {}
        other => panic!("a moved checkpoint must be refused, got {other:?}"),
    }
    match store.commit("p", retry(4, 5, g + 1000)).await {
        Ok(Err(Refusal::GenerationGone { .. })) => {}
        other => panic!("a generation the store does not hold must be refused, got {other:?}"),
    }
    assert_eq!(dead_of(&store, "p").await, all, "a refused commit removes no dead letter");
    assert_eq!(store.read_views("p", &ids(&["a"])).await.expect("read"), vec![Some("1".to_owned())]);

    // 1 and 3 went through, 2 failed again, 9 has no dead letter.
    store.commit("p", retry(4, 5, g)).await.must("a retry");
    assert_eq!(
        dead_of(&store, "p").await,
        vec![letter(4, "first"), letter(2, "again")],
        "resolved letters leave; one that failed again is there once, with its new reason, after the others"
    );
    assert_eq!(store.read_views("p", &ids(&["a"])).await.expect("read"), vec![Some("2".to_owned())]);
    assert_eq!(store.status("p").await.expect("status").checkpoint(), Some(at(4)), "the checkpoint stays");
    store.commit("p", commit(g, Some(4), 5, 5, &[])).await.must("a later batch");

    // Only the commit's own generation's letters go.
    let next = store.begin_generation("p", 1, 5).await.must("begin");
    let mut built = commit(next.id, None, 5, 5, &[]);
    built.dead_letters = vec![letter(4, "built")];
    store.commit("p", built).await.must("build");
    let mut resolve = commit(next.id, Some(5), 5, 5, &[]);
    resolve.resolved = vec![at(4)];
    store.commit("p", resolve).await.must("resolve in the build");
    assert_eq!(dead_of(&store, "p").await, vec![letter(4, "first"), letter(2, "again")], "the live ones stay");
    store.go_live("p", next.id, 5).await.must("live");
    assert!(dead_of(&store, "p").await.is_empty(), "the build's letter was resolved");
}

async fn dead_of<S: ViewStore>(store: &S, projection: &str) -> Vec<DeadLetter> {
    store.dead_letters(projection).await.expect("dead letters")
}

//! The conformance suite every [`ViewStore`] runs.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! cqrs_core::testing::view_store::run(|| async { cqrs_core::MemoryViewStore::default() }).await;
//! # });
//! ```

use std::future::Future;

use crate::{Error, Position, ViewCommit, ViewStore};

fn commit(expected: Option<Position>, checkpoint: u64, token: u64, views: &[(&str, Option<&str>)]) -> ViewCommit {
    ViewCommit {
        expected,
        checkpoint: Position::new(checkpoint, checkpoint),
        fencing_token: token,
        views: views.iter().map(|(id, v)| ((*id).to_owned(), v.map(str::to_owned))).collect(),
        dead_letters: Vec::new(),
    }
}

fn ids(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

/// Runs every case, each on a fresh store from `make`.
pub async fn run<S, F, Fut>(make: F)
where
    S: ViewStore + Clone,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    commit_and_load(make().await).await;
    checkpoint_compare_and_set(make().await).await;
    fencing(make().await).await;
    reset(make().await).await;
    concurrent_commits(make().await).await;
    hostile_names(make().await).await;
    dead_letters(make().await).await;
}

/// Dead letters are written with their batch, in order; a refused batch adds none; a reset
/// clears them.
pub async fn dead_letters<S: ViewStore>(store: S) {
    use crate::{DeadLetter, StreamId};
    let letter = |n: u64| DeadLetter {
        position: Position::new(n, n),
        stream: StreamId::new("conformance", format!("s'{n}")).expect("id"),
        version: n,
        event_type: "Broken".into(),
        reason: format!("reason ü {n}"),
    };
    assert!(store.dead_letters("p").await.expect("dead letters").is_empty());
    let mut first = commit(None, 2, 0, &[("a", Some("1"))]);
    first.dead_letters = vec![letter(1), letter(2)];
    store.commit("p", first).await.expect("commit");
    let mut stale = commit(None, 3, 0, &[]);
    stale.dead_letters = vec![letter(3)];
    assert!(store.commit("p", stale).await.is_err());
    let mut second = commit(Some(Position::new(2, 2)), 4, 0, &[]);
    second.dead_letters = vec![letter(4)];
    store.commit("p", second).await.expect("commit");
    assert_eq!(store.dead_letters("p").await.expect("dead letters"), vec![letter(1), letter(2), letter(4)]);
    assert!(store.dead_letters("q").await.expect("dead letters").is_empty(), "per projection");
    store.reset("p", 0).await.expect("reset");
    assert!(store.dead_letters("p").await.expect("dead letters").is_empty());
}

/// View ids and projection names with quotes, key-syntax characters and Unicode stay apart and
/// round-trip exactly.
pub async fn hostile_names<S: ViewStore>(store: S) {
    let names = ["{tag}", "a:b", "*", "p'; DROP TABLE views; --", "ünï ✓"];
    let json = |name: &str| serde_json::to_string(name).expect("a string encodes");
    for (i, name) in names.iter().enumerate() {
        let value = json(name);
        let views: Vec<(&str, Option<&str>)> = names.iter().map(|id| (*id, Some(value.as_str()))).collect();
        store.commit(name, commit(None, i as u64 + 1, 0, &views)).await.expect("commit");
    }
    for (i, name) in names.iter().enumerate() {
        assert_eq!(store.checkpoint(name).await.expect("checkpoint"), Some(Position::new(i as u64 + 1, i as u64 + 1)));
        let loaded = store.load_views(name, &ids(&names)).await.expect("load");
        for view in &loaded {
            let value: String = serde_json::from_str(view.as_deref().expect("a view")).expect("JSON");
            assert_eq!(value, *name);
        }
    }
    assert_eq!(store.load_views("*", &ids(&["a*", "?"])).await.expect("load"), vec![None, None], "no pattern matching");
}

/// Views and checkpoint written together, read back by id, deleted by `None`.
pub async fn commit_and_load<S: ViewStore>(store: S) {
    assert_eq!(store.checkpoint("p").await.expect("checkpoint"), None);
    assert_eq!(store.load_views("p", &ids(&["a"])).await.expect("load"), vec![None]);
    store.commit("p", commit(None, 1, 0, &[("a", Some(r#"{"n":1}"#)), ("b'; --", Some("2"))])).await.expect("commit");
    assert_eq!(store.checkpoint("p").await.expect("checkpoint"), Some(Position::new(1, 1)));
    let loaded = store.load_views("p", &ids(&["b'; --", "missing", "a"])).await.expect("load");
    assert_eq!(loaded[1], None);
    assert_eq!(loaded[0].as_deref(), Some("2"));
    let a: serde_json::Value = serde_json::from_str(loaded[2].as_deref().expect("a")).expect("json");
    assert_eq!(a, serde_json::json!({"n": 1}));
    store.commit("p", commit(Some(Position::new(1, 1)), 2, 0, &[("a", None)])).await.expect("delete");
    assert_eq!(store.load_views("p", &ids(&["a"])).await.expect("load"), vec![None]);
    assert_eq!(store.checkpoint("other").await.expect("checkpoint"), None, "projections are apart");
    assert_eq!(store.load_views("other", &ids(&["b'; --"])).await.expect("load"), vec![None]);
}

/// A commit whose expected checkpoint is stale (a replay after a crash) writes nothing.
pub async fn checkpoint_compare_and_set<S: ViewStore>(store: S) {
    store.commit("p", commit(None, 5, 0, &[("a", Some("1"))])).await.expect("first");
    for stale in [None, Some(Position::new(4, 4)), Some(Position::new(6, 6))] {
        match store.commit("p", commit(stale, 6, 0, &[("a", Some("2")), ("b", Some("2"))])).await {
            Err(Error::CheckpointMoved { actual, .. }) => assert_eq!(actual, Some(Position::new(5, 5))),
            other => panic!("expected CheckpointMoved, got {other:?}"),
        }
    }
    assert_eq!(store.load_views("p", &ids(&["a", "b"])).await.expect("load"), vec![Some("1".into()), None]);
    assert_eq!(store.checkpoint("p").await.expect("checkpoint"), Some(Position::new(5, 5)));
}

/// A commit carrying an older fencing token than one seen is refused and writes nothing.
pub async fn fencing<S: ViewStore>(store: S) {
    store.commit("p", commit(None, 1, 5, &[("a", Some("1"))])).await.expect("token 5");
    match store.commit("p", commit(Some(Position::new(1, 1)), 2, 3, &[("a", Some("\"stale\""))])).await {
        Err(Error::Fenced { token: 3, highest: 5, .. }) => {}
        other => panic!("expected Fenced, got {other:?}"),
    }
    assert_eq!(store.load_views("p", &ids(&["a"])).await.expect("load"), vec![Some("1".into())]);
    store.commit("p", commit(Some(Position::new(1, 1)), 2, 5, &[("a", Some("2"))])).await.expect("same token");
    store.commit("p", commit(Some(Position::new(2, 2)), 3, 6, &[("a", Some("3"))])).await.expect("newer token");
    assert!(matches!(
        store.commit("p", commit(Some(Position::new(3, 3)), 4, 5, &[])).await,
        Err(Error::Fenced { token: 5, highest: 6, .. })
    ));
    assert!(matches!(store.reset("p", 5).await, Err(Error::Fenced { .. })), "a stale reset is refused too");
    store.reset("q", 9).await.expect("a reset with a newer token");
    assert!(
        matches!(store.commit("q", commit(None, 1, 8, &[])).await, Err(Error::Fenced { token: 8, highest: 9, .. })),
        "a reset raises the fence"
    );
    assert_eq!(store.checkpoint("p").await.expect("checkpoint"), Some(Position::new(3, 3)));
}

/// A reset deletes views and checkpoint of one projection only.
pub async fn reset<S: ViewStore>(store: S) {
    store.commit("p", commit(None, 1, 0, &[("a", Some("1"))])).await.expect("p");
    store.commit("q", commit(None, 1, 0, &[("a", Some("1"))])).await.expect("q");
    store.reset("p", 0).await.expect("reset");
    assert_eq!(store.checkpoint("p").await.expect("checkpoint"), None);
    assert_eq!(store.load_views("p", &ids(&["a"])).await.expect("load"), vec![None]);
    assert_eq!(store.load_views("q", &ids(&["a"])).await.expect("load"), vec![Some("1".into())]);
    store.commit("p", commit(None, 1, 0, &[("a", Some("\"again\""))])).await.expect("rebuild starts from None");
}

/// Eight commits from the same checkpoint at once: exactly one applies.
pub async fn concurrent_commits<S: ViewStore + Clone>(store: S) {
    store.commit("p", commit(None, 1, 0, &[])).await.expect("start");
    let mut tasks = Vec::new();
    for i in 0..8u64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let value = i.to_string();
            store.commit("p", commit(Some(Position::new(1, 1)), 2 + i, 0, &[("a", Some(&value))])).await
        }));
    }
    let mut winners = Vec::new();
    for (i, task) in tasks.into_iter().enumerate() {
        match task.await.expect("task") {
            Ok(()) => winners.push(i),
            Err(Error::CheckpointMoved { .. }) => {}
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(winners.len(), 1);
    let value = winners[0].to_string();
    assert_eq!(store.load_views("p", &ids(&["a"])).await.expect("load"), vec![Some(value)]);
}

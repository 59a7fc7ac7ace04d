//! Secondary indexes through `ViewReader::list` and `count`, with hostile view ids, index names,
//! values and sort keys: every answer equals the in-memory store's after the same commits.

use std::collections::{BTreeMap, BTreeSet};

use eventloom_core::testing::TestRng;
use eventloom_core::{
    IndexEntry, Position,
    memory::MemoryViewStore,
    read::ViewReader,
    store::{IndexKey, ListCursor, ViewCommit, ViewStore, ViewWrite},
};

use crate::store;

const IDS: &[&str] = &[
    "t/1 ü",
    "{x}",
    "*",
    "",
    "a\u{1}b",
    "g1:v:x",
    "a=b",
    "%41",
    "\u{7f}",
    "z",
    "A",
    "a b",
    "'; --",
    "\\",
    "{p:x}:live",
    "[a-z]?",
    "\u{ffff}",
];
const NAMES: &[&str] = &["status", "a=b", "{tag}", "", "ü", "x:i:y"];
const VALUES: &[&str] = &["", "*", "a=b", "{p:x}", "open", "ü", "x:g1:i:y", "%3D", "\u{1}", "a b"];
const ORDERS: &[&str] = &["", "a", "a\u{1}", "ab", "b", "ü", "\u{7f}", "0001", "~", "a b", "\u{10ffff}"];

/// The index lists of every name and value (and a few that never hold anything).
fn all_keys() -> Vec<IndexKey> {
    let mut keys = Vec::new();
    for name in NAMES {
        for value in VALUES {
            keys.push(IndexKey::new(*name, *value));
        }
    }
    keys.push(IndexKey::new("status", "open\0"));
    keys.push(IndexKey::new("nope", ""));
    keys
}

/// Pages through a list with pages of `limit` (each cursor round-tripped through its text).
async fn walk(
    reader: &ViewReader<serde_json::Value>,
    key: &IndexKey,
    limit: usize,
) -> Vec<eventloom_core::read::Page<serde_json::Value>> {
    let mut pages = Vec::new();
    let mut after: Option<ListCursor> = None;
    loop {
        let page = reader.list(key, after.as_ref(), limit).await.unwrap();
        after = page.next.as_ref().map(|c| c.to_string().parse().unwrap());
        let last = after.is_none();
        pages.push(page);
        if last || pages.len() > 100 {
            return pages;
        }
    }
}

#[tokio::test]
async fn lists_and_counts_with_hostile_ids_values_and_sort_keys_equal_the_in_memory_stores() {
    let redis = store().await;
    let memory = MemoryViewStore::default();
    let projection = "hostile {p:x} *";
    let mut generations = Vec::new();
    for s in [&redis as &dyn ViewStore, &memory] {
        let g = s.begin_generation(projection, 1, 0).await.unwrap().unwrap();
        s.go_live(projection, g.id, 0).await.unwrap().unwrap();
        generations.push(g.id);
    }
    let ours = ViewReader::<serde_json::Value>::new(redis.clone(), projection);
    let theirs = ViewReader::<serde_json::Value>::new(memory.clone(), projection);

    // The views and their index entries as the projector would see them.
    let mut state: BTreeMap<&str, BTreeSet<IndexEntry>> = BTreeMap::new();
    // The seed is printed: `CQRS_INDEX_SEED` replays a run.
    let mut random = TestRng::from_env("CQRS_INDEX_SEED");
    let mut checkpoint = None;
    for round in 1..=40u64 {
        let mut writes = Vec::new();
        let mut touched = BTreeSet::new();
        for _ in 0..random.below(8) + 1 {
            let id = *random.pick(IDS);
            if !touched.insert(id) {
                continue;
            }
            let before = state.get(id).cloned().unwrap_or_default();
            let write = if random.below(5) == 0 {
                state.remove(id);
                ViewWrite::delete(id).leaving(before.into_iter().collect())
            } else {
                let mut after = BTreeSet::new();
                for _ in 0..random.below(4) {
                    let entry =
                        IndexEntry::new(*random.pick(NAMES), *random.pick(VALUES)).ordered_by(*random.pick(ORDERS));
                    after.insert(entry);
                }
                state.insert(id, after.clone());
                ViewWrite::set(id, serde_json::json!({ "id": id, "round": round }).to_string())
                    .leaving(before.difference(&after).cloned().collect())
                    .joining(after.difference(&before).cloned().collect())
            };
            writes.push(write);
        }
        let position = Position::new(round, round);
        for (s, g) in [&redis as &dyn ViewStore, &memory].into_iter().zip(&generations) {
            let commit = ViewCommit {
                generation: *g,
                expected: checkpoint,
                checkpoint: position,
                fencing_token: 0,
                views: writes.clone(),
                dead_letters: Vec::new(),
                resolved: Vec::new(),
            };
            s.commit(projection, commit).await.unwrap().unwrap();
        }
        checkpoint = Some(position);
        if round % 10 != 0 {
            continue;
        }

        let keys = all_keys();
        assert_eq!(ours.count(&keys).await.unwrap(), theirs.count(&keys).await.unwrap(), "round {round}");
        let listed: usize = theirs.count(&keys).await.unwrap().iter().sum::<u64>() as usize;
        assert!(listed > 0);
        for key in &keys {
            for limit in [1, 3, 1000] {
                assert_eq!(walk(&ours, key, limit).await, walk(&theirs, key, limit).await, "{key:?} by {limit}");
            }
            // Cursors that no listing returned, some with sort keys no view can have.
            for (order, id) in [("a", ""), ("a\0zz", "x"), ("", "\u{1}"), ("ü", "*"), ("\u{10ffff}\u{10ffff}", "")] {
                let cursor = ListCursor { order: order.into(), id: id.into() };
                assert_eq!(
                    ours.list(key, Some(&cursor), 5).await.unwrap(),
                    theirs.list(key, Some(&cursor), 5).await.unwrap(),
                    "{key:?} after {cursor:?}"
                );
            }
            assert_eq!(ours.list(key, None, 0).await.unwrap(), theirs.list(key, None, 0).await.unwrap());
        }
        let ids: Vec<String> = IDS.iter().map(|id| (*id).to_owned()).collect();
        assert_eq!(ours.get_many(&ids).await.unwrap(), theirs.get_many(&ids).await.unwrap());
    }
}

/// Deleting a view with the entries it leaves removes them from its lists, and an emptied list
/// leaves no key behind.
#[tokio::test]
async fn deleted_views_leave_no_index_members_or_empty_lists_behind() {
    let (store, prefix) = crate::store_and_prefix().await;
    let g = store.begin_generation("p", 1, 0).await.unwrap().unwrap();
    store.go_live("p", g.id, 0).await.unwrap().unwrap();
    let entry = IndexEntry::new("s", "x").ordered_by("1");
    let commit = |expected, at, views| ViewCommit {
        generation: g.id,
        expected,
        checkpoint: Position::new(at, at),
        fencing_token: 0,
        views,
        dead_letters: Vec::new(),
        resolved: Vec::new(),
    };
    store
        .commit("p", commit(None, 1, vec![ViewWrite::set("a", "1").joining(vec![entry.clone()])]))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(store.count("p", std::slice::from_ref(&entry.key)).await.unwrap(), vec![1]);
    store
        .commit("p", commit(Some(Position::new(1, 1)), 2, vec![ViewWrite::delete("a").leaving(vec![entry.clone()])]))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(store.count("p", std::slice::from_ref(&entry.key)).await.unwrap(), vec![0]);
    assert_eq!(
        store.list("p", &entry.key, &eventloom_core::read::OrderRange::all(), None, 10).await.unwrap(),
        eventloom_core::store::ViewPage::default()
    );
    let mut raw = crate::raw_connection(&crate::redis_url()).await;
    let left = crate::keys_under(&mut raw, &format!("{prefix}{{p:p}}:g{}:", g.id)).await;
    assert_eq!(left, [format!("{prefix}{{p:p}}:g{}:meta", g.id)]);
}

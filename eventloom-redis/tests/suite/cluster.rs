//! The view store on a Redis Cluster: the one `REDIS_CLUSTER_URLS` names (scripts/test.sh starts
//! 3 masters with a replica each), shared by these tests, each under a key prefix of its own.

use eventloom_core::testing::view_store;
use eventloom_redis::{RedisConfig, RedisViewStore};

use crate::fresh_prefix;

/// The node URLs of the shared cluster, comma-separated.
pub fn cluster_urls() -> String {
    std::env::var("REDIS_CLUSTER_URLS").unwrap_or_else(|_| {
        panic!(
            "REDIS_CLUSTER_URLS is not set. Run the suite with `bash scripts/test.sh`, which starts a throwaway \
             Redis Cluster (3 masters, 3 replicas), or set REDIS_CLUSTER_URLS to the comma-separated node URLs of \
             a cluster whose keys under the `test:` prefix may be written."
        )
    })
}

/// A store on the shared cluster whose keys no other test uses, and its prefix.
pub async fn cluster_store_and_prefix() -> (RedisViewStore, String) {
    let prefix = fresh_prefix();
    let config = RedisConfig::from_cluster_urls(&cluster_urls()).unwrap().prefix(prefix.clone()).unwrap();
    let store = RedisViewStore::connect_with(config)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the Redis Cluster: {e}"));
    (store, prefix)
}

async fn cluster_store() -> RedisViewStore {
    cluster_store_and_prefix().await.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_view_store_conforms_on_a_cluster() {
    view_store::run(cluster_store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn projector_over_redis_views_conforms_on_a_cluster() {
    eventloom_core::testing::projector::run(cluster_store).await;
}

/// Every key of one projection is in one slot (so on one master), and projections spread over
/// the masters.
#[tokio::test]
async fn a_projection_keeps_one_slot_and_projections_spread_over_the_masters() {
    use eventloom_core::store::{ViewCommit, ViewStore, ViewWrite};
    use eventloom_core::{IndexEntry, Position};
    let (store, prefix) = cluster_store_and_prefix().await;
    let projections: Vec<String> = (0..12).map(|i| format!("p{i}")).collect();
    for projection in &projections {
        let generation = store.begin_generation(projection, 1, 1).await.unwrap().unwrap();
        let commit = ViewCommit {
            generation: generation.id,
            expected: None,
            checkpoint: Position::new(1, 1),
            fencing_token: 1,
            views: (0..5)
                .map(|v| ViewWrite::set(format!("v{v}"), "{}").joining(vec![IndexEntry::new("s", format!("x{v}"))]))
                .collect(),
            dead_letters: vec![],
            resolved: Vec::new(),
        };
        store.commit(projection, commit).await.unwrap().unwrap();
        store.go_live(projection, generation.id, 1).await.unwrap().unwrap();
    }
    let mut masters_used = std::collections::BTreeSet::new();
    for url in cluster_urls().split(',') {
        let mut raw = crate::raw_connection(url).await;
        let role: Vec<redis::Value> = redis::cmd("ROLE").query_async(&mut raw).await.unwrap();
        if !matches!(&role[0], redis::Value::BulkString(b) if b == b"master") {
            continue;
        }
        let keys = crate::keys_under(&mut raw, &prefix).await;
        for projection in &projections {
            let tag = format!("{{p:{projection}}}");
            let mine: Vec<&String> = keys.iter().filter(|k| k.contains(&tag)).collect();
            if mine.is_empty() {
                continue;
            }
            masters_used.insert(url.to_owned());
            // live, last, token, and per generation meta, ids, indexes, 5 views, 5 lists.
            assert_eq!(mine.len(), 3 + 3 + 10, "all of {projection}'s keys on one master: {mine:?}");
            let mut slots = std::collections::BTreeSet::new();
            for key in mine {
                let slot: u64 = redis::cmd("CLUSTER").arg("KEYSLOT").arg(key).query_async(&mut raw).await.unwrap();
                slots.insert(slot);
            }
            assert_eq!(slots.len(), 1, "one slot for {projection}");
        }
    }
    assert!(masters_used.len() >= 2, "12 projections on one master only: {masters_used:?}");
}

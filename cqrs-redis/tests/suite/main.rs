//! The integration tests of cqrs-redis, in one binary, against a real Redis: the one
//! `REDIS_URL` names (scripts/test.sh starts a throwaway one).
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicU32, Ordering};

use cqrs_core::testing::view_store;
use cqrs_core::{Position, ViewCommit, ViewStore};
use cqrs_redis::RedisViewStore;

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| {
        panic!(
            "REDIS_URL is not set. Run the suite with `bash scripts/test.sh`, which starts a throwaway Redis, \
             or set REDIS_URL to a server whose keys under the `test:` prefix may be written."
        )
    })
}

static PREFIXES: AtomicU32 = AtomicU32::new(0);

/// A store whose keys no other test uses, and its prefix.
async fn store_and_prefix() -> (RedisViewStore, String) {
    let prefix = format!("test:{}:{}:", std::process::id(), PREFIXES.fetch_add(1, Ordering::Relaxed));
    let store =
        RedisViewStore::connect(&redis_url(), &prefix).await.unwrap_or_else(|e| panic!("cannot connect to Redis: {e}"));
    (store, prefix)
}

async fn store() -> RedisViewStore {
    store_and_prefix().await.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_view_store_conforms() {
    view_store::run(store).await;
}

#[tokio::test]
async fn a_key_of_another_type_refuses_the_whole_batch_and_writes_nothing() {
    let (store, prefix) = store_and_prefix().await;
    let client = redis::Client::open(redis_url().as_str()).unwrap();
    let mut raw = client.get_multiplexed_async_connection().await.unwrap();
    let first = ViewCommit {
        expected: None,
        checkpoint: Position::new(1, 1),
        fencing_token: 0,
        views: vec![("a".into(), Some("1".into()))],
    };
    store.commit("p", first).await.unwrap();
    // Someone wrote a list where a view goes.
    let list_key = format!("{prefix}{{p:p}}:v:b");
    let _: () = redis::cmd("RPUSH").arg(&list_key).arg("x").query_async(&mut raw).await.unwrap();
    let batch = ViewCommit {
        expected: Some(Position::new(1, 1)),
        checkpoint: Position::new(2, 2),
        fencing_token: 0,
        views: vec![("a".into(), Some("2".into())), ("b".into(), Some("2".into()))],
    };
    let err = store.commit("p", batch).await.unwrap_err();
    assert!(matches!(err, cqrs_core::Error::Backend { .. }), "{err:?}");
    assert_eq!(store.load_views("p", &["a".into()]).await.unwrap(), vec![Some("1".into())], "nothing written");
    assert_eq!(store.checkpoint("p").await.unwrap(), Some(Position::new(1, 1)));
}

#[tokio::test]
async fn credentials_stay_out_of_debug_output_and_bad_prefixes_are_refused() {
    assert!(RedisViewStore::check_prefix("a{b").is_err());
    assert!(RedisViewStore::check_prefix("ok:").is_ok());
    // A server without a password accepts AUTH with any password for the default user.
    let url = redis_url().replace("redis://", "redis://default:hunter2@");
    let store = RedisViewStore::connect(&url, "test:auth:").await.unwrap();
    assert!(!format!("{store:?}").contains("hunter2"));
    let err = RedisViewStore::connect("redis://default:hunter2@127.0.0.1:notaport/", "x:").await.unwrap_err();
    assert!(!err.to_string().contains("hunter2"));
}

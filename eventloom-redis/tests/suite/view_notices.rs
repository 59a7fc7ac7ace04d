//! Read-your-writes across processes on Redis: a wait for views is woken by the PUBLISH of a
//! commit made through another store instance (its own connections: another process, as far as
//! notifications go), while its safety poll is set to minutes, so only the notification can end
//! it in time; the status reads it made show it did not poll.

use std::time::{Duration, Instant};

use eventloom_core::Position;
use eventloom_core::read::ViewReader;
use eventloom_core::store::{ViewCommit, ViewStore, ViewWrite};
use eventloom_core::testing::CountingStatus;
use eventloom_redis::RedisViewStore;

use crate::private::PrivateRedis;
use crate::{fresh_prefix, raw_connection, redis_url};

/// Long enough that a wait ended in time was ended by a notification.
const SAFETY_POLL: Duration = Duration::from_secs(600);

/// How soon a woken wait must end (the machine is shared and busy: generous, and still far
/// below the safety poll).
const PROMPT: Duration = Duration::from_secs(2);

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

fn wait(reader: &ViewReader<u64>, position: Position) -> tokio::task::JoinHandle<Instant> {
    let reader = reader.clone();
    tokio::spawn(async move {
        reader.wait_for(position, Duration::from_secs(60)).await.unwrap();
        Instant::now()
    })
}

/// The ids of the connections SUBSCRIBEd to `channel`.
async fn subscribers(url: &str, channel: &str) -> Vec<u64> {
    let mut raw = raw_connection(url).await;
    let list: String = redis::cmd("CLIENT").arg("LIST").arg("TYPE").arg("pubsub").query_async(&mut raw).await.unwrap();
    let channels: Vec<String> = redis::cmd("PUBSUB").arg("CHANNELS").arg(channel).query_async(&mut raw).await.unwrap();
    if channels.is_empty() {
        return Vec::new();
    }
    list.lines()
        .filter_map(|line| line.split(' ').find_map(|field| field.strip_prefix("id=")))
        .filter_map(|id| id.parse().ok())
        .collect()
}

/// Waits until a connection other than those of `not` is SUBSCRIBEd to `channel`: its id.
async fn subscribed(url: &str, channel: &str, not: &[u64]) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(id) = subscribers(url, channel).await.into_iter().find(|id| !not.contains(id)) {
            return id;
        }
        assert!(Instant::now() < deadline, "no new subscriber after 20 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_commit_through_another_store_wakes_a_wait_by_publish() {
    let (url, prefix) = (redis_url(), fresh_prefix());
    let writer = RedisViewStore::connect(&url, &prefix).await.unwrap();
    let g = writer.begin_generation("p", 1, 0).await.unwrap().unwrap().id;
    writer.go_live("p", g, 0).await.unwrap().unwrap();
    let views = CountingStatus::new(RedisViewStore::connect(&url, &prefix).await.unwrap());
    let reader = ViewReader::<u64>::new(views.clone(), "p").with_safety_poll(SAFETY_POLL);
    let mut raw = raw_connection(&url).await;
    let channel = format!("{prefix}eventloom.views");
    let mut expected = None;
    for n in 1..=3u64 {
        let position = Position::new(100 + n, n);
        let waiting = wait(&reader, position);
        // The subscriber is up, and the wait has read the status and sleeps.
        loop {
            let counts: Vec<(String, u64)> =
                redis::cmd("PUBSUB").arg("NUMSUB").arg(&channel).query_async(&mut raw).await.unwrap();
            if counts.first().is_some_and(|(_, n)| *n > 0) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let reads = views.status_reads();
        let start = Instant::now();
        writer.commit("p", commit(g, expected, position)).await.unwrap().unwrap();
        let at = tokio::time::timeout(PROMPT, waiting)
            .await
            .unwrap_or_else(|_| panic!("the wait was not woken within {PROMPT:?} (its safety poll is {SAFETY_POLL:?})"))
            .unwrap();
        let reads = views.status_reads() - reads;
        println!("woken by PUBLISH {:?} after the commit began, with {reads} status reads", at - start);
        assert!(reads <= 3, "{reads} status reads: the wait polled");
        assert_eq!(ViewReader::<u64>::new(writer.clone(), "p").get("a").await.unwrap(), Some(n));
        expected = Some(position);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wait_survives_its_subscriber_connection_being_killed() {
    // A private server: CLIENT KILL touches nobody else's connections.
    let redis = PrivateRedis::volatile();
    let url = redis.url();
    let writer = RedisViewStore::connect(&url, "t:").await.unwrap();
    let g = writer.begin_generation("p", 1, 0).await.unwrap().unwrap().id;
    writer.go_live("p", g, 0).await.unwrap().unwrap();
    let views = CountingStatus::new(RedisViewStore::connect(&url, "t:").await.unwrap());
    let reader = ViewReader::<u64>::new(views.clone(), "p").with_safety_poll(SAFETY_POLL);
    let channel = "t:eventloom.views";

    let first = Position::new(101, 1);
    let waiting = wait(&reader, first);
    let id = subscribed(&url, channel, &[]).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut raw = raw_connection(&url).await;
    let killed: u64 = redis::cmd("CLIENT").arg("KILL").arg("ID").arg(id).query_async(&mut raw).await.unwrap();
    assert_eq!(killed, 1);
    let start = Instant::now();
    writer.commit("p", commit(g, None, first)).await.unwrap().unwrap();
    let at = tokio::time::timeout(PROMPT, waiting)
        .await
        .unwrap_or_else(|_| panic!("the wait was lost with its subscriber connection"))
        .unwrap();
    println!("woken {:?} after the commit, its subscriber killed", at - start);

    // The subscriber comes back by itself, and wakes the next wait without polling.
    let second = Position::new(102, 2);
    let waiting = wait(&reader, second);
    let again = subscribed(&url, channel, &[id]).await;
    assert_ne!(again, id);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let reads = views.status_reads();
    writer.commit("p", commit(g, Some(first), second)).await.unwrap().unwrap();
    tokio::time::timeout(PROMPT, waiting).await.expect("woken after the subscriber reconnected").unwrap();
    let reads = views.status_reads() - reads;
    assert!(reads <= 3, "{reads} status reads after the subscriber reconnected: the wait polled");
}

//! The conformance suite every [`EventStore`] runs.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! eventloom_core::testing::event_store::run(|| async { eventloom_core::memory::MemoryEventStore::new() }).await;
//! # });
//! ```

use std::collections::{BTreeSet, HashSet};
use std::future::Future;
use std::time::Duration;

use crate::{
    AppendOutcome, CommandRecord, Error, EventStore, ExpectedVersion, Fingerprint, NewEvent, Position, RecordedEvent,
    StreamId, Subscription,
};

use super::{test_event, test_event_for_command};
use crate::Timestamp;
use crate::store::{Appended, CommandEntry};

/// Writers racing on one stream in [`concurrent_writers`].
pub const WRITERS: usize = 16;
/// Append attempts per writer in [`concurrent_writers`].
pub const ATTEMPTS: usize = 40;

fn stream(id: &str) -> StreamId {
    StreamId::new("conformance", id).expect("valid test id")
}

/// Every event `read_all` shows, once at least `expected` are visible: a store that reads in
/// commit-safe order may show committed events a little later while other transactions of its
/// cluster (other tests') are still open.
async fn read_all<S: EventStore>(store: &S, expected: usize) -> Vec<RecordedEvent> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let mut all = Vec::new();
        let mut after = Position::ZERO;
        loop {
            let batch = store.read_all(after, 1000).await.expect("read_all");
            let Some(last) = batch.last() else { break };
            after = last.position;
            all.extend(batch);
        }
        if all.len() >= expected || tokio::time::Instant::now() > deadline {
            return all;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn payload_n(e: &RecordedEvent) -> u64 {
    let v: serde_json::Value = serde_json::from_str(&e.payload).expect("payload is JSON");
    v["n"].as_u64().expect("payload has n")
}

/// Runs every case, each on a fresh store from `make`.
pub async fn run<S, F, Fut>(make: F)
where
    S: EventStore + Clone,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    append_and_read(make().await).await;
    conflicts(make().await).await;
    atomic_appends(make().await).await;
    total_order(make().await).await;
    concurrent_writers(make().await).await;
    concurrent_any(make().await).await;
    subscription_hand_over(make().await).await;
    idempotency(make().await).await;
    concurrent_idempotency(make().await).await;
    command_fingerprints(make().await).await;
    concurrent_fingerprints(make().await).await;
    recorded_refusals(make().await).await;
    concurrent_refusals(make().await).await;
    command_retention(make().await).await;
    expiry_in_batches(make().await).await;
    relayed_appends(make().await).await;
    concurrent_relays(make().await).await;
    hostile_ids(make().await).await;
    wake_ups(make().await).await;
    head_and_count(make().await).await;
    bounded_reads(make().await).await;
    folded_pages(make().await).await;
}

/// Reads bounded in bytes end with the event that brings the batch's stored sizes to the bound
/// (at least one event), for `read_stream_bounded` and `read_all_bounded` alike; a bound above
/// the whole batch changes nothing.
pub async fn bounded_reads<S: EventStore>(store: S) {
    let s = stream("bounded");
    let events: Vec<NewEvent> = (0..8u64)
        .map(|n| {
            let mut event = test_event(n);
            event.payload = format!(r#"{{"n":{n},"pad":"{}"}}"#, "x".repeat(usize::try_from(n * 300).unwrap_or(0)));
            event
        })
        .collect();
    store.append(&s, ExpectedVersion::NoStream, events).await.expect("append");
    let all = read_all(&store, 8).await;
    let sizes: Vec<usize> = all.iter().map(RecordedEvent::stored_size).collect();
    let expected = |max: usize| {
        let mut total = 0;
        sizes
            .iter()
            .position(|size| {
                total += size;
                total >= max
            })
            .map_or(sizes.len(), |i| i + 1)
    };
    for max in [1, sizes[0], sizes[0] + 1, 1_000, 3_000, 7_000, usize::MAX] {
        let read = store.read_stream_bounded(&s, 1, 100, max).await.expect("read_stream_bounded");
        assert_eq!(read.len(), expected(max), "read_stream_bounded with a bound of {max} bytes");
        assert_eq!(read.iter().map(|e| e.version).collect::<Vec<_>>(), (1..=read.len() as u64).collect::<Vec<_>>());
        let read = store.read_all_bounded(Position::ZERO, 100, max).await.expect("read_all_bounded");
        assert_eq!(read.len(), expected(max), "read_all_bounded with a bound of {max} bytes");
        assert_eq!(
            read.iter().map(|e| e.position).collect::<Vec<_>>(),
            all[..read.len()].iter().map(|e| e.position).collect::<Vec<_>>()
        );
    }
    let from_third = store.read_stream_bounded(&s, 3, 2, usize::MAX).await.expect("read");
    assert_eq!(from_third.iter().map(|e| e.version).collect::<Vec<_>>(), vec![3, 4], "the event bound still holds");
    let after_second = store.read_all_bounded(all[1].position, 100, 1).await.expect("read");
    assert_eq!(after_second.iter().map(|e| e.position).collect::<Vec<_>>(), vec![all[2].position]);
}

/// `fold_stream` lends the same events `read_stream` returns, in version order from the version
/// asked, with their types and payloads, and their positions where it lends them (the last of
/// a page always: its [`FoldedPage::last`](crate::store::FoldedPage::last)); a page holds at most `limit` events (and may
/// stop at `max_bytes`); the page it reports matches what it folded, counting at least each
/// event's payload and type name; paging on until a page is short of both bounds folds the whole
/// stream once; and a fold error ends the page and is returned.
pub async fn folded_pages<S: EventStore>(store: S) {
    let s = stream("folded");
    let events: Vec<NewEvent> = (0..12u64)
        .map(|n| {
            let mut event = test_event(n);
            let pad = "x".repeat(usize::try_from((n % 4) * 400).unwrap_or(0));
            event.payload = format!(r#"{{"n":{n},"pad":"{pad}"}}"#);
            event
        })
        .collect();
    store.append(&s, ExpectedVersion::NoStream, events).await.expect("append");
    let stored = store.read_stream(&s, 1, 100).await.expect("read_stream");
    assert_eq!(stored.len(), 12);
    let lent = |e: &RecordedEvent| (e.version, e.event_type.to_string(), e.schema_version, e.payload.to_string());
    let stored_position = |version: u64| stored.iter().find(|e| e.version == version).map(|e| e.position);
    for (limit, max_bytes) in [(100, usize::MAX), (5, usize::MAX), (100, 1), (100, 900), (3, 1_500), (4, 4_000)] {
        // Every page in turn, from the first version, until one says the stream ended.
        let mut seen = Vec::new();
        let mut from = 1;
        for _ in 0..stored.len() + 1 {
            let mut folded = Vec::new();
            let page = store
                .fold_stream(&s, from, limit, max_bytes, &mut |e| {
                    folded.push((
                        e.version,
                        e.position,
                        e.event_type.to_owned(),
                        e.schema_version,
                        e.payload.to_owned(),
                    ));
                    Ok(())
                })
                .await
                .expect("fold_stream");
            assert_eq!(page.events, folded.len(), "the page counts what it folded");
            for (version, position, ..) in &folded {
                if let Some(position) = position {
                    assert_eq!(Some(*position), stored_position(*version), "version {version} lent at its position");
                }
            }
            let last = folded.last().map(|e| (e.0, e.1));
            assert!(
                last.is_none_or(|(_, position)| position.is_some()),
                "the page's last event is lent with its position"
            );
            let last = last.and_then(|(version, _)| Some((version, stored_position(version)?)));
            assert_eq!(page.last, last, "the page ends with the last event folded, at its position");
            assert!(page.events <= limit, "a page of {} events with a limit of {limit}", page.events);
            let sizes: Vec<usize> = folded.iter().map(|e| e.2.len() + e.4.len()).collect();
            assert!(page.bytes >= sizes.iter().sum::<usize>(), "the page counts at least payloads and type names");
            seen.extend(
                folded
                    .into_iter()
                    .map(|(version, _, event_type, schema, payload)| (version, event_type, schema, payload)),
            );
            if !page.may_have_more(limit, max_bytes) {
                break;
            }
            from = page.last.map_or(from, |(version, _)| version + 1);
        }
        let expected: Vec<_> = stored.iter().map(lent).collect();
        assert_eq!(
            seen, expected,
            "pages of {limit} events and {max_bytes} bytes fold the whole stream once, in order"
        );
    }
    let mut versions = Vec::new();
    let page = store
        .fold_stream(&s, 10, 100, usize::MAX, &mut |e| {
            versions.push(e.version);
            Ok(())
        })
        .await
        .expect("fold_stream from version 10");
    assert_eq!((versions, page.may_have_more(100, usize::MAX)), (vec![10, 11, 12], false));
    let mut calls = 0;
    let refused = store
        .fold_stream(&s, 1, 100, usize::MAX, &mut |e| {
            calls += 1;
            if e.version == 2 {
                return Err(Error::Corrupt { location: "test".into(), reason: "refused by the fold".into() });
            }
            Ok(())
        })
        .await;
    assert!(
        matches!(&refused, Err(Error::Corrupt { location, .. }) if location == "test"),
        "the fold's own error, as it returned it: {refused:?}"
    );
    assert_eq!(calls, 2, "a fold error ends the page");
    let nothing = store.fold_stream(&stream("folded-none"), 1, 100, usize::MAX, &mut |_| Ok(())).await.expect("fold");
    assert_eq!((nothing.events, nothing.last), (0, None));
}

/// `head` is `None` on an empty store, reaches the last appended position, and is never
/// beyond what `read_all` returns; `count_after` counts exactly what `read_all` returns after a
/// position, up to its cap.
pub async fn head_and_count<S: EventStore>(store: S) {
    assert_eq!(store.head().await.expect("head"), None, "an empty store has no head");
    assert_eq!(store.count_after(Position::ZERO, 10).await.expect("count"), 0);
    let a = stream("head-a");
    let first = store.append(&a, ExpectedVersion::NoStream, (1..=3).map(test_event).collect()).await.expect("append");
    let second = store.append(&stream("head-b"), ExpectedVersion::Any, vec![test_event(4)]).await.expect("append");
    let last = store.append(&a, ExpectedVersion::Exact(3), vec![test_event(5)]).await.expect("append");
    let (first, second, last) = (first.into_outcome(), second.into_outcome(), last.into_outcome());
    // A store that holds events back may show the head late, never ahead of read_all.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let head = store.head().await.expect("head");
        let all = store.read_all(Position::ZERO, 1000).await.expect("read_all");
        if let Some(head) = head {
            assert!(
                all.last().is_some_and(|e| e.position >= head),
                "the head {head} is beyond what read_all returns ({:?})",
                all.last().map(|e| e.position)
            );
            assert!(all.iter().any(|e| e.position == head), "the head is an event's position");
        }
        if head == Some(last.position) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the head never reached the last append: {head:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let all = read_all(&store, 5).await;
    assert_eq!(all.len(), 5);
    assert_eq!(store.count_after(Position::ZERO, 100).await.expect("count"), 5, "exact below the cap");
    assert_eq!(store.count_after(Position::ZERO, 5).await.expect("count"), 5, "exact at the cap");
    assert_eq!(store.count_after(Position::ZERO, 3).await.expect("count"), 3, "capped");
    assert_eq!(store.count_after(Position::ZERO, 0).await.expect("count"), 0, "a cap of 0 counts nothing");
    assert_eq!(store.count_after(all[0].position, 100).await.expect("count"), 4);
    assert_eq!(store.count_after(first.position, 100).await.expect("count"), 2, "after the first append");
    assert_eq!(store.count_after(second.position, 1).await.expect("count"), 1);
    assert_eq!(store.count_after(last.position, 100).await.expect("count"), 0, "nothing after the head");
    assert_eq!(store.read_all(last.position, 10).await.expect("read_all").len(), 0);
}

/// When a store offers wake-ups, an append fires one.
pub async fn wake_ups<S: EventStore>(store: S) {
    let Some(mut wake) = store.wake_ups() else { return };
    wake.borrow_and_update();
    store.append(&stream("wake"), ExpectedVersion::Any, vec![test_event(1)]).await.expect("append");
    tokio::time::timeout(Duration::from_secs(5), wake.changed())
        .await
        .expect("an append wakes subscribers within 5 s")
        .expect("the wake-up signal is alive");
}

/// Appends and reads back a stream, from any version and in batches.
pub async fn append_and_read<S: EventStore>(store: S) {
    let s = stream("read");
    assert_eq!(store.stream_version(&s).await.expect("version"), 0);
    assert!(store.read_stream(&s, 1, 10).await.expect("read").is_empty());
    let out = store.append(&s, ExpectedVersion::NoStream, (1..=3).map(test_event).collect()).await.expect("append");
    let out = out.into_outcome();
    assert_eq!((out.first_version, out.last_version, out.appended()), (1, 3, 3));
    let events = store.read_stream(&s, 1, 10).await.expect("read");
    assert_eq!(events.iter().map(|e| e.version).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(events.iter().map(payload_n).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(events[2].position, out.position, "the outcome names the last event's position");
    assert!(events.iter().all(|e| e.stream == s && e.event_type == "Tested" && e.schema_version == 1));
    assert_eq!(
        events[0].metadata.get().expect("metadata decodes").event_id,
        test_event(1).metadata.event_id,
        "metadata round-trips"
    );
    let tail = store.read_stream(&s, 2, 1).await.expect("read");
    assert_eq!(tail.iter().map(|e| e.version).collect::<Vec<_>>(), [2]);
    assert!(store.read_stream(&s, 4, 10).await.expect("read").is_empty());
    assert_eq!(store.stream_version(&s).await.expect("version"), 3);
    let empty = store.append(&s, ExpectedVersion::Exact(3), Vec::new()).await.expect("empty append").into_outcome();
    assert_eq!(empty.appended(), 0);
    assert_eq!(store.stream_version(&s).await.expect("version"), 3, "an empty append writes nothing");
}

/// Every kind of expected version, and that a refused append changes nothing.
pub async fn conflicts<S: EventStore>(store: S) {
    let s = stream("conflicts");
    store.append(&s, ExpectedVersion::Exact(0), vec![test_event(1)]).await.expect("Exact(0) on a new stream");
    match store.append(&s, ExpectedVersion::NoStream, vec![test_event(2)]).await {
        Err(Error::Conflict { stream, expected: ExpectedVersion::NoStream, actual: 1 }) => assert_eq!(stream, s),
        other => panic!("expected a conflict, got {other:?}"),
    }
    match store.append(&s, ExpectedVersion::Exact(5), vec![test_event(2), test_event(3)]).await {
        Err(Error::Conflict { expected: ExpectedVersion::Exact(5), actual: 1, .. }) => {}
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(store.stream_version(&s).await.expect("version"), 1, "refused appends wrote nothing");
    store.append(&s, ExpectedVersion::Exact(1), vec![test_event(2)]).await.expect("exact");
    store.append(&s, ExpectedVersion::Any, vec![test_event(3)]).await.expect("any");
    let other = stream("conflicts-other");
    match store.append(&other, ExpectedVersion::Exact(1), vec![test_event(1)]).await {
        Err(Error::Conflict { actual: 0, .. }) => {}
        other => panic!("expected a conflict on a missing stream, got {other:?}"),
    }
    assert_eq!(store.stream_version(&s).await.expect("version"), 3);
}

/// All events of one append commit together with contiguous versions; a refused one writes none.
pub async fn atomic_appends<S: EventStore>(store: S) {
    let s = stream("atomic");
    store.append(&s, ExpectedVersion::NoStream, (1..=5).map(test_event).collect()).await.expect("append");
    let refused = store.append(&s, ExpectedVersion::Exact(2), (6..=10).map(test_event).collect()).await;
    assert!(matches!(refused, Err(Error::Conflict { .. })), "{refused:?}");
    let events = store.read_stream(&s, 1, 100).await.expect("read");
    assert_eq!(events.iter().map(|e| e.version).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
    assert!(events.windows(2).all(|w| w[0].position < w[1].position));
    let all = read_all(&store, 5).await;
    assert_eq!(all.len(), 5, "no event of the refused append is visible");
}

/// `read_all` returns every event once, in increasing position, whatever the batch size.
pub async fn total_order<S: EventStore>(store: S) {
    let streams: Vec<_> = (0..4).map(|i| stream(&format!("order-{i}"))).collect();
    let mut n = 0;
    for round in 0..5 {
        for s in &streams {
            let events = (0..=round % 3).map(|_| {
                n += 1;
                test_event(n)
            });
            store.append(s, ExpectedVersion::Any, events.collect()).await.expect("append");
        }
    }
    let all = read_all(&store, n as usize).await;
    assert_eq!(all.len() as u64, n);
    assert!(all.windows(2).all(|w| w[0].position < w[1].position), "positions strictly increase");
    assert_eq!(all.iter().map(payload_n).collect::<Vec<_>>(), (1..=n).collect::<Vec<_>>(), "commit order");
    for s in &streams {
        let versions: Vec<u64> = all.iter().filter(|e| &e.stream == s).map(|e| e.version).collect();
        assert_eq!(versions, (1..=versions.len() as u64).collect::<Vec<_>>());
    }
    let mut paged = Vec::new();
    let mut after = Position::ZERO;
    loop {
        let batch = store.read_all(after, 3).await.expect("read_all");
        assert!(batch.len() <= 3);
        let Some(last) = batch.last() else { break };
        after = last.position;
        paged.extend(batch);
    }
    assert_eq!(paged, all, "paging sees the same events in the same order");
    let middle = all[all.len() / 2].position;
    let rest = store.read_all(middle, 1000).await.expect("read_all");
    assert_eq!(rest.as_slice(), &all[all.len() / 2 + 1..]);
}

/// [`WRITERS`] writers x [`ATTEMPTS`] appends with exact expected versions on one stream:
/// exactly one winner per version, every loser gets the typed conflict, nothing lost or doubled.
pub async fn concurrent_writers<S: EventStore + Clone>(store: S) {
    let s = stream("race");
    let mut tasks = Vec::new();
    for writer in 0..WRITERS as u64 {
        let (store, s) = (store.clone(), s.clone());
        tasks.push(tokio::spawn(async move {
            let (mut won, mut lost) = (Vec::new(), 0);
            for attempt in 0..ATTEMPTS as u64 {
                let version = store.stream_version(&s).await.expect("version");
                // Let the other writers read the same version: the race is the point.
                tokio::task::yield_now().await;
                let n = writer * 1_000_000 + attempt;
                match store.append(&s, ExpectedVersion::Exact(version), vec![test_event(n)]).await {
                    Ok(out) => {
                        let out = out.written().expect("no command id: never a duplicate");
                        assert_eq!(out.last_version, version + 1);
                        won.push((out.last_version, n));
                    }
                    Err(Error::Conflict { .. }) => lost += 1,
                    Err(other) => panic!("a racing append failed with {other:?}, not a conflict"),
                }
                tokio::task::yield_now().await;
            }
            (won, lost)
        }));
    }
    let mut won = Vec::new();
    let mut lost = 0;
    for task in tasks {
        let (w, l) = task.await.expect("writer task");
        won.extend(w);
        lost += l;
    }
    assert_eq!(won.len() + lost, WRITERS * ATTEMPTS);
    assert!(lost > 0, "the writers never raced: run the suite on a multi-threaded runtime");
    won.sort();
    let versions: Vec<u64> = won.iter().map(|(v, _)| *v).collect();
    assert_eq!(versions, (1..=won.len() as u64).collect::<Vec<_>>(), "one winner per version, no gap");
    let stored = store.read_stream(&s, 1, usize::MAX).await.expect("read");
    assert_eq!(stored.len(), won.len(), "every win is stored, nothing else");
    for (event, (version, n)) in stored.iter().zip(&won) {
        assert_eq!((event.version, payload_n(event)), (*version, *n), "the winner's event is at its version");
    }
}

/// [`WRITERS`] x [`ATTEMPTS`] appends with `Any` on one stream: all persisted, versions contiguous.
pub async fn concurrent_any<S: EventStore + Clone>(store: S) {
    let s = stream("any");
    let mut tasks = Vec::new();
    for writer in 0..WRITERS as u64 {
        let (store, s) = (store.clone(), s.clone());
        tasks.push(tokio::spawn(async move {
            for attempt in 0..ATTEMPTS as u64 {
                store
                    .append(&s, ExpectedVersion::Any, vec![test_event(writer * 1_000_000 + attempt)])
                    .await
                    .expect("an Any append never conflicts");
            }
        }));
    }
    for task in tasks {
        task.await.expect("writer task");
    }
    let stored = store.read_stream(&s, 1, usize::MAX).await.expect("read");
    assert_eq!(stored.len(), WRITERS * ATTEMPTS);
    assert!(stored.iter().enumerate().all(|(i, e)| e.version == i as u64 + 1));
    let distinct: HashSet<u64> = stored.iter().map(payload_n).collect();
    assert_eq!(distinct.len(), WRITERS * ATTEMPTS, "no duplicate");
}

/// A subscription started on a store with history, while writers keep appending, sees every
/// event exactly once, in the order of `read_all`.
pub async fn subscription_hand_over<S: EventStore + Clone>(store: S) {
    const BEFORE: u64 = 100;
    const WRITERS: u64 = 4;
    const EACH: u64 = 50;
    let total = (BEFORE + WRITERS * EACH) as usize;
    store
        .append(&stream("sub-history"), ExpectedVersion::Any, (0..BEFORE).map(test_event).collect())
        .await
        .expect("history");
    let mut subscription = Subscription::new(store.clone(), Position::ZERO)
        .with_batch_size(7)
        .with_poll_interval(Duration::from_millis(20));
    let reader = tokio::spawn(async move {
        let mut seen = Vec::new();
        while seen.len() < total {
            let batch = tokio::time::timeout(Duration::from_secs(20), subscription.next_batch())
                .await
                .expect("the subscription delivers within 20 s")
                .expect("next_batch");
            assert!(!batch.is_empty());
            seen.extend(batch);
        }
        seen
    });
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..EACH {
                let n = 1_000 + w * EACH + i;
                store
                    .append(&stream(&format!("sub-{w}")), ExpectedVersion::Any, vec![test_event(n)])
                    .await
                    .expect("append");
                if i % 10 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        }));
    }
    for w in writers {
        w.await.expect("writer");
    }
    let seen = reader.await.expect("reader");
    assert_eq!(seen.len(), total, "nothing doubled");
    assert!(seen.windows(2).all(|w| w[0].position < w[1].position), "in order");
    assert_eq!(seen, read_all(&store, total).await, "nothing lost, same order as read_all");
}

/// A second append under a command id returns the first outcome and writes nothing.
pub async fn idempotency<S: EventStore>(store: S) {
    let s = stream("idem");
    assert_eq!(store.command_outcome("cmd-1").await.expect("lookup"), None);
    let first = store
        .append(
            &s,
            ExpectedVersion::NoStream,
            vec![test_event_for_command(1, "cmd-1"), test_event_for_command(2, "cmd-1")],
        )
        .await
        .expect("first")
        .written()
        .expect("a new command id");
    let recorded = store.command_outcome("cmd-1").await.expect("lookup").expect("recorded");
    assert_eq!(recorded.fingerprint, None, "a plain append keeps none");
    assert_eq!((recorded.outcome, recorded.refusal, recorded.kept), (first.clone(), None, false));
    recorded_about_now(recorded.recorded_at);
    for (target, expected) in [(s.clone(), ExpectedVersion::Exact(2)), (stream("idem-other"), ExpectedVersion::Any)] {
        match store.append(&target, expected, vec![test_event_for_command(3, "cmd-1")]).await {
            Ok(Appended::Duplicate { command_id, first: record }) => {
                assert_eq!(command_id, "cmd-1");
                assert_eq!((record.outcome, record.fingerprint), (first.clone(), None));
            }
            other => panic!("expected a duplicate, got {other:?}"),
        }
    }
    match store.append(&s, ExpectedVersion::NoStream, vec![test_event_for_command(3, "cmd-1")]).await {
        Ok(Appended::Duplicate { first: record, .. }) => assert_eq!(record.outcome, first),
        other => panic!("a duplicate with a stale expected version is still a duplicate, got {other:?}"),
    }
    assert_eq!(read_all(&store, 2).await.len(), 2, "the duplicates wrote nothing");
    // An append refused by a conflict does not use up its command id.
    let refused = store.append(&s, ExpectedVersion::Exact(1), vec![test_event_for_command(4, "cmd-2")]).await;
    assert!(matches!(refused, Err(Error::Conflict { .. })), "{refused:?}");
    assert_eq!(store.command_outcome("cmd-2").await.expect("lookup"), None);
    let second = store.append(&s, ExpectedVersion::Exact(2), vec![test_event_for_command(4, "cmd-2")]).await;
    assert_eq!(second.expect("the id is still free").written().expect("written").last_version, 3);
    // A command that appended nothing is recorded, and its id is then taken.
    let noop = AppendOutcome { stream: s.clone(), first_version: 4, last_version: 3, position: Position::ZERO };
    let print = fingerprint('a');
    let recorded = CommandRecord::new(noop.clone()).with_fingerprint(print);
    assert_eq!(store.record_command("cmd-noop", recorded.clone()).await.expect("record a no-op"), None);
    assert_eq!(store.command_outcome("cmd-noop").await.expect("lookup"), Some(recorded));
    match store.append(&s, ExpectedVersion::Exact(3), vec![test_event_for_command(5, "cmd-noop")]).await {
        Ok(Appended::Duplicate { first: record, .. }) => assert_eq!(record.outcome, noop),
        other => panic!("an append under a recorded no-op's id is a duplicate, got {other:?}"),
    }
    match store.record_command("cmd-1", CommandRecord::new(noop.clone()).with_fingerprint(print)).await {
        Ok(Some(record)) => assert_eq!(record.outcome, first),
        other => panic!("recording a used id is a duplicate, got {other:?}"),
    }
    match store.append(&s, ExpectedVersion::Exact(2), vec![test_event_for_command(3, "bad\nid")]).await {
        Err(Error::InvalidId { .. }) => {}
        other => panic!("a command id with a newline must be refused, got {other:?}"),
    }
}

fn fingerprint(digit: char) -> Fingerprint {
    digit.to_string().repeat(64).parse().expect("64 hex digits")
}

/// When the suite's commands were executed: a fixed time, so that records compare whole.
const EXECUTED_AT: Timestamp = Timestamp::from_micros(1_764_547_200_123_456);

/// The entry of a request with `print`, executed at [`EXECUTED_AT`], not kept.
fn entry(print: Fingerprint) -> CommandEntry {
    CommandEntry::new(print, EXECUTED_AT)
}

/// A record the store made itself (a plain append) is stamped by its clock: within ten minutes
/// of this process's (the store may run on another machine).
fn recorded_about_now(at: Timestamp) {
    let skew = (at.as_micros() - Timestamp::now().as_micros()).abs();
    assert!(skew < 600_000_000, "recorded at {at:?}, {skew} µs away from now");
}

/// The fingerprint given to `append_command` or `record_command` is kept with the outcome, and
/// every duplicate reports the first one, whatever its own.
pub async fn command_fingerprints<S: EventStore>(store: S) {
    let s = stream("prints");
    let (a, b) = (fingerprint('a'), fingerprint('b'));
    let events = |n, id| vec![test_event_for_command(n, id), test_event_for_command(n + 1, id)];
    let first = store.append_command(&s, ExpectedVersion::NoStream, events(1, "fp-1"), &entry(a)).await.expect("first");
    let first = first.written().expect("a new command id");
    assert_eq!((first.first_version, first.last_version), (1, 2));
    let recorded = CommandRecord::of_entry(first.clone(), &entry(a));
    assert_eq!(store.command_outcome("fp-1").await.expect("lookup"), Some(recorded));
    for (expected, print) in [(ExpectedVersion::Exact(2), b), (ExpectedVersion::Any, a), (ExpectedVersion::NoStream, b)]
    {
        match store.append_command(&s, expected, vec![test_event_for_command(9, "fp-1")], &entry(print)).await {
            Ok(Appended::Duplicate { command_id, first: record }) => {
                assert_eq!((command_id.as_str(), record.outcome, record.fingerprint), ("fp-1", first.clone(), Some(a)));
            }
            other => panic!("expected a duplicate for {expected:?}, got {other:?}"),
        }
    }
    match store.append(&s, ExpectedVersion::Exact(2), vec![test_event_for_command(9, "fp-1")]).await {
        Ok(Appended::Duplicate { first: record, .. }) => assert_eq!(record.fingerprint, Some(a), "a plain append too"),
        other => panic!("expected a duplicate, got {other:?}"),
    }
    assert_eq!(read_all(&store, 2).await.len(), 2, "the duplicates wrote nothing");
    // A conflict does not use up the id, nor keep the fingerprint.
    let refused = store.append_command(&s, ExpectedVersion::Exact(1), events(3, "fp-2"), &entry(b)).await;
    assert!(matches!(refused, Err(Error::Conflict { .. })), "{refused:?}");
    assert_eq!(store.command_outcome("fp-2").await.expect("lookup"), None);
    let second =
        store.append_command(&s, ExpectedVersion::Any, events(3, "fp-2"), &entry(b)).await.expect("the id is free");
    let recorded = CommandRecord::of_entry(second.written().expect("written"), &entry(b));
    assert_eq!(store.command_outcome("fp-2").await.expect("lookup"), Some(recorded));
    // An id first used by a plain append keeps no fingerprint, and reports none.
    let plain =
        store.append(&s, ExpectedVersion::Exact(4), vec![test_event_for_command(5, "fp-3")]).await.expect("plain");
    let plain = plain.written().expect("a new command id");
    match store.append_command(&s, ExpectedVersion::Exact(5), vec![test_event_for_command(6, "fp-3")], &entry(a)).await
    {
        Ok(Appended::Duplicate { first: record, .. }) => {
            assert_eq!((record.outcome, record.fingerprint), (plain, None))
        }
        other => panic!("expected a duplicate, got {other:?}"),
    }
    // A recorded no-op reports its fingerprint to an append and to another record.
    let noop = AppendOutcome { stream: s.clone(), first_version: 6, last_version: 5, position: Position::ZERO };
    let record = |print| CommandRecord::new(noop.clone()).with_fingerprint(print);
    assert_eq!(store.record_command("fp-noop", record(b)).await.expect("record"), None);
    match store
        .append_command(&s, ExpectedVersion::Exact(5), vec![test_event_for_command(6, "fp-noop")], &entry(a))
        .await
    {
        Ok(Appended::Duplicate { first: record, .. }) => {
            assert_eq!((record.outcome, record.fingerprint), (noop.clone(), Some(b)))
        }
        other => panic!("expected a duplicate, got {other:?}"),
    }
    match store.record_command("fp-noop", record(a)).await {
        Ok(Some(record)) => assert_eq!((record.outcome, record.fingerprint), (noop, Some(b))),
        other => panic!("expected the first record, got {other:?}"),
    }
    match store.record_command("fp-1", CommandRecord::new(first.clone()).with_fingerprint(a)).await {
        Ok(Some(record)) => assert_eq!(record.fingerprint, Some(a)),
        other => panic!("expected the first record, got {other:?}"),
    }
    assert_eq!(read_all(&store, 5).await.len(), 5);
}

/// Eight appends of one command id with different fingerprints at once, to one stream and to
/// several: exactly one writes, and every other sees its fingerprint.
pub async fn concurrent_fingerprints<S: EventStore + Clone>(store: S) {
    for shared_stream in [true, false] {
        let id = format!("fp-race-{shared_stream}");
        let mut tasks = Vec::new();
        for i in 0..8u8 {
            let (store, id) = (store.clone(), id.clone());
            let target = if shared_stream { stream("fp-race") } else { stream(&format!("fp-race-{i}")) };
            let print = fingerprint(char::from(b'0' + i));
            let expected = if shared_stream { ExpectedVersion::NoStream } else { ExpectedVersion::Any };
            tasks.push(tokio::spawn(async move {
                (
                    print,
                    store
                        .append_command(
                            &target,
                            expected,
                            vec![test_event_for_command(u64::from(i), &id)],
                            &entry(print),
                        )
                        .await,
                )
            }));
        }
        let (mut won, mut seen) = (Vec::new(), Vec::new());
        for task in tasks {
            match task.await.expect("task") {
                (print, Ok(Appended::Written(_))) => won.push(print),
                (_, Ok(Appended::Duplicate { first, .. })) => seen.push(first.fingerprint),
                // On one stream, a racer may lose on the version before it sees the command.
                (_, Err(Error::Conflict { .. })) if shared_stream => {}
                (_, Err(other)) => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(won.len(), 1, "exactly one writes");
        assert!(seen.iter().all(|f| *f == Some(won[0])), "the losers see the winner's fingerprint: {seen:?}");
        let first = store.command_outcome(&id).await.expect("lookup").expect("recorded");
        assert_eq!(first.fingerprint, Some(won[0]));
    }
    assert_eq!(read_all(&store, 2).await.len(), 2);
}

/// Eight appends with the same command id at once: exactly one writes.
pub async fn concurrent_idempotency<S: EventStore + Clone>(store: S) {
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .append(
                    &stream(&format!("idem-race-{i}")),
                    ExpectedVersion::Any,
                    vec![test_event_for_command(i, "same")],
                )
                .await
        }));
    }
    let mut ok = 0;
    for task in tasks {
        match task.await.expect("task") {
            Ok(Appended::Written(_)) => ok += 1,
            Ok(Appended::Duplicate { .. }) => {}
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(ok, 1);
    assert_eq!(read_all(&store, 1).await.len(), 1);
}

/// Ids with quotes, semicolons, SQL, Unicode and the maximum length round-trip exactly.
pub async fn hostile_ids<S: EventStore>(store: S) {
    let ids = [
        "'; DROP TABLE events; --".to_owned(),
        "\"quoted\" \\ back\\slash".to_owned(),
        "ünïcødé ✓ 🦀 中文".to_owned(),
        "{hash}:tag*?[x]".to_owned(),
        "x".repeat(StreamId::MAX_ID_LEN),
        "a/b/c".to_owned(),
    ];
    let mut streams = BTreeSet::new();
    for (i, id) in ids.iter().enumerate() {
        let s = StreamId::new("conformance", id).expect("valid");
        store.append(&s, ExpectedVersion::NoStream, vec![test_event(i as u64)]).await.expect("append");
        let back = store.read_stream(&s, 1, 10).await.expect("read");
        assert_eq!(back.len(), 1, "{id:?}");
        assert_eq!(back[0].stream.id(), id.as_str());
        assert_eq!(back[0].stream.category(), "conformance");
        streams.insert(back[0].stream.clone());
    }
    assert_eq!(streams.len(), ids.len(), "distinct ids stay distinct streams");
}

/// A refusal recorded under a command id comes back as recorded (fingerprint, the stream as
/// found, the reason cut to [`MAX_REFUSAL_BYTES`](crate::store::MAX_REFUSAL_BYTES) at a character
/// boundary), takes the id from appends and other records, and an id already used keeps its
/// first record.
pub async fn recorded_refusals<S: EventStore>(store: S) {
    let s = stream("refusals");
    let (a, b) = (fingerprint('a'), fingerprint('b'));
    let first = store.append(&s, ExpectedVersion::NoStream, vec![test_event(1)]).await.expect("append");
    let first = first.into_outcome();
    let as_found = AppendOutcome { stream: s.clone(), first_version: 2, last_version: 1, position: first.position };
    let refusal = CommandRecord::new(as_found.clone()).with_fingerprint(a).with_refusal("the task is completed");
    assert_eq!(store.record_command("ref-1", refusal.clone()).await.expect("record a refusal"), None);
    assert_eq!(store.command_outcome("ref-1").await.expect("lookup"), Some(refusal.clone()));
    // The id is taken: an append under it writes nothing and reports the refusal.
    match store.append_command(&s, ExpectedVersion::Exact(1), vec![test_event_for_command(2, "ref-1")], &entry(a)).await
    {
        Ok(Appended::Duplicate { command_id, first: record }) => {
            assert_eq!((command_id.as_str(), record), ("ref-1", refusal.clone()));
        }
        other => panic!("an append under a recorded refusal's id is a duplicate, got {other:?}"),
    }
    match store.append(&stream("refusals-other"), ExpectedVersion::Any, vec![test_event_for_command(2, "ref-1")]).await
    {
        Ok(Appended::Duplicate { first: record, .. }) => assert_eq!(record, refusal, "on another stream too"),
        other => panic!("expected a duplicate, got {other:?}"),
    }
    let no_op = CommandRecord::new(as_found.clone()).with_fingerprint(b);
    assert_eq!(store.record_command("ref-1", no_op).await.expect("record"), Some(refusal.clone()), "first wins");
    // A refusal under an id an append used records nothing.
    let appended = store
        .append_command(&s, ExpectedVersion::Exact(1), vec![test_event_for_command(2, "ref-2")], &entry(a))
        .await
        .expect("append")
        .written()
        .expect("a new id");
    let late = CommandRecord::new(as_found.clone()).with_fingerprint(a).with_refusal("too late");
    let answer = store.record_command("ref-2", late).await.expect("record");
    assert_eq!(answer, Some(CommandRecord::of_entry(appended, &entry(a))), "the append stays the answer");
    // A long reason is cut at a character boundary within the bound; an empty one is kept.
    let max = crate::store::MAX_REFUSAL_BYTES;
    let long = format!("x{}", "é".repeat(max));
    let mut record = CommandRecord::new(as_found.clone()).with_fingerprint(b);
    record.refusal = Some(long.clone());
    assert_eq!(store.record_command("ref-long", record).await.expect("record a long refusal"), None);
    let kept = store.command_outcome("ref-long").await.expect("lookup").expect("recorded");
    let reason = kept.refusal.expect("a refusal");
    assert_eq!((reason.len(), long.starts_with(&reason)), (max - 1, true), "cut to {max} bytes at a boundary");
    let empty = CommandRecord::new(as_found).with_refusal("");
    assert_eq!(store.record_command("ref-empty", empty.clone()).await.expect("record"), None);
    assert_eq!(store.command_outcome("ref-empty").await.expect("lookup"), Some(empty), "no fingerprint, no reason");
    assert_eq!(read_all(&store, 2).await.len(), 2, "refusals write no event");
}

/// A refusal and an append of one command id at once, eight times over on fresh ids: exactly
/// one is recorded, and the other sees it.
pub async fn concurrent_refusals<S: EventStore + Clone>(store: S) {
    let print = fingerprint('c');
    let mut appended = 0;
    for round in 0..8u64 {
        let id = format!("ref-race-{round}");
        let s = stream(&format!("ref-race-{round}"));
        let refusal = CommandRecord::new(AppendOutcome {
            stream: s.clone(),
            first_version: 1,
            last_version: 0,
            position: Position::ZERO,
        })
        .with_fingerprint(print)
        .with_refusal("refused");
        let record = {
            let (store, id, refusal) = (store.clone(), id.clone(), refusal.clone());
            tokio::spawn(async move { store.record_command(&id, refusal).await })
        };
        let append = {
            let (store, id, s) = (store.clone(), id.clone(), s.clone());
            tokio::spawn(async move {
                store
                    .append_command(
                        &s,
                        ExpectedVersion::NoStream,
                        vec![test_event_for_command(round, &id)],
                        &entry(print),
                    )
                    .await
            })
        };
        let recorded = record.await.expect("task").expect("record");
        let append = append.await.expect("task").expect("append");
        let stored = store.command_outcome(&id).await.expect("lookup").expect("recorded");
        match (recorded, append) {
            (None, Appended::Duplicate { first, .. }) => {
                assert_eq!((&first, &stored), (&refusal, &refusal), "the refusal won: the append saw it");
            }
            (Some(first), Appended::Written(outcome)) => {
                appended += 1;
                let won = CommandRecord::of_entry(outcome, &entry(print));
                assert_eq!((&first, &stored), (&won, &won), "the append won: the refusal saw it");
            }
            other => panic!("exactly one of a refusal and an append wins, got {other:?}"),
        }
    }
    assert_eq!(read_all(&store, appended).await.len(), appended, "the refusals that won wrote nothing");
}

/// Records keep when they were made and whether they are kept; `expire_commands` deletes only
/// the records made before its bound that are not kept, `forget_commands` the ones named, kept or
/// not. The events keep their command id; the id is free again.
pub async fn command_retention<S: EventStore>(store: S) {
    let s = stream("retention");
    let at = |micros: i64| Timestamp::from_micros(EXECUTED_AT.as_micros() + micros);
    let (a, b) = (fingerprint('a'), fingerprint('b'));
    let append = |n: u64, id: &str| vec![test_event_for_command(n, id)];
    let old = CommandEntry::new(a, at(-2_000_000));
    let kept = CommandEntry::new(b, at(-3_000_000)).keep();
    let recent = CommandEntry::new(a, at(0));
    let first = store.append_command(&s, ExpectedVersion::NoStream, append(1, "ret-old"), &old).await.expect("append");
    let first = first.written().expect("a new id");
    // With any version too (PostgreSQL: the schema's `append` function rather than the statement).
    store.append_command(&s, ExpectedVersion::Any, append(2, "ret-kept"), &kept).await.expect("append");
    store.append_command(&s, ExpectedVersion::Exact(2), append(3, "ret-recent"), &recent).await.expect("append");
    store.append(&s, ExpectedVersion::Exact(3), append(4, "ret-plain")).await.expect("append");
    let noop = AppendOutcome { stream: s.clone(), first_version: 5, last_version: 4, position: Position::ZERO };
    let old_noop = CommandRecord::new(noop.clone()).with_fingerprint(b).with_recorded_at(at(-1_000_000));
    let kept_refusal = CommandRecord::new(noop.clone()).with_recorded_at(at(-4_000_000)).with_refusal("refused").keep();
    assert_eq!(store.record_command("ret-old-noop", old_noop.clone()).await.expect("record"), None);
    assert_eq!(store.record_command("ret-kept-refusal", kept_refusal.clone()).await.expect("record"), None);
    // Each record comes back as made: its time to the microsecond, and whether it is kept.
    let lookup = |id: &'static str| store.command_outcome(id);
    assert_eq!(lookup("ret-old").await.expect("lookup"), Some(CommandRecord::of_entry(first.clone(), &old)));
    let kept_record = lookup("ret-kept").await.expect("lookup").expect("recorded");
    assert_eq!((kept_record.recorded_at, kept_record.kept, kept_record.fingerprint), (kept.recorded_at, true, Some(b)));
    assert_eq!(lookup("ret-old-noop").await.expect("lookup"), Some(old_noop));
    assert_eq!(lookup("ret-kept-refusal").await.expect("lookup"), Some(kept_refusal.clone()));
    let plain = lookup("ret-plain").await.expect("lookup").expect("recorded");
    assert!(!plain.kept, "a plain append's record is not kept");
    recorded_about_now(plain.recorded_at);
    // Nothing older than the oldest record, or than the earliest time there is: nothing goes.
    assert_eq!(store.expire_commands(at(-10_000_000), 100).await.expect("expire"), 0);
    assert_eq!(store.expire_commands(Timestamp::from_micros(i64::MIN), 100).await.expect("expire"), 0);
    // The bound is exclusive: a record made at it stays.
    assert_eq!(store.expire_commands(at(-2_000_000), 100).await.expect("expire"), 0);
    assert_eq!(store.expire_commands(at(0), 100).await.expect("expire"), 2, "the old append and the old no-op");
    for (id, gone) in [("ret-old", true), ("ret-old-noop", true), ("ret-kept", false), ("ret-recent", false)] {
        assert_eq!(lookup(id).await.expect("lookup").is_none(), gone, "{id}");
    }
    assert_eq!(lookup("ret-kept-refusal").await.expect("lookup"), Some(kept_refusal), "kept, however old");
    // The latest time there is: every record that is not kept goes, the plain one too.
    let future = Timestamp::from_micros(i64::MAX);
    assert_eq!(store.expire_commands(future, 100).await.expect("expire"), 2, "the recent and the plain records");
    assert!(lookup("ret-kept").await.expect("lookup").is_some());
    // The events keep their command ids; an expired id is free again: a retry executes again.
    let events = read_all(&store, 4).await;
    let ids: Vec<Option<String>> =
        events.iter().map(|e| e.metadata.get().expect("metadata").command_id.clone()).collect();
    let expected = ["ret-old", "ret-kept", "ret-recent", "ret-plain"].map(|id| Some(id.to_owned()));
    assert_eq!(ids, expected);
    let again = store.append_command(&s, ExpectedVersion::Exact(4), append(5, "ret-old"), &entry(a)).await;
    assert_eq!(again.expect("append").written().map(|o| o.last_version), Some(5), "executed again");
    // Forgetting: kept or not; ids without a record are skipped.
    let ids = ["ret-kept", "ret-kept-refusal", "ret-old", "never-used"].map(str::to_owned);
    assert_eq!(store.forget_commands(&ids).await.expect("forget"), 3);
    for id in ["ret-kept", "ret-kept-refusal", "ret-old"] {
        assert!(lookup(id).await.expect("lookup").is_none(), "{id} forgotten");
    }
    assert_eq!(store.forget_commands(&[]).await.expect("forget nothing"), 0);
    assert_eq!(read_all(&store, 5).await.len(), 5, "no event went");
}

/// `expire_commands` deletes at most `limit` records per call, the oldest first, so a backlog
/// is trimmed in batches.
pub async fn expiry_in_batches<S: EventStore>(store: S) {
    let noop = AppendOutcome { stream: stream("batches"), first_version: 1, last_version: 0, position: Position::ZERO };
    for n in 0..7i64 {
        let record = CommandRecord::new(noop.clone()).with_recorded_at(Timestamp::from_micros(1_000_000 + n));
        assert_eq!(store.record_command(&format!("batch-{n}"), record).await.expect("record"), None);
    }
    let kept = CommandRecord::new(noop.clone()).with_recorded_at(Timestamp::from_micros(1)).keep();
    store.record_command("batch-kept", kept).await.expect("record");
    let before = Timestamp::from_micros(2_000_000);
    assert_eq!(store.expire_commands(before, 0).await.expect("expire"), 0, "a limit of 0 deletes nothing");
    assert_eq!(store.expire_commands(before, 3).await.expect("expire"), 3);
    for n in 0..3 {
        assert!(store.command_outcome(&format!("batch-{n}")).await.expect("lookup").is_none(), "oldest first: {n}");
    }
    assert!(store.command_outcome("batch-3").await.expect("lookup").is_some());
    assert_eq!(store.expire_commands(before, 3).await.expect("expire"), 3);
    assert_eq!(store.expire_commands(before, 3).await.expect("expire"), 1);
    assert_eq!(store.expire_commands(before, 3).await.expect("expire"), 0);
    assert!(store.command_outcome("batch-kept").await.expect("lookup").is_some());
}

/// A relayed append writes once per (source, sequence): a sequence at or below the source's
/// record appends nothing, sources are apart, a gap in the sequences is taken, and a bad source
/// or sequence is refused.
pub async fn relayed_appends<S: EventStore>(store: S) {
    let s = stream("relayed");
    assert_eq!(store.relayed("shop").await.expect("relayed"), 0);
    let first = store.append_relayed("shop", 1, &s, vec![test_event(1)]).await.expect("relay");
    assert!(matches!(&first, crate::store::Relayed::Written(o) if o.first_version == 1), "{first:?}");
    assert_eq!(store.relayed("shop").await.expect("relayed"), 1);
    let again = store.append_relayed("shop", 1, &s, vec![test_event(1)]).await.expect("relay");
    assert_eq!(again, crate::store::Relayed::Duplicate { relayed: 1 });
    // Another source has its own record.
    assert!(!store.append_relayed("mill", 1, &s, vec![test_event(2)]).await.expect("relay").is_duplicate());
    // A gap (messages the source dropped or did not publish) is taken; an older one is not.
    assert!(!store.append_relayed("shop", 5, &s, vec![test_event(3)]).await.expect("relay").is_duplicate());
    assert_eq!(
        store.append_relayed("shop", 4, &s, vec![test_event(4)]).await.expect("relay"),
        crate::store::Relayed::Duplicate { relayed: 5 }
    );
    assert_eq!(store.relayed("shop").await.expect("relayed"), 5);
    let events = store.read_stream(&s, 1, 100).await.expect("read");
    let payloads: Vec<&str> = events.iter().map(|e| &*e.payload).collect();
    assert_eq!(payloads, [&*test_event(1).payload, &*test_event(2).payload, &*test_event(3).payload]);
    for (source, sequence) in [("", 1), ("a\nb", 1), ("shop", 0)] {
        let refused = store.append_relayed(source, sequence, &s, vec![test_event(9)]).await;
        assert!(matches!(refused, Err(Error::InvalidId { .. })), "{source:?} {sequence}: {refused:?}");
    }
    assert_eq!(store.read_stream(&s, 1, 100).await.expect("read").len(), 3, "refusals wrote nothing");
}

/// Relays racing over the same sequences of one source: each sequence is written once.
pub async fn concurrent_relays<S: EventStore + Clone>(store: S) {
    let s = stream("relay-race");
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (store, s) = (store.clone(), s.clone());
        tasks.push(tokio::spawn(async move {
            let mut written = 0u64;
            for sequence in 1..=25u64 {
                loop {
                    match store.append_relayed("race", sequence, &s, vec![test_event(sequence)]).await {
                        Ok(crate::store::Relayed::Written(_)) => {
                            written += 1;
                            break;
                        }
                        Ok(crate::store::Relayed::Duplicate { .. }) => break,
                        // A race lost inside the store may be reported as a transient failure.
                        Err(error) if error.is_transient() => continue,
                        Err(error) => panic!("relay {sequence}: {error}"),
                    }
                }
            }
            written
        }));
    }
    let mut written = 0;
    for task in tasks {
        written += task.await.expect("relay task");
    }
    assert_eq!(written, 25, "each sequence written by exactly one relay");
    let events = store.read_stream(&s, 1, 100).await.expect("read");
    assert_eq!(events.len(), 25);
    let expected: Vec<String> = (1..=25).map(|n| test_event(n).payload.to_string()).collect();
    let got: Vec<String> = events.iter().map(|e| e.payload.to_string()).collect();
    assert_eq!(got, expected, "in sequence order");
}

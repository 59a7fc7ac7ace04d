//! Partitioned projections on the memory stores: each partition folds its streams alone, queries
//! merge them, and the partition set switches every partition at once.

use std::collections::BTreeMap;
use std::time::Duration;

use eventloom_core::memory::{MemoryEventStore, MemoryLeases, MemoryViewStore};
use eventloom_core::prelude::*;
use eventloom_core::read::{MemberState, Projector, partition_of};
use eventloom_core::store::EventStore;
use eventloom_core::store::{IndexKey, ViewStore};
use eventloom_core::write::Cqrs;
use eventloom_core::{BoxError, IndexEntry, Projection, ProjectionOptions};

use crate::domain::{Account, AccountEvent, Balance, deposit, open};

/// The domain's balances, listed in one list by id and in another while over 100.
pub struct ListedBalances;

impl Projection for ListedBalances {
    const NAME: &'static str = "listed_balances";
    type Events = Account;
    type View = Balance;

    fn index(&self, id: &str, view: &Balance) -> Vec<IndexEntry> {
        let mut entries = vec![IndexEntry::new("all", "yes").ordered_by(id)];
        if view.balance > 100 {
            entries.push(IndexEntry::new("rich", "yes").ordered_by_int(view.balance as i64));
        }
        entries
    }

    fn apply(&self, view: &mut Option<Balance>, e: &EventEnvelope<AccountEvent>) -> Result<(), BoxError> {
        let view = view.get_or_insert_with(Balance::default);
        match &e.event {
            AccountEvent::Opened { owner } => view.owner.clone_from(owner),
            AccountEvent::Deposited { amount } => view.balance += amount,
            AccountEvent::Withdrawn { amount } => view.balance -= amount,
            AccountEvent::Closed => {}
        }
        view.applied += 1;
        view.version = e.version;
        Ok(())
    }
}

fn all() -> IndexKey {
    IndexKey::new("all", "yes")
}

/// Every view of the list `key`, page by page.
async fn listed(reader: &Reader<ListedBalances>, key: &IndexKey, page: usize) -> Vec<(String, Balance)> {
    let mut views = Vec::new();
    let mut after = None;
    loop {
        let listed = reader.list(key, after.as_ref(), page).await.unwrap();
        assert!(listed.views.len() <= page);
        views.extend(listed.views);
        match listed.next {
            Some(next) => after = Some(next),
            None => return views,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_projection_answers_as_a_whole_one_would() {
    let stores = MemoryStores::new();
    let app = App::builder(stores.clone())
        .aggregate::<Account>()
        .projection_with(ListedBalances, ProjectionOptions::new().partitions(4))
        .start()
        .await
        .unwrap();
    let mut expected = BTreeMap::new();
    let mut last = None;
    for n in 0..40u64 {
        let id = format!("acc-{n:02}");
        app.execute(open(&id)).await.unwrap();
        last = Some(app.execute(deposit(&id, n * 7)).await.unwrap());
        expected.insert(id, n * 7);
    }
    let reader = app.reader::<ListedBalances>().unwrap();
    reader.wait_for(last.as_ref().unwrap(), Duration::from_secs(10)).await.unwrap();
    for (id, balance) in &expected {
        let view = reader.get(id).await.unwrap().unwrap();
        assert_eq!((view.balance, view.applied, view.version), (*balance, 2, 2), "{id}");
    }
    let ids: Vec<String> = expected.keys().cloned().collect();
    // The queries run in a spawned task (their futures are `Send`), as in a web handler.
    let spawned = reader.clone();
    let (one, many_ids) = (ids[0].clone(), ids.clone());
    let many = tokio::spawn(async move {
        assert!(spawned.get(&one).await.unwrap().is_some());
        spawned.list(&all(), None, 5).await.unwrap();
        spawned.get_many(&many_ids).await.unwrap()
    })
    .await
    .unwrap();
    assert!(many.iter().zip(expected.values()).all(|(v, b)| v.as_ref().map(|v| v.balance) == Some(*b)));
    // Lists merge the partitions' lists in order, page after page.
    for page in [1, 3, 7, 40, 100] {
        let listed: Vec<String> = listed(&reader, &all(), page).await.into_iter().map(|(id, _)| id).collect();
        assert_eq!(listed, ids, "pages of {page}");
    }
    let rich = listed(&reader, &IndexKey::new("rich", "yes"), 5).await;
    let balances: Vec<u64> = rich.iter().map(|(_, v)| v.balance).collect();
    let mut want: Vec<u64> = expected.values().copied().filter(|b| *b > 100).collect();
    want.sort_unstable();
    assert_eq!(balances, want, "ordered by balance across partitions");
    assert_eq!(reader.count(&[all(), IndexKey::new("rich", "yes")]).await.unwrap(), vec![40, want.len() as u64]);
    // Each partition holds its streams' views alone.
    let views = &stores.views;
    for index in 0..4 {
        let name = format!("listed_balances~{index}of4");
        let status = views.status(&name).await.unwrap();
        let generation = status.live.or(status.building).expect("a generation per partition");
        let found = views.load_views(&name, generation.id, &ids).await.unwrap();
        for (id, view) in ids.iter().zip(found) {
            assert_eq!(view.is_some(), partition_of(id, 4) == index, "{id} in partition {index}");
        }
    }
    let status = reader.status().await.unwrap();
    assert_eq!(status.checkpoint(), Some(last.unwrap().position));
    let health = app.health(1000).await;
    let projection = &health.projections[0];
    assert_eq!(projection.name, "listed_balances");
    assert!(projection.lag.clone().unwrap().unwrap().caught_up(), "{health:?}");
    app.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_switch_to_a_new_partitioning_at_once_and_the_old_one_stands_by() {
    let events = MemoryEventStore::new();
    let views = MemoryViewStore::default();
    let leases = MemoryLeases::default();
    let projector = Projector::new(events.clone(), views.clone()).with_leases(leases.clone());
    let engine = Cqrs::<Account, _>::new(events.clone());
    for n in 0..30 {
        let id = format!("acc-{n}");
        engine.execute(open(&id)).await.unwrap();
        engine.execute(deposit(&id, 200 + n)).await.unwrap();
    }
    let reader = Reader::<ListedBalances>::new(views.clone()).partitioned();
    // Two partitions first.
    let mut two = projector.group();
    let handle = two.add_with(ListedBalances, ProjectionOptions::new().partitions(2));
    assert_eq!(handle.parts().len(), 2);
    let (stop_two, stopped_two) = tokio::sync::oneshot::channel::<()>();
    let running_two = tokio::spawn(two.run(async {
        stopped_two.await.ok();
    }));
    let head = events.head().await.unwrap().unwrap();
    reader.wait_for(head, Duration::from_secs(10)).await.unwrap();
    assert_eq!(reader.count(&[all()]).await.unwrap(), vec![30]);
    let before = reader.status().await.unwrap().live.unwrap();

    // Three partitions, built beside them: queries go on reading the two until the three have
    // caught up, then read the three.
    let mut three = projector.group();
    let handle_three = three.add_with(ListedBalances, ProjectionOptions::new().partitions(3));
    let (stop_three, stopped_three) = tokio::sync::oneshot::channel::<()>();
    let running_three = tokio::spawn(three.run(async {
        stopped_three.await.ok();
    }));
    let started = std::time::Instant::now();
    let switched = loop {
        let status = reader.status().await.unwrap().live.unwrap();
        assert_eq!(reader.count(&[all()]).await.unwrap(), vec![30], "every query sees a whole partitioning");
        if status.id != before.id {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "never switched");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(switched.id > before.id);
    let listed_ids: Vec<String> = listed(&reader, &all(), 4).await.into_iter().map(|(id, _)| id).collect();
    assert_eq!(listed_ids.len(), 30);
    // The two partitions it replaced stand by, and never switch back.
    handle.wait_until(|s| s.state == MemberState::StandingBy).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(reader.status().await.unwrap().live.unwrap().id, switched.id);
    // The three go live in their own stores a grace after the switch.
    let live = handle_three.wait_until(|s| s.state == MemberState::Running).await;
    assert_eq!(live.state, MemberState::Running);
    // New events reach the three.
    engine.execute(deposit("acc-1", 5)).await.unwrap();
    let head = events.head().await.unwrap().unwrap();
    reader.wait_for(head, Duration::from_secs(10)).await.unwrap();
    assert_eq!(reader.get("acc-1").await.unwrap().unwrap().balance, 206);
    stop_two.send(()).unwrap();
    stop_three.send(()).unwrap();
    running_two.await.unwrap().unwrap();
    running_three.await.unwrap().unwrap();
}

/// How many of a partitioned projection's partitions run in each group.
fn running(handles: &[&eventloom_core::read::MemberHandle]) -> Vec<usize> {
    handles.iter().map(|h| h.parts().iter().filter(|p| p.status().state == MemberState::Running).count()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_share_the_partitions_out_and_take_over_those_of_one_that_stops() {
    let events = MemoryEventStore::new();
    let views = MemoryViewStore::default();
    let leases = MemoryLeases::default();
    let engine = Cqrs::<Account, _>::new(events.clone());
    for n in 0..60 {
        engine.execute(open(&format!("acc-{n}"))).await.unwrap();
    }
    let reader = Reader::<ListedBalances>::new(views.clone()).partitioned();
    let mut stops = Vec::new();
    let mut runs = Vec::new();
    let mut handles = Vec::new();
    for _ in 0..3 {
        let projector = Projector::new(events.clone(), views.clone()).with_leases(leases.clone());
        let mut group = projector.group();
        handles.push(group.add_with(ListedBalances, ProjectionOptions::new().partitions(6)));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        stops.push(stop);
        runs.push(tokio::spawn(group.run(async {
            stopped.await.ok();
        })));
    }
    let started = std::time::Instant::now();
    loop {
        let shares = running(&handles.iter().collect::<Vec<_>>());
        if shares == vec![2, 2, 2] {
            println!("3 processes hold 2 partitions each after {:?}", started.elapsed());
            break;
        }
        if started.elapsed() > Duration::from_secs(10) {
            for h in &handles {
                for p in h.parts() {
                    eprintln!("{} {:?}", p.name(), p.status());
                }
            }
            panic!("not balanced within 10 s: {shares:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let head = events.head().await.unwrap().unwrap();
    reader.wait_for(head, Duration::from_secs(10)).await.unwrap();
    assert_eq!(reader.count(&[all()]).await.unwrap(), vec![60]);
    // One process stops: the other two take its partitions over.
    stops.remove(1).send(()).unwrap();
    runs.remove(1).await.unwrap().unwrap();
    handles.remove(1);
    let stopped_at = std::time::Instant::now();
    loop {
        let shares = running(&handles.iter().collect::<Vec<_>>());
        if shares == vec![3, 3] {
            println!("2 processes hold 3 partitions each {:?} after the third stopped", stopped_at.elapsed());
            break;
        }
        assert!(stopped_at.elapsed() < Duration::from_secs(10), "not taken over within 10 s: {shares:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for n in 0..30 {
        engine.execute(deposit(&format!("acc-{n}"), 1)).await.unwrap();
    }
    let head = events.head().await.unwrap().unwrap();
    reader.wait_for(head, Duration::from_secs(10)).await.unwrap();
    for n in 0..60 {
        let view = reader.get(&format!("acc-{n}")).await.unwrap().unwrap();
        let deposits = u64::from(n < 30);
        assert_eq!((view.balance, view.applied), (deposits, 1 + deposits), "acc-{n}");
    }
    for stop in stops {
        stop.send(()).unwrap();
    }
    for run in runs {
        run.await.unwrap().unwrap();
    }
}

/// [`ListedBalances`] at version 2, under the same name: balances doubled.
struct DoubledBalances;

impl Projection for DoubledBalances {
    const NAME: &'static str = "listed_balances";
    const VERSION: u32 = 2;
    type Events = Account;
    type View = Balance;

    fn apply(&self, view: &mut Option<Balance>, e: &EventEnvelope<AccountEvent>) -> Result<(), BoxError> {
        ListedBalances.apply(view, e)?;
        if let (Some(view), AccountEvent::Deposited { amount }) = (view.as_mut(), &e.event) {
            view.balance += amount;
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_projection_is_read_until_its_partitions_switch_and_a_new_version_switches_every_partition_at_once() {
    let events = MemoryEventStore::new();
    let views = MemoryViewStore::default();
    let engine = Cqrs::<Account, _>::new(events.clone());
    for n in 0..20 {
        let id = format!("acc-{n}");
        engine.execute(open(&id)).await.unwrap();
        engine.execute(deposit(&id, 10)).await.unwrap();
    }
    // Whole first: a partitioned reader reads it while no partition set exists.
    Projector::new(events.clone(), views.clone()).catch_up(&ListedBalances).await.unwrap();
    let reader = Reader::<ListedBalances>::new(views.clone()).partitioned();
    assert_eq!(reader.get("acc-3").await.unwrap().unwrap().balance, 10, "the whole projection's view");
    assert_eq!(reader.count(&[all()]).await.unwrap(), vec![20]);

    let run = |projector: Projector<MemoryEventStore>, options: ProjectionOptions, doubled: bool| {
        let mut group = projector.group();
        let handle =
            if doubled { group.add_with(DoubledBalances, options) } else { group.add_with(ListedBalances, options) };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        (
            handle,
            stop,
            tokio::spawn(group.run(async {
                stopped.await.ok();
            })),
        )
    };
    let projector = Projector::new(events.clone(), views.clone());
    let (v1, stop_v1, running_v1) = run(projector.clone(), ProjectionOptions::new().partitions(3), false);
    let started = std::time::Instant::now();
    let set = || async { views.read_views("listed_balances~partitions", &["set".to_owned()]).await };
    while !matches!(set().await.as_deref(), Ok([Some(_)])) {
        assert!(started.elapsed() < Duration::from_secs(10), "the partitions never switched");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(reader.count(&[all()]).await.unwrap(), vec![20]);
    let v1_set = reader.status().await.unwrap().live.unwrap();
    assert_eq!(v1_set.version, 1);

    // Version 2 builds beside version 1, one partition held back (the test holds its lease):
    // queries read version 1 all along, though two partitions of version 2 are ready.
    let leases = MemoryLeases::default();
    let held = eventloom_core::store::LeaseManager::acquire(&leases, "listed_balances~2of3").await.unwrap();
    let v2_projector = projector.clone().with_leases(leases.clone());
    let (v2, stop_v2, running_v2) = run(v2_projector, ProjectionOptions::new().partitions(3), true);
    let ids: Vec<String> = (0..20).map(|n| format!("acc-{n}")).collect();
    // (Its balancer first makes sure no process of version 1 holds a member slot: two looks,
    // a second apart, then two more that agree on its share.)
    let started = std::time::Instant::now();
    let mut ready = 0;
    while started.elapsed() < Duration::from_millis(1500) || (ready < 2 && started.elapsed() < Duration::from_secs(10))
    {
        let balances: Vec<u64> = reader.get_many(&ids).await.unwrap().into_iter().map(|v| v.unwrap().balance).collect();
        assert_eq!(balances, vec![10; 20], "version 1 while a partition of version 2 is held back");
        ready = v2.parts().iter().filter(|p| p.status().state == MemberState::Running).count();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(ready, 2, "two partitions of version 2 caught up and wait: {:?}", v2.status());
    drop(held);
    let started = std::time::Instant::now();
    loop {
        let balances: Vec<u64> = reader.get_many(&ids).await.unwrap().into_iter().map(|v| v.unwrap().balance).collect();
        assert!(balances == vec![10; 20] || balances == vec![20; 20], "one version everywhere: {balances:?}");
        if balances == vec![20; 20] {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "version 2 never switched: {:?}", v2.status());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(reader.status().await.unwrap().live.unwrap().version, 2);
    // The partitions of version 1 stop: a newer version is live.
    let stopped = v1.wait_until(|s| s.state == MemberState::Failed).await;
    assert!(stopped.last_error.unwrap_or_default().contains("at version 2"), "{:?}", v1.status());
    stop_v1.send(()).ok();
    let _ = running_v1.await.unwrap();
    stop_v2.send(()).unwrap();
    running_v2.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_release_waits_for_the_older_one_to_stop_and_the_older_one_keeps_every_partition_current() {
    let events = MemoryEventStore::new();
    let views = MemoryViewStore::default();
    let leases = MemoryLeases::default();
    let engine = Cqrs::<Account, _>::new(events.clone());
    let ids: Vec<String> = (0..12).map(|n| format!("acc-{n}")).collect();
    for id in &ids {
        engine.execute(open(id)).await.unwrap();
    }
    let reader = Reader::<ListedBalances>::new(views.clone()).partitioned();
    let projector = Projector::new(events.clone(), views.clone()).with_leases(leases.clone());
    let spawn = |doubled: bool| {
        let mut group = projector.group();
        let options = ProjectionOptions::new().partitions(4);
        let handle =
            if doubled { group.add_with(DoubledBalances, options) } else { group.add_with(ListedBalances, options) };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        (
            handle,
            stop,
            tokio::spawn(group.run(async {
                stopped.await.ok();
            })),
        )
    };
    let (_v1, stop_v1, running_v1) = spawn(false);
    let (_v1b, stop_v1b, running_v1b) = spawn(false);
    let head = events.head().await.unwrap().unwrap();
    reader.wait_for(head, Duration::from_secs(10)).await.unwrap();
    // A process of version 2 joins: it runs no partition while a version 1 process runs, and
    // every partition's views stay current, also once one of the two version 1 processes
    // stopped (the other takes its partitions over, not the newer release).
    let (v2, stop_v2, running_v2) = spawn(true);
    let joined = std::time::Instant::now();
    let mut round = 0;
    let mut stop_v1b = Some(stop_v1b);
    while joined.elapsed() < Duration::from_secs(7) {
        if joined.elapsed() > Duration::from_secs(2)
            && let Some(stop) = stop_v1b.take()
        {
            stop.send(()).unwrap();
        }
        round += 1;
        for id in &ids {
            engine.execute(deposit(id, 1)).await.unwrap();
        }
        let head = events.head().await.unwrap().unwrap();
        reader.wait_for(head, Duration::from_secs(5)).await.unwrap_or_else(|e| {
            panic!("views froze {:?} after version 2 joined: {e}; version 2: {:?}", joined.elapsed(), v2.status())
        });
        let balances: Vec<u64> = reader.get_many(&ids).await.unwrap().into_iter().map(|v| v.unwrap().balance).collect();
        assert_eq!(balances, vec![round; ids.len()], "version 1's views, current");
        assert_eq!(running(&[&v2]), vec![0], "version 2 runs no partition while version 1 runs");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    running_v1b.await.unwrap().unwrap();
    // Version 1 stops: version 2 takes every partition, builds them, and switches.
    stop_v1.send(()).unwrap();
    running_v1.await.unwrap().unwrap();
    let stopped = std::time::Instant::now();
    loop {
        let balances: Vec<u64> = reader.get_many(&ids).await.unwrap().into_iter().map(|v| v.unwrap().balance).collect();
        if balances == vec![2 * round; ids.len()] {
            println!("version 2 live {:?} after version 1 stopped", stopped.elapsed());
            break;
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(15),
            "version 2 never switched: {balances:?} {:?}",
            v2.status()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(reader.status().await.unwrap().live.unwrap().version, 2);
    stop_v2.send(()).unwrap();
    running_v2.await.unwrap().unwrap();
}

//! Views, checkpoints, projectors and leases on PostgreSQL.

use eventloom_core::store::Refusal;
use std::time::Duration;

use eventloom_core::prelude::*;
use eventloom_core::testing::view_store;
use eventloom_core::{
    BoxError, Projection,
    read::{Projector, ViewReader},
    store::LeaseManager,
    write::Cqrs,
};
use eventloom_postgres::{PgLeases, PgViewStore};

use crate::domain::*;
use crate::support::{PrivateServer, database_url, raw, store, store_at};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pg_view_store_conforms() {
    view_store::run(|| async { PgViewStore::new(&store().await) }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn projector_over_pg_views_conforms() {
    eventloom_core::testing::projector::run(|| async { PgViewStore::new(&store().await) }).await;
}

/// Migration 13 keeps the 18-argument `commit_generation` that processes of the previous release
/// call during a rolling deploy: it commits as it did, resolving no dead letter, and refuses a
/// stale batch as it did.
#[tokio::test]
async fn the_previous_releases_commit_goes_on_working_after_migration_14() {
    use eventloom_core::store::{DeadLetter, ViewCommit, ViewStore};
    let store = store().await;
    let views = PgViewStore::new(&store);
    let g = views.begin_generation("p", 1, 0).await.unwrap().unwrap().id;
    views.go_live("p", g, 0).await.unwrap().unwrap();
    let letter = DeadLetter::new(Position::new(1, 1), StreamId::new("account", "a").unwrap(), 1, "Broken", "a bug");
    let first = ViewCommit {
        generation: g,
        expected: None,
        checkpoint: Position::new(1, 1),
        fencing_token: 0,
        views: Vec::new(),
        dead_letters: vec![letter.clone()],
        resolved: Vec::new(),
    };
    views.commit("p", first).await.unwrap().unwrap();

    // The previous release's statement, as it was.
    let schema = store.config().schema_name().to_owned();
    let old = format!(
        "SELECT status, actual_tx, actual_seq, highest FROM \"{schema}\".commit_generation($1, $2, $3, $4, $5, $6, \
         $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)"
    );
    let client = raw(&database_url()).await;
    let none: Vec<&str> = Vec::new();
    let (ids, json) = (vec!["a"], vec![Some(r#""old""#)]);
    let call = |expected: i64| {
        let (old, client, none, ids, json) = (&old, &client, &none, &ids, &json);
        async move {
            let row = client
                .query_one(
                    old.as_str(),
                    &[
                        &"p",
                        &(g as i64),
                        &"1",
                        &expected,
                        &"1",
                        &2i64,
                        &0i64,
                        ids,
                        json,
                        none,
                        none,
                        none,
                        none,
                        none,
                        none,
                        none,
                        none,
                        none,
                    ],
                )
                .await
                .unwrap();
            (row.get::<_, i32>("status"), row.get::<_, Option<i64>>("actual_seq"))
        }
    };
    assert_eq!(call(1).await, (0, Some(2)), "committed");
    assert_eq!(views.read_views("p", &["a".into()]).await.unwrap(), vec![Some(r#""old""#.to_owned())]);
    assert_eq!(views.status("p").await.unwrap().checkpoint(), Some(Position::new(1, 2)));
    assert_eq!(views.dead_letters("p").await.unwrap(), vec![letter], "no dead letter resolved");
    assert_eq!(call(1).await, (1, Some(2)), "a stale batch is refused: the checkpoint moved");
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
struct Balance {
    balance: u64,
    applied: u64,
    version: u64,
}

struct Balances;

impl Projection for Balances {
    const NAME: &'static str = "balances";
    type Events = Account;
    type View = Balance;
    fn apply(&self, view: &mut Option<Balance>, e: &EventEnvelope<AccountEvent>) -> Result<(), BoxError> {
        let view = view.get_or_insert_with(Balance::default);
        if let AccountEvent::Deposited { amount } = e.event {
            view.balance += amount;
        }
        view.applied += 1;
        view.version = e.version;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_projector_on_postgres_runs_live_and_queries_read_their_writes() {
    let events = store().await;
    let views = PgViewStore::new(&events);
    let cqrs = Cqrs::new(events.clone());
    cqrs.execute(Open { id: "a".into() }).await.unwrap();
    let projector = Projector::new(events.clone(), views.clone()).with_leases(PgLeases::new(&events));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(async move { projector.run(Balances, async { stopped.await.unwrap_or(()) }).await });
    let reader = ViewReader::<Balance>::new(views.clone(), Balances::NAME);
    for i in 1..=20 {
        let done = cqrs.execute(Deposit { id: "a".into(), amount: i }).await.unwrap();
        reader.wait_for(done.position, Duration::from_secs(10)).await.unwrap();
        assert_eq!(reader.get("a").await.unwrap().unwrap().version, done.version);
    }
    stop.send(()).unwrap();
    running.await.unwrap().unwrap();
    let view = reader.get("a").await.unwrap().unwrap();
    assert_eq!((view.balance, view.applied, view.version), (210, 21, 21));
    // A restarted projector resumes from the checkpoint: nothing applied twice.
    cqrs.execute(Deposit { id: "a".into(), amount: 1 }).await.unwrap();
    Projector::new(events.clone(), views.clone())
        .with_leases(PgLeases::new(&events))
        .catch_up(&Balances)
        .await
        .unwrap();
    let view = reader.get("a").await.unwrap().unwrap();
    assert_eq!((view.applied, view.version), (22, 22));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_lease_holder_at_a_time_tokens_grow_and_a_standby_takes_over() {
    // Kills backends: a server of its own.
    let server = PrivateServer::start();
    let events = store_at(&server.url()).await;
    let leases = PgLeases::new(&events).with_check_interval(Duration::from_millis(100));
    let first = leases.acquire("p").await.unwrap();
    let standby = {
        let leases = leases.clone();
        tokio::spawn(async move { leases.acquire("p").await.unwrap() })
    };
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(!standby.is_finished(), "the standby waits while the leader holds the lease");
    // Another name is independent.
    let other = leases.acquire("q").await.unwrap();
    assert_eq!(other.token(), 1);
    let token = first.token();
    drop(first);
    let second =
        tokio::time::timeout(Duration::from_secs(5), standby).await.expect("takes over within seconds").unwrap();
    assert!(second.token() > token, "tokens only grow: {} then {}", token, second.token());

    // The leader's connection dies (as when its host does): the lease reports lost, and a
    // standby takes over.
    let second = second;
    let admin = raw(&server.url()).await;
    let key_holders = admin
        .query("SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid <> pg_backend_pid()", &[])
        .await
        .unwrap();
    assert!(!key_holders.is_empty());
    let standby = {
        let leases = leases.clone();
        tokio::spawn(async move { leases.acquire("p").await.unwrap() })
    };
    for row in key_holders {
        let pid: i32 = row.get(0);
        admin.execute("SELECT pg_terminate_backend($1)", &[&pid]).await.unwrap();
    }
    tokio::time::timeout(Duration::from_secs(5), second.lost()).await.expect("the lost lease is noticed");
    let third = tokio::time::timeout(Duration::from_secs(5), standby).await.expect("a standby takes over").unwrap();
    assert!(third.token() > second.token());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_upgrade_keeps_the_views_as_the_live_generation_one() {
    use eventloom_core::{
        Error, Position,
        store::{ProjectionStatus, ViewCommit, ViewStore, ViewWrite},
    };
    // A schema as migrations 1 to 3 left it, with views, checkpoints and dead letters.
    let url = crate::support::database_url();
    let schema = crate::support::fresh_schema();
    let admin = raw(&url).await;
    let s = format!("\"{schema}\"");
    admin
        .batch_execute(&format!(
            "CREATE SCHEMA {s}; CREATE TABLE {s}.migrations \
               (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now()); \
             INSERT INTO {s}.migrations (version, name) VALUES (1, 'event store'), (2, 'read side'), (3, 'dead letters');"
        ))
        .await
        .unwrap();
    for sql in [
        include_str!("../../sql/0001_event_store.sql"),
        include_str!("../../sql/0002_read_side.sql"),
        include_str!("../../sql/0003_dead_letters.sql"),
    ] {
        admin.batch_execute(&sql.replace("{schema}", &s)).await.unwrap();
    }
    let letter = serde_json::to_string(&eventloom_core::store::DeadLetter::new(
        Position::new(12, 3),
        eventloom_core::StreamId::new("account", "a").unwrap(),
        2,
        "Odd",
        "bad",
    ))
    .unwrap();
    admin
        .batch_execute(&format!(
            "INSERT INTO {s}.views VALUES ('built', 'a', '{{\"n\":1}}'), ('built', 'b', '{{\"n\":2}}'), \
                                          ('reset', 'stale', '1'); \
             INSERT INTO {s}.checkpoints VALUES ('built', '12', 3, 7), ('reset', NULL, NULL, 4); \
             INSERT INTO {s}.dead_letters (projection, letter) VALUES ('built', '{letter}'), ('reset', '{letter}');"
        ))
        .await
        .unwrap();

    let config = eventloom_postgres::PgConfig::from_url(&url).unwrap().schema(schema).unwrap();
    let store = eventloom_postgres::PgEventStore::connect(config).await.unwrap();
    store.migrate().await.unwrap();
    let views = PgViewStore::new(&store);

    // A projection with a checkpoint: generation 1, version 1, live, with its views, dead
    // letters and fencing token.
    let status = views.status("built").await.unwrap();
    let live = status.live.unwrap();
    assert_eq!((live.id, live.version, live.checkpoint, status.building), (1, 1, Some(Position::new(12, 3)), None));
    assert_eq!(
        views.read_views("built", &["a".into(), "b".into(), "c".into()]).await.unwrap(),
        vec![Some(r#"{"n": 1}"#.into()), Some(r#"{"n": 2}"#.into()), None]
    );
    let letters = views.dead_letters("built").await.unwrap();
    assert_eq!((letters.len(), letters[0].reason.as_str()), (1, "bad"));
    assert!(matches!(views.go_live("built", 1, 6).await, Ok(Err(Refusal::Fenced { highest: 7, .. }))));
    let commit = ViewCommit {
        generation: 1,
        expected: Some(Position::new(12, 3)),
        checkpoint: Position::new(13, 1),
        fencing_token: 7,
        views: vec![ViewWrite::set("c", "3")],
        dead_letters: Vec::new(),
        resolved: Vec::new(),
    };
    views.commit("built", commit).await.unwrap().unwrap();
    assert_eq!(views.read_views("built", &["c".into()]).await.unwrap(), vec![Some("3".into())]);
    // A rebuild gets a new generation id, and replaces generation 1 when it goes live, once
    // it has caught up; its views are `json`, the exact text written, `\u0000` included.
    let next = views.begin_generation("built", 2, 7).await.unwrap().unwrap();
    assert_eq!(next.id, 2);
    assert!(matches!(views.go_live("built", next.id, 7).await, Ok(Err(Refusal::CheckpointMoved { .. }))), "behind");
    let json = r#"{"s": "a\u0000b","n":1}"#;
    let build = ViewCommit {
        generation: next.id,
        expected: None,
        checkpoint: Position::new(13, 1),
        fencing_token: 7,
        views: vec![ViewWrite::set("d", json)],
        dead_letters: Vec::new(),
        resolved: Vec::new(),
    };
    views.commit("built", build).await.unwrap().unwrap();
    views.go_live("built", next.id, 7).await.unwrap().unwrap();
    assert_eq!(views.read_views("built", &["a".into(), "d".into()]).await.unwrap(), vec![None, Some(json.into())]);
    assert!(views.dead_letters("built").await.unwrap().is_empty());

    // A projection whose checkpoint was reset: nothing live (its stale rows are gone), its token
    // kept, and generation ids start after 1.
    assert_eq!(views.status("reset").await.unwrap(), ProjectionStatus::default());
    assert!(matches!(views.read_views("reset", &["stale".into()]).await, Err(Error::NotBuilt { .. })));
    assert!(matches!(views.begin_generation("reset", 1, 3).await, Ok(Err(Refusal::Fenced { highest: 4, .. }))));
    let g = views.begin_generation("reset", 1, 4).await.unwrap().unwrap();
    assert_eq!(g.id, 2);
    assert_eq!(views.load_views("reset", 1, &["stale".into()]).await.unwrap(), vec![None]);
    assert_eq!(views.load_views("reset", g.id, &["stale".into()]).await.unwrap(), vec![None]);
}

/// Corners the conformance suite leaves open, answered as the in-memory reference store answers
/// them: an index entry whose view was deleted without leaving it (skipped, the cursor moves
/// past it), a page of zero, and the fence a refused commit raises.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn corners_match_the_memory_store() {
    use eventloom_core::{
        IndexEntry, Position,
        memory::MemoryViewStore,
        store::{IndexKey, ListCursor, ViewCommit, ViewStore, ViewWrite},
    };

    async fn script(store: &dyn ViewStore) -> Vec<String> {
        let mut out = Vec::new();
        let g = store.begin_generation("p", 1, 1).await.unwrap().unwrap().id;
        store.go_live("p", g, 1).await.unwrap().unwrap();
        let key = IndexKey::new("k", "v");
        let writes = ["a", "b", "c", "d"]
            .iter()
            .map(|id| ViewWrite::set(*id, "1").joining(vec![IndexEntry::new("k", "v").ordered_by("o")]))
            .collect();
        let commit = |expected: Option<u64>, checkpoint: u64, token: u64, views: Vec<ViewWrite>| ViewCommit {
            generation: g,
            expected: expected.map(|s| Position::new(1, s)),
            checkpoint: Position::new(1, checkpoint),
            fencing_token: token,
            views,
            dead_letters: Vec::new(),
            resolved: Vec::new(),
        };
        store.commit("p", commit(None, 1, 1, writes)).await.unwrap().unwrap();
        // "b" and "d" deleted without leaving their entries; "c" joins twice, by two sort keys.
        let writes = vec![
            ViewWrite::delete("b"),
            ViewWrite::delete("d"),
            ViewWrite::set("c", "2").joining(vec![IndexEntry::new("k", "v").ordered_by("")]),
        ];
        store.commit("p", commit(Some(1), 2, 1, writes)).await.unwrap().unwrap();
        for limit in [0, 1, 2, 3, 10] {
            let mut after: Option<ListCursor> = None;
            loop {
                let page = store
                    .list("p", &key, &eventloom_core::read::OrderRange::all(), after.as_ref(), limit)
                    .await
                    .unwrap();
                out.push(format!("limit {limit}: {page:?}"));
                match page.next {
                    Some(next) => after = Some(next),
                    None => break,
                }
            }
        }
        out.push(format!("{:?}", store.count("p", &[key.clone(), key.clone(), IndexKey::new("k", "w")]).await));
        out.push(format!("{:?}", store.count("p", &[]).await));
        out.push(format!("{:?}", store.read_views("p", &[]).await));
        out.push(format!("{:?}", store.read_views("p", &["a".into(), "a".into(), "b".into()]).await));
        // Checkpoint moved with a higher token, then the old token.
        out.push(format!("{:?}", store.commit("p", commit(Some(1), 3, 5, Vec::new())).await));
        out.push(format!("{:?}", store.commit("p", commit(Some(2), 3, 1, Vec::new())).await));
        // Gone with a higher token, then the old token.
        let gone = ViewCommit { generation: g + 100, ..commit(Some(2), 3, 9, Vec::new()) };
        out.push(format!("{:?}", store.commit("p", gone).await));
        out.push(format!("{:?}", store.commit("p", commit(Some(2), 3, 5, Vec::new())).await));
        out.push(format!("{:?}", store.go_live("p", g, 4).await));
        out.push(format!("{:?}", store.go_live("p", g + 1, 5).await));
        out.push(format!("{:?}", store.go_live("q", 1, 0).await));
        out.push(format!(
            "{:?}",
            store.commit("q", ViewCommit { generation: 1, ..commit(None, 1, 0, Vec::new()) }).await
        ));
        out.push(format!("{:?}", store.status("q").await));
        out.push(format!("{:?}", store.load_views("p", u64::MAX, &["a".into()]).await));
        out.push(format!("{:?}", store.load_views("p", g, &[]).await));
        out.push(format!("{:?}", store.status("p").await));
        out
    }

    let memory = script(&MemoryViewStore::default()).await;
    let postgres = script(&PgViewStore::new(&store().await)).await;
    for (m, p) in memory.iter().zip(&postgres) {
        assert_eq!(p, m);
    }
    assert_eq!(postgres.len(), memory.len());
}

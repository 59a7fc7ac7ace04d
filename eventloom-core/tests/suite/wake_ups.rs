//! Waits for views woken by the view store's change signal ([`ViewStore::changes`]) rather than
//! by polling: with the safety poll set to minutes, only the signal can end them in time, and
//! the status reads they made show they did not poll.

use std::time::{Duration, Instant};

use eventloom_core::memory::MemoryViewStore;
use eventloom_core::read::ViewReader;
use eventloom_core::store::{ProjectionStop, StopKind};
use eventloom_core::store::{ViewCommit, ViewStore, ViewWrite};
use eventloom_core::testing::CountingStatus;
use eventloom_core::{Error, Position};

const SAFETY_POLL: Duration = Duration::from_secs(600);

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_on_memory_views_is_woken_by_the_commit_not_by_polling() {
    let store = MemoryViewStore::default();
    let g = store.begin_generation("p", 1, 0).await.unwrap().unwrap().id;
    store.go_live("p", g, 0).await.unwrap().unwrap();
    let views = CountingStatus::new(store.clone());
    let reader = ViewReader::<u64>::new(views.clone(), "p").with_safety_poll(SAFETY_POLL);
    let mut expected = None;
    for n in 1..=3u64 {
        let position = Position::new(n, n);
        let waiting = {
            let reader = reader.clone();
            tokio::spawn(async move {
                reader.wait_for(position, Duration::from_secs(60)).await.unwrap();
                Instant::now()
            })
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        let reads = views.status_reads();
        let start = Instant::now();
        // Written through another handle of the store, as a projector would.
        store.commit("p", commit(g, expected, position)).await.unwrap().unwrap();
        let at = tokio::time::timeout(Duration::from_secs(2), waiting).await.expect("woken in time").unwrap();
        let reads = views.status_reads() - reads;
        println!("woken {:?} after the commit, with {reads} status reads", at - start);
        // Polling every 2 ms would have read it a hundred times in the 200 ms before.
        assert!(reads <= 2, "{reads} status reads: the wait polled");
        assert_eq!(reader.get("a").await.unwrap(), Some(n));
        expected = Some(position);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_failure_ends_a_wait_at_once_without_polling() {
    let store = MemoryViewStore::default();
    let g = store.begin_generation("p", 1, 0).await.unwrap().unwrap().id;
    store.go_live("p", g, 0).await.unwrap().unwrap();
    let reader = ViewReader::<u64>::new(store.clone(), "p").with_safety_poll(SAFETY_POLL);
    let waiting = {
        let reader = reader.clone();
        tokio::spawn(async move { reader.wait_for(Position::new(5, 5), Duration::from_secs(60)).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stop = ProjectionStop::new(StopKind::Failed, Some(Position::new(5, 5)), "a bug").at(g, None);
    store.record_stop("p", Some(&stop), 0).await.unwrap().unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(2), waiting).await.expect("ended in time").unwrap();
    assert!(matches!(ended, Err(Error::Stopped { .. })), "{ended:?}");
}

/// A store without a change signal (the trait's default) is polled, as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_without_a_change_signal_is_polled() {
    #[derive(Clone)]
    struct Silent(MemoryViewStore);
    let store = MemoryViewStore::default();
    let g = store.begin_generation("p", 1, 0).await.unwrap().unwrap().id;
    store.go_live("p", g, 0).await.unwrap().unwrap();
    let views = CountingStatus::new(Silent(store.clone()));
    let reader = ViewReader::<u64>::new(views.clone(), "p").with_safety_poll(SAFETY_POLL);
    let waiting = {
        let reader = reader.clone();
        tokio::spawn(async move { reader.wait_for(Position::new(1, 1), Duration::from_secs(60)).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    store.commit("p", commit(g, None, Position::new(1, 1))).await.unwrap().unwrap();
    tokio::time::timeout(Duration::from_secs(2), waiting).await.expect("seen by polling").unwrap().unwrap();
    assert!(views.status_reads() > 10, "{} status reads", views.status_reads());

    impl ViewStore for Silent {
        fn status<'a>(
            &'a self,
            p: &'a str,
        ) -> eventloom_core::store::BoxFuture<'a, eventloom_core::Result<eventloom_core::store::ProjectionStatus>>
        {
            self.0.status(p)
        }
        fn begin_generation<'a>(
            &'a self,
            p: &'a str,
            v: u32,
            t: u64,
        ) -> eventloom_core::store::BoxFuture<
            'a,
            eventloom_core::Result<eventloom_core::store::Written<eventloom_core::store::Generation>>,
        > {
            self.0.begin_generation(p, v, t)
        }
        fn load_views<'a>(
            &'a self,
            p: &'a str,
            g: u64,
            ids: &'a [String],
        ) -> eventloom_core::store::BoxFuture<'a, eventloom_core::Result<Vec<Option<String>>>> {
            self.0.load_views(p, g, ids)
        }
        fn commit<'a>(
            &'a self,
            p: &'a str,
            c: ViewCommit,
        ) -> eventloom_core::store::BoxFuture<'a, eventloom_core::Result<eventloom_core::store::Written>> {
            self.0.commit(p, c)
        }
        fn go_live<'a>(
            &'a self,
            p: &'a str,
            g: u64,
            t: u64,
        ) -> eventloom_core::store::BoxFuture<'a, eventloom_core::Result<eventloom_core::store::Written>> {
            self.0.go_live(p, g, t)
        }
        fn read_views<'a>(
            &'a self,
            p: &'a str,
            ids: &'a [String],
        ) -> eventloom_core::store::BoxFuture<'a, eventloom_core::Result<Vec<Option<String>>>> {
            self.0.read_views(p, ids)
        }
        fn list<'a>(
            &'a self,
            p: &'a str,
            k: &'a eventloom_core::store::IndexKey,
            r: &'a eventloom_core::read::OrderRange,
            a: Option<&'a eventloom_core::store::ListCursor>,
            l: usize,
        ) -> eventloom_core::store::BoxFuture<'a, eventloom_core::Result<eventloom_core::store::ViewPage>> {
            self.0.list(p, k, r, a, l)
        }
        fn count<'a>(
            &'a self,
            p: &'a str,
            k: &'a [eventloom_core::store::IndexKey],
        ) -> eventloom_core::store::BoxFuture<'a, eventloom_core::Result<Vec<u64>>> {
            self.0.count(p, k)
        }
        fn list_generation<'a>(
            &'a self,
            p: &'a str,
            g: u64,
            k: &'a eventloom_core::store::IndexKey,
            r: &'a eventloom_core::read::OrderRange,
            a: Option<&'a eventloom_core::store::ListCursor>,
            l: usize,
        ) -> eventloom_core::store::BoxFuture<'a, eventloom_core::Result<Vec<eventloom_core::store::IndexedView>>>
        {
            self.0.list_generation(p, g, k, r, a, l)
        }
        fn count_generation<'a>(
            &'a self,
            p: &'a str,
            g: u64,
            k: &'a [eventloom_core::store::IndexKey],
        ) -> eventloom_core::store::BoxFuture<'a, eventloom_core::Result<Vec<u64>>> {
            self.0.count_generation(p, g, k)
        }
        fn dead_letters<'a>(
            &'a self,
            p: &'a str,
        ) -> eventloom_core::store::BoxFuture<'a, eventloom_core::Result<Vec<eventloom_core::store::DeadLetter>>>
        {
            self.0.dead_letters(p)
        }
        fn record_stop<'a>(
            &'a self,
            p: &'a str,
            s: Option<&'a ProjectionStop>,
            t: u64,
        ) -> eventloom_core::store::BoxFuture<'a, eventloom_core::Result<eventloom_core::store::Written>> {
            self.0.record_stop(p, s, t)
        }
        fn projections<'a>(&'a self) -> eventloom_core::store::BoxFuture<'a, eventloom_core::Result<Vec<String>>> {
            self.0.projections()
        }
        fn remove_dead_letters<'a>(
            &'a self,
            p: &'a str,
            w: &'a eventloom_core::store::DeadLetterSelection,
            t: u64,
        ) -> eventloom_core::store::BoxFuture<'a, eventloom_core::Result<eventloom_core::store::Written<u64>>> {
            self.0.remove_dead_letters(p, w, t)
        }
    }
}

//! The conformance suite of the [`Projector`] over a [`ViewStore`]: what no accepted event may
//! do to a read model, whatever store keeps it.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! eventloom_core::testing::projector::run(|| async { eventloom_core::MemoryViewStore::default() }).await;
//! # });
//! ```

use std::future::Future;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::{
    Aggregate, BoxError, Error, Event, EventEnvelope, EventStore, EventType, ExpectedVersion, IndexEntry, IndexKey,
    MemoryEventStore, Metadata, NewEvent, PoisonPolicy, Position, Projection, Projector, StopKind, StreamId, Upcasters,
    ViewReader, ViewStore,
};

/// The events of the suite's aggregate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Note {
    /// Adds a tag to the card.
    Tagged {
        /// The tag.
        tag: String,
    },
    /// Sets the card's ratio to `1 / score` (infinite for 0: a view that cannot be stored).
    Scored {
        /// The score.
        score: f64,
    },
    /// Makes `apply` change the view, then fail.
    Failing,
}

impl Event for Note {
    const TYPES: &'static [EventType] =
        &[EventType::new("Tagged", 1), EventType::new("Scored", 1), EventType::new("Failing", 1)];

    fn event_type(&self) -> EventType {
        match self {
            Note::Tagged { .. } => Self::TYPES[0],
            Note::Scored { .. } => Self::TYPES[1],
            Note::Failing => Self::TYPES[2],
        }
    }

    fn encode(&self) -> Result<String, serde_json::Error> {
        crate::__private::encode_variant(self)
    }

    fn decode(event_type: &str, payload: &str) -> Result<Self, crate::DecodeError> {
        let index = Self::TYPES.iter().position(|t| t.name == event_type).ok_or(crate::DecodeError::UnknownType)?;
        let index = u32::try_from(index).map_err(|_| crate::DecodeError::UnknownType)?;
        Ok(crate::__private::decode_variant(index, payload)?)
    }
}

/// The suite's aggregate: a card of notes.
#[derive(Debug, Default)]
pub struct Noted;

impl Aggregate for Noted {
    const TYPE: &'static str = "noted";
    type Event = Note;
    type Error = std::convert::Infallible;
    fn apply(&mut self, _: &Note) {}
}

/// A card: its tags, its ratio and how many events it folded.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Card {
    /// Tags, in order.
    pub tags: Vec<String>,
    /// `1 / score` of the last score.
    pub ratio: f64,
    /// Events folded.
    pub events: u32,
}

/// One card per stream, listed under each tag and sorted by its first tag.
struct Cards;

impl Projection for Cards {
    const NAME: &'static str = "conformance_cards";
    type Aggregate = Noted;
    type View = Card;

    fn index(&self, _: &str, card: &Card) -> Vec<IndexEntry> {
        let order = card.tags.first().cloned().unwrap_or_default();
        card.tags.iter().map(|tag| IndexEntry::new("tag", tag.clone()).ordered_by(order.clone())).collect()
    }

    fn apply(&self, card: &mut Option<Card>, e: &EventEnvelope<Note>) -> Result<(), BoxError> {
        let card = card.get_or_insert_with(Card::default);
        card.events += 1;
        match &e.event {
            Note::Tagged { tag } => card.tags.push(tag.clone()),
            Note::Scored { score } => card.ratio = 1.0 / score,
            Note::Failing => {
                card.tags.push("half-done".into());
                return Err("failing on purpose".into());
            }
        }
        Ok(())
    }
}

/// One count per tag, under an id three times the tag.
struct ByTag;

impl Projection for ByTag {
    const NAME: &'static str = "conformance_by_tag";
    type Aggregate = Noted;
    type View = u64;

    fn view_id(&self, e: &EventEnvelope<Note>) -> Option<String> {
        match &e.event {
            Note::Tagged { tag } => Some(tag.repeat(3)),
            _ => None,
        }
    }

    fn apply(&self, count: &mut Option<u64>, _: &EventEnvelope<Note>) -> Result<(), BoxError> {
        *count.get_or_insert(0) += 1;
        Ok(())
    }
}

async fn append(
    events: &MemoryEventStore,
    stream: &str,
    event_type: &str,
    schema_version: u32,
    payload: String,
) -> Position {
    let stream = StreamId::new(Noted::TYPE, stream).expect("a valid stream id");
    let event =
        NewEvent { event_type: event_type.to_owned().into(), schema_version, payload, metadata: Metadata::default() };
    events.append(&stream, ExpectedVersion::Any, vec![event]).await.expect("append").position
}

async fn tag(events: &MemoryEventStore, stream: &str, tag: &str) -> Position {
    let payload = serde_json::json!({ "tag": tag }).to_string();
    append(events, stream, "Tagged", 1, payload).await
}

/// Runs every case, each on a fresh store from `make`.
pub async fn run<S, F, Fut>(make: F)
where
    S: ViewStore + Clone,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    limits_never_stop_a_projection(make().await).await;
    a_failing_event_is_found_event_by_event(make().await, make().await).await;
    newer_events_are_never_skipped(make().await, make().await).await;
    unknown_types_are_skipped_and_renames_followed(make().await).await;
    a_stop_is_recorded_for_every_reader(make().await).await;
    a_runner_stands_by_for_a_newer_release(make().await).await;
    a_stop_written_past_does_not_hold(make().await).await;
    a_write_the_store_refuses_is_found_by_writing_one_event_at_a_time(make().await, make().await).await;
}

/// An accepted event whose view, index value, sort key or view id is over a store's limit, or
/// holds a NUL byte, is projected: over-long index values and ids are kept as digests that
/// queries still find by the original value, sort keys are cut.
pub async fn limits_never_stop_a_projection<S: ViewStore + Clone>(views: S) {
    let events = MemoryEventStore::new();
    let crabs = "🦀".repeat(130); // 520 bytes
    let more_crabs = "🦀".repeat(131);
    let accents = "é".repeat(300); // 600 bytes
    let nul = "x\0y";
    for (stream, value) in [("a", crabs.as_str()), ("b", nul), ("c", accents.as_str()), ("d", &more_crabs), ("e", "ok")]
    {
        tag(&events, stream, value).await;
    }
    let projector = Projector::new(events.clone(), views.clone());
    projector.catch_up(&Cards).await.expect("long index values and sort keys do not stop the projection");
    projector.catch_up(&ByTag).await.expect("long view ids do not stop the projection");
    let cards = ViewReader::<Card>::new(views.clone(), Cards::NAME);
    for (value, stream) in [(&crabs, "a"), (&nul.to_owned(), "b"), (&accents, "c"), (&more_crabs, "d")] {
        let page = cards.list(&IndexKey::new("tag", value.as_str()), None, 10).await.expect("list");
        let listed: Vec<&str> = page.views.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(listed, vec![stream], "an equality query on a value over the limit finds exactly its view");
        assert_eq!(page.views[0].1.tags, vec![value.clone()], "the view keeps the whole value");
    }
    let keys: Vec<IndexKey> =
        [&crabs, &more_crabs, &accents].iter().map(|v| IndexKey::new("tag", v.as_str())).collect();
    assert_eq!(cards.count(&keys).await.expect("count"), vec![1, 1, 1]);
    let counts = ViewReader::<u64>::new(views.clone(), ByTag::NAME);
    assert_eq!(counts.get(&crabs.repeat(3)).await.expect("get"), Some(1), "a view id over the limit is found");
    assert_eq!(counts.get(&more_crabs.repeat(3)).await.expect("get"), Some(1));
    assert_eq!(counts.get("okokok").await.expect("get"), Some(1));
    assert!(views.dead_letters(Cards::NAME).await.expect("dead letters").is_empty(), "nothing was skipped");
}

/// A batch in which one event's view cannot be stored (an infinite float) and another's `apply`
/// fails after changing the view: under `DeadLetter` both are skipped and recorded, each view
/// as it was before them, the others folded; under `Stop` the events before the first are
/// written and the projection stops at its position, again and again, without folding any
/// event twice.
pub async fn a_failing_event_is_found_event_by_event<S: ViewStore + Clone>(dead_lettering: S, stopping: S) {
    let events = MemoryEventStore::new();
    let first = tag(&events, "s", "t1").await;
    let infinite = append(&events, "s", "Scored", 1, r#"{"score":0.0}"#.into()).await;
    tag(&events, "s", "t2").await;
    let failing = append(&events, "s", "Failing", 1, "null".into()).await;
    let last = tag(&events, "s", "t3").await;

    let projector = Projector::new(events.clone(), dead_lettering.clone()).with_poison_policy(PoisonPolicy::DeadLetter);
    assert_eq!(projector.catch_up(&Cards).await.expect("catch up"), Some(last));
    let card = ViewReader::<Card>::new(dead_lettering.clone(), Cards::NAME).get("s").await.expect("get");
    let expected = Card { tags: vec!["t1".into(), "t2".into(), "t3".into()], ratio: 0.0, events: 3 };
    assert_eq!(card, Some(expected), "each skipped event left the view as it was before it");
    let letters = dead_lettering.dead_letters(Cards::NAME).await.expect("dead letters");
    assert_eq!(letters.iter().map(|d| d.position).collect::<Vec<_>>(), vec![infinite, failing]);
    assert!(letters[0].reason.contains("inf"), "the reason names the problem: {}", letters[0].reason);

    let projector = Projector::new(events.clone(), stopping.clone());
    for _ in 0..2 {
        match projector.catch_up(&Cards).await {
            Err(Error::Projection { position, .. }) => assert_eq!(position, infinite, "stops at the event"),
            other => panic!("expected the projection to stop at {infinite}, got {other:?}"),
        }
        let reader = ViewReader::<Card>::new(stopping.clone(), Cards::NAME);
        let status = reader.status().await.expect("status");
        let checkpoint = status.building.or(status.live).and_then(|g| g.checkpoint);
        assert_eq!(checkpoint, Some(first), "the events before it are written");
    }
}

/// An event at a schema version newer than the code's stops the projection there whatever the
/// policy, after writing the events before it; it is never dead-lettered.
pub async fn newer_events_are_never_skipped<S: ViewStore + Clone>(dead_lettering: S, stopping: S) {
    let events = MemoryEventStore::new();
    let first = tag(&events, "s", "t1").await;
    let newer = append(&events, "s", "Tagged", 99, r#"{"tag":"from the future"}"#.into()).await;
    tag(&events, "s", "t2").await;
    for (views, policy) in [(dead_lettering, PoisonPolicy::DeadLetter), (stopping, PoisonPolicy::Stop)] {
        let projector = Projector::new(events.clone(), views.clone()).with_poison_policy(policy);
        match projector.catch_up(&Cards).await {
            Err(Error::NewerSchema { position, schema_version: 99, known: 1, .. }) => assert_eq!(position, newer),
            other => panic!("expected NewerSchema at {newer} under {policy:?}, got {other:?}"),
        }
        let status = views.status(Cards::NAME).await.expect("status");
        assert_eq!(status.building.or(status.live).and_then(|g| g.checkpoint), Some(first));
        assert!(views.dead_letters(Cards::NAME).await.unwrap_or_default().is_empty(), "never dead-lettered");
    }
}

/// By default a projection skips event types its code does not know (a newer release's), and
/// asks about a type by its name once upcast, so an upcaster that renames a type is followed.
pub async fn unknown_types_are_skipped_and_renames_followed<S: ViewStore + Clone>(views: S) {
    let events = MemoryEventStore::new();
    tag(&events, "s", "t1").await;
    append(&events, "s", "Unheard", 1, r#"{"x":1}"#.into()).await;
    append(&events, "s", "Labelled", 1, r#"{"label":"old"}"#.into()).await;
    let upcasters = Upcasters::new().add(("Labelled", 1), ("Tagged", 1), |mut v| {
        let label = v.get_mut("label").map(serde_json::Value::take).ok_or("no label")?;
        Ok(serde_json::json!({ "tag": label }))
    });
    let projector = Projector::new(events.clone(), views.clone()).with_upcasters(upcasters);
    projector.catch_up(&Cards).await.expect("an unknown type is skipped");
    let card = ViewReader::<Card>::new(views, Cards::NAME).get("s").await.expect("get").expect("a card");
    assert_eq!(card.tags, vec!["t1".to_owned(), "old".to_owned()], "the renamed type was folded");
    assert_eq!(card.events, 2, "the unknown type was not");
}

/// A runner that stops on an event records why in the view store: a query waiting for a later
/// position fails at once with [`Error::Stopped`] instead of running out its timeout, and the
/// status shows the stop until a runner writes past it.
pub async fn a_stop_is_recorded_for_every_reader<S: ViewStore + Clone>(views: S) {
    let events = MemoryEventStore::new();
    tag(&events, "s", "t1").await;
    let failing = append(&events, "s", "Failing", 1, "null".into()).await;
    let last = tag(&events, "s", "t2").await;
    let stopping = Projector::new(events.clone(), views.clone());
    let run = stopping.run(Cards, std::future::pending());
    match tokio::time::timeout(Duration::from_secs(20), run).await {
        Ok(Err(Error::Projection { position, .. })) => assert_eq!(position, failing),
        other => panic!("expected the run to stop at {failing}, got {other:?}"),
    }
    let stop = views.status(Cards::NAME).await.expect("status").stopped.expect("a recorded stop");
    assert_eq!((stop.kind, stop.position), (StopKind::Failed, Some(failing)));
    let reader = ViewReader::<Card>::new(views.clone(), Cards::NAME);
    let started = Instant::now();
    match reader.wait_for(last, Duration::from_secs(10)).await {
        Err(Error::Stopped { stop, .. }) => assert_eq!(stop.position, Some(failing)),
        other => panic!("a query waiting past the stop must fail with Error::Stopped, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(5), "at once, not after the timeout: {:?}", started.elapsed());
    let fixed = Projector::new(events.clone(), views.clone()).with_poison_policy(PoisonPolicy::DeadLetter);
    fixed.catch_up(&Cards).await.expect("a runner that skips the event");
    assert_eq!(views.status(Cards::NAME).await.expect("status").stopped, None, "cleared once written past");
    reader.wait_for(last, Duration::from_secs(10)).await.expect("the views caught up");
}

/// A runner that meets an event of a newer release never skips it: it records why, releases
/// its lease and stands by (it does not end), so that a runner of that release takes over;
/// waiting queries wait on.
pub async fn a_runner_stands_by_for_a_newer_release<S: ViewStore + Clone>(views: S) {
    let events = MemoryEventStore::new();
    let first = tag(&events, "s", "t1").await;
    let newer = append(&events, "s", "Tagged", 2, r#"{"tag":"v2"}"#.into()).await;
    let projector = Projector::new(events.clone(), views.clone())
        .with_poison_policy(PoisonPolicy::DeadLetter)
        .with_retry_delay(Duration::from_millis(20));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(async move {
        projector
            .run(Cards, async {
                let _ = stopped.await;
            })
            .await
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let recorded = loop {
        if let Some(stop) = views.status(Cards::NAME).await.expect("status").stopped {
            break stop;
        }
        assert!(Instant::now() < deadline, "no stop recorded");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!((recorded.kind, recorded.position), (StopKind::NeedsNewerRelease, Some(newer)));
    let status = views.status(Cards::NAME).await.expect("status");
    assert_eq!(status.building.or(status.live).and_then(|g| g.checkpoint), Some(first));
    let reader = ViewReader::<Card>::new(views.clone(), Cards::NAME);
    match reader.wait_for(newer, Duration::from_millis(300)).await {
        Err(Error::Timeout(_)) => {}
        other => panic!("a query waits for the newer runner, got {other:?}"),
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!running.is_finished(), "the runner stands by instead of ending");
    assert!(views.dead_letters(Cards::NAME).await.unwrap_or_default().is_empty(), "never dead-lettered");
    let _ = stop.send(());
    let ended = tokio::time::timeout(Duration::from_secs(10), running).await.expect("shuts down").expect("joins");
    ended.expect("a shutdown while standing by is not an error");
}

/// A stop that a runner has written past no longer holds, whether its record was left by a
/// runner whose clear failed or recorded late by a deposed leader: waiting queries do not fail.
pub async fn a_stop_written_past_does_not_hold<S: ViewStore + Clone>(views: S) {
    use crate::ProjectionStop;
    let events = MemoryEventStore::new();
    let first = tag(&events, "s", "t1").await;
    let projector = Projector::new(events.clone(), views.clone());
    projector.catch_up(&Cards).await.expect("catch up");
    let generation = views.status(Cards::NAME).await.expect("status").live.expect("live").id;
    // A deposed leader stopped before `first` and records it late, after the others moved on.
    let late = ProjectionStop::new(StopKind::Failed, Some(first), "late").at(generation, None);
    views.record_stop(Cards::NAME, Some(&late), 0).await.expect("recorded");
    let status = views.status(Cards::NAME).await.expect("status");
    assert!(status.stopped.is_some() && status.active_stop().is_none(), "written past: stale");
    let reader = ViewReader::<Card>::new(views.clone(), Cards::NAME);
    reader.wait_for(first, Duration::from_secs(5)).await.expect("the stale stop is ignored");
    let later = tag(&events, "s", "t2").await;
    let waiting = tokio::spawn({
        let reader = reader.clone();
        async move { reader.wait_for(later, Duration::from_secs(10)).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    projector.catch_up(&Cards).await.expect("catch up");
    waiting.await.expect("joins").expect("a waiting query sees the views catch up, not the stale stop");
}

/// A view store that refuses, as a store refuses what breaks its own limits, any commit writing a
/// view that holds `refuse-me`.
#[derive(Clone)]
struct Refusing<S>(S);

#[async_trait::async_trait]
impl<S: ViewStore> ViewStore for Refusing<S> {
    async fn status(&self, p: &str) -> crate::Result<crate::ProjectionStatus> {
        self.0.status(p).await
    }
    async fn begin_generation(&self, p: &str, version: u32, token: u64) -> crate::Result<crate::Generation> {
        self.0.begin_generation(p, version, token).await
    }
    async fn load_views(&self, p: &str, generation: u64, ids: &[String]) -> crate::Result<Vec<Option<String>>> {
        self.0.load_views(p, generation, ids).await
    }
    async fn commit(&self, p: &str, commit: crate::ViewCommit) -> crate::Result<()> {
        if commit.views.iter().any(|w| w.view.as_deref().is_some_and(|v| v.contains("refuse-me"))) {
            return Err(Error::InvalidEvent { reason: "the store cannot keep this view".into() });
        }
        self.0.commit(p, commit).await
    }
    async fn go_live(&self, p: &str, generation: u64, token: u64) -> crate::Result<()> {
        self.0.go_live(p, generation, token).await
    }
    async fn read_views(&self, p: &str, ids: &[String]) -> crate::Result<Vec<Option<String>>> {
        self.0.read_views(p, ids).await
    }
    async fn list(
        &self,
        p: &str,
        key: &IndexKey,
        range: &crate::OrderRange,
        after: Option<&crate::ListCursor>,
        limit: usize,
    ) -> crate::Result<crate::ViewPage> {
        self.0.list(p, key, range, after, limit).await
    }
    async fn count(&self, p: &str, keys: &[IndexKey]) -> crate::Result<Vec<u64>> {
        self.0.count(p, keys).await
    }
    async fn dead_letters(&self, p: &str) -> crate::Result<Vec<crate::DeadLetter>> {
        self.0.dead_letters(p).await
    }
    async fn record_stop(&self, p: &str, stop: Option<&crate::ProjectionStop>, token: u64) -> crate::Result<()> {
        self.0.record_stop(p, stop, token).await
    }
}

/// A write the store refuses as written, for a reason no check of the projector finds, is found
/// by writing the batch one event at a time: under `DeadLetter` that event is skipped and
/// recorded, its view kept as before; under `Stop` the events before it are written and the
/// projection stops at its position.
pub async fn a_write_the_store_refuses_is_found_by_writing_one_event_at_a_time<S: ViewStore + Clone>(
    dead_lettering: S,
    stopping: S,
) {
    let events = MemoryEventStore::new();
    let first = tag(&events, "a", "t1").await;
    tag(&events, "b", "t2").await;
    let refused = tag(&events, "a", "refuse-me").await;
    let last = tag(&events, "b", "t3").await;

    let views = Refusing(dead_lettering.clone());
    let projector = Projector::new(events.clone(), views.clone()).with_poison_policy(PoisonPolicy::DeadLetter);
    assert_eq!(projector.catch_up(&Cards).await.expect("catch up"), Some(last));
    let cards = ViewReader::<Card>::new(dead_lettering.clone(), Cards::NAME);
    assert_eq!(cards.get("a").await.expect("get").map(|c| c.tags), Some(vec!["t1".to_owned()]));
    assert_eq!(cards.get("b").await.expect("get").map(|c| c.tags), Some(vec!["t2".to_owned(), "t3".to_owned()]));
    let letters = dead_lettering.dead_letters(Cards::NAME).await.expect("dead letters");
    assert_eq!(letters.iter().map(|d| d.position).collect::<Vec<_>>(), vec![refused]);

    let views = Refusing(stopping.clone());
    let projector = Projector::new(events.clone(), views);
    match projector.catch_up(&Cards).await {
        Err(Error::Projection { position, .. }) => assert_eq!(position, refused),
        other => panic!("expected the projection to stop at {refused}, got {other:?}"),
    }
    let status = stopping.status(Cards::NAME).await.expect("status");
    let checkpoint = status.building.or(status.live).and_then(|g| g.checkpoint);
    assert!(checkpoint > Some(first) && checkpoint < Some(refused), "the events before it are written");
}

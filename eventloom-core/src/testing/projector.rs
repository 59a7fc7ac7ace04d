//! The conformance suite of the [`Projector`] over a [`ViewStore`]: what no accepted event may
//! do to a read model, whatever store keeps it.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! eventloom_core::testing::projector::run(|| async { eventloom_core::memory::MemoryViewStore::default() }).await;
//! # });
//! ```

use std::future::Future;
use std::time::{Duration, Instant};

use super::MustWrite;
use crate::store::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::{
    Aggregate, BoxError, Error, Event, EventEnvelope, EventHandler, EventSet, EventStore, EventType, ExpectedVersion,
    IndexEntry, IndexKey, MemoryEventStore, Metadata, NewEvent, PoisonPolicy, Position, Projection, Projector,
    RecordedEvent, RetryPolicy, StopKind, StreamId, Upcasters, ViewReader, ViewStore,
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
    type Events = Noted;
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
    type Events = Noted;
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
    events.append(&stream, ExpectedVersion::Any, vec![event]).await.expect("append").outcome().position
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
    a_projection_joins_two_aggregates(make().await).await;
    upcasters_apply_by_category(make().await).await;
    a_handler_sees_an_event_again_until_it_succeeds(make().await).await;
    a_crash_before_the_checkpoint_delivers_again(make().await).await;
    a_handler_dead_letters_once_its_retries_run_out(make().await).await;
    a_running_handler_follows_the_log_and_shuts_down(make().await).await;
    one_projection_type_runs_under_two_names(make().await).await;
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
    views.record_stop(Cards::NAME, Some(&late), 0).await.must("recorded");
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

impl<S: ViewStore> crate::store::DelegateViewStore for Refusing<S> {
    type Inner = S;
    fn inner(&self) -> &S {
        &self.0
    }
    fn commit<'a>(
        &'a self,
        p: &'a str,
        commit: crate::ViewCommit,
    ) -> BoxFuture<'a, crate::Result<crate::store::Written>> {
        Box::pin(async move {
            if commit.views.iter().any(|w| w.view.as_deref().is_some_and(|v| v.contains("refuse-me"))) {
                return Err(Error::InvalidEvent { reason: "the store cannot keep this view".into() });
            }
            self.0.commit(p, commit).await
        })
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

/// Implements [`Event`] for a suite enum whose variants all have named fields, in the order
/// of `TYPES` (the derive is not at hand inside the crate).
macro_rules! suite_event {
    ($name:ident { $($variant:ident),* $(,)? }) => {
        impl Event for $name {
            const TYPES: &'static [EventType] = &[$(EventType::new(stringify!($variant), 1)),*];

            fn event_type(&self) -> EventType {
                let name = match self { $($name::$variant { .. } => stringify!($variant)),* };
                Self::TYPES.iter().copied().find(|t| t.name == name).unwrap_or(Self::TYPES[0])
            }

            fn encode(&self) -> Result<String, serde_json::Error> {
                crate::__private::encode_variant(self)
            }

            fn decode(event_type: &str, payload: &str) -> Result<Self, crate::DecodeError> {
                let index =
                    Self::TYPES.iter().position(|t| t.name == event_type).ok_or(crate::DecodeError::UnknownType)?;
                let index = u32::try_from(index).map_err(|_| crate::DecodeError::UnknownType)?;
                Ok(crate::__private::decode_variant(index, payload)?)
            }
        }
    };
}

/// The events of the suite's tickets. `Created` shares its name with a person's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TicketEvent {
    /// A ticket for a person.
    Created {
        /// What it is about.
        title: String,
        /// The person it is for.
        person: String,
    },
    /// Handed to another person.
    Moved {
        /// The person it is for now.
        to: String,
    },
}
suite_event!(TicketEvent { Created, Moved });

/// The suite's second aggregate: a ticket for a person.
#[derive(Debug, Default)]
pub struct Ticket;

impl Aggregate for Ticket {
    const TYPE: &'static str = "ticket";
    type Event = TicketEvent;
    type Error = std::convert::Infallible;
    fn apply(&mut self, _: &TicketEvent) {}
}

/// The events of the suite's people. `Created` shares its name with a ticket's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum PersonEvent {
    /// A person joins.
    Created {
        /// Their name.
        name: String,
    },
    /// A person changes their name.
    Renamed {
        /// The new name.
        name: String,
    },
}
suite_event!(PersonEvent { Created, Renamed });

/// The suite's third aggregate: a person tickets are for.
#[derive(Debug, Default)]
pub struct Person;

impl Aggregate for Person {
    const TYPE: &'static str = "person";
    type Event = PersonEvent;
    type Error = std::convert::Infallible;
    fn apply(&mut self, _: &PersonEvent) {}
}

/// The events of tickets and people, as `#[derive(EventSet)]` writes it.
#[derive(Debug, Clone, PartialEq)]
pub enum Desk {
    /// A ticket's event.
    Ticket(TicketEvent),
    /// A person's event.
    Person(PersonEvent),
}

impl EventSet for Desk {
    type Event = Self;
    const CATEGORIES: &'static [&'static str] = &[Ticket::TYPE, Person::TYPE];

    fn knows(category: &str, event_type: &str) -> bool {
        (category == Ticket::TYPE && TicketEvent::knows(event_type))
            || (category == Person::TYPE && PersonEvent::knows(event_type))
    }

    fn decode(raw: &RecordedEvent, upcasters: &Upcasters) -> crate::Result<Self> {
        match raw.stream.category() {
            Ticket::TYPE => upcasters.decode_event(raw).map(Desk::Ticket),
            Person::TYPE => upcasters.decode_event(raw).map(Desk::Person),
            _ => Err(crate::__private::unknown_category(raw)),
        }
    }

    fn category(event: &Self) -> &'static str {
        match event {
            Desk::Ticket(_) => Ticket::TYPE,
            Desk::Person(_) => Person::TYPE,
        }
    }

    fn event_type(event: &Self) -> EventType {
        match event {
            Desk::Ticket(e) => e.event_type(),
            Desk::Person(e) => e.event_type(),
        }
    }

    fn encode(event: &Self) -> Result<String, serde_json::Error> {
        match event {
            Desk::Ticket(e) => e.encode(),
            Desk::Person(e) => e.encode(),
        }
    }
}

/// A person's workload: their name (from the person's events) and the tickets for them (from
/// the tickets' events).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Workload {
    /// Their name, once known.
    pub name: Option<String>,
    /// The ids of the tickets for them, in order.
    pub tickets: Vec<String>,
    /// Events folded.
    pub events: u32,
}

/// One workload per person, joining tickets and people, listed under each person's name.
struct Workloads;

impl Projection for Workloads {
    const NAME: &'static str = "conformance_workloads";
    type Events = Desk;
    type View = Workload;

    fn view_id(&self, e: &EventEnvelope<Desk>) -> Option<String> {
        match &e.event {
            Desk::Ticket(TicketEvent::Created { person, .. }) => Some(person.clone()),
            // A move changes two views: this projection keeps it simple and reads it as the
            // new person's (the old one keeps the ticket listed).
            Desk::Ticket(TicketEvent::Moved { to }) => Some(to.clone()),
            Desk::Person(_) => Some(e.stream.id().to_owned()),
        }
    }

    fn index(&self, _: &str, view: &Workload) -> Vec<IndexEntry> {
        view.name.iter().map(|name| IndexEntry::new("name", name.clone())).collect()
    }

    fn apply(&self, view: &mut Option<Workload>, e: &EventEnvelope<Desk>) -> Result<(), BoxError> {
        let view = view.get_or_insert_with(Workload::default);
        view.events += 1;
        match &e.event {
            Desk::Ticket(TicketEvent::Created { .. } | TicketEvent::Moved { .. }) => {
                view.tickets.push(e.stream.id().to_owned());
            }
            Desk::Person(PersonEvent::Created { name } | PersonEvent::Renamed { name }) => {
                view.name = Some(name.clone())
            }
        }
        Ok(())
    }
}

async fn append_to(
    events: &MemoryEventStore,
    category: &str,
    id: &str,
    event_type: &str,
    payload: serde_json::Value,
) -> Position {
    let stream = StreamId::new(category, id).expect("a valid stream id");
    let event = NewEvent {
        event_type: event_type.to_owned().into(),
        schema_version: 1,
        payload: payload.to_string(),
        metadata: Metadata { event_id: uuid::Uuid::new_v4(), ..Metadata::default() },
    };
    events.append(&stream, ExpectedVersion::Any, vec![event]).await.expect("append").outcome().position
}

async fn person(events: &MemoryEventStore, id: &str, event_type: &str, name: &str) -> Position {
    append_to(events, Person::TYPE, id, event_type, serde_json::json!({ "name": name })).await
}

async fn ticket(events: &MemoryEventStore, id: &str, title: &str, person: &str) -> Position {
    append_to(events, Ticket::TYPE, id, "Created", serde_json::json!({ "title": title, "person": person })).await
}

/// A projection over two aggregates whose event types share a name (`Created`) routes each
/// event by its category: a person's `Created` names the person, a ticket's adds a ticket to
/// a workload; events of other aggregates are skipped. It keeps one checkpoint over the global
/// order: a restart resumes from it without folding any event twice, and a rebuild gives the
/// same views in a new generation; its index lists views as usual.
pub async fn a_projection_joins_two_aggregates<S: ViewStore + Clone>(views: S) {
    let events = MemoryEventStore::new();
    person(&events, "ada", "Created", "Ada").await;
    ticket(&events, "t1", "roof", "ada").await;
    tag(&events, "n1", "unrelated").await;
    ticket(&events, "t2", "door", "ada").await;
    person(&events, "bob", "Created", "Bob").await;
    let projector = Projector::new(events.clone(), views.clone());
    let first = projector.catch_up(&Workloads).await.expect("catch up");
    let reader = ViewReader::<Workload>::new(views.clone(), Workloads::NAME);
    let ada = Workload { name: Some("Ada".into()), tickets: vec!["t1".into(), "t2".into()], events: 3 };
    assert_eq!(reader.get("ada").await.expect("get"), Some(ada), "both aggregates' events, routed by category");
    assert_eq!(
        reader.get("bob").await.expect("get"),
        Some(Workload { name: Some("Bob".into()), tickets: vec![], events: 1 })
    );
    assert_eq!(reader.get("n1").await.expect("get"), None, "another aggregate's events are skipped");

    // A restart resumes from the checkpoint: nothing is folded twice.
    ticket(&events, "t3", "window", "bob").await;
    person(&events, "ada", "Renamed", "Ada L.").await;
    let moved = append_to(&events, Ticket::TYPE, "t1", "Moved", serde_json::json!({ "to": "bob" })).await;
    let restarted = Projector::new(events.clone(), views.clone());
    assert_eq!(restarted.catch_up(&Workloads).await.expect("catch up"), Some(moved));
    assert!(Some(moved) > first);
    let ada = Workload { name: Some("Ada L.".into()), tickets: vec!["t1".into(), "t2".into()], events: 4 };
    let bob = Workload { name: Some("Bob".into()), tickets: vec!["t3".into(), "t1".into()], events: 3 };
    assert_eq!(reader.get("ada").await.expect("get"), Some(ada.clone()));
    assert_eq!(reader.get("bob").await.expect("get"), Some(bob.clone()));
    let listed = reader.list(&IndexKey::new("name", "Ada L."), None, 10).await.expect("list");
    assert_eq!(listed.views.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(), vec!["ada"]);
    assert!(reader.list(&IndexKey::new("name", "Ada"), None, 10).await.expect("list").views.is_empty(), "left");

    // A rebuild folds everything again into a new generation, with the same result.
    let before = views.status(Workloads::NAME).await.expect("status").live.expect("live").id;
    assert_eq!(restarted.rebuild(&Workloads).await.expect("rebuild"), Some(moved));
    let after = views.status(Workloads::NAME).await.expect("status").live.expect("live");
    assert!(after.id > before, "a new generation");
    assert_eq!(after.checkpoint, Some(moved));
    assert_eq!(reader.get("ada").await.expect("get"), Some(ada));
    assert_eq!(reader.get("bob").await.expect("get"), Some(bob));
    assert!(views.dead_letters(Workloads::NAME).await.expect("dead letters").is_empty());
}

/// Each category's events go through that category's upcasters alone; the projector's plain
/// upcasters serve the categories without their own.
pub async fn upcasters_apply_by_category<S: ViewStore + Clone>(views: S) {
    let events = MemoryEventStore::new();
    // A person once stored as `Joined`, a ticket as `Opened`; each name means nothing to the
    // other aggregate.
    person(&events, "ada", "Joined", "Ada").await;
    append_to(&events, Ticket::TYPE, "t1", "Opened", serde_json::json!({ "title": "roof", "person": "ada" })).await;
    append_to(&events, Ticket::TYPE, "t2", "Joined", serde_json::json!({ "name": "not a ticket" })).await;
    person(&events, "bob", "Opened", "Bob").await;
    let tickets = Upcasters::new().add(("Opened", 1), ("Created", 1), Ok);
    let others = Upcasters::new().add(("Joined", 1), ("Created", 1), Ok);
    let projector =
        Projector::new(events.clone(), views.clone()).with_upcasters_for(Ticket::TYPE, tickets).with_upcasters(others);
    projector.catch_up(&Workloads).await.expect("catch up");
    let reader = ViewReader::<Workload>::new(views.clone(), Workloads::NAME);
    let ada = Workload { name: Some("Ada".into()), tickets: vec!["t1".into()], events: 2 };
    assert_eq!(reader.get("ada").await.expect("get"), Some(ada), "each category upcast by its own upcasters");
    assert_eq!(reader.get("bob").await.expect("get"), None, "a ticket's upcaster never touches a person's event");
    assert!(views.dead_letters(Workloads::NAME).await.expect("dead letters").is_empty(), "unknown types are skipped");
}

/// What the suite's handler saw, in order: (stream, type name) per delivery.
type Seen = std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>;

fn seen(log: &Seen) -> Vec<(String, String)> {
    log.lock().map(|log| log.clone()).unwrap_or_default()
}

/// A handler of tickets and people that fails `failures` times on the stream `fails_on`, then
/// succeeds, recording every delivery.
struct Notifier {
    log: Seen,
    fails_on: &'static str,
    failures: std::sync::atomic::AtomicU32,
    attempts: u32,
}

impl Notifier {
    fn new(fails_on: &'static str, failures: u32, attempts: u32) -> (Self, Seen) {
        let log = Seen::default();
        let notifier =
            Notifier { log: log.clone(), fails_on, failures: std::sync::atomic::AtomicU32::new(failures), attempts };
        (notifier, log)
    }
}

impl EventHandler for Notifier {
    const NAME: &'static str = "conformance_notifier";
    type Events = Desk;

    fn retry(&self) -> RetryPolicy {
        RetryPolicy::new()
            .max_attempts(self.attempts)
            .initial_delay(Duration::from_millis(1))
            .max_delay(Duration::from_millis(5))
    }

    async fn handle(&self, e: &EventEnvelope<Desk>) -> Result<(), BoxError> {
        let name = Desk::event_type(&e.event).name.to_owned();
        self.log.lock().map_err(|_| "poisoned")?.push((e.stream.as_str().to_owned(), name));
        if e.stream.as_str() == self.fails_on {
            let left = self.failures.load(std::sync::atomic::Ordering::SeqCst);
            if left > 0 {
                self.failures.store(left - 1, std::sync::atomic::Ordering::SeqCst);
                return Err(format!("the mail server said no ({left} more)").into());
            }
        }
        Ok(())
    }
}

async fn desk_log(events: &MemoryEventStore) -> Position {
    person(events, "ada", "Created", "Ada").await;
    tag(events, "n1", "unrelated").await;
    ticket(events, "t1", "roof", "ada").await;
    ticket(events, "t2", "door", "ada").await;
    person(events, "bob", "Created", "Bob").await
}

fn entries(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(s, t)| ((*s).to_owned(), (*t).to_owned())).collect()
}

async fn handler_checkpoint(views: &impl ViewStore) -> Option<Position> {
    views.status(Notifier::NAME).await.expect("status").live.and_then(|g| g.checkpoint)
}

/// A handler whose `handle` fails is retried; once its retries run out it stops there (its
/// checkpoint after the events before, which are not delivered again), and a restart delivers
/// the event again until it succeeds. Events of other aggregates never reach it.
pub async fn a_handler_sees_an_event_again_until_it_succeeds<S: ViewStore + Clone>(views: S) {
    let events = MemoryEventStore::new();
    let last = desk_log(&events).await;
    let (notifier, log) = Notifier::new("ticket/t1", 3, 2);
    let projector = Projector::new(events.clone(), views.clone());
    let failed_at = match projector.catch_up_handler(&notifier).await {
        Err(Error::Projection { position, source, .. }) => {
            let reason = source.to_string();
            assert!(reason.contains("mail server said no"), "the reason is the handler's: {reason}");
            position
        }
        other => panic!("expected the handler to stop once its retries ran out, got {other:?}"),
    };
    let t1 = ("ticket/t1", "Created");
    assert_eq!(seen(&log), entries(&[("person/ada", "Created"), t1, t1]), "two attempts");
    let checkpoint = handler_checkpoint(&views).await;
    assert!(checkpoint.is_some() && checkpoint < Some(failed_at), "the event before it is done: {checkpoint:?}");
    let stop = views.status(Notifier::NAME).await.expect("status").stopped.expect("a recorded stop");
    assert_eq!(stop.position, Some(failed_at));

    // A restart (another projector, the same handler: one failure left) delivers it again.
    let restarted = Projector::new(events.clone(), views.clone());
    assert_eq!(restarted.catch_up_handler(&notifier).await.expect("catch up"), Some(last));
    let all = [("person/ada", "Created"), t1, t1, t1, t1, ("ticket/t2", "Created"), ("person/bob", "Created")];
    assert_eq!(seen(&log), entries(&all), "the failed event again, and nothing handled before it");
    assert_eq!(handler_checkpoint(&views).await, Some(last));
    assert_eq!(views.status(Notifier::NAME).await.expect("status").stopped, None, "the stop is cleared");
    assert!(views.dead_letters(Notifier::NAME).await.expect("dead letters").is_empty());
}

/// A view store whose commits fail as a process that dies before its write would: nothing is
/// written.
#[derive(Clone)]
struct Crashing<S>(S);

impl<S: ViewStore> crate::store::DelegateViewStore for Crashing<S> {
    type Inner = S;
    fn inner(&self) -> &S {
        &self.0
    }
    fn commit<'a>(&'a self, _: &'a str, _: crate::ViewCommit) -> BoxFuture<'a, crate::Result<crate::store::Written>> {
        Box::pin(
            async move { Err(Error::Backend { message: "the process died before its write".into(), source: None }) },
        )
    }
}

/// A handler that handled events but died before its checkpoint was written gets them again
/// after a restart: at least once.
pub async fn a_crash_before_the_checkpoint_delivers_again<S: ViewStore + Clone>(views: S) {
    let events = MemoryEventStore::new();
    let last = desk_log(&events).await;
    let (notifier, log) = Notifier::new("none", 0, 1);
    let crashing = Projector::new(events.clone(), Crashing(views.clone()));
    assert!(crashing.catch_up_handler(&notifier).await.is_err(), "the write failed");
    let once =
        [("person/ada", "Created"), ("ticket/t1", "Created"), ("ticket/t2", "Created"), ("person/bob", "Created")];
    assert_eq!(seen(&log), entries(&once), "handled, not written");
    assert_eq!(handler_checkpoint(&views).await, None);

    let restarted = Projector::new(events.clone(), views.clone());
    assert_eq!(restarted.catch_up_handler(&notifier).await.expect("catch up"), Some(last));
    let twice: Vec<_> = once.iter().chain(once.iter()).copied().collect();
    assert_eq!(seen(&log), entries(&twice), "every event delivered again");
    assert_eq!(handler_checkpoint(&views).await, Some(last));
    restarted.catch_up_handler(&notifier).await.expect("catch up");
    assert_eq!(seen(&log).len(), twice.len(), "and not a third time once written");
}

/// Under `DeadLetter`, an event whose `handle` still fails after its retries, and one that does
/// not decode, are recorded in the handler's dead letters; the others are handled once and the
/// checkpoint moves past them all.
pub async fn a_handler_dead_letters_once_its_retries_run_out<S: ViewStore + Clone>(views: S) {
    let events = MemoryEventStore::new();
    person(&events, "ada", "Created", "Ada").await;
    let failing = ticket(&events, "t1", "roof", "ada").await;
    let malformed = append_to(&events, Person::TYPE, "eve", "Created", serde_json::json!({ "nom": "Eve" })).await;
    let last = ticket(&events, "t2", "door", "ada").await;
    let (notifier, log) = Notifier::new("ticket/t1", u32::MAX, 3);
    let projector = Projector::new(events.clone(), views.clone()).with_poison_policy(PoisonPolicy::DeadLetter);
    assert_eq!(projector.catch_up_handler(&notifier).await.expect("catch up"), Some(last));
    let t1 = ("ticket/t1", "Created");
    assert_eq!(seen(&log), entries(&[("person/ada", "Created"), t1, t1, t1, ("ticket/t2", "Created")]));
    let letters = views.dead_letters(Notifier::NAME).await.expect("dead letters");
    assert_eq!(letters.iter().map(|d| d.position).collect::<Vec<_>>(), vec![failing, malformed]);
    assert!(letters[0].reason.contains("failed 3 time(s)"), "{}", letters[0].reason);
    assert_eq!(letters[0].event_type, "Created");
    assert_eq!(handler_checkpoint(&views).await, Some(last));
}

/// A running handler delivers events appended while it runs, and stops on shutdown.
pub async fn a_running_handler_follows_the_log_and_shuts_down<S: ViewStore + Clone>(views: S) {
    let events = MemoryEventStore::new();
    desk_log(&events).await;
    let (notifier, log) = Notifier::new("none", 0, 1);
    let projector = Projector::new(events.clone(), views.clone());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(async move {
        projector
            .run_handler(notifier, async {
                let _ = stopped.await;
            })
            .await
    });
    let later = person(&events, "cy", "Renamed", "Cy").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while handler_checkpoint(&views).await != Some(later) {
        assert!(Instant::now() < deadline, "the handler did not reach {later}: {:?}", seen(&log));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(seen(&log).len(), 5);
    assert_eq!(seen(&log).last().cloned(), Some(("person/cy".to_owned(), "Renamed".to_owned())));
    let _ = stop.send(());
    let ended = tokio::time::timeout(Duration::from_secs(10), running).await.expect("shuts down").expect("joins");
    ended.expect("a shutdown is not an error");
}

/// Cards marked with the name of the instance that folds them: one projection type run under
/// two names.
struct Marked {
    name: &'static str,
}

impl Projection for Marked {
    const NAME: &'static str = "conformance_marked";
    type Events = Noted;
    type View = Card;

    fn name(&self) -> &str {
        self.name
    }

    fn apply(&self, card: &mut Option<Card>, e: &EventEnvelope<Note>) -> Result<(), BoxError> {
        let card = card.get_or_insert_with(Card::default);
        card.events += 1;
        match &e.event {
            Note::Tagged { tag } => card.tags.push(format!("{}:{tag}", self.name)),
            Note::Scored { score } => card.ratio = 1.0 / score,
            Note::Failing => return Err("failing on purpose".into()),
        }
        Ok(())
    }
}

/// What instance `name` of [`Marked`] folds from tags `tags`, `events` events in all.
fn marked(name: &str, tags: &[&str], events: u32) -> Card {
    Card { tags: tags.iter().map(|t| format!("{name}:{t}")).collect(), ratio: 0.0, events }
}

async fn live_checkpoint(views: &impl ViewStore, name: &str) -> Option<Position> {
    views.status(name).await.expect("status").live.and_then(|g| g.checkpoint)
}

/// Two instances of one projection type under two names fold into views of their own, each
/// from its own checkpoint (a restart resumes each where it stood, folding nothing twice), with
/// generations, dead letters and stops of their own.
pub async fn one_projection_type_runs_under_two_names<S: ViewStore + Clone>(views: S) {
    let events = MemoryEventStore::new();
    let (a, b) = (Marked { name: "conformance_marked_a" }, Marked { name: "conformance_marked_b" });
    let (cards_a, cards_b) =
        (ViewReader::<Card>::new(views.clone(), a.name), ViewReader::<Card>::new(views.clone(), b.name));
    tag(&events, "s", "x").await;
    let first = tag(&events, "s", "y").await;
    let projector = Projector::new(events.clone(), views.clone());
    assert_eq!(projector.catch_up(&a).await.expect("catch up"), Some(first));
    assert_eq!(cards_a.get("s").await.expect("get"), Some(marked(a.name, &["x", "y"], 2)));
    assert!(matches!(cards_b.get("s").await, Err(Error::NotBuilt { .. })), "the other instance has not run");

    let later = tag(&events, "s", "z").await;
    assert_eq!(projector.catch_up(&b).await.expect("catch up"), Some(later));
    assert_eq!(cards_b.get("s").await.expect("get"), Some(marked(b.name, &["x", "y", "z"], 3)));
    assert_eq!(live_checkpoint(&views, a.name).await, Some(first), "each at its own checkpoint");
    assert_eq!(live_checkpoint(&views, b.name).await, Some(later));

    // A restart resumes each from its own checkpoint.
    let restarted = Projector::new(events.clone(), views.clone());
    assert_eq!(restarted.catch_up(&a).await.expect("catch up"), Some(later));
    assert_eq!(restarted.catch_up(&b).await.expect("catch up"), Some(later));
    assert_eq!(cards_a.get("s").await.expect("get"), Some(marked(a.name, &["x", "y", "z"], 3)), "nothing twice");
    assert_eq!(cards_b.get("s").await.expect("get"), Some(marked(b.name, &["x", "y", "z"], 3)), "nothing twice");

    // Rebuilding one makes a new generation of its own; the other's stays live as it was.
    let (before_a, before_b) = (
        views.status(a.name).await.expect("status").live.expect("live").id,
        views.status(b.name).await.expect("status").live.expect("live").id,
    );
    assert_eq!(restarted.rebuild(&a).await.expect("rebuild"), Some(later));
    assert_ne!(views.status(a.name).await.expect("status").live.expect("live").id, before_a);
    assert_eq!(views.status(b.name).await.expect("status").live.expect("live").id, before_b);
    assert_eq!(cards_a.get("s").await.expect("get"), Some(marked(a.name, &["x", "y", "z"], 3)));

    // A poison event: one instance dead-letters it, the other stops; each keeps its own.
    let failing = append(&events, "s", "Failing", 1, "null".into()).await;
    let last = tag(&events, "s", "w").await;
    let lenient = Projector::new(events.clone(), views.clone()).with_poison_policy(PoisonPolicy::DeadLetter);
    assert_eq!(lenient.catch_up(&a).await.expect("dead-letters"), Some(last));
    match restarted.catch_up(&b).await {
        Err(Error::Projection { projection, position, .. }) => {
            assert_eq!((projection.as_str(), position), (b.name, failing), "the error names the instance");
        }
        other => panic!("expected the instance without dead letters to stop, got {other:?}"),
    }
    let letters = views.dead_letters(a.name).await.expect("dead letters");
    assert_eq!(letters.iter().map(|d| d.position).collect::<Vec<_>>(), vec![failing]);
    assert!(views.dead_letters(b.name).await.expect("dead letters").is_empty());
    assert_eq!(views.status(a.name).await.expect("status").stopped, None, "no stop for the one that went on");
    let stop = views.status(b.name).await.expect("status").stopped.expect("a recorded stop");
    assert_eq!(stop.position, Some(failing));
    assert_eq!(live_checkpoint(&views, b.name).await, Some(later), "stopped before the event");
    assert_eq!(cards_a.get("s").await.expect("get"), Some(marked(a.name, &["x", "y", "z", "w"], 4)));
}

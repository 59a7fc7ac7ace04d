use std::collections::HashMap;
use std::fmt::Debug;

use crate::read::fold::CategoryUpcasters;
use crate::{EventOf, EventSet, Metadata, Position, Projection, RecordedEvent, StreamId};

/// Given events, then this view: a test of a projection's fold with no store at all.
///
/// Events go through their stored encoding, routing by (category, type name) and decoding, and
/// views through JSON, as with the real [`Projector`](crate::Projector). Events of several
/// aggregates interleave in the order they are given, as in the store's order.
///
/// # Examples
///
/// ```
/// use eventloom_core::prelude::*;
/// use eventloom_core::{BoxError, Projection, testing::ProjectionTest};
/// # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)] enum CounterEvent { Incremented { by: u64 } }
/// # #[derive(Debug, Default)] struct Counter;
/// # impl Aggregate for Counter { const TYPE: &'static str = "counter"; type Event = CounterEvent;
/// #   type Error = std::convert::Infallible; fn apply(&mut self, _: &CounterEvent) {} }
/// struct Totals;
/// impl Projection for Totals {
///     const NAME: &'static str = "totals";
///     type Events = Counter;
///     type View = u64;
///     fn apply(&self, v: &mut Option<u64>, e: &EventEnvelope<CounterEvent>) -> Result<(), BoxError> {
///         let CounterEvent::Incremented { by } = &e.event;
///         *v.get_or_insert(0) += by;
///         Ok(())
///     }
/// }
///
/// ProjectionTest::new(Totals)
///     .given("a", [CounterEvent::Incremented { by: 2 }, CounterEvent::Incremented { by: 3 }])
///     .given("b", [CounterEvent::Incremented { by: 1 }])
///     .then_view("a", Some(&5))
///     .then_view("b", Some(&1))
///     .then_view("c", None);
/// ```
///
/// A projection over several aggregates is given each aggregate's events as they are, or as the
/// set's enum (the stream's category comes from the event):
///
/// ```
/// use eventloom_core::prelude::*;
/// use eventloom_core::{BoxError, EventSet, Projection, testing::ProjectionTest};
/// # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)] enum TaskEvent { Created { title: String }, Assigned { user: String } }
/// # #[derive(Debug, Default)] struct Task;
/// # impl Aggregate for Task { const TYPE: &'static str = "task"; type Event = TaskEvent;
/// #   type Error = std::convert::Infallible; fn apply(&mut self, _: &TaskEvent) {} }
/// # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)] enum UserEvent { Created { name: String } }
/// # #[derive(Debug, Default)] struct User;
/// # impl Aggregate for User { const TYPE: &'static str = "user"; type Event = UserEvent;
/// #   type Error = std::convert::Infallible; fn apply(&mut self, _: &UserEvent) {} }
/// #[derive(Debug, Clone, EventSet)]
/// enum BoardEvent {
///     #[events(aggregate = Task)]
///     Task(TaskEvent),
///     #[events(aggregate = User)]
///     User(UserEvent),
/// }
///
/// /// Per user, the titles of the tasks assigned to them.
/// struct Assignments;
/// impl Projection for Assignments {
///     const NAME: &'static str = "assignments";
///     type Events = BoardEvent;
///     type View = Vec<String>;
///     fn view_id(&self, e: &EventEnvelope<BoardEvent>) -> Option<String> {
///         match &e.event {
///             BoardEvent::Task(TaskEvent::Assigned { user }) => Some(user.clone()),
///             BoardEvent::User(UserEvent::Created { .. }) => Some(e.stream.id().to_owned()),
///             BoardEvent::Task(_) => None,
///         }
///     }
///     fn apply(&self, v: &mut Option<Vec<String>>, e: &EventEnvelope<BoardEvent>) -> Result<(), BoxError> {
///         let tasks = v.get_or_insert_with(Vec::new);
///         if let BoardEvent::Task(TaskEvent::Assigned { .. }) = &e.event {
///             tasks.push(e.stream.id().to_owned());
///         }
///         Ok(())
///     }
/// }
///
/// ProjectionTest::new(Assignments)
///     .given("ada", [UserEvent::Created { name: "Ada".into() }])
///     .given("t-1", [TaskEvent::Created { title: "x".into() }, TaskEvent::Assigned { user: "ada".into() }])
///     .given("bob", [BoardEvent::User(UserEvent::Created { name: "Bob".into() })])
///     .then_view("ada", Some(&vec!["t-1".to_owned()]))
///     .then_view("bob", Some(&vec![]))
///     .then_view("t-1", None);
/// ```
pub struct ProjectionTest<P: Projection> {
    projection: P,
    views: HashMap<String, String>,
    versions: HashMap<String, u64>,
    sequence: u64,
}

impl<P: Projection> ProjectionTest<P> {
    /// A test of `projection` with no views yet.
    pub fn new(projection: P) -> Self {
        ProjectionTest { projection, views: HashMap::new(), versions: HashMap::new(), sequence: 0 }
    }

    /// Folds `events` of the aggregate with id `aggregate_id`, in order: each event of the
    /// projection's [`Events`](Projection::Events), or of one of its aggregates, in the stream
    /// of its own category.
    #[track_caller]
    pub fn given(mut self, aggregate_id: &str, events: impl IntoIterator<Item = impl Into<EventOf<P>>>) -> Self {
        let upcasters = CategoryUpcasters::default();
        for event in events {
            let event: EventOf<P> = event.into();
            let stream = StreamId::new(P::Events::category(&event), aggregate_id)
                .unwrap_or_else(|e| panic!("bad aggregate id {aggregate_id:?}: {e}"));
            let version = self.versions.entry(stream.as_str().to_owned()).or_default();
            *version += 1;
            self.sequence += 1;
            let ty = P::Events::event_type(&event);
            let payload = P::Events::encode(&event).unwrap_or_else(|e| panic!("event does not encode: {e}"));
            let raw = RecordedEvent {
                stream,
                version: *version,
                position: Position::new(self.sequence, self.sequence),
                event_type: ty.name.into(),
                schema_version: ty.version,
                payload: payload.into(),
                metadata: Metadata::default().into(),
            };
            let Some(envelope) = upcasters.route::<P::Events>(&raw, |c, t| self.projection.handles(c, t)) else {
                continue;
            };
            let envelope =
                envelope.unwrap_or_else(|e| panic!("event does not decode from {}: {e}", raw.payload.as_ref()));
            let Some(id) = self.projection.view_id(&envelope) else { continue };
            let mut view = self
                .views
                .get(&id)
                .map(|json| serde_json::from_str(json).unwrap_or_else(|e| panic!("view {id} does not decode: {e}")));
            self.projection
                .apply(&mut view, &envelope)
                .unwrap_or_else(|e| panic!("the projection failed on {:?}: {e}", envelope.position));
            match view {
                Some(view) => {
                    let json =
                        crate::json::to_string(&view).unwrap_or_else(|e| panic!("view {id} does not encode: {e}"));
                    self.views.insert(id, json);
                }
                None => {
                    self.views.remove(&id);
                }
            }
        }
        self
    }

    /// The view with this id, if any.
    #[track_caller]
    pub fn view(&self, id: &str) -> Option<P::View> {
        self.views.get(id).map(|json| serde_json::from_str(json).unwrap_or_else(|e| panic!("view {id}: {e}")))
    }

    /// Asserts the view with this id.
    #[track_caller]
    pub fn then_view(self, id: &str, expected: Option<&P::View>) -> Self
    where
        P::View: PartialEq + Debug,
    {
        assert_eq!(self.view(id).as_ref(), expected, "view {id:?}");
        self
    }
}

use std::collections::HashMap;
use std::fmt::Debug;

use crate::{Aggregate, Event, EventEnvelope, EventOf, Metadata, Position, Projection, StreamId};

/// Given events, then this view: a test of a projection's fold with no store at all.
///
/// Events go through their stored encoding and views through JSON, as with the real
/// [`Projector`](crate::Projector).
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
///     type Aggregate = Counter;
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

    /// Folds `events` of the aggregate with id `aggregate_id`, in order.
    #[track_caller]
    pub fn given(mut self, aggregate_id: &str, events: impl IntoIterator<Item = EventOf<P>>) -> Self {
        let stream = StreamId::new(<P::Aggregate as Aggregate>::TYPE, aggregate_id)
            .unwrap_or_else(|e| panic!("bad aggregate id {aggregate_id:?}: {e}"));
        for event in events {
            let ty = event.event_type();
            let version = self.versions.entry(aggregate_id.to_owned()).or_default();
            *version += 1;
            self.sequence += 1;
            if !self.projection.handles(ty.name) {
                continue;
            }
            let payload = event.encode().unwrap_or_else(|e| panic!("event does not encode: {e}"));
            let event = EventOf::<P>::decode(ty.name, &payload)
                .unwrap_or_else(|e| panic!("event does not decode from {payload}: {e}"));
            let envelope = EventEnvelope {
                stream: stream.clone(),
                version: self.versions[aggregate_id],
                position: Position::new(self.sequence, self.sequence),
                event,
                metadata: Metadata::default().into(),
            };
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

//! What a projection or an event handler reads: the events of one aggregate type, or of several.

use crate::{Aggregate, Error, Event, EventType, RecordedEvent, Result, Upcasters};

/// The events a [`Projection`](crate::Projection) or an [`EventHandler`](crate::EventHandler)
/// reads: which categories (aggregate types) they come from, and how each one decodes.
///
/// Type names are unique only within one aggregate (a task and a user can both have a
/// `Created`), so events are routed by (category, type name): an event of a category outside
/// the set, or of a type its category's event does not know, is skipped without its payload
/// being parsed.
///
/// Two kinds of sets exist, and neither is written by hand as a rule:
///
/// - an [`Aggregate`] stands for its own events (`type Events = Task;`), by a blanket impl;
/// - `#[derive(EventSet)]` on an enum whose variants each wrap one aggregate's event type, the
///   aggregate named by `#[events(aggregate = ...)]`, reads several aggregates. The derive also
///   writes `From<TaskEvent> for BoardEvent` for each variant.
///
/// # Examples
///
/// ```
/// use eventloom_core::prelude::*;
/// use eventloom_core::EventSet;
/// # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)] enum TaskEvent { Created { title: String } }
/// # #[derive(Debug, Default)] struct Task;
/// # impl Aggregate for Task { const TYPE: &'static str = "task"; type Event = TaskEvent;
/// #   type Error = std::convert::Infallible; fn apply(&mut self, _: &TaskEvent) {} }
/// # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)] enum UserEvent { Created { name: String } }
/// # #[derive(Debug, Default)] struct User;
/// # impl Aggregate for User { const TYPE: &'static str = "user"; type Event = UserEvent;
/// #   type Error = std::convert::Infallible; fn apply(&mut self, _: &UserEvent) {} }
///
/// #[derive(Debug, Clone, PartialEq, EventSet)]
/// enum BoardEvent {
///     #[events(aggregate = Task)]
///     Task(TaskEvent),
///     #[events(aggregate = User)]
///     User(UserEvent),
/// }
///
/// assert_eq!(BoardEvent::CATEGORIES, ["task", "user"]);
/// assert!(BoardEvent::knows("user", "Created"));
/// assert!(!BoardEvent::knows("account", "Created"));
/// let event: BoardEvent = UserEvent::Created { name: "ada".into() }.into();
/// assert_eq!(BoardEvent::category(&event), "user");
///
/// // An aggregate is the set of its own events.
/// assert_eq!(<Task as EventSet>::CATEGORIES, ["task"]);
/// ```
pub trait EventSet: Send + Sync + 'static {
    /// The decoded event: the aggregate's event type, or the enum of several.
    type Event: Send + Sync + 'static;

    /// The categories (aggregate types) whose streams it reads.
    const CATEGORIES: &'static [&'static str];

    /// Whether it has an event of type `event_type` (the name once upcast) in `category`.
    fn knows(category: &str, event_type: &str) -> bool;

    /// Decodes a stored event of one of its categories, upcast first with `upcasters` (those of
    /// the event's category). Errors name the stream, version and position, as
    /// [`Upcasters::decode`] does; an event of another category is [`Error::UnknownEvent`].
    fn decode(raw: &RecordedEvent, upcasters: &Upcasters) -> Result<Self::Event>;

    /// The category (aggregate type) an event belongs to.
    fn category(event: &Self::Event) -> &'static str;

    /// An event's type name and schema version.
    fn event_type(event: &Self::Event) -> EventType;

    /// An event's payload as it is stored (see [`Event::encode`]).
    fn encode(event: &Self::Event) -> std::result::Result<String, serde_json::Error>;
}

impl<A: Aggregate> EventSet for A {
    type Event = A::Event;

    const CATEGORIES: &'static [&'static str] = &[A::TYPE];

    fn knows(category: &str, event_type: &str) -> bool {
        category == A::TYPE && A::Event::knows(event_type)
    }

    fn decode(raw: &RecordedEvent, upcasters: &Upcasters) -> Result<A::Event> {
        if raw.stream.category() != A::TYPE {
            return Err(unknown_category(raw));
        }
        upcasters.decode_event(raw)
    }

    fn category(_: &A::Event) -> &'static str {
        A::TYPE
    }

    fn event_type(event: &A::Event) -> EventType {
        event.event_type()
    }

    fn encode(event: &A::Event) -> std::result::Result<String, serde_json::Error> {
        event.encode()
    }
}

/// The error for a stored event of a category a set does not read.
pub fn unknown_category(raw: &RecordedEvent) -> Error {
    Error::UnknownEvent {
        stream: raw.stream.clone(),
        version: raw.version,
        position: raw.position,
        event_type: raw.event_type.to_string(),
        schema_version: raw.schema_version,
    }
}

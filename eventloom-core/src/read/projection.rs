//! What a projection is: the user's fold of events into views.

use std::borrow::Cow;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Error, EventEnvelope, EventSet, IndexEntry, Result};

/// The longest name a projection or event handler may have, in bytes.
pub(crate) const MAX_NAME_LEN: usize = 255;

/// What is wrong with the name of a projection or event handler, if anything: it must be 1 to
/// [`MAX_NAME_LEN`] bytes long, with no control characters (a NUL byte among them).
pub(crate) fn name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        Some("must not be empty".to_owned())
    } else if name.len() > MAX_NAME_LEN {
        Some(format!("is {} bytes long, at most {MAX_NAME_LEN} are allowed", name.len()))
    } else if name.chars().any(char::is_control) {
        Some("must not contain control characters (a NUL byte among them)".to_owned())
    } else {
        None
    }
}

/// Checks the name a projection or event handler keeps everything under (see
/// [`name_problem`]): [`Error::InvalidId`] when it is refused.
pub(crate) fn check_name(name: &str) -> Result<()> {
    match name_problem(name) {
        None => Ok(()),
        Some(problem) => Err(Error::InvalidId {
            what: "projection or event handler name",
            reason: format!("{:?} {problem}", truncated(name)),
        }),
    }
}

/// The first 64 characters of `name`, for an error message.
fn truncated(name: &str) -> &str {
    name.char_indices().nth(64).map_or(name, |(at, _)| &name[..at])
}

/// Any error a projection's handler returns.
///
/// # Examples
///
/// ```
/// let e: eventloom_core::BoxError = "a view went negative".into();
/// assert_eq!(e.to_string(), "a view went negative");
/// ```
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The event type a projection reads: its [`EventSet`]'s event (an aggregate's own event type,
/// or the enum of several).
///
/// # Examples
///
/// ```
/// # use eventloom_core::prelude::*;
/// # #[derive(Debug, Serialize, Deserialize, Event)] enum E { X }
/// # #[derive(Debug, Default)] struct A;
/// # impl Aggregate for A { const TYPE: &'static str = "a"; type Event = E; type Error = std::convert::Infallible; fn apply(&mut self, _: &E) {} }
/// # struct P;
/// # impl eventloom_core::Projection for P { const NAME: &'static str = "p"; type Events = A; type View = ();
/// #   fn apply(&self, _: &mut Option<()>, _: &EventEnvelope<E>) -> Result<(), eventloom_core::BoxError> { Ok(()) } }
/// let _: eventloom_core::read::EventOf<P> = E::X;
/// ```
pub type EventOf<P> = <<P as Projection>::Events as EventSet>::Event;

/// Folds the events of one aggregate type, or of several, into views that queries read.
///
/// A projection sees every event of its [`Events`](Projection::Events)' streams, in the store's
/// order, exactly once in effect: the [`Projector`](crate::Projector) writes the views a batch
/// changed and the projection's checkpoint in one atomic step. An event type the projection
/// does not [handle](Projection::handles) is never decoded.
///
/// `type Events = Task;` reads one aggregate's events; an enum with `#[derive(EventSet)]`
/// reads several (see [`EventSet`] and the guide's chapter on projections), in one order, with
/// one checkpoint.
///
/// # Examples
///
/// ```
/// use eventloom_core::prelude::*;
/// use eventloom_core::{BoxError, Projection};
/// # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)] enum CounterEvent { Incremented { by: u64 } }
/// # #[derive(Debug, Default)] struct Counter;
/// # impl Aggregate for Counter { const TYPE: &'static str = "counter"; type Event = CounterEvent;
/// #   type Error = std::convert::Infallible; fn apply(&mut self, _: &CounterEvent) {} }
///
/// #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
/// struct Total { value: u64, increments: u32 }
///
/// struct Totals;
///
/// impl Projection for Totals {
///     const NAME: &'static str = "counter_totals";
///     type Events = Counter;
///     type View = Total;
///     fn apply(&self, view: &mut Option<Total>, e: &EventEnvelope<CounterEvent>) -> Result<(), BoxError> {
///         let CounterEvent::Incremented { by } = &e.event;
///         let total = view.get_or_insert_with(Total::default);
///         total.value += by;
///         total.increments += 1;
///         Ok(())
///     }
/// }
/// ```
pub trait Projection: Send + Sync + 'static {
    /// The name under which its views, checkpoint, lease, generations, dead letters and stop
    /// are stored, unless [`name`](Projection::name) says otherwise.
    const NAME: &'static str;
    /// The version of what it stores. Raise it when `apply`, `view_id`, `index` or the view's
    /// shape change: the projector then rebuilds the views from the first event into a new
    /// generation while queries read the old one, and switches over once caught up.
    const VERSION: u32 = 1;
    /// The events it reads: an aggregate (`type Events = Task;`) for that aggregate's events,
    /// or an enum with `#[derive(EventSet)]` for the events of several.
    type Events: EventSet;
    /// What it stores per id.
    type View: Serialize + DeserializeOwned + Send + Sync + 'static;

    /// The name of this instance: [`NAME`](Projection::NAME) by default. Return another to run
    /// one projection type under several names (the same fold for two tenants, or two
    /// configurations of it): everything stored is kept per name, each instance with its own
    /// views, checkpoint, lease, generations, dead letters and stop. The name must stay the same
    /// for the life of the value (it is read more than once), and be 1 to 255 bytes long with
    /// no control characters (no NUL byte): the [`Projector`](crate::read::Projector), a
    /// [`ProjectionGroup`](crate::read::ProjectionGroup) and an [`App`](crate::App) refuse any
    /// other with [`Error::InvalidId`] (the `App` with [`Error::InvalidConfig`]). An `App` or a
    /// group refuses two registrations of one name.
    ///
    /// # Examples
    ///
    /// ```
    /// # use eventloom_core::prelude::*;
    /// # use eventloom_core::{BoxError, Projection};
    /// # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)] enum SaleEvent { Sold { tenant: String, cents: u64 } }
    /// # #[derive(Debug, Default)] struct Sale;
    /// # impl Aggregate for Sale { const TYPE: &'static str = "sale"; type Event = SaleEvent;
    /// #   type Error = std::convert::Infallible; fn apply(&mut self, _: &SaleEvent) {} }
    /// /// The takings of one tenant, stored as `takings_<tenant>`.
    /// struct Takings {
    ///     tenant: String,
    ///     name: String,
    /// }
    ///
    /// impl Takings {
    ///     fn of(tenant: &str) -> Self {
    ///         Takings { tenant: tenant.to_owned(), name: format!("takings_{tenant}") }
    ///     }
    /// }
    ///
    /// impl Projection for Takings {
    ///     const NAME: &'static str = "takings";
    ///     type Events = Sale;
    ///     type View = u64;
    ///
    ///     fn name(&self) -> &str {
    ///         &self.name
    ///     }
    ///
    ///     fn view_id(&self, e: &EventEnvelope<SaleEvent>) -> Option<String> {
    ///         let SaleEvent::Sold { tenant, .. } = &e.event;
    ///         (*tenant == self.tenant).then(|| "total".to_owned())
    ///     }
    ///
    ///     fn apply(&self, total: &mut Option<u64>, e: &EventEnvelope<SaleEvent>) -> Result<(), BoxError> {
    ///         let SaleEvent::Sold { cents, .. } = &e.event;
    ///         *total.get_or_insert(0) += cents;
    ///         Ok(())
    ///     }
    /// }
    ///
    /// assert_eq!(Takings::of("eu").name(), "takings_eu");
    /// ```
    fn name(&self) -> &str {
        Self::NAME
    }

    /// Whether it folds events of this type (the name once upcast) in this category (the
    /// aggregate type; only categories of its [`Events`](Projection::Events) are asked about);
    /// others are skipped without being decoded. By default, every type its events know: an
    /// event type added by a newer release is skipped by an older projector (see the guide's
    /// chapter on projections for what it misses, and when a rebuild is needed).
    fn handles(&self, category: &str, event_type: &str) -> bool {
        <Self::Events as EventSet>::knows(category, event_type)
    }

    /// The id of the view an event changes; `None` to ignore the event. Defaults to the
    /// aggregate's id.
    fn view_id(&self, event: &EventEnvelope<EventOf<Self>>) -> Option<String> {
        Some(event.stream.id().to_owned())
    }

    /// The key that places the view `view_id` in a partition, when the projection is
    /// partitioned ([`ProjectionOptions::partitions`](crate::ProjectionOptions::partitions)):
    /// the view id itself by default. Events go to the partition of their stream's id, so every
    /// event that changes a view must come from streams whose ids hash as this key does. The
    /// default fits views keyed by their aggregate's id (the default
    /// [`view_id`](Projection::view_id)); a projection whose view ids add to the stream id
    /// returns the stream id's part. An event whose view is another partition's stops the
    /// projection (or is dead-lettered, by its poison policy).
    ///
    /// # Examples
    ///
    /// ```
    /// # use eventloom_core::prelude::*;
    /// # use eventloom_core::{BoxError, Projection};
    /// # use std::borrow::Cow;
    /// # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)] enum TaskEvent { Created }
    /// # #[derive(Debug, Default)] struct Task;
    /// # impl Aggregate for Task { const TYPE: &'static str = "task"; type Event = TaskEvent;
    /// #   type Error = std::convert::Infallible; fn apply(&mut self, _: &TaskEvent) {} }
    /// /// Views kept as `card/<task id>`.
    /// struct Cards;
    ///
    /// impl Projection for Cards {
    ///     const NAME: &'static str = "cards";
    ///     type Events = Task;
    ///     type View = u32;
    ///     fn view_id(&self, e: &EventEnvelope<TaskEvent>) -> Option<String> {
    ///         Some(format!("card/{}", e.stream.id()))
    ///     }
    ///     fn view_partition_key(view_id: &str) -> Cow<'_, str> {
    ///         Cow::Borrowed(view_id.strip_prefix("card/").unwrap_or(view_id))
    ///     }
    ///     fn apply(&self, v: &mut Option<u32>, _: &EventEnvelope<TaskEvent>) -> Result<(), BoxError> {
    ///         *v.get_or_insert(0) += 1;
    ///         Ok(())
    ///     }
    /// }
    ///
    /// assert_eq!(Cards::view_partition_key("card/t-1"), "t-1");
    /// ```
    fn view_partition_key(view_id: &str) -> Cow<'_, str>
    where
        Self: Sized,
    {
        Cow::Borrowed(view_id)
    }

    /// The secondary index lists the view is in (see [`IndexEntry`]), kept with the view in the
    /// same atomic write; queries list and count them. None by default. `id` is the view's
    /// stored id (see [`stored_view_id`](crate::stored_view_id)).
    fn index(&self, id: &str, view: &Self::View) -> Vec<IndexEntry> {
        let _ = (id, view);
        Vec::new()
    }

    /// Folds an event into its view (`None` when the view does not exist yet; set it to `None`
    /// to delete the view). An error stops the projection at this event, with its checkpoint kept.
    fn apply(&self, view: &mut Option<Self::View>, event: &EventEnvelope<EventOf<Self>>) -> Result<(), BoxError>;
}

/// What a projector does with an event it cannot process: one that no longer decodes, or on
/// which the projection's `apply` fails.
///
/// # Examples
///
/// ```
/// use eventloom_core::{memory::{MemoryEventStore, MemoryViewStore}, read::{PoisonPolicy, Projector}};
///
/// let projector = Projector::new(MemoryEventStore::new(), MemoryViewStore::default())
///     .with_poison_policy(PoisonPolicy::DeadLetter);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum PoisonPolicy {
    /// Stop the projection with an error naming the event's position; its checkpoint stays
    /// before the event, so nothing is lost, and other projections go on.
    #[default]
    Stop,
    /// Skip the event, recording it in the projection's dead letters
    /// ([`ViewStore::dead_letters`](crate::ViewStore::dead_letters)) in the same atomic write that moves the checkpoint past it.
    /// `apply` must leave the view unchanged when it returns an error.
    DeadLetter,
}

/// The default number of events a projector folds per atomic write
/// ([`ProjectionOptions::batch_size`](crate::ProjectionOptions::batch_size)).
pub const DEFAULT_PROJECTOR_BATCH: usize = 2_000;

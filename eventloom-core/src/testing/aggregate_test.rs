use std::fmt::Debug;

use crate::{Aggregate, Command, Event, Handle};

/// Given events, when a command, then events or an error: a test of an aggregate's decisions
/// with no store at all.
///
/// `then_expect_events` also checks that every event survives its stored encoding (encode,
/// then decode, compares equal), so a serde attribute that loses data fails the test.
///
/// # Examples
///
/// ```
/// use eventloom_core::prelude::*;
/// use eventloom_core::testing::AggregateTest;
/// # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)] enum CounterEvent { Incremented { by: u64 } }
/// # #[derive(Debug, Default)] struct Counter { value: u64 }
/// # #[derive(Debug, PartialEq, thiserror::Error)] enum CounterError { #[error("too big")] TooBig }
/// # impl Aggregate for Counter { const TYPE: &'static str = "counter"; type Event = CounterEvent;
/// #   type Error = CounterError; fn apply(&mut self, CounterEvent::Incremented { by }: &CounterEvent) { self.value += by } }
/// # #[derive(Debug, Command)] #[command(aggregate = Counter)] struct Increment { #[command(id)] id: String, by: u64 }
/// # impl Handle<Increment> for Counter {
/// #   fn handle(&self, c: &Increment) -> Result<Vec<CounterEvent>, CounterError> {
/// #     if self.value + c.by > 10 { Err(CounterError::TooBig) } else { Ok(vec![CounterEvent::Incremented { by: c.by }]) } } }
///
/// AggregateTest::<Counter>::given([CounterEvent::Incremented { by: 8 }])
///     .when(Increment { id: "c".into(), by: 2 })
///     .then_expect_events([CounterEvent::Incremented { by: 2 }]);
///
/// AggregateTest::<Counter>::given([CounterEvent::Incremented { by: 8 }])
///     .when(Increment { id: "c".into(), by: 3 })
///     .then_expect_error(CounterError::TooBig);
/// ```
#[derive(Debug)]
pub struct AggregateTest<A> {
    state: A,
}

impl<A: Aggregate> AggregateTest<A> {
    /// Starts from the aggregate's default state with `events` applied.
    pub fn given(events: impl IntoIterator<Item = A::Event>) -> Self {
        let mut state = A::default();
        for event in events {
            state.apply(&event);
        }
        AggregateTest { state }
    }

    /// Starts from the aggregate's default state.
    pub fn given_no_events() -> Self {
        Self::given([])
    }

    /// Decides `command` on the given state.
    pub fn when<C>(self, command: C) -> Outcome<A>
    where
        C: Command<Aggregate = A>,
        A: Handle<C>,
    {
        Outcome { result: self.state.handle(&command) }
    }
}

/// What a command decided in an [`AggregateTest`].
#[derive(Debug)]
pub struct Outcome<A: Aggregate> {
    result: Result<Vec<A::Event>, A::Error>,
}

impl<A: Aggregate> Outcome<A> {
    /// Asserts that the command produced exactly these events, and that each survives its
    /// stored encoding.
    #[track_caller]
    pub fn then_expect_events(self, expected: impl IntoIterator<Item = A::Event>)
    where
        A::Event: PartialEq + Debug,
    {
        let expected: Vec<_> = expected.into_iter().collect();
        match self.result {
            Ok(events) => {
                assert_eq!(events, expected, "the command produced other events than expected");
                for event in &events {
                    let ty = event.event_type();
                    let payload = event.encode().unwrap_or_else(|e| panic!("{event:?} does not encode: {e}"));
                    let back = A::Event::decode(ty.name, &payload)
                        .unwrap_or_else(|e| panic!("{event:?} does not decode from {payload}: {e}"));
                    assert_eq!(&back, event, "{event:?} changes through its stored encoding {payload}");
                }
            }
            Err(error) => panic!("expected events {expected:?}, but the command was rejected: {error:?}"),
        }
    }

    /// Asserts that the command was rejected with `expected`.
    #[track_caller]
    pub fn then_expect_error(self, expected: A::Error)
    where
        A::Error: PartialEq,
        A::Event: Debug,
    {
        match self.result {
            Ok(events) => panic!("expected the error {expected:?}, but the command produced {events:?}"),
            Err(error) => assert_eq!(error, expected, "the command was rejected with another error"),
        }
    }

    /// Asserts that the command was rejected with an error whose message is `message`.
    #[track_caller]
    pub fn then_expect_error_message(self, message: &str)
    where
        A::Event: Debug,
    {
        match self.result {
            Ok(events) => panic!("expected the error {message:?}, but the command produced {events:?}"),
            Err(error) => assert_eq!(error.to_string(), message),
        }
    }

    /// The decision itself, for assertions of your own.
    pub fn into_result(self) -> Result<Vec<A::Event>, A::Error> {
        self.result
    }
}

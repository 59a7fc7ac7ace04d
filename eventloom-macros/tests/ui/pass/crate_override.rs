extern crate eventloom_core as renamed;

mod framework {
    pub use ::eventloom_core as cqrs;
}

use renamed::prelude::*;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(crate = "renamed")]
enum CounterEvent {
    Incremented,
}

#[derive(Debug, PartialEq, Serialize, Deserialize, Event)]
#[event(crate = "framework::cqrs", name = "reset")]
struct Reset;

#[derive(Debug, Default)]
struct Counter;

impl Aggregate for Counter {
    const TYPE: &'static str = "counter";
    type Event = CounterEvent;
    type Error = std::convert::Infallible;
    fn apply(&mut self, _: &CounterEvent) {}
}

#[derive(Command)]
#[command(crate = "renamed", aggregate = Counter)]
struct Increment {
    #[command(id)]
    counter: String,
}

#[derive(Command)]
#[command(aggregate = Counter, crate = "::renamed")]
struct Decrement(#[command(id)] u32);

fn main() {
    assert_eq!(CounterEvent::Incremented.event_type().name, "Incremented");
    assert_eq!(Reset.event_type().name, "reset");
    assert_eq!(Increment { counter: "c".into() }.aggregate_id(), "c");
    assert_eq!(Decrement(2).aggregate_id(), "2");
}

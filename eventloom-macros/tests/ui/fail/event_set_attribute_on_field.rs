#[path = "../events.rs"]
mod events;

use eventloom_core::EventSet;
use events::*;

#[derive(EventSet)]
enum Board {
    #[events(aggregate = Task)]
    Task(#[events(aggregate = Task)] TaskEvent),
}

fn main() {}

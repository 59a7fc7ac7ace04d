#[path = "../events.rs"]
mod events;

use eventloom_core::EventSet;
use events::*;

#[derive(EventSet)]
enum Board {
    #[events(aggregate = Task, aggregate = User)]
    Task(TaskEvent),
}

fn main() {}

#[path = "../events.rs"]
mod events;

use eventloom_core::EventSet;
use events::*;

#[derive(EventSet)]
enum Board {
    #[events(aggregate = Task, crate = "eventloom_core")]
    Task(TaskEvent),
}

fn main() {}

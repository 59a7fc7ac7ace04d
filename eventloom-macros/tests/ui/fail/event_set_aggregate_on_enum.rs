#[path = "../events.rs"]
mod events;

use eventloom_core::EventSet;
use events::*;

#[derive(EventSet)]
#[events(aggregate = Task)]
enum Board {
    #[events(aggregate = Task)]
    Task(TaskEvent),
}

fn main() {}

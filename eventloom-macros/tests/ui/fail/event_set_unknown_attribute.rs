#[path = "../events.rs"]
mod events;

use eventloom_core::EventSet;
use events::*;

#[derive(EventSet)]
enum Board {
    #[events(agregate = Task)]
    Task(TaskEvent),
}

fn main() {}

#[path = "../events.rs"]
mod events;

use eventloom_core::EventSet;
use events::*;

#[derive(EventSet)]
union Board {
    task: std::mem::ManuallyDrop<TaskEvent>,
}

fn main() {}

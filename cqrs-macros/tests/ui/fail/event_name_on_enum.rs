use cqrs_core::prelude::*;

#[derive(Serialize, Deserialize, Event)]
#[event(name = "TaskEvent")]
enum TaskEvent {
    Created,
}

fn main() {}

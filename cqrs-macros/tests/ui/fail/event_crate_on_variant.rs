use cqrs_core::prelude::*;

#[derive(Serialize, Deserialize, Event)]
enum TaskEvent {
    #[event(crate = "cqrs_core")]
    Created,
}

fn main() {}
